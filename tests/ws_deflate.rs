//! permessage-deflate (RFC 7692) over real sockets against `ws::Endpoint` in the HTTP reactor:
//! negotiation answers, compressed echoes with context takeover, parameters honoured, the
//! extension disabled on an endpoint, and a zip bomb closed with 1009.

mod ws_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use lithair::http::{Request, Router, ServerHandle};
use lithair::ws::frame::{self, Opcode, ParseConfig, Status, RSV1};
use lithair::ws::{
    Config, Connection, Ctx, DeflateConfig, DeflateParams, Endpoint, Event, Message, WsHandler,
};
use ws_support::{read_head, upgrade_request};

/// Limit of the `/small` endpoint's messages, inflated.
const SMALL_MESSAGE_BYTES_MAX: usize = 64 * 1024;

struct Echo;

impl WsHandler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        let _ = ctx.send(&message);
    }
}

fn endpoint(config: Config, deflate: DeflateConfig) -> Arc<Endpoint> {
    let config = Config {
        ping_interval_ms: 0,
        ..config
    };
    Arc::new(
        Endpoint::new(|_: &Request, _: &str| -> Box<dyn WsHandler> { Box::new(Echo) })
            .config(config)
            .deflate(deflate),
    )
}

fn start() -> ServerHandle {
    let echo = endpoint(Config::SERVER, DeflateConfig::default());
    let plain = endpoint(Config::SERVER, DeflateConfig::DISABLED);
    let small_config = Config {
        message_bytes_max: SMALL_MESSAGE_BYTES_MAX,
        ..Config::SERVER
    };
    let small = endpoint(small_config, DeflateConfig::ENABLED);
    let router = Router::new()
        .get("/echo", move |req: &mut Request| echo.respond(req))
        .get("/plain", move |req: &mut Request| plain.respond(req))
        .get("/small", move |req: &mut Request| small.respond(req));
    ws_support::serve(router, 2)
}

/// A client that records every frame header's first byte it receives.
struct Client {
    stream: TcpStream,
    conn: Connection,
    head: String,
    /// Bytes received and not yet split into frames (to look at RSV1 on the wire).
    wire: Vec<u8>,
    /// First header byte of each data frame received.
    first_bytes: Vec<u8>,
}

impl Client {
    /// Upgrades with `offer` as `Sec-WebSocket-Extensions` (none if empty); the connection
    /// uses whatever the answer agreed.
    fn connect(addr: SocketAddr, target: &str, offer: &str) -> Client {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let extra = if offer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Extensions: {offer}\r\n")
        };
        stream
            .write_all(upgrade_request(target, &extra).as_bytes())
            .expect("send the upgrade");
        let (head, rest) = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        let agreed = extension_answer(&head).map(|value| {
            DeflateParams::from_response(&value).expect("an answer the client accepts")
        });
        let config = Config {
            deflate: agreed,
            ..Config::CLIENT
        };
        let mut client = Client {
            stream,
            conn: Connection::new(config, 0),
            head,
            wire: Vec::new(),
            first_bytes: Vec::new(),
        };
        client.feed(&rest);
        client
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.wire.extend_from_slice(bytes);
        let config = ParseConfig {
            rsv_allowed: RSV1,
            frame_bytes_max: u64::MAX >> 1,
            ..ParseConfig::CLIENT
        };
        while let Ok(Status::Complete(frame)) = frame::parse_frame(&self.wire, &config) {
            if !frame.header.opcode.is_control() {
                self.first_bytes.push(self.wire[0]);
            }
            let used = frame.wire_len();
            self.wire.drain(..used);
        }
        self.conn.receive(bytes);
    }

    fn send(&mut self, message: &Message) {
        self.conn.send(message).expect("open");
        let out = self.conn.take_output();
        self.stream.write_all(&out).expect("send");
    }

    fn next_event(&mut self) -> Event {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(event) = self.conn.poll_event() {
                let out = self.conn.take_output();
                self.stream.write_all(&out).expect("answer");
                return event;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.conn.receive_eof(),
                Ok(n) => self.feed(&buf[..n]),
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    fn echo(&mut self, message: Message) {
        self.send(&message);
        assert_eq!(self.next_event(), Event::Message(message));
    }
}

fn extension_answer(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_string())
    })
}

fn json_like(seed: u32) -> String {
    (0..40)
        .map(|i| {
            format!(
                "{{\"id\":{},\"name\":\"user{}\",\"online\":true}},",
                seed + i,
                i % 7
            )
        })
        .collect()
}

#[test]
fn compressed_echo_with_context_takeover() {
    let server = start();
    let mut client = Client::connect(
        server.local_addr(),
        "/echo",
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(
        extension_answer(&client.head).as_deref(),
        Some("permessage-deflate")
    );
    for round in 0..5 {
        client.echo(Message::Text(json_like(round)));
        client.echo(Message::Binary(json_like(round + 100).into_bytes()));
        client.echo(Message::Text("short".into()));
    }
    // Large messages came back compressed (RSV1), the short ones plain.
    let expected: Vec<u8> = (0..5).flat_map(|_| [0xC1, 0xC2, 0x81]).collect();
    assert_eq!(client.first_bytes, expected);
    client.send(&Message::Text(String::new()));
    assert_eq!(
        client.next_event(),
        Event::Message(Message::Text(String::new()))
    );
    server.shutdown();
}

#[test]
fn parameters_are_honoured_and_invalid_offers_skipped() {
    let server = start();
    let offers = "permessage-deflate; server_max_window_bits=16, \
                  permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
                  client_no_context_takeover";
    let mut client = Client::connect(server.local_addr(), "/echo", offers);
    assert_eq!(
        extension_answer(&client.head).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9"
        )
    );
    let long = json_like(7).repeat(20);
    for _ in 0..3 {
        client.echo(Message::Text(long.clone()));
    }
    assert_eq!(client.first_bytes, [0xC1; 3]);
    server.shutdown();
}

#[test]
fn disabled_endpoint_and_no_offer_stay_uncompressed() {
    let server = start();
    for (target, offer) in [("/plain", "permessage-deflate"), ("/echo", "")] {
        let mut client = Client::connect(server.local_addr(), target, offer);
        assert_eq!(extension_answer(&client.head), None, "{target}");
        client.echo(Message::Text(json_like(1)));
        assert_eq!(client.first_bytes, [0x81], "{target}");
        // A compressed frame where nothing was agreed is a protocol error.
        let mut frame = Vec::new();
        let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        frame::write_frame_rsv(
            &mut frame,
            true,
            RSV1,
            Opcode::Text,
            &payload,
            Some([1, 2, 3, 4]),
        );
        client.stream.write_all(&frame).expect("send");
        assert!(
            matches!(client.next_event(), Event::Close(Some(close)) if close.code == 1002),
            "{target}"
        );
    }
    server.shutdown();
}

#[test]
fn zip_bomb_is_closed_with_1009() {
    let server = start();
    let mut client = Client::connect(server.local_addr(), "/small", "permessage-deflate");
    client.echo(Message::Text(json_like(3)));
    // 32 MiB of zeros compress to a few KiB: far below the limit on the wire, far above it
    // inflated. The server must stop at 64 KiB of output and close.
    let packed = lithair::crypto::deflate::compress_raw_sync(&vec![0u8; 32 << 20]);
    let payload = &packed[..packed.len() - 4];
    assert!(payload.len() < SMALL_MESSAGE_BYTES_MAX);
    let mut frame = Vec::new();
    frame::write_frame_rsv(
        &mut frame,
        true,
        RSV1,
        Opcode::Binary,
        payload,
        Some([9, 8, 7, 6]),
    );
    client.stream.write_all(&frame).expect("send");
    assert!(matches!(
        client.next_event(),
        Event::Close(Some(close)) if close.code == 1009
    ));
    server.shutdown();
}
