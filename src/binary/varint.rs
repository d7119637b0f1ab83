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

/// Mask of the continuation bits of eight varint bytes in a little-endian word.
const CONTINUATION_BITS: u64 = 0x8080_8080_8080_8080;

/// Parses a varint of at most eight bytes from the first eight input bytes, read as one
/// little-endian word, without a loop: the first byte with a clear top bit ends it, and the
/// 7-bit groups are packed together in three mask-and-shift steps. `None` when no byte of the
/// eight ends the varint or when it is not canonical (a redundant trailing zero group): the
/// caller then runs [`parse_varint`], which reports the right error. Eight groups hold 56 bits,
/// so a u64 cannot overflow here.
#[inline]
pub fn parse_varint_word(word: u64) -> Option<(u64, usize)> {
    let stops = !word & CONTINUATION_BITS;
    if stops == 0 {
        return None;
    }
    // The terminating byte's clear top bit is bit 8 * index + 7.
    let used = (stops.trailing_zeros() / 8 + 1) as usize;
    let mask = u64::MAX >> (64 - 8 * used);
    let bytes = word & mask;
    if used > 1 && bytes >> (8 * (used - 1)) == 0 {
        return None;
    }
    let groups = bytes & 0x7f7f_7f7f_7f7f_7f7f;
    // Pairs of 7-bit groups into 14 bits per 16-bit lane, then 28 per 32-bit lane, then 56.
    let pairs = (groups & 0x007f_007f_007f_007f) | ((groups & 0x7f00_7f00_7f00_7f00) >> 1);
    let quads = (pairs & 0x0000_3fff_0000_3fff) | ((pairs & 0x3fff_0000_3fff_0000) >> 2);
    let value = (quads & 0x0fff_ffff) | ((quads & 0x0fff_ffff_0000_0000) >> 4);
    Some((value, used))
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

    /// The word parser must agree with the byte loop wherever it answers, and answer for every
    /// canonical varint of up to eight bytes.
    fn check_word(bytes: [u8; 8]) {
        let reference = parse_varint(&bytes);
        match parse_varint_word(u64::from_le_bytes(bytes)) {
            Some(found) => assert_eq!(Ok(found), reference, "{bytes:02x?}"),
            None => assert!(
                !matches!(reference, Ok((_, used)) if used <= 8),
                "word parser declined a canonical varint {bytes:02x?}"
            ),
        }
    }

    #[test]
    fn word_parser_matches_byte_loop() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for shift in 0..64 {
            for value in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // The varint, then noise after it (the word always spans eight bytes).
                let mut bytes = encoded(value);
                bytes.extend_from_slice(&state.to_le_bytes());
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[..8]);
                check_word(word);
            }
        }
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Random words, with the continuation bits mostly set so that long varints and
            // overlong ones (a zero last byte) both occur.
            let continuation = state.rotate_left(17) | state.rotate_left(31);
            let word = (state & 0x7f7f_7f7f_7f7f_7f7f) | (continuation & CONTINUATION_BITS);
            check_word(word.to_le_bytes());
            check_word((word & !0x7f00).to_le_bytes());
        }
        assert_eq!(parse_varint_word(0x0080), None, "overlong two-byte zero");
        assert_eq!(
            parse_varint_word(u64::MAX),
            None,
            "no terminator in eight bytes"
        );
        assert_eq!(parse_varint_word(0x02ac), Some((300, 2)));
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
