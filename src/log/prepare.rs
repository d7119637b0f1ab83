//! The space preparer of a log: one background thread that zero-WRITES the space ahead of the
//! writer and fdatasyncs it, first in the active segment, then (once that is prepared to its
//! end) at the start of the next segment, held in the temp file [`PREPARED_FILE_NAME`] until
//! the writer's rollover renames it. Appends then overwrite blocks that are already written:
//! on ext4 their `fdatasync` commits no "unwritten to written" extent conversion (a journal
//! commit, about 100 µs on the dev disk; see docs/LOG_FORMAT.md).
//!
//! Owns: which range of the active segment is prepared (written and durable), the temp file,
//! and when to zero-fill (lazily: nothing before the writer writes, then as far ahead as the
//! writer wrote since open, up to [`PREPARE_AHEAD_BYTES_MAX`]).
//! Must not: write anything but zeros; write below the writer's frontier or the prepared end
//! (a zero write starts at or after both, and a writer about to write past the prepared end
//! first waits for a zero write in flight there); block the writer otherwise. A failed zero
//! write only stops the preparation (appends go on into preallocated space); a failed fsync of
//! the active segment stops the process, as the writer's would (it may have consumed the
//! error of the writer's own pages).

use super::fatal::AbortOnPanic;
use super::segment;
use super::writer::{fatal, Faults};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

/// Name of the temp file, in the log directory, holding the zero-written start of the next
/// segment (it never matches a segment name, so listing and recovery ignore it; `Log::open`
/// deletes a stale one).
pub const PREPARED_FILE_NAME: &str = "next-segment.tmp";
/// Largest zero write, in bytes, followed by its own `fdatasync` (one journal commit per
/// chunk, instead of one per append).
pub const ZERO_CHUNK_BYTES: u64 = 1024 * 1024;
/// How far ahead of the writer the preparer zero-fills at most, in bytes (at 20 MB/s of log,
/// 200 ms of appends: room for a slow zero write without the writer catching up).
pub const PREPARE_AHEAD_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// How far ahead it zero-fills at least once the writer wrote; in between, as far as the
/// writer wrote since open (a log that writes little zero-fills little).
pub const PREPARE_AHEAD_BYTES_MIN: u64 = 128 * 1024;
/// When the writer has overtaken the prepared range, the next zero write starts this many
/// bytes past it, so the writer's next appends do not wait for it.
pub const PREPARE_GAP_BYTES: u64 = 32 * 1024;
/// A segment is prepared past its rollover size by 1/16 of it, at most this many bytes: the
/// group that crosses the rollover size also lands in prepared space.
pub const SEGMENT_SLACK_BYTES_MAX: u64 = 256 * 1024;

/// How far a segment of rollover size `segment_bytes_max` is prepared.
pub(super) fn prepare_limit(segment_bytes_max: u64) -> u64 {
    segment_bytes_max + (segment_bytes_max / 16).min(SEGMENT_SLACK_BYTES_MAX)
}

/// Path of the temp file in `log_dir`.
pub fn prepared_path(log_dir: &Path) -> PathBuf {
    log_dir.join(PREPARED_FILE_NAME)
}

/// Deletes a temp file left by a crash (what it held is not known to be durable).
pub(super) fn remove_stale(log_dir: &Path) -> Result<(), super::Error> {
    super::segment::remove_if_present(&prepared_path(log_dir)).map(|_| ())
}

/// Which file a zero write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Active,
    Next,
}

/// A zero write: `[from, to)` of `file` (`None`: the temp file, to be created).
struct Job {
    target: Target,
    file: Option<Arc<File>>,
    generation: u64,
    from: u64,
    to: u64,
}

/// The temp file and how much of it is zero-written and durable.
struct Next {
    file: Arc<File>,
    zeroed: u64,
}

struct State {
    /// The active segment (changed only by the writer, with `generation`).
    active: Arc<File>,
    generation: u64,
    /// End of the writer's furthest write outside the prepared range: no zero write starts
    /// below it.
    frontier: u64,
    /// The zero write in flight.
    claim: Option<(Target, u64, u64)>,
    /// The writer changes files: no new zero write starts.
    held: bool,
    next: Option<Next>,
    /// A zero write failed: preparation stopped for good (appends go on without it).
    failed: bool,
    stop: bool,
}

/// What the writer and the preparer thread share.
struct Shared {
    state: Mutex<State>,
    /// The preparer waits here for work, a writer for a zero write in flight.
    changed: Condvar,
    /// Prepared range of the active segment, `[start, end)`: read by the writer without the
    /// lock (stored under it, `start` first), so a writer writing inside it never meets a zero
    /// write (those start at `end` or later).
    start: AtomicU64,
    end: AtomicU64,
    /// End of the writer's last write, and bytes it wrote since open (pacing only).
    written_end: AtomicU64,
    written_total: AtomicU64,
    /// The writer asked for more room since the preparer last planned.
    poked: AtomicBool,
    stats: Arc<Stats>,
    log_dir: PathBuf,
    /// How far a segment is prepared ([`prepare_limit`]).
    limit: u64,
    faults: Option<Arc<Faults>>,
}

/// Counters of the preparation, shared with the log handle (benchmarks, tests).
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Bytes of zeros written (and synced) ahead of the writer since open.
    pub(super) zero_bytes: AtomicU64,
    /// Group writes that went outside the prepared range since open.
    pub(super) unprepared_writes: AtomicU64,
}

/// The writer's handle on the preparer; dropping it stops the thread and deletes the temp file.
pub(super) struct Preparer {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Preparer {
    /// Starts preparing `active` (whose data ends at `file_bytes`) for segments of rollover
    /// size `segment_bytes_max`. Without a thread (it could not be spawned) nothing is ever
    /// prepared and every write takes the unprepared path.
    pub(super) fn start(
        log_dir: &Path,
        segment_bytes_max: u64,
        faults: Option<Arc<Faults>>,
        active: Arc<File>,
        file_bytes: u64,
    ) -> Preparer {
        let shared = Arc::new(Shared::new(
            log_dir,
            segment_bytes_max,
            faults,
            active,
            file_bytes,
        ));
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("lithair-log-prepare".to_string())
                .spawn(move || {
                    let _fatal = AbortOnPanic::new("log space preparer");
                    shared.run()
                })
        };
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(error) => {
                eprintln!("lithair log: cannot start the zero-fill thread ({error})");
                None
            }
        };
        Preparer { shared, thread }
    }

    /// Whether `[at, to)` of the active segment is prepared (the writer's fast path: two loads).
    pub(super) fn covers(&self, at: u64, to: u64) -> bool {
        let start = self.shared.start.load(Ordering::SeqCst);
        start <= at && to <= self.shared.end.load(Ordering::SeqCst)
    }

    /// The writer is about to write `[at, to)` outside the prepared range: waits for a zero
    /// write in flight over it, then moves the frontier so that none starts below `to`.
    pub(super) fn before_unprepared_write(&self, at: u64, to: u64) {
        let stats = &self.shared.stats;
        stats.unprepared_writes.fetch_add(1, Ordering::Relaxed);
        if self.thread.is_none() {
            return;
        }
        let mut state = self.shared.lock();
        while let Some((Target::Active, from, until)) = state.claim {
            if until <= at || to <= from {
                break;
            }
            state = self.shared.wait(state);
        }
        state.frontier = state.frontier.max(to);
    }

    /// The writer wrote `bytes` ending at `to`; wakes the preparer when the prepared room
    /// ahead shrank below half of what it aims for.
    pub(super) fn wrote(&self, to: u64, bytes: u64) {
        let shared = &self.shared;
        shared.written_end.store(to, Ordering::SeqCst);
        let total = shared.written_total.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let wanted = (to + ahead(total) / 2).min(shared.limit);
        if self.thread.is_some()
            && shared.end.load(Ordering::SeqCst) < wanted
            && !shared.poked.swap(true, Ordering::SeqCst)
        {
            // Under the lock: the preparer is waiting, or has not planned yet (it clears
            // `poked` before planning, so it sees this write).
            let _state = shared.lock();
            shared.changed.notify_all();
        }
    }

    /// Stops new zero writes into the active segment and waits for the one in flight (before
    /// the writer cuts, replaces or reopens it); [`Preparer::resume`] undoes it.
    pub(super) fn hold(&self) {
        let mut state = self.shared.lock();
        state.held = true;
        while matches!(state.claim, Some((Target::Active, _, _))) {
            state = self.shared.wait(state);
        }
    }

    /// Holds, and hands over the temp file with how much of it is zero-written, unless there
    /// is none or a zero write into it is in flight (the writer then creates a segment the
    /// old way rather than wait). The caller renames it, then resumes.
    pub(super) fn take_next(&self) -> Option<(Arc<File>, u64)> {
        self.hold();
        let mut state = self.shared.lock();
        if matches!(state.claim, Some((Target::Next, _, _))) {
            return None;
        }
        state.next.take().map(|next| (next.file, next.zeroed))
    }

    /// The writer goes on with `active`, whose data ends at `file_bytes` and whose first
    /// `prepared` bytes are zero-written and durable (0: none known).
    pub(super) fn resume(&self, active: Arc<File>, file_bytes: u64, prepared: u64) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.active = active;
        state.generation += 1;
        state.frontier = file_bytes;
        state.held = false;
        shared.written_end.store(file_bytes, Ordering::SeqCst);
        let end = if prepared > file_bytes { prepared } else { 0 };
        shared.start.store(0, Ordering::SeqCst);
        shared.end.store(end, Ordering::SeqCst);
        shared.changed.notify_all();
    }

    /// The counters (shared: they stay readable after the writer is gone).
    pub(super) fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on the preparer already printed its message.
            let _ = thread.join();
        }
        // Not needed for correctness (open deletes it), but a closed log leaves no temp file.
        let _ = remove_stale(&self.shared.log_dir);
    }
}

/// How far ahead to prepare once the writer wrote `total` bytes since open.
fn ahead(total: u64) -> u64 {
    total.clamp(PREPARE_AHEAD_BYTES_MIN, PREPARE_AHEAD_BYTES_MAX)
}

impl Shared {
    fn new(
        log_dir: &Path,
        segment_bytes_max: u64,
        faults: Option<Arc<Faults>>,
        active: Arc<File>,
        file_bytes: u64,
    ) -> Shared {
        Shared {
            state: Mutex::new(State {
                active,
                generation: 0,
                frontier: file_bytes,
                claim: None,
                held: false,
                next: None,
                failed: false,
                stop: false,
            }),
            changed: Condvar::new(),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            written_end: AtomicU64::new(file_bytes),
            written_total: AtomicU64::new(0),
            poked: AtomicBool::new(false),
            stats: Arc::default(),
            log_dir: log_dir.to_path_buf(),
            limit: prepare_limit(segment_bytes_max),
            faults,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("log preparer poisoned")
    }

    fn wait<'a>(&'a self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).expect("log preparer poisoned")
    }

    /// The preparer thread: plan a zero write under the lock, do it without, record it.
    fn run(&self) {
        let zeros = vec![0_u8; ZERO_CHUNK_BYTES as usize];
        let mut state = self.lock();
        while !state.stop {
            self.poked.store(false, Ordering::SeqCst);
            match self.plan(&mut state) {
                Some(job) => {
                    drop(state);
                    let outcome = self.perform(&job, &zeros);
                    state = self.lock();
                    self.record(&mut state, &job, outcome);
                }
                None => state = self.wait(state),
            }
        }
    }

    /// The next zero write, claimed (`None`: nothing to do until something changes).
    fn plan(&self, state: &mut State) -> Option<Job> {
        let total = self.written_total.load(Ordering::SeqCst);
        if state.held || state.failed || state.claim.is_some() || total == 0 {
            return None;
        }
        let written = self.written_end.load(Ordering::SeqCst).max(state.frontier);
        let end = self.end.load(Ordering::SeqCst);
        let wanted = (written + ahead(total)).min(self.limit);
        // Contiguous with the prepared range while the writer is inside it; past the writer
        // (and a gap) once it has overtaken it.
        let from = if end >= written {
            end
        } else {
            written + PREPARE_GAP_BYTES
        };
        let job = if from < wanted {
            Job {
                target: Target::Active,
                file: Some(Arc::clone(&state.active)),
                generation: state.generation,
                from,
                to: wanted.min(from + ZERO_CHUNK_BYTES),
            }
        } else if wanted == self.limit {
            // The active segment is prepared to its end: the start of the next one.
            let zeroed = state.next.as_ref().map_or(0, |next| next.zeroed);
            let wanted = ahead(total).min(self.limit);
            if zeroed >= wanted {
                return None;
            }
            Job {
                target: Target::Next,
                file: state.next.as_ref().map(|next| Arc::clone(&next.file)),
                generation: state.generation,
                from: zeroed,
                to: wanted.min(zeroed + ZERO_CHUNK_BYTES),
            }
        } else {
            return None;
        };
        state.claim = Some((job.target, job.from, job.to));
        Some(job)
    }

    /// Writes the job's zeros and fdatasyncs them; returns the temp file if it created it.
    fn perform(&self, job: &Job, zeros: &[u8]) -> io::Result<Option<Arc<File>>> {
        if self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.take_zero_fill_failure())
        {
            return Err(io::Error::from_raw_os_error(super::writer::ENOSPC));
        }
        let (file, created) = match &job.file {
            Some(file) => (Arc::clone(file), None),
            None => {
                let file = Arc::new(
                    OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .write(true)
                        .open(prepared_path(&self.log_dir))?,
                );
                (Arc::clone(&file), Some(file))
            }
        };
        let mut at = job.from;
        while at < job.to {
            let len = (job.to - at).min(zeros.len() as u64);
            file.write_all_at(&zeros[..len as usize], at)?;
            at += len;
        }
        if let Err(error) = file.sync_data() {
            if job.target == Target::Active {
                fatal(&format!("fsync of zero-filled log space failed: {error}"));
            }
            return Err(error);
        }
        Ok(created)
    }

    /// Publishes a finished zero write (unless the writer changed files meanwhile), or stops
    /// preparing after a failed one.
    fn record(&self, state: &mut State, job: &Job, outcome: io::Result<Option<Arc<File>>>) {
        state.claim = None;
        self.changed.notify_all();
        let created = match outcome {
            Ok(created) => created,
            Err(error) => {
                eprintln!(
                    "lithair log: cannot zero-fill log space ahead ({error}); appending into \
                     preallocated space instead"
                );
                state.failed = true;
                if job.target == Target::Next {
                    state.next = None;
                    let _ = remove_stale(&self.log_dir);
                }
                return;
            }
        };
        let zeroed = job.to - job.from;
        self.stats.zero_bytes.fetch_add(zeroed, Ordering::Relaxed);
        match job.target {
            Target::Active if state.generation == job.generation => {
                if job.from != self.end.load(Ordering::SeqCst) {
                    // A new range past the writer: `start` first (see `Shared::start`).
                    self.start.store(job.from, Ordering::SeqCst);
                }
                self.end.store(job.to, Ordering::SeqCst);
            }
            Target::Active => {}
            Target::Next => {
                if let Some(file) = created {
                    state.next = Some(Next { file, zeroed: 0 });
                }
                let next = state.next.as_mut().expect("the temp file exists");
                next.zeroed = job.to;
            }
        }
    }
}

/// Writes the header of a new segment into the zero-written temp file `file`, makes it
/// durable, and renames the file to the segment's name (durably): the segment then exists
/// with a valid header and a zero tail, or (after a crash before the rename is durable) not
/// at all. On failure nothing is left behind under either name.
pub(super) fn install_next(
    log_dir: &Path,
    file: &File,
    first_index: u64,
) -> Result<(), super::Error> {
    let temp = prepared_path(log_dir);
    let path = segment::segment_path(log_dir, first_index);
    let header = super::frame::encode_header(first_index);
    let result = file
        .write_all_at(&header, 0)
        .map_err(|e| super::Error::io(&temp, "write", e))
        .and_then(|()| {
            file.sync_data()
                .map_err(|e| super::Error::io(&temp, "fsync", e))
        })
        .and_then(|()| fs::rename(&temp, &path).map_err(|e| super::Error::io(&temp, "rename", e)));
    if let Err(error) = result {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    if let Err(error) = segment::sync_dir(log_dir) {
        let _ = fs::remove_file(&path);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lithair-prepare-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file_with(dir: &Path, bytes: &[u8]) -> Arc<File> {
        let path = dir.join("segment");
        fs::write(&path, bytes).unwrap();
        Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        )
    }

    /// One planning and zero write, as the thread does it; false when there was nothing to do.
    fn step(shared: &Shared, zeros: &[u8]) -> bool {
        let mut state = shared.lock();
        let Some(job) = shared.plan(&mut state) else {
            return false;
        };
        drop(state);
        let outcome = shared.perform(&job, zeros);
        shared.record(&mut shared.lock(), &job, outcome);
        true
    }

    fn preparer_without_thread(shared: Shared) -> Preparer {
        Preparer {
            shared: Arc::new(shared),
            thread: None,
        }
    }

    #[test]
    fn nothing_is_prepared_before_the_writer_writes_then_zeros_follow_it_never_over_data() {
        let dir = temp_dir("follow");
        let data = vec![7_u8; 1000];
        let file = file_with(&dir, &data);
        let shared = Shared::new(&dir, 64 << 20, None, Arc::clone(&file), 1000);
        let zeros = vec![0_u8; ZERO_CHUNK_BYTES as usize];
        assert!(!step(&shared, &zeros), "an idle log zero-fills nothing");
        let preparer = preparer_without_thread(shared);
        preparer.wrote(1000, 1000);
        // The writer is past the (empty) prepared range: the first zero write leaves a gap.
        assert!(step(&preparer.shared, &zeros));
        let start = 1000 + PREPARE_GAP_BYTES;
        assert!(preparer.covers(start, start + 10));
        assert!(!preparer.covers(1000, 1010), "the gap is not prepared");
        let end = preparer.shared.end.load(Ordering::SeqCst);
        assert_eq!(end, 1000 + PREPARE_AHEAD_BYTES_MIN);
        // The writer fills the gap outside the range, then writes inside it.
        preparer.before_unprepared_write(1000, start);
        preparer.wrote(start, start - 1000);
        preparer.wrote(start + 10, 10);
        while step(&preparer.shared, &zeros) {}
        let total = 1000 + (start - 1000) + 10;
        assert_eq!(
            preparer.shared.end.load(Ordering::SeqCst),
            start + 10 + ahead(total),
            "contiguous zero writes up to the target"
        );
        let bytes = fs::read(dir.join("segment")).unwrap();
        assert_eq!(
            &bytes[..1000],
            &data[..],
            "data below the frontier untouched"
        );
        assert!(bytes[1000..].iter().all(|&b| b == 0));
        assert!(preparer.stats().zero_bytes.load(Ordering::Relaxed) > 0);
        drop(preparer);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_small_segment_prepares_the_next_one_which_installs_with_a_header() {
        let dir = temp_dir("next");
        let file = file_with(&dir, &[1_u8; 32]);
        let shared = Shared::new(&dir, 4096, None, file, 32);
        let preparer = preparer_without_thread(shared);
        let zeros = vec![0_u8; ZERO_CHUNK_BYTES as usize];
        preparer.wrote(100, 68);
        while step(&preparer.shared, &zeros) {}
        // The writer is within a gap of the segment's end: only the next one is prepared.
        assert!(!preparer.covers(100, 200));
        let (next, zeroed) = preparer.take_next().expect("the next segment is prepared");
        assert_eq!(zeroed, prepare_limit(4096));
        assert!(
            !step(&preparer.shared, &zeros),
            "held while the writer installs it"
        );
        install_next(&dir, &next, 42).unwrap();
        assert!(!prepared_path(&dir).exists());
        assert_eq!(segment::list_segments(&dir).unwrap(), vec![42]);
        let bytes = fs::read(segment::segment_path(&dir, 42)).unwrap();
        assert_eq!(bytes.len() as u64, zeroed);
        let scan = segment::scan_segment(Path::new("x"), &bytes, 42, &mut |_| Ok(())).unwrap();
        assert_eq!(scan.next_index, 42, "a valid empty segment");
        preparer.resume(next, 32, zeroed);
        assert!(preparer.covers(32, zeroed));
        drop(preparer);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_zero_write_stops_preparing_and_leaves_no_temp_file() {
        let dir = temp_dir("fail");
        let faults = Arc::new(Faults::default());
        faults.fail_next_zero_fills(1);
        let file = file_with(&dir, &[1_u8; 32]);
        let shared = Shared::new(&dir, 64, Some(faults), file, 32);
        let preparer = preparer_without_thread(shared);
        let zeros = vec![0_u8; ZERO_CHUNK_BYTES as usize];
        preparer.wrote(100, 68);
        assert!(step(&preparer.shared, &zeros), "the failing write");
        assert!(!step(&preparer.shared, &zeros), "no more after a failure");
        assert!(!prepared_path(&dir).exists());
        assert_eq!(preparer.stats().zero_bytes.load(Ordering::Relaxed), 0);
        assert!(preparer.take_next().is_none());
        drop(preparer);
        fs::remove_dir_all(&dir).unwrap();
    }
}
