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
