#!/usr/bin/env bash
# Typed JSON decoding side by side: lithair's typed path (`json::from_str` into structs whose
# FromJson impls have the shape `#[derive(Json)]` generates) against serde_json with serde's
# derive, on the same structs (benches/data/twitter_types.rs) and the same file (twitter.json).
# It builds a throwaway crate under ${TMPDIR:-/tmp} that depends on both.
#
# Usage (from the project root): benches/json-typed-compare.sh
# Prints MB/s for typed parse and typed stringify, and the ratio lithair/serde (>1: faster).
# Target for typed parse: ratio >= 0.8.
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
work=${TMPDIR:-/tmp}/lithair-json-typed-compare
mkdir -p "$work/src"
cp "$project/benches/data/twitter_types.rs" "$work/src/twitter_types.rs"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "lithair-json-typed-compare"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
lithair = { path = "$project" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
[profile.release]
codegen-units = 1
lto = "thin"
TOML
cat > "$work/src/main.rs" <<'RS'
use std::time::{Duration, Instant};

mod ours {
    use lithair::json::{Error, FromJson, Reader, ToJson, Writer};
    // The shape `#[derive(Json)]` generates (see the codec contract), written out by a macro.
    macro_rules! json_struct {
        ($vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
            #[derive(Debug)]
            $vis struct $name { $(pub $field: $ty,)* }
            impl ToJson for $name {
                fn write_json(&self, w: &mut Writer) {
                    w.begin_object();
                    $( w.field(stringify!($field)); ToJson::write_json(&self.$field, w); )*
                    w.end_object();
                }
            }
            impl FromJson for $name {
                fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
                    $(let mut $field: Option<$ty> = None;)*
                    r.begin_object()?;
                    while let Some(key) = r.next_key()? {
                        match &*key {
                            $(stringify!($field) => $field = Some(<$ty as FromJson>::read_json(r)
                                .map_err(|e| e.with_field(stringify!($field)))?),)*
                            _ => r.skip_value()?,
                        }
                    }
                    Ok($name { $($field: match $field {
                        Some(v) => v,
                        None => match <$ty as FromJson>::absent() {
                            Some(v) => v,
                            None => return Err(Error::missing_field(stringify!($field))),
                        },
                    },)* })
                }
            }
        };
    }
    include!("twitter_types.rs");
}

mod theirs {
    macro_rules! json_struct {
        ($vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
            #[derive(Debug, serde::Deserialize, serde::Serialize)]
            $vis struct $name { $(pub $field: $ty,)* }
        };
    }
    include!("twitter_types.rs");
}

fn best<F: FnMut()>(mut f: F) -> Duration {
    let mut best = Duration::MAX;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn mbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let path = std::env::args().nth(1).expect("path to twitter.json");
    let text = std::fs::read_to_string(path).unwrap();
    let n = text.len();
    let l: ours::Twitter = lithair::json::from_str(&text).unwrap();
    let s: theirs::Twitter = serde_json::from_str(&text).unwrap();
    assert_eq!(l.statuses.len(), s.statuses.len());
    let p_l = best(|| { std::hint::black_box(lithair::json::from_str::<ours::Twitter>(std::hint::black_box(&text)).unwrap()); });
    let p_s = best(|| { std::hint::black_box(serde_json::from_str::<theirs::Twitter>(std::hint::black_box(&text)).unwrap()); });
    let w_l = best(|| { std::hint::black_box(lithair::json::to_string(std::hint::black_box(&l)).unwrap()); });
    let w_s = best(|| { std::hint::black_box(serde_json::to_string(std::hint::black_box(&s)).unwrap()); });
    println!("{:<22} {:>10} {:>10} {:>7}", "twitter.json (typed)", "lithair", "serde", "ratio");
    println!("{:<22} {:>10.1} {:>10.1} {:>7.2}", "parse MB/s", mbs(n, p_l), mbs(n, p_s), p_s.as_secs_f64() / p_l.as_secs_f64());
    println!("{:<22} {:>10.1} {:>10.1} {:>7.2}", "stringify MB/s", mbs(n, w_l), mbs(n, w_s), w_s.as_secs_f64() / w_l.as_secs_f64());
}
RS
(cd "$work" && cargo run --release -q -- "$project/benches/data/twitter.json")
