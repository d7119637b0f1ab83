//! Percent-encoding (RFC 3986 §2.1) for paths, query strings and form bodies.
//!
//! Owns: decoding `%XX` escapes into UTF-8 text and encoding text for URLs.
//! Must not: interpret the decoded text (path safety is `static_files`' job, splitting on `/`
//! happens BEFORE decoding so `%2F` never becomes a separator).

use std::borrow::Cow;
use std::fmt;

/// Why a percent-encoded string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadEscape => "'%' must be followed by two hex digits",
            Self::NotUtf8 => "percent-decoded text is not valid UTF-8",
        })
    }
}

impl std::error::Error for PercentError {}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (a path segment: `+` stays `+`). Borrows when nothing is escaped.
pub fn decode(input: &str) -> Result<Cow<'_, str>, PercentError> {
    decode_with(input, false)
}

/// Decodes a query or form component: `%XX` escapes and `+` as space
/// (application/x-www-form-urlencoded).
pub fn decode_component(input: &str) -> Result<Cow<'_, str>, PercentError> {
    decode_with(input, true)
}

fn decode_with(input: &str, plus_is_space: bool) -> Result<Cow<'_, str>, PercentError> {
    let bytes = input.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PercentError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PercentError::NotUtf8)
}

/// Whether `b` may appear unescaped in any URL component (RFC 3986 "unreserved").
pub(crate) const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Encodes `input` so it is safe as one path segment or query component: every byte outside
/// the unreserved set becomes `%XX`.
pub fn encode_component(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_cases() {
        let cases: &[(&str, Result<&str, PercentError>)] = &[
            ("plain", Ok("plain")),
            ("a%20b", Ok("a b")),
            ("a+b", Ok("a+b")),
            ("%2e%2E", Ok("..")),
            ("%2F", Ok("/")),
            ("caf%C3%A9", Ok("café")),
            ("%", Err(PercentError::BadEscape)),
            ("%4", Err(PercentError::BadEscape)),
            ("%zz", Err(PercentError::BadEscape)),
            ("%FF", Err(PercentError::NotUtf8)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode(input).as_deref().map_err(|e| *e),
                *expected,
                "{input}"
            );
        }
        assert_eq!(decode_component("a+b%2B").as_deref(), Ok("a b+"));
        assert!(matches!(decode("plain"), Ok(Cow::Borrowed(_))));
    }

    proptest::proptest! {
        #[test]
        fn prop_encode_decode_round_trip(s in ".{0,40}") {
            let encoded = encode_component(&s);
            proptest::prop_assert!(encoded.bytes().all(|b| is_unreserved(b) || b == b'%'));
            let plain = decode(&encoded).expect("decode").into_owned();
            let component = decode_component(&encoded).expect("decode").into_owned();
            proptest::prop_assert_eq!(&plain, &s);
            proptest::prop_assert_eq!(&component, &s);
        }

        #[test]
        fn prop_decode_never_panics(s in "[%+a-f0-9]{0,20}") {
            let _ = decode_component(&s);
        }
    }
}
