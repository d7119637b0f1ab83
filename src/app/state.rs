//! The state of an `App`: one `Collection` per registered model, behind the engine's `State`
//! trait, and `AppEvent`, the event type that travels through the log.
//!
//! Owns: dispatching an event to the collection of its model, the registry that lets a
//! snapshot be decoded back into typed collections, and the app's state digest (from the
//! records sums its collections keep up, so a digest costs O(models), not O(records)).
//! Must not: decide anything (commands do that, in `app::command`); read clocks in `apply`.
//!
//! An `AppEvent` names its model and carries the binary encoding of a `ModelEvent<M>`. The model
//! name, not a registration index, is stored so that registering models in another order (or
//! adding one) never reinterprets an old log.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use super::model::{Collection, Model, ModelEvent};
use crate::binary::{self, Decode, Encode};
use crate::crypto::sha256::Sha256;
use crate::engine::{MultisetHash, State, DIGEST_BYTES};

/// One event of an app: which model, and that model's encoded `ModelEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEvent {
    /// `Model::NAME`.
    pub model: String,
    /// Encoded `ModelEvent<M>`.
    pub payload: Vec<u8>,
}

impl AppEvent {
    /// Wraps a typed event.
    pub fn new<M: Model>(event: &ModelEvent<M>) -> Self {
        AppEvent {
            model: M::NAME.to_string(),
            payload: binary::to_vec(event),
        }
    }

    /// The typed event, if it belongs to `M`.
    pub fn decode<M: Model>(&self) -> Option<Result<ModelEvent<M>, binary::Error>> {
        (self.model == M::NAME).then(|| binary::from_slice(&self.payload))
    }

    /// Name of the event's type, stored in its envelope: `PostCreated`, `PostUpdated`,
    /// `PostDeleted`, `PostReplaced` (`log inspect --type PostCreated` filters on it).
    pub fn type_name(&self) -> &'static str {
        let kind = match self.payload.first() {
            Some(tag @ 0..=3) => usize::from(*tag),
            _ => return "Unknown",
        };
        let known = registry().read().expect("model registry poisoned");
        known
            .get(self.model.as_str())
            .map_or("Unknown", |factory| factory.event_types[kind])
    }
}

impl Encode for AppEvent {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = binary::begin_struct(out);
        self.model.encode(out);
        self.payload.encode(out);
        binary::end_struct(out, mark);
    }
}

impl Decode for AppEvent {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Self, binary::Error> {
        let mut body = r.struct_body()?;
        let model = String::decode(&mut body).map_err(|e| e.with_field("model"))?;
        // Refused here, where replay reports an error naming the entry, rather than in
        // `apply`, which cannot fail: a data directory of another app (or one from before a
        // model was removed) must stop the start with a sentence, not a panic.
        if !registry()
            .read()
            .expect("model registry poisoned")
            .contains_key(model.as_str())
        {
            return Err(binary::Error::custom(format!(
                "the log holds an event of model `{model}`, which this app does not have \
                 (is this the data directory of another app?)"
            )));
        }
        Ok(AppEvent {
            model,
            payload: Vec::<u8>::decode(&mut body).map_err(|e| e.with_field("payload"))?,
        })
    }
}

/// What an app state digest hashes first: the bytes it hashes never read as some other
/// encoding (the default `State::digest_from_scratch` hashes encodings), and a later change
/// of the definition changes this tag.
pub const APP_DIGEST_DOMAIN: &[u8] = b"lithair app state digest v1\0";

/// The type-erased face of a `Collection<M>`.
pub trait AnyCollection: Send + Sync + 'static {
    /// `M::NAME`.
    fn model_name(&self) -> &'static str;
    /// Applies an encoded `ModelEvent<M>`. A payload that does not decode is a broken invariant
    /// (`Tx` read it back before it was logged, or replay checked it) and stops the process.
    fn apply_payload(&mut self, payload: &[u8]);
    /// Encodes the collection for a snapshot.
    fn encode_into(&self, out: &mut Vec<u8>);
    /// Encodes the collection for a snapshot through `spill`, a record at a time (the bytes
    /// of [`AnyCollection::encode_into`]).
    fn encode_spilled(&self, spill: &mut binary::Spill<'_>);
    /// The highest integer id the collection ever assigned ([`Collection::last_int_id`]).
    fn last_int_id(&self) -> u64;
    /// The multiset hash of the records, as kept by the collection (O(1)).
    fn records_sum(&self) -> MultisetHash;
    /// The multiset hash of the records, from every record (O(records)).
    fn records_sum_from_scratch(&self) -> MultisetHash;
    /// Stops keeping the records' hash ([`Collection::stop_keeping_digest`]).
    fn stop_keeping_digest(&mut self);
    /// A deep copy.
    fn clone_box(&self) -> Box<dyn AnyCollection>;
    /// Number of records.
    fn len(&self) -> usize;
    /// Whether there are no records.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// For downcasting to `Collection<M>`.
    fn as_any(&self) -> &dyn Any;
}

// Records come from JSON (at most `json::DEPTH_MAX_DEFAULT` levels) and must decode again at
// apply, where the binary reader stops at `binary::DEPTH_MAX` (see its comment); a record that
// does not decode there stops the process. Each binary level has its JSON level: a struct or
// tuple struct is an object or array, a newtype counts one level in both readers, a sequence
// or map is an array or object, and an enum's data is at least as deep in JSON; only the
// event's own wrapping adds a few levels. Twice the JSON limit leaves room for those.
const _: () = assert!(binary::DEPTH_MAX as usize >= 2 * crate::json::DEPTH_MAX_DEFAULT);

impl<M: Model> AnyCollection for Collection<M> {
    fn model_name(&self) -> &'static str {
        M::NAME
    }

    fn apply_payload(&mut self, payload: &[u8]) {
        let event: ModelEvent<M> = binary::from_slice(payload).unwrap_or_else(|error| {
            panic!("an event of {} does not decode at apply: {error}", M::NAME)
        });
        self.apply(event);
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }

    fn encode_spilled(&self, spill: &mut binary::Spill<'_>) {
        Collection::encode_spilled(self, spill);
    }

    fn last_int_id(&self) -> u64 {
        Collection::last_int_id(self)
    }

    fn records_sum(&self) -> MultisetHash {
        Collection::records_sum(self)
    }

    fn records_sum_from_scratch(&self) -> MultisetHash {
        Collection::records_sum_from_scratch(self)
    }

    fn stop_keeping_digest(&mut self) {
        Collection::stop_keeping_digest(self);
    }

    fn clone_box(&self) -> Box<dyn AnyCollection> {
        Box::new(self.clone())
    }

    fn len(&self) -> usize {
        Collection::len(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// How to build an empty collection and decode a snapshotted one, for one model type.
#[derive(Clone, Copy)]
struct Factory {
    type_id: TypeId,
    /// `<Model>Created`, `<Model>Updated`, `<Model>Deleted`, `<Model>Replaced`, by tag.
    event_types: [&'static str; 4],
    empty: fn() -> Box<dyn AnyCollection>,
    decode: fn(&mut binary::Reader<'_>) -> Result<Box<dyn AnyCollection>, binary::Error>,
    decode_spilled: fn(&mut binary::Unspill<'_>) -> Result<Box<dyn AnyCollection>, binary::Error>,
}

/// Models known to this process, by name. Snapshot decoding (the engine's `Decode` of the
/// state, which has no context) looks collections up here.
fn registry() -> &'static RwLock<HashMap<&'static str, Factory>> {
    static REGISTRY: OnceLock<RwLock<HashMap<&'static str, Factory>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Makes `M` known to snapshot decoding. Two different types with one `NAME` would make logs
/// ambiguous, so that stops the process.
pub fn register<M: Model>() {
    let mut models = registry().write().expect("model registry poisoned");
    if let Some(known) = models.get(M::NAME) {
        assert!(
            known.type_id == TypeId::of::<M>(),
            "two model types are both named `{}`: rename one with #[model(name = \"...\")]",
            M::NAME
        );
        return;
    }
    // Leaked once per model type and process (the registry keeps each name once): bounded.
    let name =
        |kind: &str| -> &'static str { Box::leak(format!("{}{kind}", M::NAME).into_boxed_str()) };
    let factory = Factory {
        type_id: TypeId::of::<M>(),
        event_types: [
            name("Created"),
            name("Updated"),
            name("Deleted"),
            name("Replaced"),
        ],
        empty: || Box::new(Collection::<M>::new()),
        decode: |r| Ok(Box::new(Collection::<M>::decode(r)?)),
        decode_spilled: |input| Ok(Box::new(Collection::<M>::decode_spilled(input)?)),
    };
    models.insert(M::NAME, factory);
}

/// The state of an app: a collection per model, in registration order.
pub struct AppState {
    collections: Vec<Box<dyn AnyCollection>>,
    /// Whether the collections keep their digest sums (see [`State::stop_keeping_digest`]);
    /// a collection added later (a model new since the snapshot) follows.
    digest_kept: bool,
}

impl Clone for AppState {
    fn clone(&self) -> Self {
        AppState {
            collections: self.collections.iter().map(|c| c.clone_box()).collect(),
            digest_kept: self.digest_kept,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for collection in &self.collections {
            list.entry(&collection.model_name(), &collection.len());
        }
        list.finish()
    }
}

impl AppState {
    /// An empty state with a collection for each of `models` (names registered with
    /// [`register`]).
    pub fn with_models(models: &[&'static str]) -> Self {
        let known = registry().read().expect("model registry poisoned");
        let collections = models
            .iter()
            .map(|name| {
                let factory = known
                    .get(name)
                    .unwrap_or_else(|| panic!("model `{name}` was not registered"));
                (factory.empty)()
            })
            .collect();
        AppState {
            collections,
            digest_kept: true,
        }
    }

    /// The collection of `M`.
    ///
    /// # Panics
    /// If `M` was not added to the app: that is a programming error, not bad input.
    pub fn collection<M: Model>(&self) -> &Collection<M> {
        self.try_collection::<M>()
            .unwrap_or_else(|| panic!("model `{}` is not part of this app", M::NAME))
    }

    /// The collection of `M`, if the app has it.
    pub fn try_collection<M: Model>(&self) -> Option<&Collection<M>> {
        self.collections
            .iter()
            .find(|c| c.model_name() == M::NAME)
            .and_then(|c| c.as_any().downcast_ref::<Collection<M>>())
    }

    /// The collections an encoding holds: those with records or a last integer id (all of
    /// whose records were deleted: the id must survive a snapshot, or a restart from it would
    /// assign the deleted ids again), sorted by model name.
    fn stored(&self) -> Vec<&dyn AnyCollection> {
        let mut stored: Vec<&dyn AnyCollection> = self
            .collections
            .iter()
            .filter(|c| !c.is_empty() || c.last_int_id() > 0)
            .map(|c| c.as_ref())
            .collect();
        stored.sort_by_key(|c| c.model_name());
        stored
    }

    /// The state digest from each stored collection's name, `last_int_id` and records sum
    /// (given by `sum`): SHA-256 of [`APP_DIGEST_DOMAIN`], the number of stored collections,
    /// then for each, in name order, its name (length-prefixed), `last_int_id` and sum. The
    /// collections are those the encoding stores ([`AppState::stored`]), so two states that
    /// encode alike digest alike, and the sums make the order records came in irrelevant.
    fn digest_with(&self, sum: impl Fn(&dyn AnyCollection) -> MultisetHash) -> [u8; DIGEST_BYTES] {
        let stored = self.stored();
        let mut hasher = Sha256::new();
        hasher.update(APP_DIGEST_DOMAIN);
        hasher.update(&(stored.len() as u64).to_le_bytes());
        for collection in stored {
            let name = collection.model_name();
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(&collection.last_int_id().to_le_bytes());
            sum(collection).write_to(&mut hasher);
        }
        hasher.finalize()
    }

    /// Names and sizes of every collection.
    pub fn summary(&self) -> Vec<(&'static str, usize)> {
        self.collections
            .iter()
            .map(|c| (c.model_name(), c.len()))
            .collect()
    }
}

impl State for AppState {
    type Event = AppEvent;

    /// Every collection keeps its records and indexes in `CowMap`s: a copy is a reference
    /// count per map.
    const CLONES_CHEAPLY: bool = true;

    fn apply(&mut self, event: &AppEvent) {
        let position = self
            .collections
            .iter()
            .position(|c| c.model_name() == event.model);
        let position = match position {
            Some(position) => position,
            None => {
                // A model added to the app after the snapshot was taken: it starts empty.
                let known = registry().read().expect("model registry poisoned");
                let factory = known.get(event.model.as_str()).unwrap_or_else(|| {
                    panic!(
                        "the log holds an event of model `{}`, which this app does not have",
                        event.model
                    )
                });
                let mut empty = (factory.empty)();
                if !self.digest_kept {
                    empty.stop_keeping_digest();
                }
                self.collections.push(empty);
                self.collections.len() - 1
            }
        };
        self.collections[position].apply_payload(&event.payload);
    }

    fn event_type(event: &AppEvent) -> &'static str {
        event.type_name()
    }

    /// Each change of the sequencer's copy then skips hashing its record (one SHA-256 of the
    /// record's encoding per create, two per update).
    fn stop_keeping_digest(&mut self) {
        self.digest_kept = false;
        for collection in &mut self.collections {
            collection.stop_keeping_digest();
        }
    }

    /// From the sums the collections keep: O(collections), whatever the number of records.
    fn digest(&self) -> [u8; DIGEST_BYTES] {
        self.digest_with(|collection| collection.records_sum())
    }

    /// The same digest from every record (the reference [`State::digest`] is checked
    /// against).
    fn digest_from_scratch(&self) -> [u8; DIGEST_BYTES] {
        self.digest_with(|collection| collection.records_sum_from_scratch())
    }

    /// As [`Encode::encode`], a record at a time: a snapshot holds a piece of the state's
    /// encoding, never all of it.
    /// As [`Decode::decode`], a record at a time: loading a snapshot holds a piece of its
    /// file, never all of it.
    fn decode_spilled(input: &mut binary::Unspill<'_>) -> Result<Self, binary::Error> {
        let count = input.part(|r| r.read_varint())?;
        AppState::decode_collections(count, |part| match part {
            Part::Name => input.part(String::decode).map(Decoded::Name),
            Part::Collection(factory) => (factory.decode_spilled)(input).map(Decoded::Collection),
        })
    }

    fn encode_spilled(&self, spill: &mut binary::Spill<'_>) {
        let stored = self.stored();
        binary::write_varint(spill.out(), stored.len() as u64);
        for collection in stored {
            collection.model_name().encode(spill.out());
            collection.encode_spilled(spill);
        }
    }
}

impl Encode for AppState {
    /// Collections with neither records nor a last id are left out (nothing of them is
    /// state), so a snapshot names only models that hold data; the rest are sorted by name,
    /// so equal states encode (and digest) equally whatever the order models were registered
    /// or restored in.
    fn encode(&self, out: &mut Vec<u8>) {
        let stored = self.stored();
        binary::write_varint(out, stored.len() as u64);
        for collection in stored {
            collection.model_name().encode(out);
            collection.encode_into(out);
        }
    }
}

impl Decode for AppState {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Self, binary::Error> {
        let count = r.read_varint()?;
        AppState::decode_collections(count, |index| match index {
            Part::Name => String::decode(r).map(Decoded::Name),
            Part::Collection(factory) => (factory.decode)(r).map(Decoded::Collection),
        })
    }
}

/// What [`AppState::decode_collections`] asks its reader for next.
enum Part<'a> {
    Name,
    Collection(&'a Factory),
}

/// What the reader of [`AppState::decode_collections`] returns.
enum Decoded {
    Name(String),
    Collection(Box<dyn AnyCollection>),
}

impl AppState {
    /// Decodes `count` stored collections, each read by `read` (from a slice or in parts),
    /// then adds an empty one for every other known model.
    fn decode_collections(
        count: u64,
        mut read: impl FnMut(Part<'_>) -> Result<Decoded, binary::Error>,
    ) -> Result<Self, binary::Error> {
        let known = registry().read().expect("model registry poisoned");
        let mut collections: Vec<Box<dyn AnyCollection>> = Vec::new();
        for _ in 0..count {
            let Decoded::Name(name) = read(Part::Name)? else {
                unreachable!("a name was asked for");
            };
            let factory = known.get(name.as_str()).ok_or_else(|| {
                binary::Error::custom(format!(
                    "the snapshot holds model `{name}`, which this app does not have"
                ))
            })?;
            if collections.iter().any(|c| c.model_name() == name) {
                return Err(binary::Error::custom(format!(
                    "the snapshot holds model `{name}` twice"
                )));
            }
            let Decoded::Collection(collection) =
                read(Part::Collection(factory)).map_err(|e| e.with_field(&name))?
            else {
                unreachable!("a collection was asked for");
            };
            collections.push(collection);
        }
        // Every other known model starts empty (it held neither records nor a last id when the
        // snapshot was taken).
        for (name, factory) in known.iter() {
            if !collections.iter().any(|c| c.model_name() == *name) {
                collections.push((factory.empty)());
            }
        }
        Ok(AppState {
            collections,
            digest_kept: true,
        })
    }
}
