//! Real-process linearizable reads, in both read modes: with `--read-mode lease` the leader
//! serves reads from the lease its Raft thread publishes (inline on the reactor when nothing
//! is left to apply); otherwise (and on followers) a read runs on the reactor and its response
//! waits for a ReadIndex batch started after it ran, or runs again if writes committed
//! meanwhile.
//!
//! - every acknowledged write reads back at once on every node (no polling);
//! - under concurrent writes, a read started after a write was acknowledged sees it, on every
//!   node (a 503 is allowed, a 404 never);
//! - a leader cut off from its quorum never serves a stale read: once the majority has
//!   acknowledged a newer write, the old leader answers that read with the write or a 503,
//!   never with the state from before it.
//!
//! - pipelined reads on one connection, to the leader and to a follower, are answered in
//!   order with their own data, and share ReadIndex batches (fewer batches than reads, read
//!   from the node's counters in `/_lithair/cluster`);
//! - a write pipelined before reads on the same connection orders them: every read after it
//!   sees it, on the leader and on a follower.
//!
//! No timed assertions: every wait is a bounded poll that fails only past its bound.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Reads of the newer write sent to the isolated old leader after it was acknowledged (in
/// read-index mode each may wait for its batch to expire).
const STALE_PROBE_READS: usize = 10;
const STALE_PROBE_READS_READ_INDEX: usize = 3;
/// Writes acknowledged while readers chase them.
const CHASED_WRITES: usize = 60;
/// Reads pipelined in one write on one connection (below the server's pipelining limit).
const PIPELINED_READS: usize = 48;
/// Items the pipelined reads fetch, in turn.
const PIPELINED_ITEMS: usize = 6;
/// Times a pipeline of reads is sent before reads that never share a batch fail the test.
const PIPELINE_ATTEMPTS_MAX: usize = 3;

/// Restarts every node of `cluster` (still empty) with `--read-mode lease`.
fn with_lease_reads(cluster: &mut Cluster) {
    for node in &mut cluster.nodes {
        node.kill();
        node.args
            .extend(["--read-mode".to_string(), "lease".to_string()]);
        node.spawn();
    }
}

#[test]
fn lease_reads_see_every_acknowledged_write_on_every_node() {
    let mut cluster = start_cluster("lease-ryw");
    with_lease_reads(&mut cluster);
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    poll(Duration::from_secs(20), || agreed_leader(&cluster)).expect("a leader");
    let never = AtomicBool::new(false);
    for round in 0..10 {
        for (k, addr) in addrs.iter().enumerate() {
            let id = write_item(&addrs[k..=k], 0, &format!("ryw-{round}-{k}"), &never)
                .expect("a write through any node is acknowledged");
            for reader in &addrs {
                let (code, body) = http(*reader, "GET", &format!("/api/items/{id}"), "", "")
                    .expect("a node answers reads");
                assert_eq!(
                    code, 200,
                    "item {id} written via {addr} not visible on {reader}: {body}"
                );
            }
        }
    }
}

/// One writer acknowledges items one after another, each through the next node; a reader
/// per node keeps reading the newest acknowledged item. Writes land while reads are parked,
/// so some reads run again after their batch (the confirmed index is newer than what they
/// ran on): none may miss the item.
fn reads_chase_acknowledged_writes(cluster: &Cluster) {
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    poll(Duration::from_secs(20), || agreed_leader(cluster)).expect("a leader");
    let (acked, done, never) = (
        AtomicU64::new(0),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let (ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for reader in &addrs {
            let (acked, done, ok, refused) = (&acked, &done, &ok, &refused);
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    // Acknowledged before this read started: it must be seen.
                    let id = acked.load(Ordering::SeqCst);
                    if id == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    match http(*reader, "GET", &format!("/api/items/{id}"), "", "") {
                        Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        Some((503, _)) | None => refused.fetch_add(1, Ordering::Relaxed),
                        Some((code, body)) => {
                            panic!("acknowledged item {id} read on {reader}: {code} {body}")
                        }
                    };
                }
            });
        }
        for k in 0..CHASED_WRITES {
            let id = write_item(&addrs, k, &format!("chase-{k}"), &never).expect("acknowledged");
            acked.fetch_max(id, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
    });
    assert!(
        ok.load(Ordering::Relaxed) >= CHASED_WRITES as u64,
        "the readers read ({} ok, {} refused)",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

#[test]
fn read_index_reads_see_every_write_acknowledged_before_them_under_concurrent_writes() {
    let cluster = start_cluster("parked-chase");
    reads_chase_acknowledged_writes(&cluster);
}

#[test]
fn lease_reads_see_every_write_acknowledged_before_them_under_concurrent_writes() {
    let mut cluster = start_cluster("lease-chase");
    with_lease_reads(&mut cluster);
    reads_chase_acknowledged_writes(&cluster);
}

#[test]
fn an_isolated_lease_leader_never_serves_a_stale_read() {
    isolated_leader_never_serves_a_stale_read("lease-stale", true, STALE_PROBE_READS);
}

#[test]
fn an_isolated_read_index_leader_never_serves_a_stale_read() {
    isolated_leader_never_serves_a_stale_read("index-stale", false, STALE_PROBE_READS_READ_INDEX);
}

fn isolated_leader_never_serves_a_stale_read(name: &str, lease: bool, probes: usize) {
    let mut proxies: HashMap<(u64, u64), Proxy> = HashMap::new();
    let mut cluster = start_cluster_routed(name, &mut |viewer, peer, real| {
        let proxy = Proxy::start(real);
        let addr = proxy.addr;
        proxies.insert((viewer, peer), proxy);
        addr
    });
    if lease {
        with_lease_reads(&mut cluster);
    }
    let all: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    let old = poll(Duration::from_secs(20), || leader_among(&all)).expect("a leader");
    let old_addr = all[(old - 1) as usize].1;
    let never = AtomicBool::new(false);
    let first = write_item(&[old_addr], 0, "before-cut", &never).expect("acknowledged");
    let (code, _) = http(old_addr, "GET", &format!("/api/items/{first}"), "", "").expect("read");
    assert_eq!(code, 200, "the leader serves its own acknowledged write");
    for ((viewer, peer), proxy) in &proxies {
        if *viewer == old || *peer == old {
            proxy.cut();
        }
    }
    let majority: Vec<(u64, SocketAddr)> =
        all.iter().copied().filter(|(id, _)| *id != old).collect();
    let new = poll(Duration::from_secs(20), || leader_among(&majority))
        .expect("the majority elects a new leader");
    assert_ne!(new, old);
    let new_addr = all[(new - 1) as usize].1;
    let newer = write_item(&[new_addr], 0, "after-cut", &never).expect("acknowledged");
    // The old leader cannot know `newer`: it must refuse (503), never answer 404.
    let path = format!("/api/items/{newer}");
    let mut refused = 0;
    for _ in 0..probes {
        match http(old_addr, "GET", &path, "", "") {
            Some((503, _)) | None => refused += 1,
            Some((code, body)) => panic!("the isolated old leader answered {code}: {body}"),
        }
    }
    assert_eq!(refused, probes);
    // A stale read stays available on request.
    let stale = format!("/api/items/{first}?consistency=stale");
    let (code, _) = http(old_addr, "GET", &stale, "", "").expect("stale read");
    assert_eq!(code, 200);
    for proxy in proxies.values() {
        proxy.heal();
    }
    let acked = BTreeSet::from([first, newer]);
    assert_readable(old_addr, &acked);
}

/// One pipelined request: method, target and JSON body (empty: none).
struct Pipelined {
    method: &'static str,
    target: String,
    body: String,
}

impl Pipelined {
    fn get(target: String) -> Pipelined {
        Pipelined {
            method: "GET",
            target,
            body: String::new(),
        }
    }
}

/// Sends `requests` in one write on one connection (the last one closes it) and returns the
/// answers in the order they came: status and body.
fn pipeline(addr: SocketAddr, requests: &[Pipelined]) -> Vec<(u16, String)> {
    let mut bytes = String::new();
    for (k, request) in requests.iter().enumerate() {
        let close = if k + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        bytes += &format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{close}\r\n{}",
            request.method,
            request.target,
            request.body.len(),
            request.body
        );
    }
    let text = exchange(addr, bytes.as_bytes()).expect("the node answers the pipeline");
    let answers = split_responses(&text);
    assert_eq!(
        answers.len(),
        requests.len(),
        "one answer per pipelined request from {addr}: {text}"
    );
    answers
}

/// Splits a stream of `Content-Length` framed HTTP/1.1 responses.
fn split_responses(mut text: &str) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    while let Some((head, rest)) = text.split_once("\r\n\r\n") {
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        });
        let (Some(status), Some(length)) = (status, length) else {
            panic!("an answer without a status or a Content-Length: {head}");
        };
        assert!(rest.len() >= length, "a truncated body after {head}");
        answers.push((status, rest[..length].to_string()));
        text = &rest[length..];
    }
    assert!(text.is_empty(), "bytes after the last answer: {text}");
    answers
}

/// A node's read counters: linearizable reads that joined a ReadIndex batch, and batches.
fn read_counters(addr: SocketAddr) -> (u64, u64) {
    let (code, body) = http(addr, "GET", "/_lithair/cluster", "", "").expect("status");
    assert_eq!(code, 200, "{body}");
    let reads = json_number(&body, "batched_reads").expect("batched_reads in the status");
    let batches = json_number(&body, "read_batches").expect("read_batches in the status");
    (reads, batches)
}

/// The leader's and one follower's HTTP addresses, once all nodes agree on the leader.
fn leader_and_follower(cluster: &Cluster) -> [SocketAddr; 2] {
    let leader = wait_leader(cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    [cluster.nodes[leader].http, cluster.nodes[follower].http]
}

#[test]
fn pipelined_reads_answer_in_order_and_share_read_index_batches_on_leader_and_follower() {
    let cluster = start_cluster("pipelined-reads");
    let targets = leader_and_follower(&cluster);
    let never = AtomicBool::new(false);
    let ids: Vec<u64> = (0..PIPELINED_ITEMS)
        .map(|k| write_item(&targets, 0, &format!("piped-{k}"), &never).expect("acknowledged"))
        .collect();
    let missing = ids.iter().max().expect("items") + 1_000;
    for addr in targets {
        // Every fifth read asks for an item that does not exist: answers differ by position.
        let wanted: Vec<Option<u64>> = (0..PIPELINED_READS)
            .map(|k| (k % 5 != 4).then_some(ids[k % ids.len()]))
            .collect();
        let requests: Vec<Pipelined> = wanted
            .iter()
            .map(|id| Pipelined::get(format!("/api/items/{}", id.unwrap_or(missing))))
            .collect();
        // Sharing is up to the scheduler: a read joins the batch in flight unless that batch
        // already asked for its confirmation. On a starved machine (the reactor preempted after
        // every read while each batch's round completes) each read may take a batch of its
        // own, so the pipeline is sent again, a few times at most, before that is a failure.
        let mut batches_seen = Vec::new();
        for _ in 0..PIPELINE_ATTEMPTS_MAX {
            let (reads_before, batches_before) = read_counters(addr);
            let answers = pipeline(addr, &requests);
            let (reads_after, batches_after) = read_counters(addr);
            for (k, (id, (code, body))) in wanted.iter().zip(&answers).enumerate() {
                match id {
                    Some(id) => {
                        assert_eq!(*code, 200, "read {k} of item {id} on {addr}: {body}");
                        assert_eq!(json_number(body, "id"), Some(*id), "read {k} on {addr}");
                    }
                    None => assert_eq!(*code, 404, "read {k} of a missing item on {addr}: {body}"),
                }
            }
            let (reads, batches) = (reads_after - reads_before, batches_after - batches_before);
            assert!(
                reads >= PIPELINED_READS as u64,
                "every pipelined read joined a batch on {addr}: {reads}"
            );
            batches_seen.push(batches);
            if batches < PIPELINED_READS as u64 {
                break;
            }
        }
        assert!(
            batches_seen.iter().any(|&b| b < PIPELINED_READS as u64),
            "{PIPELINED_READS} pipelined reads never shared a ReadIndex batch on {addr}: \
             {batches_seen:?} batches in {} attempts",
            batches_seen.len()
        );
    }
}

#[test]
fn a_pipelined_write_orders_the_reads_after_it_on_leader_and_follower() {
    let cluster = start_cluster("pipelined-write");
    let targets = leader_and_follower(&cluster);
    let never = AtomicBool::new(false);
    let mut last = write_item(&targets, 0, "first", &never).expect("acknowledged");
    for (k, addr) in targets.into_iter().enumerate() {
        // Nothing else writes: the item the pipelined write creates takes the next id.
        let next = last + 1;
        let name = format!("ordered-{k}");
        let mut requests = vec![Pipelined::get(format!("/api/items/{next}"))];
        requests.push(Pipelined {
            method: "POST",
            target: "/api/items".to_string(),
            body: format!("{{\"name\":\"{name}\"}}"),
        });
        requests.extend((0..PIPELINED_READS).map(|_| Pipelined::get(format!("/api/items/{next}"))));
        let answers = pipeline(addr, &requests);
        assert_eq!(
            answers[0].0, 404,
            "read before the write on {addr}: {}",
            answers[0].1
        );
        let (code, body) = &answers[1];
        assert_eq!(*code, 201, "the pipelined write on {addr}: {body}");
        assert_eq!(
            json_number(body, "id"),
            Some(next),
            "ids are assigned in order and nothing else writes"
        );
        for (k, (code, body)) in answers[2..].iter().enumerate() {
            assert_eq!(*code, 200, "read {k} after the write on {addr}: {body}");
            assert_eq!(
                json_string(body, "name"),
                Some(name.clone()),
                "read {k} on {addr}"
            );
        }
        last = next;
    }
}
