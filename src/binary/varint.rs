//! LEB128 varints and zigzag mapping: the integer layout of the binary codec.
//!
//! Owns: writing varints, and the pure functions that parse one from a byte slice (canonical
//! form only: no overflow past the type width, no redundant trailing zero groups).
//! Must not: know about readers, depth or structs.

use super::error::ErrorKind;

/// Longest LEB128 encoding of a `u64` (ceil(64 / 7)).
pub const VARINT_U64_BYTES_MAX: usize = 10;
/// Longest LEB128 encoding of a `u128` (ceil(128 / 7)).
pub const VARINT_U128_BYTES_MAX: usize = 19;

/// Appends `v` as an unsigned LEB128 varint (7 bits per byte, low bits first, high bit set on
/// every byte but the last).
#[inline]
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    // Byte-wise pushes beat building a buffer and copying it: a memcpy call costs more than
    // the few capacity checks of a short varint.
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The LEB128 encoding of `v` in a fixed buffer, and how many of its bytes are used.
#[inline]
pub fn varint_bytes(mut v: u64) -> ([u8; VARINT_U64_BYTES_MAX], usize) {
    let mut buffer = [0u8; VARINT_U64_BYTES_MAX];
    let mut length = 0;
    while v >= 0x80 {
        buffer[length] = (v as u8) | 0x80;
        v >>= 7;
        length += 1;
    }
    buffer[length] = v as u8;
    (buffer, length + 1)
}

/// Appends a 128-bit value as an unsigned LEB128 varint.
pub fn write_varint_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Number of bytes `write_varint` produces for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Zigzag maps signed to unsigned so small magnitudes stay short: 0, -1, 1, -2 -> 0, 1, 2, 3.
#[inline]
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Zigzag for 128-bit integers.
pub fn zigzag_encode_i128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// Inverse of [`zigzag_encode_i128`].
pub fn zigzag_decode_i128(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// Parses a canonical u64 varint at the start of `bytes`: returns the value and the bytes used.
/// `Err(UnexpectedEnd)` carries the bytes needed so far, so a caller can report it.
#[inline]
pub fn parse_varint(bytes: &[u8]) -> Result<(u64, usize), ErrorKind> {
    match bytes.first_chunk::<VARINT_U64_BYTES_MAX>() {
        // With ten bytes in hand the loop has a fixed bound and no end-of-input checks.
        Some(chunk) => parse_varint_prefix(chunk, chunk.len()),
        None => parse_varint_prefix(bytes, bytes.len()),
    }
}

/// Shared body of [`parse_varint`]: `available` is `bytes.len()`, at most ten.
#[inline(always)]
fn parse_varint_prefix(bytes: &[u8], available: usize) -> Result<(u64, usize), ErrorKind> {
    let mut value: u64 = 0;
    // The loop only accumulates; validity is checked once, on the terminating byte.
    for (index, &byte) in bytes.iter().take(VARINT_U64_BYTES_MAX).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            if index == VARINT_U64_BYTES_MAX - 1 && byte > 1 {
                // The tenth byte holds only bit 63.
                return Err(ErrorKind::VarintOverflow);
            }
            if byte == 0 && index > 0 {
                return Err(ErrorKind::VarintOverlong);
            }
            return Ok((value, index + 1));
        }
    }
    if available >= VARINT_U64_BYTES_MAX {
        // Ten bytes, all with the continuation bit: longer than any u64.
        return Err(ErrorKind::VarintOverflow);
    }
    Err(ErrorKind::UnexpectedEnd {
        needed_bytes: available + 1,
        remaining_bytes: available,
    })
}

/// Parses a canonical u128 varint at the start of `bytes`.
pub fn parse_varint_u128(bytes: &[u8]) -> Result<(u128, usize), ErrorKind> {
    let mut value: u128 = 0;
    for (index, &byte) in bytes.iter().take(VARINT_U128_BYTES_MAX).enumerate() {
        // 18 groups hold 126 bits; the nineteenth byte may carry only the top 2 bits.
        if index == VARINT_U128_BYTES_MAX - 1 && byte > 0b11 {
            return Err(ErrorKind::VarintOverflow);
        }
        value |= u128::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                return Err(ErrorKind::VarintOverlong);
            }
            return Ok((value, index + 1));
        }
    }
    assert!(
        bytes.len() < VARINT_U128_BYTES_MAX,
        "a 19-byte prefix always terminates above"
    );
    Err(ErrorKind::UnexpectedEnd {
        needed_bytes: bytes.len() + 1,
        remaining_bytes: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        out
    }

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            assert_eq!(encoded(value), bytes, "encoding {value}");
            assert_eq!(
                parse_varint(bytes),
                Ok((value, bytes.len())),
                "decoding {value}"
            );
            assert_eq!(varint_len(value), bytes.len(), "length of {value}");
        }
    }

    #[test]
    fn rejects_overflow_overlong_and_truncation() {
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(parse_varint(&too_big), Err(ErrorKind::VarintOverflow));
        let eleven = [
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00,
        ];
        assert_eq!(parse_varint(&eleven), Err(ErrorKind::VarintOverflow));
        assert_eq!(parse_varint(&[0x80, 0x00]), Err(ErrorKind::VarintOverlong));
        assert_eq!(
            parse_varint(&[0x81, 0x80, 0x00]),
            Err(ErrorKind::VarintOverlong)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x80]),
            Err(ErrorKind::UnexpectedEnd {
                needed_bytes: 3,
                remaining_bytes: 2
            })
        );
        assert!(matches!(
            parse_varint(&[]),
            Err(ErrorKind::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn u128_round_trips_and_bounds() {
        for value in [0u128, 1, 127, 128, u64::MAX as u128 + 1, u128::MAX] {
            let mut out = Vec::new();
            write_varint_u128(&mut out, value);
            assert_eq!(parse_varint_u128(&out), Ok((value, out.len())));
        }
        let mut max = Vec::new();
        write_varint_u128(&mut max, u128::MAX);
        assert_eq!(max.len(), VARINT_U128_BYTES_MAX);
        *max.last_mut().expect("non-empty") = 0x04;
        assert_eq!(parse_varint_u128(&max), Err(ErrorKind::VarintOverflow));
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_values() {
        let cases = [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ];
        for (signed, unsigned) in cases {
            assert_eq!(zigzag_encode(signed), unsigned);
            assert_eq!(zigzag_decode(unsigned), signed);
        }
        for v in [0i128, -1, 1, i128::MIN, i128::MAX] {
            assert_eq!(zigzag_decode_i128(zigzag_encode_i128(v)), v);
        }
        assert_eq!(zigzag_encode_i128(-1), 1);
    }
}
