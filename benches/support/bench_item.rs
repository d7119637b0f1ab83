//! The bench server's item (`examples/bench_server.rs`), for the benches that measure an app's
//! state: item i is `{"id": i, "name": "item-i", "price": i × 1.25, "tags": ["a", "b"],
//! "in_stock": i even}`. Included with `#[path]` by each bench that uses it.

use lithair::app::state::register;
use lithair::app::{AppEvent, AppState, ModelEvent};
use lithair::engine::State;
use lithair::prelude::*;

/// The bench server's item.
#[derive(Model, Clone, Debug, PartialEq)]
pub struct Item {
    #[db(primary_key)]
    pub id: u64,
    pub name: String,
    pub price: f64,
    pub tags: Vec<String>,
    pub in_stock: bool,
}

/// Item `id` as the bench server preloads it.
pub fn item(id: u64) -> Item {
    Item {
        id,
        name: format!("item-{id}"),
        price: id as f64 * 1.25,
        tags: vec!["a".into(), "b".into()],
        in_stock: id % 2 == 0,
    }
}

/// The event that creates item `id`.
pub fn created(id: u64) -> AppEvent {
    AppEvent::new(&ModelEvent::Created(item(id)))
}

/// An empty state holding the item's model; without its digest sums (`keep_digest: false`)
/// as the sequencer's copy is.
pub fn empty_state(keep_digest: bool) -> AppState {
    register::<Item>();
    let mut state = AppState::with_models(&["Item"]);
    if !keep_digest {
        state.stop_keeping_digest();
    }
    state
}

/// Applies `events` to `state` in order and hands it back (the measured part of a bench; the
/// state is dropped outside the measurement).
pub fn apply_all(mut state: AppState, events: &[AppEvent]) -> AppState {
    for event in events {
        state.apply(event);
    }
    state
}
