//! Operator subcommands of every app: `log verify|inspect|stats|repair|backup` over a data
//! directory, and
//! `cluster status|leave|transfer-leader` against a running node over HTTP.
//!
//! Owns: printing; the work is done by the engine's tools and the node's cluster endpoints.

use std::net::SocketAddr;
use std::path::Path;

use super::cli::{ClusterCommand, LogCommand};

/// The offline tools (`log`, `replay`, `snapshot`) work on an existing data directory:
/// opening a mistyped path would create it and report an empty state as if it were the real
/// one. The error is a sentence the caller prefixes with the app name.
pub fn require_data_dir(data: &Path) -> Result<(), String> {
    if data.is_dir() {
        Ok(())
    } else {
        Err(format!("no data directory at {}", data.display()))
    }
}

/// Runs `log ...` on `data`, writing its report to `out`.
pub fn log_command(
    data: &Path,
    action: &LogCommand,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    require_data_dir(data)?;
    match action {
        LogCommand::Verify => crate::engine::tools::log_verify(data, out),
        LogCommand::Stats => crate::engine::tools::log_stats(data, out),
        LogCommand::Repair { apply } => crate::engine::repair::log_repair(data, *apply, out),
        LogCommand::Backup { to } => crate::engine::backup::log_backup(data, to, out),
        LogCommand::Inspect {
            from,
            to,
            event_type,
        } => crate::engine::tools::log_inspect(data, *from, *to, event_type.as_deref(), out),
    }
}

/// How long `cluster ...` keeps asking again while the node answers 503, in milliseconds.
pub const CLI_RETRY_WAIT_MS: u64 = 15_000;
/// Pause between two attempts of `cluster ...` after a 503, in milliseconds.
const CLI_RETRY_PAUSE_MS: u64 = 250;

/// Runs `cluster ...` against the node whose HTTP address is `node`; `secret` signs it
/// (`leave` and `transfer-leader` are refused unsigned).
pub fn cluster_command(
    node: SocketAddr,
    action: &ClusterCommand,
    secret: Option<&str>,
) -> Result<(), String> {
    let (method, path) = match action {
        ClusterCommand::Status => ("GET", "/_lithair/cluster".to_string()),
        ClusterCommand::Leave { id: None } => ("POST", "/_lithair/cluster/leave".to_string()),
        ClusterCommand::Leave { id: Some(id) } => {
            ("POST", format!("/_lithair/cluster/leave?node={id}"))
        }
        ClusterCommand::TransferLeader { to: Some(to) } => {
            ("POST", format!("/_lithair/cluster/transfer-leader?to={to}"))
        }
        ClusterCommand::TransferLeader { to: None } => {
            ("POST", "/_lithair/cluster/transfer-leader".to_string())
        }
    };
    let started = std::time::Instant::now();
    loop {
        let headers = match secret {
            Some(secret) => {
                super::cluster::sign_request(secret.as_bytes(), method, &path, b"").to_vec()
            }
            None => Vec::new(),
        };
        let answer = super::cluster::exchange_once(&node.to_string(), method, &path, &headers, b"");
        let patient = started.elapsed() < std::time::Duration::from_millis(CLI_RETRY_WAIT_MS);
        match answer {
            // 503 means "not now" (no leader yet, a leadership hand-over or a membership change
            // in progress): the request was not carried out, so asking again is safe.
            Ok((503, _)) if patient => {}
            Ok((status, body)) => {
                println!("{}", String::from_utf8_lossy(&body));
                return match status {
                    200..=299 => Ok(()),
                    _ => Err(format!("{node} answered {status}")),
                };
            }
            Err(e) => return Err(format!("cannot reach {node}: {e}")),
        }
        std::thread::sleep(std::time::Duration::from_millis(CLI_RETRY_PAUSE_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Answers each connection with the next status of `statuses`, returning how many came.
    fn node_answering(statuses: Vec<u16>) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let mut served = 0;
            for status in statuses {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).expect("read");
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                stream.write_all(reply.as_bytes()).expect("write");
                served += 1;
            }
            served
        });
        (addr, server)
    }

    #[test]
    fn cluster_commands_ask_again_after_503_and_stop_at_a_final_answer() {
        let (addr, server) = node_answering(vec![503, 503, 202]);
        assert_eq!(
            cluster_command(addr, &ClusterCommand::Leave { id: None }, Some("s")),
            Ok(())
        );
        assert_eq!(server.join().expect("server"), 3);
        let (addr, server) = node_answering(vec![409]);
        let refused = cluster_command(addr, &ClusterCommand::Leave { id: None }, Some("s"));
        assert_eq!(refused, Err(format!("{addr} answered 409")));
        assert_eq!(server.join().expect("server"), 1);
    }
}
