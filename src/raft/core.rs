//! `Raft`: the consensus state machine shared by every role — terms, elections (PreVote,
//! CheckQuorum), message dispatch and membership. Leader and follower specifics live in
//! `leader.rs` and `follower.rs` as further `impl` blocks.
//!
//! Owns: election safety (one vote per term) and the order "persist, then send" through the
//! split of outgoing messages.
//! Must not: read clocks, randomness other than its seeded PRNG, or do I/O.

use super::config::{Config, ReadMode, SplitMix64};
use super::log::RaftLog;
use super::progress::Progress;
use super::storage::Storage;
use super::types::{
    ConfChange, ConfState, EntryKind, Message, MessageBody, NodeId, Role, NODE_NONE,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// Most ReadIndex requests queued on a leader waiting for its first commit of the term.
pub const READS_WAITING_MAX: usize = 4096;

/// Largest run of entries one command may propose, counted by [`command_bytes`]. A leader
/// sends a run whole in one Append even past `Config::msg_bytes_max` (see `leader.rs`), so
/// this bounds the largest Append: it is the engine's limit on one command's events
/// (`engine::COMMAND_BYTES_MAX`, refused at submit with a typed error before Raft sees it),
/// and leaves a wide margin inside a peer frame (`wire::FRAME_BYTES_MAX`).
pub const COMMAND_BYTES_MAX: u64 = crate::engine::COMMAND_BYTES_MAX as u64;

/// Bytes an entry costs toward [`COMMAND_BYTES_MAX`]: its data plus a bound on what the peer
/// codec adds around it (length prefixes and varint term, index and kind).
pub const COMMAND_ENTRY_OVERHEAD_BYTES: u64 = crate::engine::COMMAND_EVENT_OVERHEAD_BYTES as u64;

// An Append holding the largest run, with its header, fits a peer frame with room to spare.
const _: () = assert!(COMMAND_BYTES_MAX * 2 <= super::wire::FRAME_BYTES_MAX as u64);

/// The size of a run of entries toward [`COMMAND_BYTES_MAX`].
pub fn command_bytes<'a>(datas: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    datas
        .into_iter()
        .map(|data| data.len() as u64 + COMMAND_ENTRY_OVERHEAD_BYTES)
        .sum()
}

/// Whether two entry payloads hold events of one command (see
/// [`crate::raft::RawNode::set_same_command`]).
pub type SameCommand = fn(&[u8], &[u8]) -> bool;

/// The default [`SameCommand`]: every entry is a command of its own.
pub fn never_same_command(_: &[u8], _: &[u8]) -> bool {
    false
}

/// Why a request to the core was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// This node is not the leader; `leader` is the one it knows (or `NODE_NONE`).
    NotLeader {
        /// The known leader.
        leader: NodeId,
    },
    /// A leadership transfer is in progress; proposals wait until it ends.
    TransferInProgress,
    /// A membership change is still uncommitted (one at a time), or the new leader has not
    /// committed its first entry yet.
    ConfChangePending,
    /// The change is invalid (e.g. removing the last voter, transferring to a non-voter).
    InvalidRequest(&'static str),
    /// Too many reads are already queued.
    ReadQueueFull,
    /// One command's entries (a run, see [`crate::raft::RawNode::set_same_command`]) exceed
    /// [`COMMAND_BYTES_MAX`]: they could not travel in one Append, so the proposal is refused
    /// whole (nothing of it enters the log).
    CommandTooLarge {
        /// The run's size, counted as [`command_bytes`] does.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl fmt::Display for RaftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftError::NotLeader { leader: NODE_NONE } => {
                write!(f, "not the leader; no leader known")
            }
            RaftError::NotLeader { leader } => {
                write!(f, "not the leader; the leader is node {leader}")
            }
            RaftError::TransferInProgress => write!(f, "leadership transfer in progress"),
            RaftError::ConfChangePending => write!(f, "a membership change is still pending"),
            RaftError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            RaftError::ReadQueueFull => write!(f, "too many pending reads"),
            RaftError::CommandTooLarge { bytes, max } => write!(
                f,
                "one command's entries take {bytes} bytes, more than the {max} one message carries"
            ),
        }
    }
}

impl std::error::Error for RaftError {}

/// A ReadIndex request waiting for leadership confirmation.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub(crate) ctx: Vec<u8>,
    pub(crate) from: NodeId,
    pub(crate) index: u64,
    pub(crate) round: u64,
}

/// A snapshot being received chunk by chunk. Its bytes are not kept here: each accepted
/// chunk leaves through `Ready::snapshot_chunks` for the driver to write out (a temporary
/// file in the node), so a large snapshot never sits in memory while it arrives.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) conf: ConfState,
    pub(crate) total_bytes: u64,
    /// Bytes accepted contiguously from offset 0 (and handed to the driver).
    pub(crate) received_bytes: u64,
}

/// One accepted chunk of an incoming snapshot, for the driver to store: `data` goes at
/// `offset` of the snapshot covering `index`; offset 0 starts a new snapshot (drop whatever
/// an earlier one left). Chunks come in order and contiguous: the core refuses the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's last index.
    pub index: u64,
    /// Where `data` starts within the snapshot.
    pub offset: u64,
    /// The snapshot's total size in bytes.
    pub total_bytes: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

pub(crate) struct Raft<S: Storage> {
    pub(crate) id: NodeId,
    pub(crate) term: u64,
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader_id: NodeId,
    pub(crate) log: RaftLog<S>,
    pub(crate) config: Config,
    pub(crate) conf: ConfState,
    // Commit index up to which `conf` reflects the log's ConfChange entries.
    pub(crate) conf_applied_index: u64,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) msgs: Vec<Message>,
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_ticks: u32,
    // Until the first full election timeout passes, a fresh node honours the lease of a leader
    // it may have acknowledged before a restart.
    pub(crate) booting: bool,
    pub(crate) rng: SplitMix64,
    pub(crate) pending_conf_index: u64,
    pub(crate) transferee: NodeId,
    pub(crate) ticks: u64,
    // Whole ticks of wall time gone by since the last tick the driver delivered, as the driver
    // last said (`RawNode::set_ticks_owed`): a lease-mode leader's lease is counted on
    // `ticks + ticks_owed`, so a late ticker never stretches it past the wall clock.
    pub(crate) ticks_owed: u64,
    pub(crate) read_round: u64,
    pub(crate) read_round_ticks: VecDeque<(u64, u64)>,
    pub(crate) read_broadcast_due: bool,
    pub(crate) reads_pending: VecDeque<PendingRead>,
    pub(crate) reads_waiting_commit: Vec<(Vec<u8>, NodeId)>,
    pub(crate) read_states: Vec<super::types::ReadState>,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Chunks accepted since the last Ready (see [`SnapshotChunk`]).
    pub(crate) snapshot_chunks: Vec<SnapshotChunk>,
    /// Leader: the snapshot followers are being sent, described, not held: its bytes are
    /// read from storage a chunk at a time as they go out (`Storage::snapshot_chunk`).
    pub(crate) outgoing_snapshot: Option<super::storage::SnapshotInfo>,
    /// Leader: snapshot transfers restarted because their snapshot was replaced by a newer
    /// one (or could not be read) before they finished, since this core started.
    pub(crate) snapshot_sends_restarted: u64,
    /// Whether two adjacent entries of one term hold events of one command (a run that is
    /// replicated, persisted, committed and applied whole; see `leader.rs`).
    pub(crate) same_command: SameCommand,
    /// Leader: heartbeats since each installing follower last acknowledged a chunk.
    pub(crate) snapshot_silence: BTreeMap<NodeId, u32>,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn new(config: Config, storage: S) -> Raft<S> {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        let (hard_state, conf) = storage.initial_state();
        let log = RaftLog::new(storage, config.applied);
        // Only lease reads need a restarted voter to honour a lease it may have granted before.
        let booting = config.read_mode == ReadMode::Lease;

        let snapshot_index = log.first_index() - 1;
        let mut raft = Raft {
            id: config.id,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader_id: NODE_NONE,
            log,
            rng: SplitMix64::new(config.seed ^ config.id.wrapping_mul(0x9E37_79B9)),
            config,
            conf,
            conf_applied_index: snapshot_index,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: 0,
            booting,
            pending_conf_index: 0,
            transferee: NODE_NONE,
            ticks: 0,
            ticks_owed: 0,
            read_round: 0,
            read_round_ticks: VecDeque::new(),
            read_broadcast_due: false,
            reads_pending: VecDeque::new(),
            reads_waiting_commit: Vec::new(),
            read_states: Vec::new(),
            incoming_snapshot: None,
            snapshot_chunks: Vec::new(),
            outgoing_snapshot: None,
            snapshot_sends_restarted: 0,
            same_command: never_same_command,
            snapshot_silence: BTreeMap::new(),
        };
        raft.apply_committed_conf();
        raft.become_follower(raft.term, NODE_NONE);
        raft
    }

    pub(crate) fn quorum(&self) -> usize {
        self.conf.voters.len() / 2 + 1
    }

    pub(crate) fn promotable(&self) -> bool {
        self.conf.is_voter(self.id)
    }

    /// Queues a message, after the persist if the receiver relies on our durable state.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        assert!(to != self.id, "message to self: {}", body.name());
        let after_persist = matches!(
            body,
            MessageBody::AppendResponse { .. }
                | MessageBody::VoteResponse { .. }
                | MessageBody::SnapshotResponse { .. }
                | MessageBody::RequestVote {
                    pre_vote: false,
                    ..
                }
        );
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if after_persist {
            self.msgs_after_persist.push(message);
        } else {
            self.msgs.push(message);
        }
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            assert!(
                term > self.term,
                "term going back from {} to {term}",
                self.term
            );
            self.term = term;
            self.vote = NODE_NONE;
        }
        self.leader_id = NODE_NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.randomized_election_ticks = base + self.rng.below(u64::from(base)) as u32;
        self.votes.clear();
        self.progress.clear();
        self.transferee = NODE_NONE;
        self.reads_pending.clear();
        self.reads_waiting_commit.clear();
        self.read_round_ticks.clear();
        self.read_broadcast_due = false;
        self.outgoing_snapshot = None;
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader_id = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert!(
            self.role != Role::Leader,
            "leader cannot become pre-candidate"
        );
        // Term and vote stay: a pre-vote changes nothing durable.
        self.votes.clear();
        self.leader_id = NODE_NONE;
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert!(self.role != Role::Leader, "leader cannot become candidate");
        self.reset(self.term + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    /// Starts an election (or a pre-vote round) if this node may lead.
    pub(crate) fn campaign(&mut self, transfer: bool) {
        self.start_election(self.config.pre_vote && !transfer, transfer);
    }

    fn start_election(&mut self, pre_vote: bool, transfer: bool) {
        if !self.promotable() || self.role == Role::Leader {
            return;
        }
        if pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let vote_term = if pre_vote { self.term + 1 } else { self.term };
        if self.record_vote(self.id, true) {
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for voter in self.conf.voters.clone() {
            if voter != self.id {
                let body = MessageBody::RequestVote {
                    last_index,
                    last_term,
                    pre_vote,
                    transfer,
                };
                self.send_with_term(voter, vote_term, body);
            }
        }
    }

    /// Records a vote; returns true if the election was decided (won or lost).
    fn record_vote(&mut self, from: NodeId, granted: bool) -> bool {
        if !self.conf.is_voter(from) {
            return false;
        }
        self.votes.entry(from).or_insert(granted);
        let yes = self.votes.values().filter(|&&g| g).count();
        let no = self.votes.len() - yes;
        if yes >= self.quorum() {
            if self.role == Role::PreCandidate {
                self.campaign_after_pre_vote();
            } else {
                self.become_leader();
            }
            return true;
        }
        if no > self.conf.voters.len() - self.quorum() {
            self.become_follower(self.term, NODE_NONE);
            return true;
        }
        false
    }

    fn campaign_after_pre_vote(&mut self) {
        self.role = Role::Follower;
        self.start_election(false, false);
    }

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        // The tick delivered is one of those the driver said were owed.
        self.ticks_owed = self.ticks_owed.saturating_sub(1);
        if self.role == Role::Leader {
            self.tick_leader();
            return;
        }
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.config.election_ticks {
            self.booting = false;
        }
        if self.promotable() && self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            self.campaign(false);
        }
    }

    /// Whether this node still honours a leader's lease (CheckQuorum).
    fn in_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader_id != NODE_NONE || self.booting)
            && self.election_elapsed < self.config.election_ticks
    }

    /// Entry point for every peer message. Malformed or misrouted messages are dropped.
    pub(crate) fn step(&mut self, message: Message) {
        if message.to != self.id || message.from == self.id || message.from == NODE_NONE {
            return;
        }
        if message.term > self.term && !self.step_higher_term(&message) {
            return;
        }
        if message.term < self.term {
            self.step_lower_term(&message);
            return;
        }
        self.step_current(message);
    }

    /// Returns false if the message must be ignored.
    fn step_higher_term(&mut self, message: &Message) -> bool {
        match message.body {
            MessageBody::RequestVote {
                transfer, pre_vote, ..
            } => {
                if !transfer && self.in_lease() {
                    return false;
                }
                if !pre_vote {
                    self.become_follower(message.term, NODE_NONE);
                }
            }
            MessageBody::VoteResponse {
                pre_vote: true,
                granted: true,
            } => {}
            MessageBody::Append { .. }
            | MessageBody::CommitNotice { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(message.term, message.from);
            }
            _ => self.become_follower(message.term, NODE_NONE),
        }
        true
    }

    fn step_lower_term(&mut self, message: &Message) {
        match message.body {
            MessageBody::Append { .. }
            | MessageBody::CommitNotice { .. }
            | MessageBody::Heartbeat { .. }
                if self.config.check_quorum || self.config.pre_vote =>
            {
                // Tell a stale leader about the newer term so it steps down.
                let body = MessageBody::AppendResponse {
                    index: 0,
                    reject: false,
                    hint_index: 0,
                    hint_term: 0,
                };
                self.send(message.from, body);
            }
            MessageBody::RequestVote { pre_vote: true, .. } => {
                self.send(
                    message.from,
                    MessageBody::VoteResponse {
                        granted: false,
                        pre_vote: true,
                    },
                );
            }
            _ => {}
        }
    }

    fn step_current(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::RequestVote {
                last_index,
                last_term,
                pre_vote,
                ..
            } => {
                self.handle_vote_request(from, message.term, last_index, last_term, pre_vote);
            }
            MessageBody::VoteResponse { granted, pre_vote } => {
                let expected = if pre_vote {
                    Role::PreCandidate
                } else {
                    Role::Candidate
                };
                if self.role == expected {
                    self.record_vote(from, granted);
                }
            }
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader {
                    self.campaign(true);
                }
            }
            MessageBody::ReadIndexResponse { index, ctx } => {
                if self.role != Role::Leader {
                    self.read_states
                        .push(super::types::ReadState { index, ctx });
                }
            }
            body @ (MessageBody::Append { .. }
            | MessageBody::CommitNotice { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }) => {
                if self.role == Role::Leader {
                    return; // Another leader in our term cannot exist; the sender is broken.
                }
                if self.role != Role::Follower || self.leader_id != from {
                    self.become_follower(self.term, from);
                }
                self.election_elapsed = 0;
                self.booting = false;
                self.step_follower(from, body);
            }
            body => {
                if self.role == Role::Leader {
                    self.step_leader(from, body);
                }
            }
        }
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    ) {
        let can_vote = self.vote == from
            || (self.vote == NODE_NONE && self.leader_id == NODE_NONE)
            || (pre_vote && term > self.term);
        if can_vote && self.log.is_up_to_date(last_index, last_term) {
            if !pre_vote {
                self.election_elapsed = 0;
                self.vote = from;
            }
            self.send_with_term(
                from,
                term,
                MessageBody::VoteResponse {
                    granted: true,
                    pre_vote,
                },
            );
        } else {
            self.send(
                from,
                MessageBody::VoteResponse {
                    granted: false,
                    pre_vote,
                },
            );
        }
    }

    /// Applies ConfChange entries up to the commit index (membership takes effect at commit).
    pub(crate) fn apply_committed_conf(&mut self) {
        let committed = self.log.committed;
        if self.conf_applied_index >= committed {
            return;
        }
        let indexes: Vec<u64> = self
            .log
            .conf_entries
            .range(self.conf_applied_index + 1..=committed)
            .copied()
            .collect();
        self.conf_applied_index = committed;
        for index in indexes {
            let entries = match self.log.entries(index, index + 1, u64::MAX) {
                Ok(entries) => entries,
                Err(error) => panic!("committed conf entry {index} unreadable: {error}"),
            };
            assert_eq!(entries.len(), 1, "conf entry {index} missing");
            assert_eq!(
                entries[0].kind,
                EntryKind::ConfChange,
                "entry {index} is not a conf change"
            );
            // Proposals are validated by the leader; a malformed one is skipped by everyone alike.
            if let Some(change) = ConfChange::decode(&entries[0].data) {
                self.apply_conf_change(change);
            }
        }
    }

    fn apply_conf_change(&mut self, change: ConfChange) {
        self.conf.apply(change);
        if self.role != Role::Leader {
            return;
        }
        let id = change.node_id();
        if !self.conf.is_voter(self.id) {
            self.become_follower(self.term, NODE_NONE);
            return;
        }
        if id == self.transferee && !self.conf.is_voter(id) {
            self.transferee = NODE_NONE;
        }
        let member = self.conf.is_voter(id) || self.conf.is_learner(id);
        if !member {
            self.progress.remove(&id);
        } else if id != self.id && !self.progress.contains_key(&id) {
            self.progress
                .insert(id, Progress::new(self.log.last_index() + 1, self.ticks));
        }
    }
}
