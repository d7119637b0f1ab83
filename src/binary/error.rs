//! The binary codec's error type: a typed kind, the field path it happened under, and the byte
//! offset in the input when the reader knew it.
//!
//! Owns: every way decoding can fail, with a Display a person can act on.
//! Must not: carry borrowed input (errors outlive the buffer they came from).

use std::fmt;

/// What went wrong while decoding. One variant per failure, with the values involved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before a value was complete.
    UnexpectedEnd {
        /// Bytes the value needed.
        needed_bytes: usize,
        /// Bytes that were left.
        remaining_bytes: usize,
    },
    /// A length or count prefix claims more than the remaining input can hold (checked before
    /// any allocation).
    LengthTooLarge {
        /// The claimed length (bytes) or count (elements).
        length: u64,
        /// Bytes that were left after the prefix.
        remaining_bytes: usize,
    },
    /// Nesting of structs and sequences went deeper than the reader's limit.
    DepthLimit {
        /// The limit that was hit.
        depth_max: u32,
    },
    /// A string's bytes are not UTF-8.
    InvalidUtf8,
    /// A bool byte other than 0 or 1.
    InvalidBool(u8),
    /// An `Option` tag byte other than 0 or 1.
    InvalidOptionTag(u8),
    /// A `char` value that is not a Unicode scalar value.
    InvalidChar(u64),
    /// A varint longer than its type allows, or with bits past the type's width.
    VarintOverflow,
    /// A varint with redundant trailing zero groups (non-canonical, rejected so that every value
    /// has exactly one encoding).
    VarintOverlong,
    /// A varint whose value does not fit the integer type being decoded.
    IntegerOutOfRange {
        /// The decoded value (for signed types: after zigzag decoding, as its bit pattern).
        value: u128,
        /// The Rust type that was being decoded.
        type_name: &'static str,
    },
    /// Bytes left over after the top-level value (`from_slice` consumes exactly).
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The same key (or set element) appears twice in a map (or set).
    DuplicateKey,
    /// Map keys (or set elements) out of canonical order: by encoded bytes for hash
    /// collections, by `Ord` for tree collections. Only one encoding of a map is accepted.
    UnsortedKeys,
    /// A struct body ended before a field that has no default.
    MissingField(String),
    /// An enum variant index this version does not know.
    UnknownVariant(u64),
    /// A failure reported by a hand-written `Decode` impl.
    Custom(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEnd {
                needed_bytes,
                remaining_bytes,
            } => write!(
                f,
                "unexpected end of input: needed {needed_bytes} bytes, {remaining_bytes} left"
            ),
            ErrorKind::LengthTooLarge {
                length,
                remaining_bytes,
            } => write!(
                f,
                "length prefix {length} exceeds the {remaining_bytes} bytes of remaining input"
            ),
            ErrorKind::DepthLimit { depth_max } => {
                write!(f, "nesting deeper than the limit of {depth_max} levels")
            }
            ErrorKind::InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            ErrorKind::InvalidBool(byte) => write!(f, "invalid bool byte {byte} (expected 0 or 1)"),
            ErrorKind::InvalidOptionTag(byte) => {
                write!(f, "invalid Option tag {byte} (expected 0 or 1)")
            }
            ErrorKind::InvalidChar(value) => {
                write!(f, "{value:#x} is not a Unicode scalar value")
            }
            ErrorKind::VarintOverflow => write!(f, "varint overflows its integer type"),
            ErrorKind::VarintOverlong => {
                write!(
                    f,
                    "varint has redundant trailing zero bytes (non-canonical)"
                )
            }
            ErrorKind::IntegerOutOfRange { value, type_name } => {
                write!(f, "value {value} does not fit in {type_name}")
            }
            ErrorKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the value")
            }
            ErrorKind::DuplicateKey => write!(f, "duplicate key in map or set"),
            ErrorKind::UnsortedKeys => write!(f, "map or set keys out of canonical order"),
            ErrorKind::MissingField(name) => write!(f, "missing field `{name}`"),
            ErrorKind::UnknownVariant(index) => write!(f, "unknown enum variant index {index}"),
            ErrorKind::Custom(message) => f.write_str(message),
        }
    }
}

/// A decoding error. Boxed inside so that `Result<T, Error>` stays one word larger than `T` on
/// the hot path; errors themselves are rare.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    /// Field path from the top-level value, e.g. `.items[3].price`; built on the way up.
    path: String,
    /// Byte offset into the top-level input where the failing read started, when known.
    offset: Option<usize>,
}

impl Error {
    /// An error of `kind` with no path and no offset.
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                path: String::new(),
                offset: None,
            }),
        }
    }

    /// An error of `kind` at byte `offset` of the top-level input.
    pub fn at(kind: ErrorKind, offset: usize) -> Self {
        let mut error = Error::new(kind);
        error.inner.offset = Some(offset);
        error
    }

    /// Prepends `.name` to the path (called on the way up, innermost field first).
    pub fn with_field(mut self, name: &str) -> Self {
        let mut path = String::with_capacity(name.len() + 1 + self.inner.path.len());
        path.push('.');
        path.push_str(name);
        path.push_str(&self.inner.path);
        self.inner.path = path;
        self
    }

    /// Prepends `[index]` to the path (sequence elements, tuple fields, map entries).
    pub fn with_index(mut self, index: usize) -> Self {
        self.inner.path = format!("[{index}]{}", self.inner.path);
        self
    }

    /// A struct field that is absent from an older encoding and has no default.
    pub fn missing_field(name: &str) -> Self {
        Error::new(ErrorKind::MissingField(name.to_string()))
    }

    /// An enum variant index this version does not know.
    pub fn unknown_variant(index: u64) -> Self {
        Error::new(ErrorKind::UnknownVariant(index))
    }

    /// A failure of a hand-written `Decode` impl.
    pub fn custom(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Custom(message.into()))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The field path, e.g. `.items[3].price`; empty at the top level.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Byte offset into the top-level input where the failing read started, when known.
    pub fn offset(&self) -> Option<usize> {
        self.inner.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.inner.path.is_empty() {
            write!(f, "${}: ", self.inner.path)?;
        }
        write!(f, "{}", self.inner.kind)?;
        if let Some(offset) = self.inner.offset {
            write!(f, " at byte {offset}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "binary::Error({self})")
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_path_kind_and_offset() {
        let error = Error::at(ErrorKind::InvalidBool(7), 12)
            .with_field("price")
            .with_index(3);
        let error = error.with_field("items");
        assert_eq!(error.path(), ".items[3].price");
        assert_eq!(
            error.to_string(),
            "$.items[3].price: invalid bool byte 7 (expected 0 or 1) at byte 12"
        );
        assert_eq!(error.offset(), Some(12));
    }

    #[test]
    fn constructors_have_their_kinds() {
        assert_eq!(
            Error::missing_field("a").kind(),
            &ErrorKind::MissingField("a".into())
        );
        assert_eq!(
            Error::unknown_variant(9).kind(),
            &ErrorKind::UnknownVariant(9)
        );
        assert_eq!(Error::custom("nope").to_string(), "nope");
        assert_eq!(
            Error::missing_field("title").to_string(),
            "missing field `title`"
        );
    }
}
