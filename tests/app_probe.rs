//! Second-round probe of the App model surface: list filters through an equality index agree
//! with a scan, substring filters never match an absent value, and the version a command
//! reports matches the stored one.

use lithair::app::{Params, Rejection, Tx};
use lithair::prelude::*;

mod common;
use common::{get, request};

#[derive(Model, Clone, Debug)]
struct Reading {
    #[db(primary_key)]
    id: u64,
    #[db(indexed)]
    #[db(default)]
    level: f64,
    #[db(default)]
    plain: f64,
    #[db(default)]
    counter: u64,
    #[db(default)]
    nick: Option<String>,
}

fn app() -> App {
    App::new("probe-test").model::<Reading>()
}

fn ids(answer: &common::Answer) -> Vec<u64> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let listed = answer.json();
    listed["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", answer.body))
        .iter()
        .map(|record| record["id"].as_u64().unwrap())
        .collect()
}

fn post(addr: std::net::SocketAddr, body: &str) {
    let created = request(addr, "POST", "/api/readings", "", body);
    assert_eq!(created.status, 201, "{}", created.body);
}

#[test]
fn an_indexed_float_filter_finds_what_a_scan_finds() {
    let data = common::fresh_dir("probe", "float-index");
    let (running, addr) = common::start(&app(), &data);
    post(addr, r#"{"level":2.0,"plain":2.0}"#);
    post(addr, r#"{"level":2.5,"plain":2.5}"#);
    post(addr, r#"{"level":-0.0,"plain":-0.0}"#);
    for (operand, want) in [
        ("2", vec![1]),
        ("2.0", vec![1]),
        ("2.50", vec![2]),
        ("25e-1", vec![2]),
        ("0", vec![3]),
        ("-0", vec![3]),
    ] {
        let scanned = ids(&get(addr, &format!("/api/readings?plain={operand}")));
        assert_eq!(scanned, want, "plain={operand}");
        let indexed = ids(&get(addr, &format!("/api/readings?level={operand}")));
        assert_eq!(indexed, want, "level={operand} (indexed)");
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_substring_or_range_filter_never_matches_an_absent_value() {
    let data = common::fresh_dir("probe", "contains-null");
    let (running, addr) = common::start(&app(), &data);
    post(addr, r#"{"nick":null}"#);
    post(addr, r#"{"nick":"nullish"}"#);
    post(addr, r#"{"nick":"ann"}"#);
    assert_eq!(ids(&get(addr, "/api/readings?nick=~ul")), vec![2]);
    assert_eq!(ids(&get(addr, "/api/readings?nick=~n")), vec![2, 3]);
    // Nor does a bound: an absent value is below nothing and above nothing (it sorts first,
    // which made `<` and `<=` find it). `!` (not equal) still does.
    assert_eq!(ids(&get(addr, "/api/readings?nick=<zz")), vec![2, 3]);
    assert_eq!(ids(&get(addr, "/api/readings?nick=<=b")), vec![3]);
    assert_eq!(ids(&get(addr, "/api/readings?nick=>=a")), vec![2, 3]);
    assert_eq!(ids(&get(addr, "/api/readings?nick=!ann")), vec![1, 2]);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// Delete reading 1 and create it again under the same id, answering the version the
/// command reports for it.
#[command(POST "/api/readings/renew")]
fn renew(tx: &mut Tx<'_>, _: &(), _: &Params) -> Result<u64, Rejection> {
    let id = lithair::app::Id::Int(1);
    let old: Reading = tx.delete(&id)?;
    tx.create(old)?;
    Ok(tx.version::<Reading>(&id))
}

#[test]
fn the_version_after_a_delete_and_create_in_one_command_is_the_stored_one() {
    let data = common::fresh_dir("probe", "renew");
    let app = app().route_command(renew_route());
    let (running, addr) = common::start(&app, &data);
    post(addr, r#"{"counter":1}"#);
    let patched = request(addr, "PATCH", "/api/readings/1", "", r#"{"counter":2}"#);
    assert_eq!(patched.status, 200, "{}", patched.body);
    let renewed = request(addr, "POST", "/api/readings/renew", "", "");
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let stored = get(addr, "/api/readings/1");
    assert_eq!(stored.header("etag"), Some("\"1\""));
    assert_eq!(renewed.body, "1");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// Create a reading with the counter the body names.
#[command(POST "/api/readings/count", status = 201)]
fn count(tx: &mut Tx<'_>, counter: &u64, _: &Params) -> Result<Reading, Rejection> {
    tx.create(Reading {
        id: 0,
        level: 0.0,
        plain: 0.0,
        counter: *counter,
        nick: None,
    })
}

#[test]
fn a_keyed_command_retry_gets_the_first_answer_and_another_body_is_refused() {
    let data = common::fresh_dir("probe", "keyed-command");
    let app = app().route_command(count_route());
    let (running, addr) = common::start(&app, &data);
    let key = "Idempotency-Key: order-1\r\n";
    let first = request(addr, "POST", "/api/readings/count", key, "7");
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json()["counter"].as_u64(), Some(7));
    let retry = request(addr, "POST", "/api/readings/count", key, "7");
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
    // The key sent with another body: refused, and nothing stored for it.
    let reused = request(addr, "POST", "/api/readings/count", key, "8");
    assert_eq!(reused.status, 422, "{}", reused.body);
    let listed = get(addr, "/api/readings").json();
    assert_eq!(listed["total"].as_u64(), Some(1), "{listed:?}");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// A record written through commands only.
#[derive(Model, Clone, Debug)]
struct Ledger {
    #[db(primary_key)]
    id: String,
    #[db(default)]
    lines: Vec<String>,
}

/// Close a ledger.
#[command(POST "/api/ledgers/{id}/close", status = 201)]
fn close(_: &mut Tx<'_>, _: &(), _: &Params) -> Result<(), Rejection> {
    Ok(())
}

#[test]
fn openapi_describes_the_routes_and_fields_as_served() {
    let data = common::fresh_dir("probe", "openapi");
    let app = app()
        .model_read_only::<Ledger>()
        .route_command(close_route());
    let (running, addr) = common::start(&app, &data);
    let spec = get(addr, "/openapi.json").json();
    let paths = spec["paths"].as_object().unwrap();
    // A read-only model serves no write route: none is described.
    let ledgers = paths.get("/api/ledgers").unwrap().as_object().unwrap();
    assert!(ledgers.get("post").is_none(), "{ledgers:?}");
    let ledger = paths.get("/api/ledgers/{id}").unwrap().as_object().unwrap();
    for method in ["put", "patch", "delete"] {
        assert!(ledger.get(method).is_none(), "{method}: {ledger:?}");
    }
    assert_eq!(
        request(addr, "DELETE", "/api/ledgers/a", "", "").status,
        405,
        "the route the description leaves out is indeed not served"
    );
    // A command answers with its own status.
    let close = &spec["paths"]["/api/ledgers/{id}/close"]["post"]["responses"];
    assert!(close["201"].is_object(), "{close:?}");
    assert!(close["200"].is_null(), "{close:?}");
    // Every `{param}` of every path is declared (OpenAPI requires it), with the key's type.
    for (path, item) in paths.as_slice() {
        let declared: Vec<&str> = item["parameters"]
            .as_array()
            .map(|list| list.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(declared.contains(&name), "{path}: {item:?}");
            }
        }
    }
    let reading_id = &spec["paths"]["/api/readings/{id}"]["parameters"][0];
    assert_eq!(reading_id["schema"]["type"].as_str(), Some("integer"));
    assert_eq!(reading_id["in"].as_str(), Some("path"));
    let ledger_id = &spec["paths"]["/api/ledgers/{id}"]["parameters"][0];
    assert_eq!(ledger_id["schema"]["type"].as_str(), Some("string"));
    // Fields as served: an Option may be null, a Vec is no object.
    let reading = &spec["components"]["schemas"]["Reading"]["properties"];
    let nick = lithair::json::to_string(&reading["nick"]["type"]).unwrap();
    assert_eq!(nick, r#"["string","null"]"#);
    let lines = &spec["components"]["schemas"]["Ledger"]["properties"]["lines"];
    assert!(lines["type"].as_str() != Some("object"), "{lines:?}");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// Refuse with the status the body names (an app's mistake when it is no error status).
#[command(POST "/api/readings/refuse")]
fn refuse(_: &mut Tx<'_>, status: &u16, _: &Params) -> Result<u64, Rejection> {
    Err(Rejection::Domain {
        status: *status,
        message: "no".into(),
    })
}

#[test]
fn a_rejection_with_a_status_that_is_no_error_answers_500() {
    let data = common::fresh_dir("probe", "refuse");
    let app = app().route_command(refuse_route());
    let (running, addr) = common::start(&app, &data);
    for (status, want) in [
        (200u16, 500u16),
        (204, 500),
        (304, 500),
        (101, 500),
        (1000, 500),
        (0, 500),
        (400, 400),
        (418, 418),
        (599, 599),
    ] {
        let refused = request(
            addr,
            "POST",
            "/api/readings/refuse",
            "",
            &status.to_string(),
        );
        assert_eq!(refused.status, want, "{status}: {}", refused.body);
        assert_eq!(refused.json()["status"].as_u64(), Some(u64::from(want)));
        let detail = refused.json()["detail"].as_str().map(str::to_string);
        assert!(
            detail.is_some_and(|d| d.ends_with("no")),
            "{}",
            refused.body
        );
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
#[should_panic(expected = "status 204 is not a 2xx that allows a body")]
fn a_command_built_at_run_time_with_a_bodiless_status_is_refused() {
    // `#[command(.., status = 204)]` is a compile error; the run-time builder says so too,
    // instead of answering 204 with a body (or a retry with a bare 204).
    let _ = App::new("probe-test").command("/api/x", 204, "x", |_, _: &(), _| Ok(1u8));
}

/// A model keyed by the client's text.
#[derive(Model, Clone, Debug)]
struct Tag {
    #[db(primary_key)]
    id: String,
    #[db(default)]
    uses: u64,
}

#[test]
fn the_location_of_a_created_record_names_it_whatever_its_key() {
    let data = common::fresh_dir("probe", "location");
    let app = App::new("probe-location").model::<Tag>();
    let (running, addr) = common::start(&app, &data);
    // `%41` decodes to `A`, which another record may hold: the Location must not name it.
    assert_eq!(
        request(addr, "POST", "/api/tags", "", r#"{"id":"A","uses":1}"#).status,
        201
    );
    for id in ["a b", "a/b", "é?x#y", "%41", "plain-id_1.~"] {
        let body = format!(r#"{{"id":{}}}"#, lithair::json::to_string(&id).unwrap());
        let created = request(addr, "POST", "/api/tags", "", &body);
        assert_eq!(created.status, 201, "{id}: {}", created.body);
        let location = created
            .header("location")
            .unwrap_or_else(|| panic!("{id}: no Location in {}", created.head))
            .to_string();
        assert!(
            location.bytes().all(|b| b.is_ascii_graphic()),
            "{id}: {location}"
        );
        let found = get(addr, &location);
        assert_eq!(found.status, 200, "{id}: {location} -> {}", found.body);
        assert_eq!(found.json()["id"].as_str(), Some(id), "{location}");
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_string_id_naming_a_route_of_its_model_is_refused() {
    let data = common::fresh_dir("probe", "route-ids");
    let app = App::new("probe-route-ids").model::<Tag>();
    let (running, addr) = common::start(&app, &data);
    // `GET /api/tags/stream` is the live feed, `/_schema` the description, `/live` the
    // WebSocket feed: a record under one of them could never be read back.
    for id in ["_schema", "stream", "live"] {
        let body = format!(r#"{{"id":"{id}"}}"#);
        let refused = request(addr, "POST", "/api/tags", "", &body);
        assert_eq!(refused.status, 422, "{id}: {}", refused.body);
        assert!(refused.body.contains("names a route"), "{}", refused.body);
    }
    assert_eq!(
        request(addr, "POST", "/api/tags", "", r#"{"id":"streams"}"#).status,
        201
    );
    assert_eq!(get(addr, "/api/tags").json()["total"].as_u64(), Some(1));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// `PATCH {}` changes nothing (RFC 7396), so it writes no event: the version and the ETag
/// stay (before, each one bumped the version and invalidated every cached copy). A keyed
/// retry of it, and `If-Match` on it, still answer as for any write.
#[test]
fn an_empty_patch_writes_nothing() {
    let data = common::fresh_dir("probe", "empty-patch");
    let (running, addr) = common::start(&app(), &data);
    post(addr, r#"{"counter":7}"#);
    for _ in 0..2 {
        let patched = request(addr, "PATCH", "/api/readings/1", "", "{}");
        assert_eq!(patched.status, 200, "{}", patched.body);
        assert!(patched.body.contains("\"counter\":7"), "{}", patched.body);
        assert_eq!(patched.header("etag"), Some("\"1\""));
    }
    let keyed = "Idempotency-Key: k1\r\n";
    for _ in 0..2 {
        let patched = request(addr, "PATCH", "/api/readings/1", keyed, "{}");
        assert_eq!(patched.status, 200, "{}", patched.body);
    }
    let stale = request(
        addr,
        "PATCH",
        "/api/readings/1",
        "If-Match: \"5\"\r\n",
        "{}",
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert_eq!(get(addr, "/api/readings/1").header("etag"), Some("\"1\""));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
