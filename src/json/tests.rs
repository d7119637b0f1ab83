//! Unit tests of the public JSON API: parser cases, errors with positions, writer output,
//! typed decoding through the `Reader` and the std implementations.

use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// Parses `text` and writes it back compactly.
fn check(text: &str, expected: &str) {
    let value = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(to_string(&value).unwrap(), expected, "{text:?}");
}

/// Parses `text`, expecting an error whose Display is exactly `expected`.
fn check_error(text: &str, expected: &str) {
    match parse(text) {
        Ok(v) => panic!("{text:?} parsed as {v:?}"),
        Err(e) => assert_eq!(e.to_string(), expected, "{text:?}"),
    }
}

#[test]
fn parses_and_writes_back() {
    check(" null ", "null");
    check(
        "[1, -2, 3.5, 1e2, 1.0, -0, 0.0]",
        "[1,-2,3.5,100.0,1.0,-0.0,0.0]",
    );
    check(
        r#"{"b": {"x": []}, "a": [true, false]}"#,
        r#"{"b":{"x":[]},"a":[true,false]}"#,
    );
    check(
        r#""\u00e9\n\"\\\/\b\f\r\t\u0001""#,
        r#""é\n\"\\/\b\f\r\t\u0001""#,
    );
    check("18446744073709551615", "18446744073709551615");
    check("-9223372036854775808", "-9223372036854775808");
    check("1e-7", "1e-7");
    check(
        "123456789012345678901234567890",
        "123456789012345678901234567890",
    );
    check(
        "1234567890123456789012345678901234567890",
        "1.2345678901234568e39",
    );
}

#[test]
fn errors_are_sentences_with_positions() {
    check_error(
        "[1,]",
        "trailing comma before `]` (remove the comma) at line 1, column 4",
    );
    check_error(
        "{\"a\":1,}",
        "trailing comma before `}` (remove the comma) at line 1, column 8",
    );
    check_error(
        "[01]",
        "leading zeros are not allowed in numbers at line 1, column 2",
    );
    check_error(
        "\n  [1 2]",
        "expected `,` or `]` after an array element, found a number at line 2, column 6",
    );
    check_error(
        "",
        "expected a JSON value, found the end of the input at line 1, column 1",
    );
    check_error("[1] x", "unexpected `x` after the JSON value (a document holds exactly one value) at line 1, column 5");
    check_error("\"a\tb\"", "unescaped control character U+0009 in a string (write it as an escape) at line 1, column 3");
    check_error(
        "[\"\\ud800\"]",
        "lone high surrogate \\uD800 in a string at line 1, column 3",
    );
    check_error(
        "// c\n1",
        "expected a JSON value, found `/` at line 1, column 1",
    );
    check_error(
        "[tru]",
        "invalid literal, expected `true` at line 1, column 2",
    );
    check_error(
        "{1:2}",
        "expected an object key in double quotes, found a number at line 1, column 2",
    );
    check_error("[1", "unterminated array: missing `]` at line 1, column 1");
    check_error(
        "1e999",
        "number is too large for a 64-bit float at line 1, column 1",
    );
}

#[test]
fn duplicate_key_policies() {
    let reject = ParseOptions {
        duplicate_keys: DuplicateKeys::Reject,
        ..ParseOptions::default()
    };
    let v = parse(r#"{"a":1,"b":2,"a":3}"#).unwrap();
    assert_eq!(to_string(&v).unwrap(), r#"{"a":3,"b":2}"#);
    let error = parse_with(r#"{"a":1,"a":2}"#, &reject).unwrap_err();
    assert_eq!(
        error.to_string(),
        "duplicate key \"a\" in object (each key may appear once) at line 1, column 8"
    );
    // Large objects switch from a scan to a hash set; both must find duplicates.
    let mut big: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
    big.push_str("\"k3\":0");
    let big = format!("{{{big}}}");
    let error = parse_with(&big, &reject).unwrap_err();
    assert!(error.to_string().contains("duplicate key \"k3\""));
    let v = parse(&big).unwrap();
    assert_eq!(
        (v["k3"].as_u64(), v.as_object().unwrap().len()),
        (Some(0), 40)
    );
    let unique: String = (0..40)
        .map(|i| format!("\"k{i}\":{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        parse_with(&format!("{{{unique}}}"), &reject)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        40
    );
    let typed = from_str::<HashMap<String, u8>>("{\"a\":1,\"a\":2}").unwrap();
    assert_eq!(typed["a"], 2);
}

#[test]
fn nesting_limit_is_enforced_and_configurable() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(&deep(512)).is_ok());
    let error = parse(&deep(513)).unwrap_err();
    assert!(error.message().contains("limit of 512 levels"), "{error}");
    assert!(parse(&deep(100_000)).is_err());
    let shallow = ParseOptions {
        depth_max: 2,
        ..ParseOptions::default()
    };
    assert!(parse_with("[[1]]", &shallow).is_ok());
    assert!(parse_with("[{\"a\":[]}]", &shallow).is_err());
    let deep_objects = "{\"a\":".repeat(600) + "1" + &"}".repeat(600);
    assert!(parse(&deep_objects).is_err());
    assert!(from_str::<Value>(&deep(600)).is_err());
    assert!(Reader::new(&deep(600)).skip_value().is_err());
}

#[test]
fn parse_bytes_requires_utf8() {
    assert_eq!(
        parse_bytes(b"[\"a\"]").unwrap(),
        Value::Array(vec![Value::from("a")])
    );
    let error = parse_bytes(b"[\"\xff\"]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid UTF-8 at byte 2 (JSON text must be UTF-8) at line 1, column 3"
    );
}

#[test]
fn pretty_output() {
    let v = parse(r#"{"a":[1,{"b":null}],"c":{},"d":[]}"#).unwrap();
    assert_eq!(
        to_string_pretty(&v).unwrap(),
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": []\n}"
    );
    assert_eq!(parse(&to_string_pretty(&v).unwrap()).unwrap(), v);
}

#[test]
fn non_finite_floats_are_errors() {
    assert!(to_string(&f64::NAN).is_err());
    assert!(to_string(&vec![1.0, f64::INFINITY]).is_err());
    assert!(to_string(&f32::NEG_INFINITY).is_err());
    assert_eq!(to_string(&1.1f32).unwrap(), "1.1");
}

#[derive(Debug, PartialEq)]
struct Item {
    name: String,
    price: f64,
}

impl FromJson for Item {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut name = None;
        let mut price = None;
        r.begin_object()?;
        while let Some(key) = r.next_key()? {
            match &*key {
                "name" => name = Some(String::read_json(r).map_err(|e| e.with_field("name"))?),
                "price" => price = Some(f64::read_json(r).map_err(|e| e.with_field("price"))?),
                _ => r.skip_value()?,
            }
        }
        Ok(Item {
            name: name.ok_or_else(|| Error::missing_field("name"))?,
            price: price.ok_or_else(|| Error::missing_field("price"))?,
        })
    }
}

#[derive(Debug, PartialEq)]
struct Order {
    items: Vec<Item>,
}

impl FromJson for Order {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut items = None;
        r.begin_object()?;
        while let Some(key) = r.next_key()? {
            match &*key {
                "items" => items = Some(Vec::read_json(r).map_err(|e| e.with_field("items"))?),
                _ => r.skip_value()?,
            }
        }
        Ok(Order {
            items: items.ok_or_else(|| Error::missing_field("items"))?,
        })
    }
}

#[test]
fn typed_errors_name_the_path() {
    let text = r#"{"items": [{"name": "a", "price": 1}, {"name": "b", "price": "x"}]}"#;
    let error = from_str::<Order>(text).unwrap_err();
    assert_eq!(
        error.to_string(),
        "$.items[1].price: expected a number, found a string at line 1, column 62"
    );
    let error = from_str::<Order>(r#"{"items": [{"name": "a"}]}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "$.items[0]: missing field `price` at line 1, column 25"
    );
    let ok = from_str::<Order>(
        r#" {"x": [{"y": null}], "items": [{"price": 2.5, "name": "n", "z": 1}]} "#,
    );
    assert_eq!(
        ok.unwrap(),
        Order {
            items: vec![Item {
                name: "n".into(),
                price: 2.5
            }]
        }
    );
    let error = from_value::<Order>(&parse(text).unwrap()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "$.items[1].price: expected a number, found a string"
    );
}

#[test]
fn reader_rejects_what_the_parser_rejects() {
    for bad in [
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "[1] 2",
        "[",
        "{\"a\":1",
        "[01]",
        "{\"a\":\"\\x\"}",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
        assert!(from_str::<Value>(bad).is_err(), "{bad}");
        let mut r = Reader::new(bad);
        assert!(r.skip_value().and_then(|()| r.finish()).is_err(), "{bad}");
        assert!(
            from_str::<Vec<Value>>(bad).is_err() || bad.starts_with('{'),
            "{bad}"
        );
    }
}

/// Rust's default thread stack, which the HTTP workers run on.
const DEFAULT_THREAD_STACK_BYTES: usize = 2 << 20;

/// The deepest documents the parser accepts can be written back (compact and pretty), read
/// typed, converted, cloned and dropped on a default thread stack. Unoptimized builds
/// (`cargo test`, `cargo run`) overflowed it writing 128 nested arrays: the float formatting
/// inlined into the recursive writer gave every level kilobytes of scratch.
#[test]
fn the_deepest_accepted_documents_fit_a_default_thread_stack() {
    let levels = DEPTH_MAX_DEFAULT;
    let arrays = format!("{}1.5{}", "[".repeat(levels), "]".repeat(levels));
    let objects = format!("{}-1{}", "{\"k\":".repeat(levels), "}".repeat(levels));
    // Pairs of levels around a point: the writer's small-number-array path at the bottom.
    let mixed = format!(
        "{}[1.5,-2]{}",
        "{\"k\":[".repeat(levels / 2 - 1),
        "]}".repeat(levels / 2 - 1)
    );
    for text in [arrays, objects, mixed] {
        let worker = std::thread::Builder::new()
            .stack_size(DEFAULT_THREAD_STACK_BYTES)
            .spawn(move || {
                let value = parse(&text).expect("at the nesting limit");
                assert_eq!(to_string(&value).expect("writes"), text);
                let pretty = to_string_pretty(&value).expect("writes pretty");
                assert_eq!(parse(&pretty).expect("pretty re-parses"), value);
                assert_eq!(from_str::<Value>(&text).expect("typed read"), value);
                assert_eq!(from_value::<Value>(&value).expect("from a Value"), value);
                let copy = value.clone();
                assert_eq!(to_value(&copy).expect("to a Value"), value);
            })
            .expect("spawns");
        worker.join().expect("no stack overflow");
    }
}

#[test]
fn a_byte_order_mark_is_named_in_the_error() {
    let error = parse("\u{feff}{\"a\":1}").unwrap_err();
    assert_eq!(
        error.to_string(),
        "expected a JSON value, found a byte order mark (U+FEFF; JSON text must not start with one) at line 1, column 1"
    );
}

/// An integer token too large for the type is "out of range", like one too large for `u8`,
/// not "expected an integer" (the lexer holds it as a float, but the text is an integer).
#[test]
fn integers_beyond_64_bits_are_out_of_range() {
    let message = |result: Result<(), Error>| result.unwrap_err().to_string();
    assert_eq!(
        message(from_str::<i64>("-9223372036854775809").map(drop)),
        "the number -9223372036854775809 is out of range for i64 at line 1, column 1"
    );
    assert_eq!(
        message(from_str::<i64>("9223372036854775808").map(drop)),
        "the number 9223372036854775808 is out of range for i64 at line 1, column 1"
    );
    assert_eq!(
        message(from_str::<u64>("18446744073709551616").map(drop)),
        "the number 18446744073709551616 is out of range for u64 at line 1, column 1"
    );
    assert_eq!(
        message(from_str::<Vec<i32>>("[1, 99999999999999999999]").map(drop)),
        "$[1]: the number 99999999999999999999 is out of range for i32 at line 1, column 5"
    );
    assert_eq!(
        message(from_str::<u128>("340282366920938463463374607431768211456").map(drop)),
        "the number 340282366920938463463374607431768211456 is out of range for u128 at line 1, column 1"
    );
    // Numbers that are not integers still say so; `-0` is the float negative zero everywhere.
    assert_eq!(
        message(from_str::<i64>("1e2").map(drop)),
        "expected an integer, found the number 1e2 at line 1, column 1"
    );
    assert_eq!(
        message(from_str::<i128>("1e2").map(drop)),
        "expected an integer, found the number 1e2 at line 1, column 1"
    );
    for text in ["-0", "-0.0"] {
        assert!(from_str::<i64>(text).is_err(), "{text}");
        assert!(from_str::<i128>(text).is_err(), "{text}");
        assert!(from_str::<u128>(text).is_err(), "{text}");
    }
    assert_eq!(
        message(from_str::<u64>("-99999999999999999999").map(drop)),
        "expected a non-negative integer, found the number -99999999999999999999 at line 1, column 1"
    );
    assert_eq!(
        from_str::<i128>("-9223372036854775809").unwrap(),
        -9_223_372_036_854_775_809
    );
    assert_eq!(from_str::<u128>("18446744073709551616").unwrap(), 1 << 64);
}

/// f32 is read with one rounding from the text. Through f64 this number rounds to the f64
/// exactly halfway between 1.0 and the next f32, and then ties to even: 1.0, not the nearest.
#[test]
fn f32_is_the_nearest_to_the_text() {
    let above_halfway = "1.00000005960464477539062500000000000000001";
    let nearest: f32 = above_halfway.parse().unwrap();
    assert_eq!(nearest, f32::from_bits(1.0f32.to_bits() + 1));
    assert_eq!(from_str::<f32>(above_halfway).unwrap(), nearest);
    let below_halfway = "1.00000005960464477539062499999999999999999";
    assert_eq!(from_str::<f32>(below_halfway).unwrap(), 1.0);
    assert_eq!(from_str::<f32>("16777217").unwrap(), 16_777_216.0);
    assert_eq!(
        from_str::<f32>("1e39").unwrap_err().to_string(),
        "the number 1e39 is out of range for f32 at line 1, column 1"
    );
    assert_eq!(
        from_str::<f32>("-1e-50").unwrap().to_bits(),
        (-0.0f32).to_bits()
    );
}

/// A float `Value` is an f64: `from_value::<f32>` rounds that f64 once (an exact halfway point
/// ties to even), not the shortest decimal text of it, which lies a little off the f64.
#[test]
fn f32_from_a_value_rounds_the_f64_it_holds() {
    let halfway = 1.0f64 + 2f64.powi(-24);
    assert_eq!(halfway as f32, 1.0, "ties to even");
    let value = Value::from(halfway);
    assert_eq!(from_value::<f32>(&value).unwrap(), 1.0);
    assert_eq!(from_value::<f32>(&Value::from(0.1f64)).unwrap(), 0.1f32);
    assert_eq!(
        from_value::<f32>(&Value::from(16_777_217u64)).unwrap(),
        16_777_216.0
    );
    let error = from_value::<f32>(&Value::from(1e39f64)).unwrap_err();
    assert!(
        error.to_string().contains("out of range for f32"),
        "{error}"
    );
    assert!(from_value::<f32>(&Value::from("1.5")).is_err());
}

#[test]
fn integers_check_their_range() {
    assert_eq!(from_str::<u8>("255").unwrap(), 255);
    let error = from_str::<u8>("256").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the number 256 is out of range for u8 at line 1, column 1"
    );
    assert!(from_str::<u8>("-1").is_err());
    assert!(from_str::<u32>("1.0").is_err());
    assert_eq!(from_str::<i8>("-128").unwrap(), -128);
    assert!(from_str::<i8>("-129").is_err());
    assert_eq!(
        from_str::<i128>("-170141183460469231731687303715884105728").unwrap(),
        i128::MIN
    );
    assert_eq!(from_str::<u128>(&u128::MAX.to_string()).unwrap(), u128::MAX);
    assert_eq!(to_string(&i128::MIN).unwrap(), i128::MIN.to_string());
    assert_eq!(from_str::<u64>("18446744073709551615").unwrap(), u64::MAX);
    assert!(from_str::<u64>("18446744073709551616").is_err());
    assert_eq!(from_str::<i64>("-9223372036854775808").unwrap(), i64::MIN);
    assert_eq!(from_str::<f64>("1").unwrap(), 1.0);
    assert!(from_str::<f32>("1e300").is_err());
    assert_eq!(from_str::<usize>("7").unwrap(), 7);
    assert_eq!(from_str::<isize>("-7").unwrap(), -7);
}

/// Writes `value`, checks the text, reads it back and checks equality.
fn round_trip<T: ToJson + FromJson + PartialEq + std::fmt::Debug>(value: T, text: &str) {
    assert_eq!(to_string(&value).unwrap(), text);
    assert_eq!(from_str::<T>(text).unwrap(), value);
    assert_eq!(from_value::<T>(&parse(text).unwrap()).unwrap(), value);
    assert_eq!(
        parse(&to_string_pretty(&value).unwrap()).unwrap(),
        parse(text).unwrap()
    );
}

#[test]
fn std_types_round_trip() {
    round_trip(true, "true");
    round_trip('é', "\"é\"");
    round_trip(String::from("a\"b"), "\"a\\\"b\"");
    round_trip(std::borrow::Cow::from("c"), "\"c\"");
    round_trip((), "null");
    round_trip(Some(3u16), "3");
    round_trip(None::<u16>, "null");
    round_trip(vec![1i32, -2], "[1,-2]");
    round_trip(VecDeque::from([1u8, 2]), "[1,2]");
    round_trip([1.5f64, 2.0], "[1.5,2.0]");
    round_trip(Box::new(1u8), "1");
    round_trip(Rc::new(2u8), "2");
    round_trip(Arc::new(3u8), "3");
    round_trip((1u8, "x".to_string(), false), "[1,\"x\",false]");
    round_trip(
        (
            1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8,
        ),
        "[1,2,3,4,5,6,7,8,9,10,11,12]",
    );
    round_trip(
        BTreeMap::from([("a".to_string(), 1u8), ("b".to_string(), 2)]),
        r#"{"a":1,"b":2}"#,
    );
    round_trip(
        HashMap::from([("a".to_string(), vec![1u8])]),
        r#"{"a":[1]}"#,
    );
    round_trip(BTreeSet::from([3u8, 1]), "[1,3]");
    round_trip(HashSet::from([5u8]), "[5]");
    round_trip(
        parse(r#"{"v":[1,1.0,null]}"#).unwrap(),
        r#"{"v":[1,1.0,null]}"#,
    );
    assert_eq!(to_string("str").unwrap(), "\"str\"");
    assert_eq!(to_string(&[1u8, 2][..]).unwrap(), "[1,2]");
    assert!(from_str::<[u8; 2]>("[1,2,3]").is_err());
    assert!(from_str::<[u8; 2]>("[1]").is_err());
    assert!(from_str::<(u8, u8)>("[1]").is_err());
    assert!(from_str::<(u8, u8)>("[1,2,3]").is_err());
    assert!(from_str::<char>("\"ab\"").is_err());
    assert!(from_str::<()>("0").is_err());
    assert_eq!(<Option<u8> as FromJson>::absent(), Some(None));
    assert_eq!(<u8 as FromJson>::absent(), None);
    let error = from_str::<BTreeMap<String, Vec<u8>>>(r#"{"k": [1, "x"]}"#).unwrap_err();
    assert_eq!(error.path(), "$.k[1]");
}

#[test]
fn to_value_and_from_value() {
    let v = to_value(&vec![(1u8, "a")]).unwrap();
    assert_eq!(v, parse(r#"[[1,"a"]]"#).unwrap());
    assert_eq!(
        from_value::<Vec<(u8, String)>>(&v).unwrap(),
        vec![(1, "a".to_string())]
    );
    assert!(to_value(&f64::NAN).is_err());
}

#[test]
fn reader_can_look_ahead_and_rewind() {
    let text = r#"{"data": 1, "type": "circle"}"#;
    let mut r = Reader::new(text);
    let look = r.clone();
    r.begin_object().unwrap();
    let mut tag = None;
    while let Some(key) = r.next_key().unwrap() {
        if key == "type" {
            tag = Some(r.read_str().unwrap().into_owned());
        } else {
            r.skip_value().unwrap();
        }
    }
    assert_eq!(tag.as_deref(), Some("circle"));
    let mut r = look;
    assert_eq!(r.peek_kind().unwrap(), Kind::Object);
    assert_eq!(r.read_value().unwrap()["data"].as_u64(), Some(1));
    r.finish().unwrap();
}

#[test]
fn quote_escapes_and_round_trips() {
    assert_eq!(quote("plain"), "\"plain\"");
    assert_eq!(quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    let text = "tab\there \u{7f} \u{1f600}";
    assert_eq!(from_str::<String>(&quote(text)).expect("parses"), text);
}
