//! `Handle`: the programmatic face of a running app. Reads copy out of the committed state;
//! writes run a command through the engine (the same path the HTTP routes take).
//!
//! Owns: turning engine outcomes into `WriteError`s, and recovering the outcome of an
//! idempotent retry.
//! Must not: know about HTTP.

use std::sync::Arc;
use std::time::Duration;

use super::command::{tx_command, Checks, Tx};
use super::model::{Id, Model, ModelEvent, Rejection};
use super::state::{AppEvent, AppState};
use crate::engine::{Committed, Engine, Meta, Receipt, SubmitError};

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
    }
}

/// A cheap, cloneable handle on a running app's engine.
#[derive(Clone)]
pub struct Handle {
    engine: Arc<Engine<AppState>>,
    checks: Arc<Checks>,
    /// Recent outcomes of writes that carried an idempotency key: first log index -> record id,
    /// so a retry is answered without reading the log back (after a restart it falls back to
    /// the log).
    recent: Arc<std::sync::Mutex<RecentOutcomes>>,
}

/// Idempotent outcomes remembered in memory, oldest evicted first.
pub const RECENT_OUTCOMES_MAX: usize = 65_536;

#[derive(Default)]
struct RecentOutcomes {
    by_index: std::collections::HashMap<u64, Id>,
    order: std::collections::VecDeque<u64>,
}

impl Handle {
    /// Wraps an open engine; every write enforces `checks`.
    pub fn new(engine: Arc<Engine<AppState>>, checks: Arc<Checks>) -> Self {
        Handle {
            engine,
            checks,
            recent: Arc::default(),
        }
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
    /// idempotent retry with the outcome of the original request).
    pub fn event_at(&self, index: u64) -> Option<Arc<Committed<AppEvent>>> {
        let mut subscription = self.engine.subscribe(index).ok()?;
        let event = subscription.next_timeout(Duration::from_secs(5)).ok()??;
        (event.envelope.index == index).then_some(event)
    }

    /// Remembers that the keyed write at `receipt` produced record `id`.
    pub fn remember_outcome(&self, receipt: &Receipt, id: Id) {
        let mut recent = self.recent.lock().expect("recent outcomes poisoned");
        if recent.by_index.insert(receipt.first_index, id).is_none() {
            recent.order.push_back(receipt.first_index);
        }
        while recent.order.len() > RECENT_OUTCOMES_MAX {
            if let Some(oldest) = recent.order.pop_front() {
                recent.by_index.remove(&oldest);
            }
        }
    }

    /// The id of the `M` record the command at `receipt` touched first, for idempotent retries:
    /// from memory when this process ran it, else read back from the log.
    pub fn id_touched_by<M: Model>(&self, receipt: &Receipt) -> Option<Id> {
        let remembered = self
            .recent
            .lock()
            .expect("recent outcomes poisoned")
            .by_index
            .get(&receipt.first_index)
            .cloned();
        if remembered.is_some() {
            return remembered;
        }
        if receipt.last_index < receipt.first_index {
            return None;
        }
        for index in receipt.first_index..=receipt.last_index {
            let event = self.event_at(index)?;
            if let Some(Ok(typed)) = event.event.decode::<M>() {
                return Some(match typed {
                    ModelEvent::Created(record) | ModelEvent::Replaced(record) => record.id(),
                    ModelEvent::Updated { id, .. } | ModelEvent::Deleted { id } => id,
                });
            }
        }
        None
    }
}
