//! A minimal raw-bytes HTTP/1.1 client and server harness shared by the http-surface
//! integration tests (included with `#[path]`, so each test binary compiles its own copy);
//! tests/http_common uses its `Reply` as the one parsed-response type.

#![allow(dead_code)]

use lithair::http::{Handler, Server, ServerConfig, ServerHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A server on a loopback port, shut down when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(handler: impl Handler) -> TestServer {
        let config = ServerConfig {
            reactor_threads: 1,
            worker_threads: 4,
            ..ServerConfig::default()
        };
        let handle = Server::bind("127.0.0.1:0")
            .expect("bind")
            .config(config)
            .spawn(handler)
            .expect("spawn");
        let addr = handle.local_addr();
        TestServer {
            handle: Some(handle),
            addr,
        }
    }

    /// Sends `head` (request line and headers, without the blank line; `Host` and
    /// `Connection: close` are added) and `body`, and reads the whole response.
    pub fn send(&self, head: &str, body: &[u8]) -> Reply {
        let mut raw = format!("{head}\r\nHost: test\r\nConnection: close\r\n");
        if !body.is_empty() {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        parse_reply(&self.exchange(&bytes), head.starts_with("HEAD "))
    }

    /// `GET target` with extra header lines (each `Name: value`).
    pub fn get(&self, target: &str, headers: &[&str]) -> Reply {
        let mut head = format!("GET {target} HTTP/1.1");
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        self.send(&head, b"")
    }

    /// Writes raw bytes and reads until the server closes.
    pub fn exchange(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        // A bound so a broken server fails the test instead of hanging it (not an assertion).
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.write_all(bytes).expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).expect("read");
        out
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            let _ = handle.join();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response (Content-Length, chunked, or until close).
pub fn parse_reply(raw: &[u8], head_request: bool) -> Reply {
    let end = find(raw, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let rest = &raw[end + 4..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 304 || status == 204 {
        return reply;
    }
    if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(rest);
    } else if let Some(len) = reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        reply.body = rest[..len.min(rest.len())].to_vec();
    } else {
        reply.body = rest.to_vec();
    }
    reply
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}
