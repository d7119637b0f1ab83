//! Shortest round-trip formatting of finite f64 into a stack buffer, in a form that always
//! re-parses as a float (it keeps a `.0` or an exponent). The text is exactly what std's
//! `{:?}` prints (tests compare the two on millions of values), but several times faster.
//!
//! The digits come from Raffaello Giulietti's Schubfach algorithm ("The Schubfach way to render
//! doubles", 2020): scale the value and the bounds of its rounding interval by a 126-bit
//! approximation of a power of ten (round-to-odd), then pick the shortest decimal inside.
//! The powers of ten are computed exactly with a small big-integer routine, each once, on
//! first use. Parsing uses Eisel-Lemire with 128-bit powers of five computed the same way.
//!
//! Must not: allocate per call, or be called with a non-finite value (callers check; it asserts).

use std::fmt::Write as _;
use std::sync::OnceLock;

/// Bytes of the buffer a formatted f64 is written into: sign, 17 digits, point, up to 5 zeros,
/// `e-308` is at most 26; the layout also stores whole 8- and 16-byte words past the text (up
/// to sign + 23 bytes), which the caller then cuts off.
pub(crate) const FLOAT_BYTES_MAX: usize = 32;
/// Longest text a formatted f64 can have: `-2.2250738585072014e-308` (sign, 17 digits, point,
/// `e-308`); the plain forms are shorter (`-0.0001234567890123456` is 23 bytes).
pub(crate) const FLOAT_TEXT_BYTES_MAX: usize = 24;

/// Smallest and largest decimal exponent `e` whose 10^e the algorithm needs.
const POW10_EXPONENT_MIN: i32 = -292;
const POW10_EXPONENT_MAX: i32 = 324;
const POW10_COUNT: usize = (POW10_EXPONENT_MAX - POW10_EXPONENT_MIN + 1) as usize;

/// Binary exponent of the smallest subnormal: v = c * 2^Q_MIN.
const Q_MIN: i32 = -1074;
/// Significand of the smallest normal binade (the hidden bit alone).
const C_MIN: u64 = 1 << 52;
const MASK_63: u64 = (1 << 63) - 1;

/// floor(q * log10(2)), exact for |q| <= 5456721.
const fn floor_log10_pow2(q: i32) -> i32 {
    ((q as i64 * 661_971_961_083) >> 41) as i32
}

/// floor(q * log10(2) + log10(3/4)), for the lower boundary of a power of two.
fn floor_log10_three_quarters_pow2(q: i32) -> i32 {
    ((i64::from(q) * 661_971_961_083 - 274_743_187_321) >> 41) as i32
}

/// floor(e * log2(10)), exact for |e| <= 1838394.
const fn floor_log2_pow10(e: i32) -> i32 {
    ((e as i64 * 913_124_641_741) >> 38) as i32
}

/// A little-endian big unsigned integer, only as large as the table needs.
struct Big {
    words: Vec<u64>,
}

impl Big {
    fn one() -> Big {
        Big { words: vec![1] }
    }

    fn power(base: u64, exponent: u32) -> Big {
        let mut big = Big::one();
        for _ in 0..exponent {
            big.mul_small(base);
        }
        big
    }

    fn mul_small(&mut self, factor: u64) {
        let mut carry = 0u128;
        for word in &mut self.words {
            let product = u128::from(*word) * u128::from(factor) + carry;
            *word = product as u64;
            carry = product >> 64;
        }
        if carry != 0 {
            self.words.push(carry as u64);
        }
    }

    fn bits(&self) -> u32 {
        let top = self.words.len() - 1;
        assert!(self.words[top] != 0, "Big keeps no leading zero words");
        64 * top as u32 + (64 - self.words[top].leading_zeros())
    }

    fn bit(&self, index: u32) -> bool {
        let word = (index / 64) as usize;
        word < self.words.len() && (self.words[word] >> (index % 64)) & 1 == 1
    }

    /// Bits [low, low + 128) as a u128.
    fn bits_from(&self, low: u32) -> u128 {
        (0..128).fold(0u128, |acc, i| acc | (u128::from(self.bit(low + i)) << i))
    }

    /// floor(2^power / self), for a `self` that is not a power of two and a quotient that
    /// fits in 128 bits.
    #[cfg(test)]
    fn divide_power_of_two(&self, power: u32) -> u128 {
        // Binary long division over the bits of 2^power. Until 2^start the partial dividend is
        // below `self`, so start there with a zero quotient; the remainder stays < self.
        let start = self.bits() - 1;
        assert!(power >= start, "quotient below one");
        let mut remainder = Big {
            words: vec![0; self.words.len() + 1],
        };
        remainder.words[(start / 64) as usize] |= 1 << (start % 64);
        assert!(!remainder.at_least(self), "divisor is a power of two");
        let mut quotient = 0u128;
        for _ in start..power {
            remainder.shift_left_one();
            quotient <<= 1;
            if remainder.at_least(self) {
                remainder.subtract(self);
                quotient |= 1;
            }
        }
        quotient
    }

    /// floor(2^power / self) as a big integer, for a `self` that is not a power of two.
    fn divide_power_of_two_big(&self, power: u32) -> Big {
        let start = self.bits() - 1;
        assert!(power >= start, "quotient below one");
        let mut remainder = Big {
            words: vec![0; self.words.len() + 1],
        };
        remainder.words[(start / 64) as usize] |= 1 << (start % 64);
        assert!(!remainder.at_least(self), "divisor is a power of two");
        let quotient_bits = power - start;
        let mut quotient = Big {
            words: vec![0; (quotient_bits / 64 + 1) as usize],
        };
        for i in (0..quotient_bits).rev() {
            remainder.shift_left_one();
            if remainder.at_least(self) {
                remainder.subtract(self);
                quotient.words[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
        while quotient.words.len() > 1 && quotient.words[quotient.words.len() - 1] == 0 {
            quotient.words.pop();
        }
        quotient
    }

    fn add_one(&mut self) {
        for word in &mut self.words {
            let (sum, carry) = word.overflowing_add(1);
            *word = sum;
            if !carry {
                return;
            }
        }
        self.words.push(1);
    }

    fn shift_left_one(&mut self) {
        let mut carry = 0;
        for word in &mut self.words {
            let next = *word >> 63;
            *word = (*word << 1) | carry;
            carry = next;
        }
        assert!(carry == 0, "remainder overflow in Big::divide_power_of_two");
    }

    fn at_least(&self, other: &Big) -> bool {
        for i in (0..self.words.len().max(other.words.len())).rev() {
            let a = self.words.get(i).copied().unwrap_or(0);
            let b = other.words.get(i).copied().unwrap_or(0);
            if a != b {
                return a > b;
            }
        }
        true
    }

    fn subtract(&mut self, other: &Big) {
        let mut borrow = false;
        for i in 0..self.words.len() {
            let b = other.words.get(i).copied().unwrap_or(0);
            let (d1, o1) = self.words[i].overflowing_sub(b);
            let (d2, o2) = d1.overflowing_sub(u64::from(borrow));
            self.words[i] = d2;
            borrow = o1 || o2;
        }
        assert!(!borrow, "Big::subtract underflow");
    }
}

/// g(e) = floor(10^e * 2^(125 - floor(log2(10^e)))) + 1, a 126-bit over-approximation of 10^e,
/// for e in [POW10_EXPONENT_MIN, POW10_EXPONENT_MAX], indexed by e - POW10_EXPONENT_MIN. Built
/// exactly at compile time ([`pow10_table`]), so a lookup is one load with no first-use check.
static POW10_TABLE: [u128; POW10_COUNT] = pow10_table();

/// Words of the big integers [`pow10_table`] works with: 10^324 < 2^1077 needs 17 words, and
/// the reciprocals start from 2^(64 * 18 - 1).
const TABLE_WORDS: usize = 18;

#[inline(always)]
fn pow10_entry(e: i32) -> u128 {
    POW10_TABLE[(e - POW10_EXPONENT_MIN) as usize]
}

/// Number of significant bits of a little-endian big integer (0 for zero).
const fn const_bits(words: &[u64; TABLE_WORDS]) -> u32 {
    let mut i = TABLE_WORDS;
    while i > 0 {
        i -= 1;
        if words[i] != 0 {
            return 64 * i as u32 + 64 - words[i].leading_zeros();
        }
    }
    0
}

/// Multiplies a little-endian big integer by ten in place; the table words must hold it.
const fn const_times_ten(words: &mut [u64; TABLE_WORDS]) {
    let mut carry = 0u128;
    let mut i = 0;
    while i < TABLE_WORDS {
        let product = words[i] as u128 * 10 + carry;
        words[i] = product as u64;
        carry = product >> 64;
        i += 1;
    }
    assert!(carry == 0, "a power of ten outgrew the table words");
}

/// Divides a little-endian big integer by five in place, rounding down (the remainder is
/// dropped: floor(floor(x) / 5) = floor(x / 5), so repeated division stays exact).
const fn const_divide_by_five(words: &mut [u64; TABLE_WORDS]) {
    let mut remainder = 0u128;
    let mut i = TABLE_WORDS;
    while i > 0 {
        i -= 1;
        let current = (remainder << 64) | words[i] as u128;
        words[i] = (current / 5) as u64;
        remainder = current % 5;
    }
}

/// Bits [low, low + 128) of a little-endian big integer, as a u128.
const fn const_bits_from(words: &[u64; TABLE_WORDS], low: u32) -> u128 {
    let mut result = 0u128;
    let mut i = 0;
    while i < 128 {
        let bit = low + i;
        let word = (bit / 64) as usize;
        if word < TABLE_WORDS && (words[word] >> (bit % 64)) & 1 == 1 {
            result |= 1 << i;
        }
        i += 1;
    }
    result
}

/// The top 126 bits of a big integer whose highest set bit is `top` (< 2^126 values shift up).
const fn const_top_126(words: &[u64; TABLE_WORDS], top: u32) -> u128 {
    if top <= 125 {
        const_bits_from(words, 0) << (125 - top)
    } else {
        const_bits_from(words, top - 125)
    }
}

/// Computes every g(e) exactly. For e >= 0 it keeps 10^e as a big integer (one multiply by ten
/// per step) and takes its top 126 bits. For e = -m < 0, g is floor(2^(125 + b) / 5^m) + 1
/// with b the bit length of 5^m (as 10^-m = 2^-m / 5^m): it keeps Q = floor(2^N / 5^m), one
/// division by five per step (floor(floor(x) / 5) = floor(x / 5)), and shifts Q right by
/// N - 125 - b, again exact because floor(floor(x) / 2^s) = floor(x / 2^s).
const fn pow10_table() -> [u128; POW10_COUNT] {
    let mut table = [0u128; POW10_COUNT];
    let mut power = [0u64; TABLE_WORDS];
    power[0] = 1;
    let mut e = 0;
    while e <= POW10_EXPONENT_MAX {
        let top = const_bits(&power) - 1;
        assert!(top as i32 == floor_log2_pow10(e));
        table[(e - POW10_EXPONENT_MIN) as usize] = const_top_126(&power, top) + 1;
        const_times_ten(&mut power);
        e += 1;
    }
    const N: u32 = 64 * TABLE_WORDS as u32 - 1;
    let mut quotient = [0u64; TABLE_WORDS];
    quotient[TABLE_WORDS - 1] = 1 << 63;
    let mut m = 1;
    while m <= -POW10_EXPONENT_MIN {
        const_divide_by_five(&mut quotient);
        // 5^m is not a power of two, so its bit length is ceil(log2(5^m)).
        let five_bits = (-m - floor_log2_pow10(-m)) as u32;
        let shift = N - 125 - five_bits;
        let top = const_bits(&quotient) - 1;
        assert!(top >= shift + 125, "the reciprocal keeps at least 126 bits");
        table[(-m - POW10_EXPONENT_MIN) as usize] = const_bits_from(&quotient, shift) + 1;
        m += 1;
    }
    table
}

/// Smallest and largest decimal exponent `k` whose 10^k the one-multiplication path needs:
/// k = KAPPA - floor(q * log10(2)) over the binary exponents q of normal doubles.
const CACHE_EXPONENT_MIN: i32 = -290;
const CACHE_EXPONENT_MAX: i32 = 326;
const CACHE_COUNT: usize = (CACHE_EXPONENT_MAX - CACHE_EXPONENT_MIN + 1) as usize;

/// cache(k) = ceil(10^k * 2^(127 - floor(log2(10^k)))): 10^k normalized to 128 bits with the
/// top bit set, rounded up (exact for the small k where it fits), indexed by
/// k - CACHE_EXPONENT_MIN. Built exactly at compile time ([`cache_table`]).
static CACHE_TABLE: [u128; CACHE_COUNT] = cache_table();

#[inline(always)]
fn cache_entry(k: i32) -> u128 {
    CACHE_TABLE[(k - CACHE_EXPONENT_MIN) as usize]
}

/// True when any of the bits [0, count) of a little-endian big integer is set.
const fn const_any_below(words: &[u64; TABLE_WORDS], count: u32) -> bool {
    let mut i = 0;
    while i < count {
        if (words[(i / 64) as usize] >> (i % 64)) & 1 == 1 {
            return true;
        }
        i += 1;
    }
    false
}

/// Computes every cache(k) exactly, the same way as [`pow10_table`] (10^k kept as a big
/// integer for k >= 0, floor(2^N / 5^m) kept for k = -m < 0), but with 128 bits and rounding
/// up: 5^m never divides a power of two, so every negative entry is floor + 1.
const fn cache_table() -> [u128; CACHE_COUNT] {
    let mut table = [0u128; CACHE_COUNT];
    let mut power = [0u64; TABLE_WORDS];
    power[0] = 1;
    let mut k = 0;
    while k <= CACHE_EXPONENT_MAX {
        let top = const_bits(&power) - 1;
        assert!(top as i32 == floor_log2_pow10(k));
        let (entry, inexact) = if top <= 127 {
            (const_bits_from(&power, 0) << (127 - top), false)
        } else {
            (
                const_bits_from(&power, top - 127),
                const_any_below(&power, top - 127),
            )
        };
        assert!(entry >> 127 == 1 && entry != u128::MAX);
        table[(k - CACHE_EXPONENT_MIN) as usize] = entry + inexact as u128;
        const_times_ten(&mut power);
        k += 1;
    }
    const N: u32 = 64 * TABLE_WORDS as u32 - 1;
    let mut quotient = [0u64; TABLE_WORDS];
    quotient[TABLE_WORDS - 1] = 1 << 63;
    let mut m = 1;
    while m <= -CACHE_EXPONENT_MIN {
        const_divide_by_five(&mut quotient);
        let five_bits = (-m - floor_log2_pow10(-m)) as u32;
        let shift = N - 127 - five_bits;
        assert!(
            const_bits(&quotient) - 1 == shift + 127,
            "the reciprocal has 128 bits"
        );
        let entry = const_bits_from(&quotient, shift);
        assert!(entry != u128::MAX);
        table[(-m - CACHE_EXPONENT_MIN) as usize] = entry + 1;
        m += 1;
    }
    table
}

/// cache(k) computed directly with `Big` (the reference the compile-time table is checked
/// against).
#[cfg(test)]
fn cache_compute(k: i32) -> u128 {
    assert!((CACHE_EXPONENT_MIN..=CACHE_EXPONENT_MAX).contains(&k));
    if k >= 0 {
        let power = Big::power(10, k.unsigned_abs());
        let top = power.bits() - 1;
        if top <= 127 {
            return power.bits_from(0) << (127 - top);
        }
        let inexact = (0..top - 127).any(|i| power.bit(i));
        return power.bits_from(top - 127) + u128::from(inexact);
    }
    // 10^-m * 2^(127 - floor(log2(10^-m))) is 2^(127 + bits(5^m)) / 5^m, never an integer.
    let five = Big::power(5, k.unsigned_abs());
    five.divide_power_of_two(127 + five.bits()) + 1
}

/// g(e) computed directly with `Big` (the reference the compile-time table is checked against).
#[cfg(test)]
fn pow10_compute(e: i32) -> u128 {
    assert!((POW10_EXPONENT_MIN..=POW10_EXPONENT_MAX).contains(&e));
    if e >= 0 {
        let power = Big::power(10, e.unsigned_abs());
        let p = power.bits() - 1;
        assert_eq!(p as i32, floor_log2_pow10(e));
        let g = if p <= 125 {
            power.bits_from(0) << (125 - p)
        } else {
            power.bits_from(p - 125)
        };
        return g + 1;
    }
    // 10^-m * 2^(125 - p) with p = -m - bits(5^m) is 2^(125 + bits(5^m)) / 5^m.
    let m = -e;
    let five = Big::power(5, m.unsigned_abs());
    let bits = five.bits();
    assert_eq!(-m - bits as i32, floor_log2_pow10(-m));
    five.divide_power_of_two(125 + bits) + 1
}

/// floor(g * cp / 2^127), with the lowest bit set when the discarded part is non-zero
/// (round to odd keeps the comparisons below exact).
#[inline(always)]
fn round_to_odd(g: u128, cp: u64) -> u64 {
    let g1 = (g >> 63) as u64;
    let g0 = (g as u64) & MASK_63;
    let x1 = ((u128::from(g0) * u128::from(cp)) >> 64) as u64;
    let y = u128::from(g1) * u128::from(cp);
    let (y0, y1) = (y as u64, (y >> 64) as u64);
    let z = (y0 >> 1) + x1;
    let vbp = y1 + (z >> 63);
    vbp | ((z & MASK_63) + MASK_63) >> 63
}

/// The shortest decimal `f * 10^k` that rounds to `c * 2^q` (c > 0), closest to it on ties.
#[inline(always)]
fn to_decimal(q: i32, c: u64) -> (u64, i32) {
    let out = c & 1;
    let cb = c << 2;
    let cbr = cb + 2;
    let (cbl, k) = if c != C_MIN || q == Q_MIN {
        (cb - 2, floor_log10_pow2(q))
    } else {
        // The gap below a power of two is half as wide as the gap above.
        (cb - 1, floor_log10_three_quarters_pow2(q))
    };
    let h = q + floor_log2_pow10(-k) + 2;
    debug_assert!((1..=5).contains(&h), "Schubfach shift out of range: {h}");
    let g = pow10_entry(-k);
    let vb = round_to_odd(g, cb << h);
    let vbl = round_to_odd(g, cbl << h);
    let vbr = round_to_odd(g, cbr << h);
    let s = vb >> 2;
    if s >= 100 {
        // Try one digit fewer first: a multiple of ten inside the interval.
        let sp10 = 10 * (s / 10);
        let tp10 = sp10 + 10;
        let upin = vbl + out <= sp10 << 2;
        let wpin = (tp10 << 2) + out <= vbr;
        if upin != wpin {
            return (if upin { sp10 } else { tp10 }, k);
        }
    }
    let t = s + 1;
    let uin = vbl + out <= s << 2;
    let win = (t << 2) + out <= vbr;
    if uin != win {
        return (if uin { s } else { t }, k);
    }
    // Both candidates are inside: the closer one; on a tie the upper one, as std does.
    let twice = (s + t) << 1;
    let pick_s = vb < twice;
    (if pick_s { s } else { t }, k)
}

/// The upper 128 bits of the 192-bit product `x * y`.
#[inline(always)]
fn mul_upper_128(x: u64, y: u128) -> u128 {
    let high = u128::from(x) * (y >> 64);
    let low = (u128::from(x) * (y & u128::from(u64::MAX))) >> 64;
    // x * y < 2^192, so the upper part cannot overflow.
    high + low
}

/// For the scaled value floor(two_f / 2 * 2^q * 10^k) (two_f * cache shifted right by
/// 128 - beta): its parity, and whether it is an integer. Only the lower 128 bits of the
/// product matter; of those below the integer part, only the top `beta` of the low word lie
/// above the error the rounded-up cache adds (< two_f < 2^55), the same bound Dragonbox uses.
#[inline(always)]
fn mul_parity(two_f: u64, cache: u128, beta: u32) -> (bool, bool) {
    let product = u128::from(two_f).wrapping_mul(cache);
    let parity = (product >> (128 - beta)) & 1 == 1;
    let is_integer = (product << beta) >> 64 == 0;
    (parity, is_integer)
}

/// Position of the first digit the one-multiplication path tries to drop, as in Dragonbox:
/// with k = KAPPA - floor(q * log10(2)), the scaled interval width 2^q * 10^k lies in
/// [10^KAPPA, 10^(KAPPA + 1)).
const KAPPA: i32 = 2;
/// 10^(KAPPA + 1) and 10^KAPPA.
const BIG_DIVISOR: u32 = 1000;
const SMALL_DIVISOR: u32 = 100;

/// The shortest decimal `f * 10^k` that rounds to `c * 2^q`, closest to it, for a normal `c`
/// that is not a power of two (its rounding interval is symmetric), after Junekey Jeon's
/// Dragonbox ("Dragonbox: A New Floating-Point Binary-to-Decimal Conversion Algorithm", 2020):
/// one 64x128 multiplication scales the interval's right end by 10^k; the interval is narrower
/// than 10^(KAPPA + 1), so it holds at most one multiple of that, found with one division.
/// Otherwise the answer has one more digit and is the multiple of 10^KAPPA nearest the value;
/// a second, cheaper multiplication settles the rare cases the integer parts cannot.
///
/// This is the common case without branches on the data: the two outcomes (the multiple of
/// 10^(KAPPA + 1), or one digit more) are both computed and one is selected, because which one
/// applies is close to a coin flip (a branch on it mispredicts about a third of the time).
/// The cases that need more than the integer parts (a remainder of zero, exactly `delta`, or a
/// dropped fraction that may be exactly half) are about one in a hundred; they go to
/// [`to_decimal_exact_cases`], which handles every input.
#[inline(always)]
fn to_decimal_one_multiply(q: i32, c: u64) -> (u64, i32) {
    let (minus_k, cache, beta) = scale_for(q, c);
    let upper = mul_upper_128(((c << 1) | 1) << beta, cache);
    let z = (upper >> 64) as u64;
    let delta = ((cache >> 64) as u64 >> (63 - beta)) as u32;
    let significand = z / u64::from(BIG_DIVISOR);
    let r = (z - significand * u64::from(BIG_DIVISOR)) as u32;
    // Only meaningful when r > delta (then it does not wrap); see the exact version.
    let dist = r.wrapping_sub(delta / 2).wrapping_add(SMALL_DIVISOR / 2);
    let digit = dist / SMALL_DIVISOR;
    let short = r < delta;
    // Bitwise, not short-circuit: `short` is unpredictable, the other terms almost never true.
    let exact_needed = (r == 0) | (r == delta) | (!short & (dist == digit * SMALL_DIVISOR));
    if exact_needed {
        // Same scale as below: a short answer gets its zero digit back.
        let (f, k) = to_decimal_exact_cases(q, c);
        return if k > minus_k + KAPPA {
            (f * 10, k - 1)
        } else {
            (f, k)
        };
    }
    // The short answer `significand * 10^(KAPPA + 1)` written at the scale of the long one.
    let last = if short { 0 } else { digit };
    (significand * 10 + u64::from(last), minus_k + KAPPA)
}

/// The scale both one-multiplication paths work at for `c * 2^q` (a normal double whose
/// interval is symmetric): `minus_k` (the decimal exponent of the result is `minus_k + KAPPA`
/// or one more), the 128-bit cached power of ten, and the shift `beta` applied before the
/// multiplication.
#[inline(always)]
fn scale_for(q: i32, c: u64) -> (i32, u128, u32) {
    assert!(
        c > C_MIN && c < 2 * C_MIN,
        "symmetric interval of a normal double"
    );
    // One load instead of two logarithm approximations (four multiplications and shifts).
    let scale = SCALE_TABLE[(q - Q_NORMAL_MIN) as usize];
    let minus_k = -(i32::from(scale as u16) + CACHE_EXPONENT_MIN);
    let beta = scale >> 16;
    debug_assert!(
        (6..=9).contains(&beta),
        "Dragonbox shift out of range: {beta}"
    );
    (minus_k, cache_entry(-minus_k), beta)
}

/// Binary exponent `q` of the smallest normal double (c * 2^q, c of 53 bits).
const Q_NORMAL_MIN: i32 = 1 - 1075;
/// Binary exponents of normal doubles (biased exponents 1 to 2046).
const Q_NORMAL_COUNT: usize = 2046;

/// Per binary exponent of a normal double (indexed by q - Q_NORMAL_MIN), the scale
/// [`scale_for`] needs: the index of 10^-minus_k in [`CACHE_TABLE`] in the low 16 bits, with
/// minus_k = floor(q * log10(2)) - KAPPA, and the shift beta = q + floor(-minus_k * log2(10))
/// above them. Built at compile time from the same formulas ([`scale_formula`]).
static SCALE_TABLE: [u32; Q_NORMAL_COUNT] = {
    let mut table = [0u32; Q_NORMAL_COUNT];
    let mut i = 0;
    while i < Q_NORMAL_COUNT {
        let (minus_k, beta) = scale_formula(Q_NORMAL_MIN + i as i32);
        let index = -minus_k - CACHE_EXPONENT_MIN;
        assert!(index >= 0 && index < CACHE_COUNT as i32 && beta >= 6 && beta <= 9);
        table[i] = index as u32 | (beta as u32) << 16;
        i += 1;
    }
    table
};

/// minus_k and beta for the binary exponent `q`, computed (see [`SCALE_TABLE`]).
const fn scale_formula(q: i32) -> (i32, i32) {
    let minus_k = floor_log10_pow2(q) - KAPPA;
    (minus_k, q + floor_log2_pow10(-minus_k))
}

/// [`to_decimal_one_multiply`] for every input, rare cases included: when the right end is
/// itself the candidate (r == 0), when the left end decides (r == delta), and when the dropped
/// fraction may be exactly half a unit.
#[cold]
#[inline(never)]
fn to_decimal_exact_cases(q: i32, c: u64) -> (u64, i32) {
    let (minus_k, cache, beta) = scale_for(q, c);
    // Round half to even: the interval is closed when c is even.
    let closed = c & 1 == 0;
    let two_c = c << 1;
    let upper = mul_upper_128((two_c | 1) << beta, cache);
    let z = (upper >> 64) as u64;
    let z_is_integer = upper as u64 == 0;
    let delta = ((cache >> 64) as u64 >> (63 - beta)) as u32;
    debug_assert!((SMALL_DIVISOR..BIG_DIVISOR).contains(&delta));
    let mut significand = z / u64::from(BIG_DIVISOR);
    let mut r = (z - significand * u64::from(BIG_DIVISOR)) as u32;
    if r < delta {
        // The right end itself is the candidate and the interval excludes it. `r == 0` is
        // tested first on its own: it is rare, so the branch predicts well (`closed` is a coin
        // flip).
        if r != 0 || !z_is_integer || closed {
            return (significand, minus_k + KAPPA + 1);
        }
        significand -= 1;
        r = BIG_DIVISOR;
    } else if r == delta {
        // Inside exactly when the left end's integer part is odd (then it lies strictly
        // below), or the left end is that multiple and the interval is closed.
        let (parity, is_integer) = mul_parity(two_c - 1, cache, beta);
        if parity || (is_integer && closed) {
            return (significand, minus_k + KAPPA + 1);
        }
    }
    // One digit more: round the value (the interval's centre, delta / 2 below its right end)
    // to the nearest multiple of 10^KAPPA, halves up, from the integer parts.
    let dist = r - delta / 2 + SMALL_DIVISOR / 2;
    let approximate_parity = (dist ^ (SMALL_DIVISOR / 2)) & 1 == 1;
    let divisible = dist % SMALL_DIVISOR == 0;
    let mut f = significand * 10 + u64::from(dist / SMALL_DIVISOR);
    if divisible {
        // The dropped fraction is 0 or exactly half a unit: the value's own integer part
        // decides. An exact tie would round up, as std does; for doubles it cannot happen
        // (a tie needs 2^q dividing (n + 1/2) * 10^j with 2^q >= 10^j).
        let (parity, _) = mul_parity(two_c, cache, beta);
        if parity != approximate_parity {
            f -= 1;
        }
    }
    (f, minus_k + KAPPA)
}

/// Decimal digits of the significand [`shortest`] returns.
const SIGNIFICAND_DIGITS: usize = 17;
/// 10^16: the smallest 17-digit significand.
const SIGNIFICAND_MIN: u64 = 10_000_000_000_000_000;

/// Shortest decimal of a positive, finite, normal `v` that is not a small integer, as
/// `(f, k)` with `f * 10^k == decimal` and `f` padded with trailing zeros to exactly 17 digits:
/// the writer counts the zeros from the digits it has already computed, which is cheaper than
/// dividing them off.
#[inline(always)]
fn shortest(c: u64, q: i32) -> (u64, i32) {
    if c == C_MIN {
        // A power of two: the gap below is half the gap above. Rare; Schubfach handles it.
        return shortest_schubfach(c, q);
    }
    let (f, k) = to_decimal_one_multiply(q, c);
    // Always at the scale 10^k with k = floor(q * log10(2)), where 2^q * 10^-k lies in
    // [1, 10), so f ~ c * 2^q * 10^-k lies in [2^52, 10 * 2^53): 16 or 17 digits. Asserted
    // after padding, on the leading digit [`significand_words`] computes anyway.
    debug_assert!((SIGNIFICAND_MIN / 10..SIGNIFICAND_MIN * 10).contains(&f));
    // A select, not a branch: the digit count follows the data and would mispredict often.
    let short = f < SIGNIFICAND_MIN;
    (if short { f * 10 } else { f }, k - i32::from(short))
}

/// [`shortest`] through Schubfach: for powers of two, and the reference the tests compare the
/// one-multiplication path with.
#[inline(never)]
fn shortest_schubfach(c: u64, q: i32) -> (u64, i32) {
    let (f, k) = to_decimal(q, c);
    // Schubfach's candidates lie in [2^52, 10 * 2^53): 16 or 17 digits.
    assert!(
        (SIGNIFICAND_MIN / 10..SIGNIFICAND_MIN * 10).contains(&f),
        "Schubfach significand {f} outside 16..=17 digits"
    );
    let short = f < SIGNIFICAND_MIN;
    (if short { f * 10 } else { f }, k - i32::from(short))
}

// ---------------------------------------------------------------------------------------------
// Parsing: Eisel-Lemire (Daniel Lemire, "Number Parsing at a Gigabyte per Second", 2021).

/// Decimal exponents covered by the 128-bit powers of five.
const POW5_EXPONENT_MIN: i32 = -342;
const POW5_EXPONENT_MAX: i32 = 308;
const POW5_COUNT: usize = (POW5_EXPONENT_MAX - POW5_EXPONENT_MIN + 1) as usize;

/// 5^q normalized to 128 bits with the top bit set: truncated for q >= 0; for q < 0 the
/// reciprocal, rounded up (then truncated), as the algorithm's error analysis requires.
/// Computed exactly, once per exponent, on first use.
#[inline(always)]
fn pow5_entry(q: i32) -> u128 {
    static TABLE: [OnceLock<u128>; POW5_COUNT] = [const { OnceLock::new() }; POW5_COUNT];
    *TABLE[(q - POW5_EXPONENT_MIN) as usize].get_or_init(|| pow5_compute(q))
}

fn pow5_compute(q: i32) -> u128 {
    assert!((POW5_EXPONENT_MIN..=POW5_EXPONENT_MAX).contains(&q));
    let five = Big::power(5, q.unsigned_abs());
    let bits = five.bits();
    if q >= 0 {
        return if bits <= 128 {
            five.bits_from(0) << (128 - bits)
        } else {
            five.bits_from(bits - 128)
        };
    }
    let power = if q >= -27 { bits + 127 } else { 2 * bits + 128 };
    let mut quotient = five.divide_power_of_two_big(power);
    quotient.add_one();
    let quotient_bits = quotient.bits();
    assert!(quotient_bits >= 128, "reciprocal of 5^{} too short", -q);
    quotient.bits_from(quotient_bits - 128)
}

/// floor(q * log2(10)) + 63, the binary exponent estimate of 10^q.
fn lemire_power(q: i32) -> i32 {
    (((152_170 + 65_536) * q) >> 16) + 63
}

/// The f64 nearest to `w * 10^q` (w exact), or `None` when the 128-bit approximation cannot
/// decide, or the result is subnormal or infinite: the caller then asks std's parser.
#[inline]
pub(crate) fn eisel_lemire(w: u64, q: i64) -> Option<f64> {
    if w == 0 {
        return Some(0.0);
    }
    if !(i64::from(POW5_EXPONENT_MIN)..=i64::from(POW5_EXPONENT_MAX)).contains(&q) {
        return None;
    }
    let q = q as i32;
    let lz = w.leading_zeros();
    let w = w << lz;
    let entry = pow5_entry(q);
    let product = u128::from(w) * (entry >> 64);
    let (mut lo, mut hi) = (product as u64, (product >> 64) as u64);
    // 55 bits of precision: mantissa, hidden bit, rounding bit and one more.
    const PRECISION_MASK: u64 = u64::MAX >> 55;
    if hi & PRECISION_MASK == PRECISION_MASK {
        let low = u128::from(w) * (entry & u128::from(u64::MAX));
        let low_hi = (low >> 64) as u64;
        lo = lo.wrapping_add(low_hi);
        if low_hi > lo {
            hi = hi.checked_add(1)?;
        }
    }
    if lo == u64::MAX && !(-27..=55).contains(&q) {
        return None;
    }
    let upper = (hi >> 63) as i32;
    let shift = upper + 64 - 52 - 3;
    let mut mantissa = hi >> shift;
    let mut power2 = lemire_power(q) + upper - lz as i32 + 1023;
    if power2 <= 0 {
        return None;
    }
    // Exactly halfway between two floats: round to even instead of up.
    if lo <= 1 && (-4..=23).contains(&q) && mantissa & 3 == 1 && (mantissa << shift) == hi {
        mantissa &= !1;
    }
    mantissa += mantissa & 1;
    mantissa >>= 1;
    if mantissa >= 2 << 52 {
        mantissa = 1 << 52;
        power2 += 1;
    }
    mantissa &= !(1 << 52);
    if power2 >= 0x7ff {
        return None;
    }
    Some(f64::from_bits(mantissa | (power2 as u64) << 52))
}

/// "00" to "99", for writing integers two digits at a time.
pub(super) static DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// 10^i for i in 0..20.
const POW10_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Number of decimal digits of `v` (1 for 0).
#[inline]
pub(crate) fn decimal_length(v: u64) -> usize {
    // bits * log10(2) approximates the digit count from below by at most one.
    let bits = 64 - (v | 1).leading_zeros();
    let guess = ((bits * 1233) >> 12) as usize;
    (guess + usize::from(guess < 20 && v >= POW10_U64[guess])).max(1)
}

/// Writes the `count` low digits of `v` (< 10^count, zero-padded) ending at `out[end]`.
#[inline]
fn write_digits_to(mut v: u32, out: &mut [u8], end: usize, count: usize) {
    let mut i = end;
    let start = end - count;
    while i >= start + 2 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if i > start {
        out[start] = b'0' + (v % 10) as u8;
    }
}

/// ASCII '0' in each of the eight byte lanes of a u64.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// The eight decimal digits of `v` (< 10^8, zero-padded) as the byte lanes of a u64, the first
/// digit in the lowest lane (so `to_le_bytes` gives text order), each lane 0 to 9. No loop:
/// the digits are split in lanes (4+4, then 2+2 per half, then 1+1 per pair), each split done
/// for all lanes at once with a multiply-shift reciprocal.
#[inline(always)]
fn eight_lanes(v: u32) -> u64 {
    assert!(v < 100_000_000, "eight_lanes takes at most eight digits");
    // Each split of a lane x into (x / d, x % d) is written as x * 2^w + (x / d) * (1 - d * 2^w)
    // with w the new lane width: the quotient stays low, x - d * (x / d) lands in the high lane.
    // Lanes of 32 bits: the high four digits first (lowest address, little-endian).
    let x = u64::from(v);
    let y = (x << 32).wrapping_add((x / 10_000).wrapping_mul(1u64.wrapping_sub(10_000 << 32)));
    // Per 32-bit lane u < 10^4: u * 10486 >> 20 == u / 100.
    let hundreds = ((y * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let z = (y << 16).wrapping_add(hundreds.wrapping_mul(1u64.wrapping_sub(100 << 16)));
    // Per 16-bit lane w < 100: w * 103 >> 10 == w / 10.
    let tens = ((z * 103) >> 10) & 0x000f_000f_000f_000f;
    (z << 8).wrapping_add(tens.wrapping_mul(1u64.wrapping_sub(10 << 8)))
}

/// Writes exactly eight digits of `v` (< 10^8, zero-padded) with one store.
#[inline(always)]
fn write_eight(v: u32, out: &mut [u8; 8]) {
    *out = (eight_lanes(v) + ASCII_ZEROS).to_le_bytes();
}

/// The eight bytes of `out` from `at`, as an array.
#[inline(always)]
fn eight_at(out: &mut [u8], at: usize) -> &mut [u8; 8] {
    match (&mut out[at..at + 8]).try_into() {
        Ok(window) => window,
        Err(_) => unreachable!("an eight-byte window"),
    }
}

/// Writes the `count` decimal digits of `v` (at most 17) into `out` from index 0.
#[inline(always)]
fn write_digits(v: u64, count: usize, out: &mut [u8]) {
    debug_assert_eq!(count, decimal_length(v));
    assert!(
        count <= 17,
        "write_digits handles float significands and exponents only"
    );
    if count > 8 {
        // The low eight digits in 32-bit arithmetic, then the rest: for the usual 16 and 17
        // digits, eight more (and one) without a loop.
        let high = (v / 100_000_000) as u32;
        let low = (v % 100_000_000) as u32;
        write_eight(low, eight_at(out, count - 8));
        match count {
            17 => {
                out[0] = b'0' + (high / 100_000_000) as u8;
                write_eight(high % 100_000_000, eight_at(out, 1));
            }
            16 => write_eight(high, eight_at(out, 0)),
            _ => write_digits_to(high, out, count - 8, count - 8),
        }
    } else {
        write_digits_to(v as u32, out, count, count);
    }
}

/// Formats `v` (finite) as the shortest decimal that parses back to the same f64, in the form
/// std's `{:?}` uses: plain decimal with at least one fractional digit for 1e-4 <= |v| < 1e16,
/// `d.ddde±x` otherwise.
pub(crate) fn format_f64(v: f64, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> &str {
    let len = format_ascii(v, buffer);
    match std::str::from_utf8(&buffer[..len]) {
        Ok(text) => text,
        Err(_) => unreachable!("float formatting writes ASCII"),
    }
}

/// Writes `v` (finite) as ASCII into `buffer`; returns the length.
#[inline(always)]
pub(crate) fn format_ascii(v: f64, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> usize {
    let bits = v.to_bits();
    let sign = (bits >> 63) as usize;
    // Written unconditionally; a positive value overwrites it.
    buffer[0] = b'-';
    let fraction = bits & (C_MIN - 1);
    let biased = ((bits >> 52) & 0x7ff) as i32;
    // One test for both rare exponent fields: zero (zeros, subnormals) and all ones (asserted
    // against there: infinity or NaN).
    if (biased - 1) as u32 >= 0x7fe {
        return format_zero_or_subnormal(v, buffer);
    }
    let c = C_MIN | fraction;
    let q = biased - 1075;
    // A fixed-size window after the sign, so the layout's stores need no length checks.
    let out: &mut [u8; FLOAT_BYTES_MAX - 1] =
        match (&mut buffer[sign..sign + FLOAT_BYTES_MAX - 1]).try_into() {
            Ok(window) => window,
            Err(_) => unreachable!("the window after the sign is FLOAT_BYTES_MAX - 1 bytes"),
        };
    if (-52..0).contains(&q) && c.trailing_zeros() >= q.unsigned_abs() {
        // An integer below 2^53 is its own shortest decimal, and fewer than 17 digits.
        return sign + write_integer(c >> q.unsigned_abs(), out);
    }
    let (digits, k) = shortest(c, q);
    sign + layout(digits, k, out)
}

/// [`format_ascii`] for a zero or subnormal `v`; asserts that `v` is finite.
#[cold]
#[inline(never)]
fn format_zero_or_subnormal(v: f64, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> usize {
    assert!(v.is_finite(), "format_f64 called with a non-finite value");
    let sign = usize::from(v.is_sign_negative());
    if v == 0.0 {
        buffer[sign..sign + 3].copy_from_slice(b"0.0");
        return sign + 3;
    }
    assert!(
        v.abs() < f64::MIN_POSITIVE,
        "only zeros and subnormals come here"
    );
    // Subnormals: with so few significant bits the scaled value can have fewer than three
    // digits, outside the range where the two-candidate search is shortest; they are rare, so
    // std's formatter handles them.
    format_with_std(v, buffer).len()
}

/// Writes the integer `n` (< 2^53) as `n.0`; returns the byte count.
#[inline(always)]
fn write_integer(n: u64, out: &mut [u8]) -> usize {
    let count = decimal_length(n);
    write_digits(n, count, out);
    out[count..count + 2].copy_from_slice(b".0");
    count + 2
}

/// The eight text bytes of the 17-digit `digits` after the first, in two words, and how many
/// of the 17 digits are significant (the rest are trailing zeros).
#[inline(always)]
fn significand_words(digits: u64) -> (u8, u64, u64, usize) {
    // The high nine digits fit in a u32: their leading digit and the rest come from one 32-bit
    // division (as a u64 the compiler divides the whole by 10^16 a second time instead).
    let high = (digits / 100_000_000) as u32;
    let first = (high / 100_000_000) as u8;
    // Both ends of the 17-digit range in one check: the leading digit is 1 to 9.
    assert!((1..10).contains(&first), "{digits} is not 17 digits");
    let middle = eight_lanes(high % 100_000_000);
    let low = eight_lanes((digits % 100_000_000) as u32);
    // The last digit is the highest lane; a zero lane is a zero digit. `first` is never 0.
    // As one 128-bit word (the last digits on top), the zero digits at the end are its
    // leading zero bytes: no branch on whether the low eight digits are all zero.
    let trailing_zeros = ((u128::from(low) << 64) | u128::from(middle)).leading_zeros() / 8;
    let significant = SIGNIFICAND_DIGITS - trailing_zeros as usize;
    (first, middle + ASCII_ZEROS, low + ASCII_ZEROS, significant)
}

/// The eight text bytes of `word` with a point inserted before byte `index` (< 8): the bytes
/// from `index` on move one place up and the last one falls off.
#[inline(always)]
fn insert_point(word: u64, index: usize) -> u64 {
    assert!(index < 8, "insert_point inside one word");
    // Two table loads replace building the mask and the point from a variable shift.
    let upper = word & POINT_UPPER_MASKS[index];
    (word ^ upper) | (upper << 8) | POINT_BYTES[index]
}

/// For a point inserted before byte `i` of a word: the mask of bytes `i..8` (they move up).
const POINT_UPPER_MASKS: [u64; 8] = {
    let mut masks = [0u64; 8];
    let mut i = 0;
    while i < 8 {
        masks[i] = u64::MAX << (8 * i);
        i += 1;
    }
    masks
};

/// For a point inserted before byte `i` of a word: the point alone, in byte `i`.
const POINT_BYTES: [u64; 8] = {
    let mut points = [0u64; 8];
    let mut i = 0;
    while i < 8 {
        points[i] = (b'.' as u64) << (8 * i);
        i += 1;
    }
    points
};

/// Stores `word` little-endian at `out[at..at + 8]`.
#[inline(always)]
fn store_eight(out: &mut [u8], at: usize, word: u64) {
    out[at..at + 8].copy_from_slice(&word.to_le_bytes());
}

/// Lays out `digits * 10^k` (`digits` exactly 17 digits) into `out`; returns the byte count.
/// The 17 digits are always written whole, trailing zeros included, and the length cuts them.
#[inline(always)]
fn layout(digits: u64, k: i32, out: &mut [u8]) -> usize {
    let (first, middle, low, significant) = significand_words(digits);
    // Decimal exponent of the first digit.
    let scientific = k + SIGNIFICAND_DIGITS as i32 - 1;
    if (0..16).contains(&scientific) {
        // ddd.ddd: the digits after the first, with the point inserted after `whole - 1` of
        // them, are put together in two registers and stored once (storing the digits and then
        // reloading them across the stores to move them would stall store forwarding).
        let whole = scientific as usize + 1;
        let (head, tail) = if whole <= 8 {
            (insert_point(middle, whole - 1), (middle >> 56) | (low << 8))
        } else {
            (middle, insert_point(low, whole - 9))
        };
        out[0] = b'0' + first;
        store_eight(out, 1, head);
        store_eight(out, 9, tail);
        // The last digit, pushed one place right by the point.
        out[17] = (low >> 56) as u8;
        // The significant digits and the point, but at least one fractional digit:
        // out[whole + 1] is a zero digit when none is significant, since whole < 17.
        return (significant + 1).max(whole + 2);
    }
    if (-4..0).contains(&scientific) {
        // 0.000ddd: up to three zeros after the point.
        let zeros = (-scientific - 1) as usize;
        store_eight(out, 0, u64::from_le_bytes(*b"0.000000"));
        out[2 + zeros] = b'0' + first;
        store_eight(out, 3 + zeros, middle);
        store_eight(out, 11 + zeros, low);
        return 2 + zeros + significant;
    }
    // d.ddde-x
    out[0] = b'0' + first;
    out[1] = b'.';
    store_eight(out, 2, middle);
    store_eight(out, 10, low);
    let mut len = if significant > 1 { significant + 1 } else { 1 };
    out[len] = b'e';
    len += 1;
    if scientific < 0 {
        out[len] = b'-';
        len += 1;
    }
    let exponent = u64::from(scientific.unsigned_abs());
    let exponent_digits = decimal_length(exponent);
    write_digits(exponent, exponent_digits, &mut out[len..]);
    len + exponent_digits
}

/// A `fmt::Write` into a fixed buffer (for f32, which keeps std's formatter).
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

/// Formats `v` (finite) as the shortest decimal that parses back to the same f32.
pub(crate) fn format_f32(v: f32, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> &str {
    assert!(v.is_finite(), "format_f32 called with a non-finite value");
    format_with_std(v, buffer)
}

/// std's `{:?}`: shortest round-trip, always with a `.0` or an exponent.
fn format_with_std(v: impl std::fmt::Debug, buffer: &mut [u8; FLOAT_BYTES_MAX]) -> &str {
    let mut cursor = Cursor { buffer, len: 0 };
    let written = write!(cursor, "{v:?}");
    assert!(written.is_ok(), "a float always fits in FLOAT_BYTES_MAX");
    let len = cursor.len;
    match std::str::from_utf8(&buffer[..len]) {
        Ok(text) => text,
        Err(_) => unreachable!("float formatting writes ASCII"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: f64) {
        let mut buffer = [0u8; FLOAT_BYTES_MAX];
        let text = format_f64(v, &mut buffer);
        assert_eq!(text, format!("{v:?}"), "bits {:#x}", v.to_bits());
        assert!(text.len() <= FLOAT_TEXT_BYTES_MAX, "{text}");
    }

    #[test]
    fn matches_std_on_edge_values() {
        for v in [
            1.0,
            -0.0,
            0.0,
            0.1,
            1e300,
            -65.61361699999998,
            5e-324,
            1e-323,
            1.5e-323,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1e16,
            1e15,
            9.999999999999998e15,
            1e-4,
            9.999999999999999e-5,
            1e-5,
            123456789.0,
            0.3,
            2.0f64.powi(53),
            2.0f64.powi(-1022),
            2.0f64.powi(100),
            1e23,
            1.7976931348623157e308,
            4.35,
            100.0,
            1234.5678,
        ] {
            check(v);
            check(-v);
        }
    }

    #[test]
    fn matches_std_on_powers_and_neighbours() {
        let neighbours = |v: f64| {
            let bits = v.to_bits();
            for bits in [bits.saturating_sub(1), bits, bits + 1] {
                let v = f64::from_bits(bits);
                if v.is_finite() {
                    check(v);
                }
            }
        };
        for e in 0..2046u64 {
            // Every power of two: the smallest subnormals, then each binade's first value.
            let bits = if e < 52 { 1 << e } else { (e - 51) << 52 };
            neighbours(f64::from_bits(bits));
        }
        for e in -323..=308 {
            neighbours(format!("1e{e}").parse().unwrap());
        }
        for c in 1..2000u64 {
            check(f64::from_bits(c));
        }
    }

    #[test]
    fn matches_std_on_pseudo_random_bits() {
        // xorshift64*: a fixed, reproducible stream of bit patterns over every exponent.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300_000 {
            let bits = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let v = f64::from_bits(bits);
            if v.is_finite() {
                check(v);
            }
        }
    }

    /// Every outcome of Eisel-Lemire must be std's correctly rounded value.
    fn check_parse(w: u64, q: i64) {
        let expected: f64 = format!("{w}e{q}").parse().unwrap();
        if let Some(v) = eisel_lemire(w, q) {
            assert_eq!(v.to_bits(), expected.to_bits(), "{w}e{q}");
        }
    }

    #[test]
    fn eisel_lemire_matches_std() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut decided = 0;
        for i in 0..200_000u64 {
            let r = crate::json::xorshift64(&mut state).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            // Mantissas of every length up to 19 digits, exponents over the whole range.
            let w = r % POW10_U64[(i % 19) as usize + 1];
            let q = (r >> 40) as i64 % 660 - 342;
            check_parse(w, q);
            decided += usize::from(eisel_lemire(w, q).is_some());
        }
        assert!(decided > 150_000, "only {decided} decided");
        for q in -342..=308 {
            for w in [
                1,
                2,
                5,
                9,
                10,
                17,
                9_007_199_254_740_993,
                9_999_999_999_999_999_999,
                u64::MAX,
            ] {
                check_parse(w, q);
            }
        }
        // Halfway cases: 2^53 + 1 and neighbours, which must round to even.
        for w in 9_007_199_254_740_990..9_007_199_254_741_000u64 {
            check_parse(w, 0);
            check_parse(w * 10, -1);
        }
    }

    #[test]
    fn insert_point_at_every_byte() {
        let word = u64::from_le_bytes(*b"ABCDEFGH");
        for index in 0..8 {
            let mut expected = b"ABCDEFGH".to_vec();
            expected.insert(index, b'.');
            expected.truncate(8);
            assert_eq!(insert_point(word, index).to_le_bytes().to_vec(), expected);
        }
    }

    /// The packed per-exponent table unpacks to what the logarithm approximations give.
    #[test]
    fn scale_table_matches_the_logarithm_formulas() {
        for biased in 1..2047 {
            let q = biased - 1075;
            let minus_k = floor_log10_pow2(q) - KAPPA;
            let beta = (q + floor_log2_pow10(-minus_k)) as u32;
            let c = C_MIN + 1;
            assert_eq!(
                scale_for(q, c),
                (minus_k, cache_entry(-minus_k), beta),
                "q {q}"
            );
        }
    }

    #[test]
    fn compile_time_caches_match_big_integer_division() {
        for k in CACHE_EXPONENT_MIN..=CACHE_EXPONENT_MAX {
            assert_eq!(cache_entry(k), cache_compute(k), "10^{k}");
        }
        // Every normal binary exponent finds its power in the table.
        for biased in 1..2047 {
            let k = KAPPA - floor_log10_pow2(biased - 1075);
            assert!(
                (CACHE_EXPONENT_MIN..=CACHE_EXPONENT_MAX).contains(&k),
                "{biased}"
            );
        }
    }

    /// The one-multiplication path against Schubfach (the formatter it replaced), digit for
    /// digit, on a normal significand `c` and binary exponent `q`.
    fn check_against_schubfach(c: u64, q: i32) {
        if c == C_MIN {
            return;
        }
        let (f, k) = to_decimal_one_multiply(q, c);
        let (g, j) = shortest_schubfach(c, q);
        // Same decimal: g = f * 10^(k - j) with g padded to 17 digits.
        assert!(k >= j && k - j <= 2, "c {c} q {q}: {f}e{k} vs {g}e{j}");
        assert_eq!(
            f * 10u64.pow((k - j) as u32),
            g,
            "c {c} q {q}: {f}e{k} vs {g}e{j}"
        );
    }

    #[test]
    fn one_multiply_matches_schubfach() {
        let mut state = 0x1234_5678_9abc_def1u64;
        for _ in 0..400_000 {
            let bits = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let biased = ((bits >> 52) & 0x7ff) as i32;
            if biased == 0 || biased == 0x7ff {
                continue;
            }
            check_against_schubfach(C_MIN | (bits & (C_MIN - 1)), biased - 1075);
        }
        for biased in 1..2047 {
            let q = biased - 1075;
            // The ends of every binade, and significands with long runs of zeros or ones.
            for c in [
                C_MIN + 1,
                C_MIN + 2,
                C_MIN + 3,
                2 * C_MIN - 1,
                2 * C_MIN - 2,
            ] {
                check_against_schubfach(c, q);
            }
            for shift in 0..52 {
                check_against_schubfach(C_MIN | (1 << shift), q);
                check_against_schubfach((2 * C_MIN - 1) ^ (1 << shift), q);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn one_multiply_matches_schubfach_on_any_bits(bits in proptest::prelude::any::<u64>()) {
            let biased = ((bits >> 52) & 0x7ff) as i32;
            if biased != 0 && biased != 0x7ff {
                check_against_schubfach(C_MIN | (bits & (C_MIN - 1)), biased - 1075);
            }
        }
    }

    #[test]
    fn one_multiply_matches_schubfach_on_canada_numbers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/canada.json");
        let text = std::fs::read_to_string(path).expect("benches/data/canada.json");
        let mut count = 0;
        for token in text.split(|c: char| !matches!(c, '-' | '.' | 'e' | 'E' | '0'..='9')) {
            let Ok(v) = token.parse::<f64>() else {
                continue;
            };
            let bits = v.to_bits();
            let biased = ((bits >> 52) & 0x7ff) as i32;
            if biased != 0 {
                check_against_schubfach(C_MIN | (bits & (C_MIN - 1)), biased - 1075);
                count += 1;
            }
        }
        assert!(count > 100_000, "only {count} numbers");
    }

    /// The branch-free common path against the version that decides every case exactly: the
    /// same decimal value (the short answer comes back one digit longer, with a zero).
    #[test]
    fn one_multiply_fast_path_matches_exact_cases() {
        let mut state = 0x0f1e_2d3c_4b5a_6978u64;
        let mut short = 0;
        for _ in 0..200_000 {
            let bits = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let biased = ((bits >> 52) & 0x7ff) as i32;
            let c = C_MIN | (bits & (C_MIN - 1));
            if biased == 0 || biased == 0x7ff || c == C_MIN {
                continue;
            }
            let q = biased - 1075;
            let (f, k) = to_decimal_one_multiply(q, c);
            let (g, j) = to_decimal_exact_cases(q, c);
            assert!(j >= k && j - k <= 1, "c {c} q {q}: {f}e{k} vs {g}e{j}");
            assert_eq!(g * 10u64.pow((j - k) as u32), f, "c {c} q {q}");
            short += usize::from(j > k);
        }
        // Both outcomes of the selection are exercised.
        assert!(short > 10_000, "only {short} short answers");
    }

    /// The significant-digit count from the digit lanes, for every count from 1 to 17.
    #[test]
    fn significand_words_count_trailing_zeros() {
        let mut state = 0x7777_1234_abcd_0001u64;
        for count in 1..=SIGNIFICAND_DIGITS {
            for _ in 0..2_000 {
                let r = crate::json::xorshift64(&mut state).wrapping_mul(0x2545_f491_4f6c_dd1d);
                // `count` digits, the first and the last non-zero, then zeros up to 17 digits.
                let low = POW10_U64[count - 1];
                let mut digits = low + r % (9 * low);
                if digits % 10 == 0 {
                    digits += 1;
                }
                let padded = digits * POW10_U64[SIGNIFICAND_DIGITS - count];
                let (first, middle, tail, significant) = significand_words(padded);
                assert_eq!(significant, count, "{padded}");
                let mut text = vec![b'0' + first];
                text.extend_from_slice(&middle.to_le_bytes());
                text.extend_from_slice(&tail.to_le_bytes());
                assert_eq!(text, padded.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn compile_time_powers_of_ten_match_big_integer_division() {
        for e in POW10_EXPONENT_MIN..=POW10_EXPONENT_MAX {
            assert_eq!(pow10_entry(e), pow10_compute(e), "10^{e}");
        }
    }

    #[test]
    fn decimal_length_counts_digits() {
        assert_eq!(decimal_length(0), 1);
        for v in [1u64, 9, 10, 99, 100, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(decimal_length(v), v.to_string().len(), "{v}");
        }
        for (i, &power) in POW10_U64.iter().enumerate() {
            assert_eq!(decimal_length(power), i + 1);
            assert_eq!(decimal_length(power - 1), i.max(1));
        }
    }

    #[test]
    fn write_eight_matches_std() {
        for v in [
            0u32, 1, 9, 10, 99, 100, 1234, 9999, 10_000, 12_345_678, 99_999_999, 50_000_001,
        ] {
            let mut out = [0u8; 8];
            write_eight(v, &mut out);
            assert_eq!(out, *format!("{v:08}").as_bytes());
        }
        for v in (0..100_000_000).step_by(9_973) {
            let mut out = [0u8; 8];
            write_eight(v, &mut out);
            assert_eq!(out, *format!("{v:08}").as_bytes());
        }
    }

    #[test]
    fn matches_std_on_short_decimals() {
        for i in 0..20_000u32 {
            check(f64::from(i) / 1000.0);
            check(f64::from(i) * 1.25e-7);
        }
    }
}
