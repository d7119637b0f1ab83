//! Shortest round-trip formatting of finite f64 into a stack buffer, in a form that always
//! re-parses as a float (it keeps a `.0` or an exponent).
//!
//! Must not: allocate, or be called with a non-finite value (callers check; it asserts).

use std::fmt::Write as _;

/// Bytes a formatted f64 can take: sign, 17 digits, point, `e-308`, with margin.
pub(crate) const FLOAT_BYTES_MAX: usize = 32;

/// A `fmt::Write` into a fixed buffer.
struct Cursor<'b> {
    buffer: &'b mut [u8; FLOAT_BYTES_MAX],
    len: usize,
}

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > FLOAT_BYTES_MAX {
            return Err(std::fmt::Error);
        }
        self.buffer[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formats `v` (finite) as the shortest decimal that parses back to the same f64.
///
/// std's `Debug` for f64 is shortest round-trip and switches to exponent form for very large or
/// small magnitudes, and always keeps `.0` or an exponent, so the output re-parses as a float.
pub(crate) fn format_f64(v: f64, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> &str {
    assert!(v.is_finite(), "format_f64 called with a non-finite value");
    let mut cursor = Cursor { buffer, len: 0 };
    let written = write!(cursor, "{v:?}");
    assert!(written.is_ok(), "an f64 always fits in FLOAT_BYTES_MAX");
    let len = cursor.len;
    let bytes = &buffer[..len];
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => unreachable!("float formatting writes ASCII"),
    }
}

/// Formats `v` (finite) as the shortest decimal that parses back to the same f32.
pub(crate) fn format_f32(v: f32, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> &str {
    assert!(v.is_finite(), "format_f32 called with a non-finite value");
    let mut cursor = Cursor { buffer, len: 0 };
    let written = write!(cursor, "{v:?}");
    assert!(written.is_ok(), "an f32 always fits in FLOAT_BYTES_MAX");
    let len = cursor.len;
    match std::str::from_utf8(&buffer[..len]) {
        Ok(text) => text,
        Err(_) => unreachable!("float formatting writes ASCII"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: f64, expected: &str) {
        let mut buffer = [0u8; FLOAT_BYTES_MAX];
        let text = format_f64(v, &mut buffer);
        assert_eq!(text, expected);
        assert_eq!(text.parse::<f64>().map(f64::to_bits), Ok(v.to_bits()));
    }

    #[test]
    fn keeps_float_shape() {
        check(1.0, "1.0");
        check(-0.0, "-0.0");
        check(0.1, "0.1");
        check(1e300, "1e300");
        check(-65.61361699999998, "-65.61361699999998");
        check(f64::MIN_POSITIVE, "2.2250738585072014e-308");
        check(f64::MAX, "1.7976931348623157e308");
        check(5e-324, "5e-324");
    }
}
