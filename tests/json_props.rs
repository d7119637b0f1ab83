//! Property tests of the JSON codec: `parse(to_string(v)) == v` for random values (compact and
//! pretty, through the parser and the typed reader), random bytes and strings never panic,
//! every number of canada.json round-trips bit-exactly, floats format like std's shortest
//! round-trip `{:?}`, and typed values round-trip.

use lithair::json::{self, Map, Number, ParseOptions, Reader, Value};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// f64 bit patterns from the classes where shortest formatting goes wrong first: subnormals,
/// powers of two (the narrower gap below them), the last value of each binade, integers and
/// their neighbours, short decimals, and both ends of the fixed-notation range.
fn float_bit_classes() -> impl Strategy<Value = u64> {
    let sign = any::<bool>().prop_map(|negative| u64::from(negative) << 63);
    let class = prop_oneof![
        (1u64..1 << 52),
        (1u64..2046).prop_map(|exponent| exponent << 52),
        (1u64..2046).prop_map(|exponent| (exponent << 52) | ((1 << 52) - 1)),
        (0u64..1 << 53).prop_map(|n| (n as f64).to_bits()),
        ((0u64..1 << 53), -1i64..=1)
            .prop_map(|(n, step)| (n as f64).to_bits().wrapping_add_signed(step)),
        ((0u64..100_000_000), 0i32..=20).prop_map(|(n, k)| (n as f64 / 10f64.powi(k)).to_bits()),
        prop_oneof![Just(1e16f64), Just(1e-4), Just(1e-3), Just(1e-5)].prop_flat_map(|v| (-2i64
            ..=2)
            .prop_map(move |step| v.to_bits().wrapping_add_signed(step))),
    ];
    (sign, class).prop_map(|(sign, bits)| sign | (bits & !(1 << 63)))
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<u64>().prop_map(Number::from_u64),
        any::<i64>().prop_map(Number::from_i64),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).expect("finite")),
        (-1000i32..1000).prop_map(|i| Number::from_f64(f64::from(i) / 8.0).expect("finite")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\\u{0}-\u{1f}é😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map>())),
        ]
    })
}

/// Bytes biased towards JSON syntax, so the parser gets deep before failing.
fn jsonish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\u".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"null".to_vec()),
        Just(b"true".to_vec()),
        Just(b"-0.5e-3".to_vec()),
        Just(b"12".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"k\":".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn value_round_trips(v in value()) {
        let compact = json::to_string(&v).expect("values are finite");
        prop_assert_eq!(&json::parse(&compact).expect("own output parses"), &v);
        prop_assert_eq!(&json::from_str::<Value>(&compact).expect("typed path"), &v);
        let pretty = json::to_string_pretty(&v).expect("values are finite");
        prop_assert_eq!(&json::parse(&pretty).expect("own pretty output parses"), &v);
        prop_assert_eq!(json::to_string(&json::parse(&pretty).unwrap()).unwrap(), compact);
        prop_assert_eq!(&json::to_value(&v).unwrap(), &v);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = json::parse_bytes(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = json::from_str::<Value>(&text);
        let _ = json::from_str::<Vec<HashMap<String, (u8, Option<f32>)>>>(&text);
    }

    #[test]
    fn jsonish_input_never_panics_and_paths_agree(bytes in jsonish_bytes()) {
        let parsed = json::parse_bytes(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let typed = json::from_str::<Value>(text);
            prop_assert_eq!(parsed.is_ok(), typed.is_ok(), "{:?}", text);
            let mut r = Reader::new(text);
            let skipped = r.skip_value().and_then(|()| r.finish());
            prop_assert_eq!(parsed.is_ok(), skipped.is_ok(), "{:?}", text);
            if let Err(e) = &parsed {
                prop_assert!(e.line() >= 1 && e.column() >= 1);
            }
            let shallow = ParseOptions { depth_max: 3, ..ParseOptions::default() };
            let _ = json::parse_with(text, &shallow);
        }
    }

    #[test]
    fn floats_are_shortest_and_exact(bits in prop_oneof![any::<u64>(), float_bit_classes()]) {
        let f = f64::from_bits(bits);
        if f.is_finite() {
            let text = json::to_string(&f).unwrap();
            prop_assert_eq!(&text, &format!("{f:?}"));
            let back = json::parse(&text).unwrap();
            prop_assert!(back.is_f64());
            prop_assert_eq!(back.as_f64().unwrap().to_bits(), bits);
            prop_assert_eq!(json::from_str::<f64>(&text).unwrap().to_bits(), bits);
        } else {
            prop_assert!(json::to_string(&f).is_err());
        }
    }

    #[test]
    fn decimal_text_parses_like_std(
        negative in any::<bool>(),
        whole in "(0|[1-9][0-9]{0,20})",
        fraction in proptest::option::of("[0-9]{1,22}"),
        exponent in proptest::option::of(-400i32..400),
    ) {
        let mut text = String::new();
        if negative {
            text.push('-');
        }
        text.push_str(&whole);
        let is_float = fraction.is_some() || exponent.is_some();
        if let Some(fraction) = &fraction {
            text.push('.');
            text.push_str(fraction);
        }
        if let Some(exponent) = exponent {
            text.push_str(&format!("e{exponent}"));
        }
        let expected: f64 = text.parse().unwrap();
        match json::parse(&text) {
            Ok(value) if is_float => {
                prop_assert_eq!(value.as_f64().unwrap().to_bits(), expected.to_bits(), "{}", text);
            }
            Ok(value) => prop_assert_eq!(value.as_f64().unwrap(), expected, "{}", text),
            Err(e) => prop_assert!(expected.is_infinite(), "{} rejected: {}", text, e),
        }
    }

    #[test]
    fn integers_are_exact(i in any::<i64>(), u in any::<u64>(), wide in any::<i128>()) {
        prop_assert_eq!(json::from_str::<i64>(&json::to_string(&i).unwrap()).unwrap(), i);
        prop_assert_eq!(json::from_str::<u64>(&json::to_string(&u).unwrap()).unwrap(), u);
        prop_assert_eq!(json::parse(&u.to_string()).unwrap().as_u64(), Some(u));
        prop_assert_eq!(json::parse(&i.to_string()).unwrap().as_i64(), Some(i));
        prop_assert_eq!(json::from_str::<i128>(&json::to_string(&wide).unwrap()).unwrap(), wide);
    }

    #[test]
    fn typed_values_round_trip(
        rows in prop::collection::vec((any::<i32>(), any::<String>(), any::<Option<bool>>()), 0..10),
        map in prop::collection::btree_map(any::<String>(), prop::collection::vec(any::<u16>(), 0..4), 0..6),
        chars in prop::collection::vec(any::<char>(), 0..6),
        pair in (any::<u8>(), -1e6f64..1e6),
    ) {
        let text = json::to_string(&rows).unwrap();
        prop_assert_eq!(json::from_str::<Vec<(i32, String, Option<bool>)>>(&text).unwrap(), rows);
        let text = json::to_string(&map).unwrap();
        prop_assert_eq!(json::from_str::<BTreeMap<String, Vec<u16>>>(&text).unwrap(), map.clone());
        let value = json::parse(&text).unwrap();
        prop_assert_eq!(json::from_value::<BTreeMap<String, Vec<u16>>>(&value).unwrap(), map);
        let text = json::to_string(&chars).unwrap();
        prop_assert_eq!(json::from_str::<Vec<char>>(&text).unwrap(), chars);
        let text = json::to_string(&pair).unwrap();
        let back = json::from_str::<(u8, f64)>(&text).unwrap();
        prop_assert_eq!(back.0, pair.0);
        prop_assert_eq!(back.1.to_bits(), pair.1.to_bits());
    }

    /// `to_value` builds scalars, strings, options and sequences directly (a model's field
    /// reads go through it); what it builds is exactly what the text parses to, float signs
    /// and bits included, and a non-finite float fails either way.
    #[test]
    fn to_value_is_the_value_the_text_parses_to(
        rows in prop::collection::vec(
            (
                any::<i64>(),
                any::<u64>(),
                prop_oneof![any::<u64>(), float_bit_classes()].prop_map(f64::from_bits),
                any::<String>(),
                any::<Option<bool>>(),
                any::<Option<Vec<i8>>>(),
            ),
            0..6,
        ),
        small in (any::<u8>(), any::<i16>(), any::<u32>(), any::<isize>(), any::<usize>()),
    ) {
        fn same<T: json::ToJson + ?Sized>(value: &T) -> Result<(), TestCaseError> {
            let direct = json::to_value(value);
            let text = json::to_string(value);
            match (direct, text) {
                (Ok(direct), Ok(text)) => {
                    let parsed = json::parse(&text).unwrap();
                    prop_assert_eq!(&direct, &parsed);
                    prop_assert_eq!(json::to_string(&direct).unwrap(), text);
                }
                (Err(_), Err(_)) => {}
                (direct, text) => prop_assert!(false, "{direct:?} vs {text:?}"),
            }
            Ok(())
        }
        for row in &rows {
            same(&row.0)?;
            same(&row.1)?;
            same(&row.2)?;
            same(&row.3)?;
            same(row.3.as_str())?;
            same(&row.4)?;
            same(&row.5)?;
            same(&Box::new(row.2))?;
        }
        let columns: Vec<f64> = rows.iter().map(|row| row.2).collect();
        same(&columns)?;
        same(&rows.iter().map(|row| row.5.clone()).collect::<Vec<_>>())?;
        same(&small.0)?;
        same(&small.1)?;
        same(&small.2)?;
        same(&small.3)?;
        same(&small.4)?;
    }
}

/// Every number token of canada.json: our parser gives std's correctly rounded value, the
/// writer prints exactly std's shortest text, and re-reading it gives the same bits.
#[test]
fn canada_numbers_round_trip_bit_exactly() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/canada.json");
    let text = std::fs::read_to_string(path).expect("benches/data/canada.json");
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' || bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            let token = &text[start..i];
            let expected: f64 = token.parse().expect("canada numbers are valid");
            let ours = json::parse(token).unwrap().as_f64().unwrap();
            assert_eq!(ours.to_bits(), expected.to_bits(), "{token}");
            let written = json::to_string(&ours).unwrap();
            assert_eq!(
                written,
                format!("{ours:?}"),
                "{token}: shortest, as std writes it"
            );
            let again = json::parse(&written).unwrap().as_f64().unwrap();
            assert_eq!(again.to_bits(), expected.to_bits(), "{token} -> {written}");
            count += 1;
        } else {
            i += 1;
        }
    }
    assert!(count > 100_000, "only {count} numbers found");
    // And the document as a whole survives a round trip unchanged.
    let value = json::parse(&text).unwrap();
    assert_eq!(
        json::parse(&json::to_string(&value).unwrap()).unwrap(),
        value
    );
}
