//! `ServerConfig`: every limit and size of the server core, as named defaults (units last).
//!
//! Owns: the defaults and their validation (done once, at start).
//! Must not: be consulted for anything but construction-time values.

use std::io;

/// Longest request line, CRLF excluded (414 beyond).
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;
/// Longest request head (431 beyond).
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Most header fields in a head (431 beyond).
pub const HEADER_COUNT_MAX: usize = 64;
/// Largest request body (413, answered before the body is read).
pub const BODY_BYTES_MAX: u64 = 2 * 1024 * 1024;
/// Most bytes of request bodies the server holds at once, across connections: from a body's
/// first bytes until its request is done with (503 with `Retry-After`, then close, for a body
/// that would take the server past it; see `http::body_budget`). A server holds at least twice
/// `body_bytes_max` whatever this says (see [`ServerConfig::bodies_held_bytes_max`]).
pub const BODIES_HELD_BYTES_MAX: usize = 512 * 1024 * 1024;
/// Time allowed from the first byte of a head to its end (408 and close beyond: slowloris).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Time a body may go without any progress (408 and close beyond).
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Time a keep-alive connection may stay idle between requests (closed silently beyond).
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Time pending response bytes may go without any progress (client not reading: closed).
pub const WRITE_TIMEOUT_MS: u64 = 30_000;
/// Most open connections; one more gets 503 and is closed.
pub const CONNECTIONS_MAX: usize = 50_000;
/// Most requests of one connection accepted but not yet answered (pipelining).
pub const PIPELINE_IN_FLIGHT_MAX: usize = 64;
/// Most requests waiting for a worker across the server (503 beyond).
pub const WORKER_QUEUE_MAX: usize = 8192;
/// Worker threads for blocking handlers; enough to let many commits wait in one group commit.
pub const WORKER_THREADS_DEFAULT: usize = 64;
/// Most streamed and file bodies sent at once, each on a thread of its own (see
/// `http::streams`); one more closes its connection after the head.
pub const STREAMS_MAX: usize = 1024;
/// Time in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// After answering a framing error, time spent discarding input before closing (so the peer
/// reads the answer instead of a reset).
pub const LINGER_MS: u64 = 2_000;
/// Longest spell a reactor polls for events before it sleeps in the kernel, in microseconds
/// (the window adapts below it, see `http::poll_window`; 0 disables polling). A reactor that
/// polls instead of sleeping saves the sender the cost of waking it, at the price of the CPU
/// spent polling while the load is steady enough to keep the window open.
pub const POLL_WINDOW_MAX_US: u64 = 50;
/// Largest accepted `poll_window_max_us`: past a millisecond, polling costs more CPU than any
/// wake-up it saves.
pub const POLL_WINDOW_MAX_US_LIMIT: u64 = 1_000;
/// Listen backlog asked of the kernel.
pub const LISTEN_BACKLOG: i32 = 4096;
/// How long a reactor leaves the listener alone after an accept failed for want of a resource
/// (descriptors: `EMFILE`, `ENFILE`; memory): the listener stays readable, so retrying at once
/// would spin a core and log each try until a descriptor is freed. New connections wait in the
/// backlog meanwhile.
pub const ACCEPT_PAUSE_MS: u64 = 100;
/// A file body of at most this many bytes is read into memory by the worker that made the
/// response and written with its head by the reactor, like any buffer: one write for the
/// whole answer. Sent apart from its head it would cost a `cachestat` and a `sendfile` on the
/// reactor, or, not cached, a stream thread's two hand-overs, four socket option calls and an
/// epoll re-registration, which for a small file are most of the work. Bounded so that the
/// pipelined answers a connection holds stay small ([`PIPELINE_IN_FLIGHT_MAX`] of them:
/// 2 MiB).
pub const FILE_BODY_BUFFERED_BYTES_MAX: u64 = 32 * 1024;
/// A larger file body is sent by the reactor itself (`sendfile(2)` on the connection's
/// non-blocking socket, as the socket takes it) in steps of at most this many bytes, each
/// sent only once `cachestat(2)` says it is all in the page cache, so no disk read holds the
/// reactor; a step that is not goes, with the rest, to a stream thread. A hand-over to a
/// stream thread and back cost about as much as sending 64 KiB. Bounded so that the check
/// stays short (64 pages).
pub const REACTOR_FILE_STEP_BYTES: u64 = 256 * 1024;

/// Every limit of the server core. Build with `ServerConfig::default()` and change fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Reactor threads; 0 means `available_parallelism()`.
    pub reactor_threads: usize,
    /// Worker threads for handlers that are not inline.
    pub worker_threads: usize,
    /// See [`WORKER_QUEUE_MAX`].
    pub worker_queue_max: usize,
    /// See [`STREAMS_MAX`].
    pub streams_max: usize,
    /// See [`REQUEST_LINE_BYTES_MAX`].
    pub request_line_bytes_max: usize,
    /// See [`HEADER_BYTES_MAX`].
    pub header_bytes_max: usize,
    /// See [`HEADER_COUNT_MAX`].
    pub header_count_max: usize,
    /// See [`BODY_BYTES_MAX`].
    pub body_bytes_max: u64,
    /// See [`BODIES_HELD_BYTES_MAX`]. Raised to twice `body_bytes_max` when below it: a
    /// chunked body's buffer grows by doubling, so one body of the largest size allowed may
    /// take that much, and must always be received.
    pub bodies_held_bytes_max: usize,
    /// See [`HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout_ms: u64,
    /// See [`BODY_READ_TIMEOUT_MS`].
    pub body_read_timeout_ms: u64,
    /// See [`IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: u64,
    /// See [`WRITE_TIMEOUT_MS`].
    pub write_timeout_ms: u64,
    /// See [`CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// See [`PIPELINE_IN_FLIGHT_MAX`].
    pub pipeline_in_flight_max: usize,
    /// See [`SHUTDOWN_GRACE_MS`].
    pub shutdown_grace_ms: u64,
    /// See [`LINGER_MS`].
    pub linger_ms: u64,
    /// See [`POLL_WINDOW_MAX_US`] (at most [`POLL_WINDOW_MAX_US_LIMIT`]).
    pub poll_window_max_us: u64,
    /// The `Server` header value.
    pub server_name: &'static str,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            reactor_threads: 0,
            worker_threads: WORKER_THREADS_DEFAULT,
            worker_queue_max: WORKER_QUEUE_MAX,
            streams_max: STREAMS_MAX,
            request_line_bytes_max: REQUEST_LINE_BYTES_MAX,
            header_bytes_max: HEADER_BYTES_MAX,
            header_count_max: HEADER_COUNT_MAX,
            body_bytes_max: BODY_BYTES_MAX,
            bodies_held_bytes_max: BODIES_HELD_BYTES_MAX,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: BODY_READ_TIMEOUT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            write_timeout_ms: WRITE_TIMEOUT_MS,
            connections_max: CONNECTIONS_MAX,
            pipeline_in_flight_max: PIPELINE_IN_FLIGHT_MAX,
            shutdown_grace_ms: SHUTDOWN_GRACE_MS,
            linger_ms: LINGER_MS,
            poll_window_max_us: POLL_WINDOW_MAX_US,
            server_name: "lithair",
        }
    }
}

impl ServerConfig {
    /// Rejects settings that cannot work, naming the field.
    pub fn validate(&self) -> io::Result<()> {
        let positive = [
            ("worker_threads", self.worker_threads as u64),
            ("worker_queue_max", self.worker_queue_max as u64),
            ("streams_max", self.streams_max as u64),
            ("request_line_bytes_max", self.request_line_bytes_max as u64),
            ("header_count_max", self.header_count_max as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
            ("connections_max", self.connections_max as u64),
            ("pipeline_in_flight_max", self.pipeline_in_flight_max as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(format!("ServerConfig.{name} must be > 0")));
            }
        }
        if self.header_bytes_max < self.request_line_bytes_max {
            return Err(invalid(format!(
                "ServerConfig.header_bytes_max ({}) must be >= request_line_bytes_max ({})",
                self.header_bytes_max, self.request_line_bytes_max
            )));
        }
        if self.poll_window_max_us > POLL_WINDOW_MAX_US_LIMIT {
            return Err(invalid(format!(
                "ServerConfig.poll_window_max_us ({}) must be <= {POLL_WINDOW_MAX_US_LIMIT}",
                self.poll_window_max_us
            )));
        }
        if self.server_name.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(invalid(
                "ServerConfig.server_name must be visible ASCII".into(),
            ));
        }
        Ok(())
    }

    /// The body budget in force: `bodies_held_bytes_max`, at least twice `body_bytes_max`.
    pub fn bodies_held_budget(&self) -> usize {
        let largest_body =
            usize::try_from(self.body_bytes_max.saturating_mul(2)).unwrap_or(usize::MAX);
        self.bodies_held_bytes_max.max(largest_body)
    }

    /// The reactor count after resolving 0 to the available parallelism.
    pub fn reactor_count(&self) -> usize {
        if self.reactor_threads > 0 {
            return self.reactor_threads;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_zero_limits_do_not() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = ServerConfig {
            idle_timeout_ms: 0,
            ..ServerConfig::default()
        };
        let error = bad.validate().expect_err("zero timeout");
        assert!(error.to_string().contains("idle_timeout_ms"));
        let bad = ServerConfig {
            header_bytes_max: 10,
            ..ServerConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(ServerConfig::default().reactor_count() >= 1);
        let bad = ServerConfig {
            poll_window_max_us: POLL_WINDOW_MAX_US_LIMIT + 1,
            ..ServerConfig::default()
        };
        let error = bad.validate().expect_err("polling too long");
        assert!(error.to_string().contains("poll_window_max_us"));
        let off = ServerConfig {
            poll_window_max_us: 0,
            ..ServerConfig::default()
        };
        assert!(off.validate().is_ok(), "0 turns polling off");
    }
}
