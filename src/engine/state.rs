//! What a user implements (`State`, `Command`) and the engine's bookkeeping around the state
//! (`Tracked`: aggregate versions and the idempotency window), which travels in snapshots.
//!
//! Owns: the deterministic apply path shared by live commits, the sequencer's speculative copy
//! and replay. Must not: read clocks, randomness or the environment.

use super::envelope::Envelope;
use crate::binary::{self, Decode, Encode, Reader};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The application state: in RAM, changed only by applying events in log order.
///
/// `Clone` is required because the sequencer keeps a speculative copy that already includes
/// accepted-but-not-yet-durable events (see the module docs of `engine`).
pub trait State: Encode + Decode + Clone + Send + Sync + 'static {
    /// The events that change this state.
    type Event: Encode + Decode + Send + Sync + 'static;

    /// Applies one event. Must be deterministic: no clock, randomness or environment.
    fn apply(&mut self, event: &Self::Event);

    /// Name of an event's type, stored in its envelope (used by `log inspect` filters and by
    /// upcasters).
    fn event_type(event: &Self::Event) -> &'static str {
        let _ = event;
        "event"
    }

    /// Current schema version of the event payloads; older ones are upcast during replay.
    const SCHEMA_VERSION: u32 = 1;

    /// The aggregate (e.g. a record id) an event changes, for optimistic concurrency: each event
    /// naming an aggregate bumps its version by one.
    fn aggregate(event: &Self::Event) -> Option<u64> {
        let _ = event;
        None
    }
}

/// A request to change the state: decided against the current state (including accepted but
/// not yet durable commands), producing events or a typed rejection.
pub trait Command<S: State>: Send + 'static {
    /// Why the command can be refused.
    type Rejection: Send + 'static;

    /// Decides. Reads the time and ids from `context`, never from the system. Runs on the
    /// sequencer thread: it must not submit to the same engine and wait (that would deadlock).
    fn decide(&self, state: &S, context: &Context) -> Result<Vec<S::Event>, Self::Rejection>;
}

/// What the sequencer tells a command while it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Index the first event of this command will get (events are numbered consecutively).
    pub first_index: u64,
    /// Sequencer time, milliseconds since the Unix epoch (non-decreasing).
    pub timestamp_ms: u64,
    /// Id of this command (unique, increasing).
    pub request_id: u64,
}

/// Optional metadata of a submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// A retried submission with the same key returns the first one's receipt.
    pub idempotency_key: Option<Arc<str>>,
    /// Who issues the command.
    pub actor: Option<Arc<str>>,
    /// Correlation id for tracing.
    pub correlation_id: Option<Arc<str>>,
    /// Optimistic concurrency: `(aggregate, version)` the caller expects.
    pub expected_version: Option<(u64, u64)>,
}

/// Outcome of an accepted command once its events are durable and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Index of the first event (equals `last_index + 1` when the command produced none).
    pub first_index: u64,
    /// Index of the last event.
    pub last_index: u64,
    /// Sequencer timestamp of the command.
    pub timestamp_ms: u64,
    /// Command id.
    pub request_id: u64,
    /// True when this is the stored outcome of an earlier submission with the same key.
    pub duplicate: bool,
}

/// One committed event, as delivered to subscribers and post-commit hooks.
#[derive(Debug, Clone)]
pub struct Committed<E> {
    /// Its metadata.
    pub envelope: Envelope,
    /// The event.
    pub event: E,
}

/// A payload conversion from one schema version to the next.
pub type Convert = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// Turns a payload of schema version `from_version` into version `from_version + 1`.
#[derive(Clone)]
pub struct Upcaster {
    /// Event type it applies to (`None`: every type).
    pub event_type: Option<String>,
    /// Version it reads.
    pub from_version: u32,
    /// The conversion.
    pub convert: Convert,
}

impl std::fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .finish_non_exhaustive()
    }
}

/// The user state plus what the engine derives from the same events: aggregate versions and
/// the idempotency window. Snapshotted and replayed as a unit so both stay consistent.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    /// The user state.
    pub state: S,
    /// Index of the last applied event.
    pub applied_index: u64,
    /// Largest command id seen, so ids stay unique across restarts.
    pub last_request_id: u64,
    versions: HashMap<u64, u64>,
    idempotency: HashMap<Arc<str>, Receipt>,
    idempotency_order: VecDeque<Arc<str>>,
    idempotency_keys_max: usize,
}

impl<S: State> Tracked<S> {
    /// Wraps `state` whose last applied index is `applied_index`.
    pub fn new(state: S, applied_index: u64, idempotency_keys_max: usize) -> Self {
        Tracked {
            state,
            applied_index,
            last_request_id: 0,
            versions: HashMap::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            idempotency_keys_max,
        }
    }

    /// Applies one event at `envelope_index` produced by command `request_id`, asserting log
    /// order.
    pub fn apply(&mut self, envelope_index: u64, request_id: u64, event: &S::Event) {
        assert_eq!(
            envelope_index,
            self.applied_index + 1,
            "events must be applied in log order"
        );
        self.state.apply(event);
        self.last_request_id = self.last_request_id.max(request_id);
        if let Some(aggregate) = S::aggregate(event) {
            *self.versions.entry(aggregate).or_insert(0) += 1;
        }
        self.applied_index = envelope_index;
    }

    /// Cluster mode: consumes the indexes up to `index` held by Raft-internal entries (no-ops,
    /// membership changes), which change no state.
    ///
    /// # Panics
    /// If `index` lies below the applied index (log order).
    pub fn skip_to(&mut self, index: u64) {
        assert!(
            index >= self.applied_index,
            "skip to {index} below the applied index {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// Records the receipt of a command with an idempotency key, evicting the oldest keys past
    /// the configured bound.
    pub fn remember(&mut self, key: &Arc<str>, receipt: Receipt) {
        // One lookup (the key is hashed once; SipHash, since keys come from clients).
        match self.idempotency.entry(Arc::clone(key)) {
            // Replay sees one entry per event of the command: widen the stored range.
            Entry::Occupied(mut stored) if stored.get().request_id == receipt.request_id => {
                stored.get_mut().last_index = receipt.last_index
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(vacant) => {
                vacant.insert(receipt);
                self.idempotency_order.push_back(Arc::clone(key));
            }
        }
        while self.idempotency_order.len() > self.idempotency_keys_max {
            if let Some(old) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&old);
            }
        }
    }

    /// The stored receipt of a key, if it is in the window.
    pub fn receipt_of(&self, key: &str) -> Option<Receipt> {
        self.idempotency.get(key).copied()
    }

    /// Version of an aggregate: the number of events that named it.
    pub fn version(&self, aggregate: u64) -> u64 {
        self.versions.get(&aggregate).copied().unwrap_or(0)
    }

    /// Encodes the whole tracked state for a snapshot.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let mark = binary::begin_struct(out);
        binary::write_varint(out, self.applied_index);
        binary::write_varint(out, self.last_request_id);
        self.state.encode(out);
        let mut versions: Vec<(u64, u64)> = self.versions.iter().map(|(a, v)| (*a, *v)).collect();
        versions.sort_unstable();
        versions.encode(out);
        binary::write_varint(out, self.idempotency_order.len() as u64);
        for key in &self.idempotency_order {
            let receipt = self.idempotency[key];
            key.encode(out);
            for value in [
                receipt.first_index,
                receipt.last_index,
                receipt.timestamp_ms,
                receipt.request_id,
            ] {
                binary::write_varint(out, value);
            }
        }
        binary::end_struct(out, mark);
    }

    /// Decodes a snapshot written by [`Tracked::encode_snapshot`].
    pub fn decode_snapshot(
        bytes: &[u8],
        idempotency_keys_max: usize,
    ) -> Result<Self, binary::Error> {
        let mut reader = Reader::new(bytes);
        let mut body = reader.struct_body()?;
        let applied_index = body.read_varint()?;
        let last_request_id = body.read_varint()?;
        let state = S::decode(&mut body)?;
        let mut tracked = Tracked::new(state, applied_index, idempotency_keys_max);
        tracked.last_request_id = last_request_id;
        let versions = Vec::<(u64, u64)>::decode(&mut body)?;
        tracked.versions = versions.into_iter().collect();
        let keys = body.read_count(5)?;
        for _ in 0..keys {
            let key: Arc<str> = Decode::decode(&mut body)?;
            let mut values = [0u64; 4];
            for value in &mut values {
                *value = body.read_varint()?;
            }
            let [first_index, last_index, timestamp_ms, request_id] = values;
            let receipt = Receipt {
                first_index,
                last_index,
                timestamp_ms,
                request_id,
                duplicate: false,
            };
            tracked.remember(&key, receipt);
        }
        reader.finish()?;
        Ok(tracked)
    }
}

/// Bytes of a state digest.
pub const DIGEST_BYTES: usize = 32;

/// SHA-256 of the binary encoding of the state: a stable digest to compare replays and
/// replicas (equal for equal states as long as the encoding is deterministic, e.g. ordered
/// maps).
pub fn digest<S: Encode>(state: &S) -> [u8; DIGEST_BYTES] {
    crate::crypto::sha256::sha256(&binary::to_vec(state))
}

/// A digest as lowercase hex, for printing.
pub fn digest_hex(digest: &[u8; DIGEST_BYTES]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
