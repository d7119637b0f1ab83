//! Error types of the log: opening/recovery errors and per-append failures.
//!
//! Owns: messages a person can act on (file, offset, what to do). Must not: map errors to exit
//! codes or HTTP statuses (that is the app layer's job).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error opening, recovering, reading or truncating the log.
#[derive(Debug)]
pub enum Error {
    /// A system call failed on `path`.
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// What was being done ("open", "read", "fsync", ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another process holds the data directory lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Damaged data that is not a torn tail: the log refuses to start rather than skip records.
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte offset of the first damaged frame in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log's extent record (`log/NEWEST`) names a newer segment than any present: the
    /// newest segment file(s) were deleted, and with them acknowledged entries.
    MissingSegments {
        /// The recorded newest segment, which is missing.
        path: PathBuf,
        /// Its first index, as recorded.
        recorded: u64,
        /// The first index of the newest segment present (`None`: no segment at all).
        newest: Option<u64>,
    },
    /// The caller's visitor rejected an entry during replay or reading.
    Visitor {
        /// Index of the rejected entry (or of the first entry of its frame).
        index: u64,
        /// The visitor's message.
        message: String,
    },
    /// A request the log cannot honour (e.g. truncating below the first stored entry).
    Invalid {
        /// What was asked and why it cannot be done.
        message: String,
    },
}

impl Error {
    /// An I/O error on `path` while doing `op`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Locked { path } => write!(
                f,
                "data directory is in use by another process (lock {} is held); \
                 stop the other process or use another data directory",
                path.display()
            ),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{}: {reason} at offset {offset}; refusing to start (restore this file from \
                 a replica or backup, or see what `log repair` would cut)",
                path.display()
            ),
            Error::MissingSegments {
                path,
                recorded,
                newest,
            } => {
                let present = match newest {
                    Some(newest) => format!("the newest present starts at index {newest}"),
                    None => "no segment is present".to_string(),
                };
                write!(
                    f,
                    "{} is missing: the log's extent record says its newest segment starts at \
                     index {recorded}, but {present}; acknowledged entries from there on would \
                     be lost, so refusing to open (restore the missing segment(s) from a backup \
                     or replica; or, on a single node, accept the loss with `log repair --apply`)",
                    path.display()
                )
            }
            Error::Visitor { index, message } => write!(f, "entry {index}: {message}"),
            Error::Invalid { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why one append was not made durable. The log stays valid after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The disk is full (ENOSPC, or injected); the partial write was truncated away.
    DiskFull,
    /// Another write error; the partial write was truncated away.
    Io {
        /// The OS error text.
        message: String,
    },
    /// The append did not start right after the last stored entry (usually because an earlier
    /// append failed and this one was queued behind it).
    NotContiguous {
        /// The index the log expected.
        expected: u64,
        /// The index the append started at.
        got: u64,
    },
    /// The append is larger than [`crate::log::APPEND_BYTES_MAX`].
    TooLarge {
        /// Its size in bytes.
        bytes: usize,
    },
    /// The log is shut down.
    Closed,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::DiskFull => f.write_str("disk full: the write was not stored"),
            AppendError::Io { message } => write!(f, "write failed: {message}"),
            AppendError::NotContiguous { expected, got } => {
                write!(f, "append at index {got} but the log expects {expected}")
            }
            AppendError::TooLarge { bytes } => write!(f, "append of {bytes} bytes is too large"),
            AppendError::Closed => f.write_str("the log is closed"),
        }
    }
}

impl std::error::Error for AppendError {}
