//! Real-process cluster, issue 7: a command's events travel, commit and apply whole. A command
//! larger than one Raft message's window (1 MiB) commits on every node and the digests agree;
//! a command over `engine::COMMAND_BYTES_MAX` is refused at submit with 413 problem+json (on
//! the leader and through a follower's forwarding) and leaves nothing behind, on any node.
//!
//! The crash in the middle of sending a big command is covered deterministically by the
//! Raft simulator (`tests/raft_sim.rs`, command atomicity checked for every seed) and the
//! core's scenario tests (`src/raft/tests.rs`). No timed assertions: waits are bounded polls.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use lithair::engine::{COMMAND_BYTES_MAX, COMMAND_EVENT_OVERHEAD_BYTES};
use std::net::SocketAddr;
use std::time::Duration;

/// Items per big command.
const BIG_COMMAND_ITEMS: usize = 40;
/// Name bytes of each item of a big command: 40 × 64 KiB ≈ 2.5 MiB of events, more than one
/// Append's 1 MiB window and less than a command may hold.
const BIG_COMMAND_NAME_BYTES: usize = 64 * 1024;

/// The item count a node serves (a stale read: the node's own applied state).
fn item_total(addr: SocketAddr) -> Option<u64> {
    let (code, body) = http(addr, "GET", "/api/items?take=1&consistency=stale", "", "")?;
    (code == 200).then(|| json_number(&body, "total")).flatten()
}

/// Posts a bulk command until a node answers something other than 503 (no leader yet).
fn bulk(addr: SocketAddr, count: usize, bytes: usize) -> (u16, String) {
    let path = format!("/api/bulk/{count}/{bytes}");
    poll(Duration::from_secs(20), || {
        http(addr, "POST", &path, "", "").filter(|(code, _)| *code != 503)
    })
    .expect("a node answers the bulk command")
}

#[test]
fn commands_commit_whole_and_oversized_ones_are_refused_with_413() {
    let cluster = start_cluster("atomic");
    let leader = wait_leader(&cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();

    // Larger than a message: sent whole past the window, committed and applied everywhere.
    for target in [leader, follower] {
        let (code, body) = bulk(addrs[target], BIG_COMMAND_ITEMS, BIG_COMMAND_NAME_BYTES);
        assert_eq!(code, 201, "big command through node {target}: {body}");
        assert_eq!(body.trim(), BIG_COMMAND_ITEMS.to_string());
    }
    let converged = wait_converged(&cluster);
    for addr in &addrs {
        assert_eq!(item_total(*addr), Some(2 * BIG_COMMAND_ITEMS as u64));
    }

    // Over the command limit: three items of a third of it each (plus envelopes) do not fit.
    let third = COMMAND_BYTES_MAX / 3;
    let over = 3 * (third + COMMAND_EVENT_OVERHEAD_BYTES);
    assert!(
        over > COMMAND_BYTES_MAX,
        "the test command must exceed the limit"
    );
    for target in [leader, follower] {
        let (code, body) = bulk(addrs[target], 3, third);
        assert_eq!(code, 413, "oversized command through node {target}: {body}");
        assert!(body.contains("more than the"), "a clear message: {body}");
        assert_eq!(
            json_number(&body, "max_bytes"),
            Some(COMMAND_BYTES_MAX as u64)
        );
    }
    // Nothing of it was stored: a later small write lands right after the big commands.
    let (code, body) = bulk(addrs[leader], 1, 1);
    assert_eq!(code, 201, "{body}");
    let after = wait_converged(&cluster);
    assert!(after[0].applied_event > converged[0].applied_event);
    for addr in &addrs {
        assert_eq!(item_total(*addr), Some(2 * BIG_COMMAND_ITEMS as u64 + 1));
    }
}

#[test]
fn a_single_node_refuses_an_oversized_command_alike() {
    // The limit is the engine's, so a command that could never replicate is refused on a
    // single node too (a data directory may later join a cluster's workload).
    let dir = std::env::temp_dir().join(format!("lithair-atomic-single-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let port = free_port();
    let mut node = Node {
        id: 1,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args: [
            "serve",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--data",
            &dir.join("d1").display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
        child: None,
        dir: dir.clone(),
    };
    node.spawn();
    let (code, body) = bulk(node.http, 3, COMMAND_BYTES_MAX / 3);
    assert_eq!(code, 413, "{body}");
    let (code, body) = bulk(node.http, 2, COMMAND_BYTES_MAX / 3);
    assert_eq!(code, 201, "two thirds fit: {body}");
    assert_eq!(item_total(node.http), Some(2));
    node.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
