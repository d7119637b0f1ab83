//! The scenarios of etcd's raft paper tests, table-driven, each naming the section of the Raft
//! paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm") it checks.
//! Every test goes init -> step -> check through the public `RawNode` API only.
//!
//! The paper's base algorithm is used (PreVote and CheckQuorum off) unless a test says otherwise.

use lithair::raft::{
    ConfState, Config, Entry, EntryKind, HardState, MemStorage, Message, MessageBody, RawNode,
    Role, Storage, NODE_NONE,
};

const ELECTION_TICKS: u32 = 10;

/// Cluster size, (voter, granted) responses, the resulting role.
type ElectionCase = (u64, &'static [(u64, bool)], Role);

/// Prev index, prev term, new (index, term) entries, the resulting log's terms.
type AppendCase = (u64, u64, &'static [(u64, u64)], &'static [u64]);

fn config(id: u64) -> Config {
    let mut config = Config::new(id);
    config.election_ticks = ELECTION_TICKS;
    config.heartbeat_ticks = 1;
    config.pre_vote = false;
    config.check_quorum = false;
    config.seed = 42;
    config
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: vec![index as u8, term as u8].into(),
    }
}

/// A node with log `terms` (entry k+1 has term terms[k]), hard-state `term` and `voters`.
fn node_with(
    id: u64,
    voters: &[u64],
    terms: &[u64],
    term: u64,
    config: Config,
) -> RawNode<MemStorage> {
    assert_eq!(config.id, id, "config for another node");
    let mut storage = MemStorage::new(ConfState::with_voters(voters));

    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(k, &t)| entry(k as u64 + 1, t))
        .collect();
    storage.append(&entries);
    storage.set_hard_state(HardState {
        term,
        vote: NODE_NONE,
        commit: 0,
    });
    RawNode::new(config, storage).expect("valid config")
}

fn node(id: u64, voters: &[u64]) -> RawNode<MemStorage> {
    node_with(id, voters, &[], 1, config(id))
}

/// What a driver did with the Readies: messages sent (both kinds) and entries applied.
#[derive(Default)]
struct Output {
    messages: Vec<Message>,
    committed: Vec<Entry>,
}

/// Handles every pending Ready the way a driver must (persist, send, apply, advance).
fn drain(raw: &mut RawNode<MemStorage>) -> Output {
    let mut out = Output::default();
    while raw.has_ready() {
        let mut ready = raw.ready();
        out.messages.append(&mut ready.messages);
        if let Some(snapshot) = ready.snapshot.take() {
            raw.storage_mut().apply_snapshot(snapshot);
        }
        raw.storage_mut().append(&ready.entries);
        if let Some(hard_state) = ready.hard_state {
            raw.storage_mut().set_hard_state(hard_state);
        }
        out.messages.append(&mut ready.persisted_messages);
        out.committed.append(&mut ready.committed_entries);
        raw.advance();
    }
    out
}

fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

fn vote_granted(from: u64, to: u64, term: u64) -> Message {
    message(
        from,
        to,
        term,
        MessageBody::VoteResponse {
            granted: true,
            pre_vote: false,
        },
    )
}

fn append_ok(from: u64, to: u64, term: u64, index: u64) -> Message {
    let body = MessageBody::AppendResponse {
        index,
        reject: false,
        hint_index: 0,
        hint_term: 0,
    };
    message(from, to, term, body)
}

/// Makes node 1 leader of `voters` (node 2 votes for it) and acknowledges its no-op from every
/// peer; returns the leader's term.
fn elect(raw: &mut RawNode<MemStorage>, voters: &[u64], ack_noop: bool) -> u64 {
    raw.campaign();
    drain(raw);
    let term = raw.status().term;
    for &peer in voters.iter().filter(|&&p| p != 1) {
        raw.step(vote_granted(peer, 1, term));
    }
    drain(raw);
    assert_eq!(raw.status().role, Role::Leader);
    if ack_noop {
        let last = raw.status().last_index;
        for &peer in voters.iter().filter(|&&p| p != 1) {
            raw.step(append_ok(peer, 1, term, last));
        }
        drain(raw);
    }
    term
}

fn ticks(raw: &mut RawNode<MemStorage>, count: u32) -> Output {
    let mut out = Output::default();
    for _ in 0..count {
        raw.tick();
        let mut more = drain(raw);
        out.messages.append(&mut more.messages);
        out.committed.append(&mut more.committed);
    }
    out
}

/// §5.1: a server that sees a larger term adopts it and reverts to follower, from any role.
#[test]
fn paper_5_1_update_term_from_message() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut raw = node(1, &[1, 2, 3]);
        match role {
            Role::Candidate => {
                raw.campaign();
                drain(&mut raw);
            }
            Role::Leader => {
                elect(&mut raw, &[1, 2, 3], true);
            }
            _ => {}
        }
        assert_eq!(raw.status().role, role, "setup");
        let heartbeat = message(
            2,
            1,
            9,
            MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            },
        );
        raw.step(heartbeat);
        drain(&mut raw);
        let status = raw.status();
        assert_eq!(
            (status.term, status.role, status.leader_id),
            (9, Role::Follower, 2),
            "from {role:?}"
        );
    }
}

/// §5.1: a request with a stale term is rejected (the stale leader learns the newer term).
#[test]
fn paper_5_1_reject_stale_term_message() {
    let mut raw = node_with(1, &[1, 2, 3], &[1], 3, config(1));
    let stale = message(
        2,
        1,
        2,
        MessageBody::Append {
            prev_index: 1,
            prev_term: 1,
            entries: vec![entry(2, 2)],
            commit: 0,
        },
    );
    raw.step(stale);
    let out = drain(&mut raw);
    assert_eq!(
        raw.status().last_index,
        1,
        "stale entries must not be appended"
    );
    assert!(
        out.messages.is_empty(),
        "base algorithm ignores stale messages"
    );
    let mut with_check_quorum = config(1);
    with_check_quorum.check_quorum = true;
    let mut raw = node_with(1, &[1, 2, 3], &[1], 3, with_check_quorum);
    let stale = message(
        2,
        1,
        2,
        MessageBody::Heartbeat {
            commit: 0,
            read_round: 0,
        },
    );
    raw.step(stale);
    let out = drain(&mut raw);
    assert_eq!(out.messages.len(), 1);
    assert_eq!(
        (out.messages[0].to, out.messages[0].term),
        (2, 3),
        "tells the stale leader the term"
    );
}

/// §5.2: when servers start up, they begin as followers.
#[test]
fn paper_5_2_start_as_follower() {
    let raw = node(1, &[1, 2, 3]);
    let status = raw.status();
    assert_eq!(
        (status.role, status.leader_id, status.term),
        (Role::Follower, NODE_NONE, 1)
    );
}

/// §5.2: a leader sends heartbeats to all followers every heartbeat interval.
#[test]
fn paper_5_2_leader_broadcasts_heartbeat() {
    let mut raw = node(1, &[1, 2, 3]);
    let term = elect(&mut raw, &[1, 2, 3], true);
    let out = ticks(&mut raw, 1);
    let mut targets: Vec<u64> = out
        .messages
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }) && m.term == term)
        .map(|m| m.to)
        .collect();
    targets.sort_unstable();
    assert_eq!(targets, vec![2, 3]);
}

/// §5.2: a follower (or candidate) that hears nothing for an election timeout starts an
/// election: new term, votes for itself, RequestVote to every peer.
#[test]
fn paper_5_2_nonleader_starts_election() {
    for start_as_candidate in [false, true] {
        let mut raw = node(1, &[1, 2, 3]);
        if start_as_candidate {
            raw.campaign();
            drain(&mut raw);
        }
        let term_before = raw.status().term;
        let out = ticks(&mut raw, 2 * ELECTION_TICKS);
        let status = raw.status();
        assert_eq!((status.role, status.vote), (Role::Candidate, 1));
        assert!(status.term > term_before);
        let requests: Vec<u64> = out
            .messages
            .iter()
            .filter(|m| {
                matches!(
                    m.body,
                    MessageBody::RequestVote {
                        pre_vote: false,
                        ..
                    }
                ) && m.term == status.term
            })
            .map(|m| m.to)
            .collect();
        assert_eq!(requests, vec![2, 3]);
    }
}

/// §5.2: a candidate wins with votes from a majority; loses when a majority rejects; else waits.
#[test]
fn paper_5_2_leader_election_in_one_round_rpc() {
    let cases: &[ElectionCase] = &[
        (1, &[], Role::Leader),
        (3, &[(2, true), (3, true)], Role::Leader),
        (3, &[(2, true)], Role::Leader),
        (
            5,
            &[(2, true), (3, true), (4, true), (5, true)],
            Role::Leader,
        ),
        (5, &[(2, true), (3, true), (4, true)], Role::Leader),
        (5, &[(2, true), (3, true)], Role::Leader),
        (3, &[(2, false), (3, false)], Role::Follower),
        (
            5,
            &[(2, false), (3, false), (4, false), (5, false)],
            Role::Follower,
        ),
        (
            5,
            &[(2, true), (3, false), (4, false), (5, false)],
            Role::Follower,
        ),
        (3, &[], Role::Candidate),
        (5, &[(2, true)], Role::Candidate),
        (5, &[(2, false), (3, false)], Role::Candidate),
    ];
    for &(size, votes, expected) in cases {
        let voters: Vec<u64> = (1..=size).collect();
        let mut raw = node(1, &voters);
        raw.campaign();
        drain(&mut raw);
        let term = raw.status().term;
        for &(from, granted) in votes {
            raw.step(message(
                from,
                1,
                term,
                MessageBody::VoteResponse {
                    granted,
                    pre_vote: false,
                },
            ));
        }
        drain(&mut raw);
        let status = raw.status();
        assert_eq!(status.role, expected, "size {size} votes {votes:?}");
        assert_eq!(status.term, term, "the election does not change the term");
    }
}

/// §5.2: each server votes for at most one candidate per term, first come first served.
#[test]
fn paper_5_2_follower_vote() {
    let cases = [
        (NODE_NONE, 2, true),
        (NODE_NONE, 3, true),
        (2, 2, true),
        (3, 3, true),
        (2, 3, false),
        (3, 2, false),
    ];
    for (vote, candidate, granted) in cases {
        let mut storage = MemStorage::new(ConfState::with_voters(&[1, 2, 3]));
        storage.set_hard_state(HardState {
            term: 1,
            vote,
            commit: 0,
        });
        let mut raw = RawNode::new(config(1), storage).expect("valid");
        let body = MessageBody::RequestVote {
            last_index: 0,
            last_term: 0,
            pre_vote: false,
            transfer: false,
        };
        raw.step(message(candidate, 1, 1, body));
        let out = drain(&mut raw);
        let expected = vec![message(
            1,
            candidate,
            1,
            MessageBody::VoteResponse {
                granted,
                pre_vote: false,
            },
        )];
        assert_eq!(out.messages, expected, "vote {vote} candidate {candidate}");
    }
}

/// §5.2: a candidate that receives an Append from a leader of at least its term steps down.
#[test]
fn paper_5_2_candidate_fallback() {
    for leader_term_offset in [0, 1] {
        let mut raw = node(1, &[1, 2, 3]);
        raw.campaign();
        drain(&mut raw);
        let term = raw.status().term + leader_term_offset;
        let append = MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
        };
        raw.step(message(2, 1, term, append));
        drain(&mut raw);
        let status = raw.status();
        assert_eq!(
            (status.role, status.term, status.leader_id),
            (Role::Follower, term, 2)
        );
    }
}

/// §5.2: election timeouts are chosen randomly from a fixed interval [et, 2et).
#[test]
fn paper_5_2_election_timeout_randomized() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let mut config = config(1);
        config.seed = seed;
        let mut raw = node_with(1, &[1, 2, 3], &[], 1, config);
        let mut elapsed = 0;
        while raw.status().role == Role::Follower {
            raw.tick();
            drain(&mut raw);
            elapsed += 1;
            assert!(
                elapsed < 2 * ELECTION_TICKS,
                "timeout beyond 2 * election ticks"
            );
        }
        assert!(
            elapsed >= ELECTION_TICKS,
            "timeout below the election ticks"
        );
        seen.insert(elapsed);
    }
    assert!(
        seen.len() > ELECTION_TICKS as usize / 2,
        "timeouts are not spread: {seen:?}"
    );
}

/// §5.3: the leader appends a proposal to its log and sends it to every follower.
#[test]
fn paper_5_3_leader_start_replication() {
    let mut raw = node(1, &[1, 2, 3]);
    let term = elect(&mut raw, &[1, 2, 3], true);
    let last = raw.status().last_index;
    raw.propose(vec![b"x".to_vec()]).expect("leader accepts");
    let out = drain(&mut raw);
    let proposed = Entry {
        index: last + 1,
        term,
        kind: EntryKind::Normal,
        data: b"x".to_vec().into(),
    };
    for peer in [2, 3] {
        let body = MessageBody::Append {
            prev_index: last,
            prev_term: term,
            entries: vec![proposed.clone()],
            commit: last,
        };
        assert!(
            out.messages.contains(&message(1, peer, term, body)),
            "append to {peer}"
        );
    }
    assert_eq!(
        raw.storage().last_index(),
        last + 1,
        "the leader persists its own entry"
    );
}

/// §5.3: an entry is committed once a majority stored it; then it is applied and followers
/// learn the new commit index.
#[test]
fn paper_5_3_leader_commit_entry() {
    let mut raw = node(1, &[1, 2, 3]);
    let term = elect(&mut raw, &[1, 2, 3], true);
    let index = raw.propose(vec![b"y".to_vec()]).expect("leader");
    drain(&mut raw);
    raw.step(append_ok(2, 1, term, index));
    let out = drain(&mut raw);
    assert_eq!(raw.status().commit, index);
    assert_eq!(
        out.committed.last().map(|e| e.data.to_vec()),
        Some(b"y".to_vec())
    );
    // Node 2 has every entry: the commit alone travels, in a notice it does not answer.
    let commits: Vec<(u64, u64)> = out
        .messages
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::Append { commit, .. } | MessageBody::CommitNotice { commit, .. } => {
                Some((m.to, commit))
            }
            _ => None,
        })
        .collect();
    assert!(
        commits.contains(&(2, index)),
        "followers learn the commit: {commits:?}"
    );
}

/// §5.3: the leader commits once a majority (itself included) acknowledged.
#[test]
fn paper_5_3_leader_acknowledge_commit() {
    let cases: &[(u64, &[u64], bool)] = &[
        (1, &[], true),
        (3, &[], false),
        (3, &[2], true),
        (3, &[2, 3], true),
        (5, &[], false),
        (5, &[2], false),
        (5, &[2, 3], true),
        (5, &[2, 3, 4, 5], true),
    ];
    for &(size, acceptors, committed) in cases {
        let voters: Vec<u64> = (1..=size).collect();
        let mut raw = node(1, &voters);
        let term = elect(&mut raw, &voters, true);
        let index = raw.propose(vec![b"z".to_vec()]).expect("leader");
        drain(&mut raw);
        for &peer in acceptors {
            raw.step(append_ok(peer, 1, term, index));
        }
        drain(&mut raw);
        assert_eq!(
            raw.status().commit >= index,
            committed,
            "size {size} acceptors {acceptors:?}"
        );
    }
}

/// §5.3: committing an entry commits all preceding entries, including earlier terms'.
#[test]
fn paper_5_3_leader_commit_preceding_entries() {
    let logs: &[&[u64]] = &[&[], &[2], &[1, 2], &[1]];
    for &terms in logs {
        let mut raw = node_with(1, &[1, 2, 3], terms, 2, config(1));
        let term = elect(&mut raw, &[1, 2, 3], false);
        let index = raw.propose(vec![b"p".to_vec()]).expect("leader");
        drain(&mut raw);
        raw.step(append_ok(2, 1, term, index));
        let out = drain(&mut raw);
        let applied: Vec<u64> = out.committed.iter().map(|e| e.index).collect();
        assert_eq!(applied, (1..=index).collect::<Vec<u64>>(), "log {terms:?}");
    }
}

/// §5.3: a follower applies entries once it learns they are committed.
#[test]
fn paper_5_3_follower_commit_entry() {
    for (count, commit) in [(1u64, 1u64), (2, 2), (2, 1)] {
        let mut raw = node(1, &[1, 2, 3]);
        let entries: Vec<Entry> = (1..=count).map(|i| entry(i, 1)).collect();
        raw.step(message(
            2,
            1,
            1,
            MessageBody::Append {
                prev_index: 0,
                prev_term: 0,
                entries,
                commit,
            },
        ));
        let out = drain(&mut raw);
        assert_eq!(raw.status().commit, commit);
        let applied: Vec<u64> = out.committed.iter().map(|e| e.index).collect();
        assert_eq!(applied, (1..=commit).collect::<Vec<u64>>());
    }
}

/// §5.3: a follower refuses entries whose predecessor it does not hold, with a backtracking
/// hint, and accepts them otherwise.
#[test]
fn paper_5_3_follower_check_append() {
    // The follower's log has terms [1, 2]; (prev term, prev index) -> (reject, hint index).
    let cases = [
        (0, 0, false, 0),
        (1, 1, false, 0),
        (2, 2, false, 0),
        (1, 2, true, 1),
        (3, 3, true, 2),
    ];
    for (prev_term, prev_index, reject, hint_index) in cases {
        let mut raw = node_with(1, &[1, 2, 3], &[1, 2], 2, config(1));
        let body = MessageBody::Append {
            prev_index,
            prev_term,
            entries: vec![],
            commit: 0,
        };
        raw.step(message(2, 1, 2, body));
        let out = drain(&mut raw);
        assert_eq!(out.messages.len(), 1);
        match out.messages[0].body {
            MessageBody::AppendResponse {
                reject: got,
                hint_index: hint,
                ..
            } => {
                assert_eq!(
                    (got, hint),
                    (reject, hint_index),
                    "prev ({prev_term}, {prev_index})"
                );
            }
            ref other => panic!("unexpected reply {other:?}"),
        }
    }
}

/// §5.3: a conflicting entry and everything after it are deleted; new entries are appended.
#[test]
fn paper_5_3_follower_append_entries() {
    let cases: &[AppendCase] = &[
        (2, 2, &[(3, 3)], &[1, 2, 3]),
        (1, 1, &[(2, 3), (3, 4)], &[1, 3, 4]),
        (0, 0, &[(1, 1)], &[1, 2]),
        (0, 0, &[(1, 3)], &[3]),
    ];
    for &(prev_index, prev_term, new, expected) in cases {
        let mut raw = node_with(1, &[1, 2, 3], &[1, 2], 4, config(1));
        let entries: Vec<Entry> = new.iter().map(|&(i, t)| entry(i, t)).collect();
        raw.step(message(
            2,
            1,
            4,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit: 0,
            },
        ));
        drain(&mut raw);
        let status = raw.status();
        let terms: Vec<u64> = (1..=status.last_index)
            .map(|i| raw.term_of(i).expect("held"))
            .collect();
        assert_eq!(
            terms, expected,
            "prev ({prev_index}, {prev_term}) entries {new:?}"
        );
    }
}

/// Delivers messages among `nodes` until none is left (bounded).
fn deliver_all(nodes: &mut [RawNode<MemStorage>], mut queue: Vec<Message>) {
    for _ in 0..10_000 {
        let Some(next) = queue.pop() else { return };
        let target = &mut nodes[(next.to - 1) as usize];
        target.step(next);
        queue.extend(drain(target).messages);
    }
    panic!("messages did not quiesce");
}

/// §5.3 (Figure 7): the leader brings every follower's log in line with its own, whatever
/// it is missing or holds in excess.
#[test]
fn paper_5_3_leader_sync_follower_log() {
    let leader_log: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: &[&[u64]] = &[
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    for &follower_log in followers {
        let mut nodes = vec![
            node_with(1, &[1, 2, 3], leader_log, 8, config(1)),
            node_with(2, &[1, 2, 3], follower_log, 8, config(2)),
            node_with(3, &[1, 2, 3], leader_log, 8, config(3)),
        ];
        nodes[0].campaign();
        let out = drain(&mut nodes[0]);
        // Node 3 (same log as the leader) elects it; then everything is delivered.
        let votes: Vec<Message> = out.messages.into_iter().filter(|m| m.to == 3).collect();
        deliver_all(&mut nodes, votes);
        assert_eq!(nodes[0].status().role, Role::Leader);
        nodes[0].propose(vec![b"sync".to_vec()]).expect("leader");
        let out = drain(&mut nodes[0]);
        deliver_all(&mut nodes, out.messages);
        let leader_entries = nodes[0].storage().held_entries().to_vec();
        assert_eq!(
            nodes[1].storage().held_entries(),
            &leader_entries[..],
            "follower {follower_log:?}"
        );
    }
}

/// §5.4.1: RequestVote carries the candidate's last log index and term.
#[test]
fn paper_5_4_vote_request() {
    for terms in [&[1u64][..], &[1, 2], &[1, 1, 3]] {
        let mut raw = node_with(1, &[1, 2, 3], terms, 3, config(1));
        raw.campaign();
        let out = drain(&mut raw);
        let last = (terms.len() as u64, *terms.last().expect("non-empty"));
        for m in &out.messages {
            match m.body {
                MessageBody::RequestVote {
                    last_index,
                    last_term,
                    ..
                } => assert_eq!((last_index, last_term), last),
                ref other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(out.messages.len(), 2);
    }
}

/// §5.4.1: a voter denies its vote to a candidate whose log is less up-to-date than its own.
#[test]
fn paper_5_4_voter() {
    // Voter log terms; candidate (last index, last term); granted.
    let cases: &[(&[u64], u64, u64, bool)] = &[
        (&[1], 1, 1, true),
        (&[1], 2, 1, true),
        (&[1, 1], 1, 1, false),
        (&[1], 1, 2, true),
        (&[1], 2, 2, true),
        (&[1, 1], 1, 2, true),
        (&[2], 1, 1, false),
        (&[2], 2, 1, false),
        (&[1, 2], 1, 1, false),
    ];
    for &(terms, last_index, last_term, granted) in cases {
        let mut raw = node_with(1, &[1, 2, 3], terms, 3, config(1));
        let body = MessageBody::RequestVote {
            last_index,
            last_term,
            pre_vote: false,
            transfer: false,
        };
        raw.step(message(2, 1, 3, body));
        let out = drain(&mut raw);
        let reply = vec![message(
            1,
            2,
            3,
            MessageBody::VoteResponse {
                granted,
                pre_vote: false,
            },
        )];
        assert_eq!(
            out.messages, reply,
            "voter {terms:?} candidate ({last_index}, {last_term})"
        );
    }
}

/// §5.4.2: a leader commits by counting replicas only entries of its current term; earlier
/// terms' entries are committed indirectly.
#[test]
fn paper_5_4_leader_only_commits_log_from_current_term() {
    // The leader (term 3 after election) holds [1, 2] plus its no-op at 3; ack index -> commit.
    let cases = [(1, 0), (2, 0), (3, 3)];
    for (ack_index, commit) in cases {
        let mut raw = node_with(1, &[1, 2, 3], &[1, 2], 2, config(1));
        let term = elect(&mut raw, &[1, 2, 3], false);
        assert_eq!(term, 3);
        raw.step(append_ok(2, 1, term, ack_index));
        drain(&mut raw);
        assert_eq!(raw.status().commit, commit, "ack {ack_index}");
    }
}
