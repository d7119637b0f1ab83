//! HMAC (RFC 2104), generic over the hash through [`HashFunction`]; SHA-256 is built in.
//!
//! Owns: keyed message authentication for the cluster handshake (challenge and response).
//! Must not: compare tags with `==` (use [`Hmac::verify`], constant-time), or allocate.

use super::sha256::{self, Sha256};

/// Largest hash block size HMAC supports (SHA-512's 128 bytes); the key pads live on the stack.
pub const HASH_BLOCK_BYTES_MAX: usize = 128;

/// A streaming hash HMAC can be built on.
pub trait HashFunction: Clone {
    /// Bytes per input block (the HMAC key is padded to this length).
    const BLOCK_BYTES: usize;
    /// The digest, e.g. `[u8; 32]`.
    type Digest: AsRef<[u8]> + Copy;
    /// A fresh hasher.
    fn new() -> Self;
    /// Feeds bytes.
    fn update(&mut self, data: &[u8]);
    /// The digest of everything fed.
    fn finalize(self) -> Self::Digest;
}

impl HashFunction for Sha256 {
    const BLOCK_BYTES: usize = sha256::BLOCK_BYTES;
    type Digest = [u8; sha256::DIGEST_BYTES];

    fn new() -> Self {
        Sha256::new()
    }
    fn update(&mut self, data: &[u8]) {
        Sha256::update(self, data);
    }
    fn finalize(self) -> Self::Digest {
        Sha256::finalize(self)
    }
}

/// A streaming HMAC: `new(key)`, `update` any number of times, then `finalize` or `verify`.
#[derive(Clone)]
pub struct Hmac<H: HashFunction> {
    inner: H,
    /// The outer hash, already fed `key ^ opad`.
    outer: H,
}

impl<H: HashFunction> Hmac<H> {
    /// Starts an HMAC with `key` (any length; keys longer than a block are hashed first).
    pub fn new(key: &[u8]) -> Self {
        assert!(
            H::BLOCK_BYTES <= HASH_BLOCK_BYTES_MAX,
            "hash block of {} bytes",
            H::BLOCK_BYTES
        );
        let mut block_key = [0u8; HASH_BLOCK_BYTES_MAX];
        if key.len() > H::BLOCK_BYTES {
            let mut hasher = H::new();
            hasher.update(key);
            let digest = hasher.finalize();
            block_key[..digest.as_ref().len()].copy_from_slice(digest.as_ref());
        } else {
            block_key[..key.len()].copy_from_slice(key);
        }
        let block_key = &block_key[..H::BLOCK_BYTES];
        let mut pad = [0u8; HASH_BLOCK_BYTES_MAX];
        let mut inner = H::new();
        for (byte, k) in pad.iter_mut().zip(block_key) {
            *byte = k ^ 0x36;
        }
        inner.update(&pad[..H::BLOCK_BYTES]);
        let mut outer = H::new();
        for (byte, k) in pad.iter_mut().zip(block_key) {
            *byte = k ^ 0x5c;
        }
        outer.update(&pad[..H::BLOCK_BYTES]);
        Hmac { inner, outer }
    }

    /// Feeds message bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The tag: H((key ^ opad) || H((key ^ ipad) || message)).
    pub fn finalize(self) -> H::Digest {
        let inner_digest = self.inner.finalize();
        let mut outer = self.outer;
        outer.update(inner_digest.as_ref());
        outer.finalize()
    }

    /// True when `tag` is this message's tag, compared in constant time. A truncated tag (at
    /// least half the digest, RFC 2104 §5) is compared with the digest's prefix.
    pub fn verify(self, tag: &[u8]) -> bool {
        let digest = self.finalize();
        let digest = digest.as_ref();
        if tag.len() > digest.len() || tag.len() * 2 < digest.len() {
            return false;
        }
        super::ct_eq(&digest[..tag.len()], tag)
    }
}

/// HMAC-SHA-256 of `message` under `key`, in one call.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; sha256::DIGEST_BYTES] {
    let mut mac = Hmac::<Sha256>::new(key);
    mac.update(message);
    mac.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 §4.2–4.8, HMAC-SHA-256 column.
    #[test]
    fn rfc4231_vectors() {
        let long_key = [0xaau8; 131];
        let key_25: Vec<u8> = (1..=25).collect();
        let cases: &[(&[u8], &[u8], &str)] = &[
            (&[0x0b; 20], b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (&[0xaa; 20], &[0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (&key_25, &[0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (index, (key, message, expected)) in cases.iter().enumerate() {
            assert_eq!(hex(&hmac_sha256(key, message)), *expected, "case {index}");
        }
    }

    /// RFC 4231 §4.6: output truncated to 128 bits.
    #[test]
    fn rfc4231_truncated_tag_verifies() {
        let mut mac = Hmac::<Sha256>::new(&[0x0c; 20]);
        mac.update(b"Test With ");
        mac.update(b"Truncation");
        let tag = [
            0xa3, 0xb6, 0x16, 0x74, 0x73, 0x10, 0x0e, 0xe0, 0x6e, 0x0c, 0x79, 0x6c, 0x29, 0x55,
            0x55, 0x2b,
        ];
        assert!(mac.clone().verify(&tag));
        let mut wrong = tag;
        wrong[15] ^= 1;
        assert!(!mac.clone().verify(&wrong));
        assert!(
            !mac.verify(&tag[..8]),
            "tags shorter than half the digest are refused"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_tag() {
        let tag = hmac_sha256(b"secret", b"challenge");
        let mut mac = Hmac::<Sha256>::new(b"secret");
        mac.update(b"challenge");
        assert!(mac.clone().verify(&tag));
        let mut other = Hmac::<Sha256>::new(b"secreT");
        other.update(b"challenge");
        assert!(!other.verify(&tag));
        let mut longer = tag.to_vec();
        longer.push(0);
        assert!(!mac.verify(&longer));
    }
}
