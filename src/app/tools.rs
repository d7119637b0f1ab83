//! Operator subcommands of every app: `log verify|inspect|stats` over a data directory, and
//! `cluster status|leave|transfer-leader` against a running node over HTTP.
//!
//! Owns: printing; the work is done by the engine's tools and the node's cluster endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::cli::{ClusterCommand, LogCommand};

/// How long a `cluster` subcommand waits for the node, in milliseconds.
pub const CLUSTER_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Largest answer a `cluster` subcommand reads, in bytes.
pub const CLUSTER_RESPONSE_BYTES_MAX: u64 = 1 << 20;

/// Runs `log ...` on `data`.
pub fn log_command(app_name: &str, data: &Path, action: &LogCommand) -> Result<(), String> {
    if !data.exists() {
        return Err(format!(
            "{app_name}: no data directory at {}",
            data.display()
        ));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match action {
        LogCommand::Verify => crate::engine::tools::log_verify(data, &mut out),
        LogCommand::Stats => crate::engine::tools::log_stats(data, &mut out),
        LogCommand::Inspect {
            from,
            to,
            event_type,
        } => crate::engine::tools::log_inspect(data, *from, *to, event_type.as_deref(), &mut out),
    }
}

/// Runs `cluster ...` against the node whose HTTP address is `node`.
pub fn cluster_command(node: SocketAddr, action: &ClusterCommand) -> Result<(), String> {
    let (method, path) = match action {
        ClusterCommand::Status => ("GET", "/_lithair/cluster".to_string()),
        ClusterCommand::Leave => ("POST", "/_lithair/cluster/leave".to_string()),
        ClusterCommand::TransferLeader { to: Some(to) } => {
            ("POST", format!("/_lithair/cluster/transfer-leader?to={to}"))
        }
        ClusterCommand::TransferLeader { to: None } => {
            ("POST", "/_lithair/cluster/transfer-leader".to_string())
        }
    };
    let (status, body) =
        http_request(node, method, &path).map_err(|e| format!("cannot reach {node}: {e}"))?;
    println!("{body}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{node} answered {status}"))
    }
}

/// A minimal HTTP/1.1 request over a fresh connection; returns status and body.
fn http_request(node: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_millis(CLUSTER_REQUEST_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&node, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {node}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(CLUSTER_RESPONSE_BYTES_MAX)
        .read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
        })?;
    Ok((status, body.to_string()))
}
