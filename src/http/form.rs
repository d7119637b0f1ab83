//! `application/x-www-form-urlencoded` request bodies: `req.form()?`.
//!
//! Owns: checking the content type and decoding the body into ordered pairs.
//! Must not: read multipart bodies (that is `multipart`).

use crate::http::problem::Problem;
use crate::http::query;
use crate::http::request::Request;
use std::str::FromStr;

/// The content type this module reads.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A decoded form: pairs in order, repeated names kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// The (name, value) pairs.
    pub pairs: Vec<(String, String)>,
}

impl Form {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name` parsed as `T`; absent or unparsable is a 422 problem naming
    /// the field.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, Problem> {
        let raw = self.get(name).ok_or_else(|| {
            Problem::unprocessable("invalid form").with_field_error(name, "is required")
        })?;
        raw.parse().map_err(|_| {
            Problem::unprocessable("invalid form")
                .with_field_error(name, format!("cannot parse {raw:?}"))
        })
    }
}

/// Whether the request's content type has this essence (parameters ignored).
pub(crate) fn content_type_is(req: &Request, essence: &str) -> bool {
    req.header("content-type")
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(essence))
}

impl Request {
    /// The body as a urlencoded form: 415 for another content type, 400 for bad encoding.
    pub fn form(&self) -> Result<Form, Problem> {
        if !content_type_is(self, FORM_CONTENT_TYPE) {
            return Err(Problem::new(415).with_detail(format!("expected {FORM_CONTENT_TYPE}")));
        }
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| Problem::bad_request("form body is not UTF-8"))?;
        let pairs = query::parse(text).map_err(|e| Problem::bad_request(format!("form: {e}")))?;
        Ok(Form { pairs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn reads_forms() {
        let mut req = Request::new(Method::Post, "/f");
        req.headers.append(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        );
        req.body = b"name=J%C3%B6rg+M&age=41&tag=a&tag=b".to_vec();
        let form = req.form().expect("form");
        assert_eq!(form.get("name"), Some("Jörg M"));
        assert_eq!(form.parse::<u8>("age"), Ok(41));
        assert_eq!(form.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
        let missing = form.parse::<u8>("zip").expect_err("missing");
        assert_eq!(
            (missing.status, missing.errors[0].field.as_str()),
            (422, "zip")
        );
        req.headers.insert("Content-Type", "text/plain");
        assert_eq!(req.form().map_err(|p| p.status), Err(415));
        req.headers.insert("Content-Type", FORM_CONTENT_TYPE);
        req.body = vec![0xff];
        assert_eq!(req.form().map_err(|p| p.status), Err(400));
    }
}
