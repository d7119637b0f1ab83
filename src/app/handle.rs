//! `Handle`: the programmatic face of a running app. Reads copy out of the committed state;
//! writes run a command through the engine (the same path the HTTP routes take).
//!
//! Owns: turning engine outcomes into `WriteError`s, and recovering the outcome of an
//! idempotent retry (from an in-memory window of recent outcomes, else by reading the log
//! back on a lookup thread of its own).
//! Must not: know about HTTP; read the log or block on the engine's applier thread.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::command::{tx_command, Checks, Tx};
use super::model::{Id, Model, ModelEvent, Rejection};
use super::state::{AppEvent, AppState};
use crate::engine::{Committed, Engine, Meta, Receipt, StateReader, SubmitError};

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The command refused (validation, uniqueness, not found, domain rule).
    Rejected(Rejection),
    /// The disk is full; nothing was stored (HTTP 507).
    DiskFull,
    /// Storage failed; nothing was stored, a retry may succeed (HTTP 503).
    Unavailable(String),
    /// The command's events exceed `engine::COMMAND_BYTES_MAX`; nothing was stored and a retry
    /// fails alike (HTTP 413).
    TooLarge {
        /// Their size in bytes.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The command's code panicked (logged); nothing was stored (HTTP 500).
    Failed,
    /// The idempotency key was used before for a different request (another method, target
    /// or body); nothing was stored (HTTP 422).
    KeyReused,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Rejected(rejection) => write!(f, "{rejection}"),
            WriteError::DiskFull => f.write_str("the disk is full: the change was not stored"),
            WriteError::Unavailable(message) => write!(f, "storage unavailable: {message}"),
            WriteError::TooLarge { bytes, max } => write!(
                f,
                "the change takes {bytes} bytes, more than the {max} one command may write"
            ),
            WriteError::Failed => {
                f.write_str("the command failed; nothing was stored (the server log says why)")
            }
            WriteError::KeyReused => f.write_str(
                "this Idempotency-Key was used for a different request (method, target or \
                 body); nothing was stored: send a new key for a new request",
            ),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<Rejection> for WriteError {
    fn from(rejection: Rejection) -> Self {
        WriteError::Rejected(rejection)
    }
}

/// The outcome of an accepted command.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<T> {
    /// The command's output; `None` when this was a retry of a command already committed under
    /// the same idempotency key (the stored receipt is returned instead of running it again).
    pub output: Option<T>,
    /// Where its events landed in the log.
    pub receipt: Receipt,
}

/// What a submitted `Tx` command's engine outcome means for the caller; `output` is where
/// the command left its result.
fn executed<T>(
    outcome: Result<Receipt, SubmitError<Rejection>>,
    output: &std::sync::Mutex<Option<T>>,
) -> Result<Executed<T>, WriteError> {
    match outcome {
        Ok(receipt) => {
            let output = output.lock().expect("command output poisoned").take();
            assert!(
                output.is_some() || receipt.duplicate,
                "an accepted command must leave its output"
            );
            Ok(Executed { output, receipt })
        }
        Err(SubmitError::Rejected(rejection)) => Err(WriteError::Rejected(rejection)),
        Err(SubmitError::Conflict {
            expected, current, ..
        }) => Err(WriteError::Rejected(Rejection::VersionMismatch {
            expected,
            current,
        })),
        Err(SubmitError::DiskFull) => Err(WriteError::DiskFull),
        Err(SubmitError::Storage(message)) => Err(WriteError::Unavailable(message)),
        Err(SubmitError::Closed) => Err(WriteError::Unavailable("the engine is shut down".into())),
        Err(SubmitError::TooLarge { bytes, max }) => Err(WriteError::TooLarge { bytes, max }),
        Err(SubmitError::Panicked) => Err(WriteError::Failed),
        Err(SubmitError::KeyReused) => Err(WriteError::KeyReused),
    }
}

/// A cheap, cloneable handle on a running app's engine.
#[derive(Clone)]
pub struct Handle {
    engine: Arc<Engine<AppState>>,
    checks: Arc<Checks>,
    /// Answers idempotent retries (from the outcome window, or by reading the log back).
    replays: Arc<Replays>,
}

/// Idempotent outcomes remembered in memory, oldest evicted first.
pub const RECENT_OUTCOMES_MAX: usize = 65_536;

/// Bytes of string ids the outcome window holds, at most; past it the oldest outcomes are
/// evicted as past its count. A string primary key comes from the client (up to a whole body),
/// and an outcome stays after its record is deleted: counted alone, a window of 65,536 could
/// hold gigabytes of ids of records long gone.
pub const RECENT_OUTCOMES_ID_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Retries waiting for the log to be read back, at most; past it a retry answers 503.
pub const REPLAY_LOOKUPS_QUEUED_MAX: usize = 1024;

/// Outcomes of recent keyed writes: (first log index, model name, record id), in increasing
/// index order, so a lookup is a binary search and eviction pops the front. Writes are
/// remembered by the applier in log order, so an insert is almost always a push at the back.
struct RecentOutcomes {
    entries: VecDeque<(u64, &'static str, Id)>,
    capacity: usize,
    /// Bytes of the string ids in `entries`, at most [`RECENT_OUTCOMES_ID_BYTES_MAX`].
    id_bytes: usize,
}

/// The bytes of `id` an outcome holds besides its entry.
fn id_bytes(id: &Id) -> usize {
    match id {
        Id::Int(_) => 0,
        Id::Str(text) => text.len(),
    }
}

impl RecentOutcomes {
    fn with_capacity(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "the outcome window holds at least one outcome"
        );
        RecentOutcomes {
            entries: VecDeque::new(),
            capacity,
            id_bytes: 0,
        }
    }

    fn insert(&mut self, index: u64, model: &'static str, id: Id) {
        if id_bytes(&id) > RECENT_OUTCOMES_ID_BYTES_MAX {
            // It would evict every other outcome and then itself: a retry reads the log.
            return;
        }
        self.id_bytes += id_bytes(&id);
        let in_order = self.entries.back().is_none_or(|(last, _, _)| *last < index);
        if in_order {
            self.entries.push_back((index, model, id));
        } else {
            match self.entries.binary_search_by_key(&index, |(at, _, _)| *at) {
                Ok(at) => {
                    let (_, _, replaced) =
                        std::mem::replace(&mut self.entries[at], (index, model, id));
                    self.id_bytes -= id_bytes(&replaced);
                }
                Err(at) => self.entries.insert(at, (index, model, id)),
            }
        }
        while self.entries.len() > self.capacity || self.id_bytes > RECENT_OUTCOMES_ID_BYTES_MAX {
            let Some((_, _, evicted)) = self.entries.pop_front() else {
                unreachable!("ids are counted only while their entries are held")
            };
            self.id_bytes -= id_bytes(&evicted);
        }
        assert!(self.entries.len() <= self.capacity);
        assert!(self.id_bytes <= RECENT_OUTCOMES_ID_BYTES_MAX);
    }

    /// What the write at `index` touched, if it is still in the window.
    fn get(&self, index: u64) -> Option<(&'static str, &Id)> {
        let at = self
            .entries
            .binary_search_by_key(&index, |(at, _, _)| *at)
            .ok()?;
        let (found, model, id) = &self.entries[at];
        assert_eq!(*found, index);
        Some((*model, id))
    }
}

/// Why an idempotent retry cannot be answered with the record its first request touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The key's first request touched no record of this model (the key was reused for
    /// another request): HTTP 409.
    KeyReused,
    /// The record was deleted since: HTTP 404.
    Gone(Id),
    /// The answer could not be looked up now (engine shut down, too many lookups waiting);
    /// a retry may succeed: HTTP 503.
    Unavailable(&'static str),
    /// The first request's events left the log (compacted into a snapshot) and its outcome
    /// the in-memory window: it was done, but which record it touched is no longer known.
    /// Answered as command routes answer a retry they no longer remember: the route's
    /// status, `Idempotent-Replayed: true`, no body.
    Forgotten,
}

/// A job for the lookup thread; the argument is `Err(reason)` when the job is refused (run
/// on the caller's thread instead, to answer that reason).
type Lookup = Box<dyn FnOnce(Result<(), &'static str>) + Send>;

/// Answers idempotent retries. Safe to hold, use and drop on the engine's applier thread: it
/// reads the state through a [`StateReader`] and holds the engine only weakly, so it never
/// stops the engine from the applier. A retry whose outcome is in the window is answered on
/// the calling thread; one that needs the log read back (after a restart or an eviction) goes
/// to a lookup thread of its own (started on first use), never to the applier.
pub(crate) struct Replays {
    reader: StateReader<AppState>,
    recent: Mutex<RecentOutcomes>,
    engine: Weak<Engine<AppState>>,
    lookups: OnceLock<Option<SyncSender<Lookup>>>,
}

impl Replays {
    fn new(engine: &Arc<Engine<AppState>>, window: usize) -> Self {
        Replays {
            reader: engine.reader(),
            recent: Mutex::new(RecentOutcomes::with_capacity(window)),
            engine: Arc::downgrade(engine),
            lookups: OnceLock::new(),
        }
    }

    /// Remembers that the keyed write at `receipt` touched record `id` of `M` first.
    pub(crate) fn remember<M: Model>(&self, receipt: &Receipt, id: Id) {
        assert!(
            !receipt.duplicate,
            "only a first execution has an outcome to remember"
        );
        if !receipt.has_events() {
            // No log index of its own (see `Receipt::has_events`), and no key remembered.
            return;
        }
        let mut recent = self.recent.lock().expect("recent outcomes poisoned");
        recent.insert(receipt.first_index, M::NAME, id);
    }

    /// The id remembered for the write at `receipt`: `None` when it is not in the window,
    /// `Some(None)` when it touched another model.
    fn remembered<M: Model>(&self, receipt: &Receipt) -> Option<Option<Id>> {
        let recent = self.recent.lock().expect("recent outcomes poisoned");
        let (model, id) = recent.get(receipt.first_index)?;
        Some((model == M::NAME).then(|| id.clone()))
    }

    /// Answers the idempotent retry of the write at `receipt` with the record it touched, as
    /// it is now: at once from the window, else from the lookup thread (`answer` then runs
    /// there). Never blocks and never reads the log on the calling thread.
    pub(crate) fn replay<M: Model>(
        &self,
        receipt: Receipt,
        answer: impl FnOnce(Result<(M, u64), ReplayError>) + Send + 'static,
    ) {
        assert!(receipt.duplicate, "only a retry is replayed");
        if let Some(remembered) = self.remembered::<M>(&receipt) {
            let found = remembered.ok_or(ReplayError::KeyReused);
            return answer(found.and_then(|id| self.reader.read(|state| current::<M>(state, id))));
        }
        let engine = Weak::clone(&self.engine);
        let lookup: Lookup = Box::new(move |admitted| match admitted {
            Err(reason) => answer(Err(ReplayError::Unavailable(reason))),
            Ok(()) => answer(replay_from_log::<M>(&engine, &receipt)),
        });
        let Some(lookups) = self.lookups.get_or_init(start_lookups) else {
            return lookup(Err("no thread to read the log back; retry later"));
        };
        match lookups.try_send(lookup) {
            Ok(()) => {}
            Err(TrySendError::Full(lookup)) => {
                lookup(Err("too many retries are waiting for the log; retry later"))
            }
            Err(TrySendError::Disconnected(lookup)) => lookup(Err("the app is shutting down")),
        }
    }
}

/// The record `id` of `M` in `state`, with its version (a copy: called under the read lock).
fn current<M: Model>(state: &AppState, id: Id) -> Result<(M, u64), ReplayError> {
    match state.collection::<M>().get(&id) {
        Some(record) => Ok((record.value.clone(), record.version)),
        None => Err(ReplayError::Gone(id)),
    }
}

/// The lookup thread: runs lookups one at a time until every sender is gone (it holds none
/// itself, so it ends with the last `Replays`). `None` when it cannot be started.
fn start_lookups() -> Option<SyncSender<Lookup>> {
    let (sender, receiver) = sync_channel::<Lookup>(REPLAY_LOOKUPS_QUEUED_MAX);
    let spawned = std::thread::Builder::new()
        .name("lithair-replays".into())
        .spawn(move || {
            while let Ok(lookup) = receiver.recv() {
                lookup(Ok(()));
            }
        });
    match spawned {
        Ok(_) => Some(sender),
        Err(error) => {
            eprintln!("lithair: no thread for idempotent retries that need the log: {error}");
            None
        }
    }
}

/// A retry's answer read back from the log (on the lookup thread). The engine is upgraded
/// here, so if this turns out to be its last owner it stops on this thread, not the applier.
fn replay_from_log<M: Model>(
    engine: &Weak<Engine<AppState>>,
    receipt: &Receipt,
) -> Result<(M, u64), ReplayError> {
    let engine = engine
        .upgrade()
        .ok_or(ReplayError::Unavailable("the engine is shut down"))?;
    let Some(id) = touched_in_log::<M>(&engine, receipt) else {
        // Read after the search, so a compaction during it is seen: a range the log no
        // longer holds says nothing about the key.
        let compacted = engine
            .log_start()
            .is_some_and(|start| start > receipt.first_index);
        return Err(match compacted {
            true => ReplayError::Forgotten,
            false => ReplayError::KeyReused,
        });
    };
    engine.read(|state| current::<M>(state, id))
}

/// The first committed event at `index`, read back from the log.
fn event_at(engine: &Engine<AppState>, index: u64) -> Option<Arc<Committed<AppEvent>>> {
    let mut subscription = engine.subscribe(index).ok()?;
    let event = subscription
        .next_timeout(Duration::from_millis(LOG_READ_TIMEOUT_MS))
        .ok()??;
    (event.envelope.index == index).then_some(event)
}

/// Longest wait for one event read back from the log, in milliseconds.
pub const LOG_READ_TIMEOUT_MS: u64 = 5_000;

/// The id of the first `M` record the command at `receipt` touched, read back from the log.
fn touched_in_log<M: Model>(engine: &Engine<AppState>, receipt: &Receipt) -> Option<Id> {
    if receipt.last_index < receipt.first_index {
        return None;
    }
    for index in receipt.first_index..=receipt.last_index {
        let event = event_at(engine, index)?;
        if let Some(Ok(typed)) = event.event.decode::<M>() {
            return Some(match typed {
                ModelEvent::Created(record) | ModelEvent::Replaced(record) => record.id(),
                ModelEvent::Updated { id, .. } | ModelEvent::Deleted { id } => id,
            });
        }
    }
    None
}

impl Handle {
    /// Wraps an open engine; every write enforces `checks`.
    pub fn new(engine: Arc<Engine<AppState>>, checks: Arc<Checks>) -> Self {
        Handle::with_outcome_window(engine, checks, RECENT_OUTCOMES_MAX)
    }

    /// Like [`Handle::new`], remembering the outcomes of the last `window` keyed writes in
    /// memory (older retries are answered by reading the log back).
    ///
    /// # Panics
    /// If `window` is 0.
    pub fn with_outcome_window(
        engine: Arc<Engine<AppState>>,
        checks: Arc<Checks>,
        window: usize,
    ) -> Self {
        let replays = Arc::new(Replays::new(&engine, window));
        Handle {
            engine,
            checks,
            replays,
        }
    }

    /// Answers idempotent retries; safe to capture in a `then` of [`Handle::execute_then`].
    pub(crate) fn replays(&self) -> Arc<Replays> {
        Arc::clone(&self.replays)
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine<AppState>> {
        &self.engine
    }

    /// Runs `f` on the committed state under the read lock; copy out what you need.
    pub fn read<R>(&self, f: impl FnOnce(&AppState) -> R) -> R {
        self.engine.read(f)
    }

    /// The record `id` of `M`, with its version.
    pub fn get<M: Model>(&self, id: &Id) -> Option<(M, u64)> {
        self.read(|state| {
            state
                .collection::<M>()
                .get(id)
                .map(|r| (r.value.clone(), r.version))
        })
    }

    /// Runs a command: `decide` reads through a `Tx` and stages events; they are durable and
    /// applied when this returns `Ok`.
    pub fn execute<T: Send + 'static>(
        &self,
        meta: Meta,
        decide: impl Fn(&mut Tx<'_>) -> Result<T, Rejection> + Send + Sync + 'static,
    ) -> Result<Executed<T>, WriteError> {
        let (command, output) = tx_command(Arc::clone(&self.checks), decide);
        executed(self.engine.submit_with(command, meta), &output)
    }

    /// Runs a command without waiting: `then` receives what [`Handle::execute`] would return,
    /// once the events are durable and applied. Never blocks (a full engine queue answers
    /// `WriteError::Unavailable` at once), so it may be called from an HTTP reactor.
    ///
    /// `then` runs on the engine's applier thread (see `Engine::submit_then`): keep it quick,
    /// never block or wait on another write in it, and do not capture a `Handle` in it (the
    /// last handle dropped there would stop the engine from its own thread).
    pub fn execute_then<T: Send + 'static>(
        &self,
        meta: Meta,
        decide: impl Fn(&mut Tx<'_>) -> Result<T, Rejection> + Send + Sync + 'static,
        then: impl FnOnce(Result<Executed<T>, WriteError>) + Send + 'static,
    ) {
        let (command, output) = tx_command(Arc::clone(&self.checks), decide);
        let then = move |outcome| then(executed(outcome, &output));
        self.engine.try_submit_then(command, meta, Box::new(then));
    }

    /// Creates a record (an integer id of 0 is assigned).
    pub fn create<M: Model>(&self, record: M) -> Result<M, WriteError> {
        let executed = self.execute(Meta::default(), move |tx| tx.create(record.clone()))?;
        Ok(executed
            .output
            .expect("no idempotency key, so never a duplicate"))
    }

    /// Changes the fields present in `patch`.
    pub fn update<M: Model>(&self, id: Id, patch: M::Patch) -> Result<M, WriteError> {
        let executed = self.execute(Meta::default(), move |tx| {
            tx.update::<M>(&id, patch.clone())
        })?;
        Ok(executed
            .output
            .expect("no idempotency key, so never a duplicate"))
    }

    /// Deletes a record.
    pub fn delete<M: Model>(&self, id: Id) -> Result<M, WriteError> {
        let executed = self.execute(Meta::default(), move |tx| tx.delete::<M>(&id))?;
        Ok(executed
            .output
            .expect("no idempotency key, so never a duplicate"))
    }

    /// The first committed event at `index`, read back from the log (used to answer an
    /// idempotent retry with the outcome of the original request). Blocks up to
    /// [`LOG_READ_TIMEOUT_MS`].
    pub fn event_at(&self, index: u64) -> Option<Arc<Committed<AppEvent>>> {
        event_at(&self.engine, index)
    }

    /// Remembers that the keyed write at `receipt` produced record `id` of `M`.
    pub fn remember_outcome<M: Model>(&self, receipt: &Receipt, id: Id) {
        self.replays.remember::<M>(receipt, id);
    }

    /// The id of the `M` record the command at `receipt` touched first, for idempotent retries:
    /// from memory when this process ran it recently, else read back from the log (blocks:
    /// never call it on the applier or a reactor).
    pub fn id_touched_by<M: Model>(&self, receipt: &Receipt) -> Option<Id> {
        match self.replays.remembered::<M>(receipt) {
            Some(remembered) => remembered,
            None => touched_in_log::<M>(&self.engine, receipt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_window_keeps_the_newest_and_finds_by_index() {
        let mut recent = RecentOutcomes::with_capacity(3);
        for index in [10, 12, 15, 20] {
            recent.insert(index, "Post", Id::Int(index));
        }
        assert_eq!(recent.get(10), None, "the oldest was evicted");
        assert_eq!(recent.get(12), Some(("Post", &Id::Int(12))));
        assert_eq!(recent.get(20), Some(("Post", &Id::Int(20))));
        assert_eq!(recent.get(13), None);
        // Out of order (a caller other than the applier): still sorted, still bounded.
        recent.insert(14, "Item", Id::Str("a".into()));
        assert_eq!(recent.get(12), None, "the oldest was evicted");
        assert_eq!(recent.get(14), Some(("Item", &Id::Str("a".into()))));
        assert_eq!(recent.get(15), Some(("Post", &Id::Int(15))));
        recent.insert(15, "Post", Id::Int(99));
        assert_eq!(recent.get(15), Some(("Post", &Id::Int(99))), "replaced");
        assert_eq!(recent.entries.len(), 3);
        let indexes: Vec<u64> = recent.entries.iter().map(|(at, _, _)| *at).collect();
        assert_eq!(indexes, [14, 15, 20]);
    }

    #[test]
    fn the_outcome_window_holds_a_bounded_number_of_id_bytes() {
        let mut recent = RecentOutcomes::with_capacity(RECENT_OUTCOMES_MAX);
        let long = |fill: char| Id::Str(std::iter::repeat_n(fill, 1024 * 1024).collect());
        for index in 1..=40 {
            recent.insert(index, "Item", long('a'));
        }
        let held: usize = recent.entries.iter().map(|(_, _, id)| id_bytes(id)).sum();
        assert!(
            held <= RECENT_OUTCOMES_ID_BYTES_MAX,
            "{held} bytes of ids held"
        );
        assert_eq!(held, recent.id_bytes);
        assert_eq!(
            recent.get(40),
            Some(("Item", &long('a'))),
            "the newest stays"
        );
        assert_eq!(recent.get(1), None, "the oldest went first");
        // A replaced outcome gives its bytes back; an id past the whole budget is not kept
        // (it would evict every other outcome).
        recent.insert(40, "Item", Id::Int(7));
        let kept = recent.entries.len();
        let too_long = Id::Str("x".repeat(RECENT_OUTCOMES_ID_BYTES_MAX + 1));
        recent.insert(41, "Item", too_long);
        assert_eq!((recent.entries.len(), recent.get(41)), (kept, None));
        let held: usize = recent.entries.iter().map(|(_, _, id)| id_bytes(id)).sum();
        assert_eq!(held, recent.id_bytes);
        assert_eq!(held, (kept - 1) * 1024 * 1024);
    }

    #[test]
    #[should_panic(expected = "at least one outcome")]
    fn an_empty_outcome_window_is_refused() {
        let _ = RecentOutcomes::with_capacity(0);
    }
}
