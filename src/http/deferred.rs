//! Deferred responses: a handler returns at once with a placeholder and the real response is
//! completed later, from any thread, through a [`Responder`] (for example by the engine's
//! applier once a write is durable), so no thread waits for a commit.
//!
//! Owns: the hand-over between the thread that completes a response and the connection that
//! is waiting for it, whichever comes first, the rule that an abandoned responder still
//! answers (503) so a connection never hangs, and the steps layers put on the answer
//! (`Response::when_answered` to see it: the access log, the per-route counters;
//! `Response::edit_answer` to add to it cheaply: the CSP of an HTML answer;
//! `Response::map_answer` to replace it: compression), run once each, in the order the
//! layers added them, as their code after the handler would run on an ordinary response.
//! Must not: know about sockets or reactors (the connection attaches a delivery closure and
//! decides on which thread an `Answer` with work left is finished).

use super::problem::Problem;
use super::response::Response;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// Status a dropped, never-completed [`Responder`] answers with.
pub const ABANDONED_STATUS: u16 = 503;

/// How a completed response reaches its waiter, finished (tests that stand for a connection).
#[cfg(test)]
pub(crate) type Deliver = Box<dyn FnOnce(Response) + Send>;

/// How a completed [`Answer`] reaches its connection, still to be finished (set by the
/// connection, which chooses the thread that finishes it).
pub(crate) type DeliverAnswer = Box<dyn FnOnce(Answer) + Send>;

/// Called with the real response once it is known: how a layer that reports what was
/// answered (the access log, the per-route counters) sees the answer a client gets instead of
/// its placeholder (see [`Response::when_answered`]), and how one that adds to it by what it
/// is (the security headers' CSP for HTML) edits it in place ([`Response::edit_answer`]).
/// Cheap by contract: it runs on the completing thread.
pub(crate) type Watcher = Box<dyn FnOnce(&mut Response) + Send>;

/// Replaces the real response once it is known (see [`Response::map_answer`]).
pub(crate) type Mapper = Box<dyn FnOnce(Response) -> Response + Send>;

/// What a layer asked to do with the answer.
enum Step {
    Watch(Watcher),
    Map(Mapper),
}

enum State {
    /// Neither the response nor the connection's delivery is there yet.
    Open,
    /// The connection waits: deliver the response (its steps run, merged with the
    /// placeholder's headers) as soon as it is completed.
    Attached(Response, DeliverAnswer),
    /// The response came first: the connection takes it when it attaches.
    Completed(Response),
    /// Handed over; nothing left to do.
    Done,
}

/// The hand-over's state and the steps not run yet.
///
/// Watchers cost little and see the answer as soon as it exists, so those at the front run
/// at once on the completing thread (or, registered after the completion, on the registering
/// one); a map may cost much (deflate) and the completing thread is often the engine's
/// applier, so from the first map on every step waits for the [`Answer`] to be finished where
/// the connection chooses. Invariant: once the state is `Completed`, `steps` is empty or
/// starts with a map.
struct Inner {
    state: State,
    steps: VecDeque<Step>,
}

impl Inner {
    /// Takes the watchers at the front of the steps (those that may run now).
    fn leading_watchers(&mut self) -> Vec<Watcher> {
        let mut watchers = Vec::new();
        while let Some(Step::Watch(_)) = self.steps.front() {
            if let Some(Step::Watch(watcher)) = self.steps.pop_front() {
                watchers.push(watcher);
            }
        }
        watchers
    }
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
fn run_watcher(watcher: Watcher, response: &mut Response) {
    let run = std::panic::AssertUnwindSafe(|| watcher(response));
    if std::panic::catch_unwind(run).is_err() {
        eprintln!("lithair: a deferred response's watcher panicked; its answer still goes out");
    }
}

/// Runs `mapper` on `response`. One that panics took the response with it: the client gets
/// a 500, as for a panicking handler, and the thread lives on.
fn run_mapper(mapper: Mapper, response: Response) -> Response {
    let run = std::panic::AssertUnwindSafe(|| mapper(response));
    std::panic::catch_unwind(run).unwrap_or_else(|_| {
        eprintln!("lithair: a layer panicked on a deferred response's answer; answering 500");
        Problem::internal()
            .with_detail("a layer failed on the answer")
            .into_response()
    })
}

fn complete(cell: &Cell, mut response: Response) {
    assert!(
        response.deferred.is_none(),
        "a deferred response cannot complete with another deferred response"
    );
    let mut inner = cell.lock();
    // The leading watchers run outside the lock (an access log writes a line: the
    // connection's reactor must not wait for that to attach). One added meanwhile is taken
    // on the next round; once the state changes under the lock, a later one sees the
    // response completed and runs itself (or waits behind a map): each runs once.
    loop {
        let watchers = inner.leading_watchers();
        if watchers.is_empty() {
            break;
        }
        drop(inner);
        for watcher in watchers {
            run_watcher(watcher, &mut response);
        }
        inner = cell.lock();
    }
    match std::mem::replace(&mut inner.state, State::Done) {
        State::Open => inner.state = State::Completed(response),
        State::Attached(placeholder, deliver) => {
            let steps = std::mem::take(&mut inner.steps);
            drop(inner);
            deliver(Answer {
                response,
                steps,
                placeholder,
            });
        }
        State::Completed(_) | State::Done => panic!("a deferred response is completed once"),
    }
}

/// A completed response on its way to the connection: the steps layers put on it that have
/// not run yet, and its placeholder, whose headers it takes. [`Answer::finish`] gives what is
/// sent.
pub(crate) struct Answer {
    response: Response,
    steps: VecDeque<Step>,
    placeholder: Response,
}

impl Answer {
    /// Whether finishing runs a map (compression, say): worth a worker rather than the
    /// completing thread or a reactor.
    pub(crate) fn has_work(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Runs the remaining steps in order and carries the placeholder's headers over.
    pub(crate) fn finish(self) -> Response {
        let mut response = self.response;
        for step in self.steps {
            match step {
                Step::Map(mapper) => response = run_mapper(mapper, response),
                Step::Watch(watcher) => run_watcher(watcher, &mut response),
            }
        }
        merge_placeholder(&self.placeholder, response)
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
                steps: VecDeque::new(),
            }),
        });
        let responder = Responder {
            cell: Some(Arc::clone(&cell)),
        };
        (Deferred { cell }, responder)
    }

    /// Returns the answer if the response is already complete; otherwise `deliver` will
    /// receive it, on the completing thread. Either way the caller finishes it, where it
    /// chooses ([`Answer::has_work`] says whether that costs).
    pub(crate) fn attach_answer(
        self,
        placeholder: Response,
        deliver: DeliverAnswer,
    ) -> Option<Answer> {
        assert!(placeholder.deferred.is_none(), "the pair was taken out");
        let mut inner = self.cell.lock();
        match std::mem::replace(&mut inner.state, State::Done) {
            State::Open => {
                inner.state = State::Attached(placeholder, deliver);
                None
            }
            State::Completed(response) => Some(Answer {
                response,
                steps: std::mem::take(&mut inner.steps),
                placeholder,
            }),
            State::Attached(..) | State::Done => panic!("a deferred response is attached once"),
        }
    }

    /// [`Deferred::attach_answer`], finished at once: the response if it is already
    /// complete; otherwise `deliver` will receive it, finished on the completing thread.
    /// Either way it carries the headers middleware added to `placeholder`.
    #[cfg(test)]
    pub(crate) fn attach(self, placeholder: Response, deliver: Deliver) -> Option<Response> {
        let finished = Box::new(move |answer: Answer| deliver(answer.finish()));
        self.attach_answer(placeholder, finished)
            .map(Answer::finish)
    }

    /// Whether a layer asked to replace the answer (see [`Response::map_answer`]): its
    /// connection then has it finished by a worker.
    pub(crate) fn has_maps(&self) -> bool {
        let inner = self.cell.lock();
        inner.steps.iter().any(|step| matches!(step, Step::Map(_)))
    }

    /// Calls `watcher` with the real response: now if it is already complete and no map is
    /// waiting before it, else when it completes (an abandoned responder's 503 included) or
    /// once the maps before it ran.
    pub(crate) fn watch(&self, watcher: Watcher) {
        let mut inner = self.cell.lock();
        let Inner { state, steps } = &mut *inner;
        match state {
            // Under the lock, where the response is: only this placeholder's own connection,
            // which attaches after its layers have watched, takes it.
            State::Completed(response) if steps.is_empty() => run_watcher(watcher, response),
            State::Open | State::Completed(_) => steps.push_back(Step::Watch(watcher)),
            State::Attached(..) | State::Done => {
                unreachable!("a placeholder's pair is attached after its layers")
            }
        }
    }

    /// Has `mapper` replace the real response, after the steps added before it.
    pub(crate) fn map(&self, mapper: Mapper) {
        let mut inner = self.cell.lock();
        match &inner.state {
            State::Open | State::Completed(_) => inner.steps.push_back(Step::Map(mapper)),
            State::Attached(..) | State::Done => {
                unreachable!("a placeholder's pair is attached after its layers")
            }
        }
    }

    /// Splits a placeholder into the pair's side and the rest; `None` for other responses.
    pub(crate) fn take(response: &mut Response) -> Option<Deferred> {
        response.deferred.take()
    }
}

/// Whether the placeholder's `name: value` goes on the response: unless the response sets
/// that header itself, or, for `Vary` (a list each layer adds to), unless it already lists
/// the same value. A CORS layer's `Vary: Origin` on the placeholder and a compression
/// layer's `Vary: Accept-Encoding` on the answer both belong to the answer.
fn carries_over(response: &Response, name: &str, value: &str) -> bool {
    if name.eq_ignore_ascii_case("vary") {
        return !response
            .headers
            .get_all(name)
            .any(|v| v.eq_ignore_ascii_case(value));
    }
    !response.headers.contains(name)
}

/// Headers a middleware added to the placeholder are carried over to the real response
/// (unless it sets them itself, see [`carries_over`]), so wrapping layers (CORS, request
/// ids) still apply.
fn merge_placeholder(placeholder: &Response, mut response: Response) -> Response {
    // What the placeholder got from middleware around the handler (the security headers as a
    // static run, most often) stays static: no header name or value is copied here, on the
    // completing thread, to be freed on the reactor's. Same headers in the same order as
    // appending each one.
    let from = &placeholder.headers;
    for &(name, value) in from.head_run() {
        if carries_over(&response, name, value) {
            response.headers.append_static(name, value);
        }
    }
    for (name, value) in from.entries() {
        if carries_over(&response, name, value) {
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
            if carries_over(&response, name, value) {
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

    /// A layer's record of what its step saw: (label, status, body).
    type Seen = Arc<Mutex<Vec<(&'static str, u16, String)>>>;

    fn text_of(response: &Response) -> String {
        String::from_utf8_lossy(response.body.as_bytes().unwrap_or_default()).into_owned()
    }

    /// The steps of three layers, innermost first: a watcher, a map that rewrites the body
    /// and a watcher after it (as an access log outside a compression layer would be).
    fn layered(placeholder: Response, seen: &Seen) -> Response {
        let record = |label: &'static str| {
            let seen = Arc::clone(seen);
            move |answered: &Response| {
                let entry = (label, answered.status, text_of(answered));
                seen.lock().expect("lock").push(entry);
            }
        };
        placeholder.when_answered(record("inner"));
        let placeholder = placeholder.map_answer(|answer| {
            let body = format!("mapped {}", text_of(&answer));
            Response::text(answer.status, body)
        });
        placeholder.when_answered(record("outer"));
        placeholder
    }

    #[test]
    fn steps_run_in_the_order_layers_added_them_and_maps_wait_for_the_connection() {
        for complete_first in [true, false] {
            let seen = Seen::default();
            let (placeholder, responder) = Response::deferred();
            let mut placeholder = layered(placeholder, &seen);
            let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
            assert!(deferred.has_maps());
            let answer = if complete_first {
                responder.complete(Response::text(201, "made"));
                // The watcher before the map saw the answer on the completing thread; the map
                // and what follows it wait for the connection.
                assert_eq!(*seen.lock().expect("lock"), [("inner", 201, "made".into())]);
                let deliver: DeliverAnswer = Box::new(|_| panic!("already complete"));
                deferred
                    .attach_answer(placeholder, deliver)
                    .expect("already complete")
            } else {
                let (sender, delivered) = mpsc::channel();
                let deliver: DeliverAnswer = Box::new(move |answer| {
                    sender.send(answer).map_err(drop).expect("receiver");
                });
                assert!(deferred.attach_answer(placeholder, deliver).is_none());
                std::thread::spawn(move || responder.complete(Response::text(201, "made")))
                    .join()
                    .expect("completing thread");
                delivered.recv().expect("delivered unfinished")
            };
            assert!(answer.has_work(), "the map is left to whoever finishes");
            assert_eq!(seen.lock().expect("lock").len(), 1, "the outer one waits");
            let sent = answer.finish();
            assert_eq!((sent.status, text_of(&sent)), (201, "mapped made".into()));
            assert_eq!(
                *seen.lock().expect("lock"),
                [
                    ("inner", 201, "made".into()),
                    ("outer", 201, "mapped made".into())
                ]
            );
        }
    }

    #[test]
    fn steps_added_after_the_completion_keep_their_order() {
        let seen = Seen::default();
        let (placeholder, responder) = Response::deferred();
        responder.complete(Response::text(201, "made"));
        let mut placeholder = layered(placeholder, &seen);
        // Completed first: the inner watcher ran as it was added; the outer one waits behind
        // the map.
        assert_eq!(*seen.lock().expect("lock"), [("inner", 201, "made".into())]);
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        let sent = deferred
            .attach(placeholder, Box::new(|_| panic!("already complete")))
            .expect("already complete");
        assert_eq!(text_of(&sent), "mapped made");
        assert_eq!(
            seen.lock().expect("lock")[1],
            ("outer", 201, "mapped made".into())
        );
    }

    #[test]
    fn watchers_alone_leave_no_work_and_a_panicking_map_answers_500() {
        let (placeholder, responder) = Response::deferred();
        placeholder.when_answered(|_| {});
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        assert!(!deferred.has_maps());
        responder.complete(Response::new(204));
        let deliver: DeliverAnswer = Box::new(|_| panic!("already complete"));
        let answer = deferred
            .attach_answer(placeholder, deliver)
            .expect("complete");
        assert!(!answer.has_work(), "the watcher ran at the completion");

        let seen = Seen::default();
        let (placeholder, responder) = Response::deferred();
        let placeholder = placeholder.map_answer(|_| panic!("a layer that fails"));
        let after = Arc::clone(&seen);
        placeholder.when_answered(move |answered| {
            let entry = ("after", answered.status, String::new());
            after.lock().expect("lock").push(entry);
        });
        let mut placeholder = placeholder;
        let deferred = Deferred::take(&mut placeholder).expect("placeholder carries the pair");
        responder.complete(Response::text(201, "made"));
        let sent = deferred
            .attach(placeholder, Box::new(|_| panic!("already complete")))
            .expect("complete");
        assert_eq!(sent.status, 500);
        assert_eq!(*seen.lock().expect("lock"), [("after", 500, String::new())]);
    }

    #[test]
    fn vary_from_the_placeholder_joins_the_answers_own() {
        let placeholder = Response::new(202)
            .with_header("Vary", "Origin")
            .with_header("X-Layer", "yes");
        let mut answer = Response::text(201, "made");
        answer.headers.append_static("Vary", "Accept-Encoding");
        let merged = merge_placeholder(&placeholder, answer);
        let vary: Vec<&str> = merged.headers.get_all("vary").collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        let mut answer = Response::text(201, "made");
        answer.headers.append_static("Vary", "origin");
        let merged = merge_placeholder(&placeholder, answer);
        let vary: Vec<&str> = merged.headers.get_all("vary").collect();
        assert_eq!(vary, ["origin"], "listed once");
        assert_eq!(merged.headers.get("x-layer"), Some("yes"));
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
