//! Real-process cluster operations: a fourth node joins a cluster under write load and
//! catches up; joining is idempotent and a joined node restarts from its peers file;
//! `cluster status|leave|transfer-leader` against running nodes; a follower that catches up
//! past a member's removal through an InstallSnapshot forgets that member's address; a node
//! down for good is removed through a live one and rejoins empty; and a partition of the
//! leader through TCP proxies the test controls (a new leader, the old one steps down, no
//! acknowledged write lost, one leader and equal digests after healing, and an old leader
//! restarting never makes a second leader in a term).
//!
//! No timed assertions: every wait is a bounded poll that fails only past its bound.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Snapshot interval of the join test's nodes, in events: several snapshots are taken
/// while the writers run before node 4 joins.
const JOIN_SNAPSHOT_EVERY_EVENTS: u64 = 100;

/// Writer threads posting items through every node until `stop`; acknowledged ids land in
/// `acked`.
fn start_writers(
    addrs: Vec<SocketAddr>,
    writers: usize,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<BTreeSet<u64>>>,
) -> Vec<JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (addrs, stop, acked) = (addrs.clone(), Arc::clone(stop), Arc::clone(acked));
            std::thread::spawn(move || {
                for n in 0.. {
                    let key = format!("load-{w}-{n}-{}", std::process::id());
                    let Some(id) = write_item(&addrs, w, &key, &stop) else {
                        break;
                    };
                    acked.lock().unwrap().insert(id);
                }
            })
        })
        .collect()
}

fn stop_writers(stop: &AtomicBool, writers: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
}

/// The `members` array of a node's status, as JSON.
fn member_list(addr: SocketAddr) -> Option<Vec<lithair::json::Value>> {
    let (code, body) = http(addr, "GET", "/_lithair/cluster", "", "")?;
    if code != 200 {
        return None;
    }
    let doc = lithair::json::parse(&body).ok()?;
    doc["members"].as_array().cloned()
}

/// The members a node's status lists: id and whether it votes.
fn members(addr: SocketAddr) -> Option<BTreeMap<u64, bool>> {
    member_list(addr)?
        .iter()
        .map(|member| Some((member["id"].as_u64()?, member["voter"].as_bool()?)))
        .collect()
}

/// Waits until every address reports the same applied event index and digest.
fn converged(addrs: &[SocketAddr]) -> Vec<Status> {
    poll(Duration::from_secs(30), || {
        let all: Vec<Status> = addrs.iter().map(|a| status(*a)).collect::<Option<_>>()?;
        let first = &all[0];
        all.iter()
            .all(|s| s.applied_event == first.applied_event && s.digest == first.digest)
            .then_some(all)
    })
    .expect("the nodes converge on one applied index and digest")
}

fn cli(args: &[&str]) -> bool {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_cli(&args)
}

#[test]
fn a_fourth_node_joins_a_loaded_cluster_and_operators_manage_it() {
    // Frequent snapshots: the leader compacts its log before node 4 joins, so node 4 (whose
    // log is empty) can only catch up through an InstallSnapshot.
    let options = NodeOptions {
        snapshot_every_events: Some(JOIN_SNAPSHOT_EVERY_EVENTS),
        ..NodeOptions::default()
    };
    let mut cluster = start_cluster_with("join", &options, &mut |_, _, real| real);
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writers = start_writers(addrs.clone(), 4, &stop, &acked);
    poll(Duration::from_secs(20), || {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .expect("the cluster commits writes");
    poll(Duration::from_secs(40), || {
        status(addrs[leader]).filter(|s| s.snapshot_index > 0)
    })
    .expect("the leader compacts its log to a snapshot");
    // Node 4 joins through a follower (forwarded to the leader) while writes continue.
    let via = addrs[(leader + 1) % addrs.len()];
    let port = free_port();
    let data = cluster.dir.join("d4").display().to_string();
    let peer_port = free_port();
    let joined_args = |join: bool| {
        let mut args = options.child_args();
        args.extend(fourth_args(port, &data, join.then_some((via, peer_port))));
        args
    };
    let mut fourth = Node {
        id: 4,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args: joined_args(true),
        child: None,
        dir: cluster.dir.clone(),
    };
    fourth.spawn();
    let voter = |addr: SocketAddr| members(addr).and_then(|m| m.get(&4).copied());
    poll(Duration::from_secs(40), || {
        voter(addrs[leader]).filter(|v| *v)
    })
    .expect("node 4 is added as a learner and promoted to voter once caught up");
    std::thread::sleep(Duration::from_millis(300));
    stop_writers(&stop, writers);
    let mut everyone = addrs.clone();
    everyone.push(fourth.http);
    let statuses = converged(&everyone);
    // The leader's log starts after its snapshot, so node 4 caught up through one.
    assert!(
        statuses[3].snapshots_installed >= 1,
        "node 4 caught up through an InstallSnapshot: {:?}",
        statuses[3]
    );
    eprintln!(
        "node 4 caught up: event index {}, digest {}, {} acknowledged writes",
        statuses[3].applied_event,
        statuses[3].digest,
        acked.lock().unwrap().len()
    );
    let acked: BTreeSet<u64> = acked.lock().unwrap().clone();
    assert_readable(fourth.http, &acked);
    // Joining again is a no-op success: the node restarts with the same `--join` and serves.
    fourth.kill();
    fourth.spawn();
    poll(Duration::from_secs(20), || {
        status(fourth.http).filter(|s| s.role == "follower" && s.leader != 0)
    })
    .expect("node 4 joins again (already a member) and follows");
    assert_eq!(voter(addrs[leader]), Some(true), "still a voter");
    // Restart without `--join`, `--node-id` or `--peer-port`: the peers file is enough.
    fourth.kill();
    fourth.args = joined_args(false);
    fourth.spawn();
    poll(Duration::from_secs(20), || {
        status(fourth.http).filter(|s| s.role == "follower" && s.leader != 0)
    })
    .expect("node 4 restarts as a member from its peers file");
    let never = AtomicBool::new(false);
    let id = write_item(&[fourth.http], 0, "through-4", &never).expect("write through node 4");
    assert_readable(fourth.http, &BTreeSet::from([id]));
    cluster.nodes.push(fourth);
    operators_manage_the_cluster(&mut cluster);
}

/// Node 4's `serve` arguments; with `join`, its id, a peer port and `--join` too.
fn fourth_args(port: u16, data: &str, join: Option<(SocketAddr, u16)>) -> Vec<String> {
    let mut args: Vec<String> = ["serve", "--port", &port.to_string(), "--bind", "127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "--data".into(),
        data.into(),
        "--cluster-secret".into(),
        SECRET.into(),
    ]);
    if let Some((via, peer_port)) = join {
        let peer_port = peer_port.to_string();
        args.extend([
            "--node-id".into(),
            "4".into(),
            "--peer-port".into(),
            peer_port,
        ]);
        args.extend(["--join".into(), via.to_string()]);
    }
    args
}

/// Removes member `id` through the live node at `via` (`cluster leave --node VIA --id N`)
/// and waits until the leader among the other nodes no longer lists it; returns those others
/// (id, HTTP address).
fn remove_member(cluster: &Cluster, via: SocketAddr, id: u64) -> Vec<(u64, SocketAddr)> {
    assert!(
        cli(&[
            "cluster",
            "leave",
            "--node",
            &via.to_string(),
            "--id",
            &id.to_string(),
            "--cluster-secret",
            SECRET,
        ]),
        "removing node {id} through {via}"
    );
    let rest: Vec<(u64, SocketAddr)> = cluster
        .nodes
        .iter()
        .filter(|node| node.id != id)
        .map(|node| (node.id, node.http))
        .collect();
    poll(Duration::from_secs(20), || {
        let leader = leader_among(&rest)?;
        let addr = rest.iter().find(|(member, _)| *member == leader)?.1;
        (!members(addr)?.contains_key(&id)).then_some(())
    })
    .expect("the node is no longer a member");
    rest
}

/// Waits until the leader among `rest` lists `id` as a voter (a rejoin caught up and was
/// promoted).
fn wait_voter(rest: &[(u64, SocketAddr)], id: u64) {
    poll(Duration::from_secs(40), || {
        let leader = leader_among(rest)?;
        let addr = rest.iter().find(|(member, _)| *member == leader)?.1;
        members(addr)?.get(&id).copied().filter(|voter| *voter)
    })
    .expect("the node rejoins and is promoted to voter");
}

/// `serve` arguments of node `id` coming back through `--join via` with the data directory
/// `data` (emptied or not), on the given HTTP and peer ports.
fn rejoin_args(
    id: &str,
    port: &str,
    peer_port: &str,
    data: &std::path::Path,
    via: SocketAddr,
) -> Vec<String> {
    let data = data.display().to_string();
    let via = via.to_string();
    [
        "serve",
        "--node-id",
        id,
        "--port",
        port,
        "--bind",
        "127.0.0.1",
        "--peer-port",
        peer_port,
        "--data",
        &data,
        "--join",
        &via,
        "--cluster-secret",
        SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `cluster status`, `transfer-leader` and `leave` through the command line, after checking
/// that unsigned operator requests are refused.
fn operators_manage_the_cluster(cluster: &mut Cluster) {
    let by_id: HashMap<u64, SocketAddr> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    let all: Vec<(u64, SocketAddr)> = by_id.iter().map(|(id, a)| (*id, *a)).collect();
    let leader = poll(Duration::from_secs(20), || leader_among(&all)).expect("one leader");
    let node_4 = by_id[&4].to_string();
    assert!(cli(&["cluster", "status", "--node", &node_4]));
    let (code, _) = http(
        by_id[&4],
        "POST",
        "/_lithair/cluster/transfer-leader",
        "",
        "",
    )
    .expect("transfer answers");
    assert_eq!(code, 401, "an unsigned transfer is refused");
    // Transfer leadership to node 4, asked through another follower.
    let asked = *by_id.keys().find(|&&id| id != leader && id != 4).unwrap();
    let asked = by_id[&asked].to_string();
    assert!(cli(&[
        "cluster",
        "transfer-leader",
        "--node",
        &asked,
        "--to",
        "4",
        "--cluster-secret",
        SECRET
    ]));
    let transferred = poll(Duration::from_secs(20), || {
        (leader_among(&all) == Some(4)).then_some(())
    });
    if transferred.is_none() {
        for (id, addr) in &all {
            eprintln!(
                "node {id}: {:?}",
                http(*addr, "GET", "/_lithair/cluster", "", "")
            );
        }
        panic!("node 4 does not lead after the transfer");
    }
    // Both ends of the hand-over say so in their logs (a leader change is never silent).
    let log_says = |id: u64, words: &str| {
        let node = cluster.nodes.iter().find(|node| node.id == id)?;
        let log = std::fs::read_to_string(node.log_path()).ok()?;
        log.contains(words).then_some(())
    };
    poll(Duration::from_secs(10), || {
        log_says(leader, &format!("node {leader} no longer leads"))
    })
    .expect("the old leader logs that it stepped down");
    poll(Duration::from_secs(10), || log_says(4, "node 4 leads term"))
        .expect("node 4 logs that it leads");
    let removed = a_follower_behind_a_removal_forgets_it_through_the_snapshot(cluster);
    // The leader leaves: it hands leadership over first, then is removed.
    assert!(
        !cli(&["cluster", "leave", "--node", &node_4]),
        "unsigned leave refused"
    );
    assert!(cli(&[
        "cluster",
        "leave",
        "--node",
        &node_4,
        "--cluster-secret",
        SECRET
    ]));
    let rest: Vec<(u64, SocketAddr)> = all
        .iter()
        .copied()
        .filter(|(id, _)| *id != 4 && *id != removed)
        .collect();
    let new_leader = poll(Duration::from_secs(20), || {
        let leader = leader_among(&rest)?;
        let listed = members(by_id[&leader])?;
        (!listed.contains_key(&4)).then_some(leader)
    })
    .expect("another node leads and node 4 is no longer a member");
    let never = AtomicBool::new(false);
    let id = write_item(&[by_id[&new_leader]], 0, "after-4-left", &never);
    assert!(id.is_some(), "the remaining voters commit");
}

/// With node 4 leading: a follower is stopped, another member is removed and the leader
/// compacts past the removal, so the stopped follower catches up through an InstallSnapshot
/// and never applies the removal entry. It must still forget the removed node's address (its
/// peers file no longer names it), or it would dial that node's old place after the node
/// rejoined elsewhere. Returns the removed node's id (its process is stopped).
fn a_follower_behind_a_removal_forgets_it_through_the_snapshot(cluster: &mut Cluster) -> u64 {
    let leader_addr = cluster
        .nodes
        .iter()
        .find(|n| n.id == 4)
        .expect("node 4")
        .http;
    let followers: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&k| cluster.nodes[k].id != 4)
        .collect();
    let (behind, removed) = (followers[0], followers[1]);
    let removed_id = cluster.nodes[removed].id;
    let peers_file = cluster
        .dir
        .join(format!("d{}", cluster.nodes[behind].id))
        .join(lithair::raft::node::PEER_BOOK_FILE_NAME);
    let names_removed = |text: &str| {
        text.lines()
            .any(|line| line.starts_with(&format!("peer {removed_id} ")))
    };
    let before = std::fs::read_to_string(&peers_file).expect("the follower's peers file");
    assert!(
        names_removed(&before),
        "the follower knows node {removed_id}: {before}"
    );
    let stopped_at = status(cluster.nodes[behind].http)
        .expect("the follower answers")
        .applied_event;
    cluster.nodes[behind].kill();
    let removed_text = removed_id.to_string();
    assert!(cli(&[
        "cluster",
        "leave",
        "--node",
        &leader_addr.to_string(),
        "--id",
        &removed_text,
        "--cluster-secret",
        SECRET
    ]));
    poll(Duration::from_secs(20), || {
        (!members(leader_addr)?.contains_key(&removed_id)).then_some(())
    })
    .expect("the member is removed while the follower is down");
    cluster.nodes[removed].kill();
    let never = AtomicBool::new(false);
    let mut written = 0;
    poll(Duration::from_secs(60), || {
        let key = format!("past-removal-{written}");
        written += 1;
        write_item(&[leader_addr], 0, &key, &never)?;
        let s = status(leader_addr)?;
        (written > 2 * JOIN_SNAPSHOT_EVERY_EVENTS && s.snapshot_index > stopped_at + 1)
            .then_some(())
    })
    .expect("the leader compacts past the removal");
    cluster.nodes[behind].spawn();
    let behind_addr = cluster.nodes[behind].http;
    poll(Duration::from_secs(40), || {
        let s = status(behind_addr)?;
        (s.snapshots_installed > 0 && s.applied_event > stopped_at).then_some(())
    })
    .expect("the stopped follower catches up through an InstallSnapshot");
    poll(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&peers_file).ok()?;
        (!names_removed(&text)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the follower forgot node {removed_id}'s address: {:?}",
            std::fs::read_to_string(&peers_file)
        )
    });
    removed_id
}

/// Node `viewer`'s proxy toward `peer` (its `--cluster` map points there).
type Proxies = HashMap<(u64, u64), Proxy>;

fn isolate(proxies: &Proxies, node: u64, cut: bool) {
    for ((viewer, peer), proxy) in proxies {
        if *viewer == node || *peer == node {
            if cut {
                proxy.cut();
            } else {
                proxy.heal();
            }
        }
    }
}

#[test]
fn a_partitioned_leader_steps_down_and_the_cluster_heals() {
    let mut proxies: Proxies = HashMap::new();
    let mut cluster = start_cluster_routed("partition", &mut |viewer, peer, real| {
        let proxy = Proxy::start(real);
        let addr = proxy.addr;
        proxies.insert((viewer, peer), proxy);
        addr
    });
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let all: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    let old = poll(Duration::from_secs(20), || leader_among(&all)).expect("a leader");
    let old_term = status(addrs[(old - 1) as usize]).expect("status").term;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writers = start_writers(addrs.clone(), 4, &stop, &acked);
    poll(Duration::from_secs(20), || {
        (acked.lock().unwrap().len() >= 30).then_some(())
    })
    .expect("the cluster commits writes");
    isolate(&proxies, old, true);
    let majority: Vec<(u64, SocketAddr)> =
        all.iter().copied().filter(|(id, _)| *id != old).collect();
    let new = poll(Duration::from_secs(20), || leader_among(&majority))
        .expect("the majority elects a new leader");
    assert_ne!(new, old);
    poll(Duration::from_secs(20), || {
        status(addrs[(old - 1) as usize]).filter(|s| s.role != "leader")
    })
    .expect("the isolated leader steps down (CheckQuorum)");
    let before = acked.lock().unwrap().len();
    poll(Duration::from_secs(20), || {
        (acked.lock().unwrap().len() >= before + 30).then_some(())
    })
    .expect("the majority keeps committing during the partition");
    isolate(&proxies, old, false);
    let mut leaders_by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let sample = |leaders_by_term: &mut BTreeMap<u64, BTreeSet<u64>>| {
        for (id, addr) in &all {
            if let Some(s) = status(*addr).filter(|s| s.role == "leader") {
                leaders_by_term.entry(s.term).or_default().insert(*id);
            }
        }
    };
    poll(Duration::from_secs(20), || {
        sample(&mut leaders_by_term);
        leader_among(&all)
    })
    .expect("one leader after healing");
    std::thread::sleep(Duration::from_millis(300));
    stop_writers(&stop, writers);
    converged(&addrs);
    let acked: BTreeSet<u64> = acked.lock().unwrap().clone();
    for addr in &addrs {
        assert_readable(*addr, &acked);
    }
    restart_never_makes_a_second_leader(&mut cluster, old, old_term, leaders_by_term);
}

/// The old leader restarts (kill -9, same data): it never leads a term someone else led.
fn restart_never_makes_a_second_leader(
    cluster: &mut Cluster,
    old: u64,
    old_term: u64,
    mut leaders_by_term: BTreeMap<u64, BTreeSet<u64>>,
) {
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let all: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    let sample = |leaders_by_term: &mut BTreeMap<u64, BTreeSet<u64>>| {
        for (id, addr) in &all {
            if let Some(s) = status(*addr).filter(|s| s.role == "leader") {
                leaders_by_term.entry(s.term).or_default().insert(*id);
            }
        }
    };
    let k = (old - 1) as usize;
    cluster.nodes[k].kill();
    cluster.nodes[k].spawn();
    poll(Duration::from_secs(20), || {
        sample(&mut leaders_by_term);
        status(addrs[k]).filter(|s| s.role == "follower" && s.leader != 0)
    })
    .expect("the old leader rejoins as a follower");
    sample(&mut leaders_by_term);
    for (term, leaders) in &leaders_by_term {
        assert_eq!(leaders.len(), 1, "two leaders in term {term}: {leaders:?}");
    }
    let final_term = status(addrs[k]).expect("status").term;
    assert!(
        final_term > old_term,
        "the term moved on after the partition"
    );
    converged(&addrs);
}

/// The cluster front plans on the head like the app's router: a route's own body limit is
/// answered 413 from the head alone (the body is never sent) on the leader and on a follower
/// (which would otherwise forward the request), also when the client waits for a
/// 100 Continue; a body within the limit is read and served on both.
#[test]
fn the_cluster_front_answers_a_route_body_limit_before_the_body() {
    let cluster = start_cluster("front-limit");
    let leader = wait_leader(&cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    let over = LIMITED_BODY_BYTES_MAX + 1;
    for (role, k) in [("leader", leader), ("follower", follower)] {
        let addr = cluster.nodes[k].http;
        for extra in ["", "Expect: 100-continue\r\n"] {
            // Over the route's limit (far below the server's); no body byte follows the head.
            let head = format!(
                "POST {LIMITED_PATH} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {over}\r\n\r\n"
            );
            let answer = exchange(addr, head.as_bytes())
                .unwrap_or_else(|| panic!("the {role} answers the head alone ({extra:?})"));
            assert!(
                answer.starts_with("HTTP/1.1 413"),
                "{role} ({extra:?}): {answer}"
            );
            assert!(!answer.contains("100 Continue"), "{role}: {answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "the unread body cannot be reused: {answer}"
            );
        }
        // Within the limit the body is read; a follower forwards it to the leader.
        let fits = "x".repeat(LIMITED_BODY_BYTES_MAX as usize);
        let answer = poll(Duration::from_secs(10), || {
            http(addr, "POST", LIMITED_PATH, "", &fits).filter(|(code, _)| *code != 503)
        });
        assert_eq!(
            answer,
            Some((200, LIMITED_BODY_BYTES_MAX.to_string())),
            "{role}"
        );
    }
}

/// The probes of a node whose cluster lost its quorum: `/health` says the process is up and
/// `/openapi.json` and `/docs` describe the API (they read no state) while `/ready` is 503
/// (the node can neither confirm a read nor take a write). Before, all four went through a
/// ReadIndex and answered 503, so a liveness probe would have restarted a healthy process.
#[test]
fn without_a_quorum_health_and_the_api_description_answer_and_ready_does_not() {
    let mut cluster = start_cluster("probes");
    let leader = wait_leader(&cluster);
    let survivor = (leader + 1) % cluster.nodes.len();
    for (k, node) in cluster.nodes.iter_mut().enumerate() {
        if k != survivor {
            node.kill();
        }
    }
    let addr = cluster.nodes[survivor].http;
    let refused = poll(Duration::from_secs(30), || {
        http(addr, "GET", "/ready", "", "").filter(|(code, _)| *code == 503)
    });
    assert!(refused.is_some(), "/ready is 503 once no leader is known");
    for path in ["/health", "/openapi.json", "/docs"] {
        let (code, body) = http(addr, "GET", path, "", "").expect("an answer");
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Application reads still refuse (linearizable) unless asked for the local state.
    let (code, _) = http(addr, "GET", "/api/items", "", "").expect("an answer");
    assert_eq!(code, 503);
    let (code, _) = http(addr, "GET", "/api/items?consistency=stale", "", "").expect("an answer");
    assert_eq!(code, 200);
}

/// A signed operator request to `addr`: status and body (`None`: no answer within the
/// harness's read timeout).
fn operator(addr: SocketAddr, target: &str, body: &str) -> Option<(u16, String)> {
    let headers: String =
        lithair::app::cluster::sign_request(SECRET.as_bytes(), "POST", target, body.as_bytes())
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
    http(addr, "POST", target, &headers, body)
}

/// A replayed operator request is refused (401), and so is one without its nonce. Operator slips get a final answer at once,
/// through a follower or the leader: removing a
/// node that is not a member (ids 0, 99, u64::MAX) is 409, not a 202 for a membership entry
/// that changed nothing; joining under a member's id from another address is 409 (joining
/// again from its own address stays a success); removing the last voter is 409 at once,
/// where the leader used to retry the refusal for `CONF_CHANGE_WAIT_MS` and then answer 503
/// (past the client's timeout; the CLI said it could not reach the node).
#[test]
fn operator_slips_get_a_final_answer_at_once() {
    let cluster = start_cluster("slips");
    let leader = wait_leader(&cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    let by_id: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    // The same signed request twice: the second is a replay (it used to be carried out again
    // for as long as its time was within the skew window, five minutes).
    let target = "/_lithair/cluster/transfer-leader?to=99";
    let headers: String =
        lithair::app::cluster::sign_request(SECRET.as_bytes(), "POST", target, b"")
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
    let addr = cluster.nodes[leader].http;
    let first = http(addr, "POST", target, &headers, "").expect("an answer");
    assert_eq!(first.0, 409, "not a voter: {first:?}");
    let again = http(addr, "POST", target, &headers, "").expect("an answer");
    assert_eq!(again.0, 401, "a replay: {again:?}");
    // Without its nonce a signature is refused, whatever it covers.
    let signed = lithair::app::cluster::sign_request(SECRET.as_bytes(), "POST", target, b"");
    let no_nonce: String = signed
        .iter()
        .filter(|(name, _)| name != lithair::app::cluster::AUTH_NONCE_HEADER)
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let answer = http(addr, "POST", target, &no_nonce, "").expect("an answer");
    assert_eq!(answer.0, 401, "no nonce: {answer:?}");
    for k in [follower, leader] {
        let addr = cluster.nodes[k].http;
        for node in [0, 99, u64::MAX] {
            let target = format!("/_lithair/cluster/leave?node={node}");
            let answer = poll(Duration::from_secs(10), || {
                operator(addr, &target, "").filter(|(code, _)| *code != 503)
            });
            let (code, body) = answer.expect("an answer");
            assert_eq!(code, 409, "leave of {node} via node {}: {body}", k + 1);
        }
    }
    let leader_id = cluster.nodes[leader].id;
    let member = by_id.iter().find(|(id, _)| *id != leader_id).unwrap().0;
    let own_peer = {
        let members = member_list(cluster.nodes[leader].http).expect("status members");
        let entry = members
            .iter()
            .find(|m| m["id"].as_u64() == Some(member))
            .expect("the member is listed");
        entry["peer"]
            .as_str()
            .expect("its peer address")
            .to_string()
    };
    let join = |peer: &str| {
        let body = format!("id={member}&peer={peer}");
        poll(Duration::from_secs(10), || {
            operator(
                cluster.nodes[follower].http,
                "/_lithair/cluster/join",
                &body,
            )
            .filter(|(code, _)| *code != 503)
        })
        .expect("a join answer")
    };
    let (code, body) = join("127.0.0.1:1");
    assert_eq!(code, 409, "a second node under id {member}: {body}");
    let (code, body) = join(&own_peer);
    assert_eq!(code, 200, "the member joining again: {body}");
    // Down to the leader alone, then the leader asked to leave.
    for (id, _) in by_id.iter().filter(|(id, _)| *id != leader_id) {
        let target = format!("/_lithair/cluster/leave?node={id}");
        let answer = poll(Duration::from_secs(20), || {
            operator(cluster.nodes[leader].http, &target, "").filter(|(code, _)| *code != 503)
        });
        assert_eq!(answer.map(|(code, _)| code), Some(202), "node {id} removed");
    }
    poll(Duration::from_secs(20), || {
        (member_list(cluster.nodes[leader].http)?.len() == 1).then_some(())
    })
    .expect("the leader is the only member");
    let answer = operator(cluster.nodes[leader].http, "/_lithair/cluster/leave", "");
    let (code, body) = answer.expect("an answer within the client's timeout");
    assert_eq!(code, 409, "the last voter: {body}");
}

/// A node whose first join is refused (here: the wrong cluster secret, a 401) exits with an
/// error and leaves no peers file: before, its data directory claimed a membership, so a
/// later `serve` of it without `--join` started as a member of a cluster that never took it
/// in (no peers, every write 503 for good), and a later failed `--join` was only a warning.
#[test]
fn a_refused_join_leaves_no_membership_behind() {
    let cluster = start_cluster("refused-join");
    wait_leader(&cluster);
    let data = cluster.dir.join("d4");
    let port = free_port();
    let via = Some((cluster.nodes[0].http, free_port()));
    let mut args = fourth_args(port, &data.display().to_string(), via);
    for arg in &mut args {
        if arg == SECRET {
            *arg = "not-the-cluster-secret".into();
        }
    }
    let mut fourth = Node {
        id: 4,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args,
        child: None,
        dir: cluster.dir.clone(),
    };
    fourth.spawn();
    let exit = poll(Duration::from_secs(20), || {
        fourth.child.as_mut()?.try_wait().ok()?
    });
    fourth.kill();
    assert!(
        exit.is_some_and(|status| !status.success()),
        "the refused node exits with an error: {exit:?}"
    );
    assert!(
        !lithair::app::cluster::has_membership(&data),
        "a refused join left a peers file in {}",
        data.display()
    );
}

#[test]
fn a_join_that_cannot_reach_its_cluster_says_so_while_it_retries() {
    let dir = std::env::temp_dir().join(format!("lithair-join-wait-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let port = free_port();
    // Nothing listens at `via`: the join is retried for JOIN_TIMEOUT_MS.
    let via = Some((SocketAddr::from(([127, 0, 0, 1], free_port())), free_port()));
    let data = dir.join("d4").display().to_string();
    let mut node = Node {
        id: 4,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args: fourth_args(port, &data, via),
        child: None,
        dir: dir.clone(),
    };
    node.spawn();
    // Before, the node said nothing for a minute and then gave up.
    let said = poll(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(node.log_path()).ok()?;
        log.lines()
            .find(|line| line.contains("waiting to join via"))
            .map(str::to_string)
    });
    node.kill();
    let line = said.expect("a progress line while the join is retried");
    assert!(line.contains("retrying for"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The operator's way out for a node that is down for good (its disk died, or its data
/// directory is damaged past `log repair`, which refuses cluster nodes): remove it through a
/// live member (`cluster leave --node LIVE --id N`), then start it again on an empty data
/// directory with `--join`. Before `--id`, `cluster leave` could only ask a node to remove
/// itself, so a dead node could not be removed from the command line at all.
#[test]
fn a_node_down_for_good_is_removed_through_a_live_one_and_rejoins_empty() {
    let mut cluster = start_cluster("replace");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
    let never = AtomicBool::new(false);
    let mut acked = BTreeSet::new();
    for k in 0..5 {
        let key = format!("before-{k}");
        acked.extend(write_item(&addrs, leader, &key, &never));
    }
    let dead = (leader + 1) % addrs.len();
    let dead_id = cluster.nodes[dead].id;
    let live = addrs[(leader + 2) % addrs.len()];
    cluster.nodes[dead].kill();
    let dead_id_text = dead_id.to_string();
    let rest = remove_member(&cluster, live, dead_id);
    let live_addrs: Vec<SocketAddr> = rest.iter().map(|(_, addr)| *addr).collect();
    for k in 0..5 {
        let key = format!("after-{k}");
        acked.extend(write_item(&live_addrs, 0, &key, &never));
    }
    assert_eq!(acked.len(), 10, "every write acknowledged");
    // Its data directory is gone for good: it comes back empty, through `--join`.
    let node = &mut cluster.nodes[dead];
    let data = node.dir.join(format!("d{dead_id}"));
    std::fs::remove_dir_all(&data).expect("wipe the dead node's data");
    let port = node.http.port().to_string();
    let peer_port = free_port().to_string();
    node.args = rejoin_args(&dead_id_text, &port, &peer_port, &data, live);
    node.spawn();
    let back = node.http;
    wait_voter(&rest, dead_id);
    converged(&addrs);
    assert_readable(back, &acked);
    // Every node dials it at its new address: each forgot the old one when it was removed
    // (a follower that kept it could not reach it after a failover).
    let new_peer = format!("127.0.0.1:{peer_port}");
    for (id, addr) in &rest {
        poll(Duration::from_secs(10), || {
            let listed = member_list(*addr)?;
            let member = listed
                .iter()
                .find(|member| member["id"].as_u64() == Some(dead_id))?;
            (member["peer"].as_str() == Some(new_peer.as_str())).then_some(())
        })
        .unwrap_or_else(|| panic!("node {id} dials node {dead_id} at {new_peer}"));
    }
}

/// A member whose data directory was emptied (its disk replaced, an operator's `rm -rf`) and
/// that is started again with `--join` under its old id and address: the leader has matched
/// its log far past where the new one ends, so it would take the node's rejections for stale
/// ones and never catch it up, and the node could vote again in terms it voted in. It used
/// to be told "joined" and then served an empty state, forever 0 applied. Now the join is
/// refused (409) naming the way out, and the node exits; removed first, it joins again.
#[test]
fn a_member_that_lost_its_data_is_refused_at_join_until_removed() {
    let mut cluster = start_cluster("lost-data");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
    let never = AtomicBool::new(false);
    let mut acked = BTreeSet::new();
    for k in 0..5 {
        acked.extend(write_item(&addrs, leader, &format!("before-{k}"), &never));
    }
    let lost = (leader + 1) % addrs.len();
    let lost_id = cluster.nodes[lost].id;
    let live = addrs[leader];
    // The leader has matched the follower's log: every write above was acknowledged by it
    // or by the third node, so wait until the follower reports them applied too.
    poll(Duration::from_secs(20), || {
        let (follower, first) = (status(addrs[lost])?, status(addrs[leader])?);
        (follower.applied_event > 0 && follower.digest == first.digest).then_some(())
    })
    .expect("the follower applied the writes");
    cluster.nodes[lost].kill();
    let node = &mut cluster.nodes[lost];
    let data = node.dir.join(format!("d{lost_id}"));
    let position = node.args.iter().position(|arg| arg == "--peer-port");
    let peer_port = node.args[position.expect("a peer port") + 1].clone();
    let (lost_id_text, port) = (lost_id.to_string(), node.http.port().to_string());
    let rejoin = |data: &std::path::Path| rejoin_args(&lost_id_text, &port, &peer_port, data, live);
    std::fs::remove_dir_all(&data).expect("empty the data directory");
    node.args = rejoin(&data);
    node.spawn();
    let exit = poll(Duration::from_secs(30), || {
        node.child.as_mut()?.try_wait().ok()?
    });
    node.kill();
    assert!(
        exit.is_some_and(|status| !status.success()),
        "a member that lost its data is refused: {exit:?}"
    );
    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    assert!(
        log.contains("409") && log.contains(&format!("cluster leave --id {lost_id}")),
        "{log}"
    );
    // The way out it names: remove it through a live member, then join again empty.
    let rest = remove_member(&cluster, live, lost_id);
    let node = &mut cluster.nodes[lost];
    std::fs::remove_dir_all(&data).expect("empty the data directory again");
    node.spawn();
    let back = node.http;
    wait_voter(&rest, lost_id);
    converged(&addrs);
    assert_readable(back, &acked);
}

/// The leader that served a join dies at once: only it held the new learner's peer address
/// (the others learn it from its status, every `PEER_RESOLVE_INTERVAL_MS`). The next leader
/// had the learner in its configuration but no way to reach it, and a learner never
/// campaigns, so it stayed a learner with nothing applied, for good. Now a node that is not a
/// voter yet repeats its (idempotent) join, and the new leader catches it up and promotes it.
#[test]
fn a_learner_whose_joining_leader_dies_is_reached_by_the_next_one() {
    let mut cluster = start_cluster("join-leader-dies");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
    let never = AtomicBool::new(false);
    let mut acked = BTreeSet::new();
    for k in 0..5 {
        acked.extend(write_item(&addrs, leader, &format!("before-{k}"), &never));
    }
    // Joined through the leader itself, so no follower served (or forwarded) the join.
    let port = free_port();
    let data = cluster.dir.join("d4").display().to_string();
    let mut fourth = Node {
        id: 4,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args: fourth_args(port, &data, Some((addrs[leader], free_port()))),
        child: None,
        dir: cluster.dir.clone(),
    };
    fourth.spawn();
    // The join is answered once the learner is in the configuration; the node serves after.
    poll(Duration::from_secs(20), || status(fourth.http)).expect("node 4 joined and serves");
    cluster.nodes[leader].kill();
    // The nodes alive: the two left of the first three, and node 4 (which may lead).
    let mut alive: Vec<(u64, SocketAddr)> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != leader)
        .map(|(_, node)| (node.id, node.http))
        .collect();
    alive.push((4, fourth.http));
    let promoted = poll(Duration::from_secs(40), || {
        let leader = leader_among(&alive)?;
        let addr = alive.iter().find(|(id, _)| *id == leader)?.1;
        members(addr)?.get(&4).copied().filter(|voter| *voter)
    });
    let fourth_http = fourth.http;
    cluster.nodes.push(fourth);
    assert!(
        promoted.is_some(),
        "a next leader is elected and node 4 is a voter it reaches"
    );
    let all: Vec<SocketAddr> = alive.iter().map(|(_, addr)| *addr).collect();
    converged(&all);
    assert_readable(fourth_http, &acked);
}

/// A member removed while it was down (`cluster leave --id N` through a live one) and then
/// started again on its old data directory: no leader ever sends to a non-member, so it used
/// to answer "no leader is known" forever without a word. Now it finds out from the members
/// it reaches, logs that it was removed and the way back (`--join` from an empty data
/// directory), and its `/_lithair/cluster` and `/ready` say so.
#[test]
fn a_removed_node_restarted_on_its_old_data_says_it_was_removed() {
    let mut cluster = start_cluster("removed-restart");
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let leader = wait_leader(&cluster);
    let never = AtomicBool::new(false);
    for k in 0..3 {
        write_item(&addrs, leader, &format!("before-{k}"), &never).expect("a write");
    }
    let gone = (leader + 1) % addrs.len();
    let gone_id = cluster.nodes[gone].id;
    let live = addrs[leader];
    cluster.nodes[gone].kill();
    remove_member(&cluster, live, gone_id);
    // Started again with the same flags on the same data.
    let node = &mut cluster.nodes[gone];
    node.spawn();
    let addr = node.http;
    let removed = poll(Duration::from_secs(30), || {
        let (code, body) = http(addr, "GET", "/_lithair/cluster", "", "")?;
        let doc = lithair::json::parse(&body).ok().filter(|_| code == 200)?;
        doc["removed"].as_str().map(str::to_string)
    });
    let log = std::fs::read_to_string(node.log_path()).expect("node log");
    assert!(removed.is_some(), "the status says it was removed: {log}");
    let (code, body) = http(addr, "GET", "/ready", "", "").expect("/ready answers");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("removed") && body.contains("--join"),
        "{body}"
    );
    assert!(
        log.contains(&format!("node {gone_id} is not a member")) && log.contains("--join"),
        "{log}"
    );
}

/// Writer threads posting items to `leader` alone until `stop`, never retrying: each answer
/// other than 200/201, and each request that got no answer, is counted in `failed`;
/// acknowledged writes in `acked`.
fn start_strict_writers(
    leader: SocketAddr,
    writers: usize,
    stop: &Arc<AtomicBool>,
    acked: &Arc<AtomicU64>,
    failed: &Arc<Mutex<Vec<String>>>,
) -> Vec<JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (stop, acked, failed) = (Arc::clone(stop), Arc::clone(acked), Arc::clone(failed));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let headers = format!(
                        "Content-Type: application/json\r\nIdempotency-Key: strict-{w}-{n}\r\n"
                    );
                    match http(leader, "POST", "/api/items", &headers, "{\"name\":\"x\"}") {
                        Some((200 | 201, _)) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failed.lock().unwrap().push(format!("{other:?}")),
                    }
                }
            })
        })
        .collect()
}

/// The leader's `sequencer_rebuilds` (see `Engine::sequencer_rebuilds`).
fn sequencer_rebuilds(addr: SocketAddr) -> u64 {
    let (_, body) = http(addr, "GET", "/_lithair/cluster", "", "").expect("status answer");
    json_number(&body, "sequencer_rebuilds").expect("sequencer_rebuilds in the status")
}

/// Regression (probe-join): a membership change appended on a leader under write load took
/// the index of a batch the sequencer had already sent to the Raft thread; that batch and
/// every one behind it were abandoned (their writes failed with a retryable error) and the
/// sequencer rebuilt its copy of the state, a clone of the whole state (with 1M items long
/// enough for the leader to lose its leadership). Now a change takes an index the sequencer
/// leaves free. Many writers hit the leader while node 4 joins (added as a learner, then
/// promoted) and is removed again: not one write fails and the sequencer never rebuilds.
#[test]
fn membership_changes_under_write_load_fail_no_write_and_rebuild_nothing() {
    let mut cluster = start_cluster("conf-slot");
    let leader = wait_leader(&cluster);
    let leader_addr = cluster.nodes[leader].http;
    let term = status(leader_addr).expect("leader status").term;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let writers = start_strict_writers(leader_addr, 16, &stop, &acked, &failed);
    poll(Duration::from_secs(20), || {
        (acked.load(Ordering::Relaxed) >= 200).then_some(())
    })
    .expect("the leader commits writes");
    let (port, peer_port) = (free_port(), free_port());
    let data = cluster.dir.join("d4").display().to_string();
    let mut fourth = Node {
        id: 4,
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        args: fourth_args(port, &data, Some((leader_addr, peer_port))),
        child: None,
        dir: cluster.dir.clone(),
    };
    fourth.spawn();
    cluster.nodes.push(fourth);
    let everyone: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.http)).collect();
    wait_voter(&everyone, 4);
    let joined = acked.load(Ordering::Relaxed);
    poll(Duration::from_secs(20), || {
        (acked.load(Ordering::Relaxed) >= joined + 200).then_some(())
    })
    .expect("writes go on after the join");
    let rest = remove_member(&cluster, leader_addr, 4);
    let removed = acked.load(Ordering::Relaxed);
    poll(Duration::from_secs(20), || {
        (acked.load(Ordering::Relaxed) >= removed + 200).then_some(())
    })
    .expect("writes go on after the removal");
    stop_writers(&stop, writers);
    let failed = failed.lock().unwrap().clone();
    let after = status(leader_addr).expect("leader status");
    eprintln!(
        "{} acknowledged writes, {} failed, term {term} -> {}, {} members left",
        acked.load(Ordering::Relaxed),
        failed.len(),
        after.term,
        rest.len()
    );
    assert_eq!(
        sequencer_rebuilds(leader_addr),
        0,
        "the sequencer never rebuilt"
    );
    assert!(failed.is_empty(), "no write failed: {failed:?}");
    assert_eq!(
        (after.role.as_str(), after.term),
        ("leader", term),
        "one leadership"
    );
}

/// Each member's `(match_index, lag)` in a node's status, the node the figures come from
/// (`progress_from`), parsed with the crate's JSON; `None` for a figure the node reports
/// as null.
type Progress = (Option<u64>, BTreeMap<u64, (Option<u64>, Option<u64>)>);

/// How long the progress test leaves a member down before it reads how long ago the leader
/// last heard from it, in milliseconds.
const DOWN_FOR_MS: u64 = 600;

fn progress(addr: SocketAddr, target: &str) -> Option<Progress> {
    let (code, body) = http(addr, "GET", target, "", "")?;
    if code != 200 {
        return None;
    }
    let doc = lithair::json::parse(&body).ok()?;
    let from = doc.get("progress_from")?;
    let members = doc["members"].as_array()?.iter().map(|member| {
        let figure = |name: &str| member.get(name).and_then(|value| value.as_u64());
        Some((
            member["id"].as_u64()?,
            (figure("match_index"), figure("lag")),
        ))
    });
    Some((from.as_u64(), members.collect::<Option<_>>()?))
}

/// Only a leader tracks how far each member matches its log: a follower's
/// `/_lithair/cluster` carries the members' `match_index` and `lag` as its leader reports them
/// (`progress_from` names it), real figures (a member that is down lags by what was written
/// since, and was last heard from before it went down), not zeros; `consistency=stale` keeps the answer local, with those figures null; and
/// with its leader killed a follower answers without them rather than with the dead one's.
#[test]
fn a_follower_reports_each_members_progress_as_its_leader_sees_it() {
    let mut cluster = start_cluster("progress");
    let leader = wait_leader(&cluster);
    let leader_id = cluster.nodes[leader].id;
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let never = AtomicBool::new(false);
    for n in 0..5 {
        write_item(&addrs, 0, &format!("warm-{n}"), &never).expect("a write commits");
    }
    let reporter = (leader + 1) % addrs.len();
    let down = (leader + 2) % addrs.len();
    let down_id = cluster.nodes[down].id;
    // Caught up: every member matches the leader's last index, on the leader's own answer and
    // on a follower's (from the leader).
    for at in [leader, reporter] {
        let (from, members) = poll(Duration::from_secs(20), || {
            let (from, members) = progress(addrs[at], "/_lithair/cluster")?;
            members
                .values()
                .all(|&(matched, lag)| matched.is_some() && lag == Some(0))
                .then_some((from, members))
        })
        .expect("every member caught up, as the leader reports it");
        assert_eq!(from, Some(leader_id), "node {at}: {members:?}");
        assert_eq!(members.len(), 3, "{members:?}");
    }
    let (from, members) =
        progress(addrs[reporter], "/_lithair/cluster?consistency=stale").expect("a local status");
    assert_eq!(from, None, "a local answer names no source");
    assert!(
        members.values().all(|figures| *figures == (None, None)),
        "a follower alone knows no member's progress: {members:?}"
    );
    // One follower down: the writes since are what it lags by, as the other follower says.
    let (_, before) = progress(addrs[leader], "/_lithair/cluster").expect("leader status");
    let down_matched = before[&down_id].0.expect("the leader tracks every member");
    cluster.nodes[down].kill();
    let live = [addrs[leader], addrs[reporter]];
    for n in 0..7 {
        write_item(&live, 0, &format!("while-down-{n}"), &never).expect("a quorum commits");
    }
    let (from, members) = progress(addrs[reporter], "/_lithair/cluster").expect("status");
    assert_eq!(from, Some(leader_id));
    let (matched, lag) = members[&down_id];
    assert_eq!(
        matched,
        Some(down_matched),
        "the member that is down matched no more"
    );
    // Log entries, not writes: one entry may carry several events.
    assert!(
        lag.is_some_and(|lag| lag > 0),
        "the member that is down lags behind the writes since: {members:?}"
    );
    let (_, at_leader) = progress(addrs[leader], "/_lithair/cluster").expect("leader status");
    assert_eq!(
        members[&down_id], at_leader[&down_id],
        "the follower reports what the leader does of a member that does not move"
    );
    // How long the leader has not heard from each member: the one that is down grows past
    // the time since its kill, the live one is heard every heartbeat; only the others are
    // fed (a way of replication each), not the leader itself.
    std::thread::sleep(Duration::from_millis(DOWN_FOR_MS));
    let (code, body) = http(addrs[reporter], "GET", "/_lithair/cluster", "", "").expect("status");
    assert_eq!(code, 200, "{body}");
    let doc = lithair::json::parse(&body).expect("a JSON status");
    let member = |id: u64| {
        let members = doc["members"].as_array().expect("members");
        let found = members.iter().find(|m| m["id"].as_u64() == Some(id));
        found.expect("every member is listed").clone()
    };
    let reporter_id = cluster.nodes[reporter].id;
    let down_heard = member(down_id)["last_heard_ms"].as_u64();
    let live_heard = member(reporter_id)["last_heard_ms"].as_u64();
    assert!(
        down_heard.is_some_and(|ms| ms >= DOWN_FOR_MS),
        "the member that is down was last heard {down_heard:?} ms ago: {body}"
    );
    assert!(
        live_heard.is_some_and(|ms| ms < down_heard.unwrap_or(0)),
        "a live member was last heard {live_heard:?} ms ago: {body}"
    );
    for id in [down_id, reporter_id] {
        let way = member(id)["replication"].as_str().map(str::to_string);
        assert!(
            matches!(way.as_deref(), Some("probe" | "replicate")),
            "node {id}: {way:?}"
        );
    }
    assert!(member(leader_id)["replication"].is_null(), "{body}");
    assert!(member(leader_id)["last_heard_ms"].is_null(), "{body}");
    // The same figures for a scraper, from each node's own view: the leader's metrics carry
    // the members' lag and silence, a follower's only its own Raft figures.
    let metrics = |at: usize| {
        let (code, text) = http(addrs[at], "GET", "/_lithair/metrics", "", "").expect("metrics");
        assert_eq!(code, 200, "{text}");
        text
    };
    let sample = |text: &str, series: &str| {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{series} ")));
        line.and_then(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
    };
    let at_leader = metrics(leader);
    assert_eq!(
        sample(&at_leader, "lithair_raft_is_leader"),
        Some(1.0),
        "{at_leader}"
    );
    let down_series = format!("lithair_raft_member_lag{{member=\"{down_id}\"}}");
    assert!(
        sample(&at_leader, &down_series).is_some_and(|lag| lag > 0.0),
        "{at_leader}"
    );
    let silent = format!("lithair_raft_member_last_heard_seconds{{member=\"{down_id}\"}}");
    assert!(
        sample(&at_leader, &silent).is_some_and(|s| s * 1000.0 >= DOWN_FOR_MS as f64),
        "{at_leader}"
    );
    assert!(sample(&at_leader, "lithair_records{model=\"Item\"}").is_some_and(|n| n >= 12.0));
    let at_reporter = metrics(reporter);
    assert_eq!(sample(&at_reporter, "lithair_raft_is_leader"), Some(0.0));
    assert_eq!(
        sample(&at_reporter, "lithair_raft_leader"),
        Some(leader_id as f64)
    );
    assert!(
        !at_reporter.contains("lithair_raft_member_lag{"),
        "{at_reporter}"
    );
    // The leader killed: until another one leads, the follower has nobody to ask.
    cluster.nodes[leader].kill();
    let (from, members) = progress(addrs[reporter], "/_lithair/cluster").expect("status");
    assert_ne!(from, Some(leader_id), "the figures of a dead leader");
    if from.is_none() {
        assert!(members.values().all(|figures| *figures == (None, None)));
    }
}
