//! Security headers, on by default in `Router::new()`.

use super::Middleware;
use crate::http::handler::Handler;
use crate::http::request::Request;
use crate::http::response::Response;

/// The Content-Security-Policy put on HTML responses that set none: same-origin resources
/// only, no plugins, no framing, no `<base>` hijacking.
pub const DEFAULT_CSP: &str =
    "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Adds `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
/// `Referrer-Policy: no-referrer` and, on `text/html` responses, a Content-Security-Policy.
/// A header the handler already set is kept.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    csp: Option<String>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            csp: Some(DEFAULT_CSP.to_string()),
        }
    }
}

impl SecurityHeaders {
    /// Replaces the policy used for HTML; `None` sends no CSP.
    pub fn csp(mut self, policy: Option<&str>) -> Self {
        self.csp = policy.map(str::to_string);
        self
    }
}

impl Middleware for SecurityHeaders {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let mut response = next.call(req);
        let h = &mut response.headers;
        for (name, value) in [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ] {
            if !h.contains(name) {
                h.append_static(name, value);
            }
        }
        let is_html = h
            .get("content-type")
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
        if let (true, Some(csp)) = (is_html, &self.csp) {
            if !h.contains("content-security-policy") {
                h.append("Content-Security-Policy", csp.as_str());
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn adds_headers_and_csp_for_html_only() {
        let mw = SecurityHeaders::default();
        let html = |_: &mut Request| Response::html(200, "<p>");
        let text =
            |_: &mut Request| Response::text(200, "x").with_header("X-Frame-Options", "SAMEORIGIN");
        let mut req = Request::new(Method::Get, "/");
        let r = mw.call(&mut req, &html);
        assert_eq!(r.headers.get("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.headers.get("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.headers.get("content-security-policy"), Some(DEFAULT_CSP));
        let r = mw.call(&mut req, &text);
        assert_eq!(r.headers.get("x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(r.headers.get("content-security-policy"), None);
    }
}
