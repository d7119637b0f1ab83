//! WebSocket over real loopback sockets: the handshake with raw bytes, echo, fragmentation,
//! ping/pong, the close handshake, protocol failures, and rooms through a shared hub.
//!
//! The server side is a small blocking driver of `lithair::ws::Session` (one thread per test
//! connection) until the HTTP reactor's upgrade hook lands; the client side is
//! `lithair::ws::Connection` in the client role, or raw bytes where the test needs exact frames.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lithair::ws::frame::{self, Opcode};
use lithair::ws::{
    handshake, CloseFrame, Config, ConnId, Connection, Ctx, Event, HubConfig, Message, Session,
    SharedHub, State, WsHandler,
};

/// Read timeout of the test server: how often it looks at its hub wake flag.
const SERVER_POLL_MS: u64 = 20;
/// Bound on any blocking read in the tests, so a bug fails the test instead of hanging it.
const CLIENT_READ_TIMEOUT_MS: u64 = 10_000;
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Echo, or (with a room) join it on open and broadcast every message to it.
struct TestHandler {
    room: Option<String>,
}

impl WsHandler for TestHandler {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if let (Some(room), Some(hub)) = (&self.room, ctx.hub()) {
            let id = ctx.id();
            hub.with(|hub| hub.join(id, room)).expect("join");
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        match (&self.room, ctx.hub()) {
            (Some(room), Some(hub)) => {
                let id = ctx.id();
                hub.with(|hub| hub.broadcast_from(id, room, &message, false))
                    .expect("member");
            }
            _ => {
                let _ = ctx.send(&message);
            }
        }
    }
}

/// Accepts `connections` connections, each served on its own thread. With a hub, every
/// connection joins `lobby` under the user name `user{n}`.
fn spawn_server(
    connections: u64,
    hub: Option<Arc<SharedHub>>,
) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let handle = std::thread::spawn(move || {
        let mut threads = Vec::new();
        for id in 1..=connections {
            let (stream, _) = listener.accept().expect("accept");
            let hub = hub.clone();
            threads.push(std::thread::spawn(move || serve(stream, ConnId(id), hub)));
        }
        for thread in threads {
            thread.join().expect("server thread");
        }
    });
    (port, handle)
}

fn serve(mut stream: TcpStream, id: ConnId, hub: Option<Arc<SharedHub>>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let head_len = loop {
        if let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let count = stream.read(&mut buffer[filled..]).expect("read head");
        if count == 0 {
            return;
        }
        filled += count;
    };
    let head = std::str::from_utf8(&buffer[..head_len])
        .expect("ASCII head")
        .to_string();
    let mut lines = head.split("\r\n");
    let request_line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.trim()))
        .collect();
    let upgrade = match handshake::validate(
        request_line[0],
        request_line.get(2) == Some(&"HTTP/1.1"),
        headers,
    ) {
        Ok(upgrade) => upgrade,
        Err(error) => {
            let mut response = format!(
                "HTTP/1.1 {} Refused\r\nContent-Length: 0\r\n",
                error.status()
            );
            for (name, value) in error.headers() {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            stream
                .write_all(response.as_bytes())
                .expect("write refusal");
            return;
        }
    };
    let protocol = upgrade.protocols.first().cloned();
    let mut response = Vec::new();
    upgrade.write_response(protocol.as_deref(), &mut response);
    stream.write_all(&response).expect("write 101");
    run_session(stream, id, hub, &buffer[head_len..filled]);
}

/// The blocking driver loop: write output, read with a short timeout, pull hub frames when woken.
fn run_session(mut stream: TcpStream, id: ConnId, hub: Option<Arc<SharedHub>>, early: &[u8]) {
    let room = hub.as_ref().map(|_| "lobby".to_string());
    let mut session = Session::new(id, Config::SERVER, Box::new(TestHandler { room }), 0);
    let woken = Arc::new(AtomicBool::new(false));
    if let Some(hub) = hub {
        let flag = Arc::clone(&woken);
        let waker = Arc::new(move || flag.store(true, Ordering::SeqCst));
        session
            .join_hub(hub, &format!("user{}", id.0), waker)
            .expect("fresh id");
    }
    session.start();
    session.on_input(early);
    stream
        .set_read_timeout(Some(Duration::from_millis(SERVER_POLL_MS)))
        .expect("timeout");
    let mut buffer = vec![0u8; 64 * 1024];
    let mut now_ms = 0;
    loop {
        if woken.swap(false, Ordering::SeqCst) {
            session.on_wake();
        }
        let pending = session.output().len();
        if pending > 0 {
            stream.write_all(session.output()).expect("write");
            session.consume_output(pending);
            session.on_writable();
        }
        if session.is_finished() {
            linger(&mut stream, &mut buffer);
            return;
        }
        match stream.read(&mut buffer) {
            Ok(0) => session.on_eof(),
            Ok(count) => session.on_input(&buffer[..count]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                now_ms += SERVER_POLL_MS;
                session.on_tick(now_ms);
            }
            Err(_) => session.on_eof(),
        }
    }
}

/// Half-closes, then drains input until the client closes: closing with unread input would
/// send a reset that can destroy the close frame before the client reads it.
fn linger(stream: &mut TcpStream, buffer: &mut [u8]) {
    let _ = stream.shutdown(Shutdown::Write);
    let polls_max = CLIENT_READ_TIMEOUT_MS / SERVER_POLL_MS;
    for _ in 0..polls_max {
        match stream.read(buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects and completes the handshake; returns the stream and the response head.
fn connect(port: u16, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))
        .expect("timeout");
    stream
        .write_all(upgrade_request(extra).as_bytes())
        .expect("send request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so no frame byte after the head is consumed here.
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read response"),
            1,
            "connection closed during handshake"
        );
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).expect("ASCII head"))
}

/// Reads until the client connection produces an event (or the server closes the socket).
fn next_event(stream: &mut TcpStream, client: &mut Connection) -> Event {
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(event) = client.poll_event() {
            flush(stream, client);
            return event;
        }
        let count = stream.read(&mut buffer).expect("read");
        if count == 0 {
            client.receive_eof();
        } else {
            client.receive(&buffer[..count]);
        }
    }
}

fn flush(stream: &mut TcpStream, client: &mut Connection) {
    let output = client.take_output();
    if !output.is_empty() {
        stream.write_all(&output).expect("write");
    }
}

fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to EOF");
    rest
}

fn text(value: &str) -> Event {
    Event::Message(Message::Text(value.to_string()))
}

#[test]
fn handshake_answer_has_the_rfc_accept_key_and_a_chosen_subprotocol() {
    let (port, server) = spawn_server(1, None);
    let (stream, head) = connect(port, "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n");
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Protocol: chat\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("extensions"),
        "permessage-deflate is declined: {head}"
    );
    stream.shutdown(Shutdown::Both).expect("shutdown");
    server.join().expect("server");
}

#[test]
fn wrong_version_gets_426_with_the_supported_version() {
    let (port, server) = spawn_server(1, None);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(CLIENT_READ_TIMEOUT_MS)))
        .expect("timeout");
    let request = upgrade_request("").replace("Version: 13", "Version: 8");
    stream.write_all(request.as_bytes()).expect("send");
    let response = String::from_utf8(read_to_eof(&mut stream)).expect("ASCII");
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Version: 13\r\n"),
        "{response}"
    );
    server.join().expect("server");
}

#[test]
fn echo_fragments_pings_and_a_clean_close() {
    let (port, server) = spawn_server(1, None);
    let (mut stream, _) = connect(port, "");
    let mut client = Connection::new(Config::CLIENT, 0);

    client.send_text("héllo").expect("open");
    client.send_binary(&vec![0xAB; 100_000]).expect("open");
    flush(&mut stream, &mut client);
    assert_eq!(next_event(&mut stream, &mut client), text("héllo"));
    assert_eq!(
        next_event(&mut stream, &mut client),
        Event::Message(Message::Binary(vec![0xAB; 100_000]))
    );

    // A text message in three fragments with a ping between them, as raw masked frames.
    let key = Some([1, 2, 3, 4]);
    let mut wire = Vec::new();
    frame::write_frame(&mut wire, false, Opcode::Text, "frag".as_bytes(), key);
    frame::write_frame(&mut wire, true, Opcode::Ping, b"ping!", key);
    frame::write_frame(
        &mut wire,
        false,
        Opcode::Continuation,
        "men".as_bytes(),
        key,
    );
    frame::write_frame(
        &mut wire,
        true,
        Opcode::Continuation,
        "ted ✓".as_bytes(),
        key,
    );
    stream.write_all(&wire).expect("write");
    assert_eq!(
        next_event(&mut stream, &mut client),
        Event::Pong(b"ping!".to_vec())
    );
    assert_eq!(next_event(&mut stream, &mut client), text("fragmented ✓"));

    client.close(1000, "done");
    flush(&mut stream, &mut client);
    assert_eq!(
        next_event(&mut stream, &mut client),
        Event::Close(Some(CloseFrame {
            code: 1000,
            reason: String::new()
        }))
    );
    assert_eq!(client.state(), State::Closed);
    assert_eq!(
        read_to_eof(&mut stream),
        b"",
        "the server closes the TCP connection after the handshake"
    );
    drop(stream);
    server.join().expect("server");
}

#[test]
fn protocol_errors_close_with_their_code_then_the_socket() {
    let unmasked = {
        let mut wire = Vec::new();
        frame::write_frame(&mut wire, true, Opcode::Text, b"no mask", None);
        wire
    };
    let mut invalid_utf8 = Vec::new();
    frame::write_frame(
        &mut invalid_utf8,
        true,
        Opcode::Text,
        b"bad \xC0\xAF",
        Some([9, 9, 9, 9]),
    );
    let mut bad_close = Vec::new();
    frame::write_frame(
        &mut bad_close,
        true,
        Opcode::Close,
        &1005u16.to_be_bytes(),
        Some([5, 6, 7, 8]),
    );
    let cases = [
        (unmasked, 1002u16),
        (invalid_utf8, 1007),
        (bad_close, 1002),
        (vec![0x83, 0x80, 0, 0, 0, 0], 1002),
    ];
    let (port, server) = spawn_server(cases.len() as u64, None);
    for (wire, code) in cases {
        let (mut stream, _) = connect(port, "");
        stream.write_all(&wire).expect("write");
        let rest = read_to_eof(&mut stream);
        assert_eq!(rest[0], 0x88, "a close frame first: {rest:x?}");
        assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), code, "{rest:x?}");
        assert_eq!(
            rest.len(),
            2 + usize::from(rest[1]),
            "nothing after the close frame"
        );
    }
    server.join().expect("server");
}

#[test]
fn rooms_broadcast_and_presence_over_sockets() {
    let hub = SharedHub::new(HubConfig::default());
    let (port, server) = spawn_server(3, Some(Arc::clone(&hub)));
    let mut clients: Vec<(TcpStream, Connection)> = Vec::new();
    for _ in 0..3 {
        let (stream, _) = connect(port, "");
        clients.push((stream, Connection::new(Config::CLIENT, 0)));
        // Wait until this member is in the room, so the presence notices are deterministic.
        let mut waits = 0;
        while hub.with(|hub| hub.members_of("lobby").len()) < clients.len() {
            waits += 1;
            assert!(waits < 2_000, "member never joined");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // user1 saw user2 and user3 join; user2 saw user3.
    let (stream, client) = &mut clients[0];
    for user in [2, 3] {
        let Event::Message(Message::Text(notice)) = next_event(stream, client) else {
            panic!("expected a notice")
        };
        assert!(
            notice.contains("\"event\":\"join\"")
                && notice.contains(&format!("\"user\":\"user{user}\"")),
            "{notice}"
        );
    }
    let (stream, client) = &mut clients[1];
    let Event::Message(Message::Text(notice)) = next_event(stream, client) else {
        panic!("expected a notice")
    };
    assert!(notice.contains("\"user\":\"user3\""), "{notice}");

    let (stream, client) = &mut clients[2];
    client.send_text("hello, room").expect("open");
    flush(stream, client);
    for index in [0, 1] {
        let (stream, client) = &mut clients[index];
        assert_eq!(next_event(stream, client), text("hello, room"));
    }
    // user3 leaves by closing: the others are told.
    let (stream, client) = &mut clients[2];
    client.close(1000, "");
    flush(stream, client);
    assert!(matches!(next_event(stream, client), Event::Close(_)));
    for index in [0, 1] {
        let (stream, client) = &mut clients[index];
        let Event::Message(Message::Text(notice)) = next_event(stream, client) else {
            panic!("expected a notice")
        };
        assert!(
            notice.contains("\"event\":\"leave\"") && notice.contains("\"user\":\"user3\""),
            "{notice}"
        );
    }
    for (stream, client) in clients.iter_mut().take(2) {
        client.close(1000, "");
        flush(stream, client);
        assert!(matches!(next_event(stream, client), Event::Close(_)));
    }
    drop(clients);
    server.join().expect("server");
    assert_eq!(hub.with(|hub| hub.members_of("lobby").len()), 0);
}
