//! Idempotent retries whose first answer is no longer at hand: next to an eventless keyed
//! command, and after the first request's events were compacted out of the log. Both were
//! found by a review of the write path: the first gave a retry another request's answer, the
//! second refused a genuine retry as a reused key (409).

use lithair::app::{Params, Rejection, Tx};
use lithair::prelude::*;

mod common;
use common::request;

#[derive(Model, Clone, Debug)]
struct Counter {
    #[db(primary_key)]
    id: u64,
    #[db(default)]
    value: u64,
}

/// Adds `by` to counter `id`; adding 0 changes nothing and stages no event.
#[command(POST "/api/counters/{id}/add")]
fn add(tx: &mut Tx<'_>, by: &u64, params: &Params) -> Result<Counter, Rejection> {
    let id = params.id::<Counter>("id")?;
    let counter: Counter = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Counter",
        id: id.clone(),
    })?;
    if *by == 0 {
        return Ok(counter);
    }
    let patch = CounterPatch {
        value: Some(counter.value + *by),
    };
    tx.update::<Counter>(&id, patch)
}

fn counter_app() -> App {
    App::new("keyed-retries-cmd")
        .model::<Counter>()
        .route_command(add_route())
}

/// A keyed command that stages no event holds no log index: the next keyed command's events
/// start at the index it reported. Its answer was kept under that index, so the next
/// command's answer was not, and that command's retry got the eventless one's body.
#[test]
fn a_keyed_command_retry_gets_its_own_answer_not_an_eventless_neighbours() {
    let data = common::fresh_dir("keyed-retries", "cmd-answers");
    let (running, addr) = common::start(&counter_app(), &data);
    let created = request(addr, "POST", "/api/counters", "", r#"{"id":0}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    let path = "/api/counters/1/add";
    let noop = request(addr, "POST", path, "Idempotency-Key: ka\r\n", "0");
    assert_eq!(noop.status, 200, "{}", noop.body);
    assert_eq!(noop.json()["value"].as_u64(), Some(0));
    let first = request(addr, "POST", path, "Idempotency-Key: kb\r\n", "5");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["value"].as_u64(), Some(5));
    let retry = request(addr, "POST", path, "Idempotency-Key: kb\r\n", "5");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.status, 200);
    assert_eq!(
        retry.body, first.body,
        "the retry of kb must answer kb's first answer, not ka's"
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// A keyed create whose outcome left the in-memory window and whose log segment was compacted
/// into a snapshot: the engine still holds the key (the snapshot carries the idempotency
/// window), so the retry is a duplicate, but the log no longer says which record it touched.
/// It is answered as done (the route's status, `Idempotent-Replayed: true`, no body), as
/// command routes answer a retry they no longer remember, never as a reused key.
#[test]
fn a_keyed_retry_after_compaction_is_answered_as_a_retry() {
    let data = common::fresh_dir("keyed-retries", "compacted");
    let options = lithair::engine::EngineOptions {
        segment_bytes_max: 4096,
        ..lithair::engine::EngineOptions::default()
    };
    let app = App::new("keyed-retries-compact")
        .model::<Counter>()
        .engine_options(options)
        .outcome_window(1);
    let (running, addr) = common::start(&app, &data);
    let body = r#"{"id":0,"value":7}"#;
    let first = request(
        addr,
        "POST",
        "/api/counters",
        "Idempotency-Key: k0\r\n",
        body,
    );
    assert_eq!(first.status, 201, "{}", first.body);
    for round in 0..2 {
        for _ in 0..100 {
            let unkeyed = request(addr, "POST", "/api/counters", "", r#"{"id":0}"#);
            assert_eq!(unkeyed.status, 201, "{}", unkeyed.body);
        }
        let info = running.handle.engine().snapshot().expect("snapshot");
        assert!(round == 0 || info.segments_deleted >= 1, "{info:?}");
    }
    // Evicts k0 from the outcome window of 1.
    let other = request(
        addr,
        "POST",
        "/api/counters",
        "Idempotency-Key: k1\r\n",
        body,
    );
    assert_eq!(other.status, 201, "{}", other.body);
    let retry = request(
        addr,
        "POST",
        "/api/counters",
        "Idempotency-Key: k0\r\n",
        body,
    );
    assert_eq!(
        (retry.status, retry.header("idempotent-replayed")),
        (201, Some("true")),
        "{}",
        retry.body
    );
    assert!(retry.body.is_empty(), "{}", retry.body);
    // The same key with another body is still refused (the engine's fingerprint check).
    let other_body = request(
        addr,
        "POST",
        "/api/counters",
        "Idempotency-Key: k0\r\n",
        r#"{"id":0,"value":8}"#,
    );
    assert!(
        other_body.status >= 400,
        "{} {}",
        other_body.status,
        other_body.body
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
