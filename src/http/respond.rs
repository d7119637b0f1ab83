//! Turning handler results into responses, and response helpers an application reaches for:
//! HTML, redirects, cookies and named status codes.
//!
//! Owns: the [`IntoResponse`] conversion used by the router for `Fn(&mut Request) -> R`.
//! Must not: write bytes (the server's writer does).

use crate::http::cookie::SetCookie;
use crate::http::problem::Problem;
use crate::http::response::Response;

/// Named status codes, so handlers read `status::CREATED` rather than `201`.
pub mod status {
    /// 200
    pub const OK: u16 = 200;
    /// 201
    pub const CREATED: u16 = 201;
    /// 202
    pub const ACCEPTED: u16 = 202;
    /// 204
    pub const NO_CONTENT: u16 = 204;
    /// 206
    pub const PARTIAL_CONTENT: u16 = 206;
    /// 301
    pub const MOVED_PERMANENTLY: u16 = 301;
    /// 303
    pub const SEE_OTHER: u16 = 303;
    /// 304
    pub const NOT_MODIFIED: u16 = 304;
    /// 307
    pub const TEMPORARY_REDIRECT: u16 = 307;
    /// 308
    pub const PERMANENT_REDIRECT: u16 = 308;
    /// 400
    pub const BAD_REQUEST: u16 = 400;
    /// 401
    pub const UNAUTHORIZED: u16 = 401;
    /// 403
    pub const FORBIDDEN: u16 = 403;
    /// 404
    pub const NOT_FOUND: u16 = 404;
    /// 405
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    /// 409
    pub const CONFLICT: u16 = 409;
    /// 413
    pub const CONTENT_TOO_LARGE: u16 = 413;
    /// 416
    pub const RANGE_NOT_SATISFIABLE: u16 = 416;
    /// 422
    pub const UNPROCESSABLE_CONTENT: u16 = 422;
    /// 429
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// 500
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    /// 503
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    /// 504
    pub const GATEWAY_TIMEOUT: u16 = 504;
}

/// Anything a route handler may return.
pub trait IntoResponse {
    /// Converts into the response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        Problem::into_response(self)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::static_bytes(200, "text/plain; charset=utf-8", self.as_bytes())
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(200, self)
    }
}

impl Response {
    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<String>) -> Response {
        Response::bytes(status, "text/html; charset=utf-8", body.into().into_bytes())
    }

    /// A redirect (301, 302, 303, 307 or 308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Response {
        assert!(
            matches!(status, 301 | 302 | 303 | 307 | 308),
            "{status} is not a redirect"
        );
        Response::new(status).with_header("Location", location)
    }

    /// Appends a `Set-Cookie` header; builder style (several cookies make several headers).
    pub fn with_cookie(mut self, cookie: &SetCookie) -> Response {
        self.headers.append("Set-Cookie", cookie.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_convert() {
        let ok: Result<Response, Problem> = Ok(Response::text(201, "x"));
        assert_eq!(ok.into_response().status, 201);
        let err: Result<Response, Problem> = Err(Problem::not_found("no item 7"));
        let r = err.into_response();
        assert_eq!(
            (r.status, r.headers.get("content-type")),
            (404, Some("application/problem+json"))
        );
        let c = SetCookie::new("a", "1").expect("valid");
        let r = Response::redirect(status::SEE_OTHER, "/x")
            .with_cookie(&c)
            .with_cookie(&c);
        assert_eq!(r.headers.get_all("set-cookie").count(), 2);
        assert_eq!("hi".into_response().body.as_bytes(), Some(&b"hi"[..]));
    }
}
