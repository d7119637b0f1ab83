//! Lexing shared by the `Value` parser and the typed `Reader`: whitespace, strings (with a fast
//! path for runs without escapes), numbers (integers accumulated inline, floats exact) and the
//! words `true`, `false`, `null`. Everything works on byte offsets into a `&str`.
//!
//! Must not: allocate except for strings that contain escapes; panic on any input.

use std::borrow::Cow;

/// The error for a well-formed number past f64's range (`1e400`): JSON allows it, this parser
/// holds numbers as f64 or 64-bit integers and refuses it (RFC 8259 section 9 allows limits).
pub(crate) const NUMBER_TOO_LARGE: &str = "number is too large for a 64-bit float";

/// A lexing failure: where and why. Converted to `Error` (with line and column) by the caller.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) offset: usize,
    pub(crate) message: Cow<'static, str>,
}

impl LexError {
    pub(crate) fn new(offset: usize, message: impl Into<Cow<'static, str>>) -> Self {
        LexError {
            offset,
            message: message.into(),
        }
    }
}

/// A lexed JSON number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Pos(u64),
    /// Always < 0.
    Neg(i64),
    /// Always finite.
    Float(f64),
    /// An integer token past u64 that fits u128: always > u64::MAX.
    WidePos(u128),
    /// An integer token past i64 that fits i128: always < i64::MIN.
    WideNeg(i128),
}

/// Skips JSON whitespace (space, tab, LF, CR) from `pos`.
#[inline(always)]
pub(crate) fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() {
        let b = bytes[pos];
        // Every significant byte is above b' '; test that first so the usual case is one compare.
        if b > b' ' || !(b == b' ' || b == b'\n' || b == b'\r' || b == b'\t') {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// Describes the token starting at `pos`, for "expected X, found Y" messages.
pub(crate) fn describe(text: &str, pos: usize) -> String {
    let bytes = text.as_bytes();
    match bytes.get(pos) {
        None => "the end of the input".to_owned(),
        Some(b'"') => "a string".to_owned(),
        Some(b'-' | b'0'..=b'9') => "a number".to_owned(),
        Some(b'{') => "an object".to_owned(),
        Some(b'[') => "an array".to_owned(),
        Some(b't' | b'f')
            if bytes[pos..].starts_with(b"true") || bytes[pos..].starts_with(b"false") =>
        {
            "a boolean".to_owned()
        }
        Some(b'n') if bytes[pos..].starts_with(b"null") => "null".to_owned(),
        Some(_) => {
            let c = text.get(pos..).and_then(|rest| rest.chars().next());
            match c {
                Some(BYTE_ORDER_MARK) => {
                    "a byte order mark (U+FEFF; JSON text must not start with one)".to_owned()
                }
                // Characters a reader cannot see in a message are named by code point.
                Some(c) if is_invisible(c) => format!("the character U+{:04X}", c as u32),
                Some(c) => format!("`{c}`"),
                None => "an invalid byte".to_owned(),
            }
        }
    }
}

/// U+FEFF, which some editors put at the start of UTF-8 files; RFC 8259 §8.1 forbids it in
/// JSON text sent over a network.
const BYTE_ORDER_MARK: char = '\u{feff}';

/// True for characters that print as nothing or as blank space: controls, Unicode whitespace
/// (no-break and wide spaces, line and paragraph separators) and the zero-width formatting
/// characters.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}')
}

/// Consumes `word` (`true`, `false` or `null`) at `pos`; returns the offset after it.
pub(crate) fn expect_word(bytes: &[u8], pos: usize, word: &'static str) -> Result<usize, LexError> {
    let end = pos + word.len();
    if bytes.len() >= end && &bytes[pos..end] == word.as_bytes() {
        Ok(end)
    } else {
        Err(LexError::new(
            pos,
            format!("invalid literal, expected `{word}`"),
        ))
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Offset of the first byte at or after `pos` that ends the plain part of a string: `"`, `\`
/// or a control character (< 0x20). Returns `bytes.len()` when there is none.
#[inline(always)]
pub(crate) fn find_special(bytes: &[u8], mut pos: usize) -> usize {
    // Eight bytes at a time: each mask's lowest set bit marks the first matching byte exactly
    // (false positives can only appear above a true match), so the lowest bit of the OR is it.
    while pos + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[pos..pos + 8]);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * b'"' as u64);
        let backslash = x ^ (ONES * b'\\' as u64);
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let found = found & HIGHS;
        if found != 0 {
            return pos + (found.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while pos < bytes.len() {
        let b = bytes[pos];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// Lexes a string whose opening quote is at `pos - 1`. Returns the content (borrowed when it has
/// no escapes) and the offset after the closing quote.
#[inline]
pub(crate) fn string<'a>(text: &'a str, pos: usize) -> Result<(Cow<'a, str>, usize), LexError> {
    let bytes = text.as_bytes();
    let end = find_special(bytes, pos);
    match bytes.get(end) {
        // The run starts and ends at ASCII bytes, so slicing the &str is valid.
        Some(b'"') => Ok((Cow::Borrowed(&text[pos..end]), end + 1)),
        Some(b'\\') => {
            let mut out = String::with_capacity(end - pos + 16);
            out.push_str(&text[pos..end]);
            let end = string_escaped(text, end, &mut out)?;
            Ok((Cow::Owned(out), end))
        }
        Some(&b) => Err(control_error(end, b)),
        None => Err(LexError::new(pos - 1, "unterminated string")),
    }
}

fn control_error(offset: usize, b: u8) -> LexError {
    LexError::new(
        offset,
        format!("unescaped control character U+{b:04X} in a string (write it as an escape)"),
    )
}

/// Continues a string at the backslash at `pos`, appending to `out`; returns the offset after
/// the closing quote.
fn string_escaped(text: &str, mut pos: usize, out: &mut String) -> Result<usize, LexError> {
    let bytes = text.as_bytes();
    loop {
        // Invariant: bytes[pos] is a backslash.
        pos = escape(text, pos, out)?;
        let end = find_special(bytes, pos);
        out.push_str(&text[pos..end]);
        match bytes.get(end) {
            Some(b'"') => return Ok(end + 1),
            Some(b'\\') => pos = end,
            Some(&b) => return Err(control_error(end, b)),
            None => return Err(LexError::new(end, "unterminated string")),
        }
    }
}

/// Decodes the escape at `pos` (a backslash) into `out`; returns the offset after it.
fn escape(text: &str, pos: usize, out: &mut String) -> Result<usize, LexError> {
    let bytes = text.as_bytes();
    debug_assert_eq!(bytes[pos], b'\\');
    let c = match bytes.get(pos + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let (c, end) = unicode_escape(bytes, pos)?;
            out.push(c);
            return Ok(end);
        }
        Some(_) => {
            let shown = describe(text, pos + 1);
            return Err(LexError::new(
                pos,
                format!("invalid escape: `\\` followed by {shown}"),
            ));
        }
        None => return Err(LexError::new(pos, "unterminated string")),
    };
    out.push(c);
    Ok(pos + 2)
}

fn hex4(bytes: &[u8], pos: usize) -> Result<u32, LexError> {
    let digits = bytes
        .get(pos..pos + 4)
        .ok_or_else(|| LexError::new(pos, "a \\u escape needs four hex digits"))?;
    let mut v = 0u32;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(LexError::new(pos, "a \\u escape needs four hex digits")),
        };
        v = v * 16 + u32::from(nibble);
    }
    Ok(v)
}

/// Decodes `\uXXXX` (and a following low surrogate when the first is high) at `pos`.
fn unicode_escape(bytes: &[u8], pos: usize) -> Result<(char, usize), LexError> {
    let first = hex4(bytes, pos + 2)?;
    let after = pos + 6;
    if (0xDC00..0xE000).contains(&first) {
        return Err(LexError::new(
            pos,
            format!("lone low surrogate \\u{first:04X} in a string"),
        ));
    }
    if !(0xD800..0xDC00).contains(&first) {
        return match char::from_u32(first) {
            Some(c) => Ok((c, after)),
            None => Err(LexError::new(pos, "invalid \\u escape")),
        };
    }
    let lone = || {
        LexError::new(
            pos,
            format!("lone high surrogate \\u{first:04X} in a string"),
        )
    };
    if bytes.get(after) != Some(&b'\\') || bytes.get(after + 1) != Some(&b'u') {
        return Err(lone());
    }
    let second = hex4(bytes, after + 2)?;
    if !(0xDC00..0xE000).contains(&second) {
        return Err(lone());
    }
    let scalar = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
    match char::from_u32(scalar) {
        Some(c) => Ok((c, after + 6)),
        None => Err(lone()),
    }
}

/// Validates a string whose opening quote is at `pos - 1` without building it; returns the
/// offset after the closing quote.
pub(crate) fn skip_string(text: &str, mut pos: usize) -> Result<usize, LexError> {
    let bytes = text.as_bytes();
    let mut scratch = String::new();
    loop {
        let end = find_special(bytes, pos);
        match bytes.get(end) {
            Some(b'"') => return Ok(end + 1),
            Some(b'\\') => {
                scratch.clear();
                pos = escape(text, end, &mut scratch)?;
            }
            Some(&b) => return Err(control_error(end, b)),
            None => return Err(LexError::new(end, "unterminated string")),
        }
    }
}

/// Exact powers of ten representable in f64 (the Clinger fast path).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Shape of a number token, found by [`number_span`].
pub(crate) struct Span {
    pub(crate) end: usize,
    pub(crate) negative: bool,
    /// Up to the first 19 significant digits, accumulated.
    pub(crate) mantissa: u64,
    /// Count of integer and fraction digits (leading zeros included).
    pub(crate) digits: u32,
    /// Count of fraction digits.
    pub(crate) fraction_digits: u32,
    /// Explicit exponent, saturated.
    pub(crate) exponent: i32,
    pub(crate) is_float: bool,
}

fn digit_error(pos: usize, what: &'static str) -> LexError {
    LexError::new(pos, what)
}

/// Validates the number grammar at `pos` and accumulates its digits.
#[inline]
pub(crate) fn number_span(bytes: &[u8], pos: usize) -> Result<Span, LexError> {
    let mut i = pos;
    let negative = bytes.get(i) == Some(&b'-');
    i += usize::from(negative);
    let mut mantissa = 0u64;
    let mut digits = 0u32;
    match bytes.get(i) {
        Some(b'0') => {
            i += 1;
            digits = 1;
            if matches!(bytes.get(i), Some(b'0'..=b'9')) {
                return Err(digit_error(pos, "leading zeros are not allowed in numbers"));
            }
        }
        Some(b'1'..=b'9') => {
            while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                }
                digits += 1;
                i += 1;
            }
        }
        _ => return Err(digit_error(pos, "expected a digit in the number")),
    }
    let mut span = Span {
        end: i,
        negative,
        mantissa,
        digits,
        fraction_digits: 0,
        exponent: 0,
        is_float: false,
    };
    if matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
        fraction_and_exponent(bytes, &mut span)?;
    }
    Ok(span)
}

fn fraction_and_exponent(bytes: &[u8], span: &mut Span) -> Result<(), LexError> {
    let mut i = span.end;
    span.is_float = true;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        // Eight, then four digits at a time while they all fit the 19-digit budget and a
        // significant digit came before (leading zeros take the byte loop below, which keeps
        // them out of the budget); the byte loop finishes the rest.
        if span.mantissa != 0 {
            while span.digits + 8 <= 19 {
                let Some(value) = bytes.get(i..i + 8).and_then(eight_digits) else {
                    break;
                };
                span.mantissa = span.mantissa * 100_000_000 + u64::from(value);
                span.digits += 8;
                i += 8;
            }
            if span.digits + 4 <= 19 {
                if let Some(value) = bytes.get(i..i + 4).and_then(four_digits) {
                    span.mantissa = span.mantissa * 10_000 + u64::from(value);
                    span.digits += 4;
                    i += 4;
                }
            }
        }
        while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
            // Leading zeros of "0.000123" add nothing to the mantissa; keep them out of the
            // 19-digit budget so such numbers still take the exact fast path.
            if span.mantissa == 0 && d == b'0' {
                span.digits = span.digits.min(1);
            } else if span.digits < 19 {
                span.mantissa = span.mantissa * 10 + u64::from(d - b'0');
                span.digits += 1;
            } else {
                span.digits += 1;
            }
            i += 1;
        }
        if i == start {
            return Err(digit_error(i, "expected a digit after the decimal point"));
        }
        span.fraction_digits = (i - start) as u32;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = bytes.get(i) == Some(&b'-');
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let start = i;
        let mut exponent = 0i32;
        while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i32::from(d - b'0'));
            i += 1;
        }
        if i == start {
            return Err(digit_error(i, "expected a digit in the exponent"));
        }
        span.exponent = if negative { -exponent } else { exponent };
    }
    span.end = i;
    Ok(())
}

/// ASCII '0' in each byte lane of a u64.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;
/// The high nibble of each byte lane.
const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
/// Six in each byte lane: a digit byte plus six stays below 0x40, any byte above '9' reaches it.
const SIXES: u64 = 0x0606_0606_0606_0606;

/// The value of `chunk` when it is exactly eight ASCII digits (the first the most significant),
/// in a few multiplications instead of a loop; `None` when any byte is not a digit.
#[inline(always)]
fn eight_digits(chunk: &[u8]) -> Option<u32> {
    let word = u64::from_le_bytes(chunk.try_into().ok()?);
    // Every byte is 0x30..=0x39: its high nibble is 3, and adding 6 does not carry into it.
    let all_digits = (word & HIGH_NIBBLES) == ASCII_ZEROS
        && (word.wrapping_add(SIXES) & HIGH_NIBBLES) == ASCII_ZEROS;
    if !all_digits {
        return None;
    }
    // Digit values in byte lanes (the first digit lowest); then pairs in 16-bit lanes
    // (10 * first + second), quadruples in 32-bit lanes, and the whole. No lane overflows: a
    // lane holds at most 99, 9999 or 99999999 after each step.
    let digits = word - ASCII_ZEROS;
    let pairs = (digits * 10 + (digits >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs * 100 + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    let value = (quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff;
    assert!(value < 100_000_000, "eight digits are below 10^8");
    Some(value as u32)
}

/// [`eight_digits`] for a chunk of four ASCII digits.
#[inline(always)]
fn four_digits(chunk: &[u8]) -> Option<u32> {
    let word = u32::from_le_bytes(chunk.try_into().ok()?);
    let all_digits = (word & HIGH_NIBBLES as u32) == ASCII_ZEROS as u32
        && (word.wrapping_add(SIXES as u32) & HIGH_NIBBLES as u32) == ASCII_ZEROS as u32;
    if !all_digits {
        return None;
    }
    let digits = word - ASCII_ZEROS as u32;
    let pairs = (digits * 10 + (digits >> 8)) & 0x00ff_00ff;
    let value = (pairs * 100 + (pairs >> 16)) & 0xffff;
    assert!(value < 10_000, "four digits are below 10^4");
    Some(value)
}

/// Lexes a number at `pos` (which holds `-` or a digit); returns it and the offset after it.
/// Integers stay exact up to 128 bits (a u128 id read back from its own JSON is the same
/// id); integers beyond that become floats; a float beyond f64's range is an error.
#[inline]
pub(crate) fn number(text: &str, pos: usize) -> Result<(Num, usize), LexError> {
    let span = number_span(text.as_bytes(), pos)?;
    let end = span.end;
    if !span.is_float && span.digits <= 19 {
        let m = span.mantissa;
        return Ok((
            match (span.negative, m) {
                (false, _) => Num::Pos(m),
                // "-0" is the float negative zero, so its sign survives a round trip.
                (true, 0) => Num::Float(-0.0),
                (true, _) if m <= i64::MAX as u64 + 1 => Num::Neg((m as i64).wrapping_neg()),
                (true, _) => Num::WideNeg(-i128::from(m)),
            },
            end,
        ));
    }
    if !span.is_float {
        if let Ok(v) = text[pos..end].parse::<u64>() {
            return Ok((Num::Pos(v), end));
        }
        if let Ok(v) = text[pos..end].parse::<i64>() {
            return Ok((Num::Neg(v), end));
        }
        if let Ok(v) = text[pos..end].parse::<u128>() {
            assert!(
                v > u128::from(u64::MAX),
                "a u64 integer token parsed as u64"
            );
            return Ok((Num::WidePos(v), end));
        }
        if let Ok(v) = text[pos..end].parse::<i128>() {
            assert!(
                v < i128::from(i64::MIN),
                "an i64 integer token parsed as i64"
            );
            return Ok((Num::WideNeg(v), end));
        }
        return Ok((float_slow(text, pos, end)?, end));
    }
    Ok((float(text, pos, &span)?, end))
}

/// Converts a float token exactly: Clinger's fast path when the mantissa and the power of ten
/// are both exact in f64, then Eisel-Lemire on the accumulated mantissa, and std's correctly
/// rounded parser for what those cannot decide (more than 19 digits, subnormals, ties).
#[inline]
fn float(text: &str, pos: usize, span: &Span) -> Result<Num, LexError> {
    if span.digits <= 19 && span.mantissa <= (1u64 << 53) {
        let exponent = i64::from(span.exponent) - i64::from(span.fraction_digits);
        if (-22..=22).contains(&exponent) {
            let m = span.mantissa as f64;
            let v = if exponent < 0 {
                m / POW10[(-exponent) as usize]
            } else {
                m * POW10[exponent as usize]
            };
            return Ok(Num::Float(if span.negative { -v } else { v }));
        }
    }
    if span.digits <= 19 {
        // The mantissa is exact: Eisel-Lemire decides almost always, without re-reading text.
        let exponent = i64::from(span.exponent) - i64::from(span.fraction_digits);
        if let Some(v) = super::float::eisel_lemire(span.mantissa, exponent) {
            return Ok(Num::Float(if span.negative { -v } else { v }));
        }
    }
    float_slow(text, pos, span.end)
}

fn float_slow(text: &str, pos: usize, end: usize) -> Result<Num, LexError> {
    match text[pos..end].parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Num::Float(v)),
        _ => Err(LexError::new(pos, NUMBER_TOO_LARGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_chunks_match_a_byte_loop() {
        let mut state = 0x2468_ace0_1357_9bdfu64;
        for _ in 0..20_000 {
            let r = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let text = format!("{:08}", r % 100_000_000);
            let expected: u32 = text.parse().unwrap();
            assert_eq!(eight_digits(text.as_bytes()), Some(expected), "{text}");
            let expected: u32 = text[..4].parse().unwrap();
            assert_eq!(four_digits(&text.as_bytes()[..4]), Some(expected), "{text}");
        }
        // Any non-digit byte, at any position, rejects the chunk.
        for position in 0..8 {
            for byte in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                let mut chunk = *b"12345678";
                chunk[position] = byte;
                assert_eq!(eight_digits(&chunk), None, "{byte:#x} at {position}");
                if position < 4 {
                    assert_eq!(four_digits(&chunk[..4]), None, "{byte:#x} at {position}");
                }
            }
        }
        assert_eq!(eight_digits(b"1234567"), None, "short chunk");
    }

    /// Fractions read in digit chunks give std's value for every split of the 19-digit budget:
    /// integer parts of 1 to 20 digits, fractions of 1 to 24, with runs of zeros.
    #[test]
    fn chunked_fractions_parse_like_std() {
        let mut state = 0x0bad_cafe_f00d_1234u64;
        let mut digit = || {
            let r = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 60;
            // Zeros one time in three, so chunks of zeros and leading zeros occur.
            if r < 5 {
                b'0'
            } else {
                b'0' + (r % 10) as u8
            }
        };
        for whole in 1..=20 {
            for fraction in 1..=24 {
                for exponent in ["", "e5", "e-30"] {
                    let mut text = vec![b'1'];
                    text.extend((1..whole).map(|_| digit()));
                    text.push(b'.');
                    text.extend((0..fraction).map(|_| digit()));
                    text.extend_from_slice(exponent.as_bytes());
                    let text = String::from_utf8(text).unwrap();
                    let expected: f64 = text.parse().unwrap();
                    assert_eq!(num(&text), Ok(Num::Float(expected)), "{text}");
                    let zero = format!("0.{}", &text[text.len() - fraction - exponent.len()..]);
                    let expected: f64 = zero.parse().unwrap();
                    assert_eq!(num(&zero), Ok(Num::Float(expected)), "{zero}");
                }
            }
        }
    }

    fn num(text: &str) -> Result<Num, String> {
        number(text, 0)
            .map(|(n, end)| {
                assert_eq!(end, text.len(), "{text}");
                n
            })
            .map_err(|e| e.message.into_owned())
    }

    #[test]
    fn numbers() {
        assert_eq!(num("0"), Ok(Num::Pos(0)));
        assert_eq!(num("-0"), Ok(Num::Float(-0.0)));
        assert_eq!(num("18446744073709551615"), Ok(Num::Pos(u64::MAX)));
        assert_eq!(num("-9223372036854775808"), Ok(Num::Neg(i64::MIN)));
        assert_eq!(
            num("18446744073709551616"),
            Ok(Num::WidePos(u128::from(u64::MAX) + 1))
        );
        assert_eq!(
            num("-9223372036854775809"),
            Ok(Num::WideNeg(i128::from(i64::MIN) - 1))
        );
        assert_eq!(num(&u128::MAX.to_string()), Ok(Num::WidePos(u128::MAX)));
        assert_eq!(num(&i128::MIN.to_string()), Ok(Num::WideNeg(i128::MIN)));
        // Past 128 bits an integer is the nearest float, as before.
        assert_eq!(
            num("340282366920938463463374607431768211456"),
            Ok(Num::Float(340282366920938463463374607431768211456.0))
        );
        assert_eq!(
            num("-170141183460469231731687303715884105729"),
            Ok(Num::Float(-170141183460469231731687303715884105729.0))
        );
        // A long mantissa with a fraction is still a float.
        assert_eq!(
            num("18446744073709551616.0"),
            Ok(Num::Float(18446744073709551616.0))
        );
        assert_eq!(num("1.5"), Ok(Num::Float(1.5)));
        assert_eq!(num("0.000123"), Ok(Num::Float(0.000123)));
        assert_eq!(
            num("-65.613616999999977"),
            Ok(Num::Float(-65.61361699999998))
        );
        assert_eq!(num("1E+2"), Ok(Num::Float(100.0)));
        assert_eq!(num("1e-400"), Ok(Num::Float(0.0)));
        assert!(num("1e400").is_err());
        assert!(num("01").is_err());
        assert!(num("1.").is_err());
        assert!(num("1e").is_err());
        assert!(num("-").is_err());
        assert!(num(".5").is_err());
    }

    /// A character that does not show in a message is named by its code point: a byte order
    /// mark (which editors add and RFC 8259 forbids) used to print as an empty pair of quotes.
    #[test]
    fn invisible_characters_are_named() {
        assert_eq!(
            describe("\u{feff}{}", 0),
            "a byte order mark (U+FEFF; JSON text must not start with one)"
        );
        assert_eq!(describe("\u{a0}1", 0), "the character U+00A0");
        assert_eq!(describe("\u{2028}", 0), "the character U+2028");
        assert_eq!(describe("\u{200b}", 0), "the character U+200B");
        assert_eq!(describe("\u{1}", 0), "the character U+0001");
        assert_eq!(describe("é", 0), "`é`");
        assert_eq!(describe("x", 0), "`x`");
    }

    #[test]
    fn strings() {
        let s = |t: &str| {
            string(t, 1)
                .map(|(s, e)| (s.into_owned(), e))
                .map_err(|e| e.offset)
        };
        assert_eq!(s("\"abc\""), Ok(("abc".to_owned(), 5)));
        assert_eq!(
            s("\"a\\n\\u00e9\\ud834\\udd1e\""),
            Ok(("a\né𝄞".to_owned(), 23))
        );
        assert_eq!(
            s("\"0123456789abcdef\\\"x\""),
            Ok(("0123456789abcdef\"x".to_owned(), 21))
        );
        assert!(s("\"a\nb\"").is_err());
        assert!(s("\"\\ud800\"").is_err());
        assert!(s("\"\\udc00\"").is_err());
        assert!(s("\"\\x\"").is_err());
        assert!(s("\"abc").is_err());
        assert_eq!(skip_string("\"a\\tb\" ", 1).map_err(|e| e.offset), Ok(6));
    }

    #[test]
    fn find_special_matches_bytewise_scan() {
        let text = "é abcdefgh\u{7f}ijklmnop\"";
        let bytes = text.as_bytes();
        for start in 0..bytes.len() {
            let slow = (start..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            assert_eq!(find_special(bytes, start), slow);
        }
    }
}
