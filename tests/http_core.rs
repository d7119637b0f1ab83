//! The HTTP/1.1 server core over real sockets with raw bytes: keep-alive, pipelining, chunked
//! bodies, 100-continue, HEAD, OPTIONS, absolute-form, streaming, panics, idle connections and
//! graceful shutdown.

#[path = "support/bench_process.rs"]
mod bench_process;
mod http_common;
use bench_process::{bench_server_binary, Reaped};
use http_common::*;
use lithair::http::ServerConfig;
use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

#[test]
fn keep_alive_serves_many_requests_with_date_and_server() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..5 {
        let path = if i % 2 == 0 { "/" } else { "/echo?x" };
        write!(stream, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").expect("write");
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("server"), Some("lithair"));
        assert!(resp
            .header("date")
            .is_some_and(|d| d.ends_with(" GMT") && d.len() == 29));
        assert_eq!(resp.header("connection"), None);
    }
    drop(stream);
    drop(reader);
    wait_until("connection closed", || server.connections() == 0);
}

#[test]
fn pipelined_responses_come_back_in_order() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut batch = String::new();
    let mut expected = Vec::new();
    for i in 0..30 {
        match i % 3 {
            0 => {
                batch += &format!("GET /slow?{} HTTP/1.1\r\nHost: h\r\n\r\n", 30 - i);
                expected.push(format!("slept {}", 30 - i));
            }
            1 => {
                batch += &format!("GET /inline/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
                expected.push(format!("GET /inline/{i} h"));
            }
            _ => {
                batch +=
                    &format!("POST /echo?{i} HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab");
                expected.push(format!("POST {i} body=ab"));
            }
        }
    }
    stream.write_all(batch.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    for want in expected {
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!(resp.text(), want);
    }
}

/// Whether the reactor sleeps at once or polls first (up to the largest window, kept open by a
/// steady stream of requests), every answer comes back, in order, the workers' answers (woken
/// through the inbox) included, and the timers still run (an idle connection is closed).
#[test]
fn answers_and_timers_do_not_depend_on_polling_before_sleeping() {
    for poll_window_max_us in [0, lithair::http::limits::POLL_WINDOW_MAX_US_LIMIT] {
        let server = spawn(ServerConfig {
            poll_window_max_us,
            idle_timeout_ms: 300,
            ..quick_config()
        });
        let stream = connect(server.local_addr());
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        for i in 0..400 {
            let (request, want) = if i % 50 == 0 {
                (
                    "GET /slow?5 HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
                    "slept 5".to_string(),
                )
            } else {
                (
                    format!("GET /inline/{i} HTTP/1.1\r\nHost: h\r\n\r\n"),
                    format!("GET /inline/{i} h"),
                )
            };
            writer.write_all(request.as_bytes()).expect("write");
            let resp = read_response(&mut reader, false).expect("response");
            assert_eq!(resp.text(), want, "window {poll_window_max_us} µs");
        }
        let idle_since = Instant::now();
        assert!(is_closed(&mut reader), "the idle timeout closes it");
        assert!(
            idle_since.elapsed() < Duration::from_secs(5),
            "closed by the idle timer, not by the read timeout"
        );
    }
}

#[test]
fn chunked_request_bodies_with_trailers_split_at_every_byte() {
    let server = spawn(quick_config());
    let request = b"POST /echo?c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Check: 42\r\n\r\n";
    let mut stream = connect(server.local_addr());
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    // Whole, then one byte per write on the same keep-alive connection.
    stream.write_all(request).expect("write");
    let resp = read_response(&mut reader, false).expect("response");
    assert_eq!(resp.text(), "POST c body=hello world trailer X-Check=42");
    for byte in request.iter() {
        stream.write_all(std::slice::from_ref(byte)).expect("write");
        stream.flush().expect("flush");
    }
    let resp = read_response(&mut reader, false).expect("response");
    assert_eq!(resp.text(), "POST c body=hello world trailer X-Check=42");
}

#[test]
fn expect_100_continue() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let interim = read_response(&mut reader, true).expect("interim");
    assert_eq!(interim.status, 100);
    stream.write_all(b"abc").expect("body");
    let resp = read_response(&mut reader, false).expect("final");
    assert_eq!((resp.status, resp.text().as_str()), (200, "POST  body=abc"));
    // Too large: 413 at once, no 100, and the body is never read.
    let too_big = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        64 << 20
    );
    expect_rejected(server.local_addr(), too_big.as_bytes(), 413);
}

#[test]
fn head_options_and_absolute_form() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    stream
        .write_all(b"HEAD /echo HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let resp = read_response(&mut reader, true).expect("head");
    // The handler saw HEAD ("HEAD  body=", 11 bytes): the length is sent, the body is not.
    assert_eq!(resp.header("content-length"), Some("11"));
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let resp = read_response(&mut reader, false).expect("options");
    assert_eq!(resp.status, 204);
    assert!(resp
        .header("allow")
        .is_some_and(|a| a.contains("GET") && a.contains("OPTIONS")));
    stream
        .write_all(b"GET http://example.com/abs/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .expect("write");
    let resp = read_response(&mut reader, false).expect("absolute");
    assert_eq!(resp.text(), "GET /abs/path example.com");
}

#[test]
fn http10_and_connection_close() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    let (resp, mut reader) = send(addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        (resp.status, resp.header("connection")),
        (200, Some("close"))
    );
    assert!(is_closed(&mut reader));
    let mut stream = connect(addr);
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let resp = read_response(&mut reader, false).expect("first");
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .expect("write");
    let resp = read_response(&mut reader, false).expect("second");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(is_closed(&mut reader));
    let (resp, mut reader) = send(addr, b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (resp.text().as_str(), resp.header("connection")),
        ("bye", Some("close"))
    );
    assert!(is_closed(&mut reader));
}

#[test]
fn streamed_responses_are_chunked_then_the_connection_is_reused() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    stream
        .write_all(
            b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /inline/after HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .expect("write");
    let resp = read_response(&mut reader, false).expect("stream");
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.text(), "one,two,three");
    let resp = read_response(&mut reader, false).expect("after");
    assert_eq!(resp.text(), "GET /inline/after h");
    // HTTP/1.0 has no chunked coding: the body ends with the connection.
    let mut old = connect(server.local_addr());
    old.write_all(b"GET /stream HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut all = String::new();
    old.read_to_string(&mut all).expect("read to close");
    assert!(
        all.ends_with("\r\n\r\none,two,three") && !all.contains("chunked"),
        "{all}"
    );
}

#[test]
fn a_panicking_handler_is_a_500_and_the_connection_survives() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for path in ["/panic", "/inline/x", "/panic"] {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").expect("write");
        let resp = read_response(&mut reader, false).expect("response");
        let want = if path == "/panic" { 500 } else { 200 };
        assert_eq!(resp.status, want);
        if want == 500 {
            // An error like every other: a problem document that does not leak the panic text.
            assert_eq!(
                resp.header("content-type"),
                Some("application/problem+json")
            );
            let problem = lithair::json::parse(&resp.text()).expect("a JSON problem");
            assert_eq!(problem["status"].as_f64(), Some(500.0));
            assert!(!resp.text().contains("on purpose"), "{}", resp.text());
        }
    }
    drop(stream);
    drop(reader);
    wait_until("no leaked connection", || server.connections() == 0);
}

#[test]
fn a_thousand_idle_connections_do_not_stop_others_being_served() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    let idle: Vec<_> = (0..1000).map(|_| connect(addr)).collect();
    wait_until("1000 accepted", || server.connections() >= 1000);
    let mut stream = connect(addr);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..200 {
        write!(stream, "GET /inline/{i} HTTP/1.1\r\nHost: h\r\n\r\n").expect("write");
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!(resp.text(), format!("GET /inline/{i} h"));
    }
    assert_eq!(server.connections(), 1001);
    drop(idle);
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /slow?300 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    wait_until("request accepted", || server.connections() == 1);
    std::thread::sleep(Duration::from_millis(50)); // Let the request reach the worker.
    server.shutdown();
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader, false).expect("in-flight response");
    assert_eq!(resp.text(), "slept 300");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(is_closed(&mut reader));
    server.join().expect("join");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// Reads from `stream` until `buf` holds `needle`.
fn read_until(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    let mut chunk = [0u8; 4096];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "EOF before {:?}", String::from_utf8_lossy(needle));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A server answering with `handler` (grace `grace_ms`), a client that asked it for `target`,
/// and what the client read until the body showed `first`.
fn open_stream(
    handler: impl lithair::http::Handler,
    grace_ms: u64,
    target: &str,
    first: &[u8],
) -> (lithair::http::ServerHandle, std::net::TcpStream, Vec<u8>) {
    let config = lithair::http::ServerConfig {
        shutdown_grace_ms: grace_ms,
        ..quick_config()
    };
    let server = spawn_handler(config, handler);
    let mut stream = connect(server.local_addr());
    write!(stream, "GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").expect("write");
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, first);
    (server, stream, got)
}

#[test]
fn an_idle_event_stream_ends_cleanly_when_the_server_shuts_down() {
    use lithair::http::sse::Sse;
    // The senders stay alive, so each stream would run (idle) for ever but for the shutdown.
    let senders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&senders);
    let handler = move |_: &mut lithair::http::Request| {
        let (tx, rx) = std::sync::mpsc::channel();
        keep.lock().expect("lock").push(tx);
        Sse::new().heartbeat_ms(3_600_000).from_channel(rx)
    };
    let (server, mut stream, mut got) = open_stream(handler, 60_000, "/events", b": ok\n\n");
    server.shutdown();
    // Within STOP_CHECK_MS the stream returns and the server sends the last chunk (not a cut
    // connection at the 60 s deadline, which the read timeout would catch first).
    stream.read_to_end(&mut got).expect("read to the end");
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("\r\n0\r\n\r\n"), "{text:?}");
    server.join().expect("join");
    drop(senders);
}

/// A client that closes an idle event stream frees it within a wait slice: the stream used to
/// learn it only from its next write, a heartbeat apart (an hour here), holding a stream
/// thread and, for a live query, its subscription all that time.
#[test]
fn an_idle_event_stream_ends_soon_after_its_client_closes_the_connection() {
    use lithair::http::sse::{Idle, Sse};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let ended = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ended);
    let handler = move |_: &mut lithair::http::Request| {
        let flag = Arc::clone(&flag);
        Sse::new().stream(move |writer| {
            writer.comment("ok")?;
            // The loop `Sse::from_channel` runs, with nothing ever to send.
            loop {
                match writer.idle(Duration::from_secs(3_600)) {
                    Idle::Stop => break,
                    Idle::Heartbeat => writer.comment("heartbeat")?,
                    Idle::Wait(slice) => std::thread::sleep(slice),
                }
            }
            flag.store(true, Ordering::Release);
            Ok(())
        })
    };
    let (server, stream, _) = open_stream(handler, 60_000, "/events", b": ok\n\n");
    drop(stream);
    // Bounded far below the heartbeat, far above the wait slice.
    let ended_soon = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        ended.load(Ordering::Acquire)
    });
    assert!(
        ended_soon,
        "the stream still runs 5 s after its client left"
    );
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn at_the_shutdown_deadline_a_body_that_ignores_it_is_cut_off() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let ended = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ended);
    let handler = move |_: &mut lithair::http::Request| {
        let flag = Arc::clone(&flag);
        lithair::http::Response::stream(200, "text/plain", move |out| {
            // Never looks at `out.stopping()`: only failing writes can end it.
            let result = loop {
                if let Err(e) = out.write_all(b"x") {
                    break Err(e);
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            flag.store(true, Ordering::Release);
            result
        })
    };
    let (server, mut stream, _) = open_stream(handler, 300, "/forever", b"1\r\nx\r\n");
    // A client that keeps reading: the body's writes never block, so only the server can stop it.
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    server.shutdown();
    server.join().expect("join");
    wait_until(
        "the body's writes fail once the deadline closed its socket",
        || ended.load(Ordering::Acquire),
    );
    reader.join().expect("reader");
}

#[test]
fn bench_server_exits_0_on_sigterm() {
    let data = std::env::temp_dir().join(format!("lithair-bench-{}", std::process::id()));
    let (mut guard, addr, _stdout) = start_bench_server(&["--items", "10"], &data);
    let (resp, _reader) = send(addr, b"GET /items/4 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        resp.text(),
        r#"{"id":4,"name":"item-4","price":5.0,"tags":["a","b"],"in_stock":true}"#
    );
    let post = b"POST /items HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\r\n{\"name\":\"widget\",\"price\":9.5,\"tags\":[\"a\",\"b\"],\"in_stock\":true}";
    let (resp, _r) = send(addr, post);
    assert_eq!(
        (resp.status, resp.header("location")),
        (201, Some("/items/11"))
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = guard.0.wait().expect("wait");
    assert_eq!(exit.code(), Some(0));
    let _ = std::fs::remove_dir_all(data);
}

/// A running bench server (killed when dropped), the address it listens on, and its
/// standard output.
type BenchChild = (
    Reaped,
    std::net::SocketAddr,
    std::io::BufReader<std::process::ChildStdout>,
);

/// Starts `bench_server` on port 0 with `args` (the server prints the address it got, so no
/// other test can race for the port), returning it, that address and its standard output,
/// to be kept open while it runs (it prints on exit).
fn start_bench_server(args: &[&str], data: &std::path::Path) -> BenchChild {
    let mut command = std::process::Command::new(bench_server_binary());
    command.stderr(std::process::Stdio::null());
    start_bench_command(command, args, data)
}

/// Starts `command` (the bench server, or a shell that runs it) with `--port 0`, `args` and
/// `--data data` appended, as [`start_bench_server`] does; its stderr is as `command` says.
fn start_bench_command(
    mut command: std::process::Command,
    args: &[&str],
    data: &std::path::Path,
) -> BenchChild {
    use std::io::BufRead;
    let child = command
        .args(["--port", "0"])
        .args(args)
        .arg("--data")
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bench_server");
    let mut guard = Reaped(child);
    let stdout = guard.0.stdout.take().expect("stdout");
    let mut banner = std::io::BufReader::new(stdout);
    let mut line = String::new();
    banner.read_line(&mut line).expect("banner");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (guard, addr, banner)
}

fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    send(addr, request.as_bytes()).0.status
}

/// A bad `--items` is a command line refused like a bad built-in flag: exit 2 with a message
/// naming the flag, before the data directory is created (it was exit 1, after opening it).
#[test]
fn bench_server_refuses_a_bad_items_value_as_a_usage_error() {
    let data = std::env::temp_dir().join(format!("lithair-bench-items-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    for value in ["abc", "-5"] {
        assert_usage_error(&["--items", value], &data, "--items");
    }
}

/// Runs `bench_server` with `args` over `data` and checks it refused the command line as a
/// usage error: exit 2, a message naming `flag`, and no data directory created.
fn assert_usage_error(args: &[&str], data: &std::path::Path, flag: &str) {
    let output = std::process::Command::new(bench_server_binary())
        .args(["--port", "0"])
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run bench_server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(flag), "{stderr}");
    assert!(!data.exists(), "{args:?} created the data directory");
}

/// Out of file descriptors, the server neither spins nor floods its log: the listener is left
/// alone `ACCEPT_PAUSE_MS` at a time (it stays readable, and a retry at each wait spun both
/// cores and logged each failure: 700,000 lines in 6 s), the connections past the limit wait
/// in the backlog, and they are served once descriptors are free again.
#[test]
fn out_of_descriptors_the_server_pauses_accepting_and_recovers() {
    let data = std::env::temp_dir().join(format!("lithair-bench-emfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("mkdir");
    let stderr_path = data.join("stderr.log");
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "ulimit -n 120 && exec \"$0\" \"$@\""])
        .arg(bench_server_binary())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    let (guard, addr, _out) = start_bench_command(command, &["--items", "3"], &data.join("d"));
    // Past the limit: the kernel completes the handshakes, the server cannot take them all.
    let held: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", guard.0.id())).expect("stat");
        // Fields after the command's closing parenthesis: utime and stime are the 12th and
        // 13th (clock ticks).
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        fields[11] + fields[12]
    };
    let ticks_per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100);
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks() - before) as f64 / ticks_per_second as f64;
    assert!(
        used < 0.3,
        "{used:.2} s of CPU in a second while out of descriptors"
    );
    let log = std::fs::read_to_string(&stderr_path).expect("stderr");
    let failures = log.matches("accept failed").count();
    assert!((1..=8).contains(&failures), "{failures} lines:\n{log}");
    drop(held);
    // The waiting connections are taken and closed; a new one is served.
    assert_eq!(get_status(addr, "/items/3"), 200);
    drop(guard);
    let _ = std::fs::remove_dir_all(&data);
}

/// `--poll-window-us` is a serve flag of every app: 0 (never poll) and the largest window both
/// serve; past a millisecond it is a usage error (exit 2, naming the flag), before the data
/// directory is created.
#[test]
fn bench_server_takes_a_poll_window_and_refuses_one_too_long() {
    let data = std::env::temp_dir().join(format!("lithair-bench-poll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    for window in ["0", "1000"] {
        let (guard, addr, _out) =
            start_bench_server(&["--items", "3", "--poll-window-us", window], &data);
        for _ in 0..50 {
            assert_eq!(get_status(addr, "/items/3"), 200, "window {window}");
        }
        drop(guard);
    }
    let _ = std::fs::remove_dir_all(&data);
    assert_usage_error(&["--poll-window-us", "1001"], &data, "--poll-window-us");
}

/// A `kill -9` during the preload leaves the batches it committed (items 1..=k, k a multiple
/// of the batch size): started again with the same `--items N`, the bench server completes
/// them. It used to skip the preload (the directory was not empty) and serve a partial set
/// (404 for item N). A directory holding anything a client wrote is never preloaded into.
#[test]
fn bench_server_completes_a_preload_a_crash_cut_short() {
    let data = std::env::temp_dir().join(format!("lithair-bench-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    // What a preload of 25,000 killed after its first batch leaves: items 1..=10,000.
    let (mut first, addr, _first_out) = start_bench_server(&["--items", "10000"], &data);
    assert_eq!(get_status(addr, "/items/10000"), 200);
    first.0.kill().expect("kill -9");
    first.0.wait().expect("reap");
    let (mut second, addr, _second_out) = start_bench_server(&["--items", "25000"], &data);
    assert_eq!(
        get_status(addr, "/items/25000"),
        200,
        "the preload completed"
    );
    assert_eq!(get_status(addr, "/items/25001"), 404);
    let (resp, _r) = send(addr, b"GET /items/17 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        resp.text(),
        r#"{"id":17,"name":"item-17","price":21.25,"tags":["a","b"],"in_stock":false}"#
    );
    // A client's write makes the data its own: a larger `--items` adds nothing.
    let body = r#"{"name":"x","price":1.0,"tags":[],"in_stock":true}"#;
    let post = format!(
        "POST /items HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(send(addr, post.as_bytes()).0.status, 201);
    second.0.kill().expect("kill -9");
    second.0.wait().expect("reap");
    let (_third, addr, _third_out) = start_bench_server(&["--items", "30000"], &data);
    assert_eq!(get_status(addr, "/items/25001"), 200);
    assert_eq!(get_status(addr, "/items/30000"), 404, "not preloaded into");
    drop(_third);
    let _ = std::fs::remove_dir_all(data);
}

/// Answers through deferred responses completed by other threads: `/defer?ms` completes after
/// `ms` milliseconds, `/now` before the handler returns, `/drop` drops its responder. Paths
/// under `/inline` run on the reactor, the others on a worker.
struct DeferringApp;

impl lithair::http::Handler for DeferringApp {
    fn call(&self, req: &mut lithair::http::Request) -> lithair::http::Response {
        use lithair::http::Response;
        let (placeholder, responder) = Response::deferred();
        let placeholder = placeholder.with_header("X-Layer", "kept");
        let path = req.path.trim_start_matches("/inline");
        let text = format!("{} {path}?{}", req.method, req.query);
        match path {
            "/defer" => {
                let ms: u64 = req.query.parse().unwrap_or(50);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    responder.complete(Response::text(201, text));
                });
            }
            "/now" => responder.complete(Response::text(200, text)),
            "/drop" => {
                std::thread::spawn(move || drop(responder));
            }
            _ => return Response::text(200, text),
        }
        placeholder
    }

    fn is_inline(&self, req: &lithair::http::Request) -> bool {
        req.path.starts_with("/inline")
    }
}

fn spawn_deferring() -> lithair::http::ServerHandle {
    spawn_handler(quick_config(), DeferringApp)
}

#[test]
fn deferred_responses_keep_pipeline_order_on_both_paths() {
    let server = spawn_deferring();
    let mut stream = connect(server.local_addr());
    let mut batch = String::new();
    let mut expected = Vec::new();
    for i in 0..24u64 {
        let prefix = if i % 2 == 0 { "/inline" } else { "" };
        let (method, path, query, status) = match i % 4 {
            0 | 1 => ("POST", "/defer", format!("{}", (24 - i) * 3), 201),
            2 => ("GET", "/now", format!("{i}"), 200),
            _ => ("GET", "/defer", format!("{}", i % 5), 201),
        };
        let length = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        batch += &format!("{method} {prefix}{path}?{query} HTTP/1.1\r\nHost: h\r\n{length}\r\n");
        expected.push((status, format!("{method} {path}?{query}")));
    }
    stream.write_all(batch.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    for (status, text) in expected {
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!((resp.status, resp.text()), (status, text));
        assert_eq!(
            resp.header("x-layer"),
            Some("kept"),
            "placeholder headers carry over"
        );
    }
}

/// Requests `GatedApp` holds before it answers them all at once.
const GATED_REQUESTS: usize = 32;

/// Holds the responders of its requests until `GATED_REQUESTS` arrived, then completes them
/// all from one thread, newest first: the reactor gets many answers at once, for several
/// connections and out of order (they are filed first, then each connection writes).
struct GatedApp {
    held: std::sync::Mutex<Vec<(String, lithair::http::Responder)>>,
}

impl lithair::http::Handler for GatedApp {
    fn call(&self, req: &mut lithair::http::Request) -> lithair::http::Response {
        let (placeholder, responder) = lithair::http::Response::deferred();
        let mut held = self.held.lock().expect("held responders");
        held.push((req.query.clone(), responder));
        if held.len() == GATED_REQUESTS {
            let all = std::mem::take(&mut *held);
            std::thread::spawn(move || {
                for (text, responder) in all.into_iter().rev() {
                    responder.complete(lithair::http::Response::text(200, text));
                }
            });
        }
        placeholder
    }

    fn is_inline(&self, _req: &lithair::http::Request) -> bool {
        true
    }
}

#[test]
fn deferred_responses_completed_together_and_out_of_order_keep_each_pipeline_in_order() {
    let server = spawn_handler(
        quick_config(),
        GatedApp {
            held: std::sync::Mutex::new(Vec::new()),
        },
    );
    let per_connection = GATED_REQUESTS / 2;
    let mut streams: Vec<_> = (0..2).map(|_| connect(server.local_addr())).collect();
    for (c, stream) in streams.iter_mut().enumerate() {
        let batch: String = (0..per_connection)
            .map(|i| format!("GET /gate?{c}-{i} HTTP/1.1\r\nHost: h\r\n\r\n"))
            .collect();
        stream.write_all(batch.as_bytes()).expect("write");
    }
    for (c, stream) in streams.into_iter().enumerate() {
        let mut reader = BufReader::new(stream);
        for i in 0..per_connection {
            let resp = read_response(&mut reader, false).expect("response");
            assert_eq!((resp.status, resp.text()), (200, format!("{c}-{i}")));
        }
    }
}

#[test]
fn a_dropped_responder_answers_503_and_the_connection_survives() {
    let server = spawn_deferring();
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for path in ["/inline/drop", "/drop", "/inline/now"] {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").expect("write");
        let resp = read_response(&mut reader, false).expect("response");
        let want = if path.ends_with("/drop") { 503 } else { 200 };
        assert_eq!(resp.status, want, "{path}");
    }
    drop(stream);
    drop(reader);
    wait_until("no leaked connection", || server.connections() == 0);
}

#[test]
fn graceful_shutdown_waits_for_a_deferred_response() {
    let server = spawn_deferring();
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"POST /inline/defer?300 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .expect("write");
    wait_until("request accepted", || server.connections() == 1);
    std::thread::sleep(Duration::from_millis(50)); // Let the reactor dispatch it.
    server.shutdown();
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader, false).expect("deferred response");
    assert_eq!(
        (resp.status, resp.text()),
        (201, "POST /defer?300".to_string())
    );
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(is_closed(&mut reader));
    server.join().expect("join");
}

#[test]
fn expect_100_continue_behind_an_unanswered_request_is_sent_after_its_response() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    // The POST waits for its 100 while the slow GET before it is still running: the 100 must
    // come after the GET's response, not never (RFC 9110 §10.1.1).
    stream
        .write_all(
            b"GET /slow?100 HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let first = read_response(&mut reader, false).expect("slow response");
    assert_eq!(first.text(), "slept 100");
    let interim = read_response(&mut reader, true).expect("interim 100");
    assert_eq!(interim.status, 100);
    stream.write_all(b"abc").expect("body");
    let resp = read_response(&mut reader, false).expect("final");
    assert_eq!((resp.status, resp.text().as_str()), (200, "POST  body=abc"));
    // Behind a streamed body too: the 100 follows the stream's last chunk.
    stream
        .write_all(
            b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("write");
    let streamed = read_response(&mut reader, false).expect("stream");
    assert_eq!(streamed.text(), "one,two,three");
    let interim = read_response(&mut reader, true).expect("interim 100 after the stream");
    assert_eq!(interim.status, 100);
    stream.write_all(b"s").expect("body");
    let resp = read_response(&mut reader, false).expect("final");
    assert_eq!(resp.text(), "POST  body=s");
    // A client that sends the body anyway gets no late 100.
    stream
        .write_all(
            b"GET /slow?100 HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nxyz\
              GET /inline/last HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .expect("write");
    for want in ["slept 100", "POST  body=xyz", "GET /inline/last h"] {
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!(resp.text(), want);
    }
}

#[test]
fn an_absolute_form_target_is_the_host_and_its_authority_is_checked() {
    let server = spawn(quick_config());
    let addr = server.local_addr();
    // RFC 9112 §3.2.2: the target's authority wins over the Host field.
    let (resp, _) = send(
        addr,
        b"GET http://a.example:8080/abs?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n",
    );
    assert_eq!(resp.text(), "GET /abs a.example:8080");
    let (resp, _) = send(addr, b"GET /inline/x HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert_eq!(resp.text(), "GET /inline/x b.example");
    // Userinfo (RFC 9110 §4.2.4) or a host that is not one: 400 and close.
    expect_rejected(
        addr,
        b"GET http://user@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        400,
    );
    expect_rejected(
        addr,
        b"GET http://a.example%/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        400,
    );
}

#[test]
fn a_declared_length_without_a_body_does_not_swallow_the_next_response() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    stream
        .write_all(
            b"HEAD /declared HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /declared HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /inline/next HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .expect("write");
    let head = read_response(&mut reader, true).expect("head");
    assert_eq!(head.header("content-length"), Some("5"));
    let get = read_response(&mut reader, false).expect("get");
    assert_eq!((get.status, get.header("content-length")), (200, Some("0")));
    let next = read_response(&mut reader, false).expect("next");
    assert_eq!(next.text(), "GET /inline/next h");
}

#[test]
fn a_pipelined_mix_split_at_every_byte_gives_the_same_answers() {
    let server = spawn(quick_config());
    let data: &[u8] = b"\r\nPOST /echo?a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz\
POST /echo?b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nab\r\n1\r\nc\r\n0\r\nT: 1\r\n\r\n\
HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n\
GET /inline/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let answers = |split: usize| {
        let mut stream = connect(server.local_addr());
        stream.write_all(&data[..split]).expect("first part");
        // Give the server a chance to read the first part alone.
        std::thread::sleep(Duration::from_millis(1));
        stream.write_all(&data[split..]).expect("second part");
        let mut all = Vec::new();
        stream.read_to_end(&mut all).expect("read to close");
        String::from_utf8_lossy(&all)
            .lines()
            .filter(|l| !l.starts_with("Date:"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let whole = answers(data.len());
    assert!(
        whole.contains("POST a body=xyz")
            && whole.contains("POST b body=abc trailer T=1")
            && whole.ends_with("GET /inline/x h"),
        "{whole}"
    );
    for split in 0..data.len() {
        assert_eq!(answers(split), whole, "split at {split}");
    }
}

/// A handler whose reactor-side hooks panic on some paths.
struct PanickingHooks;

impl lithair::http::Handler for PanickingHooks {
    fn call(&self, req: &mut lithair::http::Request) -> lithair::http::Response {
        lithair::http::Response::text(200, format!("{} {}", req.method, req.path))
    }

    fn unordered(&self, req: &lithair::http::Request) -> bool {
        assert!(
            req.path != "/unordered-panics",
            "unordered panics on purpose"
        );
        false
    }

    fn plan(&self, req: &mut lithair::http::Request) -> lithair::http::HeadPlan {
        assert!(req.path != "/plan-panics", "plan panics on purpose");
        lithair::http::HeadPlan {
            inline: false,
            body_bytes_max: None,
        }
    }
}

#[test]
fn a_panicking_plan_or_unordered_hook_does_not_take_the_reactor_down() {
    // One reactor: if a hook's panic unwound through it, nothing would be served any more.
    let config = lithair::http::ServerConfig {
        reactor_threads: 1,
        ..quick_config()
    };
    let server = spawn_handler(config, PanickingHooks);
    let addr = server.local_addr();
    expect_rejected(addr, b"GET /plan-panics HTTP/1.1\r\nHost: h\r\n\r\n", 500);
    let (resp, _) = send(
        addr,
        b"POST /unordered-panics HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(resp.text(), "POST /unordered-panics");
    let (resp, _) = send(addr, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.text(), "GET /after");
    server.shutdown();
    server.join().expect("no reactor panicked");
}

/// A request whose inline route holds its connection's reactor for 300 ms, with `before`
/// behind it (left in the connection's input), then, while the reactor is still busy, `rest`
/// and the FIN (one event). Returns the server and a reader whose first answer (checked
/// here) is the slow one's.
fn slow_request_then_fin(
    before: &[u8],
    rest: &[u8],
) -> (lithair::http::ServerHandle, BufReader<std::net::TcpStream>) {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /inline/slow?300 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    stream.write_all(before).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(rest).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader, false).expect("first response");
    assert_eq!(first.text(), "slept 300");
    (server, reader)
}

/// Requests a client sent whole before half-closing its side (`printf ... | nc -N`) are all
/// answered: a head completed by the bytes that came with the FIN, and a burst larger than a
/// read buffer. Both were dropped (the FIN stopped parsing of what was already buffered;
/// found by a review), and a body the FIN cuts short is still never read as requests.
#[test]
fn a_head_completed_by_bytes_that_arrive_with_the_fin_is_answered() {
    let (_server, mut reader) =
        slow_request_then_fin(b"GET /after HTTP/1.1\r\nHo", b"st: h\r\n\r\n");
    let second = read_response(&mut reader, false).expect("second response: lost after the FIN");
    assert_eq!(second.text(), "GET /after h");
    assert!(is_closed(&mut reader));
}

/// `printf ... | nc -N`: a pipelined burst larger than the read buffer, with the FIN behind
/// it. Every request must be answered before the close.
#[test]
fn a_burst_larger_than_the_read_buffer_followed_by_the_fin_is_fully_answered() {
    let server = spawn(quick_config());
    let mut stream = connect(server.local_addr());
    let mut batch = String::from("GET /inline/slow?300 HTTP/1.1\r\nHost: h\r\n\r\n");
    let n = 4000;
    for i in 0..n {
        batch += &format!("GET /inline/x HTTP/1.1\r\nHost: h\r\nX-Pad: {i:0>20}\r\n\r\n");
    }
    assert!(batch.len() > 2 * 64 * 1024);
    let reader_stream = stream.try_clone().expect("clone");
    let reading = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader_stream);
        let mut answered = 0;
        while let Some(resp) = read_response(&mut reader, false) {
            assert_eq!(resp.status, 200);
            answered += 1;
        }
        answered
    });
    stream.write_all(batch.as_bytes()).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let answered = reading.join().expect("reader");
    assert_eq!(
        answered,
        n + 1,
        "requests received before the FIN were dropped"
    );
}

/// Guard for the fix: a body cut short by the FIN is dropped, and the bytes in it are never
/// read as a request.
#[test]
fn a_body_cut_by_the_fin_is_not_read_as_requests() {
    let (_server, mut reader) = slow_request_then_fin(
        b"POST /echo HTTP/1.1\r\nHo",
        b"st: h\r\nContent-Length: 100\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert!(
        read_response(&mut reader, false).is_none(),
        "nothing else is answered"
    );
}
