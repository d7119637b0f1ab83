//! The binary codec: `Encode` / `Decode`, LEB128 varints, length-prefixed values, and struct
//! framing that lets a type gain fields without breaking data written by older versions.
//!
//! Owns: the byte layout of event payloads, snapshots and the Raft wire protocol (specified in
//! `docs/BINARY_FORMAT.md`).
//! Must not: perform I/O, panic on any input, or allocate based on an untrusted length before
//! comparing it with the remaining input.
//!
//! # Layout
//! - `u8`: one raw byte. Other unsigned integers: LEB128 varint (canonical: no redundant
//!   trailing zero groups, no bits past the type width). Signed integers: zigzag, then LEB128.
//!   `usize`/`isize` travel as 64-bit values.
//! - `f32`/`f64`: IEEE 754 bits, little-endian. `bool`: one byte, 0 or 1. `char`: varint of
//!   the scalar value.
//! - `String`, `str`, `Vec<u8>`: varint byte length, then the bytes.
//! - `Vec<T>`, slices, `VecDeque`, sets, maps: varint count, then the elements (map entries as
//!   key then value). `[T; N]`: the N elements, no count (N is in the type).
//! - `HashMap`/`HashSet`: entries sorted by their encoded key bytes, so equal maps always
//!   encode to equal bytes (state digests hash encodings). `BTreeMap`/`BTreeSet`: in key order.
//! - `Option`: byte 0 (None) or byte 1 then the value. Tuples: fields in order, no framing.
//!   `Box`, `Rc`, `Arc`, `Cow`, references: the inner value. `()`: nothing.
//!
//! # Structs and evolution
//! A struct (as `#[derive(Binary)]` generates it) is framed: `varint(body_len) body`, the body
//! being its fields in declaration order. Decoding reads the body with [`Reader::struct_body`]
//! and then each field in order:
//! - a field whose bytes are absent (the body ended before it: the data was written by an
//!   older version) takes its default if the field is marked `#[binary(default)]` /
//!   `#[db(default)]`, else decoding fails with `MissingField`;
//! - bytes left in the body after the last known field (written by a newer version) are
//!   skipped.
//!
//! So a struct may gain fields at the end (with a default, to read old data) and old code
//! reads new data. Fields may not be reordered, removed from the middle, or change type.
//!
//! Enums: `varint(variant_index)` then the variant's fields framed like a struct (a unit
//! variant has an empty body). An unknown index is `UnknownVariant`. Variants may be added at
//! the end.
//!
//! # Hostile input
//! Every length and count is checked against the remaining input before anything is allocated
//! ([`Reader::read_len`], [`Reader::read_count`]); nesting of struct bodies and sequences is
//! limited to [`DEPTH_MAX`]; [`from_slice`] rejects trailing bytes.

mod collections;
mod error;
mod primitives;
mod reader;
mod spill;
mod unspill;
mod varint;

pub use error::{Error, ErrorKind};
pub use reader::{Reader, DEPTH_MAX, ZERO_SIZE_COUNT_MAX};
pub use spill::{spill_through, Measured, Spill, SpillSink, SPILL_PIECE_BYTES};
pub use unspill::{Unspill, UnspillSource, UNSPILL_PIECE_BYTES};
pub use varint::{
    varint_bytes, varint_len, write_varint, write_varint_u128, zigzag_decode, zigzag_encode,
    VARINT_U128_BYTES_MAX, VARINT_U64_BYTES_MAX,
};

/// A type that can append its binary encoding to a buffer. Encoding cannot fail.
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Appends the encodings of `items` one after another (no count). Sequences call this so
    /// that `u8` can override it with one bulk copy.
    #[inline]
    fn encode_slice(items: &[Self], out: &mut Vec<u8>)
    where
        Self: Sized,
    {
        for item in items {
            item.encode(out);
        }
    }
}

/// A type that can be read back from its binary encoding, on untrusted input.
pub trait Decode: Sized {
    /// The fewest bytes any value of this type encodes to. Sequence decoders use it to reject
    /// counts the remaining input cannot hold. 0 (the default) is always safe: counts of such
    /// elements are then capped by [`ZERO_SIZE_COUNT_MAX`] or the remaining input.
    const ENCODED_BYTES_MIN: usize = 0;

    /// Reads one value from `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error>;

    /// Reads `count` values (a count already validated by [`Reader::read_count`]). `u8`
    /// overrides it with one bulk copy.
    fn decode_vec(r: &mut Reader<'_>, count: usize) -> Result<Vec<Self>, Error> {
        let mut items = Vec::with_capacity(capacity_for::<Self>(count, r.remaining()));
        for index in 0..count {
            items.push(Self::decode(r).map_err(|e| e.with_index(index))?);
        }
        assert_eq!(items.len(), count);
        Ok(items)
    }
}

/// Largest reservation, in bytes, a sequence decoder makes before decoding its elements.
pub const PREALLOC_BYTES_MAX: usize = 4096;

/// The capacity to reserve for `count` decoded elements of `T` before decoding them: exactly
/// `count` when that takes at most [`PREALLOC_BYTES_MAX`] bytes and no more memory than the
/// remaining input (the many small collections inside a struct cost one allocation, no
/// regrowth), else nothing: a large collection grows by doubling as its elements arrive, so a
/// false count reserves nothing. Reserving a large block up front was measured slower, not
/// faster: with glibc, a big block allocated before its elements' strings left the heap in a
/// shape that the next free trimmed, and every batch decode then faulted its pages back in.
#[inline]
pub fn capacity_for<T>(count: usize, remaining_bytes: usize) -> usize {
    let element_bytes = std::mem::size_of::<T>().max(1);
    let small = count <= PREALLOC_BYTES_MAX / element_bytes;
    let backed = count <= remaining_bytes / element_bytes + 1;
    if small && backed {
        count
    } else {
        0
    }
}

/// Starts a framed struct body: reserves one byte for the length and returns the mark that
/// [`end_struct`] needs. Usage: `let mark = begin_struct(out); ...fields...; end_struct(out, mark);`
#[inline]
pub fn begin_struct(out: &mut Vec<u8>) -> usize {
    let mark = out.len();
    out.push(0);
    mark
}

/// Ends the struct body started at `mark`: writes `varint(body_len)` in front of the body. A
/// body under 128 bytes fits the reserved byte; a longer one moves the body to make room
/// (one memmove per large struct, in exchange for canonical lengths).
#[inline]
pub fn end_struct(out: &mut Vec<u8>, mark: usize) {
    assert!(
        mark < out.len(),
        "end_struct: mark {mark} past the buffer ({})",
        out.len()
    );
    let body_len = out.len() - mark - 1;
    if body_len < 0x80 {
        out[mark] = body_len as u8;
    } else {
        end_long_struct(out, mark, body_len);
    }
}

/// The out-of-line case of [`end_struct`]: make room for a multi-byte length.
#[inline(never)]
fn end_long_struct(out: &mut Vec<u8>, mark: usize, body_len: usize) {
    let (prefix, prefix_len) = varint_bytes(body_len as u64);
    assert!(prefix_len > 1, "short bodies are handled inline");
    let old_len = out.len();
    out.resize(old_len + prefix_len - 1, 0);
    out.copy_within(mark + 1..old_len, mark + prefix_len);
    out[mark..mark + prefix_len].copy_from_slice(&prefix[..prefix_len]);
    assert_eq!(out.len() - mark - prefix_len, body_len);
}

/// Initial capacity of the buffer [`to_vec`] allocates: a typical event fits, so encoding one
/// costs one allocation instead of a chain of doublings from 8 bytes.
pub const TO_VEC_CAPACITY_BYTES: usize = 128;

/// Encodes `value` into a new buffer.
pub fn to_vec<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(TO_VEC_CAPACITY_BYTES);
    value.encode(&mut out);
    out
}

/// Decodes one `T` that must span all of `bytes` (trailing bytes are an error).
pub fn from_slice<T: Decode>(bytes: &[u8]) -> Result<T, Error> {
    let mut reader = Reader::new(bytes);
    let value = T::decode(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

/// The kind of the error decoding `bytes` as `T` must give (unit tests of the codec files).
#[cfg(test)]
fn kind_of<T: Decode + std::fmt::Debug>(bytes: &[u8]) -> ErrorKind {
    from_slice::<T>(bytes)
        .expect_err("must fail")
        .kind()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_framing_short_and_long_bodies() {
        for body_len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut out = vec![0xaa];
            let mark = begin_struct(&mut out);
            out.extend((0..body_len).map(|i| i as u8));
            end_struct(&mut out, mark);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.read_u8(), Ok(0xaa));
            let mut body = reader.struct_body().expect("framed body");
            assert!(reader.is_empty());
            assert_eq!(body.remaining(), body_len);
            let bytes = body.read_bytes(body_len).expect("body bytes");
            assert!(
                bytes.iter().enumerate().all(|(i, &b)| b == i as u8),
                "body moved intact"
            );
            assert_eq!(out.len(), 1 + varint_len(body_len as u64) + body_len);
        }
    }

    #[test]
    fn nested_struct_framing() {
        let mut out = Vec::new();
        let outer = begin_struct(&mut out);
        out.extend_from_slice(&[1; 200]);
        let inner = begin_struct(&mut out);
        out.extend_from_slice(&[2; 130]);
        end_struct(&mut out, inner);
        out.push(3);
        end_struct(&mut out, outer);
        let mut reader = Reader::new(&out);
        let mut body = reader.struct_body().expect("outer");
        assert_eq!(body.read_bytes(200).expect("prefix"), &[1; 200][..]);
        let mut inner_body = body.struct_body().expect("inner");
        assert_eq!(
            inner_body.read_bytes(130).expect("inner bytes"),
            &[2; 130][..]
        );
        assert_eq!(body.read_u8(), Ok(3));
        assert!(body.is_empty() && reader.is_empty());
    }

    /// The worked example of docs/BINARY_FORMAT.md, byte for byte.
    #[test]
    fn documented_struct_example() {
        let mut v1 = Vec::new();
        let mark = begin_struct(&mut v1);
        7u64.encode(&mut v1);
        "lamp".encode(&mut v1);
        end_struct(&mut v1, mark);
        assert_eq!(v1, [0x06, 0x07, 0x04, 0x6c, 0x61, 0x6d, 0x70]);
        let mut v2 = Vec::new();
        let mark = begin_struct(&mut v2);
        (7u64, "lamp", vec!["a"]).encode(&mut v2);
        end_struct(&mut v2, mark);
        assert_eq!(
            v2,
            [0x09, 0x07, 0x04, 0x6c, 0x61, 0x6d, 0x70, 0x01, 0x01, 0x61]
        );
        let mut reader = Reader::new(&v2);
        let mut body = reader.struct_body().expect("body");
        assert_eq!(body.field::<u64>("id"), Ok(7));
        assert_eq!(body.field::<String>("name").as_deref(), Ok("lamp"));
        assert!(
            reader.finish().is_ok(),
            "the v1 reader skipped the appended tags"
        );
        let mut reader = Reader::new(&v1);
        let mut body = reader.struct_body().expect("body");
        body.read_bytes(6).expect("id and name");
        assert_eq!(
            body.field_or_else::<Vec<String>>("tags", Vec::new),
            Ok(vec![])
        );
        let error = body.field::<Vec<String>>("tags").expect_err("no default");
        assert_eq!(error.kind(), &ErrorKind::MissingField("tags".into()));
    }

    #[test]
    fn capacity_never_exceeds_input_bytes() {
        assert_eq!(capacity_for::<u64>(1_000_000, 80), 0, "more than the input");
        assert_eq!(capacity_for::<u64>(3, 80), 3);
        assert_eq!(
            capacity_for::<u64>(11, 80),
            11,
            "80 bytes back ten u64, plus one"
        );
        assert_eq!(capacity_for::<u64>(12, 80), 0);
        assert_eq!(capacity_for::<()>(70_000, 0), 0);
        assert_eq!(capacity_for::<()>(1, 0), 1);
        assert_eq!(capacity_for::<[u8; 100]>(40, usize::MAX), 40);
        assert_eq!(capacity_for::<[u8; 100]>(41, usize::MAX), 0, "over 4 KiB");
    }
}
