//! `RawNode`: the public, synchronous face of the core (`tick`, `step`, `propose`,
//! `read_index`, `ready`, `advance`) and `Ready`, the batch of work it hands to its driver.
//!
//! Owns: the hand-off protocol — what must be persisted before which messages leave, and what
//! becomes valid after `advance`.
//! Must not: do I/O, read clocks or spawn threads; the node driver and the simulator do that.

use super::config::Config;
use super::core::{Raft, RaftError, SnapshotChunk};
use super::leader::LeaseRead;
use super::progress::ProgressState;
use super::storage::Storage;
use super::types::{
    ConfChange, ConfState, Entry, HardState, Message, NodeId, Payload, ReadState, Role, Snapshot,
};

/// Volatile state worth reporting when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows (`NODE_NONE` if none).
    pub leader_id: NodeId,
    /// This node's role.
    pub role: Role,
}

/// One batch of work for the driver. Handle the fields in this order:
///
/// 1. send `messages` (they do not depend on this Ready's persist; heartbeats and Appends from
///    a leader go out immediately, in parallel with its own disk write);
/// 2. store `snapshot_chunks` in order (no fsync needed: a crash restarts the transfer);
///    persist `snapshot` (if any: its `data` is empty, its bytes are the chunks stored so
///    far, to fsync before the install), then append `entries` (truncating any suffix they
///    replace), then `hard_state`; if `must_sync`, fsync before going on;
/// 3. send `persisted_messages` (votes and acknowledgements that promise durable state);
/// 4. apply `snapshot` to the state machine, then `committed_entries` in order;
/// 5. serve `read_states` once the state machine has applied their index;
/// 6. call [`RawNode::advance`].
///
/// With background persistence, step 2 only queues the entries: call
/// [`RawNode::advance_append`] instead of `advance`, hold `persisted_messages` (behind those
/// of earlier Readies), and once the entries are durable report them with
/// [`RawNode::persisted`] and send the held messages. `committed_entries` only ever lists
/// entries already reported durable, so applying them never runs ahead of the local disk.
#[derive(Debug, Default)]
pub struct Ready {
    /// Role or leader changes (informational).
    pub soft_state: Option<SoftState>,
    /// The hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append to the log.
    pub entries: Vec<Entry>,
    /// Chunks of a snapshot the leader is sending, to store in order (see [`SnapshotChunk`]);
    /// the core keeps none of the bytes.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// A snapshot received from the leader: persist it and restore the state machine from it.
    /// Its `data` is empty: the bytes are the `snapshot_chunks` of this and earlier Readies
    /// since the one at offset 0.
    pub snapshot: Option<Snapshot>,
    /// Whether step 2 needs an fsync (term, vote, entries or snapshot changed, or the commit
    /// index passed a membership change; a commit-index change alone does not).
    pub must_sync: bool,
    /// The commit index passed a membership change: step 2 must make the hard state durable,
    /// commit included, before the persisted messages leave. A restarted node rebuilds its
    /// membership from the changes at or below its durable commit; one whose commit was
    /// durable only from its last vote could come back two changes behind the cluster, whose
    /// quorums need not overlap its own (two leaders, two entries committed at one index). One
    /// change behind is the accepted case of single-server changes.
    pub commit_passed_conf_change: bool,
    /// Messages that may be sent right away.
    pub messages: Vec<Message>,
    /// Messages that may be sent only after step 2 completed.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed linearizable reads.
    pub read_states: Vec<ReadState>,
}

/// What the last Ready handed out, so `advance` knows what became durable.
#[derive(Clone, Copy, Debug)]
struct ReadyRecord {
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    applying: u64,
}

/// Most bytes of committed entries handed out in one Ready.
pub const READY_APPLY_BYTES_MAX: u64 = 64 << 20;

/// A Raft node without I/O. See the module documentation.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    previous_hard_state: HardState,
    previous_soft_state: SoftState,
    record: Option<ReadyRecord>,
}

impl<S: Storage> RawNode<S> {
    /// Starts (or restarts) a node from `storage`.
    ///
    /// # Errors
    /// The config's first problem, in plain words.
    pub fn new(config: Config, storage: S) -> Result<RawNode<S>, super::config::ConfigError> {
        config.validate()?;
        let raft = Raft::new(config, storage);
        let previous_hard_state = HardState {
            term: raft.term,
            vote: raft.vote,
            commit: raft.log.committed,
        };
        let previous_soft_state = SoftState {
            leader_id: raft.leader_id,
            role: raft.role,
        };
        Ok(RawNode {
            raft,
            previous_hard_state,
            previous_soft_state,
            record: None,
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Tells the core how many whole ticks of wall time went by since the last [`tick`]
    /// without being delivered yet (0 when the ticker is on time). Only a lease-mode leader's
    /// lease uses it, counting itself on the delivered ticks plus these, so a late ticker
    /// cannot stretch a lease past the wall clock; elections, heartbeats and CheckQuorum keep
    /// to delivered ticks, in order with the messages around them. Each [`tick`] delivered
    /// afterwards pays one of them back; a driver sets it again before any step that may
    /// answer from the lease (a ReadIndex request, [`RawNode::lease_read`]).
    ///
    /// [`tick`]: RawNode::tick
    pub fn set_ticks_owed(&mut self, owed: u64) {
        self.raft.ticks_owed = owed;
    }

    /// Feeds a message from a peer. Misrouted or malformed messages are dropped.
    pub fn step(&mut self, message: Message) {
        self.raft.step(message);
    }

    /// Campaigns now (tests and operators; normally the election timeout does this).
    pub fn campaign(&mut self) {
        self.raft.campaign(false);
    }

    /// The transport saw the connection from `peer` break. A follower whose leader it is
    /// campaigns soon instead of after an election timeout (not in lease mode; see
    /// `leader_loss.rs`). Returns whether this node acted on it.
    pub fn leader_unreachable(&mut self, peer: NodeId) -> bool {
        self.raft.leader_unreachable(peer)
    }

    /// Tells the core which adjacent entries hold events of one command (a *run*): `same`
    /// gets the data of two consecutive non-empty entries of one term. Every leader then
    /// sends each run whole in one Append (past the message window if need be), so no log
    /// ever holds part of a run and no node commits or applies part of one (the argument is
    /// in `leader.rs`). `propose` refuses runs over [`crate::raft::COMMAND_BYTES_MAX`]. Set
    /// it before the first `propose` or `step`, identically on every node; the default makes
    /// every entry a run of its own.
    pub fn set_same_command(&mut self, same: super::core::SameCommand) {
        self.raft.same_command = same;
    }

    /// Appends a batch of payloads to the log (leader only); returns the last index used.
    ///
    /// # Errors
    /// `NotLeader` (with the known leader), `TransferInProgress`, `CommandTooLarge` (a run
    /// over [`crate::raft::COMMAND_BYTES_MAX`]) or `InvalidRequest` (the first payload
    /// continues the command the log ends with); nothing is appended then.
    pub fn propose<P: Into<Payload>>(&mut self, payloads: Vec<P>) -> Result<u64, RaftError> {
        self.raft
            .propose(payloads.into_iter().map(Into::into).collect())
    }

    /// Proposes a single-server membership change (leader only); returns its index.
    ///
    /// # Errors
    /// `NotLeader`, `ConfChangePending` (one change at a time, and not before the leader's
    /// first commit), `InvalidRequest` (no voter would remain).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, RaftError> {
        self.raft.propose_conf_change(change)
    }

    /// What [`RawNode::propose_conf_change`] would answer now, without appending anything:
    /// `Ok(())` when it would append `change`, else its refusal. A driver that waits for a
    /// free index before it appends a change checks it up front with this, so a refusal is
    /// answered at once.
    ///
    /// # Errors
    /// As [`RawNode::propose_conf_change`].
    pub fn check_conf_change(&self, change: ConfChange) -> Result<(), RaftError> {
        self.raft.check_conf_change(change)
    }

    /// Hands leadership to `to` (leader only): catch it up, then send TimeoutNow.
    ///
    /// # Errors
    /// `NotLeader` or `InvalidRequest`.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        self.raft.transfer_leader(to)
    }

    /// Requests a linearizable read; a `ReadState` with `ctx` appears in a later Ready.
    /// Followers forward the request to the leader.
    ///
    /// # Errors
    /// `NotLeader` when no leader is known, `ReadQueueFull`.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), RaftError> {
        let raft = &mut self.raft;
        if raft.role == Role::Leader {
            return raft.handle_read_request(ctx, raft.id);
        }
        if raft.leader_id == super::types::NODE_NONE {
            return Err(RaftError::NotLeader {
                leader: super::types::NODE_NONE,
            });
        }
        raft.send(raft.leader_id, super::types::MessageBody::ReadIndex { ctx });
        Ok(())
    }

    /// Whether `ready` would return anything.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.read_broadcast_due
            || !raft.msgs.is_empty()
            || !raft.msgs_after_persist.is_empty()
            || !raft.snapshot_chunks.is_empty()
            || !raft.read_states.is_empty()
            || raft.log.unhanded_snapshot().is_some()
            || raft.log.has_unhanded_entries()
            || raft.log.applicable() > raft.log.applying
            || self.hard_state() != self.previous_hard_state
            || self.soft_state() != self.previous_soft_state
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.raft.term,
            vote: self.raft.vote,
            commit: self.raft.log.committed,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.raft.leader_id,
            role: self.raft.role,
        }
    }

    /// Collects the pending work. Call `advance` before the next `ready`.
    ///
    /// # Panics
    /// If the previous Ready was not advanced.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.record.is_none(),
            "ready() called twice without advance()"
        );
        if self.raft.read_broadcast_due && self.raft.role == Role::Leader {
            // Batching: every read registered since the last round shares this heartbeat round.
            self.raft.broadcast_heartbeat();
        }
        let (snapshot, entries) = self.raft.log.hand_unstable();
        let mut committed_entries = self.raft.log.hand_committed(READY_APPLY_BYTES_MAX);
        self.complete_last_run(&mut committed_entries);
        let hard_state = self.hard_state();
        let soft_state = self.soft_state();
        let term_or_vote_changed = (hard_state.term, hard_state.vote)
            != (self.previous_hard_state.term, self.previous_hard_state.vote);
        // Checked first: the range below would be empty, and `range` panics on an inverted one.
        let commit_advanced = hard_state.commit > self.previous_hard_state.commit;
        let commit_passed_conf_change = commit_advanced
            && self
                .raft
                .log
                .conf_entries
                .range(self.previous_hard_state.commit + 1..=hard_state.commit)
                .next()
                .is_some();
        let ready = Ready {
            soft_state: (soft_state != self.previous_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.previous_hard_state).then_some(hard_state),
            must_sync: term_or_vote_changed
                || commit_passed_conf_change
                || !entries.is_empty()
                || snapshot.is_some(),
            commit_passed_conf_change,
            messages: std::mem::take(&mut self.raft.msgs),
            persisted_messages: std::mem::take(&mut self.raft.msgs_after_persist),
            read_states: std::mem::take(&mut self.raft.read_states),
            snapshot_chunks: std::mem::take(&mut self.raft.snapshot_chunks),
            entries,
            snapshot,
            committed_entries,
        };
        self.previous_hard_state = hard_state;
        self.previous_soft_state = soft_state;
        self.record = Some(ReadyRecord {
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: ready.snapshot.as_ref().map(|s| s.meta.index),
            applying: self.raft.log.applying,
        });
        ready
    }

    /// Hands the rest of the run the last committed entry belongs to, which the apply byte
    /// limit may have cut: the state machine applies a command's events together, and a
    /// snapshot taken at the applied index never ends inside a command.
    fn complete_last_run(&mut self, committed: &mut Vec<Entry>) {
        let Some(last) = committed.last() else { return };
        let applicable = self.raft.log.applicable();
        if !self.raft.run_continues_after(last, applicable) {
            return;
        }
        self.raft.extend_to_run_end(committed, applicable);
        let last = committed.last().expect("extended, not emptied");
        self.raft.log.applying = last.index;
    }

    /// Tells the core the last Ready was handled: its entries and snapshot are in `Storage`
    /// and its committed entries applied.
    ///
    /// # Panics
    /// If there was no Ready to advance.
    pub fn advance(&mut self) {
        if let Some((index, term)) = self.advance_append() {
            self.persisted(index, term);
        }
    }

    /// Asynchronous persistence (etcd-raft's async storage writes): tells the core the last
    /// Ready was handled except that its entries may still be on their way to the disk (its
    /// snapshot, if any, is durable and its committed entries applied). Returns the last
    /// entry (index, term) the driver must report through [`RawNode::persisted`] once the
    /// entries are durable; until then the `persisted_messages` of this Ready must wait too,
    /// in Ready order. Later Readies may be taken meanwhile: their entries continue the log
    /// (or replace part of the unpersisted suffix).
    ///
    /// # Panics
    /// If there was no Ready to advance.
    pub fn advance_append(&mut self) -> Option<(u64, u64)> {
        let record = self.record.take().expect("advance() without a ready()");
        if let Some(index) = record.snapshot_index {
            self.raft.log.stable_snapshot_to(index);
        }
        self.raft.log.applied_to(record.applying);
        record.last_entry
    }

    /// Input: the entries up to `index` of `term` are durable in `Storage`. A leader counts
    /// its own copy toward commit only from here; an entry replaced meanwhile (another term
    /// at `index`) is ignored, and its replacement is reported by its own Ready.
    pub fn persisted(&mut self, index: u64, term: u64) {
        self.raft.on_persisted(index, term);
    }

    /// The storage (to append what a Ready lists, or to compact).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// The storage, read-only.
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        let raft = &self.raft;
        Status {
            id: raft.id,
            term: raft.term,
            vote: raft.vote,
            role: raft.role,
            leader_id: raft.leader_id,
            commit: raft.log.committed,
            applied: raft.log.applied,
            last_index: raft.log.last_index(),
            last_term: raft.log.last_term(),
            conf: raft.conf.clone(),
            followers: raft
                .progress
                .iter()
                .map(|(&id, p)| FollowerStatus {
                    id,
                    match_index: p.match_index,
                    replication: match p.state {
                        ProgressState::Probe => Replication::Probe,
                        ProgressState::Replicate => Replication::Replicate,
                        ProgressState::Snapshot { .. } => Replication::Snapshot,
                    },
                    silent_ticks: raft.ticks.saturating_sub(p.heard_at_tick),
                })
                .collect(),
            snapshot_sends_restarted: raft.snapshot_sends_restarted,
        }
    }

    /// Lease mode: whether this leader may serve a linearizable read locally now, and from
    /// which index (see [`LeaseRead`]). `None` in ReadIndex mode, on a follower, before the
    /// leader committed an entry of its term, or once its lease lapsed.
    pub fn lease_read(&self) -> Option<LeaseRead> {
        self.raft.lease_read()
    }

    /// The number of the newest heartbeat round this node started as leader (rounds only
    /// count up; a driver notes when each began to turn a [`LeaseRead`] into a deadline).
    pub fn read_round(&self) -> u64 {
        self.raft.read_round
    }

    /// The configured base election timeout, in ticks.
    pub fn election_ticks(&self) -> u32 {
        self.raft.config.election_ticks
    }

    /// The current term, without building a [`Status`] (which copies the membership).
    pub fn term(&self) -> u64 {
        self.raft.term
    }

    /// The role, without building a [`Status`].
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The commit index, without building a [`Status`].
    pub fn commit_index(&self) -> u64 {
        self.raft.log.committed
    }

    /// The term of entry `index`, if held.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.raft.log.term(index)
    }

    /// The index of the last entry in the log (persisted or not): a proposal's first entry
    /// gets the next one.
    pub fn last_index(&self) -> u64 {
        self.raft.log.last_index()
    }
}

/// How a leader feeds one follower's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// Looking for where the two logs agree: one Append per heartbeat (after an election, a
    /// rejection, or a silent follower).
    Probe,
    /// Streaming entries, several Appends in flight.
    Replicate,
    /// Sending a snapshot: the follower needs entries the leader compacted away.
    Snapshot,
}

impl Replication {
    /// Every way, for looking one up by name.
    pub const ALL: [Replication; 3] = [
        Replication::Probe,
        Replication::Replicate,
        Replication::Snapshot,
    ];

    /// The way named `name` (as [`Replication::name`] gives it).
    pub fn from_name(name: &str) -> Option<Replication> {
        Replication::ALL.into_iter().find(|way| way.name() == name)
    }

    /// Its name in the status document.
    pub fn name(self) -> &'static str {
        match self {
            Replication::Probe => "probe",
            Replication::Replicate => "replicate",
            Replication::Snapshot => "snapshot",
        }
    }
}

/// What a leader knows of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The follower.
    pub id: NodeId,
    /// The highest index known replicated on it.
    pub match_index: u64,
    /// How the leader feeds it.
    pub replication: Replication,
    /// Ticks since the leader last heard from it (or, if never, since it started leading or
    /// tracking it).
    pub silent_ticks: u64,
}

/// A snapshot of a node's state for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: NodeId,
    /// Role.
    pub role: Role,
    /// Known leader.
    pub leader_id: NodeId,
    /// Commit index.
    pub commit: u64,
    /// Applied index (as advanced).
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Term of the last entry.
    pub last_term: u64,
    /// Current membership.
    pub conf: ConfState,
    /// Leader only: what it knows of each follower.
    pub followers: Vec<FollowerStatus>,
    /// Snapshot transfers this node restarted as leader because a newer snapshot replaced
    /// theirs before they finished (or it could not be read).
    pub snapshot_sends_restarted: u64,
}
