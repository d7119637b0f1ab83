//! Real-process test of snapshots through Raft: three nodes of a small app on loopback, each a
//! child process (this test binary re-run in child mode), snapshotting every few hundred events
//! so the leader compacts its log.
//!
//! - a follower stopped while the leader writes and compacts, restarted, catches up through an
//!   InstallSnapshot (its `/_lithair/cluster` reports an installed snapshot) and its digest
//!   converges with the others;
//! - a follower that crashes in the middle of an install (test hook after each install step)
//!   starts again on its data directory and converges too.
//!
//! No timed assertions: every wait is a bounded poll that fails only past a generous bound.

use lithair::app::App;
use lithair::engine::EngineOptions;
use lithair::raft::node::INSTALL_CRASH_ENV;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/post_model.rs"]
mod post_model;
use post_model::Post;

const CHILD_ARGS_ENV: &str = "LITHAIR_CLUSTER_SNAPSHOT_CHILD_ARGS";
const SECRET: &str = "cluster-snapshot-secret";
/// Snapshot (and so compaction) interval of the test nodes, in events.
const SNAPSHOT_EVERY_EVENTS: u64 = 200;
/// Writes made while a follower is down: several snapshot intervals.
const WRITES_WHILE_DOWN: usize = 800;
const WRITER_THREADS: usize = 8;

/// Child-process entry point: serves a node when the parent test set the environment.
#[test]
fn cluster_snapshot_node_child() {
    let Ok(args) = std::env::var(CHILD_ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = args.split('\u{1f}').map(str::to_string).collect();
    let options = EngineOptions {
        snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
        segment_bytes_max: 16 * 1024,
        ..EngineOptions::default()
    };
    let app = App::new("cluster-snapshot-test")
        .model::<Post>()
        .engine_options(options);
    if let Err(message) = app.run_with(&args) {
        eprintln!("child node: {message}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

struct Node {
    id: u64,
    http: SocketAddr,
    args: Vec<String>,
    child: Option<Child>,
    dir: PathBuf,
}

impl Node {
    fn spawn_with(&mut self, crash_step: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("node log file");
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "cluster_snapshot_node_child",
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

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("node{}.log", self.id))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster(name: &str) -> Cluster {
    let dir = std::env::temp_dir().join(format!("lithair-csnap-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let ids = [1u64, 2, 3];
    let peer_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let map: Vec<String> = ids
        .iter()
        .zip(&peer_ports)
        .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
        .collect();
    let mut nodes = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let port = free_port();
        let args = vec![
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
        ];
        let mut node = Node {
            id: *id,
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            args,
            child: None,
            dir: dir.clone(),
        };
        node.spawn_with(None);
        nodes.push(node);
    }
    Cluster { nodes, dir }
}

/// One HTTP/1.1 request on a fresh connection: status and body, or `None` on any failure.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The number after `"key":` in a JSON text (our JSON has no spaces).
fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn json_string(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    Some(text[at..].chars().take_while(|c| *c != '"').collect())
}

#[derive(Debug, Clone)]
struct Status {
    role: String,
    leader: u64,
    applied_event: u64,
    digest: String,
    snapshot_index: u64,
    snapshots_installed: u64,
}

fn status(addr: SocketAddr) -> Option<Status> {
    let (code, body) = http(addr, "GET", "/_lithair/cluster", "")?;
    if code != 200 {
        return None;
    }
    Some(Status {
        role: json_string(&body, "role")?,
        leader: json_number(&body, "leader")?,
        applied_event: json_number(&body, "applied_event_index")?,
        digest: json_string(&body, "digest")?,
        snapshot_index: json_number(&body, "snapshot_index")?,
        snapshots_installed: json_number(&body, "snapshots_installed")?,
    })
}

/// Polls until `check` returns `Some`, for at most `bound`.
fn poll<T>(bound: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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

/// The index in `nodes` of the leader every live node agrees on.
fn agreed_leader(cluster: &Cluster) -> usize {
    poll(Duration::from_secs(30), || {
        let live: Vec<Status> = cluster
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| status(n.http))
            .collect::<Option<_>>()?;
        let leader = live.first()?.leader;
        let agreed = leader != 0 && live.iter().all(|s| s.leader == leader);
        let k = cluster.nodes.iter().position(|n| n.id == leader)?;
        let leads = status(cluster.nodes[k].http)?.role == "leader";
        (agreed && leads).then_some(k)
    })
    .expect("the live nodes agree on a leader")
}

/// Creates `count` posts through `addr` with a few threads; every write must be acknowledged.
fn write_posts(addr: SocketAddr, tag: &str, count: usize) {
    std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            scope.spawn(move || {
                for k in (thread..count).step_by(WRITER_THREADS) {
                    let body = format!("{{\"title\":\"t\",\"slug\":\"{tag}-{k}\"}}");
                    let created = poll(Duration::from_secs(20), || {
                        match http(addr, "POST", "/api/posts", &body)? {
                            (201 | 200, _) => Some(()),
                            // Already created by an attempt whose answer was lost.
                            (409, _) => Some(()),
                            _ => None,
                        }
                    });
                    assert!(created.is_some(), "post {tag}-{k} was not acknowledged");
                }
            });
        }
    });
}

fn wait_converged(cluster: &Cluster) -> Vec<Status> {
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
            let raw = http(node.http, "GET", "/_lithair/cluster", "");
            eprintln!("node {}: {raw:?}\n{log}", node.id);
        }
        panic!("the nodes converge on one applied index and digest")
    })
}

/// Stops a follower, writes until the leader compacted past it, and returns the follower's
/// position and the leader's index.
fn stop_follower_and_compact_past_it(cluster: &mut Cluster, tag: &str) -> (usize, usize) {
    let leader = agreed_leader(cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    let stopped_at = status(cluster.nodes[follower].http)
        .expect("the follower answers")
        .applied_event;
    cluster.nodes[follower].kill();
    write_posts(cluster.nodes[leader].http, tag, WRITES_WHILE_DOWN);
    let compacted = poll(Duration::from_secs(30), || {
        let s = status(cluster.nodes[leader].http)?;
        (s.snapshot_index > stopped_at + 1).then_some(s.snapshot_index)
    });
    assert!(
        compacted.is_some(),
        "the leader compacted its log past the stopped follower ({stopped_at})"
    );
    (follower, leader)
}

#[test]
fn a_follower_behind_the_compaction_point_catches_up_through_a_snapshot() {
    let mut cluster = start_cluster("catch-up");
    let leader = agreed_leader(&cluster);
    write_posts(cluster.nodes[leader].http, "warm", 50);
    wait_converged(&cluster);

    // 1. A plain restart after compaction: the follower gets a snapshot.
    let (follower, _) = stop_follower_and_compact_past_it(&mut cluster, "a");
    cluster.nodes[follower].spawn_with(None);
    let all = wait_converged(&cluster);
    let installed = all[follower].snapshots_installed;
    assert!(
        installed >= 1,
        "the restarted follower caught up through a snapshot: {all:?}"
    );
    assert!(all[follower].applied_event >= WRITES_WHILE_DOWN as u64);

    // 2. A crash after each install step, then a restart on the same data directory.
    for (round, step) in ["file", "record", "log"].iter().enumerate() {
        let tag = format!("crash{round}");
        let (follower, _) = stop_follower_and_compact_past_it(&mut cluster, &tag);
        cluster.nodes[follower].spawn_with(Some(step));
        let mut child = cluster.nodes[follower].child.take().expect("spawned");
        let exited = poll(Duration::from_secs(30), || child.try_wait().ok().flatten());
        let Some(exit) = exited else {
            let _ = child.kill();
            panic!("the follower did not crash during the install (step {step})");
        };
        assert!(!exit.success(), "the crash hook aborts the process");
        let log = std::fs::read_to_string(cluster.nodes[follower].log_path()).unwrap_or_default();
        assert!(
            log.contains(&format!("crashing after install step `{step}`")),
            "the follower crashed in the install, at step {step}:\n{log}"
        );
        cluster.nodes[follower].spawn_with(None);
        let all = wait_converged(&cluster);
        assert!(all.iter().all(|s| s.applied_event == all[0].applied_event));
    }
}
