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
    /// Per node: the snapshot chunks received so far (a driver's temporary file).
    incoming: BTreeMap<NodeId, Vec<u8>>,
    /// Per node: the hard state a `LogStorage` would hold in its file, written only when the
    /// term or vote changes or a Ready says its commit passed a membership change (the
    /// commit is otherwise a hint in memory).
    durable_hard_state: BTreeMap<NodeId, HardState>,
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
            incoming: BTreeMap::new(),
            durable_hard_state: BTreeMap::new(),
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
            let incoming = self.incoming.entry(id).or_default();
            for chunk in ready.snapshot_chunks.drain(..) {
                if chunk.offset == 0 {
                    incoming.clear();
                }
                assert_eq!(chunk.offset, incoming.len() as u64, "contiguous chunks");
                incoming.extend_from_slice(&chunk.data);
            }
            if let Some(mut snapshot) = ready.snapshot.take() {
                snapshot.data = std::mem::take(incoming);
                raw.storage_mut().apply_snapshot(snapshot);
            }
            raw.storage_mut().append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                raw.storage_mut().set_hard_state(hard_state);
                let file = self.durable_hard_state.entry(id).or_default();
                if (hard_state.term, hard_state.vote) != (file.term, file.vote)
                    || ready.commit_passed_conf_change
                {
                    *file = hard_state;
                }
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

    /// The leader among `ids` (panics if none leads) and the rest of `ids`.
    fn leader_and_others(&mut self, ids: &[NodeId]) -> (NodeId, Vec<NodeId>) {
        let leader = ids
            .iter()
            .copied()
            .find(|&id| self.status(id).role == Role::Leader)
            .expect("a leader");
        let others = ids.iter().copied().filter(|&id| id != leader).collect();
        (leader, others)
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
        cluster.reads.get(&1).is_none_or(|r| r.is_empty()),
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
    let (leader, others) = cluster.leader_and_others(&[1, 2, 3]);
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
            cluster.reads.get(&leader).is_none_or(|r| r.is_empty()),
            "lease expired"
        );
    }
}

#[test]
fn a_lease_read_needs_a_lease_mode_leader_with_a_live_lease() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.read_mode = ReadMode::Lease);
    cluster.tick(40);
    let (leader, others) = cluster.leader_and_others(&[1, 2, 3]);
    let commit = cluster.status(leader).commit;
    let read = cluster.node(leader).lease_read().expect("a live lease");
    assert_eq!(read.index, commit);
    let round = read
        .round
        .expect("three voters: the lease rests on a round");
    assert!(round <= cluster.node(leader).read_round());
    for &follower in &others {
        assert_eq!(
            cluster.node(follower).lease_read(),
            None,
            "followers hold no lease"
        );
    }
    // Cut off from its quorum, the leader loses the lease before the followers may elect.
    cluster.cut.extend(others.iter().copied());
    let mut lapsed_after = None;
    for tick in 1..=10u32 {
        cluster.tick(1);
        if cluster.node(leader).lease_read().is_none() {
            lapsed_after = Some(tick);
            break;
        }
    }
    let lapsed_after = lapsed_after.expect("the lease lapses without acknowledgements");
    assert!(u64::from(lapsed_after) <= crate::raft::lease_ticks(10));
    // ReadIndex mode never grants a lease.
    let mut safe = Cluster::new(&[1, 2, 3], &[], |_| {});
    safe.elect(1);
    assert_eq!(safe.node(1).lease_read(), None);
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
    drop(
        cluster
            .node(1)
            .storage_mut()
            .compact(applied, conf, (0..60u8).collect()),
    );
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
    let snapshot = cluster.node(3).storage().snapshot().clone();
    assert_eq!(
        (snapshot.meta.index, snapshot.data),
        (applied, (0..60u8).collect::<Vec<u8>>())
    );
    assert_eq!(cluster.status(3).last_index, cluster.status(1).last_index);
    // The leader pulled the snapshot from storage a chunk at a time, never whole.
    assert_eq!(cluster.node(1).storage().snapshot_read_max(), 8);
}

/// One round: every node ticks and sends, then everything queued is delivered, except
/// messages to or from a cut node and InstallSnapshot messages past `chunks_max` (lost).
/// Returns the InstallSnapshot messages delivered, as (index, offset).
fn round_of_chunks(cluster: &mut Cluster, chunks_max: usize) -> Vec<(u64, u64)> {
    let mut chunks = Vec::new();
    let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
    for id in ids {
        cluster.node(id).tick();
        cluster.drain(id);
    }
    while let Some(message) = cluster.queue.pop_front() {
        if cluster.cut.contains(&message.from) || cluster.cut.contains(&message.to) {
            continue;
        }
        if let MessageBody::InstallSnapshot { index, offset, .. } = message.body {
            if chunks.len() == chunks_max {
                continue;
            }
            chunks.push((index, offset));
        }
        let to = message.to;
        cluster.node(to).step(message);
        cluster.drain(to);
    }
    chunks
}

#[test]
fn a_newer_snapshot_mid_transfer_restarts_the_install_with_it_and_never_mixes_the_two() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.snapshot_chunk_bytes = 8);
    cluster.elect(1);
    cluster.cut.insert(3);
    let write = |cluster: &mut Cluster, k: u8| {
        cluster.node(1).propose(vec![vec![k; 4]]).expect("leader");
        cluster.deliver();
    };
    for k in 0..10u8 {
        write(&mut cluster, k);
    }
    let (first, conf) = (cluster.status(1).commit, cluster.status(1).conf);
    let old: Vec<u8> = (0..64u8).collect();
    drop(
        cluster
            .node(1)
            .storage_mut()
            .compact(first, conf.clone(), old.clone()),
    );
    cluster.cut.clear();
    // Node 3 gets the first chunks of the snapshot at `first`...
    let mut sent = Vec::new();
    while sent.len() < 2 {
        sent.extend(round_of_chunks(&mut cluster, 2 - sent.len()));
    }
    assert!(sent.iter().all(|&(index, _)| index == first));
    assert!(
        sent.len() < old.len() / 8,
        "the transfer is not over: {sent:?}"
    );
    // ...then, cut off again, misses the writes of a newer snapshot that compacts the log
    // past the first one.
    cluster.cut.insert(3);
    for k in 10..20u8 {
        write(&mut cluster, k);
    }
    let newer = cluster.status(1).commit;
    let data: Vec<u8> = (100..180u8).collect();
    drop(
        cluster
            .node(1)
            .storage_mut()
            .compact(newer, conf, data.clone()),
    );
    cluster.cut.clear();
    // From now on only the newer snapshot goes out, from offset 0 (node 3's incoming file
    // restarts there: `Cluster::drain` checks that chunks are contiguous).
    let mut after = Vec::new();
    for _ in 0..40 {
        after.extend(round_of_chunks(&mut cluster, usize::MAX));
    }
    assert!(
        after.iter().all(|&(index, _)| index == newer),
        "a chunk of the replaced snapshot went out: {after:?}"
    );
    assert_eq!(after.first(), Some(&(newer, 0)));
    let installed = cluster.node(3).storage().snapshot().clone();
    assert_eq!((installed.meta.index, installed.data), (newer, data));
    assert_eq!(cluster.status(3).last_index, cluster.status(1).last_index);
    assert_eq!(cluster.node(1).storage().snapshot_read_max(), 8);
}

/// What node `id` did with one message: the snapshot chunks it handed out, its
/// SnapshotResponses (received bytes, done) and whether it installed a snapshot.
fn step_snapshot_chunk(
    cluster: &mut Cluster,
    id: NodeId,
    message: Message,
) -> (Vec<SnapshotChunk>, Vec<(u64, bool)>, Option<Snapshot>) {
    let raw = cluster.node(id);
    raw.step(message);
    let mut ready = raw.ready();
    let chunks = std::mem::take(&mut ready.snapshot_chunks);
    let responses = ready
        .persisted_messages
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::SnapshotResponse {
                received_bytes,
                done,
                ..
            } => Some((received_bytes, done)),
            _ => None,
        })
        .collect();
    let snapshot = ready.snapshot.take();
    if let Some(snapshot) = &snapshot {
        raw.storage_mut().apply_snapshot(snapshot.clone());
    }
    raw.advance();
    (chunks, responses, snapshot)
}

#[test]
fn snapshot_chunks_leave_the_core_in_order_and_other_offsets_are_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.snapshot_bytes_max = 64);
    cluster.elect(1);
    let (term, conf) = (cluster.status(1).term, cluster.status(1).conf);
    let chunk = |index: u64, offset: u64, total_bytes: u64, fill: u8| Message {
        from: 1,
        to: 3,
        term,
        body: MessageBody::InstallSnapshot {
            index,
            snapshot_term: term,
            conf: conf.clone(),
            offset,
            total_bytes,
            data: vec![fill; 8],
        },
    };
    let stored = |offset: u64, fill: u8| SnapshotChunk {
        index: 100,
        offset,
        total_bytes: 24,
        data: vec![fill; 8],
    };
    // The middle of a transfer the follower knows nothing of: the leader restarts at 0.
    let (chunks, answers, _) = step_snapshot_chunk(&mut cluster, 3, chunk(100, 8, 24, 1));
    assert_eq!((chunks, answers), (vec![], vec![(0, false)]));
    let (chunks, answers, _) = step_snapshot_chunk(&mut cluster, 3, chunk(100, 0, 24, 0));
    assert_eq!((chunks, answers), (vec![stored(0, 0)], vec![(8, false)]));
    // A gap and a duplicate are refused; the count says where to go on.
    for offset in [16, 0] {
        let (chunks, answers, _) = step_snapshot_chunk(&mut cluster, 3, chunk(100, offset, 24, 2));
        assert_eq!((chunks, answers), (vec![], vec![(8, false)]));
    }
    // Over the size bound: dropped unanswered.
    let (chunks, answers, _) = step_snapshot_chunk(&mut cluster, 3, chunk(200, 0, 65, 9));
    assert_eq!((chunks, answers), (vec![], vec![]));
    let (chunks, _, _) = step_snapshot_chunk(&mut cluster, 3, chunk(100, 8, 24, 1));
    assert_eq!(chunks, vec![stored(8, 1)]);
    let (chunks, answers, snapshot) = step_snapshot_chunk(&mut cluster, 3, chunk(100, 16, 24, 2));
    assert_eq!((chunks, answers), (vec![stored(16, 2)], vec![(24, true)]));
    let snapshot = snapshot.expect("installed once whole");
    assert_eq!(snapshot.meta.index, 100);
    assert!(snapshot.data.is_empty(), "the core kept none of the bytes");
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

/// Test grouping: non-empty entries whose first byte is equal are one command.
fn same_first_byte(a: &[u8], b: &[u8]) -> bool {
    a[0] == b[0]
}

/// A command of `parts` entries, tagged `tag` (see [`same_first_byte`]).
fn command(tag: u8, parts: u8) -> Vec<Vec<u8>> {
    (0..parts).map(|part| vec![tag, part]).collect()
}

impl Cluster {
    fn group_commands(&mut self) {
        for raw in self.nodes.values_mut() {
            raw.set_same_command(same_first_byte);
        }
    }

    /// Lets every node's election timeout pass without delivering anything (their leader is
    /// gone), so none honours its lease any more.
    fn forget_leader(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for _ in 0..10 {
            for &id in &ids {
                self.node(id).tick();
                self.drain(id);
            }
        }
        self.queue.clear();
    }

    /// The (first, last) indexes of the non-empty Appends delivered to `to`.
    fn appends_to(&self, to: NodeId) -> Vec<(u64, u64)> {
        self.delivered
            .iter()
            .filter(|m| m.to == to)
            .filter_map(|m| match &m.body {
                MessageBody::Append { entries, .. } if !entries.is_empty() => {
                    Some((entries[0].index, entries[entries.len() - 1].index))
                }
                _ => None,
            })
            .collect()
    }
}

/// Whether `applied` holds part of the command tagged `tag` without all `parts` of it.
fn holds_part_of(applied: &[Entry], tag: u8, parts: usize) -> bool {
    let held = applied
        .iter()
        .filter(|e| e.data.first() == Some(&tag))
        .count();
    held != 0 && held != parts
}

#[test]
fn appends_cut_by_the_limits_never_end_inside_a_command() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.msg_entries_max = 4);
    cluster.group_commands();
    cluster.elect(1);
    let first = cluster.status(1).last_index + 1;
    // Entries first+2 ..= first+5 are one command's events; a message holds four entries.
    let mut payloads = command(1, 1);
    payloads.extend(command(2, 1));
    payloads.extend(command(3, 4));
    payloads.extend(command(4, 1));
    payloads.extend(command(5, 3));
    cluster.node(1).propose(payloads).expect("leader");
    cluster.deliver();
    let ends = cluster.appends_to(2);
    assert!(!ends.is_empty());
    for (lo, hi) in &ends {
        let splits = *lo <= first + 5 && *hi >= first + 2 && (*lo > first + 2 || *hi < first + 5);
        assert!(!splits, "append {lo}..={hi} splits the run: {ends:?}");
    }
    assert_eq!(cluster.status(2).last_index, first + 9);
    // A command longer than a message travels whole in one Append anyway.
    let next = first + 10;
    cluster.delivered.clear();
    cluster.node(1).propose(command(6, 7)).expect("leader");
    cluster.deliver();
    assert!(cluster.appends_to(3).contains(&(next, next + 6)));
    assert_eq!(cluster.status(3).last_index, next + 6);
}

#[test]
fn a_leader_crash_while_sending_a_big_command_never_commits_part_of_it() {
    // Issue 7: the leader sends a command larger than the message window, then dies after
    // one message; a new leader must not commit a part of it with its no-op.
    let mut cluster = Cluster::new(&[1, 2, 3, 4, 5], &[], |c| {
        c.msg_entries_max = 3;
        c.msg_bytes_max = 64;
    });
    cluster.group_commands();
    cluster.elect(1);
    let first = cluster.status(1).last_index + 1;
    cluster.cut.extend([3, 4, 5]);
    cluster.node(1).propose(command(7, 10)).expect("leader");
    // Only the first Append of the leader reaches node 2, then the leader is gone.
    let mut ready = cluster.node(1).ready();
    let appends: Vec<Message> = ready
        .messages
        .drain(..)
        .filter(|m| m.to == 2 && matches!(m.body, MessageBody::Append { .. }))
        .collect();
    cluster.node(1).advance();
    let append = appends.into_iter().next().expect("an Append to node 2");
    let MessageBody::Append { entries, .. } = &append.body else {
        unreachable!("filtered on Append")
    };
    assert_eq!(
        (entries[0].index, entries.len()),
        (first, 10),
        "the whole command in one message, beyond the window of 3 entries"
    );
    cluster.node(2).step(append);
    cluster.drain(2);
    cluster.queue.clear();
    cluster.cut = [1].into();
    cluster.delivered.clear();
    cluster.forget_leader();
    cluster.elect(2);
    cluster.tick(3);
    // The new leader holds the run (it received it whole) and sends it whole again, as an
    // entry of an earlier term, to the nodes that lack it.
    for node in [3, 4, 5] {
        assert!(
            cluster
                .appends_to(node)
                .iter()
                .all(|&(lo, hi)| lo > first + 9 || hi < first || (lo <= first && hi >= first + 9)),
            "node {node} got part of the run: {:?}",
            cluster.appends_to(node)
        );
    }
    for node in [2, 3, 4, 5] {
        let applied = &cluster.applied[&node];
        assert!(!holds_part_of(applied, 7, 10), "node {node} applied part");
        assert!(applied.iter().any(|e| e.index == first + 9), "committed");
    }
}

#[test]
fn proposals_over_the_command_limit_or_continuing_a_command_are_refused_whole() {
    let mut cluster = Cluster::new(&[1], &[], |_| {});
    cluster.group_commands();
    cluster.elect(1);
    let before = cluster.status(1).last_index;
    let half = (COMMAND_BYTES_MAX / 2) as usize;
    let big = vec![vec![1u8; half], vec![1u8; half]];
    match cluster.node(1).propose(big) {
        Err(RaftError::CommandTooLarge { bytes, max }) => {
            assert_eq!(max, COMMAND_BYTES_MAX);
            assert_eq!(bytes, 2 * (half as u64 + COMMAND_ENTRY_OVERHEAD_BYTES));
        }
        other => panic!("expected CommandTooLarge, got {other:?}"),
    }
    // The same bytes as two commands are fine.
    let two = vec![vec![1u8; half], vec![2u8; half]];
    cluster.node(1).propose(two).expect("two commands fit");
    let after = cluster.status(1).last_index;
    assert_eq!(after, before + 2);
    assert_eq!(
        cluster.node(1).propose(command(2, 1)),
        Err(RaftError::InvalidRequest(
            "a proposal continues the command the log ends with"
        ))
    );
    assert_eq!(cluster.status(1).last_index, after);
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

/// A removal of a node that is not a member, or a change naming the reserved id 0, is
/// refused: it used to be appended and committed as an entry that changed nothing (id 0's
/// entry does not even decode), while the operator was told the node was being removed.
#[test]
fn changes_naming_no_member_or_the_reserved_id_are_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    let before = cluster.status(1).last_index;
    for change in [
        ConfChange::Remove(9),
        ConfChange::Remove(u64::MAX),
        ConfChange::Remove(NODE_NONE),
        ConfChange::AddLearner(NODE_NONE),
        ConfChange::AddVoter(NODE_NONE),
    ] {
        let refused = cluster.node(1).propose_conf_change(change);
        assert!(
            matches!(refused, Err(RaftError::InvalidRequest(_))),
            "{change:?}: {refused:?}"
        );
    }
    assert_eq!(cluster.status(1).last_index, before, "nothing was appended");
    // A member is still removed.
    cluster
        .node(1)
        .propose_conf_change(ConfChange::Remove(3))
        .expect("a member");
    cluster.deliver();
    assert_eq!(cluster.status(1).conf.voters, vec![1, 2]);
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
                    data: Payload::default(),
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
                    data: Payload::default(),
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

/// Scenario files under `tests/data/raft/`: command lines start with `> `, the lines after a
/// command are its expected trace. `LITHAIR_REWRITE=1` regenerates the traces (review the diff).
mod scenarios {
    use super::*;
    use std::fmt::Write as _;

    fn format_entries(entries: &[Entry]) -> String {
        let items: Vec<String> = entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::Normal => format!("{}@{}", e.index, e.term),
                EntryKind::ConfChange => match ConfChange::decode(&e.data) {
                    Some(change) => format!("{}@{}:{change:?}", e.index, e.term),
                    None => format!("{}@{}:conf?", e.index, e.term),
                },
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    fn format_message(m: &Message) -> String {
        let head = format!("{}->{} {} t{}", m.from, m.to, m.body.name(), m.term);
        let rest = match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                format!(
                    " prev={prev_index}@{prev_term} entries={} commit={commit}",
                    format_entries(entries)
                )
            }
            MessageBody::CommitNotice {
                prev_index,
                prev_term,
                commit,
            } => format!(" prev={prev_index}@{prev_term} commit={commit}"),
            MessageBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => {
                if *reject {
                    format!(" reject index={index} hint={hint_index}@{hint_term}")
                } else {
                    format!(" index={index}")
                }
            }
            MessageBody::RequestVote {
                last_index,
                last_term,
                transfer,
                ..
            } => {
                format!(
                    " last={last_index}@{last_term}{}",
                    if *transfer { " transfer" } else { "" }
                )
            }
            MessageBody::VoteResponse { granted, .. } => format!(" granted={granted}"),
            MessageBody::Heartbeat { commit, read_round } => {
                format!(" commit={commit} round={read_round}")
            }
            MessageBody::HeartbeatResponse { read_round } => format!(" round={read_round}"),
            MessageBody::InstallSnapshot {
                index,
                snapshot_term,
                offset,
                total_bytes,
                data,
                ..
            } => {
                format!(
                    " snap={index}@{snapshot_term} bytes={offset}+{}/{total_bytes}",
                    data.len()
                )
            }
            MessageBody::SnapshotResponse {
                index,
                received_bytes,
                done,
            } => {
                format!(" snap={index} received={received_bytes} done={done}")
            }
            MessageBody::TimeoutNow => String::new(),
            MessageBody::ReadIndex { ctx } => format!(" ctx={ctx:?}"),
            MessageBody::ReadIndexResponse { index, ctx } => format!(" index={index} ctx={ctx:?}"),
        };
        head + &rest
    }

    fn format_status(s: &Status) -> String {
        format!(
            "{}: {:?} term={} vote={} leader={} commit={} applied={} last={}@{} voters={:?} learners={:?}",
            s.id, s.role, s.term, s.vote, s.leader_id, s.commit, s.applied, s.last_index, s.last_term,
            s.conf.voters, s.conf.learners
        )
    }

    fn ids(arg: &str) -> Vec<NodeId> {
        arg.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("node id"))
            .collect()
    }

    /// The `k`th word of a scenario line, or `""` past its end.
    fn word<'a>(words: &[&'a str], k: usize) -> &'a str {
        words.get(k).copied().unwrap_or("")
    }

    /// The `k`th word of a scenario line as a number; a malformed scenario fails the test.
    fn number_at(words: &[&str], k: usize) -> u64 {
        word(words, k)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("number expected in {words:?}"))
    }

    /// Runs one command; returns its trace.
    fn run_command(cluster: &mut Option<Cluster>, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "cluster" {
            *cluster = Some(new_cluster(&words));
            return String::new();
        }
        let cluster = cluster.as_mut().expect("`cluster` first");
        match run_request(cluster, &words) {
            Some(trace) => trace,
            None => run_step(cluster, &words),
        }
    }

    /// `cluster <ids> [spare=<ids>] [prevote=off] [checkquorum=off]`.
    fn new_cluster(words: &[&str]) -> Cluster {
        let spares = words
            .iter()
            .find_map(|w| w.strip_prefix("spare="))
            .map(ids)
            .unwrap_or_default();
        let pre_vote = !words.contains(&"prevote=off");
        let check_quorum = !words.contains(&"checkquorum=off");
        Cluster::new(&ids(word(words, 1)), &spares, |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = check_quorum;
            c.snapshot_chunk_bytes = 16;
        })
    }

    /// The commands that ask a node for something and trace its answer; `None` for the others.
    fn run_request(cluster: &mut Cluster, words: &[&str]) -> Option<String> {
        const REQUESTS: [&str; 5] = ["propose", "add-learner", "remove", "transfer", "read"];
        if !REQUESTS.contains(&words[0]) {
            return None;
        }
        let node = cluster.node(number_at(words, 1));
        let answer = match words[0] {
            "propose" => node.propose(vec![word(words, 2).as_bytes().to_vec()]),
            "add-learner" => node.propose_conf_change(ConfChange::AddLearner(number_at(words, 2))),
            "remove" => node.propose_conf_change(ConfChange::Remove(number_at(words, 2))),
            "transfer" => node.transfer_leader(number_at(words, 2)).map(|()| 0),
            "read" => node
                .read_index(word(words, 2).as_bytes().to_vec())
                .map(|()| 0),
            other => unreachable!("{other} is listed in REQUESTS"),
        };
        Some(match answer {
            Ok(index) => format!("ok {index}\n"),
            Err(error) => format!("error: {error}\n"),
        })
    }

    /// The commands that drive time, the network or storage, and the status queries.
    fn run_step(cluster: &mut Cluster, words: &[&str]) -> String {
        let (arg, number) = (|k| word(words, k), |k| number_at(words, k));
        match words[0] {
            "campaign" => cluster.node(number(1)).campaign(),
            "tick" => {
                let before = cluster.delivered.len();
                cluster.tick(number(1) as u32);
                return trace_since(cluster, before);
            }
            "deliver" => {
                let before = cluster.delivered.len();
                cluster.deliver();
                return trace_since(cluster, before);
            }
            "cut" => cluster.cut.extend(ids(arg(1))),
            "heal" => cluster.cut.clear(),
            "compact" => {
                let id = number(1);
                let status = cluster.status(id);
                drop(cluster.node(id).storage_mut().compact(
                    status.applied,
                    status.conf,
                    vec![7; 40],
                ));
            }
            "status" => {
                let mut out = String::new();
                for id in ids(arg(1)) {
                    let _ = writeln!(out, "{}", format_status(&cluster.status(id)));
                }
                return out;
            }
            "reads" => {
                let reads = cluster.reads.remove(&number(1)).unwrap_or_default();
                return reads
                    .iter()
                    .map(|r| format!("read index={} ctx={:?}\n", r.index, r.ctx))
                    .collect();
            }
            other => panic!("unknown scenario command {other:?}"),
        }
        String::new()
    }

    fn trace_since(cluster: &Cluster, before: usize) -> String {
        cluster.delivered[before..]
            .iter()
            .map(|m| format_message(m) + "\n")
            .collect()
    }

    /// Re-runs the commands of `text` and returns the text with fresh traces.
    fn regenerate(text: &str) -> String {
        let mut cluster = None;
        let mut out = String::new();
        for line in text.lines() {
            if let Some(command) = line.strip_prefix("> ") {
                out.push_str(line);
                out.push('\n');
                out.push_str(&run_command(&mut cluster, command));
            } else if line.starts_with('#') || (line.is_empty() && !out.ends_with("\n\n")) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn scenario_files_match_their_traces() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/raft");
        let rewrite = std::env::var("LITHAIR_REWRITE").is_ok();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("scenario dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no scenarios in {}", dir.display());
        for path in files {
            let text = std::fs::read_to_string(&path).expect("scenario readable");
            let fresh = regenerate(&text);
            if rewrite {
                std::fs::write(&path, &fresh).expect("scenario writable");
            } else {
                assert_eq!(
                    text,
                    fresh,
                    "{} differs (LITHAIR_REWRITE=1 regenerates; review the diff)",
                    path.display()
                );
            }
        }
    }
}

/// Background persistence: takes one Ready, queues its messages, writes its entries to the
/// storage view but reports nothing durable (`advance_append`); returns the last entry and
/// the messages that must wait for the persist, plus the entries it handed for apply.
fn ready_in_background(
    cluster: &mut Cluster,
    id: NodeId,
) -> (Option<(u64, u64)>, Vec<Message>, Vec<Entry>) {
    let raw = cluster.nodes.get_mut(&id).expect("node exists");
    assert!(raw.has_ready(), "node {id} has work");
    let mut ready = raw.ready();
    cluster.queue.extend(ready.messages.drain(..));
    raw.storage_mut().append(&ready.entries);
    if let Some(hard_state) = ready.hard_state {
        raw.storage_mut().set_hard_state(hard_state);
    }
    let last = raw.advance_append();
    assert_eq!(last, ready.entries.last().map(|e| (e.index, e.term)));
    (last, ready.persisted_messages, ready.committed_entries)
}

#[test]
fn a_leader_counts_its_own_entry_only_once_persisted() {
    let mut cluster = Cluster::new(&[1, 2], &[], |_| {});
    cluster.elect(1);
    let commit = cluster.status(1).commit;
    let index = cluster.node(1).propose(vec![vec![7]]).expect("leader");
    let (last, held, _) = ready_in_background(&mut cluster, 1);
    assert_eq!(last.map(|(i, _)| i), Some(index));
    assert!(
        held.is_empty(),
        "a leader promises nothing to its followers"
    );
    // The follower persists and acknowledges; with two voters the leader's copy is needed.
    cluster.deliver();
    assert_eq!(
        cluster.status(1).commit,
        commit,
        "not durable on the leader yet"
    );
    let (index, term) = last.expect("an entry");
    cluster.node(1).persisted(index, term);
    cluster.deliver();
    assert_eq!(cluster.status(1).commit, index);
    assert_eq!(cluster.status(2).commit, index);
    let applied = &cluster.applied[&1];
    assert_eq!(applied.last().map(|e| e.index), Some(index));
}

#[test]
fn a_follower_acknowledges_and_applies_only_durable_entries() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
    cluster.elect(1);
    let first = cluster.node(1).propose(vec![vec![1]]).expect("leader");
    cluster.drain(1);
    // Node 3 persists in the background; node 2 synchronously, so entries commit.
    let mut held_by_3 = Vec::new();
    let mut last_of_3 = None;
    for _ in 0..100 {
        let Some(message) = cluster.queue.pop_front() else {
            break;
        };
        let to = message.to;
        cluster.node(to).step(message);
        if to == 3 {
            while cluster.node(3).has_ready() {
                let (last, held, committed) = ready_in_background(&mut cluster, 3);
                last_of_3 = last.or(last_of_3);
                held_by_3.extend(held);
                assert!(
                    committed.iter().all(|e| e.index < first),
                    "node 3 applied an entry its disk may not hold"
                );
            }
        } else {
            cluster.drain(to);
        }
    }
    assert!(cluster.status(1).commit >= first, "nodes 1 and 2 commit it");
    assert!(
        cluster.status(3).commit >= first,
        "node 3 learned the commit"
    );
    assert!(
        held_by_3
            .iter()
            .any(|m| matches!(m.body, MessageBody::AppendResponse { .. })),
        "node 3's acknowledgement waits for its persist"
    );
    let applied_3 = cluster.applied.get(&3).map_or(0, |a| a.len());
    let (index, term) = last_of_3.expect("node 3 got the entry");
    cluster.node(3).persisted(index, term);
    cluster.drain(3);
    let applied = &cluster.applied[&3];
    assert!(applied.len() > applied_3, "applied once durable");
    assert_eq!(applied.last().map(|e| e.index), Some(index));
}

#[test]
fn committed_entries_cut_by_the_apply_limit_end_at_a_command_end() {
    // Commands of a small and a large event; together they exceed one Ready's apply limit,
    // which would cut between the two events of a command.
    const LARGE_BYTES: usize = 4_000_000;
    let commands = (READY_APPLY_BYTES_MAX / LARGE_BYTES as u64 + 2) as u8;
    let mut raw = RawNode::new(test_config(1), MemStorage::bootstrap(&[1])).expect("config");
    raw.set_same_command(same_first_byte);
    raw.campaign();
    let mut readies_applying = 0;
    let mut applied_last = 0;
    let mut proposed = false;
    for _ in 0..1000 {
        if !raw.has_ready() {
            if proposed {
                break;
            }
            for tag in 1..=commands {
                raw.propose(vec![vec![tag; 100], vec![tag; LARGE_BYTES]])
                    .expect("sole voter leads");
            }
            proposed = true;
            continue;
        }
        let mut ready = raw.ready();
        raw.storage_mut().append(&ready.entries);
        if let Some(hard_state) = ready.hard_state {
            raw.storage_mut().set_hard_state(hard_state);
        }
        let committed = std::mem::take(&mut ready.committed_entries);
        if let Some(last) = committed.last() {
            readies_applying += 1;
            applied_last = last.index;
            let tag = last.data.first().copied();
            let whole = last.kind == EntryKind::ConfChange
                || last.data.is_empty()
                || last.data.len() == LARGE_BYTES;
            assert!(
                whole,
                "a Ready's committed entries end inside command {tag:?}"
            );
        }
        raw.advance();
    }
    assert_eq!(applied_last, raw.status().last_index, "everything applied");
    assert!(readies_applying >= 3, "the apply limit cut the commands");
}

/// Commit notices (`MessageBody::CommitNotice`): what the leader sends when only its commit
/// index moved, and how a follower takes one. Driven on the core itself, message by message.
mod commit_notice {
    use super::super::core::Raft;
    use super::super::leader::IfEmpty;
    use super::super::progress::{Progress, ProgressState};
    use super::*;

    /// Node `id` of voters 1..=3 with log `terms` (entry k+1 of term `terms[k]`) at `term`.
    fn raft(id: NodeId, terms: &[u64], term: u64, commit: u64) -> Raft<MemStorage> {
        let mut storage = MemStorage::new(ConfState::with_voters(&[1, 2, 3]));
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(k, &t)| Entry {
                term: t,
                index: k as u64 + 1,
                kind: EntryKind::Normal,
                data: vec![k as u8].into(),
            })
            .collect();
        storage.append(&entries);
        storage.set_hard_state(HardState {
            term,
            vote: NODE_NONE,
            commit,
        });
        let mut config = test_config(id);
        config.pre_vote = false;
        Raft::new(config, storage)
    }

    /// Node 1 leads term 2 over a log of two term-1 entries plus its no-op (index 3, persisted).
    fn leader() -> Raft<MemStorage> {
        let mut raft = raft(1, &[1, 1], 1, 0);
        raft.campaign(false);
        raft.step(reply(2, 1, 2, granted()));
        assert_eq!(raft.role, Role::Leader);
        let (_, noop) = raft.log.hand_unstable();
        raft.log.storage.append(&noop);
        raft.on_persisted(3, 2);
        raft.msgs.clear();
        raft.msgs_after_persist.clear();
        raft
    }

    fn granted() -> MessageBody {
        MessageBody::VoteResponse {
            granted: true,
            pre_vote: false,
        }
    }

    fn acked(index: u64) -> MessageBody {
        MessageBody::AppendResponse {
            index,
            reject: false,
            hint_index: 0,
            hint_term: 0,
        }
    }

    fn reply(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
        Message {
            from,
            to,
            term,
            body,
        }
    }

    /// Every message the core queued (before and after persist), taken out.
    fn sent(raft: &mut Raft<MemStorage>) -> Vec<Message> {
        let mut out = std::mem::take(&mut raft.msgs);
        out.append(&mut raft.msgs_after_persist);
        out
    }

    #[test]
    fn a_commit_reaches_a_replicating_follower_as_a_notice() {
        let mut raft = leader();
        raft.step(reply(2, 1, 2, acked(3)));
        assert_eq!(raft.log.committed, 3);
        let out = sent(&mut raft);
        let notice = MessageBody::CommitNotice {
            prev_index: 3,
            prev_term: 2,
            commit: 3,
        };
        assert_eq!(
            out,
            vec![reply(1, 2, 2, notice)],
            "node 3's probe is in flight"
        );
    }

    /// What `send_append(3, ..)` sends with nothing left to send, per follower state.
    #[test]
    fn an_empty_send_depends_on_the_follower_state() {
        let empty_append = MessageBody::Append {
            prev_index: 3,
            prev_term: 2,
            entries: Vec::new(),
            commit: 3,
        };
        let notice = MessageBody::CommitNotice {
            prev_index: 3,
            prev_term: 2,
            commit: 3,
        };
        type Setup = fn(&mut Progress);
        let replicate: Setup = |p| {
            p.maybe_update(3);
            p.become_replicate();
        };
        let probe: Setup = |p| {
            p.maybe_update(3);
            p.become_probe();
        };
        let probe_sent: Setup = |p| {
            p.maybe_update(3);
            p.become_probe();
            p.probe_sent = true;
        };
        let snapshot: Setup = |p| p.become_snapshot(2);
        let cases: [(&str, Setup, IfEmpty, Option<MessageBody>); 7] = [
            ("replicate notice", replicate, IfEmpty::Notice, Some(notice)),
            (
                "replicate ask",
                replicate,
                IfEmpty::Ask,
                Some(empty_append.clone()),
            ),
            ("replicate skip", replicate, IfEmpty::Skip, None),
            (
                "probe notice",
                probe,
                IfEmpty::Notice,
                Some(empty_append.clone()),
            ),
            ("probe ask", probe, IfEmpty::Ask, Some(empty_append)),
            ("probe in flight", probe_sent, IfEmpty::Notice, None),
            ("snapshot", snapshot, IfEmpty::Notice, None),
        ];
        for (name, setup, if_empty, expected) in cases {
            let mut raft = leader();
            raft.step(reply(2, 1, 2, acked(3)));
            sent(&mut raft);
            setup(raft.progress.get_mut(&3).expect("peer 3"));
            let was_sent = raft.send_append(3, if_empty);
            let out = sent(&mut raft);
            assert_eq!(was_sent, expected.is_some(), "{name}");
            let expected: Vec<Message> = expected.into_iter().map(|b| reply(1, 3, 2, b)).collect();
            assert_eq!(out, expected, "{name}");
        }
    }

    #[test]
    fn entries_left_to_send_travel_in_an_append_even_when_only_noticing() {
        let mut raft = leader();
        raft.step(reply(2, 1, 2, acked(3)));
        let index = raft.propose(vec![b"x".to_vec().into()]).expect("leader");
        sent(&mut raft);
        let progress = raft.progress.get_mut(&2).expect("peer 2");
        assert_eq!(progress.state, ProgressState::Replicate);
        progress.next_index = index; // As if the Append carrying `index` were lost.
        assert!(raft.send_append(2, IfEmpty::Notice));
        let out = sent(&mut raft);
        assert!(
            matches!(&out[..], [Message { body: MessageBody::Append { entries, .. }, .. }]
                if entries.len() == 1 && entries[0].index == index),
            "{out:?}"
        );
    }

    /// On a whole cluster: every write's commit reaches both followers as a notice nobody
    /// answers, yet CheckQuorum keeps the leader in place (heartbeat answers), ReadIndex is
    /// confirmed, and the followers apply every write.
    #[test]
    fn unanswered_notices_leave_quorum_reads_and_applies_intact() {
        let mut cluster = Cluster::new(&[1, 2, 3], &[], |_| {});
        cluster.elect(1);
        let before = cluster.delivered.len();
        for k in 0..5u8 {
            cluster
                .node(1)
                .propose(vec![vec![b'w', k]])
                .expect("leader");
            cluster.deliver();
        }
        let commit = cluster.status(1).commit;
        let delivered = cluster.delivered[before..].to_vec();
        for follower in [2, 3] {
            let notices = delivered
                .iter()
                .filter(|m| m.to == follower && matches!(m.body, MessageBody::CommitNotice { .. }))
                .count();
            let answers = delivered
                .iter()
                .filter(|m| {
                    m.from == follower && matches!(m.body, MessageBody::AppendResponse { .. })
                })
                .count();
            assert_eq!(notices, 5, "node {follower}: one notice per write");
            assert_eq!(answers, 5, "node {follower}: answers only the five Appends");
            assert_eq!(cluster.status(follower).commit, commit, "node {follower}");
            assert_eq!(cluster.status(follower).applied, commit, "node {follower}");
        }
        cluster.tick(3 * test_config(1).election_ticks);
        assert_eq!(cluster.status(1).role, Role::Leader, "CheckQuorum kept");
        cluster.node(1).read_index(vec![7]).expect("leader");
        cluster.deliver();
        let reads = cluster.reads.remove(&1).unwrap_or_default();
        assert_eq!(
            reads,
            vec![ReadState {
                index: commit,
                ctx: vec![7]
            }]
        );
    }

    /// Persists the leader's unstable entries and reports them durable.
    fn persist(raft: &mut Raft<MemStorage>) {
        let (_, entries) = raft.log.hand_unstable();
        let last = entries.last().expect("entries to persist");
        let (index, term) = (last.index, last.term);
        raft.log.storage.append(&entries);
        raft.on_persisted(index, term);
    }

    /// Commits that move several times before the driver takes a Ready ride on the message
    /// already queued for the follower (an Append ending at its last entry, or a notice)
    /// instead of adding one notice each.
    #[test]
    fn commits_within_one_pass_refresh_the_queued_message() {
        let mut raft = leader();
        raft.step(reply(2, 1, 2, acked(3)));
        sent(&mut raft);
        // An Append queued this pass takes the newer commit.
        let index = raft.propose(vec![b"x".to_vec().into()]).expect("leader");
        raft.step(reply(2, 1, 2, acked(index)));
        persist(&mut raft);
        assert_eq!(raft.log.committed, index);
        let out = sent(&mut raft);
        assert!(
            matches!(&out[..], [Message { to: 2, body: MessageBody::Append { prev_index: 3, entries, commit: 4, .. }, .. }]
                if entries.len() == 1),
            "{out:?}"
        );
        // Two commits after the entries left: one notice, with the second.
        raft.propose(vec![b"y".to_vec().into()]).expect("leader");
        raft.propose(vec![b"z".to_vec().into()]).expect("leader");
        sent(&mut raft);
        raft.step(reply(2, 1, 2, acked(5)));
        let (_, entries) = raft.log.hand_unstable();
        raft.log.storage.append(&entries);
        raft.on_persisted(5, 2);
        raft.step(reply(2, 1, 2, acked(6)));
        raft.on_persisted(6, 2);
        assert_eq!(raft.log.committed, 6);
        let notice = MessageBody::CommitNotice {
            prev_index: 6,
            prev_term: 2,
            commit: 6,
        };
        assert_eq!(sent(&mut raft), vec![reply(1, 2, 2, notice)]);
    }

    /// What the follower did with one notice.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// Committed up to this index and said nothing.
        Silent(u64),
        /// Rejected (index, hint index, hint term), commit unchanged.
        Reject(u64, u64, u64),
        /// Told a stale leader its term, commit unchanged.
        NewerTerm(u64),
    }

    /// (name, follower log terms, follower commit, (prev index, prev term, commit), notice
    /// term, outcome).
    type NoticeCase = (
        &'static str,
        &'static [u64],
        u64,
        (u64, u64, u64),
        u64,
        Outcome,
    );

    /// A follower at term 2 with a given log and commit takes one notice: it commits only up
    /// to the prefix the notice matched and stays silent, or rejects with hints, or (stale
    /// term) tells the sender its term; never both commits and answers.
    #[test]
    fn a_follower_takes_a_matching_notice_silently_and_rejects_the_rest() {
        #[rustfmt::skip]
        let cases: &[NoticeCase] = &[
            ("match", &[1, 2, 2], 0, (3, 2, 3), 2, Outcome::Silent(3)),
            ("commit capped by the log", &[1, 2, 2], 0, (3, 2, 9), 2, Outcome::Silent(3)),
            ("commit capped by the prefix", &[1, 2, 2], 0, (2, 2, 3), 2, Outcome::Silent(2)),
            ("older commit", &[1, 2, 2], 0, (3, 2, 1), 2, Outcome::Silent(1)),
            ("divergent suffix kept uncommitted", &[1, 1, 1], 0, (1, 1, 3), 2, Outcome::Silent(1)),
            ("below our commit", &[1, 2, 2], 2, (1, 1, 3), 2, Outcome::Silent(2)),
            ("duplicate", &[1, 2, 2], 3, (3, 2, 3), 2, Outcome::Silent(3)),
            ("higher term", &[1, 2, 2], 0, (3, 2, 3), 3, Outcome::Silent(3)),
            ("term mismatch", &[1, 2, 2], 0, (3, 3, 3), 2, Outcome::Reject(3, 3, 2)),
            ("older term at prev", &[1, 1, 1], 0, (3, 2, 3), 2, Outcome::Reject(3, 3, 1)),
            ("beyond our log", &[1, 2, 2], 0, (5, 2, 5), 2, Outcome::Reject(5, 3, 2)),
            ("stale term", &[1, 2, 2], 0, (3, 2, 3), 1, Outcome::NewerTerm(2)),
        ];
        for (name, terms, commit, (prev_index, prev_term, notice_commit), term, expected) in cases {
            let mut raft = raft(2, terms, 2, *commit);
            let body = MessageBody::CommitNotice {
                prev_index: *prev_index,
                prev_term: *prev_term,
                commit: *notice_commit,
            };
            raft.step(reply(1, 2, *term, body));
            let out = sent(&mut raft);
            let got = match &out[..] {
                [] => Outcome::Silent(raft.log.committed),
                [Message {
                    to: 1,
                    term: reply_term,
                    body:
                        MessageBody::AppendResponse {
                            index,
                            reject,
                            hint_index,
                            hint_term,
                        },
                    ..
                }] => {
                    assert_eq!(raft.log.committed, *commit, "{name}: commit moved");
                    if *reject {
                        Outcome::Reject(*index, *hint_index, *hint_term)
                    } else {
                        assert_eq!(*index, 0, "{name}");
                        Outcome::NewerTerm(*reply_term)
                    }
                }
                other => panic!("{name}: unexpected messages {other:?}"),
            };
            assert_eq!(got, *expected, "{name}");
            let leader = if *term >= 2 { 1 } else { NODE_NONE };
            assert_eq!(raft.leader_id, leader, "{name}: leader");
        }
    }

    /// A rejected notice puts the follower back to probing from its match index, as a
    /// rejected Append does (here: the Append before the notice was lost).
    #[test]
    fn a_rejected_notice_makes_the_leader_probe() {
        let mut raft = leader();
        raft.step(reply(2, 1, 2, acked(3)));
        let index = raft.propose(vec![b"x".to_vec().into()]).expect("leader");
        sent(&mut raft);
        let rejection = MessageBody::AppendResponse {
            index,
            reject: true,
            hint_index: 3,
            hint_term: 2,
        };
        raft.step(reply(2, 1, 2, rejection));
        let progress = &raft.progress[&2];
        assert_eq!(progress.state, ProgressState::Probe);
        let out = sent(&mut raft);
        assert!(
            matches!(&out[..], [Message { body: MessageBody::Append { prev_index: 3, entries, .. }, .. }]
                if entries.len() == 1),
            "{out:?}"
        );
    }
}

#[test]
fn a_late_ticker_cannot_stretch_a_leaders_lease_past_the_wall_clock() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[], |c| c.read_mode = ReadMode::Lease);
    cluster.tick(40);
    let (leader, others) = cluster.leader_and_others(&[1, 2, 3]);
    assert!(cluster.node(leader).lease_read().is_some(), "a live lease");
    // The followers stop answering; the ticks that would end the lease are owed, not
    // delivered (the ticker thread stalled while the wall clock went on).
    cluster.cut.extend(others.iter().copied());
    let lease = crate::raft::lease_ticks(10);
    cluster.node(leader).set_ticks_owed(lease);
    assert_eq!(
        cluster.node(leader).lease_read(),
        None,
        "a lease of {lease} ticks is over once that much wall time went by"
    );
    cluster.reads.clear();
    cluster
        .node(leader)
        .read_index(vec![7])
        .expect("still leader");
    cluster.drain(leader);
    assert!(
        cluster.reads.get(&leader).is_none_or(|r| r.is_empty()),
        "a ReadIndex is not answered from an expired lease: it waits for a round"
    );
    // Nothing owed: the same lease holds again (no tick was delivered meanwhile).
    cluster.node(leader).set_ticks_owed(0);
    assert!(cluster.node(leader).lease_read().is_some());
    // Each delivered tick pays one owed tick back: owing a whole lease and delivering one
    // tick of it leaves the lease as over as before, not one tick longer.
    cluster.node(leader).set_ticks_owed(lease);
    cluster.node(leader).tick();
    assert_eq!(cluster.node(leader).lease_read(), None);
}

/// The leader's status says how long each follower has been silent, in ticks: a live one is
/// heard every heartbeat, one cut off grows by a tick per tick until it is heard again; a
/// follower the leader streams to is in `Replicate`.
#[test]
fn the_leader_reports_how_long_each_follower_has_been_silent() {
    let mut cluster = Cluster::new(&[1, 2, 3, 4, 5], &[], |_| {});
    cluster.elect(1);
    cluster.tick(3);
    let silent = |cluster: &mut Cluster, id: NodeId| {
        let status = cluster.status(1);
        let follower = status.followers.iter().find(|f| f.id == id).cloned();
        follower.expect("the leader tracks every follower")
    };
    for id in 2..=5 {
        let follower = silent(&mut cluster, id);
        assert_eq!(
            follower.silent_ticks, 0,
            "node {id} is heard every heartbeat"
        );
        assert_eq!(follower.replication, Replication::Replicate);
    }
    cluster.cut.insert(5);
    cluster.tick(6);
    assert_eq!(
        cluster.status(1).role,
        Role::Leader,
        "four of five still answer"
    );
    assert_eq!(silent(&mut cluster, 5).silent_ticks, 6);
    assert_eq!(silent(&mut cluster, 4).silent_ticks, 0);
    cluster.cut.clear();
    cluster.tick(1);
    assert_eq!(silent(&mut cluster, 5).silent_ticks, 0, "heard again");
    assert!(
        cluster.status(2).followers.is_empty(),
        "only a leader tracks followers"
    );
}

/// Delivers until quiet, dropping every message between `side` and the other nodes.
fn deliver_partitioned(cluster: &mut Cluster, side: &[NodeId]) {
    cluster.drain_all();
    for _ in 0..100_000 {
        let Some(message) = cluster.queue.pop_front() else {
            return;
        };
        if side.contains(&message.from) != side.contains(&message.to) {
            continue;
        }
        let to = message.to;
        cluster.node(to).step(message);
        cluster.drain(to);
    }
    panic!("messages did not quiesce");
}

/// A voter restarted on what its storage made durable never comes back with a membership two
/// changes old. Its commit was durable only with its last vote, so after two voters were added
/// it restarted with the three-voter membership, counted {2, 3} as a quorum behind a
/// partition while {1, 4, 5} kept the leader, and the two sides committed different entries
/// at one index (found by a review). A Ready whose commit passes a membership change now makes
/// the hard state durable, and this storage model writes it then.
#[test]
fn a_restarted_voter_never_uses_a_membership_two_changes_old() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4, 5], |_| {});
    cluster.elect(1);
    for id in [4, 5] {
        cluster
            .node(1)
            .propose_conf_change(ConfChange::AddVoter(id))
            .expect("one change at a time");
        cluster.deliver();
    }
    assert_eq!(cluster.status(2).conf.voters, vec![1, 2, 3, 4, 5]);
    // Node 2 restarts on its durable state: its entries, and the hard state in its file.
    let durable = cluster.durable_hard_state[&2];
    let mut storage = cluster.node(2).storage().clone();
    storage.set_hard_state(durable);
    let restarted = RawNode::new(test_config(2), storage).expect("valid config");
    cluster.nodes.insert(2, restarted);
    let voters_after_restart = cluster.status(2).conf.voters;
    assert!(
        voters_after_restart.len() >= 4,
        "at most one change behind: {voters_after_restart:?} (durable commit {})",
        durable.commit
    );
    // A partition {1, 4, 5} | {2, 3}: the majority keeps its leader and commits a write.
    let majority = [1, 4, 5];
    let index = cluster.node(1).propose(vec![vec![42]]).expect("leader");
    deliver_partitioned(&mut cluster, &majority);
    assert_eq!(cluster.status(1).commit, index, "the majority commits it");
    for _ in 0..60 {
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.node(id).tick();
        }
        deliver_partitioned(&mut cluster, &majority);
    }
    // Every pair of nodes agrees on what they both committed at each index.
    let mut committed_at: BTreeMap<u64, (NodeId, Entry)> = BTreeMap::new();
    for (&id, applied) in &cluster.applied {
        for entry in applied {
            match committed_at.get(&entry.index) {
                Some((other, theirs)) => assert_eq!(
                    theirs, entry,
                    "nodes {other} and {id} committed different entries at {}",
                    entry.index
                ),
                None => {
                    committed_at.insert(entry.index, (id, entry.clone()));
                }
            }
        }
    }
    let leaders: Vec<NodeId> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|&id| cluster.status(id).role == Role::Leader)
        .collect();
    assert_eq!(leaders, [1], "the minority elects no leader");
}
