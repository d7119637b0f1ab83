//! The compactor: the disk work of a Raft log compaction, off the Raft thread.
//!
//! A compaction to `N` (the engine's durable snapshot, applied and so committed) drops the
//! entries up to `N` from the in-memory log at once, on the Raft thread; what waits for the
//! disk comes here, to a thread of its own (`lithair-compactor`), in this order: write the
//! `raft-snapshot` record (tmp, fsync, rename, fsync of the directory: two fsyncs, 1.6-25 ms
//! on a loaded node), then queue the deletion of the segments wholly below `N + 1` to the log
//! writer, then free the dropped entries (hundreds of thousands take tens of ms).
//!
//! Why the order is safe: the record only ever lags the in-memory compaction. Nothing reads
//! it but `LogStorage::open`, and a crash while it lags restarts on the older record with
//! the segments it needs (they are deleted only once the newer record is durable). A leader
//! sends a follower the engine's snapshot file, durable before the compaction began.
//!
//! The record never goes back: every write of it (this thread's and a snapshot install's on
//! the Raft thread) holds [`Compactor::record`], the index of the record on disk, and a write
//! older than that is skipped, with its deletion. Requests coalesce: a compaction asked while
//! another is waiting replaces it (only the newest record matters).
//!
//! Owns: the record's writes and the index on disk, the compaction queue and its thread.
//! Must not: touch the in-memory log (the Raft thread's) or wait for the log writer (the
//! deletion is queued, unwaited, as `Log::delete_before_queued` says).

use super::storage_log::write_snapshot_meta;
use super::types::{Entry, SnapshotMeta};
use crate::log::Log;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The work waiting for the compactor thread.
#[derive(Default)]
struct Queue {
    /// The newest compaction asked for and not yet taken.
    record: Option<SnapshotMeta>,
    /// Dropped entries to free.
    freed: Vec<Vec<Entry>>,
    /// The thread is working on what it took.
    busy: bool,
    /// Why a record could not be written (reported once, by `take_failure`).
    failure: Option<String>,
    /// The owner is gone: finish what is queued, then exit.
    stop: bool,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.record.is_none() && self.freed.is_empty() && !self.busy
    }
}

struct Shared {
    dir: PathBuf,
    log: Arc<Log>,
    queue: Mutex<Queue>,
    /// Signals work queued (to the thread) and work done (to `wait_idle`).
    changed: Condvar,
    /// The index of the `raft-snapshot` record on disk (0: none). Held while the record is
    /// written, so its writers never interleave.
    record: Mutex<u64>,
    /// Set with `Queue::failure`, so the Raft thread's check each pass takes no lock.
    failed: AtomicBool,
}

/// Hands a compaction's disk work to a thread of its own (see the module doc).
pub(crate) struct Compactor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    /// A compactor for the record in `dir` (at `record_index` on disk, 0 when there is none)
    /// and the segments of `log`.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn start(dir: &Path, log: Arc<Log>, record_index: u64) -> io::Result<Compactor> {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            log,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            record: Mutex::new(record_index),
            failed: AtomicBool::new(false),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lithair-compactor".into())
            .spawn(move || run(&worker))?;
        Ok(Compactor {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues the disk work of a compaction to `meta.index`, whose dropped entries are
    /// `freed`; returns at once.
    pub(crate) fn compact(&self, meta: SnapshotMeta, freed: Vec<Entry>) {
        let mut queue = lock(&self.shared.queue);
        assert!(
            queue
                .record
                .as_ref()
                .is_none_or(|older| older.index < meta.index),
            "compactions must rise: {} after {:?}",
            meta.index,
            queue.record.as_ref().map(|older| older.index)
        );
        queue.record = Some(meta);
        if !freed.is_empty() {
            queue.freed.push(freed);
        }
        self.shared.changed.notify_all();
    }

    /// Writes the record of an installed snapshot now, on the caller's thread (the install's
    /// next steps depend on it): after a record being written here, never before.
    ///
    /// # Errors
    /// I/O failures.
    ///
    /// # Panics
    /// If the record on disk is already at or past `meta.index` (an install is always newer
    /// than the node's own snapshot, which is at or past its record).
    pub(crate) fn write_installed(&self, meta: &SnapshotMeta) -> io::Result<()> {
        let wrote = write_if_newer(&self.shared, meta)?;
        assert!(
            wrote,
            "an installed snapshot at {} is not newer than the record",
            meta.index
        );
        Ok(())
    }

    /// Why the thread failed to write a record, once (then `None` again). The Raft thread
    /// asks each pass: a node whose compaction cannot be recorded stops, as it did when the
    /// record was written on the Raft thread.
    pub(crate) fn take_failure(&self) -> Option<io::Error> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return None;
        }
        // Both under the lock the thread sets them under: a failure landing now is kept.
        let mut queue = lock(&self.shared.queue);
        let failure = queue.failure.take();
        self.shared.failed.store(false, Ordering::Release);
        drop(queue);
        failure.map(io::Error::other)
    }

    /// Waits until everything queued is done (tests; a shutdown waits in `drop`).
    ///
    /// # Errors
    /// A record write failed.
    pub(crate) fn wait_idle(&self) -> io::Result<()> {
        let mut queue = lock(&self.shared.queue);
        while !queue.is_idle() {
            queue = self
                .shared
                .changed
                .wait(queue)
                .expect("compactor queue lock poisoned");
        }
        drop(queue);
        self.take_failure().map_or(Ok(()), Err)
    }

    /// The index of the record on disk (0: none).
    #[cfg(test)]
    pub(crate) fn record_index(&self) -> u64 {
        *lock(&self.shared.record)
    }
}

impl Drop for Compactor {
    /// Finishes what is queued (at most one record and its deletion), then joins the thread.
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("lithair: the compactor thread panicked");
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("compactor lock poisoned")
}

/// The compactor thread: takes the newest record and the entries to free, does the work,
/// until stopped with nothing left.
fn run(shared: &Shared) {
    loop {
        let (record, freed) = {
            let mut queue = lock(&shared.queue);
            while queue.record.is_none() && queue.freed.is_empty() && !queue.stop {
                queue = shared
                    .changed
                    .wait(queue)
                    .expect("compactor queue lock poisoned");
            }
            if queue.record.is_none() && queue.freed.is_empty() {
                return; // Stopped, nothing left.
            }
            queue.busy = true;
            (queue.record.take(), std::mem::take(&mut queue.freed))
        };
        let failure = record.and_then(|meta| record_and_delete(shared, &meta).err());
        drop(freed);
        let mut queue = lock(&shared.queue);
        if let Some(failure) = failure {
            eprintln!("lithair: {failure}");
            queue.failure = Some(failure);
            shared.failed.store(true, Ordering::Release);
        }
        queue.busy = false;
        shared.changed.notify_all();
    }
}

/// Writes the record of a compaction to `meta.index`, then queues the deletion of the
/// segments it covers (neither when a newer record is on disk already).
fn record_and_delete(shared: &Shared, meta: &SnapshotMeta) -> Result<(), String> {
    let wrote = write_if_newer(shared, meta)
        .map_err(|e| format!("write the raft snapshot record at {}: {e}", meta.index))?;
    if wrote {
        // After the record is durable: a crash before the deletion leaves segments the
        // record already covers, which `LogStorage::open` skips.
        shared
            .log
            .delete_before_queued(meta.index + 1)
            .map_err(|e| format!("compact the raft log to {}: {e}", meta.index))?;
    }
    Ok(())
}

/// Writes `meta` as the record unless the one on disk is at or past it; says whether it
/// wrote.
fn write_if_newer(shared: &Shared, meta: &SnapshotMeta) -> io::Result<bool> {
    let mut on_disk = lock(&shared.record);
    if *on_disk >= meta.index {
        return Ok(false);
    }
    write_snapshot_meta(&shared.dir, meta)?;
    *on_disk = meta.index;
    Ok(true)
}
