//! JSON (RFC 8259): the `Value` tree, a strict parser, a writer, and the `ToJson` / `FromJson`
//! traits with a typed fast path that reads straight from text.
//!
//! - [`parse`] / [`parse_with`] / [`parse_bytes`]: text to [`Value`], strict RFC 8259 (no
//!   trailing commas, comments, leading zeros, unescaped control characters, invalid escapes or
//!   lone surrogates; exactly one value). Errors carry line, column and a plain sentence.
//! - Nesting is limited ([`DEPTH_MAX_DEFAULT`] = 512 levels, configurable in [`ParseOptions`]) so
//!   hostile input cannot overflow the stack.
//! - Duplicate keys in an object: by default **the last value wins** and the key keeps the
//!   position of its first occurrence. RFC 8259 allows repeated names (it only says they
//!   SHOULD be unique) and JSONTestSuite lists such documents as valid, so the default accepts
//!   them. [`DuplicateKeys::Reject`] turns them into an error naming the key, for inputs where
//!   two values for one key would be a bug or an attack on a second parser that picks the other.
//!   The typed path: maps (`HashMap`, `BTreeMap`, `Map`) follow the default and take the last
//!   value; derived structs reject a repeated field (and internally tagged enums a repeated
//!   tag) with `duplicate field`, so they refuse such a document rather than read it
//!   differently from `parse`.
//! - Numbers keep integers exact (all of i128 and u128, parsed or built with `to_value` /
//!   `Number::from_u128`); integer text past 128 bits parses as the nearest float; other
//!   numbers are finite f64; `1` and `1.0` stay distinguishable. A float beyond f64's range
//!   is an error (an HTTP body answers it 422 naming the field). `-0` is the float negative
//!   zero, so its sign survives.
//! - [`to_string`] / [`to_string_pretty`] write shortest round-trip floats that always re-parse
//!   as floats (`1.0`, `1e300`); a non-finite float is an error, never `NaN` in the output.
//!
//! Must not: perform I/O.

mod error;
mod float;
mod lex;
mod macros;
mod map;
mod number;
mod parser;
mod reader;
mod traits;
mod value;

/// Test inputs for the number code: one xorshift64 step (Marsaglia), a fixed reproducible
/// stream of bit patterns; callers multiply the state by an odd constant (xorshift64*).
#[cfg(test)]
fn xorshift64(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    *state
}
mod writer;

pub use error::Error;
pub use map::Map;
pub use number::Number;
pub use reader::Reader;
pub use traits::{FromJson, ToJson};
pub use value::{Kind, Value, ValueIndex};
pub use writer::Writer;

/// Default nesting limit of the parser and the reader, in levels of arrays and objects.
pub const DEPTH_MAX_DEFAULT: usize = 512;

/// What the parser does when an object repeats a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DuplicateKeys {
    /// The last value wins; the key keeps the position of its first occurrence (the default).
    #[default]
    LastWins,
    /// An error naming the key.
    Reject,
}

/// Parser settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Deepest nesting of arrays and objects accepted, in levels.
    pub depth_max: usize,
    /// Policy for repeated keys in one object.
    pub duplicate_keys: DuplicateKeys,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            depth_max: DEPTH_MAX_DEFAULT,
            duplicate_keys: DuplicateKeys::LastWins,
        }
    }
}

/// Parses one JSON document into a `Value` with the default options.
pub fn parse(text: &str) -> Result<Value, Error> {
    parse_with(text, &ParseOptions::default())
}

/// Parses one JSON document into a `Value`.
pub fn parse_with(text: &str, options: &ParseOptions) -> Result<Value, Error> {
    parser::Parser::new(text, 0, 0, options).parse_document()
}

/// Parses one JSON document from bytes, which must be UTF-8 (RFC 8259 §8.1).
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The valid prefix is UTF-8, so it can locate the error by line and column.
            let prefix = std::str::from_utf8(valid).unwrap_or("");
            Err(Error::at(
                prefix,
                prefix.len(),
                format!(
                    "invalid UTF-8 at byte {} (JSON text must be UTF-8)",
                    e.valid_up_to()
                ),
            ))
        }
    }
}

/// Writes `value` as compact JSON. Fails only for a non-finite float.
pub fn to_string<T: ToJson + ?Sized>(value: &T) -> Result<String, Error> {
    let mut w = Writer::new();
    value.write_json(&mut w);
    w.finish()
}

/// `text` as a quoted, escaped JSON string literal (for building small documents by hand).
pub fn quote(text: &str) -> String {
    let mut w = Writer::new();
    w.str(text);
    w.finish().expect("a string alone cannot fail")
}

/// Writes `value` as JSON with one member or element per line and a two-space indent.
pub fn to_string_pretty<T: ToJson + ?Sized>(value: &T) -> Result<String, Error> {
    let mut w = Writer::pretty();
    value.write_json(&mut w);
    w.finish()
}

/// Decodes exactly one JSON value of type `T` from `text`, without building a `Value`.
pub fn from_str<T: FromJson>(text: &str) -> Result<T, Error> {
    let mut r = Reader::new(text);
    let result = T::read_json(&mut r).and_then(|value| r.finish().map(|()| value));
    result.map_err(|mut e| {
        // Errors made without a position (missing fields, custom checks) get the place where
        // decoding stopped, so a person can still find them.
        if !e.has_position() {
            e.set_position(text, r.offset());
        }
        e
    })
}

/// Decodes a `T` from a `Value`.
pub fn from_value<T: FromJson>(value: &Value) -> Result<T, Error> {
    T::from_json_value(value)
}

/// Converts `value` to a `Value`. Fails only for a non-finite float.
pub fn to_value<T: ToJson + ?Sized>(value: &T) -> Result<Value, Error> {
    value.to_json_value()
}

/// Like [`to_value`], but a value that cannot be represented (a non-finite float anywhere in
/// it) becomes `null`. Used by `json!`.
pub fn to_value_lossy<T: ToJson + ?Sized>(value: &T) -> Value {
    to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
