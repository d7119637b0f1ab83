//! Request smuggling defences (RFC 9112 §6.3, §11.2): every ambiguous framing is answered with
//! an error and the connection is closed, so no byte after it is ever read as a request.

mod http_common;
use http_common::*;

#[test]
fn ambiguous_or_invalid_framing_is_rejected_and_closed() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    let cases: &[(&[u8], u16)] = &[
        // Content-Length with Transfer-Encoding.
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
        // Differing and malformed Content-Length.
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\nabcde", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: -4\r\n\r\nabcd", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4x\r\n\r\nabcd", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0x4\r\n\r\nabcd", 400),
        // Transfer codings other than a single final chunked.
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
        (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        // obs-fold, whitespace before the colon, NUL, bare CR, bare LF.
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400),
        // Bad chunk sizes and chunk framing.
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", 400),
        // Missing or repeated Host on 1.1.
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        // A Host that is not `uri-host [":" port]` (RFC 9112 §3.2: 400).
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: evil.example/reset?x=\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h:80@evil.example\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\"b\r\n\r\n", 400),
        // Unsupported versions.
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/x.1\r\nHost: h\r\n\r\n", 400),
        // Malformed request lines and targets.
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET nope HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ];
    for (bytes, status) in cases {
        expect_rejected(addr, bytes, *status);
    }
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn a_smuggled_request_after_a_framing_error_is_never_answered() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    let attack = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let (resp, mut reader) = send(addr, attack);
    assert_eq!(resp.status, 400);
    assert!(
        read_response(&mut reader, false).is_none(),
        "a second response was sent"
    );
    server.shutdown();
    server.join().expect("join");
}
