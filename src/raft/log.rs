//! `RaftLog`: the core's view of the log, the persisted part (through `Storage`) followed by
//! the entries and snapshot not yet persisted ("unstable"), plus commit and apply cursors.
//!
//! Owns: the invariants `applied <= applying <= committed <= last_index` and "committed entries
//! are never truncated" (a violation panics with the values).
//! Must not: perform I/O; storage is only read.

use super::storage::{Storage, StorageError};
use super::types::{Entry, EntryKind, Snapshot};
use std::collections::BTreeSet;

pub(crate) struct RaftLog<S: Storage> {
    pub(crate) storage: S,
    // INVARIANT: unstable[k].index == unstable_offset + k; indexes >= unstable_offset are read
    // from `unstable`, below from `storage` (or the unstable snapshot).
    unstable_offset: u64,
    unstable: Vec<Entry>,
    unstable_snapshot: Option<Snapshot>,
    snapshot_handed: bool,
    // Unstable entries up to here were handed out in a Ready (reset on truncation).
    handed_index: u64,
    pub(crate) committed: u64,
    // Committed entries up to here were handed out for apply.
    pub(crate) applying: u64,
    pub(crate) applied: u64,
    // Indexes of ConfChange entries after the snapshot (membership applies at commit).
    pub(crate) conf_entries: BTreeSet<u64>,
}

impl<S: Storage> RaftLog<S> {
    pub(crate) fn new(storage: S, applied: u64) -> RaftLog<S> {
        let (hard_state, _) = storage.initial_state();
        let snapshot_index = storage.first_index() - 1;
        let last_index = storage.last_index();
        let committed = hard_state.commit.max(snapshot_index);
        assert!(
            committed <= last_index,
            "commit {committed} beyond last index {last_index}"
        );
        let applied = applied.max(snapshot_index);
        assert!(
            applied <= committed,
            "applied {applied} beyond commit {committed}"
        );
        let mut log = RaftLog {
            storage,
            unstable_offset: last_index + 1,
            unstable: Vec::new(),
            unstable_snapshot: None,
            snapshot_handed: false,
            handed_index: last_index,
            committed,
            applying: applied,
            applied,
            conf_entries: BTreeSet::new(),
        };
        log.scan_conf_entries();
        log
    }

    fn scan_conf_entries(&mut self) {
        let last = self.last_index();
        let mut next = self.first_index();
        while next <= last {
            let batch = match self.storage.entries(next, last + 1, 1 << 20) {
                Ok(batch) => batch,
                Err(error) => panic!("raft log unreadable at {next} on start: {error}"),
            };
            assert!(!batch.is_empty(), "empty read at {next}");
            for entry in batch.iter().filter(|e| e.kind == EntryKind::ConfChange) {
                self.conf_entries.insert(entry.index);
            }
            next = batch[batch.len() - 1].index + 1;
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index + 1,
            None => self.storage.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> u64 {
        if !self.unstable.is_empty() {
            return self.unstable_offset + self.unstable.len() as u64 - 1;
        }
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index,
            None => self.unstable_offset - 1,
        }
    }

    /// The last index known durable (what a leader may count as its own acknowledgement).
    pub(crate) fn stable_last_index(&self) -> u64 {
        if self.unstable_snapshot.is_some() {
            return self.first_index() - 1;
        }
        self.unstable_offset - 1
    }

    /// The term at `index`, or `None` if compacted or beyond the log.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index > self.last_index() {
            return None;
        }
        if index >= self.unstable_offset {
            return Some(self.unstable[(index - self.unstable_offset) as usize].term);
        }
        if let Some(snapshot) = &self.unstable_snapshot {
            return (index == snapshot.meta.index).then_some(snapshot.meta.term);
        }
        if index == 0 {
            return Some(0);
        }
        match self.storage.term(index) {
            Ok(term) => Some(term),
            Err(StorageError::Compacted { .. }) => None,
            Err(error) => panic!("raft storage lost a persisted index {index}: {error}"),
        }
    }

    pub(crate) fn last_term(&self) -> u64 {
        let last = self.last_index();
        self.term(last)
            .unwrap_or_else(|| panic!("last index {last} has no term"))
    }

    pub(crate) fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term` (fast backtracking).
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut probe = index.min(self.last_index());
        loop {
            match self.term(probe) {
                Some(found) if found > term => probe -= 1,
                _ => return probe,
            }
        }
    }

    /// Appends `entries` after (`prev_index`, `prev_term`) if that entry matches, truncating a
    /// conflicting suffix; returns the last index covered by the message.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        let conflict = entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map(|e| e.index);
        if let Some(conflict) = conflict {
            assert!(
                conflict > self.committed,
                "conflict at {conflict} would truncate committed entries (commit {})",
                self.committed
            );
            self.append(&entries[(conflict - prev_index - 1) as usize..]);
        }
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    /// Appends to the unstable part, replacing whatever those indexes held.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.committed,
            "append at {} <= commit {}",
            first.index,
            self.committed
        );
        assert!(
            first.index <= self.last_index() + 1,
            "append at {} leaves a gap",
            first.index
        );
        if first.index < self.unstable_offset {
            self.unstable_offset = first.index;
            self.unstable.clear();
        } else {
            self.unstable
                .truncate((first.index - self.unstable_offset) as usize);
        }
        self.unstable.extend_from_slice(entries);
        self.conf_entries.retain(|&index| index < first.index);
        for entry in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            self.conf_entries.insert(entry.index);
        }
        self.handed_index = self.handed_index.min(first.index - 1);
    }

    /// Entries `lo..hi` bounded by `bytes_max` (at least one entry if any).
    pub(crate) fn entries(
        &self,
        lo: u64,
        hi: u64,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if lo < self.first_index() {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.first_index(),
            });
        }
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        let mut out = if lo < self.unstable_offset {
            self.storage
                .entries(lo, hi.min(self.unstable_offset), bytes_max)?
        } else {
            Vec::new()
        };
        let mut bytes: u64 = out.iter().map(Entry::size_bytes).sum();
        let stored_all = out.len() as u64 == hi.min(self.unstable_offset).saturating_sub(lo);
        if stored_all && hi > self.unstable_offset {
            let start = lo.max(self.unstable_offset);
            for entry in &self.unstable
                [(start - self.unstable_offset) as usize..(hi - self.unstable_offset) as usize]
            {
                bytes += entry.size_bytes();
                if !out.is_empty() && bytes > bytes_max {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    pub(crate) fn commit_to(&mut self, commit: u64) {
        if commit > self.committed {
            assert!(
                commit <= self.last_index(),
                "commit {commit} beyond last {}",
                self.last_index()
            );
            self.committed = commit;
        }
    }

    /// Leader commit by counting: only an entry of `term` (the current term) may be committed.
    pub(crate) fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(
            index > self.committed,
            "restore to {index} at or below commit {}",
            self.committed
        );
        self.committed = index;
        self.applying = index;
        self.unstable.clear();
        self.unstable_offset = index + 1;
        self.handed_index = index;
        self.unstable_snapshot = Some(snapshot);
        self.snapshot_handed = false;
        self.conf_entries.clear();
    }

    pub(crate) fn unhanded_snapshot(&self) -> Option<&Snapshot> {
        self.unstable_snapshot
            .as_ref()
            .filter(|_| !self.snapshot_handed)
    }

    /// Hands out the snapshot and unstable entries not yet handed (for a Ready).
    pub(crate) fn hand_unstable(&mut self) -> (Option<Snapshot>, Vec<Entry>) {
        let snapshot = self.unhanded_snapshot().cloned();
        self.snapshot_handed = true;
        let start = (self.handed_index + 1).max(self.unstable_offset);
        let entries = self.unstable[(start - self.unstable_offset) as usize..].to_vec();
        self.handed_index = self.last_index();
        (snapshot, entries)
    }

    pub(crate) fn has_unhanded_entries(&self) -> bool {
        self.handed_index < self.last_index() && !self.unstable.is_empty()
    }

    /// The highest index that may be applied: committed, and durable here. A follower may
    /// learn a commit index beyond what its own disk holds yet (its persist runs in the
    /// background); it applies those entries once they are durable, so that a state machine
    /// snapshot never covers entries the local log could lose in a crash.
    pub(crate) fn applicable(&self) -> u64 {
        self.committed.min(self.stable_last_index())
    }

    /// Committed, durable entries not yet handed out for apply (`applying + 1 ..=
    /// applicable`).
    pub(crate) fn hand_committed(&mut self, bytes_max: u64) -> Vec<Entry> {
        let applicable = self.applicable();
        if self.applying >= applicable {
            return Vec::new();
        }
        let entries = match self.entries(self.applying + 1, applicable + 1, bytes_max) {
            Ok(entries) => entries,
            Err(error) => panic!(
                "committed entries after {} unreadable: {error}",
                self.applying
            ),
        };
        assert!(!entries.is_empty(), "no entries for committed range");
        self.applying = entries[entries.len() - 1].index;
        entries
    }

    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if index >= self.unstable_offset && self.match_term(index, term) {
            self.unstable
                .drain(..(index + 1 - self.unstable_offset) as usize);
            self.unstable_offset = index + 1;
        }
    }

    pub(crate) fn stable_snapshot_to(&mut self, index: u64) {
        if self.unstable_snapshot.as_ref().map(|s| s.meta.index) == Some(index)
            && self.snapshot_handed
        {
            self.unstable_snapshot = None;
        }
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        assert!(
            index <= self.applying,
            "applied {index} beyond applying {}",
            self.applying
        );
        self.applied = self.applied.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::MemStorage;
    use crate::raft::types::{ConfState, EntryKind};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: super::super::types::Payload::default(),
        }
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let mut storage = MemStorage::new(ConfState::with_voters(&[1]));
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(k, &t)| entry(k as u64 + 1, t))
            .collect();
        storage.append(&entries);
        RaftLog::new(storage, 0)
    }

    #[test]
    fn maybe_append_truncates_only_the_conflicting_suffix() {
        let mut log = log_with(&[1, 1, 2]);
        assert_eq!(
            log.maybe_append(1, 1, 0, &[entry(2, 1), entry(3, 3)]),
            Some(3)
        );
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.maybe_append(3, 2, 0, &[]), None);
        let (_, handed) = log.hand_unstable();
        assert_eq!(handed, vec![entry(3, 3)]);
    }

    #[test]
    #[should_panic(expected = "truncate committed")]
    fn truncating_a_committed_entry_panics() {
        let mut log = log_with(&[1, 1]);
        log.commit_to(2);
        log.maybe_append(1, 1, 2, &[entry(2, 2)]);
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        let log = log_with(&[1, 1, 4, 4, 4, 6]);
        assert_eq!(log.find_conflict_by_term(6, 5), 5);
        assert_eq!(log.find_conflict_by_term(5, 3), 2);
        assert_eq!(log.find_conflict_by_term(9, 9), 6);
    }

    #[test]
    fn entries_span_storage_and_unstable() {
        let mut log = log_with(&[1, 1]);
        log.append(&[entry(3, 2), entry(4, 2)]);
        let indexes: Vec<u64> = log
            .entries(2, 5, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(indexes, vec![2, 3, 4]);
        assert_eq!(log.entries(2, 5, 0).unwrap().len(), 1);
        log.stable_to(4, 2);
        assert_eq!(log.stable_last_index(), 4);
    }
}
