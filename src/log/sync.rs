//! The sync stage of a durable log: written groups wait here for an `fdatasync`, run by
//! whichever writer thread is free, while the other thread writes the next group.
//!
//! Owns: "acknowledged means an fsync that began after the write returned". A writer pushes
//! each group once its `write` returned; the syncing thread takes every group pushed so far,
//! then runs one `fdatasync`, so that fsync covers them all, and only then calls their
//! completions. Groups pushed during that fsync wait for the next one. One thread syncs at a
//! time, and it takes groups oldest first. Completions may be slow (a single-node engine
//! applies its batch and answers its submitters in them), so the syncing thread hands the
//! sync stage on before running them: the other thread may start the next fsync meanwhile.
//! Completions still keep the write order: a round takes the completion turn (`acks`) before
//! it lets go of the sync stage, so the next round's completions wait for this one's.
//! Must not: write, truncate or pick files (the writer does), retry a failed fsync (the
//! process stops), or acknowledge a group before every group pushed before it.

use super::writer::{fatal, Appended, Done, Faults};
use super::AppendError;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// One group handed from a writer thread to the sync pipe, in write order.
pub(super) struct Written {
    /// The segment the group went to; `None`: nothing was written (failed or empty appends,
    /// which still wait for the groups before them).
    pub(super) file: Option<(Arc<File>, PathBuf)>,
    /// Completions with their outcomes, in append order.
    pub(super) acks: Vec<(Done, Result<Appended, AppendError>)>,
}

/// The hand-off between the writer threads and the one of them that syncs.
pub(super) struct SyncPipe {
    state: Mutex<PipeState>,
    /// The completion turn: held while a round runs its completions. Taken under `state`
    /// (lock order: `state`, then `acks`; never `state` while holding `acks`), so rounds
    /// take it in the order they synced.
    acks: Mutex<()>,
    /// A thread that must see everything synced waits here for the syncing thread.
    idle: Condvar,
    faults: Option<Arc<Faults>>,
    /// Fsyncs issued (shared with the log handle's counters).
    fsyncs: Arc<AtomicU64>,
    /// Nanoseconds spent in them (likewise).
    fsync_nanos: Arc<AtomicU64>,
}

#[derive(Default)]
struct PipeState {
    /// Groups written and not yet taken for an fsync, oldest first.
    queue: VecDeque<Written>,
    /// A thread is syncing groups (between taking them and its fsync's return).
    busy: bool,
    /// Rounds synced whose completions have not all run yet (0 or 1 with two threads).
    acking: u32,
    /// A thread waits on `idle`.
    drain_waiting: bool,
}

impl SyncPipe {
    /// An empty pipe; fsync failures may be injected through `faults`.
    pub(super) fn new(
        faults: Option<Arc<Faults>>,
        fsyncs: Arc<AtomicU64>,
        fsync_nanos: Arc<AtomicU64>,
    ) -> Self {
        SyncPipe {
            state: Mutex::new(PipeState::default()),
            acks: Mutex::new(()),
            idle: Condvar::new(),
            faults,
            fsyncs,
            fsync_nanos,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().expect("sync pipe poisoned")
    }

    /// Queues a written group for the next fsync (called by a writer after its `write`).
    pub(super) fn push(&self, written: Written) {
        self.lock().queue.push_back(written);
    }

    /// Syncs and acknowledges queued groups until none is left, unless another thread is
    /// syncing: that thread looks at the queue again after its fsync (under the lock, after
    /// clearing `busy`), so nothing pushed is left behind.
    pub(super) fn sync_if_free(&self) {
        let mut state = self.lock();
        while !state.busy && !state.queue.is_empty() {
            state = self.sync_round(state);
        }
    }

    /// Returns once every pushed group is acknowledged: syncs them itself, or waits for the
    /// thread syncing.
    pub(super) fn drain(&self) {
        let mut state = self.lock();
        while state.busy || state.acking > 0 || !state.queue.is_empty() {
            if state.busy || state.acking > 0 {
                state.drain_waiting = true;
                state = self.idle.wait(state).expect("sync pipe poisoned");
            } else {
                state = self.sync_round(state);
            }
        }
    }

    /// Takes every queued group (all written before the fsync below begins), syncs them
    /// without the lock, then takes the completion turn, hands the sync stage on and
    /// acknowledges them in order; returns with the lock taken back.
    fn sync_round<'a>(&'a self, mut state: MutexGuard<'a, PipeState>) -> MutexGuard<'a, PipeState> {
        assert!(!state.busy, "one thread syncs at a time");
        let taken: Vec<Written> = state.queue.drain(..).collect();
        state.busy = true;
        drop(state);
        self.sync_taken(&taken);
        let mut state = self.lock();
        // Under `state`: no later round can take the turn before this one.
        let turn = self.acks.lock().expect("sync pipe completions poisoned");
        state.busy = false;
        state.acking += 1;
        drop(state);
        for written in taken {
            for (done, outcome) in written.acks {
                done(outcome);
            }
        }
        drop(turn);
        let mut state = self.lock();
        assert!(state.acking > 0, "a round acknowledged that never synced");
        state.acking -= 1;
        if std::mem::take(&mut state.drain_waiting) {
            self.idle.notify_all();
        }
        state
    }

    /// One `fdatasync` per distinct file among `taken` (one file, except around a rollover).
    fn sync_taken(&self, taken: &[Written]) {
        let mut last: Option<&Arc<File>> = None;
        for (file, path) in taken.iter().filter_map(|w| w.file.as_ref()) {
            if last.is_some_and(|synced| Arc::ptr_eq(synced, file)) {
                continue;
            }
            self.sync_file(file, path);
            last = Some(file);
        }
    }

    /// `fdatasync`; a failure stops the process (see the writer's module doc).
    fn sync_file(&self, file: &File, path: &std::path::Path) {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.take_sync_failure());
        let started = Instant::now();
        let result = if injected {
            Err(io::Error::from_raw_os_error(5))
        } else {
            file.sync_data()
        };
        if let Err(error) = result {
            fatal(&format!("fsync of {} failed: {error}", path.display()));
        }
        let nanos = started.elapsed().as_nanos() as u64;
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn ack(order: &mpsc::Sender<u64>, tag: u64) -> (Done, Result<Appended, AppendError>) {
        let order = order.clone();
        let done: Done = Box::new(move |outcome| {
            let tag = if outcome.is_ok() { tag } else { tag + 1000 };
            let _ = order.send(tag);
        });
        let appended = Appended {
            last_index: tag,
            group_appends: 1,
            group_entries: 1,
        };
        (done, Ok(appended))
    }

    #[test]
    fn groups_are_acknowledged_in_push_order_after_a_sync_and_drain_waits_for_them() {
        let dir = std::env::temp_dir().join(format!("lithair-sync-pipe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        let file = Arc::new(File::create(&path).unwrap());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let nanos = Arc::new(AtomicU64::new(0));
        let pipe = Arc::new(SyncPipe::new(None, Arc::clone(&fsyncs), nanos));
        // A second thread syncs while this one pushes (as the other writer thread would).
        let syncer = {
            let pipe = Arc::clone(&pipe);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    pipe.sync_if_free();
                    std::thread::yield_now();
                }
            })
        };
        let (order, acknowledged) = mpsc::channel();
        for tag in 1..=20_u64 {
            // Every third group failed to write: it carries no file and an error.
            let written = if tag % 3 == 0 {
                let (done, _) = ack(&order, tag);
                Written {
                    file: None,
                    acks: vec![(done, Err(AppendError::DiskFull))],
                }
            } else {
                Written {
                    file: Some((Arc::clone(&file), path.clone())),
                    acks: vec![ack(&order, tag)],
                }
            };
            pipe.push(written);
        }
        pipe.drain();
        let seen: Vec<u64> = acknowledged.try_iter().collect();
        let expected: Vec<u64> = (1..=20)
            .map(|tag| if tag % 3 == 0 { tag + 1000 } else { tag })
            .collect();
        assert_eq!(
            seen, expected,
            "every group answered, in order, before drain returns"
        );
        let synced = fsyncs.load(Ordering::Relaxed);
        assert!(
            (1..=14).contains(&synced),
            "{synced} fsyncs for 14 written groups"
        );
        syncer.join().unwrap();
        pipe.drain();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
