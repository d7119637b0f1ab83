//! The digest an `AppState` keeps up in `apply` (its collections' records sums): equal to the
//! digest recomputed from scratch after every event, the same for equal states whatever the
//! order of the events that built them or a decode from a snapshot, different for different
//! states; and the cluster status answers it without a full recomputation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lithair::app::state::register;
use lithair::app::{App, AppEvent, AppState, Id, ModelEvent};
use lithair::binary;
use lithair::engine::{digest_hex, full_digests, State, Tracked};
use lithair::prelude::*;
use proptest::prelude::*;

mod common;
use common::{request, serve_options};

/// A model with an integer id, a unique and an indexed field.
#[derive(Model, Clone, Debug, PartialEq)]
struct Note {
    #[db(primary_key)]
    id: u64,
    #[db(unique)]
    slug: String,
    #[db(indexed, default)]
    tag: u64,
    body: String,
}

/// A model with a client-chosen string id.
#[derive(Model, Clone, Debug, PartialEq)]
struct Label {
    #[db(primary_key)]
    code: String,
    text: String,
}

const MODELS: [&str; 2] = ["Note", "Label"];

fn empty_state() -> AppState {
    register::<Note>();
    register::<Label>();
    AppState::with_models(&MODELS)
}

/// One step of a random history, read against the records that exist when it runs.
#[derive(Clone, Debug)]
enum Op {
    /// Create record `key` of model `model` (skipped when it exists or existed).
    Create { model: bool, key: u8, text: u8 },
    /// Patch the `pick`-th existing record.
    Update { model: bool, pick: u8, text: u8 },
    /// Replace the `pick`-th existing record whole.
    Replace { model: bool, pick: u8, text: u8 },
    /// Delete the `pick`-th existing record.
    Delete { model: bool, pick: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), 1u8..40, any::<u8>())
            .prop_map(|(model, key, text)| Op::Create { model, key, text }),
        2 => (any::<bool>(), any::<u8>(), any::<u8>())
            .prop_map(|(model, pick, text)| Op::Update { model, pick, text }),
        1 => (any::<bool>(), any::<u8>(), any::<u8>())
            .prop_map(|(model, pick, text)| Op::Replace { model, pick, text }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(model, pick)| Op::Delete { model, pick }),
    ]
}

/// Which record an event changes: (model is `Note`, key).
type Target = (bool, u8);

fn note(key: u8, text: u8) -> Note {
    Note {
        id: u64::from(key),
        slug: format!("s{key}"),
        tag: u64::from(text % 3),
        body: format!("note {text}"),
    }
}

fn label(key: u8, text: u8) -> Label {
    Label {
        code: format!("c{key}"),
        text: format!("label {text}"),
    }
}

fn id_of((is_note, key): Target) -> Id {
    if is_note {
        Id::Int(u64::from(key))
    } else {
        Id::Str(format!("c{key}"))
    }
}

/// Turns `ops` into valid events (an op on a record that is not there is skipped; an id once
/// used is never created again), each with the record it changes.
fn events(ops: &[Op]) -> Vec<(Target, AppEvent)> {
    let mut live: BTreeMap<Target, ()> = BTreeMap::new();
    let mut used: Vec<Target> = Vec::new();
    let mut out = Vec::new();
    let pick = |live: &BTreeMap<Target, ()>, model: bool, pick: u8| -> Option<Target> {
        let of_model: Vec<Target> = live.keys().filter(|t| t.0 == model).copied().collect();
        (!of_model.is_empty()).then(|| of_model[usize::from(pick) % of_model.len()])
    };
    for op in ops {
        let event = match *op {
            Op::Create { model, key, text } => {
                if used.contains(&(model, key)) {
                    continue;
                }
                used.push((model, key));
                live.insert((model, key), ());
                let event = if model {
                    AppEvent::new(&ModelEvent::Created(note(key, text)))
                } else {
                    AppEvent::new(&ModelEvent::Created(label(key, text)))
                };
                ((model, key), event)
            }
            Op::Update {
                model,
                pick: p,
                text,
            } => {
                let Some(target) = pick(&live, model, p) else {
                    continue;
                };
                let id = id_of(target);
                let event = if model {
                    let patch = NotePatch {
                        body: Some(format!("patched {text}")),
                        ..NotePatch::default()
                    };
                    AppEvent::new(&ModelEvent::<Note>::Updated { id, patch })
                } else {
                    let patch = LabelPatch {
                        text: Some(format!("patched {text}")),
                    };
                    AppEvent::new(&ModelEvent::<Label>::Updated { id, patch })
                };
                (target, event)
            }
            Op::Replace {
                model,
                pick: p,
                text,
            } => {
                let Some(target) = pick(&live, model, p) else {
                    continue;
                };
                let event = if model {
                    AppEvent::new(&ModelEvent::Replaced(note(target.1, text)))
                } else {
                    AppEvent::new(&ModelEvent::Replaced(label(target.1, text)))
                };
                (target, event)
            }
            Op::Delete { model, pick: p } => {
                let Some(target) = pick(&live, model, p) else {
                    continue;
                };
                live.remove(&target);
                let id = id_of(target);
                let event = if model {
                    AppEvent::new(&ModelEvent::<Note>::Deleted { id })
                } else {
                    AppEvent::new(&ModelEvent::<Label>::Deleted { id })
                };
                (target, event)
            }
        };
        out.push(event);
    }
    out
}

/// The same events regrouped: each record's own events in their order, records taken in the
/// reverse order of their first event. Every record's history is kept, so the state reached
/// is the same; only the interleaving differs.
fn regrouped(events: &[(Target, AppEvent)]) -> Vec<(Target, AppEvent)> {
    let mut order: Vec<Target> = Vec::new();
    for (target, _) in events {
        if !order.contains(target) {
            order.push(*target);
        }
    }
    order
        .iter()
        .rev()
        .flat_map(|target| events.iter().filter(move |(t, _)| t == target).cloned())
        .collect()
}

fn assert_kept_equals_recomputed(state: &AppState, when: &str) {
    assert_eq!(
        digest_hex(&state.digest()),
        digest_hex(&state.digest_from_scratch()),
        "kept vs recomputed digest {when}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After every event the kept digest is the recomputed one; another interleaving of the
    /// same records' histories reaches the same state and digest; both decodes of the state
    /// (whole, and from a snapshot in parts) give it back with the same digest.
    #[test]
    fn the_kept_digest_is_the_digest_of_the_state(ops in proptest::collection::vec(op(), 0..80)) {
        let events = events(&ops);
        let mut state = empty_state();
        assert_kept_equals_recomputed(&state, "of the empty state");
        for (step, (_, event)) in events.iter().enumerate() {
            state.apply(event);
            assert_kept_equals_recomputed(&state, &format!("after event {step}: {event:?}"));
        }
        let digest = state.digest();

        let mut other = empty_state();
        for (_, event) in regrouped(&events) {
            other.apply(&event);
        }
        prop_assert_eq!(binary::to_vec(&other), binary::to_vec(&state), "the same records");
        prop_assert_eq!(other.digest(), digest, "the same digest in another order");

        let decoded: AppState = binary::from_slice(&binary::to_vec(&state)).expect("decodes");
        assert_kept_equals_recomputed(&decoded, "after a decode");
        prop_assert_eq!(decoded.digest(), digest);

        let mut snapshot = Vec::new();
        Tracked::new(state.clone(), 9, 16).encode_snapshot(&mut snapshot);
        let loaded = Tracked::<AppState>::decode_snapshot(&snapshot, 16).expect("loads");
        assert_kept_equals_recomputed(&loaded.state, "after a snapshot load");
        prop_assert_eq!(loaded.state.digest(), digest);
        prop_assert_eq!(state.clone().digest(), digest, "a clone keeps the sums");

        // The sequencer's copy keeps no sums, and ends with the same records.
        let mut copy = empty_state();
        copy.stop_keeping_digest();
        for (_, event) in &events {
            copy.apply(event);
        }
        prop_assert_eq!(binary::to_vec(&copy), binary::to_vec(&state));
    }
}

/// A state that stopped keeping its digest refuses to give one (a wrong digest would pass
/// for a divergence, or hide one), a clone of it too; the records are unaffected.
#[test]
fn a_state_that_stopped_keeping_its_digest_refuses_to_give_one() {
    let mut copy = empty_state();
    copy.stop_keeping_digest();
    let created = AppEvent::new(&ModelEvent::Created(note(1, 1)));
    copy.apply(&created);
    for state in [copy.clone(), copy] {
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.digest()));
        assert!(asked.is_err(), "a digest from a copy that keeps none");
        let mut kept = empty_state();
        kept.apply(&created);
        assert_eq!(binary::to_vec(&state), binary::to_vec(&kept));
    }
}

/// Applies of [`Keeping`] that kept its digest (it counts them as an `AppState` hashes them).
static KEPT_APPLIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A state that counts the events it applied while keeping its digest.
#[derive(Clone, Debug, Default)]
struct Keeping {
    total: u64,
    stopped: bool,
}

impl binary::Encode for Keeping {
    fn encode(&self, out: &mut Vec<u8>) {
        self.total.encode(out);
    }
}

impl binary::Decode for Keeping {
    fn decode(r: &mut binary::Reader<'_>) -> Result<Keeping, binary::Error> {
        Ok(Keeping {
            total: u64::decode(r)?,
            stopped: false,
        })
    }
}

impl State for Keeping {
    type Event = u64;
    fn apply(&mut self, event: &u64) {
        self.total += event;
        if !self.stopped {
            KEPT_APPLIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn stop_keeping_digest(&mut self) {
        self.stopped = true;
    }
}

struct Add(u64);

impl lithair::engine::Command<Keeping> for Add {
    type Rejection = ();
    fn decide(&self, _: &Keeping, _: &lithair::engine::Context) -> Result<Vec<u64>, ()> {
        Ok(vec![self.0])
    }
}

/// The engine's speculative copy (which applies every event once more, to decide the next
/// commands against) does not keep a digest: only the committed state's applies do.
#[test]
fn the_sequencers_copy_keeps_no_digest() {
    let dir = common::fresh_dir("state_digest", "sequencer-copy");
    let (engine, _) =
        lithair::engine::Engine::open(&dir, Default::default(), Keeping::default()).unwrap();
    for n in 1..=10 {
        engine.submit(Add(n)).unwrap();
    }
    assert_eq!(engine.read(|state| state.total), 55);
    assert_eq!(
        KEPT_APPLIES.load(std::sync::atomic::Ordering::SeqCst),
        10,
        "events applied by a copy that keeps its digest"
    );
    drop(engine);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Different states have different digests: a field changed, a version bumped by a change
/// that was undone, a record in another model, `last_int_id` after a delete.
#[test]
fn different_states_have_different_digests() {
    let apply_all = |events: &[AppEvent]| {
        let mut state = empty_state();
        for event in events {
            state.apply(event);
        }
        assert_kept_equals_recomputed(&state, "after the events");
        state.digest()
    };
    let created = AppEvent::new(&ModelEvent::Created(note(1, 1)));
    let base = apply_all(std::slice::from_ref(&created));
    assert_eq!(apply_all(std::slice::from_ref(&created)), base);
    let other_field = AppEvent::new(&ModelEvent::Created(note(1, 2)));
    assert_ne!(apply_all(&[other_field]), base, "a field differs");
    let replaced_alike = AppEvent::new(&ModelEvent::Replaced(note(1, 1)));
    assert_ne!(
        apply_all(&[created.clone(), replaced_alike]),
        base,
        "the same fields at version 2"
    );
    let as_label = AppEvent::new(&ModelEvent::Created(label(1, 1)));
    assert_ne!(apply_all(&[as_label]), base, "another model");
    let two = AppEvent::new(&ModelEvent::Created(note(2, 1)));
    let deleted = AppEvent::new(&ModelEvent::<Note>::Deleted { id: Id::Int(2) });
    assert_ne!(
        apply_all(&[created.clone(), two, deleted]),
        base,
        "the same records, a higher last id"
    );
    assert_ne!(apply_all(&[]), base);
}

/// A free loopback port for the Raft peer listener (bound, read, released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("its address").port()
}

/// The string value of `field` in the JSON document `body`.
fn json_str(body: &str, field: &str) -> String {
    let value = lithair::json::parse(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    match value.get(field) {
        Some(lithair::json::Value::String(text)) => text.clone(),
        other => panic!("{field} is {other:?} in {body}"),
    }
}

/// A single-node cluster answers `/_lithair/cluster` after each write with the digest of its
/// state (equal to the full recomputation) without making a full recomputation: the status
/// reads the digest the state keeps. (The only test of this binary that counts
/// [`full_digests`], so no other test moves the count while it looks.)
#[test]
fn the_cluster_status_reads_the_kept_digest_without_a_full_recomputation() {
    let data = common::fresh_dir("state-digest", "status");
    let peer = free_port();
    let mut options = serve_options(&data);
    options.node_id = Some(1);
    options.peer_port = Some(peer);
    options.cluster = vec![(1, ([127, 0, 0, 1], peer).into())];
    options.cluster_secret = Some("state-digest-test".to_string());
    let app = App::new("state-digest").model::<Note>().model::<Label>();
    let running = app.start(&options).expect("starts as a one-node cluster");
    let addr = running.server.local_addr();
    let engine = Arc::clone(running.handle.engine());
    let create = |key: u64| {
        let body = format!(r#"{{"id":{key},"slug":"s{key}","tag":1,"body":"b"}}"#);
        request(addr, "POST", "/api/notes", "", &body)
    };
    // The node leads after its election: retried until the first write is taken (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    while create(1).status != 201 {
        assert!(Instant::now() < deadline, "the node never took a write");
        std::thread::sleep(Duration::from_millis(50));
    }
    for key in 2..=40 {
        assert_eq!(create(key).status, 201);
    }
    for round in 0..5u64 {
        let key = 41 + round;
        assert_eq!(create(key).status, 201);
        let path = format!("/api/notes/{}", 2 + round);
        let patched = request(addr, "PATCH", &path, "", r#"{"body":"changed"}"#);
        assert_eq!(patched.status, 200, "{}", patched.body);
        assert_eq!(
            request(
                addr,
                "DELETE",
                &format!("/api/notes/{}", 20 + round),
                "",
                ""
            )
            .status,
            204
        );
        let before = full_digests();
        let status = request(addr, "GET", "/_lithair/cluster", "", "");
        assert_eq!(status.status, 200, "{}", status.body);
        assert_eq!(
            full_digests(),
            before,
            "round {round}: the status recomputed the digest from scratch"
        );
        // `Engine::digest` recomputes it (and asserts it equals the kept one).
        assert_eq!(
            json_str(&status.body, "digest"),
            digest_hex(&engine.digest())
        );
        assert!(full_digests() > before, "the recomputation is counted");
    }
    running.stop().expect("stops");
    let _ = std::fs::remove_dir_all(&data);
}

/// A collection whose records were all deleted still holds the highest id it assigned: a
/// snapshot keeps it (ids are never reused, even after a restart from that snapshot), and
/// the digest tells it from a collection that never held a record.
#[test]
fn an_emptied_collection_keeps_its_last_id_through_a_snapshot_and_in_the_digest() {
    let mut state = empty_state();
    state.apply(&AppEvent::new(&ModelEvent::Created(note(7, 1))));
    state.apply(&AppEvent::new(&ModelEvent::<Note>::Deleted {
        id: Id::Int(7),
    }));
    assert_eq!(state.collection::<Note>().next_int_id(), Some(8));
    assert_ne!(state.digest(), empty_state().digest(), "a last id is state");
    let mut snapshot = Vec::new();
    Tracked::new(state.clone(), 2, 16).encode_snapshot(&mut snapshot);
    let loaded = Tracked::<AppState>::decode_snapshot(&snapshot, 16).expect("loads");
    assert_eq!(loaded.state.collection::<Note>().next_int_id(), Some(8));
    assert_eq!(loaded.state.digest(), state.digest());
    assert_kept_equals_recomputed(&loaded.state, "after the load");
}
