//! Idle-connection scale check: opens N keep-alive connections to a server, makes one request on
//! each (so they are real keep-alive connections, not half-open ones), then holds them open and
//! reports the server's resident memory from `/proc/PID/status` while you load it with wrk.
//!
//! Usage: idle_scale --port P --pid SERVER_PID [--conns 10000] [--hold-secs 30] [--path /plaintext]
//! Output lines (fixed format):
//!   rss_before_kib: K
//!   opened: N connections in S s
//!   rss_idle_kib: K (per connection: B bytes)
//!   rss_end_kib: K (after holding S s)
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lithair::app::cli::{CliError, Flags};

const USAGE: &str =
    "usage: idle_scale --port P --pid SERVER_PID [--conns N] [--hold-secs S] [--path /plaintext]";

struct Args {
    port: u16,
    pid: u32,
    conns: usize,
    hold_secs: u64,
    path: String,
}

fn parse_args(words: &[String]) -> Result<Args, CliError> {
    let valued = ["port", "pid", "conns", "hold-secs", "path"];
    let flags = Flags::parse(words, "idle_scale", &[], &valued)?;
    Ok(Args {
        port: flags.require("port")?,
        pid: flags.require("pid")?,
        conns: flags.get_or("conns", 10_000)?,
        hold_secs: flags.get_or("hold-secs", 30)?,
        path: flags.get_or("path", "/plaintext".to_string())?,
    })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Reads one response head and its Content-Length body.
fn read_response(reader: &mut BufReader<&TcpStream>) -> std::io::Result<()> {
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if Flags::asks_help(&words) {
        println!("{USAGE}");
        return;
    }
    let args = match parse_args(&words) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("idle_scale: {}\n{USAGE}", error.message);
            std::process::exit(2);
        }
    };
    let _ = lithair::sys::rlimit::raise_fd_limit();
    println!("rss_before_kib: {}", rss_kib(args.pid));
    let start = Instant::now();
    let request = format!("GET {} HTTP/1.1\r\nHost: idle\r\n\r\n", args.path);
    let mut streams = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let stream = match TcpStream::connect(("127.0.0.1", args.port)) {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("connection {i} failed: {e}");
                std::process::exit(1);
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_nodelay(true);
        if let Err(e) = (&stream).write_all(request.as_bytes()) {
            eprintln!("request {i} failed: {e}");
            std::process::exit(1);
        }
        streams.push(stream);
    }
    for (i, stream) in streams.iter().enumerate() {
        if let Err(e) = read_response(&mut BufReader::new(stream)) {
            eprintln!("response {i} failed: {e}");
            std::process::exit(1);
        }
    }
    let idle = rss_kib(args.pid);
    println!(
        "opened: {} connections in {:.2} s",
        streams.len(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "rss_idle_kib: {idle} (per connection: {} bytes)",
        idle * 1024 / args.conns.max(1) as u64
    );
    std::thread::sleep(Duration::from_secs(args.hold_secs));
    println!(
        "rss_end_kib: {} (after holding {} s)",
        rss_kib(args.pid),
        args.hold_secs
    );
    drop(streams);
}
