//! Real-process tests of a follower forwarding writes to its leader over the pipelined link
//! (`app::forward`): three nodes of the harness app on loopback, each a child process.
//!
//! - many clients writing through one follower at once: every write acknowledged once, under
//!   its own id, readable on the leader, and counted in the leader's per-route metrics, not
//!   the follower's; one client's pipelined writes keep their order;
//! - the leader stopped with forwarded writes in flight, then killed: every client gets an
//!   answer (201, or 503 with `Retry-After`: the outcome is unknown), none hangs; every 201 is
//!   durable; new writes through a follower reach the new leader.
//!
//! - the leader's side: pipelined writes a handler marks `Handler::unordered` (the
//!   forwarded ones, in the cluster) run side by side on one connection.
//!
//! No timed assertions: every wait is a bounded poll or a generous read timeout.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use lithair::http::{Handler, Request, Response, Server};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Client threads writing through one follower at once.
const WRITERS: usize = 32;
/// Writes each of them makes.
const WRITES_EACH: usize = 8;
/// Writes one client pipelines on one connection.
const PIPELINED: usize = 5;
/// Writes in flight when the leader dies.
const IN_FLIGHT: usize = 8;
/// A client's read timeout: well past the follower's forwarding deadline
/// (`FORWARD_TIMEOUT_MS`), so only a real hang fails the test.
const CLIENT_WAIT: Duration = Duration::from_secs(40);

/// One keyed write of an item on a fresh connection: status, whether `Retry-After` was
/// present, and body; `None` when the node closed without answering or the client gave up.
fn post_item(addr: SocketAddr, key: &str) -> Option<(u16, bool, String)> {
    let body = "{\"name\":\"forwarded\"}";
    let request = format!(
        "POST /api/items HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = exchange_patiently(addr, request.as_bytes())?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let retry_after = head.to_ascii_lowercase().contains("\r\nretry-after:");
    Some((status, retry_after, body.to_string()))
}

/// Writes `bytes` on a fresh connection and reads until the server closes it, waiting up to
/// `CLIENT_WAIT` for each read.
fn exchange_patiently(addr: SocketAddr, bytes: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(CLIENT_WAIT)).ok()?;
    stream.write_all(bytes).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// The index in `cluster.nodes` of a node other than `leader`.
fn a_follower(cluster: &Cluster, leader: usize) -> usize {
    (0..cluster.nodes.len())
        .find(|&k| k != leader && cluster.nodes[k].child.is_some())
        .expect("a live follower")
}

/// Waits until a write through a follower is acknowledged and the leader is the same before
/// and after it (a young cluster may still change leaders): the indices in `cluster.nodes`
/// of that leader and follower.
fn settled(cluster: &Cluster) -> (usize, usize) {
    let mut attempt = 0;
    poll(Duration::from_secs(30), || {
        attempt += 1;
        let leader = agreed_leader(cluster)?;
        let follower = a_follower(cluster, leader);
        let key = format!("settle-{attempt}");
        let (status, _, _) = post_item(cluster.nodes[follower].http, &key)?;
        (status == 201 && agreed_leader(cluster) == Some(leader)).then_some((leader, follower))
    })
    .expect("a settled leader acknowledges a write through a follower")
}

/// A keyed write through `addr`, tried again with the same key after a 503 (as a client
/// should: the key makes the retry safe) for a bounded time; the item's id.
fn write_keyed(addr: SocketAddr, key: &str) -> u64 {
    let answer = poll(Duration::from_secs(30), || {
        let (status, retry_after, body) = post_item(addr, key).expect("the node answers");
        assert!(status != 503 || retry_after, "a 503 without Retry-After");
        matches!(status, 200 | 201).then_some(body)
    });
    let body = answer.expect("a keyed write is acknowledged");
    json_number(&body, "id").expect("an id")
}

#[test]
fn concurrent_writes_through_a_follower_are_each_acknowledged_once() {
    let cluster = start_cluster("forward-many");
    let (leader, follower_index) = settled(&cluster);
    let term = status(cluster.nodes[leader].http).map(|s| s.term);
    let follower = cluster.nodes[follower_index].http;
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for n in 0..WRITES_EACH {
                        ids.push(write_keyed(follower, &format!("many-{w}-{n}")));
                    }
                    ids
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("writer thread"))
            .collect()
    });
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), WRITERS * WRITES_EACH, "one id per write");
    assert_readable(cluster.nodes[leader].http, &unique);
    wait_converged(&cluster);
    // Per-route metrics: a forwarded write is counted by the leader that ran it, as the
    // answer it gave; the follower's router never saw it, so its route has no series. (Only
    // if the term did not move: after an election the follower may have led for a while.)
    if status(cluster.nodes[leader].http).map(|s| s.term) != term {
        eprintln!("an election during the writes: the per-route counts are not checked");
        return;
    }
    let created = |node: usize| {
        created_answers(cluster.nodes[node].http).expect("the node serves its metrics")
    };
    assert!(
        created(leader) >= (WRITERS * WRITES_EACH) as f64,
        "the leader counted {} creates",
        created(leader)
    );
    assert_eq!(
        created(follower_index),
        0.0,
        "the follower counted a forwarded write"
    );
}

/// The `2xx` answers `POST /api/items` gave on a node, from its `/_lithair/metrics` (0 when
/// the route has no series: it answered nothing).
fn created_answers(addr: SocketAddr) -> Option<f64> {
    let (status, text) = http(addr, "GET", "/_lithair/metrics", "", "")?;
    assert_eq!(status, 200, "{text}");
    let series =
        "lithair_http_route_responses_total{method=\"POST\",route=\"/api/items\",class=\"2xx\"} ";
    let Some(line) = text.lines().find(|line| line.starts_with(series)) else {
        return Some(0.0);
    };
    line[series.len()..].parse().ok()
}

#[test]
fn one_clients_pipelined_writes_through_a_follower_keep_their_order() {
    let cluster = start_cluster("forward-order");
    let (_, follower) = settled(&cluster);
    let follower = cluster.nodes[follower].http;
    let body = "{\"name\":\"ordered\"}";
    let mut requests = String::new();
    for n in 0..PIPELINED {
        let close = if n + 1 == PIPELINED {
            "Connection: close\r\n"
        } else {
            ""
        };
        requests.push_str(&format!(
            "POST /api/items HTTP/1.1\r\nHost: {follower}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{close}\r\n{body}",
            body.len()
        ));
    }
    let text = exchange(follower, requests.as_bytes()).expect("the follower answers");
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), PIPELINED, "{text}");
    let mut previous = 0;
    for answer in answers {
        assert!(answer.starts_with("201"), "{answer}");
        let id = json_number(answer, "id").expect("an id");
        assert!(
            id > previous,
            "pipelined writes answered out of order: {text}"
        );
        previous = id;
    }
}

#[test]
fn writes_in_flight_when_the_leader_dies_get_an_answer_and_new_writes_reach_the_new_leader() {
    let mut cluster = start_cluster("forward-failover");
    // The follower's link to the leader is up.
    let (leader, follower) = settled(&cluster);
    let via = cluster.nodes[follower].http;
    let pid = cluster.nodes[leader]
        .child
        .as_ref()
        .expect("the leader runs")
        .id();
    // Stopped, the leader's kernel still takes the forwarded bytes: they stay in flight.
    let stopped = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let answers: Vec<Option<(u16, bool, String)>> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..IN_FLIGHT)
            .map(|k| scope.spawn(move || post_item(via, &format!("in-flight-{k}"))))
            .collect();
        // Not a timing assertion: only gives the requests time to reach the stopped leader.
        std::thread::sleep(Duration::from_millis(300));
        cluster.nodes[leader].kill();
        clients
            .into_iter()
            .map(|client| client.join().expect("client thread"))
            .collect()
    });
    let mut acknowledged = BTreeSet::new();
    let mut unknown = 0;
    for answer in answers {
        let (status, retry_after, body) = answer.expect("an answer, not a hang or a close");
        match status {
            201 => {
                acknowledged.insert(json_number(&body, "id").expect("an id"));
            }
            503 => {
                assert!(retry_after, "a 503 without Retry-After: {body}");
                unknown += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    eprintln!(
        "in flight at the leader's death: {} acknowledged, {unknown} 503",
        acknowledged.len()
    );
    let live: Vec<(u64, SocketAddr)> = cluster
        .nodes
        .iter()
        .filter(|node| node.child.is_some())
        .map(|node| (node.id, node.http))
        .collect();
    let new_leader = poll(Duration::from_secs(30), || leader_among(&live))
        .expect("the two live nodes agree on a new leader");
    let (_, new_leader_http) = live
        .iter()
        .find(|(id, _)| *id == new_leader)
        .copied()
        .expect("the new leader is live");
    let (_, new_follower) = live
        .iter()
        .find(|(id, _)| *id != new_leader)
        .copied()
        .expect("a live follower");
    // New writes through the follower reach the new leader (503 only while it learns).
    let written = poll(Duration::from_secs(30), || {
        post_item(new_follower, "after-failover").filter(|(status, _, _)| *status == 201)
    });
    let (_, _, body) = written.expect("a write through the follower after the failover");
    acknowledged.insert(json_number(&body, "id").expect("an id"));
    assert_readable(new_leader_http, &acknowledged);
}

/// Answers `met` when a second request started while this one ran, `alone` after waiting
/// `GATE_WAIT` for one. Requests carrying `x-unordered` are `Handler::unordered`.
struct Gate {
    started: Mutex<u32>,
    changed: Condvar,
}

/// How long a gated request waits for the other one; a bound against hangs, not a timing.
const GATE_WAIT: Duration = Duration::from_secs(20);

impl Handler for Gate {
    fn call(&self, _req: &mut Request) -> Response {
        let deadline = Instant::now() + GATE_WAIT;
        let mut started = self.started.lock().expect("gate");
        *started += 1;
        self.changed.notify_all();
        while *started < 2 {
            let now = Instant::now();
            if now >= deadline {
                return Response::text(200, "alone");
            }
            started = self
                .changed
                .wait_timeout(started, deadline - now)
                .expect("gate")
                .0;
        }
        Response::text(200, "met")
    }

    fn unordered(&self, req: &Request) -> bool {
        req.header("x-unordered").is_some()
    }
}

#[test]
fn pipelined_unordered_writes_run_side_by_side_on_one_connection() {
    let gate = Gate {
        started: Mutex::new(0),
        changed: Condvar::new(),
    };
    let server = Server::bind("127.0.0.1:0")
        .expect("bind")
        .spawn(gate)
        .expect("server");
    let addr = server.local_addr();
    let one = "POST /a HTTP/1.1\r\nHost: h\r\nx-unordered: 1\r\nContent-Length: 0\r\n\r\n";
    let two = "POST /b HTTP/1.1\r\nHost: h\r\nx-unordered: 1\r\nContent-Length: 0\r\n\
               Connection: close\r\n\r\n";
    let text = exchange_patiently(addr, format!("{one}{two}").as_bytes()).expect("answers");
    // In order, each request saw the other one run: neither waited for the other's answer.
    assert_eq!(text.matches("met").count(), 2, "{text}");
    assert!(!text.contains("alone"), "{text}");
}
