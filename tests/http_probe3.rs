//! Third probe round of the HTTP core over real sockets: obs-text in field values, per-route
//! CORS preflights, 304s carrying what their 200 would, and hostile framing.

mod http_common;
use http_common::*;
use std::io::{BufReader, Write};

/// RFC 9110 §5.5: a field value with obs-text (bytes 0x80-0xFF) that is not UTF-8, such as a
/// Latin-1 cookie a browser holds, is served; the handler reads it with U+FFFD in place of each
/// invalid sequence. A trailer is treated the same. A framing field holding it is refused.
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
