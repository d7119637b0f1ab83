//! The JSON error type: a sentence a person understands, the position in the text (line and
//! column, when the error comes from text) and the path of the value that failed
//! (`$.items[3].price`), built on the way up with [`Error::with_field`] / [`Error::with_index`].
//!
//! Must not: know how values are parsed or written; it only carries and formats the facts.

use std::fmt;

/// One step of a path, stored innermost first (errors grow their path on the way up).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    message: String,
    /// Innermost segment first; rendered in reverse.
    path: Vec<Segment>,
    /// 1-based; 0 when the error does not come from a position in text.
    line: usize,
    /// 1-based, counted in characters; 0 when unknown.
    column: usize,
}

/// A JSON error: what went wrong, where in the text, and in which value.
///
/// `Display` gives e.g. `$.items[3].price: expected a number, found a string at line 1, column 40`.
/// The error is one boxed pointer so `Result<T, Error>` stays small on the hot decoding paths.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    inner: Box<Inner>,
}

impl Error {
    /// An error with a message and no position or path yet.
    pub fn custom(message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                message: message.into(),
                path: Vec::new(),
                line: 0,
                column: 0,
            }),
        }
    }

    /// An error at byte offset `offset` of `text` (line and column are derived from it).
    pub fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut error = Error::custom(message);
        error.set_position(text, offset);
        error
    }

    /// `missing field `name``: a required struct field was absent.
    pub fn missing_field(name: &str) -> Self {
        Error::custom(format!("missing field `{name}`"))
    }

    /// `unknown field `name``: a struct that denies unknown fields met one.
    pub fn unknown_field(name: &str) -> Self {
        Error::custom(format!("unknown field `{name}`"))
    }

    /// `unknown variant `name``: an enum tag named no variant.
    pub fn unknown_variant(name: &str) -> Self {
        Error::custom(format!("unknown variant `{name}`"))
    }

    /// Prepends `.name` to the path (call it on the way up, from the field that failed).
    pub fn with_field(mut self, name: &str) -> Self {
        self.inner.path.push(Segment::Field(name.to_owned()));
        self
    }

    /// Prepends `[index]` to the path.
    pub fn with_index(mut self, index: usize) -> Self {
        self.inner.path.push(Segment::Index(index));
        self
    }

    /// Whether this is a well-formed number past f64's range (`1e400`), which the parser
    /// refuses: a value out of range rather than malformed text.
    pub fn is_number_too_large(&self) -> bool {
        self.inner.message == super::lex::NUMBER_TOO_LARGE
    }

    /// The sentence, without path or position.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// 1-based line of the error in the text, or 0 when it does not come from text.
    pub fn line(&self) -> usize {
        self.inner.line
    }

    /// 1-based column (in characters) of the error, or 0 when it does not come from text.
    pub fn column(&self) -> usize {
        self.inner.column
    }

    /// The path of the failing value, like `$.items[3].price`; `$` for the root.
    pub fn path(&self) -> String {
        let mut out = String::from("$");
        for segment in self.inner.path.iter().rev() {
            match segment {
                Segment::Field(name) if is_plain_name(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Segment::Field(name) => {
                    // Names that would make the path ambiguous are quoted like JSON strings.
                    out.push('[');
                    out.push_str(&super::quote(name));
                    out.push(']');
                }
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }

    /// True when the error carries a line and column.
    pub fn has_position(&self) -> bool {
        self.inner.line != 0
    }

    /// Sets line and column from byte offset `offset` of `text` (clamped to the text).
    pub(crate) fn set_position(&mut self, text: &str, offset: usize) {
        let (line, column) = line_column(text, offset);
        self.inner.line = line;
        self.inner.column = column;
    }

    /// Forgets the position (used when the text was synthetic, e.g. decoding from a `Value`).
    pub(crate) fn clear_position(mut self) -> Self {
        self.inner.line = 0;
        self.inner.column = 0;
        self
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    // The offset may fall inside a multi-byte character (e.g. an error found mid-sequence).
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.inner.path.is_empty() {
            write!(f, "{}: ", self.path())?;
        }
        f.write_str(&self.inner.message)?;
        if self.has_position() {
            write!(
                f,
                " at line {}, column {}",
                self.inner.line, self.inner.column
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "json::Error({self})")
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_path_message_and_position() {
        let text = "{\"items\": [\n  1, 2]}";
        let error = Error::at(text, 15, "expected a number, found a string")
            .with_field("price")
            .with_index(3)
            .with_field("items");
        assert_eq!(error.path(), "$.items[3].price");
        assert_eq!(error.line(), 2);
        assert_eq!(error.column(), 4);
        assert_eq!(
            error.to_string(),
            "$.items[3].price: expected a number, found a string at line 2, column 4"
        );
    }

    #[test]
    fn display_without_path_or_position() {
        assert_eq!(
            Error::missing_field("title").to_string(),
            "missing field `title`"
        );
        assert_eq!(
            Error::unknown_field("x").with_field("a b").to_string(),
            "$[\"a b\"]: unknown field `x`"
        );
    }

    /// Quoted names use JSON escapes (Rust's `{:?}` wrote `\0` and `\u{1}`, which JSON lacks).
    #[test]
    fn quoted_path_names_are_json_strings() {
        let error = Error::custom("m").with_field("a\u{0}\u{1}\"\\é\n");
        assert_eq!(error.path(), r#"$["a\u0000\u0001\"\\é\n"]"#);
        let quoted = &error.path()[2..error.path().len() - 1];
        assert_eq!(
            crate::json::parse(quoted).unwrap().as_str(),
            Some("a\u{0}\u{1}\"\\é\n")
        );
    }

    #[test]
    fn column_counts_characters_and_clamps() {
        assert_eq!(line_column("éé x", 5), (1, 4));
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
