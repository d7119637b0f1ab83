//! An incremental UTF-8 validator for text messages that arrive in pieces.
//!
//! Owns: the UTF-8 well-formedness rules of RFC 3629 §4 (no overlongs, no surrogates, nothing
//! above U+10FFFF), applied byte by byte so that a text message split across frames, or a frame
//! split across reads, fails on the first byte that makes it invalid (RFC 6455 §8.1 "fail fast").
//! Must not: allocate or keep the bytes it has seen; it only keeps the state of one code point.

use std::fmt;

/// Carried between calls to [`Utf8Validator::feed`]: how many continuation bytes the current
/// code point still needs and the range the next one must fall in (narrower than 0x80..=0xBF
/// right after E0, ED, F0 and F4, which is how overlongs, surrogates and values past U+10FFFF
/// are refused at their second byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Validator {
    needed: u8,
    lower: u8,
    upper: u8,
}

/// The byte at `offset` (within the slice given to that call of `feed`) cannot continue any
/// valid UTF-8 sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error {
    /// Offset of the first invalid byte in the slice passed to `feed`.
    pub offset: usize,
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid UTF-8 at offset {}", self.offset)
    }
}

impl std::error::Error for Utf8Error {}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    /// A validator at the start of a text (a code point boundary).
    pub const fn new() -> Self {
        Utf8Validator {
            needed: 0,
            lower: 0x80,
            upper: 0xBF,
        }
    }

    /// True when every code point seen so far is complete; a text may end only here.
    pub fn is_boundary(&self) -> bool {
        self.needed == 0
    }

    /// Validates the next bytes of the text. After an error the validator must not be reused.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut index = 0;
        while index < bytes.len() {
            if self.needed == 0 {
                index += ascii_prefix_len(&bytes[index..]);
                // Sequences wholly inside the slice are checked without touching the state;
                // a cut-off or invalid one goes through the byte-by-byte path below, which
                // finds the exact offset of the error.
                while let Some(width) = whole_sequence_len(&bytes[index..]) {
                    index += width;
                }
                let Some(&byte) = bytes.get(index) else { break };
                if byte < 0x80 {
                    continue;
                }
                self.start(byte).map_err(|()| Utf8Error { offset: index })?;
            } else {
                let byte = bytes[index];
                if byte < self.lower || byte > self.upper {
                    return Err(Utf8Error { offset: index });
                }
                self.needed -= 1;
                self.lower = 0x80;
                self.upper = 0xBF;
            }
            index += 1;
        }
        assert!(self.needed <= 3);
        Ok(())
    }

    /// Begins a code point at a non-ASCII lead byte (RFC 3629 §4 table).
    fn start(&mut self, lead: u8) -> Result<(), ()> {
        assert!(self.needed == 0 && lead >= 0x80);
        let (needed, lower, upper) = lead_class(lead).ok_or(())?;
        *self = Utf8Validator {
            needed,
            lower,
            upper,
        };
        Ok(())
    }
}

/// For a lead byte: how many continuation bytes follow and the range of the first of them
/// (RFC 3629 §4 table). `None` for continuation bytes, the overlong leads C0/C1, and F5..FF.
fn lead_class(lead: u8) -> Option<(u8, u8, u8)> {
    match lead {
        0xC2..=0xDF => Some((1, 0x80, 0xBF)),
        0xE0 => Some((2, 0xA0, 0xBF)),
        0xE1..=0xEC | 0xEE..=0xEF => Some((2, 0x80, 0xBF)),
        0xED => Some((2, 0x80, 0x9F)),
        0xF0 => Some((3, 0x90, 0xBF)),
        0xF1..=0xF3 => Some((3, 0x80, 0xBF)),
        0xF4 => Some((3, 0x80, 0x8F)),
        _ => None,
    }
}

/// Width of the valid multi-byte sequence starting `bytes` if it lies wholly inside `bytes`;
/// `None` for ASCII, a cut-off sequence, or an invalid one.
fn whole_sequence_len(bytes: &[u8]) -> Option<usize> {
    let (needed, lower, upper) = lead_class(*bytes.first()?)?;
    let sequence = bytes.get(..usize::from(needed) + 1)?;
    let second_ok = (lower..=upper).contains(&sequence[1]);
    let rest_ok = sequence[2..]
        .iter()
        .all(|&byte| (0x80..=0xBF).contains(&byte));
    (second_ok && rest_ok).then_some(sequence.len())
}

/// Length of the ASCII run at the start of `bytes`, eight bytes at a time where possible.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut index = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if u64::from_ne_bytes(word) & HIGH_BITS != 0 {
            break;
        }
        index += 8;
    }
    while index < bytes.len() && bytes[index] < 0x80 {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whole-text validation through the incremental validator.
    fn valid(bytes: &[u8]) -> bool {
        let mut validator = Utf8Validator::new();
        validator.feed(bytes).is_ok() && validator.is_boundary()
    }

    #[test]
    fn accepts_and_rejects_known_sequences() {
        let accepted: [&[u8]; 9] = [
            b"",
            b"Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
            b"\xF0\x90\x80\x80",
            b"\xF4\x8F\xBF\xBF",
            b"\xED\x9F\xBF",
            b"\xEE\x80\x80",
            b"\xEF\xBF\xBF",
            b"\xE0\xA0\x80",
        ];
        for bytes in accepted {
            assert!(valid(bytes), "{bytes:x?}");
        }
        let rejected: [&[u8]; 12] = [
            b"\x80",
            b"\xBF",
            b"\xC0\xAF",
            b"\xC1\xBF",
            b"\xE0\x80\xAF",
            b"\xED\xA0\x80",
            b"\xED\xBF\xBF",
            b"\xF0\x80\x80\xAF",
            b"\xF4\x90\x80\x80",
            b"\xF5\x80\x80\x80",
            b"\xFE",
            b"\xCE\xBA\xE1\xBD",
        ];
        for bytes in rejected {
            assert!(!valid(bytes), "{bytes:x?}");
        }
    }

    #[test]
    fn fails_on_the_first_invalid_byte() {
        // κόσμε then an ED A0 surrogate: the error is at the A0, before the text ends.
        let text = b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited";
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(text), Err(Utf8Error { offset: 12 }));
        // Fed byte by byte, every byte before the A0 is accepted.
        let mut validator = Utf8Validator::new();
        for (index, &byte) in text.iter().enumerate() {
            let result = validator.feed(&[byte]);
            assert_eq!(result.is_err(), index == 12, "index {index}");
            if result.is_err() {
                break;
            }
        }
    }

    #[test]
    fn incomplete_at_the_end_is_not_a_boundary() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(b"ab\xF0\x9F"), Ok(()));
        assert!(!validator.is_boundary());
        assert_eq!(validator.feed(b"\x98\x80"), Ok(()));
        assert!(validator.is_boundary());
    }

    proptest! {
        #[test]
        fn agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(valid(&bytes), std::str::from_utf8(&bytes).is_ok());
        }

        #[test]
        fn agrees_with_std_on_near_valid_text(text in "\\PC{0,24}", flip in any::<(usize, u8)>()) {
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let index = flip.0 % bytes.len();
                bytes[index] = flip.1;
            }
            prop_assert_eq!(valid(&bytes), std::str::from_utf8(&bytes).is_ok());
        }

        #[test]
        fn split_anywhere_gives_the_same_answer(text in "\\PC{0,24}", split in any::<usize>()) {
            let bytes = text.into_bytes();
            let split = split % (bytes.len() + 1);
            let mut validator = Utf8Validator::new();
            prop_assert_eq!(validator.feed(&bytes[..split]), Ok(()));
            prop_assert_eq!(validator.feed(&bytes[split..]), Ok(()));
            prop_assert!(validator.is_boundary());
        }

        #[test]
        fn error_offset_matches_std(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // std's valid_up_to is where the first bad sequence starts; ours is the first byte that
            // cannot continue it, which is at or after that point and within one sequence of it.
            let mut validator = Utf8Validator::new();
            match (validator.feed(&bytes), std::str::from_utf8(&bytes)) {
                (Err(ours), Err(theirs)) => {
                    prop_assert!(ours.offset >= theirs.valid_up_to());
                    prop_assert!(ours.offset < theirs.valid_up_to() + 4);
                }
                (Ok(()), Err(theirs)) => prop_assert!(theirs.error_len().is_none() && !validator.is_boundary()),
                (Ok(()), Ok(_)) => prop_assert!(validator.is_boundary()),
                (Err(ours), Ok(_)) => prop_assert!(false, "rejected valid text at {}", ours.offset),
            }
        }
    }
}
