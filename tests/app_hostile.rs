//! The application surface against hostile or careless input: ids at the end of the u64 range,
//! a command computing a number JSON cannot carry, integer filters past 2^53, `*` validators,
//! and the offline tools pointed at a missing data directory or at another app's.

use lithair::app::{Params, Rejection, Tx};
use lithair::prelude::*;

mod common;
use common::{get, request};

#[derive(Model, Clone, Debug)]
struct Gauge {
    #[db(primary_key)]
    id: u64,
    #[db(indexed)]
    #[db(default)]
    group: u64,
    #[db(default)]
    scale: f64,
    #[db(default)]
    reset_at: Option<u64>,
}

/// Multiply a gauge's scale by the body.
#[command(POST "/api/gauges/{id}/amplify")]
fn amplify(tx: &mut Tx<'_>, factor: &f64, params: &Params) -> Result<Gauge, Rejection> {
    let id = params.id::<Gauge>("id")?;
    let gauge: Gauge = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Gauge",
        id: id.clone(),
    })?;
    let patch = GaugePatch {
        scale: Some(gauge.scale * factor),
        ..GaugePatch::default()
    };
    tx.update::<Gauge>(&id, patch)
}

fn app() -> App {
    App::new("hostile-test")
        .model::<Gauge>()
        .route_command(amplify_route())
}

fn post(addr: std::net::SocketAddr, body: &str) -> common::Answer {
    request(addr, "POST", "/api/gauges", "", body)
}

#[test]
fn ids_never_wrap_after_a_client_takes_the_largest() {
    let data = common::fresh_dir("hostile", "ids");
    let (running, addr) = common::start(&app(), &data);
    let max = u64::MAX;
    let taken = post(addr, &format!(r#"{{"id":{max}}}"#));
    assert_eq!(taken.status, 201, "{}", taken.body);
    // The next id would be u64::MAX + 1: it must not wrap to 0 (and then collide forever).
    for body in ["{}", r#"{"id":0}"#] {
        let refused = post(addr, body);
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert!(
            refused.body.contains("no integer id left"),
            "{}",
            refused.body
        );
    }
    assert_eq!(get(addr, "/api/gauges/0").status, 404);
    // A client may still choose a free id.
    assert_eq!(post(addr, r#"{"id":7}"#).status, 201);
    let listed = get(addr, "/api/gauges").json();
    assert_eq!(listed["total"].as_u64(), Some(2));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_command_computing_infinity_is_refused_and_reads_keep_working() {
    let data = common::fresh_dir("hostile", "finite");
    let (running, addr) = common::start(&app(), &data);
    assert_eq!(post(addr, r#"{"scale":1e308}"#).status, 201);
    let refused = request(addr, "POST", "/api/gauges/1/amplify", "", "10");
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("scale"), "{}", refused.body);
    let one = get(addr, "/api/gauges/1");
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["scale"].as_f64(), Some(1e308));
    assert_eq!(one.header("etag"), Some("\"1\""), "nothing was committed");
    assert_eq!(get(addr, "/api/gauges").status, 200);
    let doubled = request(addr, "POST", "/api/gauges/1/amplify", "", "0.5");
    assert_eq!(doubled.status, 200, "{}", doubled.body);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

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
}

/// A record as deep as JSON allows is stored, applied and replayed. Its event nests about as
/// deep in the binary codec, whose limit was 128: the event was sequenced and then did not
/// decode at apply (500, the applier panicked; a restart would replay it again).
#[test]
fn a_record_as_deep_as_json_allows_is_stored_and_replayed() {
    let data = common::fresh_dir("hostile", "deep");
    let app = App::new("hostile-deep").model::<Outline>();
    let (running, addr) = common::start(&app, &data);
    // Two JSON levels per node ({"kids":[...]}), under the outer object: 511 levels in all.
    let depth = (lithair::json::DEPTH_MAX_DEFAULT - 1) / 2 - 1;
    let mut root = String::from(r#"{"label":"leaf","kids":[]}"#);
    for _ in 0..depth {
        root = format!(r#"{{"label":"n","kids":[{root}]}}"#);
    }
    let created = request(
        addr,
        "POST",
        "/api/outlines",
        "",
        &format!(r#"{{"root":{root}}}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let read = get(addr, "/api/outlines/1");
    assert_eq!(read.status, 200, "{}", read.body);
    running.stop().unwrap();
    let (running, addr) = common::start(&app, &data);
    let replayed = get(addr, "/api/outlines/1");
    assert_eq!(replayed.body, read.body, "the same record after replay");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

fn ids(addr: std::net::SocketAddr, query: &str) -> Vec<u64> {
    common::listed_ids(addr, "/api/gauges", query)
}

#[test]
fn integer_filters_are_exact_and_agree_with_the_index() {
    let data = common::fresh_dir("hostile", "filters");
    let (running, addr) = common::start(&app(), &data);
    let (low, high) = (9_007_199_254_740_992u64, 9_007_199_254_740_993u64);
    for (id, group) in [(1, 1), (low, 2), (high, 2)] {
        let made = post(addr, &format!(r#"{{"id":{id},"group":{group}}}"#));
        assert_eq!(made.status, 201, "{}", made.body);
    }
    assert_eq!(ids(addr, &format!("id={high}")), vec![high]);
    assert_eq!(ids(addr, &format!("id={low}")), vec![low]);
    assert_eq!(ids(addr, &format!("id=>{low}")), vec![high]);
    assert_eq!(ids(addr, &format!("id=!{low}")), vec![1, high]);
    assert_eq!(ids(addr, "id=>=18446744073709551616"), Vec::<u64>::new());
    // `group` is indexed: the index must find what a scan finds.
    for spelling in ["1", "01", "%2B1", "1.0"] {
        assert_eq!(
            ids(addr, &format!("group={spelling}")),
            vec![1],
            "{spelling}"
        );
    }
    assert_eq!(ids(addr, "reset_at=null"), vec![1, low, high]);
    assert_eq!(ids(addr, "reset_at=!null"), Vec::<u64>::new());
    for query in ["id=NaN", "id=!NaN", "id=inf", "group=null"] {
        let refused = get(addr, &format!("/api/gauges?{query}"));
        assert_eq!(refused.status, 400, "{query}: {}", refused.body);
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn any_tag_validators_mean_the_record_exists() {
    let data = common::fresh_dir("hostile", "star");
    let (running, addr) = common::start(&app(), &data);
    assert_eq!(post(addr, "{}").status, 201);
    let cached = request(addr, "GET", "/api/gauges/1", "If-None-Match: *\r\n", "");
    assert_eq!(cached.status, 304, "{}", cached.body);
    let patched = request(
        addr,
        "PATCH",
        "/api/gauges/1",
        "If-Match: *\r\n",
        r#"{"group":3}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let missing = request(addr, "PATCH", "/api/gauges/9", "If-Match: *\r\n", "{}");
    assert_eq!(missing.status, 404, "{}", missing.body);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn if_match_lists_compare_strongly() {
    let data = common::fresh_dir("hostile", "ifmatch");
    let (running, addr) = common::start(&app(), &data);
    assert_eq!(post(addr, "{}").status, 201);
    let patch = |validator: &str, body: &str| {
        request(
            addr,
            "PATCH",
            "/api/gauges/1",
            &format!("If-Match: {validator}\r\n"),
            body,
        )
    };
    // A list naming the current version (1) among others.
    let listed = patch(r#""7", "1""#, r#"{"group":2}"#);
    assert_eq!(listed.status, 200, "{}", listed.body);
    // The record is at version 2 now. A weak tag never matches (RFC 9110 §13.1.1), even the
    // current version's.
    let weak = patch(r#"W/"2""#, r#"{"group":3}"#);
    assert_eq!(weak.status, 412, "{}", weak.body);
    let weak_beside = patch(r#""1", W/"2""#, r#"{"group":3}"#);
    assert_eq!(weak_beside.status, 409, "{}", weak_beside.body);
    let not_ours = patch(r#""02""#, r#"{"group":3}"#);
    assert_eq!(not_ours.status, 400, "{}", not_ours.body);
    let current = get(addr, "/api/gauges/1");
    assert!(current.body.contains(r#""group":2"#), "{}", current.body);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

fn run(args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    app().run_with(&args)
}

#[test]
fn offline_tools_refuse_a_missing_data_directory_without_creating_it() {
    let missing = common::fresh_dir("hostile", "missing");
    let path = missing.to_str().expect("utf-8 temp path");
    for command in [
        &["replay", "--data", path][..],
        &["snapshot", "--data", path],
        &["log", "verify", "--data", path],
        &["log", "stats", "--data", path],
    ] {
        let refused = run(command).expect_err("a missing directory is an error");
        assert!(refused.starts_with("no data directory"), "{refused}");
        assert!(!missing.exists(), "{command:?} created {path}");
    }
}

/// Set in the child process of [`a_data_directory_of_another_app_is_an_error_not_a_panic`].
const FOREIGN_CHILD_ENV: &str = "LITHAIR_TEST_FOREIGN_DATA";

#[derive(Model, Clone, Debug)]
struct Stranger {
    #[db(primary_key)]
    id: u64,
}

#[test]
fn a_data_directory_of_another_app_is_an_error_not_a_panic() {
    if let Ok(dir) = std::env::var(FOREIGN_CHILD_ENV) {
        // The child: only `Stranger` is known in this process, so the `Gauge` events of the
        // log belong to no model of it.
        let other = App::new("stranger").model::<Stranger>();
        let args = ["replay".to_string(), "--data".to_string(), dir];
        let refused = other.run_with(&args).expect_err("another app's log");
        assert!(refused.contains("`Gauge`"), "{refused}");
        return;
    }
    let data = common::fresh_dir("hostile", "foreign");
    let (running, addr) = common::start(&app(), &data);
    assert_eq!(post(addr, "{}").status, 201);
    running.stop().unwrap();
    // A fresh process, so the registry of models holds `Stranger` alone.
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_data_directory_of_another_app_is_an_error_not_a_panic",
        ])
        .env(FOREIGN_CHILD_ENV, &data)
        .output()
        .expect("run the child");
    assert!(
        child.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    let _ = std::fs::remove_dir_all(&data);
}
