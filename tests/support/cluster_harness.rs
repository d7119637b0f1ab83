//! Real-process cluster harness shared by tests/cluster.rs, tests/cluster_ops.rs,
//! tests/cluster_reads.rs and tests/cluster_snapshot.rs (included with `#[path]`, so each test binary compiles its own copy): a small app served
//! by this test binary re-run in child mode, nodes as child processes, a TCP proxy the test
//! controls, and bounded polls (never timed assertions).

#![allow(dead_code)]

use lithair::app::App;
use lithair::engine::EngineOptions;
use lithair::http::middleware::BodyLimit;
use lithair::http::router::WithMiddleware;
use lithair::http::{Request, Response};
use lithair::prelude::*;
use lithair::raft::node::INSTALL_CRASH_ENV;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The item the test nodes serve at `/api/items`.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(path = "/api/items")]
pub struct Item {
    /// Assigned by the sequencer.
    #[db(primary_key)]
    pub id: u64,
    /// Name.
    pub name: String,
}

/// A route of the test app with its own body limit (`BodyLimit`), lower than the server's; it
/// answers the length of the body it read.
pub const LIMITED_PATH: &str = "/api/limited";
/// The body limit of [`LIMITED_PATH`], in bytes.
pub const LIMITED_BODY_BYTES_MAX: u64 = 8;

/// A command route of the test app: `POST /api/bulk/{count}/{bytes}` creates `count` items
/// whose names are `bytes` long, as one command (one run of `count` events); answers the
/// count. Lets a test propose a command larger than a Raft message, or than a command may be.
pub const BULK_PATH: &str = "/api/bulk/{count}/{bytes}";

pub const CHILD_ARGS_ENV: &str = "LITHAIR_CLUSTER_TEST_CHILD_ARGS";
pub const SECRET: &str = "cluster-test-secret";
/// A child argument (before `serve`) setting the node's snapshot interval in events, so a
/// test can make the leader compact its log early; the child removes it before `run_with`.
pub const SNAPSHOT_EVERY_ARG: &str = "--test-snapshot-every-events";
/// A child argument (before `serve`) setting the node's log segment size in bytes, so a test
/// gets many segments (and so compaction) from few writes.
pub const SEGMENT_BYTES_ARG: &str = "--test-segment-bytes-max";
/// A child argument (before `serve`) setting the node's InstallSnapshot chunk size in bytes
/// (through the `SNAPSHOT_CHUNK_ENV` test hook), so a small state goes in many chunks.
pub const SNAPSHOT_CHUNK_ARG: &str = "--test-snapshot-chunk-bytes";

/// Engine settings of the test nodes that differ from the app's; each set field travels to
/// the child as a flag before `serve` ([`NodeOptions::child_args`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeOptions {
    /// Snapshot (and so compaction) interval, in events.
    pub snapshot_every_events: Option<u64>,
    /// Log segment size, in bytes.
    pub segment_bytes_max: Option<u64>,
    /// InstallSnapshot chunk size, in bytes.
    pub snapshot_chunk_bytes: Option<u64>,
}

impl NodeOptions {
    /// The flags that carry these options to a child node.
    pub fn child_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            (SNAPSHOT_EVERY_ARG, self.snapshot_every_events),
            (SEGMENT_BYTES_ARG, self.segment_bytes_max),
            (SNAPSHOT_CHUNK_ARG, self.snapshot_chunk_bytes),
        ] {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args
    }

    /// Removes the flags of [`NodeOptions::child_args`] from `args` and returns their values.
    fn take_from(args: &mut Vec<String>) -> NodeOptions {
        let mut take = |flag: &str| {
            let at = args.iter().position(|arg| arg == flag)?;
            let value = args
                .get(at + 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a number after {flag}"));
            args.drain(at..at + 2);
            Some(value)
        };
        NodeOptions {
            snapshot_every_events: take(SNAPSHOT_EVERY_ARG),
            segment_bytes_max: take(SEGMENT_BYTES_ARG),
            snapshot_chunk_bytes: take(SNAPSHOT_CHUNK_ARG),
        }
    }

    /// `app` with these options; unset fields take `EngineOptions::default()` once any is
    /// set, and the app keeps its own engine options when none is.
    fn apply(&self, app: App) -> App {
        if self.snapshot_every_events.is_none() && self.segment_bytes_max.is_none() {
            return app;
        }
        let defaults = EngineOptions::default();
        app.engine_options(EngineOptions {
            snapshot_every_events: self
                .snapshot_every_events
                .unwrap_or(defaults.snapshot_every_events),
            segment_bytes_max: self.segment_bytes_max.unwrap_or(defaults.segment_bytes_max),
            ..defaults
        })
    }
}

/// Child-process entry point: serves a node when the parent test set the environment, and
/// does nothing in a normal test run.
#[test]
pub fn cluster_node_child() {
    let Ok(args) = std::env::var(CHILD_ARGS_ENV) else {
        return;
    };
    let mut args: Vec<String> = args.split('\u{1f}').map(str::to_string).collect();
    let options = NodeOptions::take_from(&mut args);
    if let Some(bytes) = options.snapshot_chunk_bytes {
        // Before the node starts any thread that reads the environment.
        std::env::set_var(lithair::raft::node::SNAPSHOT_CHUNK_ENV, bytes.to_string());
    }
    let app = App::new("cluster-test")
        .model::<Item>()
        .routes(|router, _| {
            let count = |req: &mut Request| Response::text(200, req.body.len().to_string());
            router.post(
                LIMITED_PATH,
                count.with(BodyLimit::bytes(LIMITED_BODY_BYTES_MAX)),
            )
        })
        .command(
            BULK_PATH,
            201,
            "Create many items at once",
            |tx, _: &(), params| {
                let count: u64 = params.get("count")?;
                let bytes: usize = params.get("bytes")?;
                for _ in 0..count {
                    let name = "x".repeat(bytes);
                    tx.create(Item { id: 0, name })?;
                }
                Ok(count)
            },
        );
    let app = options.apply(app);
    if let Err(message) = app.run_with(&args) {
        eprintln!("child node: {message}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// First port handed to child nodes. Child ports come from below the kernel's ephemeral range
/// (32768-60999 on Linux, 49152-65535 elsewhere): a port picked with `bind(":0")` and closed
/// could be taken again by a proxy's `bind(":0")` or by an outgoing connection's source port
/// before the child binds it ("Address already in use", seen under load).
const CHILD_PORT_FIRST: u16 = 20_000;
/// How many ports child nodes draw from, starting at [`CHILD_PORT_FIRST`].
const CHILD_PORT_SPAN: u32 = 12_000;

/// A loopback port no other caller in this process gets, free when checked. The walk starts
/// at an offset from the pid, so test binaries running side by side rarely meet.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % CHILD_PORT_SPAN;
    for _ in 0..CHILD_PORT_SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = CHILD_PORT_FIRST + ((start + step) % CHILD_PORT_SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {CHILD_PORT_FIRST}..+{CHILD_PORT_SPAN}");
}

pub struct Node {
    pub id: u64,
    pub http: SocketAddr,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub dir: PathBuf,
}

impl Node {
    pub fn spawn(&mut self) {
        self.spawn_with_crash_hook(None);
    }

    /// Starts the node; with `crash_step`, the child aborts after that InstallSnapshot step
    /// (the `INSTALL_CRASH_ENV` test hook). The log is appended to, so it keeps every run.
    pub fn spawn_with_crash_hook(&mut self, crash_step: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("node log file");
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "cluster_harness::cluster_node_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ARGS_ENV, self.args.join("\u{1f}"))
            .env_remove(INSTALL_CRASH_ENV)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(step) = crash_step {
            command.env(INSTALL_CRASH_ENV, step);
        }
        self.child = Some(command.spawn().expect("spawn a node"));
    }

    /// What the node wrote to stderr, across its runs.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("node{}.log", self.id))
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        // A failing test keeps the nodes' logs and data for the post-mortem, and says where.
        if std::thread::panicking() {
            eprintln!("cluster kept for inspection: {}", self.dir.display());
            for node in &self.nodes {
                if let Ok(log) = std::fs::read_to_string(node.log_path()) {
                    let tail: Vec<&str> = log.lines().rev().take(NODE_LOG_TAIL_LINES).collect();
                    eprintln!("--- node {} log (last lines) ---", node.id);
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lines of each node's log a failing test prints.
const NODE_LOG_TAIL_LINES: usize = 40;

pub fn start_cluster(name: &str) -> Cluster {
    start_cluster_routed(name, &mut |_, _, real| real)
}

/// Starts nodes 1, 2 and 3; `route(viewer, peer, real)` gives the address in `viewer`'s
/// `--cluster` map for `peer`, whose real peer address is `real` (a proxy, say).
pub fn start_cluster_routed(
    name: &str,
    route: &mut dyn FnMut(u64, u64, SocketAddr) -> SocketAddr,
) -> Cluster {
    start_cluster_with(name, &NodeOptions::default(), route)
}

/// Like [`start_cluster_routed`], with `options` for every node.
pub fn start_cluster_with(
    name: &str,
    options: &NodeOptions,
    route: &mut dyn FnMut(u64, u64, SocketAddr) -> SocketAddr,
) -> Cluster {
    let dir = std::env::temp_dir().join(format!("lithair-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let ids = [1u64, 2, 3];
    let peer_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let map: Vec<String> = ids
            .iter()
            .zip(&peer_ports)
            .map(|(peer, port)| {
                let real = SocketAddr::from(([127, 0, 0, 1], *port));
                let seen = if peer == id {
                    real
                } else {
                    route(*id, *peer, real)
                };
                format!("{peer}@{seen}")
            })
            .collect();
        let port = free_port();
        let mut args = options.child_args();
        args.extend([
            "serve".to_string(),
            "--node-id".into(),
            id.to_string(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--peer-port".into(),
            peer_ports[k].to_string(),
            "--data".into(),
            dir.join(format!("d{id}")).display().to_string(),
            "--cluster".into(),
            map.join(","),
            "--cluster-secret".into(),
            SECRET.into(),
        ]);
        let mut node = Node {
            id: *id,
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            args,
            child: None,
            dir: dir.clone(),
        };
        node.spawn();
        nodes.push(node);
    }
    Cluster { nodes, dir }
}

/// One HTTP/1.1 request on a fresh connection: status and body, or `None` on any failure.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Option<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = exchange(addr, request.as_bytes())?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Writes `bytes` on a fresh connection and reads until the node closes it (bounded by a
/// read timeout); `None` on any failure, a timeout included.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(bytes).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// The number after `"key":` in a JSON text (our JSON has no spaces).
pub fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub fn json_string(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    Some(text[at..].chars().take_while(|c| *c != '"').collect())
}

#[derive(Debug, Clone)]
pub struct Status {
    pub role: String,
    pub term: u64,
    pub leader: u64,
    pub applied_event: u64,
    pub digest: String,
    /// Index of the newest snapshot the node's log is compacted to.
    pub snapshot_index: u64,
    /// Snapshots the node installed from a leader since it started.
    pub snapshots_installed: u64,
    /// Snapshot transfers the node restarted as leader (a newer snapshot mid-transfer).
    pub snapshot_sends_restarted: u64,
}

pub fn status(addr: SocketAddr) -> Option<Status> {
    let (code, body) = http(addr, "GET", "/_lithair/cluster", "", "")?;
    if code != 200 {
        return None;
    }
    Some(Status {
        role: json_string(&body, "role")?,
        term: json_number(&body, "term")?,
        leader: json_number(&body, "leader")?,
        applied_event: json_number(&body, "applied_event_index")?,
        digest: json_string(&body, "digest")?,
        snapshot_index: json_number(&body, "snapshot_index")?,
        snapshots_installed: json_number(&body, "snapshots_installed")?,
        snapshot_sends_restarted: json_number(&body, "snapshot_sends_restarted")?,
    })
}

/// Polls every `interval` until `check` returns `Some`, for at most `bound`.
pub fn poll<T>(bound: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if started.elapsed() > bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The index in `nodes` of the one leader all live nodes agree on.
pub fn agreed_leader(cluster: &Cluster) -> Option<usize> {
    let live: Vec<(usize, Status)> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.child.is_some())
        .map(|(k, n)| status(n.http).map(|s| (k, s)))
        .collect::<Option<_>>()?;
    let leader_id = live.first()?.1.leader;
    let agreed = live
        .iter()
        .all(|(_, s)| s.leader == leader_id && s.leader != 0);
    let k = cluster.nodes.iter().position(|n| n.id == leader_id)?;
    (agreed && live.iter().any(|(j, s)| *j == k && s.role == "leader")).then_some(k)
}

/// The leader id every one of `addrs` (node id, HTTP address) agrees on, if they all do and it
/// says it leads. Unlike [`agreed_leader`], asks exactly these nodes (a chosen side of a cut).
pub fn leader_among(addrs: &[(u64, SocketAddr)]) -> Option<u64> {
    let statuses: Vec<(u64, Status)> = addrs
        .iter()
        .map(|(id, addr)| status(*addr).map(|s| (*id, s)))
        .collect::<Option<_>>()?;
    let leader = statuses.first()?.1.leader;
    let agreed = leader != 0 && statuses.iter().all(|(_, s)| s.leader == leader);
    let leads = statuses
        .iter()
        .any(|(id, s)| *id == leader && s.role == "leader");
    (agreed && leads).then_some(leader)
}

/// Polls (for a bounded time) until the live nodes agree on a leader; its index in `nodes`.
pub fn wait_leader(cluster: &Cluster) -> usize {
    poll(Duration::from_secs(30), || agreed_leader(cluster))
        .expect("the live nodes agree on a leader")
}

/// Posts one item with an idempotency key, retrying across nodes until acknowledged.
pub fn write_item(addrs: &[SocketAddr], first: usize, key: &str, stop: &AtomicBool) -> Option<u64> {
    let headers = format!("Content-Type: application/json\r\nIdempotency-Key: {key}\r\n");
    let mut target = first;
    while !stop.load(Ordering::Relaxed) {
        if let Some((200 | 201, body)) = http(
            addrs[target % addrs.len()],
            "POST",
            "/api/items",
            &headers,
            "{\"name\":\"x\"}",
        ) {
            return json_number(&body, "id");
        }
        target += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Polls until every node reports the same applied index and digest; on failure, prints each
/// node's status answer and log before failing the test.
pub fn wait_converged(cluster: &Cluster) -> Vec<Status> {
    let converged = poll(Duration::from_secs(60), || {
        let all: Vec<Status> = cluster
            .nodes
            .iter()
            .map(|n| status(n.http))
            .collect::<Option<_>>()?;
        let first = &all[0];
        all.iter()
            .all(|s| s.applied_event == first.applied_event && s.digest == first.digest)
            .then_some(all)
    });
    converged.unwrap_or_else(|| {
        for node in &cluster.nodes {
            let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            let raw = http(node.http, "GET", "/_lithair/cluster", "", "");
            eprintln!("node {}: {raw:?}\n{log}", node.id);
        }
        panic!("the nodes converge on one applied index and digest")
    })
}

/// Every id reads back on `addr` (a 503, "retry", is retried for a bounded time: only an
/// answer other than 503 decides).
pub fn assert_readable(addr: SocketAddr, ids: &BTreeSet<u64>) {
    for id in ids {
        let path = format!("/api/items/{id}");
        let answer = poll(Duration::from_secs(10), || {
            http(addr, "GET", &path, "", "").filter(|(code, _)| *code != 503)
        });
        let (code, body) = answer.expect("a node answers reads");
        assert_eq!(
            code, 200,
            "acknowledged item {id} missing on {addr}: {body}"
        );
    }
}

/// The signature headers of an operator request (`x-lithair-auth-time`, `-nonce`, `x-lithair-auth`),
/// as CRLF-terminated lines for `http`.
pub fn signed(method: &str, target: &str) -> String {
    lithair::app::cluster::sign_request(SECRET.as_bytes(), method, target, b"")
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect()
}

/// Runs this app's command line (`cluster status ...`) as a child process; its exit status.
pub fn run_cli(args: &[String]) -> bool {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "cluster_harness::cluster_node_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ARGS_ENV, args.join("\u{1f}"))
        .output()
        .map(|output| {
            // Shown when a test fails: what the command printed.
            let text = String::from_utf8_lossy(&output.stdout);
            let errors = String::from_utf8_lossy(&output.stderr);
            eprintln!("{args:?}: {} {}", text.trim(), errors.trim());
            output.status.success()
        })
        .unwrap_or(false)
}

/// A TCP proxy the test controls: forwards every connection to `target` until `cut`, which
/// closes the open connections and refuses new ones until `heal`. Dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// How often proxy threads look at the cut and stop flags.
const PROXY_POLL_MS: u64 = 20;

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy");
        listener.set_nonblocking(true).expect("nonblocking proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, halt) = (Arc::clone(&cut), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if !flag.load(Ordering::SeqCst) => {
                        pipe(client, target, &flag, &halt)
                    }
                    Ok(_) => {} // Cut: the connection is dropped at once.
                    Err(_) => std::thread::sleep(Duration::from_millis(PROXY_POLL_MS)),
                }
            }
        });
        Proxy {
            addr,
            cut,
            stop,
            accept: Some(accept),
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies both ways between `client` and a new connection to `target` on two threads that
/// end when either side closes, or the proxy is cut or stopped.
fn pipe(client: TcpStream, target: SocketAddr, cut: &Arc<AtomicBool>, stop: &Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return;
    };
    for (from, to) in [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ] {
        let (Ok(mut from), Ok(mut to)) = (from, to) else {
            return;
        };
        let (cut, stop) = (Arc::clone(cut), Arc::clone(stop));
        std::thread::spawn(move || {
            let _ = from.set_nonblocking(false);
            let _ = from.set_read_timeout(Some(Duration::from_millis(PROXY_POLL_MS)));
            let mut buf = [0u8; 16 * 1024];
            while !cut.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
}
