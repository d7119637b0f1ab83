//! WebSocket connections living in the HTTP reactor (the upgrade hook), over real sockets:
//! the 101 and the bytes that follow the request, pipelining before an upgrade, a refused
//! upgrade keeping HTTP alive, cross-connection wake-ups through the hub, the polite close on
//! shutdown, and no thread per socket.

mod ws_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use lithair::http::{Request, Response, Router, ServerHandle};
use lithair::ws::{self, Config, Connection, Ctx, Endpoint, Event, Message, SharedHub, WsHandler};
use ws_support::{read_head, upgrade_request, WsClient};

struct Echo;

impl WsHandler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        let _ = ctx.send(&message);
    }
}

/// Joins room `r`; every text goes to the whole room.
struct Roomy;

impl WsHandler for Roomy {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let id = ctx.id();
        let joined = ctx.hub().map(|hub| hub.with(|hub| hub.join(id, "r")));
        assert!(matches!(joined, Some(Ok(_))), "join the room");
        let _ = ctx.send(&Message::Text("joined".into()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        if let Some(hub) = ctx.hub() {
            hub.with(|hub| hub.broadcast("r", &message, None));
        }
    }
}

fn start() -> ServerHandle {
    let echo = Arc::new(
        Endpoint::new(|_: &Request, _: &str| -> Box<dyn WsHandler> { Box::new(Echo) }).config(
            Config {
                ping_interval_ms: 0,
                ..Config::SERVER
            },
        ),
    );
    let hub = SharedHub::new(ws::HubConfig {
        presence_notices: false,
        ..ws::HubConfig::default()
    });
    let room = Arc::new(
        Endpoint::new(|_: &Request, _: &str| -> Box<dyn WsHandler> { Box::new(Roomy) }).hub(hub),
    );
    let router = Router::new()
        .get("/plain", |_: &mut Request| Response::text(200, "plain"))
        .get("/echo", move |req: &mut Request| echo.respond(req))
        .get("/room", move |req: &mut Request| room.respond(req));
    ws_support::serve(router, 4)
}

fn client_frames(text: &str) -> Vec<u8> {
    let mut client = Connection::new(Config::CLIENT, 0);
    client.send_text(text).expect("open");
    client.take_output()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Reads a response with a Content-Length body; returns (head, body, bytes after it).
fn read_response(stream: &mut TcpStream, mut rest: Vec<u8>) -> (String, String, Vec<u8>) {
    if !rest.windows(4).any(|w| w == b"\r\n\r\n") {
        let (head, more) = read_head(stream);
        rest.extend_from_slice(head.as_bytes());
        rest.extend_from_slice(&more);
    }
    let end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&rest[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .map_or(0, |v| v.trim().parse().expect("a length"));
    let mut body = rest.split_off(end);
    let mut buf = [0u8; 4096];
    while body.len() < length {
        let n = stream.read(&mut buf).expect("read a body");
        assert!(n > 0, "closed inside a body");
        body.extend_from_slice(&buf[..n]);
    }
    let after = body.split_off(length);
    (head, String::from_utf8_lossy(&body).into_owned(), after)
}

#[test]
fn the_101_hands_over_the_socket_with_the_bytes_that_followed_the_request() {
    let server = start();
    let mut stream = connect(server.local_addr());
    let mut request = upgrade_request("/echo", "").into_bytes();
    request.extend_from_slice(&client_frames("early"));
    stream.write_all(&request).expect("send");
    let (head, rest) = read_head(&mut stream);
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(
        !lower.contains("content-length"),
        "a 101 has no body: {head}"
    );
    assert!(!lower.contains("connection: close"), "{head}");
    let mut client = WsClient::after_head(stream, head, &rest);
    assert_eq!(client.next_text(), "early");
    client.send_text("later");
    assert_eq!(client.next_text(), "later");
    client.close();
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn pipelined_requests_before_an_upgrade_are_answered_first() {
    let server = start();
    let mut stream = connect(server.local_addr());
    let mut bytes = b"GET /plain HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    bytes.extend_from_slice(upgrade_request("/echo", "").as_bytes());
    bytes.extend_from_slice(&client_frames("after the upgrade"));
    stream.write_all(&bytes).expect("send");
    let (head, body, rest) = read_response(&mut stream, Vec::new());
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, "plain");
    let (head, body, rest) = read_response(&mut stream, rest);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(body, "");
    let mut client = WsClient::after_head(stream, head, &rest);
    assert_eq!(client.next_text(), "after the upgrade");
    client.close();
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn a_refused_upgrade_leaves_the_connection_speaking_http() {
    let server = start();
    let mut stream = connect(server.local_addr());
    let refused = upgrade_request("/echo", "").replace("Version: 13", "Version: 8");
    let mut bytes = refused.into_bytes();
    bytes.extend_from_slice(b"GET /plain HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(&bytes).expect("send");
    let (head, _, rest) = read_response(&mut stream, Vec::new());
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
    let (head, body, _) = read_response(&mut stream, rest);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, "plain");
    // A plain GET on the WebSocket route is refused with 426, not upgraded.
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send");
    let (head, _, _) = read_response(&mut stream, Vec::new());
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn a_broadcast_wakes_the_other_connections() {
    let server = start();
    let addr = server.local_addr();
    let mut clients: Vec<WsClient> = (0..5).map(|_| WsClient::connect(addr, "/room")).collect();
    for client in &mut clients {
        assert_eq!(client.next_text(), "joined");
    }
    clients[2].send_text("to everyone");
    for client in &mut clients {
        assert_eq!(client.next_text(), "to everyone");
    }
    for client in clients {
        client.close();
    }
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn shutdown_closes_websockets_with_1001() {
    let server = start();
    let mut client = WsClient::connect(server.local_addr(), "/echo");
    client.send_text("x");
    assert_eq!(client.next_text(), "x");
    server.shutdown();
    match client.next_event() {
        Event::Close(Some(frame)) => assert_eq!(frame.code, 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Our answer was sent by next_event; the server then closes the socket.
    let mut rest = Vec::new();
    let _ = client.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    server.join().expect("join");
}

fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .map(|value| value.trim().parse().expect("a count"))
        .expect("a Threads line")
}

#[test]
#[cfg(target_os = "linux")]
fn websockets_cost_no_thread_each() {
    let server = start();
    let addr = server.local_addr();
    // Warm the worker pool (threads may start on demand, up to the configured 4).
    let warm: Vec<WsClient> = (0..8).map(|_| WsClient::connect(addr, "/echo")).collect();
    let before = thread_count();
    let mut clients: Vec<WsClient> = (0..300).map(|_| WsClient::connect(addr, "/echo")).collect();
    for (n, client) in clients.iter_mut().enumerate() {
        client.send_text(&format!("m{n}"));
    }
    for (n, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.next_text(), format!("m{n}"));
    }
    let after = thread_count();
    // Other tests of this binary run in parallel and start their own servers; 300 sockets
    // with a thread each would be far above this margin.
    assert!(
        after < before + 60,
        "threads went from {before} to {after} for 300 connections"
    );
    for client in clients.into_iter().chain(warm) {
        client.close();
    }
    server.shutdown();
    server.join().expect("join");
}
