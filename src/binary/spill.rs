//! Encoding a large value in bounded pieces: [`Spill`] hands the encoding on to a sink as it
//! grows instead of holding it whole (a snapshot of a large state is written to its file this
//! way, never held as one buffer).
//!
//! Owns: the two-pass scheme that makes struct framing work without the whole body at hand.
//! A struct's length comes before its body, so the value is encoded twice: a *measure* pass
//! counts the bytes (and records the length of every struct framed through
//! [`Spill::begin_struct`], in order) while keeping at most a piece in memory, then an *emit*
//! pass writes each recorded length in front of its body and hands the bytes on. The bytes are
//! exactly those of the ordinary encoding. Must not: perform I/O itself (the sink does).

use super::varint::{varint_len, write_varint};

/// Bytes a spill holds before it hands them on (or, measuring, counts and drops them).
pub const SPILL_PIECE_BYTES: usize = 1 << 20;

/// Where the emitted bytes go: called with each piece, in order. An error stops the output
/// (later pieces are dropped) and is returned by [`Spill::finish`].
pub type SpillSink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), String>;

/// What a measure pass found: the total length, and the length of each struct framed through
/// the spill, in the order they began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Bytes of the whole encoding.
    pub bytes: u64,
    lengths: Vec<u64>,
}

/// An encoder output that is handed on in pieces of about [`SPILL_PIECE_BYTES`].
///
/// Usage, for a value that encodes itself through a spill (see `State::encode_spilled`):
/// encode small parts with the ordinary [`super::Encode`] into [`Spill::out`], call
/// [`Spill::piece_done`] between parts (never inside a struct framed with
/// [`super::begin_struct`] on `out`), and frame the large structs with
/// [`Spill::begin_struct`] / [`Spill::end_struct`]. Run it once on [`Spill::measure`], then
/// again, identically, on [`Spill::emit`] with what the first run found.
pub struct Spill<'a> {
    buf: Vec<u8>,
    /// Bytes handed on (or counted) before `buf`.
    flushed: u64,
    /// `None`: measuring.
    sink: Option<SpillSink<'a>>,
    /// Measuring: the lengths found so far. Emitting: the lengths to write.
    lengths: Vec<u64>,
    /// Emitting: the next length of `lengths` to write.
    next_length: usize,
    /// Structs begun and not ended: where each body starts, and which length is its.
    open: Vec<(u64, usize)>,
    failed: Option<String>,
}

/// Runs `encode` through both passes (measure, then emit to `sink`): the whole encoding
/// handed on in pieces, for a caller that needs no length before the bytes.
///
/// # Panics
/// If the emit pass does not match the measure pass, or the sink fails: callers pass a sink
/// that never fails (a hasher, a buffer).
pub fn spill_through(encode: impl Fn(&mut Spill<'_>), sink: SpillSink<'_>) {
    let mut measure = Spill::measure();
    encode(&mut measure);
    let measured = measure.finish().expect("measuring never fails");
    let mut emit = Spill::emit(&measured, sink);
    encode(&mut emit);
    if let Err(error) = emit.finish() {
        panic!("spilled encoding: {error}");
    }
}

impl Spill<'static> {
    /// A measure pass: counts the bytes, keeps none beyond a piece.
    pub fn measure() -> Self {
        Spill {
            buf: Vec::new(),
            flushed: 0,
            sink: None,
            lengths: Vec::new(),
            next_length: 0,
            open: Vec::new(),
            failed: None,
        }
    }
}

impl<'a> Spill<'a> {
    /// An emit pass of a value `measured` described, handing its bytes to `sink`.
    pub fn emit(measured: &Measured, sink: SpillSink<'a>) -> Self {
        Spill {
            buf: Vec::with_capacity(SPILL_PIECE_BYTES + SPILL_PIECE_BYTES / 4),
            flushed: 0,
            sink: Some(sink),
            lengths: measured.lengths.clone(),
            next_length: 0,
            open: Vec::new(),
            failed: None,
        }
    }

    /// The buffer to encode the next small part into.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Marks a point between parts: once a piece is held, it is handed on.
    pub fn piece_done(&mut self) {
        if self.buf.len() >= SPILL_PIECE_BYTES {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        self.flushed += self.buf.len() as u64;
        if let (Some(sink), None) = (self.sink.as_mut(), &self.failed) {
            if let Err(error) = sink(&self.buf) {
                self.failed = Some(error);
            }
        }
        self.buf.clear();
    }

    /// Begins a framed struct whose body is encoded through this spill.
    pub fn begin_struct(&mut self) {
        if self.sink.is_none() {
            // The length is known at the end; its prefix is counted there.
            self.open.push((self.position(), self.lengths.len()));
            self.lengths.push(0);
            return;
        }
        let slot = self.next_length;
        self.next_length += 1;
        let length = self.lengths.get(slot).copied().unwrap_or_else(|| {
            self.fail("more structs than measured");
            0
        });
        write_varint(&mut self.buf, length);
        self.open.push((self.position(), slot));
    }

    /// Ends the struct begun last.
    ///
    /// # Panics
    /// Without a struct begun: a programming error in the encoder.
    pub fn end_struct(&mut self) {
        let (start, slot) = self
            .open
            .pop()
            .expect("Spill::end_struct without begin_struct");
        let length = self.position() - start;
        if self.sink.is_none() {
            self.lengths[slot] = length;
            self.flushed += varint_len(length) as u64;
        } else if self.lengths.get(slot) != Some(&length) {
            // The value encoded differently than it measured (an encoding that is not a
            // function of the value): the frames written would lie.
            self.fail("the value encoded differently in its two passes");
        }
    }

    fn fail(&mut self, reason: &str) {
        if self.failed.is_none() {
            self.failed = Some(format!("spilled encoding: {reason}"));
        }
    }

    /// Ends a pass: hands on what is left. Measuring, returns what the emit pass needs;
    /// emitting, the same (the bytes handed on, and the lengths written).
    ///
    /// # Errors
    /// The sink's first error, or an emit pass that did not match its measure pass.
    ///
    /// # Panics
    /// With a struct still open: a programming error in the encoder.
    pub fn finish(mut self) -> Result<Measured, String> {
        assert!(
            self.open.is_empty(),
            "Spill::finish with a struct still open"
        );
        self.hand_on();
        if self.sink.is_some() && self.next_length != self.lengths.len() {
            self.fail("fewer structs than measured");
        }
        match self.failed {
            Some(error) => Err(error),
            None => Ok(Measured {
                bytes: self.flushed,
                lengths: self.lengths,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{begin_struct, end_struct, Encode};

    /// A value of nested frames: an outer struct holding `items` strings and an inner struct
    /// holding as many numbers, encoded both ways.
    fn plain(items: u64) -> Vec<u8> {
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
        end_struct(&mut out, inner);
        end_struct(&mut out, outer);
        out
    }

    fn spilled(items: u64, spill: &mut Spill<'_>) {
        spill.begin_struct();
        write_varint(spill.out(), items);
        for i in 0..items {
            format!("item-{i}").encode(spill.out());
            spill.piece_done();
        }
        spill.begin_struct();
        for i in 0..items {
            write_varint(spill.out(), i * 1_000_003);
            spill.piece_done();
        }
        spill.end_struct();
        spill.end_struct();
    }

    #[test]
    fn two_passes_emit_the_plain_encoding_in_bounded_pieces() {
        for items in [0, 1, 200, 300_000] {
            let mut measure = Spill::measure();
            spilled(items, &mut measure);
            let measured = measure.finish().expect("measures");
            let mut bytes = Vec::new();
            let mut largest = 0;
            let mut sink = |piece: &[u8]| {
                largest = largest.max(piece.len());
                bytes.extend_from_slice(piece);
                Ok(())
            };
            let mut emit = Spill::emit(&measured, &mut sink);
            spilled(items, &mut emit);
            assert_eq!(emit.finish().expect("emits"), measured);
            let expected = plain(items);
            assert_eq!(measured.bytes, expected.len() as u64);
            assert!(bytes == expected, "{items} items: the spilled bytes differ");
            // A piece is handed on once it reaches the bound, so none is much larger.
            assert!(
                largest < SPILL_PIECE_BYTES + 64,
                "a piece of {largest} bytes"
            );
        }
    }

    #[test]
    fn a_sink_error_and_a_value_that_changed_are_reported() {
        let mut measure = Spill::measure();
        spilled(300_000, &mut measure);
        let measured = measure.finish().expect("measures");
        let mut calls = 0;
        let mut failing = |_: &[u8]| {
            calls += 1;
            Err("disk full".to_string())
        };
        let mut emit = Spill::emit(&measured, &mut failing);
        spilled(300_000, &mut emit);
        assert_eq!(emit.finish(), Err("disk full".to_string()));
        assert_eq!(calls, 1, "nothing is handed on after an error");
        let mut ignore = |_: &[u8]| Ok(());
        let mut emit = Spill::emit(&measured, &mut ignore);
        spilled(299_999, &mut emit);
        let error = emit.finish().expect_err("a different value");
        assert!(error.contains("two passes"), "{error}");
    }
}
