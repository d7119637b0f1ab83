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

// ---- In-process: the engine's cluster path driven by hand, as the Raft node drives it. ----

mod engine_cluster {
    use lithair::engine::{
        encode_reserved, Command, Context, Engine, EngineOptions, Proposer, Reserved, State,
        SubmitError, Token, NOT_COMMITTED,
    };
    use lithair::log::EntryBatch;
    use lithair::prelude::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Binary, Clone, Debug, Default, PartialEq)]
    pub struct Counter {
        total: u64,
    }

    impl State for Counter {
        type Event = u64;
        fn apply(&mut self, event: &u64) {
            self.total += event;
        }
    }

    struct Add(u64);

    impl Command<Counter> for Add {
        type Rejection = ();
        fn decide(&self, _: &Counter, _: &Context) -> Result<Vec<u64>, ()> {
            Ok(vec![self.0, self.0])
        }
    }

    type Proposal = (u64, u64, Vec<Vec<u8>>, Token);

    /// Records proposals, as the node's inbox would receive them.
    struct Recorder(Mutex<mpsc::Sender<Proposal>>);

    impl Proposer for Recorder {
        fn propose(&self, term: u64, first_index: u64, entries: Vec<Vec<u8>>, token: Token) {
            let _ = self
                .0
                .lock()
                .unwrap()
                .send((term, first_index, entries, token));
        }
    }

    fn reserved(index: u64, entry: Reserved<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reserved(&mut out, index, entry);
        out
    }

    /// Writes entries to the shared log as the Raft storage does (frame term = Raft term).
    fn persist(log: &lithair::log::Log, term: u64, first_index: u64, entries: &[Vec<u8>]) {
        let mut batch = EntryBatch::new();
        for entry in entries {
            batch.push(entry);
        }
        log.append_wait(term, first_index, batch).unwrap();
    }

    fn open(dir: &std::path::Path, hint: u64) -> (Engine<Counter>, mpsc::Receiver<Proposal>, u64) {
        let (sender, proposals) = mpsc::channel();
        let proposer: Arc<dyn Proposer> = Arc::new(Recorder(Mutex::new(sender)));
        let (engine, opened) = Engine::open_cluster(
            dir,
            EngineOptions::default(),
            Counter::default(),
            proposer,
            hint,
        )
        .unwrap();
        (engine, proposals, opened.applied_index)
    }

    fn next(proposals: &mpsc::Receiver<Proposal>) -> Proposal {
        proposals.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn raft_entries_consume_indexes_mismatches_retry_and_replay_stops_at_the_commit_hint() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (engine, proposals, applied) = open(&dir, 0);
        assert_eq!(applied, 0);
        let replica = engine.replica();
        let log = engine.cluster_log();
        // Bootstrap membership (term 1) and a leader's no-op (term 2): indexes 1 and 2.
        let conf = reserved(1, Reserved::Conf(&[1, 1, 0, 0, 0, 0, 0, 0, 0]));
        persist(&log, 1, 1, &[conf]);
        persist(&log, 2, 2, &[reserved(2, Reserved::Noop)]);
        replica.apply(1, &[&[], &[]], None);
        replica.set_next_index(3);
        replica.set_leader(Some(2));

        // A command's two events become Raft entries 3 and 4.
        let ticket = engine.submit_async(Add(5), Default::default());
        let (term, first, entries, token) = next(&proposals);
        assert_eq!((term, first, entries.len()), (2, 3, 2));
        persist(&log, 2, 3, &entries);
        let views: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        replica.apply(3, &views, Some(token));
        let receipt = ticket.wait().unwrap();
        assert_eq!((receipt.first_index, receipt.last_index), (3, 4));

        // A membership change took index 5 first: the proposal at 5 is abandoned, and the
        // sequencer continues at 6 once rebuilt.
        let ticket = engine.submit_async(Add(1), Default::default());
        let (_, first, _, token) = next(&proposals);
        assert_eq!(first, 5);
        persist(
            &log,
            2,
            5,
            &[reserved(5, Reserved::Conf(&[2, 4, 0, 0, 0, 0, 0, 0, 0]))],
        );
        replica.set_next_index(6);
        replica.abandon(token);
        match ticket.wait() {
            Err(SubmitError::Storage(message)) => assert_eq!(message, NOT_COMMITTED),
            other => panic!("expected a retryable error, got {other:?}"),
        }
        let ticket = engine.submit_async(Add(7), Default::default());
        let (_, first, entries, token) = next(&proposals);
        assert_eq!(first, 6);
        persist(&log, 2, 6, &entries);
        replica.apply(5, &[&[]], None);
        let views: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        replica.apply(6, &views, Some(token));
        assert_eq!(ticket.wait().unwrap().first_index, 6);
        assert_eq!(engine.applied_index(), 7);
        assert_eq!(engine.read(|s| s.total), 24);
        let digest = engine.digest();
        drop((replica, log));
        drop(engine);

        // The durable commit hint says 4: replay stops there, the rest is re-delivered.
        let (engine, _proposals, applied) = open(&dir, 4);
        assert_eq!(applied, 4);
        assert_eq!(engine.read(|s| s.total), 10);
        let replica = engine.replica();
        let mut all = Vec::new();
        lithair::log::read_range(&dir.join("log"), 1, &mut |frame| {
            all.extend(frame.entries().map(<[u8]>::to_vec));
            Ok(true)
        })
        .unwrap();
        assert_eq!(all.len(), 7);
        let views: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        replica.apply(1, &views, None);
        let converged = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            engine.applied_index() == 7
        });
        assert!(converged, "the re-delivered tail is applied");
        assert_eq!(engine.digest(), digest);
        drop(replica);
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn callbacks_answer_abandoned_proposals_and_applied_hooks_see_raft_entries() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-then-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (engine, proposals, _) = open(&dir, 0);
        let (seen, applied) = mpsc::channel();
        engine.on_applied(move |index| {
            let _ = seen.send(index);
        });
        let replica = engine.replica();
        let log = engine.cluster_log();
        // Entries 1 and 2 carry no event; the applied hook still reports index 2.
        let conf = reserved(1, Reserved::Conf(&[1, 1, 0, 0, 0, 0, 0, 0, 0]));
        persist(&log, 1, 1, &[conf]);
        persist(&log, 2, 2, &[reserved(2, Reserved::Noop)]);
        replica.apply(1, &[&[], &[]], None);
        assert_eq!(applied.recv_timeout(Duration::from_secs(10)), Ok(2));
        replica.set_next_index(3);
        replica.set_leader(Some(2));
        // A deferred (callback) submission whose proposal is abandoned is still answered.
        let (answer, answered) = mpsc::channel();
        engine.submit_then(
            Add(1),
            Default::default(),
            Box::new(move |outcome| {
                let _ = answer.send(outcome.map(|receipt| receipt.first_index));
            }),
        );
        let (_, first, _, token) = next(&proposals);
        assert_eq!(first, 3);
        replica.abandon(token);
        match answered.recv_timeout(Duration::from_secs(10)) {
            Ok(Err(SubmitError::Storage(message))) => assert_eq!(message, NOT_COMMITTED),
            other => panic!("expected a retryable error, got {other:?}"),
        }
        drop((replica, log));
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
