//! The bench server's item (`examples/bench_server.rs`), for the benches that measure an app's
//! state: item i is `{"id": i, "name": "item-i", "price": i × 1.25, "tags": ["a", "b"],
//! "in_stock": i even}`. Included with `#[path]` by each bench that uses it.

use lithair::app::{AppEvent, ModelEvent};
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
