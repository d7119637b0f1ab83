//! Decoding a large value from bounded pieces: [`Unspill`] reads its input as it goes, through
//! a window of about [`UNSPILL_PIECE_BYTES`], instead of holding it whole (a snapshot file of a
//! large state is loaded this way). The counterpart of [`super::Spill`].
//!
//! Owns: decoding a part at a time from a window that grows when a part is longer than it, and
//! the struct frames read through it. Must not: perform I/O itself (the source does), or
//! accept what the plain decoder refuses.

use super::error::{Error, ErrorKind};
use super::reader::Reader;

/// Bytes an unspill asks its source for at a time (more when one part is longer).
pub const UNSPILL_PIECE_BYTES: usize = 1 << 20;

/// Where an unspill's bytes come from: appends exactly the given number of the next input
/// bytes to the buffer, or fails (the error is reported as a decode error naming it).
pub type UnspillSource<'a> = &'a mut dyn FnMut(&mut Vec<u8>, usize) -> Result<(), String>;

/// A decoder input read in pieces. Decode each part with [`Unspill::part`] (a closure over an
/// ordinary [`Reader`], retried on a larger window when the part runs past the bytes at hand),
/// and the struct frames written with `Spill::begin_struct` with [`Unspill::begin_struct`] /
/// [`Unspill::end_struct`].
pub struct Unspill<'a> {
    /// Bytes read; `window[start..]` is not consumed yet.
    window: Vec<u8>,
    start: usize,
    /// Input position of `window[start]`.
    consumed: u64,
    /// Input bytes read so far.
    read: u64,
    /// Bytes the whole input holds.
    total: u64,
    source: UnspillSource<'a>,
    /// Where each open struct frame ends, innermost last.
    ends: Vec<u64>,
    /// The most bytes the window held at once.
    held_max: usize,
}

/// Whether `error` may only mean that the bytes at hand ended before the part did.
fn short(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEnd { .. } | ErrorKind::LengthTooLarge { .. }
    )
}

impl<'a> Unspill<'a> {
    /// An input of `total` bytes read from `source`.
    pub fn new(total: u64, source: UnspillSource<'a>) -> Self {
        Unspill {
            window: Vec::new(),
            start: 0,
            consumed: 0,
            read: 0,
            total,
            source,
            ends: Vec::new(),
            held_max: 0,
        }
    }

    /// The most input bytes held at once so far (what decoding in parts bounds).
    pub fn held_bytes_max(&self) -> usize {
        self.held_max
    }

    /// Where the innermost open frame (or the input) ends.
    fn bound(&self) -> u64 {
        self.ends.last().copied().unwrap_or(self.total)
    }

    /// Bytes left before the innermost open frame (or the input) ends.
    pub fn remaining(&self) -> u64 {
        self.bound() - self.consumed
    }

    /// Decodes one part with `decode`, from the bytes ahead up to the innermost frame's end:
    /// when it runs past the bytes at hand, more are read and it is run again.
    ///
    /// # Errors
    /// The part's decode error once every byte up to the bound is at hand, or the source's.
    pub fn part<T>(
        &mut self,
        mut decode: impl FnMut(&mut Reader<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        loop {
            let bound = self.bound();
            let at_hand = self.read.min(bound) - self.consumed;
            let at_hand = usize::try_from(at_hand).expect("the window is in memory");
            let bytes = &self.window[self.start..self.start + at_hand];
            let mut reader = Reader::new(bytes);
            match decode(&mut reader) {
                Ok(value) => {
                    let used = bytes.len() - reader.remaining();
                    self.start += used;
                    self.consumed += used as u64;
                    return Ok(value);
                }
                Err(error) if short(&error) && self.read < bound => self.read_more()?,
                Err(error) => return Err(error),
            }
        }
    }

    /// Decodes the rest of the innermost frame's bytes (read whole first) with `decode`, which
    /// may leave some: for a value that cannot be decoded a part at a time.
    ///
    /// # Errors
    /// As [`Unspill::part`].
    pub fn rest<T>(
        &mut self,
        decode: impl FnMut(&mut Reader<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        while self.read < self.bound() {
            self.read_more()?;
        }
        self.part(decode)
    }

    /// Reads the next piece: at least [`UNSPILL_PIECE_BYTES`], and at least as much as the
    /// window holds unconsumed (so a long part costs a number of retries logarithmic in its
    /// size), never past the input.
    fn read_more(&mut self) -> Result<(), Error> {
        if self.start > 0 {
            self.window.drain(..self.start);
            self.start = 0;
        }
        let want = (self.total - self.read).min(UNSPILL_PIECE_BYTES.max(self.window.len()) as u64)
            as usize;
        assert!(want > 0, "read_more past the input");
        let before = self.window.len();
        (self.source)(&mut self.window, want).map_err(Error::custom)?;
        assert_eq!(
            self.window.len(),
            before + want,
            "an unspill source appends exactly what it is asked for"
        );
        self.read += want as u64;
        self.held_max = self.held_max.max(self.window.len());
        Ok(())
    }

    /// Reads a varint count of elements that each encode to at least `element_bytes_min`
    /// bytes (at least 1), checked against the bytes left in the innermost frame (or input),
    /// as [`Reader::read_count`] checks it against its input.
    ///
    /// # Errors
    /// A count those bytes cannot hold, or a read error.
    pub fn count(&mut self, element_bytes_min: usize) -> Result<usize, Error> {
        let count = self.part(|r| r.read_varint())?;
        let remaining = self.remaining();
        let fits = count
            .checked_mul(element_bytes_min.max(1) as u64)
            .is_some_and(|bytes| bytes <= remaining);
        match usize::try_from(count) {
            Ok(count) if fits => Ok(count),
            _ => Err(Error::new(ErrorKind::LengthTooLarge {
                length: count,
                remaining_bytes: usize::try_from(remaining).unwrap_or(usize::MAX),
            })),
        }
    }

    /// Begins a struct frame: reads its length and bounds what follows to its body.
    ///
    /// # Errors
    /// A length past the enclosing frame or input, or a read error.
    pub fn begin_struct(&mut self) -> Result<(), Error> {
        let length = self.part(|r| r.read_varint())?;
        let remaining = self.remaining();
        if length > remaining {
            return Err(Error::new(ErrorKind::LengthTooLarge {
                length,
                remaining_bytes: usize::try_from(remaining).unwrap_or(usize::MAX),
            }));
        }
        self.ends.push(self.consumed + length);
        Ok(())
    }

    /// Ends the innermost struct frame, skipping what is left of its body (fields written by
    /// a newer version), as the plain decoder does.
    ///
    /// # Errors
    /// A read error.
    ///
    /// # Panics
    /// Without a frame begun: a programming error in the decoder.
    pub fn end_struct(&mut self) -> Result<(), Error> {
        let end = *self
            .ends
            .last()
            .expect("Unspill::end_struct without begin_struct");
        while self.consumed < end {
            if self.read == self.consumed {
                self.read_more()?;
            }
            let skip = (self.read.min(end) - self.consumed) as usize;
            self.start += skip;
            self.consumed += skip as u64;
        }
        self.ends.pop();
        Ok(())
    }

    /// Ends the input: every byte must have been decoded.
    ///
    /// # Errors
    /// Bytes left over.
    ///
    /// # Panics
    /// With a frame still open: a programming error in the decoder.
    pub fn finish(self) -> Result<(), Error> {
        assert!(self.ends.is_empty(), "Unspill::finish with a frame open");
        if self.consumed != self.total {
            return Err(Error::new(ErrorKind::TrailingBytes {
                count: usize::try_from(self.total - self.consumed).unwrap_or(usize::MAX),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{begin_struct, end_struct, write_varint, Decode, Encode};

    /// An outer frame holding a count, that many strings and an inner frame of as many
    /// numbers plus one field a newer version added (skipped).
    fn encoded(items: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let outer = begin_struct(&mut out);
        write_varint(&mut out, items);
        for i in 0..items {
            format!("item-{i}").encode(&mut out);
        }
        let inner = begin_struct(&mut out);
        for i in 0..items {
            write_varint(&mut out, i * 1_000_003);
        }
        "a newer field".encode(&mut out);
        end_struct(&mut out, inner);
        end_struct(&mut out, outer);
        out
    }

    fn decoded(input: &mut Unspill<'_>) -> Result<(Vec<String>, Vec<u64>), Error> {
        input.begin_struct()?;
        let items = input.part(|r| r.read_varint())?;
        let mut names = Vec::new();
        for _ in 0..items {
            names.push(input.part(String::decode)?);
        }
        input.begin_struct()?;
        let mut numbers = Vec::new();
        for _ in 0..items {
            numbers.push(input.part(|r| r.read_varint())?);
        }
        input.end_struct()?;
        input.end_struct()?;
        Ok((names, numbers))
    }

    #[test]
    fn decodes_in_bounded_pieces_what_the_plain_encoder_wrote() {
        for items in [0, 1, 300_000] {
            let bytes = encoded(items);
            let (mut at, mut largest) = (0, 0);
            let mut source = |window: &mut Vec<u8>, want: usize| {
                largest = largest.max(want);
                window.extend_from_slice(&bytes[at..at + want]);
                at += want;
                Ok(())
            };
            let mut input = Unspill::new(bytes.len() as u64, &mut source);
            let (names, numbers) = decoded(&mut input).expect("decodes");
            input.finish().expect("whole");
            assert_eq!(names.len() as u64, items);
            assert!(names
                .iter()
                .enumerate()
                .all(|(i, n)| *n == format!("item-{i}")));
            assert!(numbers
                .iter()
                .enumerate()
                .all(|(i, n)| *n == i as u64 * 1_000_003));
            assert!(largest <= UNSPILL_PIECE_BYTES, "a read of {largest} bytes");
            assert!(input_held(&bytes) <= 2 * UNSPILL_PIECE_BYTES);
        }
    }

    fn input_held(bytes: &[u8]) -> usize {
        let mut at = 0;
        let mut source = |window: &mut Vec<u8>, want: usize| {
            window.extend_from_slice(&bytes[at..at + want]);
            at += want;
            Ok(())
        };
        let mut input = Unspill::new(bytes.len() as u64, &mut source);
        decoded(&mut input).expect("decodes");
        input.held_bytes_max()
    }

    #[test]
    fn a_cut_input_a_lying_frame_and_a_source_error_are_refused() {
        let bytes = encoded(1000);
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            let mut at = 0;
            let mut source = |window: &mut Vec<u8>, want: usize| {
                window.extend_from_slice(&bytes[at..at + want]);
                at += want;
                Ok(())
            };
            let mut input = Unspill::new(cut as u64, &mut source);
            let whole = decoded(&mut input).and_then(|_| input.finish());
            assert!(whole.is_err(), "cut at {cut} accepted");
        }
        let mut failing = |_: &mut Vec<u8>, _: usize| Err("read failed".to_string());
        let mut input = Unspill::new(bytes.len() as u64, &mut failing);
        let error = decoded(&mut input).expect_err("the source failed");
        assert!(error.to_string().contains("read failed"), "{error}");
        // A trailing byte after the outer frame.
        let mut longer = bytes.clone();
        longer.push(0);
        let mut at = 0;
        let mut source = |window: &mut Vec<u8>, want: usize| {
            window.extend_from_slice(&longer[at..at + want]);
            at += want;
            Ok(())
        };
        let mut input = Unspill::new(longer.len() as u64, &mut source);
        decoded(&mut input).expect("the value decodes");
        assert!(input.finish().is_err(), "a trailing byte is refused");
    }
}
