//! Third probe round of the HTTP core over real sockets: obs-text in field values, per-route
//! CORS preflights, 304s carrying what their 200 would, and hostile framing.

mod http_common;
#[path = "ws_support/mod.rs"]
mod ws_support;
use http_common::*;
use std::io::{BufReader, Write};

/// RFC 9110 §5.5: a field value with obs-text (bytes 0x80-0xFF) that is not UTF-8, such as a
/// Latin-1 cookie a browser holds, is served; the handler reads it with U+FFFD in place of each
/// invalid sequence, or as the bytes received (`header_bytes`, `headers_raw`). A trailer is
/// read lossily too. A framing field holding it is refused.
#[test]
fn obs_text_in_a_field_value_is_served_lossily() {
    let server = spawn(quick_config());
    let (resp, _) = send(
        server.local_addr(),
        b"GET /x HTTP/1.1\r\nHost: h\r\nCookie: n=caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
    );
    assert_eq!((resp.status, resp.text().as_str()), (200, "GET /x h"));
    let handler = |req: &mut lithair::http::Request| {
        let cookie = req.header("cookie").unwrap_or("-").to_string();
        let utf8 = req.header("x-utf8").unwrap_or("-").to_string();
        lithair::http::Response::text(200, format!("{cookie}|{utf8}"))
    };
    let server = spawn_handler(quick_config(), handler);
    let (resp, _) = send(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: h\r\nCookie: n=caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "n=caf\u{fffd}|caf\u{e9}");
    // The bytes received stay readable, for a handler that treats them as opaque (a proxy).
    let handler = |req: &mut lithair::http::Request| {
        let mut body = req.header_bytes("cookie").unwrap_or(b"-").to_vec();
        for (name, value) in req.headers_raw() {
            body.extend_from_slice(b"|");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"=");
            body.extend_from_slice(value);
        }
        lithair::http::Response::bytes(200, "application/octet-stream", body)
    };
    let server = spawn_handler(quick_config(), handler);
    let (resp, _) = send(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: h\r\nCookie: n=caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        b"n=caf\xe9|Host=h|Cookie=n=caf\xe9|X-Utf8=caf\xc3\xa9".to_vec()
    );
    let server = spawn(quick_config());
    let (resp, _) = send(
        server.local_addr(),
        b"POST /echo?t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: \xff1\r\n\r\n",
    );
    assert_eq!(resp.text(), "POST t body=ab trailer X-T=\u{fffd}1");
    expect_rejected(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\xb2\r\n\r\nab",
        400,
    );
    expect_rejected(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: h\xe9\r\n\r\n",
        400,
    );
    // Control bytes are still refused.
    expect_rejected(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
        400,
    );
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nX: \x80\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream);
    assert_eq!(
        read_response(&mut reader, false).expect("reply").status,
        200
    );
}

/// A CORS layer on one route (`handler.with(cors)`, no group) answers that route's
/// preflights: 204 with the allow headers, not the router's bare 204 a browser refuses. The
/// route chosen is the one the preflight asks about (`Access-Control-Request-Method`).
#[test]
fn per_route_cors_answers_its_preflight() {
    use lithair::http::cors::Cors;
    use lithair::http::router::{Router, WithMiddleware};
    use lithair::http::{Request, Response};
    let cors = Cors::new(["https://a.example"])
        .allow_methods(["PUT", "GET"])
        .allow_headers(["content-type"]);
    let put = |_: &mut Request| Response::text(200, "put");
    let get = |_: &mut Request| Response::text(200, "get");
    let router = Router::new()
        .put("/items/{id}", put.with(cors.clone()))
        .get("/items/{id}", get)
        .put("/exact", put.with(cors));
    let server = spawn_handler(quick_config(), router);
    for path in ["/items/7", "/exact"] {
        let preflight = format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\n\
             Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
        );
        let (resp, _) = send(server.local_addr(), preflight.as_bytes());
        assert_eq!(resp.status, 204, "{path}: {}", resp.text());
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://a.example"),
            "{path}"
        );
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("PUT, GET"),
            "{path}"
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("content-type")
        );
        // A preflight from a foreign origin is refused by the route's layer.
        let foreign = preflight.replace("https://a.example", "https://evil.example");
        let (resp, _) = send(server.local_addr(), foreign.as_bytes());
        assert_eq!(resp.status, 403, "{path}");
    }
    // The GET route has no CORS layer: its preflight gets the router's own answer.
    let (resp, _) = send(
        server.local_addr(),
        b"OPTIONS /items/7 HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    assert_eq!(
        (resp.status, resp.header("access-control-allow-origin")),
        (204, None)
    );
    assert_eq!(resp.header("allow"), Some("PUT, GET, HEAD, OPTIONS"));
    // A plain OPTIONS (no preflight) is the router's answer too.
    let (resp, _) = send(
        server.local_addr(),
        b"OPTIONS /exact HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(
        (resp.status, resp.header("allow")),
        (204, Some("PUT, OPTIONS"))
    );
}

/// A client that sends its request and at once half-closes (shutdown(WR)) still gets the
/// answer, for an inline, a worker and a body-carrying request, and for two pipelined ones.
#[test]
fn a_half_closed_client_still_gets_its_answers() {
    use std::io::Read;
    use std::net::Shutdown;
    let server = spawn(quick_config());
    for (request, want) in [
        (
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            vec!["GET / h"],
        ),
        (
            "GET /slow?50 HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            vec!["slept 50"],
        ),
        (
            "POST /echo?q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc".to_string(),
            vec!["POST q body=abc"],
        ),
        (
            "GET /slow?30 HTTP/1.1\r\nHost: h\r\n\r\nGET /inline/2 HTTP/1.1\r\nHost: h\r\n\r\n"
                .to_string(),
            vec!["slept 30", "GET /inline/2 h"],
        ),
    ] {
        let mut stream = connect(server.local_addr());
        stream.write_all(request.as_bytes()).expect("write");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let mut reader = BufReader::new(stream);
        for text in want {
            let resp = read_response(&mut reader, false).expect("an answer after half-close");
            assert_eq!(resp.text(), text);
        }
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }
}

/// Pipelined: a GET, then a POST with `Expect: 100-continue` whose body the client holds until
/// the 100, then a GET. The 100 comes after the first answer, the answers in order.
#[test]
fn pipelined_requests_around_a_100_continue() {
    use std::io::BufRead;
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(
            b"GET /slow?40 HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /echo?e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let first = read_response(&mut reader, false).expect("first");
    assert_eq!(first.text(), "slept 40");
    let mut line = String::new();
    reader.read_line(&mut line).expect("100");
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    let mut blank = String::new();
    reader.read_line(&mut blank).expect("blank");
    assert_eq!(blank, "\r\n");
    // The body one byte per write, then the next request.
    for b in b"data" {
        stream.write_all(std::slice::from_ref(b)).expect("write");
    }
    stream
        .write_all(b"GET /inline/3 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let second = read_response(&mut reader, false).expect("second");
    assert_eq!(second.text(), "POST e body=data");
    let third = read_response(&mut reader, false).expect("third");
    assert_eq!(third.text(), "GET /inline/3 h");
}

/// HEAD on a streamed handler: the GET's headers, no body, and the connection stays in step
/// (the next answer is read where it should be).
#[test]
fn head_on_a_streamed_answer_sends_no_body_and_keeps_the_connection() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for _ in 0..2 {
        stream
            .write_all(b"HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /inline/4 HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("write");
        let head = read_response(&mut reader, true).expect("head");
        assert_eq!(head.status, 200);
        let next = read_response(&mut reader, false).expect("next");
        assert_eq!(next.text(), "GET /inline/4 h");
    }
    // HTTP/1.0 HEAD on a stream (no chunked there): no body, then close.
    let (head, mut reader) = send(server.local_addr(), b"HEAD /stream HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(is_closed(&mut reader));
}

/// `Connection: close, upgrade` (several tokens) closes after the answer; `keep-alive, close`
/// too; a plain upgrade request to a route that does not upgrade is answered normally.
#[test]
fn connection_with_several_tokens() {
    let server = spawn(quick_config());
    for value in [
        "close, upgrade",
        "keep-alive, close",
        "Upgrade,CLOSE",
        "x,\tclose",
    ] {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nConnection: {value}\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let (resp, mut reader) = send(server.local_addr(), request.as_bytes());
        assert_eq!(resp.status, 200, "{value}");
        assert_eq!(resp.header("connection"), Some("close"), "{value}");
        assert!(is_closed(&mut reader), "{value}");
    }
}

/// `Transfer-Encoding: chunked` on HTTP/1.0 is refused (RFC 9112 §6.1: a 1.0 peer cannot
/// frame it) and the connection closed, so no body bytes are read as a request.
#[test]
fn chunked_on_http10_is_refused() {
    let server = spawn(quick_config());
    expect_rejected(
        server.local_addr(),
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    expect_rejected(
        server.local_addr(),
        b"POST /echo HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n",
        400,
    );
}

/// A large answer to a reader that reads slowly, then the next request on the same
/// connection: every byte arrives, in order, and keep-alive holds.
#[test]
fn a_large_answer_to_a_slow_reader_then_keep_alive() {
    use std::io::Read;
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /inline/5 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::with_capacity(4096, stream);
    let mut line = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("head");
        if line == "\r\n" {
            break;
        }
    }
    let mut got = 0usize;
    let mut buf = [0u8; 64 * 1024];
    let total = 8 << 20;
    let mut pauses = 0;
    while got < total {
        let want = (total - got).min(buf.len());
        let n = reader.read(&mut buf[..want]).expect("read");
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        got += n;
        if pauses < 20 && got % (512 * 1024) < n {
            pauses += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let next = read_response(&mut reader, false).expect("next");
    assert_eq!(next.text(), "GET /inline/5 h");
}

/// Header fields a response must carry: (lower-case name, value).
type Headers = Vec<(&'static str, &'static str)>;

/// Upgrade requests refused by the WebSocket handshake rules, through the reactor: every 426
/// names the protocol to upgrade to (RFC 9110 §15.5.22 MUST, with the `Upgrade` connection
/// option, §7.8), the wrong version gets `Sec-WebSocket-Version: 13` (RFC 6455 §4.4), a bad
/// or repeated key 400, HTTP/1.0 400, a POST 405 with `Allow: GET`; the connection still
/// speaks HTTP after each.
#[test]
fn refused_websocket_upgrades_carry_the_headers_their_status_needs() {
    use lithair::http::router::Router;
    use lithair::http::Request;
    use lithair::ws::{Ctx, Endpoint, Message, WsHandler};
    use std::sync::Arc;
    struct Quiet;
    impl WsHandler for Quiet {
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message) {}
    }
    let endpoint = Arc::new(Endpoint::new(
        |_: &Request, _: &str| -> Box<dyn WsHandler> { Box::new(Quiet) },
    ));
    let post = Arc::clone(&endpoint);
    let router = Router::new()
        .get("/ws", move |req: &mut Request| endpoint.respond(req))
        .post("/ws", move |req: &mut Request| post.respond(req));
    let server = spawn_handler(quick_config(), router);
    let base = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(String, u16, Headers)> = vec![
        (
            format!("GET /ws HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 8\r\n\r\n"),
            426,
            vec![
                ("sec-websocket-version", "13"),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
            ],
        ),
        (
            format!("GET /ws HTTP/1.1\r\n{base}{key}\r\n"),
            426,
            vec![("sec-websocket-version", "13"), ("upgrade", "websocket")],
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            426,
            vec![("upgrade", "websocket"), ("connection", "Upgrade")],
        ),
        (
            format!("GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            400,
            vec![],
        ),
        (
            format!("GET /ws HTTP/1.1\r\n{base}{key}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
            vec![],
        ),
        (
            format!("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
            vec![],
        ),
        (
            format!("POST /ws HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"),
            405,
            vec![("allow", "GET")],
        ),
    ];
    for (request, status, headers) in cases {
        let mut stream = connect(server.local_addr());
        stream.write_all(request.as_bytes()).expect("write");
        stream
            .write_all(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("write");
        let mut reader = BufReader::new(stream);
        let resp = read_response(&mut reader, false).expect("refusal");
        assert_eq!(resp.status, status, "{request}: {}", resp.text());
        for (name, value) in headers {
            assert_eq!(resp.header(name), Some(value), "{name} on {request}");
        }
        let next = read_response(&mut reader, false).expect("still HTTP");
        assert_eq!(next.status, 404, "{request}");
    }
    let (resp, _) = send(
        server.local_addr(),
        format!("GET /ws HTTP/1.0\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 400);
}

/// HEAD on an endless event stream: the GET's headers at once, no body, no stream thread held
/// (the next pipelined request is answered), for HTTP/1.1; HTTP/1.0 closes after the head.
#[test]
fn head_on_an_event_stream_answers_the_head_only() {
    use lithair::http::router::Router;
    use lithair::http::sse::{Sse, SseEvent};
    use lithair::http::{Request, Response};
    use std::sync::mpsc;
    let router = Router::new()
        .get("/events", |_: &mut Request| {
            let (tx, rx) = mpsc::channel::<SseEvent>();
            // Never sends and never hangs up: a GET would stream until its client leaves.
            std::mem::forget(tx);
            Sse::new().heartbeat_ms(60_000).from_channel(rx)
        })
        .get("/after", |_: &mut Request| Response::text(200, "after"));
    let server = spawn_handler(quick_config(), router);
    let mut stream = connect(server.local_addr());
    stream
        .write_all(
            b"HEAD /events HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .expect("write");
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, true).expect("head");
    assert_eq!(
        (head.status, head.header("content-type")),
        (200, Some("text/event-stream"))
    );
    let next = read_response(&mut reader, false).expect("next");
    assert_eq!(next.text(), "after");
    let (head, mut reader) = send(server.local_addr(), b"HEAD /events HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(is_closed(&mut reader));
}

/// A client that half-closes inside a head or a body gets no answer to the cut request (a
/// handler never sees half a request) and the connection is closed at once, not held until a
/// deadline; answers owed to complete requests before it still go out.
#[test]
fn a_half_close_inside_a_request_closes_without_running_it() {
    use std::io::Read;
    use std::net::Shutdown;
    let server = spawn(quick_config());
    for (bytes, answers) in [
        (&b"GET / HTTP/1.1\r\nHost: h\r\n"[..], 0),
        (&b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"[..], 0),
        (
            &b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"[..],
            0,
        ),
        (
            &b"GET /slow?20 HTTP/1.1\r\nHost: h\r\n\r\nPOST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab"[..],
            1,
        ),
    ] {
        let mut stream = connect(server.local_addr());
        stream.write_all(bytes).expect("write");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let mut reader = BufReader::new(stream);
        for _ in 0..answers {
            let resp = read_response(&mut reader, false).expect("owed answer");
            assert_eq!(resp.status, 200);
        }
        let mut rest = Vec::new();
        if let Err(e) = reader.read_to_end(&mut rest) {
            // Closed, not held open until the read timeout.
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 400"),
            "{:?}: {rest}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// A server whose `/ws` upgrades to a WebSocket that echoes every message.
fn spawn_ws_echo() -> lithair::http::ServerHandle {
    use lithair::http::router::Router;
    use lithair::http::Request;
    use lithair::ws::{Ctx, Endpoint, Message, WsHandler};
    use std::sync::Arc;
    struct Echo;
    impl WsHandler for Echo {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
            let _ = ctx.send(&message);
        }
    }
    let endpoint = Arc::new(Endpoint::new(
        |_: &Request, _: &str| -> Box<dyn WsHandler> { Box::new(Echo) },
    ));
    let router = Router::new().get("/ws", move |req: &mut Request| endpoint.respond(req));
    spawn_handler(quick_config(), router)
}

/// `Connection: close, Upgrade` on a WebSocket upgrade (the `upgrade` option is there, so the
/// upgrade happens, as in other servers): the 101 carries one `Connection: Upgrade`, never a
/// `close` beside it, and the connection then speaks WebSocket.
#[test]
fn an_upgrade_that_also_asks_to_close() {
    let server = spawn_ws_echo();
    for connection in ["close, Upgrade", "Upgrade, close", "keep-alive, Upgrade"] {
        let request = ws_support::upgrade_request("/ws", "")
            .replace("Connection: Upgrade", &format!("Connection: {connection}"));
        let stream = std::net::TcpStream::connect(server.local_addr()).expect("connect");
        let mut client = ws_support::WsClient::upgrade(stream, &request);
        let head = client.head.to_ascii_lowercase();
        let connections: Vec<&str> = head
            .lines()
            .filter(|l| l.starts_with("connection:"))
            .collect();
        assert_eq!(connections, ["connection: upgrade"], "{connection}: {head}");
        client.send_text("still here");
        assert_eq!(client.next_text(), "still here");
        client.close();
    }
}

/// A handler that answers with an interim status (1xx other than a 101 it upgrades with) has
/// broken the contract: a 1xx is not a final answer, and sent as one the client would take
/// the next pipelined answer as this request's. It becomes a 500, like a 101 without upgrade.
#[test]
fn an_interim_status_from_a_handler_is_a_500() {
    let handler = |req: &mut lithair::http::Request| {
        let status: u16 = req.query.parse().unwrap_or(200);
        lithair::http::Response::new(status)
    };
    let server = spawn_handler(quick_config(), handler);
    for status in [100u16, 102, 103, 199] {
        let mut stream = connect(server.local_addr());
        let request = format!(
            "GET /?{status} HTTP/1.1\r\nHost: h\r\n\r\nGET /?204 HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut reader = BufReader::new(stream);
        let first = read_response(&mut reader, false).expect("first");
        assert_eq!(first.status, 500, "{status}");
        let second = read_response(&mut reader, false).expect("second");
        assert_eq!(second.status, 204, "{status}");
    }
}

/// A half-close right after a request whose answer is larger than the socket buffers: every
/// byte still arrives (the EOF ends reading, not the writing owed), also behind a slow reader.
#[test]
fn a_half_closed_client_gets_a_large_answer_whole() {
    use std::io::Read;
    use std::net::Shutdown;
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /inline/9 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut reader = BufReader::new(stream);
    let big = read_response(&mut reader, false).expect("big");
    assert_eq!(big.body.len(), 8 << 20);
    let next = read_response(&mut reader, false).expect("next");
    assert_eq!(next.text(), "GET /inline/9 h");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());
}

/// A static file larger than the socket buffers to a slow reader, pipelined with the next
/// request (a range of the same file): both answers whole and in order on one connection.
#[test]
fn a_large_file_to_a_slow_reader_then_a_range_on_the_same_connection() {
    use std::io::Read;
    let dir = std::env::temp_dir().join(format!("lithair-probe3-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let content: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &content).expect("write");
    let (_server, stream) = file_then_range(&dir, "big.bin", "1000-1009");
    let mut reader = BufReader::with_capacity(8192, stream);
    let mut line = String::new();
    let mut length = 0usize;
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("head");
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
            length = v.trim().parse().expect("length");
        }
        if line == "\r\n" {
            break;
        }
    }
    assert_eq!(length, content.len());
    let mut body = vec![0u8; length];
    let mut got = 0;
    let mut pauses = 0;
    while got < length {
        let end = (got + 64 * 1024).min(length);
        let n = reader.read(&mut body[got..end]).expect("read");
        assert!(n > 0, "closed after {got}");
        got += n;
        if pauses < 15 && got % (512 * 1024) < n {
            pauses += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    assert!(body == content, "the file's bytes, in order");
    let part = read_response(&mut reader, false).expect("range");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &content[1000..1010]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves `dir` under `/f/` and sends on one connection, pipelined, a GET of `/f/NAME` and
/// a GET of its bytes `range`; returns the server (stopped when dropped) and the connection.
fn file_then_range(
    dir: &std::path::Path,
    name: &str,
    range: &str,
) -> (lithair::http::ServerHandle, std::net::TcpStream) {
    let router =
        lithair::http::router::Router::new().static_dir("/f", dir.to_str().expect("utf-8"));
    let server = spawn_handler(quick_config(), router);
    let mut stream = connect(server.local_addr());
    let requests = format!(
        "GET /f/{name} HTTP/1.1\r\nHost: h\r\n\r\n\
         GET /f/{name} HTTP/1.1\r\nHost: h\r\nRange: bytes={range}\r\n\r\n"
    );
    stream.write_all(requests.as_bytes()).expect("write");
    (server, stream)
}

/// A file whose start is in the page cache and whose end is not (a hole never read): the
/// reactor sends the cached steps, a stream thread the rest from where it stopped, and the
/// client gets every byte in order; the next request on the connection is answered after it.
#[test]
fn a_file_partly_in_the_page_cache_goes_out_whole() {
    use std::io::Read;
    let dir = std::env::temp_dir().join(format!("lithair-probe3-part-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let written: Vec<u8> = (0..600_000u32).map(|i| (i % 241) as u8).collect();
    let path = dir.join("part.bin");
    std::fs::write(&path, &written).expect("write");
    let total = written.len() + (1 << 20);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_len(total as u64))
        .expect("extend with a hole");
    let (_server, stream) = file_then_range(&dir, "part.bin", "0-9");
    let mut reader = BufReader::new(stream);
    let whole = read_response(&mut reader, false).expect("the file");
    assert_eq!((whole.status, whole.body.len()), (200, total));
    assert!(
        whole.body[..written.len()] == written[..],
        "the written part"
    );
    assert!(
        whole.body[written.len()..].iter().all(|&b| b == 0),
        "the hole"
    );
    let part = read_response(&mut reader, false).expect("the range");
    assert_eq!((part.status, &part.body[..]), (206, &written[..10]));
    let mut rest = [0u8; 1];
    reader
        .get_mut()
        .set_nonblocking(true)
        .expect("non-blocking");
    assert!(reader.read(&mut rest).is_err(), "nothing more");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A static file to a client that never reads: the reactor sends what the socket buffers
/// take, then the write deadline ends the wait and the connection. A streamed body to a
/// client that never reads holds a stream thread until the same deadline; meanwhile a file
/// in the page cache is sent by the reactor itself, needing no stream thread.
#[test]
fn a_file_to_a_client_that_never_reads_is_cut_at_the_write_deadline() {
    use lithair::http::router::Router;
    use lithair::http::{Request, Response};
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("lithair-probe3-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("big.bin"), vec![b'z'; 32 << 20]).expect("write");
    let router = Router::new()
        .static_dir("/f", dir.to_str().expect("utf-8"))
        .get("/stream", |req: &mut Request| {
            let chunks = if req.query == "big" { 512 } else { 1 };
            Response::stream(200, "application/octet-stream", move |w| {
                for _ in 0..chunks {
                    w.write_all(&[b's'; 64 * 1024])?;
                }
                Ok(())
            })
        });
    let config = lithair::http::ServerConfig {
        write_timeout_ms: 300,
        streams_max: 1,
        ..quick_config()
    };
    let server = spawn_handler(config, router);
    let head_of = |stream: &mut std::net::TcpStream| {
        let mut head = [0u8; 12];
        std::io::Read::read_exact(stream, &mut head).expect("a head");
        assert_eq!(&head, b"HTTP/1.1 200");
    };
    let stalled_at = Instant::now();
    let mut stalled_file = connect(server.local_addr());
    stalled_file
        .write_all(b"GET /f/big.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    head_of(&mut stalled_file);
    // A streamed body takes the one stream thread and holds it, its client reading nothing.
    let mut stalled_stream = connect(server.local_addr());
    stalled_stream
        .write_all(b"GET /stream?big HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    head_of(&mut stalled_stream);
    // 300 KB of the file, in the page cache (just written): sent by the reactor at once.
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /f/big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=0-299999\r\n\r\n")
        .expect("write");
    let part = read_response(&mut BufReader::new(stream), false).expect("sent by the reactor");
    assert_eq!((part.status, part.body.len()), (206, 300_000));
    assert!(part.body.iter().all(|&b| b == b'z'));
    // Another streamed body is refused (its connection closed after the head) until the
    // stalled one's deadline frees the stream thread; then it is served.
    let started = Instant::now();
    let served = loop {
        let mut stream = connect(server.local_addr());
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("write");
        let mut reader = BufReader::new(stream);
        if let Some(answer) = read_response(&mut reader, false) {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stalled stream still holds the stream thread"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((served.status, served.body.len()), (200, 64 * 1024));
    // Past the deadline the stalled file's connection is closed, with what the buffers held,
    // far from the whole file.
    let deadline_passed = Duration::from_millis(1_000);
    std::thread::sleep(deadline_passed.saturating_sub(stalled_at.elapsed()));
    stalled_file
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut held = Vec::new();
    match std::io::Read::read_to_end(&mut stalled_file, &mut held) {
        Ok(_) => assert!(held.len() < 32 << 20, "the whole file was sent"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One masked client frame (RFC 6455 §5.2), payload under 126 bytes.
fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![(u8::from(fin) << 7) | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Over the reactor: a ping between the fragments of a message is answered at once and the
/// message arrives whole; a fragmented ping, a close with a code never sent on the wire (1005),
/// a one-byte close payload and a close reason that is not UTF-8 each fail the connection with
/// their code (1002, 1002, 1002, 1007) and the socket is closed after it.
#[test]
fn websocket_control_frames_and_close_codes_through_the_reactor() {
    use lithair::ws::Event;
    use std::io::Read;
    let server = spawn_ws_echo();
    let open = || {
        let stream = std::net::TcpStream::connect(server.local_addr()).expect("connect");
        let request = ws_support::upgrade_request("/ws", "");
        ws_support::WsClient::upgrade(stream, &request)
    };
    let mut client = open();
    let mut frames = ws_frame(false, 0x1, b"hel");
    frames.extend(ws_frame(true, 0x9, b"p"));
    frames.extend(ws_frame(true, 0x0, b"lo"));
    client.stream.write_all(&frames).expect("send");
    assert_eq!(client.next_event(), Event::Pong(b"p".to_vec()));
    assert_eq!(client.next_text(), "hello");
    client.close();
    let mut close_1005 = vec![0x03, 0xED];
    close_1005.extend_from_slice(b"x");
    for (bytes, code) in [
        (ws_frame(false, 0x9, b"p"), 1002u16),
        (ws_frame(true, 0x8, &close_1005), 1002),
        (ws_frame(true, 0x8, &[0x03]), 1002),
        (ws_frame(true, 0x8, &[0x03, 0xE8, 0xff]), 1007),
    ] {
        let mut client = open();
        client.stream.write_all(&bytes).expect("send");
        let mut head = [0u8; 4];
        client.stream.read_exact(&mut head).expect("a close frame");
        // FIN + close, unmasked (a server's), at least the two code bytes.
        assert!(head[0] == 0x88 && (2..126).contains(&head[1]), "{head:?}");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), code, "{bytes:?}");
        let mut rest = Vec::new();
        match client.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
}
