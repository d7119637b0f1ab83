//! Every limit of the server core over real sockets: request line (414), header bytes and
//! count (431), body size (413 before the body), slowloris (408), idle keep-alive, maximum
//! connections (503), pipelining bound, worker queue bound (503), clients that never read.

mod http_common;
use http_common::*;
use lithair::http::ServerConfig;
use std::io::{BufReader, Write};
use std::time::Duration;

#[test]
fn size_limits_are_answered_and_closed() {
    let config = ServerConfig {
        request_line_bytes_max: 100,
        header_bytes_max: 400,
        header_count_max: 30,
        body_bytes_max: 1000,
        ..quick_config()
    };
    let server = spawn(config);
    let addr = server.local_addr();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(200));
    expect_rejected(addr, long_line.as_bytes(), 414);
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(500)
    );
    expect_rejected(addr, big_head.as_bytes(), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..31 {
        many += &format!("X{i}: v\r\n");
    }
    many += "\r\n";
    expect_rejected(addr, many.as_bytes(), 431);
    // 413 comes from the head alone: the body is never sent.
    expect_rejected(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n{}\r\n200\r\n{}\r\n",
        "c".repeat(0x200),
        "c".repeat(0x200)
    );
    expect_rejected(addr, chunked.as_bytes(), 413);
    // At the limits is fine (30 fields: more than the parser's 16 stack slots).
    let mut ok = String::from("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n");
    for i in 0..28 {
        ok += &format!("X{i}: v\r\n");
    }
    ok += "\r\n";
    ok += &"d".repeat(1000);
    let (resp, _) = send(addr, ok.as_bytes());
    assert_eq!(resp.status, 200);
}

#[test]
fn slowloris_gets_408_and_is_closed() {
    let config = ServerConfig {
        header_read_timeout_ms: 500,
        ..quick_config()
    };
    let server = spawn(config);
    let mut stream = connect(server.local_addr());
    let writer = stream.try_clone().expect("clone");
    let dribble = std::thread::spawn(move || {
        let mut writer = writer;
        for byte in
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
        {
            if writer.write_all(std::slice::from_ref(byte)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    stream.flush().expect("flush");
    let mut reader = BufReader::new(stream);
    let resp = read_response(&mut reader, false).expect("408");
    assert_eq!(resp.status, 408);
    assert!(is_closed(&mut reader));
    dribble.join().expect("dribble");
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let config = ServerConfig {
        idle_timeout_ms: 300,
        ..quick_config()
    };
    let server = spawn(config);
    let (resp, mut reader) = send(server.local_addr(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert!(is_closed(&mut reader), "idle connection stays open");
    wait_until("count back to 0", || server.connections() == 0);
}

#[test]
fn connections_over_the_maximum_get_503() {
    let config = ServerConfig {
        connections_max: 3,
        ..quick_config()
    };
    let server = spawn(config);
    let addr = server.local_addr();
    let held: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    wait_until("3 accepted", || server.connections() == 3);
    let (resp, mut reader) = send(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert!(is_closed(&mut reader));
    drop(held);
    wait_until("slots freed", || server.connections() == 0);
    let (resp, _) = send(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 200);
}

/// The counters a server hands to `/_lithair/metrics` follow its connections (held, admitted,
/// refused past the limit, with the refusal's 503 counted as an answer) and time its answers:
/// a request answered after a 60 ms sleep on a worker lands in a bucket above 50 ms.
/// The reactors count how they waited: with polling off, nothing; at the largest window, a
/// steady stream of requests on one connection has idle spells that polling ends (the next
/// request caught without a sleep), others that end asleep (the first ones: the window opens
/// only once sleeps prove short), and time spent polling. Other tests share the CPUs, and a
/// reactor stops polling whenever another thread wants its CPU, so the stream goes on (a
/// bounded number of requests) until polling has caught one.
#[test]
fn the_reactors_count_how_they_waited() {
    use lithair::http::stats::Polling;
    for poll_window_max_us in [0, lithair::http::limits::POLL_WINDOW_MAX_US_LIMIT] {
        let (server, stats) = spawn_counted(ServerConfig {
            poll_window_max_us,
            ..quick_config()
        });
        let stream = connect(server.local_addr());
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut sent = 0;
        while sent < 200 || (poll_window_max_us > 0 && stats.polling().caught == 0) {
            assert!(
                sent < 100_000,
                "polling never caught a request: {:?}",
                stats.polling()
            );
            writer
                .write_all(b"GET /inline/x HTTP/1.1\r\nHost: h\r\n\r\n")
                .expect("write");
            let resp = read_response(&mut reader, false).expect("response");
            assert_eq!(resp.status, 200);
            sent += 1;
        }
        let polling = stats.polling();
        if poll_window_max_us == 0 {
            assert_eq!(polling, Polling::default(), "polling off counts nothing");
        } else {
            assert!(polling.caught > 0 && polling.sleeps > 0, "{polling:?}");
            assert!(polling.polled_us > 0, "{polling:?}");
        }
    }
}

#[test]
fn the_server_counts_its_connections_and_times_its_answers() {
    use lithair::http::stats::{Connections, RequestKind, DURATION_BOUNDS_US};
    let config = ServerConfig {
        connections_max: 3,
        ..quick_config()
    };
    let (server, stats) = spawn_counted(config);
    let addr = server.local_addr();
    let held: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    wait_until("3 open", || stats.connections().open == 3);
    let (resp, mut reader) = send(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert!(is_closed(&mut reader));
    let full = Connections {
        open: 3,
        accepted: 3,
        refused: 1,
    };
    assert_eq!(stats.connections(), full);
    assert_eq!(stats.responses_by_class(), [0, 0, 0, 0, 1]);
    for kind in RequestKind::ALL {
        assert_eq!(stats.durations(kind).count(), 0, "a refusal is not timed");
    }
    drop(held);
    wait_until("all closed", || stats.connections().open == 0);

    let (resp, _) = send(
        addr,
        b"GET /slow?60 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let reads = || stats.durations(RequestKind::Read);
    wait_until("the answer counted", || reads().count() == 1);
    assert_eq!(
        stats.durations(RequestKind::Write).count(),
        0,
        "a GET is a read"
    );
    let durations = reads();
    let above_50ms = DURATION_BOUNDS_US
        .iter()
        .position(|&bound| bound > 50_000)
        .expect("a bound above 50 ms");
    assert_eq!(
        durations.buckets[above_50ms..].iter().sum::<u64>(),
        1,
        "{durations:?}"
    );
    assert!(durations.sum_us >= 60_000, "{durations:?}");
    assert_eq!(stats.responses_by_class(), [0, 1, 0, 0, 1]);
    wait_until("closed", || stats.connections().open == 0);
    assert_eq!(stats.connections().accepted, 4);
    assert_eq!(stats.connections().refused, 1);

    // The same on the reactor: a handler run inline holds its reactor for 60 ms, and its
    // answer is timed so (it counted 0 when answers were timed on the wakeup's clock alone).
    let (resp, _) = send(
        addr,
        b"GET /inline/slow?60 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 60"));
    wait_until("the inline answer counted", || reads().count() == 2);
    let durations = reads();
    assert_eq!(
        durations.buckets[above_50ms..].iter().sum::<u64>(),
        2,
        "{durations:?}"
    );
    // Within a tick of the coarse clock (at most 10 ms) of the 60 ms slept, on top of the
    // first answer's.
    assert!(durations.sum_us >= 2 * 60_000 - 10_000, "{durations:?}");
}

#[test]
fn pipelining_beyond_the_in_flight_bound_is_served_in_order() {
    let config = ServerConfig {
        pipeline_in_flight_max: 2,
        ..quick_config()
    };
    let server = spawn(config);
    let mut stream = connect(server.local_addr());
    let mut batch = String::new();
    for i in 0..50 {
        batch += &format!("GET /slow?{} HTTP/1.1\r\nHost: h\r\n\r\n", i % 3);
    }
    stream.write_all(batch.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    for i in 0..50 {
        let resp = read_response(&mut reader, false).expect("response");
        assert_eq!(resp.text(), format!("slept {}", i % 3));
    }
    // The same with the client's FIN right behind the batch (`printf ... | nc`): the requests
    // still buffered when the EOF is seen are answered too, then the connection closes.
    let mut stream = connect(server.local_addr());
    stream.write_all(batch.as_bytes()).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut reader = BufReader::new(stream);
    for i in 0..50 {
        let resp = read_response(&mut reader, false).expect("response after the FIN");
        assert_eq!(resp.text(), format!("slept {}", i % 3));
    }
    assert!(is_closed(&mut reader));
}

#[test]
fn a_full_worker_queue_answers_503() {
    use lithair::http::stats::Workers;
    let config = ServerConfig {
        worker_threads: 1,
        worker_queue_max: 1,
        ..quick_config()
    };
    // The pool's gauges say when the worker took the first request and the second waits.
    let (server, stats) = spawn_counted(config);
    let addr = server.local_addr();
    let mut busy = connect(addr);
    busy.write_all(b"GET /slow?1500 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    wait_until("the worker took it", || stats.workers().busy == 1);
    let mut queued = connect(addr);
    queued
        .write_all(b"GET /slow?1 HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    wait_until("the second waits", || stats.workers().queued == 1);
    let (resp, _) = send(addr, b"GET /slow?1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let full = Workers {
        threads: 1,
        busy: 1,
        queued: 1,
        refused: 1,
    };
    assert_eq!(stats.workers(), full);
    // Inline routes are not affected by a busy pool.
    let (resp, _) = send(addr, b"GET /inline/ok HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 200);
    for stream in [busy, queued] {
        let resp = read_response(&mut BufReader::new(stream), false).expect("served later");
        assert_eq!(resp.status, 200);
    }
    let idle = Workers {
        busy: 0,
        queued: 0,
        ..full
    };
    wait_until("the pool is idle", || stats.workers() == idle);
}

#[test]
fn a_client_that_never_reads_is_disconnected() {
    let config = ServerConfig {
        write_timeout_ms: 300,
        ..quick_config()
    };
    let server = spawn(config);
    let mut stream = connect(server.local_addr());
    // 8 MiB bodies: far more than the socket buffers hold.
    for _ in 0..4 {
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("write");
    }
    wait_until("accepted", || server.connections() == 1);
    wait_until("the non-reading client is dropped", || {
        server.connections() == 0
    });
    drop(stream);
}

#[test]
fn a_pipelined_burst_larger_than_the_read_buffer_is_fully_answered() {
    // Exercises the edge-triggered re-arm: reading pauses at the in-flight bound with bytes
    // still in the socket, and must resume without a new edge from the client.
    let config = ServerConfig {
        pipeline_in_flight_max: 8,
        ..quick_config()
    };
    let server = spawn(config);
    let mut stream = connect(server.local_addr());
    let mut batch = String::new();
    for i in 0..5000 {
        let route = if i % 100 == 0 { "/echo?w" } else { "/inline/x" };
        batch += &format!("GET {route} HTTP/1.1\r\nHost: h\r\nX-Pad: {i:0>20}\r\n\r\n");
    }
    assert!(batch.len() > 3 * 64 * 1024);
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        std::thread::spawn(move || stream.write_all(batch.as_bytes()).expect("write"))
    };
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..5000 {
        let resp = read_response(&mut reader, false).expect("response");
        let want = if i % 100 == 0 {
            "GET w body="
        } else {
            "GET /inline/x h"
        };
        assert_eq!(resp.text(), want, "response {i}");
    }
    writer.join().expect("writer");
    stream.flush().expect("flush");
}

/// A route's lower body limit (`BodyLimit`) is known from the head: a client that announces
/// a large body and then waits gets 413 at once, without a 100 Continue and without sending
/// a single body byte; routes without the limit still accept the body.
#[test]
fn a_route_body_limit_is_answered_before_the_body() {
    use lithair::http::middleware::BodyLimit;
    use lithair::http::router::WithMiddleware;
    use lithair::http::{Request, Response, Router};
    let count = |req: &mut Request| Response::text(200, req.body.len().to_string());
    let router = Router::new()
        .post("/small", count.with(BodyLimit::bytes(8)))
        .post("/any", count);
    let server = spawn_handler(quick_config(), router);
    let addr = server.local_addr();
    // Below the server's limit, above the route's; the body is never sent.
    let head = "POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n";
    let (resp, mut reader) = send(addr, head.as_bytes());
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(is_closed(&mut reader), "the unread body cannot be reused");
    let expect = "POST /small HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\
                  Content-Length: 9\r\n\r\n";
    let (resp, _) = send(addr, expect.as_bytes());
    assert_eq!(
        resp.status, 413,
        "no 100 Continue for a body the route refuses"
    );
    // At the route's limit, and on a route without one, the body is read as usual.
    let fits = "POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n12345678";
    assert_eq!(send(addr, fits.as_bytes()).0.text(), "8");
    let expect = "POST /any HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\
                  Content-Length: 9\r\n\r\n";
    let mut stream = connect(addr);
    stream.write_all(expect.as_bytes()).expect("write head");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let interim = read_response(&mut reader, true).expect("interim");
    assert_eq!(interim.status, 100);
    stream.write_all(b"123456789").expect("write body");
    assert_eq!(
        read_response(&mut reader, false).expect("final").text(),
        "9"
    );
}

#[test]
fn a_client_fin_that_arrives_with_its_last_bytes_is_seen_at_once() {
    // Long deadlines: only noticing the FIN can close these connections within the test.
    let config = ServerConfig {
        header_read_timeout_ms: 120_000,
        idle_timeout_ms: 120_000,
        ..quick_config()
    };
    let server = spawn(config);
    let addr = server.local_addr();
    let inputs: [&[u8]; 3] = [
        b"GET /inline/x HTTP/1.1\r\nHost",
        b"GET /inline/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc",
    ];
    let mut readers = Vec::new();
    for round in 0..10 {
        for input in inputs {
            let mut stream = connect(addr);
            // The bytes and the FIN leave together, so they usually reach the server in the
            // same readiness report: a short read there does not mean "nothing more".
            stream.write_all(input).expect("write");
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
            readers.push((round, input, BufReader::new(stream)));
        }
    }
    for (round, input, mut reader) in readers {
        if input.ends_with(b"\r\n\r\n") {
            let resp = read_response(&mut reader, false).expect("the complete request's answer");
            assert_eq!(resp.status, 200);
        }
        assert!(
            is_closed(&mut reader),
            "round {round}: {:?} left open",
            String::from_utf8_lossy(input)
        );
    }
    wait_until("no connection left", || server.connections() == 0);
}

/// Streams that stay open until `gate` opens, and a worker route beside them.
struct Holder {
    gate: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl lithair::http::Handler for Holder {
    fn call(&self, req: &mut lithair::http::Request) -> lithair::http::Response {
        if req.path != "/hold" {
            return lithair::http::Response::text(200, "worked");
        }
        let gate = std::sync::Arc::clone(&self.gate);
        lithair::http::Response::stream(200, "text/plain", move |out| {
            out.write_all(b"first")?;
            let (open, changed) = &*gate;
            let mut open = open.lock().expect("gate");
            while !*open {
                open = changed.wait(open).expect("gate");
            }
            out.write_all(b",last")
        })
    }
}

/// Reads the head and the first chunk of a `/hold` stream.
fn open_hold(addr: std::net::SocketAddr) -> BufReader<std::net::TcpStream> {
    use std::io::BufRead;
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        assert!(reader.read_line(&mut line).expect("head") > 0, "head cut");
    }
    line.clear();
    reader.read_line(&mut line).expect("chunk size");
    assert_eq!(line, "5\r\n");
    line.clear();
    reader.read_line(&mut line).expect("chunk");
    assert_eq!(line, "first\r\n");
    reader
}

#[test]
fn long_streams_run_beside_the_workers_up_to_streams_max() {
    use std::io::Read;
    let config = ServerConfig {
        worker_threads: 2,
        streams_max: 4,
        ..quick_config()
    };
    let gate = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let holder = Holder {
        gate: std::sync::Arc::clone(&gate),
    };
    let server = spawn_handler(config, holder);
    let addr = server.local_addr();
    // Twice as many open streams as workers: handlers still run (before, each stream held a
    // worker for its whole life and this request waited behind them).
    let mut holds: Vec<_> = (0..4).map(|_| open_hold(addr)).collect();
    let (resp, _) = send(addr, b"GET /work HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((resp.status, resp.text().as_str()), (200, "worked"));
    // One stream over streams_max: its head went out, then the connection closes.
    let mut over = connect(addr);
    over.write_all(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let mut rest = Vec::new();
    let _ = over.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(!rest.contains("first"), "a body past the limit ran: {rest}");
    // Opened, every held stream completes and its connection serves on.
    {
        let (open, changed) = &*gate;
        *open.lock().expect("gate") = true;
        changed.notify_all();
    }
    for reader in &mut holds {
        let resp = {
            let mut tail = [0u8; 16];
            let want = b"5\r\n,last\r\n0\r\n\r\n";
            reader.read_exact(&mut tail[..want.len()]).expect("tail");
            assert_eq!(&tail[..want.len()], want);
            reader
                .get_mut()
                .write_all(b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n")
                .expect("write");
            read_response(reader, false).expect("a response after the stream")
        };
        assert_eq!((resp.status, resp.text().as_str()), (200, "worked"));
    }
    // The stream threads are free again.
    let reader = open_hold(addr);
    drop(reader);
    drop(holds);
    server.shutdown();
    server.join().expect("join");
}

#[test]
fn an_announced_body_is_not_reserved_before_its_bytes_arrive() {
    // A server that accepts huge uploads: a head announcing 1 TiB must not make it allocate
    // 1 TiB up front (the allocation fails and aborts the process) for bytes that never come.
    let config = ServerConfig {
        body_bytes_max: 1 << 41,
        ..quick_config()
    };
    let server = spawn(config);
    let addr = server.local_addr();
    for _ in 0..8 {
        let mut stream = connect(addr);
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1099511627776\r\n\r\nabc",
            )
            .expect("write");
        drop(stream);
    }
    let (resp, _) = send(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 200, "the server still serves");
}

/// The bodies the server holds at once are bounded, not only each body: clients that each
/// send most of a body and stall hold memory until the budget is spent, then a body that
/// would pass it is refused (503, `Retry-After`, close) and its bytes freed; a body given up
/// frees its share, and bodies already held complete normally.
#[test]
fn the_bodies_held_at_once_are_bounded() {
    const BODY: usize = 60 * 1024;
    let config = ServerConfig {
        body_bytes_max: 64 * 1024,
        bodies_held_bytes_max: 4 * BODY + BODY / 2,
        ..quick_config()
    };
    let (server, stats) = spawn_counted(config);
    let addr = server.local_addr();
    let head = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY}\r\n\r\n");
    let start = |sent: usize| {
        let mut stream = connect(addr);
        stream.write_all(head.as_bytes()).expect("head");
        stream
            .write_all(&vec![b'x'; sent])
            .expect("part of the body");
        stream
    };
    // Four bodies, each 50 KiB in and stalled: each holds its announced 60 KiB.
    let mut held: Vec<_> = (0..4).map(|_| start(50 * 1024)).collect();
    wait_until("four bodies held", || {
        stats.bodies().held_bytes == 4 * BODY as u64
    });
    // A fifth does not fit: refused at once, and it holds nothing.
    let (resp, mut reader) = send(addr, head.as_bytes());
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(is_closed(&mut reader));
    assert_eq!(stats.bodies().refused, 1);
    assert_eq!(stats.bodies().held_bytes, 4 * BODY as u64);
    // One client gives up: its share comes back, and a new body fits.
    drop(held.pop());
    wait_until("one body freed", || {
        stats.bodies().held_bytes == 3 * BODY as u64
    });
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&vec![b'y'; BODY]);
    let (resp, _) = send(addr, &body);
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with(&"y".repeat(BODY)), "the whole body");
    // The stalled ones finish and are answered; then nothing is held.
    for stream in &mut held {
        stream.write_all(&vec![b'x'; 10 * 1024]).expect("rest");
    }
    for stream in held {
        let mut reader = BufReader::new(stream);
        let resp = read_response(&mut reader, false).expect("answer");
        assert_eq!(resp.status, 200);
        assert!(resp.text().ends_with(&"x".repeat(BODY)), "the whole body");
    }
    wait_until("nothing held", || stats.bodies().held_bytes == 0);
    assert_eq!(stats.bodies().refused, 1);
}

/// Length of each of the bodies [`two_bodies_held`] holds.
const HELD_BODY: usize = 60 * 1024;

/// A server whose body budget (128 KiB, twice its 64 KiB body limit) holds two bodies of
/// [`HELD_BODY`] announced, each with `sent` bytes of it sent, then stalled; returned once
/// both are charged, with their streams (dropping them frees the budget).
fn two_bodies_held(
    sent: usize,
) -> (
    lithair::http::ServerHandle,
    lithair::http::stats::ServerStats,
    Vec<std::net::TcpStream>,
) {
    let config = ServerConfig {
        body_bytes_max: 64 * 1024,
        bodies_held_bytes_max: 128 * 1024,
        ..quick_config()
    };
    let (server, stats) = spawn_counted(config);
    let addr = server.local_addr();
    let head = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {HELD_BODY}\r\n\r\n");
    let held = (0..2)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(head.as_bytes()).expect("head");
            stream
                .write_all(&vec![b'x'; sent])
                .expect("part of the body");
            stream
        })
        .collect();
    wait_until("two bodies held", || {
        stats.bodies().held_bytes == 2 * HELD_BODY as u64
    });
    (server, stats, held)
}

/// A chunked body is charged as it is decoded: past the budget it is refused like a body
/// with a length, and its connection's earlier bodies are untouched.
#[test]
fn a_chunked_body_past_the_budget_is_refused() {
    let (server, stats, _held) = two_bodies_held(1024);
    let addr = server.local_addr();
    let chunk = "c".repeat(16 * 1024);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    let (resp, mut reader) = send(addr, chunked.as_bytes());
    assert_eq!(resp.status, 503);
    assert!(is_closed(&mut reader));
    assert_eq!(stats.bodies().refused, 1);
    assert_eq!(stats.bodies().held_bytes, 2 * HELD_BODY as u64);
}

/// A body the budget cannot take is refused before any `100 Continue`: a client that waits for
/// it is told at once not to send the body (it used to get the 100, then the 503).
#[test]
fn a_body_past_the_budget_gets_no_100_continue() {
    let (server, _stats, _held) = two_bodies_held(0);
    let addr = server.local_addr();
    let asking = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {HELD_BODY}\r\nExpect: 100-continue\r\n\r\n"
    );
    let (resp, _) = send(addr, asking.as_bytes());
    assert_eq!(
        resp.status, 503,
        "the first answer is the refusal, not a 100"
    );
}

/// A body with a length is charged what it announced, never more: its buffer grows by
/// doubling, but no further than the announced length (past the 64 KiB reserved up front, a
/// doubling would have held 128 KiB for this 100 KiB body).
#[test]
fn a_body_with_a_length_is_charged_no_more_than_it_announced() {
    const BODY: usize = 100 * 1024;
    let (server, stats) = spawn_counted(quick_config());
    let mut stream = connect(server.local_addr());
    let head = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY}\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&[b'x'; BODY - 1]).expect("all but a byte");
    wait_until("the body held at its length", || {
        stats.bodies().held_bytes == BODY as u64
    });
}
