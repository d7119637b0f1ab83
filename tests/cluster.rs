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

#[path = "support/bench_process.rs"]
mod bench_process;
#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use bench_process::{bench_server_binary, Reaped};
use cluster_harness::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn leader_kill_under_load_loses_no_acknowledged_write() {
    let mut cluster = start_cluster("kill");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
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
    let (code, _) =
        http(addrs[leaver], "POST", "/_lithair/cluster/leave", "", "").expect("leave answers");
    assert_eq!(code, 401, "an unsigned leave is refused");
    let headers = signed("POST", "/_lithair/cluster/leave");
    let (code, body) = http(
        addrs[leaver],
        "POST",
        "/_lithair/cluster/leave",
        &headers,
        "",
    )
    .expect("leave answers");
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

/// Three `bench_server` processes started as a cluster with issue 7's bootstrap command,
/// which names no secret (on loopback alone a cluster may go without one): the preload
/// (`--items`), which only a leader can write, happens once one is elected, every node serves
/// the items, the digests agree, and a create through a follower gets the next id. A fourth
/// node joins with issue 7's `--join` command, no secret either, and serves the items.
#[test]
fn three_bench_servers_form_a_cluster_with_their_items_preloaded() {
    let bench = bench_server_binary();
    let dir = std::env::temp_dir().join(format!("lithair-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let peers: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let https: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let map: Vec<String> = peers
        .iter()
        .enumerate()
        .take(3)
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect();
    let map = map.join(",");
    let mut children = Vec::new();
    for i in 0..3 {
        let child = std::process::Command::new(&bench)
            .env_remove("LITHAIR_CLUSTER_SECRET")
            .args(["serve", "--items", "50", "--cluster", &map])
            .args(["--node-id", &(i + 1).to_string()])
            .args([
                "--port",
                &https[i].to_string(),
                "--peer-port",
                &peers[i].to_string(),
            ])
            .arg("--data")
            .arg(dir.join(format!("n{}", i + 1)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn bench_server");
        children.push(Reaped(child));
    }
    let addrs: Vec<SocketAddr> = https
        .iter()
        .take(3)
        .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
        .collect();
    let item_50 = r#"{"id":50,"name":"item-50","price":62.5,"tags":["a","b"],"in_stock":true}"#;
    for (i, addr) in addrs.iter().enumerate() {
        let served = poll(Duration::from_secs(30), || {
            http(*addr, "GET", "/items/50", "", "").filter(|(status, _)| *status == 200)
        });
        assert_eq!(
            served.map(|(_, body)| body).as_deref(),
            Some(item_50),
            "node {}",
            i + 1
        );
    }
    let digests = poll(Duration::from_secs(30), || {
        let statuses: Option<Vec<Status>> = addrs.iter().map(|a| status(*a)).collect();
        let statuses = statuses?;
        let first = &statuses[0];
        statuses
            .iter()
            .all(|s| (s.applied_event, &s.digest) == (first.applied_event, &first.digest))
            .then(|| first.digest.clone())
    });
    assert!(digests.is_some(), "the three digests agree");
    let leader = poll(Duration::from_secs(10), || {
        status(addrs[0]).map(|s| s.leader)
    })
    .expect("a leader");
    let follower = addrs[if leader == 1 { 1 } else { 0 }];
    let body = r#"{"name":"widget","price":9.5,"tags":["a","b"],"in_stock":true}"#;
    let created = http(
        follower,
        "POST",
        "/items",
        "Content-Type: application/json\r\n",
        body,
    );
    let (status_code, created) = created.expect("create through a follower");
    assert_eq!(status_code, 201, "{created}");
    assert_eq!(json_number(&created, "id"), Some(51), "{created}");
    let join = addrs[0].to_string();
    let fourth = std::process::Command::new(&bench)
        .env_remove("LITHAIR_CLUSTER_SECRET")
        .args(["serve", "--node-id", "4", "--port", &https[3].to_string()])
        .args(["--peer-port", &peers[3].to_string(), "--join", &join])
        .arg("--data")
        .arg(dir.join("n4"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the fourth bench_server");
    children.push(Reaped(fourth));
    let fourth = SocketAddr::from(([127, 0, 0, 1], https[3]));
    let served = poll(Duration::from_secs(30), || {
        http(fourth, "GET", "/items/51", "", "").filter(|(status, _)| *status == 200)
    });
    assert!(
        served.is_some(),
        "the joined node serves what the cluster holds"
    );
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
}
