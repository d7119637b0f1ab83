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
    /// Static so that adding it costs no allocation per response.
    csp: Option<&'static str>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            csp: Some(DEFAULT_CSP),
        }
    }
}

impl SecurityHeaders {
    /// Replaces the policy used for HTML; `None` sends no CSP. The policy is configured once
    /// at start-up and kept for the life of the process.
    pub fn csp(mut self, policy: Option<&str>) -> Self {
        self.csp = policy.map(|p| &*Box::leak(p.to_string().into_boxed_str()));
        self
    }
}

impl Middleware for SecurityHeaders {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let mut response = next.call(req);
        // One pass over the headers for everything we need to know: this runs per response.
        let mut present = [false; 4];
        let mut is_html = false;
        for (name, value) in response.headers.iter() {
            // The length picks the one or two names worth comparing.
            match name.len() {
                22 => present[0] |= name.eq_ignore_ascii_case(DEFAULTS[0].0),
                15 => {
                    present[1] |= name.eq_ignore_ascii_case(DEFAULTS[1].0);
                    present[2] |= name.eq_ignore_ascii_case(DEFAULTS[2].0);
                }
                23 => present[3] |= name.eq_ignore_ascii_case("content-security-policy"),
                12 if name.eq_ignore_ascii_case("content-type") => {
                    let t = value.trim_start().as_bytes();
                    is_html = t.len() >= 9 && t[..9].eq_ignore_ascii_case(b"text/html");
                }
                _ => {}
            }
        }
        for (&here, &(name, value)) in present.iter().zip(&DEFAULTS) {
            if !here {
                response.headers.append_static(name, value);
            }
        }
        if let (true, false, Some(csp)) = (is_html, present[3], self.csp) {
            response
                .headers
                .append_static("Content-Security-Policy", csp);
        }
        response
    }
}

/// The headers added to every response that does not set them itself (the name lengths,
/// 22 and 15, are matched first in `call`).
const DEFAULTS: [(&str, &str); 3] = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

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
