//! `Reader`: a bounds-checked cursor over untrusted bytes that tracks nesting depth.
//!
//! Owns: every bounds check of the decoder, the depth limit, and length/count validation
//! before allocation.
//! Must not: allocate, or trust any length it has not compared with the remaining input.

use super::error::{Error, ErrorKind};
use super::varint;
use super::Decode;

/// Deepest nesting of struct bodies and sequences a reader accepts. Recursive types (a tree of
/// boxed nodes) are framed like structs, so this bounds the decoder's stack on hostile input.
///
/// It must stay well above JSON's nesting limit (`json::DEPTH_MAX_DEFAULT`, 512; `app` asserts
/// it at compile time): a record
/// read from a request is encoded into an event without any limit and decoded again when it
/// is applied, and an event that does not decode stops the applier. A JSON object or array is
/// one binary level at most, except that a newtype struct adds a level JSON does not have, so
/// twice the JSON limit covers every record a request can carry through newtypes around half
/// its containers. At 128, a 64-deep tree of `{"kids":[...]}` nodes (128 JSON levels)
/// failed at apply. A thousand levels of a four-field derived tree decode within a 2 MiB
/// thread stack, also unoptimized.
pub const DEPTH_MAX: u32 = 1024;

/// Largest element count accepted for a sequence whose elements may encode to zero bytes (e.g.
/// `Vec<()>`), where the remaining input cannot bound the count.
pub const ZERO_SIZE_COUNT_MAX: u64 = 1 << 16;

/// A cursor over `&'a [u8]`. Reads borrow from the input; a failed read leaves the cursor where
/// it was.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    /// The unread bytes.
    rest: &'a [u8],
    /// Offset of `rest[0]` in the top-level input (for error messages).
    offset: usize,
    /// Current nesting depth; `depth <= DEPTH_MAX` always.
    depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader over all of `bytes`, at depth 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            rest: bytes,
            offset: 0,
            depth: 0,
        }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// True when every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Offset of the next byte in the top-level input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Current nesting depth (0 at the top level).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: ErrorKind) -> Error {
        Error::at(kind, self.offset)
    }

    /// Reads one raw byte.
    #[inline]
    pub fn read_u8(&mut self) -> Result<u8, Error> {
        match self.rest.split_first() {
            Some((&byte, rest)) => {
                self.rest = rest;
                self.offset += 1;
                Ok(byte)
            }
            None => Err(self.error(ErrorKind::UnexpectedEnd {
                needed_bytes: 1,
                remaining_bytes: 0,
            })),
        }
    }

    /// Reads a canonical LEB128 `u64`.
    #[inline]
    pub fn read_varint(&mut self) -> Result<u64, Error> {
        // One-byte values (lengths, counts, small numbers) dominate; keep their path tiny so
        // it inlines everywhere, and the general parser out of line.
        if let Some((&byte, rest)) = self.rest.split_first() {
            if byte < 0x80 {
                self.rest = rest;
                self.offset += 1;
                return Ok(u64::from(byte));
            }
        }
        self.read_varint_slow()
    }

    #[inline(never)]
    fn read_varint_slow(&mut self) -> Result<u64, Error> {
        if let Some(&chunk) = self.rest.first_chunk::<8>() {
            if let Some((value, used)) = varint::parse_varint_word(u64::from_le_bytes(chunk)) {
                self.advance(used);
                return Ok(value);
            }
        }
        match varint::parse_varint(self.rest) {
            Ok((value, used)) => {
                self.advance(used);
                Ok(value)
            }
            Err(kind) => Err(self.error(kind)),
        }
    }

    /// Reads a canonical LEB128 `u128`.
    pub fn read_varint_u128(&mut self) -> Result<u128, Error> {
        match varint::parse_varint_u128(self.rest) {
            Ok((value, used)) => {
                self.advance(used);
                Ok(value)
            }
            Err(kind) => Err(self.error(kind)),
        }
    }

    /// Borrows the next `len` bytes; an error (and no advance) if fewer remain.
    #[inline]
    pub fn read_bytes(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if len > self.rest.len() {
            let kind = ErrorKind::UnexpectedEnd {
                needed_bytes: len,
                remaining_bytes: self.rest.len(),
            };
            return Err(self.error(kind));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        self.offset += len;
        Ok(head)
    }

    /// Reads exactly `N` bytes into an array (fixed-width floats, digests).
    #[inline]
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.read_bytes(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// Reads a varint byte length and checks it against the remaining input, so a caller may
    /// allocate `len` bytes safely.
    #[inline]
    pub fn read_len(&mut self) -> Result<usize, Error> {
        let start = self.clone();
        let length = self.read_varint()?;
        if length > self.rest.len() as u64 {
            let kind = ErrorKind::LengthTooLarge {
                length,
                remaining_bytes: self.rest.len(),
            };
            *self = start;
            return Err(self.error(kind));
        }
        Ok(length as usize)
    }

    /// Reads a varint byte length, checks it against the remaining input and borrows that many
    /// bytes (strings, byte vectors); an error (and no advance) if fewer remain.
    #[inline]
    pub fn read_len_bytes(&mut self) -> Result<&'a [u8], Error> {
        // Short values (under 128 bytes) dominate: one comparison and one split.
        if let Some((&byte, rest)) = self.rest.split_first() {
            let length = usize::from(byte);
            if byte < 0x80 && length <= rest.len() {
                let (head, tail) = rest.split_at(length);
                self.rest = tail;
                self.offset += 1 + length;
                return Ok(head);
            }
        }
        let length = self.read_len()?;
        self.read_bytes(length)
    }

    /// Reads a varint element count for elements that each encode to at least
    /// `element_bytes_min` bytes, and checks that the remaining input can hold that many. When
    /// elements may be empty (`element_bytes_min == 0`), the count is capped at
    /// `max(remaining, ZERO_SIZE_COUNT_MAX)` instead, so a hostile count cannot spin a loop.
    #[inline]
    pub fn read_count(&mut self, element_bytes_min: usize) -> Result<usize, Error> {
        let start = self.clone();
        let count = self.read_varint()?;
        let remaining_bytes = self.rest.len();
        let fits = if element_bytes_min == 0 {
            count <= (remaining_bytes as u64).max(ZERO_SIZE_COUNT_MAX)
        } else {
            count
                .checked_mul(element_bytes_min as u64)
                .is_some_and(|n| n <= remaining_bytes as u64)
        };
        if !fits {
            *self = start;
            return Err(self.error(ErrorKind::LengthTooLarge {
                length: count,
                remaining_bytes,
            }));
        }
        Ok(count as usize)
    }

    /// Reads a varint length then returns a sub-reader over exactly that many bytes, one level
    /// deeper. The parent advances past the body, whatever the caller reads of it: bytes a newer
    /// version appended to the body are skipped this way.
    #[inline]
    pub fn struct_body(&mut self) -> Result<Reader<'a>, Error> {
        if self.depth >= DEPTH_MAX {
            return Err(self.error(ErrorKind::DepthLimit {
                depth_max: DEPTH_MAX,
            }));
        }
        let length = self.read_len()?;
        let body_offset = self.offset;
        let body = self.read_bytes(length)?;
        Ok(Reader {
            rest: body,
            offset: body_offset,
            depth: self.depth + 1,
        })
    }

    /// Runs `f` one nesting level deeper (sequences, maps, arrays), restoring the depth after.
    #[inline]
    pub fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        if self.depth >= DEPTH_MAX {
            return Err(self.error(ErrorKind::DepthLimit {
                depth_max: DEPTH_MAX,
            }));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// An error if any byte remains (`from_slice` consumes exactly).
    pub fn finish(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error(ErrorKind::TrailingBytes {
                count: self.rest.len(),
            }))
        }
    }

    /// Decodes the next struct field: `Err(missing_field(name))` if the body has ended (the data
    /// was written by an older version without this field), else the value with `name` added
    /// to the path of any error.
    #[inline]
    pub fn field<T: Decode>(&mut self, name: &str) -> Result<T, Error> {
        if self.is_empty() {
            return Err(Error::at(
                ErrorKind::MissingField(name.to_string()),
                self.offset,
            ));
        }
        T::decode(self).map_err(|e| e.with_field(name))
    }

    /// Like [`Reader::field`], but an ended body yields `default()` (fields marked
    /// `#[binary(default)]` / `#[db(default)]`).
    #[inline]
    pub fn field_or_else<T: Decode>(
        &mut self,
        name: &str,
        default: impl FnOnce() -> T,
    ) -> Result<T, Error> {
        if self.is_empty() {
            return Ok(default());
        }
        T::decode(self).map_err(|e| e.with_field(name))
    }

    #[inline]
    fn advance(&mut self, count: usize) {
        assert!(
            count <= self.rest.len(),
            "advance past the end: {count} > {}",
            self.rest.len()
        );
        self.rest = &self.rest[count..];
        self.offset += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bytes_and_reports_offsets() {
        let mut r = Reader::new(&[1, 2, 3, 0x80, 0x01]);
        assert_eq!(r.read_u8(), Ok(1));
        assert_eq!(r.read_bytes(2), Ok(&[2u8, 3][..]));
        assert_eq!(r.offset(), 3);
        assert_eq!(r.read_varint(), Ok(128));
        assert!(r.is_empty());
        assert_eq!(r.finish(), Ok(()));
        let error = r.read_u8().expect_err("empty");
        assert_eq!(error.offset(), Some(5));
        let error = r.read_bytes(1).expect_err("empty");
        assert_eq!(
            error.kind(),
            &ErrorKind::UnexpectedEnd {
                needed_bytes: 1,
                remaining_bytes: 0
            }
        );
    }

    #[test]
    fn length_and_count_are_checked_before_use() {
        let mut r = Reader::new(&[5, 1, 2]);
        let error = r.read_len().expect_err("5 > 2");
        assert_eq!(
            error.kind(),
            &ErrorKind::LengthTooLarge {
                length: 5,
                remaining_bytes: 2
            }
        );
        assert_eq!(r.remaining(), 3, "failed read does not advance");
        let mut r = Reader::new(&[3, 1, 2, 3, 4, 5, 6]);
        assert_eq!(r.clone().read_count(2), Ok(3));
        assert!(
            r.read_count(3).is_err(),
            "3 elements of >= 3 bytes need 9 bytes"
        );
        let mut r = Reader::new(&[0xff, 0xff, 0x03]);
        assert_eq!(
            r.read_count(0),
            Ok(0xffff),
            "zero-size elements capped by the constant"
        );
        let mut r = Reader::new(&[0x80, 0x80, 0x04]);
        assert_eq!(r.read_count(0), Ok(0x10000), "the cap itself is accepted");
        let mut r = Reader::new(&[0x81, 0x80, 0x04]);
        assert!(r.read_count(0).is_err(), "one past the cap");
    }

    #[test]
    fn struct_body_is_bounded_and_parent_skips_it() {
        let mut r = Reader::new(&[2, 7, 8, 9]);
        let mut body = r.struct_body().expect("body");
        assert_eq!(body.depth(), 1);
        assert_eq!(body.read_u8(), Ok(7));
        assert_eq!(r.read_u8(), Ok(9), "parent advanced past the whole body");
        assert_eq!(body.offset(), 2);
    }

    #[test]
    fn depth_limit_stops_nesting() {
        let bytes = vec![0u8; 4];
        let mut r = Reader::new(&bytes);
        r.depth = DEPTH_MAX;
        let error = r.struct_body().expect_err("too deep");
        assert_eq!(
            error.kind(),
            &ErrorKind::DepthLimit {
                depth_max: DEPTH_MAX
            }
        );
        assert!(r.nested(|_| Ok(())).is_err());
        r.depth = DEPTH_MAX - 1;
        assert_eq!(r.nested(|inner| Ok(inner.depth())), Ok(DEPTH_MAX));
        assert_eq!(r.depth(), DEPTH_MAX - 1, "depth restored after nested");
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let r = Reader::new(&[1, 2]);
        assert_eq!(
            r.finish().expect_err("trailing").kind(),
            &ErrorKind::TrailingBytes { count: 2 }
        );
    }
}
