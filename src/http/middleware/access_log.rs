//! Structured access log: one JSON object per line with method, path, the route pattern that
//! answered (`null` when none did), status, bytes, duration_us, request id and peer, to
//! stderr or any sink.
//!
//! A line describes the answer the client got: for a deferred response (a write answered
//! once durable) that is the completed one, logged when it completes, with the time up to
//! then; never its placeholder.

use super::request_id::RequestId;
use super::Middleware;
use crate::http::handler::Handler;
use crate::http::problem::json_string;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::{MatchedRoute, WantMatchedRoute};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where access-log lines go: each call gets one complete line without the newline.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Logs every request after its response is built. Every string is JSON-escaped, so a path or
/// header with control characters cannot break or forge a line.
pub struct AccessLog {
    sink: LogSink,
}

impl AccessLog {
    /// Lines to standard error (one `write` per line under the stderr lock).
    pub fn stderr() -> Self {
        Self::to(Arc::new(|line: &str| {
            // A full or closed stderr must not fail the request; the line is dropped.
            let _ = std::io::stderr().lock().write_all(&terminated(line));
        }))
    }

    /// Lines to `sink` (tests, files, collectors).
    pub fn to(sink: LogSink) -> Self {
        Self { sink }
    }

    /// Lines appended to a writer (e.g. a file opened to append), serialized by a mutex,
    /// each in one `write_all`: an unbuffered file gets a line per `write`, never a part.
    pub fn writer(writer: impl Write + Send + 'static) -> Self {
        let writer = Mutex::new(writer);
        Self::to(Arc::new(move |line: &str| {
            let line = terminated(line);
            if let Ok(mut w) = writer.lock() {
                // A full disk must not fail the request; the line is dropped.
                let _ = w.write_all(&line);
            }
        }))
    }
}

/// `line` and its newline, to be written at once (`writeln!` writes them apart, and
/// formats in pieces: several `write` calls a line on an unbuffered stream).
fn terminated(line: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    bytes
}

/// What a line says of the request.
pub(crate) struct Logged<'a> {
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    request_id: Option<&'a str>,
    remote: Option<SocketAddr>,
}

impl<'a> Logged<'a> {
    fn of(req: &'a Request) -> Logged<'a> {
        Logged {
            method: req.method.as_str(),
            path: &req.path,
            route: req.extensions.get::<MatchedRoute>().map(|r| r.0.as_str()),
            request_id: req.extensions.get::<RequestId>().map(|id| id.0.as_str()),
            remote: req.remote_addr,
        }
    }
}

/// [`Logged`] copied out of the request, for a line written once a deferred answer completes.
struct LoggedLater {
    method: String,
    path: String,
    route: Option<String>,
    request_id: Option<String>,
    remote: Option<SocketAddr>,
}

impl LoggedLater {
    fn of(req: &Request) -> LoggedLater {
        let logged = Logged::of(req);
        LoggedLater {
            method: logged.method.to_string(),
            path: logged.path.to_string(),
            route: logged.route.map(str::to_string),
            request_id: logged.request_id.map(str::to_string),
            remote: logged.remote,
        }
    }

    fn logged(&self) -> Logged<'_> {
        Logged {
            method: &self.method,
            path: &self.path,
            route: self.route.as_deref(),
            request_id: self.request_id.as_deref(),
            remote: self.remote,
        }
    }
}

/// Writes the line of `response` to `sink`, timed from `started`.
fn write_line(sink: &LogSink, logged: &Logged<'_>, response: &Response, started: Instant) {
    let duration_us = started.elapsed().as_micros();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    sink(&format_line(logged, response, duration_us, unix_ms));
}

/// One log line; pure so it can be tested byte for byte.
pub(crate) fn format_line(
    logged: &Logged<'_>,
    response: &Response,
    duration_us: u128,
    unix_ms: u128,
) -> String {
    let mut line = String::with_capacity(160);
    line.push_str(&format!("{{\"ts_ms\":{unix_ms},\"method\":"));
    json_string(&mut line, logged.method);
    line.push_str(",\"path\":");
    json_string(&mut line, logged.path);
    line.push_str(",\"route\":");
    match logged.route {
        Some(route) => json_string(&mut line, route),
        None => line.push_str("null"),
    }
    line.push_str(&format!(",\"status\":{}", response.status));
    match response.body.len() {
        Some(n) => line.push_str(&format!(",\"bytes\":{n}")),
        None => line.push_str(",\"bytes\":null"),
    }
    line.push_str(&format!(",\"duration_us\":{duration_us},\"request_id\":"));
    match logged.request_id {
        Some(id) => json_string(&mut line, id),
        None => line.push_str("null"),
    }
    line.push_str(",\"remote\":");
    match logged.remote {
        Some(addr) => json_string(&mut line, &addr.to_string()),
        None => line.push_str("null"),
    }
    line.push('}');
    line
}

impl Middleware for AccessLog {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let started = Instant::now();
        req.extensions.insert(WantMatchedRoute);
        let response = next.call(req);
        if response.is_deferred() {
            let later = LoggedLater::of(req);
            let sink = Arc::clone(&self.sink);
            response.when_answered(move |answered| {
                write_line(&sink, &later.logged(), answered, started);
            });
        } else {
            write_line(&self.sink, &Logged::of(req), &response, started);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn line_is_escaped_json() {
        let mut req = Request::new(Method::Get, "/a\u{1b}[2J\"x");
        req.extensions.insert(RequestId("r1".into()));
        let response = Response::text(404, "nope");
        let line = format_line(&Logged::of(&req), &response, 12, 1000);
        assert_eq!(
            line,
            "{\"ts_ms\":1000,\"method\":\"GET\",\"path\":\"/a\\u001b[2J\\\"x\",\"route\":null,\"status\":404,\
             \"bytes\":4,\"duration_us\":12,\"request_id\":\"r1\",\"remote\":null}"
        );
    }

    #[test]
    fn sink_receives_one_line_per_request() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&lines);
        let log = AccessLog::to(Arc::new(move |l: &str| {
            store.lock().expect("lock").push(l.to_string())
        }));
        let mut req = Request::new(Method::Post, "/x");
        let _ = log.call(&mut req, &|_: &mut Request| Response::no_content());
        let got = lines.lock().expect("lock");
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("\"status\":204") && got[0].contains("\"method\":\"POST\""));
    }
}
