//! Middleware: code that runs around a handler, globally (on a `Router`), per group or per
//! route. Built-ins: access log, request ids, CORS, security headers, gzip, body-size limits and
//! timeouts.
//!
//! Owns: the [`Middleware`] trait and [`Layered`], which composes a middleware with the handler
//! it wraps once, at registration, so a request pays no allocation for the chain.
//! Must not: route (the router decides which chain runs).

mod access_log;
mod compress;
mod gzip_cache;
mod limits;
mod request_id;
mod security;

pub use access_log::{AccessLog, LogSink};
pub use compress::{Compression, COMPRESS_BYTES_MIN, COMPRESS_FILE_BYTES_MAX};
pub use gzip_cache::{
    GzipCacheStats, FILE_SETTLED_AFTER, GZIP_CACHE_BYTES_MAX, GZIP_CACHE_ENTRIES_MAX,
    GZIP_CACHE_PLAIN_BYTES_MAX,
};
pub use limits::{BodyLimit, Timeout, TIMEOUT_THREADS_MAX};
pub use request_id::{RequestId, REQUEST_ID_BYTES_MAX};
pub(crate) use security::rendered_tail;
pub use security::{SecurityHeaders, DEFAULT_CSP};

pub use crate::http::cors::Cors;

use crate::http::handler::{Handler, HeadPlan};
use crate::http::request::Request;
use crate::http::response::Response;
use std::sync::Arc;

/// Runs around a handler: may change the request, answer early without calling `next`, or
/// change the response `next` returns.
pub trait Middleware: Send + Sync + 'static {
    /// Handles `req`, normally by calling `next.call(req)`.
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response;

    /// Whether this middleware never blocks, so a route whose handler is inline stays inline
    /// (see [`Handler::is_inline`]). Default `true`: most middleware only edits headers.
    fn is_inline(&self) -> bool {
        true
    }

    /// A body limit this middleware imposes, known from the route alone, so the server can
    /// answer 413 before reading the body (see [`Handler::plan`]). Default: none.
    fn body_bytes_max(&self) -> Option<u64> {
        None
    }
}

impl<F> Middleware for F
where
    F: Fn(&mut Request, &dyn Handler) -> Response + Send + Sync + 'static,
{
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        self(req, next)
    }
}

/// A handler wrapped in one middleware; itself a handler, so layers nest.
pub struct Layered {
    middleware: Arc<dyn Middleware>,
    next: Arc<dyn Handler>,
    /// `middleware.is_inline()` and `middleware.body_bytes_max()`, asked once: they depend on
    /// the middleware alone, and `plan` runs for every request.
    inline: bool,
    body_bytes_max: Option<u64>,
}

impl Layered {
    /// Wraps `next` in `middleware`.
    pub fn new(middleware: Arc<dyn Middleware>, next: Arc<dyn Handler>) -> Self {
        let inline = middleware.is_inline();
        let body_bytes_max = middleware.body_bytes_max();
        Self {
            middleware,
            next,
            inline,
            body_bytes_max,
        }
    }
}

impl Handler for Layered {
    fn call(&self, req: &mut Request) -> Response {
        self.middleware.call(req, &*self.next)
    }

    fn is_inline(&self, req: &Request) -> bool {
        self.inline && self.next.is_inline(req)
    }

    fn plan(&self, req: &mut Request) -> HeadPlan {
        let inner = self.next.plan(req);
        HeadPlan {
            inline: inner.inline && self.inline,
            body_bytes_max: HeadPlan::min_limit(inner.body_bytes_max, self.body_bytes_max),
        }
    }

    fn layers_around(&self, inner: Arc<dyn Handler>) -> Option<Arc<dyn Handler>> {
        let next = match self.next.layers_around(Arc::clone(&inner)) {
            Some(layered) => layered,
            None => inner,
        };
        Some(Arc::new(Layered::new(Arc::clone(&self.middleware), next)))
    }
}

/// Wraps `handler` in `layers`; the first layer is the outermost (runs first).
pub fn wrap(handler: Arc<dyn Handler>, layers: &[Arc<dyn Middleware>]) -> Arc<dyn Handler> {
    layers.iter().rev().fold(handler, |next, mw| {
        Arc::new(Layered::new(Arc::clone(mw), next))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn first_layer_is_outermost() {
        let tag = |name: &'static str| -> Arc<dyn Middleware> {
            Arc::new(move |req: &mut Request, next: &dyn Handler| {
                req.body.extend_from_slice(name.as_bytes());
                let r = next.call(req);
                r.with_header(format!("x-{name}"), "1")
            })
        };
        let end: Arc<dyn Handler> = Arc::new(|req: &mut Request| {
            Response::text(200, String::from_utf8_lossy(&req.body).into_owned())
        });
        let chain = wrap(end, &[tag("a"), tag("b")]);
        let mut req = Request::new(Method::Get, "/");
        let r = chain.call(&mut req);
        assert_eq!(r.body.as_bytes(), Some(&b"ab"[..]));
        assert!(r.headers.contains("x-a") && r.headers.contains("x-b"));
        assert!(!chain.is_inline(&req), "closures are not inline by default");
    }
}
