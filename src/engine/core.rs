//! `Engine<S>`: the sequencer (decide in order against a speculative copy, assign index,
//! timestamp and ids, encode), the log writer (group commit) and the applier (apply in log
//! order under the write lock, hooks, subscribers, wake submitters): on a single node the log
//! thread that completed the fsync, in a cluster the applier thread. Sequencing is a role
//! ([`Role`], behind a lock): the sequencer thread holds it, or, on a single node, the log
//! completion that just answered a batch whose callers all came back, which then sequences and
//! appends the next batch itself, and its own thread writes it: no thread wake per batch (see
//! `combine_or_wake` and docs/ARCHITECTURE.md for the cycle).
//!
//! Owns: "log order is apply order is replay order" and "acknowledged means durable".
//! Must not: apply an event before it is durable, or call user hooks under the state lock.

use super::envelope::{self, Envelope};
use super::policy::{SnapshotPolicy, SnapshotTail};
use super::queue::{JobQueue, Refused, Slot, WakeBoard, LOG_BATCHES_DEFAULT, LOG_BATCHES_MAX};
use super::replay;
use super::replica::{self, Proposer, Replica, Token};
use super::snapshot::{self, SnapshotHook, SnapshotStep};
use super::snapshotter;
use super::state::{self, Command, Committed, Context, Meta, Receipt, State, Tracked, Upcaster};
use super::state_digest;
use super::subscribe::{Subscribers, Subscription};
use crate::binary::Encode;
use crate::log::fatal::AbortOnPanic;
use crate::log::{
    self, Append, AppendError, Appended, Durability, EntryBatch, Error, Faults, Log, LogOptions,
};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

/// Commands the sequencer drains into one batch at most.
pub const BATCH_COMMANDS_MAX: usize = 8192;
/// Default bound of the idempotency window, in keys.
pub const IDEMPOTENCY_KEYS_DEFAULT: usize = 100_000;
/// Default bound of a subscriber's live buffer, in events.
pub const SUBSCRIBER_BUFFER_EVENTS_DEFAULT: usize = 65_536;
/// Default bound of the submission queue, in commands (backpressure on submitters).
pub const QUEUE_COMMANDS_DEFAULT: usize = 65_536;

/// Settings of an engine, checked once by [`Engine::open`].
#[derive(Clone)]
pub struct EngineOptions {
    /// When submissions are acknowledged.
    pub durability: Durability,
    /// Segment size at which the log rolls over (at most [`log::SEGMENT_BYTES_LIMIT`]).
    pub segment_bytes_max: u64,
    /// Idempotency keys remembered (oldest evicted first), 1 to
    /// [`IDEMPOTENCY_KEYS_MAX`](super::IDEMPOTENCY_KEYS_MAX).
    pub idempotency_keys_max: usize,
    /// Events a subscriber may lag behind before it is cut off.
    pub subscriber_buffer_events: usize,
    /// Take a snapshot in the background every this many events (0: not by count).
    pub snapshot_every_events: u64,
    /// Take a snapshot in the background every this many log bytes (0: not by size).
    pub snapshot_every_bytes: u64,
    /// A background snapshot also waits until the log written since the last snapshot
    /// reaches this percent of the newest snapshot file's size (0: off, the period alone
    /// decides; the default). A snapshot costs O(state size), so with the period alone the
    /// snapshot work per event grows with the state; with a percent P, a snapshot of S bytes
    /// comes only after at least `P / 100 * S` bytes of log, which bounds that work per
    /// logged byte by `100 / P` whatever the state size, and the log tail recovery replays
    /// by `max(period, P / 100 * S)`. The first snapshot (none yet) comes at the period.
    /// The size is the newest snapshot file's: the one this engine wrote last, the one found
    /// on disk at open, or (cluster follower) the one installed from the leader. See
    /// [`SnapshotPolicy`]; `App` uses [`crate::app::SNAPSHOT_TAIL_PERCENT_DEFAULT`].
    pub snapshot_tail_percent: u32,
    /// Keep the state a snapshot was built from, so the next one replays only the log since
    /// (instead of loading the previous snapshot file and replaying from it). Costs a second
    /// copy of the state in RAM for good (without it, one exists only while a snapshot is
    /// built); saves decoding the whole previous snapshot each time. Default off. Moot for a
    /// state that clones cheaply ([`State::CLONES_CHEAPLY`]): each snapshot copies the live
    /// state, and nothing is kept.
    pub snapshot_keep_state: bool,
    /// Submissions queued before `submit` blocks.
    pub queue_commands_max: usize,
    /// Schema upcasters used during replay and catch-up.
    pub upcasters: Vec<Upcaster>,
    /// Log fault injection (tests).
    pub faults: Option<Arc<Faults>>,
    /// Snapshot step hook (tests).
    pub snapshot_hook: Option<SnapshotHook>,
    /// Called during recovery with the last index replayed so far, about every
    /// `replay_progress_every_events` events (the app shows progress on a terminal).
    pub replay_progress: Option<ReplayProgress>,
    /// Events between two progress reports (default [`REPLAY_PROGRESS_EVENTS`]).
    pub replay_progress_every_events: u64,
    /// Batches handed to the log and not yet durable, at most (1..=[`LOG_BATCHES_MAX`];
    /// default [`LOG_BATCHES_DEFAULT`]). More than one lets the next batch be written while
    /// the previous one's fsync runs.
    pub log_batches_max: usize,
}

/// A recovery progress callback: receives the last log index replayed.
pub type ReplayProgress = Arc<dyn Fn(u64) + Send + Sync>;

/// Events replayed between two calls of [`EngineOptions::replay_progress`].
pub const REPLAY_PROGRESS_EVENTS: u64 = 1 << 20;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            durability: Durability::Durable,
            segment_bytes_max: log::SEGMENT_BYTES_DEFAULT,
            idempotency_keys_max: IDEMPOTENCY_KEYS_DEFAULT,
            subscriber_buffer_events: SUBSCRIBER_BUFFER_EVENTS_DEFAULT,
            snapshot_every_events: 0,
            snapshot_every_bytes: 0,
            snapshot_tail_percent: 0,
            snapshot_keep_state: false,
            queue_commands_max: QUEUE_COMMANDS_DEFAULT,
            upcasters: Vec::new(),
            faults: None,
            snapshot_hook: None,
            replay_progress: None,
            replay_progress_every_events: REPLAY_PROGRESS_EVENTS,
            log_batches_max: LOG_BATCHES_DEFAULT,
        }
    }
}

/// Why a submission did not commit.
#[derive(Debug)]
pub enum SubmitError<R> {
    /// The command refused itself.
    Rejected(R),
    /// Optimistic concurrency: the aggregate is not at the expected version (HTTP 409).
    Conflict {
        /// Aggregate id.
        aggregate: u64,
        /// Version the caller expected.
        expected: u64,
        /// Current version.
        current: u64,
    },
    /// The disk is full; nothing was stored (HTTP 507).
    DiskFull,
    /// Another storage failure, or an earlier write in the same pipeline failed; nothing was
    /// stored and the submission may be retried.
    Storage(String),
    /// The engine is shut down.
    Closed,
    /// The command's events exceed [`super::COMMAND_BYTES_MAX`] (HTTP 413); nothing was stored.
    TooLarge {
        /// Their size, counted as [`super::COMMAND_BYTES_MAX`] says.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The command's `decide` panicked (a bug in it, logged with its message); nothing was
    /// stored and the engine goes on with the next command (HTTP 500).
    Panicked,
    /// The idempotency key is in the window under another request fingerprint: the client
    /// reused a key for a different request (HTTP 422); nothing was stored.
    KeyReused,
}

impl<R: std::fmt::Debug> std::fmt::Display for SubmitError<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Rejected(rejection) => write!(f, "rejected: {rejection:?}"),
            SubmitError::Conflict {
                aggregate,
                expected,
                current,
            } => {
                write!(
                    f,
                    "aggregate {aggregate} is at version {current}, expected {expected}"
                )
            }
            SubmitError::DiskFull => f.write_str("disk full: the change was not stored"),
            SubmitError::Storage(message) => write!(f, "storage failure: {message}"),
            SubmitError::Closed => f.write_str("the engine is shut down"),
            SubmitError::TooLarge { bytes, max } => write!(
                f,
                "the command's events take {bytes} bytes, more than the {max} one command may write"
            ),
            SubmitError::Panicked => f.write_str("the command failed (its decide panicked)"),
            SubmitError::KeyReused => {
                f.write_str("this idempotency key was used for a different request")
            }
        }
    }
}

/// Untyped failure travelling through the pipeline: `Rejected(())` marks a command that refused,
/// whose typed rejection stays inside the submission until `typed` puts it back.
type Failure = SubmitError<()>;

impl Failure {
    /// The caller-facing error, with the rejection the submission kept.
    fn typed<R>(self, rejection: impl FnOnce() -> R) -> SubmitError<R> {
        match self {
            SubmitError::Rejected(()) => SubmitError::Rejected(rejection()),
            SubmitError::Conflict {
                aggregate,
                expected,
                current,
            } => SubmitError::Conflict {
                aggregate,
                expected,
                current,
            },
            SubmitError::DiskFull => SubmitError::DiskFull,
            SubmitError::Storage(message) => SubmitError::Storage(message),
            SubmitError::Closed => SubmitError::Closed,
            SubmitError::TooLarge { bytes, max } => SubmitError::TooLarge { bytes, max },
            SubmitError::Panicked => SubmitError::Panicked,
            SubmitError::KeyReused => SubmitError::KeyReused,
        }
    }

    /// What a failed log append means for every submission of its batch.
    fn from_append(error: AppendError) -> Self {
        match error {
            AppendError::DiskFull => SubmitError::DiskFull,
            AppendError::Closed => SubmitError::Closed,
            AppendError::NotContiguous { .. } => {
                SubmitError::Storage("an earlier write failed; retry".to_string())
            }
            other => SubmitError::Storage(other.to_string()),
        }
    }
}

type Hook<E> = Arc<dyn Fn(&Committed<E>) + Send + Sync>;

/// A queued command with its reply slot, type-erased for the sequencer: one allocation per
/// submission (the box), plus the shared reply slot.
trait Submission<S: State>: Send {
    fn meta(&self) -> &Meta;
    /// Decides; a rejection is stored inside the submission and reported by `finish`.
    fn decide(&mut self, state: &S, context: &Context) -> Option<Vec<S::Event>>;
    fn finish(self: Box<Self>, outcome: Result<Receipt, Failure>);
    /// Like `finish`, for a job of a log batch: a waiting submitter wakes when the applier
    /// releases the whole batch ([`WakeBoard::release`]).
    fn finish_in_batch(self: Box<Self>, outcome: Result<Receipt, Failure>);
}

type Job<S> = Box<dyn Submission<S>>;

/// The reply slot of a submission whose command rejects with `R`.
type ReplySlot<R> = Arc<Slot<Result<Receipt, SubmitError<R>>>>;

/// What [`Engine::submit_then`] runs with the outcome of a submission.
pub type Then<R> = Box<dyn FnOnce(Result<Receipt, SubmitError<R>>) + Send>;

/// Error message of a submission refused because the queue is full ([`Engine::try_submit_then`]).
pub const QUEUE_FULL: &str = "the engine's submission queue is full; retry";

/// Where the outcome of a submission goes: a waiting thread, or a callback.
enum Reply<R> {
    Slot(ReplySlot<R>),
    Then(Then<R>),
}

impl<R> Reply<R> {
    fn deliver(self, outcome: Result<Receipt, SubmitError<R>>, in_batch: bool) {
        match self {
            Reply::Slot(slot) if in_batch => slot.fill(outcome),
            Reply::Slot(slot) => slot.put(outcome),
            Reply::Then(then) => {
                // The callback usually runs where batches are applied (a log thread on a single
                // node): a panic in it must not take the engine down (the callback's captures
                // are dropped by the unwinding, which is how an HTTP responder still answers).
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(outcome)));
                if ran.is_err() {
                    eprintln!("lithair: a submit_then callback panicked");
                }
            }
        }
    }
}

struct TypedSubmission<S: State, C: Command<S>> {
    command: C,
    meta: Meta,
    rejection: Option<C::Rejection>,
    /// `None` once answered; answering `Closed` on drop means a waiter never hangs.
    reply: Option<Reply<C::Rejection>>,
    _state: std::marker::PhantomData<fn(S)>,
}

impl<S: State, C: Command<S>> Submission<S> for TypedSubmission<S, C> {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn decide(&mut self, state: &S, context: &Context) -> Option<Vec<S::Event>> {
        match self.command.decide(state, context) {
            Ok(events) => Some(events),
            Err(rejection) => {
                self.rejection = Some(rejection);
                None
            }
        }
    }

    fn finish(mut self: Box<Self>, outcome: Result<Receipt, Failure>) {
        self.answer(outcome, false);
    }

    fn finish_in_batch(mut self: Box<Self>, outcome: Result<Receipt, Failure>) {
        self.answer(outcome, true);
    }
}

impl<S: State, C: Command<S>> TypedSubmission<S, C> {
    fn answer(&mut self, outcome: Result<Receipt, Failure>, in_batch: bool) {
        let rejection = &mut self.rejection;
        let outcome = outcome.map_err(|failure| {
            failure.typed(|| {
                rejection
                    .take()
                    .expect("a rejected command kept its rejection")
            })
        });
        if let Some(reply) = self.reply.take() {
            reply.deliver(outcome, in_batch);
        }
    }
}

impl<S: State, C: Command<S>> Drop for TypedSubmission<S, C> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.deliver(Err(SubmitError::Closed), false);
        }
    }
}

/// What one log append carries to the applier.
struct Pending<S: State> {
    /// Single node: the batch's number for the [`WakeBoard`] (0 in cluster mode).
    batch: u64,
    /// Bytes the batch's entries take in the log.
    bytes: u64,
    /// Cluster mode: the last index the batch covers, Raft-internal entries included (0 on a
    /// single node, where every index holds an event).
    skip_to: u64,
    events: Vec<Committed<S::Event>>,
    remembered: Vec<(Arc<str>, Receipt)>,
    outcomes: Vec<(Job<S>, Result<Receipt, Failure>)>,
    /// Cluster mode: committed entries from index `undecoded.0` on that precede `events`
    /// and that the applier decodes first (on its own thread: the Raft thread only hands
    /// them over, and the decoded events are allocated and freed by one thread).
    undecoded: (u64, Vec<Arc<[u8]>>),
}

/// State shared by the engine handle and its threads.
pub(super) struct Shared<S: State> {
    committed: RwLock<Tracked<S>>,
    /// The committed state's applied index, published under the write lock by each applied
    /// batch (a batch boundary) and each restore, so the snapshotter reads it without the lock.
    applied: AtomicU64,
    /// The initial state, kept while this engine has no valid snapshot (opened without one,
    /// until its first snapshot here): the snapshotter rebuilds from the newest snapshot, or
    /// from this.
    initial: Mutex<Option<S>>,
    /// With [`EngineOptions::snapshot_keep_state`]: the state of the last snapshot built here.
    /// Touched only by the snapshot path (under `snapshot_lock`), never by the applier.
    snapshot_state: Mutex<Option<Tracked<S>>>,
    /// Shared with the Raft storage in cluster mode, which is then the only writer.
    log: Arc<Log>,
    data_dir: PathBuf,
    options: EngineOptions,
    hooks: RwLock<Vec<Hook<S::Event>>>,
    pub(super) subscribers: Mutex<Subscribers<S::Event>>,
    /// Where submitters wait on the single-node log path (`None`: each slot unparks).
    board: Option<Arc<WakeBoard>>,
    /// Set by the applier when an append failed; the sequencer then rebuilds its copy.
    failed: AtomicBool,
    /// Rebuilds of the sequencer's copy after a failed append (see
    /// [`Engine::sequencer_rebuilds`]); not the rebuild of each new leadership term.
    rebuilds: AtomicU64,
    /// The sequencing role (see [`Role`]); `None` until the sequencer thread built its copy.
    role: Mutex<Option<Role<S>>>,
    /// Batches sequenced and not yet applied (or failed). Its own `Arc`: a log completion
    /// lets go of `Shared` before it counts its batch done, so the engine handle that waits
    /// for zero is the one that drops `Shared` (and the log) last, never a log thread.
    in_flight: Arc<InFlight>,
    snapshot_running: AtomicBool,
    snapshot_lock: Mutex<()>,
    /// The digest of the committed state at an applied index, so that status polls between
    /// two writes ask the state once: a state that keeps no digest of its own (the default
    /// [`State::digest`]) makes a pass over itself for each. The state at an index is the
    /// same wherever it came from (determinism); a restore clears it all the same.
    digest_at: Mutex<Option<(u64, [u8; state_digest::DIGEST_BYTES])>>,
    events_since_snapshot: AtomicU64,
    bytes_since_snapshot: AtomicU64,
    /// Size in bytes of the newest snapshot file (0: none), for the trigger's tail rule
    /// ([`EngineOptions::snapshot_tail_percent`]): set at open from the file on disk, after
    /// each snapshot written here, and after each snapshot a cluster follower installs.
    snapshot_bytes: AtomicU64,
    /// Single node: the snapshot a start falls back to when the newest file is damaged (the
    /// one loaded at open, then each one written here until a newer one is): compaction keeps
    /// the log after it, and pruning keeps it. `None`: the initial state and the whole log.
    fallback_snapshot: Mutex<Option<u64>>,
    /// Set in cluster mode: batches go to Raft instead of straight to the log.
    cluster: Option<Cluster>,
    /// Cluster mode: the replica's way to the applier; taken on shutdown so a replica that
    /// outlives the engine cannot keep the applier alive.
    replica_sender: Mutex<Option<mpsc::Sender<ApplierMessage<S>>>>,
}

/// Cluster-mode state shared by the sequencer and the replica.
struct Cluster {
    proposer: Arc<dyn Proposer>,
    /// The term this node leads and may sequence in (0: not leading).
    leader_term: AtomicU64,
    /// Last index handed to the applier (applied or about to be).
    delivered: Mutex<u64>,
    /// The index the leader's Raft log gives its next entry (see [`Replica::set_next_index`]),
    /// or past it: a (re)built sequencer continues from here, so an index reserved for a
    /// membership change ([`Replica::reserve_index`]) raises it.
    next_index: AtomicU64,
    /// The Raft node waits for an index for a membership change while batches are in
    /// transit: the sequencer leaves the next index free before its next batch (see
    /// [`reserve_slot`]).
    slot_wanted: AtomicBool,
    /// The newest durable snapshot's index (see [`Replica::snapshot_index`]).
    snapshot_index: AtomicU64,
    /// Hooks told the applied index after each applied batch and each restore (see
    /// [`Engine::on_applied`]).
    applied_hooks: RwLock<Vec<AppliedHook>>,
}

/// A hook told the applied index (cluster mode).
type AppliedHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Why a batch did not reach the applier as committed.
#[derive(Clone)]
enum Failed {
    /// The local log refused the append.
    Append(AppendError),
    /// Replication dropped it (leadership lost); the submitters may retry.
    NotCommitted,
}

impl Failed {
    fn failure(&self) -> Failure {
        match self {
            Failed::Append(error) => Failure::from_append(error.clone()),
            Failed::NotCommitted => Failure::Storage(NOT_COMMITTED.to_string()),
        }
    }
}

/// The retryable error of a submission whose batch lost its leader before this node saw it
/// committed. Its outcome is unknown, not failed: the next leader may still commit the
/// entries (they may be in its log). A retry with the same `Idempotency-Key` is answered
/// with the first outcome if they were; without a key, a retry may do the write twice.
pub const NOT_COMMITTED: &str = "outcome unknown: this node lost the cluster leadership before \
     the write was committed, and the next leader may still commit it; retry with the same \
     Idempotency-Key to get its outcome without doing it twice";

/// A submission in flight (from [`Engine::submit_async`]); `wait` blocks until its outcome.
pub struct Ticket<R> {
    slot: ReplySlot<R>,
    /// The first log batch the submission can be in.
    batch: u64,
}

impl<R> Ticket<R> {
    /// Waits for the outcome.
    ///
    /// # Panics
    /// On a log writer thread (in a commit hook or a [`Engine::submit_then`] callback of a
    /// single-node engine): the outcome needs that thread, so the wait would never end.
    pub fn wait(self) -> Result<Receipt, SubmitError<R>> {
        assert_may_wait("Ticket::wait (use submit_then there)");
        self.slot.take(self.batch)
    }
}

/// Panics on a log writer thread, where a single-node engine runs hooks and completions:
/// `what` waiting there would wait for that very thread.
fn assert_may_wait(what: &str) {
    assert!(
        !log::on_writer_thread(),
        "{what} in a commit hook or completion (on a log thread) would wait on itself"
    );
}

/// Facts about the recovery done by [`Engine::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Index covered by the snapshot that was loaded (0: none).
    pub snapshot_index: u64,
    /// Last index applied after replaying the log tail.
    pub applied_index: u64,
    /// What the log recovery found (torn tail, segments).
    pub log: log::Recovery,
}

/// Information about a snapshot that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Last index it covers.
    pub index: u64,
    /// Its file.
    pub path: PathBuf,
    /// Log segments deleted because the snapshot covers them.
    pub segments_deleted: usize,
}

/// The event engine over a data directory.
pub struct Engine<S: State> {
    shared: Option<Arc<Shared<S>>>,
    jobs: Arc<JobQueue<Job<S>>>,
    sequencer: Option<thread::JoinHandle<()>>,
    /// Cluster mode only: the applier thread. On a single node the log thread that saw a
    /// batch's fsync complete applies it (no hand-off; see [`complete_append`]).
    applier: Option<thread::JoinHandle<()>>,
    snapshotter: Snapshotter,
    /// Cluster mode: kept to build the replica; dropped first on shutdown.
    applier_sender: Option<mpsc::Sender<ApplierMessage<S>>>,
}

/// The background snapshot thread, joined before the next one starts and on shutdown.
type Snapshotter = Arc<Mutex<Option<thread::JoinHandle<()>>>>;

/// Counts batches sequenced and not yet applied (or failed).
#[derive(Default)]
struct InFlight {
    counts: Mutex<InFlightCounts>,
    zero: Condvar,
}

/// What [`InFlight`] guards. The waiters are counted because `notify_all` is a system call
/// even with nobody waiting, and a follower's applier reaches zero after every batch.
#[derive(Default)]
struct InFlightCounts {
    batches: u64,
    waiters: u32,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightCounts> {
        self.counts.lock().expect("in-flight lock poisoned")
    }

    fn start(&self) {
        self.lock().batches += 1;
    }

    fn finish(&self) {
        let mut counts = self.lock();
        assert!(
            counts.batches > 0,
            "a batch finished that was never started"
        );
        counts.batches -= 1;
        if counts.batches == 0 && counts.waiters > 0 {
            self.zero.notify_all();
        }
    }

    /// Whether no batch is in flight (a snapshot of the count: it may change right after).
    fn idle(&self) -> bool {
        self.lock().batches == 0
    }

    fn wait_zero(&self) {
        let mut counts = self.lock();
        counts.waiters += 1;
        while counts.batches > 0 {
            counts = self.zero.wait(counts).expect("in-flight lock poisoned");
        }
        counts.waiters -= 1;
    }
}

impl<S: State> Engine<S> {
    /// Opens the engine in cluster mode: the sequencer proposes its batches through
    /// `proposer` (and runs only while [`Replica::set_leader`] says this node leads), and
    /// every node applies committed entries through [`Engine::replica`]. The log is the Raft
    /// log: the Raft storage writes it (durably) through [`Engine::cluster_log`]; the engine
    /// never appends to it. Recovery replays the snapshot and the log up to `commit_hint`
    /// (the durable commit index) only; Raft re-delivers the rest once it re-learns the
    /// commit index.
    ///
    /// Shutdown order: stop whatever holds the replica (the Raft node) before dropping the
    /// engine.
    pub fn open_cluster(
        data_dir: &Path,
        mut options: EngineOptions,
        initial: S,
        proposer: Arc<dyn Proposer>,
        commit_hint: u64,
    ) -> Result<(Self, Opened), Error> {
        options.durability = Durability::Durable;
        Self::open_with(data_dir, options, initial, Some((proposer, commit_hint)))
    }

    /// How many times the sequencer rebuilt its speculative copy from the committed state
    /// after a batch failed to reach the log (a failed append, or in a cluster a proposal
    /// the Raft node abandoned): each rebuild clones the committed state (for an app's
    /// state a structural copy, see `app::cow_map`; a `State` of your own pays its `Clone`)
    /// and fails the writes in transit with a retryable error. A new leadership term's
    /// rebuild is not counted.
    pub fn sequencer_rebuilds(&self) -> u64 {
        self.shared().rebuilds.load(Ordering::Relaxed)
    }

    /// The log, for the Raft storage to write (cluster mode only).
    ///
    /// # Panics
    /// If the engine was not opened with [`Engine::open_cluster`].
    pub fn cluster_log(&self) -> Arc<Log> {
        assert!(
            self.shared().cluster.is_some(),
            "cluster_log() needs Engine::open_cluster"
        );
        Arc::clone(&self.shared().log)
    }

    /// The cluster replica (cluster mode only).
    ///
    /// # Panics
    /// If the engine was not opened with [`Engine::open_cluster`].
    pub fn replica(&self) -> Arc<dyn Replica> {
        assert!(
            self.shared().cluster.is_some(),
            "replica() needs Engine::open_cluster"
        );
        Arc::new(EngineReplica {
            shared: Arc::clone(self.shared()),
        })
    }

    /// A read-only view of the committed state that does not own the engine: unlike an
    /// `Arc<Engine>`, it may be held and dropped where batches are applied (in a `then` of
    /// [`Engine::submit_then`]), since dropping it never stops the engine.
    pub fn reader(&self) -> StateReader<S> {
        StateReader {
            shared: Arc::clone(self.shared()),
        }
    }

    /// Opens the engine on `data_dir`: takes the directory lock, loads the newest valid
    /// snapshot (or `initial`), replays the log tail, and starts the threads.
    pub fn open(
        data_dir: &Path,
        options: EngineOptions,
        initial: S,
    ) -> Result<(Self, Opened), Error> {
        Self::open_with(data_dir, options, initial, None)
    }

    fn open_with(
        data_dir: &Path,
        options: EngineOptions,
        initial: S,
        cluster: Option<(Arc<dyn Proposer>, u64)>,
    ) -> Result<(Self, Opened), Error> {
        if !(1..=state::IDEMPOTENCY_KEYS_MAX).contains(&options.idempotency_keys_max)
            || options.subscriber_buffer_events == 0
            || options.queue_commands_max == 0
            || !(1..=LOG_BATCHES_MAX).contains(&options.log_batches_max)
        {
            let message = "idempotency_keys_max must be in 1..=IDEMPOTENCY_KEYS_MAX, \
                subscriber_buffer_events and queue_commands_max > 0, and log_batches_max in \
                1..=LOG_BATCHES_MAX";
            return Err(Error::Invalid {
                message: message.to_string(),
            });
        }
        // The snapshotter rebuilds from the newest valid snapshot file; while there is none
        // (no file, or only damaged ones) it needs the initial state (usually empty).
        let initial_copy = initial.clone();
        let upcasters = options.upcasters.clone();
        let progress = options.replay_progress.clone();
        let every = options.replay_progress_every_events.max(1);
        let mut next_report = u64::MAX;
        let replay_to = cluster.as_ref().map_or(u64::MAX, |(_, hint)| *hint);
        let (durability, segment_bytes_max) = (options.durability, options.segment_bytes_max);
        let faults = options.faults.clone();
        // The log tail replayed past the snapshot: it is the log since the last snapshot, so
        // the snapshot trigger counts on from it (a restart does not reset the tail).
        let mut replayed = SnapshotTail::default();
        let rebuilt = replay::rebuild(
            data_dir,
            replay::Base::Newest(Some(initial)),
            options.idempotency_keys_max,
            replay_to,
            &upcasters,
            |from, visit| {
                let log_options = LogOptions {
                    durability,
                    segment_bytes_max,
                    first_index: from,
                    replay_from: from,
                    faults,
                };
                next_report = (from - 1).saturating_add(every);
                // Recovery reads the whole log (it checks and trims the tail), past
                // `replay_to` too: the visitor's "enough" is not a stop here.
                Log::open(data_dir, log_options, &mut |frame| {
                    let last = frame.last_index();
                    if let Some(report) = progress.as_ref().filter(|_| last >= next_report) {
                        report(last);
                        next_report = last + every;
                    }
                    count_replayed(&mut replayed, frame, from, replay_to);
                    visit(frame).map(|_| ())
                })
            },
        )?;
        let snapshot_index = rebuilt.snapshot.unwrap_or(0);
        let keep_initial = rebuilt.snapshot.is_none().then_some(initial_copy);
        let ((log, recovery), tracked) = (rebuilt.read, rebuilt.tracked);
        let log_end = recovery.next_index - 1;
        // Single node: the state is the whole log. Cluster: the log up to the commit hint (a
        // snapshot may cover more), and the log may end before the snapshot (a crash in an
        // install, which the Raft storage finishes on start).
        let expected_applied = log_end.min(replay_to).max(snapshot_index);
        let log_short = cluster.is_none() && log_end < snapshot_index;
        // A snapshot file is renamed into place only once the entries it covers are durable,
        // so even a damaged one (passed over above) proves the log once reached its index:
        // a single node's log that ends before it has lost entries (segments deleted), and
        // starting would silently serve an older state (an empty one, with no log left).
        let newest_file = snapshot::list_snapshots(data_dir)?.last().copied();
        if let Some(newest) = newest_file
            .filter(|&newest| cluster.is_none() && newest > snapshot_index && log_end < newest)
        {
            let message = format!(
                "the log ends at index {log_end} but snapshot file {} (damaged, not loaded) \
                 shows entries up to {newest} were stored: refusing to start without them \
                 (restore the missing log segments or a good copy of that snapshot)",
                snapshot::snapshot_file(data_dir, newest).display()
            );
            return Err(Error::Invalid { message });
        }
        if log_short || tracked.applied_index != expected_applied {
            let message = format!(
                "the log ends at index {} but the snapshot covers up to {snapshot_index}",
                recovery.next_index - 1
            );
            return Err(Error::Invalid { message });
        }
        snapshot::prune(data_dir, rebuilt.snapshot)?;
        let opened = Opened {
            snapshot_index,
            applied_index: tracked.applied_index,
            log: recovery,
        };
        let proposer = cluster.map(|(proposer, _)| proposer);
        Ok((
            Self::start(
                data_dir,
                options,
                (tracked, keep_initial, rebuilt.snapshot),
                (log, replayed),
                proposer,
            ),
            opened,
        ))
    }

    fn start(
        data_dir: &Path,
        options: EngineOptions,
        (tracked, initial, loaded_snapshot): (Tracked<S>, Option<S>, Option<u64>),
        (log, replayed): (Log, SnapshotTail),
        proposer: Option<Arc<dyn Proposer>>,
    ) -> Self {
        let log = Arc::new(log);
        let queue_commands_max = options.queue_commands_max;
        let applied_index = tracked.applied_index;
        let newest_snapshot = snapshot::list_snapshots(data_dir)
            .ok()
            .and_then(|indexes| indexes.last().copied())
            .unwrap_or(0);
        let snapshot_bytes = snapshot::file_bytes(data_dir, newest_snapshot);
        let snapshot_index = newest_snapshot.min(applied_index);
        let board = proposer.is_none().then(WakeBoard::new).flatten();
        let shared = Arc::new(Shared {
            board: board.map(Arc::new),
            committed: RwLock::new(tracked),
            applied: AtomicU64::new(applied_index),
            initial: Mutex::new(initial),
            snapshot_state: Mutex::new(None),
            log,
            data_dir: data_dir.to_path_buf(),
            options,
            hooks: RwLock::new(Vec::new()),
            subscribers: Mutex::new(Subscribers::new(applied_index)),
            failed: AtomicBool::new(false),
            rebuilds: AtomicU64::new(0),
            role: Mutex::new(None),
            in_flight: Arc::new(InFlight::default()),
            snapshot_running: AtomicBool::new(false),
            snapshot_lock: Mutex::new(()),
            digest_at: Mutex::new(None),
            events_since_snapshot: AtomicU64::new(replayed.events),
            bytes_since_snapshot: AtomicU64::new(replayed.bytes),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            fallback_snapshot: Mutex::new(loaded_snapshot),
            cluster: proposer.map(|proposer| Cluster {
                proposer,
                leader_term: AtomicU64::new(0),
                delivered: Mutex::new(applied_index),
                next_index: AtomicU64::new(applied_index + 1),
                slot_wanted: AtomicBool::new(false),
                snapshot_index: AtomicU64::new(snapshot_index),
                applied_hooks: RwLock::new(Vec::new()),
            }),
            replica_sender: Mutex::new(None),
        });
        let snapshotter: Snapshotter = Arc::new(Mutex::new(None));
        // Pacing amortizes fsyncs; in Relaxed mode or behind Raft there is none to amortize.
        let pace = shared.options.durability == Durability::Durable && shared.cluster.is_none();
        let batches_max = shared.options.log_batches_max;
        let jobs = Arc::new(JobQueue::new(queue_commands_max, pace, batches_max));
        let job_receiver = Arc::clone(&jobs);
        let sequencer_shared = Arc::clone(&shared);
        let sequencer_snapshotter = Arc::clone(&snapshotter);
        let sequencer = thread::Builder::new()
            .name("lithair-sequencer".into())
            .spawn(move || {
                let _fatal = AbortOnPanic::new("engine sequencer");
                run_sequencer(&sequencer_shared, &job_receiver, &sequencer_snapshotter)
            })
            .expect("spawn the sequencer thread");
        let (applier, applier_sender) = if shared.cluster.is_some() {
            let (applier_sender, applier_receiver) = mpsc::channel();
            *shared
                .replica_sender
                .lock()
                .expect("replica sender poisoned") = Some(applier_sender.clone());
            let applier_shared = Arc::clone(&shared);
            let applier_snapshotter = Arc::clone(&snapshotter);
            let applier = thread::Builder::new()
                .name("lithair-applier".into())
                .spawn(move || {
                    let _fatal = AbortOnPanic::new("engine applier");
                    run_applier(&applier_shared, &applier_receiver, &applier_snapshotter)
                })
                .expect("spawn the applier thread");
            (Some(applier), Some(applier_sender))
        } else {
            (None, None)
        };
        Engine {
            shared: Some(shared),
            jobs,
            sequencer: Some(sequencer),
            applier,
            snapshotter,
            applier_sender,
        }
    }

    fn shared(&self) -> &Arc<Shared<S>> {
        self.shared.as_ref().expect("shared lives until drop")
    }

    /// Runs `f` on the committed state under the read lock. Copy out what you need; do not
    /// serialize large responses inside `f`.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        let committed = self.shared().committed.read().expect("state lock poisoned");
        f(&committed.state)
    }

    /// Like [`Engine::read`], and also returns the index of the last event applied to the state
    /// `f` saw (read under the same lock, so a live query can subscribe right after it).
    pub fn read_indexed<R>(&self, f: impl FnOnce(&S) -> R) -> (u64, R) {
        let committed = self.shared().committed.read().expect("state lock poisoned");
        (committed.applied_index, f(&committed.state))
    }

    /// Submits a command and waits until it is durable and applied (or refused).
    ///
    /// # Panics
    /// In a commit hook or completion of a single-node engine (see [`Ticket::wait`]), before
    /// anything is queued.
    pub fn submit<C: Command<S>>(&self, command: C) -> Result<Receipt, SubmitError<C::Rejection>> {
        assert_may_wait("Engine::submit (use submit_then there)");
        self.submit_async(command, Meta::default()).wait()
    }

    /// Submits a command with metadata and waits for the outcome (panics as [`Engine::submit`]).
    pub fn submit_with<C: Command<S>>(
        &self,
        command: C,
        meta: Meta,
    ) -> Result<Receipt, SubmitError<C::Rejection>> {
        assert_may_wait("Engine::submit_with (use submit_then there)");
        self.submit_async(command, meta).wait()
    }

    /// Queues a command and returns at once; [`Ticket::wait`] gives the outcome. Lets one
    /// caller keep several commands in flight (they share fsyncs).
    pub fn submit_async<C: Command<S>>(&self, command: C, meta: Meta) -> Ticket<C::Rejection> {
        let slot = Arc::new(Slot::new(self.shared().board.clone()));
        let job = Self::job(command, meta, Reply::Slot(Arc::clone(&slot)));
        let batch = match self.jobs.push_inline(job, || self.sequence_inline()) {
            Ok(batch) => batch,
            Err(Refused::Closed(job) | Refused::Full(job)) => {
                job.finish(Err(Failure::Closed));
                0
            }
        };
        Ticket { slot, batch }
    }

    /// Queues a command; `then` receives its outcome once it is durable and applied (or
    /// refused), so no thread waits for it. Blocks only while the queue is full.
    ///
    /// `then` runs where batches are applied (on a single node: the log thread that saw the
    /// batch's fsync complete; in a cluster: the applier thread) after the batch is applied
    /// and the commit hooks ran, in log order (never inside `apply`, never under the state
    /// lock); a submission that fails before reaching the log (engine shut down, cluster node
    /// not leading) is answered on the thread that notices. Keep `then` quick and
    /// non-blocking: the next fsync waits for it. Never submit-and-wait ([`Ticket::wait`]
    /// asserts against it), take a snapshot or read the log from it. Dropping the last handle
    /// on this engine there shuts it down from a thread of its own. A panic in `then` is
    /// caught and logged.
    pub fn submit_then<C: Command<S>>(&self, command: C, meta: Meta, then: Then<C::Rejection>) {
        let job = Self::job(command, meta, Reply::Then(then));
        let pushed = self.jobs.push_inline(job, || self.sequence_inline());
        if let Err(Refused::Closed(job) | Refused::Full(job)) = pushed {
            job.finish(Err(Failure::Closed));
        }
    }

    /// Like [`Engine::submit_then`] but never blocks: when the queue is full, `then` runs at
    /// once (on this thread) with `SubmitError::Storage(QUEUE_FULL)`. For callers that must
    /// not wait, such as a handler running on an HTTP reactor.
    pub fn try_submit_then<C: Command<S>>(&self, command: C, meta: Meta, then: Then<C::Rejection>) {
        let job = Self::job(command, meta, Reply::Then(then));
        match self.jobs.try_push_inline(job, || self.sequence_inline()) {
            Ok(_) => {}
            Err(Refused::Full(job)) => {
                job.finish(Err(Failure::Storage(QUEUE_FULL.to_string())));
            }
            Err(Refused::Closed(job)) => job.finish(Err(Failure::Closed)),
        }
    }

    /// Run by a submitter once its job is counted: sequences and hands on that job itself
    /// when the sequencer is idle (see [`sequence_inline`]). `true` when it did.
    fn sequence_inline(&self) -> bool {
        sequence_inline(self.shared(), &self.jobs, &self.snapshotter)
    }

    fn job<C: Command<S>>(command: C, meta: Meta, reply: Reply<C::Rejection>) -> Job<S> {
        Box::new(TypedSubmission {
            command,
            meta,
            rejection: None,
            reply: Some(reply),
            _state: std::marker::PhantomData,
        })
    }

    /// Subscribes to committed events from `from_index` (catching up from the log, then live).
    pub fn subscribe(&self, from_index: u64) -> Result<Subscription<S>, Error> {
        let shared = self.shared();
        let capacity = shared.options.subscriber_buffer_events;
        let mut subscribers = shared
            .subscribers
            .lock()
            .expect("subscribers lock poisoned");
        let upcasters = shared.options.upcasters.clone();
        Ok(subscribers.register(
            from_index,
            capacity,
            shared.log.dir().to_path_buf(),
            upcasters,
        ))
    }

    /// Subscriber slots the engine holds: one per live [`Subscription`], plus those dropped
    /// since the last `subscribe` or delivery (each prunes them).
    pub fn subscriber_slots(&self) -> usize {
        self.shared()
            .subscribers
            .lock()
            .expect("subscribers lock poisoned")
            .slots()
    }

    /// Registers a post-commit hook, run after each committed event where batches are
    /// applied (on a single node: the log thread that saw the fsync complete; in a cluster:
    /// the applier thread), never inside `apply`, never under the state lock, before the
    /// submitter is woken. Keep it quick (the next fsync waits for it), and never
    /// submit-and-wait, take a snapshot or read the log from a hook: it would wait on itself
    /// (those calls assert against it; a hook's panic is caught and logged).
    pub fn on_commit(&self, hook: impl Fn(&Committed<S::Event>) + Send + Sync + 'static) {
        self.shared()
            .hooks
            .write()
            .expect("hooks lock poisoned")
            .push(Arc::new(hook));
    }

    /// Cluster mode: registers a hook told the applied index after each applied batch and
    /// each snapshot restore. Unlike [`Engine::on_commit`] it also sees the indexes of
    /// Raft-internal entries, which carry no event (a linearizable read may wait for one).
    /// Does nothing on a single node.
    pub fn on_applied(&self, hook: impl Fn(u64) + Send + Sync + 'static) {
        if let Some(cluster) = &self.shared().cluster {
            cluster
                .applied_hooks
                .write()
                .expect("applied hooks lock poisoned")
                .push(Arc::new(hook));
        }
    }

    /// Takes a snapshot now (waiting for it) and deletes the log segments it covers.
    ///
    /// # Panics
    /// On a log writer thread (in a commit hook or completion): the deletion waits for it.
    pub fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        assert_may_wait("Engine::snapshot");
        take_snapshot(self.shared())
    }

    /// Whether a background snapshot is running now (a test that wants each background
    /// snapshot to finish before it writes on polls this; a trigger while one runs is skipped
    /// and the next committed batch tries again).
    pub fn snapshot_running(&self) -> bool {
        self.shared().snapshot_running.load(Ordering::SeqCst)
    }

    /// The log written since the last snapshot started (events, bytes; at open, the log tail
    /// recovery replayed) and the size of the newest snapshot file: what the background
    /// trigger weighs with [`SnapshotPolicy::due`]. A caller that takes snapshots itself (a
    /// benchmark) applies the same rule with it.
    pub fn snapshot_tail(&self) -> SnapshotTail {
        let shared = self.shared();
        SnapshotTail {
            events: shared.events_since_snapshot.load(Ordering::Relaxed),
            bytes: shared.bytes_since_snapshot.load(Ordering::Relaxed),
            snapshot_bytes: shared.snapshot_bytes.load(Ordering::Relaxed),
        }
    }

    /// Digest of the committed state, computed from scratch ([`state_digest::digest`]: a
    /// pass over the whole state under the read lock) and checked against the digest the
    /// state keeps ([`State::digest`]), which must be equal: a difference is a broken
    /// invariant and stops the process. For `replay` and tests; the cluster status reads the
    /// kept digest alone ([`Replica::applied_digest`]).
    ///
    /// # Panics
    /// If the kept digest differs from the recomputed one.
    pub fn digest(&self) -> [u8; state_digest::DIGEST_BYTES] {
        self.read(|state| {
            let full = state_digest::digest(state);
            let kept = state.digest();
            assert!(
                kept == full,
                "the state's kept digest {} differs from its digest recomputed from scratch {}",
                state_digest::digest_hex(&kept),
                state_digest::digest_hex(&full)
            );
            full
        })
    }

    /// Index of the last applied event.
    pub fn applied_index(&self) -> u64 {
        self.shared()
            .committed
            .read()
            .expect("state lock poisoned")
            .applied_index
    }

    /// Current version of an aggregate in the committed state.
    pub fn version(&self, aggregate: u64) -> u64 {
        self.shared()
            .committed
            .read()
            .expect("state lock poisoned")
            .version(aggregate)
    }

    /// Fsyncs issued by the log since open (for benchmarks).
    pub fn fsync_count(&self) -> u64 {
        self.shared().log.fsync_count()
    }

    /// Time the log spent in those fsyncs (for benchmarks: how busy the disk was).
    pub fn fsync_time(&self) -> std::time::Duration {
        self.shared().log.fsync_time()
    }

    /// The first index the log still holds (the first segment's; earlier entries were
    /// compacted into snapshots). Lists the directory; `None` when it cannot be listed.
    pub fn log_start(&self) -> Option<u64> {
        crate::log::list_segments(self.shared().log.dir())
            .ok()?
            .first()
            .copied()
    }

    /// Bytes of the log's files on disk: every file of `<data>/log` at its length
    /// (preallocated, not yet written space included), for an operator watching the disk
    /// fill. Reads the directory (a `stat` per file); `None` when it cannot be listed.
    pub fn log_disk_bytes(&self) -> Option<u64> {
        let entries = std::fs::read_dir(self.shared().log.dir()).ok()?;
        let bytes = entries
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .filter(|metadata| metadata.is_file())
            .map(|metadata| metadata.len())
            .sum();
        Some(bytes)
    }

    /// Group writes of the log that went past its zero-filled space since open (for
    /// benchmarks: each costs its `fdatasync` a journal commit more; see docs/LOG_FORMAT.md).
    pub fn unprepared_writes(&self) -> u64 {
        self.shared().log.unprepared_writes()
    }
}

/// See [`Engine::reader`].
pub struct StateReader<S: State> {
    shared: Arc<Shared<S>>,
}

impl<S: State> StateReader<S> {
    /// Runs `f` on the committed state under the read lock, like [`Engine::read`].
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        let committed = self.shared.committed.read().expect("state lock poisoned");
        f(&committed.state)
    }
}

impl<S: State> Clone for StateReader<S> {
    fn clone(&self) -> Self {
        StateReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: State> Drop for Engine<S> {
    fn drop(&mut self) {
        if log::on_writer_thread() && self.shared.is_some() {
            // The last handle went in a commit hook or completion, on a log thread: the
            // shutdown below waits for that very thread (its batch in flight, the log's
            // writers), so it runs on a thread of its own.
            let moved = Engine {
                shared: self.shared.take(),
                jobs: Arc::clone(&self.jobs),
                sequencer: self.sequencer.take(),
                applier: self.applier.take(),
                snapshotter: Arc::clone(&self.snapshotter),
                applier_sender: self.applier_sender.take(),
            };
            thread::Builder::new()
                .name("lithair-shutdown".into())
                .spawn(move || drop(moved))
                .expect("spawn a thread to shut the engine down");
            return;
        }
        // Order matters: stop taking commands, let the sequencer finish its batch, let every
        // batch in the log be applied (by the log threads, or by the cluster's applier),
        // then close the log.
        self.jobs.close();
        drop(self.applier_sender.take());
        if let Some(handle) = self.sequencer.take() {
            let _ = handle.join();
        }
        if let Some(shared) = &self.shared {
            drop(shared.replica_sender.lock().map(|mut sender| sender.take()));
            if shared.cluster.is_none() {
                // Each completion lets go of `Shared` before counting its batch done.
                shared.in_flight.wait_zero();
            }
        }
        if let Some(handle) = self.applier.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self
            .snapshotter
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
        {
            let _ = handle.join();
        }
        drop(self.shared.take());
    }
}

/// The sequencer's working set: a speculative copy of the state that already includes every
/// accepted command, so each command decides against everything accepted before it.
struct Sequencer<S: State> {
    /// Cluster mode: the leadership term this copy was built for (0: none or single node).
    term: u64,
    speculative: Tracked<S>,
    next_index: u64,
    /// Cluster mode: the last index this copy left free for a membership change (0: none).
    slot_sent: u64,
    next_request_id: u64,
    last_timestamp_ms: u64,
    /// One command's encoded events, before they are known to fit `COMMAND_BYTES_MAX`
    /// (reused: no allocation per command once grown).
    scratch: Vec<u8>,
    /// The envelopes of those events and where each sits in `scratch` (reused likewise).
    scratch_envelopes: Vec<(Envelope, std::ops::Range<usize>)>,
    /// Cluster mode: the last batch's entries, cleared, reused by the next batch (Raft copies
    /// the entries out; a single node hands its batch to the log, which keeps it).
    spare_entries: EntryBatch,
    /// The size of the last batch, to size the next one's buffers in one allocation each.
    last_batch: BatchShape,
}

/// What a batch held, to size the next one's buffers (jobs vary little from batch to batch;
/// growing each buffer by doubling costs a series of reallocations per batch, large ones
/// consolidating the allocator's free lists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BatchShape {
    jobs: usize,
    entry_bytes: usize,
    remembered: usize,
}

impl BatchShape {
    /// Capacities for a batch of at most `jobs` jobs: (entry bytes, remembered keys), in
    /// proportion to the last batch.
    fn reserve_for(&self, jobs: usize) -> (usize, usize) {
        if self.jobs == 0 {
            return (0, 0);
        }
        let per_job = |total: usize| total.saturating_mul(jobs).div_ceil(self.jobs);
        (per_job(self.entry_bytes), per_job(self.remembered))
    }
}

impl<S: State> Sequencer<S> {
    /// Rebuilds the speculative copy from the committed state (at start, and after a failed
    /// append once nothing is in flight any more).
    fn from_committed(shared: &Shared<S>, next_request_id: u64) -> Self {
        let committed = shared.committed.read().expect("state lock poisoned");
        let mut speculative = committed.clone();
        // Only decides commands: its digest is never asked for.
        speculative.state.stop_keeping_digest();
        let next_request_id = next_request_id.max(speculative.last_request_id + 1);
        let mut next_index = speculative.applied_index + 1;
        match &shared.cluster {
            None => assert_eq!(
                next_index,
                shared.log.next_index(),
                "sequencer and log disagree on the next index"
            ),
            Some(cluster) => {
                // Entries after the applied index in the leader's log are Raft-internal
                // (nothing of ours is in flight when rebuilding): continue after them.
                next_index = next_index.max(cluster.next_index.load(Ordering::SeqCst));
                speculative.skip_to(next_index - 1);
            }
        }
        Sequencer {
            term: 0,
            speculative,
            next_index,
            slot_sent: 0,
            next_request_id,
            last_timestamp_ms: 0,
            scratch: Vec::new(),
            scratch_envelopes: Vec::new(),
            spare_entries: EntryBatch::new(),
            last_batch: BatchShape::default(),
        }
    }

    /// Cluster mode: leaves the next index free (no event of this copy will take it) for a
    /// membership change the Raft node appends there; returns it.
    fn leave_free(&mut self) -> u64 {
        let slot = self.next_index;
        self.speculative.skip_to(slot);
        self.next_index += 1;
        self.slot_sent = slot;
        assert_eq!(self.speculative.applied_index + 1, self.next_index);
        slot
    }

    fn now_ms(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Timestamps never go backwards in the log, even if the wall clock does.
        self.last_timestamp_ms = self.last_timestamp_ms.max(now);
        self.last_timestamp_ms
    }

    /// The outcome of a job settled without deciding it: a retried idempotency key gets its
    /// original receipt (unless it came with another request: refused), a stale expected
    /// version a conflict. `None`: the job must be decided.
    fn settled_before_decide(&self, meta: &Meta) -> Option<Result<Receipt, Failure>> {
        if let Some(key) = &meta.idempotency_key {
            if let Some(receipt) = self.speculative.receipt_of(key) {
                let fingerprints = (meta.request_fingerprint, receipt.request_fingerprint);
                if matches!(fingerprints, (Some(sent), Some(stored)) if sent != stored) {
                    return Some(Err(Failure::KeyReused));
                }
                return Some(Ok(Receipt {
                    duplicate: true,
                    ..receipt
                }));
            }
        }
        let (aggregate, expected) = meta.expected_version?;
        let current = self.speculative.version(aggregate);
        if current == expected {
            return None;
        }
        Some(Err(Failure::Conflict {
            aggregate,
            expected,
            current,
        }))
    }

    /// Decides one job against the speculative state, appending its events to the batch.
    fn sequence(
        &mut self,
        job: Job<S>,
        timestamp_ms: u64,
        entries: &mut EntryBatch,
        pending: &mut Pending<S>,
    ) {
        let mut job = job;
        let meta = job.meta().clone();
        if let Some(outcome) = self.settled_before_decide(&meta) {
            pending.outcomes.push((job, outcome));
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let context = Context {
            first_index: self.next_index,
            timestamp_ms,
            request_id,
        };
        // `decide` is application code reading the state it is lent: a panic in it changed
        // nothing here, so the command alone fails and the sequencer goes on (uncaught, it
        // would end this thread and leave every later write waiting for good).
        let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.decide(&self.speculative.state, &context)
        }));
        let events = match decided {
            Ok(Some(events)) => events,
            Ok(None) => {
                pending.outcomes.push((job, Err(Failure::Rejected(()))));
                return;
            }
            Err(_) => {
                eprintln!("lithair engine: a command's decide panicked; it is refused");
                pending.outcomes.push((job, Err(SubmitError::Panicked)));
                return;
            }
        };
        let first_index = self.next_index;
        // Encoded aside first: a command over COMMAND_BYTES_MAX leaves no trace (no entry, no
        // speculative change).
        debug_assert!(self.scratch.is_empty() && self.scratch_envelopes.is_empty());
        let mut command_bytes = 0usize;
        for (offset, event) in events.iter().enumerate() {
            let envelope = Envelope {
                index: first_index + offset as u64,
                timestamp_ms,
                event_type: Cow::Borrowed(S::event_type(event)),
                schema_version: S::SCHEMA_VERSION,
                request_id,
                idempotency_key: meta.idempotency_key.clone(),
                actor: meta.actor.clone(),
                correlation_id: meta.correlation_id.clone(),
                // Only a key is compared with it: without one it would be dead weight.
                request_fingerprint: meta.idempotency_key.as_ref().and(meta.request_fingerprint),
            };
            let start = self.scratch.len();
            envelope::encode_entry(&mut self.scratch, &envelope, |out| event.encode(out));
            command_bytes +=
                self.scratch.len() - start + super::replica::COMMAND_EVENT_OVERHEAD_BYTES;
            self.scratch_envelopes
                .push((envelope, start..self.scratch.len()));
        }
        if command_bytes > super::replica::COMMAND_BYTES_MAX {
            self.scratch.clear();
            self.scratch_envelopes.clear();
            let failure = Failure::TooLarge {
                bytes: command_bytes as u64,
                max: super::replica::COMMAND_BYTES_MAX as u64,
            };
            pending.outcomes.push((job, Err(failure)));
            return;
        }
        // `apply` may not fail: a panic in it leaves the copy half-applied. This often runs on
        // the submitter's thread (whichever thread holds the sequencing role), which may catch
        // panics (an HTTP worker answers 500) and would leave the role taken for good: stop
        // the process as the engine's own threads do.
        let _fatal = AbortOnPanic::new("engine sequencer (apply)");
        for (event, (envelope, range)) in events.into_iter().zip(self.scratch_envelopes.drain(..)) {
            assert_eq!(envelope.index, self.next_index, "events out of index order");
            entries.push(&self.scratch[range]);
            self.speculative.apply(self.next_index, request_id, &event);
            self.next_index += 1;
            pending.events.push(Committed { envelope, event });
        }
        self.scratch.clear();
        let last_index = self.next_index - 1;
        let receipt = Receipt {
            first_index,
            last_index,
            timestamp_ms,
            request_id,
            duplicate: false,
            request_fingerprint: meta.request_fingerprint,
        };
        // A command without events leaves nothing in the log, so replay could not rebuild its
        // key: it is not remembered live either (a retry decides again).
        if let (Some(key), true) = (&meta.idempotency_key, last_index >= first_index) {
            self.speculative.remember(key, receipt);
            pending.remembered.push((Arc::clone(key), receipt));
        }
        pending.outcomes.push((job, Ok(receipt)));
    }
}

/// What the Raft node hands the cluster applier, which takes it in the order it was sent:
/// the order of the indexes it covers (sent under [`Cluster::delivered`]'s lock), so a
/// restore comes after every batch delivered before it and before every batch delivered
/// after it.
enum ApplierMessage<S: State> {
    /// A committed batch to apply (`Ok`), or a proposal to fail (`Err`).
    Batch(Result<Appended, Failed>, Pending<S>),
    /// The state becomes the snapshot's (see [`Replica::restore`]).
    Restore(QueuedRestore),
}

/// A snapshot installed from the leader, waiting on the applier to replace the state.
struct QueuedRestore {
    /// The index it covers: the state it holds is the state at this index.
    index: u64,
    /// Its file, opened (and its header checked) by [`Replica::restore`] on the Raft thread:
    /// a newer snapshot's prune may unlink the name before the applier gets here, never what
    /// this handle reads.
    file: std::fs::File,
    /// The file's size in bytes, header included.
    bytes: u64,
}

/// Cluster mode: whether jobs may be sequenced now (this node leads). Rebuilds the
/// speculative copy when this node became leader of a new term (after everything committed
/// before it is applied).
fn cluster_admit<S: State>(shared: &Shared<S>, cluster: &Cluster, role: &mut Role<S>) -> bool {
    let term = cluster.leader_term.load(Ordering::SeqCst);
    if term == 0 {
        // Not leading: the copy (if this node led before) is stale and will be rebuilt at
        // the next admission; freed now, not held beside the committed state meanwhile.
        role.retire();
        return false;
    }
    if role.admitted_term() != Some(term) {
        wait_until_idle(shared);
        // A free index asked for in an earlier term is moot (the node answered that change
        // when it stopped leading); one asked for in this term is asked again on the node's
        // next tick, and granted then if nothing is in transit.
        cluster.slot_wanted.store(false, Ordering::SeqCst);
        role.rebuild(shared).term = term;
        shared.failed.store(false, Ordering::SeqCst);
    }
    true
}

/// The sequencing role: the sequencer's working set and the jobs taken from the queue but not
/// sequenced yet (a batch stops at its size bounds). Whoever takes a batch holds it from the
/// take until the batch is handed on, so batches are taken, sequenced and handed to the log
/// (or to Raft) in one order. The sequencer thread takes the role with a blocking lock, and
/// never while it waits for work; on a single node, a log completion takes it with `try_lock`
/// only (see [`combine_or_wake`]), so a log thread never blocks on it.
///
/// A cluster node holds a sequencer only while it leads (it is built at admission): a
/// follower keeps one copy of the state, not two.
struct Role<S: State> {
    /// `None` on a cluster node until it is admitted to lead, and again once it no longer
    /// leads; always `Some` on a single node.
    sequencer: Option<Sequencer<S>>,
    /// The next request id for a sequencer built after this one (ids only grow, including
    /// those of proposals that were abandoned).
    next_request_id: u64,
    backlog: VecDeque<Job<S>>,
}

impl<S: State> Role<S> {
    /// The term the sequencer was admitted for (`Some(0)` on a single node), `None` without
    /// one.
    fn admitted_term(&self) -> Option<u64> {
        self.sequencer.as_ref().map(|sequencer| sequencer.term)
    }

    /// Drops the sequencer (its copy of the state), remembering its next request id.
    fn retire(&mut self) {
        drop(self.take_sequencer());
    }

    /// Takes the sequencer out (for the caller to drop), remembering its next request id.
    fn take_sequencer(&mut self) -> Option<Sequencer<S>> {
        let old = self.sequencer.take()?;
        self.next_request_id = self.next_request_id.max(old.next_request_id);
        Some(old)
    }

    /// Rebuilds the sequencer from the committed state. The old copy is dropped first, so
    /// the process holds at most two copies of the state (the committed one and this one),
    /// never three.
    fn rebuild(&mut self, shared: &Shared<S>) -> &mut Sequencer<S> {
        self.retire();
        self.sequencer
            .insert(Sequencer::from_committed(shared, self.next_request_id))
    }
}

fn lock_role<S: State>(shared: &Shared<S>) -> std::sync::MutexGuard<'_, Option<Role<S>>> {
    shared.role.lock().expect("sequencing role poisoned")
}

fn run_sequencer<S: State>(
    shared: &Arc<Shared<S>>,
    jobs: &Arc<JobQueue<Job<S>>>,
    snapshotter: &Snapshotter,
) {
    let single = shared.cluster.is_none();
    let mut role = Role {
        sequencer: None,
        next_request_id: 1,
        backlog: VecDeque::new(),
    };
    if single {
        role.rebuild(shared);
    }
    *lock_role(shared) = Some(role);
    // Waits without the role, then takes it: a completion that took the batch meanwhile
    // leaves nothing to take, and the loop waits again.
    while jobs.wait_ready() {
        let mut role = lock_role(shared);
        let role = role.as_mut().expect("the role is set before the loop");
        let Some(batch) = jobs.try_take(&mut role.backlog, BATCH_COMMANDS_MAX, single) else {
            continue;
        };
        assert!(!role.backlog.is_empty(), "a batch holds at least one job");
        if shared.failed.load(Ordering::SeqCst) {
            // Only here, never in a completion: the wait is for every completion to end.
            wait_until_idle(shared);
            if single {
                role.rebuild(shared);
            } else {
                // Rebuilt by the admission below (for this term, if this node still leads it).
                role.retire();
            }
            shared.failed.store(false, Ordering::SeqCst);
            shared.rebuilds.fetch_add(1, Ordering::Relaxed);
        }
        match &shared.cluster {
            None => append_batch(shared, jobs, snapshotter, role, batch),
            Some(cluster) => cluster_batch(shared, cluster, role),
        }
        jobs.hold(role.backlog.len());
    }
}

/// Cluster mode: sequences the role's backlog and proposes it (or refuses it when this node
/// does not lead).
fn cluster_batch<S: State>(shared: &Arc<Shared<S>>, cluster: &Cluster, role: &mut Role<S>) {
    if !cluster_admit(shared, cluster, role) {
        for job in role.backlog.drain(..) {
            job.finish(Err(Failure::Storage(NOT_COMMITTED.to_string())));
        }
        return;
    }
    propose_backlog(shared, cluster, role);
}

/// Cluster mode, once admitted: sequences the role's backlog and proposes it (after the
/// index it leaves free for a membership change, when the Raft node asked for one).
fn propose_backlog<S: State>(shared: &Arc<Shared<S>>, cluster: &Cluster, role: &mut Role<S>) {
    let Role {
        sequencer, backlog, ..
    } = role;
    let sequencer = sequencer
        .as_mut()
        .expect("a proposal is sequenced once admitted");
    let slot = reserve_slot(cluster, sequencer);
    let first_index = sequencer.next_index;
    let (entries, pending) = sequence_batch(sequencer, backlog);
    assert_eq!(first_index + u64::from(entries.len()), sequencer.next_index);
    shared.in_flight.start();
    propose_batch(cluster, sequencer, slot, first_index, &entries, pending);
    let mut entries = entries;
    entries.clear();
    sequencer.spare_entries = entries;
}

/// Cluster mode, under the role once admitted, before a batch is sequenced: when the Raft
/// node waits for an index for a membership change (its [`Replica::reserve_index`] found
/// batches in transit to it), leaves the next index free for it. The batch's proposal
/// carries that index (`slot`), and the node appends the change there, just before the
/// batch: the change takes an index no batch uses, so none is abandoned and the copy needs
/// no rebuild.
fn reserve_slot<S: State>(cluster: &Cluster, sequencer: &mut Sequencer<S>) -> Option<u64> {
    // A load first: this runs for every batch, and the flag is almost always clear (a
    // swap would write its cache line each time).
    if !cluster.slot_wanted.load(Ordering::SeqCst)
        || !cluster.slot_wanted.swap(false, Ordering::SeqCst)
    {
        return None;
    }
    let slot = sequencer.leave_free();
    // A copy rebuilt later continues after it (the node appends it there or abandons the
    // batch behind it, which rebuilds from the log's real end).
    cluster.next_index.fetch_max(slot + 1, Ordering::SeqCst);
    Some(slot)
}

/// Single node: sequences the role's backlog into batch number `batch` (already counted in
/// the log by the take) and appends it. Runs on the sequencer thread, or on the log thread
/// of a completion that took the role ([`combine_or_wake`]); the log then lets the writer
/// thread that appends here write the batch itself, with no wake (see `Log::append`).
fn append_batch<S: State>(
    shared: &Arc<Shared<S>>,
    jobs: &Arc<JobQueue<Job<S>>>,
    snapshotter: &Snapshotter,
    role: &mut Role<S>,
    batch: u64,
) {
    let Role {
        sequencer, backlog, ..
    } = role;
    let sequencer = sequencer
        .as_mut()
        .expect("a single node always has its sequencer");
    let first_index = sequencer.next_index;
    let (entries, mut pending) = sequence_batch(sequencer, backlog);
    assert_eq!(first_index + u64::from(entries.len()), sequencer.next_index);
    shared.in_flight.start();
    pending.batch = batch;
    let done = completion(Arc::clone(shared), Arc::clone(jobs), snapshotter, pending);
    shared.log.append(Append {
        term: 0,
        first_index,
        entries,
        done,
    });
}

/// A submitter (any thread in `submit*`, e.g. an HTTP reactor) whose job is counted in the
/// queue: when the sequencer is idle, sequences and hands on a batch of that one job itself
/// (appends it to the log, or proposes it to Raft) instead of waking the sequencer thread for
/// it (one thread hop less before anything is written: 20-50 us on this VM). Never blocks:
/// the role by `try_lock`, the take only if it may go now ([`JobQueue::try_take_alone`]).
/// Returns `true` when it took a batch; the queue then wakes nobody for this job (the proof
/// that no wake-up is lost is on [`JobQueue::push_inline`]).
///
/// Only when the queue holds this job alone and nothing is held back (in a cluster, also
/// with no proposal in flight): then the sequencer has nothing else to do, and this runs
/// one `decide` (the submitter's own command) and one encode on the submitter's thread. A reactor thus runs command code only at low load;
/// under load, jobs queue up behind each other and the sequencer thread takes them in
/// batches as before (a reactor never sequences other clients' commands).
///
/// Not here (the sequencer thread does it): on a log thread (a completion or hook that
/// resubmits; [`combine_or_wake`] takes that batch once the answers are filled), after a
/// failed append (only the sequencer rebuilds its copy, waiting for every completion), in
/// a cluster when this node does not lead or leads a term the sequencer has not admitted
/// yet (admission may wait for the applier), and before the sequencer built its copy.
fn sequence_inline<S: State>(
    shared: &Arc<Shared<S>>,
    jobs: &Arc<JobQueue<Job<S>>>,
    snapshotter: &Snapshotter,
) -> bool {
    // Cheapest first: under load other jobs are queued and this returns at once.
    if !jobs.alone() || log::on_writer_thread() || shared.failed.load(Ordering::SeqCst) {
        return false;
    }
    let Ok(mut role) = shared.role.try_lock() else {
        return false;
    };
    let Some(role) = role.as_mut() else {
        return false;
    };
    match &shared.cluster {
        None => {
            let Some(batch) = jobs.try_take_alone(&mut role.backlog, true) else {
                return false;
            };
            append_batch(shared, jobs, snapshotter, role, batch);
        }
        Some(cluster) => {
            let term = cluster.leader_term.load(Ordering::SeqCst);
            if term == 0 || role.admitted_term() != Some(term) {
                return false;
            }
            // Only with no proposal in flight: here nothing paces the takes (no log room, no
            // group wait), so under load each submitter of a reactor's burst would propose a
            // batch of one (measured: 256 clients lost a fifth of their writes/s and paid
            // 15 us more CPU per write); the sequencer thread batches them instead.
            if !shared.in_flight.idle() {
                return false;
            }
            // Leadership may end after this check: the proposal then carries the old term
            // and fails as the sequencer thread's would in the same race.
            if jobs.try_take_alone(&mut role.backlog, false).is_none() {
                return false;
            }
            propose_backlog(shared, cluster, role);
        }
    }
    jobs.hold(role.backlog.len());
    true
}

/// Single node, once a completed batch's answers are filled (its `submit_then` callbacks
/// resubmitted): sequences the next batch on this log thread when the role is free and a
/// batch may go now, instead of waking the sequencer thread for it (one thread hop less per
/// batch: measured 20-50 us on this VM). Otherwise (the role is busy, the group is not
/// complete yet, nothing is queued, or an append failed and the sequencer must rebuild its
/// copy after every completion ended, which a completion cannot wait for) it wakes the
/// sequencer thread as before; the sequencer does the group wait. Never blocks.
fn combine_or_wake<S: State>(
    shared: &Arc<Shared<S>>,
    jobs: &Arc<JobQueue<Job<S>>>,
    snapshotter: &Snapshotter,
) {
    if !shared.failed.load(Ordering::SeqCst) {
        if let Ok(mut role) = shared.role.try_lock() {
            if let Some(role) = role.as_mut() {
                if let Some(batch) = jobs.try_take(&mut role.backlog, BATCH_COMMANDS_MAX, true) {
                    append_batch(shared, jobs, snapshotter, role, batch);
                    jobs.hold(role.backlog.len());
                }
            }
        }
    }
    // After a take the log is full (the default, one batch) and this wakes nobody: the
    // sequencer thread rightly sleeps for the log.
    jobs.wake_after_log();
}

/// Single node: the log completion of a batch, run on the log thread that saw its fsync
/// complete (its `write` in Relaxed mode), in log order: apply, hooks, answers, all on that
/// thread, with no hand-off to an applier (measured: waking one cost about 90 us per batch,
/// a third of the turnaround). Once the answers are filled, the completion sequences the
/// next batch itself when it may go at once (every caller it answered through a callback came
/// back: see [`combine_or_wake`]), and this same thread then writes and fsyncs it; else the
/// sequencer thread is woken for it and the other log thread (woken by the append) writes it
/// while this one finishes.
///
/// Hooks and `submit_then` callbacks therefore run on a log thread: a wait on the log there
/// would wait on itself, so [`Ticket::wait`], [`Engine::snapshot`] and the log's blocking
/// calls assert against it, and the last engine handle dropped there shuts the engine down
/// from a thread of its own.
fn completion<S: State>(
    shared: Arc<Shared<S>>,
    queue: Arc<JobQueue<Job<S>>>,
    snapshotter: &Snapshotter,
    pending: Pending<S>,
) -> log::Done {
    let snapshotter = Arc::clone(snapshotter);
    let in_flight = Arc::clone(&shared.in_flight);
    let answered = pending.outcomes.len();
    Box::new(move |result| {
        let result = result.map_err(Failed::Append);
        if result.is_err() {
            // Before the sequencer wakes: nothing of this batch is stored, so it must rebuild
            // its copy (once this batch and those before it are done).
            shared.failed.store(true, Ordering::SeqCst);
        }
        // Before any answer: the callers answered below count as returning. The next batch
        // is taken once every answer is filled (the callbacks among them resubmitted), to
        // take them all, and before the waiting submitters wake (a crowd that would keep
        // this thread off a core for a while).
        queue.log_done_quietly(answered);
        let next = || combine_or_wake(&shared, &queue, &snapshotter);
        complete_append(&shared, result, pending, &snapshotter, &next);
        // Last: the engine handle waiting for zero in flight must drop `Shared` after us.
        drop(shared);
        drop(queue);
        drop(snapshotter);
        in_flight.finish();
    })
}

/// Sequences jobs from the front of `backlog` into one batch, up to the batch bounds.
fn sequence_batch<S: State>(
    sequencer: &mut Sequencer<S>,
    backlog: &mut VecDeque<Job<S>>,
) -> (EntryBatch, Pending<S>) {
    let timestamp_ms = sequencer.now_ms();
    let jobs = backlog.len().min(BATCH_COMMANDS_MAX);
    let (entry_bytes, remembered) = sequencer.last_batch.reserve_for(jobs);
    let mut entries = std::mem::take(&mut sequencer.spare_entries);
    assert!(entries.is_empty(), "a spare entry batch is cleared");
    entries.reserve(entry_bytes);
    let mut pending = Pending {
        batch: 0,
        bytes: 0,
        skip_to: 0,
        events: Vec::with_capacity(jobs),
        remembered: Vec::with_capacity(remembered),
        outcomes: Vec::with_capacity(jobs),
        undecoded: (0, Vec::new()),
    };
    while let Some(job) = backlog.pop_front() {
        sequencer.sequence(job, timestamp_ms, &mut entries, &mut pending);
        if pending.outcomes.len() >= BATCH_COMMANDS_MAX
            || entries.byte_len() >= log::GROUP_BYTES_MAX / 2
        {
            break;
        }
    }
    assert!(
        !pending.outcomes.is_empty(),
        "a batch answers at least one job"
    );
    pending.bytes = entries.byte_len() as u64;
    sequencer.last_batch = BatchShape {
        jobs: pending.outcomes.len(),
        entry_bytes: entries.byte_len(),
        remembered: pending.remembered.len(),
    };
    (entries, pending)
}

/// Cluster mode: hands a sequenced batch to Raft, one entry per event. A batch without events
/// (only rejections or idempotent duplicates) becomes one no-op entry, so its outcomes are
/// still delivered in commit order, after the entries they were decided against.
fn propose_batch<S: State>(
    cluster: &Cluster,
    sequencer: &mut Sequencer<S>,
    slot: Option<u64>,
    first_index: u64,
    entries: &EntryBatch,
    mut pending: Pending<S>,
) {
    assert!(
        slot.is_none_or(|slot| slot + 1 == first_index),
        "a free index {slot:?} is just before its batch at {first_index}"
    );
    let mut raw = split_entries(entries);
    if raw.is_empty() {
        raw.push(Arc::from(&[][..]));
        sequencer.speculative.skip_to(first_index);
        sequencer.next_index += 1;
    }
    pending.skip_to = first_index + raw.len() as u64 - 1;
    let token: Token = Box::new(pending);
    cluster
        .proposer
        .propose(sequencer.term, slot, first_index, raw, token);
}

/// The entries of an [`EntryBatch`]'s bytes (`len u32 LE | entry`, repeated), copied once
/// into the shared allocations the Raft log keeps.
fn split_entries(entries: &EntryBatch) -> Vec<Arc<[u8]>> {
    let mut out = Vec::with_capacity(entries.len() as usize);
    let mut bytes = entries.as_bytes();
    while let Some(prefix) = bytes.get(..4) {
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let entry = bytes
            .get(4..4 + len)
            .expect("an entry batch is well formed");
        out.push(Arc::from(entry));
        bytes = &bytes[4 + len..];
    }
    out
}

fn wait_until_idle<S: State>(shared: &Shared<S>) {
    shared.in_flight.wait_zero();
}

/// Cluster mode: applies what Raft committed (and fails what it dropped), in log order.
fn run_applier<S: State>(
    shared: &Arc<Shared<S>>,
    receiver: &mpsc::Receiver<ApplierMessage<S>>,
    snapshotter: &Snapshotter,
) {
    while let Ok(message) = receiver.recv() {
        match message {
            ApplierMessage::Batch(result, mut pending) => {
                decode_undecoded(shared, &mut pending);
                complete_append(shared, result, pending, snapshotter, &|| {});
            }
            ApplierMessage::Restore(restore) => restore_snapshot(shared, restore),
        }
        shared.in_flight.finish();
    }
}

/// Replaces the committed state by the snapshot of `restore` (installed from the leader), on
/// the applier: every batch delivered before it is applied, none delivered after it is. Until
/// the swap, readers see the state as it was (and its applied index); from it, the snapshot's.
///
/// # Panics
/// When the snapshot cannot be loaded or holds another index than its name: the Raft log
/// before it is gone (the install reset it), so applying later entries on the old state would
/// fork this replica. The applier runs under `AbortOnPanic`: the process stops with a FATAL
/// line, and a restart starts from the snapshot file or gets a new one from the leader.
fn restore_snapshot<S: State>(shared: &Shared<S>, restore: QueuedRestore) {
    let QueuedRestore { index, file, bytes } = restore;
    let cluster = shared
        .cluster
        .as_ref()
        .expect("restores come in cluster mode");
    let began = std::time::Instant::now();
    let keys_max = shared.options.idempotency_keys_max;
    // Decoded as it streams from the file (the installed snapshot is never read whole):
    // only the state it decodes to is held, as when a node starts from a snapshot.
    let tracked = snapshot::load_opened_with(&shared.data_dir, index, file, |index, input| {
        Tracked::<S>::decode_snapshot_spilled(input, keys_max).map_err(|e| Error::Visitor {
            index,
            message: format!("snapshot does not decode: {e}"),
        })
    })
    .unwrap_or_else(|e| {
        panic!("the snapshot installed from the leader at index {index} cannot be restored: {e}")
    });
    assert_eq!(
        tracked.applied_index, index,
        "the snapshot installed from the leader at index {index} holds another index's state"
    );
    let decode_ms = began.elapsed().as_millis();
    let replaced = {
        let mut committed = shared.committed.write().expect("state lock poisoned");
        // The node hands over a restore only past every index delivered before it, and those
        // are applied by now: the applied index moves forward, never back.
        assert!(
            committed.applied_index < index,
            "a restore to {index} would move the applied index back from {}",
            committed.applied_index
        );
        let replaced = std::mem::replace(&mut *committed, tracked);
        shared.applied.store(index, Ordering::SeqCst);
        *shared.digest_at.lock().expect("digest lock poisoned") = None;
        // Before the lock goes, as when the Raft thread restored and returned: whoever sees
        // the applied index at `index` sees the snapshot's counters too. The installed
        // snapshot is the newest: the log tail after it starts empty, and the next local
        // snapshot weighs its tail against this file's size.
        cluster.snapshot_index.fetch_max(index, Ordering::SeqCst);
        shared.snapshot_bytes.store(bytes, Ordering::Relaxed);
        shared.events_since_snapshot.store(0, Ordering::Relaxed);
        shared.bytes_since_snapshot.store(0, Ordering::Relaxed);
        replaced
    };
    // Freed outside the lock: readers need not wait while a large old state is dropped.
    drop(replaced);
    shared
        .subscribers
        .lock()
        .expect("subscribers lock poisoned")
        .restart_at(index);
    tell_applied(cluster, index);
    eprintln!(
        "lithair: the engine restored the snapshot installed from the leader at index {index} \
         ({bytes} bytes, decoded on the applier in {decode_ms} ms)"
    );
}

/// Decodes the entries a committed run holds before the events of `pending` (all of them
/// on a follower; on the leader, those before its own proposal) and puts them first.
fn decode_undecoded<S: State>(shared: &Shared<S>, pending: &mut Pending<S>) {
    let (first_index, entries) = std::mem::take(&mut pending.undecoded);
    if entries.is_empty() {
        return;
    }
    let (mut events, mut remembered) = decode_batch(shared, first_index, &entries);
    events.append(&mut pending.events);
    remembered.append(&mut pending.remembered);
    (pending.events, pending.remembered) = (events, remembered);
}

/// Applies a batch the log (or Raft) committed, runs hooks and answers its submitters; or
/// fails them all when it did not commit. Batches come here one at a time, in log order.
/// `filled` runs once every answer is delivered, before the waiting submitters wake.
fn complete_append<S: State>(
    shared: &Arc<Shared<S>>,
    result: Result<Appended, Failed>,
    pending: Pending<S>,
    snapshotter: &Snapshotter,
    filled: &dyn Fn(),
) {
    let Pending {
        batch,
        bytes,
        skip_to,
        events,
        remembered,
        outcomes,
        undecoded,
    } = pending;
    assert!(undecoded.1.is_empty(), "a committed run was not decoded");
    if let Err(error) = result {
        // A committed batch that cannot reach the local log would leave this replica
        // behind its peers for good; stop loudly, the Raft log re-delivers it on start.
        assert!(
            shared.cluster.is_none() || matches!(error, Failed::NotCommitted),
            "local log append of a committed batch failed"
        );
        // Nothing of this batch is stored; the sequencer must forget it too.
        shared.failed.store(true, Ordering::SeqCst);
        let failed = outcomes
            .into_iter()
            .map(|(job, _)| (job, Err(error.failure())));
        answer_batch(shared, batch, failed, filled);
        return;
    }
    let count = events.len() as u64;
    apply_committed(shared, events, &remembered, skip_to);
    // Counted before the answers: a submitter that got its answer finds its batch in
    // `Engine::snapshot_tail` (the trigger itself waits until the answers are out).
    let tail = SnapshotTail {
        events: shared
            .events_since_snapshot
            .fetch_add(count, Ordering::Relaxed)
            + count,
        bytes: shared
            .bytes_since_snapshot
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes,
        snapshot_bytes: shared.snapshot_bytes.load(Ordering::Relaxed),
    };
    answer_batch(shared, batch, outcomes, filled);
    if snapshot_policy(&shared.options).due(&tail) {
        start_background_snapshot(shared, snapshotter);
    }
}

/// Adds the entries of `frame` from index `from` up to `to` to the replayed tail, counted as
/// the applier counts committed batches (each entry with its length prefix).
fn count_replayed(replayed: &mut SnapshotTail, frame: &log::Frame<'_>, from: u64, to: u64) {
    for (index, entry) in (frame.index..).zip(frame.entries()) {
        if (from..=to).contains(&index) {
            replayed.events += 1;
            replayed.bytes += (entry.len() + log::ENTRY_PREFIX_BYTES) as u64;
        }
    }
}

/// The background snapshot trigger of these options.
fn snapshot_policy(options: &EngineOptions) -> SnapshotPolicy {
    SnapshotPolicy {
        every_events: options.snapshot_every_events,
        every_bytes: options.snapshot_every_bytes,
        tail_percent: options.snapshot_tail_percent,
    }
}

/// Answers every job of a batch, in order, then runs `filled`; on the single-node log path
/// (`batch` > 0) the waiting submitters then wake together, with one system call.
fn answer_batch<S: State>(
    shared: &Shared<S>,
    batch: u64,
    outcomes: impl IntoIterator<Item = (Job<S>, Result<Receipt, Failure>)>,
    filled: &dyn Fn(),
) {
    match shared.board.as_ref().filter(|_| batch > 0) {
        Some(board) => {
            for (job, outcome) in outcomes {
                job.finish_in_batch(outcome);
            }
            filled();
            board.release(batch);
        }
        None => {
            for (job, outcome) in outcomes {
                job.finish(outcome);
            }
            filled();
        }
    }
}

/// Applies a durable batch under the write lock, then (outside it) runs hooks and feeds
/// subscribers. `skip_to` (cluster mode, else 0) is the batch's last index: indexes without
/// an event up to it belong to Raft-internal entries.
fn apply_committed<S: State>(
    shared: &Shared<S>,
    events: Vec<Committed<S::Event>>,
    remembered: &[(Arc<str>, Receipt)],
    skip_to: u64,
) {
    let applied_index = {
        let mut committed = shared.committed.write().expect("state lock poisoned");
        for committed_event in &events {
            if skip_to > 0 {
                committed.skip_to(committed_event.envelope.index - 1);
            }
            committed.apply(
                committed_event.envelope.index,
                committed_event.envelope.request_id,
                &committed_event.event,
            );
        }
        for (key, receipt) in remembered {
            committed.remember(key, *receipt);
        }
        if skip_to > committed.applied_index {
            committed.skip_to(skip_to);
        }
        // Under the lock, so a restore between two batches cannot be overwritten by an
        // older index.
        shared
            .applied
            .store(committed.applied_index, Ordering::SeqCst);
        committed.applied_index
    };
    let hooks = shared.hooks.read().expect("hooks lock poisoned").clone();
    for committed_event in &events {
        for hook in &hooks {
            // On a single node this is a log thread: a hook's panic (such as the assert of
            // a wait on the log) must not take it down with the completion turn held.
            let ran =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(committed_event)));
            if ran.is_err() {
                eprintln!("lithair: a post-commit hook panicked");
            }
        }
    }
    if let Some(cluster) = &shared.cluster {
        tell_applied(cluster, applied_index);
    }
    if let Some(last) = events.last() {
        let last_index = last.envelope.index.max(skip_to);
        let mut subscribers = shared
            .subscribers
            .lock()
            .expect("subscribers lock poisoned");
        subscribers.deliver(events, last_index);
    }
}

/// Runs the cluster's applied-index hooks.
fn tell_applied(cluster: &Cluster, applied_index: u64) {
    let hooks = cluster
        .applied_hooks
        .read()
        .expect("applied hooks lock poisoned")
        .clone();
    for hook in &hooks {
        hook(applied_index);
    }
}

fn start_background_snapshot<S: State>(shared: &Arc<Shared<S>>, snapshotter: &Snapshotter) {
    if shared.snapshot_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut slot = snapshotter.lock().expect("snapshotter lock poisoned");
    if let Some(previous) = slot.take() {
        let _ = previous.join();
    }
    let shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("lithair-snapshot".into())
        .spawn(move || {
            // A panic would leave `snapshot_running` set, and the log growing, for good.
            let _fatal = AbortOnPanic::new("snapshot");
            if let Err(error) = take_snapshot(&shared) {
                eprintln!("lithair: background snapshot failed: {error}");
            }
            shared.snapshot_running.store(false, Ordering::SeqCst);
        });
    match spawned {
        Ok(handle) => *slot = Some(handle),
        Err(error) => eprintln!("lithair: cannot start the snapshot thread: {error}"),
    }
}

/// Snapshots the committed state at the last applied batch boundary: from a copy of it when
/// the state clones cheaply ([`State::CLONES_CHEAPLY`], the read lock held for the copy),
/// otherwise without touching the live state (no lock on it: the state is rebuilt from the
/// previous snapshot and the log, see `snapshotter`); writes it durably, and only then
/// deletes the log segments it covers (single node) or tells Raft it may compact (cluster).
fn take_snapshot<S: State>(shared: &Shared<S>) -> Result<SnapshotInfo, Error> {
    let _one_at_a_time = shared.snapshot_lock.lock().expect("snapshot lock poisoned");
    // Applied means durable (Durable), written (Relaxed: the snapshotter syncs it) or
    // committed (cluster); a follower's truncations only cut entries past its commit.
    let target = shared.applied.load(Ordering::SeqCst);
    shared.events_since_snapshot.store(0, Ordering::Relaxed);
    shared.bytes_since_snapshot.store(0, Ordering::Relaxed);
    // A state that copies structurally is snapshotted from a copy of the committed state:
    // the read lock is held for the copy alone (reference counts, and the idempotency
    // window), and neither the newest snapshot file nor the log is read again. Every state
    // the lock releases is at an applied batch boundary, at or past `target`.
    let live_copy = S::CLONES_CHEAPLY.then(|| {
        let copy = shared
            .committed
            .read()
            .expect("state lock poisoned")
            .clone();
        assert!(
            copy.applied_index >= target,
            "the committed state went back from {target} to {}",
            copy.applied_index
        );
        copy
    });
    let target = live_copy.as_ref().map_or(target, |copy| copy.applied_index);
    let source = snapshotter::Source {
        data_dir: &shared.data_dir,
        initial: shared
            .initial
            .lock()
            .expect("initial state lock poisoned")
            .clone(),
        idempotency_keys_max: shared.options.idempotency_keys_max,
        upcasters: &shared.options.upcasters,
        relaxed: shared.cluster.is_none()
            && matches!(shared.options.durability, Durability::Relaxed { .. }),
        // Taken out: after a failure the next snapshot starts over from the newest file.
        retained: live_copy.or_else(|| {
            shared
                .snapshot_state
                .lock()
                .expect("snapshot state lock poisoned")
                .take()
        }),
    };
    let hook = shared.options.snapshot_hook.as_ref();
    let written = snapshotter::write_at(source, target, hook)?;
    let (index, path) = (written.index, written.path);
    // The newest file, which the next trigger weighs the log tail against (a follower's
    // install may have made a newer one than ours: then that one).
    shared.snapshot_bytes.store(
        snapshot::file_bytes(&shared.data_dir, index),
        Ordering::Relaxed,
    );
    // (A state copied from the live one is not kept: the next snapshot copies again, and a
    // kept copy would hold on to every record the live state changes meanwhile.)
    if shared.options.snapshot_keep_state && !S::CLONES_CHEAPLY {
        *shared
            .snapshot_state
            .lock()
            .expect("snapshot state lock poisoned") = written.state;
    }
    // A snapshot file exists from now on: later rebuilds start from one.
    *shared.initial.lock().expect("initial state lock poisoned") = None;
    // Single node: the log is compacted up to the previous good snapshot, not this one, so a
    // start finding this file damaged still has a way back (that snapshot and the log after
    // it). Cluster mode: the Raft node compacts the log once it sees the durable snapshot.
    // `fallback`: the previous good snapshot, when this one is newer (the snapshotter returns
    // the newest file as it is when it already covers the target: nothing new to compact).
    let fallback = {
        let mut slot = shared
            .fallback_snapshot
            .lock()
            .expect("fallback snapshot lock poisoned");
        let previous = slot.filter(|&previous| previous < index);
        if slot.is_none_or(|previous| previous < index) {
            *slot = Some(index);
        }
        previous
    };
    let segments_deleted = match (&shared.cluster, fallback) {
        (None, Some(previous)) => shared.log.delete_before(previous + 1)?,
        (None, None) => 0,
        (Some(cluster), _) => {
            cluster.snapshot_index.fetch_max(index, Ordering::SeqCst);
            0
        }
    };
    if let Some(Err(message)) = hook.map(|hook| hook(SnapshotStep::SegmentsDeleted)) {
        return Err(Error::Invalid {
            message: format!("snapshot stopped after deleting segments: {message}"),
        });
    }
    let keep = fallback
        .filter(|_| shared.cluster.is_none())
        .or(Some(index));
    snapshot::prune(&shared.data_dir, keep)?;
    Ok(SnapshotInfo {
        index,
        path,
        segments_deleted,
    })
}

/// The engine as the Raft node sees it: committed batches in, leadership changes in.
struct EngineReplica<S: State> {
    shared: Arc<Shared<S>>,
}

impl<S: State> EngineReplica<S> {
    /// On stepping down: frees the sequencer's copy of the state (stale from now on; the next
    /// admission rebuilds it), so a former leader holds one copy of the state like any
    /// follower. Called on the Raft thread, which must not wait: the role by `try_lock` only
    /// (if a batch holds it, the sequencer thread retires the copy when it next finds this
    /// node not leading), and the copy, which may be large, dropped on a thread of its own.
    fn retire_sequencer(&self) {
        let Ok(mut role) = self.shared.role.try_lock() else {
            return;
        };
        let Some(old) = role.as_mut().and_then(Role::take_sequencer) else {
            return;
        };
        drop(role);
        let dropper = thread::Builder::new()
            .name("lithair-retire".into())
            .spawn(move || drop(old));
        if let Err(error) = dropper {
            eprintln!("lithair engine: cannot start a thread to free the sequencer's copy ({error}); freed here");
        }
    }

    fn cluster(&self) -> &Cluster {
        self.shared
            .cluster
            .as_ref()
            .expect("replica exists in cluster mode")
    }

    /// The applier's inbox, or `None` once the engine shuts down.
    fn applier(&self) -> Option<mpsc::Sender<ApplierMessage<S>>> {
        self.shared
            .replica_sender
            .lock()
            .expect("replica sender poisoned")
            .clone()
    }
}

/// Idempotency keys with the receipts of the commands that used them.
type Remembered = Vec<(Arc<str>, Receipt)>;

/// Decodes committed entries into events and the idempotency receipts they imply (one
/// receipt per command: its first to last event, as the leader's sequencer recorded it).
/// Empty entries and reserved envelopes are Raft-internal and yield nothing.
///
/// # Panics
/// On an entry that does not decode: a committed entry was produced by a leader's sequencer,
/// so this is a bug or corruption, and applying around it would fork the replicas.
fn decode_batch<S: State>(
    shared: &Shared<S>,
    first_index: u64,
    raw_entries: &[Arc<[u8]>],
) -> (Vec<Committed<S::Event>>, Remembered) {
    let mut events = Vec::with_capacity(raw_entries.len());
    let mut remembered: Vec<(Arc<str>, Receipt)> = Vec::new();
    for (offset, raw) in raw_entries.iter().enumerate() {
        let index = first_index + offset as u64;
        if raw.is_empty() {
            continue;
        }
        let envelope = envelope::decode_entry(raw)
            .unwrap_or_else(|e| panic!("committed entry {index}: bad envelope: {e}"));
        assert_eq!(envelope.index, index, "committed entry index mismatch");
        if replica::is_reserved(envelope.event_type) {
            continue;
        }
        let event = replay::decode_event::<S>(&envelope, &shared.options.upcasters)
            .unwrap_or_else(|e| panic!("committed entry {index}: {e}"));
        let owned = envelope.to_envelope();
        if let Some(key) = &owned.idempotency_key {
            match remembered.last_mut() {
                Some((last_key, receipt))
                    if receipt.request_id == owned.request_id && last_key == key =>
                {
                    receipt.last_index = index;
                }
                _ => remembered.push((
                    Arc::clone(key),
                    Receipt {
                        first_index: index,
                        last_index: index,
                        timestamp_ms: owned.timestamp_ms,
                        request_id: owned.request_id,
                        duplicate: false,
                        request_fingerprint: owned.request_fingerprint,
                    },
                )),
            }
        }
        events.push(Committed {
            envelope: owned,
            event,
        });
    }
    (events, remembered)
}

/// The batch of a committed run of entries that ends with this node's own proposal
/// `pending`. The proposal's entries were encoded by this process from `pending`'s events
/// (the Raft node hands the token over only when the committed entry at its last index has
/// the term it was proposed in, so they are those very entries): they are not decoded
/// again. Entries before them in the run (another leader's, or Raft's own) are, by the
/// applier.
fn own_proposal<S: State>(
    first_index: u64,
    entries: &[Arc<[u8]>],
    mut pending: Pending<S>,
) -> Pending<S> {
    let last_index = first_index + entries.len() as u64 - 1;
    assert_eq!(
        pending.skip_to, last_index,
        "a token ends its proposal's run"
    );
    let own_first = pending
        .events
        .first()
        .map_or(last_index, |own| own.envelope.index);
    assert!(
        (first_index..=last_index).contains(&own_first),
        "a proposal's first entry {own_first} is outside its run {first_index}..={last_index}"
    );
    let before = (own_first - first_index) as usize;
    pending.undecoded = (first_index, entries[..before].to_vec());
    pending
}

impl<S: State> Replica for EngineReplica<S> {
    fn apply(&self, first_index: u64, entries: &[Arc<[u8]>], token: Option<Token>) {
        let shared = &self.shared;
        let Some(applier) = self.applier() else {
            return; // Shutting down: Raft re-delivers these entries on the next start.
        };
        if entries.is_empty() {
            if let Some(token) = token {
                self.abandon(token);
            }
            return;
        }
        let last_index = first_index + entries.len() as u64 - 1;
        let mut delivered = self.cluster().delivered.lock().expect("delivered poisoned");
        if last_index <= *delivered {
            // Re-delivered after a restart: the state already holds them.
            assert!(token.is_none(), "a proposal of this run was applied twice");
            return;
        }
        // A restart replays up to the commit hint (or loads a snapshot past it), so Raft may
        // re-deliver a prefix the state already holds.
        let skip = delivered.saturating_sub(first_index - 1) as usize;
        let (first_index, entries) = (first_index + skip as u64, &entries[skip..]);
        assert_eq!(first_index, *delivered + 1, "gap between committed entries");
        let mut pending = match token {
            Some(token) => match token.downcast::<Pending<S>>() {
                Ok(pending) => own_proposal(first_index, entries, *pending),
                Err(_) => panic!("a proposal token is not this engine's"),
            },
            None => {
                // Counted like the sequencer's batches so a new leader waits for it.
                shared.in_flight.start();
                Pending {
                    batch: 0,
                    bytes: 0,
                    skip_to: last_index,
                    events: Vec::new(),
                    remembered: Vec::new(),
                    outcomes: Vec::new(),
                    undecoded: (first_index, entries.to_vec()),
                }
            }
        };
        pending.bytes = entries.iter().map(|e| e.len() as u64 + 4).sum();
        let appended = Appended {
            last_index,
            group_appends: 1,
            group_entries: entries.len() as u32,
        };
        // The applier only stops after every sender is gone; a closed one means shutdown.
        let _ = applier.send(ApplierMessage::Batch(Ok(appended), pending));
        *delivered = last_index;
    }

    fn abandon(&self, token: Token) {
        match token.downcast::<Pending<S>>() {
            Ok(pending) => {
                if let Some(applier) = self.applier() {
                    let _ =
                        applier.send(ApplierMessage::Batch(Err(Failed::NotCommitted), *pending));
                }
            }
            Err(_) => panic!("a proposal token is not this engine's"),
        }
    }

    fn set_leader(&self, term: Option<u64>) {
        self.cluster()
            .leader_term
            .store(term.unwrap_or(0), Ordering::SeqCst);
        if term.is_none() {
            self.retire_sequencer();
        }
    }

    fn set_next_index(&self, next_index: u64) {
        self.cluster()
            .next_index
            .store(next_index, Ordering::SeqCst);
    }

    /// Never blocks (the Raft thread calls it): the role by `try_lock` only. Under the role,
    /// the sequencer either has nothing in transit (its next index is the log's), or does
    /// not sequence in `term` yet, or has nothing in flight and will rebuild from the log's
    /// end: then `next_index` is taken from it and granted. Otherwise the sequencer is asked
    /// to leave an index free before its next batch.
    fn reserve_index(&self, term: u64, next_index: u64) -> bool {
        let shared = &self.shared;
        let cluster = self.cluster();
        let Ok(mut role) = shared.role.try_lock() else {
            cluster.slot_wanted.store(true, Ordering::SeqCst);
            return false;
        };
        let grant = |sequencer: Option<&mut Sequencer<S>>| {
            if let Some(sequencer) = sequencer {
                assert_eq!(sequencer.leave_free(), next_index);
            }
            // A copy built or rebuilt later continues after it.
            cluster
                .next_index
                .fetch_max(next_index + 1, Ordering::SeqCst);
            cluster.slot_wanted.store(false, Ordering::SeqCst);
            true
        };
        let Some(sequencer) = role.as_mut().and_then(|role| role.sequencer.as_mut()) else {
            // None built (not admitted yet, or retired after a failure or a lost leadership):
            // admission builds it from `cluster.next_index`.
            return grant(None);
        };
        if sequencer.term != term {
            // Not admitted in `term`: admission rebuilds from `cluster.next_index`, and what
            // an older term sent the node abandons.
            return grant(None);
        }
        if !shared.failed.load(Ordering::SeqCst) && sequencer.next_index == next_index {
            // Every batch sequenced is in the node's log: nothing will claim this index.
            return grant(Some(sequencer));
        }
        if shared.in_flight.idle() {
            // A rebuild is due (a batch failed), or the copy's next index is not the log's
            // (its next proposal mismatches and rebuilds): with nothing in transit, no batch
            // can land right after the change although it was decided after one that failed,
            // and the rebuild continues after the change. Granting here also means a change
            // never waits for a write on an idle leader.
            return grant(None);
        }
        if sequencer.slot_sent < next_index {
            // No free index is on its way to the node (one at or past `next_index` is).
            cluster.slot_wanted.store(true, Ordering::SeqCst);
        }
        false
    }

    fn sequencer_rebuilds(&self) -> u64 {
        self.shared.rebuilds.load(Ordering::Relaxed)
    }

    fn snapshot_index(&self) -> u64 {
        self.cluster().snapshot_index.load(Ordering::SeqCst)
    }

    /// Never waits for the snapshot's decode (the Raft thread calls it): opens the file,
    /// queues the restore for the applier and moves the delivered index to `index`, all
    /// under the delivered lock, so every later [`Replica::apply`] queues behind it.
    fn restore(&self, index: u64) -> Result<(), String> {
        let shared = &self.shared;
        let Some(applier) = self.applier() else {
            return Err("the engine is shutting down".to_string());
        };
        let mut delivered = self.cluster().delivered.lock().expect("delivered poisoned");
        if index <= *delivered {
            // Already held: a crash after the snapshot file was written, then the same
            // snapshot sent again; the state loaded at start (or a restore or batch queued
            // since) is that snapshot or later.
            return Ok(());
        }
        // An open and a header read, no read of the body: the decode is the applier's.
        let (file, bytes) =
            snapshot::open_snapshot_file(&shared.data_dir, index).map_err(|e| e.to_string())?;
        // Counted like a batch: a sequencer admitted to lead waits for it before it copies
        // the committed state, and `reserve_index` sees the applier busy.
        shared.in_flight.start();
        let restore = QueuedRestore { index, file, bytes };
        if applier.send(ApplierMessage::Restore(restore)).is_err() {
            shared.in_flight.finish();
            return Err("the engine is shutting down".to_string());
        }
        *delivered = index;
        Ok(())
    }

    fn delivered_index(&self) -> u64 {
        *self.cluster().delivered.lock().expect("delivered poisoned")
    }

    fn applied_index(&self) -> u64 {
        self.shared
            .committed
            .read()
            .expect("state lock poisoned")
            .applied_index
    }

    fn applied_digest(&self) -> (u64, [u8; state_digest::DIGEST_BYTES]) {
        let committed = self.shared.committed.read().expect("state lock poisoned");
        let index = committed.applied_index;
        let mut cached = self.shared.digest_at.lock().expect("digest lock poisoned");
        if let Some((at, digest)) = *cached {
            if at == index {
                return (index, digest);
            }
        }
        // The kept digest: O(models) for an `AppState`, never a pass over its records while
        // the applier's writes wait for this read lock.
        let digest = committed.state.digest();
        *cached = Some((index, digest));
        (index, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_sized_after_the_last_one_per_job() {
        assert_eq!(BatchShape::default().reserve_for(100), (0, 0));
        let last = BatchShape {
            jobs: 4,
            entry_bytes: 1_000,
            remembered: 2,
        };
        assert_eq!(last.reserve_for(4), (1_000, 2));
        assert_eq!(last.reserve_for(8), (2_000, 4));
        assert_eq!(
            last.reserve_for(1),
            (250, 1),
            "rounded up, never 0 for a key"
        );
        let keyless = BatchShape {
            remembered: 0,
            ..last
        };
        assert_eq!(keyless.reserve_for(8), (2_000, 0));
    }

    #[test]
    fn split_entries_allocates_its_list_once() {
        let mut entries = EntryBatch::new();
        for payload in [&b"a"[..], b"bc", b"", b"def", b"g"] {
            entries.push(payload);
        }
        let raw = split_entries(&entries);
        assert_eq!(raw.capacity(), 5);
        let payloads: Vec<&[u8]> = raw.iter().map(|entry| &entry[..]).collect();
        assert_eq!(payloads, [&b"a"[..], b"bc", b"", b"def", b"g"]);
    }
}
