//! CORS (Fetch standard, "CORS protocol"): an explicit allow-list of origins, preflight
//! answers, and the response headers on allowed cross-origin requests.
//!
//! Owns: the `Access-Control-*` headers.
//! Must not: allow an origin by pattern or reflect arbitrary origins: the list is exact.

use crate::http::handler::Handler;
use crate::http::middleware::Middleware;
use crate::http::problem::Problem;
use crate::http::request::{Method, Request};
use crate::http::response::Response;

/// Default `Access-Control-Max-Age`: how long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE_S: u64 = 600;

/// Methods allowed cross-origin by default: every method a Lithair app routes (the generated
/// model routes create, replace, patch and delete), so a page on an allowed origin can use the
/// whole API. The origin list is what keeps other pages out.
pub const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Request headers allowed cross-origin by default (lowercase): the ones a Lithair API reads.
/// `content-type` first (a JSON body needs `application/json`, which is not CORS-safelisted),
/// then conditional writes and reads, idempotent retries, request ids and live feeds' resume.
pub const DEFAULT_REQUEST_HEADERS: [&str; 6] = [
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "last-event-id",
];

/// Response headers scripts may read by default (beyond the CORS-safelisted ones): the ones a
/// Lithair API answers with and a client acts on (a version for `If-Match`, a created record's
/// address, a retry's replay mark, when to try again, the request id to quote).
pub const DEFAULT_EXPOSED_HEADERS: [&str; 5] = [
    "ETag",
    "Location",
    "Idempotent-Replayed",
    "Retry-After",
    "X-Request-Id",
];

/// The CORS middleware. Requests without `Origin`, or from an origin not on the list, pass
/// through without CORS headers (the browser then blocks the response); a preflight from an
/// unlisted origin, or asking for a method or header not allowed, gets 403. The CORS-safelisted
/// methods (GET, HEAD, POST) pass a preflight whatever [`Cors::allow_methods`] says, as the
/// browser itself accepts them (Fetch, "CORS-preflight fetch"), and they are never refused
/// on the actual request either.
///
/// Every response carries `Vary: Origin`, those to requests without `Origin` included: the
/// answer depends on the header's presence, and a cache that stored a response without
/// `Access-Control-Allow-Origin` (a navigation, a same-origin fetch) must not serve it to a
/// cross-origin request (Fetch, "CORS protocol and HTTP caches").
///
/// By default a listed origin may use every method and request header a Lithair API uses
/// ([`DEFAULT_METHODS`], [`DEFAULT_REQUEST_HEADERS`]) and read the headers it answers with
/// ([`DEFAULT_EXPOSED_HEADERS`]); the `allow_*` and `expose_headers` methods replace those
/// lists.
///
/// ```
/// use lithair::http::cors::Cors;
/// let api = Cors::new(["https://app.example.com"]);
/// let narrow = Cors::new(["https://app.example.com"]).allow_methods(["GET", "POST"]).allow_headers(["content-type"]);
/// ```
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age_s: u64,
}

impl Cors {
    /// Allows exactly these origins (scheme, host and port, e.g. `https://a.example:8443`),
    /// with the default methods and headers (see [`Cors`]).
    pub fn new<S: Into<String>>(origins: impl IntoIterator<Item = S>) -> Self {
        let origins: Vec<String> = origins.into_iter().map(Into::into).collect();
        for o in &origins {
            assert!(
                o != "*" && !o.ends_with('/'),
                "CORS origin {o:?} must be exact, like https://host:port"
            );
        }
        Self {
            origins,
            methods: DEFAULT_METHODS.map(String::from).to_vec(),
            headers: DEFAULT_REQUEST_HEADERS.map(String::from).to_vec(),
            expose: DEFAULT_EXPOSED_HEADERS.map(String::from).to_vec(),
            credentials: false,
            max_age_s: PREFLIGHT_MAX_AGE_S,
        }
    }

    /// Methods allowed cross-origin, instead of [`DEFAULT_METHODS`].
    pub fn allow_methods<S: Into<String>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Request headers allowed cross-origin (compared case-insensitively), instead of
    /// [`DEFAULT_REQUEST_HEADERS`].
    pub fn allow_headers<S: Into<String>>(mut self, headers: impl IntoIterator<Item = S>) -> Self {
        self.headers = headers
            .into_iter()
            .map(|h| h.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Response headers scripts may read (`Access-Control-Expose-Headers`), instead of
    /// [`DEFAULT_EXPOSED_HEADERS`].
    pub fn expose_headers<S: Into<String>>(mut self, headers: impl IntoIterator<Item = S>) -> Self {
        self.expose = headers.into_iter().map(Into::into).collect();
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true` (cookies cross-origin).
    pub fn allow_credentials(mut self) -> Self {
        self.credentials = true;
        self
    }

    /// Sets `Access-Control-Max-Age` in seconds.
    pub fn max_age_s(mut self, seconds: u64) -> Self {
        self.max_age_s = seconds;
        self
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    fn preflight(&self, req: &Request, origin: &str, method: &str) -> Response {
        let refused = |why: String| {
            Problem::new(403)
                .with_detail(why)
                .with_header("Vary", "Origin")
                .into_response()
        };
        if !self.allows_origin(origin) {
            return refused(format!("origin {origin:?} is not allowed"));
        }
        if !is_safelisted_method(method) && !self.methods.iter().any(|m| m == method) {
            return refused(format!("method {method:?} is not allowed cross-origin"));
        }
        let requested = req
            .headers
            .get_all("access-control-request-headers")
            .flat_map(|v| v.split(','));
        for header in requested.map(str::trim).filter(|h| !h.is_empty()) {
            if !self.headers.iter().any(|h| h.eq_ignore_ascii_case(header)) {
                return refused(format!("header {header:?} is not allowed cross-origin"));
            }
        }
        let mut response = Response::no_content()
            .with_header("Access-Control-Allow-Origin", origin)
            .with_header("Access-Control-Allow-Methods", self.methods.join(", "))
            .with_header("Access-Control-Max-Age", self.max_age_s.to_string());
        if !self.headers.is_empty() {
            response
                .headers
                .insert("Access-Control-Allow-Headers", self.headers.join(", "));
        }
        if self.credentials {
            response
                .headers
                .insert("Access-Control-Allow-Credentials", "true");
        }
        response.headers.append(
            "Vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        response
    }
}

/// The methods a cross-origin request may use without being listed (Fetch, "CORS-safelisted
/// method"; methods are case-sensitive there).
fn is_safelisted_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "POST")
}

impl Middleware for Cors {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let Some(origin) = req.header("origin").map(str::to_string) else {
            let mut response = next.call(req);
            response.headers.append_static("Vary", "Origin");
            return response;
        };
        if req.method == Method::Options {
            if let Some(method) = req.header("access-control-request-method") {
                let method = method.trim().to_string();
                return self.preflight(req, &origin, &method);
            }
        }
        let mut response = next.call(req);
        // Caches must not serve one origin's answer to another.
        response.headers.append("Vary", "Origin");
        if self.allows_origin(&origin) {
            response
                .headers
                .insert("Access-Control-Allow-Origin", origin);
            if self.credentials {
                response
                    .headers
                    .insert("Access-Control-Allow-Credentials", "true");
            }
            if !self.expose.is_empty() {
                response
                    .headers
                    .insert("Access-Control-Expose-Headers", self.expose.join(", "));
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut req = Request::new(method, "/api");
        for (n, v) in headers {
            req.headers.append(*n, *v);
        }
        req
    }

    #[test]
    fn preflight_and_simple_requests() {
        let cors = Cors::new(["https://a.example"])
            .allow_methods(["GET", "PUT"])
            .allow_headers(["Content-Type"])
            .allow_credentials();
        let ok = |_: &mut Request| Response::text(200, "ok");
        let mut pre = request(
            Method::Options,
            &[
                ("Origin", "https://a.example"),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
        );
        let r = cors.call(&mut pre, &ok);
        assert_eq!(r.status, 204);
        assert_eq!(
            r.headers.get("access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(
            r.headers.get("access-control-allow-methods"),
            Some("GET, PUT")
        );
        assert_eq!(
            r.headers.get("access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(r.headers.get("access-control-max-age"), Some("600"));
        let mut bad_header = request(
            Method::Options,
            &[
                ("Origin", "https://a.example"),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "x-evil"),
            ],
        );
        assert_eq!(cors.call(&mut bad_header, &ok).status, 403);
        let mut bad_method = request(
            Method::Options,
            &[
                ("Origin", "https://a.example"),
                ("Access-Control-Request-Method", "DELETE"),
            ],
        );
        assert_eq!(cors.call(&mut bad_method, &ok).status, 403);
        let mut bad_origin = request(
            Method::Options,
            &[
                ("Origin", "https://evil.example"),
                ("Access-Control-Request-Method", "GET"),
            ],
        );
        assert_eq!(cors.call(&mut bad_origin, &ok).status, 403);
        let mut simple = request(Method::Get, &[("Origin", "https://a.example")]);
        let r = cors.call(&mut simple, &ok);
        assert_eq!(
            r.headers.get("access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(
            r.headers.get("access-control-allow-credentials"),
            Some("true")
        );
        let mut foreign = request(Method::Get, &[("Origin", "https://evil.example")]);
        let r = cors.call(&mut foreign, &ok);
        assert_eq!(
            (r.status, r.headers.get("access-control-allow-origin")),
            (200, None)
        );
        // Without Origin the answer still varies on it: a cache must not hand this response,
        // which has no Access-Control-Allow-Origin, to a cross-origin request.
        let mut same = request(Method::Get, &[]);
        let r = cors.call(&mut same, &ok);
        assert_eq!(
            (
                r.headers.get("vary"),
                r.headers.get("access-control-allow-origin")
            ),
            (Some("Origin"), None)
        );
        let refused = cors.call(&mut bad_origin, &ok);
        assert_eq!(refused.headers.get("vary"), Some("Origin"));
    }

    /// Left at its defaults, a listed origin can drive a whole Lithair API: a JSON PATCH with
    /// a version check and an idempotency key is preflighted through, and the response headers
    /// a client acts on are readable by its scripts. Other origins still get nothing.
    #[test]
    fn the_defaults_let_a_listed_origin_use_the_whole_api() {
        let cors = Cors::new(["https://a.example"]);
        let ok = |_: &mut Request| Response::text(200, "ok").with_header("ETag", "\"3\"");
        for method in DEFAULT_METHODS {
            let mut pre = request(
                Method::Options,
                &[
                    ("Origin", "https://a.example"),
                    ("Access-Control-Request-Method", method),
                    (
                        "Access-Control-Request-Headers",
                        "Content-Type, If-Match, Idempotency-Key, X-Request-Id",
                    ),
                ],
            );
            let answer = cors.call(&mut pre, &ok);
            assert_eq!(answer.status, 204, "{method}");
            let allowed = answer.headers.get("access-control-allow-methods");
            assert!(allowed.is_some_and(|m| m.contains("PATCH")), "{allowed:?}");
        }
        let mut actual = request(Method::Patch, &[("Origin", "https://a.example")]);
        let answer = cors.call(&mut actual, &ok);
        let exposed = answer.headers.get("access-control-expose-headers");
        assert!(
            exposed.is_some_and(|e| e.contains("ETag") && e.contains("Location")),
            "{exposed:?}"
        );
        let mut foreign = request(
            Method::Options,
            &[
                ("Origin", "https://evil.example"),
                ("Access-Control-Request-Method", "PATCH"),
            ],
        );
        assert_eq!(cors.call(&mut foreign, &ok).status, 403);
        let mut foreign = request(Method::Patch, &[("Origin", "https://evil.example")]);
        let answer = cors.call(&mut foreign, &ok);
        assert_eq!(answer.headers.get("access-control-allow-origin"), None);
        assert_eq!(answer.headers.get("access-control-expose-headers"), None);
    }

    #[test]
    fn safelisted_methods_pass_a_preflight_unlisted() {
        // A GET with an allowed non-safelisted header is preflighted; the browser accepts GET
        // whatever Access-Control-Allow-Methods lists, so the server must not refuse it.
        let cors = Cors::new(["https://a.example"])
            .allow_methods(["PUT"])
            .allow_headers(["authorization"]);
        let ok = |_: &mut Request| Response::text(200, "ok");
        for (method, status) in [("GET", 204), ("POST", 204), ("HEAD", 204), ("PUT", 204)] {
            let mut pre = request(
                Method::Options,
                &[
                    ("Origin", "https://a.example"),
                    ("Access-Control-Request-Method", method),
                    ("Access-Control-Request-Headers", "Authorization"),
                ],
            );
            assert_eq!(cors.call(&mut pre, &ok).status, status, "{method}");
        }
        for method in ["DELETE", "get", "PATCH"] {
            let mut pre = request(
                Method::Options,
                &[
                    ("Origin", "https://a.example"),
                    ("Access-Control-Request-Method", method),
                ],
            );
            assert_eq!(cors.call(&mut pre, &ok).status, 403, "{method}");
        }
    }
}
