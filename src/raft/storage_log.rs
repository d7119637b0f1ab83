//! `LogStorage`: the durable Raft log of a node, kept in a `log::Log` (one frame per run of
//! same-term entries, the Raft term in the frame's term field) under `<data>/raft/`, with the
//! hard state in a small fsynced file next to it, and an in-memory mirror the core reads.
//!
//! Owns: making a `Ready`'s entries and hard state durable before the driver sends messages
//! that depend on them; recovering both at start.
//! Must not: expose anything to the core before it is durable (the `Storage` contract).
//!
//! The hard state file is rewritten (tmp, fsync, rename, fsync dir) only when the term or the
//! vote changes: those promises must survive a crash. The commit index inside it is a hint
//! (Raft allows persisting it lazily), so commit-only changes cost no fsync.

use super::storage::{MemStorage, Storage, StorageError};
use super::types::{ConfState, Entry, EntryKind, HardState, NodeId, Snapshot};
use crate::crypto::crc32c;
use crate::log::{Durability, EntryBatch, Log, LogOptions, SEGMENT_BYTES_DEFAULT};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Directory of the Raft log and hard state inside the data directory.
pub const RAFT_DIR_NAME: &str = "raft";
/// The hard state file's name.
pub const HARD_STATE_FILE_NAME: &str = "hardstate";
/// Bytes of the hard state file: term, vote, commit (u64 LE each) and a CRC32C.
pub const HARD_STATE_BYTES: usize = 28;

/// The Raft log on disk plus its in-memory mirror.
pub struct LogStorage {
    mem: MemStorage,
    log: Log,
    dir: PathBuf,
    /// The term and vote last written to the hard state file.
    durable_term_vote: (u64, NodeId),
}

fn io_error(context: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{context}: {error}"))
}

impl LogStorage {
    /// Opens (or creates) the Raft log under `data_dir/raft`. A new log is bootstrapped with
    /// `voters` (one `AddVoter` entry per voter, term 1, committed), as every member of a static
    /// cluster does identically.
    ///
    /// # Errors
    /// I/O failures, corruption, or a malformed entry.
    pub fn open(data_dir: &Path, voters: &[NodeId]) -> io::Result<LogStorage> {
        let dir = data_dir.join(RAFT_DIR_NAME);
        fs::create_dir_all(&dir)?;
        let options = LogOptions {
            durability: Durability::Durable,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            first_index: 1,
            replay_from: 1,
            faults: None,
        };
        let mut entries = Vec::new();
        let mut malformed = None;
        let (log, _recovery) = Log::open(&dir, options, &mut |frame| {
            for (offset, bytes) in frame.entries().enumerate() {
                match decode_entry(frame.index + offset as u64, frame.term, bytes) {
                    Some(entry) => entries.push(entry),
                    None => malformed = Some(frame.index + offset as u64),
                }
            }
            Ok(())
        })
        .map_err(|e| io_error("open the raft log", e))?;
        if let Some(index) = malformed {
            return Err(io_error("raft log", format!("malformed entry at {index}")));
        }
        let hard_state = read_hard_state(&dir)?;
        let mut storage = LogStorage {
            mem: MemStorage::new(ConfState::default()),
            log,
            dir,
            durable_term_vote: (hard_state.term, hard_state.vote),
        };
        storage.mem.append(&entries);
        storage.mem.set_hard_state(hard_state);
        if entries.is_empty() && hard_state == HardState::default() {
            let boot = super::storage::bootstrap_entries(voters);
            let commit = boot.len() as u64;
            storage.append(&boot)?;
            storage.set_hard_state(HardState {
                term: 1,
                vote: 0,
                commit,
            })?;
        }
        Ok(storage)
    }

    /// Makes `entries` durable (truncating any suffix they replace), then exposes them.
    ///
    /// # Errors
    /// The log's failure; nothing is exposed then.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            entries.windows(2).all(|w| w[0].index + 1 == w[1].index),
            "raft entries to persist are not consecutive"
        );
        if first.index < self.log.next_index() {
            self.log
                .truncate_after(first.index - 1)
                .map_err(|e| io_error("truncate the raft log", e))?;
        }
        assert_eq!(first.index, self.log.next_index(), "raft log gap");
        let (reply, outcomes) = mpsc::channel();
        let mut appends = 0;
        for run in entries.chunk_by(|a, b| a.term == b.term) {
            let mut batch = EntryBatch::new();
            for entry in run {
                batch.push_with(|out| encode_entry(out, entry));
            }
            let reply = reply.clone();
            self.log.append(crate::log::Append {
                term: run[0].term,
                first_index: run[0].index,
                entries: batch,
                done: Box::new(move |result| {
                    let _ = reply.send(result);
                }),
            });
            appends += 1;
        }
        for _ in 0..appends {
            match outcomes.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(io_error("append to the raft log", e)),
                Err(_) => return Err(io_error("append to the raft log", "writer gone")),
            }
        }
        self.mem.append(entries);
        Ok(())
    }

    /// Records the hard state; fsyncs the file when the term or vote changed.
    ///
    /// # Errors
    /// I/O failures writing the file.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> io::Result<()> {
        if (hard_state.term, hard_state.vote) != self.durable_term_vote {
            write_hard_state(&self.dir, hard_state)?;
            self.durable_term_vote = (hard_state.term, hard_state.vote);
        }
        self.mem.set_hard_state(hard_state);
        Ok(())
    }

    /// The hard state as last recorded.
    pub fn hard_state(&self) -> HardState {
        self.mem.hard_state()
    }

    /// Fsyncs issued by the Raft log (for benchmarks).
    pub fn fsync_count(&self) -> u64 {
        self.log.fsync_count()
    }
}

impl Storage for LogStorage {
    fn initial_state(&self) -> (HardState, ConfState) {
        self.mem.initial_state()
    }

    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        self.mem.entries(lo, hi, bytes_max)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.mem.term(index)
    }

    fn first_index(&self) -> u64 {
        self.mem.first_index()
    }

    fn last_index(&self) -> u64 {
        self.mem.last_index()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.mem.snapshot()
    }
}

/// One Raft entry in a log entry: a kind byte, then the data.
fn encode_entry(out: &mut Vec<u8>, entry: &Entry) {
    out.push(match entry.kind {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
    });
    out.extend_from_slice(&entry.data);
}

fn decode_entry(index: u64, term: u64, bytes: &[u8]) -> Option<Entry> {
    let (&kind, data) = bytes.split_first()?;
    let kind = match kind {
        0 => EntryKind::Normal,
        1 => EntryKind::ConfChange,
        _ => return None,
    };
    Some(Entry {
        term,
        index,
        kind,
        data: data.to_vec(),
    })
}

fn encode_hard_state(hard_state: HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[0..8].copy_from_slice(&hard_state.term.to_le_bytes());
    out[8..16].copy_from_slice(&hard_state.vote.to_le_bytes());
    out[16..24].copy_from_slice(&hard_state.commit.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_hard_state(bytes: &[u8]) -> Option<HardState> {
    if bytes.len() != HARD_STATE_BYTES {
        return None;
    }
    let word = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(buf)
    };
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[24..]);
    if crc32c::crc32c(&bytes[..24]) != u32::from_le_bytes(crc) {
        return None;
    }
    Some(HardState {
        term: word(0),
        vote: word(8),
        commit: word(16),
    })
}

fn read_hard_state(dir: &Path) -> io::Result<HardState> {
    let path = dir.join(HARD_STATE_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => decode_hard_state(&bytes).ok_or_else(|| {
            // The file is replaced atomically, so a bad one is corruption, not a torn write.
            io_error(&path.display().to_string(), "corrupt hard state")
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HardState::default()),
        Err(e) => Err(e),
    }
}

fn write_hard_state(dir: &Path, hard_state: HardState) -> io::Result<()> {
    let tmp = dir.join(format!("{HARD_STATE_FILE_NAME}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&encode_hard_state(hard_state))?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(HARD_STATE_FILE_NAME))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lithair-storage-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: data.to_vec(),
        }
    }

    #[test]
    fn bootstraps_persists_truncates_and_recovers() {
        let dir = temp_dir("recover");
        {
            let mut storage = LogStorage::open(&dir, &[1, 2, 3]).unwrap();
            assert_eq!(storage.last_index(), 3);
            assert_eq!(storage.hard_state().commit, 3);
            storage
                .append(&[entry(4, 2, b"a"), entry(5, 2, b"b"), entry(6, 3, b"c")])
                .unwrap();
            // A new leader overwrites the uncommitted suffix from index 5.
            storage.append(&[entry(5, 4, b"x")]).unwrap();
            storage
                .set_hard_state(HardState {
                    term: 4,
                    vote: 2,
                    commit: 4,
                })
                .unwrap();
        }
        let storage = LogStorage::open(&dir, &[9]).unwrap();
        assert_eq!(storage.last_index(), 5);
        assert_eq!(storage.term(5), Ok(4));
        assert_eq!(storage.term(4), Ok(2));
        let held = storage.entries(4, 6, u64::MAX).unwrap();
        assert_eq!(held, vec![entry(4, 2, b"a"), entry(5, 4, b"x")]);
        assert_eq!(
            (storage.hard_state().term, storage.hard_state().vote),
            (4, 2)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hard_state_codec_rejects_corruption() {
        let hard_state = HardState {
            term: 7,
            vote: 3,
            commit: 99,
        };
        let mut bytes = encode_hard_state(hard_state);
        assert_eq!(decode_hard_state(&bytes), Some(hard_state));
        bytes[3] ^= 1;
        assert_eq!(decode_hard_state(&bytes), None);
        assert_eq!(decode_hard_state(&bytes[..10]), None);
    }
}
