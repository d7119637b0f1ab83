//! What a user implements (`State`, `Command`) and the engine's bookkeeping around the state
//! (`Tracked`: aggregate versions and the idempotency window), which travels in snapshots.
//!
//! Owns: the deterministic apply path shared by live commits, the sequencer's speculative copy
//! and replay. Must not: read clocks, randomness or the environment.

use super::chunked::Chunked;
use super::envelope::Envelope;
use super::state_digest::{self, DIGEST_BYTES};
use crate::binary::{self, Decode, Encode, Reader};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::Arc;

/// The application state: in RAM, changed only by applying events in log order.
///
/// `Clone` is required because the sequencer keeps a speculative copy that already includes
/// accepted-but-not-yet-durable events (see the module docs of `engine`). It is taken when a
/// node starts to sequence (at start, or when it is admitted to lead) and on every sequencer
/// rebuild, under the committed state's read lock: a large state should clone structurally
/// (shared, copy-on-write parts, as `app::cow_map::CowMap` gives an app's collections).
pub trait State: Encode + Decode + Clone + Send + Sync + 'static {
    /// The events that change this state.
    type Event: Encode + Decode + Send + Sync + 'static;

    /// Applies one event. Must be deterministic: no clock, randomness or environment. Must not
    /// fail: every check belongs in `Command::decide`. A panic here may leave the state half
    /// changed, so it stops the process (a restart replays the log).
    fn apply(&mut self, event: &Self::Event);

    /// Name of an event's type, stored in its envelope (used by `log inspect` filters and by
    /// upcasters).
    fn event_type(event: &Self::Event) -> &'static str {
        let _ = event;
        "event"
    }

    /// Current schema version of the event payloads; older ones are upcast during replay.
    const SCHEMA_VERSION: u32 = 1;

    /// Whether `clone` is structural (shared, copy-on-write parts: an app's state, see
    /// `app::cow_map`), so that a copy costs about nothing whatever the state's size.
    ///
    /// Background snapshots then start from a copy of the committed state taken under its
    /// read lock, and only encode it. Otherwise (the default) the snapshot thread rebuilds
    /// the state at the snapshot's index from the newest snapshot file and the log, which
    /// never touches the live state's lock but costs a decode of that file and a replay of
    /// the log after it on every snapshot.
    const CLONES_CHEAPLY: bool = false;

    /// The aggregate (e.g. a record id) an event changes, for optimistic concurrency: each event
    /// naming an aggregate bumps its version by one.
    fn aggregate(event: &Self::Event) -> Option<u64> {
        let _ = event;
        None
    }

    /// Encodes the state for a snapshot through `spill`, which hands the bytes to the file in
    /// pieces: the bytes must be exactly those of [`Encode::encode`], and the call is made
    /// twice (measure, then emit; see [`binary::Spill`]). The default encodes the whole state
    /// as one piece, which holds a state-sized buffer while the snapshot is written; a large
    /// state (a map of many records) overrides it to call [`binary::Spill::piece_done`]
    /// between records, so a snapshot never holds more than a piece of its encoding.
    fn encode_spilled(&self, spill: &mut binary::Spill<'_>) {
        self.encode(spill.out());
        spill.piece_done();
    }

    /// Decodes the state of a snapshot from `input`, a part at a time (the counterpart of
    /// [`State::encode_spilled`]). The default reads the rest of the snapshot body whole and
    /// decodes the state from it, holding a state-sized buffer while it does; a large state
    /// overrides it to decode a record per [`binary::Unspill::part`].
    ///
    /// # Errors
    /// As [`Decode::decode`].
    fn decode_spilled(input: &mut binary::Unspill<'_>) -> Result<Self, binary::Error> {
        input.rest(Self::decode)
    }

    /// The state digest as the state keeps it while it applies events: what every
    /// `/_lithair/cluster` answer carries, read under the committed state's read lock (which
    /// the applier's writes wait for), so a state that can answer it without a pass over
    /// itself should.
    ///
    /// Must equal [`State::digest_from_scratch`] at every applied index, whatever history
    /// built the state (`Engine::digest` asserts it). The default is the full recomputation
    /// ([`crate::engine::digest`]), O(state); a large state overrides both methods, keeping a
    /// [`crate::engine::MultisetHash`] of its records up in `apply` and rebuilding it on
    /// decode (as `AppState` does), which makes this O(1) in the records.
    fn digest(&self) -> [u8; DIGEST_BYTES] {
        state_digest::digest(self)
    }

    /// Called on the sequencer's speculative copy, whose digest is never asked for (it only
    /// decides commands): a state that keeps its digest up in `apply` (an `AppState`) may stop,
    /// and save that work on every event the sequencer applies. [`State::digest`] need not
    /// answer afterwards (an `AppState` panics). The default keeps everything as it is.
    fn stop_keeping_digest(&mut self) {}

    /// The state digest computed from the whole state: equal for equal states (so the same on
    /// replicas and after a replay), a pass over every record. The default is SHA-256 of the
    /// binary encoding ([`crate::engine::encoding_digest`]); a state that overrides
    /// [`State::digest`] computes here, from scratch, the same value its kept sums give.
    fn digest_from_scratch(&self) -> [u8; DIGEST_BYTES] {
        state_digest::encoding_digest(self)
    }
}

/// A request to change the state: decided against the current state (including accepted but
/// not yet durable commands), producing events or a typed rejection.
pub trait Command<S: State>: Send + 'static {
    /// Why the command can be refused.
    type Rejection: Send + 'static;

    /// Decides. Reads the time and ids from `context`, never from the system. Runs on the
    /// sequencer thread: it must not submit to the same engine and wait (that would deadlock).
    /// A panic here fails this command alone with [`crate::engine::SubmitError::Panicked`].
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
    /// A digest of the request the key came with (the HTTP layer hashes method, target and
    /// body): a submission whose key is in the window under another fingerprint is refused
    /// ([`crate::engine::SubmitError::KeyReused`]) instead of answered with the receipt of a
    /// different request. `None` on either side skips the comparison.
    pub request_fingerprint: Option<NonZeroU64>,
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
    /// The request fingerprint the command's key came with ([`Meta::request_fingerprint`]).
    pub request_fingerprint: Option<NonZeroU64>,
}

impl Receipt {
    /// Whether the command produced events (an eventless one takes no log index: the next
    /// command's events start at its `first_index`).
    pub fn has_events(&self) -> bool {
        self.last_index >= self.first_index
    }
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
    /// Wraps `state` whose last applied index is `applied_index`, remembering the receipts of
    /// the last `idempotency_keys_max` idempotency keys.
    /// A bound above [`IDEMPOTENCY_KEYS_MAX`] (tools pass `usize::MAX`: all) keeps that many.
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

    /// Encodes the whole tracked state for a snapshot into `out` (both passes of
    /// [`Tracked::encode_snapshot_spilled`], collected).
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let mut collect = |piece: &[u8]| {
            out.extend_from_slice(piece);
            Ok(())
        };
        binary::spill_through(|spill| self.encode_snapshot_spilled(spill), &mut collect);
    }

    /// Encodes the whole tracked state for a snapshot through `spill` (one pass of its two):
    /// a snapshot file is written from the emit pass in pieces, never from one buffer.
    pub fn encode_snapshot_spilled(&self, spill: &mut binary::Spill<'_>) {
        spill.begin_struct();
        binary::write_varint(spill.out(), self.applied_index);
        binary::write_varint(spill.out(), self.last_request_id);
        self.state.encode_spilled(spill);
        let mut versions: Vec<(u64, u64)> = self.versions.iter().map(|(a, v)| (*a, *v)).collect();
        versions.sort_unstable();
        binary::write_varint(spill.out(), versions.len() as u64);
        for pair in &versions {
            pair.encode(spill.out());
            spill.piece_done();
        }
        drop(versions);
        binary::write_varint(spill.out(), self.idempotency.len() as u64);
        for (key, receipt) in self.idempotency.iter() {
            let out = spill.out();
            key.encode(out);
            for value in [
                receipt.first_index,
                receipt.last_index,
                receipt.timestamp_ms,
                receipt.request_id,
            ] {
                binary::write_varint(out, value);
            }
            spill.piece_done();
        }
        // The keys' request fingerprints, in the same order: a section of its own after the
        // keys, so a snapshot written before fingerprints existed still decodes (it ends
        // here) and an older reader skips it (the struct is length-framed).
        binary::write_varint(spill.out(), self.idempotency.len() as u64);
        for (_, receipt) in self.idempotency.iter() {
            write_fingerprint(spill.out(), receipt.request_fingerprint);
            spill.piece_done();
        }
        spill.end_struct();
    }

    /// Decodes a snapshot written by [`Tracked::encode_snapshot`] (through
    /// [`Tracked::decode_snapshot_spilled`], the one decoder).
    pub fn decode_snapshot(
        bytes: &[u8],
        idempotency_keys_max: usize,
    ) -> Result<Self, binary::Error> {
        let mut at = 0;
        let mut source = |window: &mut Vec<u8>, want: usize| {
            window.extend_from_slice(&bytes[at..at + want]);
            at += want;
            Ok(())
        };
        let mut input = binary::Unspill::new(bytes.len() as u64, &mut source);
        let tracked = Self::decode_snapshot_spilled(&mut input, idempotency_keys_max)?;
        input.finish()?;
        Ok(tracked)
    }

    /// Decodes a snapshot body from `input`, a part at a time: a snapshot file is loaded
    /// through a bounded window, never read whole (unless the state cannot be decoded in
    /// parts: see [`State::decode_spilled`]). The caller checks that the input is finished.
    pub fn decode_snapshot_spilled(
        input: &mut binary::Unspill<'_>,
        idempotency_keys_max: usize,
    ) -> Result<Self, binary::Error> {
        input.begin_struct()?;
        let applied_index = input.part(|r| r.read_varint())?;
        let last_request_id = input.part(|r| r.read_varint())?;
        let state = S::decode_spilled(input)?;
        let mut tracked = Tracked::new(state, applied_index, idempotency_keys_max);
        tracked.last_request_id = last_request_id;
        let versions = input.part(Vec::<(u64, u64)>::decode)?;
        tracked.versions = versions.into_iter().collect();
        let keys = input.count(5)?;
        // `keys` is bounded by the bytes left (five per key at least), as before.
        let mut window = Vec::with_capacity(keys);
        for _ in 0..keys {
            let (key, values) = input.part(|body| {
                let key: Arc<str> = Decode::decode(body)?;
                let mut values = [0u64; 4];
                for value in &mut values {
                    *value = body.read_varint()?;
                }
                Ok((key, values))
            })?;
            let [first_index, last_index, timestamp_ms, request_id] = values;
            let receipt = Receipt {
                first_index,
                last_index,
                timestamp_ms,
                request_id,
                duplicate: false,
                request_fingerprint: None,
            };
            window.push((key, receipt));
        }
        if input.remaining() > 0 {
            if input.count(1)? != window.len() {
                return Err(binary::Error::custom(
                    "snapshot: fingerprints do not match the idempotency keys",
                ));
            }
            for (_, receipt) in &mut window {
                receipt.request_fingerprint = input.part(read_fingerprint)?;
            }
        }
        for (key, receipt) in &window {
            tracked.remember(key, *receipt);
        }
        input.end_struct()?;
        Ok(tracked)
    }
}

/// Writes an optional request fingerprint: a 0 byte, or 1 and its eight bytes (little-endian).
pub(crate) fn write_fingerprint(out: &mut Vec<u8>, fingerprint: Option<NonZeroU64>) {
    match fingerprint {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&value.get().to_le_bytes());
        }
    }
}

/// Reads what [`write_fingerprint`] wrote.
pub(crate) fn read_fingerprint(
    reader: &mut Reader<'_>,
) -> Result<Option<NonZeroU64>, binary::Error> {
    match reader.read_u8()? {
        0 => Ok(None),
        1 => {
            let bytes = reader.read_bytes(8)?;
            let value = u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| binary::Error::custom("short request fingerprint"))?,
            );
            NonZeroU64::new(value)
                .map(Some)
                .ok_or_else(|| binary::Error::custom("request fingerprint 0"))
        }
        _ => Err(binary::Error::custom("bad request fingerprint tag")),
    }
}

/// Most keys a window sizes its index for when it is created: the default bound (100,000
/// keys) is sized whole, so a full window never rehashes, while a window configured far
/// larger starts at this size and doubles its index while its keys fill it. (The slots need no
/// reservation: they are allocated a chunk at a time as keys arrive, and never moved.)
const WINDOW_PRESIZED_KEYS_MAX: usize = 1 << 20;

/// Slots of the window's ring per shared chunk (`2^10`, about 100 KiB): a clone of the window
/// shares the chunks, and after it the ring's writes copy one chunk per this many keys.
const WINDOW_SLOT_CHUNK_SHIFT: u32 = 10;

/// Bytes of one window slot: the key's hash, its receipt (request fingerprint included) and
/// its key inline up to `KEY_INLINE_BYTES`. Checked at compile time: the window's memory is
/// this times `idempotency_keys_max`, and a field added to a slot must be paid for knowingly.
const WINDOW_SLOT_BYTES: usize = 104;
const _: () = assert!(std::mem::size_of::<WindowSlot>() <= WINDOW_SLOT_BYTES);

/// Largest idempotency window ([`Tracked::new`], `EngineOptions::idempotency_keys_max`): its
/// index stores a slot number in 32 bits, next to 32 bits of the key's hash.
pub const IDEMPOTENCY_KEYS_MAX: usize = 1 << 30;

/// An empty entry of the window's index (a stored entry's slot number is never 0: it is the
/// slot's index plus one).
const EMPTY: u64 = 0;

/// Key bytes a window slot holds in itself (a UUID's 36 fit): the window keeps no pointer to
/// the client's key, so an eviction touches neither a cold reference count nor the allocator.
const KEY_INLINE_BYTES: usize = 46;

/// A window's copy of a key: inline up to [`KEY_INLINE_BYTES`], else on the heap.
#[derive(Debug, Clone)]
enum SlotKey {
    Inline {
        len: u8,
        bytes: [u8; KEY_INLINE_BYTES],
    },
    Heap(Box<str>),
}

impl SlotKey {
    fn new(key: &str) -> SlotKey {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= KEY_INLINE_BYTES => {
                let mut bytes = [0; KEY_INLINE_BYTES];
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                SlotKey::Inline { len, bytes }
            }
            _ => SlotKey::Heap(Box::from(key)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            SlotKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            SlotKey::Heap(key) => key.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            SlotKey::Inline { .. } => {
                std::str::from_utf8(self.as_bytes()).expect("a window key is copied from a str")
            }
            SlotKey::Heap(key) => key,
        }
    }
}

/// One key of the idempotency window.
#[derive(Debug, Clone)]
struct WindowSlot {
    /// The window's hash of `key`: compared before the key, and it finds the slot's index
    /// entry on eviction without hashing the key again.
    hash: u64,
    receipt: Receipt,
    key: SlotKey,
}

/// The idempotency window: the receipts of the last `keys_max` keys, evicted oldest first.
///
/// Keys come from clients, so they are hashed with a keyed SipHash (`RandomState`), once per
/// call. Slots live in a ring of at most `keys_max` slots: while the window fills, a new key
/// is pushed at the end; once full, it replaces the oldest in place (no deque growth, no
/// allocation per key). The index is an open-addressing table (linear probing, deletion by
/// backward shift, so no tombstones and no rehash in steady state) of `u64` entries:
/// `hash >> 32` in the high half (its low bits choose the home bucket) and slot + 1 in the
/// low half, beside one tag byte per bucket (0: empty, else 7 low bits of the hash): a lookup
/// of an absent key (the usual case: each write brings a new key) reads only the tags, an
/// eighth of the table's size and mostly in cache; a matching tag then reads the entry, and
/// a matching high half the slot. An eviction finds the oldest slot's entry by its stored
/// hash without reading its key. Keys whose hashes (or parts of them) collide simply sit in
/// successive buckets: a slot's full hash, then key, settles equality. The table has at
/// least twice as many buckets as keys (load at most 1/2), and is sized for `keys_max` once
/// the window is full.
///
/// A clone of the window is made under the committed state's read lock, so it must be quick.
/// The ring, 104 bytes a key, is [`Chunked`]: a clone shares it chunk by chunk, and a write
/// after it copies the chunk of the slot it takes, once per chunk (one reference-count
/// check a write that replaces a slot). The index, 9 bytes a bucket (at most 36 a key), is
/// copied whole: chunked too, it put a reference-count check (an atomic read-modify-write,
/// which waits for the index's scattered stores) into every bucket change, and a write cost
/// about twice as much (`cargo bench --bench window`, `steady`), where a clone of the default
/// window, its index copied, takes 71–91 µs (`clone`; 1.4–1.9 ms when the ring was copied
/// too).
/// INVARIANT: the table holds exactly one entry per slot, `(hash >> 32) << 32 | slot + 1`,
/// reachable from its home bucket without crossing an empty bucket, and nothing else; a
/// bucket's tag is 0 when it is empty, else the tag of its slot's hash.
#[derive(Debug, Clone)]
struct KeyWindow {
    hasher: RandomState,
    /// The ring; while it is shorter than `keys_max`, `oldest` is 0 and arrival order is
    /// index order.
    slots: Chunked<WindowSlot>,
    /// Index in `slots` of the oldest key, once the ring is full.
    oldest: usize,
    /// Open-addressing index, a power of two long.
    table: Vec<u64>,
    /// The tag of each bucket's entry (0: empty), as long as `table`.
    tags: Vec<u8>,
    keys_max: usize,
}

impl KeyWindow {
    fn new(keys_max: usize) -> KeyWindow {
        // Tools replay with no bound (`usize::MAX`): the index cannot number more slots.
        let keys_max = keys_max.min(IDEMPOTENCY_KEYS_MAX);
        let buckets = Self::buckets_for(keys_max.min(WINDOW_PRESIZED_KEYS_MAX));
        KeyWindow {
            hasher: RandomState::new(),
            slots: Chunked::new(WINDOW_SLOT_CHUNK_SHIFT),
            oldest: 0,
            table: vec![EMPTY; buckets],
            tags: vec![0; buckets],
            keys_max,
        }
    }

    /// Buckets of a table for `keys` keys: a power of two, at least twice as many.
    fn buckets_for(keys: usize) -> usize {
        (keys.max(1) * 2).next_power_of_two()
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Keys and receipts, oldest first.
    fn iter(&self) -> impl Iterator<Item = (&str, Receipt)> + '_ {
        (self.oldest..self.len())
            .chain(0..self.oldest)
            .map(|index| self.slots.get(index))
            .map(|slot| (slot.key.as_str(), slot.receipt))
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// The home bucket of an entry (or of a hash's entry: the high halves are equal).
    fn home(&self, entry: u64) -> usize {
        (entry >> 32) as usize & self.mask()
    }

    /// The table entry of slot `slot` holding a key whose hash is `hash`.
    fn entry_of(hash: u64, slot: usize) -> u64 {
        (hash >> 32) << 32 | (slot as u64 + 1)
    }

    /// The tag of a hash's bucket: never 0 (an empty bucket's), and from other bits than
    /// those that choose the home bucket.
    fn tag_of(hash: u64) -> u8 {
        0x80 | (hash as u8 & 0x7f)
    }

    /// The slot an entry points to.
    fn slot_of(entry: u64) -> usize {
        (entry as u32 as usize) - 1
    }

    /// The slot of `key`, whose hash is `hash`, if it is in the window.
    fn find(&self, key: &str, hash: u64) -> Option<usize> {
        let (mask, high, wanted) = (self.mask(), hash >> 32, Self::tag_of(hash));
        let mut bucket = self.home(hash);
        loop {
            let tag = self.tags[bucket];
            if tag == 0 {
                return None;
            }
            if tag == wanted {
                let entry = self.table[bucket];
                let slot = self.slots.get(Self::slot_of(entry));
                if entry >> 32 == high && slot.hash == hash && slot.key.as_bytes() == key.as_bytes()
                {
                    return Some(Self::slot_of(entry));
                }
            }
            bucket = (bucket + 1) & mask;
        }
    }

    fn get(&self, key: &str) -> Option<Receipt> {
        self.get_hashed(key, self.hash(key))
    }

    fn get_hashed(&self, key: &str, hash: u64) -> Option<Receipt> {
        let slot = self.find(key, hash)?;
        Some(self.slots.get(slot).receipt)
    }

    fn remember(&mut self, key: &str, receipt: Receipt) {
        let hash = self.hash(key);
        self.remember_hashed(key, hash, receipt);
    }

    fn remember_hashed(&mut self, key: &str, hash: u64, receipt: Receipt) {
        if let Some(slot) = self.find(key, hash) {
            let stored = &mut self.slots.get_mut(slot).receipt;
            // Replay sees one entry per event of the command: widen the stored range.
            if stored.request_id == receipt.request_id {
                stored.last_index = receipt.last_index;
            }
            return;
        }
        if self.keys_max == 0 {
            return; // A window of no keys remembers nothing.
        }
        let key = SlotKey::new(key);
        let slot = if self.slots.len() < self.keys_max {
            if (self.slots.len() + 1) * 2 > self.table.len() {
                self.grow_table();
            }
            self.slots
                .push(WindowSlot { hash, key, receipt }, self.keys_max);
            self.slots.len() - 1
        } else {
            // Full: the new key takes the oldest's slot.
            let slot = self.oldest;
            let evicted = self.slots.get(slot).hash;
            self.unindex(Self::entry_of(evicted, slot));
            *self.slots.get_mut(slot) = WindowSlot { hash, key, receipt };
            self.oldest = (slot + 1) % self.keys_max;
            slot
        };
        self.index(Self::entry_of(hash, slot), Self::tag_of(hash));
    }

    /// Puts `entry`, whose tag is `tag`, in the first empty bucket from its home on.
    fn index(&mut self, entry: u64, tag: u8) {
        let mask = self.mask();
        let mut bucket = self.home(entry);
        while self.tags[bucket] != 0 {
            bucket = (bucket + 1) & mask;
        }
        self.table[bucket] = entry;
        self.tags[bucket] = tag;
    }

    /// Removes `entry` from the table, moving back the entries after it that its bucket kept
    /// from their home (backward shift: lookups never cross an empty bucket they need).
    fn unindex(&mut self, entry: u64) {
        let mask = self.mask();
        let mut hole = self.home(entry);
        while self.table[hole] != entry {
            assert_ne!(self.table[hole], EMPTY, "a window slot has no index entry");
            hole = (hole + 1) & mask;
        }
        let mut bucket = hole;
        loop {
            bucket = (bucket + 1) & mask;
            let next = self.table[bucket];
            if next == EMPTY {
                break;
            }
            // `next` may fill the hole when the hole lies between its home and its bucket.
            let home = self.home(next);
            if bucket.wrapping_sub(home) & mask >= bucket.wrapping_sub(hole) & mask {
                self.table[hole] = next;
                self.tags[hole] = self.tags[bucket];
                hole = bucket;
            }
        }
        self.table[hole] = EMPTY;
        self.tags[hole] = 0;
    }

    /// Doubles the table (only while a window larger than its presized index fills).
    fn grow_table(&mut self) {
        let buckets = self.table.len() * 2;
        let table = std::mem::replace(&mut self.table, vec![EMPTY; buckets]);
        let tags = std::mem::replace(&mut self.tags, vec![0; buckets]);
        for (entry, tag) in table.into_iter().zip(tags).filter(|&(_, tag)| tag != 0) {
            self.index(entry, tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

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
            request_fingerprint: None,
        }
    }

    /// How a test hashes its keys: the window's own hash, or chosen hashes that collide.
    #[derive(Debug, Clone, Copy)]
    enum Hashing {
        /// The window's keyed hash.
        Keyed,
        /// One of three full hashes: most keys share their whole hash with others.
        Equal,
        /// Distinct full hashes whose high halves are one of three, near the end of the
        /// table (the probe sequences wrap around to bucket 0).
        HighHalf,
        /// Distinct high halves, all near the end of the table, and one tag for all.
        OneTag,
    }

    /// Key `number`: short ones are held inline by the window, every fourth one is too long
    /// for that.
    fn key_name(number: u8) -> String {
        match number % 4 {
            3 => format!("key-{number}-{}", "long".repeat(KEY_INLINE_BYTES / 4)),
            _ => format!("key-{number}"),
        }
    }

    fn hash_of(window: &KeyWindow, number: u8, hashing: Hashing) -> u64 {
        match hashing {
            Hashing::Keyed => window.hash(&key_name(number)),
            Hashing::Equal => u64::from(number % 3),
            Hashing::HighHalf => {
                let high = (window.table.len() as u64 - 1).wrapping_sub(u64::from(number % 3));
                high << 32 | u64::from(number)
            }
            Hashing::OneTag => {
                let high = (window.table.len() as u64 - 1).wrapping_sub(u64::from(number % 5));
                (high + window.table.len() as u64 * u64::from(number)) << 32 | 0x2a
            }
        }
    }

    /// A state of nothing, for snapshot layouts.
    #[derive(Clone)]
    struct Nothing;
    impl Encode for Nothing {
        fn encode(&self, _: &mut Vec<u8>) {}
    }
    impl Decode for Nothing {
        fn decode(_: &mut Reader<'_>) -> Result<Self, binary::Error> {
            Ok(Nothing)
        }
    }
    impl State for Nothing {
        type Event = ();
        fn apply(&mut self, _: &()) {}
    }

    /// Keys keep their request fingerprints through a snapshot, and a snapshot written before
    /// fingerprints existed (the window's keys end the body) still decodes, without them.
    #[test]
    fn snapshots_keep_request_fingerprints_and_read_those_written_without() {
        let mut tracked = Tracked::new(Nothing, 9, 16);
        for (key, fingerprint) in [("a", 7), ("b", 0), ("c", 8)] {
            let receipt = Receipt {
                request_fingerprint: NonZeroU64::new(fingerprint),
                ..receipt(fingerprint, 9)
            };
            tracked.remember(&Arc::from(key), receipt);
        }
        let mut bytes = Vec::new();
        tracked.encode_snapshot(&mut bytes);
        let decoded = Tracked::<Nothing>::decode_snapshot(&bytes, 16).expect("decodes");
        let fingerprints = |t: &Tracked<Nothing>| -> Vec<Option<u64>> {
            ["a", "b", "c"]
                .iter()
                .map(|k| {
                    t.receipt_of(k)
                        .and_then(|r| r.request_fingerprint)
                        .map(NonZeroU64::get)
                })
                .collect()
        };
        assert_eq!(fingerprints(&decoded), [Some(7), None, Some(8)]);
        // The older layout: the same body without the fingerprint section (a count and one
        // tag per key, 1 + 9 + 1 + 9 bytes here), under a length prefix that says so.
        let section = 1 + 9 + 1 + 9;
        let mut reader = Reader::new(&bytes);
        let body = reader.read_len().expect("a length");
        let start = bytes.len() - body;
        let mut old = Vec::new();
        let mark = binary::begin_struct(&mut old);
        old.extend_from_slice(&bytes[start..bytes.len() - section]);
        binary::end_struct(&mut old, mark);
        let decoded = Tracked::<Nothing>::decode_snapshot(&old, 16).expect("old layout");
        assert_eq!(fingerprints(&decoded), [None, None, None]);
        assert_eq!(decoded.receipt_of("c").map(|r| r.request_id), Some(8));
        // A section that does not match the keys is refused, not half read.
        let mut bad = Vec::new();
        let mark = binary::begin_struct(&mut bad);
        bad.extend_from_slice(&bytes[start..bytes.len() - section]);
        bad.extend_from_slice(&[2, 0, 0]);
        binary::end_struct(&mut bad, mark);
        assert!(Tracked::<Nothing>::decode_snapshot(&bad, 16).is_err());
    }

    /// Asserts the window's invariant: one table entry per slot, found from its home bucket,
    /// and nothing else; slots in arrival order from `oldest`.
    fn assert_consistent(window: &KeyWindow) {
        let entries: Vec<u64> = window
            .table
            .iter()
            .copied()
            .filter(|&e| e != EMPTY)
            .collect();
        assert_eq!(entries.len(), window.len(), "one entry per slot");
        assert_eq!(window.tags.len(), window.table.len());
        for (&entry, &tag) in window.table.iter().zip(&window.tags) {
            assert_eq!(
                entry == EMPTY,
                tag == 0,
                "a bucket is empty in both or neither"
            );
        }
        assert!(window.len() <= window.keys_max);
        assert!(window.len() * 2 <= window.table.len(), "load at most 1/2");
        assert!(window.oldest == 0 || window.len() == window.keys_max);
        for (index, slot) in window.slots.iter().enumerate() {
            assert_eq!(window.find(slot.key.as_str(), slot.hash), Some(index));
            let entry = KeyWindow::entry_of(slot.hash, index);
            let bucket = window.table.iter().position(|&e| e == entry);
            let bucket = bucket.unwrap_or_else(|| panic!("slot {index} has its entry"));
            assert_eq!(window.tags[bucket], KeyWindow::tag_of(slot.hash));
        }
    }

    /// What a window answers for the keys the tests use, in its listing order.
    fn answers(window: &KeyWindow, hashing: Hashing) -> Vec<Option<Receipt>> {
        (0..24u8)
            .map(|number| window.get_hashed(&key_name(number), hash_of(window, number, hashing)))
            .collect()
    }

    /// Runs `steps` (key number, request id) on a window and on the model. A clone taken
    /// before each step must still answer as the window did then (the clone shares chunks
    /// that the step then changes), and stay consistent.
    fn check(keys_max: usize, steps: &[(u8, u64)], hashing: Hashing) {
        let (mut window, mut model) = (KeyWindow::new(keys_max), Model::default());
        for (step, &(number, request_id)) in steps.iter().enumerate() {
            let before = (window.clone(), answers(&window, hashing));
            let key: Arc<str> = Arc::from(key_name(number));
            let last_index = step as u64;
            let hash = hash_of(&window, number, hashing);
            window.remember_hashed(&key, hash, receipt(request_id, last_index));
            model.remember(&key, receipt(request_id, last_index), keys_max);
            assert_consistent(&window);
            let listed: Vec<_> = window.iter().map(|(k, r)| (k.to_string(), r)).collect();
            let expected: Vec<_> = model
                .order
                .iter()
                .map(|k| (k.to_string(), model.receipts[k]))
                .collect();
            assert_eq!(listed, expected);
            assert_eq!(
                answers(&before.0, hashing),
                before.1,
                "a clone saw a later change"
            );
            assert_consistent(&before.0);
            let copy = window.clone();
            for number in 0..24u8 {
                let probe = key_name(number);
                let hash = hash_of(&window, number, hashing);
                let wanted = model.receipts.get(probe.as_str()).copied();
                assert_eq!(window.get_hashed(&probe, hash), wanted, "{probe}");
                assert_eq!(copy.get_hashed(&probe, hash), wanted, "{probe} in a clone");
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
        for hashing in [Hashing::Equal, Hashing::HighHalf, Hashing::OneTag] {
            check(4, &steps, hashing);
            check(1, &steps, hashing);
        }
    }

    #[test]
    fn an_unbounded_window_keeps_the_most_a_window_can() {
        let mut window = KeyWindow::new(usize::MAX);
        assert_eq!(window.keys_max, IDEMPOTENCY_KEYS_MAX);
        window.remember("a", receipt(1, 1));
        assert_eq!(window.get("a"), Some(receipt(1, 1)));
    }

    #[test]
    fn a_window_of_no_keys_remembers_nothing() {
        let mut window = KeyWindow::new(0);
        window.remember(&Arc::from("a"), receipt(1, 1));
        assert_eq!(window.get("a"), None);
        assert_eq!(window.len(), 0);
    }

    /// A full window takes each new key into the oldest's slot: it neither allocates slots
    /// nor grows its table any more; a clone shares the ring's chunks, and a key remembered
    /// after it copies only the chunk of the slot it takes.
    #[test]
    fn a_full_window_neither_grows_nor_reallocates_and_a_clone_shares_it() {
        let keys_max = 3_000;
        let mut window = KeyWindow::new(keys_max);
        let buckets = window.table.len();
        for n in 0..(3 * keys_max as u64) {
            window.remember(&Arc::from(format!("key-{n}")), receipt(n, n));
        }
        assert_eq!(window.len(), keys_max);
        assert_eq!(
            window.slots.capacity(),
            keys_max,
            "the ring was allocated once"
        );
        assert_eq!(window.table.len(), buckets);
        let copy = window.clone();
        let oldest = window.oldest;
        let key = "one more";
        window.remember(key, receipt(1, 1));
        let entry = KeyWindow::entry_of(window.hash(key), oldest);
        assert!(window.table.contains(&entry));
        assert!(!copy.table.contains(&entry), "the clone's index is its own");
        assert!(!window.slots.shares_chunk_with(&copy.slots, oldest));
        let far = (oldest + keys_max / 2) % keys_max;
        assert!(window.slots.shares_chunk_with(&copy.slots, far));
        assert_eq!(copy.get(key), None);
        assert_eq!(window.get(key), Some(receipt(1, 1)));
        assert_eq!(copy.len(), keys_max);
        assert_eq!(window.slots.capacity(), keys_max);
        assert_consistent(&window);
        assert_consistent(&copy);
    }

    /// A window larger than its index was presized for grows its table while it fills, then
    /// holds.
    #[test]
    fn a_window_past_its_presized_index_grows_while_it_fills() {
        let keys_max = WINDOW_PRESIZED_KEYS_MAX + 10;
        let mut window = KeyWindow::new(keys_max);
        let buckets = window.table.len();
        let keys: Vec<Arc<str>> = (0..keys_max + 5)
            .map(|n| Arc::from(n.to_string()))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            window.remember(key, receipt(n as u64, n as u64));
        }
        assert_eq!(window.len(), keys_max);
        assert_eq!(window.table.len(), 2 * buckets);
        assert_eq!(window.get("4"), None, "the five oldest were evicted");
        assert_eq!(window.get("5"), Some(receipt(5, 5)));
        let last = (keys_max + 4).to_string();
        assert_eq!(
            window.get(&last),
            Some(receipt(keys_max as u64 + 4, keys_max as u64 + 4))
        );
    }

    proptest! {
        #[test]
        fn the_window_behaves_as_a_map_with_a_fifo(
            keys_max in 1usize..8,
            steps in proptest::collection::vec((0u8..12, 0u64..3), 0..60),
            hashing in prop_oneof![
                Just(Hashing::Keyed),
                Just(Hashing::Equal),
                Just(Hashing::HighHalf),
                Just(Hashing::OneTag)
            ],
        ) {
            check(keys_max, &steps, hashing);
        }
    }
}
