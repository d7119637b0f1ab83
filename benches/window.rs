//! Cost of the idempotency window (`Tracked::remember` / `Tracked::receipt_of`) in the shape
//! the engine uses it, with the default bound of 100,000 keys:
//! - `steady`: a full window; per write, a lookup of a new key (a miss, as the sequencer does
//!   before deciding) then its insertion, which evicts the oldest key. Keys cycle through a
//!   pool larger than the window, so an evicted key's data is cold as in a server.
//! - `rebuild`: 100,000 keys remembered into an empty window (a snapshot decode, or the
//!   snapshotter's replay from an empty window).
//! - `clone`: a full window cloned (the sequencer's speculative copy after a leader change, the
//!   snapshot's copy of a state that clones cheaply, both under the read lock).
//!
//! Run: `cargo bench --bench window`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lithair::binary::{Decode, Encode, Error, Reader};
use lithair::engine::{Receipt, State, Tracked, IDEMPOTENCY_KEYS_DEFAULT};

/// Keys in the pool the writes cycle through: several windows' worth, so the keys evicted
/// and the keys inserted are out of the cache, as they are in a server.
const POOL_KEYS: usize = 4 * IDEMPOTENCY_KEYS_DEFAULT;

/// Writes per `steady` iteration.
const WRITES_PER_ITERATION: usize = 1_000;

/// A state with nothing in it: only the window is measured.
#[derive(Debug, Clone)]
struct Empty;

impl Encode for Empty {
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl Decode for Empty {
    fn decode(_r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Empty)
    }
}

impl State for Empty {
    type Event = ();

    fn apply(&mut self, _event: &()) {}
}

/// Keys shaped like client idempotency keys (a UUID's length).
fn pool() -> Vec<Arc<str>> {
    (0..POOL_KEYS)
        .map(|n| Arc::from(format!("{n:08x}-4b1d-4c2a-9e3f-{:012x}", n * 7919)))
        .collect()
}

fn receipt(n: usize) -> Receipt {
    Receipt {
        first_index: n as u64 + 1,
        last_index: n as u64 + 1,
        timestamp_ms: 1_700_000_000_000,
        request_id: n as u64 + 1,
        duplicate: false,
        request_fingerprint: None,
    }
}

fn window(c: &mut Criterion) {
    let keys = pool();
    let mut full = Tracked::new(Empty, 0, IDEMPOTENCY_KEYS_DEFAULT);
    for (n, key) in keys.iter().enumerate().take(IDEMPOTENCY_KEYS_DEFAULT) {
        full.remember(key, receipt(n));
    }
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(WRITES_PER_ITERATION as u64));
    let mut steady = full.clone();
    let mut next = IDEMPOTENCY_KEYS_DEFAULT;
    group.bench_function("steady", |b| {
        b.iter(|| {
            for _ in 0..WRITES_PER_ITERATION {
                let key = &keys[next % POOL_KEYS];
                black_box(steady.receipt_of(key));
                steady.remember(key, receipt(next));
                next += 1;
            }
        })
    });
    group.throughput(Throughput::Elements(IDEMPOTENCY_KEYS_DEFAULT as u64));
    group.sample_size(10);
    group.bench_function("rebuild", |b| {
        b.iter(|| {
            let mut tracked = Tracked::new(Empty, 0, IDEMPOTENCY_KEYS_DEFAULT);
            for (n, key) in keys.iter().enumerate().take(IDEMPOTENCY_KEYS_DEFAULT) {
                tracked.remember(key, receipt(n));
            }
            tracked
        })
    });
    group.bench_function("clone", |b| {
        b.iter_batched(|| (), |()| full.clone(), BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, window);
criterion_main!(benches);
