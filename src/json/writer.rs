//! `Writer`: streaming JSON output into one growing byte buffer, compact or pretty (two-space
//! indent). It places commas itself, escapes strings, writes integers without `format!` and
//! floats in shortest round-trip form, formatting numbers in place in the buffer.
//!
//! Only valid UTF-8 is ever appended (copies of `&str` cut at ASCII bytes, and ASCII), so
//! `finish` turns the buffer into a `String` with one validation pass (tens of GB/s on ASCII),
//! far cheaper than validating each small number as it is written.
//!
//! Must not: panic or emit invalid JSON for a non-finite float: it writes `null`, records the
//! first such error and `finish` returns it.

use super::float::{self, DIGIT_PAIRS, FLOAT_BYTES_MAX, FLOAT_TEXT_BYTES_MAX};
use super::lex::find_special;
use super::number::N;
use super::{Error, Value};

/// Bytes to reserve up front: most documents written are small.
const INITIAL_CAPACITY_BYTES: usize = 128;

/// A streaming JSON writer.
#[derive(Debug)]
pub struct Writer {
    out: Vec<u8>,
    pretty: bool,
    /// Nesting level, for pretty indentation.
    depth: usize,
    /// True right after `{` or `[`: the next field or element needs no comma.
    first: bool,
    error: Option<Error>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

/// Which bytes need escaping in a JSON string: 0 = none, b'u' = `\u00XX`, else the letter after `\`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes the decimal digits of `v` so that they fill `out` exactly (`out.len()` is the digit
/// count of `v`).
#[inline]
fn itoa(mut v: u64, out: &mut [u8]) {
    let mut i = out.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        out[i - 2..i].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        i -= 2;
    } else {
        i -= 1;
        out[i] = b'0' + v as u8;
    }
    assert_eq!(i, 0, "itoa: the digit count was wrong");
}

/// Appends `s` to `out` as a quoted, escaped JSON string.
#[inline]
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // Eight bytes at a time to the next byte that needs an escape.
        let i = find_special(bytes, start);
        // Runs end at ASCII bytes, so each copied run is whole UTF-8 characters.
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let escape = ESCAPE[b as usize];
        assert!(
            escape != 0,
            "find_special stops only at bytes that need an escape"
        );
        if escape == b'u' {
            let hex = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(hex[(b >> 4) as usize]);
            out.push(hex[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// Appends the decimal digits of `v`, formatted in place.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    // In place: size the output once, then fill the digits from the right.
    let start = out.len();
    out.resize(start + float::decimal_length(v), 0);
    itoa(v, &mut out[start..]);
}

/// Appends `v` in decimal.
#[inline]
pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends a finite `v` in shortest round-trip form, formatted in place.
#[inline(always)]
pub(crate) fn write_finite_f64(out: &mut Vec<u8>, v: f64) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FLOAT_BYTES_MAX]);
    let window: &mut [u8; FLOAT_BYTES_MAX] =
        match (&mut out[start..start + FLOAT_BYTES_MAX]).try_into() {
            Ok(window) => window,
            Err(_) => unreachable!("the window is exactly FLOAT_BYTES_MAX bytes"),
        };
    let len = float::format_ascii(v, window);
    out.truncate(start + len);
}

/// Bytes of the window a small array of numbers is written into: a comma, `[`, the first number,
/// `,`, then the scratch the formatter needs for the second (it stores whole words past the
/// text); `]` lands inside that scratch.
const SMALL_ARRAY_WINDOW_BYTES: usize = 64;
const _: () = assert!(2 + FLOAT_TEXT_BYTES_MAX + 1 + FLOAT_BYTES_MAX <= SMALL_ARRAY_WINDOW_BYTES);

/// Appends `[a]` or `[a,b]` (after a comma when `comma`) when `items` is one or two numbers, and
/// returns true; otherwise writes nothing and returns false. Such arrays (coordinates, points)
/// are the leaves of large documents: one capacity check and one length update for the whole
/// array, instead of one per bracket, comma and number.
///
/// Inlined in optimized builds, a call in unoptimized ones (see `write_number` in `traits.rs`:
/// inlined unoptimized, its scratch sat in every level of the recursive Value writer).
#[cfg_attr(not(debug_assertions), inline(always))]
#[cfg_attr(debug_assertions, inline(never))]
pub(crate) fn write_small_number_array(items: &[Value], comma: bool, out: &mut Vec<u8>) -> bool {
    let (first, second) = match items {
        [Value::Number(a)] => (a.n, None),
        [Value::Number(a), Value::Number(b)] => (a.n, Some(b.n)),
        _ => return false,
    };
    // A 128-bit integer's text may not fit the window's slot; the general path writes it.
    let wide = |n: &N| matches!(n, N::WidePos(_) | N::WideNeg(_));
    if wide(&first) || second.as_ref().is_some_and(wide) {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&[0u8; SMALL_ARRAY_WINDOW_BYTES]);
    let window: &mut [u8; SMALL_ARRAY_WINDOW_BYTES] =
        match (&mut out[start..start + SMALL_ARRAY_WINDOW_BYTES]).try_into() {
            Ok(window) => window,
            Err(_) => unreachable!("the window is exactly SMALL_ARRAY_WINDOW_BYTES bytes"),
        };
    // The comma is always stored; without one, `[` overwrites it.
    window[0] = b',';
    let mut len = usize::from(comma);
    window[len] = b'[';
    len += 1;
    len += write_number_at(first, window, len);
    if let Some(second) = second {
        window[len] = b',';
        len += 1;
        len += write_number_at(second, window, len);
    }
    window[len] = b']';
    out.truncate(start + len + 1);
    true
}

/// Writes the number `n` at `window[at..]`, in a scratch of FLOAT_BYTES_MAX bytes; returns the
/// length of its text (at most FLOAT_TEXT_BYTES_MAX).
#[inline(always)]
fn write_number_at(n: N, window: &mut [u8; SMALL_ARRAY_WINDOW_BYTES], at: usize) -> usize {
    let slot: &mut [u8; FLOAT_BYTES_MAX] = match (&mut window[at..at + FLOAT_BYTES_MAX]).try_into()
    {
        Ok(slot) => slot,
        Err(_) => unreachable!("the slot is exactly FLOAT_BYTES_MAX bytes"),
    };
    match n {
        N::Float(v) => float::format_ascii(v, slot),
        N::PosInt(v) => {
            let count = float::decimal_length(v);
            itoa(v, &mut slot[..count]);
            count
        }
        N::NegInt(v) => {
            let count = float::decimal_length(v.unsigned_abs());
            slot[0] = b'-';
            itoa(v.unsigned_abs(), &mut slot[1..count + 1]);
            count + 1
        }
        N::WidePos(_) | N::WideNeg(_) => {
            unreachable!("write_small_number_array leaves 128-bit integers to the general path")
        }
    }
}

impl Writer {
    /// A compact writer.
    pub fn new() -> Self {
        Writer {
            out: Vec::with_capacity(INITIAL_CAPACITY_BYTES),
            pretty: false,
            depth: 0,
            first: true,
            error: None,
        }
    }

    /// A pretty writer: one member or element per line, two-space indent.
    pub fn pretty() -> Self {
        Writer {
            pretty: true,
            ..Writer::new()
        }
    }

    /// True for a pretty writer.
    pub fn is_pretty(&self) -> bool {
        self.pretty
    }

    /// Reserves room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.out.reserve(additional);
    }

    #[inline]
    fn newline_indent(&mut self) {
        self.out.push(b'\n');
        for _ in 0..self.depth {
            self.out.extend_from_slice(b"  ");
        }
    }

    /// Writes `{`.
    #[inline]
    pub fn begin_object(&mut self) {
        self.out.push(b'{');
        self.depth += 1;
        self.first = true;
    }

    /// Writes the separator (when needed), then `"key":`.
    #[inline]
    pub fn field(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        if self.pretty {
            self.newline_indent();
        }
        write_escaped(&mut self.out, key);
        self.out
            .extend_from_slice(if self.pretty { b": " } else { b":" });
    }

    /// Writes `}`.
    #[inline]
    pub fn end_object(&mut self) {
        self.close(b'}');
    }

    #[inline]
    fn close(&mut self, bracket: u8) {
        assert!(
            self.depth > 0,
            "Writer: closing a container that was never opened"
        );
        self.depth -= 1;
        if self.pretty && !self.first {
            self.newline_indent();
        }
        self.out.push(bracket);
        // The container was a value inside its parent, which therefore is no longer empty.
        self.first = false;
    }

    /// Writes `[`.
    #[inline]
    pub fn begin_array(&mut self) {
        self.out.push(b'[');
        self.depth += 1;
        self.first = true;
    }

    /// Writes the separator before an array element (when needed).
    #[inline]
    pub fn element(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        if self.pretty {
            self.newline_indent();
        }
    }

    /// Writes `]`.
    #[inline]
    pub fn end_array(&mut self) {
        self.close(b']');
    }

    /// Writes `null`.
    #[inline]
    pub fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    /// Writes `true` or `false`.
    #[inline]
    pub fn bool(&mut self, v: bool) {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// Writes an integer.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        write_u64(&mut self.out, v);
    }

    /// Writes an integer.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        write_i64(&mut self.out, v);
    }

    /// Writes a 128-bit integer.
    pub fn i128(&mut self, v: i128) {
        match i64::try_from(v) {
            Ok(small) => self.i64(small),
            Err(_) => self.out.extend_from_slice(v.to_string().as_bytes()),
        }
    }

    /// Writes a 128-bit integer.
    pub fn u128(&mut self, v: u128) {
        match u64::try_from(v) {
            Ok(small) => self.u64(small),
            Err(_) => self.out.extend_from_slice(v.to_string().as_bytes()),
        }
    }

    /// Writes a float in shortest round-trip form (always with a `.0` or an exponent).
    /// A non-finite value writes `null` and records an error that `finish` returns.
    #[inline]
    pub fn f64(&mut self, v: f64) {
        if !v.is_finite() {
            return self.non_finite(&v.to_string());
        }
        write_finite_f64(&mut self.out, v);
    }

    /// Writes an f32 in its own shortest round-trip form (`1.1f32` writes `1.1`).
    pub fn f32(&mut self, v: f32) {
        if !v.is_finite() {
            return self.non_finite(&v.to_string());
        }
        let mut buffer = [0u8; FLOAT_BYTES_MAX];
        self.out
            .extend_from_slice(float::format_f32(v, &mut buffer).as_bytes());
    }

    fn non_finite(&mut self, shown: &str) {
        if self.error.is_none() {
            self.error = Some(Error::custom(format!(
                "cannot write {shown} as JSON: numbers must be finite"
            )));
        }
        self.out.extend_from_slice(b"null");
    }

    /// Writes a string, escaped.
    #[inline]
    pub fn str(&mut self, v: &str) {
        write_escaped(&mut self.out, v);
    }

    /// Records an error (the first one wins); `finish` will return it.
    pub fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// The text written so far. This validates the buffer as UTF-8 (linear in its length), so
    /// it is meant for inspection and tests, not for hot paths; `finish` is the way out.
    pub fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.out) {
            Ok(text) => text,
            Err(e) => panic!("Writer invariant broken: wrote invalid UTF-8 ({e})"),
        }
    }

    /// The bytes written so far (UTF-8 JSON text).
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// The text, or the first error recorded.
    pub fn finish(self) -> Result<String, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        match String::from_utf8(self.out) {
            Ok(text) => Ok(text),
            Err(e) => panic!("Writer invariant broken: wrote invalid UTF-8 ({e})"),
        }
    }

    /// Direct access to the output, for the `Value` fast path.
    pub(crate) fn out_mut(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_matches_std() {
        for v in [
            0u64,
            7,
            10,
            99,
            100,
            12345,
            1 << 40,
            u64::MAX,
            u64::MAX / 10,
            10_000_000_000_000_000_000,
        ] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for v in [0i64, -1, -10, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_i64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn commas_and_pretty() {
        let mut w = Writer::pretty();
        w.begin_object();
        w.field("a");
        w.begin_array();
        w.element();
        w.i64(-1);
        w.element();
        w.begin_object();
        w.end_object();
        w.end_array();
        w.field("b\n");
        w.str("x\"\u{1}é");
        w.end_object();
        let text = w.finish().unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": [\n    -1,\n    {}\n  ],\n  \"b\\n\": \"x\\\"\\u0001é\"\n}"
        );
    }

    /// Points written in one window: each kind of number, the longest texts, with and without
    /// the leading comma; anything that is not one or two numbers writes nothing.
    #[test]
    fn small_number_arrays_in_one_window() {
        let numbers = [
            Value::from(-2.2250738585072014e-308),
            Value::from(-0.0001234567890123456),
            Value::from(-1234567890123456.7),
            Value::from(1.5),
            Value::from(-0.0),
            Value::from(i64::MIN),
            Value::from(u64::MAX),
            Value::from(0u64),
            Value::from(-7i64),
        ];
        let text = |v: &Value| match v {
            Value::Number(n) => n.to_string(),
            _ => unreachable!("numbers only"),
        };
        for a in &numbers {
            for b in &numbers {
                for comma in [false, true] {
                    let prefix = if comma { "," } else { "" };
                    let mut out = b"x".to_vec();
                    assert!(write_small_number_array(
                        &[a.clone(), b.clone()],
                        comma,
                        &mut out
                    ));
                    let expected = format!("x{prefix}[{},{}]", text(a), text(b));
                    assert_eq!(String::from_utf8(out).unwrap(), expected);
                    let mut out = Vec::new();
                    assert!(write_small_number_array(
                        std::slice::from_ref(a),
                        comma,
                        &mut out
                    ));
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        format!("{prefix}[{}]", text(a))
                    );
                }
            }
        }
        let one = Value::from(1u64);
        for items in [
            vec![],
            vec![one.clone(), one.clone(), one.clone()],
            vec![one.clone(), Value::Null],
            vec![Value::from("1")],
        ] {
            let mut out = b"x".to_vec();
            assert!(!write_small_number_array(&items, true, &mut out));
            assert_eq!(out, b"x");
        }
    }

    #[test]
    fn non_finite_is_an_error_not_a_panic() {
        let mut w = Writer::new();
        w.begin_array();
        w.element();
        w.f64(f64::NAN);
        w.element();
        w.f64(1.5);
        w.end_array();
        assert_eq!(w.as_bytes(), b"[null,1.5]");
        assert_eq!(w.as_str(), "[null,1.5]");
        assert!(w.finish().is_err());
    }
}
