//! Static descriptions of model fields, emitted by `#[derive(Model)]`, and the list-query language
//! of the generated routes (`skip`, `take`, `sort`, filters).
//!
//! Owns: what a field *is* (kind, constraints, validation rules) and how a list request is parsed.
//! Must not: touch state or I/O; everything here is a pure function of its inputs.

use std::fmt;

/// The identity of a record: a sequencer-assigned integer or a client-supplied string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// `#[db(primary_key)] id: u64`, assigned by the sequencer when absent (0).
    Int(u64),
    /// `#[db(primary_key)] id: String`, supplied by the client.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(value) => write!(f, "{value}"),
            Id::Str(value) => f.write_str(value),
        }
    }
}

/// The JSON-level kind of a field, used to parse filter values and sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A signed integer.
    Int,
    /// An unsigned integer.
    UInt,
    /// A float.
    Float,
    /// A boolean.
    Bool,
    /// A string.
    Str,
    /// Anything else (arrays, nested structs): not filterable or sortable.
    Other,
}

/// A validation rule from `#[http(validate = "...")]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// `len(min..=max)`: characters of a string, items of an array.
    Len {
        /// Smallest length allowed.
        min: u64,
        /// Largest length allowed, inclusive.
        max: Option<u64>,
    },
    /// `range(min..max)` / `range(min..=max)`: numeric bounds.
    Range {
        /// Smallest value allowed, inclusive.
        min: Option<f64>,
        /// Largest value allowed.
        max: Option<f64>,
        /// Whether `max` itself is allowed.
        max_inclusive: bool,
    },
    /// A plausible e-mail address (`local@domain.tld`).
    Email,
    /// An absolute `http://` or `https://` URL.
    Url,
}

/// One field of a model, as declared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldSpec {
    /// Rust field name.
    pub name: &'static str,
    /// Name in JSON.
    pub json_name: &'static str,
    /// Kind (of `T` for `Option<T>`).
    pub kind: FieldKind,
    /// The type is `Option<_>`.
    pub optional: bool,
    /// `#[db(primary_key)]`.
    pub primary_key: bool,
    /// `#[db(unique)]`.
    pub unique: bool,
    /// `#[db(indexed)]`.
    pub indexed: bool,
    /// `#[db(default)]` or `#[db(default = ...)]`.
    pub has_default: bool,
    /// `#[lifecycle(immutable)]`.
    pub immutable: bool,
    /// `#[http(read_only)]`.
    pub read_only: bool,
    /// `#[http(skip)]`.
    pub skip: bool,
    /// `#[http(validate = "...")]`.
    pub rules: &'static [Rule],
}

impl FieldSpec {
    /// A plain field of `kind` named `name` with no attributes (handy for tests and hand-written
    /// models).
    pub const fn plain(name: &'static str, kind: FieldKind) -> FieldSpec {
        FieldSpec {
            name,
            json_name: name,
            kind,
            optional: false,
            primary_key: false,
            unique: false,
            indexed: false,
            has_default: false,
            immutable: false,
            read_only: false,
            skip: false,
            rules: &[],
        }
    }
}

/// Default `take` of a list request.
pub const LIST_TAKE_DEFAULT: usize = 50;
/// Largest `take` of a list request; larger values are clamped.
pub const LIST_TAKE_MAX: usize = 1000;
/// Most filters one list request may carry.
pub const LIST_FILTERS_MAX: usize = 32;

/// A comparison in a list filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    /// `field=v`
    Eq,
    /// `field=!v`
    Ne,
    /// `field=>v`
    Gt,
    /// `field=>=v`
    Ge,
    /// `field=<v`
    Lt,
    /// `field=<=v`
    Le,
    /// `field=~substring`
    Contains,
}

/// One filter of a list request.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// Index of the field in the model's `FIELDS`.
    pub field: usize,
    /// The comparison.
    pub op: FilterOp,
    /// The operand, as text (compared according to the field's kind).
    pub operand: String,
}

/// A parsed list request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    /// Records skipped.
    pub skip: usize,
    /// Records returned at most.
    pub take: usize,
    /// Sort key: field index and whether descending.
    pub sort: Option<(usize, bool)>,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
}

/// The start of a query key that names a field whatever its name: `filter[NAME]`.
const FILTER_KEY_OPEN: &str = "filter[";

/// Parses the (already percent-decoded) query pairs of a list request against `fields`.
/// Errors are sentences for a 400 problem.
pub fn parse_list_query(
    pairs: &[(String, String)],
    fields: &[FieldSpec],
) -> Result<ListQuery, String> {
    let mut query = ListQuery {
        skip: 0,
        take: LIST_TAKE_DEFAULT,
        sort: None,
        filters: Vec::new(),
    };
    for (key, value) in pairs {
        // `filter[NAME]` always names a field, so a field called `sort`, `take` or `from` (a
        // live feed's option) can be filtered on too.
        let named = key
            .strip_prefix(FILTER_KEY_OPEN)
            .and_then(|rest| rest.strip_suffix(']'));
        match (named, key.as_str()) {
            (None, "skip") => query.skip = parse_count("skip", value)?,
            (None, "take") => query.take = parse_count("take", value)?.min(LIST_TAKE_MAX),
            (None, "sort") => query.sort = Some(parse_sort(value, fields)?),
            (None, "consistency") => {} // The read route's option.
            (named, key) => {
                if query.filters.len() == LIST_FILTERS_MAX {
                    return Err(format!("at most {LIST_FILTERS_MAX} filters per request"));
                }
                query
                    .filters
                    .push(parse_filter(named.unwrap_or(key), value, fields)?);
            }
        }
    }
    Ok(query)
}

fn parse_count(name: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("`{name}` must be a non-negative integer, got `{value}`"))
}

fn find_field(name: &str, fields: &[FieldSpec]) -> Result<usize, String> {
    fields
        .iter()
        .position(|field| field.json_name == name && !field.skip)
        .ok_or_else(|| {
            let known: Vec<&str> = fields
                .iter()
                .filter(|field| !field.skip)
                .map(|field| field.json_name)
                .collect();
            format!("unknown field `{name}`; fields are: {}", known.join(", "))
        })
}

fn parse_sort(value: &str, fields: &[FieldSpec]) -> Result<(usize, bool), String> {
    let (name, descending) = match value.strip_prefix('-') {
        Some(name) => (name, true),
        None => (value.strip_prefix('+').unwrap_or(value), false),
    };
    let index = find_field(name, fields)?;
    if fields[index].kind == FieldKind::Other {
        return Err(format!("field `{name}` cannot be sorted on"));
    }
    Ok((index, descending))
}

fn parse_filter(key: &str, value: &str, fields: &[FieldSpec]) -> Result<Filter, String> {
    let field = find_field(key, fields)?;
    // Longest operators first, so `>=` is not read as `>` followed by `=v`.
    let (op, operand) = [
        (">=", FilterOp::Ge),
        ("<=", FilterOp::Le),
        (">", FilterOp::Gt),
        ("<", FilterOp::Lt),
        ("~", FilterOp::Contains),
        ("!", FilterOp::Ne),
    ]
    .iter()
    .find_map(|(prefix, op)| value.strip_prefix(prefix).map(|rest| (*op, rest)))
    .unwrap_or((FilterOp::Eq, value));
    let kind = fields[field].kind;
    if kind == FieldKind::Other {
        return Err(format!("field `{key}` cannot be filtered on"));
    }
    let numeric = matches!(kind, FieldKind::Int | FieldKind::UInt | FieldKind::Float);
    let absent = fields[field].optional && operand == "null";
    // `NaN` and `inf` parse as f64 but match nothing, not even with `!`: refused like text.
    let finite = operand.parse::<f64>().is_ok_and(f64::is_finite);
    if numeric && op != FilterOp::Contains && !absent && !finite {
        return Err(format!(
            "filter on `{key}` expects a number, got `{operand}`"
        ));
    }
    let integer = matches!(kind, FieldKind::Int | FieldKind::UInt);
    let compared = op != FilterOp::Contains && !absent;
    let operand = if integer && compared {
        canonical_integer(operand)
    } else if kind == FieldKind::Float && compared {
        canonical_float(operand)
    } else {
        operand.to_string()
    };
    if kind == FieldKind::Bool && !matches!(operand.as_str(), "true" | "false") {
        return Err(format!(
            "filter on `{key}` expects true or false, got `{operand}`"
        ));
    }
    Ok(Filter { field, op, operand })
}

/// Largest magnitude below which every integer is exactly an f64 (2^53).
const F64_EXACT_INTEGER_MAX: f64 = 9_007_199_254_740_992.0;

/// The operand of an integer field's filter written as the index writes integers (`01`, `+1`
/// and `1.0` become `1`), so an equality filter finds the same records through an index as
/// through a scan. Other operands are kept as given.
fn canonical_integer(operand: &str) -> String {
    if let Ok(value) = operand.parse::<i128>() {
        return value.to_string();
    }
    if let Ok(value) = operand.parse::<u128>() {
        return value.to_string();
    }
    match operand.parse::<f64>() {
        Ok(value) if value.fract() == 0.0 && value.abs() <= F64_EXACT_INTEGER_MAX => {
            (value as i64).to_string()
        }
        _ => operand.to_string(),
    }
}

/// The operand of a float field's filter written as the index writes floats (`2` becomes
/// `2.0`, `2.50` and `25e-1` become `2.5`, `-0` becomes `0.0`, as the index keys both zeros
/// alike), so an equality filter finds the same records through an index as through a scan.
/// The caller has checked that the operand is a finite number.
fn canonical_float(operand: &str) -> String {
    match operand.parse::<f64>() {
        // `+ 0.0` turns -0.0 into 0.0 and leaves every other value as it is.
        Ok(value) => crate::json::to_string(&(value + 0.0)).unwrap_or_else(|_| operand.into()),
        Err(_) => operand.to_string(),
    }
}

/// Checks `text` against the rules that apply to strings; returns the first failure.
pub fn check_string_rules(text: &str, rules: &[Rule]) -> Option<String> {
    for rule in rules {
        let failure = match *rule {
            Rule::Len { min, max } => check_len(text.chars().count() as u64, min, max),
            Rule::Email => (!is_plausible_email(text)).then(|| "must be an e-mail address".into()),
            Rule::Url => (!is_plausible_url(text)).then(|| "must be an http(s) URL".into()),
            Rule::Range { .. } => None,
        };
        if failure.is_some() {
            return failure;
        }
    }
    None
}

/// Checks a length (of an array) against `len` rules.
pub fn check_len_rules(len: u64, rules: &[Rule]) -> Option<String> {
    rules.iter().find_map(|rule| match *rule {
        Rule::Len { min, max } => check_len(len, min, max),
        _ => None,
    })
}

/// Checks a number against `range` rules.
pub fn check_number_rules(value: f64, rules: &[Rule]) -> Option<String> {
    rules.iter().find_map(|rule| match *rule {
        Rule::Range {
            min,
            max,
            max_inclusive,
        } => {
            let below = min.is_some_and(|min| value < min);
            let above = max.is_some_and(|max| {
                if max_inclusive {
                    value > max
                } else {
                    value >= max
                }
            });
            (below || above).then(|| describe_range(min, max, max_inclusive))
        }
        _ => None,
    })
}

fn check_len(len: u64, min: u64, max: Option<u64>) -> Option<String> {
    match max {
        Some(max) if len < min || len > max => {
            Some(format!("length must be between {min} and {max}"))
        }
        None if len < min => Some(format!("length must be at least {min}")),
        _ => None,
    }
}

fn describe_range(min: Option<f64>, max: Option<f64>, max_inclusive: bool) -> String {
    match (min, max) {
        (Some(min), Some(max)) if max_inclusive => format!("must be between {min} and {max}"),
        (Some(min), Some(max)) => format!("must be at least {min} and below {max}"),
        (Some(min), None) => format!("must be at least {min}"),
        (None, Some(max)) if max_inclusive => format!("must be at most {max}"),
        (None, Some(max)) => format!("must be below {max}"),
        (None, None) => "is out of range".into(),
    }
}

fn is_plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    !local.is_empty() && local.len() <= 64 && !text.chars().any(char::is_whitespace) && domain_ok
}

fn is_plausible_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [FieldSpec; 4] = [
        FieldSpec::plain("id", FieldKind::UInt),
        FieldSpec::plain("title", FieldKind::Str),
        FieldSpec::plain("price", FieldKind::Float),
        FieldSpec::plain("tags", FieldKind::Other),
    ];

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_query_defaults_and_clamps() {
        let query = parse_list_query(&[], &FIELDS).unwrap();
        assert_eq!((query.skip, query.take), (0, LIST_TAKE_DEFAULT));
        let query = parse_list_query(&pairs(&[("take", "5000"), ("skip", "7")]), &FIELDS).unwrap();
        assert_eq!((query.skip, query.take), (7, LIST_TAKE_MAX));
    }

    #[test]
    fn filter_operators() {
        let cases = [
            // Float operands are written as the index writes floats (canonical_float).
            ("price", ">=10", FilterOp::Ge, "10.0"),
            ("price", "<=1e1", FilterOp::Le, "10.0"),
            ("price", ">1.50", FilterOp::Gt, "1.5"),
            ("price", "<2", FilterOp::Lt, "2.0"),
            ("price", "-0", FilterOp::Eq, "0.0"),
            ("price", "~1", FilterOp::Contains, "1"),
            ("title", "~rust", FilterOp::Contains, "rust"),
            ("title", "!draft", FilterOp::Ne, "draft"),
            ("title", "hello", FilterOp::Eq, "hello"),
        ];
        for (key, value, op, operand) in cases {
            let query = parse_list_query(&pairs(&[(key, value)]), &FIELDS).unwrap();
            assert_eq!(query.filters[0].op, op, "{key}={value}");
            assert_eq!(query.filters[0].operand, operand, "{key}={value}");
        }
    }

    #[test]
    fn sort_and_errors() {
        let query = parse_list_query(&pairs(&[("sort", "-price")]), &FIELDS).unwrap();
        assert_eq!(query.sort, Some((2, true)));
        for bad in [
            ("sort", "nope"),
            ("sort", "tags"),
            ("nope", "1"),
            ("price", ">abc"),
            ("take", "-1"),
            ("tags", "a"),
        ] {
            assert!(
                parse_list_query(&pairs(&[bad]), &FIELDS).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    /// A field named like a query option is filtered on as `filter[NAME]` (before, `sort=>=2`
    /// was read as a sort and a field named `sort` or `take` could never be filtered on);
    /// `filter[NAME]` works for any field, and names an unknown one in its error.
    #[test]
    fn filter_brackets_name_a_field_whatever_its_name() {
        const OPTION_NAMED: [FieldSpec; 3] = [
            FieldSpec::plain("id", FieldKind::UInt),
            FieldSpec::plain("sort", FieldKind::UInt),
            FieldSpec::plain("take", FieldKind::Str),
        ];
        let query = parse_list_query(
            &pairs(&[
                ("filter[sort]", ">=2"),
                ("sort", "-sort"),
                ("filter[take]", "ann"),
                ("take", "5"),
                ("filter[id]", "!7"),
            ]),
            &OPTION_NAMED,
        )
        .unwrap();
        assert_eq!((query.sort, query.take), (Some((1, true)), 5));
        let filters: Vec<(usize, FilterOp, &str)> = query
            .filters
            .iter()
            .map(|f| (f.field, f.op, f.operand.as_str()))
            .collect();
        assert_eq!(
            filters,
            [
                (1, FilterOp::Ge, "2"),
                (2, FilterOp::Eq, "ann"),
                (0, FilterOp::Ne, "7")
            ]
        );
        for bad in ["filter[nope]", "filter[]"] {
            let refused = parse_list_query(&pairs(&[(bad, "1")]), &OPTION_NAMED);
            assert!(refused.is_err(), "{bad}");
        }
        let refused = parse_list_query(&pairs(&[("filter[nope]", "1")]), &OPTION_NAMED);
        assert!(refused.unwrap_err().contains("nope"));
    }

    #[test]
    fn rules() {
        let len = [Rule::Len {
            min: 1,
            max: Some(3),
        }];
        assert!(check_string_rules("", &len).is_some());
        assert!(check_string_rules("abc", &len).is_none());
        assert!(check_string_rules("abcd", &len).is_some());
        assert!(
            check_string_rules("ééé", &len).is_none(),
            "counts characters"
        );
        assert!(check_string_rules("a@b.io", &[Rule::Email]).is_none());
        for bad in ["a@b", "@b.io", "a b@c.io", "a@.io"] {
            assert!(check_string_rules(bad, &[Rule::Email]).is_some(), "{bad}");
        }
        assert!(check_string_rules("https://x.io/a", &[Rule::Url]).is_none());
        assert!(check_string_rules("ftp://x.io", &[Rule::Url]).is_some());
        let range = [Rule::Range {
            min: Some(0.0),
            max: Some(10.0),
            max_inclusive: false,
        }];
        assert!(check_number_rules(-1.0, &range).is_some());
        assert!(check_number_rules(0.0, &range).is_none());
        assert!(check_number_rules(10.0, &range).is_some());
        assert!(check_len_rules(0, &len).is_some());
    }
}
