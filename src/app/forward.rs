//! Forwarding a follower's requests to the leader's HTTP port.
//!
//! Owns: the pipelined link to the leader (a few persistent HTTP/1.1 connections; a writer
//! thread batches every queued request into one `write`; a reader thread per connection parses
//! the answers in order and completes each request's deferred response), its bounds (a queue
//! of `FORWARD_QUEUE_MAX` requests, a deadline of `FORWARD_TIMEOUT_MS` per request), the
//! blocking pool of keep-alive connections that signed operator requests use, and reading one
//! HTTP/1.1 response off a stream.
//! Must not: decide which requests are forwarded or to which node (`cluster` does), or send a
//! request twice: once its bytes may have reached the leader, a lost answer is a 503 with
//! `Retry-After` (the outcome is unknown; the client's `Idempotency-Key` makes its retry safe).
//!
//! Threads: one writer per link (it also dials, enforces deadlines and closes idle
//! connections), one reader per connection. A request never waits for a thread of its own: the
//! HTTP thread that forwards it returns a deferred response at once.

use super::cluster::{
    unavailable, FORWARD_CONNECTIONS_PER_PEER_MAX, FORWARD_HEAD_BYTES_MAX, FORWARD_IDLE_MS_MAX,
    FORWARD_RESPONSE_BYTES_MAX, FORWARD_TIMEOUT_MS,
};
use crate::http::{Responder, Response};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Connections of the pipelined link to the leader, at most. A few spread the parsing over
/// the leader's reactors and this node's reader threads; each carries many requests at once
/// (the leader reads up to its `PIPELINE_IN_FLIGHT_MAX` requests ahead on each; more wait in
/// the socket buffers).
pub const FORWARD_LINK_CONNECTIONS: usize = 4;
/// Requests a node holds for the leader at most (queued or in flight); one more is a 503
/// with `Retry-After` at once.
pub const FORWARD_QUEUE_MAX: usize = 4096;
/// How often the link's writer looks at the deadlines of requests in flight, in milliseconds.
pub const FORWARD_TICK_MS: u64 = 50;
/// Read buffer of a link connection, in bytes (many pipelined answers per `read`).
const LINK_READ_BUFFER_BYTES: usize = 64 * 1024;

/// The bounds of a link; the constants above, except in tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkSettings {
    /// Connections at most.
    pub connections: usize,
    /// Requests queued or in flight at most.
    pub queue_max: usize,
    /// Deadline of a request, from its submission.
    pub timeout: Duration,
    /// An idle connection older than this is closed before it would carry a request.
    pub idle_max: Duration,
}

impl LinkSettings {
    /// The production bounds.
    pub(crate) fn standard() -> LinkSettings {
        LinkSettings {
            connections: FORWARD_LINK_CONNECTIONS,
            queue_max: FORWARD_QUEUE_MAX,
            timeout: Duration::from_millis(FORWARD_TIMEOUT_MS),
            idle_max: Duration::from_millis(FORWARD_IDLE_MS_MAX),
        }
    }
}

/// Sends requests to the current leader over a pipelined link, answering through deferred
/// responses. When the leader changes, the old link is retired (its queued requests get a
/// 503, its requests in flight their answers or a 503) and a new one starts.
pub(crate) struct Forwarder {
    settings: LinkSettings,
    current: Mutex<Option<Arc<Link>>>,
}

impl Forwarder {
    /// A forwarder with no link yet.
    pub(crate) fn new(settings: LinkSettings) -> Forwarder {
        assert!(settings.connections > 0, "a link needs a connection");
        assert!(settings.queue_max > 0, "a link needs a queue");
        Forwarder {
            settings,
            current: Mutex::new(None),
        }
    }

    /// Queues `request` (a whole encoded HTTP/1.1 request) for the leader at `addr`;
    /// `responder` receives the leader's answer, or a 503 with `Retry-After`. Never blocks on
    /// the network.
    pub(crate) fn send(&self, addr: &str, request: Vec<u8>, responder: Responder) {
        match self.link_to(addr) {
            Ok(link) => link.submit(request, responder),
            Err(e) => responder.complete(unavailable(&format!(
                "cannot start forwarding to the leader at {addr}: {e}"
            ))),
        }
    }

    /// Requests queued or in flight to the current leader.
    #[cfg(test)]
    fn outstanding(&self) -> usize {
        let current = lock(&self.current);
        current
            .as_ref()
            .map_or(0, |link| link.outstanding.load(Ordering::Acquire))
    }

    fn link_to(&self, addr: &str) -> std::io::Result<Arc<Link>> {
        let mut current = lock(&self.current);
        if let Some(link) = current.as_ref() {
            if link.addr == addr && !link.stopped.load(Ordering::Acquire) {
                return Ok(Arc::clone(link));
            }
        }
        if let Some(old) = current.take() {
            old.retire();
        }
        let link = Link::start(addr, self.settings)?;
        *current = Some(Arc::clone(&link));
        Ok(link)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(link) = lock(&self.current).take() {
            link.retire();
        }
    }
}

/// Locks `mutex`, recovering from poisoning: every critical section here is a few pushes and
/// pops that leave the data whole, and responders still answer when dropped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A request waiting for the writer.
struct Queued {
    bytes: Vec<u8>,
    responder: Responder,
    deadline: Instant,
}

/// A request written on a connection, waiting for its answer.
struct Waiting {
    responder: Responder,
    deadline: Instant,
}

struct LinkState {
    queue: Vec<Queued>,
    retired: bool,
}

/// The link to one leader. INVARIANT: `outstanding` counts the requests submitted and not
/// yet answered (queued, being written, or in flight).
struct Link {
    addr: String,
    settings: LinkSettings,
    state: Mutex<LinkState>,
    wake: Condvar,
    outstanding: AtomicUsize,
    /// The writer thread ended (retired, or it panicked): the link takes no more requests.
    stopped: AtomicBool,
}

impl Link {
    fn start(addr: &str, settings: LinkSettings) -> std::io::Result<Arc<Link>> {
        let link = Arc::new(Link {
            addr: addr.to_string(),
            settings,
            state: Mutex::new(LinkState {
                queue: Vec::new(),
                retired: false,
            }),
            wake: Condvar::new(),
            outstanding: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let writer = Arc::clone(&link);
        std::thread::Builder::new()
            .name("lithair-forward".into())
            .spawn(move || {
                let stopped = StopOnExit(Arc::clone(&writer));
                write_loop(&writer);
                drop(stopped);
            })?;
        Ok(link)
    }

    fn submit(&self, bytes: Vec<u8>, responder: Responder) {
        let before = self.outstanding.fetch_add(1, Ordering::AcqRel);
        if before >= self.settings.queue_max {
            self.finish(
                responder,
                unavailable("too many requests are waiting for the leader"),
            );
            return;
        }
        let deadline = Instant::now() + self.settings.timeout;
        let mut state = lock(&self.state);
        if state.retired || self.stopped.load(Ordering::Acquire) {
            drop(state);
            self.finish(responder, unavailable("the leader changed"));
            return;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push(Queued {
            bytes,
            responder,
            deadline,
        });
        drop(state);
        // A writer busy writing takes the whole queue on its next turn: one wake per batch.
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Answers one outstanding request.
    fn finish(&self, responder: Responder, response: Response) {
        // Counted out before the answer is handed over: whoever got the answer must not see
        // its request still outstanding (the unit tests check the count right after).
        let before = self.outstanding.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "forward link: more answers than requests");
        responder.complete(response);
    }

    fn retire(&self) {
        lock(&self.state).retired = true;
        self.wake.notify_one();
    }

    /// Waits for queued requests (at most one tick while `ticking` or retired: deadlines of
    /// requests in flight still run), then takes them all.
    fn next_batch(&self, ticking: bool) -> (Vec<Queued>, bool) {
        let mut state = lock(&self.state);
        if state.queue.is_empty() {
            state = if ticking || state.retired {
                let tick = Duration::from_millis(FORWARD_TICK_MS);
                self.wake
                    .wait_timeout(state, tick)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            } else {
                self.wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            };
        }
        (std::mem::take(&mut state.queue), state.retired)
    }
}

/// Marks the link stopped when its writer thread ends, however it ends, and answers what is
/// left in its queue (a 503 each: never sent).
struct StopOnExit(Arc<Link>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        let link = &self.0;
        link.stopped.store(true, Ordering::Release);
        let left = std::mem::take(&mut lock(&link.state).queue);
        for queued in left {
            link.finish(queued.responder, unavailable("the leader changed"));
        }
    }
}

/// One connection of a link and the writer's view of it.
struct Slot {
    wire: Arc<Wire>,
    used: Instant,
}

/// The writer thread: takes every queued request at once, writes them with one `write` on
/// the least busy connection, and between batches enforces deadlines and closes idle
/// connections. Ends once the link is retired and nothing is in flight.
fn write_loop(link: &Arc<Link>) {
    let mut slots: Vec<Slot> = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let ticking = slots.iter().any(|slot| slot.wire.in_flight() > 0);
        let (batch, retired) = link.next_batch(ticking);
        tend(&mut slots, link.settings.idle_max);
        if retired {
            for queued in batch {
                link.finish(queued.responder, unavailable("the leader changed"));
            }
            if slots.iter().all(|slot| slot.wire.in_flight() == 0) {
                for slot in &slots {
                    slot.wire.kill("the link closed");
                }
                return;
            }
            continue;
        }
        if !batch.is_empty() {
            send_batch(link, &mut slots, batch, &mut buffer);
        }
    }
}

/// Closes connections whose oldest request passed its deadline (answers arrive in order, so
/// nothing behind it can be answered either) and connections idle for longer than `idle_max`,
/// then forgets closed ones.
fn tend(slots: &mut Vec<Slot>, idle_max: Duration) {
    let now = Instant::now();
    for slot in slots.iter() {
        let wire = &slot.wire;
        if wire
            .front_deadline()
            .is_some_and(|deadline| deadline <= now)
        {
            wire.kill("the leader did not answer in time");
        } else if wire.in_flight() == 0 && now.duration_since(slot.used) > idle_max {
            wire.kill("idle");
        }
    }
    slots.retain(|slot| !slot.wire.is_dead());
}

fn send_batch(link: &Arc<Link>, slots: &mut Vec<Slot>, batch: Vec<Queued>, buffer: &mut Vec<u8>) {
    let now = Instant::now();
    buffer.clear();
    let mut waiting = Vec::with_capacity(batch.len());
    for queued in batch {
        if queued.deadline <= now {
            link.finish(
                queued.responder,
                unavailable("the leader did not answer in time"),
            );
            continue;
        }
        buffer.extend_from_slice(&queued.bytes);
        waiting.push(Waiting {
            responder: queued.responder,
            deadline: queued.deadline,
        });
    }
    if waiting.is_empty() {
        return;
    }
    let wire = match pick_wire(link, slots, now) {
        Ok(wire) => wire,
        Err(e) => {
            let detail = format!("cannot reach the leader at {}: {e}", link.addr);
            for request in waiting {
                link.finish(request.responder, unavailable(&detail));
            }
            return;
        }
    };
    // In flight before the first byte leaves: the answer may come back before `write` returns.
    if let Err(refused) = wire.begin(waiting) {
        for request in refused {
            link.finish(
                request.responder,
                unavailable("lost the connection to the leader"),
            );
        }
        return;
    }
    if let Err(e) = (&wire.stream).write_all(buffer) {
        wire.kill(&format!("cannot write to the leader: {e}"));
    }
}

/// The live connection with the fewest requests in flight; a new one while every open one is
/// busy and the link has room for more.
fn pick_wire(link: &Arc<Link>, slots: &mut Vec<Slot>, now: Instant) -> std::io::Result<Arc<Wire>> {
    slots.retain(|slot| !slot.wire.is_dead());
    let least_in_flight = slots.iter().map(|slot| slot.wire.in_flight()).min();
    let busy = least_in_flight.is_none_or(|in_flight| in_flight > 0);
    if busy && slots.len() < link.settings.connections {
        match Wire::dial(link) {
            Ok(wire) => {
                slots.push(Slot {
                    wire: Arc::clone(&wire),
                    used: now,
                });
                return Ok(wire);
            }
            Err(e) if slots.is_empty() => return Err(e),
            Err(_) => {} // Carry on over the connections already open.
        }
    }
    let slot = slots
        .iter_mut()
        .min_by_key(|slot| slot.wire.in_flight())
        .ok_or_else(|| std::io::Error::other("no connection"))?;
    slot.used = now;
    Ok(Arc::clone(&slot.wire))
}

struct Flight {
    waiting: VecDeque<Waiting>,
    /// Closed: nothing more is sent or answered on it.
    dead: bool,
}

/// One pipelined connection. INVARIANT: `flight.waiting` holds, in the order they were
/// written, the requests whose answers have not been read yet; empty once `dead`.
struct Wire {
    stream: TcpStream,
    flight: Mutex<Flight>,
    link: Arc<Link>,
}

impl Wire {
    /// Connects to the leader and starts the connection's reader thread.
    fn dial(link: &Arc<Link>) -> std::io::Result<Arc<Wire>> {
        let stream = connect(&link.addr, link.settings.timeout)?;
        // The reader blocks until an answer or the close; deadlines are the writer's job.
        stream.set_read_timeout(None)?;
        let reader = stream.try_clone()?;
        let wire = Arc::new(Wire {
            stream,
            flight: Mutex::new(Flight {
                waiting: VecDeque::new(),
                dead: false,
            }),
            link: Arc::clone(link),
        });
        let read_side = Arc::clone(&wire);
        std::thread::Builder::new()
            .name("lithair-forward-read".into())
            .spawn(move || read_loop(&read_side, reader))?;
        Ok(wire)
    }

    /// Records `requests` as in flight, after those already there; gives them back when the
    /// connection closed meanwhile.
    fn begin(&self, requests: Vec<Waiting>) -> Result<(), Vec<Waiting>> {
        let mut flight = lock(&self.flight);
        if flight.dead {
            return Err(requests);
        }
        flight.waiting.extend(requests);
        Ok(())
    }

    fn in_flight(&self) -> usize {
        lock(&self.flight).waiting.len()
    }

    fn front_deadline(&self) -> Option<Instant> {
        lock(&self.flight).waiting.front().map(|w| w.deadline)
    }

    fn is_dead(&self) -> bool {
        lock(&self.flight).dead
    }

    /// Closes the connection (once) and answers every request in flight with a 503: their
    /// outcome is unknown.
    fn kill(&self, reason: &str) {
        let orphans = {
            let mut flight = lock(&self.flight);
            if flight.dead {
                return;
            }
            flight.dead = true;
            std::mem::take(&mut flight.waiting)
        };
        // Wakes the reader blocked in `read`; it finds the connection dead and ends.
        let _ = self.stream.shutdown(Shutdown::Both);
        for request in orphans {
            self.link.finish(request.responder, unavailable(reason));
        }
    }
}

/// The reader thread: parses answers in order and completes the oldest request in flight
/// with each; any error (close, reset, malformed answer) closes the connection. Answers that
/// arrived together (one `read`) are completed together, once the buffer is used up: their
/// connections' reactors are woken once for the lot instead of once per answer.
fn read_loop(wire: &Wire, stream: TcpStream) {
    let mut reader = BufReader::with_capacity(LINK_READ_BUFFER_BYTES, stream);
    let mut answered: Vec<(Responder, Response)> = Vec::new();
    loop {
        if reader.buffer().is_empty() {
            // The next parse may block in `read`: answer what is parsed first.
            complete_all(wire, &mut answered);
        }
        let answer = match read_response(&mut reader) {
            Ok(answer) => answer,
            Err(e) => {
                complete_all(wire, &mut answered);
                wire.kill(&format!("lost the connection to the leader: {e}"));
                return;
            }
        };
        let oldest = lock(&wire.flight).waiting.pop_front();
        let Some(request) = oldest else {
            complete_all(wire, &mut answered);
            wire.kill("the leader answered a request it was not sent");
            return;
        };
        answered.push((request.responder, answer.response));
        if !answer.keep_alive {
            complete_all(wire, &mut answered);
            wire.kill("the leader closed the connection");
            return;
        }
    }
}

/// Completes the parsed answers, oldest first, posted to each reactor together (one lock and
/// at most one wake-up per reactor).
fn complete_all(wire: &Wire, answered: &mut Vec<(Responder, Response)>) {
    if answered.is_empty() {
        return;
    }
    crate::http::deliver_together(|| {
        for (responder, response) in answered.drain(..) {
            wire.link.finish(responder, response);
        }
    });
}

pub(crate) fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// A request on its way to the leader.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    /// Fields as (name, value bytes): a value that arrived not UTF-8 goes on as received.
    pub(crate) headers: &'a [(String, Vec<u8>)],
    pub(crate) body: &'a [u8],
}

impl Outgoing<'_> {
    pub(crate) fn encode(&self, host: &str) -> Vec<u8> {
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        let mut out = head.into_bytes();
        for (name, value) in self.headers {
            for part in [name.as_bytes(), b": ", value, b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
        let length = format!("Content-Length: {}\r\n\r\n", self.body.len());
        out.extend_from_slice(length.as_bytes());
        out.extend_from_slice(self.body);
        out
    }
}

/// A keep-alive connection to the leader, idle in the pool or in use.
struct Pooled {
    reader: BufReader<TcpStream>,
    idle_since: Instant,
}

/// One peer's connections: the idle ones and how many are open in all.
#[derive(Default)]
struct PeerConnections {
    idle: Vec<Pooled>,
    open: usize,
}

/// Keep-alive connections to the leader's HTTP port, at most
/// `FORWARD_CONNECTIONS_PER_PEER_MAX` per address: a forward takes an idle one (or dials
/// while under the bound, or waits for one), and gives it back unless it broke.
#[derive(Default)]
pub(crate) struct ForwardPool {
    peers: Mutex<HashMap<String, PeerConnections>>,
    released: Condvar,
}

impl ForwardPool {
    /// Sends `request` to `addr` and reads the answer. A reused connection the leader closed
    /// while idle fails before any answer byte; that case alone is retried once, fresh.
    pub(crate) fn exchange(&self, addr: &str, request: &Outgoing<'_>) -> std::io::Result<Response> {
        let encoded = request.encode(addr);
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.checkout(addr)? {
                Some(conn) => (conn, true),
                None => match dial(addr) {
                    Ok(conn) => (conn, false),
                    Err(e) => {
                        self.checkin(addr, None);
                        return Err(e);
                    }
                },
            };
            let outcome = conn
                .reader
                .get_mut()
                .write_all(&encoded)
                .and_then(|()| read_response(&mut conn.reader));
            match outcome {
                Ok(answer) => {
                    conn.idle_since = Instant::now();
                    self.checkin(addr, answer.keep_alive.then_some(conn));
                    return Ok(answer.response);
                }
                Err(e) => {
                    self.checkin(addr, None);
                    if !(reused && !retried && closed_before_answer(&e)) {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    /// An idle connection (`Some`), or `None` with a slot reserved for the caller to dial.
    fn checkout(&self, addr: &str) -> std::io::Result<Option<Pooled>> {
        let deadline = Instant::now() + Duration::from_millis(FORWARD_TIMEOUT_MS);
        let mut peers = self.peers.lock().expect("forward pool poisoned");
        loop {
            let peer = peers.entry(addr.to_string()).or_default();
            let before = peer.idle.len();
            let max_idle = Duration::from_millis(FORWARD_IDLE_MS_MAX);
            peer.idle
                .retain(|conn| conn.idle_since.elapsed() < max_idle);
            peer.open -= before - peer.idle.len();
            if let Some(conn) = peer.idle.pop() {
                return Ok(Some(conn));
            }
            if peer.open < FORWARD_CONNECTIONS_PER_PEER_MAX {
                peer.open += 1;
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "every connection to the leader is busy",
                ));
            }
            peers = self
                .released
                .wait_timeout(peers, deadline - now)
                .expect("forward pool poisoned")
                .0;
        }
    }

    /// Gives a healthy connection back, or (`None`) frees the slot of a broken one.
    fn checkin(&self, addr: &str, conn: Option<Pooled>) {
        let mut peers = self.peers.lock().expect("forward pool poisoned");
        let peer = peers.entry(addr.to_string()).or_default();
        match conn {
            Some(conn) => peer.idle.push(conn),
            None => {
                assert!(peer.open > 0, "forward pool: slot freed twice for {addr}");
                peer.open -= 1;
            }
        }
        assert!(
            peer.idle.len() <= peer.open,
            "forward pool: more idle than open"
        );
        self.released.notify_one();
    }
}

fn dial(addr: &str) -> std::io::Result<Pooled> {
    let stream = connect(addr, Duration::from_millis(FORWARD_TIMEOUT_MS))?;
    Ok(Pooled {
        reader: BufReader::new(stream),
        idle_since: Instant::now(),
    })
}

/// Whether `error` means the peer closed the connection before answering anything.
fn closed_before_answer(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
    )
}

/// A response read off a connection, and whether the connection may carry another request.
pub(crate) struct Answer {
    pub(crate) response: Response,
    pub(crate) keep_alive: bool,
}

fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("malformed answer: {what}"),
    )
}

/// Reads one line (without CRLF) of at most `budget` remaining head bytes. End of input
/// before the first byte of the answer is `UnexpectedEof`; anywhere else it is malformed.
fn read_line(reader: &mut impl BufRead, budget: &mut u64, first: bool) -> std::io::Result<String> {
    let mut line = Vec::new();
    let read = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    if read == 0 && first {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    *budget -= read as u64;
    if line.pop() != Some(b'\n') {
        return Err(malformed("truncated or oversized head"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| malformed("head is not UTF-8"))
}

/// Reads exactly one HTTP/1.1 response (Content-Length, chunked, or until close). Only an
/// answer that never began is `UnexpectedEof` (the one case a caller may retry).
pub(crate) fn read_response(reader: &mut impl BufRead) -> std::io::Result<Answer> {
    let mut budget = FORWARD_HEAD_BYTES_MAX;
    let status_line = read_line(reader, &mut budget, true)?;
    read_after_status(reader, &status_line, budget).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            malformed("truncated")
        } else {
            e
        }
    })
}

fn read_after_status(
    reader: &mut impl BufRead,
    status_line: &str,
    mut budget: u64,
) -> std::io::Result<Answer> {
    let mut words = status_line.split_whitespace();
    let version = words.next().ok_or_else(|| malformed("no status line"))?;
    let status: u16 = words
        .next()
        .and_then(|code| code.parse().ok())
        .filter(|code| (100..600).contains(code))
        .ok_or_else(|| malformed("no status code"))?;
    let mut response = Response::new(status);
    let (mut length, mut chunked) = (None, false);
    let mut keep_alive = version == "HTTP/1.1";
    loop {
        let line = read_line(reader, &mut budget, false)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| malformed("header"))?;
        let (name, value) = (name.trim(), value.trim());
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let len: u64 = value.parse().map_err(|_| malformed("content-length"))?;
                length = Some(len);
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep_alive &= !value.eq_ignore_ascii_case("close"),
            "keep-alive" | "date" | "server" => {}
            _ => response = response.with_header(name.to_string(), value.to_string()),
        }
    }
    let bodiless = status < 200 || status == 204 || status == 304;
    let body = if bodiless {
        Vec::new()
    } else if chunked {
        read_chunked(reader)?
    } else if let Some(len) = length {
        if len > FORWARD_RESPONSE_BYTES_MAX {
            return Err(malformed("body too large"));
        }
        // Grown as the bytes arrive: an announced length is a claim, not bytes.
        let mut body = Vec::new();
        read_exactly(reader, len, &mut body)?;
        body
    } else {
        keep_alive = false;
        let mut body = Vec::new();
        reader
            .take(FORWARD_RESPONSE_BYTES_MAX)
            .read_to_end(&mut body)?;
        body
    };
    Ok(Answer {
        response: response.with_body(body),
        keep_alive,
    })
}

/// Appends exactly `len` bytes of `reader` to `body`, growing it as they arrive;
/// `UnexpectedEof` when the stream ends first.
fn read_exactly(reader: &mut impl BufRead, len: u64, body: &mut Vec<u8>) -> std::io::Result<()> {
    let start = body.len();
    reader.take(len).read_to_end(body)?;
    if (body.len() - start) as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer's answer ended inside its body",
        ));
    }
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut budget = FORWARD_HEAD_BYTES_MAX;
    loop {
        let line = read_line(reader, &mut budget, false)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| malformed("chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader, &mut budget, false)?.is_empty() {}
            return Ok(body);
        }
        // Subtracted, not added: a size near u64::MAX must not wrap past the bound.
        if size > FORWARD_RESPONSE_BYTES_MAX - body.len() as u64 {
            return Err(malformed("body too large"));
        }
        read_exactly(reader, size, &mut body)?;
        if !read_line(reader, &mut budget, false)?.is_empty() {
            return Err(malformed("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::deferred::Deferred;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A peer's chunk size near `u64::MAX` is a malformed answer, not an overflow (it wrapped
    /// past the body bound and panicked slicing; found by fuzzing); a body cut short is an
    /// error too, and a whole one reads back.
    #[test]
    fn a_peers_chunk_size_near_u64_max_is_malformed_not_a_panic() {
        let read = |bytes: &[u8]| read_response(&mut std::io::BufReader::new(bytes));
        let huge =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n";
        let error = read(huge).err().expect("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let error = read(short).err().expect("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains("truncated"), "{error}");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(read(cut).is_err());
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let answer = read(whole).expect("whole");
        assert_eq!(answer.response.body.as_bytes(), Some(&b"abcde"[..]));
    }

    /// What a fake leader does with the requests it reads.
    #[derive(Clone, Copy)]
    enum Leader {
        /// Answers each request with its own body, prefixed by this name.
        Echo(&'static str),
        /// Reads and never answers.
        Silent,
        /// Reads `n` requests, then closes the connection without answering.
        CloseAfter(usize),
    }

    /// A leader on a loopback port, serving every connection with `behaviour`; its thread
    /// ends with the test process.
    fn fake_leader(behaviour: Leader) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                std::thread::spawn(move || serve_fake(stream, behaviour));
            }
        });
        addr
    }

    fn serve_fake(stream: TcpStream, behaviour: Leader) {
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut served = 0;
        loop {
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            served += 1;
            match behaviour {
                Leader::Echo(name) => {
                    let text = format!("{name}:{}", String::from_utf8_lossy(&body));
                    let answer = format!(
                        "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    writer.write_all(answer.as_bytes()).expect("answer");
                }
                Leader::Silent => {}
                Leader::CloseAfter(n) if served >= n => return,
                Leader::CloseAfter(_) => {}
            }
        }
    }

    fn settings(timeout_ms: u64, queue_max: usize) -> LinkSettings {
        LinkSettings {
            connections: 2,
            queue_max,
            timeout: Duration::from_millis(timeout_ms),
            idle_max: Duration::from_millis(FORWARD_IDLE_MS_MAX),
        }
    }

    fn request(addr: &str, body: &str) -> Vec<u8> {
        let headers = [("Content-Type".to_string(), b"text/plain".to_vec())];
        let outgoing = Outgoing {
            method: "POST",
            target: "/api/items",
            headers: &headers,
            body: body.as_bytes(),
        };
        outgoing.encode(addr)
    }

    #[test]
    fn outgoing_header_values_are_written_as_their_bytes() {
        let headers = [
            ("Cookie".to_string(), b"n=caf\xe9".to_vec()),
            ("X-Plain".to_string(), b"ok".to_vec()),
        ];
        let outgoing = Outgoing {
            method: "PUT",
            target: "/x",
            headers: &headers,
            body: b"{}",
        };
        let expected: &[u8] = b"PUT /x HTTP/1.1\r\nHost: l:1\r\nCookie: n=caf\xe9\r\n\
                                X-Plain: ok\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(outgoing.encode("l:1"), expected);
    }

    /// A responder whose answer arrives on `answers`, tagged with `tag`.
    fn responder(answers: &mpsc::Sender<(usize, Response)>, tag: usize) -> Responder {
        let (mut placeholder, responder) = Response::deferred();
        let deferred = Deferred::take(&mut placeholder).expect("a deferred placeholder");
        let answers = answers.clone();
        let now = deferred.attach(
            placeholder,
            Box::new(move |response| {
                let _ = answers.send((tag, response));
            }),
        );
        assert!(now.is_none(), "answered before the request was sent");
        responder
    }

    /// Bound on waiting for an answer the test expects (a hang fails the test).
    const ANSWER_WAIT: Duration = Duration::from_secs(20);

    fn body(response: &Response) -> String {
        String::from_utf8_lossy(response.body.as_bytes().unwrap_or_default()).into_owned()
    }

    fn assert_unavailable(response: &Response) {
        assert_eq!(response.status, 503, "{}", body(response));
        assert_eq!(response.headers.get("retry-after"), Some("1"));
    }

    #[test]
    fn pipelined_answers_go_to_their_own_requests() {
        let addr = fake_leader(Leader::Echo("leader"));
        let forwarder = Forwarder::new(settings(FORWARD_TIMEOUT_MS, 1000));
        let (sender, answers) = mpsc::channel();
        let count = 300;
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (forwarder, addr, sender) = (&forwarder, &addr, sender.clone());
                scope.spawn(move || {
                    for k in (thread..count).step_by(4) {
                        forwarder.send(addr, request(addr, &k.to_string()), responder(&sender, k));
                    }
                });
            }
        });
        for _ in 0..count {
            let (tag, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
            assert_eq!(response.status, 201);
            assert_eq!(body(&response), format!("leader:{tag}"));
        }
        assert_eq!(forwarder.outstanding(), 0);
    }

    #[test]
    fn a_leader_that_never_answers_gets_503_at_the_deadline() {
        let addr = fake_leader(Leader::Silent);
        let forwarder = Forwarder::new(settings(200, 1000));
        send_expecting_unavailable(&forwarder, &addr, 5);
        assert_eq!(forwarder.outstanding(), 0);
    }

    /// Sends `count` requests to `addr` and expects each to be answered 503 + `Retry-After`.
    fn send_expecting_unavailable(forwarder: &Forwarder, addr: &str, count: usize) {
        let (sender, answers) = mpsc::channel();
        for k in 0..count {
            forwarder.send(addr, request(addr, "x"), responder(&sender, k));
        }
        for _ in 0..count {
            let (_, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
            assert_unavailable(&response);
        }
    }

    #[test]
    fn a_connection_lost_with_requests_in_flight_answers_each_503() {
        let addr = fake_leader(Leader::CloseAfter(3));
        let forwarder = Forwarder::new(settings(FORWARD_TIMEOUT_MS, 1000));
        send_expecting_unavailable(&forwarder, &addr, 3);
    }

    #[test]
    fn a_full_queue_answers_503_at_once() {
        let addr = fake_leader(Leader::Silent);
        let forwarder = Forwarder::new(settings(FORWARD_TIMEOUT_MS, 2));
        let (sender, answers) = mpsc::channel();
        for k in 0..3 {
            forwarder.send(&addr, request(&addr, "x"), responder(&sender, k));
        }
        // The leader answers nothing for 10 s: the first answer is the refusal of the third.
        let (tag, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
        assert_eq!(tag, 2);
        assert_unavailable(&response);
        assert_eq!(forwarder.outstanding(), 2);
    }

    #[test]
    fn an_unreachable_leader_answers_503() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let forwarder = Forwarder::new(settings(FORWARD_TIMEOUT_MS, 10));
        let (sender, answers) = mpsc::channel();
        forwarder.send(&addr, request(&addr, "x"), responder(&sender, 0));
        let (_, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
        assert_unavailable(&response);
    }

    #[test]
    fn requests_in_flight_to_a_replaced_leader_still_end_with_an_answer() {
        let old = fake_leader(Leader::Silent);
        let new = fake_leader(Leader::Echo("new"));
        let forwarder = Forwarder::new(settings(300, 10));
        let (sender, answers) = mpsc::channel();
        for k in 0..2 {
            forwarder.send(&old, request(&old, "x"), responder(&sender, k));
        }
        forwarder.send(&new, request(&new, "y"), responder(&sender, 2));
        let mut statuses = [0; 3];
        for _ in 0..3 {
            let (tag, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
            if tag < 2 {
                assert_unavailable(&response);
            } else {
                assert_eq!(body(&response), "new:y");
            }
            statuses[tag] = response.status;
        }
        assert_eq!(statuses, [503, 503, 201]);
    }

    #[test]
    fn a_new_leader_gets_the_requests_sent_after_the_change() {
        let first = fake_leader(Leader::Echo("first"));
        let second = fake_leader(Leader::Echo("second"));
        let forwarder = Forwarder::new(settings(FORWARD_TIMEOUT_MS, 10));
        let (sender, answers) = mpsc::channel();
        for (k, addr) in [&first, &second, &first].into_iter().enumerate() {
            forwarder.send(addr, request(addr, "x"), responder(&sender, k));
            let (tag, response) = answers.recv_timeout(ANSWER_WAIT).expect("an answer");
            assert_eq!(tag, k);
            let name = if addr == &first { "first" } else { "second" };
            assert_eq!(body(&response), format!("{name}:x"));
        }
    }

    fn parse(bytes: &[u8]) -> std::io::Result<Answer> {
        read_response(&mut BufReader::new(bytes))
    }

    #[test]
    fn reads_content_length_chunked_and_close_delimited_answers() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let answer = parse(plain).unwrap();
        assert_eq!(answer.response.status, 201);
        assert!(answer.keep_alive);
        assert_eq!(
            answer.response.headers.get("content-type"),
            Some("application/json")
        );
        assert_eq!(answer.response.body.as_bytes(), Some(&b"{}"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let answer = parse(chunked).unwrap();
        assert_eq!(answer.response.body.as_bytes(), Some(&b"abcde"[..]));
        assert!(!answer.keep_alive);
        let until_close = parse(b"HTTP/1.1 200 OK\r\n\r\nrest").unwrap();
        assert_eq!(until_close.response.body.as_bytes(), Some(&b"rest"[..]));
        assert!(!until_close.keep_alive);
    }

    #[test]
    fn two_answers_on_one_connection_are_read_one_at_a_time() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = BufReader::new(&bytes[..]);
        let first = read_response(&mut reader).unwrap();
        assert_eq!(first.response.body.as_bytes(), Some(&b"a"[..]));
        let second = read_response(&mut reader).unwrap();
        assert_eq!(second.response.status, 204);
        let third = read_response(&mut reader).err().unwrap();
        assert_eq!(third.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let cases: [&[u8]; 6] = [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
            b"HTTP/1.1 200",
        ];
        for case in cases {
            let error = parse(case).err().expect("a malformed answer was accepted");
            // Bytes of an answer arrived: never mistaken for a connection closed while idle.
            assert!(!closed_before_answer(&error), "{error}");
        }
    }
}
