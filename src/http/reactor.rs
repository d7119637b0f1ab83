//! A reactor thread: one poller (epoll), the connections it accepted, a read buffer and a
//! write buffer shared by all of them, and an inbox where workers post finished responses.
//!
//! Design (half-sync/half-async, DESIGN.md §5): the reactor reads, parses and writes; cheap
//! handlers (`Handler::is_inline`) run right here, others go to the bounded worker pool and
//! come back through the inbox (a mutex-protected vector plus an eventfd wake-up, signalled
//! only when the vector goes from empty to non-empty; `deliver_together` lets a thread that
//! completes many answers at once post them with one lock and one wake-up per reactor).
//! Responses are serialized by the reactor in request order, and the answers of one inbox
//! drain are all filed before any connection writes, so a batch of pipelined answers leaves
//! in one `write`. Streamed and file bodies are the exception: the socket is unregistered and
//! a worker writes them (blocking, bounded by the write deadline), then hands the socket back.
//!
//! Between turns the reactor polls without sleeping for as long as its `PollWindow` says (see
//! `http::poll_window`: the window adapts to how long it sleeps), then sleeps in the poller.
//!
//! Owns: the poller, accepting, connection slots and tokens, timers, graceful shutdown.
//! Must not: run a handler that is not inline, or block anywhere but in `poll`.

use super::body_budget::BodyBudget;
use super::conn::{empty_request, Conn, Ctx, Flow, EDGE_READ};
use super::date::{DateCache, HTTP_DATE_BYTES};
use super::direct::send_direct;
use super::limits::{ServerConfig, ACCEPT_PAUSE_MS};
use super::poll_window::{PollWindow, POLL_YIELD_CONTENDED_US};
use super::pool::Pool;
use super::request::Request;
use super::response::Response;
use super::route_stats;
use super::stats::ServerStats;
use super::streams::StreamThreads;
use super::writer::{render_common_head, Direct, OK_STATUS_LINE};
use super::Handler;
use crate::sys::waker::Waker;
use crate::sys::{Event, Interest, Poller};
use std::cell::RefCell;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const LISTENER_TOKEN: u64 = u64::MAX;
const WAKER_TOKEN: u64 = u64::MAX - 1;
const SIGNAL_TOKEN: u64 = u64::MAX - 2;
/// One read per readiness report, into this shared buffer.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Accepts per listener report, so a connection storm cannot starve existing connections.
const ACCEPTS_PER_EVENT_MAX: usize = 256;
/// Timer scan period bounds.
const TIMER_TICK_MS_MIN: u64 = 5;
const TIMER_TICK_MS_MAX: u64 = 1_000;
/// Sent (best effort) to a connection over the limit before closing it: a problem document
/// like every other refusal, pre-rendered because the reactor has no response writer at hand
/// when it refuses a socket (a test checks it against `Problem`).
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 97\r\n\
Connection: close\r\nContent-Type: application/problem+json\r\n\r\n\
{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"too many connections\"}";

/// State shared by the reactors, the workers and the server handle.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub handler: Arc<dyn Handler>,
    pub pool: Pool,
    /// Threads that send streamed and file bodies (apart from the workers).
    pub streams: StreamThreads,
    pub connections: AtomicUsize,
    /// The bytes of request bodies held across the server (see `http::body_budget`).
    pub body_budget: Arc<BodyBudget>,
    pub inboxes: Vec<Arc<Inbox>>,
    /// The answers written, by status class (a slot per reactor).
    pub stats: ServerStats,
    shutting_down: AtomicBool,
    /// When the graceful shutdown began: its one deadline (`shutdown_grace_ms` later) bounds
    /// the reactors' drain, the workers and the stream threads together.
    shutdown_began: OnceLock<Instant>,
}

impl Shared {
    pub fn new(
        config: ServerConfig,
        handler: Arc<dyn Handler>,
        pool: Pool,
        inboxes: Vec<Arc<Inbox>>,
        stats: ServerStats,
    ) -> Shared {
        let streams = StreamThreads::new(config.streams_max);
        let body_budget = BodyBudget::new(config.bodies_held_budget(), stats.body_gauges());
        Shared {
            config,
            handler,
            streams,
            pool,
            connections: AtomicUsize::new(0),
            body_budget,
            inboxes,
            stats,
            shutting_down: AtomicBool::new(false),
            shutdown_began: OnceLock::new(),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The graceful shutdown's deadline (`None` before one began).
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        self.shutdown_began.get().map(|began| *began + grace)
    }

    /// Asks every reactor to stop accepting and drain.
    pub fn begin_shutdown(&self) {
        // The first call starts the clock; a second signal does not extend the grace period.
        let _ = self.shutdown_began.set(Instant::now());
        self.shutting_down.store(true, Ordering::Release);
        for inbox in &self.inboxes {
            inbox.waker.wake();
        }
    }
}

/// What a worker reports to the reactor owning the connection.
pub(crate) enum Outcome {
    /// The answer to request number `seq` of the connection.
    Response { seq: u64, response: Response },
    /// A streamed/file body was sent (`ok`) or failed; `close` if the framing needs a close.
    DirectDone { ok: bool, close: bool },
    /// The waker of an upgraded connection's protocol fired.
    Wake,
}

/// A report addressed to a connection token (slot index and generation).
pub(crate) struct Completion {
    pub token: u64,
    pub outcome: Outcome,
}

/// A reactor's mailbox.
pub(crate) struct Inbox {
    completions: Mutex<Vec<Completion>>,
    pub waker: Waker,
}

impl Inbox {
    pub fn new() -> std::io::Result<Inbox> {
        Ok(Inbox {
            completions: Mutex::new(Vec::new()),
            waker: Waker::new()?,
        })
    }

    /// Posts a completion; wakes the reactor only on the empty-to-non-empty transition. Inside
    /// [`deliver_together`] it is held back and posted with the others when that returns.
    pub fn push(self: &Arc<Self>, completion: Completion) {
        let completion = GATHERED.with(|gathered| {
            // Not gathering (or, never expected, re-entered while a flush runs): post now.
            let Ok(mut gathered) = gathered.try_borrow_mut() else {
                return Some(completion);
            };
            let Some(held) = gathered.as_mut() else {
                return Some(completion);
            };
            match held.iter_mut().find(|(inbox, _)| Arc::ptr_eq(inbox, self)) {
                Some((_, completions)) => completions.push(completion),
                None => held.push((Arc::clone(self), vec![completion])),
            }
            None
        });
        if let Some(completion) = completion {
            self.post(std::iter::once(completion));
        }
    }

    /// Appends `completions` under one lock; wakes the reactor on the empty-to-non-empty
    /// transition only.
    fn post(&self, completions: impl IntoIterator<Item = Completion>) {
        let was_empty = {
            let mut list = self
                .completions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let was_empty = list.is_empty();
            list.extend(completions);
            was_empty && !list.is_empty()
        };
        if was_empty {
            self.waker.wake();
        }
    }

    fn take_all(&self, into: &mut Vec<Completion>) {
        let mut list = self
            .completions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *list, into);
    }
}

/// Completions held back by [`deliver_together`], by inbox.
type Gathered = Vec<(Arc<Inbox>, Vec<Completion>)>;

thread_local! {
    /// What [`deliver_together`] holds back on this thread (`None`: not gathering).
    static GATHERED: RefCell<Option<Gathered>> = const { RefCell::new(None) };
}

/// Runs `f` and posts the completions it causes on this thread (deferred responses completed,
/// workers' answers) when it returns, one lock and at most one wake-up per reactor instead of
/// one per completion: answers completed together (a confirmed read batch) reach their
/// reactor in one drain, so each connection writes them at once. A nested call joins the
/// outer one. Completions are posted even if `f` panics.
pub(crate) fn deliver_together<R>(f: impl FnOnce() -> R) -> R {
    let outermost = GATHERED.with(|gathered| {
        let mut gathered = gathered.borrow_mut();
        if gathered.is_some() {
            return false;
        }
        *gathered = Some(Vec::new());
        true
    });
    if !outermost {
        return f();
    }
    /// Posts what was gathered when dropped (also while unwinding).
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            let gathered = GATHERED.with(|gathered| gathered.borrow_mut().take());
            for (inbox, completions) in gathered.into_iter().flatten() {
                inbox.post(completions);
            }
        }
    }
    let _flush = Flush;
    f()
}

struct Entry {
    generation: u32,
    conn: Option<Conn>,
}

fn token_of(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

/// One event loop thread.
pub(crate) struct Reactor {
    shared: Arc<Shared>,
    /// Which reactor this is (its inbox, its answer counters).
    index: usize,
    inbox: Arc<Inbox>,
    poller: Poller,
    listener: Option<TcpListener>,
    entries: Vec<Entry>,
    free: Vec<usize>,
    live: usize,
    read_buf: Box<[u8]>,
    write_buf: Vec<u8>,
    date: DateCache,
    /// `Server` and `Date` lines as sent, re-rendered when the date changes.
    common_head: Vec<u8>,
    common_date: [u8; HTTP_DATE_BYTES],
    scratch: Request,
    start: Instant,
    /// `start` on the kernel's monotonic clock (read just after it), for placing the coarse
    /// clock's readings on the reactor's (`wakeup_raw_us`); `None` where it is not read.
    start_raw_us: Option<u64>,
    /// The reactor's clock, read when a poll or a sleep returns (never per request):
    /// microseconds and milliseconds since `start`.
    now_us: u64,
    now_ms: u64,
    next_timer_ms: u64,
    drain_deadline_ms: Option<u64>,
    /// While accepting is paused after a failure (see `ACCEPT_PAUSE_MS`): when to try again.
    accept_paused_until_ms: Option<u64>,
    /// Pauses since the last accept that succeeded (the first is logged, then the recovery).
    accept_pauses: u64,
    /// How long to poll before sleeping (adapts to the load).
    poll_window: PollWindow,
}

impl Reactor {
    /// A reactor with its share of the listener (`listener` is a clone) and, for one of them,
    /// the signal descriptor.
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        listener: TcpListener,
        signal_fd: Option<RawFd>,
    ) -> std::io::Result<Reactor> {
        let inbox = Arc::clone(&shared.inboxes[index]);
        let poll_window = PollWindow::new(shared.config.poll_window_max_us);
        let poller = Poller::new()?;
        poller.add(inbox.waker.fd(), WAKER_TOKEN, Interest::READ)?;
        poller.add_shared(listener.as_raw_fd(), LISTENER_TOKEN)?;
        if let Some(fd) = signal_fd {
            poller.add(fd, SIGNAL_TOKEN, Interest::READ)?;
        }
        // Read in this order so that `start` on the raw clock is never before `start`: a
        // coarse reading placed with it can then only trail the reactor's clock.
        let start = Instant::now();
        let start_raw_us = crate::sys::clock::monotonic_us();
        let mut reactor = Reactor {
            shared,
            index,
            inbox,
            poller,
            listener: Some(listener),
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            read_buf: vec![0u8; READ_BUF_BYTES].into_boxed_slice(),
            write_buf: Vec::with_capacity(READ_BUF_BYTES),
            date: DateCache::new(),
            common_head: Vec::new(),
            common_date: [0; HTTP_DATE_BYTES],
            scratch: empty_request(),
            start,
            start_raw_us,
            now_us: 0,
            now_ms: 0,
            next_timer_ms: 0,
            drain_deadline_ms: None,
            accept_paused_until_ms: None,
            accept_pauses: 0,
            poll_window,
        };
        reactor.refresh_date();
        Ok(reactor)
    }

    fn tick_ms(&self) -> u64 {
        let c = &self.shared.config;
        let shortest = [
            c.header_read_timeout_ms,
            c.body_read_timeout_ms,
            c.idle_timeout_ms,
            c.write_timeout_ms,
            c.linger_ms.max(1),
        ]
        .into_iter()
        .min()
        .unwrap_or(TIMER_TICK_MS_MAX);
        (shortest / 4).clamp(TIMER_TICK_MS_MIN, TIMER_TICK_MS_MAX)
    }

    /// Runs until shutdown completes.
    pub fn run(mut self, signal_waker: Option<&Waker>) {
        let mut events: Vec<Event> = Vec::with_capacity(1024);
        let mut completions = Vec::new();
        let mut answered = Vec::new();
        loop {
            let wake_ms = self
                .next_timer_ms
                .min(self.accept_paused_until_ms.unwrap_or(u64::MAX));
            let timeout = wake_ms.saturating_sub(self.now_ms).min(TIMER_TICK_MS_MAX);
            if let Err(error) = self.wait(&mut events, timeout as i32) {
                eprintln!("lithair http: poll failed: {error}; reactor stops");
                break;
            }
            self.now_ms = self.now_us / 1000;
            // The handlers this turn runs inline are timed from it (no precise clock read
            // each: see `http::route_stats`).
            route_stats::set_turn_clock(
                self.start + Duration::from_micros(self.now_us),
                self.wakeup_raw_us(),
            );
            self.refresh_date();
            for event in &events {
                match event.token {
                    LISTENER_TOKEN => self.accept_all(),
                    WAKER_TOKEN => {
                        self.inbox.waker.drain();
                        self.inbox.take_all(&mut completions);
                        self.on_completions(&mut completions, &mut answered);
                    }
                    SIGNAL_TOKEN => {
                        if let Some(waker) = signal_waker {
                            waker.drain();
                        }
                        eprintln!("lithair http: signal received, shutting down gracefully");
                        self.shared.begin_shutdown();
                    }
                    token => self.on_socket_event(token, *event),
                }
            }
            if self.shared.is_shutting_down() && self.drain_deadline_ms.is_none() {
                self.begin_drain();
            }
            if self
                .accept_paused_until_ms
                .is_some_and(|until| self.now_ms >= until)
            {
                self.resume_accepting();
            }
            if self.now_ms >= self.next_timer_ms {
                self.on_timers();
                self.next_timer_ms = self.now_ms + self.tick_ms();
            }
            if let Some(deadline) = self.drain_deadline_ms {
                if self.live == 0 || self.now_ms >= deadline {
                    break;
                }
            }
        }
        self.close_all();
    }

    /// Waits for events (up to `timeout_ms`), first polling for as long as the poll window
    /// says, and sets `now_us` to the time it returned.
    fn wait(&mut self, events: &mut Vec<Event>, timeout_ms: i32) -> std::io::Result<()> {
        if !self.poll_window.enabled() {
            let waited = self.poller.wait(events, timeout_ms);
            self.now_us = self.clock_us();
            return waited;
        }
        let idle_from_us = self.clock_us();
        let poll_until_us = idle_from_us + self.poll_window.window_us();
        self.now_us = idle_from_us;
        let mut contended = false;
        let stats = self.shared.stats.slot(self.index);
        while self.now_us < poll_until_us {
            self.poller.wait(events, 0)?;
            self.now_us = self.clock_us();
            if !events.is_empty() {
                stats.idled(true, self.now_us - idle_from_us);
                return Ok(());
            }
            // Polling must not starve a thread that shares this CPU (a worker, the log, another
            // process): yield to it, and when one did run, stop polling and sleep.
            let yielded_at_us = self.now_us;
            std::thread::yield_now();
            self.now_us = self.clock_us();
            if self.now_us - yielded_at_us >= POLL_YIELD_CONTENDED_US {
                self.poll_window.after_contention();
                contended = true;
                break;
            }
        }
        stats.idled(false, self.now_us - idle_from_us);
        let waited = self.poller.wait(events, timeout_ms);
        self.now_us = self.clock_us();
        if !contended {
            self.poll_window
                .after_sleep(self.now_us - idle_from_us, !events.is_empty());
        }
        waited
    }

    /// This wakeup on the kernel's monotonic clock: never earlier than the true wakeup
    /// (`start` was read before `start_raw_us`), so a time measured from it on the coarse
    /// clock is never longer than the truth.
    fn wakeup_raw_us(&self) -> Option<u64> {
        self.start_raw_us.map(|start| start + self.now_us)
    }

    fn clock_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Refreshes the `Date` and, once per second, the rendered `Server` and `Date` lines.
    fn refresh_date(&mut self) {
        self.date.refresh(SystemTime::now());
        if self.common_head.is_empty() || self.date.get() != &self.common_date {
            self.common_date = *self.date.get();
            self.common_head.clear();
            // The 200 status line first: `ok_head` is the whole buffer, `common_head` the rest.
            self.common_head.extend_from_slice(OK_STATUS_LINE);
            render_common_head(
                &mut self.common_head,
                &self.common_date,
                self.shared.config.server_name,
            );
        }
    }

    fn ctx_parts(&mut self, index: usize) -> Option<(&mut Conn, Ctx<'_>, &mut [u8])> {
        let token = token_of(index, self.entries.get(index)?.generation);
        let wakeup_raw_us = self.wakeup_raw_us();
        let conn = self.entries[index].conn.as_mut()?;
        let ctx = Ctx {
            shared: &self.shared,
            responses: self.shared.stats.slot(self.index),
            inbox: &self.inbox,
            token,
            now_us: self.now_us,
            wakeup_raw_us,
            now_ms: self.now_ms,
            common_head: &self.common_head[OK_STATUS_LINE.len()..],
            ok_head: &self.common_head,
            write_buf: &mut self.write_buf,
            scratch: &mut self.scratch,
        };
        Some((conn, ctx, &mut self.read_buf))
    }

    fn lookup(&self, token: u64) -> Option<usize> {
        let index = (token & 0xffff_ffff) as usize;
        let entry = self.entries.get(index)?;
        (entry.conn.is_some() && u64::from(entry.generation) == token >> 32).then_some(index)
    }

    fn on_socket_event(&mut self, token: u64, event: Event) {
        let Some(index) = self.lookup(token) else {
            return;
        };
        let Some((conn, mut ctx, read_buf)) = self.ctx_parts(index) else {
            return;
        };
        let mut flow = Flow::Continue;
        if event.readable {
            flow = conn.on_readable(&mut ctx, read_buf, event.peer_closed);
        }
        if flow == Flow::Continue && event.writable {
            flow = conn.pump(&mut ctx);
        }
        if event.closed && !event.readable {
            flow = Flow::Close;
        }
        self.apply(index, flow);
    }

    /// Handles every completion taken from the inbox. Responses are filed first and each
    /// connection that got some is pumped once afterwards: deferred answers completed together
    /// (a read batch confirmed, a group of writes committed) leave in one write per
    /// connection, not one write each. `answered` is reused scratch space.
    fn on_completions(&mut self, completions: &mut Vec<Completion>, answered: &mut Vec<u64>) {
        answered.clear();
        for completion in completions.drain(..) {
            match completion.outcome {
                Outcome::Response { seq, response } => {
                    let Some(index) = self.lookup(completion.token) else {
                        continue; // The connection closed meanwhile.
                    };
                    if let Some(conn) = self.entries[index].conn.as_mut() {
                        conn.on_response(seq, response);
                        answered.push(completion.token);
                    }
                }
                _ => self.on_completion(completion),
            }
        }
        answered.sort_unstable();
        answered.dedup();
        for token in answered.drain(..) {
            // Closed meanwhile (by another completion of this drain): nothing to pump.
            if let Some(index) = self.lookup(token) {
                let flow = self.pump_index(index);
                self.apply(index, flow);
            }
        }
    }

    /// One completion, handled at once (`on_completions` files responses itself and pumps
    /// later; a response passed here is filed and written now).
    fn on_completion(&mut self, completion: Completion) {
        let Some(index) = self.lookup(completion.token) else {
            return; // The connection closed meanwhile.
        };
        let Some((conn, mut ctx, _)) = self.ctx_parts(index) else {
            return;
        };
        let flow = match completion.outcome {
            Outcome::Response { seq, response } => {
                conn.on_response(seq, response);
                conn.pump(&mut ctx)
            }
            Outcome::Wake => conn.on_wake(&mut ctx),
            Outcome::DirectDone { ok, close } => {
                if conn.on_direct_done(ok, close) {
                    let fd = conn.stream.as_raw_fd();
                    let interest = conn.desired_interest(usize::MAX).unwrap_or(EDGE_READ);
                    conn.interest = interest;
                    match self.poller.add(fd, completion.token, interest) {
                        Ok(()) => self.pump_index(index),
                        Err(_) => Flow::Close,
                    }
                } else {
                    Flow::Close
                }
            }
        };
        self.apply(index, flow);
    }

    fn pump_index(&mut self, index: usize) -> Flow {
        match self.ctx_parts(index) {
            Some((conn, mut ctx, _)) => conn.pump(&mut ctx),
            None => Flow::Close,
        }
    }

    /// Carries out what a connection asked for.
    fn apply(&mut self, index: usize, flow: Flow) {
        match flow {
            Flow::Close => self.close(index),
            Flow::StartDirect => self.start_direct(index),
            Flow::Continue => {
                let pipeline_max = self.shared.config.pipeline_in_flight_max;
                let token = token_of(index, self.entries[index].generation);
                let Some(conn) = self.entries[index].conn.as_mut() else {
                    return;
                };
                let Some(wanted) = conn.desired_interest(pipeline_max) else {
                    return;
                };
                if wanted != conn.interest || conn.rearm {
                    let fd = conn.stream.as_raw_fd();
                    conn.interest = wanted;
                    conn.rearm = false;
                    if self.poller.modify(fd, token, wanted).is_err() {
                        self.close(index);
                    }
                }
            }
        }
    }

    /// Hands the socket to a stream thread to send a streamed or file body.
    fn start_direct(&mut self, index: usize) {
        let token = token_of(index, self.entries[index].generation);
        let write_timeout_ms = self.shared.config.write_timeout_ms;
        let Some(conn) = self.entries[index].conn.as_mut() else {
            return;
        };
        let Some(direct) = conn.take_direct() else {
            return;
        };
        let close = matches!(direct, Direct::Stream { chunked: false, .. });
        let fd = conn.stream.as_raw_fd();
        let Ok(stream) = conn.stream.try_clone() else {
            return self.close(index);
        };
        if self.poller.delete(fd).is_err() {
            return self.close(index);
        }
        let inbox = Arc::clone(&self.inbox);
        let shared = Arc::clone(&self.shared);
        let job = Box::new(move || {
            let ok = send_direct(&stream, direct, write_timeout_ms, &shared.shutting_down);
            drop(stream);
            inbox.push(Completion {
                token,
                outcome: Outcome::DirectDone { ok, close },
            });
        });
        if let Err(refused) = self.shared.streams.try_run(job) {
            eprintln!("lithair http: {refused}; closing a connection after its head");
            // The socket is no longer registered; closing frees it.
            self.close(index);
        }
    }

    fn accept_all(&mut self) {
        for _ in 0..ACCEPTS_PER_EVENT_MAX {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.accept_pauses > 0 {
                        eprintln!(
                            "lithair http: accepting connections again (after {} pause(s) of \
                             {ACCEPT_PAUSE_MS} ms)",
                            self.accept_pauses
                        );
                        self.accept_pauses = 0;
                    }
                    self.admit(stream, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    self.pause_accepting(&e);
                    return;
                }
            }
        }
    }

    /// Leaves the listener alone for `ACCEPT_PAUSE_MS` after an accept failed otherwise than
    /// by a client's doing (out of descriptors, out of memory): it stays readable, so the
    /// next wait would report it at once and the reactor would spin and log until the cause
    /// goes. Logged once; `accept_all` logs the recovery.
    fn pause_accepting(&mut self, error: &std::io::Error) {
        if self.accept_pauses == 0 {
            eprintln!(
                "lithair http: accept failed: {error}; new connections wait in the backlog, \
                 tried again every {ACCEPT_PAUSE_MS} ms"
            );
        }
        self.accept_pauses += 1;
        if let Some(listener) = &self.listener {
            let _ = self.poller.delete(listener.as_raw_fd());
        }
        self.accept_paused_until_ms = Some(self.now_ms + ACCEPT_PAUSE_MS);
    }

    /// Watches the listener again after a pause (none once draining: it is gone).
    fn resume_accepting(&mut self) {
        self.accept_paused_until_ms = None;
        let Some(listener) = &self.listener else {
            return;
        };
        if let Err(e) = self.poller.add_shared(listener.as_raw_fd(), LISTENER_TOKEN) {
            self.pause_accepting(&e);
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let config = &self.shared.config;
        let count = self.shared.connections.fetch_add(1, Ordering::AcqRel);
        if count >= config.connections_max || stream.set_nonblocking(true).is_err() {
            let _ = (&stream).write(BUSY_RESPONSE);
            self.shared.stats.slot(self.index).refused();
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let _ = stream.set_nodelay(true);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    conn: None,
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        assert!(entry.conn.is_none(), "slot {index} reused while occupied");
        let token = token_of(index, entry.generation);
        let fd = stream.as_raw_fd();
        entry.conn = Some(Conn::new(stream, Some(peer), self.now_ms));
        self.live += 1;
        self.shared.stats.slot(self.index).admitted();
        if self.poller.add(fd, token, EDGE_READ).is_err() {
            self.close(index);
        }
    }

    fn close(&mut self, index: usize) {
        let entry = &mut self.entries[index];
        let Some(conn) = entry.conn.take() else {
            return;
        };
        // Unregister explicitly: a clone held by a worker would keep the registration alive.
        let _ = self.poller.delete(conn.stream.as_raw_fd());
        // Counted closed before the socket is, so no count outlives its socket. (A client
        // that saw only the half-close of a lingering `Connection: close` may still see it
        // counted: the connection ends once its FIN arrives or the linger runs out.)
        self.shared.stats.slot(self.index).closed();
        drop(conn);
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        assert!(self.live > 0, "closing with no live connection");
        self.live -= 1;
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn on_timers(&mut self) {
        for index in 0..self.entries.len() {
            let flow = match self.ctx_parts(index) {
                Some((conn, mut ctx, _)) => conn.on_timer(&mut ctx),
                None => continue,
            };
            self.apply(index, flow);
        }
    }

    fn begin_drain(&mut self) {
        let left = self.shared.shutdown_deadline().map_or(0, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64
        });
        self.drain_deadline_ms = Some(self.now_ms + left);
        if let Some(listener) = self.listener.take() {
            let _ = self.poller.delete(listener.as_raw_fd());
        }
        for index in 0..self.entries.len() {
            let can_close = match self.entries[index].conn.as_mut() {
                Some(conn) => conn.begin_shutdown(),
                None => continue,
            };
            let flow = if can_close {
                Flow::Close
            } else {
                self.pump_index(index)
            };
            self.apply(index, flow);
        }
    }

    /// Closes every connection left at the end of a shutdown. A stream thread may still be
    /// writing a body on one of them through its own handle of the socket: shutting the socket
    /// down (not just closing this handle) fails its writes, so it ends instead of outliving
    /// the deadline.
    fn close_all(&mut self) {
        for index in 0..self.entries.len() {
            if let Some(conn) = &self.entries[index].conn {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            self.close(index);
        }
        assert_eq!(self.live, 0, "connections left after close_all");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token: u64) -> Completion {
        Completion {
            token,
            outcome: Outcome::Wake,
        }
    }

    fn queued(inbox: &Inbox) -> Vec<u64> {
        let mut taken = Vec::new();
        inbox.take_all(&mut taken);
        taken.iter().map(|completion| completion.token).collect()
    }

    #[test]
    fn completions_delivered_together_reach_each_inbox_at_the_end_in_order() {
        let (one, two) = (
            Arc::new(Inbox::new().expect("inbox")),
            Arc::new(Inbox::new().expect("inbox")),
        );
        one.push(answer(1));
        assert_eq!(queued(&one), vec![1], "outside: posted at once");
        deliver_together(|| {
            one.push(answer(2));
            two.push(answer(3));
            deliver_together(|| one.push(answer(4)));
            assert!(queued(&one).is_empty(), "held, also by a nested call");
            assert!(queued(&two).is_empty(), "held");
            one.push(answer(5));
        });
        assert_eq!(queued(&one), vec![2, 4, 5]);
        assert_eq!(queued(&two), vec![3]);
        one.push(answer(6));
        assert_eq!(queued(&one), vec![6], "gathering ended with the call");
    }

    #[test]
    fn the_busy_answer_is_the_problem_document_it_claims() {
        let text = std::str::from_utf8(BUSY_RESPONSE).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let problem = crate::http::Problem::new(503).with_detail("too many connections");
        assert_eq!(body, problem.to_json());
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nContent-Type: application/problem+json"));
    }

    #[test]
    fn completions_held_by_a_panicking_call_are_still_posted() {
        let inbox = Arc::new(Inbox::new().expect("inbox"));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deliver_together(|| {
                inbox.push(answer(7));
                panic!("a listener bug");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(queued(&inbox), vec![7], "a connection never waits forever");
        inbox.push(answer(8));
        assert_eq!(queued(&inbox), vec![8], "not gathering any more");
    }
}
