//! Query strings and `application/x-www-form-urlencoded` bodies: `a=1&tag=x&tag=y`.
//!
//! Owns: splitting into decoded (name, value) pairs in order, keeping repeated names.
//! Must not: allocate without bound (the pair count is limited by [`QUERY_PAIRS_MAX`]).

use crate::http::percent::{self, PercentError};
use std::fmt;

/// Most pairs accepted in one query string or form body (a hash-flooding and memory bound).
pub const QUERY_PAIRS_MAX: usize = 1024;

/// Why a query string or form body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// More than [`QUERY_PAIRS_MAX`] pairs.
    TooManyPairs,
    /// A name or value has a bad percent escape or is not UTF-8.
    Encoding {
        /// The raw (still encoded) pair.
        pair: String,
        /// What is wrong with it.
        error: PercentError,
    },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyPairs => write!(f, "more than {QUERY_PAIRS_MAX} parameters"),
            Self::Encoding { pair, error } => write!(f, "parameter {pair:?}: {error}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// Decoded pairs in their original order; a name without `=` has an empty value.
pub fn parse(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == QUERY_PAIRS_MAX {
            return Err(QueryError::TooManyPairs);
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let encoding = |error| QueryError::Encoding {
            pair: pair.to_string(),
            error,
        };
        let name = percent::decode_component(name).map_err(encoding)?;
        let value = percent::decode_component(value).map_err(encoding)?;
        pairs.push((name.into_owned(), value.into_owned()));
    }
    assert!(pairs.len() <= QUERY_PAIRS_MAX);
    Ok(pairs)
}

/// First value of `name` in `raw`, decoded; `Ok(None)` when absent. Stops at the first match,
/// so a lookup does not decode the whole string.
pub fn first(raw: &str, name: &str) -> Result<Option<String>, QueryError> {
    for pair in raw
        .split('&')
        .filter(|p| !p.is_empty())
        .take(QUERY_PAIRS_MAX)
    {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        let encoding = |error| QueryError::Encoding {
            pair: pair.to_string(),
            error,
        };
        if percent::decode_component(n).map_err(encoding)? == name {
            return Ok(Some(
                percent::decode_component(v).map_err(encoding)?.into_owned(),
            ));
        }
    }
    Ok(None)
}

/// Encodes pairs as `a=1&b=x%20y`.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent::encode_component(name));
        out.push('=');
        out.push_str(&percent::encode_component(value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        parse(raw).expect("valid query")
    }

    #[test]
    fn parse_cases() {
        assert!(pairs("").is_empty());
        assert_eq!(pairs("a=1"), [("a".into(), "1".into())]);
        assert_eq!(
            pairs("tag=x&tag=y&&flag"),
            [
                ("tag".into(), "x".into()),
                ("tag".into(), "y".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            pairs("q=a+b%26c&x=%3D"),
            [("q".into(), "a b&c".into()), ("x".into(), "=".into())]
        );
        assert!(matches!(parse("a=%zz"), Err(QueryError::Encoding { .. })));
        let many = "a=1&".repeat(QUERY_PAIRS_MAX + 1);
        assert_eq!(parse(&many), Err(QueryError::TooManyPairs));
        assert_eq!(first("a=1&b=2&b=3", "b"), Ok(Some("2".into())));
        assert_eq!(first("a=1", "z"), Ok(None));
    }

    proptest::proptest! {
        #[test]
        fn prop_encode_parse_round_trip(kv in proptest::collection::vec((".{0,8}", ".{0,8}"), 0..10)) {
            let raw = encode(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let got = parse(&raw).expect("parse");
            // Every pair encodes to a non-empty "k=v", so all of them come back, in order.
            proptest::prop_assert_eq!(got, kv);
        }
    }
}
