//! Cost of the app state's record store (`Collection`), shaped like the bench server's items:
//! - `state_clone/N`: copying an `AppState` of N items, what a node pays when it is admitted
//!   to lead (the sequencer's speculative copy) and on every sequencer rebuild.
//! - `state_get/1M`: reading one item by id from a 1M-item collection.
//! - `replace_after_clone/1M`: 10,000 replacements of random items applied to a fresh copy of
//!   a 1M-item state (the first writes after admission, while the copy shares what it can).
//! - `created_in_order/100k`: building a 100k-item state from created events (replay, catch-up).
//! - `tracked_clone/100k_keys`: copying the engine's `Tracked` of an empty app state whose
//!   idempotency window is full at its default bound: the part of a state copy (admission,
//!   snapshot of a state that clones cheaply) that stays O(keys), under the read lock.
//!
//! Run: `cargo bench --bench state`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lithair::app::state::register;
use lithair::app::{AppEvent, AppState, ModelEvent};
use lithair::engine::{Receipt, State, Tracked};
use lithair::prelude::*;
use std::sync::Arc;

#[path = "support/bench_item.rs"]
mod bench_item;
use bench_item::{apply_all, created, empty_state, item, Item};

fn state_of(items: u64) -> AppState {
    let mut state = empty_state(true);
    for id in 1..=items {
        state.apply(&created(id));
    }
    state
}

/// A fixed pseudo-random sequence of ids in 1..=items (no clock, no OS randomness).
fn spread_ids(count: usize, items: u64) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % items + 1
        })
        .collect()
}

fn bench_clone(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_clone");
    group.sample_size(10);
    for (name, items) in [("100k", 100_000), ("1M", 1_000_000)] {
        let state = state_of(items);
        group.throughput(Throughput::Elements(items));
        group.bench_function(name, |b| b.iter(|| black_box(state.clone())));
    }
    group.finish();
}

fn bench_get(c: &mut Criterion) {
    let state = state_of(1_000_000);
    let collection = state.collection::<Item>();
    let ids = spread_ids(4096, 1_000_000);
    let mut group = c.benchmark_group("state_get");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("1M", |b| {
        b.iter(|| {
            let mut found = 0u64;
            for id in &ids {
                let record = collection.get(&Id::Int(*id));
                found += u64::from(record.is_some());
            }
            black_box(found)
        })
    });
    group.finish();
}

fn bench_replace_after_clone(c: &mut Criterion) {
    let state = state_of(1_000_000);
    let events: Vec<AppEvent> = spread_ids(10_000, 1_000_000)
        .into_iter()
        .map(|id| {
            let mut changed = item(id);
            changed.price += 1.0;
            AppEvent::new(&ModelEvent::Replaced(changed))
        })
        .collect();
    let mut group = c.benchmark_group("replace_after_clone");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("1M", |b| {
        b.iter_batched(
            || state.clone(),
            |copy| apply_all(copy, &events),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_created_in_order(c: &mut Criterion) {
    let events: Vec<AppEvent> = (1..=100_000).map(created).collect();
    let mut group = c.benchmark_group("created_in_order");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("100k", |b| {
        b.iter_batched(
            || empty_state(false),
            |state| apply_all(state, &events),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_tracked_clone(c: &mut Criterion) {
    register::<Item>();
    let keys = lithair::engine::IDEMPOTENCY_KEYS_DEFAULT;
    let mut tracked = Tracked::new(AppState::with_models(&["Item"]), 0, keys);
    for index in 1..=keys as u64 {
        let key: Arc<str> = Arc::from(format!("client-key-{index:012}").as_str());
        let receipt = Receipt {
            first_index: index,
            last_index: index,
            timestamp_ms: index,
            request_id: index,
            duplicate: false,
            request_fingerprint: None,
        };
        tracked.remember(&key, receipt);
    }
    let mut group = c.benchmark_group("tracked_clone");
    group.bench_function("100k_keys", |b| b.iter(|| black_box(tracked.clone())));
    group.finish();
}

criterion_group!(
    benches,
    bench_tracked_clone,
    bench_clone,
    bench_get,
    bench_replace_after_clone,
    bench_created_in_order
);
criterion_main!(benches);
