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
/// ```
/// use lithair::http::cors::Cors;
/// let cors = Cors::new(["https://app.example.com"]).allow_methods(["GET", "POST"]).allow_headers(["content-type"]);
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
    /// with methods GET, HEAD and POST and no extra request headers.
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
            methods: ["GET", "HEAD", "POST"].map(String::from).to_vec(),
            headers: Vec::new(),
            expose: Vec::new(),
            credentials: false,
            max_age_s: PREFLIGHT_MAX_AGE_S,
        }
    }

    /// Methods allowed cross-origin.
    pub fn allow_methods<S: Into<String>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Request headers allowed cross-origin (compared case-insensitively).
    pub fn allow_headers<S: Into<String>>(mut self, headers: impl IntoIterator<Item = S>) -> Self {
        self.headers = headers
            .into_iter()
            .map(|h| h.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Response headers scripts may read (`Access-Control-Expose-Headers`).
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
