//! `X-Request-Id`: propagated when the client's is sane, generated otherwise; stored in the
//! request extensions for handlers and the access log, and echoed on the response.

use super::Middleware;
use crate::http::handler::Handler;
use crate::http::request::Request;
use crate::http::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest client-supplied id that is propagated; longer ones are replaced.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// The request's id, in `Request::extensions` after [`RequestId`] ran.
///
/// As a middleware, `RequestId::default()` does the propagation and generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId(pub String);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A client id is propagated only if it cannot smuggle anything into logs or headers.
fn is_sane(id: &str) -> bool {
    (1..=REQUEST_ID_BYTES_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 32 hex digits: a per-process random prefix (kernel randomness, read once; the start time
/// mixed with the pid if that fails) and a scrambled counter (unique within the process).
/// Not a secret: ids only correlate log lines.
fn generate() -> String {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        crate::crypto::random::u64().unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(40)
        })
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{seed:016x}{:016x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n
    )
}

impl Middleware for RequestId {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let id = match req.header("x-request-id") {
            Some(id) if is_sane(id) => id.to_string(),
            _ => generate(),
        };
        req.extensions.insert(RequestId(id.clone()));
        let mut response = next.call(req);
        response.headers.insert("X-Request-Id", id);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn propagates_sane_ids_and_replaces_others() {
        let handler = |req: &mut Request| {
            let id = req
                .extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            Response::text(200, id)
        };
        let mut req = Request::new(Method::Get, "/");
        req.headers.append("X-Request-Id", "abc-123");
        let r = RequestId::default().call(&mut req, &handler);
        assert_eq!(r.headers.get("x-request-id"), Some("abc-123"));
        assert_eq!(r.body.as_bytes(), Some(&b"abc-123"[..]));
        let mut evil = Request::new(Method::Get, "/");
        evil.headers.append("X-Request-Id", "x\"}\n{\"forged\":1");
        let r = RequestId::default().call(&mut evil, &handler);
        let id = r.headers.get("x-request-id").unwrap_or("");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(generate(), generate());
    }
}
