//! Conformance: every file of JSONTestSuite's `test_parsing` (copied into
//! tests/data/JSONTestSuite): `y_` must be accepted, `n_` rejected, `i_` must not panic.
//! Files are read as bytes (some are not UTF-8) and go through `json::parse_bytes`.
//! The typed path (`from_str::<Value>`) must agree with the parser on every UTF-8 file.

use lithair::json::{self, Value};
use std::path::PathBuf;

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite/test_parsing")
}

/// (name, bytes) of every file in the suite, sorted by name.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(suite_dir())
        .expect("the JSONTestSuite copy is in tests/data")
        .map(|entry| {
            let path = entry.expect("readable directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("readable test file");
            (name, bytes)
        })
        .collect();
    cases.sort();
    cases
}

fn typed(bytes: &[u8]) -> Option<Result<Value, json::Error>> {
    std::str::from_utf8(bytes).ok().map(json::from_str::<Value>)
}

#[test]
fn every_file_of_the_suite() {
    let cases = cases();
    assert!(
        cases.len() >= 300,
        "expected the whole suite, found {} files",
        cases.len()
    );
    let mut failures = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for (name, bytes) in &cases {
        let result = json::parse_bytes(bytes);
        let typed = typed(bytes);
        if let Some(typed) = &typed {
            if typed.is_ok() != result.is_ok() {
                failures.push(format!("{name}: typed path disagrees with the parser"));
            }
        }
        match (&name[..2], &result) {
            ("y_", Ok(value)) => {
                accepted += 1;
                // Whatever was accepted must write and re-parse to the same value.
                let text = json::to_string(value).expect("parsed values are finite");
                if json::parse(&text).as_ref() != Ok(value) {
                    failures.push(format!("{name}: does not round-trip through {text}"));
                }
            }
            ("y_", Err(e)) => failures.push(format!("{name}: rejected: {e}")),
            ("n_", Ok(v)) => failures.push(format!("{name}: accepted as {v:?}")),
            ("n_", Err(e)) => {
                rejected += 1;
                assert!(!e.message().is_empty());
                assert!(
                    e.line() >= 1 && e.column() >= 1,
                    "{name}: {e} has no position"
                );
            }
            ("i_", _) => {}
            _ => failures.push(format!("{name}: unexpected file name")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        accepted >= 95 && rejected >= 180,
        "accepted {accepted}, rejected {rejected}"
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    for (name, bytes) in cases() {
        if std::str::from_utf8(&bytes).is_err() {
            assert!(
                json::parse_bytes(&bytes).is_err(),
                "{name} is not UTF-8 but was accepted"
            );
        }
    }
}
