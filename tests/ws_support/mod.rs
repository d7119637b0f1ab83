//! A blocking WebSocket test client over a raw socket (`lithair::ws::Connection` in the client
//! role frames and masks, this file moves bytes), and the loopback server the WebSocket tests
//! start.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lithair::http::{Handler, Server, ServerConfig, ServerHandle};
use lithair::ws::{Config, Connection, Event, Message};

static SEED: AtomicU64 = AtomicU64::new(0x5EED);

/// Serves `handler` on a loopback port (chosen by the OS) with one reactor thread and
/// `worker_threads` workers.
pub fn serve(handler: impl Handler, worker_threads: usize) -> ServerHandle {
    let config = ServerConfig {
        worker_threads,
        reactor_threads: 1,
        ..ServerConfig::default()
    };
    Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(config)
        .spawn(handler)
        .expect("spawn")
}

/// The upgrade request for `target`, plus `extra` header lines.
pub fn upgrade_request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads one response head (through the blank line); returns it and any bytes after it.
pub fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = raw.split_off(end + 4);
            return (String::from_utf8_lossy(&raw).into_owned(), rest);
        }
        let n = stream.read(&mut buf).expect("read a response head");
        assert!(n > 0, "connection closed before a complete head: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// One client connection.
pub struct WsClient {
    pub stream: TcpStream,
    pub conn: Connection,
    pub head: String,
}

impl WsClient {
    /// Connects and upgrades; panics unless the answer is a 101.
    pub fn connect(addr: SocketAddr, target: &str) -> WsClient {
        let stream = TcpStream::connect(addr).expect("connect");
        WsClient::upgrade(stream, &upgrade_request(target, ""))
    }

    /// Sends `request` (which may carry more bytes) on `stream` and expects a 101.
    pub fn upgrade(mut stream: TcpStream, request: &str) -> WsClient {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        let (head, rest) = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        WsClient::after_head(stream, head, &rest)
    }

    /// A client on a stream whose 101 head was already read (`rest` followed it).
    pub fn after_head(stream: TcpStream, head: String, rest: &[u8]) -> WsClient {
        let config = Config {
            mask_seed: SEED.fetch_add(7919, Ordering::Relaxed),
            ..Config::CLIENT
        };
        let mut conn = Connection::new(config, 0);
        conn.receive(rest);
        WsClient { stream, conn, head }
    }

    pub fn flush(&mut self) {
        let out = self.conn.take_output();
        self.stream.write_all(&out).expect("send frames");
    }

    pub fn send_text(&mut self, text: &str) {
        self.conn.send_text(text).expect("open");
        self.flush();
    }

    /// The next protocol event, reading as needed.
    pub fn next_event(&mut self) -> Event {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(event) = self.conn.poll_event() {
                self.flush(); // pongs and close answers
                return event;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.conn.receive_eof(),
                Ok(n) => self.conn.receive(&buf[..n]),
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// The next text message; panics on anything else but pings.
    pub fn next_text(&mut self) -> String {
        loop {
            match self.next_event() {
                Event::Message(Message::Text(text)) => return text,
                Event::Ping(_) | Event::Pong(_) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Sends a close and waits for the answer, then for the server to close the socket.
    pub fn close(mut self) {
        self.conn.close(1000, "bye");
        self.flush();
        loop {
            match self.next_event() {
                Event::Close(_) => break,
                Event::Message(_) | Event::Ping(_) | Event::Pong(_) => {}
                other => panic!("expected the close answer, got {other:?}"),
            }
        }
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    }
}
