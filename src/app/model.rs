//! Models: the `Model` trait that `#[derive(Model)]` implements, the events of a model
//! (`ModelEvent`), and `Collection`, the in-memory state of one model with its unique and
//! equality indexes.
//!
//! Owns: deciding whether a create, replace, patch or delete is valid (validation, uniqueness,
//! immutability) and applying the resulting events deterministically.
//! Must not: read clocks or randomness in `apply`; know about HTTP (errors are `FieldError`s and
//! `Rejection`s that the route layer maps to problems).

use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::binary::{self, Decode, Encode};
use crate::crypto::sha256::Sha256;
use crate::engine::{MultisetHash, DIGEST_BYTES};
use crate::json::{self, FromJson, ToJson, Value};

use super::cow_map::CowMap;
use super::schema::{
    check_len_rules, check_number_rules, check_string_rules, Filter, FilterOp, ListQuery,
};
pub use super::schema::{FieldKind, FieldSpec, Id, Rule};

/// A struct whose records Lithair stores, serves and replicates. Implemented by
/// `#[derive(Model)]`; see `docs/` and the blog example.
pub trait Model: Clone + Send + Sync + 'static + ToJson + FromJson + Encode + Decode {
    /// The partial update: every field optional.
    type Patch: Clone + Send + Sync + Default + 'static + ToJson + FromJson + Encode + Decode;
    /// Name of the model (`Post`); events and logs name it.
    const NAME: &'static str;
    /// Base path of its routes (`/api/posts`).
    const PATH: &'static str;
    /// Its fields, in declaration order.
    const FIELDS: &'static [FieldSpec];
    /// Index of the primary key in `FIELDS`.
    const PRIMARY_KEY: usize;
    /// The record's identity.
    fn id(&self) -> Id;
    /// Sets the identity (the sequencer assigns integer ids).
    fn set_id(&mut self, id: Id);
    /// JSON value of field `index` (in `FIELDS` order).
    fn field_value(&self, index: usize) -> Value;
    /// Sets every field present in `patch`.
    fn apply_patch(&mut self, patch: &Self::Patch);
    /// `FIELDS` indices of the fields present in `patch`.
    fn patch_fields(patch: &Self::Patch) -> Vec<usize>;
    /// Copies every `#[http(read_only)]` and `#[http(skip)]` field from `current`: a client's
    /// PUT replaces what it may write and keeps what it may not.
    fn keep_protected(&mut self, current: &Self) {
        let _ = current;
    }
}

/// The events of model `M`. `#[derive(Model)]` names it: `pub type PostEvent = ModelEvent<Post>`.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelEvent<M: Model> {
    /// A record was created (its id already assigned).
    Created(M),
    /// Fields of a record were changed.
    Updated {
        /// Which record.
        id: Id,
        /// The changed fields.
        patch: M::Patch,
    },
    /// A record was replaced whole (PUT).
    Replaced(M),
    /// A record was deleted.
    Deleted {
        /// Which record.
        id: Id,
    },
}

impl Encode for Id {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Id::Int(value) => {
                binary::write_varint(out, 0);
                value.encode(out);
            }
            Id::Str(value) => {
                binary::write_varint(out, 1);
                value.encode(out);
            }
        }
    }
}

impl Decode for Id {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Self, binary::Error> {
        match r.read_varint()? {
            0 => Ok(Id::Int(u64::decode(r)?)),
            1 => Ok(Id::Str(String::decode(r)?)),
            other => Err(binary::Error::unknown_variant(other)),
        }
    }
}

impl ToJson for Id {
    fn write_json(&self, w: &mut json::Writer) {
        match self {
            Id::Int(value) => w.u64(*value),
            Id::Str(value) => w.str(value),
        }
    }
}

impl<M: Model> Encode for ModelEvent<M> {
    fn encode(&self, out: &mut Vec<u8>) {
        // Variant tags are part of the log format: never renumber them.
        let tag = match self {
            ModelEvent::Created(_) => 0,
            ModelEvent::Updated { .. } => 1,
            ModelEvent::Deleted { .. } => 2,
            ModelEvent::Replaced(_) => 3,
        };
        binary::write_varint(out, tag);
        let mark = binary::begin_struct(out);
        match self {
            ModelEvent::Created(record) | ModelEvent::Replaced(record) => record.encode(out),
            ModelEvent::Updated { id, patch } => {
                id.encode(out);
                patch.encode(out);
            }
            ModelEvent::Deleted { id } => id.encode(out),
        }
        binary::end_struct(out, mark);
    }
}

impl<M: Model> Decode for ModelEvent<M> {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Self, binary::Error> {
        let tag = r.read_varint()?;
        let mut body = r.struct_body()?;
        let event = match tag {
            0 => ModelEvent::Created(M::decode(&mut body).map_err(|e| e.with_field("Created"))?),
            1 => ModelEvent::Updated {
                id: Id::decode(&mut body)?,
                patch: M::Patch::decode(&mut body).map_err(|e| e.with_field("patch"))?,
            },
            2 => ModelEvent::Deleted {
                id: Id::decode(&mut body)?,
            },
            3 => ModelEvent::Replaced(M::decode(&mut body).map_err(|e| e.with_field("Replaced"))?),
            other => return Err(binary::Error::unknown_variant(other)),
        };
        Ok(event)
    }
}

impl<M: Model> ToJson for ModelEvent<M> {
    fn write_json(&self, w: &mut json::Writer) {
        w.begin_object();
        match self {
            ModelEvent::Created(record) => {
                w.field("Created");
                record.write_json(w);
            }
            ModelEvent::Replaced(record) => {
                w.field("Replaced");
                record.write_json(w);
            }
            ModelEvent::Updated { id, patch } => {
                w.field("Updated");
                w.begin_object();
                w.field("id");
                id.write_json(w);
                w.field("patch");
                patch.write_json(w);
                w.end_object();
            }
            ModelEvent::Deleted { id } => {
                w.field("Deleted");
                w.begin_object();
                w.field("id");
                id.write_json(w);
                w.end_object();
            }
        }
        w.end_object();
    }
}

/// A field that failed validation, for a 422 problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON name of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why a write was refused. The route layer maps each to a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The record does not exist (404).
    NotFound {
        /// Model name.
        model: &'static str,
        /// Requested id.
        id: Id,
    },
    /// A unique field already holds this value, or a create reused an id (409).
    Conflict {
        /// What collides.
        message: String,
    },
    /// `If-Match` named another version (409 with the current one; 412 is for preconditions
    /// of safe methods).
    VersionMismatch {
        /// Version the client expected.
        expected: u64,
        /// Version the record has.
        current: u64,
    },
    /// Field errors (422).
    Invalid(Vec<FieldError>),
    /// A domain rule refused the command (409 by default), e.g. "out of stock".
    Domain {
        /// HTTP status to answer with, an error status (400 to 599,
        /// `routes::DOMAIN_STATUSES`); any other answers 500, never a success.
        status: u16,
        /// A sentence for the client.
        message: String,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotFound { model, id } => write!(f, "{model} {id} not found"),
            Rejection::Conflict { message } | Rejection::Domain { message, .. } => {
                f.write_str(message)
            }
            Rejection::VersionMismatch { expected, current } => {
                write!(
                    f,
                    "version {expected} expected, record is at version {current}"
                )
            }
            Rejection::Invalid(errors) => {
                let parts: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                write!(f, "invalid fields: {}", parts.join("; "))
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// Checks every validation rule of every field of `record`.
pub fn validate<M: Model>(record: &M) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (index, spec) in M::FIELDS.iter().enumerate() {
        if spec.rules.is_empty() {
            continue;
        }
        let value = record.field_value(index);
        let failure = match &value {
            Value::Null => None, // an absent optional value has nothing to validate
            Value::String(text) => check_string_rules(text, spec.rules),
            Value::Number(number) => number
                .as_f64()
                .and_then(|value| check_number_rules(value, spec.rules)),
            Value::Array(items) => check_len_rules(items.len() as u64, spec.rules),
            _ => None,
        };
        if let Some(message) = failure {
            errors.push(FieldError {
                field: spec.json_name.to_string(),
                message,
            });
        }
    }
    errors
}

/// The segments after a model's base path that `GET` serves as routes of their own
/// (`{base}/_schema`, the live feeds `{base}/stream` and `{base}/live`): a string id equal to
/// one could never be read back by `GET {base}/{id}`, so no record may take it.
pub const ROUTE_SEGMENTS: [&str; 3] = ["_schema", "stream", "live"];

/// The canonical text of a field value, the key of unique and equality indexes. Float zero is
/// keyed as `0.0` whatever its sign: `-0.0 == 0.0` for every comparison (filters, the staged
/// unique check), so the indexes must not tell them apart either.
pub(crate) fn index_key(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_f64() && number.as_f64() == Some(0.0) => {
            json::to_string(&0.0f64).unwrap_or_default()
        }
        other => json::to_string(other).unwrap_or_default(),
    }
}

/// One stored record and its version (1 on create, +1 per change).
#[derive(Clone, Debug, PartialEq)]
pub struct Record<M> {
    /// The record.
    pub value: M,
    /// Its version, for ETags and `If-Match`.
    pub version: u64,
}

/// An equality index: the set of (key, id) pairs of one field, so the ids of a key are the
/// run of pairs that start with it, in id order.
type EqualityIndex = CowMap<(String, Id), ()>;

/// The in-memory state of one model: records by id plus unique and equality indexes.
///
/// Every map is a [`CowMap`], so a clone (the sequencer's speculative copy of the state, built
/// when a node is admitted to lead) is O(models), not O(records), and the two copies share
/// every record neither has changed since.
#[derive(Clone, Debug)]
pub struct Collection<M: Model> {
    /// Each record behind its own `Arc`: a leaf copied on write (see [`CowMap`]) copies
    /// reference counts, not the records in it; only a record that changes is copied.
    records: CowMap<Id, Arc<Record<M>>>,
    /// field index -> (key -> id), for `#[db(unique)]` fields.
    unique: Vec<(usize, CowMap<String, Id>)>,
    /// field index -> the set of (key, id) pairs, for `#[db(indexed)]` fields: the ids of a
    /// key are the run of pairs that start with it, in id order.
    indexed: Vec<(usize, EqualityIndex)>,
    /// Highest integer id ever assigned (ids are never reused, even after a delete).
    last_int_id: u64,
    /// The multiset hash of the records (each hashed by [`record_hash`]), kept up by every
    /// change to `records`: an insert adds its record, a removal subtracts it, a change does
    /// both. With `last_int_id` it is everything of the collection a state digest needs (the
    /// unique and equality indexes are derived from the records), so a digest costs no pass
    /// over the records. Invariant: equal to [`Collection::records_sum_from_scratch`].
    /// `None` on the sequencer's speculative copy, which never answers a digest
    /// ([`Collection::stop_keeping_digest`]): it skips the hash of every change.
    records_sum: Option<MultisetHash>,
}

/// The thread's reused buffer for record hashes is let go once a record's encoding grew it
/// past this many bytes, so a rare large record leaves no large buffer behind.
const RECORD_HASH_BUFFER_BYTES_MAX: usize = 64 * 1024;

thread_local! {
    /// The buffer a record is encoded into to be hashed, reused by every change the thread
    /// applies (the applier, the sequencer's copy) instead of an allocation per event.
    static RECORD_HASH_BUFFER: std::cell::RefCell<Vec<u8>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// The hash of one stored record in its collection's [`MultisetHash`]: SHA-256 of the model
/// name (length-prefixed), the record's binary encoding (which holds its id) and its version
/// (the encoding of the pair in a snapshot). Everything hashed is self-delimiting, so two
/// different records never feed the same bytes.
fn record_hash<M: Model>(value: &M, version: u64) -> [u8; DIGEST_BYTES] {
    let hash_encoding = |buffer: &mut Vec<u8>| {
        buffer.clear();
        M::NAME.encode(buffer);
        value.encode(buffer);
        version.encode(buffer);
        MultisetHash::item(|hasher: &mut Sha256| hasher.update(buffer))
    };
    RECORD_HASH_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => {
            let hash = hash_encoding(&mut buffer);
            if buffer.capacity() > RECORD_HASH_BUFFER_BYTES_MAX {
                *buffer = Vec::new();
            }
            hash
        }
        // Only a model's own `Encode` hashing a record again could get here; it gets a buffer
        // of its own.
        Err(_) => hash_encoding(&mut Vec::new()),
    })
}

impl<M: Model> Default for Collection<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Model> Collection<M> {
    /// An empty collection.
    pub fn new() -> Self {
        let fields = M::FIELDS.iter().enumerate();
        Collection {
            records: CowMap::new(),
            unique: fields
                .clone()
                .filter(|(_, spec)| spec.unique && !spec.primary_key)
                .map(|(index, _)| (index, CowMap::new()))
                .collect(),
            indexed: fields
                .filter(|(_, spec)| spec.indexed)
                .map(|(index, _)| (index, CowMap::new()))
                .collect(),
            last_int_id: 0,
            records_sum: Some(MultisetHash::EMPTY),
        }
    }

    /// The highest integer id ever assigned (0: none).
    pub fn last_int_id(&self) -> u64 {
        self.last_int_id
    }

    /// The multiset hash of the records as the collection keeps it (O(1)).
    ///
    /// # Panics
    /// On a collection that stopped keeping it ([`Collection::stop_keeping_digest`]): asking
    /// the sequencer's copy for a digest is a bug, never a value to trust.
    pub fn records_sum(&self) -> MultisetHash {
        self.records_sum
            .expect("the digest of a collection that does not keep one (the sequencer's copy)")
    }

    /// Stops keeping the records' hash up: each later change skips hashing its record. For
    /// a copy whose digest is never asked for (the engine's speculative copy, which only
    /// decides commands); [`Collection::records_sum`] then panics.
    pub fn stop_keeping_digest(&mut self) {
        self.records_sum = None;
    }

    /// Adds (`true`) or takes out a record's hash, when the collection keeps the sum.
    fn account(&mut self, value: &M, version: u64, added: bool) {
        if let Some(sum) = &mut self.records_sum {
            let hash = record_hash(value, version);
            if added {
                sum.add(&hash);
            } else {
                sum.remove(&hash);
            }
        }
    }

    /// The multiset hash of the records computed from every record (O(records)): what
    /// [`Collection::records_sum`] must always equal.
    pub fn records_sum_from_scratch(&self) -> MultisetHash {
        let mut sum = MultisetHash::EMPTY;
        for record in self.records.values() {
            sum.add(&record_hash(&record.value, record.version));
        }
        sum
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record with this id.
    pub fn get(&self, id: &Id) -> Option<&Record<M>> {
        self.records.get(id).map(|record| &**record)
    }

    /// Every record in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Record<M>> + '_ {
        self.records.values().map(|record| &**record)
    }

    /// The id the next created record gets when it brings none; `None` once a record holds
    /// the largest id (`u64::MAX`), as there is no next one.
    pub fn next_int_id(&self) -> Option<u64> {
        self.last_int_id.checked_add(1)
    }

    /// The id held by the record whose unique field `field` equals `value`, if any.
    pub fn find_unique(&self, field: usize, value: &Value) -> Option<&Id> {
        let (_, map) = self.unique.iter().find(|(index, _)| *index == field)?;
        map.get(&index_key(value))
    }

    /// Checks a create or replace of `record` against validation and uniqueness.
    /// `replacing` is the id being replaced (its own unique values do not collide).
    pub fn check_write(&self, record: &M, replacing: Option<&Id>) -> Result<(), Rejection> {
        let errors = validate(record);
        if !errors.is_empty() {
            return Err(Rejection::Invalid(errors));
        }
        for (field, map) in &self.unique {
            let value = record.field_value(*field);
            if value.is_null() {
                continue;
            }
            if let Some(holder) = map.get(&index_key(&value)) {
                if Some(holder) != replacing {
                    let name = M::FIELDS[*field].json_name;
                    return Err(Rejection::Conflict {
                        message: format!(
                            "{} with {name} {} already exists",
                            M::NAME,
                            json::to_string(&value).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies one committed event. Events were checked when decided, so a violation here is a
    /// broken invariant (the log and the state disagree) and stops the process.
    pub fn apply(&mut self, event: ModelEvent<M>) {
        match event {
            ModelEvent::Created(value) => {
                let id = value.id();
                if let Id::Int(number) = id {
                    self.last_int_id = self.last_int_id.max(number);
                }
                self.index_insert(&value);
                self.account(&value, 1, true);
                let record = Arc::new(Record { value, version: 1 });
                // One descent for the check and the insert (the id moves in: no copy of a
                // string id); a record already there stops the process before anything else
                // reads this collection.
                if let Some(previous) = self.records.insert(id, record) {
                    panic!(
                        "{} {} created twice: the log and the state disagree",
                        M::NAME,
                        previous.value.id()
                    );
                }
            }
            ModelEvent::Updated { id, patch } => {
                let mut updated = Arc::unwrap_or_clone(self.take_for_change(&id));
                updated.value.apply_patch(&patch);
                self.put_back(&id, updated);
            }
            ModelEvent::Replaced(value) => {
                let id = value.id();
                let version = self.take_for_change(&id).version;
                self.put_back(&id, Record { value, version });
            }
            ModelEvent::Deleted { id } => {
                let removed = self.take_for_change(&id);
                drop(removed);
            }
        }
    }

    /// Removes the record `id` for a change or a delete. (It may still be shared with
    /// another copy of the collection: a change copies it then, a delete never does.)
    fn take_for_change(&mut self, id: &Id) -> Arc<Record<M>> {
        let record = self.records.remove(id).unwrap_or_else(|| {
            panic!(
                "{} {id} changed but absent: the log and the state disagree",
                M::NAME
            )
        });
        self.index_remove(&record.value);
        self.account(&record.value, record.version, false);
        record
    }

    fn put_back(&mut self, id: &Id, mut record: Record<M>) {
        assert_eq!(&record.value.id(), id, "an update must not change the id");
        record.version += 1;
        self.index_insert(&record.value);
        self.account(&record.value, record.version, true);
        self.records.insert(id.clone(), Arc::new(record));
    }

    fn index_insert(&mut self, record: &M) {
        let id = record.id();
        for (field, map) in &mut self.unique {
            let value = record.field_value(*field);
            if !value.is_null() {
                map.insert(index_key(&value), id.clone());
            }
        }
        for (field, map) in &mut self.indexed {
            let key = index_key(&record.field_value(*field));
            map.insert((key, id.clone()), ());
        }
    }

    fn index_remove(&mut self, record: &M) {
        let id = record.id();
        for (field, map) in &mut self.unique {
            let key = index_key(&record.field_value(*field));
            if map.get(&key) == Some(&id) {
                map.remove(&key);
            }
        }
        for (field, map) in &mut self.indexed {
            let key = index_key(&record.field_value(*field));
            map.remove(&(key, id.clone()));
        }
    }

    /// Ids of the records passing every filter, in id order. An equality filter on an indexed
    /// field narrows the candidates without a scan.
    pub fn select(&self, filters: &[Filter]) -> Vec<&Record<M>> {
        self.matching(filters).collect()
    }

    /// The page of a list request and the number of records its filters select: the same as
    /// [`sorted_page`] over [`Collection::select`], without holding every selected record.
    /// A request with neither filters nor sort reads only the records before and in its page
    /// (the total is the collection's length); any other request reads each candidate once
    /// and keeps at most `skip + take` of them (see [`sorted_page`]).
    pub fn page(&self, query: &ListQuery) -> (usize, Vec<M>) {
        if query.filters.is_empty() && query.sort.is_none() {
            let page = self
                .records
                .values()
                .skip(query.skip)
                .take(query.take)
                .map(|record| record.value.clone())
                .collect();
            return (self.records.len(), page);
        }
        page_of(self.matching(&query.filters), query)
    }

    /// Like [`Collection::page`], and calls `each` with every record the filters select, in
    /// id order (so it reads every candidate even when neither filter nor sort is given).
    pub fn page_visiting(&self, query: &ListQuery, mut each: impl FnMut(&M)) -> (usize, Vec<M>) {
        let selected = self
            .matching(&query.filters)
            .inspect(|record| each(&record.value));
        page_of(selected, query)
    }

    /// The records passing every filter, in id order. An equality filter on an indexed field
    /// narrows the candidates without a scan.
    fn matching<'a: 'f, 'f>(
        &'a self,
        filters: &'f [Filter],
    ) -> impl Iterator<Item = &'a Record<M>> + 'f {
        let indexed = filters.iter().find_map(|filter| {
            let (_, map) = self
                .indexed
                .iter()
                .find(|(field, _)| *field == filter.field && filter.op == FilterOp::Eq)?;
            let operand = filter.operand.as_str();
            Some(
                map.iter_from(move |(key, _)| key.as_str() < operand)
                    .map_while(move |((key, id), ())| (key == operand).then_some(id)),
            )
        });
        // Exactly one of the two runs: the index's ids (none when no record holds the
        // operand), or every record.
        let (by_index, all) = match indexed {
            Some(ids) => (Some(ids), None),
            None => (None, Some(self.records.values().map(|record| &**record))),
        };
        by_index
            .into_iter()
            .flatten()
            .filter_map(|id| self.get(id))
            .chain(all.into_iter().flatten())
            .filter(move |record| {
                filters
                    .iter()
                    .all(|filter| filter_matches(&record.value, filter))
            })
    }
}

/// Whether `record` passes `filter`.
pub fn filter_matches<M: Model>(record: &M, filter: &Filter) -> bool {
    let value = record.field_value(filter.field);
    let operand = filter.operand.as_str();
    if filter.op == FilterOp::Contains {
        return match &value {
            Value::String(text) => text.contains(operand),
            // An absent value holds no text: `~ul` must not find it through the word `null`.
            Value::Null => false,
            other => index_key(other).contains(operand),
        };
    }
    let ordering = match &value {
        // A present value sorts after an absent one, as `Value::Null` below sorts before.
        Value::Number(_) if operand == "null" => Some(std::cmp::Ordering::Greater),
        Value::Number(number) => compare_number(number, operand),
        Value::String(text) => Some(text.as_str().cmp(operand)),
        Value::Bool(flag) => Some(flag.to_string().as_str().cmp(operand)),
        Value::Null => Some(if operand == "null" {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Less
        }),
        _ => None,
    };
    let Some(ordering) = ordering else {
        return false;
    };
    let ranged = matches!(
        filter.op,
        FilterOp::Gt | FilterOp::Ge | FilterOp::Lt | FilterOp::Le
    );
    if ranged && value.is_null() && operand != "null" {
        // An absent value is no number or text below or above the bound: `age=<30` must not
        // find the records without an age, though absent sorts first.
        return false;
    }
    use std::cmp::Ordering::*;
    match filter.op {
        FilterOp::Eq => ordering == Equal,
        FilterOp::Ne => ordering != Equal,
        FilterOp::Gt => ordering == Greater,
        FilterOp::Ge => ordering != Less,
        FilterOp::Lt => ordering == Less,
        FilterOp::Le => ordering != Greater,
        FilterOp::Contains => unreachable!("handled above"),
    }
}

/// Compares a stored number with a filter operand: exactly when both are integers (ids and
/// counters past 2^53 are distinct values, which f64 would merge; so are 128-bit values past
/// 2^64), through f64 otherwise.
fn compare_number(number: &json::Number, operand: &str) -> Option<std::cmp::Ordering> {
    if let Some(left) = exact_integer(number) {
        if let Some(right) = parse_exact_integer(operand) {
            return Some(left.cmp(&right));
        }
        // An integer past 128 bits is beyond every stored integer (through f64, 2^128 was
        // equal to u128::MAX).
        let digits = operand.strip_prefix(['-', '+']).unwrap_or(operand);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Some(if operand.starts_with('-') {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            });
        }
    }
    number.as_f64()?.partial_cmp(&operand.parse::<f64>().ok()?)
}

/// An integer as a key ordered like the integers it stands for, over all of i128 and u128:
/// (non-negative, bits). A negative i128's bits as u128 keep their order among negatives.
type ExactInteger = (bool, u128);

fn exact_integer(number: &json::Number) -> Option<ExactInteger> {
    match (number.as_u128(), number.as_i128()) {
        (Some(positive), _) => Some((true, positive)),
        (None, Some(negative)) => Some((false, negative as u128)),
        (None, None) => None,
    }
}

/// An integer operand written in decimal (`-5`, `+7`, `0340...`), anywhere in i128 or u128.
pub(crate) fn parse_exact_integer(text: &str) -> Option<ExactInteger> {
    match (text.parse::<u128>(), text.parse::<i128>()) {
        (Ok(positive), _) => Some((true, positive)),
        (Err(_), Ok(negative)) => Some((false, negative as u128)),
        (Err(_), Err(_)) => None,
    }
}

/// Sorts `selected` as `query` asks (ties keep id order, as a stable sort would) and copies out
/// the page it asks for; returns the number selected (before paging) and the page.
pub fn sorted_page<M: Model>(selected: Vec<&Record<M>>, query: &ListQuery) -> (usize, Vec<M>) {
    page_of(selected.into_iter(), query)
}

/// A candidate of a sorted page: its sort key, read once, and its place among the candidates
/// (id order), which breaks ties so the page is the one a stable sort would give.
struct Ranked<'a, M> {
    key: Value,
    place: usize,
    descending: bool,
    record: &'a Record<M>,
}

impl<M> Ord for Ranked<'_, M> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let order = compare_values(&self.key, &other.key);
        let order = if self.descending {
            order.reverse()
        } else {
            order
        };
        order.then(self.place.cmp(&other.place))
    }
}

impl<M> PartialOrd for Ranked<'_, M> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<M> PartialEq for Ranked<'_, M> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl<M> Eq for Ranked<'_, M> {}

/// Counts `candidates` (in id order) and copies out the page `query` asks for.
///
/// Unsorted, the page is the candidates from `skip` on. Sorted, each candidate's key is read
/// once (`field_value` builds a `Value`, a string copy for a text field) and only the first
/// `skip + take` candidates in sort order are kept, in a heap whose top is the last of them:
/// O(n log(skip + take)) comparisons of keys already read and memory for `skip + take`
/// candidates at most. Sorting every candidate with `sort_by` instead read two keys per
/// comparison, 2 n log n string copies under the read lock for a page of 20.
fn page_of<'a, M: Model>(
    candidates: impl Iterator<Item = &'a Record<M>>,
    query: &ListQuery,
) -> (usize, Vec<M>) {
    let mut total = 0;
    let Some((field, descending)) = query.sort.filter(|_| query.take > 0) else {
        let mut page = Vec::new();
        for record in candidates {
            if total >= query.skip && page.len() < query.take {
                page.push(record.value.clone());
            }
            total += 1;
        }
        return (total, page);
    };
    // Never reserved up front: `skip` comes from the client, and the heap grows only with
    // the candidates there are.
    let kept = query.skip.saturating_add(query.take);
    let mut first: BinaryHeap<Ranked<'a, M>> = BinaryHeap::new();
    for record in candidates {
        let ranked = Ranked {
            key: record.value.field_value(field),
            place: total,
            descending,
            record,
        };
        total += 1;
        if first.len() < kept {
            first.push(ranked);
        } else if let Some(mut last) = first.peek_mut() {
            if ranked < *last {
                *last = ranked;
            }
        }
    }
    assert!(
        first.len() <= kept,
        "the heap holds at most skip + take candidates"
    );
    let page: Vec<M> = first
        .into_sorted_vec()
        .into_iter()
        .skip(query.skip)
        .map(|ranked| ranked.record.value.clone())
        .collect();
    assert!(
        page.len() <= query.take,
        "a page holds at most `take` records"
    );
    (total, page)
}

/// Compares two field values for sorting: numbers numerically, strings by bytes, nulls first.
pub fn compare_values(left: &Value, right: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (exact_integer(a), exact_integer(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => {
                let a = a.as_f64().unwrap_or(f64::NAN);
                let b = b.as_f64().unwrap_or(f64::NAN);
                a.partial_cmp(&b).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

impl<M: Model> Encode for Collection<M> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = binary::begin_struct(out);
        self.last_int_id.encode(out);
        binary::write_varint(out, self.records.len() as u64);
        for record in self.records.values() {
            record.value.encode(out);
            record.version.encode(out);
        }
        binary::end_struct(out, mark);
    }
}

impl<M: Model> Collection<M> {
    /// As [`Encode::encode`], through `spill`, a record at a time (for snapshots).
    pub fn encode_spilled(&self, spill: &mut binary::Spill<'_>) {
        spill.begin_struct();
        self.last_int_id.encode(spill.out());
        binary::write_varint(spill.out(), self.records.len() as u64);
        for record in self.records.values() {
            record.value.encode(spill.out());
            record.version.encode(spill.out());
            spill.piece_done();
        }
        spill.end_struct();
    }

    /// As [`Decode::decode`], from `input` a record at a time (for snapshots).
    ///
    /// # Errors
    /// As [`Decode::decode`].
    pub fn decode_spilled(input: &mut binary::Unspill<'_>) -> Result<Self, binary::Error> {
        input.begin_struct()?;
        let mut collection = Collection::new();
        collection.last_int_id = input.part(u64::decode)?;
        let count = input.part(|r| r.read_varint())?;
        for _ in 0..count {
            if input.remaining() == 0 {
                return Err(binary::Error::custom("collection snapshot ends early"));
            }
            let (value, version) = input.part(|r| Ok((M::decode(r)?, u64::decode(r)?)))?;
            collection.insert_decoded(value, version)?;
        }
        input.end_struct()?;
        Ok(collection)
    }

    /// Adds a record read from a snapshot, refusing an id seen before in it.
    fn insert_decoded(&mut self, value: M, version: u64) -> Result<(), binary::Error> {
        let id = value.id();
        if self.records.contains_key(&id) {
            return Err(binary::Error::custom(format!(
                "{} {id} appears twice in a snapshot",
                M::NAME
            )));
        }
        self.index_insert(&value);
        self.account(&value, version, true);
        self.records.insert(id, Arc::new(Record { value, version }));
        Ok(())
    }
}

impl<M: Model> Decode for Collection<M> {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Self, binary::Error> {
        let mut body = r.struct_body()?;
        let mut collection = Collection::new();
        collection.last_int_id = u64::decode(&mut body)?;
        let count = body.read_varint()?;
        for _ in 0..count {
            if body.is_empty() {
                return Err(binary::Error::custom("collection snapshot ends early"));
            }
            let value = M::decode(&mut body)?;
            let version = u64::decode(&mut body)?;
            collection.insert_decoded(value, version)?;
        }
        Ok(collection)
    }
}
