//! Records a log must always be able to replay, and numbers that must stay exact: a record
//! built in Rust (by a command, not parsed from JSON) that the binary decoder would refuse is
//! refused before it reaches the log; 128-bit and near-limit 64-bit integers keep every digit
//! through JSON, filters, sort and unique indexes.

use lithair::app::{Params, Rejection, Tx};
use lithair::prelude::*;

mod common;
use common::{get, request};

/// A recursive field: a tree of labelled nodes.
#[derive(Json, Binary, Clone, Debug, Default, PartialEq)]
struct Node {
    label: String,
    kids: Vec<Node>,
}

#[derive(Model, Clone, Debug)]
struct Outline {
    #[db(primary_key)]
    id: u64,
    #[db(default)]
    root: Node,
    #[db(default)]
    marks: Vec<()>,
    #[db(default)]
    note: String,
}

/// Create an outline whose root is a chain `depth` nodes deep.
#[command(POST "/api/outlines/chain")]
fn chain(tx: &mut Tx<'_>, depth: &u64, _: &Params) -> Result<Outline, Rejection> {
    let mut root = Node::default();
    for _ in 0..*depth {
        root = Node {
            label: "n".into(),
            kids: vec![root],
        };
    }
    tx.create(Outline {
        id: 0,
        root,
        marks: Vec::new(),
        note: String::new(),
    })
}

/// Create an outline with `count` marks (zero-size elements).
#[command(POST "/api/outlines/marks")]
fn marks(tx: &mut Tx<'_>, count: &u64, _: &Params) -> Result<Outline, Rejection> {
    let count = usize::try_from(*count).map_err(|_| Rejection::Domain {
        status: 400,
        message: "too many".into(),
    })?;
    tx.create(Outline {
        id: 0,
        root: Node::default(),
        marks: vec![(); count],
        note: String::new(),
    })
}

/// Create an outline whose root label is `bytes` long.
#[command(POST "/api/outlines/wide")]
fn wide(tx: &mut Tx<'_>, bytes: &u64, _: &Params) -> Result<Outline, Rejection> {
    let bytes = usize::try_from(*bytes).map_err(|_| Rejection::Domain {
        status: 400,
        message: "too long".into(),
    })?;
    tx.create(Outline {
        id: 0,
        root: Node {
            label: "x".repeat(bytes),
            kids: Vec::new(),
        },
        marks: Vec::new(),
        note: String::new(),
    })
}

fn outlines() -> App {
    App::new("records-outlines").model::<Outline>().commands([
        chain_route(),
        marks_route(),
        wide_route(),
    ])
}

/// A command building a record deeper than the binary decoder accepts was encoded and logged,
/// then stopped the applier (the client's connection dropped) and every replay after. It must
/// be refused before the log, and the log must still open.
#[test]
fn a_record_too_deep_to_decode_is_refused_before_the_log() {
    let data = common::fresh_dir("records", "deep");
    let (running, addr) = common::start(&outlines(), &data);
    let deep = lithair::binary::DEPTH_MAX.to_string();
    let refused = request(addr, "POST", "/api/outlines/chain", "", &deep);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("root"), "{}", refused.body);
    // The deepest chain the decoder takes where the record sits deepest, in a snapshot (two
    // levels a node, the leaf's empty list, and the snapshot's, the collection's and the
    // record's bodies) is stored, read, replayed and snapshotted.
    let deepest = (lithair::binary::DEPTH_MAX - 5) / 2;
    let fine = request(
        addr,
        "POST",
        "/api/outlines/chain",
        "",
        &deepest.to_string(),
    );
    assert_eq!(fine.status, 200, "{}", fine.body);
    let read = get(addr, "/api/outlines/1");
    assert_eq!(read.status, 200);
    let too_deep = request(
        addr,
        "POST",
        "/api/outlines/chain",
        "",
        &(deepest + 1).to_string(),
    );
    assert_eq!(too_deep.status, 422, "{}", too_deep.body);
    running.stop().unwrap();
    let (running, addr) = common::start(&outlines(), &data);
    assert_eq!(get(addr, "/api/outlines/1").body, read.body);
    running.stop().unwrap();
    // A snapshot holds the record deeper than its event does (under the state and its
    // collection): it must decode too, or a start after compaction could not restore it.
    let path = data.to_str().expect("utf-8 temp path").to_string();
    let args = ["snapshot", "--data", &path].map(String::from);
    outlines().run_with(&args).expect("snapshot");
    let (running, addr) = common::start(&outlines(), &data);
    assert_eq!(get(addr, "/api/outlines/1").body, read.body);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// An event past the command size bound is refused with a problem at submit, not logged.
#[test]
fn a_record_past_the_command_size_bound_is_refused() {
    let data = common::fresh_dir("records", "huge");
    let (running, addr) = common::start(&outlines(), &data);
    let huge = (lithair::engine::COMMAND_BYTES_MAX + 1).to_string();
    let refused = request(addr, "POST", "/api/outlines/wide", "", &huge);
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(refused.json()["status"].as_u64(), Some(413));
    let fine = request(addr, "POST", "/api/outlines/wide", "", "1000");
    assert_eq!(fine.status, 200, "{}", fine.body);
    running.stop().unwrap();
    let (running, addr) = common::start(&outlines(), &data);
    assert_eq!(get(addr, "/api/outlines/1").status, 200);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// `Vec<()>` past the decoder's count bound for zero-size elements.
#[test]
fn a_record_with_too_many_empty_elements_is_refused_before_the_log() {
    let data = common::fresh_dir("records", "marks");
    let (running, addr) = common::start(&outlines(), &data);
    let many = (lithair::binary::ZERO_SIZE_COUNT_MAX + 1).to_string();
    let refused = request(addr, "POST", "/api/outlines/marks", "", &many);
    assert_eq!(refused.status, 422, "{}", refused.body);
    let fine = request(addr, "POST", "/api/outlines/marks", "", "3");
    assert_eq!(fine.status, 200, "{}", fine.body);
    // The same from a JSON body: `[null, ...]` is five bytes an element, well inside a body.
    let nulls = vec!["null"; many.parse().unwrap()].join(",");
    let body = format!(r#"{{"marks":[{nulls}]}}"#);
    let refused = request(addr, "POST", "/api/outlines", "", &body);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("marks"), "{}", refused.body);
    // A patch is read back alone, but the record it makes is what a snapshot holds: marks
    // sent with a long note pass (the decoder's count bound for empty elements allows as many
    // as bytes follow), then a patch shortening the note alone decodes, while the record it
    // leaves would not have, in every snapshot after.
    let count: usize = many.parse().unwrap();
    let nulls = vec!["null"; count].join(",");
    let note = "n".repeat(count);
    let body = format!(r#"{{"marks":[{nulls}],"note":"{note}"}}"#);
    let patched = request(addr, "PATCH", "/api/outlines/1", "", &body);
    assert_eq!(patched.status, 200, "{}", patched.body);
    let refused = request(addr, "PATCH", "/api/outlines/1", "", r#"{"note":""}"#);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("marks"), "{}", refused.body);
    running.stop().unwrap();
    let path = data.to_str().expect("utf-8 temp path").to_string();
    let args = ["snapshot", "--data", &path].map(String::from);
    outlines().run_with(&args).expect("snapshot");
    let (running, addr) = common::start(&outlines(), &data);
    assert_eq!(get(addr, "/api/outlines/1").status, 200);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[derive(Model, Clone, Debug)]
struct Ledger {
    #[db(primary_key)]
    id: u64,
    #[db(unique)]
    #[db(default)]
    serial: u128,
    #[db(indexed)]
    #[db(default)]
    delta: i128,
    #[db(default)]
    plain: u128,
    #[db(default)]
    wide: i64,
}

fn ledger_ids(addr: std::net::SocketAddr, query: &str) -> Vec<u64> {
    common::listed_ids(addr, "/api/ledgers", query)
}

/// 128-bit fields past 2^64 went through `Value` as f64: neighbours compared equal, so a
/// unique index refused the second as a duplicate, and filters and sort could not tell them
/// apart.
#[test]
fn wide_integers_stay_exact_in_json_filters_sort_and_indexes() {
    let data = common::fresh_dir("records", "wide");
    let app = App::new("records-wide").model::<Ledger>();
    let (running, addr) = common::start(&app, &data);
    let big = 1u128 << 64;
    let neg = -(1i128 << 70);
    let rows = [
        (big + 2, neg - 1, u128::MAX, i64::MAX),
        (big + 1, neg - 2, u128::MAX - 1, i64::MIN),
        (u128::MAX, i128::MIN, 0, i64::MAX - 1),
    ];
    for (serial, delta, plain, wide) in rows {
        let body =
            format!(r#"{{"serial":{serial},"delta":{delta},"plain":{plain},"wide":{wide}}}"#);
        let made = request(addr, "POST", "/api/ledgers", "", &body);
        assert_eq!(made.status, 201, "{body}: {}", made.body);
        for field in [serial.to_string(), delta.to_string(), plain.to_string()] {
            assert!(made.body.contains(&field), "{field} in {}", made.body);
        }
    }
    let dup = format!(r#"{{"serial":{}}}"#, big + 1);
    assert_eq!(request(addr, "POST", "/api/ledgers", "", &dup).status, 409);
    assert_eq!(ledger_ids(addr, &format!("serial={}", big + 1)), vec![2]);
    assert_eq!(ledger_ids(addr, &format!("serial={}", big + 2)), vec![1]);
    assert_eq!(
        ledger_ids(addr, &format!("serial=>{}", big + 1)),
        vec![1, 3]
    );
    assert_eq!(ledger_ids(addr, &format!("delta={}", neg - 2)), vec![2]);
    assert_eq!(ledger_ids(addr, &format!("delta=<{}", neg - 1)), vec![2, 3]);
    assert_eq!(ledger_ids(addr, &format!("plain={}", u128::MAX)), vec![1]);
    assert_eq!(
        ledger_ids(addr, &format!("plain=<{}", u128::MAX)),
        vec![2, 3]
    );
    // Past 128 bits: above and below every value (through f64, 2^128 equalled u128::MAX).
    let past = "340282366920938463463374607431768211456";
    assert_eq!(
        ledger_ids(addr, &format!("plain={past}")),
        Vec::<u64>::new()
    );
    assert_eq!(ledger_ids(addr, &format!("plain=<{past}")), vec![1, 2, 3]);
    assert_eq!(ledger_ids(addr, &format!("delta=>-{past}")), vec![1, 2, 3]);
    assert_eq!(ledger_ids(addr, &format!("wide={}", i64::MAX - 1)), vec![3]);
    assert_eq!(ledger_ids(addr, &format!("wide=<{}", i64::MAX)), vec![2, 3]);
    assert_eq!(ledger_ids(addr, "sort=serial"), vec![2, 1, 3]);
    assert_eq!(ledger_ids(addr, "sort=-plain"), vec![1, 2, 3]);
    assert_eq!(ledger_ids(addr, "sort=delta"), vec![3, 2, 1]);
    assert_eq!(ledger_ids(addr, "sort=wide"), vec![2, 3, 1]);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
