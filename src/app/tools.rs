//! Operator subcommands of every app: `log verify|inspect|stats` over a data directory, and
//! `cluster status|leave|transfer-leader` against a running node over HTTP.
//!
//! Owns: printing; the work is done by the engine's tools and the node's cluster endpoints.

use std::net::SocketAddr;
use std::path::Path;

use super::cli::{ClusterCommand, LogCommand};

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

/// Runs `cluster ...` against the node whose HTTP address is `node`; `secret` signs it
/// (`leave` and `transfer-leader` are refused unsigned).
pub fn cluster_command(
    node: SocketAddr,
    action: &ClusterCommand,
    secret: Option<&str>,
) -> Result<(), String> {
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
    let headers = match secret {
        Some(secret) => {
            super::cluster::sign_request(secret.as_bytes(), method, &path, b"").to_vec()
        }
        None => Vec::new(),
    };
    let (status, body) =
        super::cluster::exchange_once(&node.to_string(), method, &path, &headers, b"")
            .map_err(|e| format!("cannot reach {node}: {e}"))?;
    println!("{}", String::from_utf8_lossy(&body));
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{node} answered {status}"))
    }
}
