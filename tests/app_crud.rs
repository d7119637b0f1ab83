//! The generated model routes over real sockets, with a hand-written `Model` implementation
//! (the shape `#[derive(Model)]` generates), so the app layer is tested on its own.

use lithair::app::{App, Id, ModelEvent};
use lithair::json;

mod common;
use common::request;

#[allow(dead_code)]
#[path = "support/post_model.rs"]
mod post_model;
use post_model::{Post, PostPatch};

static CHANGES: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

fn app() -> App {
    with_rules(
        App::new("crud-test")
            .model::<Post>()
            .on_change::<Post>(|_event, index| CHANGES.lock().unwrap().push(index)),
    )
}

/// The domain rule and the command route of the test app.
fn with_rules(app: App) -> App {
    app.check::<Post>(|tx, post| {
        // A domain rule that reads state through the transaction.
        if post.title == "forbidden" && tx.collection::<Post>().len() < 100 {
            return Err(lithair::app::Rejection::Domain {
                status: 422,
                message: "that title is forbidden".into(),
            });
        }
        Ok(())
    })
    .command(
        "/api/posts/{id}/publish",
        200,
        "Publish a draft",
        |tx, _: &(), params| {
            let id: u64 = params.get("id")?;
            let post: Post = tx
                .get(&Id::Int(id))
                .ok_or(lithair::app::Rejection::NotFound {
                    model: "Post",
                    id: Id::Int(id),
                })?;
            if post.published {
                return Err(lithair::app::Rejection::Domain {
                    status: 409,
                    message: "only a draft can be published".into(),
                });
            }
            let patch = PostPatch {
                published: Some(true),
                ..PostPatch::default()
            };
            tx.update::<Post>(&Id::Int(id), patch)
        },
    )
}

#[test]
fn crud_validation_uniqueness_and_restart() {
    let data = common::fresh_dir("app", "crud");
    let (running, addr) = common::start(&app(), &data);

    let created = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"Hello","slug":"hello"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/api/posts/1"));
    assert_eq!(created.json()["id"].as_u64(), Some(1));
    assert_eq!(created.header("etag"), Some("\"1\""));

    let duplicate = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"Again","slug":"hello"}"#,
    );
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert!(duplicate
        .header("content-type")
        .unwrap()
        .contains("problem+json"));

    let invalid = request(addr, "POST", "/api/posts", "", r#"{"title":"","slug":"x"}"#);
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert!(invalid.body.contains("title"), "{}", invalid.body);

    let forbidden = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"forbidden","slug":"f"}"#,
    );
    assert_eq!(forbidden.status, 422, "{}", forbidden.body);
    assert!(forbidden.body.contains("forbidden"), "{}", forbidden.body);
    let patched_forbidden = request(
        addr,
        "PATCH",
        "/api/posts/1",
        "",
        r#"{"title":"forbidden"}"#,
    );
    assert_eq!(
        patched_forbidden.status, 422,
        "rules run on every write path"
    );

    let malformed = request(addr, "POST", "/api/posts", "", r#"{"title": "#);
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    let wrong_type = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title": 5, "slug": "y"}"#,
    );
    assert_eq!(wrong_type.status, 422, "{}", wrong_type.body);

    for i in 2..=5 {
        let body = format!(
            r#"{{"title":"Post {i}","slug":"post-{i}","views":{}}}"#,
            i * 10
        );
        assert_eq!(request(addr, "POST", "/api/posts", "", &body).status, 201);
    }
    let page = request(
        addr,
        "GET",
        "/api/posts?sort=-views&take=2&views=>=20",
        "",
        "",
    )
    .json();
    assert_eq!(page["total"].as_u64(), Some(4));
    assert_eq!(page["data"][0]["views"].as_u64(), Some(50));
    assert_eq!(page["has_more"].as_bool(), Some(true));
    let bad_filter = request(addr, "GET", "/api/posts?nope=1", "", "");
    assert_eq!(bad_filter.status, 400);

    let immutable = request(addr, "PATCH", "/api/posts/1", "", r#"{"slug":"changed"}"#);
    assert_eq!(immutable.status, 422, "{}", immutable.body);
    let patched = request(
        addr,
        "PATCH",
        "/api/posts/1",
        "If-Match: \"1\"\r\n",
        r#"{"title":"New"}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["title"].as_str(), Some("New"));
    let stale = request(
        addr,
        "PATCH",
        "/api/posts/1",
        "If-Match: \"1\"\r\n",
        r#"{"title":"Old"}"#,
    );
    assert_eq!(stale.status, 409, "{}", stale.body);

    let published = request(addr, "POST", "/api/posts/2/publish", "", "");
    assert_eq!(published.status, 200, "{}", published.body);
    let again = request(addr, "POST", "/api/posts/2/publish", "", "");
    assert_eq!(again.status, 409, "{}", again.body);
    let only_published = request(addr, "GET", "/api/posts?published=true", "", "").json();
    assert_eq!(
        only_published["total"].as_u64(),
        Some(1),
        "indexed equality filter"
    );

    let key = "Idempotency-Key: abc-123\r\n";
    let first = request(
        addr,
        "POST",
        "/api/posts",
        key,
        r#"{"title":"Once","slug":"once"}"#,
    );
    let retry = request(
        addr,
        "POST",
        "/api/posts",
        key,
        r#"{"title":"Once","slug":"once"}"#,
    );
    assert_eq!((first.status, retry.status), (201, 201), "{}", retry.body);
    assert_eq!(first.json()["id"], retry.json()["id"]);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // The same key for another request (body, or target) is the client's mistake: 422, and
    // nothing is written (it used to get the first request's answer, as if it had run).
    for (target, body) in [
        ("/api/posts", r#"{"title":"Twice","slug":"twice"}"#),
        ("/api/posts?x=1", r#"{"title":"Once","slug":"once"}"#),
    ] {
        let reused = request(addr, "POST", target, key, body);
        assert_eq!(reused.status, 422, "{target}: {}", reused.body);
        assert_eq!(
            reused.header("content-type"),
            Some("application/problem+json")
        );
        assert!(reused.body.contains("Idempotency-Key"), "{}", reused.body);
    }
    assert_eq!(
        request(addr, "GET", "/api/posts?slug=twice", "", "").json()["total"].as_u64(),
        Some(0)
    );

    assert_eq!(request(addr, "DELETE", "/api/posts/3", "", "").status, 204);
    assert_eq!(request(addr, "GET", "/api/posts/3", "", "").status, 404);
    assert_eq!(request(addr, "GET", "/api/posts/abc", "", "").status, 404);
    assert_eq!(
        request(addr, "GET", "/api/posts/_schema", "", "").json()["name"].as_str(),
        Some("Post")
    );
    let openapi = request(addr, "GET", "/openapi.json", "", "").json();
    assert!(openapi["paths"]["/api/posts/{id}"].is_object());
    assert_eq!(request(addr, "GET", "/health", "", "").status, 200);

    // Every write path fired the change hook, in log order.
    let changes = CHANGES.lock().unwrap().clone();
    assert_eq!(
        changes.len() as u64,
        running.handle.engine().applied_index(),
        "{changes:?}"
    );
    assert!(changes.windows(2).all(|w| w[0] < w[1]));

    let digest = running.handle.engine().digest();
    let listing = request(addr, "GET", "/api/posts", "", "").body;
    running.stop().unwrap();

    // Restart on the same directory: every record is back, with the same digest.
    let (running, addr) = common::start(&app(), &data);
    assert_eq!(running.handle.engine().digest(), digest);
    assert_eq!(request(addr, "GET", "/api/posts", "", "").body, listing);
    // An idempotent retry after the restart is answered from the log.
    let retry = request(
        addr,
        "POST",
        "/api/posts",
        "Idempotency-Key: abc-123\r\n",
        r#"{"title":"Once","slug":"once"}"#,
    );
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json()["slug"].as_str(), Some("once"));
    let reused = request(
        addr,
        "POST",
        "/api/posts",
        "Idempotency-Key: abc-123\r\n",
        r#"{"title":"Twice","slug":"twice"}"#,
    );
    assert_eq!(reused.status, 422, "after the restart: {}", reused.body);
    let next = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"After","slug":"after"}"#,
    );
    assert_eq!(
        next.json()["id"].as_u64(),
        Some(7),
        "ids are not reused after restart"
    );
    running.stop().unwrap();

    // A replay reports its progress.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let options_with_progress = lithair::engine::EngineOptions {
        replay_progress: Some(std::sync::Arc::new(move |index| {
            sink.lock().unwrap().push(index)
        })),
        replay_progress_every_events: 3,
        ..lithair::engine::EngineOptions::default()
    };
    let running = app()
        .engine_options(options_with_progress)
        .start(&common::serve_options(&data))
        .unwrap();
    running.stop().unwrap();
    let reports = seen.lock().unwrap().clone();
    assert!(reports.len() >= 3, "progress reported: {reports:?}");
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");

    // The operator subcommands work on the stopped app's directory.
    let dir = data.to_string_lossy().to_string();
    for args in [
        vec!["replay", "--data", &dir],
        vec!["log", "verify", "--data", &dir],
        vec!["log", "stats", "--data", &dir],
        vec!["log", "inspect", "--data", &dir, "--type", "PostCreated"],
        vec!["log", "repair", "--data", &dir],
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        app()
            .run_with(&args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    assert!(app()
        .run_with(&[
            "log".into(),
            "verify".into(),
            "--data".into(),
            "/nonexistent/x".into()
        ])
        .is_err());
    let _ = std::fs::remove_dir_all(&data);
}

/// `App::run`'s exit codes: 0 for success and `--help`, 2 for a command line it refused
/// before running anything (as the `lithair` tool and most Unix tools do), 1 for a command that
/// ran and failed. Usage errors used to exit 1, like a damaged log.
#[test]
fn app_run_exits_2_on_a_wrong_command_line_and_1_on_a_failure() {
    use std::process::ExitCode;
    let run = |words: &[&str]| {
        let args: Vec<String> = words.iter().map(|word| word.to_string()).collect();
        app().run_from(&args)
    };
    for words in [&["--help"][..], &["log", "inspect", "--help"], &["help"]] {
        assert_eq!(run(words), ExitCode::SUCCESS, "{words:?}");
    }
    for words in [
        &["--bogus"][..],
        &["serve", "--port"],
        &["serve", "--port", "eighty"],
        &["frob"],
        &["log"],
        &["log", "verify", "--from", "1"],
        &["cluster"],
        &["cluster", "status", "--node", "localhost:8080"],
    ] {
        assert_eq!(run(words), ExitCode::from(2), "{words:?}");
    }
    let missing = std::env::temp_dir().join("lithair-app-no-such-data-dir");
    let missing = missing.to_string_lossy().to_string();
    assert_eq!(
        run(&["log", "verify", "--data", &missing]),
        ExitCode::FAILURE
    );
}

/// `--node-id` or `--peer-port` without `--cluster`, `--join` or a data directory that holds a
/// membership (a forgotten `--cluster`, a mistyped `--data` of a node that joined before) is
/// refused: the node used to start alone and write a single node's log, which a cluster node
/// refuses later. Nothing is created in the data directory.
#[test]
fn cluster_flags_without_a_cluster_are_refused() {
    let data = common::fresh_dir("app", "cluster-flags-alone");
    for (flag, value) in [("node_id", 1u64), ("peer_port", 0)] {
        let mut options = common::serve_options(&data);
        match flag {
            "node_id" => options.node_id = Some(value),
            _ => options.peer_port = Some(value as u16),
        }
        match app().start(&options) {
            Ok(running) => {
                running.stop().expect("stop");
                panic!("{flag} alone started a single node");
            }
            Err(message) => assert!(message.contains("--cluster"), "{message}"),
        }
    }
    assert!(
        std::fs::read_dir(&data).map_or(true, |mut entries| entries.next().is_none()),
        "nothing written to {}",
        data.display()
    );
}

#[test]
fn event_type_names_carry_the_model() {
    lithair::app::state::register::<Post>();
    let event = lithair::app::AppEvent::new(&ModelEvent::<Post>::Deleted { id: Id::Int(1) });
    assert_eq!(event.type_name(), "PostDeleted");
}

#[test]
fn model_event_round_trips() {
    let post = Post {
        id: 9,
        title: "t".into(),
        slug: "s".into(),
        published: true,
        views: 3,
    };
    for event in [
        ModelEvent::Created(post.clone()),
        ModelEvent::Replaced(post.clone()),
        ModelEvent::Deleted { id: Id::Int(9) },
        ModelEvent::Updated {
            id: Id::Str("x".into()),
            patch: PostPatch {
                title: Some("n".into()),
                ..PostPatch::default()
            },
        },
    ] {
        let bytes = lithair::binary::to_vec(&event);
        let back: ModelEvent<Post> = lithair::binary::from_slice(&bytes).unwrap();
        assert_eq!(back, event);
    }
}

/// Splits a stream of keep-alive responses (each with `Content-Length`) into (status, body).
fn split_responses(mut raw: &[u8]) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        let body = &raw[end + 4..end + 4 + length];
        answers.push((status, String::from_utf8_lossy(body).to_string()));
        raw = &raw[end + 4 + length..];
    }
    answers
}

#[test]
fn pipelined_writes_are_answered_in_order_through_deferred_responses() {
    let data = common::fresh_dir("app", "crud-pipelined");
    // Without the change hook: `CHANGES` belongs to the other test.
    let app = with_rules(App::new("crud-pipelined").model::<Post>());
    let (running, addr) = common::start(&app, &data);
    let post = common::request_text;
    let mut batch = String::new();
    for i in 0..10 {
        let body = format!(r#"{{"title":"T{i}","slug":"s{i}"}}"#);
        batch += &post("POST", "/api/posts", "", &body);
    }
    batch += &post("POST", "/api/posts", "", r#"{"title":"dup","slug":"s3"}"#);
    batch += &post("POST", "/api/posts/2/publish", "", "");
    batch += &post(
        "PATCH",
        "/api/posts/2",
        "If-Match: \"1\"\r\n",
        r#"{"views":3}"#,
    );
    batch += &post("GET", "/api/posts/2", "", "");
    batch += &post("DELETE", "/api/posts/5", "", "");
    batch += &post("GET", "/api/posts/5", "Connection: close\r\n", "");
    let raw = common::exchange(addr, batch.as_bytes());
    let answers = split_responses(&raw);
    assert_eq!(answers.len(), 16, "{answers:?}");
    for (i, (status, body)) in answers[..10].iter().enumerate() {
        assert_eq!(*status, 201, "{body}");
        let created = json::parse(body).unwrap();
        assert_eq!(
            created["id"].as_u64(),
            Some(i as u64 + 1),
            "created in order"
        );
    }
    assert_eq!(answers[10].0, 409, "duplicate slug: {}", answers[10].1);
    assert_eq!(answers[11].0, 200, "publish: {}", answers[11].1);
    assert_eq!(
        answers[12].0, 409,
        "stale If-Match after publish: {}",
        answers[12].1
    );
    let shown = json::parse(&answers[13].1).unwrap();
    assert_eq!(
        shown["published"].as_bool(),
        Some(true),
        "a read sees earlier writes"
    );
    assert_eq!(answers[14].0, 204);
    assert_eq!(answers[15].0, 404);
    // A body above the reactor's inline limit takes the worker path, with the same answer.
    let padding = " ".repeat(lithair::app::routes::INLINE_BODY_BYTES_MAX);
    let body = format!(r#"{{"title":"big","slug":"big"{padding}}}"#);
    let big = request(addr, "POST", "/api/posts", "", &body);
    assert_eq!(big.status, 201, "{}", big.body);
    assert_eq!(big.json()["id"].as_u64(), Some(11));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// GET by id renders a small record in place under the read lock and copies a large one out
/// first (after the first large record, every record of the model): the answers, `ETag` and
/// `If-None-Match` are the same either way.
#[test]
fn get_by_id_answers_the_same_for_small_and_large_records() {
    let data = common::fresh_dir("app", "crud-get-sizes");
    let app = App::new("crud-get-sizes").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    // Past the 4 KiB rendering bound of `routes::show`, with characters that need escaping.
    let long_slug = "q\"\\/é\n".repeat(1_000);
    let slugs = [
        "small-before".to_string(),
        long_slug,
        "small-after".to_string(),
    ];
    for (i, slug) in slugs.iter().enumerate() {
        let mut body = String::from(r#"{"title":"T","slug":"#);
        body += &json::to_string(slug).unwrap();
        body += "}";
        let created = request(addr, "POST", "/api/posts", "", &body);
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.json()["id"].as_u64(), Some(i as u64 + 1));
    }
    // Each record twice: the large one switches the route to copying on its first read.
    for _round in 0..2 {
        for (i, slug) in slugs.iter().enumerate() {
            let target = format!("/api/posts/{}", i + 1);
            let shown = request(addr, "GET", &target, "", "");
            assert_eq!(shown.status, 200, "{}", shown.body);
            assert_eq!(shown.header("etag"), Some("\"1\""));
            assert_eq!(shown.header("content-type"), Some("application/json"));
            let value = shown.json();
            assert_eq!(value["slug"].as_str(), Some(slug.as_str()));
            assert_eq!(value["id"].as_u64(), Some(i as u64 + 1));
            let unchanged = request(addr, "GET", &target, "If-None-Match: \"1\"\r\n", "");
            assert_eq!((unchanged.status, unchanged.body.as_str()), (304, ""));
        }
    }
    assert_eq!(request(addr, "GET", "/api/posts/4", "", "").status, 404);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// Security headers are on by default; an app can replace them (here: its own HTML policy)
/// or send none, and the framing headers stay either way.
#[test]
fn security_headers_are_on_by_default_and_can_be_replaced_or_turned_off() {
    use lithair::http::middleware::SecurityHeaders;
    let html = |router: lithair::http::router::Router, _: &lithair::app::Handle| {
        router.get("/page", |_: &mut lithair::http::Request| {
            lithair::http::Response::bytes(200, "text/html", b"<p>hi</p>".to_vec())
        })
    };
    let cases: [(&str, Option<SecurityHeaders>, Option<&str>); 3] = [
        (
            "default",
            None,
            Some(lithair::http::middleware::DEFAULT_CSP),
        ),
        (
            "replaced",
            Some(SecurityHeaders::default().csp(Some("default-src 'none'"))),
            Some("default-src 'none'"),
        ),
        ("off", None, None),
    ];
    for (name, headers, csp) in cases {
        let data = common::fresh_dir("app", &format!("security-{name}"));
        let mut app = App::new("security").model::<Post>().routes(html);
        if name != "default" {
            app = app.security_headers(headers);
        }
        let (running, addr) = common::start(&app, &data);
        let page = request(addr, "GET", "/page", "", "");
        let listed = request(addr, "GET", "/api/posts", "", "");
        assert_eq!((page.status, listed.status), (200, 200), "{name}");
        assert_eq!(page.header("content-security-policy"), csp, "{name}");
        let expected = csp.map(|_| ("nosniff", "DENY", "no-referrer"));
        for answer in [&page, &listed] {
            let seen = answer.header("x-content-type-options").map(|nosniff| {
                (
                    nosniff,
                    answer.header("x-frame-options").unwrap_or("missing"),
                    answer.header("referrer-policy").unwrap_or("missing"),
                )
            });
            assert_eq!(seen, expected, "{name}: {}", answer.head);
            assert!(answer.header("date").is_some(), "{name}");
            assert_eq!(answer.header("server"), Some("lithair"), "{name}");
        }
        running.stop().unwrap();
        let _ = std::fs::remove_dir_all(&data);
    }
}

/// `App::cors`: a page on the listed origin drives the generated routes from a browser (a
/// preflighted JSON PATCH with a version check goes through, the created record's address and
/// version are readable), a page elsewhere gets no CORS grant, and an app without `cors`
/// grants none.
#[test]
fn an_app_with_cors_serves_its_generated_routes_to_the_listed_origin_only() {
    use lithair::http::cors::Cors;
    let data = common::fresh_dir("app", "cors");
    let app = App::new("cors")
        .model::<Post>()
        .cors(Cors::new(["https://front.example"]));
    let (running, addr) = common::start(&app, &data);
    let from = |origin: &str| format!("Origin: {origin}\r\n");
    let preflight = |origin: &str| {
        format!(
            "{}Access-Control-Request-Method: PATCH\r\n\
             Access-Control-Request-Headers: content-type, if-match\r\n",
            from(origin)
        )
    };
    let created = request(
        addr,
        "POST",
        "/api/posts",
        &from("https://front.example"),
        r#"{"title":"t","slug":"t"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some("https://front.example")
    );
    let exposed = created
        .header("access-control-expose-headers")
        .unwrap_or("");
    assert!(
        exposed.contains("Location") && exposed.contains("ETag"),
        "{exposed}"
    );
    let location = created.header("location").expect("a location").to_string();
    let allowed = request(
        addr,
        "OPTIONS",
        &location,
        &preflight("https://front.example"),
        "",
    );
    assert_eq!(allowed.status, 204, "{}", allowed.head);
    assert!(allowed
        .header("access-control-allow-methods")
        .is_some_and(|methods| methods.contains("PATCH")));
    let refused = request(
        addr,
        "OPTIONS",
        &location,
        &preflight("https://evil.example"),
        "",
    );
    assert_eq!(refused.status, 403);
    let foreign = request(addr, "GET", &location, &from("https://evil.example"), "");
    assert_eq!(
        (
            foreign.status,
            foreign.header("access-control-allow-origin")
        ),
        (200, None)
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let data = common::fresh_dir("app", "no-cors");
    let (running, addr) = common::start(&App::new("no-cors").model::<Post>(), &data);
    let plain = request(
        addr,
        "GET",
        "/api/posts",
        &from("https://front.example"),
        "",
    );
    assert_eq!(
        (plain.status, plain.header("access-control-allow-origin")),
        (200, None)
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// The head (as text) and the body bytes of a raw answer read to its end.
fn split_raw(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    (head, raw[end + 4..].to_vec())
}

#[test]
fn an_app_with_compression_gzips_its_writes_and_reads_for_clients_that_accept_it() {
    use lithair::crypto::deflate;
    use lithair::http::middleware::Compression;
    let data = common::fresh_dir("app", "gzip");
    // A low threshold: a post's record is short.
    let app = App::new("gzip")
        .model::<Post>()
        .compression(Compression::min_bytes(32));
    let (running, addr) = common::start(&app, &data);
    let slug = "compressed-answers-".repeat(20);
    let body = format!(r#"{{"title":"gzip","slug":"{slug}"}}"#);
    let extra = "Connection: close\r\nAccept-Encoding: gzip\r\n";
    let raw = common::exchange(
        addr,
        common::request_text("POST", "/api/posts", extra, &body).as_bytes(),
    );
    let (head, packed) = split_raw(&raw);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(head.contains("Content-Encoding: gzip"), "{head}");
    assert!(head.contains("Vary: Accept-Encoding"), "{head}");
    let created = deflate::gunzip(&packed, 1 << 20).expect("a gzip body");
    assert!(packed.len() * 2 < created.len(), "{} bytes", packed.len());
    let created = json::parse(&String::from_utf8(created).expect("UTF-8")).expect("JSON");
    assert_eq!(
        created.get("slug").and_then(|s| s.as_str()),
        Some(slug.as_str())
    );
    // The write is durable and answered the same, identity-encoded, to a client that does
    // not accept gzip.
    let read = common::get(addr, "/api/posts");
    assert_eq!(read.status, 200);
    assert_eq!(read.header("content-encoding"), None);
    assert!(read.body.contains(&slug), "{}", read.body);
    // A record's answer has an ETag: its variant, made for the create's answer (the same
    // bytes), is sent from the layer's cache to every read, as the metrics count.
    let id = created.get("id").and_then(|v| v.as_u64()).expect("an id");
    let deflated = |samples: &std::collections::BTreeMap<String, f64>| {
        let value = |name: &str| samples.get(name).copied().unwrap_or(f64::NAN);
        (
            value("lithair_http_gzip_deflated_total"),
            value("lithair_http_gzip_cache_hits_total"),
        )
    };
    let before = metric_samples(&common::get(addr, "/_lithair/metrics").body);
    for _ in 0..3 {
        let raw = common::exchange(
            addr,
            common::request_text("GET", &format!("/api/posts/{id}"), extra, "").as_bytes(),
        );
        let (head, packed) = split_raw(&raw);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Encoding: gzip"), "{head}");
        let record = deflate::gunzip(&packed, 1 << 20).expect("a gzip body");
        assert!(String::from_utf8_lossy(&record).contains(&slug));
    }
    let after = metric_samples(&common::get(addr, "/_lithair/metrics").body);
    let ((made_before, hits_before), (made_after, hits_after)) =
        (deflated(&before), deflated(&after));
    assert_eq!(
        (made_after - made_before, hits_after - hits_before),
        (0.0, 3.0),
        "no deflate, three answers from the cache"
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// The samples of a Prometheus text document, `name{labels}` -> value, after checking its
/// shape: every sample line is `name[{label="value"}] number`, and each metric's `# HELP` and
/// `# TYPE` lines come before its samples.
fn metric_samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    let mut typed = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        // A histogram's samples are its name with `_bucket`, `_sum` or `_count`.
        let histogram = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|base| typed.get(base).is_some_and(|kind| kind == "histogram"));
        assert!(
            histogram || typed.contains_key(name),
            "a sample before its # TYPE: {line}"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{line}"
        );
    }
    samples
}

/// `GET /_lithair/metrics` serves the app's figures in the Prometheus text format: the
/// applied index and the records of each model follow the writes, the fsyncs count up, and
/// the server's answers are counted by status class.
#[test]
fn the_metrics_follow_the_writes_in_the_prometheus_text_format() {
    let data = common::fresh_dir("app", "metrics");
    let app = App::new("metrics").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    let before = common::get(addr, "/_lithair/metrics");
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = metric_samples(&before.body);
    assert_eq!(before.get("lithair_records{model=\"Post\"}"), Some(&0.0));
    for n in 0..3 {
        let body = format!(r#"{{"title":"t{n}","slug":"s{n}"}}"#);
        let created = request(addr, "POST", "/api/posts", "", &body);
        assert_eq!(created.status, 201, "{}", created.body);
    }
    assert_eq!(common::get(addr, "/api/posts/999").status, 404);
    let after = metric_samples(&common::get(addr, "/_lithair/metrics").body);
    assert_eq!(after.get("lithair_records{model=\"Post\"}"), Some(&3.0));
    // The server counts every answer it writes: the first metrics answer and the 3 creates
    // are 2xx, the missing post a 4xx (answers of other tests' servers are not counted here).
    let answers = |m: &std::collections::BTreeMap<String, f64>, class: &str| {
        m[&format!("lithair_http_responses_total{{class=\"{class}\"}}")]
    };
    assert_eq!(answers(&after, "2xx") - answers(&before, "2xx"), 4.0);
    assert_eq!(answers(&after, "4xx") - answers(&before, "4xx"), 1.0);
    assert_eq!(answers(&after, "5xx"), 0.0);
    // Every answer of a request is timed, reads and writes apart: of the 5 written between
    // the two scrapes, the 3 creates are writes; the first scrape's (counted once written)
    // and the missing post's are reads. Each kind's buckets are cumulative and end with
    // `+Inf`, which equals its `_count`.
    let duration = "lithair_http_request_duration_seconds";
    let timed = |m: &std::collections::BTreeMap<String, f64>, kind: &str| {
        m[&format!("{duration}_count{{kind=\"{kind}\"}}")]
    };
    assert_eq!(timed(&after, "write") - timed(&before, "write"), 3.0);
    assert_eq!(timed(&after, "read") - timed(&before, "read"), 2.0);
    for kind in ["read", "write"] {
        let prefix = format!("{duration}_bucket{{kind=\"{kind}\",le=");
        let buckets: Vec<f64> = after
            .iter()
            .filter(|(series, _)| series.starts_with(&prefix))
            .map(|(_, count)| *count)
            .collect();
        assert_eq!(buckets.len(), lithair::http::stats::DURATION_BUCKETS);
        let infinite = after[&format!("{prefix}\"+Inf\"}}")];
        assert_eq!(infinite, timed(&after, kind));
        assert!(buckets.iter().all(|&count| count <= infinite));
        assert!(after[&format!("{duration}_sum{{kind=\"{kind}\"}}")] >= 0.0);
    }
    // The connections: each request above came on one of its own, closed once answered.
    // After `Connection: close` the server lingers until the client's FIN, so one may still
    // count for a moment after its client read the answer; soon only the scrape's is open.
    let connections = |m: &std::collections::BTreeMap<String, f64>, name: &str| {
        m[&format!("lithair_http_connections_{name}")]
    };
    assert!(connections(&after, "open") >= 1.0);
    // Per route: the creates on their route, answered once durable; the missing post on the
    // record route; the first scrape on the metrics route (counted before its answer left).
    let route = |name: &str, method: &str, pattern: &str, class: &str| {
        let series = format!(
            "lithair_http_route_{name}{{method=\"{method}\",route=\"{pattern}\",class=\"{class}\"}}"
        );
        after.get(&series).copied()
    };
    assert_eq!(
        route("responses_total", "POST", "/api/posts", "2xx"),
        Some(3.0)
    );
    assert_eq!(
        route("responses_total", "POST", "/api/posts", "4xx"),
        Some(0.0)
    );
    assert_eq!(
        route("responses_total", "GET", "/api/posts/{id}", "4xx"),
        Some(1.0)
    );
    assert_eq!(
        route("responses_total", "GET", "/_lithair/metrics", "2xx"),
        Some(1.0)
    );
    assert_eq!(
        route("responses_total", "PUT", "/api/posts/{id}", "2xx"),
        None,
        "a route that answered nothing has no series"
    );
    let handler = "lithair_http_route_handler_seconds";
    let writes = format!("{handler}_count{{method=\"POST\",route=\"/api/posts\"}}");
    assert_eq!(after.get(&writes), Some(&3.0));
    // A create is timed to its commit: at least one fsync each, never 0.
    let written = format!("{handler}_sum{{method=\"POST\",route=\"/api/posts\"}}");
    assert!(after[&written] > 0.0, "{}", after[&written]);
    let only_the_scrape = (0..500).any(|_| {
        let now = metric_samples(&common::get(addr, "/_lithair/metrics").body);
        let alone = connections(&now, "open") == 1.0;
        if !alone {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        alone
    });
    assert!(only_the_scrape, "closed connections still counted open");
    assert_eq!(
        connections(&after, "accepted_total") - connections(&before, "accepted_total"),
        5.0
    );
    assert_eq!(connections(&after, "refused_total"), 0.0);
    // The worker pool: its threads, none busy but the one that may render this scrape.
    assert!(after["lithair_http_workers"] >= 1.0);
    assert!(after["lithair_http_workers_busy"] <= 1.0);
    assert_eq!(after["lithair_http_worker_queue_jobs"], 0.0);
    assert_eq!(after["lithair_http_worker_queue_refused_total"], 0.0);
    let applied = |m: &std::collections::BTreeMap<String, f64>| m["lithair_engine_applied_index"];
    assert_eq!(applied(&after) - applied(&before), 3.0);
    // No snapshot yet: the 3 creates are the log since none, which holds a segment on disk.
    let since =
        |m: &std::collections::BTreeMap<String, f64>| m["lithair_log_events_since_snapshot"];
    assert_eq!(since(&after) - since(&before), 3.0);
    assert!(after["lithair_log_bytes_since_snapshot"] > before["lithair_log_bytes_since_snapshot"]);
    assert_eq!(after["lithair_snapshot_bytes"], 0.0);
    assert!(after["lithair_log_disk_bytes"] > 0.0);
    // A snapshot: its size shows, and the log since it starts again from nothing.
    running.handle.engine().snapshot().expect("snapshot");
    let snapped = metric_samples(&common::get(addr, "/_lithair/metrics").body);
    assert!(snapped["lithair_snapshot_bytes"] > 0.0);
    assert_eq!(snapped["lithair_log_events_since_snapshot"], 0.0);
    assert!(after["lithair_log_fsyncs_total"] > before["lithair_log_fsyncs_total"]);
    assert!(after["lithair_log_fsync_seconds_total"] >= 0.0);
    assert!(after["lithair_serving_seconds"] >= before["lithair_serving_seconds"]);
    if cfg!(target_os = "linux") {
        assert!(after["lithair_process_resident_memory_bytes"] > 1e6);
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// The encoding digest (the default state digest, `engine::encoding_digest`) is hashed from
/// the encoding in pieces (`State::encode_spilled`), never from one state-sized buffer: it
/// must equal SHA-256 over the whole encoding all the same, for a state spanning several
/// pieces. (An `AppState`'s own digest hashes the records sums its collections keep, not its
/// encoding: it is checked against its recomputation here, and in tests/state_digest.rs.)
#[test]
fn the_encoding_digest_of_a_state_of_many_pieces_is_the_hash_of_its_whole_encoding() {
    let data = common::fresh_dir("app", "digest-pieces");
    let app = App::new("digest-pieces").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    let long_text = "é\"x".repeat(12_000);
    for i in 0..80 {
        let body = format!(
            r#"{{"title":"T{i}","slug":{}}}"#,
            json::to_string(&format!("s{i}-{long_text}")).unwrap()
        );
        let created = request(addr, "POST", "/api/posts", "", &body);
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let (encoded, digest, kept, recomputed) = running.handle.read(|state| {
        (
            lithair::binary::to_vec(state),
            lithair::engine::encoding_digest(state),
            lithair::engine::State::digest(state),
            lithair::engine::digest(state),
        )
    });
    assert_eq!(kept, recomputed, "the kept digest is the recomputed one");
    assert!(
        encoded.len() > 3 * lithair::binary::SPILL_PIECE_BYTES,
        "{} bytes",
        encoded.len()
    );
    assert_eq!(digest, lithair::crypto::sha256::sha256(&encoded));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// `--access-log FILE`: a JSON line per answer, appended, each with the status the client got
/// (a create's 201 once durable, not its placeholder), the router's own 404 included.
#[test]
fn the_access_log_flag_appends_a_line_per_answer() {
    let data = common::fresh_dir("app", "access-log");
    std::fs::create_dir_all(&data).unwrap();
    let log = data.with_extension("access.jsonl");
    std::fs::write(&log, "an earlier line\n").unwrap();
    let app = App::new("logged").model::<Post>();
    let mut options = common::serve_options(&data.join("data"));
    options.access_log = Some(lithair::app::cli::AccessLogTo::File(log.clone()));
    let running = app.start(&options).expect("start");
    let addr = running.server.local_addr();
    let created = request(
        addr,
        "POST",
        "/api/posts",
        "",
        r#"{"title":"t","slug":"s"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(common::get(addr, "/api/posts/999").status, 404);
    assert_eq!(common::get(addr, "/no/such/route").status, 404);
    running.stop().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "an earlier line", "appended, not truncated");
    let fields: Vec<(String, String, String, f64)> = lines[1..]
        .iter()
        .map(|line| {
            let value = json::parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let text = |key: &str| value[key].as_str().unwrap_or("null").to_string();
            let status = value["status"].as_f64().expect("a status");
            (text("method"), text("path"), text("route"), status)
        })
        .collect();
    let line = |method: &str, path: &str, route: &str, status: f64| {
        (
            method.to_string(),
            path.to_string(),
            route.to_string(),
            status,
        )
    };
    assert_eq!(
        fields,
        [
            line("POST", "/api/posts", "/api/posts", 201.0),
            line("GET", "/api/posts/999", "/api/posts/{id}", 404.0),
            line("GET", "/no/such/route", "null", 404.0),
        ]
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&log);
}

/// An access log that cannot be opened stops `start` with a message naming it.
#[test]
fn an_access_log_that_cannot_be_opened_is_an_error() {
    let data = common::fresh_dir("app", "access-log-bad");
    let mut options = common::serve_options(&data);
    let missing = data.join("no-such-directory").join("access.jsonl");
    options.access_log = Some(lithair::app::cli::AccessLogTo::File(missing));
    let app = App::new("logged").model::<Post>();
    let error = app.start(&options).err().expect("refused");
    assert!(
        error.contains("access log") && error.contains("no-such-directory"),
        "{error}"
    );
    assert!(!data.exists(), "the data directory is left untouched");
}
