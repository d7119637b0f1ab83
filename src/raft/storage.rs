//! The `Storage` trait (the core's only read path to persisted Raft state) and `MemStorage`, the
//! in-memory implementation the simulator and tests use.
//!
//! Owns: the contract between the core and the durable log.
//! Must not: write anything on behalf of the core; the caller persists what `Ready` lists and
//! only then makes it visible here.

use super::types::{ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta};
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;

/// Why storage could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The index lies at or below the snapshot; entries there are gone.
    Compacted {
        /// The requested index.
        index: u64,
        /// The first index still held.
        first_index: u64,
    },
    /// The index lies beyond the last persisted entry.
    Unavailable {
        /// The requested index.
        index: u64,
        /// The last index held.
        last_index: u64,
    },
    /// The snapshot asked for is no longer the one held (a newer one replaced it): its bytes
    /// are gone, a transfer of it must start again with the current one.
    SnapshotReplaced {
        /// The snapshot index asked for.
        index: u64,
    },
    /// An I/O or corruption problem the caller must resolve.
    Other(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Compacted { index, first_index } => {
                write!(
                    f,
                    "raft log index {index} is compacted (first index {first_index})"
                )
            }
            StorageError::Unavailable { index, last_index } => {
                write!(
                    f,
                    "raft log index {index} is beyond the last index {last_index}"
                )
            }
            StorageError::SnapshotReplaced { index } => {
                write!(f, "raft snapshot {index} was replaced by a newer one")
            }
            StorageError::Other(message) => write!(f, "raft storage: {message}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// What the latest snapshot covers and how large it is, without its bytes: a leader reads
/// those a chunk at a time ([`Storage::snapshot_chunk`]) as it sends them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Index, term and membership covered.
    pub meta: SnapshotMeta,
    /// The snapshot's size in bytes (what a follower receives in all).
    pub total_bytes: u64,
}

/// Read access to persisted Raft state. Ranges are half-open (`lo..hi`).
///
/// Contract: everything returned is durable. `first_index() == snapshot_info().meta.index + 1`; the
/// term of the snapshot index stays answerable through `term(first_index() - 1)`. The node
/// driver implements this over the engine's log (the Raft term in each frame); `MemStorage`
/// implements it in memory.
pub trait Storage {
    /// The persisted hard state and the membership of the latest snapshot.
    fn initial_state(&self) -> (HardState, ConfState);
    /// Entries `lo..hi`, stopping early (but returning at least one entry) once `bytes_max`
    /// is exceeded.
    ///
    /// # Errors
    /// `Compacted` if `lo < first_index()`, `Unavailable` if `hi > last_index() + 1`.
    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError>;
    /// The term of entry `index`, for `first_index() - 1 ..= last_index()`.
    ///
    /// # Errors
    /// `Compacted` below that range, `Unavailable` above it.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// The first index held in the log (the snapshot index + 1).
    fn first_index(&self) -> u64;
    /// The last index held (the snapshot index when the log is empty).
    fn last_index(&self) -> u64;
    /// The latest snapshot's description (index, term, membership, size), not its bytes.
    ///
    /// # Errors
    /// `Other` if it cannot be read.
    fn snapshot_info(&self) -> Result<SnapshotInfo, StorageError>;
    /// `len` bytes of the snapshot covering `index`, from `offset` (the caller keeps
    /// `offset + len` within its `total_bytes`). The leader's core pulls a snapshot through
    /// this one chunk per InstallSnapshot, so it never holds a snapshot whole.
    ///
    /// Contract: every chunk of one index comes from the same snapshot as the
    /// [`Storage::snapshot_info`] that described it (same bytes, same size); once that
    /// snapshot can no longer be read as it was (replaced by a newer one), the answer is
    /// `SnapshotReplaced`, never bytes of another file.
    ///
    /// # Errors
    /// `SnapshotReplaced` if `index` is not the snapshot held, `Other` on I/O failures.
    fn snapshot_chunk(&self, index: u64, offset: u64, len: u64) -> Result<Vec<u8>, StorageError>;
}

/// An in-memory `Storage`: a snapshot, the entries after it and the hard state.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    // INVARIANT: entries[k].index == snapshot.meta.index + 1 + k.
    entries: Vec<Entry>,
    /// The indexes of the held membership entries, ascending, so the membership at an index is
    /// found without walking every entry held (a compaction asks it, on the Raft thread).
    // INVARIANT: exactly the `index` of each held entry of kind `ConfChange`, in order.
    conf_change_indexes: VecDeque<u64>,
    /// The most snapshot bytes one `snapshot_chunk` call handed out (what tests check: a
    /// leader reads a snapshot a chunk at a time, never whole).
    snapshot_read_max: Cell<u64>,
}

impl MemStorage {
    /// A fresh log whose initial membership is `conf` (a bootstrap snapshot at index 0).
    pub fn new(conf: ConfState) -> MemStorage {
        let mut storage = MemStorage::default();
        storage.snapshot.meta.conf = conf;
        storage
    }

    /// A new cluster's first log: one committed `AddVoter` entry per initial voter (term 1), so
    /// that a node joining later learns the whole membership by replaying the log from index 1.
    pub fn bootstrap(voters: &[u64]) -> MemStorage {
        let mut storage = MemStorage::default();
        let entries: Vec<Entry> = bootstrap_entries(voters);
        storage.append(&entries);
        storage.hard_state = HardState {
            term: 1,
            vote: 0,
            commit: entries.len() as u64,
        };
        storage
    }

    /// Records the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// The recorded hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Appends `entries`, first truncating any suffix they overwrite.
    ///
    /// # Panics
    /// If `entries` leaves a gap after the last index or reaches below the snapshot.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let offset = self.snapshot.meta.index + 1;
        assert!(
            first.index >= offset,
            "append at {} below first index {offset}",
            first.index
        );
        assert!(
            first.index <= self.last_index() + 1,
            "append at {} leaves a gap after {}",
            first.index,
            self.last_index()
        );
        self.entries.truncate((first.index - offset) as usize);
        self.entries.extend_from_slice(entries);
        while self
            .conf_change_indexes
            .back()
            .is_some_and(|&index| index >= first.index)
        {
            self.conf_change_indexes.pop_back();
        }
        self.conf_change_indexes.extend(
            entries
                .iter()
                .filter(|entry| entry.kind == EntryKind::ConfChange)
                .map(|entry| entry.index),
        );
        debug_assert!(self
            .entries
            .windows(2)
            .all(|w| w[0].index + 1 == w[1].index));
    }

    /// Replaces the whole log by `snapshot` (installed from a leader).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        let keep_from = index + 1;
        let term_matches = self.term(index).ok() == Some(snapshot.meta.term);
        // Keep the suffix after the snapshot only if it agrees with it (log matching).
        if term_matches && keep_from > self.snapshot.meta.index {
            let drop = (keep_from - (self.snapshot.meta.index + 1)) as usize;
            self.entries.drain(..drop.min(self.entries.len()));
            self.forget_conf_changes_through(index);
        } else {
            self.entries.clear();
            self.conf_change_indexes.clear();
        }
        self.snapshot = snapshot;
        self.hard_state.commit = self.hard_state.commit.max(index);
    }

    /// Takes a local snapshot at `index` (already applied by the caller) and drops the entries
    /// it covers.
    ///
    /// # Panics
    /// If `index` is not within the held log.
    ///
    /// Returns the entries it dropped, for the caller to free where it pleases (a large run
    /// freed on the Raft thread would hold up its heartbeats).
    #[must_use = "the dropped entries: free them (on another thread if many)"]
    pub fn compact(&mut self, index: u64, conf: ConfState, data: Vec<u8>) -> Vec<Entry> {
        assert!(
            index > self.snapshot.meta.index,
            "compact to {index} not past the snapshot"
        );
        assert!(
            index <= self.last_index(),
            "compact to {index} beyond {}",
            self.last_index()
        );
        let term = self.term(index).expect("index checked to be held");
        let drop = (index - self.snapshot.meta.index) as usize;
        // The kept tail moves into a fresh vector sized to it; the dropped prefix leaves
        // whole, with no per-entry work here.
        let kept = self.entries.split_off(drop);
        let dropped = std::mem::replace(&mut self.entries, kept);
        self.forget_conf_changes_through(index);
        self.snapshot = Snapshot {
            meta: super::types::SnapshotMeta { index, term, conf },
            data,
        };
        dropped
    }

    /// The held entries (after the snapshot).
    pub fn held_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The held membership entries up to `index`, in log order: O(membership changes held),
    /// not O(entries held).
    pub fn conf_changes_through(&self, index: u64) -> impl Iterator<Item = &Entry> + '_ {
        let offset = self.snapshot.meta.index + 1;
        self.conf_change_indexes
            .iter()
            .take_while(move |&&at| at <= index)
            .map(move |&at| {
                let entry = &self.entries[(at - offset) as usize];
                assert!(
                    entry.index == at && entry.kind == EntryKind::ConfChange,
                    "the membership index names entry {at}, which is not a membership change"
                );
                entry
            })
    }

    fn forget_conf_changes_through(&mut self, index: u64) {
        while self
            .conf_change_indexes
            .front()
            .is_some_and(|&at| at <= index)
        {
            self.conf_change_indexes.pop_front();
        }
    }

    /// The latest snapshot, bytes included (this storage holds them in memory).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The most bytes one [`Storage::snapshot_chunk`] call has handed out.
    pub fn snapshot_read_max(&self) -> u64 {
        self.snapshot_read_max.get()
    }
}

/// The entries [`MemStorage::bootstrap`] writes: `AddVoter(id)` at indexes `1..=n`, term 1.
pub fn bootstrap_entries(voters: &[u64]) -> Vec<Entry> {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .iter()
        .enumerate()
        .map(|(k, &id)| Entry {
            term: 1,
            index: k as u64 + 1,
            kind: super::types::EntryKind::ConfChange,
            data: super::types::ConfChange::AddVoter(id).encode().into(),
        })
        .collect()
}

impl Storage for MemStorage {
    fn initial_state(&self) -> (HardState, ConfState) {
        (self.hard_state, self.snapshot.meta.conf.clone())
    }

    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        let first_index = self.first_index();
        if lo < first_index {
            return Err(StorageError::Compacted {
                index: lo,
                first_index,
            });
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable {
                index: hi - 1,
                last_index: self.last_index(),
            });
        }
        let range = &self.entries[(lo - first_index) as usize..(hi - first_index) as usize];
        // Sized once: growing one entry at a time reallocates (and, past a kilobyte, makes
        // glibc consolidate its free lists) a few times per call.
        let mut out = Vec::with_capacity(range.len());
        let mut bytes = 0u64;
        for entry in range {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let snapshot_index = self.snapshot.meta.index;
        if index == snapshot_index {
            return Ok(self.snapshot.meta.term);
        }
        if index < snapshot_index {
            return Err(StorageError::Compacted {
                index,
                first_index: snapshot_index + 1,
            });
        }
        match self.entries.get((index - snapshot_index - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(StorageError::Unavailable {
                index,
                last_index: self.last_index(),
            }),
        }
    }

    fn first_index(&self) -> u64 {
        self.snapshot.meta.index + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.meta.index + self.entries.len() as u64
    }

    fn snapshot_info(&self) -> Result<SnapshotInfo, StorageError> {
        Ok(SnapshotInfo {
            meta: self.snapshot.meta.clone(),
            total_bytes: self.snapshot.data.len() as u64,
        })
    }

    fn snapshot_chunk(&self, index: u64, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if index != self.snapshot.meta.index {
            return Err(StorageError::SnapshotReplaced { index });
        }
        let data = &self.snapshot.data;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= data.len() as u64);
        let Some(end) = end else {
            return Err(StorageError::Other(format!(
                "snapshot chunk {offset}+{len} past its {} bytes",
                data.len()
            )));
        };
        self.snapshot_read_max
            .set(self.snapshot_read_max.get().max(len));
        Ok(data[offset as usize..end as usize].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: vec![index as u8].into(),
        }
    }

    #[test]
    fn append_truncates_conflicts_and_compact_keeps_terms() {
        let mut storage = MemStorage::new(ConfState::with_voters(&[1]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        storage.append(&[entry(2, 2)]);
        assert_eq!(storage.last_index(), 2);
        assert_eq!(storage.term(2), Ok(2));
        let dropped = storage.compact(1, ConfState::default(), vec![9]);
        // The entries compaction dropped are handed back, for the caller to free.
        assert_eq!(dropped, vec![entry(1, 1)]);
        assert_eq!(storage.held_entries(), &[entry(2, 2)]);
        assert_eq!(storage.first_index(), 2);
        assert_eq!(storage.term(1), Ok(1));
        assert_eq!(
            storage.term(0),
            Err(StorageError::Compacted {
                index: 0,
                first_index: 2
            })
        );
        assert!(matches!(
            storage.entries(1, 2, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(storage.entries(2, 3, 0).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn apply_snapshot_keeps_agreeing_suffix_only() {
        let mut storage = MemStorage::new(ConfState::with_voters(&[1]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let meta = crate::raft::types::SnapshotMeta {
            index: 2,
            term: 1,
            conf: ConfState::default(),
        };
        storage.apply_snapshot(Snapshot {
            meta: meta.clone(),
            data: vec![],
        });
        assert_eq!(storage.last_index(), 3);
        let other = crate::raft::types::SnapshotMeta {
            index: 3,
            term: 5,
            ..meta
        };
        storage.apply_snapshot(Snapshot {
            meta: other,
            data: vec![],
        });
        assert_eq!((storage.first_index(), storage.last_index()), (4, 3));
    }

    /// One operation on the log, for the membership index's property test.
    #[derive(Clone, Debug)]
    enum Op {
        /// Append `kinds` (true: a membership change) at `back` entries before the end + 1.
        Append {
            back: u64,
            kinds: Vec<bool>,
            term: u64,
        },
        /// Compact to the held entry `at` (modulo the held count).
        Compact { at: u64 },
        /// Install a snapshot at `at` past the first index, agreeing with the log or not.
        Install { at: u64, agrees: bool },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u64..6, proptest::collection::vec(proptest::bool::weighted(0.3), 1..8), 1u64..4)
                .prop_map(|(back, kinds, term)| Op::Append { back, kinds, term }),
            1 => (0u64..40).prop_map(|at| Op::Compact { at }),
            1 => (0u64..40, any::<bool>()).prop_map(|(at, agrees)| Op::Install { at, agrees }),
        ]
    }

    proptest::proptest! {
        /// Whatever appends (overwriting suffixes), compactions and installs do, the
        /// membership index names exactly the held membership entries up to any index.
        #[test]
        fn the_membership_index_follows_the_held_entries(ops in proptest::collection::vec(op(), 1..40)) {
            let mut storage = MemStorage::bootstrap(&[1, 2, 3]);
            for op in ops {
                let (first, last) = (storage.first_index(), storage.last_index());
                match op {
                    Op::Append { back, kinds, term } => {
                        let start = (last + 1).saturating_sub(back).max(first);
                        let entries: Vec<Entry> = kinds
                            .iter()
                            .enumerate()
                            .map(|(k, &conf)| Entry {
                                index: start + k as u64,
                                term,
                                kind: if conf { EntryKind::ConfChange } else { EntryKind::Normal },
                                data: super::super::types::ConfChange::AddVoter(k as u64 + 4).encode().into(),
                            })
                            .collect();
                        storage.append(&entries);
                    }
                    Op::Compact { at } => {
                        if last >= first {
                            let index = first + at % (last - first + 1);
                            let conf = ConfState::with_voters(&[1]);
                            let _ = storage.compact(index, conf, Vec::new());
                        }
                    }
                    Op::Install { at, agrees } => {
                        let index = first + at;
                        let term = match storage.term(index) {
                            Ok(term) if agrees => term,
                            _ => 99,
                        };
                        storage.apply_snapshot(Snapshot {
                            meta: SnapshotMeta { index, term, conf: ConfState::with_voters(&[1]) },
                            data: Vec::new(),
                        });
                    }
                }
                let held = storage.held_entries();
                for through in [0, storage.first_index(), storage.last_index() / 2 + 1, storage.last_index(), u64::MAX] {
                    let want: Vec<u64> = held
                        .iter()
                        .filter(|e| e.index <= through && e.kind == EntryKind::ConfChange)
                        .map(|e| e.index)
                        .collect();
                    let got: Vec<u64> = storage.conf_changes_through(through).map(|e| e.index).collect();
                    proptest::prop_assert_eq!(got, want, "through {}", through);
                }
            }
        }
    }
}
