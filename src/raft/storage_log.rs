//! `LogStorage`: the durable Raft log of a node, which is the engine's log (`<data>/log`,
//! shared with the engine through an `Arc<Log>`): one log entry per Raft entry at the same
//! index, the Raft term in the frame's term field, Raft no-ops and membership changes stored as
//! reserved envelopes. The hard state lives in a small fsynced file next to the log
//! (`<data>/raft-hardstate`); an in-memory mirror of the entries after the snapshot is what the
//! core reads.
//!
//! Owns: making a `Ready`'s entries and hard state durable before the driver sends messages
//! that depend on them; truncating conflicting uncommitted suffixes (never committed
//! entries); recovering both at start.
//! Must not: expose anything to the core before it is durable (the `Storage` contract), or
//! apply anything (the engine applies committed entries the driver hands it).
//!
//! The hard state file is rewritten (tmp, fsync, rename, fsync dir) only when the term or the
//! vote changes: those promises must survive a crash. The commit index inside it is a hint
//! (Raft allows persisting it lazily), so commit-only changes cost no fsync; the engine replays
//! the log up to that hint at start and Raft re-delivers the rest once it re-learns the commit.

use super::compactor::Compactor;
use super::core::SnapshotChunk;
use super::storage::{MemStorage, SnapshotInfo, Storage, StorageError};
use super::types::{
    ConfChange, ConfState, Entry, EntryKind, HardState, NodeId, Payload, Snapshot, SnapshotMeta,
};
use crate::crypto::crc32c;
use crate::engine::{self, Reserved};
use crate::log::{EntryBatch, Log};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// The directory of the old layout's second Raft log (before the engine's log became the Raft
/// log); a data directory holding it is refused.
pub const OLD_RAFT_DIR_NAME: &str = "raft";
/// The hard state file's name, in the data directory next to `log/`.
pub const HARD_STATE_FILE_NAME: &str = "raft-hardstate";
/// The Raft snapshot record's name, next to the hard state: index, term and membership of
/// the snapshot the log was compacted to (the engine's snapshot file of that index).
pub const SNAPSHOT_META_FILE_NAME: &str = "raft-snapshot";
/// The file a snapshot from the leader is streamed into while its chunks arrive, in the data
/// directory (deleted at start: a transfer a crash interrupted starts again from offset 0).
pub const INCOMING_SNAPSHOT_FILE_NAME: &str = "raft-snapshot-incoming.tmp";
/// Bytes of the hard state file: term, vote, commit (u64 LE each) and a CRC32C.
pub const HARD_STATE_BYTES: usize = 28;

/// The Raft log on disk plus its in-memory mirror.
pub struct LogStorage {
    mem: MemStorage,
    log: Arc<Log>,
    dir: PathBuf,
    /// The term and vote last written to the hard state file.
    durable_term_vote: (u64, NodeId),
    /// The snapshot being received: its index, the open incoming file and the bytes in it.
    incoming: Option<(u64, File, u64)>,
    /// The snapshot being sent (leader), open: chunks are read from this handle as they go
    /// out, so a prune that unlinks the file cannot mix another file's bytes into a transfer.
    /// Behind a lock because the core reads through `&self` (`Storage`).
    outgoing: Mutex<Option<OutgoingSnapshot>>,
    /// Writes the snapshot record and deletes compacted segments, off the Raft thread.
    compactor: Compactor,
}

/// The open file of the snapshot a leader sends (see [`LogStorage::snapshot_chunk`]).
struct OutgoingSnapshot {
    index: u64,
    file: File,
    total_bytes: u64,
}

fn io_error(context: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{context}: {error}"))
}

/// Reads the durable hard state of `data_dir` (default when there is none yet), refusing a
/// directory written by the old two-log layout. Call it before opening the engine: its
/// commit index is how far the engine may replay.
///
/// # Errors
/// The old layout, a corrupt file, or I/O failures.
pub fn read_hard_state(data_dir: &Path) -> io::Result<HardState> {
    if data_dir.join(OLD_RAFT_DIR_NAME).is_dir() {
        let message = format!(
            "{} holds a `{OLD_RAFT_DIR_NAME}/` directory from an older pre-release cluster \
             layout (a second Raft log); this version keeps the Raft log in `log/`. Start this \
             node from an empty data directory (it catches up from its peers).",
            data_dir.display()
        );
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    let path = data_dir.join(HARD_STATE_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => decode_hard_state(&bytes).ok_or_else(|| {
            // The file is replaced atomically, so a bad one is corruption, not a torn write.
            io_error(&path.display().to_string(), "corrupt hard state")
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HardState::default()),
        Err(e) => Err(e),
    }
}

/// An entry as bootstrapping writes them: term 1, a membership change.
fn is_boot_entry(entry: &Entry) -> bool {
    entry.term == 1 && entry.kind == EntryKind::ConfChange
}

impl LogStorage {
    /// Opens the Raft storage over the engine's `log` of `data_dir`: the snapshot recorded in
    /// `raft-snapshot` (if any) and the log entries after it. A log that does not continue
    /// that snapshot (a crash in the middle of an install) is reset to start right after it.
    /// A new log is bootstrapped with `voters` (one `AddVoter` entry per voter, term 1,
    /// committed), as every member of a static cluster does identically.
    ///
    /// # Errors
    /// I/O failures, corruption, a malformed entry, or a log written by a single node.
    pub fn open(log: Arc<Log>, data_dir: &Path, voters: &[NodeId]) -> io::Result<LogStorage> {
        let mut hard_state = read_hard_state(data_dir)?;
        let meta = read_snapshot_meta(data_dir)?;
        let entries = match &meta {
            Some(meta) => entries_after_snapshot(&log, meta)?,
            None => read_entries(&log, 1)?,
        };
        // Bootstrapping appends the voters' entries, then writes the hard state: a node
        // killed in between left (a prefix of) those entries and no hard state. It never took
        // part in an election or took an entry from a leader (either writes a term first), so
        // the bootstrap is finished below. Anything else without a hard state was not written
        // by a cluster node.
        let boot = super::storage::bootstrap_entries(voters);
        let unfinished_boot = hard_state == HardState::default()
            && meta.is_none()
            && entries.len() <= boot.len()
            && entries[..] == boot[..entries.len()];
        if hard_state == HardState::default() && !unfinished_boot {
            if meta.is_none() && entries.iter().all(is_boot_entry) {
                let message = format!(
                    "{} holds the start of a cluster bootstrap with other voters than {voters:?} \
                     (a start with other peers was interrupted): start it with the same peers, \
                     or from an empty data directory",
                    data_dir.display()
                );
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
            if !entries.is_empty() || meta.is_some() {
                let message = format!(
                    "{} holds a single-node log (no Raft hard state); a cluster node needs a \
                     data directory of its own",
                    data_dir.display()
                );
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
        }
        let record_index = meta.as_ref().map_or(0, |meta| meta.index);
        let compactor = Compactor::start(data_dir, Arc::clone(&log), record_index)?;
        let mut storage = LogStorage {
            mem: MemStorage::new(ConfState::default()),
            log,
            dir: data_dir.to_path_buf(),
            durable_term_vote: (hard_state.term, hard_state.vote),
            incoming: None,
            outgoing: Mutex::new(None),
            compactor,
        };
        match fs::remove_file(data_dir.join(INCOMING_SNAPSHOT_FILE_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if let Some(meta) = meta {
            // A snapshot covers only committed entries, even if the hint lags behind it.
            hard_state.commit = hard_state.commit.max(meta.index);
            storage.mem.apply_snapshot(Snapshot {
                meta,
                data: Vec::new(),
            });
        }
        // Every write of the hard state waits for the log queue to drain, and Raft never
        // truncates a committed entry, so the log reaches at least the commit index it holds.
        // One that does not lost its tail (a segment cut at a frame boundary, a partial copy
        // of the directory): refused, since this node may have acknowledged those entries and
        // its vote must not now help elect a leader without them.
        let last_index = entries.last().map_or(record_index, |e| e.index);
        if hard_state.commit > last_index {
            let message = format!(
                "{}: the Raft log ends at index {last_index}, but index {} was known committed:                  the end of the log was lost. Restore this node's data directory, or start it                  from an empty one (it catches up from its peers)",
                data_dir.display(),
                hard_state.commit
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        let stored = entries.len();
        storage.mem.append(&entries);
        storage.mem.set_hard_state(hard_state);
        if unfinished_boot || (stored == 0 && hard_state == HardState::default()) {
            let commit = boot.len() as u64;
            storage.append(&boot[stored..])?;
            storage.set_hard_state(HardState {
                term: 1,
                vote: 0,
                commit,
            })?;
        }
        Ok(storage)
    }

    /// Compacts the log to the engine's durable snapshot at `index`: drops the entries it
    /// covers from memory now, and has the compactor (`raft::compactor`) record the Raft
    /// snapshot state (index, term, membership at `index`) durably, then delete the log
    /// segments wholly below `index + 1` and free the dropped entries.
    ///
    /// Runs on the Raft thread, which waits for no disk here: the record's two fsyncs, the
    /// deletion and the freeing happen on the compactor's thread. Measured on a loaded
    /// 1M-item leader (`ITEMS=1000000 JOIN=0 benches/join-under-load.sh`): each compaction
    /// held this thread 2-158 ms when it did all of it, and one pass stalled 287 ms, long
    /// enough to lose the leadership. With only the record written here, 1.1-26.6 ms (21
    /// compactions of 3 nodes under `SECS=12 benches/cluster-writes.sh`, timed around this
    /// call); with nothing, 0.33-0.61 ms in the same runs (one of 24 took 4.4 ms), the
    /// membership walk over every held entry and the move of the dropped entries. The walk
    /// now visits the membership entries alone (`MemStorage::conf_changes_through`).
    /// A failure of the record is reported by [`LogStorage::take_compaction_failure`].
    ///
    /// # Errors
    /// An earlier compaction's record could not be written.
    ///
    /// # Panics
    /// If `index` is beyond the commit index or not past the current snapshot.
    pub fn compact(&mut self, index: u64) -> io::Result<()> {
        let commit = self.mem.hard_state().commit;
        assert!(
            index <= commit,
            "compact to {index} beyond the commit {commit}"
        );
        let term = self
            .mem
            .term(index)
            .unwrap_or_else(|e| panic!("compact to {index}: {e}"));
        if let Some(failure) = self.take_compaction_failure() {
            return Err(failure);
        }
        let meta = SnapshotMeta {
            index,
            term,
            conf: self.conf_at(index),
        };
        let freed = self.mem.compact(index, meta.conf.clone(), Vec::new());
        // A transfer of the older snapshot restarts with this one: release its file (an
        // unlinked file's space is freed only when its last handle closes).
        self.drop_outgoing();
        self.compactor.compact(meta, freed);
        Ok(())
    }

    /// Why the compactor could not record a compaction, once: the node must stop (its log
    /// may hold segments no record covers; it never lost an entry).
    pub fn take_compaction_failure(&self) -> Option<io::Error> {
        self.compactor.take_failure()
    }

    /// Waits until the compactor has done everything queued: the record written, the
    /// deletion queued to the log writer, the entries freed.
    ///
    /// # Errors
    /// A record could not be written.
    pub fn wait_compacted(&self) -> io::Result<()> {
        self.compactor.wait_idle()
    }

    /// Persists a snapshot received from the leader, in crash-safe order: the snapshot file
    /// (checked, written atomically), then the Raft snapshot record, then the log (reset when
    /// it does not continue the snapshot, else trimmed). `after` is called after each step
    /// (tests crash there). A crash before the record leaves the old state and log; after it,
    /// [`LogStorage::open`] finishes the install.
    ///
    /// # Errors
    /// A damaged snapshot, or I/O failures.
    pub fn install(&mut self, snapshot: &Snapshot, after: &dyn Fn(InstallStep)) -> io::Result<()> {
        let meta = &snapshot.meta;
        // The core handed the bytes as chunks (`store_snapshot_chunks`), now whole in the
        // incoming file: checked as it streams (never read whole), fsynced and renamed into
        // place as the snapshot file.
        if snapshot.data.is_empty() && self.incoming.is_some() {
            let (received, file, bytes) = self.incoming.take().expect("checked above");
            assert_eq!(
                received, meta.index,
                "installing another snapshot than received"
            );
            let written = file
                .metadata()
                .map_err(|e| io_error("the incoming snapshot", e))?
                .len();
            assert_eq!(written, bytes, "the incoming file lost bytes");
            drop(file);
            let path = self.dir.join(INCOMING_SNAPSHOT_FILE_NAME);
            engine::install_received_snapshot(&self.dir, meta.index, &path)
                .map_err(|e| io_error("install the snapshot", e))?;
        } else {
            engine::install_snapshot_file(&self.dir, meta.index, &snapshot.data)
                .map_err(|e| io_error("install the snapshot", e))?;
        }
        self.drop_outgoing();
        after(InstallStep::File);
        // Through the compactor: after a compaction's record being written, never before it.
        self.compactor.write_installed(meta)?;
        after(InstallStep::Record);
        let keeps_suffix = self.mem.term(meta.index).ok() == Some(meta.term);
        let result = if keeps_suffix {
            self.log.delete_before(meta.index + 1).map(|_| ())
        } else {
            self.log.reset(meta.index + 1)
        };
        result.map_err(|e| io_error("reset the raft log", e))?;
        after(InstallStep::Log);
        self.mem.apply_snapshot(Snapshot {
            meta: meta.clone(),
            data: Vec::new(),
        });
        Ok(())
    }

    /// Streams chunks of a snapshot from the leader into the incoming file: offset 0 starts
    /// it anew; each other chunk continues it (the core only hands out contiguous chunks).
    ///
    /// # Errors
    /// I/O failures writing the file.
    ///
    /// # Panics
    /// If a chunk does not continue the file (the core's contract).
    pub fn store_snapshot_chunks(&mut self, chunks: &[SnapshotChunk]) -> io::Result<()> {
        if chunks.is_empty() {
            return Ok(()); // Every Ready calls this; most carry no chunk (no path to build).
        }
        let path = self.dir.join(INCOMING_SNAPSHOT_FILE_NAME);
        for chunk in chunks {
            if chunk.offset == 0 {
                let file =
                    File::create(&path).map_err(|e| io_error(&path.display().to_string(), e))?;
                self.incoming = Some((chunk.index, file, 0));
            }
            let (index, file, bytes) = self.incoming.as_mut().expect("a chunk at offset 0 first");
            assert_eq!(
                (*index, *bytes),
                (chunk.index, chunk.offset),
                "snapshot chunks out of order"
            );
            file.write_all(&chunk.data)
                .map_err(|e| io_error(&path.display().to_string(), e))?;
            *bytes += chunk.data.len() as u64;
            assert!(
                *bytes <= chunk.total_bytes,
                "a chunk past the snapshot's end"
            );
        }
        Ok(())
    }

    /// Closes the file of the snapshot being sent, if any.
    fn drop_outgoing(&self) {
        *self
            .outgoing
            .lock()
            .expect("outgoing snapshot lock poisoned") = None;
    }

    /// The membership as of `index`: the snapshot's, changed by every membership entry up to
    /// `index` (found through the storage's index of them, not by walking every entry).
    fn conf_at(&self, index: u64) -> ConfState {
        let (_, mut conf) = self.mem.initial_state();
        for entry in self.mem.conf_changes_through(index) {
            if let Some(change) = ConfChange::decode(&entry.data) {
                conf.apply(change);
            }
        }
        conf
    }

    /// The index of the snapshot the log starts after (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.mem.first_index() - 1
    }

    /// Makes `entries` durable (truncating any uncommitted suffix they replace), then exposes
    /// them.
    ///
    /// # Errors
    /// The log's failure; nothing is exposed then.
    ///
    /// # Panics
    /// If the entries would replace a committed entry.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            entries.windows(2).all(|w| w[0].index + 1 == w[1].index),
            "raft entries to persist are not consecutive"
        );
        if first.index < self.log.next_index() {
            let commit = self.mem.hard_state().commit;
            assert!(
                first.index > commit,
                "truncating the log at {} below the commit index {commit}",
                first.index
            );
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

    /// Queues `entries`, which continue what is durable or already queued, for the log
    /// writer and returns at once (asynchronous persistence: the Raft thread keeps stepping
    /// while the writer writes and fsyncs). `done` runs on the writer thread once every
    /// entry is durable, or with the first failure. Nothing is exposed to the core here:
    /// the driver calls [`LogStorage::mirror`] with the same entries after `done`.
    /// Truncating a suffix needs [`LogStorage::append`] once nothing is queued.
    ///
    /// # Panics
    /// If `entries` are empty or not consecutive.
    pub fn submit(&self, entries: &[Entry], done: Box<dyn FnOnce(Result<(), String>) + Send>) {
        assert!(!entries.is_empty(), "nothing to persist");
        assert!(
            entries.windows(2).all(|w| w[0].index + 1 == w[1].index),
            "raft entries to persist are not consecutive"
        );
        let runs: Vec<&[Entry]> = entries.chunk_by(|a, b| a.term == b.term).collect();
        // One log append per term (a frame has one term). The writer completes them in
        // order, so the last one reports for all: earlier ones only record a failure.
        let failure = Arc::new(std::sync::Mutex::new(None::<String>));
        let mut done = Some(done);
        for (k, run) in runs.iter().enumerate() {
            let mut batch = EntryBatch::new();
            for entry in run.iter() {
                batch.push_with(|out| encode_entry(out, entry));
            }
            let failure = Arc::clone(&failure);
            let last = k + 1 == runs.len();
            let finish = if last { done.take() } else { None };
            self.log.append(crate::log::Append {
                term: run[0].term,
                first_index: run[0].index,
                entries: batch,
                done: Box::new(move |result| {
                    let mut first = failure.lock().expect("persist failure poisoned");
                    if let Err(e) = result {
                        first.get_or_insert(format!("append to the raft log: {e}"));
                    }
                    if let Some(finish) = finish {
                        finish(first.take().map_or(Ok(()), Err));
                    }
                }),
            });
        }
        assert!(done.is_none(), "the last run reports");
    }

    /// Exposes `entries`, made durable by [`LogStorage::submit`], to the core.
    ///
    /// # Panics
    /// If they do not continue the exposed log (the driver mirrors in submission order, and
    /// waits for everything queued before it truncates).
    pub fn mirror(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert_eq!(
            first.index,
            self.mem.last_index() + 1,
            "mirrored entries do not continue the log"
        );
        self.mem.append(entries);
    }

    /// Records the hard state; fsyncs the file when the term or vote changed. Its commit is
    /// otherwise a hint written with them (see [`LogStorage::set_hard_state_durably`]).
    ///
    /// # Errors
    /// I/O failures writing the file.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> io::Result<()> {
        if (hard_state.term, hard_state.vote) != self.durable_term_vote {
            return self.set_hard_state_durably(hard_state);
        }
        self.mem.set_hard_state(hard_state);
        Ok(())
    }

    /// Records the hard state and fsyncs the file whatever changed: for a commit index that
    /// passed a membership change (`Ready::commit_passed_conf_change`), which a restart must
    /// not come back below.
    ///
    /// # Errors
    /// I/O failures writing the file.
    pub fn set_hard_state_durably(&mut self, hard_state: HardState) -> io::Result<()> {
        write_hard_state(&self.dir, hard_state)?;
        self.durable_term_vote = (hard_state.term, hard_state.vote);
        self.mem.set_hard_state(hard_state);
        Ok(())
    }

    /// Whether recording `hard_state` writes the file (its term or vote changed).
    pub fn changes_term_or_vote(&self, hard_state: HardState) -> bool {
        (hard_state.term, hard_state.vote) != self.durable_term_vote
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

    fn snapshot_info(&self) -> Result<SnapshotInfo, StorageError> {
        let meta = self.mem.snapshot().meta.clone();
        if meta.index == 0 {
            return Ok(SnapshotInfo {
                meta,
                total_bytes: 0,
            });
        }
        let mut outgoing = self
            .outgoing
            .lock()
            .expect("outgoing snapshot lock poisoned");
        let total_bytes = match outgoing.as_ref() {
            // Already open (another follower is being sent it): the same file, not a reopen.
            Some(open) if open.index == meta.index => open.total_bytes,
            _ => {
                // Sent as the whole file, so the follower checks the checksums end to end.
                let (file, total_bytes) = engine::open_snapshot_file(&self.dir, meta.index)
                    .map_err(|e| StorageError::Other(e.to_string()))?;
                *outgoing = Some(OutgoingSnapshot {
                    index: meta.index,
                    file,
                    total_bytes,
                });
                total_bytes
            }
        };
        Ok(SnapshotInfo { meta, total_bytes })
    }

    fn snapshot_chunk(&self, index: u64, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if index == 0 && len == 0 {
            return Ok(Vec::new());
        }
        let outgoing = self
            .outgoing
            .lock()
            .expect("outgoing snapshot lock poisoned");
        // Only from the handle `snapshot_info` opened: once it is closed (a newer snapshot),
        // the transfer restarts rather than reading whatever file now has the name.
        let Some(open) = outgoing.as_ref().filter(|open| open.index == index) else {
            return Err(StorageError::SnapshotReplaced { index });
        };
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= open.total_bytes);
        if end.is_none() {
            return Err(StorageError::Other(format!(
                "snapshot {index} chunk {offset}+{len} past its {} bytes",
                open.total_bytes
            )));
        }
        let mut chunk = vec![0u8; len as usize];
        open.file
            .read_exact_at(&mut chunk, offset)
            .map_err(|e| StorageError::Other(format!("read snapshot {index}: {e}")))?;
        Ok(chunk)
    }
}

/// One Raft entry as a log entry: an event's envelope as it is, a no-op or membership change
/// as a reserved envelope at its index.
fn encode_entry(out: &mut Vec<u8>, entry: &Entry) {
    match entry.kind {
        EntryKind::Normal if !entry.data.is_empty() => out.extend_from_slice(&entry.data),
        EntryKind::Normal => engine::encode_reserved(out, entry.index, Reserved::Noop),
        EntryKind::ConfChange => {
            engine::encode_reserved(out, entry.index, Reserved::Conf(&entry.data));
        }
    }
}

fn decode_entry(index: u64, term: u64, bytes: &[u8]) -> Result<Entry, String> {
    let (kind, data) = match engine::classify(index, bytes)? {
        None => (EntryKind::Normal, Payload::from(bytes)),
        Some(Reserved::Noop) => (EntryKind::Normal, Payload::default()),
        Some(Reserved::Conf(change)) => (EntryKind::ConfChange, Payload::from(change)),
    };
    Ok(Entry {
        term,
        index,
        kind,
        data,
    })
}

/// Every entry of `log` from `from` on, decoded.
fn read_entries(log: &Log, from: u64) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut malformed = None;
    log.read_range(from, &mut |frame| {
        for (offset, bytes) in frame.entries().enumerate() {
            let index = frame.index + offset as u64;
            if index < from {
                continue;
            }
            match decode_entry(index, frame.term, bytes) {
                Ok(entry) => entries.push(entry),
                Err(problem) => {
                    malformed = Some(format!("entry {index}: {problem}"));
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
    .map_err(|e| io_error("read the raft log", e))?;
    match malformed {
        Some(problem) => Err(io_error("raft log", problem)),
        None => Ok(entries),
    }
}

/// The steps of [`LogStorage::install`], for the crash test hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallStep {
    /// The snapshot file is durable.
    File,
    /// The Raft snapshot record is durable.
    Record,
    /// The log is reset or trimmed.
    Log,
}

/// The log entries after `meta`'s snapshot, resetting a log that does not continue it (one
/// that ends before it, or disagrees on its term: an install that crashed half way).
fn entries_after_snapshot(log: &Log, meta: &SnapshotMeta) -> io::Result<Vec<Entry>> {
    let mut entries = read_entries(log, meta.index)?;
    let continues = match entries.first() {
        Some(first) if first.index == meta.index => first.term == meta.term,
        // The entry at the snapshot index was compacted with its segment: what follows starts
        // at index + 1 or the log is broken.
        Some(first) => first.index == meta.index + 1,
        None => log.next_index() == meta.index + 1,
    };
    if !continues {
        log.reset(meta.index + 1)
            .map_err(|e| io_error("reset the raft log", e))?;
        return Ok(Vec::new());
    }
    entries.retain(|entry| entry.index > meta.index);
    Ok(entries)
}

fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    for ids in [&meta.conf.voters, &meta.conf.learners] {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_snapshot_meta(bytes: &[u8]) -> Option<SnapshotMeta> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut rest = body;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let index = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let term = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        for _ in 0..count {
            list.push(u64::from_le_bytes(take(8)?.try_into().ok()?));
        }
    }
    if !rest.is_empty() {
        return None;
    }
    let [voters, learners] = lists;
    Some(SnapshotMeta {
        index,
        term,
        conf: ConfState { voters, learners },
    })
}

fn read_snapshot_meta(data_dir: &Path) -> io::Result<Option<SnapshotMeta>> {
    let path = data_dir.join(SNAPSHOT_META_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => decode_snapshot_meta(&bytes)
            .map(Some)
            .ok_or_else(|| io_error(&path.display().to_string(), "corrupt raft snapshot record")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the snapshot record of `data_dir` durably. Only through the compactor (its lock
/// orders the writers) outside of tests.
pub(super) fn write_snapshot_meta(data_dir: &Path, meta: &SnapshotMeta) -> io::Result<()> {
    crate::log::replace_file_durably(
        data_dir,
        SNAPSHOT_META_FILE_NAME,
        &encode_snapshot_meta(meta),
    )
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

fn write_hard_state(dir: &Path, hard_state: HardState) -> io::Result<()> {
    crate::log::replace_file_durably(dir, HARD_STATE_FILE_NAME, &encode_hard_state(hard_state))
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

    /// An event envelope at `index` (what the sequencer proposes).
    fn entry(index: u64, term: u64, tag: &str) -> Entry {
        let envelope = crate::engine::Envelope {
            index,
            timestamp_ms: 1,
            event_type: std::borrow::Cow::Owned(tag.to_string()),
            schema_version: 1,
            request_id: index,
            idempotency_key: None,
            actor: None,
            correlation_id: None,
            request_fingerprint: None,
        };
        let mut data = Vec::new();
        crate::engine::encode_entry(&mut data, &envelope, |_| {});
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: data.into(),
        }
    }

    fn noop(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Payload::default(),
        }
    }

    fn open_log(dir: &Path) -> Arc<Log> {
        let (log, _) = Log::open(dir, crate::log::LogOptions::default(), &mut |_| Ok(())).unwrap();
        Arc::new(log)
    }

    /// A commit that passed membership changes survives a restart once written durably, and
    /// the restarted core rebuilds its membership from the changes at or below it; written
    /// as a mere hint (with no term or vote change) it would not.
    #[test]
    fn a_durable_commit_past_membership_changes_keeps_them_after_a_restart() {
        use crate::raft::types::ConfChange;
        let dir = temp_dir("conf-commit");
        let voter = |index: u64, id: u64| Entry {
            term: 1,
            index,
            kind: EntryKind::ConfChange,
            data: ConfChange::AddVoter(id).encode().into(),
        };
        let restarted_voters = |dir: &Path| {
            let storage = LogStorage::open(open_log(dir), dir, &[1, 2, 3]).unwrap();
            let commit = storage.hard_state().commit;
            let node = crate::raft::RawNode::new(crate::raft::Config::new(2), storage).unwrap();
            (commit, node.status().conf.voters)
        };
        {
            let mut storage = LogStorage::open(open_log(&dir), &dir, &[1, 2, 3]).unwrap();
            let voted = HardState {
                term: 1,
                vote: 1,
                commit: 3,
            };
            storage.set_hard_state(voted).unwrap();
            storage.append(&[voter(4, 4), voter(5, 5)]).unwrap();
            storage
                .set_hard_state(HardState { commit: 5, ..voted })
                .unwrap();
        }
        assert_eq!(restarted_voters(&dir), (3, vec![1, 2, 3]), "a hint only");
        {
            let mut storage = LogStorage::open(open_log(&dir), &dir, &[1, 2, 3]).unwrap();
            let passed = HardState {
                term: 1,
                vote: 1,
                commit: 5,
            };
            storage.set_hard_state_durably(passed).unwrap();
        }
        assert_eq!(restarted_voters(&dir), (5, vec![1, 2, 3, 4, 5]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bootstraps_persists_truncates_and_recovers() {
        let dir = temp_dir("recover");
        {
            let mut storage = LogStorage::open(open_log(&dir), &dir, &[1, 2, 3]).unwrap();
            assert_eq!(storage.last_index(), 3);
            assert_eq!(storage.hard_state().commit, 3);
            storage
                .append(&[noop(4, 2), entry(5, 2, "b"), entry(6, 3, "c")])
                .unwrap();
            // A new leader overwrites the uncommitted suffix from index 5.
            storage.append(&[entry(5, 4, "x")]).unwrap();
            storage
                .set_hard_state(HardState {
                    term: 4,
                    vote: 2,
                    commit: 4,
                })
                .unwrap();
        }
        let storage = LogStorage::open(open_log(&dir), &dir, &[9]).unwrap();
        assert_eq!(storage.last_index(), 5);
        assert_eq!(storage.term(5), Ok(4));
        assert_eq!(storage.term(4), Ok(2));
        let held = storage.entries(1, 6, u64::MAX).unwrap();
        assert_eq!(&held[3..], &[noop(4, 2), entry(5, 4, "x")]);
        let boot = crate::raft::bootstrap_entries(&[1, 2, 3]);
        assert_eq!(&held[..3], &boot[..]);
        assert_eq!(
            (storage.hard_state().term, storage.hard_state().vote),
            (4, 2)
        );
        // Every index of the shared log decodes as an envelope at that index; frame term =
        // Raft term.
        let mut seen = Vec::new();
        crate::log::read_range(&dir.join(crate::log::LOG_DIR_NAME), 1, &mut |frame| {
            for (offset, bytes) in frame.entries().enumerate() {
                let index = frame.index + offset as u64;
                let envelope = crate::engine::decode_entry(bytes).unwrap();
                seen.push((
                    index,
                    frame.term,
                    envelope.index,
                    envelope.event_type.to_string(),
                ));
            }
            Ok(true)
        })
        .unwrap();
        let types: Vec<&str> = seen.iter().map(|s| s.3.as_str()).collect();
        assert_eq!(
            types,
            ["$raft.conf", "$raft.conf", "$raft.conf", "$raft.noop", "x"]
        );
        assert!(seen.iter().all(|s| s.0 == s.2));
        assert_eq!(seen[4].1, 4);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A log that ends before the commit index its hard state holds lost its tail: the node
    /// refuses to start, saying so, rather than vote with a log missing committed entries.
    #[test]
    fn a_log_that_lost_committed_entries_is_refused() {
        let dir = temp_dir("lost-tail");
        {
            let mut storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
            storage.append(&[noop(2, 2), entry(3, 2, "a")]).unwrap();
            storage
                .set_hard_state(HardState {
                    term: 2,
                    vote: 1,
                    commit: 3,
                })
                .unwrap();
        }
        // Reopened whole, it starts.
        drop(LogStorage::open(open_log(&dir), &dir, &[1]).unwrap());
        // The hard state of a later moment (entries up to 5 committed) over this log: as if
        // the segment had been cut after entry 3.
        write_hard_state(
            &dir,
            HardState {
                term: 3,
                vote: 1,
                commit: 5,
            },
        )
        .unwrap();
        let refused = LogStorage::open(open_log(&dir), &dir, &[1])
            .err()
            .expect("refused");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        let message = refused.to_string();
        assert!(
            message.contains("ends at index 3, but index 5 was known committed"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[should_panic(expected = "below the commit index")]
    fn truncating_a_committed_entry_panics() {
        let dir = temp_dir("committed");
        let mut storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
        storage.append(&[noop(2, 2)]).unwrap();
        storage.append(&[noop(1, 3)]).unwrap();
    }

    #[test]
    fn refuses_the_old_layout_and_a_single_node_log() {
        let dir = temp_dir("layout");
        fs::create_dir_all(dir.join(OLD_RAFT_DIR_NAME)).unwrap();
        let error = read_hard_state(&dir).unwrap_err().to_string();
        assert!(error.contains("older pre-release"), "{error}");
        fs::remove_dir_all(dir.join(OLD_RAFT_DIR_NAME)).unwrap();
        let log = open_log(&dir);
        let mut batch = EntryBatch::new();
        batch.push(&entry(1, 0, "single").data);
        log.append_wait(0, 1, batch).unwrap();
        let error = LogStorage::open(log, &dir, &[1]).err().unwrap().to_string();
        assert!(error.contains("single-node log"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A node killed between bootstrapping's append and its hard state restarts: the
    /// bootstrap is finished (it used to refuse the directory as "a single-node log", so the
    /// node could never start again). Other voters than the interrupted start's are refused
    /// with what to do.
    #[test]
    fn a_bootstrap_cut_before_its_hard_state_is_finished_at_the_next_start() {
        let dir = temp_dir("boot-cut");
        let boot = crate::raft::bootstrap_entries(&[1, 2, 3]);
        for kept in [3, 2, 0] {
            drop(LogStorage::open(open_log(&dir), &dir, &[1, 2, 3]).unwrap());
            // The kill: the hard state never written, and the last entries not either.
            fs::remove_file(dir.join(HARD_STATE_FILE_NAME)).unwrap();
            open_log(&dir).truncate_after(kept).unwrap();
            let error = LogStorage::open(open_log(&dir), &dir, &[4, 5])
                .err()
                .map(|e| e.to_string());
            if kept == 0 {
                // Nothing stored: a fresh directory, whatever the voters.
                assert_eq!(error, None);
                fs::remove_dir_all(&dir).unwrap();
                continue;
            }
            let error = error.expect("other voters are refused");
            assert!(error.contains("other voters"), "{error}");
            let storage = LogStorage::open(open_log(&dir), &dir, &[1, 2, 3]).unwrap();
            assert_eq!(storage.entries(1, 4, u64::MAX).unwrap(), boot);
            assert_eq!(storage.hard_state().term, 1);
            assert_eq!(storage.hard_state().commit, 3);
            drop(storage);
            assert_eq!(read_hard_state(&dir).unwrap().term, 1, "durable");
        }
    }

    /// A snapshot file as the engine writes it (header, body), for index `index`.
    fn snapshot_file(index: u64, body: &[u8]) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(&crate::engine::SNAPSHOT_MAGIC);
        file.extend_from_slice(&crate::engine::SNAPSHOT_VERSION.to_le_bytes());
        file.extend_from_slice(&[0; 4]);
        file.extend_from_slice(&index.to_le_bytes());
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        let crc = crc32c::crc32c(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        file.extend_from_slice(body);
        file
    }

    /// Reads the snapshot `info` describes in chunks of `chunk` bytes, as a leader sends it.
    fn read_in_chunks(storage: &LogStorage, info: &SnapshotInfo, chunk: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while (out.len() as u64) < info.total_bytes {
            let len = chunk.min(info.total_bytes - out.len() as u64);
            let piece = storage
                .snapshot_chunk(info.meta.index, out.len() as u64, len)
                .unwrap();
            out.extend_from_slice(&piece);
        }
        out
    }

    #[test]
    fn a_sent_snapshot_is_read_a_chunk_at_a_time_from_one_file_until_a_newer_one() {
        let dir = temp_dir("sent-chunks");
        let mut storage = compactable(&dir, &[]);
        let first = snapshot_file(11, &[7u8; 100]);
        engine::install_snapshot_file(&dir, 11, &first).unwrap();
        storage.compact(11).unwrap();
        let info = storage.snapshot_info().unwrap();
        assert_eq!(
            (info.meta.index, info.total_bytes),
            (11, first.len() as u64)
        );
        let head = storage.snapshot_chunk(11, 0, 16).unwrap();
        assert_eq!(head, first[..16]);
        // Mid-transfer the file is pruned and another one takes its name: the transfer goes
        // on with the bytes of the file it started on, never a mix of the two.
        let path = engine::snapshot_dir(&dir).join(format!("{:020}.snap", 11));
        fs::remove_file(&path).unwrap();
        engine::install_snapshot_file(&dir, 11, &snapshot_file(11, &[9u8; 100])).unwrap();
        assert_eq!(
            storage.snapshot_info().unwrap(),
            info,
            "the open file, not a reopen"
        );
        assert_eq!(read_in_chunks(&storage, &info, 16), first);
        // A chunk past the end is refused, not padded.
        assert!(matches!(
            storage.snapshot_chunk(11, info.total_bytes - 4, 8),
            Err(StorageError::Other(_))
        ));
        // A newer snapshot: chunks of the old one are refused (the leader restarts).
        let newer = snapshot_file(15, &[5u8; 40]);
        engine::install_snapshot_file(&dir, 15, &newer).unwrap();
        storage.compact(15).unwrap();
        assert_eq!(
            storage.snapshot_chunk(11, 16, 16),
            Err(StorageError::SnapshotReplaced { index: 11 })
        );
        let info = storage.snapshot_info().unwrap();
        assert_eq!(info.meta.index, 15);
        assert_eq!(read_in_chunks(&storage, &info, 7), newer);
        drop(storage);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_received_snapshot_is_checked_and_installed_from_its_incoming_file() {
        let dir = temp_dir("received");
        let mut storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
        let meta = SnapshotMeta {
            index: 30,
            term: 3,
            conf: ConfState::with_voters(&[1, 2]),
        };
        let receive = |storage: &mut LogStorage, file: &[u8]| {
            let chunks: Vec<SnapshotChunk> = file
                .chunks(9)
                .enumerate()
                .map(|(k, data)| SnapshotChunk {
                    index: 30,
                    offset: 9 * k as u64,
                    total_bytes: file.len() as u64,
                    data: data.to_vec(),
                })
                .collect();
            storage.store_snapshot_chunks(&chunks).unwrap();
        };
        let announced = Snapshot {
            meta: meta.clone(),
            data: Vec::new(),
        };
        // A flipped body byte: refused, nothing installed, the log untouched.
        let mut damaged = snapshot_file(30, &[3u8; 50]);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        receive(&mut storage, &damaged);
        assert!(storage.install(&announced, &|_| {}).is_err());
        assert!(!engine::snapshot_dir(&dir)
            .join(format!("{:020}.snap", 30))
            .exists());
        assert_eq!(storage.snapshot_index(), 0);
        // Whole and sound: renamed into place, the incoming file gone.
        let file = snapshot_file(30, &[3u8; 50]);
        receive(&mut storage, &file);
        storage.install(&announced, &|_| {}).unwrap();
        assert_eq!(
            fs::read(engine::snapshot_dir(&dir).join(format!("{:020}.snap", 30))).unwrap(),
            file
        );
        assert!(!dir.join(INCOMING_SNAPSHOT_FILE_NAME).exists());
        assert_eq!(storage.snapshot_index(), 30);
        drop(storage);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A storage at term 2 holding entries 2..=20, committed, with the engine's snapshot
    /// files at each of `snapshots` (their bodies say which).
    fn compactable(dir: &Path, snapshots: &[u64]) -> LogStorage {
        let mut storage = LogStorage::open(open_log(dir), dir, &[1]).unwrap();
        let entries: Vec<Entry> = (2..=20).map(|i| entry(i, 2, "e")).collect();
        storage.append(&entries).unwrap();
        let hard_state = HardState {
            term: 2,
            vote: 1,
            commit: 20,
        };
        storage.set_hard_state(hard_state).unwrap();
        for &index in snapshots {
            let file = snapshot_file(index, format!("state at {index}").as_bytes());
            engine::install_snapshot_file(dir, index, &file).unwrap();
        }
        storage
    }

    /// The record is written off the caller's thread, and never goes back: an install's
    /// record, written on the caller's thread while a compaction's may still be queued or
    /// being written, is the one left on disk.
    #[test]
    fn compaction_records_are_written_by_the_compactor_and_never_go_back() {
        let dir = temp_dir("compactor");
        let mut storage = compactable(&dir, &[11, 15]);
        storage.compact(11).unwrap();
        // In memory at once; on disk once the compactor is done.
        assert_eq!(storage.first_index(), 12);
        storage.wait_compacted().unwrap();
        assert_eq!(read_snapshot_meta(&dir).unwrap().map(|m| m.index), Some(11));
        assert_eq!(storage.compactor.record_index(), 11);
        storage.compact(15).unwrap();
        let meta = SnapshotMeta {
            index: 30,
            term: 3,
            conf: ConfState::with_voters(&[1, 2]),
        };
        let snapshot = Snapshot {
            meta,
            data: snapshot_file(30, b"state at 30"),
        };
        storage.install(&snapshot, &|_| {}).unwrap();
        storage.wait_compacted().unwrap();
        assert_eq!(read_snapshot_meta(&dir).unwrap().map(|m| m.index), Some(30));
        assert_eq!(storage.compactor.record_index(), 30);
        assert_eq!((storage.first_index(), storage.last_index()), (31, 30));
        // A compaction older than the record on disk (one queued before the install, taken
        // after it) is skipped: the record stays.
        let older = SnapshotMeta {
            index: 15,
            term: 2,
            conf: ConfState::with_voters(&[1]),
        };
        storage.compactor.compact(older, Vec::new());
        storage.wait_compacted().unwrap();
        assert_eq!(read_snapshot_meta(&dir).unwrap().map(|m| m.index), Some(30));
        drop(storage);
        let storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
        assert_eq!(storage.snapshot_index(), 30);
        drop(storage);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A record the compactor cannot write is reported (the node stops on it), and loses
    /// nothing: the segments stay, and a restart has every entry.
    #[test]
    fn a_compaction_record_that_cannot_be_written_is_reported_and_loses_nothing() {
        let dir = temp_dir("compactor-fails");
        let mut storage = compactable(&dir, &[11, 15]);
        // The record's temporary file cannot be created where a directory stands.
        let blocker = dir.join(format!("{SNAPSHOT_META_FILE_NAME}.tmp"));
        fs::create_dir(&blocker).unwrap();
        storage.compact(11).unwrap();
        let mut failure = None;
        for _ in 0..2_000 {
            failure = storage.take_compaction_failure();
            if failure.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let failure = failure.expect("the failure is reported");
        assert!(
            failure.to_string().contains("raft snapshot record at 11"),
            "{failure}"
        );
        assert!(storage.take_compaction_failure().is_none(), "reported once");
        // A later compaction fails the same way.
        assert!(storage.compact(15).is_ok(), "queued");
        assert!(storage.wait_compacted().is_err());
        assert_eq!(storage.compactor.record_index(), 0);
        drop(storage);
        fs::remove_dir(&blocker).unwrap();
        assert!(read_snapshot_meta(&dir).unwrap().is_none());
        let storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
        assert_eq!((storage.first_index(), storage.last_index()), (1, 20));
        drop(storage);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compacts_installs_and_finishes_an_interrupted_install() {
        let dir = temp_dir("snapshots");
        let hard_state = HardState {
            term: 2,
            vote: 1,
            commit: 10,
        };
        {
            let mut storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
            let entries: Vec<Entry> = (2..=10).map(|i| entry(i, 2, "e")).collect();
            storage.append(&entries).unwrap();
            let learner = Entry {
                term: 2,
                index: 11,
                kind: EntryKind::ConfChange,
                data: ConfChange::AddLearner(4).encode().into(),
            };
            storage.append(&[learner]).unwrap();
            storage
                .set_hard_state(HardState {
                    commit: 11,
                    ..hard_state
                })
                .unwrap();
            engine::install_snapshot_file(&dir, 11, &snapshot_file(11, b"state at 11")).unwrap();
            storage.compact(11).unwrap();
            assert_eq!((storage.first_index(), storage.term(11)), (12, Ok(2)));
            let sent = storage.snapshot_info().unwrap();
            let file = snapshot_file(11, b"state at 11");
            assert_eq!(sent.total_bytes, file.len() as u64);
            let bytes = storage.snapshot_chunk(11, 0, sent.total_bytes).unwrap();
            assert_eq!(bytes, file);
            assert_eq!(sent.meta.conf.voters, vec![1]);
            assert_eq!(sent.meta.conf.learners, vec![4]);
        }
        let mut storage = LogStorage::open(open_log(&dir), &dir, &[1]).unwrap();
        assert_eq!((storage.snapshot_index(), storage.last_index()), (11, 11));
        assert_eq!(storage.initial_state().1.learners, vec![4]);
        // A snapshot far ahead of the log: the log restarts right after it.
        let meta = SnapshotMeta {
            index: 30,
            term: 3,
            conf: ConfState::with_voters(&[1, 2]),
        };
        let steps = std::cell::RefCell::new(Vec::new());
        let snapshot = Snapshot {
            meta: meta.clone(),
            data: snapshot_file(30, b"state at 30"),
        };
        storage
            .install(&snapshot, &|step| steps.borrow_mut().push(step))
            .unwrap();
        assert_eq!(
            steps.into_inner(),
            vec![InstallStep::File, InstallStep::Record, InstallStep::Log]
        );
        assert_eq!((storage.first_index(), storage.last_index()), (31, 30));
        storage.append(&[entry(31, 3, "after")]).unwrap();
        let damaged = Snapshot {
            meta: SnapshotMeta { index: 40, ..meta },
            data: snapshot_file(41, b"x"),
        };
        assert!(storage.install(&damaged, &|_| {}).is_err());
        drop(storage);
        // A crash after the record but before the log was reset: opening finishes the install.
        write_snapshot_meta(
            &dir,
            &SnapshotMeta {
                index: 50,
                term: 4,
                conf: ConfState::with_voters(&[1]),
            },
        )
        .unwrap();
        let log = open_log(&dir);
        let storage = LogStorage::open(Arc::clone(&log), &dir, &[1]).unwrap();
        assert_eq!((storage.first_index(), storage.last_index()), (51, 50));
        assert_eq!(log.next_index(), 51);
        assert_eq!(storage.hard_state().commit, 50);
        drop((storage, log));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_meta_codec_rejects_corruption() {
        let meta = SnapshotMeta {
            index: 9,
            term: 4,
            conf: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![7],
            },
        };
        let bytes = encode_snapshot_meta(&meta);
        assert_eq!(decode_snapshot_meta(&bytes), Some(meta));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert_eq!(decode_snapshot_meta(&damaged), None, "flip at {at}");
        }
        for cut in 0..bytes.len() {
            assert_eq!(decode_snapshot_meta(&bytes[..cut]), None);
        }
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
