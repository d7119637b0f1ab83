//! Encode and decode speed of the binary codec on event-like structs (strings, integers, a
//! float, a `Vec` of nested structs, an `Option`), with hand-written impls in the shape
//! `#[derive(Binary)]` generates. Run: `cargo bench --bench binary`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lithair::binary::{self, begin_struct, end_struct, Decode, Encode, Error, Reader};

/// Events per batch: big enough that per-call overhead vanishes, small enough for the cache.
const EVENTS_PER_BATCH: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
struct OrderLine {
    sku: String,
    quantity: u32,
    price_cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct OrderPlaced {
    order_id: u64,
    customer: String,
    email: String,
    created_at_ms: u64,
    total_cents: i64,
    currency: String,
    lines: Vec<OrderLine>,
    note: Option<String>,
    express: bool,
    discount: f64,
}

impl Encode for OrderLine {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.sku.encode(out);
        self.quantity.encode(out);
        self.price_cents.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for OrderLine {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(OrderLine {
            sku: body.field("sku")?,
            quantity: body.field("quantity")?,
            price_cents: body.field("price_cents")?,
        })
    }
}

impl Encode for OrderPlaced {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.order_id.encode(out);
        self.customer.encode(out);
        self.email.encode(out);
        self.created_at_ms.encode(out);
        self.total_cents.encode(out);
        self.currency.encode(out);
        self.lines.encode(out);
        self.note.encode(out);
        self.express.encode(out);
        self.discount.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for OrderPlaced {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(OrderPlaced {
            order_id: body.field("order_id")?,
            customer: body.field("customer")?,
            email: body.field("email")?,
            created_at_ms: body.field("created_at_ms")?,
            total_cents: body.field("total_cents")?,
            currency: body.field("currency")?,
            lines: body.field("lines")?,
            note: body.field_or_else("note", || None)?,
            express: body.field_or_else("express", || false)?,
            discount: body.field_or_else("discount", || 0.0)?,
        })
    }
}

/// A deterministic, varied batch of events (no randomness: runs are comparable).
fn events() -> Vec<OrderPlaced> {
    (0..EVENTS_PER_BATCH as u64)
        .map(|i| OrderPlaced {
            order_id: 1_000_000 + i,
            customer: format!("customer-{}", i % 97),
            email: format!("user{}@example.com", i % 389),
            created_at_ms: 1_763_800_000_000 + i * 37,
            total_cents: (i as i64 * 1_337) % 250_000,
            currency: "EUR".to_string(),
            lines: (0..(1 + i % 4))
                .map(|j| OrderLine {
                    sku: format!("SKU-{:05}", (i * 7 + j) % 10_000),
                    quantity: (1 + j % 3) as u32,
                    price_cents: 499 + (j as i64 * 250),
                })
                .collect(),
            note: (i % 3 == 0).then(|| "leave at the door, please".to_string()),
            express: i % 2 == 0,
            discount: (i % 10) as f64 * 0.05,
        })
        .collect()
}

fn bench_binary(c: &mut Criterion) {
    let batch = events();
    let encoded = binary::to_vec(&batch);
    assert_eq!(
        binary::from_slice::<Vec<OrderPlaced>>(&encoded).as_ref(),
        Ok(&batch)
    );
    println!(
        "binary: {} events in {} bytes ({:.1} bytes/event)",
        batch.len(),
        encoded.len(),
        encoded.len() as f64 / batch.len() as f64
    );

    let mut group = c.benchmark_group("binary");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut out = Vec::with_capacity(encoded.len());
    group.bench_function("encode_events", |b| {
        b.iter(|| {
            out.clear();
            black_box(&batch).encode(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("decode_events", |b| {
        b.iter(|| {
            let decoded: Vec<OrderPlaced> = binary::from_slice(black_box(&encoded)).expect("valid");
            black_box(decoded)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_binary);
criterion_main!(benches);
