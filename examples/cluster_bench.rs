//! A clustered Lithair app and the load client that measures it.
//!
//!   cluster_bench serve --node-id 1 --port 8081 --peer-port 9081 --data d1 \
//!       --cluster 1@127.0.0.1:9081,2@127.0.0.1:9082,3@127.0.0.1:9083 --cluster-secret s
//!   cluster_bench load --targets 127.0.0.1:8081,127.0.0.1:8082 --clients 256 --seconds 10
//!
//! `serve` is `App::run` with one model, `Item { id, name }` at `/api/items`. `load` runs
//! `--clients` closed-loop clients, each with a keep-alive connection, posting items: one
//! request in flight per client, the next sent once the previous one is acknowledged. The
//! clients share `--threads` event-loop threads (default 2) instead of a thread each, so the
//! client's own cost (a context switch per request per thread) does not eat the cores the
//! cluster needs. A client that gets a 503 or loses its connection moves to the next target
//! and retries with the same `Idempotency-Key`. It prints one line: committed writes/s, p50/p99 latency, and the longest
//! time with no acknowledged write (the failover time when a leader is killed meanwhile).
//! `--mode read` measures linearizable reads of item 1 instead (write it first; start the
//! nodes with `--read-mode lease` to measure lease reads), `--mode stale` local reads, the
//! ceiling of the read modes. `benches/cluster-reads.sh` runs them all on three nodes.
//! `--mode etcd` drives an etcd cluster with the same client: each write is a JSON
//! `POST /v3/kv/put` (etcd's v3 HTTP gateway, base64 key and value) with a unique key, so
//! `benches/cluster-compare.sh` measures both systems the same way.
//! `--mode items` writes like `write`, to `examples/bench_server`'s `POST /items` (its item
//! has more fields), so a cluster of bench servers with a large `--items` preload can be
//! loaded (`benches/join-under-load.sh`).
//! `--kill-mark PATH`: failover measurement (`benches/failover.sh`). Someone writes the wall
//! clock time of a leader kill, in nanoseconds since the Unix epoch, into PATH during the run;
//! at the end the line also gives the failover time: from that instant to the first
//! acknowledgement of a request attempt sent at or after it (so committed under a new
//! leader, the killed one being gone).

use lithair::app::cli::{CliError, Flags};
use lithair::app::App;
use lithair::prelude::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The item the load client writes at `/api/items`.
#[derive(Model, Clone, Debug, PartialEq)]
#[model(path = "/api/items")]
struct Item {
    /// Assigned by the sequencer on `POST /api/items`.
    #[db(primary_key)]
    id: u64,
    /// Name.
    name: String,
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("load") {
        if Flags::asks_help(&args[1..]) {
            println!("{LOAD_USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        // A wrong command line exits 2, a run that failed 1, as the app's own commands do.
        let options = match parse_load(&args[1..]) {
            Ok(options) => options,
            Err(error) => {
                eprintln!("cluster_bench load: {}\n{LOAD_USAGE}", error.message);
                return std::process::ExitCode::from(2);
            }
        };
        return match load(options) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cluster_bench load: {message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    App::new("cluster-bench").model::<Item>().run()
}

/// Event-loop threads of the load client unless `--threads` says otherwise: enough to keep
/// up with the cluster on a small machine without a thread per client.
const LOAD_THREADS_DEFAULT: usize = 2;

struct LoadOptions {
    targets: Vec<String>,
    clients: usize,
    seconds: u64,
    /// `write` (POST), `items` (POST to bench_server's `/items`), `read` (linearizable GET),
    /// `stale` (local GET) or `etcd` (etcd put).
    mode: String,
    /// Prefix of this run's idempotency keys.
    run_id: String,
    /// File holding the kill instant (ns since the Unix epoch), read at the end of the run.
    kill_mark: Option<String>,
    /// Event-loop threads the clients are spread over.
    threads: usize,
}

const LOAD_USAGE: &str = "usage: cluster_bench load --targets H:P[,H:P...] [--clients N] \
[--seconds S] [--mode write|items|read|stale|etcd] [--threads T] [--kill-mark FILE]";

fn parse_load(args: &[String]) -> Result<LoadOptions, CliError> {
    let valued = [
        "targets",
        "clients",
        "seconds",
        "mode",
        "kill-mark",
        "threads",
    ];
    let flags = Flags::parse(args, "cluster_bench load", &[], &valued)?;
    let options = LoadOptions {
        targets: flags
            .value("targets")
            .map(|targets| targets.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        clients: flags.get_or("clients", 1)?,
        seconds: flags.get_or("seconds", 5)?,
        mode: flags.value("mode").unwrap_or("write").to_string(),
        run_id: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
        kill_mark: flags.value("kill-mark").map(str::to_string),
        threads: flags.get_or("threads", LOAD_THREADS_DEFAULT)?,
    };
    if !["write", "items", "read", "stale", "etcd"].contains(&options.mode.as_str()) {
        return Err(CliError::new(format!("unknown --mode {}", options.mode)));
    }
    if options.targets.is_empty() || options.clients == 0 || options.threads == 0 {
        return Err(CliError::new(
            "--targets is required; --clients and --threads must be at least 1",
        ));
    }
    Ok(options)
}

/// Shared results of the load run.
struct Results {
    latencies_us: Mutex<Vec<u64>>,
    /// Microseconds since start of every acknowledged request: when the acknowledged attempt
    /// was sent, and when its answer arrived (the longest gap, the failover time).
    acks_us: Mutex<Vec<(u64, u64)>>,
    retries: AtomicU64,
}

fn load(options: LoadOptions) -> Result<(), String> {
    let options = Arc::new(options);
    let results = Arc::new(Results {
        latencies_us: Mutex::new(Vec::new()),
        acks_us: Mutex::new(Vec::new()),
        retries: AtomicU64::new(0),
    });
    let start = Instant::now();
    let start_wall = std::time::SystemTime::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let threads_count = options.threads.min(options.clients);
    let mut threads = Vec::new();
    for first in 0..threads_count {
        let (options, results) = (Arc::clone(&options), Arc::clone(&results));
        threads.push(std::thread::spawn(move || {
            let share = Share {
                first,
                step: threads_count,
            };
            run_clients(&share, &options, &results, start, deadline)
        }));
    }
    for thread in threads {
        match thread.join() {
            Ok(outcome) => outcome?,
            Err(_) => return Err("a client thread panicked".into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = results
        .latencies_us
        .lock()
        .map_err(|e| e.to_string())?
        .clone();
    let mut acks = results.acks_us.lock().map_err(|e| e.to_string())?.clone();
    latencies.sort_unstable();
    acks.sort_unstable();
    let pick = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0
    };
    let mut acked_at: Vec<u64> = acks.iter().map(|(_, acked)| *acked).collect();
    acked_at.sort_unstable();
    let max_gap_ms = acked_at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / 1000.0;
    let failover = match &options.kill_mark {
        Some(path) => failover_text(path, start_wall, &acks)?,
        None => String::new(),
    };
    println!(
        "mode {} clients {} ok requests {} in {elapsed:.2} s: {:.0} acknowledged/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, longest gap without an ack {max_gap_ms:.1} ms, retries {}{failover}",
        options.mode,
        options.clients,
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pick(0.50),
        pick(0.99),
        pick(1.0),
        results.retries.load(Ordering::Relaxed)
    );
    Ok(())
}

/// `, failover X ms` from the kill instant in `path` to the first acknowledgement of an
/// attempt sent at or after it (`acks`: attempt sent and answer received, in microseconds
/// since `start_wall`); `, failover none` when no such attempt was acknowledged.
fn failover_text(
    path: &str,
    start_wall: std::time::SystemTime,
    acks: &[(u64, u64)],
) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--kill-mark {path}: {e}"))?;
    let killed_ns: u128 = text
        .trim()
        .parse()
        .map_err(|_| format!("--kill-mark {path}: expected nanoseconds, got {text:?}"))?;
    let start_ns = start_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    let killed_us = (killed_ns.saturating_sub(start_ns) / 1000) as u64;
    let first = acks
        .iter()
        .filter(|(sent, _)| *sent >= killed_us)
        .map(|(_, acked)| *acked)
        .min();
    Ok(match first {
        Some(acked) => format!(", failover {:.1} ms", (acked - killed_us) as f64 / 1000.0),
        None => ", failover none".to_string(),
    })
}

/// Clients of one event-loop thread: `first`, `first + step`, ... below `options.clients`.
struct Share {
    first: usize,
    step: usize,
}

/// Time a request may wait for its answer before the client gives up on the connection.
const ANSWER_TIMEOUT_MS: u64 = 5000;
/// Pause before a client retries after an error (another target, same key).
const RETRY_PAUSE_MS: u64 = 5;
/// How often the event loop looks for answers that timed out, in milliseconds.
const SWEEP_MS: u64 = 20;
/// Bytes read from a connection per `read`.
const CLIENT_READ_BYTES: usize = 16 * 1024;
/// Largest answer head or body the client accepts, in bytes.
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// One closed-loop client: one keep-alive connection, one request in flight, the next sent
/// only once the previous one is acknowledged (retried with the same key until then).
struct Client {
    id: usize,
    /// Index of the node it talks to, and how many there are (it moves on after an error).
    target: usize,
    targets: usize,
    connection: Option<TcpStream>,
    input: Vec<u8>,
    sequence: u64,
    /// Key of the write in progress, and when it was first sent (its latency counts from here).
    key: String,
    began: Instant,
    /// When the attempt in flight was sent (`None`: nothing in flight).
    sent: Option<Instant>,
    /// No attempt before this instant (after an error).
    paused_until: Option<Instant>,
}

/// What the event loop of one thread measured.
#[derive(Default)]
struct Measured {
    latencies: Vec<u64>,
    acks: Vec<(u64, u64)>,
}

/// Runs the clients of `share` on this thread with one poller: each sends a request, waits
/// for its whole answer, then sends the next (an honest closed loop, one request in flight
/// per client), without a thread and a context switch per client and request.
fn run_clients(
    share: &Share,
    options: &LoadOptions,
    results: &Results,
    start: Instant,
    deadline: Instant,
) -> Result<(), String> {
    let mut poller = lithair::sys::Poller::new().map_err(|e| e.to_string())?;
    let mut clients: Vec<Client> = (share.first..options.clients)
        .step_by(share.step)
        .map(|id| Client {
            id,
            target: id % options.targets.len(),
            targets: options.targets.len(),
            connection: None,
            input: Vec::new(),
            sequence: 0,
            key: String::new(),
            began: start,
            sent: None,
            paused_until: None,
        })
        .collect();
    let mut measured = Measured::default();
    for (token, client) in clients.iter_mut().enumerate() {
        next_request(client, token, options, &poller, results, deadline);
    }
    let mut events = Vec::new();
    let mut buffer = vec![0u8; CLIENT_READ_BYTES];
    let mut last_sweep = Instant::now();
    while clients
        .iter()
        .any(|c| c.sent.is_some() || c.paused_until.is_some())
    {
        // Wake for the earliest retry too, so a pause lasts RETRY_PAUSE_MS, not a sweep.
        let retry_at = clients.iter().filter_map(|c| c.paused_until).min();
        let wait_ms = retry_at.map_or(SWEEP_MS, |at| {
            let left = at.saturating_duration_since(Instant::now());
            (left.as_millis() as u64 + 1).min(SWEEP_MS)
        });
        poller
            .wait(&mut events, wait_ms as i32)
            .map_err(|e| e.to_string())?;
        for event in &events {
            let token = event.token as usize;
            let Some(client) = clients.get_mut(token) else {
                continue;
            };
            match read_answer(client, &mut buffer) {
                Ok(None) => continue,
                Ok(Some(status)) => finish(client, status, start, results, &mut measured),
                Err(_) => fail(client, &poller, results),
            }
            next_request(client, token, options, &poller, results, deadline);
        }
        let now = Instant::now();
        let retry_due = retry_at.is_some_and(|at| at <= now);
        if retry_due || now.duration_since(last_sweep) >= Duration::from_millis(SWEEP_MS) {
            last_sweep = now;
            sweep(&mut clients, options, &poller, results, deadline, now);
        }
    }
    if let Ok(mut all) = results.latencies_us.lock() {
        all.extend(measured.latencies);
    }
    if let Ok(mut all) = results.acks_us.lock() {
        all.extend(measured.acks);
    }
    Ok(())
}

/// Retries paused clients whose pause ended; gives up on answers older than the timeout.
fn sweep(
    clients: &mut [Client],
    options: &LoadOptions,
    poller: &lithair::sys::Poller,
    results: &Results,
    deadline: Instant,
    now: Instant,
) {
    let timeout = Duration::from_millis(ANSWER_TIMEOUT_MS);
    for (token, client) in clients.iter_mut().enumerate() {
        if client
            .sent
            .is_some_and(|sent| now.duration_since(sent) > timeout)
        {
            fail(client, poller, results);
        }
        if client.paused_until.is_some_and(|until| until <= now) {
            client.paused_until = None;
            next_request(client, token, options, poller, results, deadline);
        }
    }
}

/// An acknowledged (2xx) or refused answer to the attempt in flight.
fn finish(
    client: &mut Client,
    status: u16,
    start: Instant,
    results: &Results,
    measured: &mut Measured,
) {
    let Some(sent) = client.sent.take() else {
        return;
    };
    if status == 200 || status == 201 {
        let now = Instant::now();
        measured
            .latencies
            .push(now.duration_since(client.began).as_micros() as u64);
        measured.acks.push((
            sent.duration_since(start).as_micros() as u64,
            now.duration_since(start).as_micros() as u64,
        ));
        client.key.clear();
    } else {
        results.retries.fetch_add(1, Ordering::Relaxed);
        client.paused_until = Some(Instant::now() + Duration::from_millis(RETRY_PAUSE_MS));
        client.target = (client.target + 1) % client.targets;
    }
}

/// The attempt in flight failed (I/O error, timeout, malformed answer): drop the connection
/// and retry the same write on the next target after a pause.
fn fail(client: &mut Client, poller: &lithair::sys::Poller, results: &Results) {
    results.retries.fetch_add(1, Ordering::Relaxed);
    if let Some(stream) = client.connection.take() {
        use std::os::fd::AsRawFd;
        let _ = poller.delete(stream.as_raw_fd());
    }
    client.input.clear();
    client.sent = None;
    client.target = (client.target + 1) % client.targets;
    client.paused_until = Some(Instant::now() + Duration::from_millis(RETRY_PAUSE_MS));
}

/// Sends the client's next attempt (a new write once the last one was acknowledged, else the
/// same key again) unless the run is over or the client pauses.
fn next_request(
    client: &mut Client,
    token: usize,
    options: &LoadOptions,
    poller: &lithair::sys::Poller,
    results: &Results,
    deadline: Instant,
) {
    let now = Instant::now();
    if client.sent.is_some() || client.paused_until.is_some() || now >= deadline {
        return;
    }
    if client.key.is_empty() {
        client.sequence += 1;
        // Unique per run: a key reused from an earlier run is an idempotent replay.
        client.key = format!("{}-{}-{}", options.run_id, client.id, client.sequence);
        client.began = now;
    }
    let target = &options.targets[client.target];
    if send_attempt(client, token, target, &options.mode, poller).is_err() {
        fail(client, poller, results);
    }
}

fn send_attempt(
    client: &mut Client,
    token: usize,
    target: &str,
    mode: &str,
    poller: &lithair::sys::Poller,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if client.connection.is_none() {
        let stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        poller.add(
            stream.as_raw_fd(),
            token as u64,
            lithair::sys::Interest::READ,
        )?;
        client.connection = Some(stream);
    }
    let stream = client
        .connection
        .as_mut()
        .ok_or(std::io::ErrorKind::NotConnected)?;
    let request = request_text(target, &client.key, mode);
    client.input.clear();
    client.sent = Some(Instant::now());
    // One small request on an idle connection: the socket buffer always takes it whole; a
    // short write is treated as a broken connection (the attempt is retried).
    let written = stream.write(request.as_bytes())?;
    if written != request.len() {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

/// Reads what arrived; the status once the whole answer is in (`None`: not yet).
fn read_answer(client: &mut Client, buffer: &mut [u8]) -> std::io::Result<Option<u16>> {
    let Some(stream) = client.connection.as_mut() else {
        return Ok(None);
    };
    // One read per readiness event: the poller is level-triggered, so bytes left unread
    // report the socket again. Reading on to `WouldBlock` cost a second, empty `recv` per
    // answer, CPU the load client takes from the servers it measures on a small machine.
    loop {
        match stream.read(buffer) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                client.input.extend_from_slice(&buffer[..n]);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if client.input.len() > ANSWER_BYTES_MAX {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    if client.sent.is_none() {
        // Bytes nobody asked for.
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let Some(answer) = parse_answer(&client.input)? else {
        return Ok(None);
    };
    if answer.consumed != client.input.len() {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    client.input.clear();
    if answer.close {
        client.connection = None; // Dropping it closes it (and leaves the poller).
    }
    Ok(Some(answer.status))
}

/// A whole answer at the start of a buffer.
struct Answer {
    status: u16,
    close: bool,
    consumed: usize,
}

/// Parses one HTTP/1.1 answer (Content-Length or chunked) from `input`; `None` until whole.
fn parse_answer(input: &[u8]) -> std::io::Result<Option<Answer>> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let Some(head_end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&input[..head_end]).map_err(|_| invalid())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    let (mut length, mut close, mut chunked) = (0usize, false, false);
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().map_err(|_| invalid())?;
        } else if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let body_start = head_end + 4;
    let body_end = if chunked {
        match chunked_end(&input[body_start..])? {
            Some(end) => body_start + end,
            None => return Ok(None),
        }
    } else {
        body_start + length
    };
    if input.len() < body_end {
        return Ok(None);
    }
    Ok(Some(Answer {
        status,
        close,
        consumed: body_end,
    }))
}

/// Where a chunked body (with its trailers) ends in `body`; `None` until it does.
fn chunked_end(body: &[u8]) -> std::io::Result<Option<usize>> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let mut at = 0;
    loop {
        let Some(line_end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[at..at + line_end]).map_err(|_| invalid())?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid())?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if size > ANSWER_BYTES_MAX {
            return Err(invalid());
        }
        at += size + 2;
        if at > body.len() {
            return Ok(None);
        }
    }
}

/// The bytes of one request of `mode`.
fn request_text(target: &str, key: &str, mode: &str) -> String {
    let body = "{\"name\":\"item\"}";
    match mode {
        "etcd" => {
            let put = format!(
                "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                lithair::crypto::base64::encode(key.as_bytes()),
                lithair::crypto::base64::encode(body.as_bytes())
            );
            format!(
                "POST /v3/kv/put HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{put}",
                put.len()
            )
        }
        "items" => {
            let item = "{\"name\":\"item\",\"price\":1.5,\"tags\":[],\"in_stock\":true}";
            format!(
                "POST /items HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{item}",
                item.len()
            )
        }
        "read" => format!("GET /api/items/1 HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        "stale" => format!(
            "GET /api/items/1?consistency=stale HTTP/1.1\r\nHost: {target}\r\n\r\n"
        ),
        _ => format!(
        "POST /api/items HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    }
}
