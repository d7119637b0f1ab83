//! The read queue of a clustered node: linearizable reads of cheap routes wait for their
//! ReadIndex confirmation without holding a thread each. The reactor hands the request over
//! and answers with a deferred response; one thread takes every read queued so far, confirms
//! them with one `Node::read_index` call (one ReadIndex round for the lot, or the leader's
//! lease), waits until the engine applied the index, then runs them and completes their
//! responses.
//!
//! Owns: batching reads by arrival (a batch holds only reads that arrived before its
//! confirmation was asked for, which is what makes a shared round linearizable).
//! Must not: run anything but routes the router plans inline (cheap, never blocking): they
//! run one after another on this one thread.

use crate::engine::Replica;
use crate::http::router::Router;
use crate::http::{Handler, Method, Request, Responder, Response};
use crate::raft::node::{AppliedWatch, Node};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Most reads confirmed and run as one batch (bounds how long the thread runs handlers before
/// it asks for the next confirmation).
pub const READ_BATCH_REQUESTS_MAX: usize = 4096;

/// A read waiting for its confirmation.
struct Job {
    request: Request,
    responder: Responder,
}

/// The sending side; dropping it ends the thread once the queued reads are answered.
pub(crate) struct ReadQueue {
    sender: Sender<Job>,
}

/// Confirms every read queued before the call (see [`confirm`]); the thread calls it once
/// per batch.
pub(crate) type Confirm = Box<dyn Fn() -> Result<(), String> + Send>;

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
        // If the thread is gone, the job (and its responder) drops here: a 503, never a hang.
        let _ = self.sender.send(Job { request, responder });
        placeholder
    }
}

fn serve(receiver: &Receiver<Job>, router: &Router, confirm: &Confirm) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = Vec::with_capacity(64);
        jobs.push(first);
        // Every read queued now arrived before the confirmation asked for below.
        jobs.extend(receiver.try_iter().take(READ_BATCH_REQUESTS_MAX - 1));
        let confirmed = confirm();
        for Job {
            mut request,
            responder,
        } in jobs
        {
            let response = match &confirmed {
                Ok(()) => run(router, &mut request),
                Err(detail) => super::cluster::unavailable(detail),
            };
            responder.complete(response);
        }
    }
}

/// ReadIndex (or the leader's lease) for every read that arrived before this call, then the
/// wait until the engine applied the confirmed index.
///
/// # Errors
/// No confirmation (no leader, timeout), or the engine did not catch up in time.
pub(crate) fn confirm(
    node: &Node,
    replica: &dyn Replica,
    applied: &AppliedWatch,
    apply_timeout: Duration,
) -> Result<(), String> {
    let target = node.read_index()?;
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

/// Runs one read; a panicking handler answers 500 and leaves the thread serving.
fn run(router: &Router, request: &mut Request) -> Response {
    match catch_unwind(AssertUnwindSafe(|| router.call(request))) {
        // Inline routes answer at once; a deferred answer cannot be forwarded from here.
        Ok(response) if response.is_deferred() => {
            eprintln!(
                "lithair: an inline read route deferred its answer: {} {}",
                request.method, request.path
            );
            Response::text(500, "internal server error")
        }
        Ok(response) => response,
        Err(_) => {
            eprintln!(
                "lithair: read handler panicked on {} {}",
                request.method, request.path
            );
            Response::text(500, "internal server error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::deferred::Deferred;
    use std::sync::atomic::{AtomicUsize, Ordering};
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
            Box::new(move || {
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

    #[test]
    fn an_unconfirmed_batch_is_refused_and_the_request_left_behind_is_empty() {
        let queue =
            ReadQueue::start(router(), Box::new(|| Err("no leader".into()))).expect("thread");
        let mut request = Request::new(Method::Get, "/x");
        let placeholder = queue.submit(&mut request);
        assert_eq!(request.target, "", "the queue took the request over");
        let refused = answer(placeholder);
        assert_eq!(refused.status, 503);
        assert!(refused.headers.get("retry-after").is_some());
    }
}
