//! The follower's side of `Raft`: accepting Appends (with conflict hints), commit notices
//! (answered only on a mismatch), heartbeats and chunked, resumable snapshot installs.
//!
//! Owns: "a follower never truncates a committed entry" (checked in `RaftLog`) and the
//! validation of everything a leader sends before it touches the log.
//! Must not: do I/O; replies leave through `send` and wait for the persist.

use super::core::{IncomingSnapshot, Raft, SnapshotChunk};
use super::storage::Storage;
use super::types::{ConfState, Entry, MessageBody, NodeId, Snapshot, SnapshotMeta};

impl<S: Storage> Raft<S> {
    pub(crate) fn step_follower(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            MessageBody::CommitNotice {
                prev_index,
                prev_term,
                commit,
            } => self.handle_commit_notice(from, prev_index, prev_term, commit),
            MessageBody::Heartbeat { commit, read_round } => {
                self.log.commit_to(commit.min(self.log.last_index()));
                self.apply_committed_conf();
                self.send(from, MessageBody::HeartbeatResponse { read_round });
            }
            MessageBody::InstallSnapshot {
                index,
                snapshot_term,
                conf,
                offset,
                total_bytes,
                data,
            } => {
                let chunk = IncomingChunk {
                    index,
                    term: snapshot_term,
                    conf,
                    offset,
                    total_bytes,
                    data,
                };
                self.handle_snapshot_chunk(from, chunk);
            }
            _ => {}
        }
    }

    /// Whether the entries are consecutive after `prev_index` and no newer than our term.
    fn entries_well_formed(&self, prev_index: u64, prev_term: u64, entries: &[Entry]) -> bool {
        let mut expected_index = prev_index;
        let mut previous_term = prev_term;
        entries.iter().all(|entry| {
            expected_index += 1;
            let ok = entry.index == expected_index
                && entry.term >= previous_term
                && entry.term <= self.term;
            previous_term = entry.term;
            ok
        })
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) {
        if prev_index.checked_add(entries.len() as u64).is_none()
            || !self.entries_well_formed(prev_index, prev_term, &entries)
        {
            return;
        }
        if prev_index < self.log.committed {
            // Everything up to our commit already matches the leader (log matching).
            let body = MessageBody::AppendResponse {
                index: self.log.committed,
                reject: false,
                hint_index: 0,
                hint_term: 0,
            };
            self.send(from, body);
            return;
        }
        match self
            .log
            .maybe_append(prev_index, prev_term, commit, &entries)
        {
            Some(last_new) => {
                self.apply_committed_conf();
                let body = MessageBody::AppendResponse {
                    index: last_new,
                    reject: false,
                    hint_index: 0,
                    hint_term: 0,
                };
                self.send(from, body);
            }
            None => self.reject_append(from, prev_index, prev_term),
        }
    }

    /// A commit-only notice: commits what the matched prefix allows and stays silent; only a
    /// mismatch is answered (a rejection with hints, exactly as for an Append).
    ///
    /// Why answer a mismatch rather than nothing: in Replicate state the leader's next index
    /// runs ahead of what the follower acknowledged, and when an Append in flight is lost
    /// (a dropped connection) the follower's log ends before `prev_index`. A rejection is how
    /// the leader learns that and falls back to probing; staying silent would leave the repair
    /// to the next write or heartbeat round. A mismatch is rare, so the answer costs nothing
    /// in the common case.
    fn handle_commit_notice(&mut self, from: NodeId, prev_index: u64, prev_term: u64, commit: u64) {
        if prev_index < self.log.committed {
            // Our committed prefix already covers everything the notice could commit.
            return;
        }
        if !self.log.match_term(prev_index, prev_term) {
            self.reject_append(from, prev_index, prev_term);
            return;
        }
        // Log matching: our entries up to `prev_index` are the leader's, so its commit holds
        // for them, and for nothing past them (those may still be replaced).
        self.log.commit_to(commit.min(prev_index));
        self.apply_committed_conf();
    }

    /// Answers an Append or a commit notice whose (`prev_index`, `prev_term`) does not match
    /// our log, with the fast-backtracking hint.
    fn reject_append(&mut self, from: NodeId, prev_index: u64, prev_term: u64) {
        let hint_index = self
            .log
            .find_conflict_by_term(prev_index.min(self.log.last_index()), prev_term);
        let hint_term = self.log.term(hint_index).unwrap_or(0);
        let body = MessageBody::AppendResponse {
            index: prev_index,
            reject: true,
            hint_index,
            hint_term,
        };
        self.send(from, body);
    }

    fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: IncomingChunk) {
        let chunk_end = chunk.offset.checked_add(chunk.data.len() as u64);
        if chunk.total_bytes > self.config.snapshot_bytes_max
            || chunk_end.is_none_or(|end| end > chunk.total_bytes)
        {
            return;
        }
        let index = chunk.index;
        if index <= self.log.committed || self.log.match_term(index, chunk.term) {
            // Already covered: fast-forward the commit instead of installing.
            self.log
                .commit_to(index.max(self.log.committed).min(self.log.last_index()));
            self.apply_committed_conf();
            self.incoming_snapshot = None;
            let body = MessageBody::SnapshotResponse {
                index,
                received_bytes: chunk.total_bytes,
                done: true,
            };
            self.send(from, body);
            return;
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|s| {
            s.index == index && s.term == chunk.term && s.total_bytes == chunk.total_bytes
        });
        if !same && chunk.offset == 0 {
            // A new transfer (or a restart of one): the driver drops what it stored before.
            self.incoming_snapshot = Some(IncomingSnapshot {
                index,
                term: chunk.term,
                conf: chunk.conf,
                total_bytes: chunk.total_bytes,
                received_bytes: 0,
            });
        } else if !same {
            self.incoming_snapshot = None;
        }
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            // A chunk in the middle of a transfer we know nothing of (e.g. after a restart):
            // the leader starts again from offset 0.
            let body = MessageBody::SnapshotResponse {
                index,
                received_bytes: 0,
                done: false,
            };
            self.send(from, body);
            return;
        };
        // Only the chunk that continues what we hold is taken; any other offset (a duplicate,
        // a reordered or resent chunk) is ignored and our count tells the leader where to go on.
        let fresh = chunk.offset == incoming.received_bytes
            && (!chunk.data.is_empty() || chunk.total_bytes == 0);
        if fresh {
            incoming.received_bytes += chunk.data.len() as u64;
            self.snapshot_chunks.push(SnapshotChunk {
                index,
                offset: chunk.offset,
                total_bytes: chunk.total_bytes,
                data: chunk.data,
            });
        }
        let received_bytes = incoming.received_bytes;
        let done = fresh && received_bytes == incoming.total_bytes;
        if done {
            self.install_incoming_snapshot();
        }
        self.send(
            from,
            MessageBody::SnapshotResponse {
                index,
                received_bytes,
                done,
            },
        );
    }

    fn install_incoming_snapshot(&mut self) {
        let incoming = self.incoming_snapshot.take().expect("caller checked");
        assert_eq!(
            incoming.received_bytes, incoming.total_bytes,
            "installing a partial snapshot"
        );
        let meta = SnapshotMeta {
            index: incoming.index,
            term: incoming.term,
            conf: incoming.conf,
        };
        self.conf = sorted(meta.conf.clone());
        self.conf_applied_index = meta.index;
        // The bytes went out in `snapshot_chunks`; the driver assembled them.
        self.log.restore(Snapshot {
            meta,
            data: Vec::new(),
        });
    }
}

fn sorted(mut conf: ConfState) -> ConfState {
    conf.voters.sort_unstable();
    conf.voters.dedup();
    conf.learners.sort_unstable();
    conf.learners.dedup();
    let voters = conf.voters.clone();
    conf.learners.retain(|l| !voters.contains(l));
    conf
}

/// One InstallSnapshot message's fields.
struct IncomingChunk {
    index: u64,
    term: u64,
    conf: ConfState,
    offset: u64,
    total_bytes: u64,
    data: Vec<u8>,
}
