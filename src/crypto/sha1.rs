//! SHA-1 (FIPS 180-4 §6.1), streaming and one-shot.
//!
//! Owns: the SHA-1 compression function and Merkle–Damgård padding.
//! Must not: be used where collision resistance matters. SHA-1 is broken for signatures; Lithair
//! uses it only where a protocol mandates it (the WebSocket `Sec-WebSocket-Accept`, RFC 6455 §4.2.2).

/// Length of a SHA-1 digest in bytes.
pub const DIGEST_BYTES: usize = 20;

/// Size of one SHA-1 message block in bytes.
const BLOCK_BYTES: usize = 64;

/// Initial hash value H(0), FIPS 180-4 §5.3.1.
const INITIAL_STATE: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// A streaming SHA-1 hasher: feed bytes with [`Sha1::update`], then call [`Sha1::finalize`].
///
/// ```
/// use lithair::crypto::sha1::{sha1, Sha1};
/// let mut hasher = Sha1::new();
/// hasher.update(b"ab");
/// hasher.update(b"c");
/// assert_eq!(hasher.finalize(), sha1(b"abc"));
/// ```
#[derive(Clone, Debug)]
pub struct Sha1 {
    state: [u32; 5],
    /// Total message bytes fed so far (the padding encodes it in bits, modulo 2^64).
    message_bytes: u64,
    /// Bytes of an incomplete block. INVARIANT: `buffer_len < BLOCK_BYTES` between calls.
    buffer: [u8; BLOCK_BYTES],
    buffer_len: usize,
}

impl Default for Sha1 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha1 {
    /// A hasher that has seen no input.
    pub fn new() -> Self {
        Sha1 {
            state: INITIAL_STATE,
            message_bytes: 0,
            buffer: [0; BLOCK_BYTES],
            buffer_len: 0,
        }
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) {
        assert!(self.buffer_len < BLOCK_BYTES);
        self.message_bytes = self.message_bytes.wrapping_add(data.len() as u64);
        let mut rest = data;
        if self.buffer_len > 0 {
            let take = (BLOCK_BYTES - self.buffer_len).min(rest.len());
            self.buffer[self.buffer_len..self.buffer_len + take].copy_from_slice(&rest[..take]);
            self.buffer_len += take;
            rest = &rest[take..];
            if self.buffer_len < BLOCK_BYTES {
                return;
            }
            let block = self.buffer;
            compress(&mut self.state, &block);
            self.buffer_len = 0;
        }
        let mut blocks = rest.chunks_exact(BLOCK_BYTES);
        for block in &mut blocks {
            compress(&mut self.state, block);
        }
        let tail = blocks.remainder();
        self.buffer[..tail.len()].copy_from_slice(tail);
        self.buffer_len = tail.len();
        assert!(self.buffer_len < BLOCK_BYTES);
    }

    /// Pads the message (FIPS 180-4 §5.1.1) and returns the digest.
    pub fn finalize(mut self) -> [u8; DIGEST_BYTES] {
        let message_bits = self.message_bytes.wrapping_mul(8);
        let mut padding = [0u8; 2 * BLOCK_BYTES];
        padding[0] = 0x80;
        // One 0x80 byte, zeros, then the 8-byte length must end on a block boundary.
        let used = self.buffer_len + 1 + 8;
        let pad_len = if used <= BLOCK_BYTES {
            BLOCK_BYTES - self.buffer_len
        } else {
            2 * BLOCK_BYTES - self.buffer_len
        };
        padding[pad_len - 8..pad_len].copy_from_slice(&message_bits.to_be_bytes());
        // `update` also counts the padding into `message_bytes`; harmless, the length is written.
        self.update(&padding[..pad_len]);
        assert_eq!(self.buffer_len, 0, "padding must end on a block boundary");
        let mut digest = [0u8; DIGEST_BYTES];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// The SHA-1 digest of `data` in one call.
pub fn sha1(data: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha1::new();
    hasher.update(data);
    hasher.finalize()
}

/// Processes one 64-byte block (FIPS 180-4 §6.1.2).
fn compress(state: &mut [u32; 5], block: &[u8]) {
    assert_eq!(block.len(), BLOCK_BYTES);
    // A 16-word circular schedule instead of 80 words: W[t] only needs W[t-3], W[t-8], W[t-14], W[t-16].
    let mut schedule = [0u32; 16];
    for (word, bytes) in schedule.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for t in 0..80 {
        if t >= 16 {
            let mixed = schedule[(t + 13) & 15]
                ^ schedule[(t + 8) & 15]
                ^ schedule[(t + 2) & 15]
                ^ schedule[t & 15];
            schedule[t & 15] = mixed.rotate_left(1);
        }
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(schedule[t & 15]);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
    }
    for (word, add) in state.iter_mut().zip([a, b, c, d, e]) {
        *word = word.wrapping_add(add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: &[u8]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    // FIPS 180-2 Appendix A / NIST "SHA1ShortMsg" reference vectors.
    #[test]
    fn fips_vectors() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "a49b2446a02c645bf419f995b67091253a04a259",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                hex(&sha1(input)),
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn million_a() {
        let chunk = [b'a'; 1000];
        let mut hasher = Sha1::new();
        for _ in 0..1000 {
            hasher.update(&chunk);
        }
        assert_eq!(
            hex(&hasher.finalize()),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn quick_brown_fox() {
        assert_eq!(
            hex(&sha1(b"The quick brown fox jumps over the lazy dog")),
            "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
        );
    }

    // Lengths around the padding boundary (55, 56, 63, 64, 65 bytes) exercise both padding branches.
    #[test]
    fn streaming_equals_one_shot_at_every_split() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 200] {
            let whole = sha1(&data[..len]);
            for split in 0..=len {
                let mut hasher = Sha1::new();
                hasher.update(&data[..split]);
                hasher.update(&data[split..len]);
                assert_eq!(hasher.finalize(), whole, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn boundary_lengths_known_digests() {
        // 55 and 56 'a's straddle the one-block / two-block padding boundary.
        assert_eq!(
            hex(&sha1(&[b'a'; 55])),
            "c1c8bbdc22796e28c0e15163d20899b65621d65a"
        );
        assert_eq!(
            hex(&sha1(&[b'a'; 56])),
            "c2db330f6083854c99d4b5bfb6e8f29f201be699"
        );
        assert_eq!(
            hex(&sha1(&[b'a'; 64])),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
    }
}
