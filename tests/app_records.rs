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
    })
}

fn outlines() -> App {
    App::new("records-outlines")
        .model::<Outline>()
        .commands([chain_route(), marks_route()])
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
    let fine = request(addr, "POST", "/api/outlines/chain", "", "100");
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
    running.stop().unwrap();
    let (running, addr) = common::start(&outlines(), &data);
    assert_eq!(get(addr, "/api/outlines/1").status, 200);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
