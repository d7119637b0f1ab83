//! Cluster mode of an app: starting the Raft node next to the engine, the HTTP front that
//! forwards writes from followers to the leader, and the `/_lithair/cluster` endpoints.
//!
//! Owns: which requests a follower forwards, the 503 + `Retry-After` answer when no leader is
//! known, and the cluster status JSON.
//! Must not: decide anything about consensus (the `raft` layer does) or about writes (the
//! engine and the model routes do).
//!
//! Reads are linearizable by default: the node confirms with the leader (ReadIndex, batched
//! in the Raft core) that it holds every write committed before the read, waits until its
//! state has applied them, and then serves locally. `?consistency=stale` skips the round.

use super::cli::ServeOptions;
use super::state::AppState;
use crate::engine::{digest_hex, Engine, EngineOptions, Replica};
use crate::http::router::Router;
use crate::http::{Handler, Method, Request, Response};
use crate::raft::node::{ClusterStatus, Inbox, Node, NodeConfig};
use crate::raft::storage_log::read_hard_state;
use crate::raft::ConfChange;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Header marking a request a follower forwarded (a node never forwards it again).
pub const FORWARDED_HEADER: &str = "x-lithair-forwarded";
/// Time allowed for a forwarded request, in milliseconds.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for the local state to reach a confirmed read index, in milliseconds.
pub const READ_APPLY_TIMEOUT_MS: u64 = 2000;
/// HTTP worker threads of a clustered node when the app kept the default.
pub const CLUSTER_WORKER_THREADS: usize = 512;
/// Largest forwarded response read back, in bytes.
pub const FORWARD_RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The engine and node of a clustered app.
pub struct Clustered {
    /// The engine (cluster mode).
    pub engine: Engine<AppState>,
    /// The Raft node.
    pub node: Arc<Node>,
    /// The engine as the node drives it (status digests).
    pub replica: Arc<dyn Replica>,
    /// Events replayed from the local log at start.
    pub replayed: u64,
}

/// Opens the engine in cluster mode and starts the Raft node.
///
/// # Errors
/// A missing secret or peer port, storage or socket failures, in plain words.
pub fn start_cluster(
    options: &ServeOptions,
    engine_options: EngineOptions,
    initial: AppState,
) -> Result<Clustered, String> {
    let id = options.node_id.ok_or("`--cluster` needs `--node-id`")?;
    let peer_port = options.peer_port.ok_or("`--cluster` needs `--peer-port`")?;
    if options.join.is_some() {
        return Err("`--join` (dynamic membership) is not supported yet; use `--cluster`".into());
    }
    let secret = options
        .cluster_secret
        .clone()
        .or_else(|| std::env::var("LITHAIR_CLUSTER_SECRET").ok())
        .filter(|secret| !secret.is_empty())
        .ok_or("a cluster needs `--cluster-secret` or LITHAIR_CLUSTER_SECRET")?;
    let data: &Path = &options.data;
    std::fs::create_dir_all(data)
        .map_err(|e| format!("cannot create data directory {}: {e}", data.display()))?;
    // The durable commit index bounds what the engine may replay from the shared log.
    let hard_state = read_hard_state(data).map_err(|e| format!("cannot open the node: {e}"))?;
    let inbox = Inbox::new();
    let proposer = inbox.proposer();
    let (engine, opened) =
        Engine::open_cluster(data, engine_options, initial, proposer, hard_state.commit)
            .map_err(|e| format!("cannot open {}: {e}", data.display()))?;
    let replica = engine.replica();
    let config = NodeConfig {
        id,
        members: options
            .cluster
            .iter()
            .map(|(member, addr)| (*member, addr.to_string()))
            .collect(),
        peer_listen: SocketAddr::new(options.bind, peer_port),
        http_addr: announced_http_addr(options),
        secret: secret.into_bytes(),
        data_dir: data.to_path_buf(),
    };
    let node = Node::start(config, inbox, Arc::clone(&replica), engine.cluster_log())
        .map_err(|e| format!("cannot start the raft node: {e}"))?;
    Ok(Clustered {
        engine,
        node: Arc::new(node),
        replica,
        replayed: opened.applied_index - opened.snapshot_index,
    })
}

/// The HTTP address peers should use for this node.
fn announced_http_addr(options: &ServeOptions) -> String {
    let ip = if options.bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        options.bind
    };
    SocketAddr::new(ip, options.port).to_string()
}

/// The HTTP front of a clustered node: cluster endpoints, then forwarding, then the app.
pub struct ClusterFront {
    /// The app's router.
    pub router: Router,
    /// The Raft node.
    pub node: Arc<Node>,
    /// The engine (status digests).
    pub replica: Arc<dyn Replica>,
}

fn is_write(method: &Method) -> bool {
    !method.is_safe()
}

impl Handler for ClusterFront {
    fn call(&self, req: &mut Request) -> Response {
        if req.path == "/_lithair/cluster" && req.method == Method::Get {
            return json_response(200, status_json(&self.node.status(), &*self.replica));
        }
        if req.path == "/_lithair/cluster/transfer-leader" && req.method == Method::Post {
            return self.transfer_leader(req);
        }
        if req.path == "/_lithair/cluster/leave" && req.method == Method::Post {
            return self.leave(req);
        }
        if is_write(&req.method) {
            if self.node.status().role != "leader" {
                return self.forward(req);
            }
        } else if wants_linearizable(req) {
            if let Err(detail) = self.await_read_index() {
                return json_response(503, format!("{{\"error\":\"{}\"}}", escape(&detail)))
                    .with_header("Retry-After", "1");
            }
        }
        self.router.call(req)
    }

    fn is_inline(&self, req: &Request) -> bool {
        // Linearizable reads wait for a heartbeat round: never on the reactor.
        !is_write(&req.method) && !wants_linearizable(req) && self.router.is_inline(req)
    }
}

/// Whether a read must be linearizable: every application read unless it asks for
/// `consistency=stale` (which serves the local, possibly stale, state at once).
fn wants_linearizable(req: &Request) -> bool {
    !req.path.starts_with("/_lithair")
        && !req.query.split('&').any(|pair| pair == "consistency=stale")
}

impl ClusterFront {
    /// ReadIndex: waits until the local state holds every write committed before the read.
    fn await_read_index(&self) -> Result<(), String> {
        let target = self.node.read_index()?;
        let started = std::time::Instant::now();
        while self.replica.applied_index() < target {
            if started.elapsed() > Duration::from_millis(READ_APPLY_TIMEOUT_MS) {
                return Err("the local state did not catch up in time".to_string());
            }
            // The applier is at most one local-log write behind the delivered index.
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }

    fn transfer_leader(&self, req: &mut Request) -> Response {
        let status = self.node.status();
        if status.role != "leader" {
            return self.forward(req);
        }
        let requested = req
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("to="))
            .map(|value| value.parse::<u64>());
        let to = match requested {
            Some(Ok(to)) => to,
            Some(Err(_)) => return json_response(400, "{\"error\":\"`to` must be a node id\"}"),
            // No target: the most caught-up other voter.
            None => match status
                .members
                .iter()
                .filter(|m| m.voter && m.id != status.id)
                .max_by_key(|m| m.match_index)
            {
                Some(member) => member.id,
                None => return json_response(409, "{\"error\":\"no other voter\"}"),
            },
        };
        match self.node.transfer_leader(to) {
            Ok(()) => json_response(202, format!("{{\"transferring_to\":{to}}}")),
            Err(e) => json_response(409, format!("{{\"error\":\"{}\"}}", escape(&e))),
        }
    }

    /// `POST /_lithair/cluster/leave[?node=N]`: removes node N (default: this node) from the
    /// voters. The leader proposes it; any other node forwards it there naming itself.
    fn leave(&self, req: &Request) -> Response {
        let status = self.node.status();
        let named = req
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("node="))
            .map(|value| value.parse::<u64>());
        let leaving = match named {
            Some(Ok(id)) => id,
            Some(Err(_)) => return json_response(400, "{\"error\":\"`node` must be a node id\"}"),
            None => status.id,
        };
        if status.role != "leader" {
            return self.forward_to(req, &format!("/_lithair/cluster/leave?node={leaving}"));
        }
        match self.node.propose_conf_change(ConfChange::Remove(leaving)) {
            Ok(index) => {
                json_response(202, format!("{{\"removing\":{leaving},\"index\":{index}}}"))
            }
            Err(e) => json_response(409, format!("{{\"error\":\"{}\"}}", escape(&e))),
        }
    }

    /// Sends `req` to the leader and relays its answer; 503 + `Retry-After` without a leader.
    fn forward(&self, req: &Request) -> Response {
        self.forward_to(req, &req.target)
    }

    /// Like `forward`, with another request target.
    fn forward_to(&self, req: &Request, target: &str) -> Response {
        let status = self.node.status();
        let unavailable = |detail: &str| {
            json_response(503, format!("{{\"error\":\"{}\"}}", escape(detail)))
                .with_header("Retry-After", "1")
        };
        if req.header(FORWARDED_HEADER).is_some() {
            return unavailable("this node is not the leader (forwarded request)");
        }
        if status.leader == 0 || status.leader == status.id {
            return unavailable("no leader is known yet");
        }
        let Some(addr) = self.node.http_addr(status.leader) else {
            return unavailable("the leader's address is not known yet");
        };
        match forward_http(&addr, req, target) {
            Ok(response) => response,
            Err(e) => unavailable(&format!("cannot reach the leader at {addr}: {e}")),
        }
    }
}

fn json_response(status: u16, body: impl Into<String>) -> Response {
    Response::bytes(status, "application/json", body.into().into_bytes())
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The `/_lithair/cluster` document.
pub fn status_json(status: &ClusterStatus, replica: &dyn Replica) -> String {
    let (applied_event, digest) = replica.applied_digest();
    let members: Vec<String> = status
        .members
        .iter()
        .map(|m| {
            let http = m
                .http_addr
                .as_deref()
                .map_or("null".to_string(), |a| format!("\"{}\"", escape(a)));
            format!(
                "{{\"id\":{},\"voter\":{},\"match_index\":{},\"lag\":{},\"http\":{http}}}",
                m.id, m.voter, m.match_index, m.lag
            )
        })
        .collect();
    format!(
        "{{\"node_id\":{},\"role\":\"{}\",\"term\":{},\"leader\":{},\"commit_index\":{},\
         \"applied_index\":{},\"last_index\":{},\"applied_event_index\":{applied_event},\
         \"digest\":\"{}\",\"snapshot_index\":{},\"snapshots_installed\":{},\"members\":[{}]}}",
        status.id,
        status.role,
        status.term,
        status.leader,
        status.commit,
        status.applied,
        status.last_index,
        digest_hex(&digest),
        status.snapshot_index,
        status.snapshots_installed,
        members.join(",")
    )
}

/// One HTTP/1.1 exchange with the leader over a fresh connection.
fn forward_http(addr: &str, req: &Request, request_target: &str) -> std::io::Result<Response> {
    let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{} {request_target} HTTP/1.1\r\nHost: {addr}\r\n",
        req.method.as_str()
    );
    for (name, value) in req.headers.iter() {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "{FORWARDED_HEADER}: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(&req.body);
    stream.write_all(&out)?;
    let mut answer = Vec::new();
    stream
        .take(FORWARD_RESPONSE_BYTES_MAX)
        .read_to_end(&mut answer)?;
    parse_response(&answer).ok_or_else(|| std::io::Error::other("malformed answer"))
}

/// Parses a complete `Connection: close` response (Content-Length, chunked or until close).
fn parse_response(bytes: &[u8]) -> Option<Response> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let mut body = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut response = Response::new(status);
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let len: usize = value.parse().ok()?;
                body = body.get(..len)?;
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" | "keep-alive" | "date" | "server" => {}
            _ => response = response.with_header(name.to_string(), value.to_string()),
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(response.with_body(body))
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_answers() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        let response = parse_response(plain).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/json")
        );
        assert_eq!(response.body.as_bytes(), Some(&b"{}"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let response = parse_response(chunked).unwrap();
        assert_eq!(response.body.as_bytes(), Some(&b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_none());
        assert!(parse_response(b"garbage").is_none());
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
