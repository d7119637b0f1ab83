//! Randomness: the kernel's CSPRNG through `/dev/urandom`, and a small fast deterministic PRNG.
//!
//! Owns: [`fill_bytes`] and [`u64()`] for secrets, tokens and ids (kernel randomness, read with
//! `std::fs`, no raw system call), and [`Rng`] (xoshiro256**, seeded through [`SplitMix64`]) for
//! simulations, tests and jitter, where a seed must replay bit for bit.
//! Must not: use [`Rng`] for anything an attacker may predict to their profit (it is not
//! cryptographic), or be called from `engine` apply code (apply reads no randomness).

use std::fs::File;
use std::io::{self, Read};
use std::sync::OnceLock;

/// The kernel's random device; non-blocking once the pool is initialized (at boot).
const URANDOM_PATH: &str = "/dev/urandom";

/// Opened once and shared: `&File` reads are thread-safe and spare a syscall per call.
static URANDOM: OnceLock<File> = OnceLock::new();

fn urandom() -> io::Result<&'static File> {
    if let Some(file) = URANDOM.get() {
        return Ok(file);
    }
    let file = File::open(URANDOM_PATH)?;
    // Another thread may have won the race; either handle reads the same device.
    let _ = URANDOM.set(file);
    Ok(URANDOM.get().expect("URANDOM was just set"))
}

/// Fills `buffer` with cryptographically secure random bytes from the kernel.
pub fn fill_bytes(buffer: &mut [u8]) -> io::Result<()> {
    let mut file = urandom()?;
    file.read_exact(buffer)
}

/// A cryptographically secure random `u64` from the kernel.
pub fn u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    fill_bytes(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator, used here to expand one `u64`
/// seed into xoshiro's 256-bit state (as its authors recommend).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// xoshiro256** (Blackman and Vigna, 2018): fast, 256 bits of state, period 2^256 − 1.
/// Deterministic: the same seed gives the same sequence on every platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    /// Never all zero (the one state the generator cannot leave).
    state: [u64; 4],
}

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut expand = SplitMix64::new(seed);
        let state = [
            expand.next_u64(),
            expand.next_u64(),
            expand.next_u64(),
            expand.next_u64(),
        ];
        Rng::from_state(state)
    }

    /// A generator with this exact state (for reproducing published sequences). An all-zero
    /// state is replaced by the seed-0 state, since xoshiro would output zeros forever.
    pub fn from_state(state: [u64; 4]) -> Self {
        if state == [0; 4] {
            return Rng::seed_from_u64(0);
        }
        Rng { state }
    }

    /// A generator seeded from the kernel (for jitter where replay does not matter).
    pub fn from_entropy() -> io::Result<Self> {
        Ok(Rng::seed_from_u64(u64()?))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The next 32 random bits (the high half, the better-mixed one).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform value in `0..bound`, without modulo bias (Lemire's multiply-and-reject).
    ///
    /// # Panics
    /// If `bound` is 0 (the range would be empty).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below(0): empty range");
        // Values of the low product under `threshold` would over-represent some results.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform value in `low..high`.
    ///
    /// # Panics
    /// If `low >= high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "Rng::range({low}, {high}): empty range");
        low + self.below(high - low)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `probability` (1 or more: always; 0, less, or NaN: never).
    pub fn chance(&mut self, probability: f64) -> bool {
        self.f64() < probability
    }

    /// Fills `buffer` with random bytes.
    pub fn fill_bytes(&mut self, buffer: &mut [u8]) {
        let mut chunks = buffer.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let tail_len = tail.len();
        tail.copy_from_slice(&last[..tail_len]);
    }

    /// Shuffles `items` uniformly (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for upper in (1..items.len()).rev() {
            let other = self.below(upper as u64 + 1) as usize;
            items.swap(upper, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference outputs of the authors' C code (prng.di.unimi.it) for state {1, 2, 3, 4}.
    #[test]
    fn xoshiro256starstar_reference_sequence() {
        let mut rng = Rng::from_state([1, 2, 3, 4]);
        let expected = [
            11520,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
        ];
        for value in expected {
            assert_eq!(rng.next_u64(), value);
        }
    }

    /// Reference outputs of splitmix64.c for seed 1234567.
    #[test]
    fn splitmix64_reference_sequence() {
        let mut generator = SplitMix64::new(1234567);
        let expected = [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423,
        ];
        for value in expected {
            assert_eq!(generator.next_u64(), value);
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::seed_from_u64(42);
        let mut b = Rng::seed_from_u64(42);
        let mut c = Rng::seed_from_u64(43);
        let from_a: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let from_b: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let from_c: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a, from_c);
        assert_ne!(
            Rng::from_state([0; 4]).next_u64(),
            0,
            "all-zero state is replaced"
        );
    }

    #[test]
    fn bounded_values_stay_in_range_and_cover_it() {
        let mut rng = Rng::seed_from_u64(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let value = rng.below(10);
            seen[value as usize] += 1;
            let ranged = rng.range(100, 103);
            assert!((100..103).contains(&ranged));
            let unit = rng.f64();
            assert!((0.0..1.0).contains(&unit));
        }
        // Each bucket expects 1000; a fair generator stays far inside these bounds.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(rng.below(1), 0);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }

    #[test]
    fn fill_and_shuffle() {
        let mut rng = Rng::seed_from_u64(1);
        let mut bytes = [0u8; 13];
        rng.fill_bytes(&mut bytes);
        assert!(bytes.iter().any(|&b| b != 0));
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>(), "a permutation");
    }

    #[test]
    fn kernel_randomness_differs_between_calls() {
        let mut first = [0u8; 32];
        let mut second = [0u8; 32];
        fill_bytes(&mut first).expect("/dev/urandom readable");
        fill_bytes(&mut second).expect("/dev/urandom readable");
        assert_ne!(
            first, second,
            "two 256-bit draws collide with probability 2^-256"
        );
        assert_ne!(u64().expect("u64"), u64().expect("u64"));
        let mut rng = Rng::from_entropy().expect("seeded");
        assert_ne!(rng.next_u64(), rng.next_u64());
    }
}
