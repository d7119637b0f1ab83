//! One connection's state machine: reads bytes, parses heads and bodies, dispatches complete
//! requests (inline on the reactor or to the worker pool), keeps responses in request order
//! (pipelining), serializes them into one buffer and writes it with one `write`, and sends a
//! file body the page cache holds itself, as its non-blocking socket takes it.
//!
//! Owns: per-connection buffers (borrowed from the reactor while in use, so an idle
//! connection holds none), the pipeline of response slots, the ordering rule for pipelined
//! requests (RFC 9112 §9.3.2: only safe methods run in parallel), and every per-connection
//! deadline.
//! Must not: block, or poll (the reactor owns the poller and tells it what we want).

use super::chunked::ChunkedDecoder;
use super::deferred::{Answer, Deferred, DeliverAnswer};
use super::direct::{send_region_now, Stopped};
use super::handler::{catch_logged, handler_failed_response, run_handler};
use super::limits::{FILE_BODY_BUFFERED_BYTES_MAX, REACTOR_FILE_STEP_BYTES};
use super::parse::{framing, parse_head, BodyKind, HeadLimits, HeaderSlot, ParseError, Status};
use super::pool::{Job, Submitter};
use super::problem::Problem;
use super::reactor::{Completion, Inbox, Outcome, Shared};
use super::request::{Method, RawHeaderValues, Request, Trailers, Version};
use super::response::{read_file_region, Body, Response};
use super::stats::{coarse_us_since, RequestKind, StatsSlot};
use super::upgrade::{is_upgrade_request, Driver, ReadEnd};
use super::writer::{write_response_heads, Direct, Exchange};
use super::Handler;
use crate::sys::Interest;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

/// Header slots on the stack for the common case; more (up to the configured maximum) are
/// parsed again into a heap slice.
const HEADER_SLOTS_INLINE: usize = 16;
/// Pending output beyond which we stop reading more requests (the client is not reading).
const OUTPUT_BACKPRESSURE_BYTES: usize = 256 * 1024;
/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Most of a `Content-Length` body reserved before its bytes arrive (one read buffer's worth).
const BODY_RESERVE_UPFRONT_BYTES: u64 = 64 * 1024;
/// Connection sockets are edge-triggered: one `epoll_wait` report per change, no re-polling
/// of every ready socket on each wait (the level-triggered cost that dominated the profile).
pub(crate) const EDGE_READ: Interest = Interest {
    read: true,
    write: false,
    edge: true,
};
/// Methods listed for `OPTIONS *`.
const ALLOW_ALL: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// What the reactor must do after a call into the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep going; update the poller interest.
    Continue,
    /// Close the socket now.
    Close,
    /// Unregister the socket and hand it to a worker to send a streamed/file body.
    StartDirect,
}

/// Everything a connection borrows from its reactor for one call.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    /// This reactor's answer counters.
    pub responses: &'a StatsSlot,
    pub inbox: &'a Arc<Inbox>,
    pub token: u64,
    /// The reactor's clock at this wakeup (see `http::stats` on what it times).
    pub now_us: u64,
    /// This wakeup on the kernel's monotonic clock (`None`: not read there).
    pub wakeup_raw_us: Option<u64>,
    pub now_ms: u64,
    /// The `Server` and `Date` lines, rendered once per second.
    pub common_head: &'a [u8],
    /// The same lines after the status line of a 200 (one copy for the usual answer).
    pub ok_head: &'a [u8],
    pub write_buf: &'a mut Vec<u8>,
    pub scratch: &'a mut Request,
}

impl Ctx<'_> {
    /// Now, on the reactor's clock, for timing an answer: the wakeup's reading, later by as
    /// much as the kernel's coarse clock has moved since (a handler run inline may have held
    /// the reactor for milliseconds; an answer given after it must not count 0). Never past
    /// the true time; what it misses is under a tick (see `stats::coarse_us_since`).
    fn answer_us(&self) -> u64 {
        self.now_us + coarse_us_since(self.wakeup_raw_us)
    }
}

enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
}

enum Reading {
    Head,
    Body {
        request: Box<Request>,
        exchange: Exchange,
        body: BodyState,
        /// The body limit for this request: the server's, or the route's when lower.
        body_bytes_max: u64,
        /// `Expect: 100-continue` came behind requests still unanswered: the interim 100
        /// goes out once their responses are queued (never before them), unless body bytes
        /// arrive first (RFC 9110 §10.1.1: the client need not wait).
        continue_owed: bool,
    },
}

/// A streamed or file body waiting for the output to drain, being sent by the reactor as
/// the socket takes it (a file region in the page cache), or by a stream thread.
pub(crate) enum DirectState {
    Idle,
    Pending(Direct),
    /// A file region the reactor is sending on this connection (`send_file_now`).
    Sending {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
    Running,
}

struct Slot {
    exchange: Exchange,
    in_order: bool,
    /// The request asked for a protocol switch: a 101 with an upgrade takes the connection.
    upgrade_request: bool,
    response: Option<Response>,
    /// What the answer's time is counted from, and as.
    timed: Timed,
}

/// When a request was complete on the reactor's clock (its answer's time counts from it),
/// and its kind (`http::stats` times reads and writes apart).
#[derive(Clone, Copy)]
struct Timed {
    started_us: u64,
    kind: RequestKind,
}

impl Timed {
    /// A complete `request`, now.
    fn request(ctx: &Ctx<'_>, request: &Request) -> Timed {
        let kind = match request.method.is_safe() {
            true => RequestKind::Read,
            false => RequestKind::Write,
        };
        Timed {
            started_us: ctx.now_us,
            kind,
        }
    }

    /// An answer of the connection's own (a framing or limit error), now: no request reached
    /// the app, so it counts as a read.
    fn refusal(ctx: &Ctx<'_>) -> Timed {
        Timed {
            started_us: ctx.now_us,
            kind: RequestKind::Read,
        }
    }
}

/// Whether `request` must wait for the requests before it and hold back those after it: a
/// method that is not safe (RFC 9110 §9.2.1), unless the handler says the request depends on
/// no other request of the connection (`Handler::unordered`).
fn keeps_order(handler: &dyn Handler, request: &Request) -> bool {
    !request.method.is_safe()
        // Called on the reactor: a panic must not unwind through it (see `catch_logged`).
        && !catch_logged("Handler::unordered", "keeping the request in order", || {
            handler.unordered(request)
        })
        .unwrap_or(false)
}

/// Whether `request` asks for a protocol switch. Without an `Upgrade` field (nearly every
/// request) the `Connection` field is not looked up.
fn asks_upgrade(request: &Request) -> bool {
    match request.header("upgrade") {
        None => false,
        upgrade => is_upgrade_request(request.header("connection"), upgrade),
    }
}

/// Where a complete request lives: the reactor's reusable scratch request, or its own box.
enum Source {
    Scratch,
    Boxed(Box<Request>),
}

/// One client connection. INVARIANT: `waiting` counts slots with no response yet and
/// `waiting_in_order` those among them that keep their order (method not safe, and not
/// `Handler::unordered`); slot `i` answers request number `first_seq + i`.
pub(crate) struct Conn {
    pub stream: TcpStream,
    pub peer: Option<SocketAddr>,
    input: Vec<u8>,
    output: Vec<u8>,
    reading: Reading,
    head_started_ms: Option<u64>,
    last_activity_ms: u64,
    write_progress_ms: u64,
    slots: VecDeque<Slot>,
    first_seq: u64,
    waiting: usize,
    waiting_in_order: usize,
    /// A request that must wait for those before it, with its completion time.
    held: Option<(Box<Request>, Exchange, Timed)>,
    accept_more: bool,
    peer_eof: bool,
    close_after_flush: bool,
    pub direct: DirectState,
    linger_deadline_ms: Option<u64>,
    pub interest: Interest,
    /// Reading stopped with bytes possibly left in the socket: the registration must be
    /// modified (re-armed) even if the interest is unchanged, or no new edge would come.
    pub rearm: bool,
    /// An upgrade request is in the pipeline: parse nothing after it until it is answered (the
    /// bytes that follow may belong to the new protocol).
    upgrade_barrier: bool,
    /// The protocol that took the connection over after a 101 (see `http::upgrade`).
    upgraded: Option<Driver>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: Option<SocketAddr>, now_ms: u64) -> Conn {
        Conn {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            reading: Reading::Head,
            head_started_ms: None,
            last_activity_ms: now_ms,
            write_progress_ms: now_ms,
            slots: VecDeque::new(),
            first_seq: 0,
            waiting: 0,
            waiting_in_order: 0,
            held: None,
            accept_more: true,
            peer_eof: false,
            close_after_flush: false,
            direct: DirectState::Idle,
            linger_deadline_ms: None,
            interest: EDGE_READ,
            rearm: false,
            upgrade_barrier: false,
            upgraded: None,
        }
    }

    /// True when more request bytes may be parsed now.
    fn can_parse(&self, ctx_pipeline_max: usize) -> bool {
        let body_in_progress = matches!(self.reading, Reading::Body { .. });
        self.held.is_none()
            && self.slots.len() < ctx_pipeline_max
            && matches!(self.direct, DirectState::Idle)
            && self.output.len() < OUTPUT_BACKPRESSURE_BYTES
            && (self.accept_more || body_in_progress)
            && self.linger_deadline_ms.is_none()
            && !self.close_after_flush
            && !self.upgrade_barrier
            && self.upgraded.is_none()
    }

    /// The poller interest this connection wants (`None` while a worker owns the socket).
    pub fn desired_interest(&self, pipeline_max: usize) -> Option<Interest> {
        if matches!(self.direct, DirectState::Running) {
            return None;
        }
        if self.linger_deadline_ms.is_some() {
            return Some(EDGE_READ);
        }
        if let Some(driver) = &self.upgraded {
            return Some(Interest {
                read: driver.wants_read(),
                write: !self.output.is_empty() || driver.has_output(),
                edge: true,
            });
        }
        let sending = matches!(self.direct, DirectState::Sending { .. });
        Some(Interest {
            read: !self.peer_eof && self.can_parse(pipeline_max),
            write: !self.output.is_empty() || sending,
            edge: true,
        })
    }

    /// True when nothing is pending: no partial request, no response owed, nothing to write.
    pub fn is_idle(&self) -> bool {
        matches!(self.reading, Reading::Head)
            && self.input.is_empty()
            && self.slots.is_empty()
            && self.output.is_empty()
            && self.held.is_none()
            && matches!(self.direct, DirectState::Idle)
            && self.upgraded.is_none()
    }

    /// Reads until the socket is drained (a short read, or EOF when `peer_closed`: the FIN
    /// came with the data and no later edge will report it), or until no more requests may be
    /// parsed for now (then asks for a re-arm), and processes what arrived.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8], peer_closed: bool) -> Flow {
        if self.linger_deadline_ms.is_none() {
            if let Some(driver) = &mut self.upgraded {
                match driver.read(&self.stream, buf, peer_closed) {
                    Ok(ReadEnd::Paused) => self.rearm = true,
                    Ok(ReadEnd::Drained | ReadEnd::Eof) => {}
                    Err(_) => return Flow::Close,
                }
                self.peer_eof |= driver.peer_eof;
                self.last_activity_ms = ctx.now_ms;
                return self.pump(ctx);
            }
        }
        let pipeline_max = ctx.shared.config.pipeline_in_flight_max;
        loop {
            let n = match (&self.stream).read(buf) {
                Ok(0) => return self.on_eof(ctx),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Flow::Close,
            };
            let drained = n < buf.len() && !peer_closed;
            if self.linger_deadline_ms.is_some() {
                if drained {
                    return Flow::Continue; // Discarding input until the peer closes.
                }
                continue;
            }
            self.last_activity_ms = ctx.now_ms;
            if self.input.is_empty() {
                let used = self.consume(ctx, &buf[..n]);
                if used < n {
                    self.input.extend_from_slice(&buf[used..n]);
                }
            } else {
                self.input.extend_from_slice(&buf[..n]);
            }
            if drained {
                break;
            }
            if !self.can_parse(pipeline_max) || self.input.len() >= OUTPUT_BACKPRESSURE_BYTES {
                self.rearm = true;
                break;
            }
        }
        self.pump(ctx)
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        // Requests already buffered are still parsed and answered (`printf ... | nc -N`);
        // a partial head left at the end closes the connection in `maybe_finish`.
        self.peer_eof = true;
        if self.linger_deadline_ms.is_some() {
            return Flow::Close;
        }
        self.pump(ctx)
    }

    /// Dispatches what became possible, parses buffered input, serializes ready responses and
    /// writes them. Called after every event concerning this connection.
    pub fn pump(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        let pipeline_max = ctx.shared.config.pipeline_in_flight_max;
        loop {
            let blocked = self.parse_buffered(ctx);
            self.serialize_ready(ctx);
            if self.write_output(ctx).is_err() {
                return Flow::Close;
            }
            // A file body sent whole here frees the answers behind it: go round again.
            match self.send_file_now(ctx) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) => return Flow::Close,
            }
            // Answers written may have freed pipeline room for requests already buffered: no
            // socket event will come for those bytes, so go round again. Each round either
            // parses at least one request or stops.
            if !(blocked && !self.input.is_empty() && self.can_parse(pipeline_max)) {
                break;
            }
        }
        if self.upgraded.is_some() {
            return self.pump_upgraded(ctx);
        }
        if self.peer_eof && self.input.is_empty() && matches!(self.reading, Reading::Body { .. }) {
            // Every byte before the FIN is parsed: a body still open is truncated and can
            // never complete; nothing to answer.
            self.reading = Reading::Head;
        }
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = Vec::new(); // An idle connection keeps no buffer.
        }
        if matches!(self.direct, DirectState::Pending(_)) {
            return if self.output.is_empty() {
                Flow::StartDirect
            } else {
                Flow::Continue
            };
        }
        self.maybe_finish(ctx)
    }

    /// Parses buffered input while allowed; true when it stopped because parsing is not
    /// allowed right now (rather than for lack of bytes).
    fn parse_buffered(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let pipeline_max = ctx.shared.config.pipeline_in_flight_max;
        loop {
            self.release_held(ctx);
            if self.input.is_empty() {
                return false;
            }
            if !self.can_parse(pipeline_max) {
                return true;
            }
            let input = std::mem::take(&mut self.input);
            let used = self.consume(ctx, &input);
            self.input = input;
            self.input.drain(..used);
            if used == 0 {
                return false;
            }
        }
    }

    fn maybe_finish(&mut self, ctx: &Ctx<'_>) -> Flow {
        let done = self.slots.is_empty()
            && self.output.is_empty()
            && self.held.is_none()
            && matches!(self.direct, DirectState::Idle);
        if !done || self.linger_deadline_ms.is_some() {
            return Flow::Continue;
        }
        if self.peer_eof {
            return Flow::Close;
        }
        if self.close_after_flush || !self.accept_more {
            // Half-close and drain: closing with unread input would send a reset that can
            // destroy the answer before the client reads it.
            if self.stream.shutdown(Shutdown::Write).is_err() {
                return Flow::Close;
            }
            self.linger_deadline_ms = Some(ctx.now_ms + ctx.shared.config.linger_ms);
            self.input = Vec::new();
        }
        Flow::Continue
    }

    /// Parses and dispatches requests from `data`; returns the bytes used.
    fn consume(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> usize {
        let pipeline_max = ctx.shared.config.pipeline_in_flight_max;
        let mut pos = 0;
        while pos < data.len() && self.can_parse(pipeline_max) {
            if matches!(self.reading, Reading::Body { .. }) {
                match self.read_body(ctx, &data[pos..]) {
                    Some(used) => pos += used,
                    None => return data.len(),
                }
                continue;
            }
            match self.parse_one(ctx, &data[pos..]) {
                Some(0) => {
                    self.head_started_ms.get_or_insert(ctx.now_ms);
                    break;
                }
                Some(used) => pos += used,
                None => return data.len(),
            }
            // More requests follow (pipelining): serialize the answers first in line now, so
            // their header lists and bodies are freed before the next request allocates its
            // own and a burst reuses the allocator's cached blocks instead of holding one per
            // request until the burst is parsed. Not behind an upgrade request: the bytes
            // after it are not in `self.input` yet. A lone request is serialized by `pump`.
            if pos < data.len() && !self.upgrade_barrier {
                self.serialize_ready(ctx);
            }
        }
        assert!(pos <= data.len(), "consumed {pos} of {}", data.len());
        pos
    }

    /// Parses one head at the start of `data` and starts its request. Some(0): need more;
    /// None: a framing error was answered and the rest must be discarded.
    fn parse_one(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Option<usize> {
        let config = &ctx.shared.config;
        let limits = HeadLimits {
            request_line_bytes_max: config.request_line_bytes_max,
            head_bytes_max: config.header_bytes_max,
        };
        let mut inline_slots = [HeaderSlot::default(); HEADER_SLOTS_INLINE];
        let mut heap_slots;
        let count = HEADER_SLOTS_INLINE.min(config.header_count_max);
        let mut result = parse_head(data, &limits, &mut inline_slots[..count]);
        let mut slots: &mut [HeaderSlot<'_>] = &mut inline_slots[..count];
        if result == Err(ParseError::TooManyHeaders) && config.header_count_max > count {
            heap_slots = vec![HeaderSlot::default(); config.header_count_max];
            result = parse_head(data, &limits, &mut heap_slots);
            slots = &mut heap_slots;
        }
        let head = match result {
            Ok(Status::Complete(head)) => head,
            Ok(Status::Partial) => return Some(0),
            Err(error) => {
                self.fail(ctx, error.status(), error.message());
                return None;
            }
        };
        self.head_started_ms = None;
        let fields = &slots[..head.header_count];
        let frame = match framing(head.version, fields) {
            Ok(frame) => frame,
            Err(error) => {
                self.fail(ctx, error.status(), error.message());
                return None;
            }
        };
        fill_request(ctx.scratch, &head, fields, self.peer);
        if !target_form_ok(&ctx.scratch.method, &ctx.scratch.target) {
            self.fail(ctx, 400, "invalid request target form");
            return None;
        }
        if !ctx.scratch.target.starts_with('/') && !adopt_target_authority(ctx.scratch) {
            self.fail(ctx, 400, "invalid authority in request target");
            return None;
        }
        // Routed on the head: the route's body limit applies before any body byte is read.
        let planned = catch_logged("Handler::plan", "answering 500", || {
            ctx.shared.handler.plan(ctx.scratch)
        });
        let Some(plan) = planned else {
            self.fail_with(ctx, handler_failed_response());
            return None;
        };
        ctx.scratch.planned.done = true;
        ctx.scratch.planned.inline = plan.inline;
        let body_bytes_max = plan
            .body_bytes_max
            .map_or(ctx.shared.config.body_bytes_max, |route| {
                route.min(ctx.shared.config.body_bytes_max)
            });
        let exchange = Exchange {
            version: head.version,
            head: matches!(ctx.scratch.method, Method::Head),
            keep_alive: frame.keep_alive && !ctx.shared.is_shutting_down(),
        };
        let body_started = data.len() > head.head_len;
        let expect_continue = frame.expect_continue && !body_started;
        self.start_body(ctx, frame.body, body_bytes_max, expect_continue, exchange)?;
        Some(head.head_len)
    }

    fn start_body(
        &mut self,
        ctx: &mut Ctx<'_>,
        kind: BodyKind,
        body_bytes_max: u64,
        expect_continue: bool,
        exchange: Exchange,
    ) -> Option<()> {
        let body = match kind {
            BodyKind::None => {
                self.complete(ctx, Source::Scratch, exchange);
                return Some(());
            }
            BodyKind::Length(n) if n > ctx.shared.config.body_bytes_max => {
                self.fail(ctx, 413, "request body too large");
                return None;
            }
            BodyKind::Length(n) if n > body_bytes_max => {
                // The route's own, lower limit: answered like the route's `BodyLimit` would.
                let problem = Problem::payload_too_large(body_bytes_max).into_response();
                self.fail_with(ctx, problem);
                return None;
            }
            BodyKind::Length(n) => BodyState::Length(n),
            BodyKind::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
        };
        let mut request = Box::new(std::mem::replace(ctx.scratch, empty_request()));
        if let BodyState::Length(n) = body {
            // An announced length is a claim, not bytes: reserving all of it before any byte
            // arrives would let idle clients pin `body_bytes_max` each (and a large configured
            // limit abort the process on a failed allocation). The vector grows with the data.
            request
                .body
                .reserve(n.min(BODY_RESERVE_UPFRONT_BYTES) as usize);
        }
        if !body_covered(&mut request, ctx) {
            // Before any `100 Continue`: the client is told at once not to send the body.
            self.refuse_body(ctx);
            return None;
        }
        // The 100 must follow every earlier response: now if none is owed, else when the
        // last of them is serialized (see `owe_continue`).
        let continue_now = expect_continue && self.slots.is_empty();
        if continue_now {
            self.output.extend_from_slice(CONTINUE);
        }
        self.reading = Reading::Body {
            request,
            exchange,
            body,
            body_bytes_max,
            continue_owed: expect_continue && !continue_now,
        };
        Some(())
    }

    /// Sends a deferred `100 Continue` once every earlier response is in the output (and no
    /// streamed or file body is still to follow them).
    fn send_owed_continue(&mut self) {
        if !self.slots.is_empty() || !matches!(self.direct, DirectState::Idle) {
            return;
        }
        if let Reading::Body { continue_owed, .. } = &mut self.reading {
            if std::mem::take(continue_owed) {
                self.output.extend_from_slice(CONTINUE);
            }
        }
    }

    /// Feeds body bytes; returns the bytes used, or None after answering a body error.
    fn read_body(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Option<usize> {
        let Reading::Body {
            request,
            body,
            body_bytes_max,
            continue_owed,
            ..
        } = &mut self.reading
        else {
            unreachable!("read_body outside a body");
        };
        // Body bytes came without waiting for the 100: a late one is not needed.
        *continue_owed = false;
        let (used, complete) = match body {
            BodyState::Length(remaining) => {
                let take = (*remaining).min(data.len() as u64) as usize;
                let body = &mut request.body;
                if body.len() + take > body.capacity() {
                    // Doubling as a vector would, but never past the announced length: the
                    // body's charge against the server's budget is its capacity.
                    let announced = body.len().saturating_add(to_usize(*remaining));
                    let target = (body.capacity() * 2).max(body.len() + take).min(announced);
                    body.reserve_exact(target - body.len());
                }
                body.extend_from_slice(&data[..take]);
                *remaining -= take as u64;
                (take, *remaining == 0)
            }
            BodyState::Chunked(decoder) => {
                match decoder.decode(data, &mut request.body, *body_bytes_max) {
                    Ok(Status::Complete(used)) => (used, true),
                    Ok(Status::Partial) => (data.len(), false),
                    Err(error) => {
                        self.fail(ctx, error.status(), error.message());
                        return None;
                    }
                }
            }
        };
        if !body_covered(request, ctx) {
            self.refuse_body(ctx);
            return None;
        }
        if complete {
            let Reading::Body {
                mut request,
                exchange,
                body,
                ..
            } = std::mem::replace(&mut self.reading, Reading::Head)
            else {
                unreachable!("body state vanished");
            };
            if let BodyState::Chunked(decoder) = body {
                attach_trailers(&mut request, &decoder);
            }
            self.complete(ctx, Source::Boxed(request), exchange);
        }
        Some(used)
    }

    /// A request is complete: answer it inline, send it to a worker, or hold it until the
    /// requests before it are answered (methods that are not safe, RFC 9110 §9.2.1, keep their order).
    fn complete(&mut self, ctx: &mut Ctx<'_>, source: Source, exchange: Exchange) {
        if !exchange.keep_alive {
            self.accept_more = false;
        }
        let request = match &source {
            Source::Scratch => &*ctx.scratch,
            Source::Boxed(request) => &**request,
        };
        let upgrade = asks_upgrade(request);
        self.upgrade_barrier |= upgrade;
        let ordered = keeps_order(&*ctx.shared.handler, request);
        let timed = Timed::request(ctx, request);
        let must_wait = self.waiting_in_order > 0 || (ordered && self.waiting > 0);
        if must_wait {
            let request = match source {
                Source::Scratch => Box::new(std::mem::replace(ctx.scratch, empty_request())),
                Source::Boxed(request) => request,
            };
            self.held = Some((request, exchange, timed));
            return;
        }
        self.dispatch(ctx, source, exchange, upgrade, timed);
    }

    fn release_held(&mut self, ctx: &mut Ctx<'_>) {
        let Some((request, _, _)) = &self.held else {
            return;
        };
        let ordered = keeps_order(&*ctx.shared.handler, request);
        if self.waiting_in_order > 0 || (ordered && self.waiting > 0) {
            return;
        }
        let Some((request, exchange, timed)) = self.held.take() else {
            return;
        };
        let upgrade = asks_upgrade(&request);
        self.dispatch(ctx, Source::Boxed(request), exchange, upgrade, timed);
    }

    /// Starts a request (timed from `timed`) and marks its slot when it asks for an upgrade.
    fn dispatch(
        &mut self,
        ctx: &mut Ctx<'_>,
        source: Source,
        exchange: Exchange,
        upgrade: bool,
        timed: Timed,
    ) {
        let slots_before = self.slots.len();
        self.dispatch_request(ctx, source, exchange, timed);
        assert_eq!(self.slots.len(), slots_before + 1, "one slot per request");
        if let Some(slot) = self.slots.back_mut() {
            slot.upgrade_request = upgrade;
        }
    }

    fn dispatch_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut source: Source,
        exchange: Exchange,
        timed: Timed,
    ) {
        let shared = ctx.shared;
        let handler: &dyn Handler = &*shared.handler;
        let request: &mut Request = match &mut source {
            Source::Scratch => ctx.scratch,
            Source::Boxed(boxed) => boxed,
        };
        if matches!(request.method, Method::Options) && request.target == "*" {
            let allow = Response::new(204).with_header("Allow", ALLOW_ALL);
            self.push_ready(exchange, timed, allow);
            return;
        }
        let seq = self.first_seq + self.slots.len() as u64;
        let inline = match request.planned.done {
            true => request.planned.inline,
            false => handler.is_inline(request),
        };
        if inline {
            let in_order = keeps_order(handler, request);
            let response = run_handler(handler, request);
            if !response.is_deferred() {
                // The usual answer: straight into its slot (a response is large to move).
                self.push_ready(exchange, timed, response);
                return;
            }
            let workers = || shared.pool.submitter();
            match settle(response, ctx.inbox, ctx.token, seq, workers, true) {
                Some(response) => self.push_ready(exchange, timed, response),
                None => self.push_waiting(exchange, timed, in_order),
            }
            return;
        }
        let mut request = match source {
            Source::Scratch => Box::new(std::mem::replace(ctx.scratch, empty_request())),
            Source::Boxed(boxed) => boxed,
        };
        let in_order = keeps_order(handler, &request);
        let handler = Arc::clone(&shared.handler);
        let inbox = Arc::clone(ctx.inbox);
        let token = ctx.token;
        let workers = shared.pool.submitter();
        let job = Box::new(move || {
            let response = buffer_small_file(run_handler(&*handler, &mut request));
            if let Some(response) = settle(response, &inbox, token, seq, || workers, false) {
                inbox.push(Completion {
                    token,
                    outcome: Outcome::Response { seq, response },
                });
            }
        });
        if shared.pool.try_submit(job).is_err() {
            let busy = Response::text(503, "server busy").with_header("Retry-After", "1");
            self.push_ready(exchange, timed, busy);
            return;
        }
        self.push_waiting(exchange, timed, in_order);
    }

    /// A slot whose answer comes later (from a worker or a deferred response), as request
    /// number `first_seq + slots.len()`.
    fn push_waiting(&mut self, exchange: Exchange, timed: Timed, in_order: bool) {
        self.waiting += 1;
        self.waiting_in_order += usize::from(in_order);
        self.slots.push_back(Slot {
            exchange,
            in_order,
            upgrade_request: false,
            response: None,
            timed,
        });
    }

    fn push_ready(&mut self, exchange: Exchange, timed: Timed, response: Response) {
        self.slots.push_back(Slot {
            exchange,
            in_order: false,
            upgrade_request: false,
            response: Some(response),
            timed,
        });
    }

    /// Answers a framing or limit error and stops reading: the rest of the input cannot be
    /// trusted to be framed the way we think.
    fn fail(&mut self, ctx: &Ctx<'_>, status: u16, message: &'static str) {
        // A problem document like every other error answer, so a client parses one shape
        // whether a route or the connection refused its request.
        let problem = Problem::new(status).with_detail(message);
        self.fail_with(ctx, problem.into_response());
    }

    /// Refuses the body being read, whose growth the server's body budget cannot take (see
    /// `http::body_budget`): 503, and its bytes freed now (the answer replaces the reading).
    fn refuse_body(&mut self, ctx: &Ctx<'_>) {
        let problem = Problem::new(503).with_detail(
            "the server holds too many request bodies at the moment; try again shortly",
        );
        self.fail_with(ctx, problem.into_response().with_header("Retry-After", "1"));
    }

    /// Like `fail`, with a response of the caller's making.
    fn fail_with(&mut self, ctx: &Ctx<'_>, response: Response) {
        self.accept_more = false;
        self.reading = Reading::Head;
        self.head_started_ms = None;
        self.input = Vec::new();
        let exchange = Exchange {
            version: Version::Http11,
            head: false,
            keep_alive: false,
        };
        self.push_ready(exchange, Timed::refusal(ctx), response);
    }

    /// A worker finished request number `seq`.
    pub fn on_response(&mut self, seq: u64, response: Response) {
        if seq < self.first_seq {
            return; // The pipeline was abandoned (connection closing); drop the answer.
        }
        let index = (seq - self.first_seq) as usize;
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        assert!(slot.response.is_none(), "two responses for request {seq}");
        slot.response = Some(response);
        assert!(self.waiting > 0, "response without a waiting slot");
        self.waiting -= 1;
        if slot.in_order {
            self.waiting_in_order -= 1;
        }
    }

    /// A worker finished sending a streamed or file body.
    pub fn on_direct_done(&mut self, ok: bool, close: bool) -> bool {
        assert!(
            matches!(self.direct, DirectState::Running),
            "direct done while not running"
        );
        self.direct = DirectState::Idle;
        self.last_activity_ms = self.write_progress_ms;
        if close {
            self.close_after_flush = true;
        }
        ok
    }

    /// Sends a file body on the reactor, once the head before it has left: step by step
    /// ([`REACTOR_FILE_STEP_BYTES`]), each step only once it is all in the page cache (so no
    /// disk read holds the reactor), as far as the socket takes it; the connection then
    /// waits for its socket to be writable and goes on (`DirectState::Sending`). A step not
    /// in the cache, or a file the kernel cannot splice, leaves the rest pending for a stream
    /// thread. Returns true when the body went out whole in this call.
    ///
    /// # Errors
    /// The socket's, or the file's, or a file that shrank: the response cannot be completed.
    fn send_file_now(&mut self, ctx: &Ctx<'_>) -> std::io::Result<bool> {
        // Every pump passes here: a plain answer leaves at the first test.
        let file_body = matches!(
            self.direct,
            DirectState::Pending(Direct::File { .. }) | DirectState::Sending { .. }
        );
        if !file_body || !self.output.is_empty() {
            return Ok(false);
        }
        let (file, mut offset, mut len) =
            match std::mem::replace(&mut self.direct, DirectState::Idle) {
                DirectState::Pending(Direct::File { file, offset, len })
                | DirectState::Sending { file, offset, len } => (file, offset, len),
                other => {
                    self.direct = other;
                    return Ok(false);
                }
            };
        while len > 0 {
            let step = len.min(REACTOR_FILE_STEP_BYTES);
            if !matches!(crate::sys::fs::is_cached(&file, offset, step), Ok(true)) {
                self.direct = DirectState::Pending(Direct::File { file, offset, len });
                return Ok(false);
            }
            let (sent, stopped) = send_region_now(&self.stream, &file, offset, step)?;
            offset += sent;
            len -= sent;
            if sent > 0 {
                self.write_progress_ms = ctx.now_ms;
            }
            match stopped {
                Stopped::Done => {}
                Stopped::SocketFull => {
                    self.direct = DirectState::Sending { file, offset, len };
                    return Ok(false);
                }
                Stopped::CannotSplice => {
                    self.direct = DirectState::Pending(Direct::File { file, offset, len });
                    return Ok(false);
                }
            }
        }
        self.last_activity_ms = self.write_progress_ms;
        Ok(true)
    }

    /// Takes the pending direct body to hand it to a worker.
    pub fn take_direct(&mut self) -> Option<Direct> {
        match std::mem::replace(&mut self.direct, DirectState::Running) {
            DirectState::Pending(direct) => Some(direct),
            other => {
                self.direct = other;
                None
            }
        }
    }

    fn serialize_ready(&mut self, ctx: &mut Ctx<'_>) {
        while matches!(self.direct, DirectState::Idle)
            && self.slots.front().is_some_and(|s| s.response.is_some())
        {
            if self.output.is_empty() {
                // The write deadline counts from when bytes start waiting.
                self.write_progress_ms = ctx.now_ms;
            }
            if self.output.capacity() == 0 {
                std::mem::swap(&mut self.output, ctx.write_buf);
            }
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.first_seq += 1;
            let mut response = slot.response.unwrap_or_else(handler_failed_response);
            let upgrade = self.take_upgrade(ctx, &mut response, slot.upgrade_request);
            let elapsed_us = ctx.answer_us().saturating_sub(slot.timed.started_us);
            ctx.responses
                .count(response.status, elapsed_us, slot.timed.kind);
            let mut exchange = slot.exchange;
            // During a graceful shutdown every answer tells the client to go away.
            exchange.keep_alive &= !ctx.shared.is_shutting_down();
            let written = write_response_heads(
                &mut self.output,
                response,
                exchange,
                ctx.common_head,
                ctx.ok_head,
            );
            if let Some(direct) = written.direct {
                self.direct = DirectState::Pending(direct);
            }
            if let Some(protocol) = upgrade {
                assert!(
                    self.slots.is_empty(),
                    "nothing is parsed after an upgrade request"
                );
                self.start_upgraded(ctx, protocol);
                break;
            }
            if written.close {
                self.abandon_pipeline();
                break;
            }
        }
        self.send_owed_continue();
    }

    /// Separates the protocol of an upgrade answer. Only a 101 to an upgrade request, outside
    /// a shutdown, hands the connection over; any other 101 is a handler bug and becomes a 500.
    /// Works on the response in place: it is large, and this runs for every response.
    fn take_upgrade(
        &mut self,
        ctx: &Ctx<'_>,
        response: &mut Response,
        upgrade_request: bool,
    ) -> Option<Box<dyn super::upgrade::Upgraded>> {
        if upgrade_request {
            self.upgrade_barrier = false;
        }
        let protocol = response.upgrade.take();
        match protocol {
            Some(protocol)
                if response.status == 101 && upgrade_request && !ctx.shared.is_shutting_down() =>
            {
                Some(protocol.0)
            }
            Some(_) if ctx.shared.is_shutting_down() => {
                *response = Problem::new(503)
                    .with_detail("the server is shutting down")
                    .into_response();
                None
            }
            None if response.status != 101 => None,
            _ => {
                eprintln!(
                    "lithair http: a 101 without an upgrade request and protocol; sending 500"
                );
                *response = handler_failed_response();
                None
            }
        }
    }

    /// The 101 is queued: the protocol takes the connection, with the bytes that followed the
    /// request.
    fn start_upgraded(&mut self, ctx: &Ctx<'_>, protocol: Box<dyn super::upgrade::Upgraded>) {
        assert!(self.upgraded.is_none(), "upgraded twice");
        let (inbox, token) = (Arc::clone(ctx.inbox), ctx.token);
        let notify = Arc::new(move || {
            inbox.push(Completion {
                token,
                outcome: Outcome::Wake,
            })
        });
        let leftover = std::mem::take(&mut self.input);
        let mut driver = Driver::new(protocol, ctx.now_ms);
        driver.start(notify, ctx.now_ms, &leftover);
        self.upgraded = Some(driver);
        self.reading = Reading::Head;
        self.head_started_ms = None;
    }

    /// Writes the 101 (if still queued), then the protocol's output; closes (with a linger)
    /// once the protocol is finished.
    fn pump_upgraded(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        if self.write_output(ctx).is_err() {
            return Flow::Close;
        }
        if !self.output.is_empty() {
            return Flow::Continue;
        }
        let Some(driver) = &mut self.upgraded else {
            return Flow::Continue;
        };
        if driver.flush(&self.stream, ctx.now_ms).is_err() {
            return Flow::Close;
        }
        if !driver.is_finished() || driver.has_output() || self.linger_deadline_ms.is_some() {
            return Flow::Continue;
        }
        if self.peer_eof || self.stream.shutdown(Shutdown::Write).is_err() {
            return Flow::Close;
        }
        // Keep reading (and discarding) a moment: a reset could destroy the close frame.
        self.linger_deadline_ms = Some(ctx.now_ms + ctx.shared.config.linger_ms);
        Flow::Continue
    }

    /// A waker of the upgraded protocol fired.
    pub fn on_wake(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        if let Some(driver) = &mut self.upgraded {
            driver.on_wake();
        }
        self.pump(ctx)
    }

    /// After a response that closes the connection nothing more is answered.
    fn abandon_pipeline(&mut self) {
        self.close_after_flush = true;
        self.accept_more = false;
        self.first_seq += self.slots.len() as u64;
        self.slots.clear();
        self.waiting = 0;
        self.waiting_in_order = 0;
        self.held = None;
        self.reading = Reading::Head;
        self.input = Vec::new();
    }

    fn write_output(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        match (&self.stream).write(&self.output) {
            Ok(n) if n == self.output.len() => {
                self.output.clear();
                if ctx.write_buf.capacity() == 0 {
                    std::mem::swap(&mut self.output, ctx.write_buf);
                    ctx.write_buf.shrink_to(WRITE_BUF_KEEP_BYTES);
                } else {
                    self.output = Vec::new();
                }
                self.write_progress_ms = ctx.now_ms;
                self.last_activity_ms = ctx.now_ms;
            }
            Ok(n) => {
                if n > 0 {
                    self.write_progress_ms = ctx.now_ms;
                }
                self.output.drain(..n);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Stops accepting new requests (graceful shutdown); true if the connection can close now.
    pub fn begin_shutdown(&mut self) -> bool {
        self.accept_more = false;
        if let Some(driver) = &mut self.upgraded {
            driver.begin_shutdown();
            return false;
        }
        let partial_head = matches!(self.reading, Reading::Head) && !self.input.is_empty();
        if partial_head {
            self.input = Vec::new();
        }
        self.slots.is_empty()
            && self.output.is_empty()
            && self.held.is_none()
            && matches!(self.reading, Reading::Head)
            && matches!(self.direct, DirectState::Idle)
    }

    /// Applies deadlines; may queue a 408.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        let config = &ctx.shared.config;
        let now = ctx.now_ms;
        if let Some(deadline) = self.linger_deadline_ms {
            return if now >= deadline {
                Flow::Close
            } else {
                Flow::Continue
            };
        }
        if let DirectState::Sending { .. } = self.direct {
            // A file body the reactor sends: the client must keep taking it.
            let stalled = now >= self.write_progress_ms + config.write_timeout_ms;
            return if stalled { Flow::Close } else { Flow::Continue };
        }
        if !matches!(self.direct, DirectState::Idle) {
            return Flow::Continue;
        }
        if let Some(driver) = &mut self.upgraded {
            // No idle timeout here: the protocol has its own (WebSocket pings).
            driver.on_tick(now);
            let stalled = now >= driver.write_progress_ms + config.write_timeout_ms;
            if driver.has_output() && stalled {
                return Flow::Close;
            }
            return self.pump(ctx);
        }
        if !self.output.is_empty() && now >= self.write_progress_ms + config.write_timeout_ms {
            return Flow::Close;
        }
        let waiting_for_client = self.can_parse(config.pipeline_in_flight_max);
        let timed_out = match (&self.reading, self.head_started_ms) {
            (Reading::Body { .. }, _) => now >= self.last_activity_ms + config.body_read_timeout_ms,
            (Reading::Head, Some(start)) => now >= start + config.header_read_timeout_ms,
            (Reading::Head, None) => {
                if self.is_idle() && now >= self.last_activity_ms + config.idle_timeout_ms {
                    return Flow::Close;
                }
                false
            }
        };
        if timed_out && waiting_for_client {
            self.fail(ctx, 408, "request timeout");
            return self.pump(ctx);
        }
        Flow::Continue
    }
}

/// Keep at most this much capacity in the reactor's write buffer between uses.
const WRITE_BUF_KEEP_BYTES: usize = 256 * 1024;

/// `response` with a small file body (`FILE_BODY_BUFFERED_BYTES_MAX`) read into memory, on
/// the worker (never the reactor: the read may wait for the disk). A file that shrank since
/// its length was taken is answered 500 here, before any byte of the head went out, where a
/// body sent from the file could only be cut short.
fn buffer_small_file(mut response: Response) -> Response {
    let Body::File { file, offset, len } = &response.body else {
        return response;
    };
    if *len > FILE_BODY_BUFFERED_BYTES_MAX {
        return response;
    }
    match read_file_region(file, *offset, *len) {
        Ok(bytes) => {
            response.body = Body::Bytes(bytes);
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// Charges `request`'s body, as its buffer now stands, against the server's body budget;
/// false when the budget cannot take it (see `http::body_budget`).
fn body_covered(request: &mut Request, ctx: &Ctx<'_>) -> bool {
    let capacity = request.body.capacity();
    request
        .planned
        .body_charge
        .cover(&ctx.shared.body_budget, capacity)
}

/// `n` as a `usize`, saturated (a body length on a 32-bit target).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// An empty request used to refill the reactor's scratch (allocates nothing).
pub(crate) fn empty_request() -> Request {
    Request::new(Method::Get, "")
}

/// What to do with a handler's answer to request `seq`: an ordinary response is returned as
/// is; a deferred one is returned if already complete, else delivered to the connection's
/// inbox when its responder completes it (from whatever thread that is).
///
/// A completed answer with layers' work left on it (a map: compression) is finished by a
/// worker, never on the completing thread (the engine's applier, most often) nor on a
/// reactor (`on_reactor`: one complete already is then handed to a worker too); when no
/// worker can take it (the queue is full, the server is stopping) the thread at hand
/// finishes it rather than lose it. On a worker, one complete already is finished there.
fn settle(
    mut response: Response,
    inbox: &Arc<Inbox>,
    token: u64,
    seq: u64,
    workers: impl FnOnce() -> Submitter,
    on_reactor: bool,
) -> Option<Response> {
    let Some(deferred) = Deferred::take(&mut response) else {
        return Some(response);
    };
    let reply = Reply {
        inbox: Arc::clone(inbox),
        token,
        seq,
    };
    let workers = deferred.has_maps().then(workers);
    let (later_reply, later_workers) = (reply.clone(), workers.clone());
    let deliver: DeliverAnswer =
        Box::new(move |answer: Answer| finish_and_post(answer, later_reply, later_workers));
    let answer = deferred.attach_answer(response, deliver)?;
    if on_reactor && answer.has_work() {
        finish_and_post(answer, reply, workers);
        return None;
    }
    Some(answer.finish())
}

/// Where a deferred answer goes once finished: request `seq` of connection `token`.
#[derive(Clone)]
struct Reply {
    inbox: Arc<Inbox>,
    token: u64,
    seq: u64,
}

impl Reply {
    fn post(self, response: Response) {
        self.inbox.push(Completion {
            token: self.token,
            outcome: Outcome::Response {
                seq: self.seq,
                response,
            },
        });
    }
}

/// Finishes `answer` and posts it: by a worker when it has work left (the thread at hand when
/// no worker takes it), else here.
fn finish_and_post(answer: Answer, reply: Reply, workers: Option<Submitter>) {
    match workers {
        Some(workers) if answer.has_work() => {
            let finish: Job = Box::new(move || reply.post(answer.finish()));
            if let Err(finish) = workers.try_submit(finish) {
                finish();
            }
        }
        _ => reply.post(answer.finish()),
    }
}

/// Header strings kept between requests for reuse (a head has at most this many worth keeping).
const SPARE_STRINGS_MAX: usize = 2 * HEADER_SLOTS_INLINE;

/// `text` in a string taken from `spare` (no allocation once the spare strings are large enough).
fn reused(spare: &mut Vec<String>, text: &str) -> String {
    let mut out = spare.pop().unwrap_or_default();
    out.clear();
    out.push_str(text);
    out
}

/// Common header names as static strings: no allocation for them.
fn static_name(name: &str) -> Option<&'static str> {
    // A match on constant strings: the compiler tests the length, then the bytes inline
    // (no `memcmp` call per known name).
    let known = match name {
        "Host" => "Host",
        "User-Agent" => "User-Agent",
        "Accept" => "Accept",
        "Accept-Encoding" => "Accept-Encoding",
        "Accept-Language" => "Accept-Language",
        "Connection" => "Connection",
        "Content-Type" => "Content-Type",
        "Content-Length" => "Content-Length",
        "Transfer-Encoding" => "Transfer-Encoding",
        "Cookie" => "Cookie",
        "Authorization" => "Authorization",
        "Expect" => "Expect",
        _ => return None,
    };
    Some(known)
}

/// Copies a parsed head into `request`, reusing its allocations.
fn fill_request(
    request: &mut Request,
    head: &super::parse::Head<'_>,
    fields: &[HeaderSlot<'_>],
    peer: Option<SocketAddr>,
) {
    // `from_token` compares with constant tokens (no call); only an unknown method that
    // repeats keeps its string.
    if !matches!(&request.method, Method::Other(token) if token == head.method) {
        request.method = Method::from_token(head.method);
    }
    request.set_target(head.target);
    request.version = head.version;
    request.reset_plan();
    let spare = &mut request.planned.spare_strings;
    request.headers.clear_into(spare, SPARE_STRINGS_MAX);
    let mut raw: Option<RawHeaderValues> = None;
    for field in fields {
        let name = match static_name(field.name) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(reused(spare, field.name)),
        };
        // Obs-text that is not UTF-8 (a Latin-1 cookie) is kept: as text with U+FFFD in
        // `headers`, and as received in `RawHeaderValues` (RFC 9110 §5.5 has a recipient
        // treat it as opaque; refusing it failed every request of a browser holding such a
        // cookie until it was cleared).
        let text = field.value_text();
        if let Cow::Owned(lossy) = &text {
            raw.get_or_insert_with(RawHeaderValues::default)
                .push(field.name, lossy, field.value);
        }
        let value = Cow::Owned(reused(spare, &text));
        request.headers.append_cow(name, value);
    }
    request.body.clear();
    request.remote_addr = peer;
    request.extensions.clear();
    if let Some(raw) = raw {
        request.extensions.insert(raw);
    }
}

/// origin-form for every method, absolute-form too, authority-form only for CONNECT, `*` only
/// for OPTIONS (RFC 9112 §3.2).
fn target_form_ok(method: &Method, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    if target == "*" {
        return *method == Method::Options;
    }
    if *method == Method::Connect {
        return !target.contains('/');
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The authority of an absolute-form target (`http://host:port/p` gives `host:port`).
fn absolute_authority(target: &str) -> Option<&str> {
    let scheme_end = target.find("://")?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore the `Host` field and
/// use the target's authority, so handlers reading `Host` see the host the request is for.
/// False when that authority is not a valid host (userinfo included: RFC 9110 §4.2.4).
fn adopt_target_authority(request: &mut Request) -> bool {
    let Some(authority) = absolute_authority(&request.target) else {
        return true; // `*` or an authority-form CONNECT target: nothing to adopt.
    };
    if !super::parse::is_valid_host(authority.as_bytes()) {
        return false;
    }
    if request.header("host") != Some(authority) {
        let authority = authority.to_string();
        request.headers.insert("Host", authority);
    }
    true
}

fn attach_trailers(request: &mut Request, decoder: &ChunkedDecoder) {
    let Ok(fields) = decoder.trailers() else {
        return; // Validated when the body completed; unreachable in practice.
    };
    if fields.is_empty() {
        return;
    }
    let mut trailers = super::request::Headers::with_capacity(fields.len());
    for (name, value) in fields {
        trailers.append(name, value);
    }
    request.extensions.insert(Trailers(trailers));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small file body is read into memory (on the worker); a larger one stays a file for
    /// a stream thread; one shorter than its announced length is a 500, not a cut body.
    #[test]
    fn a_small_file_body_is_buffered_and_a_shrunk_one_is_an_error() {
        let path = std::env::temp_dir().join(format!("lithair-buffer-{}", std::process::id()));
        let small = FILE_BODY_BUFFERED_BYTES_MAX as usize;
        let content: Vec<u8> = (0..small + 1).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &content).expect("write the file");
        let file_body = |offset: u64, len: u64| {
            let file = std::fs::File::open(&path).expect("open");
            Response::new(200).with_body(Body::File { file, offset, len })
        };
        let buffered = buffer_small_file(file_body(1, small as u64));
        assert!(
            matches!(&buffered.body, Body::Bytes(b) if b[..] == content[1..]),
            "{:?}",
            buffered.body
        );
        let whole = buffer_small_file(file_body(0, small as u64 + 1));
        assert!(matches!(whole.body, Body::File { len, .. } if len == small as u64 + 1));
        let shrunk = buffer_small_file(file_body(small as u64 - 9, 20));
        assert_eq!(shrunk.status, 500);
        let _ = std::fs::remove_file(&path);
    }

    /// A value that is not UTF-8 is stored as text with U+FFFD and kept as received, also
    /// when two values of one name read the same as text; the usual request records nothing.
    #[test]
    fn header_values_that_are_not_utf8_are_kept_as_received() {
        use crate::http::parse::{parse_head, Status};
        let input = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=caf\xe9\r\nX-Plain: ok\r\n\
                      cookie: a=caf\xe8\r\nX-Utf8: caf\xc3\xa9\r\n\r\n";
        let mut slots = [HeaderSlot::default(); 8];
        let limits = HeadLimits {
            request_line_bytes_max: 256,
            head_bytes_max: 1024,
        };
        let Ok(Status::Complete(head)) = parse_head(input, &limits, &mut slots) else {
            panic!("refused")
        };
        let mut request = empty_request();
        fill_request(&mut request, &head, &slots[..head.header_count], None);
        assert_eq!(request.header("cookie"), Some("a=caf\u{fffd}"));
        assert_eq!(request.header_bytes("COOKIE"), Some(&b"a=caf\xe9"[..]));
        assert_eq!(request.header_bytes("x-utf8"), Some("caf\u{e9}".as_bytes()));
        assert_eq!(request.header_bytes("missing"), None);
        let raw: Vec<(&str, &[u8])> = request.headers_raw().collect();
        let expected: [(&str, &[u8]); 5] = [
            ("Host", b"h"),
            ("Cookie", b"a=caf\xe9"),
            ("X-Plain", b"ok"),
            ("cookie", b"a=caf\xe8"),
            ("X-Utf8", "caf\u{e9}".as_bytes()),
        ];
        assert_eq!(raw, expected);
        // The next request on the connection reuses the request: nothing carries over.
        let input = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\n\r\n";
        let Ok(Status::Complete(head)) = parse_head(input, &limits, &mut slots) else {
            panic!("refused")
        };
        fill_request(&mut request, &head, &slots[..head.header_count], None);
        assert!(request.extensions.get::<RawHeaderValues>().is_none());
        assert_eq!(request.header_bytes("cookie"), Some(&b"a=b"[..]));
    }

    #[test]
    fn target_forms() {
        assert!(target_form_ok(&Method::Get, "/x"));
        assert!(target_form_ok(&Method::Get, "http://h/x"));
        assert!(target_form_ok(&Method::Get, "HTTPS://h"));
        assert!(!target_form_ok(&Method::Get, "*"));
        assert!(target_form_ok(&Method::Options, "*"));
        assert!(!target_form_ok(&Method::Get, "h:80"));
        assert!(target_form_ok(&Method::Connect, "h:80"));
        assert!(!target_form_ok(&Method::Get, "x"));
    }

    #[test]
    fn absolute_form_authority() {
        assert_eq!(absolute_authority("http://h:8/x?y"), Some("h:8"));
        assert_eq!(absolute_authority("HTTPS://h?y"), Some("h"));
        assert_eq!(absolute_authority("http://h#f"), Some("h"));
        assert_eq!(absolute_authority("http://"), Some(""));
        assert_eq!(absolute_authority("ftp://h/x"), None);
        assert_eq!(absolute_authority("*"), None);
        let mut request = Request::new(Method::Get, "http://a.example/x");
        request.headers.insert("Host", "b.example");
        assert!(adopt_target_authority(&mut request));
        assert_eq!(request.header("host"), Some("a.example"));
        let mut request = Request::new(Method::Get, "http://u@a.example/x");
        assert!(!adopt_target_authority(&mut request));
    }

    #[test]
    fn static_names_do_not_allocate_for_known_headers() {
        assert_eq!(static_name("Host"), Some("Host"));
        assert_eq!(static_name("host"), None);
    }
}
