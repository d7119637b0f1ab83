//! Typed access to what the router and the client put in a request: path parameters, query
//! parameters (repeated keys included) and cookies.
//!
//! Owns: turning text into typed values and text errors into 400 problems.
//! Must not: read the body (that is `json_body`, `form` and `multipart`).

use crate::http::cookie;
use crate::http::problem::Problem;
use crate::http::query;
use crate::http::request::Request;
use std::str::FromStr;

impl Request {
    /// The path parameter `name` (percent-decoded by the router), as text.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path parameter `name` parsed as `T`; a missing or unparsable value is a 400
    /// problem, so `let id: u64 = req.param("id")?;` works in a handler.
    pub fn param<T: FromStr>(&self, name: &str) -> Result<T, Problem> {
        let raw = self
            .param_str(name)
            .ok_or_else(|| Problem::bad_request(format!("missing path parameter {name:?}")))?;
        raw.parse().map_err(|_| {
            Problem::bad_request(format!(
                "path parameter {name:?} is not a valid {}",
                short_type::<T>()
            ))
            .with_field_error(name, format!("cannot parse {raw:?}"))
        })
    }

    /// The first query parameter `name`, decoded; `Ok(None)` when absent.
    pub fn query_str(&self, name: &str) -> Result<Option<String>, Problem> {
        query::first(&self.query, name).map_err(|e| Problem::bad_request(e.to_string()))
    }

    /// The first query parameter `name` parsed as `T`; absent or unparsable is a 400 problem.
    pub fn query<T: FromStr>(&self, name: &str) -> Result<T, Problem> {
        self.query_opt(name)?
            .ok_or_else(|| Problem::bad_request(format!("missing query parameter {name:?}")))
    }

    /// The first query parameter `name` parsed as `T`, `Ok(None)` when absent.
    pub fn query_opt<T: FromStr>(&self, name: &str) -> Result<Option<T>, Problem> {
        let Some(raw) = self.query_str(name)? else {
            return Ok(None);
        };
        raw.parse().map(Some).map_err(|_| {
            Problem::bad_request(format!(
                "query parameter {name:?} is not a valid {}",
                short_type::<T>()
            ))
            .with_field_error(name, format!("cannot parse {raw:?}"))
        })
    }

    /// Every value of the query parameter `name`, in order (`?tag=a&tag=b`). Malformed
    /// encodings make the whole query a 400 problem.
    pub fn query_all(&self, name: &str) -> Result<Vec<String>, Problem> {
        let pairs = query::parse(&self.query).map_err(|e| Problem::bad_request(e.to_string()))?;
        Ok(pairs
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect())
    }

    /// Every query pair, decoded, in order.
    pub fn query_pairs(&self) -> Result<Vec<(String, String)>, Problem> {
        query::parse(&self.query).map_err(|e| Problem::bad_request(e.to_string()))
    }

    /// The value of cookie `name` from the `Cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all("cookie")
            .flat_map(cookie::parse)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// `u64` rather than `core::primitive::u64` in messages meant for people.
fn short_type<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

    #[test]
    fn typed_params_and_queries() {
        let mut req = Request::new(Method::Get, "/items/7?tag=a&tag=b%20c&limit=5&bad=x");
        req.params.push(("id".into(), "7".into()));
        req.params.push(("name".into(), "seven".into()));
        req.headers.append("Cookie", "sid=abc; theme=dark");
        assert_eq!(req.param::<u64>("id"), Ok(7));
        let err = req.param::<u64>("name").expect_err("not a number");
        assert_eq!(err.status, 400);
        assert!(err.detail.as_deref().unwrap_or("").contains("u64"), "{err}");
        assert_eq!(req.param::<u64>("missing").map_err(|p| p.status), Err(400));
        assert_eq!(
            req.query_all("tag"),
            Ok(vec!["a".to_string(), "b c".to_string()])
        );
        assert_eq!(req.query::<u32>("limit"), Ok(5));
        assert_eq!(req.query_opt::<u32>("absent"), Ok(None));
        assert_eq!(req.query::<u32>("bad").map_err(|p| p.status), Err(400));
        assert_eq!(req.cookie("theme"), Some("dark"));
        assert_eq!(req.cookie("nope"), None);
        let bad = Request::new(Method::Get, "/?a=%zz");
        assert_eq!(bad.query_all("a").map_err(|p| p.status), Err(400));
    }
}
