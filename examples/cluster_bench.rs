//! A clustered Lithair app and the load client that measures it.
//!
//!   cluster_bench serve --node-id 1 --port 8081 --peer-port 9081 --data d1 \
//!       --cluster 1@127.0.0.1:9081,2@127.0.0.1:9082,3@127.0.0.1:9083 --cluster-secret s
//!   cluster_bench load --targets 127.0.0.1:8081,127.0.0.1:8082 --clients 256 --seconds 10
//!
//! `serve` is `App::run` with one model, `Item { id, name }` at `/api/items`. `load` runs
//! `--clients` threads, each with a keep-alive connection, posting items; a client that gets
//! a 503 or loses its connection moves to the next target and retries with the same
//! `Idempotency-Key`. It prints one line: committed writes/s, p50/p99 latency, and the longest
//! time with no acknowledged write (the failover time when a leader is killed meanwhile).
//! `--mode read` measures linearizable reads of item 1 instead (write it first; start the
//! nodes with `--read-mode lease` to measure lease reads), `--mode stale` local reads, the
//! ceiling of the read modes. `benches/cluster-reads.sh` runs them all on three nodes.
//! `--mode etcd` drives an etcd cluster with the same client: each write is a JSON
//! `POST /v3/kv/put` (etcd's v3 HTTP gateway, base64 key and value) with a unique key, so
//! `benches/cluster-compare.sh` measures both systems the same way.
//! `--kill-mark PATH`: failover measurement (`benches/failover.sh`). Someone writes the wall
//! clock time of a leader kill, in nanoseconds since the Unix epoch, into PATH during the run;
//! at the end the line also gives the failover time: from that instant to the first
//! acknowledgement of a request attempt sent at or after it (so committed under a new
//! leader, the killed one being gone).

use lithair::app::App;
use lithair::prelude::*;
use std::io::{BufRead, BufReader, Read, Write};
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
        return match load(&args[1..]) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cluster_bench load: {message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    App::new("cluster-bench").model::<Item>().run()
}

struct LoadOptions {
    targets: Vec<String>,
    clients: usize,
    seconds: u64,
    /// `write` (POST), `read` (linearizable GET), `stale` (local GET) or `etcd` (etcd put).
    mode: String,
    /// Prefix of this run's idempotency keys.
    run_id: String,
    /// File holding the kill instant (ns since the Unix epoch), read at the end of the run.
    kill_mark: Option<String>,
}

fn parse_load(args: &[String]) -> Result<LoadOptions, String> {
    let mut options = LoadOptions {
        targets: Vec::new(),
        clients: 1,
        seconds: 5,
        mode: "write".to_string(),
        run_id: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
        kill_mark: None,
    };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--targets" => options.targets = value.split(',').map(str::to_string).collect(),
            "--clients" => options.clients = value.parse().map_err(|_| "bad --clients")?,
            "--seconds" => options.seconds = value.parse().map_err(|_| "bad --seconds")?,
            "--mode" => options.mode = value.clone(),
            "--kill-mark" => options.kill_mark = Some(value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !["write", "read", "stale", "etcd"].contains(&options.mode.as_str()) {
        return Err(format!("unknown --mode {}", options.mode));
    }
    if options.targets.is_empty() || options.clients == 0 {
        return Err("usage: load --targets H:P[,H:P...] [--clients N] [--seconds S]".into());
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

fn load(args: &[String]) -> Result<(), String> {
    let options = Arc::new(parse_load(args)?);
    let results = Arc::new(Results {
        latencies_us: Mutex::new(Vec::new()),
        acks_us: Mutex::new(Vec::new()),
        retries: AtomicU64::new(0),
    });
    let start = Instant::now();
    let start_wall = std::time::SystemTime::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let mut threads = Vec::new();
    for client in 0..options.clients {
        let (options, results) = (Arc::clone(&options), Arc::clone(&results));
        threads.push(std::thread::spawn(move || {
            run_client(client, &options, &results, start, deadline);
        }));
    }
    for thread in threads {
        let _ = thread.join();
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

fn run_client(
    client: usize,
    options: &LoadOptions,
    results: &Results,
    start: Instant,
    deadline: Instant,
) {
    let mut target = client % options.targets.len();
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut latencies = Vec::new();
    let mut acks = Vec::new();
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        sequence += 1;
        // Unique per run: a key reused from an earlier run is an idempotent replay, not a write.
        let key = format!("{}-{client}-{sequence}", options.run_id);
        let began = Instant::now();
        // Retry the same write (same key) until acknowledged or the run ends.
        while Instant::now() < deadline {
            let sent = Instant::now();
            match request(
                &mut connection,
                &options.targets[target],
                &key,
                &options.mode,
            ) {
                Ok(201 | 200) => {
                    let now = Instant::now();
                    latencies.push(now.duration_since(began).as_micros() as u64);
                    acks.push((
                        sent.duration_since(start).as_micros() as u64,
                        now.duration_since(start).as_micros() as u64,
                    ));
                    break;
                }
                _ => {
                    results.retries.fetch_add(1, Ordering::Relaxed);
                    connection = None;
                    target = (target + 1) % options.targets.len();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    if let Ok(mut all) = results.latencies_us.lock() {
        all.extend(latencies);
    }
    if let Ok(mut all) = results.acks_us.lock() {
        all.extend(acks);
    }
}

/// One keep-alive request (a POST, or a GET of item 1 in the read modes); returns the status.
fn request(
    connection: &mut Option<BufReader<TcpStream>>,
    target: &str,
    key: &str,
    mode: &str,
) -> std::io::Result<u16> {
    if connection.is_none() {
        let stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        *connection = Some(BufReader::new(stream));
    }
    let reader = connection
        .as_mut()
        .ok_or(std::io::ErrorKind::NotConnected)?;
    let request = request_text(target, key, mode);
    reader.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut length = 0usize;
    let mut close = false;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value
                .trim()
                .parse()
                .map_err(|_| std::io::ErrorKind::InvalidData)?;
        } else if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        skip_chunked(reader)?;
    } else {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
    }
    if close {
        *connection = None;
    }
    Ok(status)
}

/// Reads and drops a chunked body (etcd's gateway may answer chunked).
fn skip_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| std::io::ErrorKind::InvalidData)?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk)?;
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
