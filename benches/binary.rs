//! Encode and decode speed of the binary codec on event-like structs (strings, integers, a
//! float, a `Vec` of nested structs, an `Option`), side by side with our JSON codec on the same
//! structs (issue 2: binary at least 2x faster than JSON and at most 0.6x its size). The impls
//! are hand-written in the shapes `#[derive(Binary)]` and `#[derive(Json)]` generate.
//! Run: `cargo bench --bench binary`; the sizes are printed first.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lithair::binary::{self, begin_struct, end_struct, Decode, Encode, Error, Reader};
use lithair::json::{self, FromJson, ToJson};

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

impl ToJson for OrderLine {
    fn write_json(&self, w: &mut json::Writer) {
        w.begin_object();
        w.field("sku");
        self.sku.write_json(w);
        w.field("quantity");
        self.quantity.write_json(w);
        w.field("price_cents");
        self.price_cents.write_json(w);
        w.end_object();
    }
}

/// Unwraps a field read by a JSON derive: absent fields take `absent()` or fail by name.
fn json_field<T: FromJson>(value: Option<T>, name: &str) -> Result<T, json::Error> {
    match value {
        Some(v) => Ok(v),
        None => T::absent().ok_or_else(|| json::Error::missing_field(name)),
    }
}

impl FromJson for OrderLine {
    fn read_json(r: &mut json::Reader<'_>) -> Result<Self, json::Error> {
        let (mut sku, mut quantity, mut price_cents) = (None, None, None);
        r.begin_object()?;
        while let Some(key) = r.next_key()? {
            match &*key {
                "sku" => sku = Some(String::read_json(r).map_err(|e| e.with_field("sku"))?),
                "quantity" => {
                    quantity = Some(u32::read_json(r).map_err(|e| e.with_field("quantity"))?)
                }
                "price_cents" => {
                    price_cents = Some(i64::read_json(r).map_err(|e| e.with_field("price_cents"))?)
                }
                _ => r.skip_value()?,
            }
        }
        Ok(OrderLine {
            sku: json_field(sku, "sku")?,
            quantity: json_field(quantity, "quantity")?,
            price_cents: json_field(price_cents, "price_cents")?,
        })
    }
}

impl ToJson for OrderPlaced {
    fn write_json(&self, w: &mut json::Writer) {
        w.begin_object();
        w.field("order_id");
        self.order_id.write_json(w);
        w.field("customer");
        self.customer.write_json(w);
        w.field("email");
        self.email.write_json(w);
        w.field("created_at_ms");
        self.created_at_ms.write_json(w);
        w.field("total_cents");
        self.total_cents.write_json(w);
        w.field("currency");
        self.currency.write_json(w);
        w.field("lines");
        self.lines.write_json(w);
        w.field("note");
        self.note.write_json(w);
        w.field("express");
        self.express.write_json(w);
        w.field("discount");
        self.discount.write_json(w);
        w.end_object();
    }
}

impl FromJson for OrderPlaced {
    fn read_json(r: &mut json::Reader<'_>) -> Result<Self, json::Error> {
        let (mut order_id, mut customer, mut email, mut created_at_ms) = (None, None, None, None);
        let (mut total_cents, mut currency, mut lines, mut note) = (None, None, None, None);
        let (mut express, mut discount) = (None, None);
        r.begin_object()?;
        while let Some(key) = r.next_key()? {
            let name = &*key;
            let with = |e: json::Error| e.with_field(name);
            match name {
                "order_id" => order_id = Some(u64::read_json(r).map_err(with)?),
                "customer" => customer = Some(String::read_json(r).map_err(with)?),
                "email" => email = Some(String::read_json(r).map_err(with)?),
                "created_at_ms" => created_at_ms = Some(u64::read_json(r).map_err(with)?),
                "total_cents" => total_cents = Some(i64::read_json(r).map_err(with)?),
                "currency" => currency = Some(String::read_json(r).map_err(with)?),
                "lines" => lines = Some(Vec::<OrderLine>::read_json(r).map_err(with)?),
                "note" => note = Some(Option::<String>::read_json(r).map_err(with)?),
                "express" => express = Some(bool::read_json(r).map_err(with)?),
                "discount" => discount = Some(f64::read_json(r).map_err(with)?),
                _ => r.skip_value()?,
            }
        }
        Ok(OrderPlaced {
            order_id: json_field(order_id, "order_id")?,
            customer: json_field(customer, "customer")?,
            email: json_field(email, "email")?,
            created_at_ms: json_field(created_at_ms, "created_at_ms")?,
            total_cents: json_field(total_cents, "total_cents")?,
            currency: json_field(currency, "currency")?,
            lines: json_field(lines, "lines")?,
            note: json_field(note, "note")?,
            express: json_field(express, "express")?,
            discount: json_field(discount, "discount")?,
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

fn bench_codecs(c: &mut Criterion) {
    let batch = events();
    let encoded = binary::to_vec(&batch);
    let text = json::to_string(&batch).expect("finite floats");
    assert_eq!(
        binary::from_slice::<Vec<OrderPlaced>>(&encoded).as_ref(),
        Ok(&batch)
    );
    assert_eq!(
        json::from_str::<Vec<OrderPlaced>>(&text).as_ref(),
        Ok(&batch)
    );
    println!(
        "sizes: {} events; binary {} bytes ({:.1}/event); json {} bytes ({:.1}/event); binary/json = {:.3}",
        batch.len(),
        encoded.len(),
        encoded.len() as f64 / batch.len() as f64,
        text.len(),
        text.len() as f64 / batch.len() as f64,
        encoded.len() as f64 / text.len() as f64,
    );

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("binary_encode", |b| {
        b.iter(|| binary::to_vec(black_box(&batch)))
    });
    group.bench_function("json_encode", |b| {
        b.iter(|| json::to_string(black_box(&batch)).expect("finite floats"))
    });
    group.bench_function("binary_decode", |b| {
        b.iter(|| binary::from_slice::<Vec<OrderPlaced>>(black_box(&encoded)).expect("valid"))
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| json::from_str::<Vec<OrderPlaced>>(black_box(&text)).expect("valid"))
    });
    group.finish();

    // One event at a time, as replay decodes log records: no batch-sized buffers.
    let binary_each: Vec<Vec<u8>> = batch.iter().map(binary::to_vec).collect();
    let json_each: Vec<String> = batch
        .iter()
        .map(|e| json::to_string(e).expect("finite"))
        .collect();
    let mut group = c.benchmark_group("codec_each");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("binary_encode", |b| {
        b.iter(|| {
            black_box(&batch)
                .iter()
                .map(|e| binary::to_vec(e).len())
                .sum::<usize>()
        })
    });
    group.bench_function("json_encode", |b| {
        b.iter(|| {
            let lengths = black_box(&batch)
                .iter()
                .map(|e| json::to_string(e).map(|t| t.len()));
            lengths.sum::<Result<usize, _>>().expect("finite")
        })
    });
    group.bench_function("binary_decode", |b| {
        b.iter(|| {
            for bytes in black_box(&binary_each) {
                black_box(binary::from_slice::<OrderPlaced>(bytes).expect("valid"));
            }
        })
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| {
            for text in black_box(&json_each) {
                black_box(json::from_str::<OrderPlaced>(text).expect("valid"));
            }
        })
    });
    group.finish();
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

criterion_group!(benches, bench_codecs, bench_binary);
criterion_main!(benches);
