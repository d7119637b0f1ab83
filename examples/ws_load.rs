//! WebSocket load client for `examples/ws_echo.rs` (loopback only; every run is bounded in
//! connections, rounds and seconds).
//!
//! ```text
//! ws_echo --port 9001 [--room] &
//! ws_load hold      --port 9001 --pid ECHO_PID [--count 10000] [--hold-secs 5]
//! ws_load broadcast --port 9001 [--count 10000] [--rounds 20]      (ws_echo --room)
//! ws_load echo      --port 9001 [--clients 64] [--seconds 10] [--size 64] [--window 16]
//! ```
//!
//! `--deflate 1` offers permessage-deflate (RFC 7692) in every handshake and uses what the
//! server agrees (the echo payload is one repeated byte, so it compresses very well).
//!
//! Output (one line each, fixed format):
//! - `hold: N connections open in S s; server RSS A KiB before, B KiB after (C bytes per connection)`
//! - `broadcast: N members x R rounds: p50 X ms, p99 Y ms, max Z ms`
//! - `echo: C clients, B-byte messages, window W: N echoes in S s (M msg/s, T MB/s each way)`
//!
//! Broadcast latency is measured from just before the sender's frame is written to when a
//! member's copy is decoded, by one epoll thread reading every member socket, so it includes
//! this client's own time to drain 10,000 sockets on the same machine.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use lithair::app::cli::{CliError, Flags};
use lithair::sys::{Event as Readiness, Interest, Poller};
use lithair::ws::{Config, Connection, DeflateParams, Event, Message};

const USAGE: &str = "usage: ws_load (hold|broadcast|echo) --port P [--pid PID] [--count N] \
[--hold-secs S] [--rounds R] [--clients C] [--seconds S] [--size B] [--window W] [--deflate 0|1]";
/// Most connections one run may open.
const CONNECTIONS_MAX: usize = 15_000;
/// Longest run of any phase, in seconds.
const SECONDS_MAX: u64 = 120;
/// Longest wait for one broadcast round to reach every member.
const ROUND_TIMEOUT_MS: u64 = 30_000;
/// Time allowed for the upgrade answer.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

struct Args {
    mode: String,
    port: u16,
    pid: u32,
    count: usize,
    hold_secs: u64,
    rounds: usize,
    clients: usize,
    seconds: u64,
    size: usize,
    window: usize,
    deflate: bool,
}

fn parse_args(words: &[String]) -> Result<Args, CliError> {
    let (mode, rest) = match words.split_first() {
        Some((mode, rest)) if ["hold", "broadcast", "echo"].contains(&mode.as_str()) => {
            (mode.clone(), rest)
        }
        Some((other, _)) => return Err(CliError::new(format!("unknown mode `{other}`"))),
        None => return Err(CliError::new("a mode is required")),
    };
    let valued = [
        "port",
        "pid",
        "count",
        "hold-secs",
        "rounds",
        "clients",
        "seconds",
        "size",
        "window",
        "deflate",
    ];
    let flags = Flags::parse(rest, &format!("ws_load {mode}"), &[], &valued)?;
    let deflate: u8 = flags.get_or("deflate", 0)?;
    let args = Args {
        mode,
        port: flags.require("port")?,
        pid: flags.get_or("pid", 0)?,
        count: flags
            .get_or("count", 10_000usize)?
            .clamp(1, CONNECTIONS_MAX),
        hold_secs: flags.get_or("hold-secs", 5u64)?.min(SECONDS_MAX),
        rounds: flags.get_or("rounds", 20)?,
        clients: flags.get_or("clients", 64usize)?.clamp(1, 1024),
        seconds: flags.get_or("seconds", 10u64)?.clamp(1, SECONDS_MAX),
        size: flags.get_or("size", 64)?,
        window: flags.get_or("window", 16usize)?.max(1),
        deflate: deflate != 0,
    };
    Ok(args)
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if Flags::asks_help(&words) {
        println!("{USAGE}");
        return;
    }
    let args = parse_args(&words).unwrap_or_else(|error| {
        eprintln!("ws_load: {}\n{USAGE}", error.message);
        std::process::exit(2);
    });
    let _ = lithair::sys::rlimit::raise_fd_limit();
    let result = match args.mode.as_str() {
        "hold" => hold(&args),
        "broadcast" => broadcast(&args),
        _ => echo(&args),
    };
    if let Err(message) = result {
        eprintln!("ws_load: {message}");
        std::process::exit(1);
    }
}

/// One client socket and its protocol state.
struct Client {
    stream: TcpStream,
    conn: Connection,
}

impl Client {
    /// Connects and upgrades (blocking); the socket is left blocking.
    fn connect(port: u16, seed: u64, deflate: bool) -> Result<Client, String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let timeout = Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS));
        stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send upgrade: {e}"))?;
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        // Byte by byte: nothing after the head may be swallowed (the server sends nothing
        // before we speak, but this keeps the client honest).
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return Err("closed during the handshake".into()),
                Err(e) => return Err(format!("handshake: {e}")),
            }
            if head.len() > 4096 {
                return Err("handshake answer too long".into());
            }
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(format!("not upgraded: {}", String::from_utf8_lossy(&head)));
        }
        let head = String::from_utf8_lossy(&head);
        let answer = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim())
        });
        let agreed = match answer {
            None => None,
            Some(value) => Some(
                DeflateParams::from_response(value)
                    .ok_or_else(|| format!("unacceptable extension answer {value:?}"))?,
            ),
        };
        let config = Config {
            mask_seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            message_bytes_max: 1 << 20,
            deflate: agreed,
            ..Config::CLIENT
        };
        Ok(Client {
            stream,
            conn: Connection::new(config, 0),
        })
    }

    fn send(&mut self, message: &Message) -> Result<(), String> {
        self.conn.send(message).map_err(|e| format!("{e:?}"))?;
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        let out = self.conn.take_output();
        self.stream
            .write_all(&out)
            .map_err(|e| format!("write: {e}"))
    }
}

fn connect_all(port: u16, count: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(count);
    for n in 0..count {
        let client = Client::connect(port, n as u64 + 1, false)
            .map_err(|e| format!("connection {n} of {count}: {e}"))?;
        clients.push(client);
    }
    Ok(clients)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn hold(args: &Args) -> Result<(), String> {
    if args.pid == 0 {
        return Err(format!("hold needs --pid of the server\n{USAGE}"));
    }
    let before = rss_kib(args.pid);
    let started = Instant::now();
    let mut clients = connect_all(args.port, args.count)?;
    let opened_s = started.elapsed().as_secs_f64();
    // Every connection proves it is live: one echo each.
    for client in &mut clients {
        client.send(&Message::Text("ping".into()))?;
    }
    for client in &mut clients {
        read_message(client)?;
    }
    std::thread::sleep(Duration::from_secs(args.hold_secs));
    let after = rss_kib(args.pid);
    let per_connection = (after.saturating_sub(before) * 1024) / args.count as u64;
    println!(
        "hold: {} connections open in {opened_s:.2} s; server RSS {before} KiB before, \
         {after} KiB after ({per_connection} bytes per connection)",
        args.count
    );
    Ok(())
}

/// Blocking read of the next message of one client.
fn read_message(client: &mut Client) -> Result<Message, String> {
    let mut buf = [0u8; 4096];
    loop {
        match client.conn.poll_event() {
            Some(Event::Message(message)) => return Ok(message),
            Some(Event::Ping(_)) | Some(Event::Pong(_)) => continue,
            Some(other) => return Err(format!("unexpected {other:?}")),
            None => {}
        }
        match client.stream.read(&mut buf) {
            Ok(0) => return Err("server closed".into()),
            Ok(n) => client.conn.receive(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn broadcast(args: &Args) -> Result<(), String> {
    let mut clients = connect_all(args.port, args.count)?;
    let mut poller = Poller::new().map_err(|e| e.to_string())?;
    for (token, client) in clients.iter().enumerate() {
        client
            .stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let fd = client.stream.as_raw_fd();
        poller
            .add(fd, token as u64, Interest::READ)
            .map_err(|e| e.to_string())?;
    }
    let mut latencies_us: Vec<u64> = Vec::with_capacity(args.count * args.rounds);
    for round in 0..args.rounds {
        let text = format!("broadcast:{round}");
        let sent = Instant::now();
        clients[0]
            .conn
            .send_text(&text)
            .map_err(|e| format!("{e:?}"))?;
        let out = clients[0].conn.take_output();
        write_nonblocking(&mut clients[0].stream, &out)?;
        collect_round(&mut clients, &mut poller, &text, sent, &mut latencies_us)?;
    }
    latencies_us.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
        latencies_us[index] as f64 / 1000.0
    };
    println!(
        "broadcast: {} members x {} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.count,
        args.rounds,
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// Reads until every member has decoded `text`; records each delivery time.
fn collect_round(
    clients: &mut [Client],
    poller: &mut Poller,
    text: &str,
    sent: Instant,
    latencies_us: &mut Vec<u64>,
) -> Result<(), String> {
    let mut missing = clients.len();
    let mut got = vec![false; clients.len()];
    let mut events: Vec<Readiness> = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while missing > 0 {
        if sent.elapsed() > Duration::from_millis(ROUND_TIMEOUT_MS) {
            return Err(format!("{missing} members never got {text:?}"));
        }
        events.clear();
        poller.wait(&mut events, 1000).map_err(|e| e.to_string())?;
        for event in &events {
            let index = event.token as usize;
            let client = &mut clients[index];
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => return Err(format!("member {index} closed")),
                    Ok(n) => client.conn.receive(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("member {index}: {e}")),
                }
            }
            while let Some(event) = client.conn.poll_event() {
                match event {
                    Event::Message(Message::Text(t)) if t == text && !got[index] => {
                        got[index] = true;
                        missing -= 1;
                        latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    Event::Message(_) | Event::Ping(_) | Event::Pong(_) => {}
                    other => return Err(format!("member {index}: unexpected {other:?}")),
                }
            }
        }
    }
    Ok(())
}

fn write_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

fn echo(args: &Args) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let payload = Message::Binary(vec![0x5a; args.size]);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients)
        .map(|n| {
            let (port, window, payload) = (args.port, args.window, payload.clone());
            let deflate = args.deflate;
            std::thread::spawn(move || -> Result<u64, String> {
                let mut client = Client::connect(port, n as u64 + 1, deflate)?;
                for _ in 0..window {
                    client.send(&payload)?;
                }
                let mut echoes = 0u64;
                while Instant::now() < deadline {
                    read_message(&mut client)?;
                    echoes += 1;
                    client.send(&payload)?;
                }
                Ok(echoes)
            })
        })
        .collect();
    let mut total = 0u64;
    for worker in workers {
        total += worker
            .join()
            .map_err(|_| "an echo client panicked".to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = total as f64 / seconds;
    println!(
        "echo: {} clients, {}-byte messages, window {}: {total} echoes in {seconds:.2} s \
         ({rate:.0} msg/s, {:.1} MB/s each way)",
        args.clients,
        args.size,
        args.window,
        rate * args.size as f64 / 1e6
    );
    Ok(())
}
