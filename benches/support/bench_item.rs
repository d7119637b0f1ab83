//! The bench server's item (`examples/bench_server/item.rs`, included from there), with the
//! events and states the benches that measure an app's state build from it. Included with
//! `#[path]` by each bench that uses it.

use lithair::app::state::register;
use lithair::app::{AppEvent, AppState, ModelEvent};
use lithair::engine::State;

#[path = "../../examples/bench_server/item.rs"]
mod served;
pub use served::{preloaded as item, Item};

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
