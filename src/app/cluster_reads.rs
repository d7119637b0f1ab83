//! The linearizable reads of inline (cheap) routes on a clustered node, without a thread
//! waiting per read and, in the common case, without leaving the reactor.
//!
//! Parked reads (the default): the reactor runs the handler at once, notes the engine's
//! applied index from before it ran, and joins the next ReadIndex batch (one that starts after
//! the handler ran). The batch's outcome, an index confirmed by the leader, reaches
//! [`ParkedReads::settle`] on whichever thread completes it: a read whose noted index is at
//! least the confirmed one is answered with the response it already has; otherwise (writes
//! committed meanwhile) the read queue runs it again once the engine applied that index.
//! A batch's answers reach each reactor together (`http::deliver_together`), so the pipelined
//! reads of a connection leave in one write, not one write per read.
//!
//! Why a held response is linearizable: the confirmed index covers every write committed, by
//! any leader, before the batch started, hence before the handler returned; the handler saw at
//! least the state at the noted index, which is at least the confirmed one, and only committed
//! writes. So the state it read existed while it ran and held every write acknowledged before
//! it read: the read takes effect at that moment, inside its request's lifetime.
//!
//! The read queue (one thread): reads that cannot park (too many parked) and parked reads to
//! run again. It takes every job queued so far, confirms them with one `Node::read_index` call
//! when some job still needs a round (a batch holds only reads that arrived before its
//! confirmation was asked for), waits until the engine applied the index, then runs them.
//!
//! Owns: parked reads by batch, and the queue thread.
//! Must not: run anything but routes the router plans inline (cheap, never blocking): they
//! run on the reactor or one after another on the queue thread.

use crate::engine::Replica;
use crate::http::handler::{handler_failed_response, run_handler};
use crate::http::router::Router;
use crate::http::{Method, Request, Responder, Response};
use crate::raft::node::{AppliedWatch, Node};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Most reads confirmed and run as one batch (bounds how long the thread runs handlers before
/// it asks for the next confirmation).
pub const READ_BATCH_REQUESTS_MAX: usize = 4096;

/// Most reads parked at once (each holds its request and response); past it, reads go to the
/// read queue.
pub const PARKED_READS_MAX: usize = 16_384;

/// Emptied batch lists kept for reuse (a batch in flight and the next one are all that fill
/// at once). A pipelined load parks thousands of reads per batch: a list grown afresh each
/// batch reallocated a large block again and again (and freed it on the completing thread),
/// which showed in the profile as `malloc_consolidate`.
const SPARE_BATCH_LISTS_MAX: usize = 2;
/// Largest emptied list kept, in reads (bounds the memory spare lists hold).
const SPARE_BATCH_LIST_READS_MAX: usize = 4096;

/// A read for the queue thread.
struct Job {
    request: Request,
    responder: Responder,
    /// `Some(index)`: already confirmed at `index` (a parked read to run again once the
    /// engine applied it); `None`: needs a ReadIndex round.
    confirmed: Option<u64>,
}

/// The sending side; dropping it ends the thread once the queued reads are answered.
pub(crate) struct ReadQueue {
    sender: Sender<Job>,
}

/// Confirms reads (see [`confirm`]); the thread calls it once per batch with whether a
/// ReadIndex round is needed and the least index to wait for.
pub(crate) type Confirm = Box<dyn Fn(bool, u64) -> Result<(), String> + Send>;

impl ReadQueue {
    /// Starts the thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(crate) fn start(router: Arc<Router>, confirm: Confirm) -> std::io::Result<ReadQueue> {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("lithair-reads".into())
            .spawn(move || serve(&receiver, &router, &confirm))?;
        Ok(ReadQueue { sender })
    }

    /// Takes `req` over (leaving an empty request in its place) and returns the placeholder
    /// of its deferred response.
    pub(crate) fn submit(&self, req: &mut Request) -> Response {
        let request = std::mem::replace(req, Request::new(Method::Get, ""));
        let (placeholder, responder) = Response::deferred();
        self.send(Job {
            request,
            responder,
            confirmed: None,
        });
        placeholder
    }

    fn send(&self, job: Job) {
        // If the thread is gone, the job (and its responder) drops here: a 503, never a hang.
        let _ = self.sender.send(job);
    }
}

fn serve(receiver: &Receiver<Job>, router: &Router, confirm: &Confirm) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = Vec::with_capacity(64);
        jobs.push(first);
        // Every read queued now arrived before the confirmation asked for below.
        jobs.extend(receiver.try_iter().take(READ_BATCH_REQUESTS_MAX - 1));
        let round = jobs.iter().any(|job| job.confirmed.is_none());
        let at_least = jobs.iter().filter_map(|job| job.confirmed).max();
        let confirmed = confirm(round, at_least.unwrap_or(0));
        crate::http::deliver_together(|| {
            for Job {
                mut request,
                responder,
                ..
            } in jobs
            {
                let response = match &confirmed {
                    Ok(()) => run(router, &mut request),
                    Err(detail) => super::cluster::unavailable(detail),
                };
                responder.complete(response);
            }
        });
    }
}

/// With `round`, ReadIndex (or the leader's lease) for every read that arrived before this
/// call; then the wait until the engine applied that index and `at_least`.
///
/// # Errors
/// No confirmation (no leader, timeout), or the engine did not catch up in time.
pub(crate) fn confirm(
    node: &Node,
    replica: &dyn Replica,
    applied: &AppliedWatch,
    apply_timeout: Duration,
    round: bool,
    at_least: u64,
) -> Result<(), String> {
    let target = if round {
        node.read_index()?.max(at_least)
    } else {
        at_least
    };
    if replica.applied_index() >= target {
        return Ok(()); // The common case: nothing to wait for.
    }
    // The engine's own index decides; the watch only wakes this thread.
    if applied.wait(target, apply_timeout) || replica.applied_index() >= target {
        Ok(())
    } else {
        Err("the local state did not catch up in time".to_string())
    }
}

/// A read that ran on the reactor, waiting for its batch.
struct Parked {
    request: Request,
    response: Response,
    responder: Responder,
    /// The engine's applied index before the handler ran.
    applied: u64,
}

/// Joins the next read batch that starts after now (`Node::read_join`).
pub(crate) type JoinBatch = Box<dyn Fn() -> Result<u64, String> + Send + Sync>;
/// The engine's applied index (`Replica::applied_index`).
pub(crate) type AppliedIndex = Box<dyn Fn() -> u64 + Send + Sync>;

/// Parked reads by the batch they joined, and emptied lists to file the next batches in.
#[derive(Default)]
struct Waiting {
    by_batch: BTreeMap<u64, Vec<Parked>>,
    spare: Vec<Vec<Parked>>,
}

/// Parked reads by the batch they joined, and the queue for those to run again.
pub(crate) struct ParkedReads {
    waiting: Mutex<Waiting>,
    /// Reads in `waiting` (read without the lock to refuse new ones past the maximum).
    count: AtomicUsize,
    join: JoinBatch,
    applied: AppliedIndex,
    queue: ReadQueue,
}

impl ParkedReads {
    /// Parks reads in `node`'s read batches (it tells their outcomes to [`ParkedReads::settle`])
    /// and starts the read queue.
    ///
    /// # Errors
    /// The queue thread could not start, or the node already has a read listener.
    pub(crate) fn start(
        router: Arc<Router>,
        node: &Arc<Node>,
        replica: Arc<dyn Replica>,
        confirm: Confirm,
    ) -> Result<Arc<ParkedReads>, String> {
        let queue = ReadQueue::start(router, confirm).map_err(|e| e.to_string())?;
        let joiner = Arc::clone(node);
        let parked = Arc::new(ParkedReads::new(
            Box::new(move || joiner.read_join()),
            Box::new(move || replica.applied_index()),
            queue,
        ));
        // Weak: the node keeps the listener, and the parked reads keep the node.
        let weak: Weak<ParkedReads> = Arc::downgrade(&parked);
        let listening = node.on_read_batch(Box::new(move |batch, outcome| {
            if let Some(parked) = weak.upgrade() {
                parked.settle(batch, outcome);
            }
        }));
        if !listening {
            return Err("the node already has a read listener".to_string());
        }
        Ok(parked)
    }

    /// Reads that join batches through `join`, note `applied` before running, and run again
    /// on `queue`; someone must call [`ParkedReads::settle`] with every batch's outcome.
    pub(crate) fn new(join: JoinBatch, applied: AppliedIndex, queue: ReadQueue) -> ParkedReads {
        ParkedReads {
            waiting: Mutex::new(Waiting::default()),
            count: AtomicUsize::new(0),
            join,
            applied,
            queue,
        }
    }

    /// Whether another read may park.
    pub(crate) fn has_room(&self) -> bool {
        self.count.load(Ordering::Relaxed) < PARKED_READS_MAX
    }

    /// Hands `req` to the read queue (a deferred response; see [`ReadQueue::submit`]).
    pub(crate) fn submit(&self, req: &mut Request) -> Response {
        self.queue.submit(req)
    }

    /// Runs the read now (on the reactor) and holds its response until a batch that starts
    /// after it ran confirms it; returns the placeholder of that deferred response.
    pub(crate) fn run(&self, router: &Router, req: &mut Request) -> Response {
        let applied = (self.applied)();
        let response = run(router, req);
        let (placeholder, responder) = Response::deferred();
        let parked = Parked {
            request: std::mem::replace(req, Request::new(Method::Get, "")),
            response,
            responder,
            applied,
        };
        // Joined and filed under one lock, which `settle` takes too: no outcome slips between.
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match (self.join)() {
            Ok(batch) => {
                let Waiting { by_batch, spare } = &mut *waiting;
                let list = by_batch
                    .entry(batch)
                    .or_insert_with(|| spare.pop().unwrap_or_default());
                list.push(parked);
                self.count.fetch_add(1, Ordering::Relaxed);
            }
            Err(detail) => {
                drop(waiting);
                parked
                    .responder
                    .complete(super::cluster::unavailable(&detail));
            }
        }
        placeholder
    }

    /// Batch `batch` completed with `outcome`: answers every read parked in it or earlier.
    pub(crate) fn settle(&self, batch: u64, outcome: &Result<u64, String>) {
        let settled = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let later = waiting.by_batch.split_off(&batch.saturating_add(1));
            std::mem::replace(&mut waiting.by_batch, later)
        };
        let mut emptied = Vec::new();
        // One hand-over per reactor for the whole batch, not one per read.
        crate::http::deliver_together(|| {
            for mut list in settled.into_values() {
                self.count.fetch_sub(list.len(), Ordering::Relaxed);
                for parked in list.drain(..) {
                    self.answer(parked, outcome);
                }
                emptied.push(list);
            }
        });
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for list in emptied {
            assert!(list.is_empty(), "every settled read was answered");
            let kept = list.capacity() <= SPARE_BATCH_LIST_READS_MAX;
            if kept && waiting.spare.len() < SPARE_BATCH_LISTS_MAX {
                waiting.spare.push(list);
            }
        }
    }

    /// Answers one read of a batch that completed with `outcome`.
    fn answer(&self, parked: Parked, outcome: &Result<u64, String>) {
        match outcome {
            Ok(index) if parked.applied >= *index => {
                parked.responder.complete(parked.response);
            }
            // Writes committed since it ran: run it again once the engine has them.
            Ok(index) => self.queue.send(Job {
                request: parked.request,
                responder: parked.responder,
                confirmed: Some(*index),
            }),
            Err(detail) => parked
                .responder
                .complete(super::cluster::unavailable(detail)),
        }
    }
}

/// Runs one read; a panicking handler answers 500 and leaves the thread serving.
fn run(router: &Router, request: &mut Request) -> Response {
    let response = run_handler(router, request);
    if response.is_deferred() {
        // Inline routes answer at once; a deferred answer cannot be held or forwarded.
        eprintln!(
            "lithair: an inline read route deferred its answer: {} {}",
            request.method, request.path
        );
        return handler_failed_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::deferred::Deferred;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// The response a deferred placeholder is completed with.
    fn answer(mut placeholder: Response) -> Response {
        let deferred = Deferred::take(&mut placeholder).expect("a deferred placeholder");
        let (sender, receiver) = mpsc::channel();
        if let Some(ready) = deferred.attach(
            placeholder,
            Box::new(move |response| {
                let _ = sender.send(response);
            }),
        ) {
            return ready;
        }
        receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("the read is answered")
    }

    fn router() -> Arc<Router> {
        Arc::new(Router::bare().get("/x", |_req: &mut Request| Response::text(200, "x")))
    }

    #[test]
    fn queued_reads_share_confirmations_and_all_get_answered() {
        let calls = Arc::new(AtomicUsize::new(0));
        // Holds the first confirmation until every read is queued, so they pile up.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let confirm: Confirm = {
            let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
            Box::new(move |round, _| {
                assert!(round, "fresh reads need a round");
                calls.fetch_add(1, Ordering::SeqCst);
                drop(gate.lock().unwrap());
                Ok(())
            })
        };
        let queue = ReadQueue::start(router(), confirm).expect("thread");
        let placeholders: Vec<Response> = (0..50)
            .map(|_| queue.submit(&mut Request::new(Method::Get, "/x")))
            .collect();
        drop(held);
        for placeholder in placeholders {
            assert_eq!(answer(placeholder).status, 200);
        }
        // The first read's batch, then at most one more for everything queued meanwhile.
        assert!(
            calls.load(Ordering::SeqCst) <= 2,
            "one confirmation per batch"
        );
    }

    /// Parked reads of a router whose `/x` answers how many times it ran, over a join that
    /// returns the batch in `batch`, an applied index `applied`, and a queue whose
    /// confirmations are recorded in `asked`.
    struct Parking {
        parked: ParkedReads,
        router: Arc<Router>,
        batch: Arc<AtomicU64>,
        applied: Arc<AtomicU64>,
        asked: Arc<Mutex<Vec<(bool, u64)>>>,
    }

    fn parking() -> Parking {
        let runs = Arc::new(AtomicUsize::new(0));
        let router = Arc::new(Router::bare().get("/x", move |_req: &mut Request| {
            Response::text(200, (runs.fetch_add(1, Ordering::SeqCst) + 1).to_string())
        }));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let confirm: Confirm = {
            let asked = Arc::clone(&asked);
            Box::new(move |round, at_least| {
                asked.lock().unwrap().push((round, at_least));
                Ok(())
            })
        };
        let queue = ReadQueue::start(Arc::clone(&router), confirm).expect("thread");
        let (batch, applied) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(5)));
        let parked = {
            let (batch, applied) = (Arc::clone(&batch), Arc::clone(&applied));
            ParkedReads::new(
                Box::new(move || match batch.load(Ordering::SeqCst) {
                    0 => Err("the node is stopping".to_string()),
                    batch => Ok(batch),
                }),
                Box::new(move || applied.load(Ordering::SeqCst)),
                queue,
            )
        };
        Parking {
            parked,
            router,
            batch,
            applied,
            asked,
        }
    }

    impl Parking {
        /// Parks a read of `/x` in the current batch; its placeholder.
        fn park(&self) -> Response {
            self.parked
                .run(&self.router, &mut Request::new(Method::Get, "/x"))
        }
    }

    /// The placeholder's answer if it is already there (never waits).
    fn answered_now(mut placeholder: Response) -> Option<Response> {
        let deferred = Deferred::take(&mut placeholder).expect("a deferred placeholder");
        deferred.attach(placeholder, Box::new(|_| {}))
    }

    fn body(response: &Response) -> String {
        match &response.body {
            crate::http::response::Body::Bytes(bytes) => String::from_utf8_lossy(bytes).into(),
            _ => panic!("expected an owned body"),
        }
    }

    #[test]
    fn a_parked_read_keeps_its_response_when_the_confirmed_index_was_applied_before_it_ran() {
        let p = parking();
        let first = p.park(); // Ran once, applied 5, in batch 1.
        p.batch.store(2, Ordering::SeqCst);
        let second = p.park(); // Ran twice, in batch 2.
        p.parked.settle(1, &Ok(5));
        let first = answered_now(first).expect("batch 1 confirmed index 5 <= 5");
        assert_eq!((first.status, body(&first)), (200, "1".to_string()));
        assert!(
            answered_now(second).is_none(),
            "batch 2 started after batch 1: its read waits for it"
        );
        // A later batch's outcome answers earlier batches too, and an earlier one is a no-op.
        let third = p.park();
        p.parked.settle(3, &Ok(4));
        p.parked.settle(2, &Ok(9));
        let third = answered_now(third).expect("batch 3 covers batch 2");
        assert_eq!(body(&third), "3", "held, not run again");
        assert!(
            p.asked.lock().unwrap().is_empty(),
            "the queue was never needed"
        );
    }

    #[test]
    fn settled_batch_lists_are_reused_for_later_batches() {
        let p = parking();
        let first: Vec<Response> = (0..3).map(|_| p.park()).collect();
        p.parked.settle(1, &Ok(5));
        for placeholder in first {
            assert_eq!(answered_now(placeholder).expect("confirmed").status, 200);
        }
        let spare_capacity = |p: &Parking| {
            let waiting = p.parked.waiting.lock().unwrap();
            assert!(waiting.by_batch.is_empty(), "nothing left parked");
            waiting.spare.iter().map(Vec::capacity).collect::<Vec<_>>()
        };
        let spare = spare_capacity(&p);
        assert_eq!(spare.len(), 1, "the emptied list is kept");
        assert!(spare[0] >= 3, "with its capacity: {spare:?}");
        p.batch.store(2, Ordering::SeqCst);
        let second = p.park();
        assert!(
            p.parked.waiting.lock().unwrap().spare.is_empty(),
            "batch 2 is filed in the kept list"
        );
        p.parked.settle(2, &Ok(5));
        assert_eq!(answered_now(second).expect("confirmed").status, 200);
        assert_eq!(spare_capacity(&p).len(), 1, "and it comes back");
        assert_eq!(p.parked.count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_parked_read_runs_again_when_writes_committed_before_its_batch_confirmed() {
        let p = parking();
        let stale = p.park(); // Ran with applied 5.
        p.applied.store(7, Ordering::SeqCst);
        p.parked.settle(1, &Ok(7)); // Index 7 was committed before the batch started.
        let again = answer(stale);
        assert_eq!(
            (again.status, body(&again)),
            (200, "2".to_string()),
            "ran again"
        );
        assert_eq!(
            *p.asked.lock().unwrap(),
            vec![(false, 7)],
            "no second round: it waits for the confirmed index only"
        );
    }

    #[test]
    fn parked_reads_of_a_failed_batch_or_a_stopping_node_are_refused() {
        let p = parking();
        let failed = p.park();
        p.parked
            .settle(1, &Err("no leader confirmed the read".into()));
        let failed = answered_now(failed).expect("answered at once");
        assert_eq!(failed.status, 503);
        assert!(failed.headers.get("retry-after").is_some());
        p.batch.store(0, Ordering::SeqCst);
        let stopping = answered_now(p.park()).expect("answered at once");
        assert_eq!(stopping.status, 503);
        assert!(p.parked.has_room(), "nothing left parked");
        assert_eq!(p.parked.count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unconfirmed_batch_is_refused_and_the_request_left_behind_is_empty() {
        let queue =
            ReadQueue::start(router(), Box::new(|_, _| Err("no leader".into()))).expect("thread");
        let mut request = Request::new(Method::Get, "/x");
        let placeholder = queue.submit(&mut request);
        assert_eq!(request.target, "", "the queue took the request over");
        let refused = answer(placeholder);
        assert_eq!(refused.status, 503);
        assert!(refused.headers.get("retry-after").is_some());
    }
}
