//! HTTP Upgrade (RFC 9110 §7.8, RFC 9112 §9.9... and RFC 6455 §4): after a `101 Switching
//! Protocols` answer the connection speaks another protocol. The protocol is an [`Upgraded`]
//! object (sans-IO: bytes and time in, bytes out) that the handler returns with
//! [`Response::upgrade`]; the reactor keeps driving the same socket with it, so an upgraded
//! connection costs memory, not a thread.
//!
//! Owns: the [`Upgraded`] contract and `Driver`, the per-connection glue that reads the
//! socket into the protocol, writes its output, coalesces wake-ups and applies the write
//! deadline.
//! Must not: know any upgraded protocol (WebSocket lives in `ws`), block, or touch the poller
//! (the connection tells the reactor which readiness it wants).

use super::handler::catch_logged;
use super::response::Response;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Reading pauses while this much upgraded output waits to be written (the peer is not
/// reading what it asks for, e.g. an echo client that only sends).
pub const UPGRADED_OUTPUT_PAUSE_BYTES: usize = 1024 * 1024;

/// Rounds of "write, then let the protocol refill" per flush, so one connection with a deep
/// queue cannot hold the reactor.
const FLUSH_ROUNDS_MAX: usize = 16;

/// Schedules [`Upgraded::on_wake`] on the connection's reactor thread. Callable from any thread,
/// any number of times: wake-ups are coalesced.
pub type UpgradeWaker = Arc<dyn Fn() + Send + Sync>;

/// A protocol that takes over a connection after `101 Switching Protocols`. Every method runs
/// on the reactor thread: none may block. A panic in a callback is caught and ends this
/// connection alone (its pending output is dropped and nothing more is called).
pub trait Upgraded: Send {
    /// The 101 was queued; `waker` schedules `on_wake` from other threads; `now_ms` is the
    /// reactor's monotonic clock (the same one `on_tick` gets).
    fn start(&mut self, waker: UpgradeWaker, now_ms: u64);
    /// Bytes received from the peer (the first call may carry bytes that followed the request).
    fn on_input(&mut self, bytes: &[u8]);
    /// The peer closed its sending side, or the connection is being dropped.
    fn on_eof(&mut self);
    /// The waker fired.
    fn on_wake(&mut self);
    /// Output was written out completely: room for more.
    fn on_writable(&mut self) {}
    /// Timers (monotonic milliseconds).
    fn on_tick(&mut self, now_ms: u64);
    /// Bytes to write.
    fn output(&self) -> &[u8];
    /// `count` bytes of [`Upgraded::output`] were written.
    fn consume_output(&mut self, count: usize);
    /// The protocol is over and its output written: the connection may close.
    fn is_finished(&self) -> bool;
    /// The server is shutting down: end the protocol politely (a WebSocket sends close 1001).
    fn begin_shutdown(&mut self);
}

/// The protocol a response hands the connection to (see [`Response::upgrade`]).
pub struct Upgrade(pub Box<dyn Upgraded>);

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgrade(..)")
    }
}

impl Response {
    /// `response` (which must be a 101) followed by `protocol` on the same connection. A
    /// request that asks for an upgrade (`Connection: upgrade` and `Upgrade`) is a pipelining
    /// barrier: bytes after it go to `protocol`.
    pub fn upgrade(mut response: Response, protocol: Box<dyn Upgraded>) -> Response {
        assert_eq!(response.status, 101, "only a 101 hands the connection over");
        response.upgrade = Some(Upgrade(protocol));
        response
    }
}

/// True when `connection` (the `Connection` header) and `upgrade` (the `Upgrade` header) ask
/// for a protocol switch.
pub fn is_upgrade_request(connection: Option<&str>, upgrade: Option<&str>) -> bool {
    let asks = connection.is_some_and(|value| {
        value
            .split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    });
    asks && upgrade.is_some_and(|value| !value.trim().is_empty())
}

/// What a read round ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The socket is drained (the next edge will tell).
    Drained,
    /// Reading paused for backpressure with bytes possibly left: re-arm when output drains.
    Paused,
    /// The peer closed its side.
    Eof,
}

/// Drives one upgraded connection for its reactor.
pub(crate) struct Driver {
    inner: Box<dyn Upgraded>,
    woken: Arc<AtomicBool>,
    /// When output started waiting, or last made progress (for the write deadline).
    pub write_progress_ms: u64,
    pub peer_eof: bool,
    started: bool,
    /// A callback of the protocol panicked: it is not called again, its output is dropped and
    /// the connection closes.
    failed: bool,
}

impl Driver {
    pub fn new(inner: Box<dyn Upgraded>, now_ms: u64) -> Driver {
        Driver {
            inner,
            woken: Arc::new(AtomicBool::new(false)),
            write_progress_ms: now_ms,
            peer_eof: false,
            started: false,
            failed: false,
        }
    }

    /// Runs one callback of the protocol. Protocols run on the reactor, so a panic unwinding
    /// from one would take down every connection of that reactor: it is caught and logged,
    /// and this connection alone ends. Nothing is called after a panic.
    fn guard(&mut self, callback: &'static str, f: impl FnOnce(&mut dyn Upgraded)) {
        if self.failed {
            return;
        }
        let inner = &mut *self.inner;
        if catch_logged(callback, "closing its connection", || f(inner)).is_none() {
            self.failed = true;
        }
    }

    /// Starts the protocol; `notify` posts a wake-up to the reactor, called at most once until
    /// the reactor delivers it (see [`Driver::on_wake`]).
    pub fn start(&mut self, notify: Arc<dyn Fn() + Send + Sync>, now_ms: u64, leftover: &[u8]) {
        assert!(!self.started, "an upgraded connection starts once");
        self.started = true;
        let woken = Arc::clone(&self.woken);
        let waker: UpgradeWaker = Arc::new(move || {
            if !woken.swap(true, Ordering::AcqRel) {
                notify();
            }
        });
        self.guard("Upgraded::start", |p| p.start(waker, now_ms));
        if !leftover.is_empty() {
            self.guard("Upgraded::on_input", |p| p.on_input(leftover));
        }
    }

    /// The reactor delivered a wake-up.
    pub fn on_wake(&mut self) {
        // Cleared before running, so a wake during `on_wake` posts a new one.
        self.woken.store(false, Ordering::Release);
        self.guard("Upgraded::on_wake", |p| p.on_wake());
    }

    pub fn on_tick(&mut self, now_ms: u64) {
        self.guard("Upgraded::on_tick", |p| p.on_tick(now_ms));
    }

    pub fn begin_shutdown(&mut self) {
        self.guard("Upgraded::begin_shutdown", |p| p.begin_shutdown());
    }

    pub fn is_finished(&self) -> bool {
        self.failed || self.inner.is_finished()
    }

    pub fn has_output(&self) -> bool {
        !self.failed && !self.inner.output().is_empty()
    }

    /// Whether to read more now.
    pub fn wants_read(&self) -> bool {
        !self.failed && !self.peer_eof && self.inner.output().len() < UPGRADED_OUTPUT_PAUSE_BYTES
    }

    /// Reads until the socket is drained or output backs up, feeding the protocol. With
    /// `peer_closed` (the FIN came with the data) a short read is not the end: reading goes on
    /// to the EOF, which no later edge would report.
    pub fn read(
        &mut self,
        stream: &TcpStream,
        buf: &mut [u8],
        peer_closed: bool,
    ) -> std::io::Result<ReadEnd> {
        assert!(!buf.is_empty(), "read buffer must not be empty");
        loop {
            if !self.wants_read() {
                return Ok(ReadEnd::Paused);
            }
            match (&*stream).read(buf) {
                Ok(0) => {
                    self.peer_eof = true;
                    self.guard("Upgraded::on_eof", |p| p.on_eof());
                    return Ok(ReadEnd::Eof);
                }
                Ok(n) => {
                    self.guard("Upgraded::on_input", |p| p.on_input(&buf[..n]));
                    if n < buf.len() && !peer_closed {
                        return Ok(ReadEnd::Drained);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the protocol's output until the socket is full; when it empties, lets the
    /// protocol refill (hub queues) and goes round again, a bounded number of times.
    pub fn flush(&mut self, stream: &TcpStream, now_ms: u64) -> std::io::Result<()> {
        for _ in 0..FLUSH_ROUNDS_MAX {
            if self.failed {
                return Ok(());
            }
            let pending = self.inner.output().len();
            if pending == 0 {
                self.write_progress_ms = now_ms;
                return Ok(());
            }
            let written = match (&*stream).write(self.inner.output()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => 0,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            assert!(written <= pending, "wrote more than was pending");
            if written > 0 {
                self.write_progress_ms = now_ms;
                self.guard("Upgraded::consume_output", |p| p.consume_output(written));
            }
            if written < pending {
                return Ok(());
            }
            self.guard("Upgraded::on_writable", |p| p.on_writable());
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A connection dropped mid-protocol (error, deadline, shutdown) still ends the
        // protocol, so it leaves its hub and its handler sees the end.
        if self.started && !self.is_finished() && !self.peer_eof {
            self.guard("Upgraded::on_eof", |p| p.on_eof());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// Echoes its input; records what happened to it.
    #[derive(Default)]
    struct Probe {
        output: Vec<u8>,
        log: Arc<Mutex<Vec<String>>>,
        waker: Arc<Mutex<Option<UpgradeWaker>>>,
        finished: bool,
        /// `on_input` panics (a protocol bug).
        panics_on_input: bool,
    }

    impl Upgraded for Probe {
        fn start(&mut self, waker: UpgradeWaker, now_ms: u64) {
            *self.waker.lock().unwrap() = Some(waker);
            self.log.lock().unwrap().push(format!("start {now_ms}"));
        }
        fn on_input(&mut self, bytes: &[u8]) {
            assert!(!self.panics_on_input, "on_input panics on purpose");
            self.output.extend_from_slice(bytes);
        }
        fn on_eof(&mut self) {
            self.log.lock().unwrap().push("eof".into());
        }
        fn on_wake(&mut self) {
            self.log.lock().unwrap().push("wake".into());
        }
        fn on_tick(&mut self, _now_ms: u64) {}
        fn output(&self) -> &[u8] {
            &self.output
        }
        fn consume_output(&mut self, count: usize) {
            self.output.drain(..count);
        }
        fn is_finished(&self) -> bool {
            self.finished
        }
        fn begin_shutdown(&mut self) {
            self.finished = true;
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (server, client)
    }

    #[test]
    fn a_panicking_protocol_ends_its_connection_alone() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            log: Arc::clone(&log),
            panics_on_input: true,
            ..Probe::default()
        };
        let (server, mut client) = pair();
        let mut driver = Driver::new(Box::new(probe), 0);
        driver.start(Arc::new(|| {}), 0, b"");
        client.write_all(b"boom").expect("write");
        let mut buf = [0u8; 64];
        let mut end = ReadEnd::Drained;
        for _ in 0..1000 {
            // The bytes may need a moment to cross loopback.
            end = driver.read(&server, &mut buf, false).expect("read");
            if driver.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            driver.is_finished(),
            "the panic ended the protocol ({end:?})"
        );
        assert!(!driver.has_output() && !driver.wants_read());
        assert!(driver.flush(&server, 1).is_ok());
        driver.on_wake();
        driver.on_tick(2);
        driver.begin_shutdown();
        drop(driver);
        assert_eq!(
            *log.lock().unwrap(),
            ["start 0"],
            "nothing is called after the panic, not even on_eof at the drop"
        );
    }

    #[test]
    fn wakes_are_coalesced_until_delivered() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            log: Arc::clone(&log),
            ..Probe::default()
        };
        let handed: Arc<Mutex<Option<UpgradeWaker>>> = Arc::default();
        let probe = Probe {
            waker: Arc::clone(&handed),
            ..probe
        };
        let notified = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&notified);
        let mut driver = Driver::new(Box::new(probe), 5);
        driver.start(
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            5,
            b"early",
        );
        assert!(driver.has_output(), "leftover bytes reach the protocol");
        let waker = handed
            .lock()
            .unwrap()
            .clone()
            .expect("the protocol got a waker");
        waker();
        waker();
        waker();
        assert_eq!(
            notified.load(Ordering::SeqCst),
            1,
            "one notice until on_wake"
        );
        driver.on_wake();
        waker();
        assert_eq!(notified.load(Ordering::SeqCst), 2);
        assert_eq!(*log.lock().unwrap(), ["start 5", "wake"]);
    }

    #[test]
    fn reads_echo_and_pause_when_output_backs_up() {
        let (server, mut client) = pair();
        let mut driver = Driver::new(Box::<Probe>::default(), 0);
        driver.start(Arc::new(|| {}), 0, b"");
        client.write_all(b"hello").expect("send");
        let mut buf = [0u8; 16];
        let mut end = ReadEnd::Drained;
        for _ in 0..1000 {
            end = driver.read(&server, &mut buf, false).expect("read");
            if driver.has_output() {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(end, ReadEnd::Drained);
        driver.flush(&server, 1).expect("flush");
        assert!(!driver.has_output());
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).expect("echo");
        assert_eq!(&echoed, b"hello");
        // More pending output than the pause threshold: reading stops.
        driver
            .inner
            .on_input(&vec![0u8; UPGRADED_OUTPUT_PAUSE_BYTES]);
        assert!(!driver.wants_read());
        assert_eq!(
            driver.read(&server, &mut buf, false).expect("read"),
            ReadEnd::Paused
        );
        drop(client);
    }

    #[test]
    fn a_short_read_with_the_peer_closed_goes_on_to_the_eof() {
        let (server, mut client) = pair();
        let mut driver = Driver::new(Box::<Probe>::default(), 0);
        driver.start(Arc::new(|| {}), 0, b"");
        client.write_all(b"bye").expect("send");
        client.shutdown(std::net::Shutdown::Write).expect("fin");
        let mut probe = [0u8; 8];
        // The bytes are queued; on loopback the FIN is queued by the time `shutdown` returns.
        // Both then come in one epoll report, and one read call must reach the EOF.
        while server.peek(&mut probe).expect("peek") < 3 {
            std::thread::yield_now();
        }
        let mut buf = [0u8; 16];
        assert_eq!(
            driver.read(&server, &mut buf, true).expect("read"),
            ReadEnd::Eof
        );
        assert!(driver.peer_eof);
    }

    #[test]
    fn dropping_a_running_protocol_ends_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            log: Arc::clone(&log),
            ..Probe::default()
        };
        let mut driver = Driver::new(Box::new(probe), 0);
        driver.start(Arc::new(|| {}), 0, b"");
        drop(driver);
        assert_eq!(*log.lock().unwrap(), ["start 0", "eof"]);
        // A finished protocol is not told twice.
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            log: Arc::clone(&log),
            ..Probe::default()
        };
        let mut driver = Driver::new(Box::new(probe), 0);
        driver.start(Arc::new(|| {}), 0, b"");
        driver.begin_shutdown();
        assert!(driver.is_finished());
        drop(driver);
        assert_eq!(*log.lock().unwrap(), ["start 0"]);
    }

    #[test]
    fn upgrade_requests_need_both_headers() {
        assert!(is_upgrade_request(
            Some("keep-alive, Upgrade"),
            Some("websocket")
        ));
        assert!(is_upgrade_request(Some("upgrade"), Some("h2c")));
        assert!(!is_upgrade_request(Some("keep-alive"), Some("websocket")));
        assert!(!is_upgrade_request(Some("upgrade"), None));
        assert!(!is_upgrade_request(None, Some("websocket")));
        assert!(!is_upgrade_request(Some("upgradeish"), Some("websocket")));
    }
}
