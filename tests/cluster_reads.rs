//! Real-process linearizable reads with `--read-mode lease`: the leader serves reads from the
//! lease its Raft thread publishes (inline on the reactor when nothing is left to apply),
//! followers ask the leader for a read index.
//!
//! - every acknowledged write reads back at once on every node (no polling);
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
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Reads of the newer write sent to the isolated old leader after it was acknowledged.
const STALE_PROBE_READS: usize = 10;

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

#[test]
fn an_isolated_leader_never_serves_a_stale_read() {
    let mut proxies: HashMap<(u64, u64), Proxy> = HashMap::new();
    let mut cluster = start_cluster_routed("lease-stale", &mut |viewer, peer, real| {
        let proxy = Proxy::start(real);
        let addr = proxy.addr;
        proxies.insert((viewer, peer), proxy);
        addr
    });
    with_lease_reads(&mut cluster);
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
    for _ in 0..STALE_PROBE_READS {
        match http(old_addr, "GET", &path, "", "") {
            Some((503, _)) | None => refused += 1,
            Some((code, body)) => panic!("the isolated old leader answered {code}: {body}"),
        }
    }
    assert_eq!(refused, STALE_PROBE_READS);
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
