//! The meaning of `#[json(..)]`, `#[binary(..)]` and `#[db(..)]` attributes.
//!
//! Owns: the vocabulary of each attribute namespace and where it may appear, value parsing
//! (string literals, `rename_all` styles, default paths) and the error messages for unknown,
//! misspelled, duplicated or badly valued keys. Each namespace is a table of keys, so a future
//! `#[derive(Model)]` adds a table instead of a parser. Must not: silently ignore anything in a
//! namespace it owns; attributes of other namespaces (`serde`, `doc`, `allow`, ...) are passed
//! over untouched.
use crate::ast::{Attr, Error};
use crate::case::{Case, STYLES};
use crate::tokens::{Delim, Sp, Tok};

/// What a key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `key` alone.
    Flag,
    /// `key = "string"`.
    Str,
    /// `key` or `key = "string"`.
    FlagOrStr,
    /// `key` or `key = literal` (any literal, `true` or `false`), kept as a token in
    /// `Found::literal` (`#[db(default = 0)]` of `#[derive(Model)]`).
    FlagOrLiteral,
}

/// The keys a namespace accepts at one place (container, variant or field).
pub struct Spec {
    /// The attribute name: `json`, `binary`, `db`.
    pub namespace: &'static str,
    /// Where it is: `struct or enum`, `variant`, `field`.
    pub place: &'static str,
    /// Accepted keys.
    pub keys: &'static [(&'static str, Shape)],
}

/// One accepted key with its value.
#[derive(Clone, Debug)]
pub struct Found {
    /// The key (from the spec's table).
    pub key: &'static str,
    /// Span of the key.
    pub sp: Sp,
    /// The string value, if one was given.
    pub value: Option<LitStr>,
    /// The literal token of a `Shape::FlagOrLiteral` key given a value.
    pub literal: Option<Tok>,
}

/// A string literal's value with the literal's span.
#[derive(Clone, Debug, PartialEq)]
pub struct LitStr {
    /// The unescaped contents.
    pub value: String,
    /// Span of the literal.
    pub sp: Sp,
}

/// Where a default value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum DefaultSpec {
    /// `Default::default()`.
    Trait,
    /// A function path called with no arguments.
    Path(String),
}

/// Container keys of `#[json(..)]`.
pub const JSON_CONTAINER: Spec = Spec {
    namespace: "json",
    place: "struct or enum",
    keys: &[
        ("rename_all", Shape::Str),
        ("tag", Shape::Str),
        ("deny_unknown_fields", Shape::Flag),
    ],
};
/// Variant keys of `#[json(..)]`.
pub const JSON_VARIANT: Spec = Spec {
    namespace: "json",
    place: "variant",
    keys: &[("rename", Shape::Str), ("rename_all", Shape::Str)],
};
/// Field keys of `#[json(..)]`.
pub const JSON_FIELD: Spec = Spec {
    namespace: "json",
    place: "field",
    keys: &[
        ("rename", Shape::Str),
        ("default", Shape::FlagOrStr),
        ("skip", Shape::Flag),
        ("skip_if_none", Shape::Flag),
    ],
};
/// `#[binary(..)]` takes no container keys.
pub const BINARY_CONTAINER: Spec = Spec {
    namespace: "binary",
    place: "struct or enum",
    keys: &[],
};
/// `#[binary(..)]` takes no variant keys.
pub const BINARY_VARIANT: Spec = Spec {
    namespace: "binary",
    place: "variant",
    keys: &[],
};
/// Field keys of `#[binary(..)]`.
pub const BINARY_FIELD: Spec = Spec {
    namespace: "binary",
    place: "field",
    keys: &[("default", Shape::FlagOrStr), ("skip", Shape::Flag)],
};
/// Field keys of `#[db(..)]` (the vocabulary of `#[derive(Model)]`, issue 5).
pub const DB_FIELD: Spec = Spec {
    namespace: "db",
    place: "field",
    keys: &[
        ("primary_key", Shape::Flag),
        ("unique", Shape::Flag),
        ("indexed", Shape::Flag),
        ("default", Shape::FlagOrStr),
    ],
};
/// `#[db(..)]` belongs on fields only.
pub const DB_CONTAINER: Spec = Spec {
    namespace: "db",
    place: "struct or enum",
    keys: &[],
};
/// `#[db(..)]` belongs on fields only.
pub const DB_VARIANT: Spec = Spec {
    namespace: "db",
    place: "variant",
    keys: &[],
};

/// Collects the keys of every `#[<spec.namespace>(..)]` in `attrs`, reporting unknown keys,
/// bad shapes and duplicates into `errors`.
pub fn collect(attrs: &[Attr], spec: &Spec, errors: &mut Vec<Error>) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path == spec.namespace) {
        let entries = match entries_of(attr, spec) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        for (key, key_sp, value) in entries {
            match check_entry(spec, &key, key_sp, value) {
                Ok(entry) if found.iter().any(|f| f.key == entry.key) => {
                    let message = format!("duplicate `{}({})`", spec.namespace, entry.key);
                    errors.push(Error::new(key_sp, message));
                }
                Ok(entry) => found.push(entry),
                Err(error) => errors.push(error),
            }
        }
    }
    found
}

type Entry = (String, Sp, Option<Tok>);

/// Splits `(a, b = "x")` into `(key, span, value)` entries.
fn entries_of(attr: &Attr, spec: &Spec) -> Result<Vec<Entry>, Error> {
    let usage = format!("expected `#[{}(key, key = \"value\")]`", spec.namespace);
    let toks = match attr.rest.as_slice() {
        [Tok::Group {
            delim: Delim::Paren,
            toks,
            ..
        }] => toks,
        [first, ..] => return Err(Error::new(first.sp(), usage)),
        [] => return Err(Error::new(attr.path_sp, usage)),
    };
    let mut entries = Vec::new();
    let mut rest = toks.as_slice();
    while let Some((first, after)) = rest.split_first() {
        let Tok::Ident { text, sp } = first else {
            return Err(Error::new(
                first.sp(),
                format!("expected an attribute key; {usage}"),
            ));
        };
        let (value, after) = match after {
            [eq, value, tail @ ..] if eq.is_punct('=') => (Some(value.clone()), tail),
            [eq] if eq.is_punct('=') => {
                return Err(Error::new(eq.sp(), "expected a value after `=`"))
            }
            _ => (None, after),
        };
        rest = match after {
            [] => after,
            [comma, tail @ ..] if comma.is_punct(',') => tail,
            [other, ..] => {
                return Err(Error::new(
                    other.sp(),
                    format!("expected `,` or `)`; {usage}"),
                ))
            }
        };
        entries.push((text.clone(), *sp, value));
    }
    Ok(entries)
}

fn check_entry(spec: &Spec, key: &str, key_sp: Sp, value: Option<Tok>) -> Result<Found, Error> {
    let Some(&(known, shape)) = spec.keys.iter().find(|(k, _)| *k == key) else {
        return Err(Error::new(key_sp, unknown_key_message(spec, key)));
    };
    let value = match (shape, value) {
        (Shape::Flag, Some(value)) => {
            return Err(Error::new(
                value.sp(),
                format!("`{}({known})` takes no value", spec.namespace),
            ));
        }
        (Shape::Str, None) => {
            let message = format!(
                "`{}({known})` needs a value: `{known} = \"...\"`",
                spec.namespace
            );
            return Err(Error::new(key_sp, message));
        }
        (Shape::FlagOrLiteral, Some(tok)) => {
            return literal_value(tok, spec, known).map(|literal| Found {
                key: known,
                sp: key_sp,
                value: None,
                literal: Some(literal),
            });
        }
        (_, None) => None,
        (_, Some(tok)) => Some(string_value(&tok, spec, known)?),
    };
    Ok(Found {
        key: known,
        sp: key_sp,
        value,
        literal: None,
    })
}

fn unknown_key_message(spec: &Spec, key: &str) -> String {
    let namespace = spec.namespace;
    if spec.keys.is_empty() {
        return format!(
            "`#[{namespace}(..)]` is not accepted on a {}; `{key}` has no meaning here",
            spec.place
        );
    }
    let names: Vec<&str> = spec.keys.iter().map(|(k, _)| *k).collect();
    let (unknown, list) = (
        format!("unknown attribute `{namespace}({key})` on a {}", spec.place),
        names.join(", "),
    );
    match names.iter().find(|name| edit_distance(key, name) <= 2) {
        Some(close) => format!("{unknown}; did you mean `{close}`? Expected one of: {list}"),
        None => format!("{unknown}; expected one of: {list}"),
    }
}

fn string_value(tok: &Tok, spec: &Spec, key: &str) -> Result<LitStr, Error> {
    // A `$value:literal` forwarded by `macro_rules!` arrives wrapped in an invisible group.
    if let Tok::Group {
        delim: Delim::None,
        toks,
        ..
    } = tok
    {
        if let [inner] = toks.as_slice() {
            return string_value(inner, spec, key);
        }
    }
    let bad = || {
        Error::new(
            tok.sp(),
            format!("`{}({key} = ..)` expects a string literal", spec.namespace),
        )
    };
    let Tok::Lit { text, sp } = tok else {
        return Err(bad());
    };
    let value = unescape_str(text).ok_or_else(bad)?;
    Ok(LitStr { value, sp: *sp })
}

/// A literal value (`0`, `1.5`, `"draft"`, `'x'`, `true`), seen through an invisible group.
fn literal_value(tok: Tok, spec: &Spec, key: &str) -> Result<Tok, Error> {
    match tok {
        Tok::Group {
            delim: Delim::None,
            toks,
            sp,
        } => match <[Tok; 1]>::try_from(toks) {
            Ok([inner]) => literal_value(inner, spec, key),
            Err(_) => Err(Error::new(sp, literal_message(spec, key))),
        },
        Tok::Lit { .. } => Ok(tok),
        Tok::Ident { ref text, .. } if text == "true" || text == "false" => Ok(tok),
        other => Err(Error::new(other.sp(), literal_message(spec, key))),
    }
}

fn literal_message(spec: &Spec, key: &str) -> String {
    format!(
        "`{}({key} = ..)` expects a literal: a number, a string, a char, `true` or `false`",
        spec.namespace
    )
}

/// Levenshtein distance, for "did you mean" hints on short attribute keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b_chars: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b_chars.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b_chars.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b_chars.len()]
}

/// The value of a string literal's source text (`"a\n"`, `r#"x"#`); `None` if it is not one.
pub fn unescape_str(text: &str) -> Option<String> {
    if let Some(raw) = text.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let inner = raw.get(hashes..raw.len().checked_sub(hashes)?)?;
        return inner
            .strip_prefix('"')?
            .strip_suffix('"')
            .map(str::to_string);
    }
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(
                    u8::from_str_radix(&hex, 16).ok().filter(|b| *b < 0x80)?,
                ));
            }
            'u' => {
                let rest = chars.as_str().strip_prefix('{')?;
                let end = rest.find('}')?;
                let code = u32::from_str_radix(&rest[..end].replace('_', ""), 16).ok()?;
                out.push(char::from_u32(code)?);
                chars = rest[end + 1..].chars();
            }
            '\n' => {
                // A line continuation skips the newline and the next line's leading whitespace.
                let rest = chars.as_str().trim_start();
                chars = rest.chars();
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Looks a collected key up.
pub fn get<'f>(found: &'f [Found], key: &str) -> Option<&'f Found> {
    found.iter().find(|f| f.key == key)
}

/// A `rename_all` value as a `Case`, or an error at the literal listing the styles.
pub fn case_value(found: &Found, errors: &mut Vec<Error>) -> Option<Case> {
    let literal = found.value.as_ref()?;
    let case = Case::from_name(&literal.value);
    if case.is_none() {
        let styles: Vec<&str> = STYLES.iter().map(|(name, _)| *name).collect();
        let message = format!(
            "unknown rename_all style `{}`; expected one of: {}",
            literal.value,
            styles.join(", ")
        );
        errors.push(Error::new(literal.sp, message));
    }
    case
}

/// A `default` / `default = "path"` key as a `DefaultSpec`, checking the path's syntax.
pub fn default_value(found: &Found, errors: &mut Vec<Error>) -> Option<DefaultSpec> {
    let Some(literal) = &found.value else {
        return Some(DefaultSpec::Trait);
    };
    if is_path(&literal.value) {
        return Some(DefaultSpec::Path(literal.value.clone()));
    }
    let message = format!(
        "`default = \"{}\"` must name a function, like `default = \"path::to::function\"`",
        literal.value
    );
    errors.push(Error::new(literal.sp, message));
    None
}

/// Whether `text` is a plain path: identifier segments separated by `::`, maybe a leading `::`.
fn is_path(text: &str) -> bool {
    let body = text.strip_prefix("::").unwrap_or(text);
    !body.is_empty()
        && body.split("::").all(|segment| {
            let segment = segment.strip_prefix("r#").unwrap_or(segment);
            let mut chars = segment.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_')
                && segment != "_"
        })
}

/// Rejects keys that make no sense together.
pub fn conflict(found: &[Found], a: &str, b: &str, namespace: &str, errors: &mut Vec<Error>) {
    if let (Some(_), Some(second)) = (get(found, a), get(found, b)) {
        errors.push(Error::new(
            second.sp,
            format!("`{namespace}({a})` and `{namespace}({b})` cannot be combined"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::parse_item;
    use crate::tokens::lex::lex;

    /// Collects `spec` keys from the attributes of the first field of `struct S { <field> }`.
    fn field_keys(field: &str, spec: &Spec) -> (Vec<Found>, Vec<Error>, Vec<Tok>) {
        let toks = lex(&format!("struct S {{ {field} }}"));
        let item = parse_item(&toks, Sp(u32::MAX)).expect("test source parses");
        let crate::ast::Body::Struct(fields) = &item.body else {
            panic!("struct")
        };
        let mut errors = Vec::new();
        let found = collect(&fields.list()[0].attrs, spec, &mut errors);
        (found, errors, toks)
    }

    /// Finds the span of the first identifier or literal with this text, searching groups.
    fn sp_of(toks: &[Tok], wanted: &str) -> Sp {
        for tok in toks {
            match tok {
                Tok::Ident { text, sp } | Tok::Lit { text, sp } if text == wanted => return *sp,
                Tok::Group { toks, .. } => {
                    let sp = sp_of(toks, wanted);
                    if sp != Sp(u32::MAX) {
                        return sp;
                    }
                }
                _ => {}
            }
        }
        Sp(u32::MAX)
    }

    #[test]
    fn accepted_keys_and_values() {
        let (found, errors, _) = field_keys(
            "#[doc = \"x\"] #[serde(rename = \"y\")] #[json(rename = \"a\\tb\", skip_if_none)] #[json(default = \"f::g\")] x: u8",
            &JSON_FIELD,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 3);
        assert_eq!(
            get(&found, "rename")
                .and_then(|f| f.value.clone())
                .map(|v| v.value),
            Some("a\tb".into())
        );
        let mut errors = Vec::new();
        let default = default_value(get(&found, "default").expect("default"), &mut errors);
        assert_eq!(default, Some(DefaultSpec::Path("f::g".into())));
        assert!(get(&found, "skip_if_none").is_some_and(|f| f.value.is_none()));
    }

    #[test]
    fn misspelled_key_points_at_the_key_and_suggests() {
        let (_, errors, toks) = field_keys("#[json(skp)] x: u8", &JSON_FIELD);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].sp, sp_of(&toks, "skp"));
        assert!(
            errors[0]
                .message
                .contains("unknown attribute `json(skp)` on a field"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.contains("did you mean `skip`?"),
            "{}",
            errors[0].message
        );
        let (_, errors, _) = field_keys("#[json(completely_wrong)] x: u8", &JSON_FIELD);
        assert!(!errors[0].message.contains("did you mean"));
        assert!(errors[0]
            .message
            .contains("rename, default, skip, skip_if_none"));
    }

    #[test]
    fn bad_shapes_and_values_point_at_the_value() {
        let (_, errors, toks) = field_keys("#[json(skip = \"yes\")] x: u8", &JSON_FIELD);
        assert_eq!(errors[0].sp, sp_of(&toks, "\"yes\""));
        assert!(errors[0].message.contains("takes no value"));
        let (_, errors, toks) = field_keys("#[json(rename)] x: u8", &JSON_FIELD);
        assert_eq!(errors[0].sp, sp_of(&toks, "rename"));
        let (_, errors, toks) = field_keys("#[json(rename = 5)] x: u8", &JSON_FIELD);
        assert_eq!(errors[0].sp, sp_of(&toks, "5"));
        assert!(errors[0].message.contains("string literal"));
        let (found, errors, toks) =
            field_keys("#[json(default = \"not a path\")] x: u8", &JSON_FIELD);
        assert!(errors.is_empty());
        let mut errors = Vec::new();
        assert_eq!(default_value(&found[0], &mut errors), None);
        assert_eq!(errors[0].sp, sp_of(&toks, "\"not a path\""));
    }

    #[test]
    fn malformed_lists_and_duplicates() {
        let (_, errors, _) = field_keys("#[json] x: u8", &JSON_FIELD);
        assert!(
            errors[0].message.contains("expected `#[json(key"),
            "{}",
            errors[0].message
        );
        let (_, errors, _) = field_keys("#[json = \"a\"] x: u8", &JSON_FIELD);
        assert_eq!(errors.len(), 1);
        let (_, errors, _) = field_keys("#[json(skip skip)] x: u8", &JSON_FIELD);
        assert!(errors[0].message.contains("expected `,`"));
        let (_, errors, _) = field_keys("#[json(skip)] #[json(skip)] x: u8", &JSON_FIELD);
        assert!(errors[0].message.contains("duplicate `json(skip)`"));
        let (_, errors, _) = field_keys("#[json(\"skip\")] x: u8", &JSON_FIELD);
        assert!(errors[0].message.contains("expected an attribute key"));
        let (_, errors, _) = field_keys("#[json(rename =)] x: u8", &JSON_FIELD);
        assert!(errors[0].message.contains("after `=`"));
    }

    #[test]
    fn namespaces_without_keys_reject_everything() {
        let (_, errors, _) = field_keys("#[binary(rename = \"x\")] x: u8", &BINARY_FIELD);
        assert!(errors[0]
            .message
            .contains("unknown attribute `binary(rename)`"));
        let (_, errors, _) = field_keys(
            "#[db(default)] #[db(primary_key, indexed)] x: u8",
            &DB_FIELD,
        );
        assert!(errors.is_empty());
        let (_, errors, _) = field_keys("#[db(primary_kye)] x: u8", &DB_FIELD);
        assert!(errors[0].message.contains("did you mean `primary_key`?"));
        let (_, errors, _) = field_keys("#[binary(tag = \"x\")] x: u8", &BINARY_CONTAINER);
        assert!(errors[0]
            .message
            .contains("not accepted on a struct or enum"));
    }

    #[test]
    fn values_in_invisible_groups_are_unwrapped() {
        let literal = Tok::Lit {
            text: "\"x\"".into(),
            sp: Sp(7),
        };
        let wrapped = Tok::Group {
            delim: Delim::None,
            toks: vec![literal],
            sp: Sp(6),
        };
        let value = string_value(&wrapped, &JSON_FIELD, "rename").expect("unwrapped");
        assert_eq!(
            value,
            LitStr {
                value: "x".into(),
                sp: Sp(7)
            }
        );
    }

    #[test]
    fn rename_all_styles_are_checked() {
        let mut errors = Vec::new();
        let found = Found {
            key: "rename_all",
            sp: Sp(3),
            value: Some(LitStr {
                value: "camelcase".into(),
                sp: Sp(4),
            }),
            literal: None,
        };
        assert_eq!(case_value(&found, &mut errors), None);
        assert_eq!(errors[0].sp, Sp(4));
        assert!(errors[0].message.contains("camelCase, PascalCase"));
    }

    #[test]
    fn string_literal_unescaping() {
        assert_eq!(unescape_str(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(
            unescape_str(r#""a\"b\\c\n\x41\u{e9}""#).as_deref(),
            Some("a\"b\\c\nAé")
        );
        assert_eq!(unescape_str(r###"r#"x"y"#"###).as_deref(), Some("x\"y"));
        assert_eq!(unescape_str(r#"r"raw\n""#).as_deref(), Some("raw\\n"));
        assert_eq!(unescape_str("\"a\\\n    b\"").as_deref(), Some("ab"));
        assert_eq!(unescape_str("5"), None);
        assert_eq!(unescape_str("b\"bytes\""), None);
        assert_eq!(unescape_str(r#""\q""#), None);
    }

    #[test]
    fn paths_and_edit_distance() {
        assert!(is_path("default_name"));
        assert!(is_path("::crate_a::module::f"));
        assert!(is_path("r#type::f"));
        assert!(!is_path(""));
        assert!(!is_path("a::"));
        assert!(!is_path("a b"));
        assert!(!is_path("1a"));
        assert!(!is_path("f()"));
        assert_eq!(edit_distance("skp", "skip"), 1);
        assert_eq!(edit_distance("rename", "rename"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
