//! The `Handler` trait: anything that answers requests.
//!
//! Owns: the contract between the server core and application code, including the hint that
//! lets the reactor run cheap handlers inline.
//! Must not: know about sockets, threads or routing.

use super::problem::Problem;
use super::request::Request;
use super::response::Response;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Runs code the server calls on a thread of its own (a reactor, a worker, a stream thread):
/// a panic in it is caught and logged as `what` panicked, then `consequence` (what the server
/// does about it), so it never unwinds through that thread and everything the thread serves.
/// `None` when it panicked.
pub(crate) fn catch_logged<T>(what: &str, consequence: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("lithair: {what} panicked; {consequence}");
            None
        }
    }
}

/// The answer for a request whose application code failed (a panic, a broken contract): a
/// problem document like every other error, whose detail points at the log rather than
/// repeating the panic message (that may hold data the client must not see).
pub(crate) fn handler_failed_response() -> Response {
    Problem::internal()
        .with_detail("the server failed to answer this request; its log says why")
        .into_response()
}

/// Runs a handler, turning a panic into a logged 500.
pub(crate) fn run_handler(handler: &dyn Handler, request: &mut Request) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.call(request))) {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!(
                "lithair http: handler panicked on {} {}: {message}",
                request.method, request.path
            );
            handler_failed_response()
        }
    }
}

/// Anything that answers requests. Runs on a worker thread; may block.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: &mut Request) -> Response;

    /// True when `call(req)` is cheap and never blocks (no waiting on locks held for long, no
    /// I/O, no commit): the server may then run it directly on the reactor thread, saving two
    /// thread hand-offs. A wrong `true` stalls every connection of that reactor while it runs,
    /// so the default is `false`. A router answers per route.
    fn is_inline(&self, req: &Request) -> bool {
        let _ = req;
        false
    }

    /// True when `req` does not depend on the requests before it on its connection: a request
    /// whose method is not safe may then start while earlier ones still run (answers still go
    /// out in request order). RFC 9112 §9.3.2 keeps one client's pipelined state-changing
    /// requests in order; a proxy that pipelines independent clients' requests on one connection (a
    /// follower forwarding writes to its leader) needs no such order. Default `false`.
    fn unordered(&self, req: &Request) -> bool {
        let _ = req;
        false
    }

    /// Called by the server once per request, right after the head is parsed and before any
    /// body byte is read: decides where the request runs and how large its body may be. A
    /// router matches the route here and remembers it on the request, so `call` does not
    /// match again. The default answers from `is_inline` with no body limit of its own.
    fn plan(&self, req: &mut Request) -> HeadPlan {
        HeadPlan {
            inline: self.is_inline(req),
            body_bytes_max: None,
        }
    }

    /// This handler's middleware around `inner` instead of the handler itself, or `None` when
    /// it has none (the default). A router answers a CORS preflight to a route this way: the
    /// route's own layers (a CORS layer given with `handler.with(cors)`) see the `OPTIONS`
    /// its handler does not route.
    fn layers_around(&self, inner: Arc<dyn Handler>) -> Option<Arc<dyn Handler>> {
        let _ = inner;
        None
    }
}

/// What a handler decides from a request's head alone (see [`Handler::plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadPlan {
    /// The request may run on the reactor thread (see [`Handler::is_inline`]).
    pub inline: bool,
    /// A body limit for this request below the server's own (413 before the body is read).
    pub body_bytes_max: Option<u64>,
}

impl HeadPlan {
    /// The stricter of two optional body limits.
    pub fn min_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

impl<F> Handler for F
where
    F: Fn(&mut Request) -> Response + Send + Sync + 'static,
{
    fn call(&self, req: &mut Request) -> Response {
        self(req)
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn call(&self, req: &mut Request) -> Response {
        (**self).call(req)
    }

    fn is_inline(&self, req: &Request) -> bool {
        (**self).is_inline(req)
    }

    fn unordered(&self, req: &Request) -> bool {
        (**self).unordered(req)
    }

    fn plan(&self, req: &mut Request) -> HeadPlan {
        (**self).plan(req)
    }

    fn layers_around(&self, inner: Arc<dyn Handler>) -> Option<Arc<dyn Handler>> {
        (**self).layers_around(inner)
    }
}

/// Wraps a handler that never blocks so that every request it answers runs on the reactor.
pub struct Inline<H>(pub H);

impl<H: Handler> Handler for Inline<H> {
    fn call(&self, req: &mut Request) -> Response {
        self.0.call(req)
    }

    fn is_inline(&self, _req: &Request) -> bool {
        true
    }

    fn plan(&self, req: &mut Request) -> HeadPlan {
        HeadPlan {
            inline: true,
            ..self.0.plan(req)
        }
    }

    fn layers_around(&self, inner: Arc<dyn Handler>) -> Option<Arc<dyn Handler>> {
        self.0.layers_around(inner)
    }
}

/// Marks `handler` as cheap and non-blocking (see [`Handler::is_inline`]).
pub fn inline<H: Handler>(handler: H) -> Inline<H> {
    Inline(handler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn closures_are_handlers_and_not_inline_by_default() {
        let h = |req: &mut Request| Response::text(200, req.path.clone());
        let mut req = Request::new(Method::Get, "/p");
        assert!(!h.is_inline(&req));
        assert_eq!(
            Handler::call(&h, &mut req).body.as_bytes(),
            Some(&b"/p"[..])
        );
        let shared: Arc<dyn Handler> = Arc::new(inline(h));
        assert!(shared.is_inline(&req));
        assert_eq!(
            shared.plan(&mut req),
            HeadPlan {
                inline: true,
                body_bytes_max: None
            }
        );
        assert!(!h.plan(&mut req).inline);
        assert_eq!(HeadPlan::min_limit(Some(5), Some(3)), Some(3));
        assert_eq!(HeadPlan::min_limit(None, Some(3)), Some(3));
        assert_eq!(HeadPlan::min_limit(Some(5), None), Some(5));
        assert_eq!(HeadPlan::min_limit(None, None), None);
    }
}
