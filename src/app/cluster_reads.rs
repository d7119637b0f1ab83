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

/// What the thread needs to confirm and run reads.
pub(crate) struct ReadContext {
    pub(crate) router: Arc<Router>,
    pub(crate) node: Arc<Node>,
    pub(crate) replica: Arc<dyn Replica>,
    pub(crate) applied: Arc<AppliedWatch>,
    /// Longest wait for the engine to apply a confirmed index.
    pub(crate) apply_timeout: Duration,
}

impl ReadQueue {
    /// Starts the thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(crate) fn start(context: ReadContext) -> std::io::Result<ReadQueue> {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("lithair-reads".into())
            .spawn(move || serve(&receiver, &context))?;
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

fn serve(receiver: &Receiver<Job>, context: &ReadContext) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = Vec::with_capacity(64);
        jobs.push(first);
        // Every read queued now arrived before the confirmation asked for below.
        jobs.extend(receiver.try_iter().take(READ_BATCH_REQUESTS_MAX - 1));
        let confirmed = confirm(
            &context.node,
            &*context.replica,
            &context.applied,
            context.apply_timeout,
        );
        for Job {
            mut request,
            responder,
        } in jobs
        {
            let response = match &confirmed {
                Ok(()) => run(&context.router, &mut request),
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
