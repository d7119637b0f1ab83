//! JSON request and response bodies through `lithair::json`: `req.json::<T>()?` and
//! `Response::json(status, &value)`.
//!
//! Owns: mapping JSON errors to problems: malformed text is 400 with line and column, a
//! well-formed document of the wrong shape is 422 naming the field path.
//! Must not: define the codec (that is `json`).

use crate::http::problem::Problem;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::json::{self, FromJson, ToJson};

/// Content type of JSON responses.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// `application/json` or any `+json` type (parameters ignored).
fn is_json_type(content_type: &str) -> bool {
    let essence = super::mime::essence(content_type);
    essence == JSON_CONTENT_TYPE
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The problem for a body that failed to decode as `T`. Runs only on the error path, where it
/// re-parses the text untyped to tell a syntax error (400) from a shape error (422).
pub fn decode_problem(text: &str, typed: &json::Error) -> Problem {
    if let Err(syntax) = json::parse(text) {
        // A number past f64's range (`{"count":1e400}`) is well-formed JSON of a value out of
        // range: 422 naming the field, as `1.5` or `-1` in a u8 field are, when the typed read
        // stopped at that same number (a later syntax error is then not reached by either).
        let same_number = syntax.is_number_too_large()
            && typed.is_number_too_large()
            && (syntax.line(), syntax.column()) == (typed.line(), typed.column());
        if same_number {
            return Problem::unprocessable("the JSON body does not have the expected shape")
                .with_field_error(typed.path(), typed.message());
        }
        return Problem::bad_request(format!("malformed JSON: {syntax}"))
            .with_extension_raw("line", syntax.line().to_string())
            .with_extension_raw("column", syntax.column().to_string());
    }
    Problem::unprocessable("the JSON body does not have the expected shape")
        .with_field_error(typed.path(), typed.message())
}

impl Request {
    /// The body decoded as `T`. 415 if `Content-Type` is not JSON, or absent with a body (see
    /// below), 400 with line
    /// and column for malformed JSON or non-UTF-8 bytes, 422 with the field path for a value of
    /// the wrong type or a missing field.
    pub fn json<T: FromJson>(&self) -> Result<T, Problem> {
        match self.header("content-type") {
            Some(content_type) if !is_json_type(content_type) => {
                return Err(Problem::new(415).with_detail(format!(
                    "expected {JSON_CONTENT_TYPE}, got {content_type:?}"
                )));
            }
            // A page on another site can send a body without a Content-Type (a `fetch` of a
            // typeless Blob) and no CORS preflight; with one required, a JSON write needs
            // a type only a preflighted request can carry, so cookie-authenticated JSON
            // routes are not open to cross-site request forgery.
            None if !self.body.is_empty() => {
                return Err(Problem::new(415).with_detail(format!(
                    "a JSON body needs `Content-Type: {JSON_CONTENT_TYPE}`"
                )));
            }
            _ => {}
        }
        let text = match std::str::from_utf8(&self.body) {
            Ok(text) => text,
            Err(_) => {
                let error = json::parse_bytes(&self.body)
                    .err()
                    .map_or_else(|| "invalid UTF-8".to_string(), |e| e.to_string());
                return Err(Problem::bad_request(format!("malformed JSON: {error}")));
            }
        };
        json::from_str::<T>(text).map_err(|e| decode_problem(text, &e))
    }
}

impl Response {
    /// `value` serialized as `application/json`. A value JSON cannot represent (a non-finite
    /// float) is a 500 problem, never invalid JSON on the wire.
    pub fn json<T: ToJson + ?Sized>(status: u16, value: &T) -> Response {
        match json::to_string(value) {
            Ok(text) => Response::bytes(status, JSON_CONTENT_TYPE, text.into_bytes()),
            Err(e) => Problem::internal()
                .with_detail(format!("response not representable as JSON: {e}"))
                .into_response(),
        }
    }
}

impl Problem {
    /// Adds an extension member serialized from `value`.
    pub fn with_extension<T: ToJson + ?Sized>(self, name: impl Into<String>, value: &T) -> Self {
        let raw = json::to_string(value).unwrap_or_else(|_| "null".to_string());
        self.with_extension_raw(name, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[derive(Debug, PartialEq)]
    struct Item {
        name: String,
        price: f64,
        tags: Vec<String>,
    }

    // Written by hand, the way `#[derive(Json)]` expands, so this test does not depend on it.
    impl FromJson for Item {
        fn read_json(r: &mut json::Reader<'_>) -> Result<Self, json::Error> {
            let (mut name, mut price, mut tags) = (None, None, None);
            r.begin_object()?;
            while let Some(key) = r.next_key()? {
                match key.as_ref() {
                    "name" => name = Some(String::read_json(r).map_err(|e| e.with_field("name"))?),
                    "price" => price = Some(f64::read_json(r).map_err(|e| e.with_field("price"))?),
                    "tags" => tags = Some(Vec::read_json(r).map_err(|e| e.with_field("tags"))?),
                    _ => r.skip_value()?,
                }
            }
            Ok(Item {
                name: name.ok_or_else(|| json::Error::missing_field("name"))?,
                price: price.ok_or_else(|| json::Error::missing_field("price"))?,
                tags: tags.ok_or_else(|| json::Error::missing_field("tags"))?,
            })
        }
    }

    impl ToJson for Item {
        fn write_json(&self, w: &mut json::Writer) {
            w.begin_object();
            w.field("name");
            w.str(&self.name);
            w.field("price");
            w.f64(self.price);
            w.field("tags");
            self.tags.write_json(w);
            w.end_object();
        }
    }

    fn request(body: &str) -> Request {
        let mut req = Request::new(Method::Post, "/items");
        req.headers
            .append("Content-Type", "application/json; charset=utf-8");
        req.body = body.as_bytes().to_vec();
        req
    }

    #[test]
    fn decodes_and_classifies_errors() {
        let ok: Item = request(r#"{"name":"a","price":1.5,"tags":["x"]}"#)
            .json()
            .expect("valid");
        assert_eq!(
            ok,
            Item {
                name: "a".into(),
                price: 1.5,
                tags: vec!["x".into()]
            }
        );
        let malformed = request("{\"name\":\"a\",\n \"price\": }")
            .json::<Item>()
            .expect_err("malformed");
        assert_eq!(malformed.status, 400);
        assert!(
            malformed
                .extensions
                .contains(&("line".to_string(), "2".to_string())),
            "{malformed:?}"
        );
        let wrong = request(r#"{"name":"a","price":"cheap","tags":[]}"#)
            .json::<Item>()
            .expect_err("wrong type");
        assert_eq!(wrong.status, 422);
        assert_eq!(wrong.errors[0].field, "$.price");
        let nested = request(r#"{"name":"a","price":1,"tags":["x", 3]}"#)
            .json::<Item>()
            .expect_err("wrong type");
        assert_eq!(nested.errors[0].field, "$.tags[1]");
        let missing = request(r#"{"name":"a","tags":[]}"#)
            .json::<Item>()
            .expect_err("missing");
        assert_eq!(missing.status, 422);
        // Well-formed, but past f64's range: a value out of range (422 with the field), not
        // malformed text (it was 400 "malformed JSON").
        let huge = request(r#"{"name":"a","price":1e400,"tags":[]}"#)
            .json::<Item>()
            .expect_err("out of range");
        assert_eq!(
            (huge.status, huge.errors[0].field.as_str()),
            (422, "$.price")
        );
        let huge_then_broken = request(r#"{"name":"a","price":-1e400,"tags":[}"#)
            .json::<Item>()
            .expect_err("out of range");
        assert_eq!(huge_then_broken.status, 422, "the first error met");
        let broken_then_huge = request(r#"{"name":"a" "price":1e400}"#)
            .json::<Item>()
            .expect_err("malformed");
        assert_eq!(broken_then_huge.status, 400);
        let mut text = request("{}");
        text.headers.insert("Content-Type", "text/plain");
        assert_eq!(text.json::<Item>().map_err(|p| p.status), Err(415));
        let mut binary = request("");
        binary.body = vec![b'"', 0xff, b'"'];
        assert_eq!(binary.json::<String>().map_err(|p| p.status), Err(400));
    }

    /// A body without `Content-Type` is refused: a cross-site page can send one without a
    /// preflight. An empty one reads as before (and fails as malformed).
    #[test]
    fn a_body_without_a_content_type_is_refused() {
        let mut req = Request::new(Method::Post, "/items");
        req.body = br#"{"name":"a","price":1.5,"tags":[]}"#.to_vec();
        let refused = req.json::<Item>().expect_err("no content type");
        assert_eq!(refused.status, 415);
        req.body.clear();
        assert_eq!(req.json::<Item>().expect_err("empty").status, 400);
    }

    #[test]
    fn encodes_responses() {
        let item = Item {
            name: "a".into(),
            price: 2.0,
            tags: vec![],
        };
        let r = Response::json(201, &item);
        assert_eq!(
            (r.status, r.headers.get("content-type")),
            (201, Some(JSON_CONTENT_TYPE))
        );
        assert_eq!(
            r.body.as_bytes(),
            Some(&br#"{"name":"a","price":2.0,"tags":[]}"#[..])
        );
        assert_eq!(Response::json(200, &f64::NAN).status, 500);
    }
}
