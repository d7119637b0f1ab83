//! Hand-written primitives: SHA-1, SHA-256, HMAC, base64, CRC32C and randomness.
//!
//! Owns: byte-exact implementations checked against published test vectors, and the
//! constant-time comparison every secret check must use.
//! Must not: depend on any other Lithair layer but `sys` (the CRC32C and SHA-256 instructions).

pub mod base64;
pub mod crc32c;
pub mod deflate;
pub mod hmac;
pub mod random;
pub mod sha1;
pub mod sha256;

/// Compares two byte strings in time that depends only on their lengths, not on where they
/// differ: use it for MACs, tokens and secrets so that timing does not reveal a prefix.
/// Lengths are treated as public.
pub fn ct_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut difference = 0u8;
    for (a, b) in left.iter().zip(right) {
        // black_box keeps the optimizer from turning the fold into an early-exit comparison.
        difference |= std::hint::black_box(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"Secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secret!"));
        assert!(!ct_eq(&[0u8; 32], &[0u8; 31]));
    }
}
