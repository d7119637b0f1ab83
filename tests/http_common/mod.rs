//! Helpers shared by the HTTP integration tests: a test application, a raw-bytes client and a
//! minimal response reader. Every test binds port 0 and talks over loopback.
#![allow(dead_code)]

#[path = "../support/http_client.rs"]
mod client;

use lithair::http::{Handler, Method, Request, Response, Server, ServerConfig, ServerHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Safety net for reads so a broken server fails a test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A config with small timeouts so limit tests finish quickly.
pub fn quick_config() -> ServerConfig {
    ServerConfig {
        reactor_threads: 2,
        worker_threads: 8,
        linger_ms: 300,
        shutdown_grace_ms: 5_000,
        ..ServerConfig::default()
    }
}

/// The application used by the tests.
pub struct TestApp;

impl Handler for TestApp {
    fn call(&self, req: &mut Request) -> Response {
        match req.path.as_str() {
            "/echo" => {
                let mut text = format!(
                    "{} {} body={}",
                    req.method,
                    req.query,
                    String::from_utf8_lossy(&req.body)
                );
                if let Some(trailers) = req.extensions.get::<lithair::http::Trailers>() {
                    for (name, value) in trailers.0.iter() {
                        text.push_str(&format!(" trailer {name}={value}"));
                    }
                }
                Response::text(200, text)
            }
            "/slow" | "/inline/slow" => {
                let ms: u64 = req.query.parse().unwrap_or(200);
                std::thread::sleep(Duration::from_millis(ms));
                Response::text(200, format!("slept {ms}"))
            }
            "/panic" => panic!("test handler panics on purpose"),
            "/stream" => Response::stream(200, "text/plain", |w| {
                for part in ["one,", "two,", "three"] {
                    w.write_all(part.as_bytes())?;
                }
                Ok(())
            }),
            "/big" => Response::bytes(200, "application/octet-stream", vec![b'x'; 8 << 20]),
            "/close" => Response::text(200, "bye").with_header("Connection", "close"),
            // A length for a body the handler does not send (meant for HEAD).
            "/declared" => Response::new(200).with_header("Content-Length", "5"),
            _ => Response::text(
                200,
                format!(
                    "{} {} {}",
                    req.method,
                    req.path,
                    req.header("host").unwrap_or("-")
                ),
            ),
        }
    }

    fn is_inline(&self, req: &Request) -> bool {
        // Exercise both paths: `/inline/...` and the default route run on the reactor.
        req.path.starts_with("/inline") || (req.method == Method::Get && req.path == "/")
    }
}

/// Polls `condition` every few milliseconds until it holds; fails the test (naming `what`)
/// past READ_TIMEOUT, a bound for a broken server rather than a timed assertion.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < READ_TIMEOUT,
            "gave up waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn spawn(config: ServerConfig) -> ServerHandle {
    spawn_handler(config, TestApp)
}

/// `spawn`, counting in a `ServerStats` the test reads.
pub fn spawn_counted(config: ServerConfig) -> (ServerHandle, lithair::http::stats::ServerStats) {
    let stats = lithair::http::stats::ServerStats::new();
    let server = Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(config)
        .stats(stats.clone())
        .spawn(TestApp)
        .expect("spawn");
    (server, stats)
}

/// A server on a free loopback port answering with `handler`.
pub fn spawn_handler(config: ServerConfig, handler: impl Handler) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(config)
        .spawn(handler)
        .expect("spawn")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    // `write!` sends a request in pieces; without this Nagle + delayed ACK add 40 ms each.
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One parsed response: the type of the raw-bytes client the other HTTP tests use.
pub use client::Reply as Resp;

/// Reads one response (Content-Length or chunked; `head` for responses without a body).
pub fn read_response(reader: &mut BufReader<TcpStream>, head: bool) -> Option<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        reader.read_line(&mut l).ok()?;
        let l = l.trim_end_matches("\r\n");
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 || status < 200 {
        return Some(resp);
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = resp.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        resp.body = body;
    }
    Some(resp)
}

/// Sends `bytes` on a new connection and reads one response.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> (Resp, BufReader<TcpStream>) {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write");
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader, false).expect("a response");
    (resp, reader)
}

/// True when the server closed the connection (EOF or reset) — waits up to READ_TIMEOUT.
pub fn is_closed(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Sends a request that must be rejected: checks status and that the connection closes.
pub fn expect_rejected(addr: SocketAddr, bytes: &[u8], status: u16) {
    let (resp, mut reader) = send(addr, bytes);
    assert_eq!(
        resp.status,
        status,
        "{:?} -> {}",
        String::from_utf8_lossy(bytes),
        resp.text()
    );
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(
        is_closed(&mut reader),
        "connection must close after {status}"
    );
}
