//! The response side of the HTTP API contract: `Response` and `Body`.
//!
//! Owns: the in-memory shape of a response and its convenience constructors.
//! Must not: serialize to bytes or perform I/O (the connection writer in `write` does that).

use super::request::Headers;

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// The writer a streamed body writes into: the server frames each write as one chunk and sends
/// it at once. It also says when the server has begun a graceful shutdown, so a body that
/// would otherwise never end (an event stream) can finish cleanly instead of holding the
/// shutdown until its deadline; its client then reconnects to a server that is up.
pub struct StreamWriter<'a> {
    out: &'a mut dyn Write,
    stop: Option<&'a AtomicBool>,
    /// The connection written to, to notice a client that closed it.
    peer: Option<&'a TcpStream>,
}

impl<'a> StreamWriter<'a> {
    /// A writer into `out` that never reports a shutdown: for running a body outside a server
    /// (tests, a file).
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            stop: None,
            peer: None,
        }
    }

    /// A writer into `out` that reports `stop` (set once a shutdown begins).
    pub fn with_stop(out: &'a mut dyn Write, stop: &'a AtomicBool) -> Self {
        Self {
            out,
            stop: Some(stop),
            peer: None,
        }
    }

    /// A writer into `out`, the body of a response on `peer`, that reports `stop` and whether
    /// the client closed the connection ([`StreamWriter::peer_gone`]).
    pub fn for_connection(
        out: &'a mut dyn Write,
        stop: &'a AtomicBool,
        peer: &'a TcpStream,
    ) -> Self {
        Self {
            out,
            stop: Some(stop),
            peer: Some(peer),
        }
    }

    /// This writer, borrowed for a shorter time (to wrap it in a protocol's own writer).
    pub fn reborrow(&mut self) -> StreamWriter<'_> {
        StreamWriter {
            out: &mut *self.out,
            stop: self.stop,
            peer: self.peer,
        }
    }

    /// True once the server has begun a graceful shutdown. A finite body may still finish
    /// (until the shutdown deadline, when the server closes the socket under it); an endless
    /// one should return now.
    pub fn stopping(&self) -> bool {
        self.stop.is_some_and(|stop| stop.load(Ordering::Acquire))
    }

    /// True when the client has closed the connection (or it failed): an endless body that
    /// only writes now and then (an idle event stream) would otherwise hold its thread until
    /// its next write fails. Bytes the client sent (a pipelined request) are left unread and
    /// do not count. Always false for a writer without a connection.
    pub fn peer_gone(&self) -> bool {
        let Some(peer) = self.peer else {
            return false;
        };
        match crate::sys::poll::readable_now(peer.as_raw_fd()) {
            Ok(false) => false,
            // Readable without blocking: the end of the stream reads as 0 bytes.
            Ok(true) => !matches!(peer.peek(&mut [0u8; 1]), Ok(n) if n > 0),
            Err(_) => false,
        }
    }
}

impl Write for StreamWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // Forwarded whole: the server's writer sends each call as one chunk, and the default
        // `write_all` could split it.
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The closure type of a streamed body.
pub type StreamFn = Box<dyn FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send>;

/// Header slots a response starts with: its own few plus the default security headers added
/// by the router, without growing the list per response.
const RESPONSE_HEADERS_CAPACITY: usize = 8;

/// Content types common enough to be kept as static strings (no allocation per response).
const COMMON_CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "text/plain",
    "text/plain; charset=utf-8",
    "text/html; charset=utf-8",
];

/// `COMMON_CONTENT_TYPES` as static header runs (see `Headers::static_head`): a response
/// with one of them holds its `Content-Type` without allocating a header list.
static CONTENT_TYPE_RUNS: [[(&str, &str); 1]; 4] = [
    [("Content-Type", COMMON_CONTENT_TYPES[0])],
    [("Content-Type", COMMON_CONTENT_TYPES[1])],
    [("Content-Type", COMMON_CONTENT_TYPES[2])],
    [("Content-Type", COMMON_CONTENT_TYPES[3])],
];

/// `CONTENT_TYPE_RUNS` as header lines, copied by the writer in one piece.
const CONTENT_TYPE_LINES: [&[u8]; 4] = [
    b"Content-Type: application/json\r\n",
    b"Content-Type: text/plain\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
];

/// The header lines of a static head run when it is one of `CONTENT_TYPE_RUNS` (recognised by
/// address: the very run a constructor set).
pub(crate) fn rendered_head(run: &'static [(&'static str, &'static str)]) -> Option<&'static [u8]> {
    let index = CONTENT_TYPE_RUNS
        .iter()
        .position(|known| std::ptr::eq(&known[..], run))?;
    Some(CONTENT_TYPE_LINES[index])
}

/// Headers holding only `Content-Type: content_type`: a static run for the common types,
/// else a (recycled) list.
fn content_type_headers(content_type: &str) -> Headers {
    match COMMON_CONTENT_TYPES.iter().position(|t| *t == content_type) {
        Some(index) => Headers::static_head(&CONTENT_TYPE_RUNS[index]),
        None => {
            let mut headers = Headers::recycled(RESPONSE_HEADERS_CAPACITY);
            headers.append_cow(
                std::borrow::Cow::Borrowed("Content-Type"),
                std::borrow::Cow::Owned(content_type.to_string()),
            );
            headers
        }
    }
}

/// A response body.
pub enum Body {
    /// No body (`Content-Length: 0`, or none at all for 1xx/204/304).
    Empty,
    /// An owned buffer.
    Bytes(Vec<u8>),
    /// A static buffer (no copy until the socket write).
    Static(&'static [u8]),
    /// Streamed with chunked encoding (or until close on HTTP/1.0). The closure writes the body
    /// and returns when done; it runs on a worker thread (SSE uses it).
    Stream(StreamFn),
    /// A file region (static files); sent by the connection writer.
    File {
        /// The open file.
        file: std::fs::File,
        /// First byte of the region.
        offset: u64,
        /// Length of the region in bytes.
        len: u64,
    },
}

/// Reads the region `offset..offset + len` of `file` whole (positional reads: the file's own
/// offset is neither used nor moved), for a body sent from memory.
///
/// # Errors
/// A 500 problem saying why ([`file_read_failed`]): the file's read error, or
/// `UnexpectedEof` when it is shorter than the region (it shrank since its length was taken).
pub(crate) fn read_file_region(
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, super::problem::Problem> {
    use std::os::unix::fs::FileExt;
    let len =
        usize::try_from(len).map_err(|_| file_read_failed(io::ErrorKind::OutOfMemory.into()))?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, offset)
        .map_err(file_read_failed)?;
    Ok(bytes)
}

/// The answer when a file body cannot be read: 500, with the reason.
pub(crate) fn file_read_failed(error: io::Error) -> super::problem::Problem {
    super::problem::Problem::internal().with_detail(format!("reading the file: {error}"))
}

impl Body {
    /// The body's length when known in advance (`None` for streams).
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Static(b) => Some(b.len() as u64),
            Body::Stream(_) => None,
            Body::File { len, .. } => Some(*len),
        }
    }

    /// True for `Empty` and for zero-length buffers.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of an in-memory body (`Bytes` or `Static`); `None` otherwise.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Empty => Some(&[]),
            Body::Bytes(b) => Some(b),
            Body::Static(b) => Some(b),
            Body::Stream(_) | Body::File { .. } => None,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Body::Static(b) => write!(f, "Static({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Stream"),
            Body::File { offset, len, .. } => write!(f, "File(offset {offset}, {len} bytes)"),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Bytes(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::Bytes(text.into_bytes())
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::Static(text.as_bytes())
    }
}

/// A response: status, headers and body. `Date`, `Server`, `Content-Length` and
/// `Transfer-Encoding` are added by the server when it writes the response.
#[derive(Debug)]
pub struct Response {
    /// The status code (100..=999).
    pub status: u16,
    /// Header fields, in order.
    pub headers: Headers,
    /// The body.
    pub body: Body,
    /// The protocol that takes the connection over after a 101 (see [`Response::upgrade`]).
    pub upgrade: Option<super::upgrade::Upgrade>,
    /// Set on the placeholder of a deferred response (see [`Response::deferred`]).
    pub(crate) deferred: Option<super::deferred::Deferred>,
}

impl Response {
    /// A response with no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Headers::new(),
            body: Body::Empty,
            upgrade: None,
            deferred: None,
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let headers = Headers::static_head(&CONTENT_TYPE_RUNS[2]);
        Response {
            status,
            headers,
            body: Body::Bytes(body.into().into_bytes()),
            upgrade: None,
            deferred: None,
        }
    }

    /// A response with the given `Content-Type` and body.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let headers = content_type_headers(content_type);
        Response {
            status,
            headers,
            body: Body::Bytes(body),
            upgrade: None,
            deferred: None,
        }
    }

    /// A response with a static `Content-Type` and a static body: no allocation for a common
    /// content type (a static header run), else the header list only.
    pub fn static_bytes(status: u16, content_type: &'static str, body: &'static [u8]) -> Self {
        let headers = match COMMON_CONTENT_TYPES.iter().position(|t| *t == content_type) {
            Some(index) => Headers::static_head(&CONTENT_TYPE_RUNS[index]),
            None => {
                let mut headers = Headers::recycled(RESPONSE_HEADERS_CAPACITY);
                headers.append_static("Content-Type", content_type);
                headers
            }
        };
        Response {
            status,
            headers,
            body: Body::Static(body),
            upgrade: None,
            deferred: None,
        }
    }

    /// A streamed response (chunked on HTTP/1.1); `write` runs on a worker thread.
    pub fn stream(
        status: u16,
        content_type: &str,
        write: impl FnOnce(&mut StreamWriter<'_>) -> io::Result<()> + Send + 'static,
    ) -> Self {
        let mut headers = Headers::recycled(RESPONSE_HEADERS_CAPACITY);
        headers.append("Content-Type", content_type);
        Response {
            status,
            headers,
            body: Body::Stream(Box::new(write)),
            upgrade: None,
            deferred: None,
        }
    }

    /// A deferred response: return the placeholder from the handler and complete the real
    /// response later, from any thread, with the [`Responder`](super::deferred::Responder)
    /// (dropping it unanswered sends 503). The connection keeps pipelined responses in order
    /// and answers nothing after it until it is completed. Headers that middleware adds to the
    /// placeholder are carried over to the real response; its status (202) is never sent.
    pub fn deferred() -> (Response, super::deferred::Responder) {
        let (deferred, responder) = super::deferred::Deferred::pair();
        let mut placeholder = Response::new(202);
        placeholder.deferred = Some(deferred);
        (placeholder, responder)
    }

    /// True for the placeholder of a deferred response.
    pub fn is_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Calls `seen` with the response the client gets: this one, now, or for the placeholder
    /// of a deferred response the completed one, when it completes (on the completing thread;
    /// the 503 of an abandoned one included). For middleware that reports answers: their
    /// status and body, not the placeholder's 202 (a completed response is seen before the
    /// headers middleware put on its placeholder are carried over to it).
    pub fn when_answered(&self, seen: impl FnOnce(&Response) + Send + 'static) {
        match &self.deferred {
            None => seen(self),
            Some(deferred) => {
                deferred.watch(Box::new(move |answered: &mut Response| seen(answered)))
            }
        }
    }

    /// Edits the response the client gets, in place: this one, now, or for the placeholder
    /// of a deferred response the completed one, when it completes, in the order of the other
    /// steps ([`Response::when_answered`], [`Response::map_answer`]). It runs where a watcher
    /// runs, often on the completing thread (the engine's applier): for cheap edits, such as a
    /// header that depends on what the answer is (the security headers' CSP for HTML). A
    /// costly change is a map.
    #[must_use = "the response to send is the one returned"]
    pub fn edit_answer(mut self, edit: impl FnOnce(&mut Response) + Send + 'static) -> Response {
        match &self.deferred {
            None => edit(&mut self),
            Some(deferred) => deferred.watch(Box::new(edit)),
        }
        self
    }

    /// Replaces the response the client gets with `map(response)`: this one, now, or for the
    /// placeholder of a deferred response the completed one (the 503 of an abandoned one
    /// included), once it completes. For middleware that transforms answers (compression).
    /// A deferred answer is mapped off the completing thread, by a worker when one is free
    /// (the completing thread is often the engine's applier, which must not wait for a
    /// layer's work), after the steps added before this one ([`Response::when_answered`]
    /// included) and before those added after. A `map` that panics answers 500.
    #[must_use = "the response to send is the one returned"]
    pub fn map_answer(self, map: impl FnOnce(Response) -> Response + Send + 'static) -> Response {
        match &self.deferred {
            None => map(self),
            Some(deferred) => {
                deferred.map(Box::new(map));
                self
            }
        }
    }

    /// Sets (replaces) a header; builder style.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Replaces the body; builder style.
    pub fn with_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Response::new(204)
    }

    /// A plain-text response whose body is the status's reason phrase (e.g. `404 Not Found`).
    pub fn status_text(status: u16) -> Self {
        Response::static_bytes(
            status,
            "text/plain; charset=utf-8",
            reason_phrase(status).as_bytes(),
        )
    }
}

/// The reason phrase of a status code ("" for unknown codes).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_runs_render_as_their_lines() {
        for (run, lines) in CONTENT_TYPE_RUNS.iter().zip(CONTENT_TYPE_LINES) {
            let (name, value) = run[0];
            assert_eq!(format!("{name}: {value}\r\n").as_bytes(), lines);
            assert_eq!(rendered_head(run), Some(lines));
        }
        static OTHER: [(&str, &str); 1] = [("Content-Type", "text/plain")];
        assert_eq!(rendered_head(&OTHER), None);
        let r = Response::static_bytes(200, "text/plain", b"x").with_header("ETag", "\"1\"");
        assert_eq!(
            r.headers.iter().collect::<Vec<_>>(),
            [("Content-Type", "text/plain"), ("ETag", "\"1\"")]
        );
        let r = Response::bytes(200, "image/png", vec![1]);
        assert_eq!(r.headers.get("content-type"), Some("image/png"));
        assert!(r.headers.head_run().is_empty());
    }

    #[test]
    fn every_status_the_server_answers_has_its_phrase() {
        // 426 is what a plain GET of a WebSocket route gets; 409, 412 and 428 the preconditions.
        for status in [
            100, 101, 204, 304, 400, 404, 405, 408, 409, 412, 413, 414, 415,
        ] {
            assert_ne!(reason_phrase(status), "", "{status}");
        }
        for status in [422, 426, 428, 429, 431, 500, 503, 505] {
            assert_ne!(reason_phrase(status), "", "{status}");
        }
        assert_eq!(reason_phrase(426), "Upgrade Required");
    }

    #[test]
    fn constructors_set_type_and_body() {
        let r = Response::text(200, "hi");
        assert_eq!(
            r.headers.get("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(r.body.as_bytes(), Some(&b"hi"[..]));
        let r =
            Response::bytes(201, "application/json", b"{}".to_vec()).with_header("Location", "/x");
        assert_eq!((r.status, r.headers.get("location")), (201, Some("/x")));
        let r = Response::no_content();
        assert_eq!((r.status, r.body.len()), (204, Some(0)));
        assert_eq!(
            Response::status_text(404).body.as_bytes(),
            Some(&b"Not Found"[..])
        );
        assert!(Response::stream(200, "text/event-stream", |_| Ok(()))
            .body
            .len()
            .is_none());
    }
}
