//! Helpers shared by the integration test binaries (each includes this file with `mod common;`).
//!
//! Owns: scratch directories, starting an `App` on a loopback port, and the one-request
//! HTTP/1.1 client the app-level tests talk through. Must not: hold the checks of any one
//! topic; those stay in the topic's file.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lithair::app::cli::ServeOptions;
use lithair::app::{App, Running};
use lithair::json::{self, Value};

/// Safety net for reads so a broken server fails a test instead of hanging it (a bound, not
/// an assertion on time).
pub const READ_TIMEOUT_MS: u64 = 20_000;

/// An empty scratch directory path for one test: `lithair-<topic>-<name>-<pid>` under the
/// system temp directory, with whatever an earlier run left there removed. The process id keeps
/// concurrent test runs apart; the test removes the directory when it passes.
pub fn fresh_dir(topic: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithair-{topic}-{name}-{}", std::process::id()));
    // A leftover from a failed run is expected; a missing directory is the normal case.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `serve` options for a single node on an OS-chosen loopback port (so tests never race for
/// a port) with `data` as its data directory.
pub fn serve_options(data: &Path) -> ServeOptions {
    ServeOptions {
        port: 0,
        bind: std::net::Ipv4Addr::LOCALHOST.into(),
        data: data.to_path_buf(),
        node_id: None,
        peer_port: None,
        cluster: Vec::new(),
        join: None,
        cluster_secret: None,
        read_mode: Default::default(),
        poll_window_us: None,
        access_log: None,
        extra: Vec::new(),
    }
}

/// Starts `app` over `data` with [`serve_options`]; the port is bound before `start`
/// returns, so the address is ready for requests at once.
pub fn start(app: &App, data: &Path) -> (Running, SocketAddr) {
    let running = app
        .start(&serve_options(data))
        .unwrap_or_else(|error| panic!("start the app on {}: {error}", data.display()));
    let addr = running.server.local_addr();
    (running, addr)
}

/// One response: the head as text (status line and headers), the parsed status and headers,
/// and the body as text.
#[derive(Debug)]
pub struct Answer {
    pub head: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        json::parse(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The body as JSON, or `Null` when it is empty (a 204, say).
    pub fn json_or_null(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of one JSON request: `extra` is zero or more CRLF-terminated header lines.
pub fn request_text(method: &str, target: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Writes `bytes` on a fresh connection and reads until the server closes it.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)))
        .expect("read timeout");
    stream.write_all(bytes).expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    raw
}

/// One JSON request on a fresh connection (closed after the answer); `extra` as in
/// [`request_text`].
pub fn request(addr: SocketAddr, method: &str, target: &str, extra: &str, body: &str) -> Answer {
    let extra = format!("Connection: close\r\n{extra}");
    let raw = exchange(addr, request_text(method, target, &extra, body).as_bytes());
    parse_answer(&String::from_utf8_lossy(&raw))
}

/// A `GET` without a body on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> Answer {
    let head = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    parse_answer(&String::from_utf8_lossy(&exchange(addr, head.as_bytes())))
}

/// The ids of the records a list query `path?query` answers, in the order listed (200
/// expected).
pub fn listed_ids(addr: SocketAddr, path: &str, query: &str) -> Vec<u64> {
    let answer = get(addr, &format!("{path}?{query}"));
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    let json = answer.json();
    let data = json["data"].as_array().expect("data");
    data.iter()
        .filter_map(|record| record["id"].as_u64())
        .collect()
}

/// Splits one whole response (read to the close) into head, status, headers and body.
fn parse_answer(text: &str) -> Answer {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        head: head.to_string(),
        status,
        headers,
        body: body.to_string(),
    }
}
