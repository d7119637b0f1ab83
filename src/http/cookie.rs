//! Cookies (RFC 6265): parsing the `Cookie` request header and building `Set-Cookie`.
//!
//! Owns: the cookie-name / cookie-value grammar and the attribute syntax.
//! Must not: sign or encrypt values (sessions build on this, elsewhere).

use crate::http::httpdate;
use crate::http::parse::is_token;
use std::fmt;
use std::time::SystemTime;

/// Most cookies read from one `Cookie` header; the rest are ignored.
pub const COOKIES_MAX: usize = 64;

/// Pairs of a `Cookie` header (`a=1; b=2`) in order. Malformed pieces are skipped rather than
/// failing the request: browsers send what other sites set.
pub fn parse(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(';')
        .filter_map(|piece| {
            let (name, value) = piece.trim().split_once('=')?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (is_token(name) && is_cookie_value(value)).then_some((name, value))
        })
        .take(COOKIES_MAX)
}

/// `cookie-octet*` from RFC 6265 §4.1.1: no controls, space, `"`, `,`, `;` or `\`.
fn is_cookie_value(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only with same-site requests.
    Strict,
    /// Also sent on top-level navigations from other sites.
    Lax,
    /// Sent everywhere; browsers require `Secure` with it, so [`SetCookie`] adds it.
    None,
}

/// Why a `Set-Cookie` could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieError {
    /// The name is not an RFC 9110 token.
    BadName(String),
    /// The value holds a character a cookie cannot carry (encode it first).
    BadValue(String),
    /// `Path` or `Domain` holds a control character or `;`.
    BadAttribute(String),
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(n) => write!(f, "cookie name {n:?} is not a token"),
            Self::BadValue(v) => write!(f, "cookie value {v:?} has forbidden characters"),
            Self::BadAttribute(a) => write!(f, "cookie attribute {a:?} has forbidden characters"),
        }
    }
}

impl std::error::Error for CookieError {}

/// A `Set-Cookie` header value under construction.
///
/// ```
/// use lithair::http::cookie::{SameSite, SetCookie};
/// let c = SetCookie::new("sid", "abc123").unwrap().http_only().same_site(SameSite::Lax).max_age_s(3600);
/// assert_eq!(c.to_string(), "sid=abc123; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    name: String,
    value: String,
    path: Option<String>,
    domain: Option<String>,
    max_age_s: Option<i64>,
    expires: Option<SystemTime>,
    http_only: bool,
    secure: bool,
    same_site: Option<SameSite>,
}

impl SetCookie {
    /// A cookie with `Path=/` and no other attributes; checks the name and value grammar.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self, CookieError> {
        let (name, value) = (name.into(), value.into());
        if !is_token(&name) {
            return Err(CookieError::BadName(name));
        }
        if !is_cookie_value(&value) {
            return Err(CookieError::BadValue(value));
        }
        Ok(Self {
            name,
            value,
            path: Some("/".into()),
            domain: None,
            max_age_s: None,
            expires: None,
            http_only: false,
            secure: false,
            same_site: None,
        })
    }

    /// A cookie that deletes `name` in the browser (empty value, `Max-Age=0`).
    pub fn removal(name: impl Into<String>) -> Result<Self, CookieError> {
        Ok(Self::new(name, "")?.max_age_s(0))
    }

    /// Sets `Path`.
    pub fn path(mut self, path: &str) -> Result<Self, CookieError> {
        self.path = Some(checked_attribute(path)?);
        Ok(self)
    }

    /// Sets `Domain`.
    pub fn domain(mut self, domain: &str) -> Result<Self, CookieError> {
        self.domain = Some(checked_attribute(domain)?);
        Ok(self)
    }

    /// Sets `Max-Age` in seconds (0 or negative deletes).
    pub fn max_age_s(mut self, seconds: i64) -> Self {
        self.max_age_s = Some(seconds);
        self
    }

    /// Sets `Expires`.
    pub fn expires(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Sets `HttpOnly` (no access from scripts).
    pub fn http_only(mut self) -> Self {
        self.http_only = true;
        self
    }

    /// Sets `Secure` (HTTPS only).
    pub fn secure(mut self) -> Self {
        self.secure = true;
        self
    }

    /// Sets `SameSite`; `SameSite::None` also sets `Secure`, which browsers require with it.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = Some(same_site);
        if same_site == SameSite::None {
            self.secure = true;
        }
        self
    }
}

fn checked_attribute(value: &str) -> Result<String, CookieError> {
    if value.bytes().any(|b| b.is_ascii_control() || b == b';') {
        return Err(CookieError::BadAttribute(value.to_string()));
    }
    Ok(value.to_string())
}

impl fmt::Display for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        if let Some(path) = &self.path {
            write!(f, "; Path={path}")?;
        }
        if let Some(domain) = &self.domain {
            write!(f, "; Domain={domain}")?;
        }
        if let Some(age) = self.max_age_s {
            write!(f, "; Max-Age={age}")?;
        }
        if let Some(at) = self.expires {
            write!(f, "; Expires={}", httpdate::format(at))?;
        }
        if self.http_only {
            f.write_str("; HttpOnly")?;
        }
        if self.secure {
            f.write_str("; Secure")?;
        }
        match self.same_site {
            Some(SameSite::Strict) => f.write_str("; SameSite=Strict"),
            Some(SameSite::Lax) => f.write_str("; SameSite=Lax"),
            Some(SameSite::None) => f.write_str("; SameSite=None"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parse_cases() {
        let got: Vec<_> = parse("a=1; b=two;c=\"q\"; bad name=x; d=; e=x y; =z").collect();
        assert_eq!(got, [("a", "1"), ("b", "two"), ("c", "q"), ("d", "")]);
        let many = "k=v; ".repeat(COOKIES_MAX + 10);
        assert_eq!(parse(&many).count(), COOKIES_MAX);
    }

    proptest::proptest! {
        #[test]
        fn prop_parse_yields_only_valid_pairs(header in ".{0,80}") {
            for (name, value) in parse(&header) {
                proptest::prop_assert!(is_token(name) && is_cookie_value(value));
            }
        }

        #[test]
        fn prop_built_cookies_parse_back(name in "[A-Za-z0-9_-]{1,12}", value in "[A-Za-z0-9_.-]{0,20}") {
            let header = SetCookie::new(name.clone(), value.clone()).expect("valid").to_string();
            let first = header.split(';').next().unwrap_or("");
            proptest::prop_assert_eq!(parse(first).collect::<Vec<_>>(), vec![(name.as_str(), value.as_str())]);
        }
    }

    #[test]
    fn set_cookie_attributes() {
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let c = SetCookie::new("id", "42")
            .expect("valid")
            .path("/app")
            .expect("path")
            .domain("example.com")
            .expect("domain")
            .max_age_s(60)
            .expires(at)
            .http_only()
            .same_site(SameSite::None);
        assert_eq!(
            c.to_string(),
            "id=42; Path=/app; Domain=example.com; Max-Age=60; \
             Expires=Sun, 06 Nov 1994 08:49:37 GMT; HttpOnly; Secure; SameSite=None"
        );
        assert_eq!(
            SetCookie::removal("id").expect("valid").to_string(),
            "id=; Path=/; Max-Age=0"
        );
        assert!(matches!(
            SetCookie::new("a b", "x"),
            Err(CookieError::BadName(_))
        ));
        assert!(matches!(
            SetCookie::new("a", "x;y"),
            Err(CookieError::BadValue(_))
        ));
        assert!(matches!(
            SetCookie::new("a", "\r\nX: y"),
            Err(CookieError::BadValue(_))
        ));
        let bad_path = SetCookie::new("a", "b").expect("valid").path("/x;Secure");
        assert!(matches!(bad_path, Err(CookieError::BadAttribute(_))));
    }
}
