//! Cost of the hashing behind state digests:
//! - `sha256/64KiB` and `sha256/60B`: SHA-256 over a large buffer and over a message the size
//!   of one record hash (the hardware path where the CPU has SHA-NI, software otherwise).
//! - `apply_created/kept` and `apply_created/not_kept`: an `AppState` applying one created
//!   item (the bench server's shape) while keeping its digest sums, and as the sequencer's
//!   copy does after `State::stop_keeping_digest`; the difference is the record hash.
//!
//! Run: `cargo bench --bench digest` (at a commit before the SHA-NI path to compare it).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lithair::app::AppEvent;
use lithair::crypto::sha256::sha256;

#[path = "support/bench_item.rs"]
mod bench_item;
use bench_item::{apply_all, created, empty_state};

/// Items created per measured batch (each batch starts from an empty state).
const ITEMS_PER_BATCH: u64 = 10_000;

fn bench_sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for (name, len) in [("64KiB", 64 * 1024), ("60B", 60)] {
        let data = vec![7u8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| b.iter(|| sha256(black_box(&data))));
    }
    group.finish();
}

fn bench_apply(c: &mut Criterion) {
    let events: Vec<AppEvent> = (1..=ITEMS_PER_BATCH).map(created).collect();
    let mut group = c.benchmark_group("apply_created");
    group.throughput(Throughput::Elements(ITEMS_PER_BATCH));
    for (name, keep) in [("kept", true), ("not_kept", false)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || empty_state(keep),
                |state| apply_all(state, &events),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sha256, bench_apply);
criterion_main!(benches);
