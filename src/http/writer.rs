//! The response writer: serializes a `Response` into bytes appended to a reused buffer (status
//! line and common headers as static bytes, cached `Date`, `Server`, `Content-Length` or
//! chunked framing, no body for HEAD / 1xx / 204 / 304).
//!
//! Owns: the bytes of every response head and of in-memory bodies; header sanitising (a value
//! with CR, LF or NUL from a handler is dropped, never sent: response splitting). Header
//! parts given as `&'static str` are program text and are trusted; every string built at run
//! time is checked.
//! Must not: perform I/O. Stream and file bodies are handed back to the caller as `Direct`.

use super::date::HTTP_DATE_BYTES;
use super::middleware::rendered_tail;
use super::parse::is_token;
use super::request::Version;
use super::response::{reason_phrase, rendered_head, Body, Response, StreamFn};
use std::borrow::Cow;

/// What the writer needs to know about the request being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The request's version (1.0 clients get no chunked encoding).
    pub version: Version,
    /// The request was HEAD: headers only.
    pub head: bool,
    /// The client allows the connection to persist (and the server wants it to).
    pub keep_alive: bool,
}

/// A body that the connection must send itself after the head (not in the buffer).
pub enum Direct {
    /// Run the closure, framing its writes as chunks when `chunked`.
    Stream {
        /// The body writer.
        write: StreamFn,
        /// Chunked framing (HTTP/1.1) or raw until close (HTTP/1.0).
        chunked: bool,
    },
    /// Copy a file region.
    File {
        /// The open file.
        file: std::fs::File,
        /// First byte.
        offset: u64,
        /// Byte count (announced in Content-Length).
        len: u64,
    },
}

/// The result of serializing one response.
pub struct Written {
    /// The connection must close after this response.
    pub close: bool,
    /// A body still to be sent by the connection, if any.
    pub direct: Option<Direct>,
}

/// The status line of a 200, the usual answer (see [`write_response_heads`]).
pub const OK_STATUS_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Appends the status line of `status` (HTTP/1.1).
fn status_line(out: &mut Vec<u8>, status: u16) {
    let line: &[u8] = match status {
        200 => OK_STATUS_LINE,
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        _ => {
            assert!(
                (100..=999).contains(&status),
                "status {status} out of range"
            );
            out.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(out, u64::from(status));
            out.push(b' ');
            out.extend_from_slice(reason_phrase(status).as_bytes());
            out.extend_from_slice(b"\r\n");
            return;
        }
    };
    out.extend_from_slice(line);
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; U64_DIGITS_MAX];
    let start = digits_before(&mut digits, U64_DIGITS_MAX, n);
    out.extend_from_slice(&digits[start..]);
}

/// Decimal digits of the largest `u64`.
const U64_DIGITS_MAX: usize = 20;

/// Writes `n` in decimal so that its last digit is at `buf[end - 1]`; returns where the first
/// digit is. `buf[..end]` must have room for [`U64_DIGITS_MAX`] digits.
fn digits_before(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    let mut start = end;
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return start;
        }
    }
}

fn is_safe_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || b >= 0x20 && b != 0x7f)
}

/// Response header fields the writer decides itself instead of copying.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    ContentLength,
    TransferEncoding,
    Connection,
    Other,
}

/// Classifies a header name; the length test first keeps the common case (any other header)
/// to one comparison instead of three case-insensitive ones.
fn framing_name(name: &str) -> Framing {
    match name.len() {
        10 if name.eq_ignore_ascii_case("connection") => Framing::Connection,
        14 if name.eq_ignore_ascii_case("content-length") => Framing::ContentLength,
        17 if name.eq_ignore_ascii_case("transfer-encoding") => Framing::TransferEncoding,
        _ => Framing::Other,
    }
}

/// What the header fields decided while they were written.
struct Fields<'h> {
    status: u16,
    /// The connection closes after this response.
    close: bool,
    /// A `Content-Length` the handler set (used only for an empty body that is not sent).
    own_length: Option<&'h str>,
    /// The handler's `Connection` named the `upgrade` option: a response offering `Upgrade`
    /// (a 426) must carry it (RFC 9110 §7.8), beside the writer's own close or keep-alive.
    upgrade: bool,
}

impl<'h> Fields<'h> {
    /// Writes one valid header field, except those that frame the message: the writer
    /// decides those itself and only records what they asked for.
    #[inline]
    fn write(&mut self, out: &mut Vec<u8>, name: &'h str, value: &'h str) {
        match framing_name(name) {
            Framing::Other => {}
            Framing::ContentLength => {
                self.own_length = Some(value);
                return;
            }
            Framing::TransferEncoding => return,
            Framing::Connection if self.status == 101 => {}
            Framing::Connection => {
                for token in value.split(',').map(str::trim) {
                    self.close |= token.eq_ignore_ascii_case("close");
                    self.upgrade |= token.eq_ignore_ascii_case("upgrade");
                }
                return;
            }
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Bytes reserved for the header fields of a response (a few headers and the security ones).
const FIELDS_BYTES_GUESS: usize = 256;

/// Bytes the head needs besides the header fields: status line, `Server`, `Date`,
/// `Content-Length` or `Transfer-Encoding`, `Connection` and the final CRLF.
const HEAD_FIXED_BYTES: usize = 160;

/// Appends the lines every response carries after its status line: `Server` and `Date`. The
/// reactor renders them once per second (see [`write_response_common`]).
pub fn render_common_head(out: &mut Vec<u8>, date: &[u8; HTTP_DATE_BYTES], server_name: &str) {
    out.extend_from_slice(b"Server: ");
    out.extend_from_slice(server_name.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

/// Serializes `response` (head, and the body when it is in memory) into `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    response: Response,
    exchange: Exchange,
    date: &[u8; HTTP_DATE_BYTES],
    server_name: &str,
) -> Written {
    let mut common = Vec::with_capacity(HEAD_FIXED_BYTES + server_name.len());
    render_common_head(&mut common, date, server_name);
    write_response_common(out, response, exchange, &common)
}

/// Like [`write_response`], with the `Server` and `Date` lines already rendered by
/// [`render_common_head`] (one copy per response instead of five).
pub fn write_response_common(
    out: &mut Vec<u8>,
    response: Response,
    exchange: Exchange,
    common_head: &[u8],
) -> Written {
    write_response_heads(out, response, exchange, common_head, &[])
}

/// Like [`write_response_common`], with `ok_head` the 200 status line followed by
/// `common_head` (empty if not rendered): a 200 starts with one copy of it.
pub fn write_response_heads(
    out: &mut Vec<u8>,
    response: Response,
    exchange: Exchange,
    common_head: &[u8],
    ok_head: &[u8],
) -> Written {
    assert!(
        common_head.ends_with(b"\r\n"),
        "the common head is whole header lines"
    );
    assert!(
        ok_head.is_empty() || ok_head.len() == OK_STATUS_LINE.len() + common_head.len(),
        "ok_head is the 200 status line and the common head"
    );
    let Response {
        mut status,
        headers,
        body,
        upgrade,
        deferred,
    } = response;
    // The connection takes the protocol out before writing; one left here has nowhere to go.
    assert!(upgrade.is_none(), "an upgrade must be taken before writing");
    assert!(
        deferred.is_none(),
        "a deferred response is settled before writing"
    );
    // An interim status (1xx) cannot be the answer: the client would wait for a final one and
    // take the next response for it. 101 is the connection's business (see `take_upgrade`).
    if !(100..=999).contains(&status) || (status < 200 && status != 101) {
        eprintln!("lithair http: handler returned invalid status {status}; sending 500");
        status = 500;
    }
    // One reservation for the whole response, with a guess for the header fields rather than
    // a pass to measure them: the copies below reallocate only for unusually many fields.
    let tail = headers.static_tail();
    let rendered = rendered_tail(tail);
    let inline_len = body.as_bytes().map_or(0, <[u8]>::len);
    out.reserve(HEAD_FIXED_BYTES + common_head.len() + FIELDS_BYTES_GUESS + inline_len);
    let start = out.len();
    if status == 200 && !ok_head.is_empty() {
        out.extend_from_slice(ok_head);
    } else {
        status_line(out, status);
        out.extend_from_slice(common_head);
    }
    let mut fields = Fields {
        status,
        close: !exchange.keep_alive,
        own_length: None,
        upgrade: false,
    };
    let head = headers.head_run();
    match rendered_head(head) {
        // A common `Content-Type`: its line is pre-rendered.
        Some(lines) => out.extend_from_slice(lines),
        None => {
            for &(name, value) in head {
                fields.write(out, name, value);
            }
        }
    }
    for (name, value) in headers.entries() {
        // Static strings are program text, written by the developer, and cannot carry
        // attacker bytes; only owned strings (built at run time, maybe from request data)
        // are checked per response. This keeps the default headers free of per-byte work.
        let name_ok = matches!(name, Cow::Borrowed(_)) || is_token(name);
        let value_ok = matches!(value, Cow::Borrowed(_)) || is_safe_value(value);
        if !name_ok || !value_ok {
            eprintln!("lithair http: dropped invalid response header {name:?}");
            continue;
        }
        fields.write(out, name, value);
    }
    match rendered {
        // The default security headers: their lines are pre-rendered.
        Some(lines) => out.extend_from_slice(lines),
        None => {
            for &(name, value) in tail {
                fields.write(out, name, value);
            }
        }
    }
    let Fields {
        mut close,
        own_length,
        upgrade,
        ..
    } = fields;
    // A 101 hands the connection to another protocol: its `Connection: Upgrade` is the
    // handler's, and HTTP's close or keep-alive no longer applies (a request's `Connection:
    // close, Upgrade` got a 101 that also said `close`).
    if status == 101 {
        close = false;
    }
    let bodyless_status = status < 200 || status == 204 || status == 304;
    let send_body = !exchange.head && !bodyless_status;
    let chunked_ok = exchange.version == Version::Http11;
    let mut direct = None;
    match body {
        Body::Stream(write) => {
            // RFC 9112 §6.1: no Transfer-Encoding on a 1xx or 204 (nor a 304: no body).
            if chunked_ok && !bodyless_status {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            } else {
                close = true;
            }
            if send_body {
                direct = Some(Direct::Stream {
                    write,
                    chunked: chunked_ok,
                });
            }
        }
        // A handler's own `Content-Length` describes a body it does not send: honoured only
        // where no body goes out (HEAD, 304). Sent with an empty body, it would make the
        // client take the next response's bytes as this body. Never on a 1xx or a 204 (RFC
        // 9110 §8.6 MUST NOT), and only as 1*DIGIT.
        Body::Empty if bodyless_status || (own_length.is_some() && !send_body) => {
            let may_say = status == 304 || !bodyless_status;
            let digits = |v: &&str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            if let Some(length) = own_length.filter(|v| may_say && digits(v)) {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(length.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Body::File { file, offset, len } => {
            content_length(out, len, bodyless_status);
            if send_body && len > 0 {
                direct = Some(Direct::File { file, offset, len });
            }
        }
        other => {
            let bytes = other.as_bytes().unwrap_or(&[]);
            content_length(out, bytes.len() as u64, bodyless_status);
            finish_head(out, status, close, upgrade, exchange);
            if send_body {
                out.extend_from_slice(bytes);
            }
            assert!(out.len() > start, "nothing written");
            headers.recycle();
            return Written { close, direct };
        }
    }
    finish_head(out, status, close, upgrade, exchange);
    headers.recycle();
    Written { close, direct }
}

fn content_length(out: &mut Vec<u8>, len: u64, bodyless_status: bool) {
    if bodyless_status {
        return;
    }
    // Rendered right-aligned on the stack (CRLF, digits backwards, then the name before them)
    // and appended with one copy: this line is in nearly every response.
    const PREFIX: &[u8; 16] = b"Content-Length: ";
    const LINE_BYTES: usize = PREFIX.len() + U64_DIGITS_MAX + 2;
    let mut line = [0u8; LINE_BYTES];
    line[LINE_BYTES - 2..].copy_from_slice(b"\r\n");
    let start = digits_before(&mut line, LINE_BYTES - 2, len) - PREFIX.len();
    line[start..start + PREFIX.len()].copy_from_slice(PREFIX);
    out.extend_from_slice(&line[start..]);
}

fn finish_head(out: &mut Vec<u8>, status: u16, close: bool, upgrade: bool, exchange: Exchange) {
    if status == 101 {
        out.extend_from_slice(b"\r\n");
        return;
    }
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade");
        match (close, exchange.version) {
            (true, _) => out.extend_from_slice(b", close\r\n\r\n"),
            (false, Version::Http10) => out.extend_from_slice(b", keep-alive\r\n\r\n"),
            (false, Version::Http11) => out.extend_from_slice(b"\r\n\r\n"),
        }
        return;
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n\r\n");
    } else if exchange.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8; 29] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    const KEEP: Exchange = Exchange {
        version: Version::Http11,
        head: false,
        keep_alive: true,
    };

    fn render(response: Response, exchange: Exchange) -> (String, bool, bool) {
        let mut out = Vec::new();
        let written = write_response(&mut out, response, exchange, DATE, "lithair");
        let text = String::from_utf8(out).expect("utf8");
        (text, written.close, written.direct.is_some())
    }

    #[test]
    fn plain_response_has_length_date_and_server() {
        let (text, close, direct) = render(Response::text(200, "hi"), KEEP);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: lithair\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert!(!close && !direct);
    }

    #[test]
    fn the_rendered_ok_head_gives_the_same_bytes() {
        let mut common = Vec::new();
        render_common_head(&mut common, DATE, "lithair");
        let mut ok_head = OK_STATUS_LINE.to_vec();
        ok_head.extend_from_slice(&common);
        for status in [200, 201, 404, 418] {
            let make = || Response::text(status, "hi").with_header("X-A", "1");
            let (mut plain, mut fused) = (Vec::new(), Vec::new());
            write_response_common(&mut plain, make(), KEEP, &common);
            write_response_heads(&mut fused, make(), KEEP, &common, &ok_head);
            assert_eq!(String::from_utf8(fused), String::from_utf8(plain));
        }
    }

    #[test]
    fn head_and_bodyless_statuses_send_no_body() {
        let head = Exchange { head: true, ..KEEP };
        let (text, _, _) = render(Response::text(200, "hello"), head);
        assert!(text.ends_with("Content-Length: 5\r\n\r\n"), "{text}");
        let (text, _, _) = render(Response::text(204, "x"), KEEP);
        assert!(
            text.ends_with("utf-8\r\n\r\n") && !text.contains("Length"),
            "{text}"
        );
        let (text, _, _) = render(Response::new(304).with_header("Content-Length", "7"), KEEP);
        assert!(text.contains("Content-Length: 7\r\n") && text.starts_with("HTTP/1.1 304"));
        // A declared length with no body is honoured only where no body is sent: on a GET
        // it would make the client read the next response as this one's body.
        let declared = || Response::new(200).with_header("Content-Length", "7");
        let (text, _, _) = render(declared(), head);
        assert!(text.ends_with("Content-Length: 7\r\n\r\n"), "{text}");
        let (text, _, _) = render(declared(), KEEP);
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        // A stream answered with a bodyless status: no chunked framing announced.
        let (text, _, direct) = render(Response::stream(204, "text/plain", |_| Ok(())), KEEP);
        assert!(!text.contains("chunked") && !direct, "{text}");
        // An interim status as the final answer is a handler bug: 500.
        for interim in [100, 102, 103] {
            let (text, _, _) = render(Response::text(interim, "x"), KEEP);
            assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        }
        let (text, _, _) = render(Response::new(418), KEEP);
        assert!(
            text.starts_with("HTTP/1.1 418 \r\n") && text.ends_with("Content-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn a_handler_length_only_where_a_body_could_be() {
        let declared = |status: u16| Response::new(status).with_header("Content-Length", "5");
        let head = Exchange { head: true, ..KEEP };
        for (status, exchange, said) in [
            (304, KEEP, true),
            (200, head, true),
            (204, KEEP, false),
            (204, head, false),
            (103, KEEP, false),
        ] {
            let (text, _, _) = render(declared(status), exchange);
            assert_eq!(text.contains("Content-Length: 5\r\n"), said, "{text}");
        }
        let empty = Response::new(304).with_header("Content-Length", "");
        let (text, _, _) = render(empty, KEEP);
        assert!(!text.contains("Content-Length"), "{text}");
    }

    #[test]
    fn the_upgrade_option_survives_on_a_426() {
        let offer = || {
            Response::new(426)
                .with_header("Upgrade", "websocket")
                .with_header("Connection", "Upgrade")
        };
        let (text, close, _) = render(offer(), KEEP);
        assert!(
            !close && text.contains("\r\nConnection: Upgrade\r\n\r\n"),
            "{text}"
        );
        let closing = Exchange {
            keep_alive: false,
            ..KEEP
        };
        let (text, close, _) = render(offer(), closing);
        assert!(
            close && text.contains("\r\nConnection: Upgrade, close\r\n\r\n"),
            "{text}"
        );
        let (text, _, _) = render(
            Response::text(200, "a").with_header("Connection", "x"),
            KEEP,
        );
        assert!(!text.contains("Connection"), "{text}");
        // A 101 keeps its own `Connection: Upgrade` alone, whatever the request asked.
        let switching = || {
            Response::new(101)
                .with_header("Upgrade", "websocket")
                .with_header("Connection", "Upgrade")
        };
        let old = Exchange {
            version: Version::Http10,
            ..closing
        };
        for exchange in [KEEP, closing, old] {
            let (text, close, _) = render(switching(), exchange);
            assert_eq!(text.matches("Connection").count(), 1, "{text}");
            assert!(
                !close && text.ends_with("Connection: Upgrade\r\n\r\n"),
                "{text}"
            );
        }
    }

    #[test]
    fn close_stream_and_http10_framing() {
        let closing = Exchange {
            keep_alive: false,
            ..KEEP
        };
        let (text, close, _) = render(Response::text(400, "bad"), closing);
        assert!(close && text.contains("Connection: close\r\n\r\nbad"));
        let old = Exchange {
            version: Version::Http10,
            ..KEEP
        };
        let (text, close, _) = render(Response::text(200, "a"), old);
        assert!(!close && text.contains("Connection: keep-alive\r\n"));
        let (text, close, direct) = render(Response::stream(200, "text/plain", |_| Ok(())), KEEP);
        assert!(!close && direct && text.contains("Transfer-Encoding: chunked\r\n"));
        let (text, close, direct) = render(Response::stream(200, "text/plain", |_| Ok(())), old);
        assert!(close && direct && !text.contains("chunked"));
        let (_, close, _) = render(
            Response::text(200, "a").with_header("Connection", "close"),
            KEEP,
        );
        assert!(close);
    }

    #[test]
    fn injected_or_malformed_headers_are_dropped_and_framing_headers_replaced() {
        let response = Response::text(200, "ok")
            .with_header("X-Evil", "a\r\nSet-Cookie: x=1")
            .with_header("Bad Name", "v")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("Content-Length", "99");
        let (text, _, _) = render(response, KEEP);
        assert!(!text.contains("Evil") && !text.contains("Bad Name") && !text.contains("chunked"));
        assert!(text.contains("Content-Length: 2\r\n") && !text.contains(": 99"));
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }
}
