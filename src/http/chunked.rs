//! The pure, incremental decoder of the chunked transfer coding (RFC 9112 §7.1), trailers
//! included, and the encoder used for streamed responses.
//!
//! Owns: chunk-size syntax (hex digits, bounded length, extensions), the CRLF after each
//! chunk, and the trailer section (bounded, parsed with the same field rules as the head).
//! Must not: perform I/O. The caller feeds whatever bytes arrived; the decoder keeps its state.

use super::parse::{parse_field, ParseError, Status};
use std::borrow::Cow;

/// Longest trailer section, final empty line included.
pub const TRAILER_BYTES_MAX: usize = 8 * 1024;
/// Longest chunk extension (we ignore extensions but must bound them).
pub const CHUNK_EXTENSION_BYTES_MAX: u32 = 1024;
/// Most framing bytes (size lines, extensions, whitespace, CRLFs) a body may owe beyond its
/// allowance: RFC 9112 §7.1.1 asks servers to bound the total of chunk extensions, and without
/// this bound a client could send megabytes of framing around a few data bytes (a one-byte
/// chunk with a 1 KiB extension, over and over) or pad a size line with endless whitespace.
pub const CHUNK_FRAMING_DEBT_MAX: u64 = 16 * 1024;
/// Framing each chunk earns beside twice its data size: `1\r\nx\r\n` (5 bytes of framing for
/// one of data) and any size line with a modest extension stay free.
const CHUNK_FRAMING_ALLOWANCE: u64 = 64;
/// Most hex digits in a chunk size (16 fill a u64).
const CHUNK_SIZE_DIGITS_MAX: u8 = 16;

/// Why a chunked body is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed chunk size, extension or chunk terminator (400).
    BadChunk,
    /// The decoded body exceeds the allowed size (413).
    TooLarge,
    /// Framing outweighs the data past [`CHUNK_FRAMING_DEBT_MAX`] (400).
    TooMuchFraming,
    /// Malformed or oversized trailer section (400).
    BadTrailer,
}

impl ChunkError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ChunkError::TooLarge => 413,
            ChunkError::BadChunk | ChunkError::BadTrailer | ChunkError::TooMuchFraming => 400,
        }
    }

    /// A fixed explanation for the response body.
    pub fn message(self) -> &'static str {
        match self {
            ChunkError::BadChunk => "malformed chunked body",
            ChunkError::TooLarge => "request body too large",
            ChunkError::BadTrailer => "malformed trailer section",
            ChunkError::TooMuchFraming => "chunk sizes and extensions outweigh the data",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size { value: u64, digits: u8 },
    SizeSpace { value: u64 },
    Extension { value: u64, bytes: u32 },
    SizeLf { value: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// Incremental chunked decoder. INVARIANT: `decoded` equals the bytes appended to `out`
/// across calls, and never exceeds the `body_bytes_max` given to `decode`.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    decoded: u64,
    /// Framing bytes read minus the allowance earned by the chunks so far (never below 0).
    framing_debt: u64,
    trailer: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            decoded: 0,
            framing_debt: 0,
            trailer: Vec::new(),
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending data to `out`. Returns the bytes of `input` consumed
    /// (all of it unless the body ended inside it) and whether the body is complete.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        body_bytes_max: u64,
    ) -> Result<Status<usize>, ChunkError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            if let State::Data { remaining } = self.state {
                let take = remaining.min((input.len() - pos) as u64) as usize;
                out.extend_from_slice(&input[pos..pos + take]);
                self.decoded += take as u64;
                pos += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining }
                };
                continue;
            }
            self.step(input[pos], body_bytes_max)?;
            pos += 1;
        }
        assert!(self.decoded <= body_bytes_max, "decoded past the limit");
        if self.state == State::Done {
            Ok(Status::Complete(pos))
        } else {
            assert_eq!(pos, input.len(), "stopped early without finishing");
            Ok(Status::Partial)
        }
    }

    /// Advances the state machine by one framing byte (never a data byte).
    fn step(&mut self, b: u8, body_bytes_max: u64) -> Result<(), ChunkError> {
        if self.state != State::Trailer {
            // The trailer section has its own bound (TRAILER_BYTES_MAX).
            self.framing_debt += 1;
            if self.framing_debt > CHUNK_FRAMING_DEBT_MAX {
                return Err(ChunkError::TooMuchFraming);
            }
        }
        self.state = match self.state {
            State::Size { value, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < CHUNK_SIZE_DIGITS_MAX => State::Size {
                    value: (value << 4) | u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(ChunkError::BadChunk),
                None if digits == 0 => return Err(ChunkError::BadChunk),
                None => self.after_size(b, value)?,
            },
            State::SizeSpace { value } => match b {
                b' ' | b'\t' => State::SizeSpace { value },
                b';' => State::Extension { value, bytes: 0 },
                _ => return Err(ChunkError::BadChunk),
            },
            State::Extension { value, bytes } => match b {
                b'\r' => State::SizeLf { value },
                _ if bytes >= CHUNK_EXTENSION_BYTES_MAX => return Err(ChunkError::BadChunk),
                b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Extension {
                    value,
                    bytes: bytes + 1,
                },
                _ => return Err(ChunkError::BadChunk),
            },
            State::SizeLf { value } => {
                if b != b'\n' {
                    return Err(ChunkError::BadChunk);
                }
                self.start_chunk(value, body_bytes_max)?
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            State::DataCr | State::DataLf => return Err(ChunkError::BadChunk),
            State::Trailer => self.trailer_byte(b)?,
            State::Data { .. } | State::Done => unreachable!("step called in {:?}", self.state),
        };
        Ok(())
    }

    fn after_size(&self, b: u8, value: u64) -> Result<State, ChunkError> {
        Ok(match b {
            b'\r' => State::SizeLf { value },
            b';' => State::Extension { value, bytes: 0 },
            b' ' | b'\t' => State::SizeSpace { value },
            _ => return Err(ChunkError::BadChunk),
        })
    }

    fn start_chunk(&mut self, size: u64, body_bytes_max: u64) -> Result<State, ChunkError> {
        if size == 0 {
            return Ok(State::Trailer);
        }
        if self.decoded.saturating_add(size) > body_bytes_max {
            return Err(ChunkError::TooLarge);
        }
        let allowance = CHUNK_FRAMING_ALLOWANCE.saturating_add(size.saturating_mul(2));
        self.framing_debt = self.framing_debt.saturating_sub(allowance);
        Ok(State::Data { remaining: size })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<State, ChunkError> {
        if self.trailer.len() >= TRAILER_BYTES_MAX {
            return Err(ChunkError::BadTrailer);
        }
        self.trailer.push(b);
        let t = &self.trailer;
        if b != b'\n' {
            return Ok(State::Trailer);
        }
        if t.len() >= 2 && t[t.len() - 2] != b'\r' {
            return Err(ChunkError::BadTrailer);
        }
        if t.as_slice() == b"\r\n" || t.ends_with(b"\r\n\r\n") {
            // Validate now so a bad trailer is a framing error, not a surprise later.
            self.trailers().map_err(|_| ChunkError::BadTrailer)?;
            return Ok(State::Done);
        }
        Ok(State::Trailer)
    }

    /// The trailer fields, as (name, value) pairs. Empty until the body is done. A value with
    /// obs-text that is not UTF-8 is given with U+FFFD in its place, as a header's is
    /// ([`crate::http::parse::HeaderSlot::value_text`]).
    pub fn trailers(&self) -> Result<Vec<(&str, Cow<'_, str>)>, ParseError> {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos + 2 < self.trailer.len() {
            match parse_field(&self.trailer[pos..])? {
                Status::Complete((slot, used)) => {
                    fields.push((slot.name, slot.value_text()));
                    pos += used;
                }
                Status::Partial => return Err(ParseError::BadHeaderValue),
            }
        }
        Ok(fields)
    }
}

/// Appends one chunk (`size CRLF data CRLF`) to `out`; an empty `data` writes nothing (the
/// last chunk is written by `finish_chunks`).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    while n > 0 {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8], max: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        match d.decode(input, &mut out, max)? {
            Status::Complete(n) => Ok((out, n)),
            Status::Partial => Err(ChunkError::BadChunk),
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"5;ext=1\r\nhello\r\n6 ; a\r\n world\r\n0\r\nX-Sum: 9\r\nY: z\r\n\r\nNEXT";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let status = d.decode(input, &mut out, 100).expect("ok");
        assert_eq!(status, Status::Complete(input.len() - 4));
        assert_eq!(out, b"hello world");
        assert_eq!(
            d.trailers().expect("ok"),
            [("X-Sum", "9".into()), ("Y", "z".into())]
        );
        assert_eq!(decode_all(b"0\r\n\r\n", 0).expect("ok"), (Vec::new(), 5));
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 10)
                .expect("ok")
                .0,
            b"0123456789"
        );
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"x\r\n", ChunkError::BadChunk),
            (b"\r\n", ChunkError::BadChunk),
            (b"-1\r\n", ChunkError::BadChunk),
            (b"0x5\r\n", ChunkError::BadChunk),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::BadChunk),
            (b"5\r\nhelloX\r\n", ChunkError::BadChunk),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::BadChunk),
            (b"5 x\r\n", ChunkError::BadChunk),
            (b"5;a\x00\r\n", ChunkError::BadChunk),
            (b"10000000000000000\r\n", ChunkError::BadChunk),
            (b"ffffffffffffffff\r\n", ChunkError::TooLarge),
            (b"b\r\n", ChunkError::TooLarge),
            (b"0\r\nBad Name: x\r\n\r\n", ChunkError::BadTrailer),
            (b"0\r\nA: b\n\r\n", ChunkError::BadTrailer),
            (b"0\r\n a: b\r\n\r\n", ChunkError::BadTrailer),
        ];
        for (input, expected) in cases {
            let got = decode_all(input, 10);
            assert_eq!(got, Err(*expected), "{:?}", String::from_utf8_lossy(input));
        }
        let mut big = b"0\r\n".to_vec();
        big.extend(vec![b'a'; TRAILER_BYTES_MAX + 1]);
        assert_eq!(decode_all(&big, 10), Err(ChunkError::BadTrailer));
    }

    #[test]
    fn framing_that_outweighs_the_data_is_refused() {
        let max = 1 << 20;
        // One-byte chunks: five framing bytes each, always within their allowance.
        let mut tiny = b"1\r\nx\r\n".repeat(20_000);
        tiny.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decode_all(&tiny, max).expect("one-byte chunks").0.len(),
            20_000
        );
        // A modest extension on every small chunk is fine too.
        let mut extended = b"4;name=value\r\ndata\r\n".repeat(5_000);
        extended.extend_from_slice(b"0\r\n\r\n");
        assert!(decode_all(&extended, max).is_ok());
        // Large chunks earn room for large extensions.
        let ext = "e".repeat(1000);
        let mut big = format!("200;{ext}\r\n{}\r\n", "d".repeat(0x200)).repeat(100);
        big.push_str("0\r\n\r\n");
        assert!(decode_all(big.as_bytes(), max).is_ok());
        // A 1 KiB extension around each data byte runs into the bound after a few KiB.
        let hostile = format!("1;{ext}\r\nx\r\n").repeat(100);
        let consumed = match decode_all(hostile.as_bytes(), max) {
            Err(ChunkError::TooMuchFraming) => {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let mut fed = 0;
                while d
                    .decode(&hostile.as_bytes()[fed..fed + 1], &mut out, max)
                    .is_ok()
                {
                    fed += 1;
                }
                fed
            }
            other => panic!("expected TooMuchFraming, got {other:?}"),
        };
        assert!(
            consumed as u64 <= CHUNK_FRAMING_DEBT_MAX + 2 * 1024,
            "{consumed}"
        );
        // Endless whitespace after a size is framing too.
        let mut padded = b"5".to_vec();
        padded.extend(vec![b' '; CHUNK_FRAMING_DEBT_MAX as usize + 1]);
        assert_eq!(decode_all(&padded, max), Err(ChunkError::TooMuchFraming));
    }

    #[test]
    fn split_at_every_byte_gives_the_same_result() {
        let input = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
        for split in 0..=input.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let first = d.decode(&input[..split], &mut out, 1000).expect("ok");
            if split < input.len() {
                assert_eq!(first, Status::Partial, "split {split}");
                let second = d.decode(&input[split..], &mut out, 1000).expect("ok");
                assert_eq!(second, Status::Complete(input.len() - split));
            }
            assert_eq!(out, b"abc0123456789abcdef");
            assert_eq!(d.trailers().expect("ok"), [("T", "1".into())]);
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut wire = Vec::new();
            for c in &chunks {
                encode_chunk(c, &mut wire);
            }
            wire.extend_from_slice(LAST_CHUNK);
            let (out, used) = decode_all(&wire, u64::MAX).expect("valid");
            prop_assert_eq!(out, chunks.concat());
            prop_assert_eq!(used, wire.len());
        }

        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400), max in 0u64..1000) {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            if d.decode(&input, &mut out, max).is_ok() {
                prop_assert!(out.len() as u64 <= max);
            }
        }
    }
}
