//! `Number`: a JSON number kept exact. Integers stay integers (every i128 and u128, parsed or
//! built from Rust), other numbers are finite f64, and `1` and `1.0` stay distinguishable.
//!
//! Must not: hold a non-finite float (JSON has no NaN or infinity); constructors refuse them.

use std::fmt;

/// The representation; non-negative integers are `PosInt` when they fit u64 and `WidePos`
/// only beyond, negative ones `NegInt` when they fit i64 and `WideNeg` only beyond, so derived
/// equality is value equality for integers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum N {
    PosInt(u64),
    /// Always < 0.
    NegInt(i64),
    /// Always finite.
    Float(f64),
    /// Always > u64::MAX: from a u128 or i128 (`Number::from_u128`), or an integer token
    /// the parser read past 64 bits (it stays exact up to 128 bits).
    WidePos(u128),
    /// Always < i64::MIN (from an i128).
    WideNeg(i128),
}

/// A JSON number: an exact integer (up to 128 bits) or a finite f64.
#[derive(Clone, Copy, PartialEq)]
pub struct Number {
    pub(crate) n: N,
}

impl Number {
    /// An integer number.
    pub fn from_u64(v: u64) -> Self {
        Number { n: N::PosInt(v) }
    }

    /// An integer number.
    pub fn from_i64(v: i64) -> Self {
        if v < 0 {
            Number { n: N::NegInt(v) }
        } else {
            Number {
                n: N::PosInt(v as u64),
            }
        }
    }

    /// An integer number, exact whatever its size (a u128 field's value in a `Value`, which
    /// filters, sort keys and unique indexes compare: through f64 neighbours past 2^64 were
    /// equal).
    pub fn from_u128(v: u128) -> Self {
        match u64::try_from(v) {
            Ok(small) => Number::from_u64(small),
            Err(_) => Number { n: N::WidePos(v) },
        }
    }

    /// An integer number, exact whatever its size.
    pub fn from_i128(v: i128) -> Self {
        if let Ok(small) = i64::try_from(v) {
            return Number::from_i64(small);
        }
        match u128::try_from(v) {
            Ok(positive) => Number::from_u128(positive),
            Err(_) => Number { n: N::WideNeg(v) },
        }
    }

    /// A float number; `None` for NaN and infinities, which JSON cannot represent.
    pub fn from_f64(v: f64) -> Option<Self> {
        if v.is_finite() {
            Some(Number { n: N::Float(v) })
        } else {
            None
        }
    }

    /// True for an integer that fits u64.
    pub fn is_u64(&self) -> bool {
        matches!(self.n, N::PosInt(_))
    }

    /// True for an integer that fits i64.
    pub fn is_i64(&self) -> bool {
        match self.n {
            N::PosInt(v) => v <= i64::MAX as u64,
            N::NegInt(_) => true,
            N::Float(_) | N::WidePos(_) | N::WideNeg(_) => false,
        }
    }

    /// The value as u128 when it is a non-negative integer that fits.
    pub fn as_u128(&self) -> Option<u128> {
        match self.n {
            N::PosInt(v) => Some(u128::from(v)),
            N::WidePos(v) => Some(v),
            N::NegInt(_) | N::WideNeg(_) | N::Float(_) => None,
        }
    }

    /// The value as i128 when it is an integer that fits.
    pub fn as_i128(&self) -> Option<i128> {
        match self.n {
            N::PosInt(v) => Some(i128::from(v)),
            N::NegInt(v) => Some(i128::from(v)),
            N::WidePos(v) => i128::try_from(v).ok(),
            N::WideNeg(v) => Some(v),
            N::Float(_) => None,
        }
    }

    /// True when the number was written (or built) as a float, e.g. `1.0` or `1e3`.
    pub fn is_f64(&self) -> bool {
        matches!(self.n, N::Float(_))
    }

    /// The value as u64 when it is an integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        match self.n {
            N::PosInt(v) => Some(v),
            _ => None,
        }
    }

    /// The value as i64 when it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self.n {
            N::PosInt(v) => i64::try_from(v).ok(),
            N::NegInt(v) => Some(v),
            N::Float(_) | N::WidePos(_) | N::WideNeg(_) => None,
        }
    }

    /// The value as f64 (integers beyond 2^53 are rounded to the nearest f64).
    pub fn as_f64(&self) -> Option<f64> {
        Some(match self.n {
            N::PosInt(v) => v as f64,
            N::NegInt(v) => v as f64,
            N::Float(v) => v,
            N::WidePos(v) => v as f64,
            N::WideNeg(v) => v as f64,
        })
    }
}

macro_rules! number_from_unsigned {
    ($($t:ty)*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Self {
                Number::from_u64(v as u64)
            }
        }
    )*};
}
macro_rules! number_from_signed {
    ($($t:ty)*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Self {
                Number::from_i64(v as i64)
            }
        }
    )*};
}
number_from_unsigned!(u8 u16 u32 u64 usize);
number_from_signed!(i8 i16 i32 i64 isize);

impl From<u128> for Number {
    fn from(v: u128) -> Self {
        Number::from_u128(v)
    }
}

impl From<i128> for Number {
    fn from(v: i128) -> Self {
        Number::from_i128(v)
    }
}

impl fmt::Display for Number {
    /// The JSON text of the number (floats keep a `.0` or an exponent).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; super::float::FLOAT_BYTES_MAX];
        match self.n {
            N::PosInt(v) => write!(f, "{v}"),
            N::NegInt(v) => write!(f, "{v}"),
            N::Float(v) => f.write_str(super::float::format_f64(v, &mut buffer)),
            N::WidePos(v) => write!(f, "{v}"),
            N::WideNeg(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_are_distinct() {
        assert_ne!(Number::from_u64(1), Number::from_f64(1.0).unwrap());
        assert_eq!(Number::from_i64(5), Number::from_u64(5));
        assert!(Number::from_f64(f64::NAN).is_none());
        assert!(Number::from_f64(f64::INFINITY).is_none());
        assert_eq!(Number::from_u64(u64::MAX).as_i64(), None);
        assert_eq!(Number::from_i64(-3).as_u64(), None);
        assert_eq!(Number::from_i64(i64::MIN).as_i64(), Some(i64::MIN));
        assert_eq!(Number::from_f64(1.5).unwrap().to_string(), "1.5");
        assert_eq!(Number::from_f64(1.0).unwrap().to_string(), "1.0");
    }

    #[test]
    fn wide_integers_are_exact_and_normalized() {
        let big = Number::from_u128(u128::MAX);
        assert_eq!(big.to_string(), u128::MAX.to_string());
        assert_eq!(big.as_u128(), Some(u128::MAX));
        assert_eq!(
            (big.as_u64(), big.as_i128(), big.is_f64()),
            (None, None, false)
        );
        assert_ne!(
            Number::from_u128((1 << 64) + 1),
            Number::from_u128((1 << 64) + 2)
        );
        assert_eq!(
            Number::from_u128(7),
            Number::from_u64(7),
            "small values as before"
        );
        assert_eq!(Number::from_i128(-7), Number::from_i64(-7));
        assert_eq!(Number::from_i128(1 << 70), Number::from_u128(1 << 70));
        let low = Number::from_i128(i128::MIN);
        assert_eq!(low.to_string(), i128::MIN.to_string());
        assert_eq!(
            (low.as_i128(), low.as_i64(), low.as_u128()),
            (Some(i128::MIN), None, None)
        );
        assert_eq!(low.as_f64(), Some(i128::MIN as f64));
    }

    #[test]
    fn parsed_wide_integers_round_trip_exactly() {
        for text in [
            "18446744073709551616",
            "18446744073709551617",
            "-9223372036854775809",
            "340282366920938463463374607431768211455",
            "-170141183460469231731687303715884105728",
        ] {
            let value = crate::json::parse(text).expect("an integer parses");
            let written = crate::json::to_string(&value).expect("an integer writes");
            assert_eq!(written, text, "{text}");
        }
        let parsed = crate::json::parse("[18446744073709551617]").expect("parses");
        assert_eq!(
            parsed[0].as_number().and_then(|n| n.as_u128()),
            Some((1 << 64) + 1)
        );
        assert_eq!(
            parsed,
            crate::json::Value::Array(vec![crate::json::Value::Number(Number::from_u128(
                (1 << 64) + 1
            ))]),
            "a parsed wide integer equals the one built from Rust"
        );
        // Past 128 bits: the nearest float, written as a float.
        let huge = crate::json::parse("340282366920938463463374607431768211456").expect("parses");
        assert!(huge.as_number().is_some_and(|n| n.is_f64()));
    }
}
