//! Commands of an app: a closure over a transaction (`Tx`) that reads the current state (the
//! sequencer's speculative copy, so it sees every accepted command) and stages model events.
//!
//! Owns: the single write path. Generated CRUD routes, custom command routes and programmatic
//! calls (`Handle::create`, ...) all build a `Tx` here, so they share validation, uniqueness,
//! immutability checks, id assignment, hooks and change notifications.
//! Must not: perform I/O or read clocks (time comes from the sequencer's `Context`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::model::{
    index_key, validate, Collection, FieldError, Id, Model, ModelEvent, Rejection, ROUTE_SEGMENTS,
};
use super::schema::{FieldKind, FieldSpec};
use super::state::{AppEvent, AppState};
use crate::engine::{Command, Context};

/// A staged record: `Some(record)` after a create or change, `None` after a delete.
type Staged = Option<Box<dyn Any + Send>>;

/// A domain rule on records of one model, run on every create, replace and update (for
/// example "a comment must reference an existing post"). It sees the transaction, so it reads
/// the state including the command's own changes.
pub type Check = dyn Fn(&Tx<'_>, &dyn Any) -> Result<(), Rejection> + Send + Sync;

/// The domain rules of an app, by model name.
#[derive(Default, Clone)]
pub struct Checks {
    by_model: HashMap<&'static str, Vec<Arc<Check>>>,
}

impl Checks {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `rule` for records of `M`.
    pub fn add<M: Model>(
        &mut self,
        rule: impl Fn(&Tx<'_>, &M) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        let erased: Arc<Check> = Arc::new(move |tx, record| match record.downcast_ref::<M>() {
            Some(record) => rule(tx, record),
            None => unreachable!("checks are looked up by the model's own name"),
        });
        self.by_model.entry(M::NAME).or_default().push(erased);
    }

    fn run<M: Model>(&self, tx: &Tx<'_>, record: &M) -> Result<(), Rejection> {
        for rule in self.by_model.get(M::NAME).into_iter().flatten() {
            rule(tx, record)?;
        }
        Ok(())
    }
}

/// Shared empty rules, for transactions built without an app.
fn no_checks() -> &'static Checks {
    static NONE: std::sync::OnceLock<Checks> = std::sync::OnceLock::new();
    NONE.get_or_init(Checks::new)
}

/// The view a command decides against: committed-or-accepted state plus this command's own
/// staged changes.
pub struct Tx<'a> {
    state: &'a AppState,
    checks: &'a Checks,
    context: Context,
    events: Vec<AppEvent>,
    /// (model, id) -> latest staged value, so a command reads its own writes.
    staged: HashMap<(&'static str, Id), Staged>,
    /// (model, id) -> the record's version after the events staged for it, so [`Tx::version`]
    /// costs one lookup however many events the command staged before.
    staged_versions: HashMap<(&'static str, Id), u64>,
    /// (model, unique field, index key) -> the record last staged with that value. It may
    /// have changed or been deleted since (that is checked against `staged`); a value is held
    /// by at most one staged record at a time (the check refuses a second), so the last one
    /// to take it is the only one that may still hold it. Without it, each unique check read
    /// every staged record: a command staging k records did k^2 / 2 reads.
    staged_unique: HashMap<(&'static str, usize, String), Id>,
    /// model -> next integer id to hand out within this command (`None`: none is left).
    next_ids: HashMap<&'static str, Option<u64>>,
    /// The records come straight from a JSON body (the generated routes), so they are
    /// representable by construction and [`check_representable`] is skipped.
    json_input: bool,
}

impl<'a> Tx<'a> {
    /// A transaction over `state` with no domain rules (tests, tools).
    pub fn new(state: &'a AppState, context: Context) -> Self {
        Self::with_checks(state, context, no_checks())
    }

    /// A transaction over `state` enforcing `checks` (what the engine's sequencer runs).
    pub fn with_checks(state: &'a AppState, context: Context, checks: &'a Checks) -> Self {
        Tx {
            state,
            checks,
            context,
            events: Vec::new(),
            staged: HashMap::new(),
            staged_versions: HashMap::new(),
            staged_unique: HashMap::new(),
            next_ids: HashMap::new(),
            json_input: false,
        }
    }

    /// Marks the records this command writes as decoded from a JSON body (the generated model
    /// routes): the JSON decoder admits only finite numbers, so rendering them again to check
    /// is skipped on the hot write path. Commands computing values never call this.
    pub(crate) fn records_from_json(&mut self) {
        self.json_input = true;
    }

    /// Sequencer time of this command, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.context.timestamp_ms
    }

    /// The collection of `M` as it was before this command.
    pub fn collection<M: Model>(&self) -> &'a Collection<M> {
        self.state.collection::<M>()
    }

    /// The record `id` of `M`, including this command's own changes.
    pub fn get<M: Model>(&self, id: &Id) -> Option<M> {
        match self.staged.get(&(M::NAME, id.clone())) {
            Some(Some(value)) => value.downcast_ref::<M>().cloned(),
            Some(None) => None,
            None => self.collection::<M>().get(id).map(|r| r.value.clone()),
        }
    }

    /// The version the record will have after this command (0 when absent), following the
    /// staged events as `Collection::apply` will: a create starts at 1 and a delete ends the
    /// record, so a record deleted and created again in one command is at 1, not past its
    /// old version.
    pub fn version<M: Model>(&self, id: &Id) -> u64 {
        let base = self.collection::<M>().get(id).map_or(0, |r| r.version);
        self.staged_versions
            .get(&(M::NAME, id.clone()))
            .copied()
            .unwrap_or(base)
    }

    /// Creates `record`. An integer primary key of 0 is assigned the next id; a string key
    /// must be given. Validates and checks uniqueness. Returns the stored record.
    pub fn create<M: Model>(&mut self, mut record: M) -> Result<M, Rejection> {
        let id = match record.id() {
            Id::Int(0) => {
                let next = self
                    .next_ids
                    .entry(M::NAME)
                    .or_insert_with(|| self.state.collection::<M>().next_int_id());
                // `None`: a client-chosen id took the largest one; handing out the next would
                // wrap to 0 and then collide forever, so say so instead.
                let Some(value) = *next else {
                    return Err(Rejection::Conflict {
                        message: format!(
                            "{} has no integer id left to assign (the largest, {}, is taken)",
                            M::NAME,
                            u64::MAX
                        ),
                    });
                };
                *next = value.checked_add(1);
                let id = Id::Int(value);
                record.set_id(id.clone());
                id
            }
            Id::Str(text) if text.is_empty() => {
                return Err(Rejection::Invalid(vec![FieldError {
                    field: M::FIELDS[M::PRIMARY_KEY].json_name.to_string(),
                    message: "is required".into(),
                }]))
            }
            Id::Str(text) if ROUTE_SEGMENTS.contains(&text.as_str()) => {
                return Err(Rejection::Invalid(vec![FieldError {
                    field: M::FIELDS[M::PRIMARY_KEY].json_name.to_string(),
                    message: format!(
                        "`{text}` names a route of this model ({}/{text}): choose another id",
                        M::PATH.trim_end_matches('/')
                    ),
                }]))
            }
            id => {
                if let Id::Int(value) = id {
                    // A client-chosen integer id must not collide with ids handed out later.
                    let next = self
                        .next_ids
                        .entry(M::NAME)
                        .or_insert_with(|| self.state.collection::<M>().next_int_id());
                    // u64::MAX leaves none (`None`): later creates without an id are refused.
                    *next = next
                        .and_then(|current| value.checked_add(1).map(|after| current.max(after)));
                }
                id
            }
        };
        if self.get::<M>(&id).is_some() {
            return Err(Rejection::Conflict {
                message: format!("{} {id} already exists", M::NAME),
            });
        }
        self.check_unique_and_valid(&record)?;
        self.stage(
            ModelEvent::Created(record.clone()),
            id,
            Some(record.clone()),
        )?;
        Ok(record)
    }

    /// Replaces record `id` whole (PUT). Immutable fields may not change.
    pub fn replace<M: Model>(&mut self, id: &Id, mut record: M) -> Result<M, Rejection> {
        let current = self.require::<M>(id)?;
        record.set_id(id.clone());
        record.keep_protected(&current);
        let changed: Vec<usize> = (0..M::FIELDS.len()).collect();
        check_immutable(&current, &record, &changed)?;
        self.check_unique_and_valid(&record)?;
        self.stage(
            ModelEvent::Replaced(record.clone()),
            id.clone(),
            Some(record.clone()),
        )?;
        Ok(record)
    }

    /// Applies `patch` to record `id` (PATCH, merge semantics). Immutable fields may not
    /// change; the result is validated as a whole. An empty patch stages nothing and returns
    /// the record as it is.
    pub fn update<M: Model>(&mut self, id: &Id, patch: M::Patch) -> Result<M, Rejection> {
        let current = self.require::<M>(id)?;
        let fields = M::patch_fields(&patch);
        if fields.is_empty() {
            // `{}` changes nothing (RFC 7396): no event, so the version and the ETag stay, and
            // caches holding the record keep a valid copy.
            return Ok(current);
        }
        let mut updated = current.clone();
        updated.apply_patch(&patch);
        check_immutable(&current, &updated, &fields)?;
        self.check_unique_and_valid(&updated)?;
        let event = ModelEvent::Updated {
            id: id.clone(),
            patch,
        };
        self.stage(event, id.clone(), Some(updated.clone()))?;
        Ok(updated)
    }

    /// Deletes record `id`.
    pub fn delete<M: Model>(&mut self, id: &Id) -> Result<M, Rejection> {
        let current = self.require::<M>(id)?;
        self.stage(
            ModelEvent::<M>::Deleted { id: id.clone() },
            id.clone(),
            None,
        )?;
        Ok(current)
    }

    /// Fails with a version conflict unless record `id` is at `expected` (for `If-Match`).
    pub fn expect_version<M: Model>(&self, id: &Id, expected: u64) -> Result<(), Rejection> {
        self.expect_version_among::<M>(id, &[expected])
    }

    /// Fails with a version conflict unless record `id` is at one of `versions` (an `If-Match`
    /// list; the conflict names the first).
    pub fn expect_version_among<M: Model>(
        &self,
        id: &Id,
        versions: &[u64],
    ) -> Result<(), Rejection> {
        let current = self.version::<M>(id);
        if versions.contains(&current) {
            Ok(())
        } else {
            Err(Rejection::VersionMismatch {
                expected: versions.first().copied().unwrap_or(0),
                current,
            })
        }
    }

    fn require<M: Model>(&self, id: &Id) -> Result<M, Rejection> {
        self.get::<M>(id).ok_or_else(|| Rejection::NotFound {
            model: M::NAME,
            id: id.clone(),
        })
    }

    /// Validates `record` and checks its unique fields against the effective state: the
    /// collection as this command sees it, with its own staged changes applied.
    fn check_unique_and_valid<M: Model>(&self, record: &M) -> Result<(), Rejection> {
        let errors = validate(record);
        if !errors.is_empty() {
            return Err(Rejection::Invalid(errors));
        }
        if !self.json_input {
            check_representable(record)?;
        }
        self.checks.run(self, record)?;
        let own_id = record.id();
        for (index, spec) in M::FIELDS.iter().enumerate() {
            if !spec.unique || spec.primary_key {
                continue;
            }
            let value = record.field_value(index);
            if value.is_null() {
                continue;
            }
            let committed_holder = self.collection::<M>().find_unique(index, &value);
            let staged_holder = self
                .staged_unique
                .get(&(M::NAME, index, index_key(&value)))
                .filter(|&holder| *holder != own_id)
                .and_then(|holder| self.staged.get(&(M::NAME, holder.clone())))
                .and_then(|staged| staged.as_ref()?.downcast_ref::<M>());
            let collides = committed_holder.is_some_and(|holder| {
                *holder != own_id
                    && self
                        .get::<M>(holder)
                        .is_some_and(|h| h.field_value(index) == value)
            }) || staged_holder
                .is_some_and(|other| other.field_value(index) == value);
            if collides {
                return Err(Rejection::Conflict {
                    message: format!(
                        "{} with {} {} already exists",
                        M::NAME,
                        spec.json_name,
                        crate::json::to_string(&value).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    fn stage<M: Model>(
        &mut self,
        event: ModelEvent<M>,
        id: Id,
        value: Option<M>,
    ) -> Result<(), Rejection> {
        let encoded = AppEvent::new(&event);
        // A record from a JSON body of a model with only scalar fields always decodes (its
        // strings, numbers and options have no decoder limit to pass); anything else is read
        // back once here, so an event the applier could not decode never reaches the log.
        if !self.json_input || M::FIELDS.iter().any(|spec| spec.kind == FieldKind::Other) {
            check_decodes::<M>(&encoded.payload)?;
            // A patch decodes alone; the record it leaves is what snapshots hold, and its
            // bounds may differ (a count of empty elements is bounded by the bytes after it).
            if let (ModelEvent::Updated { .. }, Some(record)) = (&event, &value) {
                check_record_decodes(record)?;
            }
        }
        self.events.push(encoded);
        let before = self.version::<M>(&id);
        let after = match event {
            ModelEvent::Created(_) => 1,
            ModelEvent::Deleted { .. } => 0,
            ModelEvent::Updated { .. } | ModelEvent::Replaced(_) => before + 1,
        };
        self.staged_versions.insert((M::NAME, id.clone()), after);
        if let Some(record) = &value {
            let unique = M::FIELDS.iter().enumerate();
            for (index, _) in unique.filter(|(_, spec)| spec.unique && !spec.primary_key) {
                let value = record.field_value(index);
                if !value.is_null() {
                    self.staged_unique
                        .insert((M::NAME, index, index_key(&value)), id.clone());
                }
            }
        }
        self.staged.insert(
            (M::NAME, id),
            value.map(|v| Box::new(v) as Box<dyn Any + Send>),
        );
        Ok(())
    }

    /// The events staged so far.
    pub fn into_events(self) -> Vec<AppEvent> {
        self.events
    }
}

/// Refuses a record that JSON cannot represent: a command may compute a non-finite float
/// (`price * quantity` overflowing to infinity), and once committed such a record could never
/// be rendered again, so every read of it, and every list holding it, would answer 500.
/// Records decoded from JSON are always finite (the generated routes skip this); otherwise
/// only models with a float or a nested field (which may hold one) pay for the rendering.
fn check_representable<M: Model>(record: &M) -> Result<(), Rejection> {
    let may_hold_float =
        |spec: &FieldSpec| matches!(spec.kind, FieldKind::Float | FieldKind::Other);
    if !M::FIELDS.iter().any(may_hold_float) || crate::json::to_string(record).is_ok() {
        return Ok(());
    }
    // `field_value` renders a field it cannot represent as null: name the first such field.
    let field = M::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, spec)| may_hold_float(spec))
        .find(|(index, spec)| !spec.optional && record.field_value(*index).is_null())
        .map_or("$", |(_, spec)| spec.json_name);
    Err(Rejection::Invalid(vec![FieldError {
        field: field.to_string(),
        message: "must be a finite number (JSON has no NaN or infinity)".into(),
    }]))
}

/// Refuses an event that the binary decoder would not read back. The encoder has no limits,
/// the decoder has (nesting `binary::DEPTH_MAX`, zero-size elements `ZERO_SIZE_COUNT_MAX`,
/// whatever a hand-written `Decode` checks); a command may build a record past them (a tree
/// deeper than JSON allows), and such an event, once logged, stops the applier at apply and
/// every replay after: a log that can never be opened again. Refused here it is a 422 naming
/// the field, and nothing is written.
fn check_decodes<M: Model>(payload: &[u8]) -> Result<(), Rejection> {
    // A snapshot holds each record one level deeper than its event does (under the snapshot's
    // body and its collection's, against the event's one body; a patch's fields sit as deep as
    // the record's): read back one level down, or a record at the event's limit would be
    // applied and then make every snapshot after it unreadable.
    let mut reader = crate::binary::Reader::new(payload);
    let decoded = reader
        .nested(|below| <ModelEvent<M> as crate::binary::Decode>::decode(below))
        .and_then(|_| reader.finish());
    decoded.map_err(|error| unstorable::<M>(&error))
}

/// Refuses a record that a snapshot could not read back: the record a patch leaves, read as
/// a snapshot holds it, under the snapshot's body and its collection's.
fn check_record_decodes<M: Model>(record: &M) -> Result<(), Rejection> {
    let bytes = crate::binary::to_vec(record);
    let mut reader = crate::binary::Reader::new(&bytes);
    let decoded = reader
        .nested(|snapshot| snapshot.nested(|collection| M::decode(collection)))
        .and_then(|_| reader.finish());
    decoded.map_err(|error| unstorable::<M>(&error))
}

/// The 422 for a record the decoder refuses, naming the model's field the error is under.
fn unstorable<M: Model>(error: &crate::binary::Error) -> Rejection {
    // The path runs from the event (`.Created.root.kids[0]`, `.patch.root`) or the record
    // (`.root.kids[0]`): its first segment under the event's own is the model's field, by its
    // Rust name.
    let path = error.path();
    let inner = [".Created", ".Replaced", ".patch"]
        .iter()
        .find_map(|event| path.strip_prefix(event))
        .unwrap_or(path);
    let rust_name = inner
        .trim_start_matches('.')
        .split(['.', '['])
        .next()
        .unwrap_or_default();
    let field = M::FIELDS
        .iter()
        .find(|spec| spec.name == rust_name)
        .map_or("$", |spec| spec.json_name);
    Rejection::Invalid(vec![FieldError {
        field: field.to_string(),
        message: format!(
            "cannot be stored: the event log could not read it back ({})",
            error.kind()
        ),
    }])
}

fn check_immutable<M: Model>(current: &M, next: &M, fields: &[usize]) -> Result<(), Rejection> {
    let errors: Vec<FieldError> = fields
        .iter()
        .filter(|&&index| M::FIELDS[index].immutable && !M::FIELDS[index].primary_key)
        .filter(|&&index| current.field_value(index) != next.field_value(index))
        .map(|&index| FieldError {
            field: M::FIELDS[index].json_name.to_string(),
            message: "is immutable".into(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection::Invalid(errors))
    }
}

/// The closure type of a command producing `T`.
pub type DecideFn<T> = dyn Fn(&mut Tx<'_>) -> Result<T, Rejection> + Send + Sync;

/// An engine command built from a closure; its output is handed back through a shared slot
/// (the engine reports only a receipt).
pub struct TxCommand<T: Send + 'static> {
    decide: Box<DecideFn<T>>,
    checks: Arc<Checks>,
    output: Arc<Mutex<Option<T>>>,
}

impl<T: Send + 'static> TxCommand<T> {
    /// Wraps `decide`; the returned slot holds its output once the command was accepted.
    pub fn new(
        checks: Arc<Checks>,
        decide: impl Fn(&mut Tx<'_>) -> Result<T, Rejection> + Send + Sync + 'static,
    ) -> (Self, Arc<Mutex<Option<T>>>) {
        let output = Arc::new(Mutex::new(None));
        let command = TxCommand {
            checks,
            decide: Box::new(decide),
            output: Arc::clone(&output),
        };
        (command, output)
    }
}

impl<T: Send + 'static> Command<AppState> for TxCommand<T> {
    type Rejection = Rejection;

    fn decide(&self, state: &AppState, context: &Context) -> Result<Vec<AppEvent>, Rejection> {
        let mut tx = Tx::with_checks(state, *context, &self.checks);
        let value = (self.decide)(&mut tx)?;
        *self.output.lock().expect("command output poisoned") = Some(value);
        Ok(tx.into_events())
    }
}

/// Builds the engine command for `decide` and the slot its output lands in.
pub fn tx_command<T: Send + 'static>(
    checks: Arc<Checks>,
    decide: impl Fn(&mut Tx<'_>) -> Result<T, Rejection> + Send + Sync + 'static,
) -> (TxCommand<T>, Arc<Mutex<Option<T>>>) {
    TxCommand::new(checks, decide)
}
