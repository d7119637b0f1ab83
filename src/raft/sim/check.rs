//! The safety properties the simulator checks after every step, from the Raft paper (§5.2,
//! §5.3, §5.4, Figure 3) plus monotonicity of term, commit and applied within a node's life,
//! lease safety (no later term commits while a leader may serve lease reads), and command
//! atomicity (no node applies part of a multi-entry put without the rest right after it).
//!
//! Owns: the global record of what was committed and applied at each index.
//! Must not: influence the run; it only observes.

use super::node::{entry_hash, Handled, PutOp};
use crate::raft::{Entry, MemStorage, NodeId, RawNode, Storage};
use std::collections::BTreeMap;

#[derive(Default)]
pub(crate) struct Checker {
    /// Election safety: the leader of each term.
    leaders: BTreeMap<u64, NodeId>,
    /// Log matching: (index, term) -> (entry hash, term of the previous entry).
    entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// Committed entries never change: index -> term.
    committed: BTreeMap<u64, u64>,
    /// State-machine safety: index -> (entry hash, digest after applying it).
    applied: BTreeMap<u64, (u64, u64)>,
    /// Command atomicity: applied index -> the put part it holds (`None`: not a put).
    parts: BTreeMap<u64, Option<PutOp>>,
    /// Per node: (term, commit, applied) last seen in this incarnation.
    cursors: BTreeMap<NodeId, (u64, u64, u64)>,
    pub(crate) leaders_elected: u64,
}

pub(crate) type CheckResult = Result<(), String>;

impl Checker {
    pub(crate) fn node_restarted(&mut self, id: NodeId) {
        self.cursors.remove(&id);
    }

    pub(crate) fn highest_committed(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// Checks what one Ready changed on node `id`.
    pub(crate) fn after_ready(
        &mut self,
        id: NodeId,
        raw: Option<&RawNode<MemStorage>>,
        handled: &Handled,
    ) -> CheckResult {
        for entry in &handled.persisted {
            let prev_term = match raw {
                Some(raw) => raw.term_of(entry.index - 1).unwrap_or(0),
                None => continue,
            };
            self.check_entry(id, entry, prev_term)?;
        }
        for (entry, put, digest) in &handled.applied {
            self.check_run(id, entry.index, *put)?;
            let record = (entry_hash(entry), *digest);
            let known = *self.applied.entry(entry.index).or_insert(record);
            if known != record {
                return Err(format!(
                    "state-machine safety: node {id} applied a different entry or digest at {}",
                    entry.index
                ));
            }
        }
        let Some(raw) = raw else { return Ok(()) };
        let status = raw.status();
        if handled.became_leader {
            self.check_new_leader(id, status.term, raw)?;
        }
        self.check_committed(id, raw)?;
        self.check_lease(id, status.term, raw)?;
        let cursor = (status.term, status.commit, status.applied);
        if let Some(&(term, commit, applied)) = self.cursors.get(&id) {
            if cursor.0 < term || cursor.1 < commit || cursor.2 < applied {
                return Err(format!(
                    "node {id}: (term, commit, applied) went back from {:?} to {cursor:?}",
                    (term, commit, applied)
                ));
            }
        }
        self.cursors.insert(id, cursor);
        Ok(())
    }

    /// Lease safety: while a node may serve reads from its lease, no later leader can have
    /// committed anything (the newest committed entry's term is the highest committed term).
    fn check_lease(&self, id: NodeId, term: u64, raw: &RawNode<MemStorage>) -> CheckResult {
        if raw.lease_read().is_none() {
            return Ok(());
        }
        match self.committed.values().next_back() {
            Some(&newest) if newest > term => Err(format!(
                "lease safety: node {id} holds a read lease in term {term} while an entry of term {newest} is committed"
            )),
            _ => Ok(()),
        }
    }

    /// Command atomicity: a put part other than the last is followed, at the next index, by
    /// the next part of the same put, and a part other than the first follows the previous
    /// one. Applied indexes are checked in every node's apply order, and what is applied at an
    /// index is the same everywhere (state-machine safety), so one global record suffices:
    /// a node that applied part of a run followed by anything else fails here.
    fn check_run(&mut self, id: NodeId, index: u64, put: Option<PutOp>) -> CheckResult {
        let before = self.parts.get(&(index - 1)).copied();
        let expected_next = before
            .flatten()
            .filter(|p| p.part + 1 < p.parts)
            .map(|p| (p.op_id, p.part + 1, p.parts));
        let got = put.map(|p| (p.op_id, p.part, p.parts));
        if let Some(expected) = expected_next {
            if got != Some(expected) {
                return Err(format!(
                    "command atomicity: node {id} applied {got:?} at {index} after a put part \
                     that needs {expected:?} next"
                ));
            }
        }
        if let (Some(put), Some(before)) = (put, before) {
            let follows = before.is_some_and(|b| {
                (b.op_id, b.part + 1, b.parts) == (put.op_id, put.part, put.parts)
            });
            if put.part > 0 && !follows {
                return Err(format!(
                    "command atomicity: node {id} applied part {} of {} of put {} at {index} \
                     without the part before it",
                    put.part, put.parts, put.op_id
                ));
            }
        }
        self.parts.insert(index, put);
        Ok(())
    }

    fn check_entry(&mut self, id: NodeId, entry: &Entry, prev_term: u64) -> CheckResult {
        let record = (entry_hash(entry), prev_term);
        let known = *self
            .entries
            .entry((entry.index, entry.term))
            .or_insert(record);
        if known != record {
            return Err(format!(
                "log matching: node {id} holds a different entry or predecessor at index {} term {}",
                entry.index, entry.term
            ));
        }
        Ok(())
    }

    fn check_new_leader(
        &mut self,
        id: NodeId,
        term: u64,
        raw: &RawNode<MemStorage>,
    ) -> CheckResult {
        self.leaders_elected += 1;
        let known = *self.leaders.entry(term).or_insert(id);
        if known != id {
            return Err(format!(
                "election safety: nodes {known} and {id} both led term {term}"
            ));
        }
        let compacted_below = raw.storage().first_index();
        for (&index, &committed_term) in &self.committed {
            if index < compacted_below {
                continue;
            }
            if raw.term_of(index) != Some(committed_term) {
                return Err(format!(
                    "leader completeness: leader {id} of term {term} lacks committed entry {index} (term {committed_term})"
                ));
            }
        }
        Ok(())
    }

    fn check_committed(&mut self, id: NodeId, raw: &RawNode<MemStorage>) -> CheckResult {
        let status = raw.status();
        let previous = self.cursors.get(&id).map_or(0, |c| c.1);
        let from = (previous + 1).max(raw.storage().first_index());
        for index in from..=status.commit {
            let Some(term) = raw.term_of(index) else {
                continue;
            };
            let known = *self.committed.entry(index).or_insert(term);
            if known != term {
                return Err(format!(
                    "committed entry {index} changed: term {known} then {term} on node {id}"
                ));
            }
        }
        Ok(())
    }
}
