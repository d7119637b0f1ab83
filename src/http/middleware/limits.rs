//! Per-route overrides: a lower body-size limit (413) and a handler timeout (503).

use super::request_id::RequestId;
use super::Middleware;
use crate::http::handler::Handler;
use crate::http::problem::Problem;
use crate::http::request::{Method, Request};
use crate::http::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Most timed handlers still running after their deadline, process-wide. A handler cannot be
/// killed, only abandoned; this bounds the threads abandoned handlers keep alive.
pub const TIMEOUT_THREADS_MAX: usize = 256;

static TIMED_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Refuses bodies above `bytes_max` with 413. On a route, the server learns the limit from
/// the head (see `Handler::plan`) and answers before reading any body byte; the checks in
/// `call` cover handlers invoked directly. It can only lower the server's own limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    bytes_max: u64,
}

impl BodyLimit {
    /// A limit of `bytes_max` bytes.
    pub fn bytes(bytes_max: u64) -> Self {
        Self { bytes_max }
    }
}

impl Middleware for BodyLimit {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let declared = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.unwrap_or(0) > self.bytes_max || req.body.len() as u64 > self.bytes_max {
            return Problem::payload_too_large(self.bytes_max).into_response();
        }
        next.call(req)
    }

    fn body_bytes_max(&self) -> Option<u64> {
        Some(self.bytes_max)
    }
}

/// Runs a handler on its own thread and answers 503 if it has not finished within the
/// deadline; the late result is discarded. Wraps a handler (not a middleware) because the
/// handler must outlive the request: `router.get("/report", Timeout::ms(2000, report))`.
pub struct Timeout {
    duration: Duration,
    inner: Arc<dyn Handler>,
}

impl Timeout {
    /// Wraps `handler` with a deadline of `ms` milliseconds.
    pub fn ms<M>(ms: u64, handler: impl crate::http::router::IntoHandler<M>) -> Self {
        assert!(ms > 0, "a zero timeout would refuse every request");
        Self {
            duration: Duration::from_millis(ms),
            inner: handler.into_handler(),
        }
    }
}

/// One running timed handler thread in `TIMED_RUNNING`, given back when dropped.
struct RunningSlot;

impl Drop for RunningSlot {
    fn drop(&mut self) {
        TIMED_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies the request head into a placeholder that stays behind while the original travels to
/// the handler thread, so outer middleware (the access log) still sees method, path and id.
fn head_copy(req: &Request) -> Request {
    let mut copy = Request::new(Method::Get, "/");
    copy.method = req.method.clone();
    copy.target.clone_from(&req.target);
    copy.path.clone_from(&req.path);
    copy.query.clone_from(&req.query);
    copy.version = req.version;
    copy.headers = req.headers.clone();
    copy.remote_addr = req.remote_addr;
    copy.params.clone_from(&req.params);
    if let Some(id) = req.extensions.get::<RequestId>() {
        copy.extensions.insert(id.clone());
    }
    copy
}

impl Handler for Timeout {
    fn call(&self, req: &mut Request) -> Response {
        if TIMED_RUNNING.fetch_add(1, Ordering::AcqRel) >= TIMEOUT_THREADS_MAX {
            TIMED_RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Problem::new(503)
                .with_detail("too many slow requests")
                .with_header("Retry-After", "1")
                .into_response();
        }
        let placeholder = head_copy(req);
        let mut moved = std::mem::replace(req, placeholder);
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("lithair-timed".into())
            .spawn(move || {
                // Released on the way out, also when the handler panics: a leaked count would
                // refuse this route with 503 for good after TIMEOUT_THREADS_MAX panics.
                let running = RunningSlot;
                let response = inner.call(&mut moved);
                drop(running);
                // The receiver is gone after a timeout: the late answer is dropped on purpose.
                let _ = tx.send((moved, response));
            });
        if let Err(e) = spawned {
            TIMED_RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Problem::internal()
                .with_detail(format!("cannot start handler thread: {e}"))
                .into_response();
        }
        match rx.recv_timeout(self.duration) {
            Ok((original, response)) => {
                *req = original;
                response
            }
            Err(RecvTimeoutError::Timeout) => Problem::new(503)
                .with_detail(format!("handler exceeded {} ms", self.duration.as_millis()))
                .into_response(),
            // The sender was dropped unsent: the handler panicked (its thread logged it).
            Err(RecvTimeoutError::Disconnected) => Problem::internal().into_response(),
        }
    }

    /// The inner handler's plan (its route and body limit: a `BodyLimit` inside a timeout
    /// still answers 413 before the body is read), never inline: `call` waits for a thread.
    fn plan(&self, req: &mut Request) -> crate::http::handler::HeadPlan {
        crate::http::handler::HeadPlan {
            inline: false,
            ..self.inner.plan(req)
        }
    }

    fn layers_around(&self, inner: Arc<dyn Handler>) -> Option<Arc<dyn Handler>> {
        // A preflight is answered by the layers alone, at once: no deadline thread for it.
        self.inner.layers_around(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_by_length_and_header() {
        let ok = |_: &mut Request| Response::no_content();
        let limit = BodyLimit::bytes(4);
        let mut small = Request::new(Method::Post, "/");
        small.body = b"abcd".to_vec();
        assert_eq!(limit.call(&mut small, &ok).status, 204);
        let mut big = Request::new(Method::Post, "/");
        big.body = b"abcde".to_vec();
        assert_eq!(limit.call(&mut big, &ok).status, 413);
        let mut declared = Request::new(Method::Post, "/");
        declared.headers.append("Content-Length", "1000");
        assert_eq!(limit.call(&mut declared, &ok).status, 413);
    }

    #[test]
    fn a_body_limit_inside_a_timeout_is_planned() {
        use crate::http::router::WithMiddleware;
        let ok = |_: &mut Request| Response::no_content();
        let timed = Timeout::ms(10_000, ok.with(BodyLimit::bytes(8)));
        let mut req = Request::new(Method::Post, "/");
        let plan = timed.plan(&mut req);
        assert_eq!((plan.inline, plan.body_bytes_max), (false, Some(8)));
        let inline = Timeout::ms(10_000, crate::http::handler::inline(ok));
        assert!(
            !inline.plan(&mut req).inline,
            "a timeout waits: never inline"
        );
    }

    #[test]
    fn timeout_passes_fast_handlers_and_cuts_slow_ones() {
        let fast = Timeout::ms(10_000, |req: &mut Request| {
            req.params.push(("seen".into(), "1".into()));
            Response::text(200, "fast")
        });
        let mut req = Request::new(Method::Get, "/f");
        assert_eq!(fast.call(&mut req).status, 200);
        assert_eq!(
            req.param_str("seen"),
            Some("1"),
            "request comes back after the handler"
        );
        // The slow handler waits on a channel this test never sends on, so it cannot finish
        // before the deadline, whatever the machine's speed.
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        let hold_rx = std::sync::Mutex::new(hold_rx);
        let slow = Timeout::ms(20, move |_: &mut Request| {
            let _ = hold_rx.lock().map(|rx| rx.recv());
            Response::text(200, "late")
        });
        let mut req = Request::new(Method::Get, "/slow");
        let r = slow.call(&mut req);
        assert_eq!(r.status, 503);
        assert_eq!(req.path, "/slow", "the head stays for outer middleware");
        drop(hold_tx);
    }

    #[test]
    fn a_panicking_timed_handler_is_a_500_and_gives_its_thread_slot_back() {
        let panicking = Timeout::ms(10_000, |_: &mut Request| -> Response {
            panic!("timed handler panics on purpose")
        });
        // More panics than there are slots: each one must give its slot back.
        for _ in 0..=TIMEOUT_THREADS_MAX {
            let mut req = Request::new(Method::Get, "/p");
            assert_eq!(panicking.call(&mut req).status, 500);
        }
    }
}
