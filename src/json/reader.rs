//! `Reader`: a pull cursor over JSON text for typed decoding without building a `Value`.
//!
//! It is `Clone` (an offset into a `&str` and a depth), so a decoder can look ahead and rewind.
//! Separators need no state: before a key or element the reader looks back at the previous
//! significant byte; `{` or `[` means "first", anything else means a `,` is required.
//! Must not: accept anything the `Value` parser rejects, or recurse deeper than its depth limit.

use super::lex::{self, LexError, Num};
use super::parser::Parser;
use super::{Error, Kind, ParseOptions, Value, DEPTH_MAX_DEFAULT};
use std::borrow::Cow;

/// A pull reader over JSON text.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    depth_max: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`, with the default nesting limit.
    pub fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            depth: 0,
            depth_max: DEPTH_MAX_DEFAULT,
        }
    }

    /// A reader with a nesting limit other than the default 512 levels.
    pub fn with_depth_max(text: &'a str, depth_max: usize) -> Self {
        Reader {
            depth_max,
            ..Reader::new(text)
        }
    }

    /// Byte offset of the cursor in the text.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// An error at the current position (after whitespace).
    pub fn error(&self, message: impl Into<String>) -> Error {
        let at = lex::skip_ws(self.text.as_bytes(), self.pos);
        Error::at(self.text, at, message)
    }

    fn lex_error(&self, e: LexError) -> Error {
        Error::at(self.text, e.offset, e.message)
    }

    /// Skips whitespace and returns the next byte, if any.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        self.pos = lex::skip_ws(self.text.as_bytes(), self.pos);
        self.text.as_bytes().get(self.pos).copied()
    }

    /// "expected X, found Y" at the current position.
    fn mismatch(&self, expected: &str) -> Error {
        let found = lex::describe(self.text, self.pos);
        Error::at(
            self.text,
            self.pos,
            format!("expected {expected}, found {found}"),
        )
    }

    /// The last significant byte before the cursor (0 at the start of the text).
    fn previous_significant(&self) -> u8 {
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b' ' | b'\n' | b'\r' | b'\t' => continue,
                b => return b,
            }
        }
        0
    }

    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= self.depth_max {
            let limit = self.depth_max;
            return Err(self.error(format!(
                "nesting is deeper than the limit of {limit} levels"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        assert!(
            self.depth > 0,
            "Reader: leaving a container that was never entered"
        );
        self.depth -= 1;
    }

    /// Counts one level of nesting that consumes no text: a type written as its inner value (a
    /// newtype struct) reading itself through `Option` or `Box`, like `struct L(Option<Box<L>>)`,
    /// would otherwise recurse on the same token until the stack overflows. Derived code calls
    /// it around a newtype's inner read, and [`Reader::leave_transparent`] after it.
    ///
    /// # Errors
    /// The nesting limit is reached.
    pub fn enter_transparent(&mut self) -> Result<(), Error> {
        self.enter()
    }

    /// Ends the level [`Reader::enter_transparent`] counted.
    pub fn leave_transparent(&mut self) {
        self.leave();
    }

    /// Consumes `{`.
    pub fn begin_object(&mut self) -> Result<(), Error> {
        if self.peek() != Some(b'{') {
            return Err(self.mismatch("an object"));
        }
        self.enter()?;
        self.pos += 1;
        Ok(())
    }

    /// The next key of the current object (consuming the `,` before it and the `:` after it),
    /// or `None` after consuming the closing `}`.
    pub fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, Error> {
        match self.peek() {
            Some(b'}') => {
                if self.previous_significant() == b',' {
                    return Err(self.error("trailing comma before `}` (remove the comma)"));
                }
                self.pos += 1;
                self.leave();
                return Ok(None);
            }
            Some(b',') if self.previous_significant() != b'{' => {
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    return Err(self.error("trailing comma before `}` (remove the comma)"));
                }
            }
            Some(b'"') if self.previous_significant() == b'{' => {}
            None => return Err(self.error("unterminated object: missing `}`")),
            Some(_) if self.previous_significant() == b'{' => {
                return Err(self.mismatch("an object key in double quotes"));
            }
            Some(_) => return Err(self.mismatch("`,` or `}` after an object member")),
        }
        if self.peek() != Some(b'"') {
            return Err(self.mismatch("an object key in double quotes"));
        }
        let (key, end) = lex::string(self.text, self.pos + 1).map_err(|e| self.lex_error(e))?;
        self.pos = end;
        if self.peek() != Some(b':') {
            return Err(self.mismatch("`:` after the object key"));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Consumes `[`.
    pub fn begin_array(&mut self) -> Result<(), Error> {
        if self.peek() != Some(b'[') {
            return Err(self.mismatch("an array"));
        }
        self.enter()?;
        self.pos += 1;
        Ok(())
    }

    /// True when another element follows (consuming the `,` before it); false after consuming
    /// the closing `]`.
    pub fn next_element(&mut self) -> Result<bool, Error> {
        match self.peek() {
            Some(b']') => {
                if self.previous_significant() == b',' {
                    return Err(self.error("trailing comma before `]` (remove the comma)"));
                }
                self.pos += 1;
                self.leave();
                Ok(false)
            }
            None => Err(self.error("unterminated array: missing `]`")),
            _ if self.previous_significant() == b'[' => Ok(true),
            Some(b',') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    return Err(self.error("trailing comma before `]` (remove the comma)"));
                }
                Ok(true)
            }
            Some(_) => Err(self.mismatch("`,` or `]` after an array element")),
        }
    }

    /// Consumes `null` and returns true if it is next; otherwise consumes nothing.
    pub fn try_null(&mut self) -> Result<bool, Error> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.pos = lex::expect_word(self.text.as_bytes(), self.pos, "null")
            .map_err(|e| self.lex_error(e))?;
        Ok(true)
    }

    /// The kind of the next value, without consuming it.
    pub fn peek_kind(&mut self) -> Result<Kind, Error> {
        Ok(match self.peek() {
            Some(b'n') => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            _ => return Err(self.mismatch("a JSON value")),
        })
    }

    /// Reads `true` or `false`.
    pub fn read_bool(&mut self) -> Result<bool, Error> {
        let (word, value) = match self.peek() {
            Some(b't') => ("true", true),
            Some(b'f') => ("false", false),
            _ => return Err(self.mismatch("a boolean")),
        };
        self.pos = lex::expect_word(self.text.as_bytes(), self.pos, word)
            .map_err(|e| self.lex_error(e))?;
        Ok(value)
    }

    fn read_number(&mut self, expected: &str) -> Result<(Num, usize), Error> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => return Err(self.mismatch(expected)),
        }
        let start = self.pos;
        let (n, end) = lex::number(self.text, start).map_err(|e| self.lex_error(e))?;
        self.pos = end;
        Ok((n, start))
    }

    /// The error for the number token at `start` (just read) that is not a `ty`, where
    /// `expected` describes what was wanted. An integer token (no fraction or exponent) is
    /// "out of range for `ty`"; anything else, and `-0` (the float negative zero, as in
    /// `json::parse`), is "expected `expected`".
    fn integer_error(&self, start: usize, expected: &str, ty: &str) -> Error {
        let token = &self.text[start..self.pos];
        let message = if is_integer_token(token) {
            format!("the number {token} is out of range for {ty}")
        } else {
            format!("expected {expected}, found the number {token}")
        };
        Error::at(self.text, start, message)
    }

    /// Reads an integer that fits i64 (a number with a fraction or exponent is an error).
    pub fn read_i64(&mut self) -> Result<i64, Error> {
        self.read_i64_for("i64")
    }

    /// [`Reader::read_i64`], naming `ty` (the type being decoded) when the number is too large.
    pub(crate) fn read_i64_for(&mut self, ty: &str) -> Result<i64, Error> {
        match self.read_number("an integer")? {
            (Num::Pos(v), start) => {
                i64::try_from(v).map_err(|_| self.integer_error(start, "an integer", ty))
            }
            (Num::Neg(v), _) => Ok(v),
            (Num::Float(_) | Num::WidePos(_) | Num::WideNeg(_), start) => {
                Err(self.integer_error(start, "an integer", ty))
            }
        }
    }

    /// Reads a non-negative integer that fits u64.
    pub fn read_u64(&mut self) -> Result<u64, Error> {
        self.read_u64_for("u64")
    }

    /// [`Reader::read_u64`], naming `ty` (the type being decoded) when the number is too large.
    pub(crate) fn read_u64_for(&mut self, ty: &str) -> Result<u64, Error> {
        match self.read_number("a non-negative integer")? {
            (Num::Pos(v), _) => Ok(v),
            (Num::Float(_) | Num::WidePos(_), start) if !self.text[start..].starts_with('-') => {
                Err(self.integer_error(start, "a non-negative integer", ty))
            }
            (_, start) => Err(self.integer_error_negative(start)),
        }
    }

    /// The error for a negative number token at `start` where only non-negative ones fit.
    fn integer_error_negative(&self, start: usize) -> Error {
        let token = &self.text[start..self.pos];
        Error::at(
            self.text,
            start,
            format!("expected a non-negative integer, found the number {token}"),
        )
    }

    /// Reads an integer that fits i128.
    pub fn read_i128(&mut self) -> Result<i128, Error> {
        match self.read_number("an integer")? {
            (Num::Pos(v), _) => Ok(i128::from(v)),
            (Num::Neg(v), _) => Ok(i128::from(v)),
            (Num::WideNeg(v), _) => Ok(v),
            (Num::WidePos(v), start) => {
                i128::try_from(v).map_err(|_| self.integer_error(start, "an integer", "i128"))
            }
            (Num::Float(_), start) => Err(self.integer_error(start, "an integer", "i128")),
        }
    }

    /// Reads a non-negative integer that fits u128.
    pub fn read_u128(&mut self) -> Result<u128, Error> {
        match self.read_number("a non-negative integer")? {
            (Num::Pos(v), _) => Ok(u128::from(v)),
            (Num::WidePos(v), _) => Ok(v),
            (Num::Float(_), start) if !self.text[start..].starts_with('-') => {
                Err(self.integer_error(start, "a non-negative integer", "u128"))
            }
            (_, start) => Err(self.integer_error_negative(start)),
        }
    }

    /// Reads any number as f64 (integers convert, rounding beyond 2^53).
    pub fn read_f64(&mut self) -> Result<f64, Error> {
        Ok(match self.read_number("a number")?.0 {
            Num::Pos(v) => v as f64,
            Num::Neg(v) => v as f64,
            Num::Float(v) => v,
            // `as` rounds to the nearest f64, as the token's text would.
            Num::WidePos(v) => v as f64,
            Num::WideNeg(v) => v as f64,
        })
    }

    /// Reads any number as the nearest f32. A number with a fraction or exponent is rounded
    /// once, from its text: going through the nearest f64 rounds twice, which misses the
    /// nearest f32 when the f64 lands exactly halfway between two of them. A number beyond
    /// f32's range is an error.
    pub fn read_f32(&mut self) -> Result<f32, Error> {
        let (n, start) = self.read_number("a number")?;
        let token = &self.text[start..self.pos];
        let narrow = match n {
            // An integer converts with one rounding.
            Num::Pos(v) => v as f32,
            Num::Neg(v) => v as f32,
            Num::WidePos(v) => v as f32,
            Num::WideNeg(v) => v as f32,
            // The lexer accepted the token, so it is valid Rust float syntax too.
            Num::Float(_) => token.parse::<f32>().unwrap_or(f32::INFINITY),
        };
        if narrow.is_finite() {
            Ok(narrow)
        } else {
            Err(Error::at(
                self.text,
                start,
                format!("the number {token} is out of range for f32"),
            ))
        }
    }

    /// Reads a string; borrowed from the text when it has no escapes.
    pub fn read_str(&mut self) -> Result<Cow<'a, str>, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.mismatch("a string"));
        }
        let (s, end) = lex::string(self.text, self.pos + 1).map_err(|e| self.lex_error(e))?;
        self.pos = end;
        Ok(s)
    }

    /// Reads the next value into a `Value`, with the options of `json::parse`.
    pub fn read_value(&mut self) -> Result<Value, Error> {
        let options = ParseOptions {
            depth_max: self.depth_max,
            ..ParseOptions::default()
        };
        let mut parser = Parser::new(self.text, self.pos, self.depth, &options);
        let value = parser.parse_value()?;
        self.pos = parser.pos();
        Ok(value)
    }

    /// Skips the next value, checking that it is well formed.
    pub fn skip_value(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'"') => {
                self.pos =
                    lex::skip_string(self.text, self.pos + 1).map_err(|e| self.lex_error(e))?;
            }
            Some(b'-' | b'0'..=b'9') => {
                self.read_number("a number")?;
            }
            Some(b't' | b'f') => {
                self.read_bool()?;
            }
            Some(b'n') => {
                self.try_null()?;
            }
            Some(b'[') => {
                self.begin_array()?;
                while self.next_element()? {
                    self.skip_value()?;
                }
            }
            Some(b'{') => {
                self.begin_object()?;
                while self.next_key()?.is_some() {
                    self.skip_value()?;
                }
            }
            _ => return Err(self.mismatch("a JSON value")),
        }
        Ok(())
    }

    /// Checks that only whitespace remains.
    pub fn finish(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => {
                let found = lex::describe(self.text, self.pos);
                Err(self.error(format!(
                    "unexpected {found} after the JSON value (a document holds exactly one value)"
                )))
            }
        }
    }
}

/// True for a number token without a fraction or exponent, other than `-0` (the float
/// negative zero).
fn is_integer_token(token: &str) -> bool {
    token != "-0" && !token.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}
