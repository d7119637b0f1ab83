//! `Server`: binds, starts the reactors and the worker pool, and shuts down gracefully on
//! `ServerHandle::shutdown` or on SIGINT / SIGTERM (`serve`).
//!
//! Owns: thread start-up and tear-down, the fd limit, the listen backlog.
//! Must not: contain protocol logic (that is `conn`) or event-loop logic (that is `reactor`).

use super::limits::{ServerConfig, LISTEN_BACKLOG};
use super::pool::Pool;
use super::reactor::{Inbox, Reactor, Shared};
use super::stats::ServerStats;
use super::Handler;
use crate::sys::waker::Waker;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An HTTP/1.1 server, not yet running.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    stats: ServerStats,
}

impl Server {
    /// Binds a listening socket (port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        crate::sys::socket::set_listen_backlog(listener.as_raw_fd(), LISTEN_BACKLOG)?;
        Ok(Server {
            listener,
            config: ServerConfig::default(),
            stats: ServerStats::new(),
        })
    }

    /// Replaces the configuration (validated when the server starts).
    pub fn config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// Counts the answers in `stats` (a clone of which the caller reads, say for a metrics
    /// route built before the server starts); by default in counters of the server's own.
    pub fn stats(mut self, stats: ServerStats) -> Server {
        self.stats = stats;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight requests finish
    /// within the grace period, and returns `Ok(())`.
    pub fn serve(self, handler: impl Handler) -> io::Result<()> {
        let signals = Waker::new()?;
        crate::sys::signal::notify_on_termination(signals.write_fd())?;
        let handle = self.start(Arc::new(handler), Some(signals))?;
        let result = handle.join();
        crate::sys::signal::clear_termination_fd();
        result
    }

    /// Starts serving on background threads; for tests and embedding.
    pub fn spawn(self, handler: impl Handler) -> io::Result<ServerHandle> {
        self.start(Arc::new(handler), None)
    }

    fn start(self, handler: Arc<dyn Handler>, signals: Option<Waker>) -> io::Result<ServerHandle> {
        self.config.validate()?;
        // More descriptors let 10k idle connections in; failing to raise is not fatal.
        let _ = crate::sys::rlimit::raise_fd_limit();
        self.listener.set_nonblocking(true)?;
        let addr = self.listener.local_addr()?;
        let reactors = self.config.reactor_count();
        let pool = Pool::counted(
            self.config.worker_threads,
            self.config.worker_queue_max,
            self.stats.pool_gauges(),
        )?;
        let mut inboxes = Vec::with_capacity(reactors);
        for _ in 0..reactors {
            inboxes.push(Arc::new(Inbox::new()?));
        }
        let shared = Arc::new(Shared::new(self.config, handler, pool, inboxes, self.stats));
        let signals = signals.map(Arc::new);
        let mut threads = Vec::with_capacity(reactors);
        for index in 0..reactors {
            let signal_fd = signals.as_ref().filter(|_| index == 0).map(|w| w.fd());
            let reactor = Reactor::new(
                Arc::clone(&shared),
                index,
                self.listener.try_clone()?,
                signal_fd,
            )?;
            let signal_waker = signals.clone().filter(|_| index == 0);
            let thread = std::thread::Builder::new()
                .name(format!("lithair-reactor-{index}"))
                .spawn(move || reactor.run(signal_waker.as_deref()))?;
            threads.push(thread);
        }
        Ok(ServerHandle {
            addr,
            shared,
            threads,
            _signals: signals,
        })
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    _signals: Option<Arc<Waker>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts a graceful shutdown: stop accepting, finish in-flight requests (within
    /// `shutdown_grace_ms`), close. Returns at once; `join` waits.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Open connections right now (all reactors).
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for the reactors to finish (after `shutdown` or a signal), then for the workers and the
    /// stream threads.
    pub fn join(mut self) -> io::Result<()> {
        let mut panicked = false;
        for thread in self.threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        // One deadline for all: the reactors' drain, handlers and bodies still running share
        // the grace period that began with the shutdown (a reactor that panicked ended
        // without one: then the grace starts now).
        let deadline = self.shared.shutdown_deadline().unwrap_or_else(|| {
            Instant::now() + Duration::from_millis(self.shared.config.shutdown_grace_ms)
        });
        let grace = deadline.saturating_duration_since(Instant::now());
        if !self.shared.pool.shutdown(grace) {
            eprintln!("lithair http: some handlers were still running at the shutdown deadline");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !self.shared.streams.shutdown(left) {
            eprintln!("lithair http: some bodies were still being sent at the shutdown deadline");
        }
        if panicked {
            return Err(io::Error::other("a reactor thread panicked"));
        }
        Ok(())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Never leave threads serving behind a dropped handle; `join` is not required.
        self.shared.begin_shutdown();
    }
}
