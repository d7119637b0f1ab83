//! The rule language of `#[http(validate = "...")]` on `#[derive(Model)]` fields.
//!
//! Grammar (whitespace allowed between tokens; rules separated by commas):
//! `len(A..B)`, `len(A..=B)`, `len(A..)`, `len(..B)`, `len(..=B)` with unsigned integers (the
//! length in characters of a string, in items of a list); `range(..)` with the same bounds as
//! numbers (integers or decimals, maybe negative); `email`; `url`.
//!
//! Owns: parsing rule text into `Rule` values and spelling them as `::lithair::app::Rule` Rust
//! expressions. Must not: check values (that is `lithair::app::schema` at run time), or accept
//! anything it does not understand (a typo in a rule is a compile error, not a rule ignored).

/// One parsed rule; mirrors `lithair::app::Rule`.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// `len(..)`: `max` is inclusive.
    Len {
        /// Smallest length.
        min: u64,
        /// Largest length, inclusive.
        max: Option<u64>,
    },
    /// `range(..)`.
    Range {
        /// Smallest value, inclusive.
        min: Option<f64>,
        /// Largest value.
        max: Option<f64>,
        /// Whether `max` itself is allowed.
        max_inclusive: bool,
    },
    /// `email`.
    Email,
    /// `url`.
    Url,
}

impl Rule {
    /// The rule as a Rust expression of type `::lithair::app::Rule`.
    pub fn to_rust(&self) -> String {
        let opt_u64 = |v: &Option<u64>| {
            v.map_or("::core::option::Option::None".to_string(), |v| {
                format!("::core::option::Option::Some({v}u64)")
            })
        };
        let opt_f64 = |v: &Option<f64>| {
            v.map_or("::core::option::Option::None".to_string(), |v| {
                format!("::core::option::Option::Some({v:?}f64)")
            })
        };
        match self {
            Rule::Len { min, max } => format!(
                "::lithair::app::Rule::Len {{ min: {min}u64, max: {} }}",
                opt_u64(max)
            ),
            Rule::Range {
                min,
                max,
                max_inclusive,
            } => format!(
                "::lithair::app::Rule::Range {{ min: {}, max: {}, max_inclusive: {max_inclusive} }}",
                opt_f64(min),
                opt_f64(max)
            ),
            Rule::Email => "::lithair::app::Rule::Email".to_string(),
            Rule::Url => "::lithair::app::Rule::Url".to_string(),
        }
    }
}

const USAGE: &str =
    "expected rules like `len(1..=200)`, `range(0..)`, `email`, `url`, separated by commas";

/// Parses a whole `validate` string; an empty string is an error (the attribute would say
/// nothing).
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for part in split_top_level(text) {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("empty rule in `{text}`; {USAGE}"));
        }
        rules.push(parse_one(part)?);
    }
    Ok(rules)
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_one(part: &str) -> Result<Rule, String> {
    match part {
        "email" => return Ok(Rule::Email),
        "url" => return Ok(Rule::Url),
        _ => {}
    }
    let (name, args) = part
        .split_once('(')
        .and_then(|(name, rest)| Some((name.trim(), rest.trim_end().strip_suffix(')')?)))
        .ok_or_else(|| format!("unknown rule `{part}`; {USAGE}"))?;
    let (low, high, inclusive) = split_range(args)
        .ok_or_else(|| format!("`{part}`: expected a range like `1..=200`, `0..` or `..10`"))?;
    match name {
        "len" => len_rule(part, low, high, inclusive),
        "range" => range_rule(part, low, high, inclusive),
        _ => Err(format!("unknown rule `{name}`; {USAGE}")),
    }
}

/// `a..b` / `a..=b` into trimmed bounds (empty when open) and whether the end is inclusive.
fn split_range(args: &str) -> Option<(&str, &str, bool)> {
    let (low, high) = args.split_once("..")?;
    let (high, inclusive) = match high.strip_prefix('=') {
        Some(high) => (high, true),
        None => (high, false),
    };
    Some((low.trim(), high.trim(), inclusive))
}

fn len_rule(part: &str, low: &str, high: &str, inclusive: bool) -> Result<Rule, String> {
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("`{part}`: `{text}` is not a length (an unsigned integer)"))
    };
    let min = if low.is_empty() { 0 } else { number(low)? };
    let max = match (high.is_empty(), inclusive) {
        (true, true) => return Err(format!("`{part}`: `..=` needs an end")),
        (true, false) => None,
        (false, true) => Some(number(high)?),
        // An exclusive end of 0 allows nothing at all: certainly a mistake.
        (false, false) => Some(
            number(high)?
                .checked_sub(1)
                .ok_or_else(|| format!("`{part}`: an empty range allows no length"))?,
        ),
    };
    if max.is_some_and(|max| max < min) {
        return Err(format!("`{part}`: the end is below the start"));
    }
    Ok(Rule::Len { min, max })
}

fn range_rule(part: &str, low: &str, high: &str, inclusive: bool) -> Result<Rule, String> {
    let number = |text: &str| match text.parse::<f64>() {
        Ok(value) if value.is_finite() && !text.contains(['e', 'E', 'i', 'n', 'N']) => Ok(value),
        _ => Err(format!("`{part}`: `{text}` is not a number")),
    };
    let min = if low.is_empty() {
        None
    } else {
        Some(number(low)?)
    };
    let max = if high.is_empty() {
        if inclusive {
            return Err(format!("`{part}`: `..=` needs an end"));
        }
        None
    } else {
        Some(number(high)?)
    };
    if let (Some(min), Some(max)) = (min, max) {
        if max < min || (max == min && !inclusive) {
            return Err(format!("`{part}`: the range is empty"));
        }
    }
    if min.is_none() && max.is_none() {
        return Err(format!("`{part}`: a range needs at least one bound"));
    }
    Ok(Rule::Range {
        min,
        max,
        max_inclusive: inclusive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(
            parse("len(1..=200)").unwrap(),
            [Rule::Len {
                min: 1,
                max: Some(200)
            }]
        );
        assert_eq!(
            parse(" len( ..10 ) ").unwrap(),
            [Rule::Len {
                min: 0,
                max: Some(9)
            }]
        );
        assert_eq!(
            parse("len(3..)").unwrap(),
            [Rule::Len { min: 3, max: None }]
        );
    }

    #[test]
    fn ranges_and_lists() {
        let rules = parse("range(-1.5..=5), email, url").unwrap();
        assert_eq!(
            rules[0],
            Rule::Range {
                min: Some(-1.5),
                max: Some(5.0),
                max_inclusive: true
            }
        );
        assert_eq!(&rules[1..], [Rule::Email, Rule::Url]);
        assert_eq!(
            parse("range(..100)").unwrap(),
            [Rule::Range {
                min: None,
                max: Some(100.0),
                max_inclusive: false
            }]
        );
    }

    #[test]
    fn bad_rules_are_errors() {
        for bad in [
            "len(a..b)",
            "len(5..2)",
            "len(..0)",
            "len(1..=)",
            "len(1)",
            "range(..)",
            "range(3..3)",
            "range(x..)",
            "range(inf..)",
            "emial",
            "",
            "email,",
            "size(1..2)",
            "len(1..2",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
        assert!(parse("len(a..b)").unwrap_err().contains("not a length"));
    }

    #[test]
    fn rust_spelling() {
        assert_eq!(
            Rule::Len { min: 1, max: None }.to_rust(),
            "::lithair::app::Rule::Len { min: 1u64, max: ::core::option::Option::None }"
        );
        let range = Rule::Range {
            min: Some(-2.0),
            max: Some(0.5),
            max_inclusive: false,
        };
        assert!(
            range.to_rust().contains("Some(-2.0f64)"),
            "{}",
            range.to_rust()
        );
        assert!(range.to_rust().contains("Some(0.5f64)"));
    }
}
