//! The bounded worker pool that runs handlers which may block, so that reactors never wait.
//!
//! Owns: worker threads and the job queue (bounded: a full queue is the caller's 503), and
//! the gauges of both it keeps for `/_lithair/metrics` (`http::stats`).
//! Must not: touch sockets; a job reports its result through whatever it captured.

use super::handler::catch_logged;
use super::stats::PoolGauges;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A unit of work.
pub type Job = Box<dyn FnOnce() + Send>;

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    stopping: AtomicBool,
    queue_max: usize,
    /// Threads at work, jobs waiting and refusals, for whoever reads them.
    gauges: Arc<PoolGauges>,
}

impl Shared {
    fn try_submit(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.lock();
        if queue.len() >= self.queue_max || self.stopping.load(Ordering::Acquire) {
            drop(queue);
            self.gauges.refused.fetch_add(1, Ordering::Relaxed);
            return Err(job);
        }
        queue.push_back(job);
        set_queued(&self.gauges.queued, queue.len());
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Jobs run outside the lock and under catch_unwind, so poisoning cannot leave the
        // queue half-updated; recover rather than cascade.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fixed set of worker threads fed by a bounded FIFO queue.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `threads` workers with a queue of at most `queue_max` waiting jobs.
    pub fn new(threads: usize, queue_max: usize) -> std::io::Result<Pool> {
        Pool::counted(threads, queue_max, Arc::default())
    }

    /// Like [`Pool::new`], its threads named `lithair-<role>-<n>` (as a thread list shows
    /// them) rather than `lithair-worker-<n>`.
    pub(crate) fn named(role: &str, threads: usize, queue_max: usize) -> std::io::Result<Pool> {
        Pool::start(role, threads, queue_max, Arc::default())
    }

    /// Like [`Pool::new`], keeping its figures in `gauges` (a server's `ServerStats`).
    pub(crate) fn counted(
        threads: usize,
        queue_max: usize,
        gauges: Arc<PoolGauges>,
    ) -> std::io::Result<Pool> {
        Pool::start("worker", threads, queue_max, gauges)
    }

    fn start(
        role: &str,
        threads: usize,
        queue_max: usize,
        gauges: Arc<PoolGauges>,
    ) -> std::io::Result<Pool> {
        assert!(
            threads > 0 && queue_max > 0,
            "pool needs threads and a queue"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(queue_max.min(1024))),
            ready: Condvar::new(),
            stopping: AtomicBool::new(false),
            queue_max,
            gauges,
        });
        shared
            .gauges
            .threads
            .store(threads as u64, Ordering::Relaxed);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("lithair-{role}-{index}"))
                .spawn(move || worker_loop(&shared))?;
            handles.push(handle);
        }
        Ok(Pool {
            shared,
            threads: Mutex::new(handles),
        })
    }

    /// Queues `job`, or gives it back when the queue is full or the pool is stopping.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        self.shared.try_submit(job)
    }

    /// A handle that queues jobs here from any thread, for work that turns up later on a
    /// thread that does not own the pool (a deferred answer finished off the engine's thread).
    pub(crate) fn submitter(&self) -> Submitter {
        Submitter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().len()
    }

    /// Lets queued jobs finish, then stops the workers; waits at most `grace`. Returns false
    /// if some worker was still busy at the deadline (it is left detached).
    pub fn shutdown(&self, grace: Duration) -> bool {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.ready.notify_all();
        let deadline = Instant::now() + grace;
        let mut all_joined = true;
        let handles: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                all_joined = false;
            }
        }
        all_joined
    }
}

/// Queues jobs on a [`Pool`] from any thread (see [`Pool::submitter`]); a stopped pool
/// refuses them.
#[derive(Clone)]
pub(crate) struct Submitter {
    shared: Arc<Shared>,
}

impl Submitter {
    /// [`Pool::try_submit`].
    pub(crate) fn try_submit(&self, job: Job) -> Result<(), Job> {
        self.shared.try_submit(job)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.ready.notify_all();
    }
}

fn worker_loop(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if let Some(job) = queue.pop_front() {
                    set_queued(&shared.gauges.queued, queue.len());
                    break job;
                }
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        // Jobs catch their own handler panics to answer 500; this is the last line of
        // defence so a worker thread never dies.
        shared.gauges.busy.fetch_add(1, Ordering::Relaxed);
        catch_logged("a worker job", "the worker goes on", job);
        shared.gauges.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sets the waiting-jobs gauge; called under the queue lock, so the last store is the
/// queue's length.
fn set_queued(gauge: &AtomicU64, len: usize) {
    gauge.store(len as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_jobs_rejects_when_full_and_survives_panics() {
        let gauges = Arc::new(PoolGauges::default());
        let pool = Pool::counted(1, 2, Arc::clone(&gauges)).expect("pool");
        let load = |gauge: &AtomicU64| gauge.load(Ordering::Relaxed);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        pool.try_submit(Box::new(move || {
            gate_rx.recv().expect("gate");
        }))
        .map_err(|_| "first")
        .expect("first accepted");
        // Wait until the worker took the blocking job so the queue is empty.
        while pool.queued() > 0 {
            std::thread::yield_now();
        }
        pool.try_submit(Box::new(|| panic!("boom")))
            .map_err(|_| "2")
            .expect("2");
        let tx = done_tx.clone();
        pool.try_submit(Box::new(move || tx.send(3).expect("send")))
            .map_err(|_| "3")
            .expect("3");
        assert!(
            pool.try_submit(Box::new(|| {})).is_err(),
            "queue of 2 is full"
        );
        // The gauges: one thread, at work on the blocking job, two waiting, one refused.
        let figures = [
            &gauges.threads,
            &gauges.busy,
            &gauges.queued,
            &gauges.refused,
        ];
        assert_eq!(figures.map(load), [1, 1, 2, 1]);
        gate_tx.send(()).expect("open gate");
        assert_eq!(done_rx.recv().expect("job after panic ran"), 3);
        // The panicking job left no thread counted busy.
        while load(&gauges.busy) > 0 {
            std::thread::yield_now();
        }
        assert_eq!(figures.map(load), [1, 0, 0, 1]);
        assert!(pool.shutdown(Duration::from_secs(5)));
    }
}
