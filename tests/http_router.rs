//! Routing through a real server: params, catch-all, 404 and 405 problems, groups, typed
//! extraction, JSON bodies, cookies, forms and multipart.

#[path = "support/http_client.rs"]
mod client;

use client::TestServer;
use lithair::http::cookie::{SameSite, SetCookie};
use lithair::http::multipart::{MultipartLimits, PartData};
use lithair::http::{HttpResult, Problem, Request, Response, Router};

fn show_item(req: &mut Request) -> HttpResult {
    let id: u64 = req.param("id")?;
    let tags = req.query_all("tag")?;
    let limit: u32 = req.query_opt("limit")?.unwrap_or(10);
    Ok(Response::text(
        200,
        format!("item {id} tags {tags:?} limit {limit}"),
    ))
}

fn app() -> Router {
    Router::new()
        .get("/items/{id}", show_item)
        .delete("/items/{id}", |_: &mut Request| Response::no_content())
        .get("/files/{*rest}", |req: &mut Request| {
            Response::text(200, req.param_str("rest").unwrap_or("").to_string())
        })
        .post("/echo", |req: &mut Request| -> HttpResult {
            let value: Vec<u64> = req.json()?;
            Ok(Response::json(201, &value))
        })
        .get("/login", |req: &mut Request| -> HttpResult {
            let seen = req.cookie("visits").unwrap_or("0").to_string();
            let cookie = SetCookie::new("sid", "s3cr3t")
                .map_err(|e| Problem::internal().with_detail(e.to_string()))?
                .http_only()
                .secure()
                .same_site(SameSite::Strict)
                .max_age_s(3600);
            Ok(Response::text(200, format!("visits={seen}")).with_cookie(&cookie))
        })
        .post("/form", |req: &mut Request| -> HttpResult {
            let form = req.form()?;
            let age: u32 = form.parse("age")?;
            Ok(Response::text(
                200,
                format!("{} is {age}", form.get("name").unwrap_or("?")),
            ))
        })
        .post("/upload", |req: &mut Request| -> HttpResult {
            let limits = MultipartLimits {
                memory_part_bytes_max: 100,
                ..MultipartLimits::default()
            };
            let parts = req.multipart(&limits)?;
            let summary: Vec<String> = parts
                .iter()
                .map(|p| match &p.data {
                    PartData::Memory(b) => format!("{}:mem:{}", p.head.name, b.len()),
                    PartData::File(f) => format!("{}:file:{}", p.head.name, f.len()),
                })
                .collect();
            Ok(Response::text(200, summary.join(",")))
        })
        .get("/boom", |_: &mut Request| -> Response {
            panic!("handler bug")
        })
        .group("/api", |g| {
            g.layer(|req: &mut Request, next: &dyn lithair::http::Handler| {
                next.call(req).with_header("X-Api", "v1")
            })
            .get("/ping", |_: &mut Request| "pong")
        })
}

#[test]
fn params_queries_and_catch_all() {
    let server = TestServer::start(app());
    let r = server.get("/items/42?tag=a&tag=b%20c&limit=3", &[]);
    assert_eq!(
        (r.status, r.text()),
        (200, "item 42 tags [\"a\", \"b c\"] limit 3".to_string())
    );
    let r = server.get("/files/a/b%20c/d.txt", &[]);
    assert_eq!((r.status, r.text()), (200, "a/b c/d.txt".to_string()));
    let r = server.get("/api/ping", &[]);
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-api")),
        (200, "pong", Some("v1"))
    );
}

#[test]
fn errors_are_problem_json() {
    let server = TestServer::start(app());
    let r = server.get("/nowhere", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.text().contains("\"status\":404"), "{}", r.text());
    let r = server.send("PUT /items/1 HTTP/1.1", b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, DELETE, HEAD, OPTIONS"));
    let r = server.get("/items/abc", &[]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("\"field\":\"id\""), "{}", r.text());
    let r = server.get("/items/1?limit=many", &[]);
    assert_eq!(r.status, 400);
    // Security headers are on by default, on errors too.
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn json_in_and_out() {
    let server = TestServer::start(app());
    let ok = server.send(
        "POST /echo HTTP/1.1\r\nContent-Type: application/json",
        b"[1, 2, 3]",
    );
    assert_eq!((ok.status, ok.text()), (201, "[1,2,3]".to_string()));
    let malformed = server.send(
        "POST /echo HTTP/1.1\r\nContent-Type: application/json",
        b"[1,\n 2,,]",
    );
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.text().contains("\"line\":2"),
        "{}",
        malformed.text()
    );
    let wrong = server.send(
        "POST /echo HTTP/1.1\r\nContent-Type: application/json",
        b"[1, \"two\"]",
    );
    assert_eq!(wrong.status, 422);
    assert!(
        wrong.text().contains("\"field\":\"$[1]\""),
        "{}",
        wrong.text()
    );
}

#[test]
fn cookies_forms_and_multipart() {
    let server = TestServer::start(app());
    let r = server.get("/login", &["Cookie: theme=dark; visits=7"]);
    assert_eq!(r.text(), "visits=7");
    assert_eq!(
        r.header("set-cookie"),
        Some("sid=s3cr3t; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict")
    );
    let r = server.send(
        "POST /form HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        b"name=Ada+L&age=36",
    );
    assert_eq!((r.status, r.text()), (200, "Ada L is 36".to_string()));
    let r = server.send(
        "POST /form HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        b"name=Ada&age=old",
    );
    assert_eq!(r.status, 422);
    let mut body =
        b"--zz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--zz\r\n".to_vec();
    body.extend_from_slice(
        b"Content-Disposition: form-data; name=\"blob\"; filename=\"b.bin\"\r\n\r\n",
    );
    body.extend_from_slice(&[7u8; 1000]);
    body.extend_from_slice(b"\r\n--zz--\r\n");
    let r = server.send(
        "POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=zz",
        &body,
    );
    assert_eq!(
        (r.status, r.text()),
        (200, "note:mem:2,blob:file:1000".to_string())
    );
    let r = server.send(
        "POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=zz",
        b"--zz\r\nbroken",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn head_and_options_follow_routes() {
    let server = TestServer::start(app());
    let r = server.send("HEAD /items/5 HTTP/1.1", b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = server.send("OPTIONS /items/5 HTTP/1.1", b"");
    assert_eq!(
        (r.status, r.header("allow")),
        (204, Some("GET, DELETE, HEAD, OPTIONS"))
    );
}

#[test]
fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let server = TestServer::start(app());
    let r = server.get("/boom", &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = server.get("/api/ping", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
}

/// Per-route counting through a real server: a handler the reactor runs inline is timed on
/// the kernel's coarse clock from the reactor's turn (or the inline handler before it in the
/// turn) to its answer, so a slow one shows as slow (it once counted 0) and the one behind it
/// is not charged its time; a worker's handler by the precise clock at each end; a deferred
/// answer submitted inline from the turn to its completion.
#[test]
fn routes_are_timed_on_the_reactor_by_the_coarse_clock_and_on_workers_by_the_precise_one() {
    use lithair::http::inline;
    use lithair::http::route_stats::RouteStats;
    use std::time::Duration;
    let stats = RouteStats::new();
    let router = Router::bare()
        .get(
            "/inline",
            inline(|_: &mut Request| {
                std::thread::sleep(Duration::from_millis(30));
                Response::text(200, "inline")
            }),
        )
        .get(
            "/inline-quick",
            inline(|_: &mut Request| Response::text(200, "quick")),
        )
        .get("/worker", |_: &mut Request| {
            std::thread::sleep(Duration::from_millis(3));
            Response::text(200, "worker")
        })
        .post(
            "/deferred",
            inline(|_: &mut Request| {
                let (placeholder, responder) = Response::deferred();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(3));
                    responder.complete(Response::text(201, "made"));
                });
                placeholder
            }),
        )
        .count_routes(stats.clone());
    let server = TestServer::start(router);
    // Pipelined in one write, so the reactor most likely runs both in one turn.
    let both = server.exchange(
        b"GET /inline HTTP/1.1\r\nHost: h\r\n\r\nGET /inline-quick HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let both = String::from_utf8_lossy(&both);
    assert!(both.ends_with("quick") && both.contains("inline"), "{both}");
    assert_eq!(server.get("/worker", &[]).status, 200);
    let made = server.send("POST /deferred HTTP/1.1\r\nContent-Length: 0", b"");
    assert_eq!(made.status, 201);
    assert_eq!(server.get("/missing", &[]).status, 404);
    drop(server);
    let routes = stats.routes();
    let find = |pattern: &str| {
        routes
            .iter()
            .find(|route| route.pattern == pattern)
            .unwrap_or_else(|| panic!("{pattern} counted: {routes:?}"))
    };
    let inline_route = find("/inline");
    assert_eq!(inline_route.responses_by_class, [0, 1, 0, 0, 0]);
    // The coarse clock trails by up to a tick (at most 10 ms), never leads.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    assert!(inline_route.durations.sum_us >= 20_000, "{inline_route:?}");
    assert!(
        inline_route.durations.sum_us < 1_000_000,
        "{inline_route:?}"
    );
    let quick = find("/inline-quick");
    assert_eq!(quick.responses_by_class, [0, 1, 0, 0, 0]);
    assert!(
        quick.durations.sum_us < 15_000,
        "not charged the slow one's time: {quick:?}"
    );
    let worker = find("/worker");
    assert_eq!(worker.responses_by_class, [0, 1, 0, 0, 0]);
    assert!(worker.durations.sum_us >= 3_000, "{worker:?}");
    let deferred = find("/deferred");
    assert_eq!(deferred.responses_by_class, [0, 1, 0, 0, 0]);
    assert!(deferred.durations.sum_us >= 3_000, "{deferred:?}");
    assert_eq!(routes.len(), 4, "the 404 belongs to no route");
}
