//! WebSocket echo server for conformance runs (Autobahn|Testsuite's fuzzingclient).
//!
//! `cargo run --release --example ws_echo -- --port 9001 [--bind 127.0.0.1]`
//!
//! Echoes every text and binary message back unchanged, answers pings, and completes the close
//! handshake. All protocol work is done by `lithair::ws::Session` (a `Connection` driving the
//! echo handler); this file only moves bytes.
//!
//! INTERIM: one blocking thread per connection, with a minimal HTTP head reader of its own, until
//! the HTTP reactor's upgrade hook lands; then connections move into the reactor (no thread per
//! socket) and this example becomes a route on `lithair::http::Server`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use lithair::ws::{self, handshake, Config, ConnId, Ctx, Message, Session, WsHandler};

/// Largest request head accepted before the upgrade.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Most header lines accepted in the request head.
const HEADER_COUNT_MAX: usize = 100;
/// Size of the socket read buffer.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// How often the connection's timers run (the read timeout of the blocking socket).
const TICK_MS: u64 = 1000;
/// How long to keep reading after our last frame so the peer's close is not lost to a TCP reset.
const LINGER_MS: u64 = 2000;
/// Time allowed for the request head to arrive.
const HEAD_TIMEOUT_MS: u64 = 10_000;

fn main() {
    let mut port: u16 = 9001;
    let mut bind = String::from("127.0.0.1");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => {
                port = value
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad port {value:?}")))
            }
            ("--bind", Some(value)) => bind = value,
            _ => usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let listener = TcpListener::bind((bind.as_str(), port)).unwrap_or_else(|error| {
        eprintln!("ws_echo: cannot listen on {bind}:{port}: {error}");
        std::process::exit(1);
    });
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("ws_echo: listening on ws://{address}/");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(error) = serve(stream) {
                eprintln!("ws_echo: connection ended: {error}");
            }
        });
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("ws_echo: {problem}\nusage: ws_echo [--port P] [--bind ADDR]");
    std::process::exit(2);
}

/// Upgrades one connection and echoes until it closes.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(HEAD_TIMEOUT_MS)))?;
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let Some((head_len, filled)) = read_head(&mut stream, &mut buffer)? else {
        return Ok(());
    };
    let upgrade = match parse_and_validate(&buffer[..head_len]) {
        Ok(upgrade) => upgrade,
        Err((status, extra_headers)) => return refuse(&mut stream, status, &extra_headers),
    };
    let mut response = Vec::new();
    upgrade.write_response(None, &mut response);
    stream.write_all(&response)?;

    let started = Instant::now();
    let config = Config {
        ping_interval_ms: 0,
        ..Config::SERVER
    };
    let mut session = Session::new(ConnId(0), config, Box::new(Echo), 0);
    session.start();
    // Frames may follow the head in the same read.
    session.on_input(&buffer[head_len..filled]);
    stream.set_read_timeout(Some(Duration::from_millis(TICK_MS)))?;
    loop {
        let pending = session.output().len();
        if pending > 0 {
            stream.write_all(session.output())?;
            session.consume_output(pending);
        }
        if session.is_finished() {
            return linger_close(stream, &mut buffer);
        }
        match stream.read(&mut buffer) {
            Ok(0) => session.on_eof(),
            Ok(count) => session.on_input(&buffer[..count]),
            Err(error) if is_timeout(&error) => {}
            Err(error) => return Err(error),
        }
        session.on_tick(started.elapsed().as_millis() as u64);
    }
}

/// Sends every message straight back.
struct Echo;

impl WsHandler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        // Only fails once the connection is closing, when the echo is moot.
        let _ = ctx.send(&message);
    }
}

/// Reads until the end of the request head; returns (head length, bytes in the buffer).
fn read_head(stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<Option<(usize, usize)>> {
    let mut filled = 0;
    loop {
        if let Some(end) = buffer[..filled]
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
        {
            return Ok(Some((end + 4, filled)));
        }
        if filled >= HEAD_BYTES_MAX {
            refuse(stream, 431, &[])?;
            return Ok(None);
        }
        let count = stream.read(&mut buffer[filled..HEAD_BYTES_MAX])?;
        if count == 0 {
            return Ok(None);
        }
        filled += count;
    }
}

type Refusal = (u16, Vec<(&'static str, &'static str)>);

/// The minimal HTTP/1.1 head parsing this interim example needs, then the real handshake rules.
fn parse_and_validate(head: &[u8]) -> Result<ws::Upgrade, Refusal> {
    let bad_request = || (400, Vec::new());
    let text = std::str::from_utf8(head).map_err(|_| bad_request())?;
    let mut lines = text.split("\r\n").filter(|line| !line.is_empty());
    let request_line = lines.next().ok_or_else(bad_request)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request());
    };
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(bad_request)?;
        if headers.len() == HEADER_COUNT_MAX || name.is_empty() || name.ends_with(' ') {
            return Err(bad_request());
        }
        headers.push((name, value.trim()));
    }
    handshake::validate(method, version == "HTTP/1.1", headers)
        .map_err(|error| (error.status(), error.headers()))
}

/// Answers a request that cannot be upgraded, then closes.
fn refuse(stream: &mut TcpStream, status: u16, extra_headers: &[(&str, &str)]) -> io::Result<()> {
    let mut response =
        format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    stream.shutdown(Shutdown::Write)
}

/// Closes our side, then reads and discards until the peer closes or the linger time passes:
/// closing a socket with unread input makes TCP send a reset, which can destroy our close frame.
fn linger_close(mut stream: TcpStream, buffer: &mut [u8]) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_millis(LINGER_MS)))?;
    let deadline = Instant::now() + Duration::from_millis(LINGER_MS);
    while Instant::now() < deadline {
        match stream.read(buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if is_timeout(&error) => break,
            Err(_) => break,
        }
    }
    Ok(())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
