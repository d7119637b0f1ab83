//! Real-process cluster tests: three nodes of a small app on loopback, each a child process
//! (this test binary re-run in child mode, serving `App::run_with` on the given arguments).
//!
//! - writes through any node (followers forward to the leader);
//! - `kill -9` of the leader under write load: a new leader commits, no acknowledged write is
//!   lost, the digests of all nodes converge;
//! - the old leader restarting on its data never makes a second leader in a term.
//!
//! No timed assertions: every wait is a bounded poll that fails only when its (generous) bound
//! is exceeded; the failover time is printed, not asserted.

use lithair::app::{App, FieldKind, FieldSpec, Id, Model};
use lithair::json::{self, Value};
use lithair::prelude::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
struct Item {
    #[json(default)]
    id: u64,
    name: String,
}

#[derive(Json, Binary, Clone, Debug, PartialEq, Default)]
struct ItemPatch {
    name: Option<String>,
}

const ITEM_FIELDS: [FieldSpec; 2] = [
    FieldSpec {
        primary_key: true,
        ..FieldSpec::plain("id", FieldKind::UInt)
    },
    FieldSpec::plain("name", FieldKind::Str),
];

impl Model for Item {
    type Patch = ItemPatch;
    const NAME: &'static str = "Item";
    const PATH: &'static str = "/api/items";
    const FIELDS: &'static [FieldSpec] = &ITEM_FIELDS;
    const PRIMARY_KEY: usize = 0;

    fn id(&self) -> Id {
        Id::Int(self.id)
    }

    fn set_id(&mut self, id: Id) {
        if let Id::Int(id) = id {
            self.id = id;
        }
    }

    fn field_value(&self, index: usize) -> Value {
        match index {
            0 => json::to_value(&self.id),
            _ => json::to_value(&self.name),
        }
        .unwrap_or(Value::Null)
    }

    fn apply_patch(&mut self, patch: &ItemPatch) {
        if let Some(name) = &patch.name {
            self.name = name.clone();
        }
    }

    fn patch_fields(patch: &ItemPatch) -> Vec<usize> {
        if patch.name.is_some() {
            vec![1]
        } else {
            Vec::new()
        }
    }
}

const CHILD_ARGS_ENV: &str = "LITHAIR_CLUSTER_TEST_CHILD_ARGS";
const SECRET: &str = "cluster-test-secret";

/// Child-process entry point: serves a node when the parent test set the environment, and
/// does nothing in a normal test run.
#[test]
fn cluster_node_child() {
    let Ok(args) = std::env::var(CHILD_ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = args.split('\u{1f}').map(str::to_string).collect();
    let outcome = App::new("cluster-test").model::<Item>().run_with(&args);
    if let Err(message) = outcome {
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
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("node{}.log", self.id)))
            .expect("node log file");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "cluster_node_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ARGS_ENV, self.args.join("\u{1f}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn a node");
        self.child = Some(child);
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
    let dir = std::env::temp_dir().join(format!("lithair-cluster-{name}-{}", std::process::id()));
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
        node.spawn();
        nodes.push(node);
    }
    Cluster { nodes, dir }
}

/// One HTTP/1.1 request on a fresh connection: status and body, or `None` on any failure.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    term: u64,
    leader: u64,
    applied_event: u64,
    digest: String,
}

fn status(addr: SocketAddr) -> Option<Status> {
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
    })
}

/// Polls every `interval` until `check` returns `Some`, for at most `bound`.
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

/// The index in `nodes` of the one leader all live nodes agree on.
fn agreed_leader(cluster: &Cluster) -> Option<usize> {
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

/// Posts one item with an idempotency key, retrying across nodes until acknowledged.
fn write_item(addrs: &[SocketAddr], first: usize, key: &str, stop: &AtomicBool) -> Option<u64> {
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

fn wait_converged(cluster: &Cluster) -> Vec<Status> {
    poll(Duration::from_secs(30), || {
        let all: Vec<Status> = cluster
            .nodes
            .iter()
            .map(|n| status(n.http))
            .collect::<Option<_>>()?;
        let first = &all[0];
        all.iter()
            .all(|s| s.applied_event == first.applied_event && s.digest == first.digest)
            .then_some(all)
    })
    .expect("the nodes converge on one applied index and digest")
}

fn assert_readable(addr: SocketAddr, ids: &BTreeSet<u64>) {
    for id in ids {
        let (code, _) =
            http(addr, "GET", &format!("/api/items/{id}"), "", "").expect("a node answers reads");
        assert_eq!(code, 200, "acknowledged item {id} missing on {addr}");
    }
}

#[test]
fn leader_kill_under_load_loses_no_acknowledged_write() {
    let mut cluster = start_cluster("kill");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = poll(Duration::from_secs(20), || agreed_leader(&cluster)).expect("a leader");
    // Writes through every node: followers forward to the leader.
    let never = AtomicBool::new(false);
    let mut acked = BTreeSet::new();
    for (k, _) in addrs.iter().enumerate() {
        for n in 0..5 {
            let id = write_item(&addrs[k..=k], 0, &format!("warm-{k}-{n}"), &never);
            acked.insert(id.expect("a write through any node is acknowledged"));
        }
    }
    // Reads are linearizable by default: an acknowledged write is visible at once on every
    // node, followers included (no polling here).
    for (k, addr) in addrs.iter().enumerate() {
        let id = write_item(&addrs[k..=k], 0, &format!("ryw-{k}"), &never).expect("write");
        acked.insert(id);
        for reader in &addrs {
            let (code, _) = http(*reader, "GET", &format!("/api/items/{id}"), "", "")
                .expect("a node answers reads");
            assert_eq!(
                code, 200,
                "item {id} written via {addr} not visible on {reader}"
            );
        }
    }
    // Load: writers keep going through the kill, retrying with the same key.
    let stop = Arc::new(AtomicBool::new(false));
    // (write started, acknowledged, id)
    let acks = Arc::new(Mutex::new(Vec::<(Instant, Instant, u64)>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addrs, stop, acks) = (addrs.clone(), Arc::clone(&stop), Arc::clone(&acks));
            std::thread::spawn(move || {
                for n in 0.. {
                    let started = Instant::now();
                    let Some(id) = write_item(&addrs, w, &format!("load-{w}-{n}"), &stop) else {
                        break;
                    };
                    acks.lock().unwrap().push((started, Instant::now(), id));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let old_term = status(addrs[leader]).map_or(0, |s| s.term);
    let killed_at = Instant::now();
    cluster.nodes[leader].kill();
    let new_leader = poll(Duration::from_secs(20), || agreed_leader(&cluster))
        .expect("the survivors elect a new leader");
    assert_ne!(new_leader, leader);
    let first_commit = poll(Duration::from_secs(20), || {
        let acks = acks.lock().unwrap();
        // The first write submitted after the kill: it can only commit under a new leader.
        acks.iter()
            .filter(|(started, _, _)| *started > killed_at)
            .map(|(_, acked, _)| *acked)
            .min()
    })
    .expect("the new leader commits writes");
    eprintln!(
        "failover: kill -9 of the leader to the next acknowledged write: {} ms",
        first_commit.duration_since(killed_at).as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    acked.extend(acks.lock().unwrap().iter().map(|(_, _, id)| *id));
    // The old leader restarts on its data: it must rejoin as a follower, never lead a term
    // someone else leads.
    cluster.nodes[leader].spawn();
    let mut leaders_by_term: std::collections::BTreeMap<u64, BTreeSet<u64>> = Default::default();
    let rejoined = poll(Duration::from_secs(20), || {
        for node in &cluster.nodes {
            if let Some(s) = status(node.http) {
                if s.role == "leader" {
                    leaders_by_term.entry(s.term).or_default().insert(node.id);
                }
            }
        }
        let restarted = status(addrs[leader])?;
        (restarted.role == "follower" && restarted.leader == cluster.nodes[new_leader].id)
            .then_some(restarted)
    })
    .expect("the old leader rejoins as a follower");
    assert!(
        rejoined.term > old_term,
        "the restarted node caught up with the new term"
    );
    for (term, leaders) in &leaders_by_term {
        assert_eq!(leaders.len(), 1, "two leaders in term {term}: {leaders:?}");
    }
    let converged = wait_converged(&cluster);
    eprintln!(
        "converged at event index {} with digest {} ({} acknowledged writes)",
        converged[0].applied_event,
        converged[0].digest,
        acked.len()
    );
    for addr in &addrs {
        assert_readable(*addr, &acked);
    }
    // `cluster leave` on a follower: forwarded to the leader, which removes it from the voters.
    let leaver = (new_leader + 1) % cluster.nodes.len();
    let (code, body) =
        http(addrs[leaver], "POST", "/_lithair/cluster/leave", "", "").expect("leave answers");
    assert_eq!(code, 202, "leave: {body}");
    let leaver_id = cluster.nodes[leaver].id;
    poll(Duration::from_secs(20), || {
        let (_, body) = http(addrs[new_leader], "GET", "/_lithair/cluster", "", "")?;
        (!body.contains(&format!("{{\"id\":{leaver_id},"))).then_some(())
    })
    .expect("the leader drops the member that left");
    // The two remaining voters still commit.
    let id = write_item(&addrs[new_leader..=new_leader], 0, "after-leave", &never);
    assert!(id.is_some(), "writes commit after a member left");
}
