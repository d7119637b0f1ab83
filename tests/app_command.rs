//! `#[command]` over real sockets: methods other than POST, statuses, path parameters, the
//! summaries in `/openapi.json`, and rejections that leave the state unchanged.

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
    #[db(default)]
    label: String,
}

/// Create a counter at zero.
#[command(POST "/api/counters", status = 201)]
fn make(tx: &mut Tx<'_>, _: &(), _: &Params) -> Result<Counter, Rejection> {
    tx.create(Counter {
        id: 0,
        value: 0,
        label: "new".into(),
    })
}

/// Add to a counter.
///
/// The body is the amount; the sum may not pass 100.
#[command(PATCH "/api/counters/{id}/value", status = 202)]
fn add(tx: &mut Tx<'_>, by: &u64, params: &Params) -> Result<Counter, Rejection> {
    let id = params.id::<Counter>("id")?;
    let counter: Counter = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Counter",
        id: id.clone(),
    })?;
    let value = counter.value.saturating_add(*by);
    if value > 100 {
        return Err(Rejection::Domain {
            status: 409,
            message: format!("{value} passes 100"),
        });
    }
    let patch = CounterPatch {
        value: Some(value),
        ..CounterPatch::default()
    };
    tx.update::<Counter>(&id, patch)
}

#[command(DELETE "/api/counters/{id}/value", summary = "Reset a counter")]
fn reset(tx: &mut Tx<'_>, _: &(), params: &Params) -> Result<Counter, Rejection> {
    let id = params.id::<Counter>("id")?;
    let patch = CounterPatch {
        value: Some(0),
        ..CounterPatch::default()
    };
    tx.update::<Counter>(&id, patch)
}

/// Share a counter's value out in `parts`: a division by a client's number, with the bug of
/// not refusing 0 (a panic in the command's code).
#[command(POST "/api/counters/{id}/share")]
fn share(tx: &mut Tx<'_>, parts: &u64, params: &Params) -> Result<Counter, Rejection> {
    let id = params.id::<Counter>("id")?;
    let counter: Counter = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Counter",
        id: id.clone(),
    })?;
    let patch = CounterPatch {
        value: Some(counter.value / *parts),
        ..CounterPatch::default()
    };
    tx.update::<Counter>(&id, patch)
}

fn app() -> App {
    App::new("command-test")
        .model_read_only::<Counter>()
        .route_command(make_route())
        .commands([add_route(), reset_route(), share_route()])
}

#[test]
fn a_command_that_panics_is_a_500_and_later_writes_go_on() {
    let data = common::fresh_dir("app", "command-panics");
    let (running, addr) = common::start(&app(), &data);
    let created = request(addr, "POST", "/api/counters", "", "");
    let id = created.json()["id"].as_u64().unwrap();
    let added = request(
        addr,
        "PATCH",
        &format!("/api/counters/{id}/value"),
        "",
        "60",
    );
    assert_eq!(added.status, 202, "{}", added.body);

    let share = format!("/api/counters/{id}/share");
    let panicked = request(addr, "POST", &share, "", "0");
    assert_eq!(panicked.status, 500, "{}", panicked.body);
    assert_eq!(panicked.json()["status"].as_u64(), Some(500));
    // Before, the panic ended the engine's sequencer: this write then never got an answer.
    let shared = request(addr, "POST", &share, "", "3");
    assert_eq!(
        (shared.status, shared.json()["value"].as_u64()),
        (200, Some(20)),
        "{}",
        shared.body
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn routes_carry_their_method_status_and_summary() {
    let route = add_route();
    assert_eq!(route.method().as_str(), "PATCH");
    assert_eq!(route.path(), "/api/counters/{id}/value");
    assert_eq!(route.status(), 202);
    assert_eq!(route.summary(), "Add to a counter");
    assert_eq!(make_route().summary(), "Create a counter at zero");
    assert_eq!(reset_route().summary(), "Reset a counter");
    assert_eq!(reset_route().method().as_str(), "DELETE");
    assert_eq!(reset_route().status(), 200);
}

#[test]
fn commands_answer_on_their_methods() {
    let data = common::fresh_dir("app", "command");
    let (running, addr) = common::start(&app(), &data);

    let created = request(addr, "POST", "/api/counters", "", "");
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_u64().unwrap();
    let path = format!("/api/counters/{id}/value");

    let added = request(addr, "PATCH", &path, "", "60");
    assert_eq!(
        (added.status, added.json()["value"].as_u64()),
        (202, Some(60))
    );
    let too_much = request(addr, "PATCH", &path, "", "41");
    assert_eq!(too_much.status, 409, "{}", too_much.body);
    let missing = request(addr, "PATCH", "/api/counters/999/value", "", "1");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let not_a_number = request(addr, "PATCH", &path, "", "\"x\"");
    assert_eq!(not_a_number.status, 422, "{}", not_a_number.body);
    let wrong_method = request(addr, "POST", &path, "", "1");
    assert_eq!(
        wrong_method.status, 405,
        "a PATCH command does not answer POST"
    );
    let read = request(addr, "GET", &format!("/api/counters/{id}"), "", "");
    assert_eq!(
        read.json()["value"].as_u64(),
        Some(60),
        "rejected writes change nothing"
    );

    let reset = request(addr, "DELETE", &path, "", "");
    assert_eq!(
        (reset.status, reset.json()["value"].as_u64()),
        (200, Some(0))
    );

    let spec = request(addr, "GET", "/openapi.json", "", "").json();
    let item = &spec["paths"]["/api/counters/{id}/value"];
    assert_eq!(item["patch"]["summary"].as_str(), Some("Add to a counter"));
    assert_eq!(item["delete"]["summary"].as_str(), Some("Reset a counter"));
    assert_eq!(
        spec["paths"]["/api/counters"]["post"]["summary"].as_str(),
        Some("Create a counter at zero")
    );

    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
