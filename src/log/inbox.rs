//! The log's request inbox: appends and control requests waiting for a writer thread, oldest
//! first, and which thread is woken for them.
//!
//! Owns: the wake-up of writer threads. A request queued from outside wakes one sleeping
//! writer thread. A request queued by a writer thread of this very log (a completion that
//! appends the next batch, on a single-node engine) wakes nobody: that thread goes back to
//! its loop as soon as its completion returns and takes the request itself, so no thread hop
//! (and no sleeping thread's wake-up latency) separates an fsync's completion from the next
//! write.
//! Must not: write, sync or decide anything about requests; or run anything under its lock.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Source of inbox ids (0 means "no inbox" in [`WRITER_OF`]).
static NEXT_INBOX_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The inbox whose writer thread this is, for the thread's whole life (0: not a writer
    /// thread of any log).
    static WRITER_OF: Cell<u64> = const { Cell::new(0) };
}

/// Whether the calling thread is a writer thread of any log.
pub(super) fn on_any_writer_thread() -> bool {
    WRITER_OF.with(Cell::get) != 0
}

/// What [`Inbox::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// Requests are queued.
    Ready,
    /// The inbox is closed and empty: the writer threads stop.
    Closed,
    /// The timeout passed with nothing queued.
    TimedOut,
}

/// Requests for the writer threads of one log.
pub(super) struct Inbox<R> {
    state: Mutex<State<R>>,
    /// Writer threads sleep here for requests.
    ready: Condvar,
    id: u64,
}

struct State<R> {
    requests: VecDeque<R>,
    closed: bool,
    /// Writer threads inside `wait` (no notify when zero).
    sleepers: usize,
}

impl<R> Inbox<R> {
    /// An open, empty inbox.
    pub(super) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                requests: VecDeque::new(),
                closed: false,
                sleepers: 0,
            }),
            ready: Condvar::new(),
            id: NEXT_INBOX_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().expect("log inbox poisoned")
    }

    /// Marks the calling thread, for its whole life, as a writer thread of this inbox: its own
    /// requests then wake nobody (it takes them itself, see the module doc).
    pub(super) fn enter(&self) {
        WRITER_OF.with(|writer_of| writer_of.set(self.id));
    }

    /// Queues `request`; returns whether it woke a writer thread, or gives the request back
    /// when the inbox is closed.
    pub(super) fn push(&self, request: R) -> Result<bool, R> {
        let own_writer = WRITER_OF.with(Cell::get) == self.id;
        let mut state = self.lock();
        if state.closed {
            return Err(request);
        }
        state.requests.push_back(request);
        let wake = !own_writer && state.sleepers > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(wake)
    }

    /// Waits until a request is queued, the inbox is closed and empty, or `timeout` passed.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> Waited {
        let mut state = self.lock();
        loop {
            if !state.requests.is_empty() {
                return Waited::Ready;
            }
            if state.closed {
                return Waited::Closed;
            }
            state.sleepers += 1;
            let timed_out;
            (state, timed_out) = match timeout {
                None => (self.ready.wait(state).expect("log inbox poisoned"), false),
                Some(timeout) => {
                    let (state, waited) = self
                        .ready
                        .wait_timeout(state, timeout)
                        .expect("log inbox poisoned");
                    (state, waited.timed_out())
                }
            };
            state.sleepers -= 1;
            if timed_out && state.requests.is_empty() {
                return Waited::TimedOut;
            }
        }
    }

    /// Hands queued requests, oldest first, to `accept` until it returns `false` (after
    /// taking that one) or none is left.
    pub(super) fn take(&self, mut accept: impl FnMut(R) -> bool) {
        let mut state = self.lock();
        while let Some(request) = state.requests.pop_front() {
            if !accept(request) {
                break;
            }
        }
    }

    /// Refuses new requests and wakes every writer thread (they take what is queued, then
    /// stop).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn requests_come_out_in_order_and_a_closed_inbox_drains_then_says_closed() {
        let inbox = Inbox::new();
        for request in 0..5_u32 {
            assert_eq!(inbox.push(request), Ok(false), "nobody sleeps");
        }
        let mut taken = Vec::new();
        inbox.take(|request| {
            taken.push(request);
            request < 2
        });
        assert_eq!(taken, vec![0, 1, 2], "stops after the refused one");
        inbox.close();
        assert_eq!(inbox.push(9), Err(9), "closed: refused");
        assert_eq!(
            inbox.wait(None),
            Waited::Ready,
            "queued requests outlive close"
        );
        inbox.take(|request| {
            taken.push(request);
            true
        });
        assert_eq!(taken, vec![0, 1, 2, 3, 4]);
        assert_eq!(inbox.wait(None), Waited::Closed);
    }

    #[test]
    fn a_request_from_outside_wakes_a_sleeping_writer_and_an_empty_wait_times_out() {
        let inbox = Arc::new(Inbox::new());
        assert_eq!(inbox.wait(Some(Duration::from_millis(1))), Waited::TimedOut);
        let writer = {
            let inbox = Arc::clone(&inbox);
            thread::spawn(move || {
                inbox.enter();
                assert!(on_any_writer_thread());
                inbox.wait(None)
            })
        };
        assert!(!on_any_writer_thread());
        assert!(inbox.push(1_u8).is_ok());
        assert_eq!(writer.join().expect("writer"), Waited::Ready);
    }

    #[test]
    fn a_writer_threads_own_request_wakes_nobody_but_one_from_outside_wakes_a_sleeper() {
        let inbox = Arc::new(Inbox::new());
        let sleeper = {
            let inbox = Arc::clone(&inbox);
            thread::spawn(move || {
                inbox.enter();
                while inbox.wait(None) == Waited::Ready {
                    inbox.take(|_| true);
                }
            })
        };
        while inbox.lock().sleepers == 0 {
            thread::yield_now();
        }
        let own = {
            let inbox = Arc::clone(&inbox);
            thread::spawn(move || {
                inbox.enter();
                inbox.push(7_u8)
            })
        };
        assert_eq!(own.join().expect("own writer"), Ok(false));
        assert_eq!(inbox.push(8), Ok(true), "a writer sleeps: woken");
        inbox.close();
        sleeper.join().expect("sleeper");
    }
}
