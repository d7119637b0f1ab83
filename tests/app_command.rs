//! `#[command]` over real sockets: methods other than POST, statuses, path parameters, the
//! summaries in `/openapi.json`, and rejections that leave the state unchanged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use lithair::app::cli::ServeOptions;
use lithair::app::{Params, Rejection, Tx};
use lithair::json::{self, Value};
use lithair::prelude::*;

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

fn app() -> App {
    App::new("command-test")
        .model_read_only::<Counter>()
        .route_command(make_route())
        .commands([add_route(), reset_route()])
}

fn options(data: PathBuf) -> ServeOptions {
    ServeOptions {
        port: 0,
        bind: "127.0.0.1".parse().unwrap(),
        data,
        node_id: None,
        peer_port: None,
        cluster: Vec::new(),
        join: None,
        cluster_secret: None,
        read_mode: Default::default(),
        extra: Vec::new(),
    }
}

/// Sends one request and returns the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn value(body: &str) -> Value {
    json::parse(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
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
    let data = std::env::temp_dir().join(format!("lithair-command-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let running = app().start(&options(data.clone())).unwrap();
    let addr = running.server.local_addr();

    let (status, body) = request(addr, "POST", "/api/counters", "");
    assert_eq!(status, 201, "{body}");
    let id = value(&body)["id"].as_u64().unwrap();
    let path = format!("/api/counters/{id}/value");

    let (status, body) = request(addr, "PATCH", &path, "60");
    assert_eq!((status, value(&body)["value"].as_u64()), (202, Some(60)));
    let (status, body) = request(addr, "PATCH", &path, "41");
    assert_eq!(status, 409, "{body}");
    let (status, body) = request(addr, "PATCH", "/api/counters/999/value", "1");
    assert_eq!(status, 404, "{body}");
    let (status, body) = request(addr, "PATCH", &path, "\"x\"");
    assert_eq!(status, 422, "{body}");
    let (status, _) = request(addr, "POST", &path, "1");
    assert_eq!(status, 405, "a PATCH command does not answer POST");
    let (_, body) = request(addr, "GET", &format!("/api/counters/{id}"), "");
    assert_eq!(
        value(&body)["value"].as_u64(),
        Some(60),
        "rejected writes change nothing"
    );

    let (status, body) = request(addr, "DELETE", &path, "");
    assert_eq!((status, value(&body)["value"].as_u64()), (200, Some(0)));

    let (_, body) = request(addr, "GET", "/openapi.json", "");
    let spec = value(&body);
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
