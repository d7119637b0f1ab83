//! The `Log` handle: opening with recovery, the directory lock, and the writer threads that
//! group-commit appends (one frame per term run, one `write`, one `fdatasync`).
//!
//! In `Durable` mode two writer threads share the work (`super::sync`): while one runs an
//! fsync, the other writes the next group, and the next fsync covers every group written
//! meanwhile. A lone append is written and synced by the same thread (no hand-off), and so is
//! an append made by a completion on a writer thread (see [`Log::append`]).
//! `Relaxed` mode has one writer thread. A third thread (`super::prepare`) zero-fills the space
//! ahead of the writer, so appends overwrite written blocks.
//!
//! Owns: the durability promise. `Durable` acknowledges only after an `fdatasync` that began
//! after the append's `write` returned; completions run in append order.
//! Must not: retry a failed fsync (the page cache state is unknown afterwards, so the process
//! stops), or leave a partial frame behind after a failed write.

use super::cut;
use super::extent;
use super::fatal::AbortOnPanic;
use super::frame::{self, EntryBatch, Frame, Status, HEADER_BYTES};
use super::inbox::{Inbox, Received};
use super::prepare::{self, Preparer};
use super::segment::{self, Ending};
use super::sync::{SyncPipe, Written};
use super::{AppendError, Error};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Largest single append accepted, in bytes of framed entries.
pub const APPEND_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The writer stops draining more appends into a group once it holds this many bytes.
pub const GROUP_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Default size at which the writer starts a new segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Segments are preallocated ahead of the writer by this much (never past
/// `segment_bytes_max`), the fallback under the zero-filled space (`super::prepare`): appends
/// there overwrite zeros in place, which makes each `fdatasync` cheaper than growing the file
/// (no size change, no block allocation) but not free: ext4 journals the conversion of the
/// written part of its "unwritten" extents (see docs/LOG_FORMAT.md).
pub const PREALLOCATE_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Name of the lock file in the data directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Name of the log's sub-directory in the data directory.
pub const LOG_DIR_NAME: &str = "log";
/// `ENOSPC` on Linux: the disk-full error number.
pub(super) const ENOSPC: i32 = 28;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the group's `fdatasync` returned (the default). No acknowledged entry is
    /// ever lost.
    Durable,
    /// Acknowledge after `write` returned and fsync at most every `interval`. A process crash
    /// loses nothing acknowledged (the data is in the page cache), but an OS crash or power loss
    /// may lose the entries acknowledged during the last `interval` (plus the fsync time).
    Relaxed {
        /// Longest time between a write and its fsync.
        interval: Duration,
    },
}

/// Test hooks that make the next writes or fsyncs fail, to exercise disk-full and fsync-error
/// paths without a full disk.
#[derive(Debug, Default)]
pub struct Faults {
    writes_to_fail: AtomicU32,
    syncs_to_fail: AtomicU32,
    zero_fills_to_fail: AtomicU32,
    shrinks_to_stop: AtomicU32,
    extent_records_to_fail: AtomicU32,
    cuts_to_stop: AtomicU32,
}

impl Faults {
    /// The next `count` group writes store half their bytes and then fail with ENOSPC.
    pub fn fail_next_writes(&self, count: u32) {
        self.writes_to_fail.store(count, Ordering::SeqCst);
    }

    /// The next `count` fsyncs fail with EIO (which stops the process).
    pub fn fail_next_syncs(&self, count: u32) {
        self.syncs_to_fail.store(count, Ordering::SeqCst);
    }

    /// The next `count` zero writes ahead of the writer fail with ENOSPC (which stops the
    /// zero-filling; appends go on into preallocated space).
    pub fn fail_next_zero_fills(&self, count: u32) {
        self.zero_fills_to_fail.store(count, Ordering::SeqCst);
    }

    /// The next `count` shrinks that remove the newest segment (`truncate_after` across
    /// segments, `reset`) stop with an error right after lowering the extent record, leaving
    /// the directory as a crash at that point would.
    pub fn stop_next_shrinks_after_lowering(&self, count: u32) {
        self.shrinks_to_stop.store(count, Ordering::SeqCst);
    }

    /// The next `count` extent records of a new segment (at rollover or reset) are not
    /// written, as after a crash between creating the segment and recording it.
    pub fn fail_next_extent_records(&self, count: u32) {
        self.extent_records_to_fail.store(count, Ordering::SeqCst);
    }

    /// The next `count` truncations that cut inside a frame stop once the cut is recorded,
    /// with the frame's head half overwritten and nothing else done (what a process killed in
    /// the middle of the cut, or a power loss that tore the head's write, leaves).
    pub fn stop_next_cuts_midway(&self, count: u32) {
        self.cuts_to_stop.store(count, Ordering::SeqCst);
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether this fsync must fail (consumes one injected failure).
    pub(super) fn take_sync_failure(&self) -> bool {
        Self::take(&self.syncs_to_fail)
    }

    /// Whether this zero write must fail (consumes one injected failure).
    pub(super) fn take_zero_fill_failure(&self) -> bool {
        Self::take(&self.zero_fills_to_fail)
    }
}

/// Settings of a log, checked once by [`Log::open`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Segment size after which the writer rolls over to a new file (at most
    /// [`SEGMENT_BYTES_LIMIT`](super::SEGMENT_BYTES_LIMIT)).
    pub segment_bytes_max: u64,
    /// Index of the first entry when the log is created empty.
    pub first_index: u64,
    /// Entries below this index are not handed to the replay visitor (a snapshot covers them).
    pub replay_from: u64,
    /// Fault injection for tests.
    pub faults: Option<Arc<Faults>>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Durable,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            first_index: 1,
            replay_from: 0,
            faults: None,
        }
    }
}

/// What recovery found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// First index held by the oldest segment.
    pub first_index: u64,
    /// Index the next append must start at.
    pub next_index: u64,
    /// Term of the last stored frame (0 if none).
    pub last_term: u64,
    /// Number of segment files.
    pub segments: usize,
    /// A torn tail that was cut off: `(file, offset, bytes removed)`.
    pub truncated: Option<(PathBuf, u64, u64)>,
}

/// Acknowledgement of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Index of the last entry of the append.
    pub last_index: u64,
    /// Number of appends that shared this write and fsync.
    pub group_appends: u32,
    /// Number of entries that shared this write and fsync.
    pub group_entries: u32,
}

/// Completion callback of an append; runs on one of the log's writer threads, so it must be
/// quick and must not wait for the log: in `Durable` mode the thread running it holds the
/// completion turn (the next fsync may run meanwhile, but no later append is acknowledged
/// until it returns), and a wait on the log from it would wait on itself (the log's blocking calls assert against it; see
/// [`on_writer_thread`]).
pub type Done = Box<dyn FnOnce(Result<Appended, AppendError>) + Send>;

thread_local! {
    /// Set on every log writer thread (of any log) for its whole life.
    static ON_WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// On a log writer thread: the address of its log's inbox (0 elsewhere), so an append
    /// made by a completion on that very thread is known as its own (see [`Log::append`]).
    static WRITER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether the calling thread is a log writer thread, where [`Done`] completions run. A
/// caller about to block on a log (or on something only a log completion releases) asserts
/// it is not, since the wait could never end.
pub fn on_writer_thread() -> bool {
    ON_WRITER_THREAD.with(|flag| flag.get())
}

/// Panics with a message naming `what` when called on a log writer thread.
fn assert_not_writer_thread(what: &str) {
    assert!(
        !on_writer_thread(),
        "{what} on a log writer thread (from an append's completion) would wait on itself"
    );
}

/// One append request.
pub struct Append {
    /// Raft term (0 on a single node).
    pub term: u64,
    /// Index of the first entry; must equal the log's next index when the writer reaches it.
    pub first_index: u64,
    /// The entries.
    pub entries: EntryBatch,
    /// Called once with the outcome.
    pub done: Done,
}

enum Request {
    Append(Append),
    TruncateAfter {
        index: u64,
        reply: mpsc::Sender<Result<(), Error>>,
    },
    DeleteBefore {
        index: u64,
        /// `None`: nobody waits ([`Log::delete_before_queued`]); a failure is reported here.
        reply: Option<mpsc::Sender<Result<usize, Error>>>,
    },
    Reset {
        first_index: u64,
        reply: mpsc::Sender<Result<(), Error>>,
    },
}

/// Counters shared between the writer thread and the handle.
#[derive(Debug, Default)]
struct Shared {
    next_index: AtomicU64,
    /// Shared with the sync pipe.
    fsyncs: Arc<AtomicU64>,
    /// Time spent inside `fdatasync` of appended data, in nanoseconds (shared likewise).
    fsync_nanos: Arc<AtomicU64>,
    groups: AtomicU64,
}

/// The append-only log of a data directory. Dropping it drains queued appends and stops the
/// writer thread; the directory lock is released when the writer exits.
pub struct Log {
    /// Where appends and control requests wait for a writer thread (closed on drop).
    inbox: Arc<Inbox<Request>>,
    writers: Vec<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    prepared: Arc<prepare::Stats>,
    log_dir: PathBuf,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

/// The exclusive locks of a data directory, held as long as this value lives.
#[derive(Debug)]
pub struct DataDirLock {
    /// `DATA/LOCK`, the documented lock file.
    _file: File,
    /// The directory itself: an operator who deletes `LOCK` (taking it for a stale lock file)
    /// would let a second process lock a new `LOCK` and write the same log beside the first;
    /// a directory in use cannot be deleted that casually, so its lock still stops the second.
    _dir: File,
}

/// Takes the exclusive locks on `data_dir` and `data_dir/LOCK` (`flock`, released when the
/// returned value is dropped or the process dies, so a crash never leaves a stale lock).
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, Error> {
    fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, "create directory", e))?;
    let dir = File::open(data_dir).map_err(|e| Error::io(data_dir, "open directory", e))?;
    match try_lock_patiently(&dir) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::Locked {
                path: data_dir.to_path_buf(),
            })
        }
        // Some file systems cannot lock a directory (NFS emulates `flock` with byte-range
        // locks, which need a file open for writing): `LOCK` alone guards it there, as before.
        Err(error) => eprintln!(
            "lithair log: cannot lock directory {} ({error}); relying on {LOCK_FILE_NAME} alone",
            data_dir.display()
        ),
    }
    let path = data_dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))?;
    take_lock(&file, &path)?;
    Ok(DataDirLock {
        _file: file,
        _dir: dir,
    })
}

/// How long taking the data-directory lock waits for a holder that is about to let go.
/// Descriptors are inherited by a child process from its `fork` until its `exec` closes them
/// (close-on-exec), and a lock lives as long as any copy: a process that closed an engine
/// while another thread of it spawned a child can find its own lock still held for that
/// moment. A second server holding it is refused after this wait.
const LOCK_PATIENCE_MS: u64 = 250;

/// `try_lock_exclusive`, tried again for up to [`LOCK_PATIENCE_MS`] while the lock is held.
fn try_lock_patiently(file: &File) -> std::io::Result<bool> {
    let deadline = Instant::now() + Duration::from_millis(LOCK_PATIENCE_MS);
    let mut pause = Duration::from_millis(1);
    loop {
        if crate::sys::fs::try_lock_exclusive(file)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(32));
    }
}

fn take_lock(file: &File, path: &Path) -> Result<(), Error> {
    match try_lock_patiently(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(error) => Err(Error::io(path, "lock", error)),
    }
}

impl Log {
    /// Opens (or creates) the log in `data_dir/log`, taking the data directory lock, recovering
    /// the tail, and calling `visit` on every frame holding entries at or after
    /// `options.replay_from`, in order (a frame may start before it: skip those entries).
    pub fn open(
        data_dir: &Path,
        options: LogOptions,
        visit: &mut dyn FnMut(&Frame<'_>) -> Result<(), Error>,
    ) -> Result<(Log, Recovery), Error> {
        let segment_bytes = HEADER_BYTES as u64..=segment::SEGMENT_BYTES_LIMIT;
        if !segment_bytes.contains(&options.segment_bytes_max) || options.first_index == 0 {
            let message = "segment_bytes_max must exceed the header and be at most \
                SEGMENT_BYTES_LIMIT (1 GiB), and first_index must be >= 1";
            return Err(Error::Invalid {
                message: message.to_string(),
            });
        }
        let lock = lock_data_dir(data_dir)?;
        let log_dir = data_dir.join(LOG_DIR_NAME);
        fs::create_dir_all(&log_dir).map_err(|e| Error::io(&log_dir, "create directory", e))?;
        prepare::remove_stale(&log_dir)?;
        extent::remove_stale(&log_dir)?;
        // Before any segment is read: a truncation a crash interrupted is finished first.
        cut::finish_pending(&log_dir)?;
        // Before anything is created: an empty directory whose record names a segment lost
        // every segment, and must not pass for a new log.
        let mut firsts = extent::check_extent(&log_dir)?;
        if firsts.is_empty() {
            let preallocate_bytes = preallocation_target(HEADER_BYTES as u64, &options);
            create_segment(&log_dir, options.first_index, preallocate_bytes)?;
            firsts.push(options.first_index);
        }
        let (recovered, file_bytes) = recover(&log_dir, &firsts, options.replay_from, visit)?;
        let last_first = *firsts.last().expect("at least one segment");
        // Missing (a directory of an older version, a reset or a rollover cut short) or
        // behind the newest segment: record it now, once per open, so the check holds from
        // here on.
        if extent::read_newest(&log_dir)?.is_none_or(|recorded| recorded < last_first) {
            extent::record_newest(&log_dir, last_first)?;
        }
        let path = segment::segment_path(&log_dir, last_first);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "open", e))?;
        // A segment cut back by recovery (or written before preallocation existed) gets its
        // room back, durably, before any append relies on it.
        let allocated = preallocate(&file, &path, preallocation_target(file_bytes, &options))?;
        let file = Arc::new(file);
        let preparer = Preparer::start(
            &log_dir,
            options.segment_bytes_max,
            options.faults.clone(),
            Arc::clone(&file),
            file_bytes,
        );
        let prepared = preparer.stats();
        let shared = Arc::new(Shared::default());
        shared
            .next_index
            .store(recovered.next_index, Ordering::SeqCst);
        let (pipe, workers) = match options.durability {
            Durability::Durable => {
                let pipe = Arc::new(SyncPipe::new(
                    options.faults.clone(),
                    Arc::clone(&shared.fsyncs),
                    Arc::clone(&shared.fsync_nanos),
                ));
                (Some(pipe), DURABLE_WORKERS)
            }
            Durability::Relaxed { .. } => (None, 1),
        };
        let writer = Writer {
            log_dir: log_dir.clone(),
            segments: firsts,
            file,
            pipe,
            file_bytes,
            allocated,
            preallocation_supported: true,
            next_index: recovered.next_index,
            options,
            shared: Arc::clone(&shared),
            buffer: Vec::new(),
            unsynced_since: None,
            turn: 0,
            turn_waiting: false,
            preparer,
            _lock: lock,
        };
        let inbox = Arc::new(Inbox::new());
        let worker = Arc::new(Worker {
            inbox: Arc::clone(&inbox),
            pipe: writer.pipe.clone(),
            writer: Mutex::new(writer),
            turn_changed: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(workers);
        for number in 0..workers {
            let worker = Arc::clone(&worker);
            let spawned = thread::Builder::new()
                .name(format!("lithair-log-writer-{number}"))
                .spawn(move || {
                    let _fatal = AbortOnPanic::new("log writer");
                    ON_WRITER_THREAD.with(|flag| flag.set(true));
                    WRITER_OF.with(|inbox| inbox.set(inbox_address(&worker.inbox)));
                    worker.run()
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    // The ones already running stop once the inbox is closed.
                    inbox.close();
                    return Err(Error::io(&log_dir, "spawn writer thread", e));
                }
            }
        }
        let log = Log {
            inbox,
            writers: handles,
            shared,
            prepared,
            log_dir,
        };
        Ok((log, recovered))
    }

    /// Queues an append. The outcome arrives through `append.done`; outcomes arrive in the
    /// order of the appends (a refused one included).
    ///
    /// Made from a completion on one of this log's own writer threads (a single-node engine
    /// sequencing the next batch there), the append wakes no other writer thread: this one
    /// returns to the inbox once its completions ran, before it could park, and writes the
    /// append itself (a wake would cost a thread hop and find this thread's turn still
    /// running).
    pub fn append(&self, append: Append) {
        let request = Request::Append(append);
        let own = WRITER_OF.with(|inbox| inbox.get()) == inbox_address(&self.inbox);
        let pushed = match own {
            true => self.inbox.push_from_consumer(request),
            false => self.inbox.push(request),
        };
        if let Err(Request::Append(append)) = pushed {
            (append.done)(Err(AppendError::Closed));
        }
    }

    /// Appends and waits for the outcome (convenience for tools and tests).
    pub fn append_wait(
        &self,
        term: u64,
        first_index: u64,
        entries: EntryBatch,
    ) -> Result<Appended, AppendError> {
        assert_not_writer_thread("Log::append_wait");
        let (reply, outcome) = mpsc::channel();
        let done: Done = Box::new(move |result| {
            let _ = reply.send(result);
        });
        self.append(Append {
            term,
            first_index,
            entries,
            done,
        });
        outcome.recv().unwrap_or(Err(AppendError::Closed))
    }

    /// Removes every entry after `index` (entries not committed, for Raft). Waits until the
    /// truncation is durable.
    pub fn truncate_after(&self, index: u64) -> Result<(), Error> {
        let (reply, outcome) = mpsc::channel();
        self.request(Request::TruncateAfter { index, reply })?;
        outcome.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// Deletes segments whose entries all lie below `index` (a durable snapshot covers them);
    /// the active segment is never deleted. Returns how many files were removed.
    pub fn delete_before(&self, index: u64) -> Result<usize, Error> {
        let (reply, outcome) = mpsc::channel();
        let reply = Some(reply);
        self.request(Request::DeleteBefore { index, reply })?;
        outcome.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// As [`Log::delete_before`], without waiting: the deletion is queued behind the appends
    /// already queued and the call returns at once (the Raft thread compacts this way: a
    /// deletion waits for the writer, and unlinking a large segment takes a while, during
    /// which heartbeats would wait). A failure is reported on stderr: the segments stay,
    /// which wastes disk but loses nothing (a snapshot covers them; the next compaction
    /// tries again).
    ///
    /// # Errors
    /// The log is closed.
    pub fn delete_before_queued(&self, index: u64) -> Result<(), Error> {
        self.inbox
            .push(Request::DeleteBefore { index, reply: None })
            .map_err(|_| closed())
    }

    /// Deletes every segment and starts an empty log whose next entry is `first_index` (a
    /// Raft follower that installed a snapshot its log does not reach). Waits until durable.
    /// A crash in the middle leaves a contiguous suffix of the old segments or an empty log.
    pub fn reset(&self, first_index: u64) -> Result<(), Error> {
        if first_index == 0 {
            let message = "a log cannot start at index 0".to_string();
            return Err(Error::Invalid { message });
        }
        let (reply, outcome) = mpsc::channel();
        self.request(Request::Reset { first_index, reply })?;
        outcome.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// Sends a control request whose caller then waits for the reply.
    fn request(&self, request: Request) -> Result<(), Error> {
        assert_not_writer_thread("a blocking log request (truncate, delete, reset)");
        self.inbox.push(request).map_err(|_| closed())
    }

    /// Index the next append must start at, as seen by the writer after its last group.
    pub fn next_index(&self) -> u64 {
        self.shared.next_index.load(Ordering::SeqCst)
    }

    /// Number of fsyncs of appended data issued since open.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Time spent in `fdatasync` of appended data since open (benchmarks: how busy the disk
    /// was).
    pub fn fsync_time(&self) -> Duration {
        Duration::from_nanos(self.shared.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Bytes of zeros written and synced ahead of the writer since open (see
    /// docs/LOG_FORMAT.md: appends overwrite them instead of preallocated space).
    pub fn zero_filled_bytes(&self) -> u64 {
        self.prepared.zero_bytes.load(Ordering::Relaxed)
    }

    /// Group writes since open that went past the zero-filled space (into preallocated or new
    /// space, whose `fdatasync` costs a journal commit more).
    pub fn unprepared_writes(&self) -> u64 {
        self.prepared.unprepared_writes.load(Ordering::Relaxed)
    }

    /// Number of groups written since open.
    pub fn group_count(&self) -> u64 {
        self.shared.groups.load(Ordering::Relaxed)
    }

    /// The `log` directory.
    pub fn dir(&self) -> &Path {
        &self.log_dir
    }

    /// Visits stored frames holding entries at or after `from_index`, oldest first; `visit`
    /// returns `false` to stop. See [`super::read_range`].
    pub fn read_range(
        &self,
        from_index: u64,
        visit: &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        super::reader::read_range(&self.log_dir, from_index, visit)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.inbox.close();
        let writers = std::mem::take(&mut self.writers);
        let current = thread::current().id();
        if writers.iter().any(|handle| handle.thread().id() == current) {
            // The last owner let go inside a completion, on one of our own writer threads:
            // joining would wait on ourselves. Let a helper join them; the threads stop (and
            // release the directory lock) once they drained what is queued.
            let spawned = thread::Builder::new()
                .name("lithair-log-close".into())
                .spawn(move || join_writers(writers));
            if let Err(error) = spawned {
                eprintln!("lithair log: cannot start a thread to close the log: {error}");
            }
            return;
        }
        join_writers(writers);
    }
}

/// The identity of a log's inbox (its address: stable while the log lives, and never 0).
fn inbox_address(inbox: &Arc<Inbox<Request>>) -> usize {
    Arc::as_ptr(inbox) as usize
}

/// Joins the writer threads (never the calling thread itself).
fn join_writers(writers: Vec<thread::JoinHandle<()>>) {
    let current = thread::current().id();
    for handle in writers {
        if handle.thread().id() != current {
            // A panic on a writer thread already printed its message; nothing to add here.
            let _ = handle.join();
        }
    }
}

fn closed() -> Error {
    Error::Invalid {
        message: "the log is closed".to_string(),
    }
}

/// Creates an empty segment (header, then `preallocate_bytes` of zeros where the file system
/// supports it), durably: write, preallocate, fsync file, fsync directory. Appends then write
/// at explicit offsets (`write_all_at`), so the zeros are overwritten in place.
fn create_segment(log_dir: &Path, first_index: u64, preallocate_bytes: u64) -> Result<File, Error> {
    let path = segment::segment_path(log_dir, first_index);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "create", e))?;
    file.write_all(&frame::encode_header(first_index))
        .map_err(|e| Error::io(&path, "write", e))?;
    preallocate(&file, &path, preallocate_bytes)?;
    file.sync_all().map_err(|e| Error::io(&path, "fsync", e))?;
    segment::sync_dir(log_dir)?;
    Ok(file)
}

/// How far to preallocate a segment whose data ends at `used` bytes: one chunk ahead, but not
/// past the rollover size (a finished segment then carries no zero tail).
fn preallocation_target(used: u64, options: &LogOptions) -> u64 {
    (used + PREALLOCATE_CHUNK_BYTES).min(options.segment_bytes_max.max(used))
}

/// Extends `file` with preallocated zeros up to `bytes` (never shrinks it) and makes the new
/// size durable; returns the file's length. Without preallocation support, or when it fails
/// (e.g. the disk is nearly full), the log simply grows with each append.
fn preallocate(file: &File, path: &Path, bytes: u64) -> Result<u64, Error> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(path, "stat", e))?
        .len();
    if len >= bytes {
        return Ok(len);
    }
    match crate::sys::prealloc::preallocate(file, bytes) {
        Ok(true) => {
            file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
            Ok(bytes)
        }
        Ok(false) => Ok(len),
        Err(error) => {
            eprintln!(
                "lithair log: cannot preallocate {} ({error}); appending without",
                path.display()
            );
            Ok(len)
        }
    }
}

/// Scans every segment, truncating a torn tail of the last one.
///
/// Also returns where the last segment's valid frames end (the next append's offset): before a
/// preallocated zero tail, or where a torn tail was cut.
fn recover(
    log_dir: &Path,
    firsts: &[u64],
    replay_from: u64,
    visit: &mut dyn FnMut(&Frame<'_>) -> Result<(), Error>,
) -> Result<(Recovery, u64), Error> {
    let mut buffer = Vec::new();
    let mut valid_end = 0;
    let mut next_index = firsts[0];
    let mut last_term = 0;
    let mut truncated = None;
    for (position, &first) in firsts.iter().enumerate() {
        let path = segment::segment_path(log_dir, first);
        let is_last = position + 1 == firsts.len();
        if let Some(reason) = segment::discontinuity(first, next_index) {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason,
            });
        }
        // Segments wholly below `replay_from` are covered by a snapshot: skip reading them.
        if !is_last && firsts[position + 1] <= replay_from {
            next_index = firsts[position + 1];
            continue;
        }
        segment::read_segment(&path, &mut buffer)?;
        let mut visit_from = |frame: &Frame<'_>| {
            if frame.last_index() >= replay_from && frame.count > 0 {
                visit(frame)?;
            }
            Ok(())
        };
        let scan = segment::scan_segment(&path, &buffer, first, &mut visit_from)?;
        next_index = scan.next_index;
        valid_end = scan.valid_end.max(HEADER_BYTES as u64);
        last_term = scan.last_term.unwrap_or(last_term);
        if let Ending::Torn { offset, reason } = scan.ending {
            if !is_last {
                let reason = format!("{reason} in a segment that is not the last");
                return Err(Error::Corrupt {
                    path,
                    offset,
                    reason,
                });
            }
            let cut = cut_torn_tail(&path, offset, buffer.len() as u64, first, reason)?;
            truncated = Some(cut);
        }
    }
    let recovery = Recovery {
        first_index: firsts[0],
        next_index,
        last_term,
        segments: firsts.len(),
        truncated,
    };
    Ok((recovery, valid_end))
}

/// Cuts a torn tail at `offset` (rewriting the header if even that was torn) and reports it.
fn cut_torn_tail(
    path: &Path,
    offset: u64,
    file_bytes: u64,
    first: u64,
    reason: &str,
) -> Result<(PathBuf, u64, u64), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    file.set_len(offset)
        .map_err(|e| Error::io(path, "truncate", e))?;
    if offset == 0 {
        let mut file = file;
        file.write_all(&frame::encode_header(first))
            .map_err(|e| Error::io(path, "write", e))?;
        file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    } else {
        file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    }
    eprintln!(
        "lithair log: torn tail in {} at offset {offset} ({reason}): truncated {} bytes",
        path.display(),
        file_bytes - offset
    );
    Ok((path.to_path_buf(), offset, file_bytes - offset))
}

/// State owned by the writer thread.
struct Writer {
    log_dir: PathBuf,
    /// First indexes of the segments on disk, ascending; the last one is `file`.
    segments: Vec<u64>,
    /// Shared with the sync pipe, whose syncing thread fsyncs the groups written to it.
    file: Arc<File>,
    /// `Durable` mode: where written groups wait for their fsync (every group goes through
    /// it, so completions keep the write order).
    pipe: Option<Arc<SyncPipe>>,
    /// Length of `file` up to the end of the last good frame.
    file_bytes: u64,
    /// Length of `file` including its preallocated zero tail (>= `file_bytes`).
    allocated: u64,
    /// False once the file system said it cannot preallocate: stop asking on every write.
    preallocation_supported: bool,
    next_index: u64,
    options: LogOptions,
    shared: Arc<Shared>,
    buffer: Vec<u8>,
    /// Time of the first write not yet fsynced (Relaxed mode only).
    unsynced_since: Option<Instant>,
    /// Number of the next inbox take whose group may be written (see `Worker`).
    turn: u64,
    /// A writer thread waits for `turn` to advance.
    turn_waiting: bool,
    /// Zero-fills ahead of `file_bytes`; dropped (its thread joined) before the lock goes.
    preparer: Preparer,
    _lock: DataDirLock,
}

/// Writer threads of a `Durable` log: while one runs an fsync, the other writes the next
/// group. A `Relaxed` log has one (its fsyncs are off the acknowledgement path).
const DURABLE_WORKERS: usize = 2;

/// What the writer threads share. Lock order: `inbox` (held only to take requests), then
/// `writer`, then the sync pipe's lock. Groups are written in the order they were taken: each
/// take is numbered by the inbox, and a thread writes its group only on its turn
/// (`Writer::turn`), so a thread that took later never writes first.
struct Worker {
    inbox: Arc<Inbox<Request>>,
    writer: Mutex<Writer>,
    /// Signalled when `Writer::turn` advances and a thread waits for it.
    turn_changed: Condvar,
    /// The writer's pipe, reachable without its lock (`None`: `Relaxed` mode).
    pipe: Option<Arc<SyncPipe>>,
}

/// Wakes the writer threads waiting for their turn when the thread holding the turn panics:
/// its turn never ends, and they would wait forever (and `Log::drop` with them); woken, they
/// find the writer lock poisoned and stop loudly.
struct WakeTurnWaitersOnPanic<'a>(&'a Condvar);

impl Drop for WakeTurnWaitersOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.notify_all();
        }
    }
}

/// Moves the next group out of the queue: appends from the front until `GROUP_BYTES_MAX`,
/// stopping at a control request, which is taken too (and returned) when it comes first or
/// right after the appends.
fn take_group(queue: &mut VecDeque<Request>, group: &mut Vec<Append>) -> Option<Request> {
    let mut group_bytes = 0;
    while group_bytes < GROUP_BYTES_MAX {
        match queue.pop_front() {
            Some(Request::Append(append)) => {
                group_bytes += append.entries.byte_len();
                group.push(append);
            }
            Some(control) => return Some(control),
            None => break,
        }
    }
    None
}

impl Worker {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().expect("log writer poisoned")
    }

    /// The writer, once every group taken before take number `ticket` has been written.
    fn writer_on_turn(&self, ticket: u64) -> MutexGuard<'_, Writer> {
        let mut writer = self.writer();
        while writer.turn != ticket {
            assert!(writer.turn < ticket, "take {ticket} written twice");
            writer.turn_waiting = true;
            writer = self.turn_changed.wait(writer).expect("log writer poisoned");
        }
        writer
    }

    /// Ends the turn of the group just written: the next take may write.
    fn end_turn(&self, mut writer: MutexGuard<'_, Writer>) {
        writer.turn += 1;
        if std::mem::take(&mut writer.turn_waiting) {
            drop(writer);
            self.turn_changed.notify_all();
        }
    }

    /// One writer thread: take every pending append, write them as one group, then run the
    /// fsync unless the other thread is running one (which then covers this group too, or
    /// its next one does). So a lone append is written and synced by one thread with no
    /// hand-off, and the other thread stays parked: the inbox wakes it only when an append
    /// arrives while this one is busy (under load a write then overlaps the running fsync).
    fn run(&self) {
        let mut group: Vec<Append> = Vec::new();
        loop {
            // Relaxed mode has this one thread: the writer is free to look at.
            let timeout = match &self.pipe {
                Some(_) => None,
                None => self.writer().relaxed_wait(),
            };
            let received = self
                .inbox
                .recv_with(timeout, |queue| take_group(queue, &mut group));
            let (control, ticket) = match received {
                Received::Taken(control, ticket) => (control, ticket),
                Received::TimedOut => {
                    self.writer().sync();
                    continue;
                }
                Received::Closed => break,
            };
            // Declared first, dropped last: after a panic the writer lock is released (poisoned)
            // before the other thread, waiting for this turn, is woken to find it so.
            let _wake_on_panic = WakeTurnWaitersOnPanic(&self.turn_changed);
            let mut writer = self.writer_on_turn(ticket);
            writer.commit_group(&mut group);
            if let Some(request) = control {
                writer.control(request);
            }
            self.end_turn(writer);
            if let Some(pipe) = &self.pipe {
                pipe.sync_if_free();
            }
        }
        let mut writer = self.writer();
        // Durable mode: acknowledge what is written before the last thread releases the lock.
        writer.drain();
        // Relaxed mode: make the last writes durable likewise.
        if writer.unsynced_since.is_some() {
            writer.sync();
        }
    }
}

impl Writer {
    /// Syncs and acknowledges every written group, or waits for the thread doing it (before
    /// the file changes under it: rollover, truncation, reset, deletion).
    fn drain(&self) {
        if let Some(pipe) = &self.pipe {
            pipe.drain();
        }
    }

    /// Completes `acks` in order after every earlier group: through the sync pipe in
    /// `Durable` mode (after an fsync of `file` that begins after this call, when `written`),
    /// at once otherwise.
    fn complete(&self, acks: Vec<(Done, Result<Appended, AppendError>)>, written: bool) {
        match &self.pipe {
            Some(pipe) => {
                let path = segment::segment_path(&self.log_dir, self.active_first());
                let file = written.then(|| (Arc::clone(&self.file), path));
                pipe.push(Written { file, acks });
            }
            None => {
                for (done, outcome) in acks {
                    done(outcome);
                }
            }
        }
    }

    /// How long the Relaxed-mode writer may wait for a request before its fsync is due
    /// (`None`: nothing unsynced, or Durable mode: wait as long as it takes).
    fn relaxed_wait(&self) -> Option<Duration> {
        let Durability::Relaxed { interval } = self.options.durability else {
            return None;
        };
        let since = self.unsynced_since?;
        Some(interval.saturating_sub(since.elapsed()))
    }

    fn control(&mut self, request: Request) {
        self.drain();
        if matches!(request, Request::DeleteBefore { .. }) {
            // The active segment is never deleted: nothing changes under the preparer.
        } else {
            self.preparer.hold();
        }
        match request {
            Request::Append(_) => unreachable!("appends are grouped"),
            Request::TruncateAfter { index, reply } => {
                let _ = reply.send(self.truncate_after(index));
                self.preparer
                    .resume(Arc::clone(&self.file), self.file_bytes, 0);
            }
            Request::DeleteBefore { index, reply } => {
                let deleted = self.delete_before(index);
                match reply {
                    Some(reply) => drop(reply.send(deleted)),
                    None => {
                        if let Err(error) = deleted {
                            eprintln!(
                                "lithair log: deleting the segments before index {index} \
                                 failed: {error}; they stay until the next compaction"
                            );
                        }
                    }
                }
            }
            Request::Reset { first_index, reply } => {
                let _ = reply.send(self.reset(first_index));
                self.preparer
                    .resume(Arc::clone(&self.file), self.file_bytes, 0);
            }
        }
    }

    /// Writes the appends of `group` with one `write` and acknowledges them after one
    /// `fdatasync` (through the sync pipe in `Durable` mode). An append that is too large or does
    /// not continue the log is refused without writing; completions keep the append order, so
    /// the appends before a refused one are written (and completed) before it is refused.
    fn commit_group(&mut self, group: &mut Vec<Append>) {
        let mut run: Vec<Append> = Vec::with_capacity(group.len());
        let mut expected = self.next_index;
        for append in group.drain(..) {
            let bytes = append.entries.byte_len();
            let refusal = if bytes > APPEND_BYTES_MAX {
                Some(AppendError::TooLarge { bytes })
            } else if append.first_index != expected {
                let got = append.first_index;
                Some(AppendError::NotContiguous { expected, got })
            } else {
                None
            };
            match refusal {
                None => {
                    expected += u64::from(append.entries.len());
                    run.push(append);
                }
                Some(error) => {
                    self.write_run(&mut run);
                    self.complete(vec![(append.done, Err(error))], false);
                    expected = self.next_index;
                }
            }
        }
        self.write_run(&mut run);
    }

    /// Writes `run` (appends that continue the log, in order) with one `write`, then
    /// acknowledges them after an fsync, or fails them all if the write fails.
    fn write_run(&mut self, run: &mut Vec<Append>) {
        if run.is_empty() {
            return;
        }
        let accepted = std::mem::take(run);
        let start_index = self.next_index;
        let end_index = start_index
            + accepted
                .iter()
                .map(|a| u64::from(a.entries.len()))
                .sum::<u64>();
        self.encode_group(&accepted, start_index);
        if self.buffer.is_empty() {
            // Only empty appends (e.g. every command was rejected): nothing to write or sync,
            // but their completions still wait for every earlier group to be durable.
            self.complete(acknowledgements(accepted), false);
            return;
        }
        if let Err(error) = self.write_buffer() {
            let failed = accepted
                .into_iter()
                .map(|append| (append.done, Err(error.clone())))
                .collect();
            self.complete(failed, false);
            return;
        }
        self.next_index = end_index;
        self.shared.next_index.store(end_index, Ordering::SeqCst);
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        match self.options.durability {
            // Synced through the pipe (`complete` below hands it over).
            Durability::Durable => {}
            Durability::Relaxed { .. } => {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        self.complete(acknowledgements(accepted), true);
        if self.file_bytes >= self.options.segment_bytes_max {
            self.roll_over();
        }
    }

    /// Encodes the accepted appends as frames into the reused buffer: one frame per run of
    /// equal terms.
    fn encode_group(&mut self, accepted: &[Append], start_index: u64) {
        self.buffer.clear();
        let mut run_start = 0;
        let mut run_index = start_index;
        for end in 1..=accepted.len() {
            if end < accepted.len() && accepted[end].term == accepted[run_start].term {
                continue;
            }
            let parts: Vec<&EntryBatch> = accepted[run_start..end]
                .iter()
                .map(|a| &a.entries)
                .collect();
            let count: u64 = parts.iter().map(|part| u64::from(part.len())).sum();
            if count > 0 {
                frame::encode_frame(
                    &mut self.buffer,
                    run_index,
                    accepted[run_start].term,
                    &parts,
                );
            }
            run_index += count;
            run_start = end;
        }
    }

    /// One `write` of the buffer. On failure the file is cut back to the last good frame so the
    /// log stays valid; if even that fails, the process stops (the file state is unknown).
    fn write_buffer(&mut self) -> Result<(), AppendError> {
        let injected = self
            .options
            .faults
            .as_ref()
            .is_some_and(|f| Faults::take(&f.writes_to_fail));
        let at = self.file_bytes;
        let len = self.buffer.len() as u64;
        if !self.preparer.covers(at, at + len) {
            self.preparer.before_unprepared_write(at, at + len);
            self.extend_preallocation(at + len);
        }
        let result = if injected {
            let half = self.buffer.len() / 2;
            self.file
                .write_all_at(&self.buffer[..half], at)
                .and_then(|()| Err(io::Error::from_raw_os_error(ENOSPC)))
        } else {
            self.file.write_all_at(&self.buffer, at)
        };
        match result {
            Ok(()) => {
                self.file_bytes += len;
                self.preparer.wrote(self.file_bytes, len);
                Ok(())
            }
            Err(error) => {
                // Cutting back also drops the rest of the preallocation and of the zero-filled
                // space: later appends grow the file until the preparer catches up again.
                self.allocated = self.file_bytes;
                self.preparer.hold();
                if let Err(cut) = self.file.set_len(self.file_bytes) {
                    fatal(&format!(
                        "write failed ({error}) and truncating it back failed ({cut})"
                    ));
                }
                self.preparer
                    .resume(Arc::clone(&self.file), self.file_bytes, 0);
                if error.raw_os_error() == Some(ENOSPC) {
                    Err(AppendError::DiskFull)
                } else {
                    Err(AppendError::Io {
                        message: error.to_string(),
                    })
                }
            }
        }
    }

    /// `fdatasync` the active segment. A failure stops the process: after a failed fsync the
    /// kernel may have dropped the dirty pages, so retrying could report durability falsely.
    fn sync(&mut self) {
        let injected = self
            .options
            .faults
            .as_ref()
            .is_some_and(|f| Faults::take(&f.syncs_to_fail));
        let started = Instant::now();
        let result = if injected {
            Err(io::Error::from_raw_os_error(5))
        } else {
            self.file.sync_data()
        };
        if let Err(error) = result {
            let path = segment::segment_path(&self.log_dir, self.active_first());
            fatal(&format!("fsync of {} failed: {error}", path.display()));
        }
        let nanos = started.elapsed().as_nanos() as u64;
        self.shared.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.unsynced_since = None;
    }

    /// Preallocates the next chunk when a write would run past the preallocated space. The
    /// new size needs no fsync of its own: the group's `fdatasync` commits it along with the
    /// data (once per chunk instead of with every append).
    fn extend_preallocation(&mut self, needed: u64) {
        if needed <= self.allocated || !self.preallocation_supported {
            return;
        }
        let target = preallocation_target(needed, &self.options).max(needed);
        match crate::sys::prealloc::preallocate(&self.file, target) {
            Ok(true) => self.allocated = target,
            Ok(false) => self.preallocation_supported = false,
            // Failing (e.g. a nearly full disk): append without; the write reports a real
            // disk-full, and the next chunk is tried again later.
            Err(_) => self.allocated = needed,
        }
    }

    fn active_first(&self) -> u64 {
        *self.segments.last().expect("at least one segment")
    }

    fn roll_over(&mut self) {
        // Every frame of this segment is durable before the next segment exists: recovery
        // reads a torn frame in a segment that is not the last as corruption.
        self.drain();
        if self.unsynced_since.is_some() {
            self.sync();
        }
        // The zero-written start of the next segment, if the preparer has it ready.
        let (mut installed, mut prepared) = (false, 0);
        if let Some((file, zeroed)) = self.preparer.take_next() {
            match prepare::install_next(&self.log_dir, &file, self.next_index) {
                Ok(()) => {
                    self.file = file;
                    self.file_bytes = HEADER_BYTES as u64;
                    self.allocated = zeroed.max(self.file_bytes);
                    self.segments.push(self.next_index);
                    (installed, prepared) = (true, zeroed);
                }
                Err(error) => eprintln!("lithair log: cannot use the prepared segment: {error}"),
            }
        }
        if !installed {
            self.create_next_segment();
        }
        if self.active_first() == self.next_index {
            self.record_active_segment();
        }
        self.preparer
            .resume(Arc::clone(&self.file), self.file_bytes, prepared);
    }

    /// Records the active segment, just created and durable, as the log's newest (once per
    /// segment, never per append). Failing leaves the record low, which only weakens the check
    /// until the next open records it: the log goes on.
    fn record_active_segment(&self) {
        let injected = self
            .options
            .faults
            .as_ref()
            .is_some_and(|f| Faults::take(&f.extent_records_to_fail));
        if injected {
            return;
        }
        if let Err(error) = extent::record_newest(&self.log_dir, self.active_first()) {
            eprintln!("lithair log: cannot record the newest segment: {error}");
        }
    }

    /// Test hook: whether a shrink stops right after lowering the extent record.
    fn stop_after_lowering(&self) -> Result<(), Error> {
        let injected = self
            .options
            .faults
            .as_ref()
            .is_some_and(|f| Faults::take(&f.shrinks_to_stop));
        match injected {
            true => Err(Error::Invalid {
                message: "injected: stopped after lowering the extent record".to_string(),
            }),
            false => Ok(()),
        }
    }

    /// Starts the next segment the plain way (create, preallocate, fsync file and directory).
    fn create_next_segment(&mut self) {
        let preallocate_bytes = preallocation_target(HEADER_BYTES as u64, &self.options);
        match create_segment(&self.log_dir, self.next_index, preallocate_bytes) {
            Ok(file) => {
                self.file = Arc::new(file);
                self.file_bytes = HEADER_BYTES as u64;
                self.allocated = preallocate_bytes.max(self.file_bytes);
                self.segments.push(self.next_index);
            }
            // Keep appending to the current segment; rollover is retried after the next group.
            // A half-created file must not stay behind: recovery would read it as a later
            // segment overlapping the current one.
            Err(error) => {
                eprintln!("lithair log: cannot start a new segment: {error}");
                let _ = fs::remove_file(segment::segment_path(&self.log_dir, self.next_index));
            }
        }
    }
}

/// The successful outcomes of the appends of one written group (or of empty appends).
fn acknowledgements(accepted: Vec<Append>) -> Vec<(Done, Result<Appended, AppendError>)> {
    let group_appends = accepted.len() as u32;
    let group_entries: u32 = accepted.iter().map(|a| a.entries.len()).sum();
    accepted
        .into_iter()
        .map(|append| {
            // An empty append "ends" just before where it starts.
            let last_index = append.first_index + u64::from(append.entries.len()) - 1;
            let appended = Appended {
                last_index,
                group_appends,
                group_entries,
            };
            (append.done, Ok(appended))
        })
        .collect()
}

/// Stops the process after a durability failure, with a message naming it.
pub(super) fn fatal(message: &str) -> ! {
    eprintln!(
        "lithair log: FATAL: {message}; stopping the process (acknowledged data may be unsynced)"
    );
    std::process::abort()
}

impl Writer {
    /// Removes every entry after `index`, rewriting a partially kept frame, and makes the cut
    /// durable before answering.
    fn truncate_after(&mut self, index: u64) -> Result<(), Error> {
        let cut_index = index + 1;
        if cut_index >= self.next_index {
            return Ok(());
        }
        if cut_index < self.segments[0] {
            let message = format!(
                "cannot truncate after {index}: the log starts at {}",
                self.segments[0]
            );
            return Err(Error::Invalid { message });
        }
        // The record goes down first: a crash before the last removal below must leave a
        // record no newer than the newest segment left.
        let kept = self.segments.partition_point(|&first| first <= cut_index);
        assert!(kept >= 1, "the first segment starts at or before the cut");
        if kept < self.segments.len() {
            extent::lower_newest(&self.log_dir, Some(self.segments[kept - 1]))?;
            self.stop_after_lowering()?;
        }
        while self.segments.len() > 1 && self.active_first() > cut_index {
            let path = segment::segment_path(&self.log_dir, self.active_first());
            fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
            self.segments.pop();
        }
        assert_eq!(
            self.segments.len(),
            kept,
            "the record was lowered to the segment kept"
        );
        let first = self.active_first();
        let path = segment::segment_path(&self.log_dir, first);
        let mut bytes = Vec::new();
        segment::read_segment(&path, &mut bytes)?;
        let (cut_offset, kept) = find_cut(&path, &bytes, first, cut_index)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "open", e))?;
        let file_bytes = match kept {
            // Between frames: one `set_len`, all or nothing for the entries it removes.
            None => {
                file.set_len(cut_offset)
                    .map_err(|e| Error::io(&path, "truncate", e))?;
                file.sync_all().map_err(|e| Error::io(&path, "fsync", e))?;
                cut_offset
            }
            Some((frame_index, term, entries)) => {
                self.buffer.clear();
                frame::encode_frame(&mut self.buffer, frame_index, term, &[&entries]);
                let start = usize::try_from(cut_offset).expect("an offset within the bytes read");
                assert_eq!(
                    self.buffer[cut::HEAD_BYTES..],
                    bytes[start + cut::HEAD_BYTES..start + self.buffer.len()],
                    "the kept entries are the frame's first, in place"
                );
                let pending = cut::PendingCut {
                    segment: first,
                    offset: cut_offset,
                    head: self.buffer[..cut::HEAD_BYTES].try_into().expect("a head"),
                };
                // Nothing is changed yet: a failure to record is an error like any other.
                cut::record(&self.log_dir, &pending)?;
                if self.stop_in_cut(&file, &pending) {
                    return Err(Error::Invalid {
                        message: "injected: stopped in the middle of a cut".to_string(),
                    });
                }
                // From here the segment is being changed: a failure must not let appends go on
                // over a half-made cut. Stopping leaves the record, and the next open finishes
                // the cut before anything else.
                if let Err(error) = cut::apply(&file, &path, &pending) {
                    fatal(&format!(
                        "cutting {} inside a frame: {error}",
                        path.display()
                    ));
                }
                if let Err(error) = cut::clear(&self.log_dir) {
                    fatal(&format!("removing the record of a finished cut: {error}"));
                }
                cut_offset + self.buffer.len() as u64
            }
        };
        segment::sync_dir(&self.log_dir)?;
        self.file = Arc::new(file);
        self.file_bytes = file_bytes;
        self.allocated = file_bytes;
        self.next_index = cut_index;
        self.shared.next_index.store(cut_index, Ordering::SeqCst);
        self.unsynced_since = None;
        Ok(())
    }

    /// Tests: whether to stop in the middle of `pending` (see [`Faults::stop_next_cuts_midway`]),
    /// after tearing the frame's head as a crash could.
    fn stop_in_cut(&self, file: &fs::File, pending: &cut::PendingCut) -> bool {
        let stop = self
            .options
            .faults
            .as_ref()
            .is_some_and(|f| Faults::take(&f.cuts_to_stop));
        if stop {
            let torn = [0xA5u8; cut::HEAD_BYTES / 2];
            let _ = file.write_all_at(&torn, pending.offset);
            let _ = file.sync_all();
        }
        stop
    }

    /// Deletes every segment (newest first, so what a crash leaves is contiguous), then
    /// creates an empty one starting at `first_index`.
    fn reset(&mut self, first_index: u64) -> Result<(), Error> {
        // No record while no segment is left: a crash in between leaves a directory without
        // one (checked no more, as an older version's), never one naming a deleted segment.
        extent::lower_newest(&self.log_dir, None)?;
        self.stop_after_lowering()?;
        for &first in self.segments.iter().rev() {
            let path = segment::segment_path(&self.log_dir, first);
            fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
        }
        segment::sync_dir(&self.log_dir)?;
        self.segments = vec![first_index];
        let preallocate_bytes = preallocation_target(HEADER_BYTES as u64, &self.options);
        self.file = Arc::new(create_segment(
            &self.log_dir,
            first_index,
            preallocate_bytes,
        )?);
        self.file_bytes = HEADER_BYTES as u64;
        self.allocated = preallocate_bytes.max(self.file_bytes);
        self.next_index = first_index;
        self.shared.next_index.store(first_index, Ordering::SeqCst);
        self.unsynced_since = None;
        self.record_active_segment();
        Ok(())
    }

    /// Deletes segments wholly below `index`, oldest first, then fsyncs the directory.
    fn delete_before(&mut self, index: u64) -> Result<usize, Error> {
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1] <= index {
            let path = segment::segment_path(&self.log_dir, self.segments[0]);
            fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
            self.segments.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            segment::sync_dir(&self.log_dir)?;
        }
        Ok(deleted)
    }
}

/// The frame holding `cut_index` in a segment: its offset, and the entries before `cut_index`
/// that must be kept (re-framed), if the cut falls inside the frame.
type Cut = (u64, Option<(u64, u64, EntryBatch)>);

fn find_cut(path: &Path, bytes: &[u8], first: u64, cut_index: u64) -> Result<Cut, Error> {
    let mut at = HEADER_BYTES;
    let mut next = first;
    while at < bytes.len() && next < cut_index {
        let Ok(Status::Complete(found)) = frame::parse_frame(&bytes[at..]) else {
            let reason = "unreadable frame while truncating".to_string();
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: at as u64,
                reason,
            });
        };
        if found.last_index() >= cut_index {
            let mut kept = EntryBatch::new();
            for entry in found.entries().take((cut_index - found.index) as usize) {
                kept.push(entry);
            }
            return Ok((at as u64, Some((found.index, found.term, kept))));
        }
        next = found.last_index() + 1;
        at += found.frame_bytes;
    }
    Ok((at as u64, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(entries: &[&[u8]]) -> EntryBatch {
        let mut batch = EntryBatch::new();
        for entry in entries {
            batch.push(entry);
        }
        batch
    }

    /// A lock whose holder lets go within [`LOCK_PATIENCE_MS`] is taken: a child process
    /// between `fork` and `exec` holds copies of the descriptors (modelled here by a clone of
    /// each, dropped a moment after the lock itself), and used to fail a reopen with `Locked`.
    /// One held for good is still refused.
    #[test]
    fn a_lock_a_copy_holds_for_a_moment_is_waited_for_and_one_held_for_good_is_refused() {
        let dir = std::env::temp_dir().join(format!("lithair-lock-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let lock = lock_data_dir(&dir).expect("first lock");
        let copies = (
            lock._dir.try_clone().expect("clone dir"),
            lock._file.try_clone().expect("clone file"),
        );
        drop(lock);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(LOCK_PATIENCE_MS / 5));
            drop(copies);
        });
        let relocked = lock_data_dir(&dir).expect("the copy let go: locked again");
        releaser.join().expect("releaser");
        assert!(matches!(lock_data_dir(&dir), Err(Error::Locked { .. })));
        drop(relocked);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Queues `count` one-entry appends starting at `first` without waiting (the last one
    /// may be given a wrong first index); returns the receiver of `(index, ok)` in completion
    /// order.
    fn queue_appends(
        log: &Log,
        first: u64,
        count: u64,
        wrong_at: Option<u64>,
    ) -> mpsc::Receiver<(u64, bool)> {
        let (order, completions) = mpsc::channel();
        for index in first..first + count {
            let order = order.clone();
            let first_index = if Some(index) == wrong_at {
                index + 100
            } else {
                index
            };
            log.append(Append {
                term: 1,
                first_index,
                entries: batch(&[format!("entry {index}").as_bytes()]),
                done: Box::new(move |outcome| {
                    let _ = order.send((index, outcome.is_ok()));
                }),
            });
        }
        completions
    }

    #[test]
    fn pipelined_appends_complete_in_order_and_a_refused_one_fails_only_what_follows() {
        let dir = std::env::temp_dir().join(format!("lithair-log-order-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let faults = Arc::new(Faults::default());
        let options = LogOptions {
            faults: Some(Arc::clone(&faults)),
            ..LogOptions::default()
        };
        let (log, _) = Log::open(&dir, options.clone(), &mut |_| Ok(())).unwrap();
        // 1..=40 fine; 41 claims a wrong index, so 42..=60 do not continue the log either.
        let completions = queue_appends(&log, 1, 60, Some(41));
        let seen: Vec<(u64, bool)> = completions.iter().take(60).collect();
        let expected: Vec<(u64, bool)> = (1..=60).map(|index| (index, index <= 40)).collect();
        assert_eq!(seen, expected);
        assert_eq!(log.next_index(), 41);
        // A failed write in the middle of a pipeline: the writes after it do not continue the
        // log and fail too, in order; the log stays valid and appends work again afterwards.
        faults.fail_next_writes(1);
        let seen: Vec<(u64, bool)> = queue_appends(&log, 41, 20, None).iter().take(20).collect();
        assert!(seen.iter().map(|(index, _)| *index).eq(41..61));
        assert!(
            seen.iter().all(|(_, ok)| !ok),
            "the first write failed: {seen:?}"
        );
        let seen: Vec<(u64, bool)> = queue_appends(&log, 41, 30, None).iter().take(30).collect();
        assert!(seen.iter().all(|(_, ok)| *ok));
        assert!(log.fsync_count() >= 1);
        drop(log);
        let mut stored = Vec::new();
        let (log, recovery) = Log::open(&dir, options, &mut |frame| {
            stored.extend(frame.entries().map(|entry| entry.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(recovery.next_index, 71);
        assert_eq!(recovery.truncated, None);
        let want: Vec<Vec<u8>> = (1..=70)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        assert_eq!(stored, want);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reset_starts_an_empty_log_at_the_given_index_durably() {
        let dir = std::env::temp_dir().join(format!("lithair-log-reset-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let options = LogOptions {
            segment_bytes_max: 64,
            ..LogOptions::default()
        };
        {
            let (log, _) = Log::open(&dir, options.clone(), &mut |_| Ok(())).unwrap();
            for index in 1..=4 {
                log.append_wait(1, index, batch(&[b"0123456789012345678901234567890123"]))
                    .unwrap();
            }
            assert!(segment::list_segments(log.dir()).unwrap().len() > 1);
            log.reset(10).unwrap();
            assert_eq!(log.next_index(), 10);
            assert_eq!(segment::list_segments(log.dir()).unwrap(), vec![10]);
            log.append_wait(2, 10, batch(&[b"a", b"b"])).unwrap();
            assert!(log.reset(0).is_err());
        }
        let mut seen = Vec::new();
        let (log, recovery) = Log::open(&dir, options, &mut |frame| {
            seen.push((frame.index, frame.term, frame.entries().count()));
            Ok(())
        })
        .unwrap();
        assert_eq!(recovery.next_index, 12);
        assert_eq!(seen, vec![(10, 2, 2)]);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }
}
