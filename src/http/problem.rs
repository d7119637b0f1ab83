//! Errors as `application/problem+json` (RFC 9457), and the handler result shape that lets `?`
//! turn any error into one.
//!
//! Owns: the [`Problem`] type, its JSON form and its conversion into a [`Response`].
//! Must not: decide which statuses an application uses (handlers do); it only renders them.

use crate::http::response::{reason_phrase, Response};
use std::fmt;

/// Content type of every problem response.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request body or query, reported under `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the value is: a JSON path like `items[2].price`, or a parameter name.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, `instance`, optional field errors
/// and extension members. Handlers return `Result<Response, Problem>` so `?` works.
///
/// The members live behind one box (reached through `Deref`, so `problem.status` reads
/// naturally): a `Result<T, Problem>` stays one pointer wide on the happy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(Box<ProblemDetails>);

/// The members of a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemDetails {
    /// The HTTP status (also the `status` member).
    pub status: u16,
    /// A URI naming the problem type; `about:blank` means "just the status".
    pub type_uri: String,
    /// A short summary of the type; defaults to the reason phrase.
    pub title: String,
    /// This occurrence, for a person.
    pub detail: Option<String>,
    /// A URI for this occurrence (often the request path).
    pub instance: Option<String>,
    /// Per-field errors, rendered as `errors: [{field, message}]`.
    pub errors: Vec<FieldError>,
    /// Extension members as (name, raw JSON value); names must not repeat the standard ones.
    pub extensions: Vec<(String, String)>,
    /// Extra response headers (e.g. `Allow` on 405, `Retry-After` on 503).
    pub headers: Vec<(String, String)>,
}

/// The error type of handlers: an alias that reads well in signatures.
pub type HttpError = Problem;

/// What a fallible handler returns.
pub type HttpResult<T = Response> = Result<T, Problem>;

impl Problem {
    /// A problem with `type: about:blank` and the status's reason phrase as title.
    pub fn new(status: u16) -> Self {
        assert!(
            (100..=999).contains(&status),
            "status {status} out of range"
        );
        let title = match reason_phrase(status) {
            "" => "Error".to_string(),
            phrase => phrase.to_string(),
        };
        Self(Box::new(ProblemDetails {
            status,
            type_uri: "about:blank".into(),
            title,
            detail: None,
            instance: None,
            errors: Vec::new(),
            extensions: Vec::new(),
            headers: Vec::new(),
        }))
    }

    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400).with_detail(detail)
    }

    /// 404 with a detail.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404).with_detail(detail)
    }

    /// 405 with the `Allow` header listing `allowed` methods.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(405).with_header("Allow", allowed)
    }

    /// 409 with a detail.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409).with_detail(detail)
    }

    /// 413: the request body exceeds `limit_bytes`.
    pub fn payload_too_large(limit_bytes: u64) -> Self {
        Self::new(413).with_detail(format!("request body exceeds {limit_bytes} bytes"))
    }

    /// 422 with a detail (add fields with [`Problem::with_field_error`]).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(422).with_detail(detail)
    }

    /// 500 with a generic detail; the cause goes to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(500)
    }

    /// Sets `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets `type` (and usually a matching `title`).
    pub fn with_type(mut self, type_uri: impl Into<String>, title: impl Into<String>) -> Self {
        self.type_uri = type_uri.into();
        self.title = title.into();
        self
    }

    /// Sets `instance`.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds one entry to `errors`.
    pub fn with_field_error(
        mut self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Adds an extension member whose value is already JSON text (e.g. `"3"` or `"[1,2]"`).
    pub fn with_extension_raw(mut self, name: impl Into<String>, json: impl Into<String>) -> Self {
        self.extensions.push((name.into(), json.into()));
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The JSON document (members in RFC order, then `errors`, then extensions).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("{\"type\":");
        json_string(&mut out, &self.type_uri);
        out.push_str(",\"title\":");
        json_string(&mut out, &self.title);
        out.push_str(&format!(",\"status\":{}", self.status));
        for (name, value) in [("detail", &self.detail), ("instance", &self.instance)] {
            if let Some(value) = value {
                out.push_str(&format!(",\"{name}\":"));
                json_string(&mut out, value);
            }
        }
        if !self.errors.is_empty() {
            out.push_str(",\"errors\":[");
            for (i, e) in self.errors.iter().enumerate() {
                out.push_str(if i == 0 {
                    "{\"field\":"
                } else {
                    ",{\"field\":"
                });
                json_string(&mut out, &e.field);
                out.push_str(",\"message\":");
                json_string(&mut out, &e.message);
                out.push('}');
            }
            out.push(']');
        }
        for (name, raw) in &self.extensions {
            out.push(',');
            json_string(&mut out, name);
            out.push(':');
            out.push_str(raw);
        }
        out.push('}');
        out
    }

    /// The response: status, `Content-Type: application/problem+json`, extra headers.
    pub fn into_response(self) -> Response {
        let mut response = Response::bytes(
            self.status,
            PROBLEM_CONTENT_TYPE,
            self.to_json().into_bytes(),
        );
        for (name, value) in self.0.headers {
            response.headers.append(name, value);
        }
        response
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;

    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl From<Problem> for Response {
    fn from(problem: Problem) -> Response {
        problem.into_response()
    }
}

/// Appends `s` as a JSON string literal: quotes, backslashes and every control character
/// escaped (so log lines and documents stay one line and cannot be forged).
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_members_and_field_errors() {
        let p = Problem::unprocessable("invalid body")
            .with_instance("/api/posts")
            .with_field_error("title", "must not be empty")
            .with_extension_raw("retry", "3");
        assert_eq!(
            p.to_json(),
            "{\"type\":\"about:blank\",\"title\":\"Unprocessable Content\",\"status\":422,\
             \"detail\":\"invalid body\",\"instance\":\"/api/posts\",\
             \"errors\":[{\"field\":\"title\",\"message\":\"must not be empty\"}],\"retry\":3}"
        );
        let r = Problem::method_not_allowed("GET, HEAD").into_response();
        assert_eq!(r.status, 405);
        assert_eq!(r.headers.get("allow"), Some("GET, HEAD"));
        assert_eq!(r.headers.get("content-type"), Some(PROBLEM_CONTENT_TYPE));
        assert_eq!(Problem::new(599).title, "Error");
    }

    #[test]
    fn escapes_controls() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\n\u{1b}[31m\u{7f}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u001b[31m\\u007fé\"");
    }
}
