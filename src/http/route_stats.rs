//! What each route answered, for `/_lithair/metrics`: per routed method and pattern (the
//! route table's own strings, so the label set is bounded by the routes an app registers,
//! never by what clients send), its answers by status class and the time its handler took.
//!
//! A [`RouteStats`] is handed to a router before it serves ([`Router::count_routes`]); the
//! router's dispatcher then counts every answer of a routed handler: the class of its status
//! and the time from the dispatch to the answer: the handler's return, or, for a deferred
//! answer (a write answered once durable, see `http::deferred`), its completion. The route's
//! own middleware and a write's wait for its commit are included; the global layers, the
//! queueing before a worker picked the request up and the sending of the answer are not. An
//! answer the router gives itself (404, 405, an automatic OPTIONS) belongs to no route and is
//! not counted here (the server counts every answer by class). HEAD answered by a GET route
//! counts as that GET. A handler that panics counts as a 5xx, an abandoned deferred answer
//! as its 503.
//!
//! Times are read where they cost little on the reactor, whose every turn counts: a precise
//! clock read is some 30 ns, which pipelined requests of a few hundred nanoseconds each
//! would feel (two per request cost 6 % of a pipelined `/plaintext` here). A handler run
//! inline by a reactor starts at the reactor's turn clock (read once per wakeup, see
//! `set_turn_clock`) or at the end of the inline handler before it in that turn, and ends on
//! the kernel's coarse clock (a few nanoseconds a read, `http::stats::coarse_us_since`): a
//! quick handler counts 0, a slow one its time to within a tick (1 to 10 ms), never more.
//! Where the coarse clock is not read (not 64-bit Linux), an inline answer counts 0. A
//! handler run by a worker reads the precise clock at its dispatch and at its answer, and a
//! deferred answer is timed to its completion from either start.
//!
//! Counting is a few uncontended atomic adds: each thread counts in one of [`ROUTE_STRIPES`]
//! stripes (threads take them in turn), and each route's counters in a stripe sit on cache
//! lines of their own, so the reactors and workers answering the same route do not bounce a
//! line between them. A reader sums the stripes.
//!
//! Owns: the per-route counters and their labels.
//! Must not: block or allocate on the counting path (it runs for every routed answer; a
//! deferred answer's count waits in a boxed watcher, one allocation per write).
//!
//! [`Router::count_routes`]: super::router::Router::count_routes

use super::request::Method;
use super::stats::{
    add_loaded, coarse_us_since, status_class, DurationCounters, Durations, STATUS_CLASSES,
};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

/// Stripes of the per-route counters: thread `k` (in the order threads first count) counts in
/// stripe `k % ROUTE_STRIPES`. More threads than stripes only share lines, they never lose
/// counts. The counters take `ROUTE_STRIPES` × 192 bytes per route.
pub const ROUTE_STRIPES: usize = 8;

/// One route's counters in one stripe, alone on its cache lines.
#[repr(align(64))]
#[derive(Debug, Default)]
struct RouteCell {
    responses: [AtomicU64; STATUS_CLASSES],
    durations: DurationCounters,
}

/// A routed handler's label: the method it was routed for and its full pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteLabel {
    pub(crate) method: Method,
    pub(crate) pattern: String,
}

/// The counters of one router's table, indexed by handler index (the table's own numbering);
/// a handler without a label (an automatic OPTIONS answer) is never counted.
#[derive(Debug)]
pub(crate) struct RouteCounters {
    labels: Vec<Option<RouteLabel>>,
    stripes: Vec<Box<[RouteCell]>>,
}

thread_local! {
    /// The stripe this thread counts in (`usize::MAX` until its first count).
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    /// On a reactor thread, its current turn's clock; `None` on every other thread.
    static TURN_CLOCK: Cell<Option<TurnClock>> = const { Cell::new(None) };
}

/// A reactor's clock for the handlers it runs inline in one turn.
#[derive(Clone, Copy, Debug)]
struct TurnClock {
    /// When the turn began (what a deferred answer is timed from).
    began: Instant,
    /// Where the next inline handler starts, on the kernel's monotonic clock: the turn's
    /// start, then the end of each inline handler timed in it (`None`: not read there).
    next_start_raw_us: Option<u64>,
}

/// The stripe this thread counts in (taken on its first count).
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE.with(|stripe| {
        if stripe.get() == usize::MAX {
            stripe.set(NEXT.fetch_add(1, Ordering::Relaxed) % ROUTE_STRIPES);
        }
        stripe.get()
    })
}

/// A reactor's turn began at `began` (the clock it read on waking), `began_raw_us` on the
/// kernel's monotonic clock: what the handlers it runs inline in this turn are timed from.
/// Called by reactor threads only.
pub(crate) fn set_turn_clock(began: Instant, began_raw_us: Option<u64>) {
    let clock = TurnClock {
        began,
        next_start_raw_us: began_raw_us,
    };
    TURN_CLOCK.with(|turn| turn.set(Some(clock)));
}

/// When this reactor thread's turn began; `None` off the reactors.
pub(crate) fn turn_began() -> Option<Instant> {
    TURN_CLOCK.with(|turn| turn.get().map(|clock| clock.began))
}

/// How long the inline handler that just answered on this reactor took, on the coarse clock
/// (see the module doc); the next one in the turn is timed from here. 0 off the reactors.
pub(crate) fn inline_elapsed_us() -> u64 {
    TURN_CLOCK.with(|turn| {
        let Some(mut clock) = turn.get() else {
            return 0;
        };
        let elapsed_us = coarse_us_since(clock.next_start_raw_us);
        clock.next_start_raw_us = clock.next_start_raw_us.map(|start| start + elapsed_us);
        turn.set(Some(clock));
        elapsed_us
    })
}

impl RouteCounters {
    /// Counters at zero for a table whose handler `i` has `labels[i]`.
    pub(crate) fn new(labels: Vec<Option<RouteLabel>>) -> RouteCounters {
        let stripes = (0..ROUTE_STRIPES)
            .map(|_| labels.iter().map(|_| RouteCell::default()).collect())
            .collect();
        RouteCounters { labels, stripes }
    }

    /// Whether handler `index`'s answers are counted.
    pub(crate) fn counts(&self, index: usize) -> bool {
        matches!(self.labels.get(index), Some(Some(_)))
    }

    /// Counts one answer of handler `index` with `status`, begun at `started`.
    ///
    /// # Panics
    /// If `index` is not a handler of the table these counters were made for.
    pub(crate) fn count(&self, index: usize, status: u16, started: Instant) {
        let elapsed = started.elapsed();
        let elapsed_us = elapsed
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(elapsed.subsec_micros()));
        self.count_us(index, status, elapsed_us);
    }

    /// Counts one answer of handler `index` with `status` that took `elapsed_us`.
    ///
    /// # Panics
    /// If `index` is not a handler of the table these counters were made for.
    pub(crate) fn count_us(&self, index: usize, status: u16, elapsed_us: u64) {
        let cell = &self.stripes[stripe()][index];
        cell.responses[status_class(status)].fetch_add(1, Ordering::Relaxed);
        cell.durations.record(elapsed_us);
    }

    /// What each labeled route answered so far, in the table's order, the routes with no
    /// answer yet left out.
    fn figures(&self) -> Vec<RouteFigures> {
        let mut figures = Vec::new();
        for (index, label) in self.labels.iter().enumerate() {
            let Some(label) = label else { continue };
            let mut route = RouteFigures {
                method: label.method.as_str().to_string(),
                pattern: label.pattern.clone(),
                responses_by_class: [0; STATUS_CLASSES],
                durations: Durations::default(),
            };
            for stripe in &self.stripes {
                add_loaded(&mut route.responses_by_class, &stripe[index].responses);
                stripe[index].durations.add_to(&mut route.durations);
            }
            if route.responses_by_class.iter().any(|&count| count > 0) {
                figures.push(route);
            }
        }
        figures
    }
}

/// What one route answered: by status class and how long its handler took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFigures {
    /// The method it is routed for (`GET` also for HEAD requests a GET route answered).
    pub method: String,
    /// Its pattern as registered, group prefix included (`/items/{id}`).
    pub pattern: String,
    /// Answers by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses_by_class: [u64; STATUS_CLASSES],
    /// How long its handler took (see the module doc for what is timed).
    pub durations: Durations,
}

/// Per-route counters shared between the router that counts them and whoever reads them (a
/// clone reads the same counters). Empty until the router it was given to serves its first
/// request; one router per `RouteStats`.
#[derive(Clone, Debug, Default)]
pub struct RouteStats {
    counters: Arc<RwLock<Option<Arc<RouteCounters>>>>,
}

impl RouteStats {
    /// Counters not yet given to a router.
    pub fn new() -> RouteStats {
        RouteStats::default()
    }

    /// The router composed its dispatcher with `counters` (again, if its routes changed
    /// after it had served: the old counts belong to a table that is gone).
    pub(crate) fn attach(&self, counters: Arc<RouteCounters>) {
        *self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(counters);
    }

    /// What each route answered so far (the routes with at least one answer, in the order
    /// they were registered).
    pub fn routes(&self) -> Vec<RouteFigures> {
        let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        counters
            .as_ref()
            .map_or_else(Vec::new, |counters| counters.figures())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(method: Method, pattern: &str) -> Option<RouteLabel> {
        Some(RouteLabel {
            method,
            pattern: pattern.to_string(),
        })
    }

    #[test]
    fn answers_are_counted_per_route_across_threads_and_unlabeled_handlers_are_not() {
        let counters = Arc::new(RouteCounters::new(vec![
            label(Method::Get, "/items/{id}"),
            None,
            label(Method::Post, "/items"),
            label(Method::Delete, "/items/{id}"),
        ]));
        let stats = RouteStats::new();
        assert!(stats.routes().is_empty(), "nothing attached yet");
        stats.attach(Arc::clone(&counters));
        assert!(counters.counts(0) && !counters.counts(1) && counters.counts(2));
        assert!(!counters.counts(4), "past the table");
        // More threads than stripes: threads sharing a stripe still lose nothing.
        let threads: Vec<_> = (0..ROUTE_STRIPES * 2)
            .map(|_| {
                let counters = Arc::clone(&counters);
                std::thread::spawn(move || {
                    for status in [200, 200, 404] {
                        counters.count(0, status, Instant::now());
                    }
                    counters.count(2, 201, Instant::now());
                    counters.count(2, 500, Instant::now());
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("counting thread");
        }
        let threads = (ROUTE_STRIPES * 2) as u64;
        let routes = stats.routes();
        assert_eq!(
            routes.len(),
            2,
            "the DELETE route answered nothing: {routes:?}"
        );
        assert_eq!(
            (routes[0].method.as_str(), routes[0].pattern.as_str()),
            ("GET", "/items/{id}")
        );
        assert_eq!(
            routes[0].responses_by_class,
            [0, 2 * threads, 0, threads, 0]
        );
        assert_eq!(routes[0].durations.count(), 3 * threads);
        assert_eq!(
            (routes[1].method.as_str(), routes[1].pattern.as_str()),
            ("POST", "/items")
        );
        assert_eq!(routes[1].responses_by_class, [0, threads, 0, 0, threads]);
        assert_eq!(std::mem::align_of::<RouteCell>(), 64);
    }

    #[test]
    fn a_handlers_time_lands_in_its_bucket() {
        let counters = RouteCounters::new(vec![label(Method::Get, "/slow")]);
        let stats = RouteStats::new();
        let counters = Arc::new(counters);
        stats.attach(Arc::clone(&counters));
        let started = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        counters.count(0, 200, started);
        let durations = &stats.routes()[0].durations;
        assert!(durations.sum_us >= 3_000, "{durations:?}");
        // 3 ms and more: not in the buckets up to 2.5 ms.
        let fast: u64 = durations.buckets[..5].iter().sum();
        assert_eq!(fast, 0, "{durations:?}");
        assert_eq!(durations.count(), 1);
    }
}
