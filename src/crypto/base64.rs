//! Base64 (RFC 4648 §4) and base64url (RFC 4648 §5), encoding and strict decoding.
//!
//! Owns: both alphabets, padding rules and canonical-form checks.
//! Must not: accept anything a strict decoder should refuse: whitespace, characters outside the
//! alphabet, misplaced or missing padding, or non-zero trailing bits (RFC 4648 §3.5) are errors,
//! so every accepted text has exactly one decoding and re-encodes to itself.

use std::fmt;

/// Which 64-character alphabet to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// `A-Z a-z 0-9 + /` (RFC 4648 §4).
    Standard,
    /// `A-Z a-z 0-9 - _`, safe in URLs and file names (RFC 4648 §5).
    UrlSafe,
}

/// Whether the text ends with `=` padding to a multiple of four characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Encoding pads; decoding requires the padding.
    Required,
    /// Encoding omits padding; decoding refuses it (RFC 4648 §3.2 allows omission by agreement).
    Omitted,
}

/// Why a text is not valid base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the alphabet (or `=` where no padding may stand), at this offset.
    InvalidByte {
        /// Offset of the byte in the input.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// The length cannot be the result of encoding (e.g. 5 characters, or padded text not a multiple of 4).
    InvalidLength,
    /// The last symbol carries bits that encoding would have left zero (a non-canonical text).
    TrailingBits,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidByte { offset, byte } => {
                write!(
                    f,
                    "base64: byte 0x{byte:02x} at offset {offset} is not allowed there"
                )
            }
            DecodeError::InvalidLength => {
                f.write_str("base64: the length is not a valid encoded length")
            }
            DecodeError::TrailingBits => {
                f.write_str("base64: the last symbol has non-zero unused bits")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

const STANDARD_SYMBOLS: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE_SYMBOLS: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Marks bytes outside the alphabet in a decode table.
const INVALID: u8 = 0xFF;

const STANDARD_DECODE: [u8; 256] = decode_table(STANDARD_SYMBOLS);
const URL_SAFE_DECODE: [u8; 256] = decode_table(URL_SAFE_SYMBOLS);

const fn decode_table(symbols: &[u8; 64]) -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut index = 0;
    while index < 64 {
        table[symbols[index] as usize] = index as u8;
        index += 1;
    }
    table
}

impl Alphabet {
    fn symbols(self) -> &'static [u8; 64] {
        match self {
            Alphabet::Standard => STANDARD_SYMBOLS,
            Alphabet::UrlSafe => URL_SAFE_SYMBOLS,
        }
    }

    fn decode_table(self) -> &'static [u8; 256] {
        match self {
            Alphabet::Standard => &STANDARD_DECODE,
            Alphabet::UrlSafe => &URL_SAFE_DECODE,
        }
    }
}

/// Length of the encoding of `input_len` bytes.
pub fn encoded_len(input_len: usize, padding: Padding) -> usize {
    match padding {
        Padding::Required => input_len.div_ceil(3) * 4,
        Padding::Omitted => (input_len * 4).div_ceil(3),
    }
}

/// Standard alphabet with padding: the form of HTTP headers such as `Sec-WebSocket-Accept`.
pub fn encode(input: &[u8]) -> String {
    encode_with(input, Alphabet::Standard, Padding::Required)
}

/// URL-safe alphabet without padding: the form of tokens in URLs and cookies.
pub fn encode_url(input: &[u8]) -> String {
    encode_with(input, Alphabet::UrlSafe, Padding::Omitted)
}

/// Strict decoding of [`encode`]'s form.
pub fn decode(input: &str) -> Result<Vec<u8>, DecodeError> {
    decode_with(input.as_bytes(), Alphabet::Standard, Padding::Required)
}

/// Strict decoding of [`encode_url`]'s form.
pub fn decode_url(input: &str) -> Result<Vec<u8>, DecodeError> {
    decode_with(input.as_bytes(), Alphabet::UrlSafe, Padding::Omitted)
}

/// Encodes `input` with the given alphabet and padding.
pub fn encode_with(input: &[u8], alphabet: Alphabet, padding: Padding) -> String {
    let mut output = String::with_capacity(encoded_len(input.len(), padding));
    encode_into(input, alphabet, padding, &mut output);
    output
}

/// Appends the encoding of `input` to `output` (lets callers reuse a buffer).
pub fn encode_into(input: &[u8], alphabet: Alphabet, padding: Padding, output: &mut String) {
    let symbols = alphabet.symbols();
    let start_len = output.len();
    let mut chunks = input.chunks_exact(3);
    for chunk in &mut chunks {
        let group = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            output.push(char::from(symbols[((group >> shift) & 63) as usize]));
        }
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let second = tail.get(1).copied().unwrap_or(0);
        let group = (u32::from(tail[0]) << 16) | (u32::from(second) << 8);
        // One input byte yields two symbols, two bytes yield three.
        let symbol_count = tail.len() + 1;
        for shift in [18, 12, 6].into_iter().take(symbol_count) {
            output.push(char::from(symbols[((group >> shift) & 63) as usize]));
        }
        if padding == Padding::Required {
            for _ in symbol_count..4 {
                output.push('=');
            }
        }
    }
    assert_eq!(output.len() - start_len, encoded_len(input.len(), padding));
}

/// Strictly decodes `input` with the given alphabet and padding rule.
pub fn decode_with(
    input: &[u8],
    alphabet: Alphabet,
    padding: Padding,
) -> Result<Vec<u8>, DecodeError> {
    let table = alphabet.decode_table();
    let body = match padding {
        Padding::Required => strip_padding(input)?,
        Padding::Omitted => input,
    };
    // A final group of one symbol would carry only 6 bits: no byte sequence encodes to that.
    if body.len() % 4 == 1 {
        return Err(DecodeError::InvalidLength);
    }
    let mut output = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut group: u32 = 0;
    let mut symbols_in_group = 0;
    for (offset, &byte) in body.iter().enumerate() {
        let value = table[usize::from(byte)];
        if value == INVALID {
            return Err(DecodeError::InvalidByte { offset, byte });
        }
        group = (group << 6) | u32::from(value);
        symbols_in_group += 1;
        if symbols_in_group == 4 {
            output.extend_from_slice(&[(group >> 16) as u8, (group >> 8) as u8, group as u8]);
            group = 0;
            symbols_in_group = 0;
        }
    }
    match symbols_in_group {
        0 => {}
        2 => {
            if group & 0xF != 0 {
                return Err(DecodeError::TrailingBits);
            }
            output.push((group >> 4) as u8);
        }
        3 => {
            if group & 0x3 != 0 {
                return Err(DecodeError::TrailingBits);
            }
            output.extend_from_slice(&[(group >> 10) as u8, (group >> 2) as u8]);
        }
        _ => unreachable!("lengths of 1 mod 4 were rejected above"),
    }
    Ok(output)
}

/// Checks the padding of a padded text and returns the symbols before it.
fn strip_padding(input: &[u8]) -> Result<&[u8], DecodeError> {
    if input.len() % 4 != 0 {
        return Err(DecodeError::InvalidLength);
    }
    let pad_count = input
        .iter()
        .rev()
        .take(2)
        .take_while(|&&byte| byte == b'=')
        .count();
    let body = &input[..input.len() - pad_count];
    // "==" needs 2 symbols before it in the group and "=" needs 3: anything else left a '=' inside.
    if let Some(offset) = body.iter().position(|&byte| byte == b'=') {
        return Err(DecodeError::InvalidByte { offset, byte: b'=' });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 4648 §10 test vectors.
    const RFC_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors_standard() {
        for (plain, encoded) in RFC_VECTORS {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(
                decode(encoded).as_deref(),
                Ok(plain.as_bytes()),
                "decoding {encoded}"
            );
        }
    }

    #[test]
    fn rfc4648_vectors_url_unpadded() {
        for (plain, encoded) in RFC_VECTORS {
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(encode_url(plain.as_bytes()), unpadded);
            assert_eq!(decode_url(unpadded).as_deref(), Ok(plain.as_bytes()));
        }
    }

    #[test]
    fn alphabets_differ_on_62_and_63() {
        let input = [0xFB, 0xFF, 0xBF];
        assert_eq!(encode(&input), "+/+/");
        assert_eq!(encode_url(&input), "-_-_");
        assert_eq!(
            decode("-_-_"),
            Err(DecodeError::InvalidByte {
                offset: 0,
                byte: b'-'
            })
        );
        assert_eq!(
            decode_url("+/+/"),
            Err(DecodeError::InvalidByte {
                offset: 0,
                byte: b'+'
            })
        );
        assert_eq!(
            encode_with(&input, Alphabet::UrlSafe, Padding::Required),
            "-_-_"
        );
    }

    #[test]
    fn strict_rejections() {
        let cases: [(&str, DecodeError); 10] = [
            ("Zg", DecodeError::InvalidLength),
            ("Zg=", DecodeError::InvalidLength),
            ("Zm9vY", DecodeError::InvalidLength),
            (
                "Z===",
                DecodeError::InvalidByte {
                    offset: 1,
                    byte: b'=',
                },
            ),
            (
                "Zg==Zg==",
                DecodeError::InvalidByte {
                    offset: 2,
                    byte: b'=',
                },
            ),
            (
                "=Zg=",
                DecodeError::InvalidByte {
                    offset: 0,
                    byte: b'=',
                },
            ),
            ("Zh==", DecodeError::TrailingBits),
            ("Zm9=", DecodeError::TrailingBits),
            (
                "Zm 9",
                DecodeError::InvalidByte {
                    offset: 2,
                    byte: b' ',
                },
            ),
            ("Zm9v\n", DecodeError::InvalidLength),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input), Err(expected), "input {input:?}");
        }
        assert_eq!(
            decode_url("Zg=="),
            Err(DecodeError::InvalidByte {
                offset: 2,
                byte: b'='
            })
        );
        assert_eq!(decode_url("Z"), Err(DecodeError::InvalidLength));
        assert_eq!(decode_url("Zh"), Err(DecodeError::TrailingBits));
        assert!(decode_with(
            &[0xC3, 0xA9, b'A', b'A'],
            Alphabet::Standard,
            Padding::Required
        )
        .is_err());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let message = DecodeError::InvalidByte {
            offset: 3,
            byte: b'!',
        }
        .to_string();
        assert!(
            message.contains("0x21") && message.contains("offset 3"),
            "{message}"
        );
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                for padding in [Padding::Required, Padding::Omitted] {
                    let text = encode_with(&data, alphabet, padding);
                    prop_assert_eq!(text.len(), encoded_len(data.len(), padding));
                    prop_assert_eq!(decode_with(text.as_bytes(), alphabet, padding), Ok(data.clone()));
                }
            }
        }

        #[test]
        fn accepted_text_is_canonical(text in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Whatever the decoder accepts must re-encode to exactly the same text.
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                for padding in [Padding::Required, Padding::Omitted] {
                    if let Ok(bytes) = decode_with(&text, alphabet, padding) {
                        prop_assert_eq!(encode_with(&bytes, alphabet, padding).into_bytes(), text.clone());
                    }
                }
            }
        }

        #[test]
        fn near_valid_text_never_panics(text in "[A-Za-z0-9+/=_-]{0,24}") {
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                if let Ok(bytes) = decode_with(text.as_bytes(), alphabet, Padding::Required) {
                    prop_assert_eq!(encode_with(&bytes, alphabet, Padding::Required), text.clone());
                }
            }
        }
    }
}
