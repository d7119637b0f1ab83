//! Close frames (RFC 6455 §5.5.1, §7.4): status codes, reasons, and their validation.
//!
//! Owns: which status codes may appear on the wire, the layout of a close payload, and
//! truncating reasons to fit a control frame.
//! Must not: decide when to close; that is the connection state machine's job.

use std::fmt;

use super::frame::CONTROL_PAYLOAD_BYTES_MAX;
use super::utf8::Utf8Validator;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, idle timeout).
pub const GOING_AWAY: u16 = 1001;
/// Protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A text message (or close reason) that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A message that violates the endpoint's policy (a send queue that overflowed, say).
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame or message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The client expected an extension the server did not negotiate.
pub const MANDATORY_EXTENSION: u16 = 1010;
/// An unexpected condition in the server.
pub const INTERNAL_ERROR: u16 = 1011;
/// The server is overloaded; try again later (IANA registry, after RFC 6455).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Longest close reason in bytes: a control payload minus the two status bytes.
pub const REASON_BYTES_MAX: usize = CONTROL_PAYLOAD_BYTES_MAX - 2;

/// Whether `code` may be sent in a close frame (RFC 6455 §7.4.1–§7.4.2 and the IANA registry).
///
/// 1004–1006 and 1015 are reserved and must never be on the wire; 1012–1014 were registered
/// after the RFC (service restart, try again later, bad gateway); 1016–2999 are unassigned
/// protocol codes; 3000–4999 belong to libraries and applications.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A received or sent close frame with a status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: u16,
    /// The reason (valid UTF-8, at most [`REASON_BYTES_MAX`] bytes).
    pub reason: String,
}

/// Why a close payload is invalid. Each maps to the code the receiver fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseError {
    /// A one-byte payload: a status code is two bytes.
    TruncatedCode,
    /// A status code that may not appear on the wire.
    InvalidCode(u16),
    /// The reason is not valid UTF-8.
    InvalidReason,
}

impl CloseError {
    /// The close status code to fail the connection with.
    pub fn close_code(self) -> u16 {
        match self {
            CloseError::InvalidReason => INVALID_PAYLOAD,
            CloseError::TruncatedCode | CloseError::InvalidCode(_) => PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::TruncatedCode => {
                f.write_str("close payload of one byte has no complete status code")
            }
            CloseError::InvalidCode(code) => write!(f, "close status code {code} may not be sent"),
            CloseError::InvalidReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Parses an (unmasked) close payload: empty means "no status code" (RFC 6455 §7.1.5: 1005).
pub fn parse_payload(payload: &[u8]) -> Result<Option<CloseFrame>, CloseError> {
    assert!(
        payload.len() <= CONTROL_PAYLOAD_BYTES_MAX,
        "the frame parser bounds control payloads"
    );
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::TruncatedCode),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            let mut validator = Utf8Validator::new();
            if validator.feed(reason).is_err() || !validator.is_boundary() {
                return Err(CloseError::InvalidReason);
            }
            let reason =
                String::from_utf8(reason.to_vec()).map_err(|_| CloseError::InvalidReason)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Appends the close payload for `code` and `reason` to `out`, cutting the reason at a character
/// boundary so the payload fits a control frame.
///
/// # Panics
/// If `code` may not be sent ([`is_valid_code`]).
pub fn write_payload(out: &mut Vec<u8>, code: u16, reason: &str) {
    assert!(
        is_valid_code(code),
        "refusing to send reserved close code {code}"
    );
    let start = out.len();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(truncate_reason(reason).as_bytes());
    assert!(out.len() - start <= CONTROL_PAYLOAD_BYTES_MAX);
}

/// The longest prefix of `reason` that fits in [`REASON_BYTES_MAX`] bytes and ends on a char.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= REASON_BYTES_MAX {
        return reason;
    }
    let mut end = REASON_BYTES_MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        let invalid = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        assert!(valid.iter().all(|&code| is_valid_code(code)));
        assert!(invalid.iter().all(|&code| !is_valid_code(code)));
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b""), Ok(None));
        assert_eq!(parse_payload(b"\x03"), Err(CloseError::TruncatedCode));
        assert_eq!(
            parse_payload(b"\x03\xE8"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
        assert_eq!(
            parse_payload(b"\x03\xE9bye \xC3\xA9"),
            Ok(Some(CloseFrame {
                code: 1001,
                reason: "bye é".into()
            }))
        );
        assert_eq!(
            parse_payload(b"\x03\xEC"),
            Err(CloseError::InvalidCode(1004))
        );
        assert_eq!(
            parse_payload(b"\x03\xE8\xCE\xBA\xE1\xBD"),
            Err(CloseError::InvalidReason)
        );
        assert_eq!(
            parse_payload(b"\x03\xE8\xFF"),
            Err(CloseError::InvalidReason)
        );
        assert_eq!(CloseError::InvalidReason.close_code(), 1007);
        assert_eq!(CloseError::InvalidCode(5).close_code(), 1002);
    }

    proptest::proptest! {
        #[test]
        fn any_payload_parses_or_fails_cleanly(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=125)) {
            match parse_payload(&payload) {
                Ok(None) => proptest::prop_assert!(payload.is_empty()),
                Ok(Some(frame)) => {
                    proptest::prop_assert!(is_valid_code(frame.code));
                    let mut written = Vec::new();
                    write_payload(&mut written, frame.code, &frame.reason);
                    proptest::prop_assert_eq!(written, payload);
                }
                Err(error) => proptest::prop_assert!(matches!(error.close_code(), 1002 | 1007)),
            }
        }
    }

    #[test]
    fn written_payload_round_trips_and_fits() {
        let long_reason = "é".repeat(100);
        let mut out = Vec::new();
        write_payload(&mut out, GOING_AWAY, &long_reason);
        assert!(out.len() <= CONTROL_PAYLOAD_BYTES_MAX);
        let Ok(Some(frame)) = parse_payload(&out) else {
            panic!("did not parse")
        };
        assert_eq!(frame.code, GOING_AWAY);
        assert_eq!(frame.reason, "é".repeat(61));
        assert_eq!(truncate_reason("short"), "short");
    }
}
