//! What a server did, for `/_lithair/metrics`: its answers by status class, how long the app
//! took to answer, the connections it holds, admitted and refused, how busy its worker pool
//! is (threads at work, jobs waiting, requests refused for a full queue or a stop), and how its
//! reactors waited (polling, sleeping: see `http::poll_window`).
//!
//! Each reactor counts in a slot of its own, a cache line apart from the others, so counting
//! is a few uncontended atomic adds per response (no line bounces between reactors); a
//! reader sums the slots.
//!
//! Reads and writes are timed apart (a write waits for its commit: mixed with reads, its
//! time would hide in theirs). A write is a request with a method that is not safe (RFC 9110
//! §9.2.1: POST, PUT, PATCH, DELETE and the like); every other answer is a read.
//!
//! Durations are read on the reactor's clock, which it reads once per wakeup (no precise
//! clock call per request): a request is timed from the wakeup that completed it (its last
//! byte read) to its answer queued for writing, which is stamped with the later of that
//! wakeup's reading and the kernel's coarse clock (`sys::clock`, a few nanoseconds a read,
//! trailing by at most a tick of 1 to 10 ms). So a request answered quickly within the
//! wakeup that read it counts 0, while one held by a slow handler run inline (its own or
//! one before it in the same wakeup) counts that time, to within a tick; one answered by a
//! worker counts the wait. The time its answer takes to leave the socket is not included.
//!
//! Owns: the counters.
//! Must not: block or allocate on the counting path (it runs on the reactor for every answer).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Slots of a [`ServerStats`]: reactor `k` counts in slot `k % STATS_SLOTS` (more reactors
/// than slots only share lines, they never lose counts).
pub const STATS_SLOTS: usize = 16;

/// Status classes counted: 1xx to 5xx (a status outside 100..=599 counts as 5xx).
pub const STATUS_CLASSES: usize = 5;

/// Upper bounds of the answer-time buckets, in microseconds (each bucket holds the answers
/// at or below its bound and above the previous one; one more bucket holds those above the
/// last bound). From 100 µs, a read a worker answers, to 10 s, a handler's default timeout.
pub const DURATION_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Answer-time buckets: one per bound and one above the last.
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS_US.len() + 1;

/// What a timed answer answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A request with a safe method (GET, HEAD, OPTIONS, TRACE), or an answer of the
    /// connection's own (a framing or limit error: no request reached the app).
    Read,
    /// A request with a method that is not safe (POST, PUT, PATCH, DELETE, ...).
    Write,
}

impl RequestKind {
    /// Every kind: reads, then writes.
    pub const ALL: [RequestKind; 2] = [RequestKind::Read, RequestKind::Write];

    /// Its name, as the metrics label it (`read`, `write`).
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Read => "read",
            RequestKind::Write => "write",
        }
    }

    fn index(self) -> usize {
        match self {
            RequestKind::Read => 0,
            RequestKind::Write => 1,
        }
    }
}

/// Microseconds from `since_raw_us` (a reading of the precise monotonic clock,
/// `sys::clock::monotonic_us`) to now, on the kernel's coarse clock: a few nanoseconds to
/// read, never more than the time that truly passed, less by up to a tick (1 to 10 ms). 0
/// where the raw clock is not read (`since_raw_us` is `None`). This is how the reactor times
/// what happens within one of its wakeups without a precise clock read per request.
pub(crate) fn coarse_us_since(since_raw_us: Option<u64>) -> u64 {
    let Some(since) = since_raw_us else { return 0 };
    crate::sys::clock::coarse_monotonic_us().map_or(0, |now| now.saturating_sub(since))
}

/// Answer times counted in place: one kind's in one slot here, one route's in one stripe in
/// `http::route_stats`.
#[derive(Debug, Default)]
pub(crate) struct DurationCounters {
    /// Answers per time bucket (not cumulative: a reader accumulates).
    buckets: [AtomicU64; DURATION_BUCKETS],
    sum_us: AtomicU64,
}

impl DurationCounters {
    /// Counts one answer that took `elapsed_us`, in the bucket of the first bound at or
    /// above it (the last bucket past the last bound).
    pub(crate) fn record(&self, elapsed_us: u64) {
        let bucket = DURATION_BOUNDS_US
            .iter()
            .position(|&bound| elapsed_us <= bound)
            .unwrap_or(DURATION_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Most answers are given within the reactor's turn and count 0: a locked add saved.
        if elapsed_us > 0 {
            self.sum_us.fetch_add(elapsed_us, Ordering::Relaxed);
        }
    }

    /// Adds what these counters hold to `into`.
    pub(crate) fn add_to(&self, into: &mut Durations) {
        add_loaded(&mut into.buckets, &self.buckets);
        into.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// The index of `status`'s class in a `[1xx, 2xx, 3xx, 4xx, 5xx]` array (a status outside
/// 100..=599 counts as 5xx).
pub(crate) fn status_class(status: u16) -> usize {
    match usize::from(status / 100) {
        class @ 1..=STATUS_CLASSES => class - 1,
        _ => STATUS_CLASSES - 1,
    }
}

/// One reactor's counters, alone on its cache lines.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct StatsSlot {
    responses: [AtomicU64; STATUS_CLASSES],
    /// By [`RequestKind::index`].
    durations: [DurationCounters; 2],
    /// Connections this slot's reactors hold now (added on admit, taken on close).
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Idle spells that polling ended with an event, that ended asleep, and the time polled.
    polls_caught: AtomicU64,
    sleeps: AtomicU64,
    polled_us: AtomicU64,
}

impl StatsSlot {
    /// Counts one answer with `status` to a request of `kind` that took `elapsed_us` from
    /// its completion.
    pub(crate) fn count(&self, status: u16, elapsed_us: u64, kind: RequestKind) {
        self.count_status(status);
        self.durations[kind.index()].record(elapsed_us);
    }

    fn count_status(&self, status: u16) {
        self.responses[status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was admitted.
    pub(crate) fn admitted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// An admitted connection was closed.
    pub(crate) fn closed(&self) {
        let before = self.open.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a connection closed that was never admitted");
    }

    /// An idle spell of a reactor ended: `caught` when polling found the event (no sleep),
    /// after `polled_us` of polling.
    pub(crate) fn idled(&self, caught: bool, polled_us: u64) {
        let spells = if caught {
            &self.polls_caught
        } else {
            &self.sleeps
        };
        spells.fetch_add(1, Ordering::Relaxed);
        if polled_us > 0 {
            self.polled_us.fetch_add(polled_us, Ordering::Relaxed);
        }
    }

    /// A connection was refused past the connection limit: its 503 counts as an answer,
    /// untimed (no request was read).
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.count_status(503);
    }
}

/// How long the app took to answer: answers per bucket of [`DURATION_BOUNDS_US`] (not
/// cumulative; the last bucket holds those above the last bound) and their total time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    /// Answers per bucket.
    pub buckets: [u64; DURATION_BUCKETS],
    /// Their summed time, in microseconds.
    pub sum_us: u64,
}

impl Durations {
    /// Answers timed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The connections a server holds and has taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open now (an upgraded one, a WebSocket, included).
    pub open: u64,
    /// Admitted since the server started.
    pub accepted: u64,
    /// Refused past the connection limit (answered 503 and closed) since it started.
    pub refused: u64,
}

/// How the reactors waited for events, counted while polling is enabled
/// (`ServerConfig::poll_window_max_us` > 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polling {
    /// Idle spells that polling ended with an event: each saved the sender a wake-up.
    pub caught: u64,
    /// Idle spells that ended asleep in the kernel (the window closed, or ran out first).
    pub sleeps: u64,
    /// Time spent polling, in microseconds (wall time: on a CPU of its own, the CPU the
    /// reactors spent instead of sleeping; a spell another thread cut short counts the yield
    /// it lost).
    pub polled_us: u64,
}

/// The worker pool's figures, kept by the pool itself (`Pool::counted`): gauges it sets
/// under its queue lock or around each job, and the refusals it counts.
#[derive(Debug, Default)]
pub(crate) struct PoolGauges {
    pub(crate) threads: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// The request bodies the server holds, kept by its body budget (`http::body_budget`).
#[derive(Debug, Default)]
pub(crate) struct BodyGauges {
    pub(crate) held_bytes: AtomicUsize,
    pub(crate) refused: AtomicU64,
}

/// The request bodies a server holds against its budget (`ServerConfig::bodies_held_bytes_max`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bodies {
    /// Bytes of request bodies held now (their buffers' capacity), from their first bytes until
    /// their requests are done with.
    pub held_bytes: u64,
    /// Bodies refused because the budget could not take them (answered 503 with
    /// `Retry-After`), since the server started.
    pub refused: u64,
}

/// How busy a server's worker pool is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workers {
    /// Worker threads.
    pub threads: u64,
    /// Threads running a job now.
    pub busy: u64,
    /// Jobs waiting for a thread.
    pub queued: u64,
    /// Requests refused because the queue was full, or the server was stopping (answered 503
    /// with `Retry-After`), since the server started.
    pub refused: u64,
}

/// Counters a server keeps, shared with whoever reads them (`Server::stats` hands them to
/// the server; a clone reads the same counters). One server per `ServerStats`: the worker
/// gauges are its pool's.
#[derive(Clone, Debug)]
pub struct ServerStats {
    slots: Arc<[StatsSlot; STATS_SLOTS]>,
    pool: Arc<PoolGauges>,
    bodies: Arc<BodyGauges>,
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats {
            slots: Arc::new(std::array::from_fn(|_| StatsSlot::default())),
            pool: Arc::default(),
            bodies: Arc::default(),
        }
    }
}

impl ServerStats {
    /// Counters at zero.
    pub fn new() -> ServerStats {
        ServerStats::default()
    }

    /// The slot reactor `reactor` counts in.
    pub(crate) fn slot(&self, reactor: usize) -> &StatsSlot {
        &self.slots[reactor % STATS_SLOTS]
    }

    /// Responses written so far by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]` (a refusal
    /// written before any request was read, the 503 past the connection limit, included).
    pub fn responses_by_class(&self) -> [u64; STATUS_CLASSES] {
        let mut sums = [0; STATUS_CLASSES];
        for slot in self.slots.iter() {
            add_loaded(&mut sums, &slot.responses);
        }
        sums
    }

    /// How long the answers of `kind` took (see the module doc for what is timed). Every
    /// counted answer but the 503 past the connection limit is timed, so the counts of both
    /// kinds add up to the responses' minus the refused connections' (give or take answers
    /// counted while this reads).
    pub fn durations(&self, kind: RequestKind) -> Durations {
        let mut durations = Durations::default();
        for slot in self.slots.iter() {
            slot.durations[kind.index()].add_to(&mut durations);
        }
        durations
    }

    /// The gauges the server's worker pool keeps.
    pub(crate) fn pool_gauges(&self) -> Arc<PoolGauges> {
        Arc::clone(&self.pool)
    }

    /// The gauges the server's body budget keeps.
    pub(crate) fn body_gauges(&self) -> Arc<BodyGauges> {
        Arc::clone(&self.bodies)
    }

    /// The request bodies held, and refused for want of budget.
    pub fn bodies(&self) -> Bodies {
        Bodies {
            held_bytes: self.bodies.held_bytes.load(Ordering::Relaxed) as u64,
            refused: self.bodies.refused.load(Ordering::Relaxed),
        }
    }

    /// How busy the worker pool is.
    pub fn workers(&self) -> Workers {
        let load = |gauge: &AtomicU64| gauge.load(Ordering::Relaxed);
        Workers {
            threads: load(&self.pool.threads),
            busy: load(&self.pool.busy),
            queued: load(&self.pool.queued),
            refused: load(&self.pool.refused),
        }
    }

    /// How the reactors waited: polling, sleeping.
    pub fn polling(&self) -> Polling {
        Polling {
            caught: self.summed(|slot| &slot.polls_caught),
            sleeps: self.summed(|slot| &slot.sleeps),
            polled_us: self.summed(|slot| &slot.polled_us),
        }
    }

    /// The connections held, admitted and refused.
    pub fn connections(&self) -> Connections {
        Connections {
            open: self.summed(|slot| &slot.open),
            accepted: self.summed(|slot| &slot.accepted),
            refused: self.summed(|slot| &slot.refused),
        }
    }

    /// One counter summed over the slots.
    fn summed(&self, counter: impl Fn(&StatsSlot) -> &AtomicU64) -> u64 {
        self.slots
            .iter()
            .map(|slot| counter(slot).load(Ordering::Relaxed))
            .sum()
    }
}

/// Adds each counter's value to its sum.
pub(crate) fn add_loaded<const N: usize>(sums: &mut [u64; N], counters: &[AtomicU64; N]) {
    for (sum, counter) in sums.iter_mut().zip(counters) {
        *sum += counter.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_across_slots() {
        let stats = ServerStats::new();
        let reader = stats.clone();
        stats.slot(0).count(200, 0, RequestKind::Read);
        stats.slot(1).count(204, 0, RequestKind::Read);
        stats.slot(STATS_SLOTS + 1).count(404, 0, RequestKind::Read);
        stats.slot(3).count(101, 0, RequestKind::Read);
        stats.slot(3).count(503, 0, RequestKind::Read);
        stats.slot(3).count(999, 0, RequestKind::Read);
        stats.slot(3).count(0, 0, RequestKind::Read);
        assert_eq!(reader.responses_by_class(), [1, 2, 0, 1, 3]);
        assert_eq!(std::mem::align_of::<StatsSlot>(), 64);
    }

    #[test]
    fn answer_times_fall_in_the_bucket_of_their_bound() {
        let stats = ServerStats::new();
        // At a bound: that bucket; just above: the next; past the last: the overflow bucket.
        let cases = [
            (0, 0),
            (100, 0),
            (101, 1),
            (1_000, 3),
            (1_001, 4),
            (10_000_000, DURATION_BUCKETS - 2),
            (10_000_001, DURATION_BUCKETS - 1),
            (u64::MAX / 4, DURATION_BUCKETS - 1),
        ];
        for (k, (elapsed_us, _)) in cases.iter().enumerate() {
            stats.slot(k).count(200, *elapsed_us, RequestKind::Read);
        }
        // One write, timed apart from the reads.
        stats.slot(0).count(201, 7_000, RequestKind::Write);
        let writes = stats.durations(RequestKind::Write);
        assert_eq!((writes.count(), writes.sum_us), (1, 7_000));
        let up_to_10ms = DURATION_BOUNDS_US.iter().position(|&b| b == 10_000);
        let bucket = up_to_10ms.expect("a 10 ms bound");
        assert_eq!(writes.buckets[bucket], 1, "7 ms: above 5 ms, at most 10 ms");
        let durations = stats.durations(RequestKind::Read);
        let mut expected = [0u64; DURATION_BUCKETS];
        for (_, bucket) in cases {
            expected[bucket] += 1;
        }
        assert_eq!(durations.buckets, expected);
        assert_eq!(durations.count(), cases.len() as u64);
        let sum: u64 = cases.iter().map(|(elapsed_us, _)| elapsed_us).sum();
        assert_eq!(durations.sum_us, sum);
        assert!(DURATION_BOUNDS_US.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn connections_are_counted_across_slots() {
        let stats = ServerStats::new();
        stats.slot(0).admitted();
        stats.slot(1).admitted();
        stats.slot(1).admitted();
        stats.slot(1).closed();
        stats.slot(2).refused();
        assert_eq!(stats.responses_by_class(), [0, 0, 0, 0, 1]);
        for kind in RequestKind::ALL {
            assert_eq!(stats.durations(kind).count(), 0, "a refusal is not timed");
        }
        let expected = Connections {
            open: 2,
            accepted: 3,
            refused: 1,
        };
        assert_eq!(stats.clone().connections(), expected);
    }

    #[test]
    #[should_panic(expected = "never admitted")]
    fn a_close_without_an_admission_stops_loudly() {
        ServerStats::new().slot(0).closed();
    }
}
