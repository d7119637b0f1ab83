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
        let mut note = |name: &str, value: &str| {
            // The length picks the one or two names worth comparing.
            let name = name.as_bytes();
            match name.len() {
                22 => present[0] |= X_CONTENT_TYPE_OPTIONS.prefix_of(name),
                15 => {
                    present[1] |= X_FRAME_OPTIONS.prefix_of(name);
                    present[2] |= REFERRER_POLICY.prefix_of(name);
                }
                23 => present[3] |= CONTENT_SECURITY_POLICY.prefix_of(name),
                12 if CONTENT_TYPE.prefix_of(name) => {
                    is_html = TEXT_HTML.prefix_of(value.as_bytes().trim_ascii_start());
                }
                _ => {}
            }
        };
        for (name, value) in response.headers.head_run() {
            note(name, value);
        }
        for (name, value) in response.headers.entries() {
            note(name, value);
        }
        for (name, value) in response.headers.static_tail() {
            note(name, value);
        }
        if present[..DEFAULTS.len()] == [false; 3] {
            // The usual case: all three, as a static tail (one store, and the writer copies
            // the pre-rendered lines).
            response.headers.set_static_tail(&DEFAULTS);
        } else {
            for (&here, &(name, value)) in present.iter().zip(&DEFAULTS) {
                if !here {
                    response.headers.append_static(name, value);
                }
            }
        }
        if let (true, false, Some(csp)) = (is_html, present[3], self.csp) {
            response
                .headers
                .append_static("Content-Security-Policy", csp);
        }
        if let (true, Some(csp)) = (response.is_deferred(), self.csp) {
            // A placeholder says nothing of what the answer is: its CSP is decided on the
            // answer (the headers above reach it from the placeholder).
            return response.edit_answer(move |answer| {
                let html = answer
                    .headers
                    .get("content-type")
                    .is_some_and(|t| TEXT_HTML.prefix_of(t.as_bytes().trim_ascii_start()));
                if html && !answer.headers.contains("content-security-policy") {
                    answer.headers.append_static("Content-Security-Policy", csp);
                }
            });
        }
        response
    }
}

/// A lowercase ASCII pattern of 8 to 24 bytes, prepared at compile time to be compared
/// ASCII-case-insensitively three words at a time (this runs on every response): words at 0,
/// 8 and `len - 8`, overlapping when shorter. `case` has 0x20 in the bytes where the pattern
/// has a letter, so `text | case == pattern` holds exactly when each byte is the pattern's
/// byte or, for a letter, its upper-case form.
struct Folded {
    len: usize,
    at: [usize; 3],
    pattern: [u64; 3],
    case: [u64; 3],
}

impl Folded {
    const fn new(lower: &[u8]) -> Folded {
        assert!(lower.len() >= 8 && lower.len() <= 24, "8 to 24 bytes");
        let len = lower.len();
        let second = if len >= 16 { 8 } else { len - 8 };
        let at = [0, second, len - 8];
        let mut pattern = [0u64; 3];
        let mut case = [0u64; 3];
        let mut word = 0;
        while word < 3 {
            let mut i = 0;
            while i < 8 {
                let b = lower[at[word] + i];
                assert!(!b.is_ascii_uppercase(), "the pattern is lowercase");
                pattern[word] |= (b as u64) << (8 * i);
                if b.is_ascii_lowercase() {
                    case[word] |= 0x20 << (8 * i);
                }
                i += 1;
            }
            word += 1;
        }
        Folded {
            len,
            at,
            pattern,
            case,
        }
    }

    /// True when `text` starts with the pattern, ignoring ASCII case.
    #[inline]
    fn prefix_of(&self, text: &[u8]) -> bool {
        if text.len() < self.len {
            return false;
        }
        (0..3).all(|word| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&text[self.at[word]..self.at[word] + 8]);
            u64::from_le_bytes(bytes) | self.case[word] == self.pattern[word]
        })
    }
}

const X_CONTENT_TYPE_OPTIONS: Folded = Folded::new(b"x-content-type-options");
const X_FRAME_OPTIONS: Folded = Folded::new(b"x-frame-options");
const REFERRER_POLICY: Folded = Folded::new(b"referrer-policy");
const CONTENT_SECURITY_POLICY: Folded = Folded::new(b"content-security-policy");
const CONTENT_TYPE: Folded = Folded::new(b"content-type");
const TEXT_HTML: Folded = Folded::new(b"text/html");

/// The headers added to every response that does not set them itself (the name lengths,
/// 22 and 15, are matched first in `call`). A `static`, not a `const`: every response points
/// at these very strings, which is how the writer recognises them (see [`rendered_defaults`]).
static DEFAULTS: [(&str, &str); 3] = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// `DEFAULTS` as header lines, rendered at compile time: the writer copies them with one copy.
const DEFAULTS_RENDERED: &[u8] =
    b"X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";

/// The header lines of a static tail (see `Headers::set_static_tail`) when it is the default
/// run `SecurityHeaders` sets: the writer appends them with one copy instead of three header
/// lines of four copies each. Same bytes either way.
pub(crate) fn rendered_tail(
    tail: &'static [(&'static str, &'static str)],
) -> Option<&'static [u8]> {
    std::ptr::eq(tail, &DEFAULTS[..]).then_some(DEFAULTS_RENDERED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn folded_patterns_agree_with_the_byte_by_byte_comparison() {
        let patterns: [&[u8]; 4] = [
            b"content-type",
            b"text/html",
            b"x-frame-options",
            b"content-security-policy",
        ];
        let alphabet = [
            b'a', b'A', b'-', b'\r', b'T', b't', b'x', b'/', 0x80, b'@', b'`', b'{',
        ];
        for lower in patterns {
            let folded = Folded::new(lower);
            for len in 0..=lower.len() + 2 {
                // The pattern (upper- and lower-case) with one byte replaced by each alphabet
                // byte, cut to every length.
                for at in 0..lower.len() {
                    for &b in &alphabet {
                        for upper in [false, true] {
                            let mut text: Vec<u8> = lower.iter().chain(b"xy").copied().collect();
                            if upper {
                                text.make_ascii_uppercase();
                            }
                            text[at] = b;
                            text.truncate(len);
                            let expected = text.len() >= lower.len()
                                && text[..lower.len()].eq_ignore_ascii_case(lower);
                            assert_eq!(folded.prefix_of(&text), expected, "{text:?}");
                        }
                    }
                }
            }
        }
        for (name, _) in DEFAULTS {
            let folded = Folded::new(name.to_ascii_lowercase().as_bytes());
            assert!(folded.prefix_of(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn rendered_defaults_are_the_lines_of_the_defaults_and_only_of_them() {
        let lines: String = DEFAULTS
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        assert_eq!(lines.as_bytes(), DEFAULTS_RENDERED);
        let mw = SecurityHeaders::default();
        let mut req = Request::new(Method::Get, "/");
        let plain = |_: &mut Request| Response::text(200, "x");
        let r = mw.call(&mut req, &plain);
        assert_eq!(
            rendered_tail(r.headers.static_tail()),
            Some(DEFAULTS_RENDERED)
        );
        // The handler's Content-Type is a static run too: nothing is stored in a list.
        assert_eq!(
            (r.headers.head_run().len(), r.headers.entries().len()),
            (1, 0)
        );
        // With a header stored by the handler, the runs stay around it.
        let etag = |_: &mut Request| Response::text(200, "x").with_header("ETag", "\"1\"");
        let r = mw.call(&mut req, &etag);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "ETag",
                "X-Content-Type-Options",
                "X-Frame-Options",
                "Referrer-Policy"
            ]
        );
        static COPY: [(&str, &str); 3] = [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ];
        assert_eq!(
            rendered_tail(&COPY),
            None,
            "another run is written line by line"
        );
        assert_eq!(rendered_tail(&DEFAULTS[1..]), None);
        // Applied twice (nested routers): the second sees the first's headers.
        let twice = mw.call(&mut req, &SecurityLayered(mw.clone()));
        assert_eq!(twice.headers.len(), 4);
    }

    /// A handler that answers through a `SecurityHeaders` (a nested router's layer).
    struct SecurityLayered(SecurityHeaders);

    impl Handler for SecurityLayered {
        fn call(&self, req: &mut Request) -> Response {
            self.0
                .call(req, &|_: &mut Request| Response::text(200, "x"))
        }
    }

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

    /// A deferred answer gets the headers through its placeholder and the CSP by what it
    /// turns out to be: HTML gets one, JSON does not, one that sets its own keeps it.
    #[test]
    fn a_deferred_answer_gets_its_csp_by_what_it_is() {
        use crate::http::deferred::Deferred;
        let mw = SecurityHeaders::default();
        let answers = [
            (Response::html(200, "<p>"), Some(DEFAULT_CSP)),
            (
                Response::bytes(201, "application/json", b"{}".to_vec()),
                None,
            ),
            (
                Response::html(200, "<p>").with_header("Content-Security-Policy", "mine"),
                Some("mine"),
            ),
        ];
        for (answer, csp) in answers {
            let (placeholder, responder) = Response::deferred();
            let slot = std::sync::Mutex::new(Some(placeholder));
            let handler = move |_: &mut Request| slot.lock().expect("lock").take().expect("once");
            let mut placeholder = mw.call(&mut Request::new(Method::Get, "/"), &handler);
            responder.complete(answer);
            let deferred = Deferred::take(&mut placeholder).expect("deferred");
            let sent = deferred
                .attach(placeholder, Box::new(|_| panic!("already complete")))
                .expect("complete");
            assert_eq!(sent.headers.get("content-security-policy"), csp);
            assert_eq!(sent.headers.get("x-content-type-options"), Some("nosniff"));
        }
    }
}
