//! `Encode`/`Decode` for scalars, strings, `Option`, smart pointers, references, `Cow` and
//! tuples.
//!
//! Owns: the layout of each of these types (see the table in `binary/mod.rs`).
//! Must not: accept a second encoding of any value (bool, Option tag, char and integer range
//! are all validated), or allocate before a length is validated.

use std::borrow::{Cow, ToOwned};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::varint::{write_varint, write_varint_u128, zigzag_decode, zigzag_encode};
use super::varint::{zigzag_decode_i128, zigzag_encode_i128};
use super::{Decode, Encode, Error, ErrorKind, Reader};

impl Encode for u8 {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }

    /// Bytes travel as they are: one copy for a whole `Vec<u8>` or `[u8; N]`.
    #[inline]
    fn encode_slice(items: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(items);
    }
}

impl Decode for u8 {
    const ENCODED_BYTES_MIN: usize = 1;

    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_u8()
    }

    #[inline]
    fn decode_vec(r: &mut Reader<'_>, count: usize) -> Result<Vec<Self>, Error> {
        Ok(r.read_bytes(count)?.to_vec())
    }
}

/// Unsigned integers wider than a byte: LEB128, range-checked on decode.
macro_rules! unsigned_varint {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                write_varint(out, *self as u64);
            }
        }

        impl Decode for $t {
            const ENCODED_BYTES_MIN: usize = 1;

            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                let offset = r.offset();
                let value = r.read_varint()?;
                <$t>::try_from(value).map_err(|_| {
                    let kind = ErrorKind::IntegerOutOfRange {
                        value: u128::from(value),
                        type_name: stringify!($t),
                    };
                    Error::at(kind, offset)
                })
            }
        }
    )*};
}
unsigned_varint!(u16, u32, u64, usize);

/// Signed integers: zigzag to 64 bits, then LEB128, range-checked on decode.
macro_rules! signed_varint {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                write_varint(out, zigzag_encode(*self as i64));
            }
        }

        impl Decode for $t {
            const ENCODED_BYTES_MIN: usize = 1;

            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                let offset = r.offset();
                let value = zigzag_decode(r.read_varint()?);
                <$t>::try_from(value).map_err(|_| {
                    let kind = ErrorKind::IntegerOutOfRange {
                        value: value as u64 as u128,
                        type_name: stringify!($t),
                    };
                    Error::at(kind, offset)
                })
            }
        }
    )*};
}
signed_varint!(i8, i16, i32, i64, isize);

impl Encode for u128 {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint_u128(out, *self);
    }
}

impl Decode for u128 {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_varint_u128()
    }
}

impl Encode for i128 {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint_u128(out, zigzag_encode_i128(*self));
    }
}

impl Decode for i128 {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(zigzag_decode_i128(r.read_varint_u128()?))
    }
}

/// Floats: IEEE 754 bits, little-endian, fixed width (NaN payloads are preserved).
macro_rules! float_le {
    ($($t:ty => $bytes:expr),*) => {$(
        impl Encode for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }

        impl Decode for $t {
            const ENCODED_BYTES_MIN: usize = $bytes;

            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok(<$t>::from_le_bytes(r.read_array::<$bytes>()?))
            }
        }
    )*};
}
float_le!(f32 => 4, f64 => 8);

impl Encode for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    const ENCODED_BYTES_MIN: usize = 1;

    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let offset = r.offset();
        match r.read_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::at(ErrorKind::InvalidBool(other), offset)),
        }
    }
}

impl Encode for char {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, u64::from(u32::from(*self)));
    }
}

impl Decode for char {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let offset = r.offset();
        let value = r.read_varint()?;
        u32::try_from(value)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| Error::at(ErrorKind::InvalidChar(value), offset))
    }
}

impl Encode for str {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
}

impl Encode for String {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }
}

/// Reads a length-prefixed UTF-8 string, borrowing it from the input.
#[inline]
fn read_str<'a>(r: &mut Reader<'a>) -> Result<&'a str, Error> {
    let offset = r.offset();
    let bytes = r.read_len_bytes()?;
    std::str::from_utf8(bytes).map_err(|_| Error::at(ErrorKind::InvalidUtf8, offset))
}

impl Decode for String {
    const ENCODED_BYTES_MIN: usize = 1;

    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        read_str(r).map(str::to_owned)
    }
}

impl Decode for Box<str> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        read_str(r).map(Box::from)
    }
}

impl Decode for Rc<str> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        read_str(r).map(Rc::from)
    }
}

impl Decode for Arc<str> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        read_str(r).map(Arc::from)
    }
}

impl<T: Encode> Encode for Option<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    const ENCODED_BYTES_MIN: usize = 1;

    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let offset = r.offset();
        match r.read_u8()? {
            0 => Ok(None),
            1 => T::decode(r).map(Some),
            other => Err(Error::at(ErrorKind::InvalidOptionTag(other), offset)),
        }
    }
}

impl Encode for () {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl Decode for () {
    #[inline]
    fn decode(_r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(())
    }
}

impl<T: ?Sized> Encode for PhantomData<T> {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl<T: ?Sized> Decode for PhantomData<T> {
    #[inline]
    fn decode(_r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(PhantomData)
    }
}

/// Pointers and references encode as their target.
macro_rules! transparent_encode {
    ($($pointer:ty),*) => {$(
        impl<T: Encode + ?Sized> Encode for $pointer {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                (**self).encode(out);
            }
        }
    )*};
}
transparent_encode!(&T, &mut T, Box<T>, Rc<T>, Arc<T>);

/// Owning pointers decode their target and wrap it.
macro_rules! transparent_decode {
    ($($pointer:ident),*) => {$(
        impl<T: Decode> Decode for $pointer<T> {
            const ENCODED_BYTES_MIN: usize = T::ENCODED_BYTES_MIN;

            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                T::decode(r).map($pointer::new)
            }
        }
    )*};
}
transparent_decode!(Box, Rc, Arc);

impl<B: Encode + ToOwned + ?Sized> Encode for Cow<'_, B> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

impl<B: ToOwned + ?Sized> Decode for Cow<'_, B>
where
    B::Owned: Decode,
{
    const ENCODED_BYTES_MIN: usize = <B::Owned as Decode>::ENCODED_BYTES_MIN;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        <B::Owned as Decode>::decode(r).map(Cow::Owned)
    }
}

/// Tuples: the fields in order, no count and no framing.
macro_rules! tuple_impls {
    ($(($($name:ident : $index:tt),+))*) => {$(
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                $(self.$index.encode(out);)+
            }
        }

        impl<$($name: Decode),+> Decode for ($($name,)+) {
            const ENCODED_BYTES_MIN: usize = 0 $(+ $name::ENCODED_BYTES_MIN)+;

            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok(($($name::decode(r).map_err(|e| e.with_index($index))?,)+))
            }
        }
    )*};
}
tuple_impls! {
    (A: 0)
    (A: 0, B: 1)
    (A: 0, B: 1, C: 2)
    (A: 0, B: 1, C: 2, D: 3)
    (A: 0, B: 1, C: 2, D: 3, E: 4)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7, I: 8)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7, I: 8, J: 9)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7, I: 8, J: 9, K: 10)
    (A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7, I: 8, J: 9, K: 10, L: 11)
}

#[cfg(test)]
mod tests {
    use super::super::{from_slice, kind_of, to_vec};
    use super::*;

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(value: T, bytes: &[u8]) {
        assert_eq!(to_vec(&value), bytes, "encoding of {value:?}");
        assert_eq!(from_slice::<T>(bytes), Ok(value), "decoding {bytes:?}");
    }

    #[test]
    fn layout_of_scalars() {
        round_trip(0xffu8, &[0xff]);
        round_trip(300u16, &[0xac, 0x02]);
        round_trip(
            u64::MAX,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        round_trip(-1i8, &[0x01]);
        round_trip(-64i32, &[0x7f]);
        round_trip(64i64, &[0x80, 0x01]);
        round_trip(
            i64::MIN,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        round_trip(1.5f32, &[0x00, 0x00, 0xc0, 0x3f]);
        round_trip(-2.0f64, &[0, 0, 0, 0, 0, 0, 0, 0xc0]);
        round_trip(true, &[1]);
        round_trip('é', &[0xe9, 0x01]);
        round_trip(u128::MAX, &to_vec(&u128::MAX));
        round_trip(i128::MIN, &to_vec(&i128::MIN));
        round_trip((), &[]);
    }

    #[test]
    fn layout_of_strings_options_and_tuples() {
        round_trip(String::from("hé"), &[3, b'h', 0xc3, 0xa9]);
        assert_eq!(to_vec("ab"), [2, b'a', b'b']);
        round_trip(Box::<str>::from("x"), &[1, b'x']);
        round_trip(Rc::<str>::from("x"), &[1, b'x']);
        round_trip(Arc::<str>::from("x"), &[1, b'x']);
        round_trip(Cow::<str>::Owned("y".into()), &[1, b'y']);
        round_trip(Some(5u32), &[1, 5]);
        round_trip(None::<u32>, &[0]);
        round_trip((1u8, -1i16, "z".to_string()), &[1, 1, 1, b'z']);
        round_trip(Box::new(7u64), &[7]);
        round_trip(Rc::new(Arc::new(true)), &[1]);
        let twelve = (
            1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8,
        );
        round_trip(twelve, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn rejects_invalid_encodings() {
        assert_eq!(kind_of::<bool>(&[2]), ErrorKind::InvalidBool(2));
        assert_eq!(
            kind_of::<Option<u8>>(&[3, 0]),
            ErrorKind::InvalidOptionTag(3)
        );
        assert_eq!(
            kind_of::<char>(&[0x80, 0xb0, 0x03]),
            ErrorKind::InvalidChar(0xd800)
        );
        assert_eq!(kind_of::<String>(&[1, 0xff]), ErrorKind::InvalidUtf8);
        assert_eq!(
            kind_of::<String>(&[9, b'a']),
            ErrorKind::LengthTooLarge {
                length: 9,
                remaining_bytes: 1
            }
        );
        assert_eq!(
            kind_of::<u16>(&[0x80, 0x80, 0x04]),
            ErrorKind::IntegerOutOfRange {
                value: 65_536,
                type_name: "u16"
            }
        );
        assert!(matches!(
            kind_of::<i8>(&[0x80, 0x02]),
            ErrorKind::IntegerOutOfRange { .. }
        ));
        assert_eq!(kind_of::<u32>(&[0x80, 0x00]), ErrorKind::VarintOverlong);
        assert!(matches!(
            kind_of::<f64>(&[0; 7]),
            ErrorKind::UnexpectedEnd { .. }
        ));
        assert_eq!(
            kind_of::<u8>(&[1, 2]),
            ErrorKind::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn tuple_errors_name_the_position() {
        let error = from_slice::<(u8, bool)>(&[1, 9]).expect_err("bad bool");
        assert_eq!(error.path(), "[1]");
        assert_eq!(error.offset(), Some(1));
    }

    #[test]
    fn minimum_sizes_are_lower_bounds() {
        assert_eq!(<(u8, f64, ())>::ENCODED_BYTES_MIN, 9);
        assert_eq!(<Option<f64>>::ENCODED_BYTES_MIN, 1);
        assert_eq!(<Box<f32>>::ENCODED_BYTES_MIN, 4);
        assert_eq!(<()>::ENCODED_BYTES_MIN, 0);
    }
}
