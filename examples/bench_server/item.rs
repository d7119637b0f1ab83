//! The bench server's item, as the reference servers of `../shared/peers` define it: item i
//! is `{"id": i, "name": "item-i", "price": i × 1.25, "tags": ["a", "b"], "in_stock": i even}`.
//! The benches that measure an app's state include this file (`benches/support/bench_item.rs`),
//! so they measure the very model the server serves.

use lithair::prelude::*;

/// The item served by `/items`.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(path = "/items")]
pub struct Item {
    /// Assigned by the sequencer on `POST /items`.
    #[db(primary_key)]
    pub id: u64,
    /// Name.
    pub name: String,
    /// Price.
    pub price: f64,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether it is in stock.
    pub in_stock: bool,
}

/// Item `i` of the preloaded set, as the reference servers define it.
pub fn preloaded(id: u64) -> Item {
    Item {
        id,
        name: format!("item-{id}"),
        price: id as f64 * 1.25,
        tags: vec!["a".to_string(), "b".to_string()],
        in_stock: id % 2 == 0,
    }
}
