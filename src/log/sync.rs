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
//!
//! Also owns where the syncing thread sleeps during an fsync (see [`Placement`]): on a VM
//! whose disk interrupts all go to one vCPU, an fsync whose thread sleeps on another vCPU
//! took 4 to 6 times as long (measured on the dev VM: 1.7 to 2.5 ms instead of ~0.4 ms in
//! the same run), because its wake-up needs that interrupt's vCPU and then an interrupt
//! between vCPUs, each a halted vCPU the host must schedule again. So the thread moves, for
//! the fsync only, to the CPU where fsyncs complete fastest, when its own CPU is clearly
//! slower; it then usually stays there, and the next fsyncs need no move.
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
    /// Where the syncing thread sleeps during an fsync (`None`: switched off).
    placement: Option<Mutex<Placement>>,
}

/// CPUs whose fsync times are tracked (a thread on a higher one is never moved).
const PLACEMENT_CPUS_MAX: usize = 64;
/// One fsync in this many runs where its thread happens to be (no move), so the figure of
/// every CPU the thread visits stays fresh (a CPU that became busy stops attracting it).
const PLACEMENT_EXPLORE_EVERY: u64 = 32;
/// Fsyncs a CPU needs before its average counts.
const PLACEMENT_SAMPLES_MIN: u32 = 8;
/// A CPU's average no longer counts after this many fsyncs elsewhere (it may have changed).
const PLACEMENT_STALE_FSYNCS: u64 = 1024;
/// Environment variable that switches the fsync placement (see `log::sync`) off when set to
/// `off`, read when a log opens.
pub const PLACEMENT_ENV: &str = "LITHAIR_FSYNC_PLACEMENT";

/// Per CPU, how long fsyncs took whose thread woke up there (an average of recent ones).
/// Used by the one thread syncing at a time, so its lock is never contended.
struct Placement {
    /// Exponential average (1/8 weight) of fsync nanoseconds, per CPU.
    average_nanos: [u64; PLACEMENT_CPUS_MAX],
    samples: [u32; PLACEMENT_CPUS_MAX],
    /// The `fsyncs` count at each CPU's last sample.
    seen_at: [u64; PLACEMENT_CPUS_MAX],
    fsyncs: u64,
}

impl Placement {
    fn new() -> Self {
        Placement {
            average_nanos: [0; PLACEMENT_CPUS_MAX],
            samples: [0; PLACEMENT_CPUS_MAX],
            seen_at: [0; PLACEMENT_CPUS_MAX],
            fsyncs: 0,
        }
    }

    fn counts(&self, cpu: usize) -> bool {
        self.samples[cpu] >= PLACEMENT_SAMPLES_MIN
            && self.fsyncs - self.seen_at[cpu] <= PLACEMENT_STALE_FSYNCS
    }

    /// The CPU to sleep on for the next fsync of a thread on `current`, when another one is
    /// clearly faster (its average under two thirds of the current one's); `None`: stay.
    fn choose(&mut self, current: usize) -> Option<usize> {
        self.fsyncs += 1;
        if current >= PLACEMENT_CPUS_MAX
            || self.fsyncs % PLACEMENT_EXPLORE_EVERY == 0
            || !self.counts(current)
        {
            return None;
        }
        let best = (0..PLACEMENT_CPUS_MAX)
            .filter(|&cpu| self.counts(cpu))
            .min_by_key(|&cpu| self.average_nanos[cpu])?;
        let (here, there) = (self.average_nanos[current], self.average_nanos[best]);
        (best != current && there.saturating_mul(3) < here.saturating_mul(2)).then_some(best)
    }

    /// An fsync took `nanos` and its thread woke up on `cpu`.
    fn record(&mut self, cpu: usize, nanos: u64) {
        if cpu >= PLACEMENT_CPUS_MAX {
            return;
        }
        let average = &mut self.average_nanos[cpu];
        *average = if self.samples[cpu] == 0 {
            nanos
        } else {
            *average - *average / 8 + nanos / 8
        };
        self.samples[cpu] = self.samples[cpu].saturating_add(1);
        self.seen_at[cpu] = self.fsyncs;
    }
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
            placement: (std::env::var(PLACEMENT_ENV).as_deref() != Ok("off"))
                .then(|| Mutex::new(Placement::new())),
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

    /// Moves the calling thread to the CPU where fsyncs complete fastest, if its own is clearly
    /// slower (see [`Placement`]); returns the CPUs it was allowed before, to restore after
    /// the fsync.
    fn move_for_fsync(&self) -> Option<crate::sys::cpu::CpuMask> {
        let placement = self.placement.as_ref()?;
        let current = crate::sys::cpu::current()?;
        let target = placement
            .lock()
            .expect("placement poisoned")
            .choose(current)?;
        let allowed = crate::sys::cpu::allowed()?;
        if !allowed.allows(target) {
            return None;
        }
        crate::sys::cpu::restrict(&crate::sys::cpu::CpuMask::only(target)).then_some(allowed)
    }

    /// `fdatasync`; a failure stops the process (see the writer's module doc).
    fn sync_file(&self, file: &File, path: &std::path::Path) {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.take_sync_failure());
        let restore = self.move_for_fsync();
        let started = Instant::now();
        let result = if injected {
            Err(io::Error::from_raw_os_error(5))
        } else {
            file.sync_data()
        };
        let nanos = started.elapsed().as_nanos() as u64;
        if let Some(placement) = &self.placement {
            let woke_on = crate::sys::cpu::current();
            if let Some(mask) = restore {
                crate::sys::cpu::restrict(&mask);
            }
            if let Some(cpu) = woke_on {
                placement
                    .lock()
                    .expect("placement poisoned")
                    .record(cpu, nanos);
            }
        }
        if let Err(error) = result {
            fatal(&format!("fsync of {} failed: {error}", path.display()));
        }
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
    fn placement_moves_a_thread_only_to_a_clearly_faster_cpu_with_fresh_figures() {
        let mut placement = Placement::new();
        assert_eq!(placement.choose(0), None, "nothing known yet");
        for _ in 0..PLACEMENT_SAMPLES_MIN {
            placement.record(0, 2_000_000);
            placement.record(1, 400_000);
        }
        // Every turn but the exploring ones moves a thread on CPU 0 to CPU 1.
        let moves: Vec<Option<usize>> = (0..PLACEMENT_EXPLORE_EVERY)
            .map(|_| placement.choose(0))
            .collect();
        assert_eq!(moves.iter().filter(|m| m.is_none()).count(), 1);
        assert!(moves.iter().flatten().all(|&cpu| cpu == 1));
        assert_eq!(placement.choose(1), None, "already on the fastest");
        assert_eq!(placement.choose(PLACEMENT_CPUS_MAX), None, "untracked CPU");
        // Close figures: no move.
        for _ in 0..64 {
            placement.record(0, 450_000);
        }
        assert_eq!(placement.choose(0), None);
        // CPU 1's figure goes stale once fsyncs happen elsewhere for long enough.
        for _ in 0..64 {
            placement.record(0, 3_000_000);
        }
        for _ in 0..=PLACEMENT_STALE_FSYNCS {
            placement.fsyncs += 1;
        }
        placement.record(0, 3_000_000);
        assert_eq!(placement.choose(0), None, "CPU 1 was not seen for too long");
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
