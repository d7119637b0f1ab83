//! Deferred responses: a handler returns at once with a placeholder and the real response is
//! completed later, from any thread, through a [`Responder`] (for example by the engine's
//! applier once a write is durable), so no thread waits for a commit.
//!
//! Owns: the hand-over between the thread that completes a response and the connection that
//! is waiting for it, whichever comes first, the rule that an abandoned responder still
//! answers (503) so a connection never hangs, and the watchers that see the completed
//! response (`Response::when_answered`: the access log, the per-route counters).
//! Must not: know about sockets or reactors (the connection attaches a delivery closure).

use super::response::Response;
use std::sync::{Arc, Mutex, MutexGuard};

/// Status a dropped, never-completed [`Responder`] answers with.
pub const ABANDONED_STATUS: u16 = 503;

/// How a completed response reaches its connection (set by the connection).
pub(crate) type Deliver = Box<dyn FnOnce(Response) + Send>;

/// Called with the real response once it is known, on the thread that completes it: how a
/// layer that reports what was answered (the access log, the per-route counters) sees the
/// answer a client gets instead of its placeholder (see [`Response::when_answered`]).
pub(crate) type Watcher = Box<dyn FnOnce(&Response) + Send>;

enum State {
    /// Neither the response nor the connection's delivery is there yet.
    Open,
    /// The connection waits: deliver the response (merged with the placeholder's headers) as
    /// soon as it is completed.
    Attached(Response, Deliver),
    /// The response came first: the connection takes it when it attaches.
    Completed(Response),
    /// Handed over; nothing left to do.
    Done,
}

/// The hand-over's state, and who waits to see the real response (see [`Deferred::watch`]).
struct Inner {
    state: State,
    watchers: Vec<Watcher>,
}

struct Cell {
    state: Mutex<Inner>,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every transition is a single assignment, so a poisoned lock still holds a whole state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Completes a deferred response; `Send`, so any thread may do it. Dropping it without
/// calling [`Responder::complete`] answers `503` (the outcome is unknown: e.g. the engine shut
/// down or the code holding it panicked).
pub struct Responder {
    cell: Option<Arc<Cell>>,
}

impl Responder {
    /// Sends `response` to the waiting connection (or keeps it until the connection attaches).
    pub fn complete(mut self, response: Response) {
        if let Some(cell) = self.cell.take() {
            complete(&cell, response);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            let abandoned = Response::text(ABANDONED_STATUS, "the response was abandoned")
                .with_header("Retry-After", "1");
            complete(&cell, abandoned);
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// Runs `watcher` on `response`. A watcher that panics (an access log's sink, say) is
/// reported and skipped: it runs on the thread that completes the response, often the
/// engine's, which it must not take down.
fn run_watcher(watcher: Watcher, response: &Response) {
    let run = std::panic::AssertUnwindSafe(|| watcher(response));
    if std::panic::catch_unwind(run).is_err() {
        eprintln!("lithair: a deferred response's watcher panicked; its answer still goes out");
    }
}

fn complete(cell: &Cell, response: Response) {
    assert!(
        response.deferred.is_none(),
        "a deferred response cannot complete with another deferred response"
    );
    let mut inner = cell.lock();
    // The watchers run outside the lock (an access log writes a line: the connection's
    // reactor must not wait for that to attach). One added meanwhile is taken on the next
    // round; once the state changes under the lock, a later one sees the response completed
    // and runs itself: each runs once.
    loop {
        let watchers = std::mem::take(&mut inner.watchers);
        if watchers.is_empty() {
            break;
        }
        drop(inner);
        for watcher in watchers {
            run_watcher(watcher, &response);
        }
        inner = cell.lock();
    }
    match std::mem::replace(&mut inner.state, State::Done) {
        State::Open => inner.state = State::Completed(response),
        State::Attached(placeholder, deliver) => {
            drop(inner);
            deliver(merge_placeholder(&placeholder, response));
        }
        State::Completed(_) | State::Done => panic!("a deferred response is completed once"),
    }
}

/// The placeholder's side of a deferred response, carried in [`Response`] until the
/// connection attaches to it.
pub struct Deferred {
    cell: Arc<Cell>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

impl Deferred {
    /// A new pair: the placeholder side and the responder.
    pub(crate) fn pair() -> (Deferred, Responder) {
        let cell = Arc::new(Cell {
            state: Mutex::new(Inner {
                state: State::Open,
                watchers: Vec::new(),
            }),
        });
        let responder = Responder {
            cell: Some(Arc::clone(&cell)),
        };
        (Deferred { cell }, responder)
    }

    /// Returns the response if it is already complete; otherwise `deliver` will receive it.
    /// Either way it carries the headers middleware added to `placeholder`.
    pub(crate) fn attach(self, placeholder: Response, deliver: Deliver) -> Option<Response> {
        assert!(placeholder.deferred.is_none(), "the pair was taken out");
        let mut inner = self.cell.lock();
        match std::mem::replace(&mut inner.state, State::Done) {
            State::Open => {
                inner.state = State::Attached(placeholder, deliver);
                None
            }
            State::Completed(response) => Some(merge_placeholder(&placeholder, response)),
            State::Attached(..) | State::Done => panic!("a deferred response is attached once"),
        }
    }

    /// Calls `watcher` with the real response: now if it is already complete, else when it
    /// completes (an abandoned responder's 503 included).
    pub(crate) fn watch(&self, watcher: Watcher) {
        let mut inner = self.cell.lock();
        match &inner.state {
            // Under the lock, where the response is: only this placeholder's own connection,
            // which attaches after its layers have watched, takes it.
            State::Completed(response) => run_watcher(watcher, response),
            State::Open | State::Attached(..) => inner.watchers.push(watcher),
            State::Done => unreachable!("a placeholder's pair is delivered only once attached"),
        }
    }

    /// Splits a placeholder into the pair's side and the rest; `None` for other responses.
    pub(crate) fn take(response: &mut Response) -> Option<Deferred> {
        response.deferred.take()
    }
}

/// Headers a middleware added to the placeholder are carried over to the real response
/// (unless it sets them itself), so wrapping layers (CORS, request ids) still apply.
fn merge_placeholder(placeholder: &Response, mut response: Response) -> Response {
    // What the placeholder got from middleware around the handler (the security headers as a
    // static run, most often) stays static: no header name or value is copied here, on the
    // completing thread, to be freed on the reactor's. Same headers in the same order as
    // appending each one.
    let from = &placeholder.headers;
    for &(name, value) in from.head_run() {
        if !response.headers.contains(name) {
            response.headers.append_static(name, value);
        }
    }
    for (name, value) in from.entries() {
        if !response.headers.contains(name) {
            response.headers.append_cow(name.clone(), value.clone());
        }
    }
    let tail = from.static_tail();
    let distinct = tail.iter().enumerate().all(|(at, (name, _))| {
        !tail[..at]
            .iter()
            .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
    });
    if !tail.is_empty() && distinct && !tail.iter().any(|(n, _)| response.headers.contains(n)) {
        // The run whole, kept recognisable: the writer copies its pre-rendered lines.
        response.headers.set_static_tail(tail);
    } else {
        for &(name, value) in tail {
            if !response.headers.contains(name) {
                response.headers.append_static(name, value);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_watcher_sees_the_completed_response_once_whenever_it_comes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let watch = |response: &Response| {
            let seen = Arc::clone(&seen);
            response.when_answered(move |answered| {
                seen.lock().expect("lock").push(answered.status);
            });
        };
        // Watched before the completion: seen when it completes, from its thread.
        let (placeholder, responder) = Response::deferred();
        watch(&placeholder);
        assert!(seen.lock().expect("lock").is_empty(), "not completed yet");
        std::thread::spawn(move || responder.complete(Response::text(201, "made")))
            .join()
            .expect("completing thread");
        // Completed before it was watched: seen at once.
        let (placeholder_two, responder) = Response::deferred();
        responder.complete(Response::text(409, "conflict"));
        watch(&placeholder_two);
        // Abandoned: its 503.
        let (placeholder_three, responder) = Response::deferred();
        watch(&placeholder_three);
        drop(responder);
        // Not deferred: this very response, at once.
        watch(&Response::text(200, "now"));
        assert_eq!(
            *seen.lock().expect("lock"),
            [201, 409, ABANDONED_STATUS, 200]
        );
        // Delivery still works after the watchers ran.
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let delivered = deferred.attach(placeholder, Box::new(|_| panic!("already complete")));
        assert_eq!(delivered.map(|r| r.status), Some(201));
    }

    #[test]
    fn a_panicking_watcher_neither_loses_the_answer_nor_the_other_watchers() {
        let (placeholder, responder) = Response::deferred();
        placeholder.when_answered(|_| panic!("a sink that fails"));
        let (sender, seen) = mpsc::channel();
        placeholder.when_answered(move |answered| {
            sender.send(answered.status).expect("receiver");
        });
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let (deliver, delivered) = mpsc::channel();
        let attached = deferred.attach(
            placeholder,
            Box::new(move |response| deliver.send(response.status).expect("receiver")),
        );
        assert!(attached.is_none(), "not completed yet");
        std::thread::spawn(move || responder.complete(Response::text(201, "made")))
            .join()
            .expect("the completing thread survives the watcher's panic");
        assert_eq!(seen.recv().ok(), Some(201));
        assert_eq!(delivered.recv().ok(), Some(201));
    }

    #[test]
    fn completed_before_attach_is_taken_by_attach() {
        let (placeholder, responder) = Response::deferred();
        responder.complete(Response::text(201, "made"));
        let mut placeholder = placeholder.with_header("X-Layer", "yes");
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let response = deferred
            .attach(placeholder, Box::new(|_| panic!("must not deliver twice")))
            .expect("already complete");
        assert_eq!(response.status, 201);
        assert_eq!(response.headers.get("x-layer"), Some("yes"));
    }

    #[test]
    fn completed_after_attach_is_delivered_from_another_thread() {
        let (placeholder, responder) = Response::deferred();
        let (sender, receiver) = mpsc::channel();
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let now = deferred.attach(
            placeholder,
            Box::new(move |response| {
                sender.send(response.status).expect("receiver alive");
            }),
        );
        assert!(now.is_none());
        std::thread::spawn(move || responder.complete(Response::new(204)))
            .join()
            .expect("completer thread");
        assert_eq!(receiver.recv().expect("delivered"), 204);
    }

    #[test]
    fn a_dropped_responder_answers_503() {
        let (placeholder, responder) = Response::deferred();
        let (sender, receiver) = mpsc::channel();
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let deliver: Deliver = Box::new(move |response| {
            sender.send(response).expect("receiver alive");
        });
        assert!(deferred.attach(placeholder, deliver).is_none());
        drop(responder);
        let response = receiver.recv().expect("delivered");
        assert_eq!(response.status, ABANDONED_STATUS);
        assert_eq!(response.headers.get("retry-after"), Some("1"));
    }

    #[test]
    fn placeholder_headers_carry_over_unless_set() {
        let placeholder = Response::new(202)
            .with_header("X-Layer", "yes")
            .with_header("Content-Type", "text/plain");
        let merged = merge_placeholder(
            &placeholder,
            Response::bytes(201, "application/json", b"{}".to_vec()),
        );
        assert_eq!(merged.headers.get("x-layer"), Some("yes"));
        assert_eq!(merged.headers.get("content-type"), Some("application/json"));
    }

    /// The merge as it was first written: each placeholder header the response lacks, copied
    /// and appended in order.
    fn merged_by_copies(placeholder: &Response, mut response: Response) -> Response {
        for (name, value) in placeholder.headers.iter() {
            if !response.headers.contains(name) {
                response.headers.append(name.to_string(), value.to_string());
            }
        }
        response
    }

    #[test]
    fn a_static_tail_carries_over_as_a_run_with_the_same_headers() {
        static RUN: [(&str, &str); 2] = [("X-Frame-Options", "DENY"), ("X-Two", "2")];
        let answers = || {
            [
                Response::bytes(201, "application/json", b"{}".to_vec()),
                Response::new(201).with_header("x-two", "mine"),
                Response::new(204).with_header("Location", "/a/1"),
            ]
        };
        for (answer, copied) in answers().into_iter().zip(answers()) {
            let mut placeholder = Response::new(202).with_header("X-Request-Id", "r1");
            placeholder.headers.set_static_tail(&RUN);
            let expected = merged_by_copies(&placeholder, copied);
            let merged = merge_placeholder(&placeholder, answer);
            assert_eq!(merged.headers, expected.headers);
            let whole = merged.headers.get("x-two") == Some("2");
            assert_eq!(
                merged.headers.static_tail().len(),
                if whole { 2 } else { 0 }
            );
        }
    }
}
