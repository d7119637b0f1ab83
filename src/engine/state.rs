//! What a user implements (`State`, `Command`) and the engine's bookkeeping around the state
//! (`Tracked`: aggregate versions and the idempotency window), which travels in snapshots.
//!
//! Owns: the deterministic apply path shared by live commits, the sequencer's speculative copy
//! and replay. Must not: read clocks, randomness or the environment.

use super::envelope::Envelope;
use crate::binary::{self, Decode, Encode, Reader};
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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
    idempotency: KeyWindow,
}

impl<S: State> Tracked<S> {
    /// Wraps `state` whose last applied index is `applied_index`.
    pub fn new(state: S, applied_index: u64, idempotency_keys_max: usize) -> Self {
        Tracked {
            state,
            applied_index,
            last_request_id: 0,
            versions: HashMap::new(),
            idempotency: KeyWindow::new(idempotency_keys_max),
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
        self.idempotency.remember(key, receipt);
    }

    /// The stored receipt of a key, if it is in the window.
    pub fn receipt_of(&self, key: &str) -> Option<Receipt> {
        self.idempotency.get(key)
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
        binary::write_varint(out, self.idempotency.len() as u64);
        for (key, receipt) in self.idempotency.iter() {
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

/// Hasher of a table whose keys are already the output of a keyed hash: passes the `u64`
/// through instead of hashing it again.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The table only hashes `u64`s (`write_u64`); fold anything else in all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One key of the idempotency window.
#[derive(Debug, Clone)]
struct WindowSlot {
    /// The window's hash of `key`, kept so eviction never reads or hashes the key again.
    hash: u64,
    key: Arc<str>,
    receipt: Receipt,
}

/// The idempotency window: the receipts of the last `keys_max` keys, evicted oldest first.
///
/// Keys come from clients, so they are hashed with a keyed SipHash (`RandomState`), once per
/// call. The table is keyed by that 64-bit hash: an eviction removes it without hashing the
/// key again, and growing the table moves integers without rereading any key (the string of
/// a key evicted 100k writes later is a cache miss). A slot's full key settles equality; a
/// key whose hash collides with another's present key (rare, and not choosable by a client
/// who does not know the hash key) goes to `collided`, keyed by the string itself.
/// INVARIANT: every slot of `order` is in exactly one of `by_hash` and `collided`, under its
/// position, and neither holds anything else.
#[derive(Debug, Clone)]
struct KeyWindow {
    hasher: RandomState,
    /// Slots in arrival order: the slot at offset `i` has position `evicted + i`.
    order: VecDeque<WindowSlot>,
    /// Slots evicted so far: the position of the front of `order`.
    evicted: u64,
    by_hash: HashMap<u64, u64, BuildHasherDefault<PassThrough>>,
    collided: HashMap<Arc<str>, u64>,
    keys_max: usize,
}

impl KeyWindow {
    fn new(keys_max: usize) -> KeyWindow {
        KeyWindow {
            hasher: RandomState::new(),
            order: VecDeque::new(),
            evicted: 0,
            by_hash: HashMap::default(),
            collided: HashMap::new(),
            keys_max,
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    /// Keys and receipts, oldest first.
    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, Receipt)> + '_ {
        self.order.iter().map(|slot| (&slot.key, slot.receipt))
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Offset in `order` of the slot at `position`.
    fn offset(&self, position: u64) -> usize {
        assert!(position >= self.evicted, "position {position} was evicted");
        let offset = usize::try_from(position - self.evicted).expect("offset fits usize");
        assert!(
            offset < self.order.len(),
            "position {position} not yet used"
        );
        offset
    }

    /// The position of `key`, whose hash is `hash`, if it is in the window.
    fn position(&self, key: &str, hash: u64) -> Option<u64> {
        if let Some(&position) = self.by_hash.get(&hash) {
            if *self.order[self.offset(position)].key == *key {
                return Some(position);
            }
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(key).copied()
    }

    fn get(&self, key: &str) -> Option<Receipt> {
        self.get_hashed(key, self.hash(key))
    }

    fn get_hashed(&self, key: &str, hash: u64) -> Option<Receipt> {
        let position = self.position(key, hash)?;
        Some(self.order[self.offset(position)].receipt)
    }

    fn remember(&mut self, key: &Arc<str>, receipt: Receipt) {
        let hash = self.hash(key);
        self.remember_hashed(key, hash, receipt);
    }

    fn remember_hashed(&mut self, key: &Arc<str>, hash: u64, receipt: Receipt) {
        if let Some(position) = self.position(key, hash) {
            let offset = self.offset(position);
            let stored = &mut self.order[offset].receipt;
            // Replay sees one entry per event of the command: widen the stored range.
            if stored.request_id == receipt.request_id {
                stored.last_index = receipt.last_index;
            }
            return;
        }
        let position = self.evicted + self.order.len() as u64;
        match self.by_hash.entry(hash) {
            Entry::Vacant(vacant) => {
                vacant.insert(position);
            }
            Entry::Occupied(_) => {
                let previous = self.collided.insert(Arc::clone(key), position);
                assert!(previous.is_none(), "a collided key was already present");
            }
        }
        let key = Arc::clone(key);
        self.order.push_back(WindowSlot { hash, key, receipt });
        while self.order.len() > self.keys_max {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .order
            .pop_front()
            .expect("evicting from an empty window");
        let position = self.evicted;
        self.evicted += 1;
        if self.by_hash.get(&oldest.hash) == Some(&position) {
            self.by_hash.remove(&oldest.hash);
        } else {
            let removed = self.collided.remove(&*oldest.key);
            assert_eq!(
                removed,
                Some(position),
                "a window key is in by_hash or collided"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The window as it was written before `KeyWindow`: a map by key and a FIFO of keys.
    #[derive(Default)]
    struct Model {
        receipts: HashMap<Arc<str>, Receipt>,
        order: VecDeque<Arc<str>>,
    }

    impl Model {
        fn remember(&mut self, key: &Arc<str>, receipt: Receipt, keys_max: usize) {
            match self.receipts.get_mut(key) {
                Some(stored) if stored.request_id == receipt.request_id => {
                    stored.last_index = receipt.last_index
                }
                Some(_) => {}
                None => {
                    self.receipts.insert(Arc::clone(key), receipt);
                    self.order.push_back(Arc::clone(key));
                }
            }
            while self.order.len() > keys_max {
                let old = self.order.pop_front().expect("non-empty");
                self.receipts.remove(&old);
            }
        }
    }

    fn receipt(request_id: u64, last_index: u64) -> Receipt {
        Receipt {
            first_index: 1,
            last_index,
            timestamp_ms: 7,
            request_id,
            duplicate: false,
        }
    }

    /// Runs `steps` (key number, request id) on a window and on the model; `colliding` gives
    /// keys one of three hashes, so most keys collide.
    fn check(keys_max: usize, steps: &[(u8, u64)], colliding: bool) {
        let (mut window, mut model) = (KeyWindow::new(keys_max), Model::default());
        for (step, &(number, request_id)) in steps.iter().enumerate() {
            let key: Arc<str> = Arc::from(format!("key-{number}"));
            let hash = |window: &KeyWindow| {
                if colliding {
                    u64::from(number % 3)
                } else {
                    window.hash(&key)
                }
            };
            let last_index = step as u64;
            let h = hash(&window);
            window.remember_hashed(&key, h, receipt(request_id, last_index));
            model.remember(&key, receipt(request_id, last_index), keys_max);
            assert_eq!(window.by_hash.len() + window.collided.len(), window.len());
            let listed: Vec<_> = window.iter().map(|(k, r)| (Arc::clone(k), r)).collect();
            let expected: Vec<_> = model
                .order
                .iter()
                .map(|k| (Arc::clone(k), model.receipts[k]))
                .collect();
            assert_eq!(listed, expected);
            for number in 0..24u8 {
                let probe = format!("key-{number}");
                let h = if colliding {
                    u64::from(number % 3)
                } else {
                    window.hash(&probe)
                };
                let wanted = model.receipts.get(probe.as_str()).copied();
                assert_eq!(window.get_hashed(&probe, h), wanted, "{probe}");
            }
        }
    }

    #[test]
    fn the_window_keeps_the_newest_keys_and_widens_a_repeated_command() {
        let mut window = KeyWindow::new(2);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        window.remember(&a, receipt(1, 1));
        window.remember(&a, receipt(1, 2));
        window.remember(&a, receipt(9, 3));
        assert_eq!(window.get("a"), Some(receipt(1, 2)));
        window.remember(&b, receipt(2, 4));
        window.remember(&c, receipt(3, 5));
        assert_eq!(window.get("a"), None);
        assert_eq!(window.get("b"), Some(receipt(2, 4)));
        assert_eq!(window.get("c"), Some(receipt(3, 5)));
        assert_eq!(window.len(), 2);
    }

    #[test]
    fn colliding_hashes_keep_every_key_apart() {
        let steps: Vec<(u8, u64)> = (0..40u8).map(|n| (n % 9, u64::from(n % 4))).collect();
        check(4, &steps, true);
        check(1, &steps, true);
    }

    proptest! {
        #[test]
        fn the_window_behaves_as_a_map_with_a_fifo(
            keys_max in 1usize..8,
            steps in proptest::collection::vec((0u8..12, 0u64..3), 0..60),
            colliding: bool,
        ) {
            check(keys_max, &steps, colliding);
        }
    }
}
