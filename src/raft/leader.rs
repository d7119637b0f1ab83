//! The leader's side of `Raft`: replication with a window and fast backtracking, commit by
//! counting, heartbeats and CheckQuorum, snapshots to lagging followers, proposals, membership
//! changes, leadership transfer and ReadIndex.
//!
//! Owns: "only entries of the current term are committed by counting", "the leader counts
//! its own entries only once persisted" and "an Append never ends inside a command's run".
//! Must not: do I/O; everything leaves through `send`.

use super::config::ReadMode;
use super::core::{
    command_bytes, PendingRead, Raft, RaftError, COMMAND_BYTES_MAX, READS_WAITING_MAX,
};
use super::progress::{Progress, ProgressState};
use super::storage::Storage;
use super::types::{
    ConfChange, Entry, EntryKind, MessageBody, NodeId, Payload, ReadState, Role, NODE_NONE,
};

/// Most heartbeat rounds remembered for lease computation.
const READ_ROUNDS_REMEMBERED_MAX: usize = 1024;
/// Lease reads stop this many ticks before the voters' lease (an election timeout) ends.
/// Clock-drift assumption: the lease is safe while this node's ticks run at most
/// `election_ticks / (election_ticks - margin)` times slower than any voter's (1.25 with the
/// defaults: 10 and 2) and the process is never paused for longer than the margin
/// mid-read. Ticks come from each process's monotonic clock, not wall time.
pub(crate) const LEASE_SAFETY_MARGIN_TICKS: u64 = 2;

/// Ticks a lease lasts from the heartbeat round it rests on (see
/// `LEASE_SAFETY_MARGIN_TICKS`).
pub fn lease_ticks(election_ticks: u32) -> u64 {
    u64::from(election_ticks).saturating_sub(LEASE_SAFETY_MARGIN_TICKS)
}

/// A lease-mode leader's permission to serve a linearizable read from its own state, without
/// a round trip: every write acknowledged before now is at or below `index`, so a read served
/// once the state machine applied `index` is linearizable, provided it started while the
/// lease held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRead {
    /// The commit index: the state machine must have applied it before serving.
    pub index: u64,
    /// The heartbeat round (see [`crate::raft::RawNode::read_round`]) whose acknowledgement
    /// by a quorum grants the lease; `None` for a sole voter, which needs none.
    pub round: Option<u64>,
    /// The lease holds while the core's tick count is below this.
    pub expires_tick: u64,
}

/// Heartbeats without an acknowledgement after which a leader resends the current snapshot
/// chunk (one chunk in flight otherwise: the next leaves when the previous is acknowledged).
pub(crate) const SNAPSHOT_RESEND_HEARTBEATS: u32 = 5;

// Atomicity of a command's entries (the events of one command are a *run*: consecutive
// entries of one term for which `same_command` holds pairwise; they must be applied all or
// none). The rule: **every Append ends at the end of a run** (or at the end of the leader's
// log), whoever proposed the run and whatever the message window says: `end_at_run_boundary`
// trims a message back to the start of the run it would cut, or, when the message holds
// nothing but part of one run, carries it on to the run's end. `propose` refuses a run over
// `COMMAND_BYTES_MAX` so such a message stays far below a peer frame (`core.rs`), and the
// engine refuses such a command at submit already (a typed error, HTTP 413).
//
// Invariant I: every log holds, of every run, all of its entries or none (counting from the
// log's snapshot point, which only sits at the end of a run: see below). It holds inductively:
// - A leader's `propose` appends whole runs, and a proposal never continues the run its log
//   ends with (`check_proposal`); the no-op is a run of its own. So a leader's log, which
//   only grows, keeps I.
// - A follower's `maybe_append` keeps its log up to the first conflict c and takes the
//   message's entries from c on. The message ends at a run end (the rule). It may start inside
//   a run R (the leader's next index was a backtracking guess), but then the follower matched
//   at the entry before, holds part of R and so, by I, all of R: R's entries match and c lies
//   after R. Nor can c fall inside a run R' of the follower's: the entries before c are the
//   leader's too (log matching), so the leader would hold part of R' but not its entry at c,
//   against I on the leader. Truncating at c thus drops whole runs, and appends whole runs.
// - Persistence: a follower's Ready holds the entries of whole Appends and a leader's the
//   whole proposals; the driver queues a Ready's entries as one log append per term (a run has
//   one term), the log writer never splits an append across frames or segments (it caps
//   groups, not appends), and a frame is all-or-nothing by its CRC. A crash at any point
//   therefore leaves a prefix of whole runs; the simulator's disks lose whole Readies.
// - Commit: match indexes are ends of Appends and a leader's own persisted index is the end
//   of a Ready, so the commit index (a quorum's match, or the leader's commit capped by a
//   follower's match) always sits at the end of a run. `RawNode::ready` also never hands a
//   run's first entries to apply without the rest, so the applied index, and every snapshot
//   taken at it, ends a run too.
// A later leader holds every committed run whole (I and leader completeness) and appends its
// no-op after whole runs only, so the scenario "a follower got part of a big run, the leader
// died, the new leader committed that part with its no-op" cannot arise: that follower never
// held part of a run. The simulator checks, for every seed, that no node applies part of a
// run (`sim/check.rs`).

/// What `send_append` sends when a follower has no entries left to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IfEmpty {
    /// Nothing (a proposal: only new entries are worth a message).
    Skip,
    /// Only the commit index moved: a `CommitNotice` (not answered when it matches) in
    /// Replicate state, an empty Append (a probe, answered) in Probe state.
    Notice,
    /// An empty Append, whose answer the leader wants: a probe, a repair after a rejection or
    /// a lost acknowledgement, a transfer target's catch-up.
    Ask,
}

impl<S: Storage> Raft<S> {
    /// Whether `next` directly follows `entry` inside one command's run.
    pub(crate) fn continues_run(&self, entry: &Entry, next: &Entry) -> bool {
        entry.index + 1 == next.index
            && entry.term == next.term
            && entry.kind == EntryKind::Normal
            && next.kind == EntryKind::Normal
            && !entry.data.is_empty()
            && !next.data.is_empty()
            && (self.same_command)(&entry.data, &next.data)
    }

    /// Ends an Append cut by the message limits at the end of a run: back to the start of the
    /// run the cut falls in, or (when the message holds only part of one run) on to its end.
    fn end_at_run_boundary(&self, entries: &mut Vec<Entry>) {
        let Some(last) = entries.last() else { return };
        if !self.run_continues_after(last, self.log.last_index()) {
            return;
        }
        let mut start = entries.len() - 1;
        while start > 0 && self.continues_run(&entries[start - 1], &entries[start]) {
            start -= 1;
        }
        if start > 0 {
            entries.truncate(start);
        } else {
            self.extend_to_run_end(entries, self.log.last_index());
        }
        let last = entries.last().expect("never emptied");
        assert!(
            !self.run_continues_after(last, self.log.last_index()),
            "an Append ends inside a run at {}",
            last.index
        );
    }

    /// Whether the entry after `entry` (up to `hi`) continues its run.
    pub(crate) fn run_continues_after(&self, entry: &Entry, hi: u64) -> bool {
        if entry.index >= hi {
            return false;
        }
        match self.log.entries(entry.index + 1, entry.index + 2, u64::MAX) {
            Ok(next) => next.first().is_some_and(|n| self.continues_run(entry, n)),
            Err(error) => panic!("entry after {} unreadable: {error}", entry.index),
        }
    }

    /// Appends to `entries` the rest of the run their last entry belongs to, up to index `hi`.
    ///
    /// # Panics
    /// If the run exceeds `COMMAND_BYTES_MAX` (`propose` refuses those).
    pub(crate) fn extend_to_run_end(&self, entries: &mut Vec<Entry>, hi: u64) {
        const READ_ENTRIES_MAX: u64 = 256;
        let mut run_bytes = 0;
        loop {
            let last = entries.last().expect("extending a non-empty message");
            let lo = last.index + 1;
            if lo > hi {
                return;
            }
            let more = match self
                .log
                .entries(lo, (lo + READ_ENTRIES_MAX).min(hi + 1), u64::MAX)
            {
                Ok(more) => more,
                Err(error) => panic!("entries after {} unreadable: {error}", last.index),
            };
            let before = entries.len();
            for entry in more {
                if !self.continues_run(entries.last().expect("non-empty"), &entry) {
                    break;
                }
                run_bytes += command_bytes([entry.data.as_slice()]);
                assert!(
                    run_bytes <= COMMAND_BYTES_MAX,
                    "a run past entry {} exceeds COMMAND_BYTES_MAX",
                    entry.index
                );
                entries.push(entry);
            }
            let taken = entries.len() - before;
            if (taken as u64) < READ_ENTRIES_MAX {
                return;
            }
        }
    }

    /// Refuses a proposal holding a run over `COMMAND_BYTES_MAX`, or whose first entry would
    /// continue the run the log ends with (a run must enter the log in one proposal).
    fn check_proposal(&self, payloads: &[Payload]) -> Result<(), RaftError> {
        let same = |a: &[u8], b: &[u8]| !a.is_empty() && !b.is_empty() && (self.same_command)(a, b);
        let last_index = self.log.last_index();
        // A compacted last entry means the log ends at a snapshot, which ends a run.
        if let (Ok(last), Some(first)) = (
            self.log.entries(last_index, last_index + 1, u64::MAX),
            payloads.first(),
        ) {
            let continued = last.first().is_some_and(|last| {
                last.term == self.term && last.kind == EntryKind::Normal && same(&last.data, first)
            });
            if continued {
                return Err(RaftError::InvalidRequest(
                    "a proposal continues the command the log ends with",
                ));
            }
        }
        let mut run_bytes = 0;
        for (k, data) in payloads.iter().enumerate() {
            let continues = k > 0 && same(&payloads[k - 1], data);
            run_bytes = if continues { run_bytes } else { 0 } + command_bytes([data.as_slice()]);
            if run_bytes > COMMAND_BYTES_MAX {
                return Err(RaftError::CommandTooLarge {
                    bytes: run_bytes,
                    max: COMMAND_BYTES_MAX,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn become_leader(&mut self) {
        self.snapshot_silence.clear();
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        assert_eq!(self.vote, self.id, "a leader voted for itself");
        let term = self.term;
        self.become_follower_keeping_term();
        self.role = Role::Leader;
        self.leader_id = self.id;
        let next = self.log.last_index() + 1;
        let peers: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(&self.conf.learners)
            .copied()
            .collect();
        for peer in peers.into_iter().filter(|&p| p != self.id) {
            self.progress.insert(peer, Progress::new(next, self.ticks));
        }
        // A new leader first commits an entry of its own term (the no-op); until then it may not
        // serve reads or change membership.
        let noop = Entry {
            term,
            index: next,
            kind: EntryKind::Normal,
            data: Payload::default(),
        };
        self.append_own(vec![noop]);
        self.pending_conf_index = self.log.last_index();
        self.broadcast_append(IfEmpty::Ask);
    }

    fn become_follower_keeping_term(&mut self) {
        let (term, vote) = (self.term, self.vote);
        self.become_follower(term, NODE_NONE);
        assert_eq!(self.vote, vote, "role change lost the vote");
    }

    fn append_own(&mut self, entries: Vec<Entry>) {
        // The leader's own copy counts toward commit only once persisted (`on_persisted`).
        self.log.append(&entries);
    }

    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower_keeping_term();
                return;
            }
            self.transferee = NODE_NONE;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&mut self) -> bool {
        let mut active = usize::from(self.conf.is_voter(self.id));
        for (id, progress) in self.progress.iter_mut() {
            if progress.recent_active && self.conf.is_voter(*id) {
                active += 1;
            }
            progress.recent_active = false;
        }
        active >= self.quorum()
    }

    /// Starts a new heartbeat (and ReadIndex) round to every follower.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.read_round += 1;
        self.read_broadcast_due = false;
        self.read_round_ticks
            .push_back((self.read_round, self.ticks));
        if self.read_round_ticks.len() > READ_ROUNDS_REMEMBERED_MAX {
            self.read_round_ticks.pop_front();
        }
        let peers: Vec<(NodeId, u64, bool)> = self
            .progress
            .iter()
            .map(|(&id, p)| {
                (
                    id,
                    p.match_index,
                    matches!(p.state, ProgressState::Snapshot { .. }),
                )
            })
            .collect();
        for (peer, match_index, snapshotting) in peers {
            let commit = match_index.min(self.log.committed);
            self.send(
                peer,
                MessageBody::Heartbeat {
                    commit,
                    read_round: self.read_round,
                },
            );
            if snapshotting {
                // Resume an install whose last chunk or ack was lost, but only after a few
                // silent heartbeats: a chunk may be large and is most likely still in flight.
                let silence = self.snapshot_silence.entry(peer).or_insert(0);
                *silence += 1;
                if *silence >= SNAPSHOT_RESEND_HEARTBEATS {
                    *silence = 0;
                    self.send_snapshot_chunk(peer);
                }
            }
        }
        self.confirm_reads();
    }

    pub(crate) fn broadcast_append(&mut self, if_empty: IfEmpty) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer, if_empty);
        }
    }

    /// Sends the next Append (or snapshot) to `to` if its window allows, or what `if_empty`
    /// says when there are no entries to send; true if sent.
    pub(crate) fn send_append(&mut self, to: NodeId, if_empty: IfEmpty) -> bool {
        let (msgs_max, bytes_max) = (
            self.config.inflight_msgs_max,
            self.config.inflight_bytes_max,
        );
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if progress.is_paused(msgs_max, bytes_max) {
            return false;
        }
        let next = progress.next_index;
        let prev_term = self.log.term(next - 1);
        let hi = next.saturating_add(self.config.msg_entries_max);
        let entries = self.log.entries(next, hi, self.config.msg_bytes_max);
        let (Some(prev_term), Ok(mut entries)) = (prev_term, entries) else {
            self.start_snapshot(to);
            return true;
        };
        self.end_at_run_boundary(&mut entries);
        let progress = self.progress.get_mut(&to).expect("checked above");
        if entries.is_empty() {
            match if_empty {
                IfEmpty::Skip => return false,
                IfEmpty::Notice if progress.state == ProgressState::Replicate => {
                    // Every entry up to `next - 1` went out in an Append that is answered on
                    // its own: the follower needs the commit, the leader needs no answer.
                    if !self.refresh_queued_commit(to, next - 1) {
                        let body = MessageBody::CommitNotice {
                            prev_index: next - 1,
                            prev_term,
                            commit: self.log.committed,
                        };
                        self.send(to, body);
                    }
                    return true;
                }
                IfEmpty::Notice | IfEmpty::Ask => {}
            }
        }
        if let Some(last) = entries.last() {
            progress.sent_entries(last.index, entries.iter().map(Entry::size_bytes).sum());
        } else if progress.state == ProgressState::Probe {
            progress.probe_sent = true;
        }
        let commit = self.log.committed;
        self.send(
            to,
            MessageBody::Append {
                prev_index: next - 1,
                prev_term,
                entries,
                commit,
            },
        );
        true
    }

    /// When the last message queued for `to` (not yet taken by a Ready) is an Append or a
    /// notice ending at `last_index`, raises its commit to ours instead of queueing another
    /// notice: several commits in one driver pass then cost one message. True if done. Safe
    /// because the follower caps a commit by the prefix the message matched, and the message
    /// still leaves before anything queued later.
    fn refresh_queued_commit(&mut self, to: NodeId, last_index: u64) -> bool {
        let committed = self.log.committed;
        let Some(queued) = self.msgs.iter_mut().rev().find(|m| m.to == to) else {
            return false;
        };
        if queued.term != self.term {
            return false;
        }
        match &mut queued.body {
            MessageBody::CommitNotice {
                prev_index, commit, ..
            } if *prev_index == last_index => {
                *commit = (*commit).max(committed);
                true
            }
            MessageBody::Append {
                prev_index,
                entries,
                commit,
                ..
            } if entries.last().map_or(*prev_index, |e| e.index) == last_index => {
                *commit = (*commit).max(committed);
                true
            }
            _ => false,
        }
    }

    fn start_snapshot(&mut self, to: NodeId) {
        let snapshot_index = self.log.first_index() - 1;
        let cached = self.outgoing_snapshot.as_ref().map(|s| s.meta.index);
        if cached != Some(snapshot_index) {
            // Only its description: the bytes are read a chunk at a time as they are sent.
            match self.log.storage.snapshot_info() {
                Ok(info) if info.meta.index == snapshot_index => {
                    self.outgoing_snapshot = Some(info);
                }
                // Not readable (or not the log's yet): retried on the next heartbeat.
                Ok(_) | Err(_) => return,
            }
        }
        let progress = self
            .progress
            .get_mut(&to)
            .expect("snapshot to a tracked peer");
        progress.become_snapshot(snapshot_index);
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        let ProgressState::Snapshot { index, acked_bytes } = progress.state else {
            return;
        };
        // The log compacted past this transfer's snapshot (a newer one was taken): once
        // installed it would leave a gap to the log, so the install restarts from scratch
        // with the newer one rather than finishing a useless one.
        let current = self.log.first_index() - 1;
        let Some(info) = self
            .outgoing_snapshot
            .as_ref()
            .filter(|s| s.meta.index == index && index == current)
        else {
            self.snapshot_sends_restarted += 1;
            progress.become_probe();
            self.send_append(to, IfEmpty::Ask);
            return;
        };
        let total_bytes = info.total_bytes;
        let start = acked_bytes.min(total_bytes);
        let len = self.config.snapshot_chunk_bytes.min(total_bytes - start);
        let (snapshot_term, conf) = (info.meta.term, info.meta.conf.clone());
        let data = match self.log.storage.snapshot_chunk(index, start, len) {
            Ok(data) => data,
            Err(_) => {
                // Replaced or unreadable: forget it; the next heartbeat answer restarts the
                // install (a probe, then a fresh `start_snapshot`), so the follower never
                // gets bytes of two snapshots under one index, and no loop retries at once.
                self.outgoing_snapshot = None;
                self.snapshot_sends_restarted += 1;
                progress.become_probe();
                progress.probe_sent = true;
                return;
            }
        };
        assert_eq!(
            data.len() as u64,
            len,
            "storage returned a snapshot chunk of the wrong size"
        );
        progress.probe_sent = true;
        let body = MessageBody::InstallSnapshot {
            index,
            snapshot_term,
            conf,
            offset: start,
            total_bytes,
            data,
        };
        self.send(to, body);
    }

    pub(crate) fn step_leader(&mut self, from: NodeId, body: MessageBody) {
        if let MessageBody::ReadIndex { ctx } = body {
            // A refused forwarded read is dropped; the follower's caller times out and retries.
            let _ = self.handle_read_request(ctx, from);
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        progress.heard_at_tick = self.ticks;
        match body {
            MessageBody::AppendResponse {
                index,
                reject: true,
                hint_index,
                hint_term,
            } => {
                self.handle_append_rejection(from, index, hint_index, hint_term);
            }
            MessageBody::AppendResponse { index, .. } => self.handle_append_success(from, index),
            MessageBody::HeartbeatResponse { read_round } => {
                self.handle_heartbeat_response(from, read_round)
            }
            MessageBody::SnapshotResponse {
                index,
                received_bytes,
                done,
            } => {
                self.handle_snapshot_response(from, index, received_bytes, done);
            }
            _ => {}
        }
    }

    fn handle_append_rejection(
        &mut self,
        from: NodeId,
        rejected: u64,
        hint_index: u64,
        hint_term: u64,
    ) {
        let next_hint = if hint_term > 0 {
            self.log.find_conflict_by_term(hint_index, hint_term) + 1
        } else {
            hint_index + 1
        };
        let progress = self.progress.get_mut(&from).expect("caller checked");
        if progress.maybe_decrease_to(rejected, next_hint) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
                progress.next_index = progress
                    .next_index
                    .min(next_hint)
                    .max(progress.match_index + 1);
            }
            self.send_append(from, IfEmpty::Ask);
        }
    }

    fn handle_append_success(&mut self, from: NodeId, index: u64) {
        let last_index = self.log.last_index();
        if index > last_index {
            return; // Acknowledges entries we never sent: a broken peer.
        }
        let progress = self.progress.get_mut(&from).expect("caller checked");
        if !progress.maybe_update(index) {
            return;
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot {
                index: snapshot_index,
                ..
            } if progress.match_index >= snapshot_index => {
                progress.become_probe();
                progress.become_replicate();
            }
            ProgressState::Replicate => progress.free_to(index),
            ProgressState::Snapshot { .. } => {}
        }
        if self.maybe_commit() {
            self.broadcast_append(IfEmpty::Notice);
        } else {
            while self.send_append(from, IfEmpty::Skip) {}
        }
        if from == self.transferee
            && self.progress.get(&from).map(|p| p.match_index) == Some(last_index)
        {
            self.send(from, MessageBody::TimeoutNow);
        }
        self.maybe_promote_learner(from);
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let (msgs_max, bytes_max) = (
            self.config.inflight_msgs_max,
            self.config.inflight_bytes_max,
        );
        let last_index = self.log.last_index();
        let progress = self.progress.get_mut(&from).expect("caller checked");
        progress.read_round_acked = progress
            .read_round_acked
            .max(read_round.min(self.read_round));
        match progress.state {
            ProgressState::Probe => progress.probe_sent = false,
            ProgressState::Replicate if progress.inflight_full(msgs_max, bytes_max) => {
                progress.free_first()
            }
            _ => {}
        }
        if progress.match_index < last_index {
            // Asked, not noticed: the acknowledgement of entries already sent may have been
            // lost, and only an answered Append brings the match index (and commit) forward.
            self.send_append(from, IfEmpty::Ask);
        }
        self.confirm_reads();
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: u64,
        received_bytes: u64,
        done: bool,
    ) {
        let progress = self.progress.get_mut(&from).expect("caller checked");
        let ProgressState::Snapshot {
            index: sending,
            acked_bytes,
        } = progress.state
        else {
            return;
        };
        if index != sending {
            return;
        }
        self.snapshot_silence.remove(&from);
        if done {
            progress.match_index = progress.match_index.max(index);
            progress.become_probe();
            self.send_append(from, IfEmpty::Ask);
            return;
        }
        if received_bytes == acked_bytes {
            // A duplicate or stale answer: the heartbeat resends if a chunk was lost. Sending
            // here too would multiply the chunks in flight.
            return;
        }
        // The follower's count is the truth, even when lower (it restarted and lost the part).
        progress.state = ProgressState::Snapshot {
            index,
            acked_bytes: received_bytes,
        };
        self.send_snapshot_chunk(from);
    }

    /// Commit by counting: the quorum-th highest match index, if its entry is of this term.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mut matches: Vec<u64> = Vec::with_capacity(self.conf.voters.len());
        for &voter in &self.conf.voters {
            if voter == self.id {
                matches.push(self.log.stable_last_index());
            } else {
                matches.push(self.progress.get(&voter).map_or(0, |p| p.match_index));
            }
        }
        if matches.is_empty() {
            return false;
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matches[self.quorum() - 1];
        let was_committed_in_term = self.committed_in_term();
        if !self.log.maybe_commit(quorum_index, self.term) {
            return false;
        }
        self.apply_committed_conf();
        if self.role == Role::Leader && !was_committed_in_term {
            for (ctx, from) in std::mem::take(&mut self.reads_waiting_commit) {
                let _ = self.handle_read_request(ctx, from);
            }
        }
        true
    }

    pub(crate) fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    /// Called once the caller persisted entries up to `index` (of `term`).
    pub(crate) fn on_persisted(&mut self, index: u64, term: u64) {
        self.log.stable_to(index, term);
        if self.role != Role::Leader {
            return;
        }
        // Committing may apply a change that removes this leader; then nothing is broadcast.
        let committed = self.maybe_commit();
        if committed && self.role == Role::Leader {
            self.broadcast_append(IfEmpty::Notice);
        }
    }

    pub(crate) fn propose(&mut self, payloads: Vec<Payload>) -> Result<u64, RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader_id,
            });
        }
        if self.transferee != NODE_NONE {
            return Err(RaftError::TransferInProgress);
        }
        self.check_proposal(&payloads)?;
        let first = self.log.last_index() + 1;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(k, data)| Entry {
                term: self.term,
                index: first + k as u64,
                kind: EntryKind::Normal,
                data,
            })
            .collect();
        self.append_own(entries);
        self.broadcast_append(IfEmpty::Skip);
        Ok(self.log.last_index())
    }

    pub(crate) fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, RaftError> {
        self.check_conf_change(change)?;
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            kind: EntryKind::ConfChange,
            data: change.encode().into(),
        };
        self.append_own(vec![entry]);
        self.pending_conf_index = index;
        self.broadcast_append(IfEmpty::Skip);
        Ok(index)
    }

    /// Whether [`Raft::propose_conf_change`] would append `change` now (`Ok`) or refuse it
    /// (with the refusal it would give). Pure: a driver that holds a change until an index
    /// is free for it refuses it up front with this, and the answer stays true until the
    /// core steps, ticks or appends.
    pub(crate) fn check_conf_change(&self, change: ConfChange) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader_id,
            });
        }
        if self.pending_conf_index > self.log.committed {
            return Err(RaftError::ConfChangePending);
        }
        if self.transferee != NODE_NONE {
            return Err(RaftError::TransferInProgress);
        }
        let id = change.node_id();
        if id == NODE_NONE {
            // Its entry would not decode (`ConfChange::decode`): every node would skip it.
            return Err(RaftError::InvalidRequest("node id 0 is reserved"));
        }
        let member = self.conf.is_voter(id) || self.conf.is_learner(id);
        if matches!(change, ConfChange::Remove(_)) && !member {
            // An entry that changes nothing, which an operator would take for a removal.
            return Err(RaftError::InvalidRequest("no such member"));
        }
        let mut next_conf = self.conf.clone();
        next_conf.apply(change);
        if next_conf.voters.is_empty() {
            return Err(RaftError::InvalidRequest(
                "a configuration needs at least one voter",
            ));
        }
        Ok(())
    }

    fn maybe_promote_learner(&mut self, id: NodeId) {
        if !self.config.auto_promote_learners
            || !self.conf.is_learner(id)
            || self.role != Role::Leader
        {
            return;
        }
        let caught_up = self
            .progress
            .get(&id)
            .is_some_and(|p| p.match_index >= self.log.committed);
        if caught_up
            && self.pending_conf_index <= self.log.committed
            && self.transferee == NODE_NONE
        {
            let _ = self.propose_conf_change(ConfChange::AddVoter(id));
        }
    }

    pub(crate) fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader_id,
            });
        }
        if self.config.read_mode == ReadMode::Lease {
            return Err(RaftError::InvalidRequest(
                "leadership transfer would break read leases",
            ));
        }
        if to == self.id || !self.conf.is_voter(to) {
            return Err(RaftError::InvalidRequest(
                "transfer target must be another voter",
            ));
        }
        self.transferee = to;
        self.election_elapsed = 0;
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to, IfEmpty::Ask);
        }
        Ok(())
    }

    /// Registers a ReadIndex request from `from` (self or a follower).
    pub(crate) fn handle_read_request(
        &mut self,
        ctx: Vec<u8>,
        from: NodeId,
    ) -> Result<(), RaftError> {
        if !self.committed_in_term() {
            if self.reads_waiting_commit.len() >= READS_WAITING_MAX {
                return Err(RaftError::ReadQueueFull);
            }
            self.reads_waiting_commit.push((ctx, from));
            return Ok(());
        }
        let index = self.log.committed;
        if self.conf.voters == [self.id]
            || (self.config.read_mode == ReadMode::Lease && self.lease_valid())
        {
            self.answer_read(ReadState { index, ctx }, from);
            return Ok(());
        }
        if self.reads_pending.len() >= READS_WAITING_MAX {
            return Err(RaftError::ReadQueueFull);
        }
        self.reads_pending.push_back(PendingRead {
            ctx,
            from,
            index,
            round: self.read_round + 1,
        });
        self.read_broadcast_due = true;
        Ok(())
    }

    /// The highest heartbeat round a quorum of voters acknowledged.
    fn confirmed_round(&self) -> u64 {
        let mut rounds: Vec<u64> = self
            .conf
            .voters
            .iter()
            .map(|&v| {
                if v == self.id {
                    self.read_round
                } else {
                    self.progress.get(&v).map_or(0, |p| p.read_round_acked)
                }
            })
            .collect();
        if rounds.is_empty() {
            return 0;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[self.quorum() - 1]
    }

    /// A quorum acknowledged a heartbeat sent at tick `t`: no other leader can be elected
    /// before `t + election_ticks` (voters honour the lease that long), so the lease lasts
    /// until `t + election_ticks - LEASE_SAFETY_MARGIN_TICKS` of this node's ticks.
    fn lease_valid(&self) -> bool {
        self.lease_basis()
            .is_some_and(|(_, expires_tick)| self.lease_clock() < expires_tick)
    }

    /// The tick a lease is checked at: the ticks delivered plus those of wall time the driver
    /// says went by undelivered (a ticker late after a stall). Counting only delivered ticks
    /// would let a lease outlast the wall clock by the ticker's delay, while the voters, whose
    /// promise runs on their own clocks, may already elect another leader.
    fn lease_clock(&self) -> u64 {
        self.ticks.saturating_add(self.ticks_owed)
    }

    /// The heartbeat round the lease rests on (the newest one a quorum acknowledged) and the
    /// tick at which the lease it grants ends.
    fn lease_basis(&self) -> Option<(u64, u64)> {
        let confirmed = self.confirmed_round();
        let sent = self
            .read_round_ticks
            .iter()
            .find(|&&(round, _)| round == confirmed)
            .map(|&(_, t)| t)?;
        Some((confirmed, sent + lease_ticks(self.config.election_ticks)))
    }

    /// What this node may serve locally without asking anyone (see [`LeaseRead`]): only a
    /// lease-mode leader that committed an entry of its term (so its commit index covers every
    /// earlier leader's commits) and whose lease holds now.
    pub(crate) fn lease_read(&self) -> Option<LeaseRead> {
        if self.role != Role::Leader
            || self.config.read_mode != ReadMode::Lease
            || !self.committed_in_term()
        {
            return None;
        }
        let index = self.log.committed;
        if self.conf.voters == [self.id] {
            // No other voter can elect anyone: nothing to confirm, no expiry.
            return Some(LeaseRead {
                index,
                round: None,
                expires_tick: u64::MAX,
            });
        }
        let (round, expires_tick) = self.lease_basis()?;
        (self.lease_clock() < expires_tick).then_some(LeaseRead {
            index,
            round: Some(round),
            expires_tick,
        })
    }

    fn confirm_reads(&mut self) {
        let confirmed = self.confirmed_round();
        while self
            .reads_pending
            .front()
            .is_some_and(|r| r.round <= confirmed)
        {
            let read = self.reads_pending.pop_front().expect("front checked");
            self.answer_read(
                ReadState {
                    index: read.index,
                    ctx: read.ctx,
                },
                read.from,
            );
        }
    }

    fn answer_read(&mut self, state: ReadState, from: NodeId) {
        if from == self.id {
            self.read_states.push(state);
        } else {
            self.send(
                from,
                MessageBody::ReadIndexResponse {
                    index: state.index,
                    ctx: state.ctx,
                },
            );
        }
    }
}
