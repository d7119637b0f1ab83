//! SHA-256 (FIPS 180-4 §6.2), streaming and one-shot.
//!
//! Owns: the hash used for state digests and, through HMAC, cluster authentication.
//! Must not: allocate, or depend on any other Lithair layer (but `sys`, for the hardware
//! compression function).

use crate::sys::sha256_hw;

/// Bytes in one SHA-256 digest.
pub const DIGEST_BYTES: usize = 32;
/// Bytes in one SHA-256 message block.
pub const BLOCK_BYTES: usize = 64;

/// Initial hash value H(0): the first 32 bits of the fractional parts of the square roots of
/// the first 8 primes (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Round constants K: the first 32 bits of the fractional parts of the cube roots of the first
/// 64 primes (FIPS 180-4 §4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A streaming SHA-256 computation: `update` any number of times, then `finalize`.
#[derive(Clone, Debug)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of a partial block not yet compressed; `buffered < BLOCK_BYTES` always.
    block: [u8; BLOCK_BYTES],
    buffered: usize,
    /// Total message bytes seen (the padding encodes it in bits).
    length_bytes: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// A fresh hash of the empty message.
    pub fn new() -> Self {
        Sha256 {
            state: H0,
            block: [0; BLOCK_BYTES],
            buffered: 0,
            length_bytes: 0,
        }
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length_bytes = self.length_bytes.wrapping_add(data.len() as u64);
        if self.buffered > 0 {
            let take = (BLOCK_BYTES - self.buffered).min(data.len());
            self.block[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < BLOCK_BYTES {
                return;
            }
            let block = self.block;
            compress(&mut self.state, &block);
            self.buffered = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_BYTES);
        for block in &mut blocks {
            compress(
                &mut self.state,
                block.try_into().expect("chunks_exact yields full blocks"),
            );
        }
        let tail = blocks.remainder();
        self.block[..tail.len()].copy_from_slice(tail);
        self.buffered = tail.len();
        assert!(self.buffered < BLOCK_BYTES);
    }

    /// Pads the message (a 1 bit, zeros, the 64-bit big-endian bit length) and returns the
    /// digest.
    pub fn finalize(mut self) -> [u8; DIGEST_BYTES] {
        let length_bits = self.length_bytes.wrapping_mul(8);
        let mut padding = [0u8; BLOCK_BYTES + 8];
        padding[0] = 0x80;
        // Pad so that buffered + pad_len ≡ 56 (mod 64), leaving 8 bytes for the length.
        let pad_len = if self.buffered < 56 {
            56 - self.buffered
        } else {
            120 - self.buffered
        };
        padding[pad_len..pad_len + 8].copy_from_slice(&length_bits.to_be_bytes());
        self.update_without_length(&padding[..pad_len + 8]);
        assert_eq!(self.buffered, 0, "padding ends on a block boundary");
        let mut digest = [0u8; DIGEST_BYTES];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }

    fn update_without_length(&mut self, data: &[u8]) {
        let length_bytes = self.length_bytes;
        self.update(data);
        self.length_bytes = length_bytes;
    }
}

/// SHA-256 of `data` in one call.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finalize()
}

/// The compression function over one 512-bit block (FIPS 180-4 §6.2.2): the CPU's SHA
/// instructions where it has them (`sys::sha256_hw`, several times faster), else software.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_BYTES]) {
    if !sha256_hw::compress(state, block, &K) {
        compress_software(state, block);
    }
}

/// The compression function in portable code.
fn compress_software(state: &mut [u32; 8], block: &[u8; BLOCK_BYTES]) {
    let mut w = [0u32; 64];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let sigma1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choose = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(sigma1)
            .wrapping_add(choose)
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let sigma0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let t2 = sigma0.wrapping_add(majority);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hardware compression function (where this CPU has it) gives the software one's
    /// state for every block and starting state tried: pseudo-random ones, all-zero and
    /// all-one blocks and states.
    #[test]
    fn hardware_and_software_compression_agree() {
        if !sha256_hw::available() {
            eprintln!("no SHA instructions on this CPU: the software path is the only one");
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases: Vec<([u32; 8], [u8; BLOCK_BYTES])> = vec![
            (H0, [0; BLOCK_BYTES]),
            (H0, [0xff; BLOCK_BYTES]),
            ([0; 8], [0; BLOCK_BYTES]),
            ([u32::MAX; 8], [0xff; BLOCK_BYTES]),
        ];
        for _ in 0..2_000 {
            let mut state = [0u32; 8];
            state.iter_mut().for_each(|word| *word = next() as u32);
            let mut block = [0u8; BLOCK_BYTES];
            block.iter_mut().for_each(|byte| *byte = next() as u8);
            cases.push((state, block));
        }
        for (state, block) in cases {
            let (mut hardware, mut software) = (state, state);
            assert!(sha256_hw::compress(&mut hardware, &block, &K));
            compress_software(&mut software, &block);
            assert_eq!(hardware, software, "state {state:08x?} block {block:02x?}");
        }
    }

    /// FIPS 180-4 examples (NIST CSRC "SHA256.pdf") and the NESSIE million-'a' vector.
    #[test]
    fn published_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                hex(&sha256(message)),
                *expected,
                "message {:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn one_million_a() {
        let mut hasher = Sha256::new();
        let chunk = [b'a'; 1000];
        for _ in 0..1000 {
            hasher.update(&chunk);
        }
        assert_eq!(
            hex(&hasher.finalize()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn streaming_matches_one_shot_at_every_split() {
        let message: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300] {
            let whole = sha256(&message[..length]);
            for split in 0..=length {
                let mut hasher = Sha256::new();
                hasher.update(&message[..split]);
                hasher.update(&message[split..length]);
                assert_eq!(hasher.finalize(), whole, "length {length} split {split}");
            }
        }
    }

    /// The constant tables, recomputed exactly with integer roots.
    #[test]
    fn constants_are_the_fractional_parts_of_prime_roots() {
        let primes: Vec<u128> = (2u128..)
            .filter(|n| (2..*n).all(|d| n % d != 0))
            .take(64)
            .collect();
        for (index, &prime) in primes.iter().enumerate() {
            let cube_root = integer_root(prime << 96, 3);
            assert_eq!(cube_root as u32, K[index], "K[{index}]");
            if index < 8 {
                let square_root = integer_root(prime << 64, 2);
                assert_eq!(square_root as u32, H0[index], "H0[{index}]");
            }
        }
    }

    /// The largest x with x^power <= n, by binary search.
    fn integer_root(n: u128, power: u32) -> u128 {
        let (mut low, mut high) = (0u128, 1u128 << 43);
        while low < high {
            let middle = (low + high).div_ceil(2);
            if middle.checked_pow(power).is_some_and(|p| p <= n) {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        low
    }
}
