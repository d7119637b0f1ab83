//! Middleware through a real server: access log, request ids, CORS, security headers, gzip,
//! per-route body limits and timeouts, and Server-Sent Events.

#[path = "support/http_client.rs"]
mod client;

use client::TestServer;
use lithair::crypto::deflate;
use lithair::http::middleware::{AccessLog, BodyLimit, Compression, Cors, RequestId, Timeout};
use lithair::http::router::WithMiddleware;
use lithair::http::sse::{Sse, SseEvent};
use lithair::http::{Request, Response, Router};
use std::sync::{mpsc, Arc, Mutex};

fn big_page(_: &mut Request) -> Response {
    Response::html(200, "<p>lithair gzip check</p>\n".repeat(400))
}

/// An access log whose lines are collected, and where to read them.
fn collected_log() -> (Arc<Mutex<Vec<String>>>, AccessLog) {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = Arc::clone(&lines);
    let log = AccessLog::to(Arc::new(move |l: &str| {
        store.lock().expect("lock").push(l.to_string())
    }));
    (lines, log)
}

#[test]
fn access_log_and_request_ids() {
    let (lines, log) = collected_log();
    let router = Router::new()
        .layer(log)
        .layer(RequestId::default())
        .get("/hello", |_: &mut Request| "hi");
    let server = TestServer::start(router);
    let r = server.get("/hello", &["X-Request-Id: trace-42"]);
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    let r = server.get("/hel%0alo", &["X-Request-Id: bad id with spaces"]);
    let generated = r.header("x-request-id").expect("generated id").to_string();
    assert_eq!(generated.len(), 32);
    drop(server); // joins the server, so every line is written
    let lines = lines.lock().expect("lock");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(
            "\"method\":\"GET\",\"path\":\"/hello\",\"route\":\"/hello\",\"status\":200,\"bytes\":2"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"request_id\":\"trace-42\""));
    assert!(lines[0].contains("\"duration_us\":"));
    assert!(
        lines[1].contains("\"path\":\"/hel%0alo\",\"route\":null,\"status\":404"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(&generated));
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

/// A deferred answer (a write answered once durable) is logged with the status, bytes and
/// time of the answer the client got, not its placeholder's (202, at the handler's return).
#[test]
fn the_access_log_gives_a_deferred_answer_as_completed() {
    let (lines, log) = collected_log();
    let router = Router::new()
        .layer(log)
        .post("/later", |_: &mut Request| {
            let (placeholder, responder) = Response::deferred();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                responder.complete(Response::text(201, "made it"));
            });
            placeholder
        })
        .post("/dropped", |_: &mut Request| {
            let (placeholder, responder) = Response::deferred();
            std::thread::spawn(move || drop(responder));
            placeholder
        });
    let server = TestServer::start(router);
    let made = server.send("POST /later HTTP/1.1\r\nContent-Length: 0", b"");
    assert_eq!(made.status, 201);
    let dropped = server.send("POST /dropped HTTP/1.1\r\nContent-Length: 0", b"");
    assert_eq!(dropped.status, 503);
    drop(server);
    let lines = lines.lock().expect("lock");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let later = lines.iter().find(|l| l.contains("/later")).expect("logged");
    assert!(
        later.contains("\"route\":\"/later\",\"status\":201,\"bytes\":7"),
        "{later}"
    );
    let micros: u64 = later
        .split("\"duration_us\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a duration");
    assert!(micros >= 20_000, "timed to the completion: {later}");
    let dropped = lines
        .iter()
        .find(|l| l.contains("/dropped"))
        .expect("logged");
    assert!(dropped.contains("\"status\":503"), "{dropped}");
}

/// Which thread a layer's map of a deferred answer ran on.
struct ThreadOfMap(Arc<Mutex<Vec<String>>>);

impl lithair::http::middleware::Middleware for ThreadOfMap {
    fn call(&self, req: &mut Request, next: &dyn lithair::http::Handler) -> Response {
        let threads = Arc::clone(&self.0);
        next.call(req).map_answer(move |answer| {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            threads.lock().expect("lock").push(name);
            answer
        })
    }
}

/// A write answered once durable is compressed like any answer, by a worker rather than the
/// thread that completed it (the engine's, in an app), and every layer sees what is sent: the
/// access log its compressed size, CORS and compression both in `Vary`.
#[test]
fn a_deferred_answer_is_compressed_off_the_completing_thread() {
    let (lines, log) = collected_log();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let record = long_record();
    let body = record.clone();
    let router = Router::new()
        .layer(log)
        .layer(Cors::new(["https://app.example"]))
        .layer(Compression::default())
        .layer(ThreadOfMap(Arc::clone(&threads)))
        .post("/later", move |_: &mut Request| {
            let (placeholder, responder) = Response::deferred();
            let body = body.clone();
            std::thread::Builder::new()
                .name("completer".into())
                .spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    responder.complete(Response::bytes(201, "application/json", body.into_bytes()));
                })
                .expect("spawn");
            placeholder
        });
    let server = TestServer::start(router);
    let head = "POST /later HTTP/1.1\r\nContent-Length: 0\r\nOrigin: https://app.example";
    let gzip = server.send(&format!("{head}\r\nAccept-Encoding: gzip"), b"");
    assert_eq!(gzip.status, 201);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(
        deflate::gunzip(&gzip.body, 1 << 20).expect("gunzip"),
        record.as_bytes()
    );
    assert!(gzip.body.len() * 4 < record.len(), "{}", gzip.body.len());
    let mut vary = gzip.headers_named("vary");
    vary.sort_unstable();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    assert_eq!(
        gzip.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let identity = server.send(head, b"");
    assert_eq!(identity.status, 201);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.body, record.as_bytes());
    assert!(identity.headers_named("vary").contains(&"Accept-Encoding"));
    drop(server);
    let threads = threads.lock().expect("lock");
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(
        threads.iter().all(|t| t.starts_with("lithair-worker")),
        "mapped off the completing thread: {threads:?}"
    );
    let lines = lines.lock().expect("lock");
    let logged = format!("\"status\":201,\"bytes\":{}", gzip.body.len());
    assert!(
        lines.iter().any(|l| l.contains(&logged)),
        "{logged} in {lines:?}"
    );
}

/// A record of about 4 KiB, as a write's answer with a long text field would be.
fn long_record() -> String {
    let notes = "a durable write answered once committed; ".repeat(100);
    format!("{{\"id\":7,\"name\":\"widget\",\"notes\":\"{notes}\"}}")
}

#[test]
fn cors_preflight_and_actual_requests() {
    let router = Router::new()
        .layer(
            Cors::new(["https://app.example"])
                .allow_methods(["GET", "PUT"])
                .allow_headers(["content-type"])
                .max_age_s(120),
        )
        .get("/data", |_: &mut Request| "data")
        .route(lithair::http::Method::Put, "/data", |_: &mut Request| {
            Response::no_content()
        });
    let server = TestServer::start(router);
    let pre = server.send(
        "OPTIONS /data HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: Content-Type",
        b"",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(pre.header("access-control-max-age"), Some("120"));
    let evil = server.send("OPTIONS /data HTTP/1.1\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: PUT", b"");
    assert_eq!(evil.status, 403);
    let get = server.get("/data", &["Origin: https://app.example"]);
    assert_eq!(
        (get.status, get.header("access-control-allow-origin")),
        (200, Some("https://app.example"))
    );
    assert!(get
        .headers_named("vary")
        .iter()
        .any(|v| v.contains("Origin")));
    let foreign = server.get("/data", &["Origin: https://evil.example"]);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
}

#[test]
fn cors_on_a_group_answers_its_preflights() {
    let router = Router::new()
        .get("/", |_: &mut Request| "home")
        .group("/api", |g| {
            g.layer(Cors::new(["https://app.example"]).allow_methods(["PUT"]))
                .put("/items/{id}", |_: &mut Request| Response::no_content())
        });
    let server = TestServer::start(router);
    let pre = server.send(
        "OPTIONS /api/items/3 HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT",
        b"",
    );
    assert_eq!(
        (pre.status, pre.header("access-control-allow-origin")),
        (204, Some("https://app.example"))
    );
    let evil = server.send(
        "OPTIONS /api/items/3 HTTP/1.1\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: PUT",
        b"",
    );
    assert_eq!(evil.status, 403);
    // A plain OPTIONS still lists the methods.
    let options = server.send("OPTIONS /api/items/3 HTTP/1.1", b"");
    assert_eq!(
        (options.status, options.header("allow")),
        (204, Some("PUT, OPTIONS"))
    );
    // A method the path does not route is refused inside the group's CORS layer, so the page
    // sees the 405 rather than a CORS failure.
    let refused = server.send(
        "DELETE /api/items/3 HTTP/1.1\r\nOrigin: https://app.example",
        b"",
    );
    assert_eq!(
        (
            refused.status,
            refused.header("access-control-allow-origin")
        ),
        (405, Some("https://app.example"))
    );
}

#[test]
fn gzip_compression_and_security_headers() {
    let server = TestServer::start(
        Router::new()
            .layer(Compression::default())
            .get("/page", big_page)
            .get("/tiny", |_: &mut Request| "tiny"),
    );
    let plain = big_page(&mut Request::new(lithair::http::Method::Get, "/"))
        .body
        .as_bytes()
        .expect("bytes")
        .to_vec();
    let r = server.get("/page", &["Accept-Encoding: br, gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.headers_named("vary").contains(&"Accept-Encoding"));
    assert!(
        r.body.len() * 10 < plain.len(),
        "{} -> {}",
        plain.len(),
        r.body.len()
    );
    assert_eq!(deflate::gunzip(&r.body, 1 << 20).expect("gunzip"), plain);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'self'")));
    let identity = server.get("/page", &["Accept-Encoding: gzip;q=0"]);
    assert_eq!(
        (identity.header("content-encoding"), identity.body.len()),
        (None, plain.len())
    );
    let tiny = server.get("/tiny", &["Accept-Encoding: gzip"]);
    assert_eq!(tiny.header("content-encoding"), None);
}

#[test]
fn per_route_body_limit_and_timeout() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let router = Router::new()
        .post(
            "/small",
            (|req: &mut Request| Response::text(200, format!("{}", req.body.len())))
                .with(BodyLimit::bytes(8)),
        )
        .post("/big", |req: &mut Request| {
            Response::text(200, format!("{}", req.body.len()))
        })
        .get(
            "/stuck",
            Timeout::ms(50, move |_: &mut Request| {
                // Blocks until the test ends: certainly past the deadline on any machine.
                let _ = release_rx.lock().map(|rx| rx.recv());
                Response::text(200, "late")
            }),
        )
        .get("/quick", Timeout::ms(10_000, |_: &mut Request| "quick"));
    let server = TestServer::start(router);
    assert_eq!(server.send("POST /small HTTP/1.1", b"12345678").text(), "8");
    let r = server.send("POST /small HTTP/1.1", b"123456789");
    assert_eq!(
        (r.status, r.header("content-type")),
        (413, Some("application/problem+json"))
    );
    assert_eq!(server.send("POST /big HTTP/1.1", b"123456789").text(), "9");
    let r = server.get("/stuck", &[]);
    assert_eq!(r.status, 503);
    assert!(r.text().contains("exceeded 50 ms"), "{}", r.text());
    assert_eq!(server.get("/quick", &[]).text(), "quick");
    drop(release_tx);
}

#[test]
fn server_sent_events_stream() {
    let router = Router::new().get("/events", |_: &mut Request| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for i in 1..=3 {
                let _ = tx.send(
                    SseEvent::data(format!("tick {i}\nmore"))
                        .event("tick")
                        .id(i.to_string()),
                );
            }
        });
        Sse::new().heartbeat_ms(60_000).from_channel(rx)
    });
    let server = TestServer::start(router);
    let r = server.get("/events", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let expected: String = (1..=3)
        .map(|i| format!("event: tick\nid: {i}\ndata: tick {i}\ndata: more\n\n"))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(r.text(), format!(": ok\n\n{expected}"));
}
