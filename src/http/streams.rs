//! The threads that send streamed and file bodies (`Body::Stream`, `Body::File`) with blocking
//! writes, apart from the handler workers.
//!
//! A stream lives as long as its producer and its client: an SSE feed for hours, a file for as
//! long as a slow reader keeps making progress. Run on the bounded worker pool, 64 such bodies
//! would hold every worker and every other request would wait or get 503. Here each running
//! body has a thread of its own, started on demand up to `streams_max` and kept for
//! [`IDLE_KEEP`] after its body ends so that a burst of short file answers does not pay a
//! thread start each.
//!
//! Owns: the stream threads and their count.
//! Must not: touch sockets or the poller (a job reports through what it captured), or queue a
//! job no thread is free for: a stream queued behind endless streams would never start.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::handler::catch_logged;
use super::pool::Job;

/// How long a stream thread waits for the next body before it exits.
pub const IDLE_KEEP: Duration = Duration::from_secs(10);

struct State {
    /// Jobs handed over but not yet taken; never more than the idle threads that will take
    /// them.
    handed: VecDeque<Job>,
    /// Threads started and not yet exited.
    live: usize,
    /// Threads waiting for a job.
    idle: usize,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signals idle threads (a job or a stop) and the shutdown waiter (a thread exited).
    changed: Condvar,
    threads_max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and under catch_unwind: a poisoned lock holds a consistent
        // state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why [`StreamThreads::try_run`] did not run a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `threads_max` jobs are running.
    Full,
    /// The system would not start another thread.
    NoThread,
    /// The set is shutting down.
    Stopping,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Full => "the most streamed and file bodies (streams_max) are being sent",
            Refused::NoThread => "the system would not start another stream thread",
            Refused::Stopping => "the server is shutting down",
        })
    }
}

/// A set of at most `threads_max` threads, one per running job.
pub struct StreamThreads {
    shared: Arc<Shared>,
}

impl StreamThreads {
    /// No thread runs until the first job.
    pub fn new(threads_max: usize) -> StreamThreads {
        assert!(threads_max > 0, "stream threads need a positive maximum");
        StreamThreads {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    handed: VecDeque::new(),
                    live: 0,
                    idle: 0,
                    stopping: false,
                }),
                changed: Condvar::new(),
                threads_max,
            }),
        }
    }

    /// Runs `job` on an idle thread or a new one. A refused job is dropped (a job reports only
    /// through what it captured, so the caller closes what the job would have served).
    pub fn try_run(&self, job: Job) -> Result<(), Refused> {
        let mut state = self.shared.lock();
        if state.stopping {
            return Err(Refused::Stopping);
        }
        if state.idle > state.handed.len() {
            state.handed.push_back(job);
            drop(state);
            self.shared.changed.notify_all();
            return Ok(());
        }
        if state.live >= self.shared.threads_max {
            return Err(Refused::Full);
        }
        state.live += 1;
        let index = state.live;
        drop(state);
        let shared = Arc::clone(&self.shared);
        let started = std::thread::Builder::new()
            .name(format!("lithair-stream-{index}"))
            .spawn(move || stream_thread(&shared, job));
        if started.is_err() {
            self.shared.lock().live -= 1;
            self.shared.changed.notify_all();
            return Err(Refused::NoThread);
        }
        Ok(())
    }

    /// Threads alive right now (running a body or idle).
    pub fn live(&self) -> usize {
        self.shared.lock().live
    }

    /// Stops idle threads at once and waits at most `grace` for running bodies to end. Returns
    /// false if some were still running at the deadline (their threads are left detached).
    pub fn shutdown(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        state.stopping = true;
        self.shared.changed.notify_all();
        while state.live > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }
}

impl Drop for StreamThreads {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
    }
}

/// Runs `first`, then the jobs handed to this thread while it idles, until it has idled for
/// [`IDLE_KEEP`] or the set stops.
fn stream_thread(shared: &Shared, first: Job) {
    let mut next = Some(first);
    loop {
        if let Some(job) = next.take() {
            // The body sender catches a producer's panic itself; this is the last line of
            // defence so the count below is always kept.
            catch_logged("a stream job", "the stream thread goes on", job);
        }
        let mut state = shared.lock();
        state.idle += 1;
        let idle_until = Instant::now() + IDLE_KEEP;
        loop {
            if let Some(job) = state.handed.pop_front() {
                next = Some(job);
                break;
            }
            let now = Instant::now();
            if state.stopping || now >= idle_until {
                break;
            }
            state = shared
                .changed
                .wait_timeout(state, idle_until - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        state.idle -= 1;
        if next.is_none() {
            assert!(
                state.handed.len() <= state.idle,
                "a handed job must have an idle thread to take it"
            );
            state.live -= 1;
            drop(state);
            shared.changed.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn gated(gate: &Arc<Mutex<mpsc::Receiver<()>>>, done: &mpsc::Sender<u32>, n: u32) -> Job {
        let gate = Arc::clone(gate);
        let done = done.clone();
        Box::new(move || {
            let _ = gate.lock().expect("gate").recv();
            done.send(n).expect("done");
        })
    }

    #[test]
    fn runs_up_to_the_maximum_at_once_and_refuses_beyond() {
        let threads = StreamThreads::new(3);
        let (open, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (done_tx, done_rx) = mpsc::channel();
        for n in 0..3 {
            assert!(threads.try_run(gated(&gate, &done_tx, n)).is_ok());
        }
        assert_eq!(threads.live(), 3);
        assert!(
            threads.try_run(Box::new(|| {})).is_err(),
            "a fourth body while three run is refused, not queued"
        );
        for _ in 0..3 {
            open.send(()).expect("open");
        }
        let mut finished: Vec<u32> = (0..3).map(|_| done_rx.recv().expect("done")).collect();
        finished.sort_unstable();
        assert_eq!(finished, [0, 1, 2]);
        // The threads idle now and take new jobs without starting more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads.shared.lock().idle < 3 {
            assert!(Instant::now() < deadline, "threads never went idle");
            std::thread::yield_now();
        }
        for n in 10..13 {
            let done = done_tx.clone();
            assert!(threads
                .try_run(Box::new(move || done.send(n).expect("done")))
                .is_ok());
        }
        let mut again: Vec<u32> = (0..3).map(|_| done_rx.recv().expect("done")).collect();
        again.sort_unstable();
        assert_eq!(again, [10, 11, 12]);
        assert_eq!(threads.live(), 3, "idle threads were reused");
        assert!(threads.shutdown(Duration::from_secs(5)));
        assert_eq!(threads.live(), 0);
        assert!(threads.try_run(Box::new(|| {})).is_err(), "stopped");
    }

    #[test]
    fn a_panicking_job_keeps_the_count_and_shutdown_waits_for_running_jobs() {
        let threads = StreamThreads::new(1);
        assert!(threads.try_run(Box::new(|| panic!("boom"))).is_ok());
        let (done_tx, done_rx) = mpsc::channel();
        // The one thread survives the panic and takes the next job (or a new one starts once
        // it exits): either way the maximum of one is never exceeded.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let done = done_tx.clone();
            if threads
                .try_run(Box::new(move || done.send(7).expect("done")))
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the panicked thread was never freed"
            );
            std::thread::yield_now();
        }
        assert_eq!(done_rx.recv().expect("ran"), 7);
        let (open, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads.try_run(gated(&gate, &done_tx, 8)).is_err() {
            assert!(Instant::now() < deadline, "no thread for the gated job");
            std::thread::yield_now();
        }
        assert!(
            !threads.shutdown(Duration::from_millis(50)),
            "a running body outlives a short grace"
        );
        open.send(()).expect("open");
        assert_eq!(done_rx.recv().expect("ran"), 8);
        assert!(threads.shutdown(Duration::from_secs(5)));
    }
}
