//! Scenario tests of the extensions beyond the paper's core (PreVote, CheckQuorum, transfer,
//! learners, ReadIndex, leases, snapshots, flow control), on a small in-memory cluster with
//! explicit, deterministic delivery.

use super::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

struct Cluster {
    nodes: BTreeMap<NodeId, RawNode<MemStorage>>,
    queue: VecDeque<Message>,
    cut: BTreeSet<NodeId>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    delivered: Vec<Message>,
}

fn test_config(id: NodeId) -> Config {
    let mut config = Config::new(id);
    config.election_ticks = 10;
    config.heartbeat_ticks = 1;
    config.seed = 7;
    config
}

impl Cluster {
    /// `voters` bootstrap the cluster; `spares` start empty, outside it.
    fn new(voters: &[NodeId], spares: &[NodeId], tweak: impl Fn(&mut Config)) -> Cluster {
        let mut nodes = BTreeMap::new();
        for &id in voters.iter().chain(spares) {
            let storage = if voters.contains(&id) {
                MemStorage::bootstrap(voters)
            } else {
                MemStorage::new(ConfState::default())
            };
            let mut config = test_config(id);
            tweak(&mut config);
            nodes.insert(id, RawNode::new(config, storage).expect("valid config"));
        }
        let mut cluster = Cluster {
            nodes,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            delivered: Vec::new(),
        };
        cluster.drain_all();
        cluster
    }

    fn entries(&self, id: NodeId) -> Vec<Entry> {
        self.nodes[&id].storage().held_entries().to_vec()
    }

    fn node(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).expect("node exists")
    }

    fn drain(&mut self, id: NodeId) {
        let raw = self.nodes.get_mut(&id).expect("node exists");
        while raw.has_ready() {
            let mut ready = raw.ready();
            self.queue.extend(ready.messages.drain(..));
            if let Some(snapshot) = ready.snapshot.take() {
                raw.storage_mut().apply_snapshot(snapshot);
            }
            raw.storage_mut().append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                raw.storage_mut().set_hard_state(hard_state);
            }
            self.queue.extend(ready.persisted_messages.drain(..));
            self.applied
                .entry(id)
                .or_default()
                .append(&mut ready.committed_entries);
            self.reads
                .entry(id)
                .or_default()
                .append(&mut ready.read_states);
            raw.advance();
        }
    }

    fn drain_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.drain(id);
        }
    }

    /// Delivers until quiet; messages to or from a cut node are lost.
    fn deliver(&mut self) {
        self.drain_all();
        for _ in 0..100_000 {
            let Some(message) = self.queue.pop_front() else {
                return;
            };
            if self.cut.contains(&message.from) || self.cut.contains(&message.to) {
                continue;
            }
            let to = message.to;
            self.delivered.push(message.clone());
            self.node(to).step(message);
            self.drain(to);
        }
        panic!("messages did not quiesce");
    }

    fn tick(&mut self, count: u32) {
        for _ in 0..count {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node(id).tick();
            }
            self.deliver();
        }
    }

    fn elect(&mut self, id: NodeId) {
        self.node(id).campaign();
        self.deliver();
        assert_eq!(
            self.node(id).status().role,
            Role::Leader,
            "node {id} should lead"
        );
    }

    fn status(&mut self, id: NodeId) -> Status {
        self.node(id).status()
    }
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_the_leader() {
    for pre_vote in [true, false] {
        let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = false;
        });
        cluster.elect(1);
        let term = cluster.status(1).term;
        cluster.cut.insert(3);
        cluster.tick(50);
        let isolated_term = cluster.status(3).term;
        cluster.cut.clear();
        cluster.tick(25);
        if pre_vote {
            assert_eq!(isolated_term, term, "a pre-vote does not raise the term");
            assert_eq!(
                (cluster.status(1).role, cluster.status(1).term),
                (Role::Leader, term)
            );
        } else {
            assert!(
                isolated_term > term,
                "without pre-vote the isolated node inflates its term"
            );
            assert!(
                cluster.status(1).term > term,
                "and deposes the leader on rejoin"
            );
        }
    }
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    cluster.cut.insert(1);
    cluster.tick(25);
    assert_eq!(cluster.status(1).role, Role::Follower);
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|&id| cluster.status(id).role == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "the majority side elected a new leader");
}

#[test]
fn leadership_transfer_hands_over_with_timeout_now() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    let term = cluster.status(1).term;
    cluster
        .node(1)
        .transfer_leader(2)
        .expect("leader can transfer");
    assert_eq!(
        cluster.node(1).propose(vec![vec![1]]),
        Err(RaftError::TransferInProgress)
    );
    cluster.deliver();
    assert!(cluster
        .delivered
        .iter()
        .any(|m| m.body == MessageBody::TimeoutNow));
    let status = cluster.status(2);
    assert_eq!((status.role, status.term), (Role::Leader, term + 1));
    assert_eq!(cluster.status(1).role, Role::Follower);
    assert!(cluster.node(2).transfer_leader(9).is_err(), "not a voter");
}

#[test]
fn a_learner_catches_up_and_is_promoted() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4], |_| {});
    cluster.elect(1);
    for k in 0..20u8 {
        cluster.node(1).propose(vec![vec![k]]).expect("leader");
    }
    cluster.deliver();
    cluster
        .node(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .expect("first change");
    assert_eq!(
        cluster
            .node(1)
            .propose_conf_change(ConfChange::AddLearner(5)),
        Err(RaftError::ConfChangePending),
        "one change at a time"
    );
    cluster.deliver();
    cluster.tick(3);
    let conf = cluster.status(1).conf;
    assert_eq!(conf.voters, vec![1, 2, 3, 4], "promoted automatically");
    assert_eq!(cluster.status(4).conf, conf);
    assert_eq!(cluster.entries(4), cluster.entries(1));
}

#[test]
fn a_new_leader_commits_its_noop_before_membership_changes() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4], |c| c.pre_vote = false);
    cluster.node(1).campaign();
    cluster.drain(1);
    // Deliver only the votes so node 1 leads without its no-op being acknowledged.
    let votes: Vec<Message> = cluster.queue.drain(..).collect();
    for vote in votes {
        let to = vote.to;
        cluster.node(to).step(vote);
    }
    let replies: Vec<Message> = cluster
        .nodes
        .values_mut()
        .flat_map(|raw| {
            let ready = raw.ready();
            let out = ready.persisted_messages.clone();
            raw.advance();
            out
        })
        .collect();
    for reply in replies {
        cluster.node(1).step(reply);
    }
    assert_eq!(cluster.status(1).role, Role::Leader);
    assert_eq!(
        cluster
            .node(1)
            .propose_conf_change(ConfChange::AddLearner(4)),
        Err(RaftError::ConfChangePending)
    );
}

#[test]
fn read_index_requests_share_one_heartbeat_round() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    cluster
        .node(1)
        .propose(vec![b"w".to_vec()])
        .expect("leader");
    cluster.deliver();
    let commit = cluster.status(1).commit;
    let before = cluster.delivered.len();
    for ctx in [1u8, 2, 3] {
        cluster.node(1).read_index(vec![ctx]).expect("leader");
    }
    cluster.deliver();
    let heartbeats = cluster.delivered[before..]
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
        .count();
    assert_eq!(heartbeats, 2, "one round to two followers for three reads");
    let reads = cluster.reads.remove(&1).unwrap_or_default();
    let expected: Vec<ReadState> = [1u8, 2, 3]
        .iter()
        .map(|&c| ReadState {
            index: commit,
            ctx: vec![c],
        })
        .collect();
    assert_eq!(reads, expected);
    // A follower forwards to the leader and gets the answer back.
    cluster.node(2).read_index(vec![9]).expect("leader known");
    cluster.deliver();
    assert_eq!(
        cluster.reads.remove(&2).unwrap_or_default(),
        vec![ReadState {
            index: commit,
            ctx: vec![9]
        }]
    );
}

#[test]
fn read_index_is_not_confirmed_by_a_minority() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    cluster.cut.insert(2);
    cluster.cut.insert(3);
    cluster.node(1).read_index(vec![1]).expect("leader");
    cluster.deliver();
    assert!(
        cluster.reads.get(&1).map_or(true, |r| r.is_empty()),
        "no quorum, no read"
    );
    cluster.cut.remove(&2);
    cluster.tick(1);
    assert_eq!(cluster.reads.get(&1).map(Vec::len), Some(1));
}

#[test]
fn lease_reads_skip_the_round_trip_while_the_lease_holds() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.read_mode = ReadMode::Lease);
    // Fresh voters honour a possible earlier lease for one election timeout: no early election.
    cluster.node(1).campaign();
    cluster.deliver();
    assert_eq!(cluster.status(1).role, Role::PreCandidate);
    cluster.tick(40);
    let leader = [1, 2, 3]
        .into_iter()
        .find(|&id| cluster.status(id).role == Role::Leader)
        .expect("a leader");
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    cluster.reads.clear();
    cluster.node(leader).read_index(vec![5]).expect("leader");
    cluster.drain(leader);
    assert_eq!(
        cluster.reads.get(&leader).map(Vec::len),
        Some(1),
        "served at once under the lease"
    );
    assert!(
        cluster.node(leader).transfer_leader(others[0]).is_err(),
        "transfer would break the lease"
    );
    cluster.cut.extend(others);
    cluster.tick(10);
    cluster.reads.clear();
    if cluster.status(leader).role == Role::Leader {
        cluster
            .node(leader)
            .read_index(vec![6])
            .expect("still leader");
        cluster.drain(leader);
        assert!(
            cluster.reads.get(&leader).map_or(true, |r| r.is_empty()),
            "lease expired"
        );
    }
}

#[test]
fn a_lagging_follower_gets_a_chunked_snapshot_and_resumes_after_losing_chunks() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.snapshot_chunk_bytes = 8);
    cluster.elect(1);
    cluster.cut.insert(3);
    for k in 0..10u8 {
        cluster.node(1).propose(vec![vec![k; 4]]).expect("leader");
        cluster.deliver();
    }
    let applied = cluster.status(1).commit;
    let conf = cluster.status(1).conf;
    cluster
        .node(1)
        .storage_mut()
        .compact(applied, conf, (0..60u8).collect());
    cluster.cut.clear();
    // Lose every other chunk once: the leader must resume from what the follower holds.
    let mut dropped = 0;
    for _ in 0..40 {
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.node(id).tick();
            cluster.drain(id);
        }
        while let Some(message) = cluster.queue.pop_front() {
            let chunk =
                matches!(message.body, MessageBody::InstallSnapshot { offset, .. } if offset == 16);
            if chunk && dropped < 2 {
                dropped += 1;
                continue;
            }
            let to = message.to;
            cluster.node(to).step(message);
            cluster.drain(to);
        }
    }
    assert_eq!(dropped, 2);
    let snapshot = cluster.node(3).storage().snapshot().expect("memory");
    assert_eq!(
        (snapshot.meta.index, snapshot.data),
        (applied, (0..60u8).collect::<Vec<u8>>())
    );
    assert_eq!(cluster.status(3).last_index, cluster.status(1).last_index);
}

#[test]
fn the_replication_window_bounds_appends_in_flight() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| {
        c.inflight_msgs_max = 2;
        c.msg_entries_max = 1;
    });
    cluster.elect(1);
    for k in 0..5u8 {
        cluster.node(1).propose(vec![vec![k]]).expect("leader");
    }
    let ready = cluster.node(1).ready();
    let to_two = ready
        .messages
        .iter()
        .filter(|m| {
            m.to == 2
                && matches!(&m.body, MessageBody::Append { entries, .. } if !entries.is_empty())
        })
        .count();
    assert_eq!(to_two, 2, "window of two messages of one entry each");
    assert!(ready
        .messages
        .iter()
        .all(|m| !matches!(m.body, MessageBody::AppendResponse { .. })));
    cluster.node(1).advance();
}

#[test]
fn fast_backtracking_skips_a_divergent_term_in_one_round_trip() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(2);
    // Node 2 leads and appends 50 entries only it holds (1 and 3 are cut off).
    cluster.cut.insert(1);
    cluster.cut.insert(3);
    for k in 0..50u8 {
        cluster.node(2).propose(vec![vec![k]]).expect("leader");
    }
    cluster.drain(2);
    cluster.queue.clear();
    cluster.cut.clear();
    cluster.cut.insert(2);
    cluster.tick(30);
    let leader = if cluster.status(1).role == Role::Leader {
        1
    } else {
        3
    };
    for k in 0..50u8 {
        cluster
            .node(leader)
            .propose(vec![vec![k, k]])
            .expect("leader");
    }
    cluster.deliver();
    cluster.cut.clear();
    let before = cluster.delivered.len();
    cluster.tick(2);
    let rejections = cluster.delivered[before..]
        .iter()
        .filter(|m| {
            m.from == 2 && matches!(m.body, MessageBody::AppendResponse { reject: true, .. })
        })
        .count();
    assert!(
        rejections <= 3,
        "{rejections} rejections to skip 50 divergent entries"
    );
    assert_eq!(cluster.entries(2), cluster.entries(leader));
}

#[test]
fn removing_the_leader_makes_it_step_down_once_committed() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    cluster
        .node(1)
        .propose_conf_change(ConfChange::Remove(1))
        .expect("leader");
    cluster.deliver();
    assert_eq!(cluster.status(1).role, Role::Follower);
    cluster.tick(30);
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|&id| cluster.status(id).role == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(cluster.status(leaders[0]).conf.voters, vec![2, 3]);
    assert_eq!(
        cluster.status(1).role,
        Role::Follower,
        "a removed node never campaigns"
    );
}

#[test]
fn heartbeats_do_not_wait_for_the_disk_but_acknowledgements_do() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    cluster.node(1).tick();
    let ready = cluster.node(1).ready();
    assert!(ready
        .messages
        .iter()
        .any(|m| matches!(m.body, MessageBody::Heartbeat { .. })));
    cluster.node(1).advance();
    let append = Message {
        from: 1,
        to: 2,
        term: cluster.status(1).term,
        body: MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
        },
    };
    cluster.node(2).step(append);
    let ready = cluster.node(2).ready();
    assert!(ready.messages.is_empty());
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendResponse { .. }
    ));
    cluster.node(2).advance();
}

#[test]
fn garbage_messages_are_dropped_without_panic() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    let term = cluster.status(1).term;
    let bad = [
        Message {
            from: 2,
            to: 3,
            term,
            body: MessageBody::TimeoutNow,
        },
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::Append {
                prev_index: u64::MAX,
                prev_term: 0,
                entries: vec![Entry {
                    term,
                    index: 0,
                    kind: EntryKind::Normal,
                    data: vec![],
                }],
                commit: 0,
            },
        },
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![Entry {
                    term: term + 5,
                    index: 1,
                    kind: EntryKind::Normal,
                    data: vec![],
                }],
                commit: 9,
            },
        },
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::InstallSnapshot {
                index: 99,
                snapshot_term: 1,
                conf: ConfState::default(),
                offset: 5,
                total_bytes: 3,
                data: vec![1],
            },
        },
        Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::AppendResponse {
                index: 1_000,
                reject: false,
                hint_index: 0,
                hint_term: 0,
            },
        },
        Message {
            from: 9,
            to: 1,
            term,
            body: MessageBody::HeartbeatResponse {
                read_round: u64::MAX,
            },
        },
    ];
    let before = cluster.entries(2).to_vec();
    for message in bad {
        let to = if message.to == 3 { 2 } else { message.to };
        cluster.node(to).step(Message { to, ..message });
        cluster.drain(to);
    }
    assert_eq!(cluster.entries(2), &before[..]);
    assert_eq!(cluster.status(1).role, Role::Leader);
}
