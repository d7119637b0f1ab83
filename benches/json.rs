//! JSON throughput on the json-benchmark files (benches/data): parse to `Value`, stringify a
//! `Value`, and the typed path (decode twitter.json straight into structs, and write them back).
//!
//! Run: `cargo bench --bench json` (add a filter such as `-- typed` to run one group).
//! Instruction counts (noise-free on a shared machine): build with
//! `cargo bench --bench json --no-run`, then run the printed binary under
//! `valgrind --tool=callgrind` with `JSON_BENCH_DRIVE=stringify:canada.json:10` and with a count
//! of 0; the difference divided by 10 is one `to_string` (see [`DRIVE_VARIABLE`]).
//! The typed structs live in benches/data/twitter_types.rs; their `FromJson` / `ToJson` impls
//! are written out by `json_struct!` below in exactly the shape `#[derive(Json)]` generates.

use criterion::{black_box, criterion_group, Criterion, Throughput};
use lithair::json::{self, Error, FromJson, Reader, ToJson, Value, Writer};
use std::time::Duration;

/// A struct plus hand-written `ToJson` / `FromJson` in the derive's shape (codec contract).
macro_rules! json_struct {
    ($vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(pub $field: $ty,)*
        }

        impl ToJson for $name {
            fn write_json(&self, w: &mut Writer) {
                w.begin_object();
                $(
                    w.field(stringify!($field));
                    ToJson::write_json(&self.$field, w);
                )*
                w.end_object();
            }
        }

        impl FromJson for $name {
            fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
                $(let mut $field: Option<$ty> = None;)*
                r.begin_object()?;
                while let Some(key) = r.next_key()? {
                    match &*key {
                        $(stringify!($field) => {
                            $field = Some(
                                <$ty as FromJson>::read_json(r)
                                    .map_err(|e| e.with_field(stringify!($field)))?,
                            )
                        })*
                        _ => r.skip_value()?,
                    }
                }
                Ok($name {
                    $($field: match $field {
                        Some(v) => v,
                        None => match <$ty as FromJson>::absent() {
                            Some(v) => v,
                            None => return Err(Error::missing_field(stringify!($field))),
                        },
                    },)*
                })
            }
        }
    };
}

include!("data/twitter_types.rs");

const FILES: [&str; 3] = ["canada.json", "citm_catalog.json", "twitter.json"];

fn read(name: &str) -> String {
    let path = format!("{}/benches/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for name in FILES {
        let text = read(name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| json::parse(black_box(&text)).unwrap()));
    }
    group.finish();
}

fn stringify(c: &mut Criterion) {
    let mut group = c.benchmark_group("stringify");
    for name in FILES {
        let text = read(name);
        let value: Value = json::parse(&text).unwrap();
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| json::to_string(black_box(&value)).unwrap())
        });
    }
    group.finish();
}

fn typed(c: &mut Criterion) {
    let text = read("twitter.json");
    let twitter: Twitter = json::from_str(&text).unwrap();
    assert_eq!(twitter.statuses.len(), 100);
    let mut group = c.benchmark_group("typed");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("from_str twitter.json", |b| {
        b.iter(|| json::from_str::<Twitter>(black_box(&text)).unwrap())
    });
    group.bench_function("to_string twitter.json", |b| {
        b.iter(|| json::to_string(black_box(&twitter)).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the machine is shared; compare ratios, not absolute numbers.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse, stringify, typed
}
/// Environment variable that turns this binary into a driver for instruction counting:
/// `JSON_BENCH_DRIVE=stringify:canada.json:10` runs only that operation (`parse` or
/// `stringify`) that many times and exits, so `valgrind --tool=callgrind` on the bench binary
/// counts it without criterion's own work; run it with a count of 0 too and subtract.
const DRIVE_VARIABLE: &str = "JSON_BENCH_DRIVE";

/// Runs the operation named by [`DRIVE_VARIABLE`]; returns the total output bytes (so the work
/// cannot be optimized away).
fn drive(spec: &str) -> usize {
    let mut parts = spec.split(':');
    let (Some(operation), Some(name), Some(count)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("{DRIVE_VARIABLE}: expected operation:file:count, got {spec}");
    };
    let count: usize = count.parse().expect("a repeat count");
    let text = read(name);
    let value: Value = json::parse(&text).unwrap();
    let mut total = 0;
    for _ in 0..count {
        total += match operation {
            "parse" => usize::from(json::parse(black_box(&text)).is_ok()),
            "stringify" => json::to_string(black_box(&value)).unwrap().len(),
            _ => panic!("{DRIVE_VARIABLE}: operation is parse or stringify, got {operation}"),
        };
    }
    total
}

fn main() {
    if let Ok(spec) = std::env::var(DRIVE_VARIABLE) {
        println!("{spec}: {} bytes", drive(&spec));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
