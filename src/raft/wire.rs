//! The peer protocol's bytes: length-prefixed frames, the versioned handshake and the
//! HMAC-SHA256 challenge-response that authenticates peers with the shared cluster secret.
//!
//! Owns: the frame layout and the handshake messages (pure functions over byte slices).
//! Must not: touch sockets, threads or clocks (the transport does), or interpret Raft messages
//! beyond encoding them with the binary codec.
//!
//! Frame: `len u32 LE | kind u8 | body`, where `len` counts `kind` and `body`.
//!
//! Handshake (the dialer speaks first; every later frame on the connection is a `Message`
//! from dialer to listener):
//! 1. dialer → `Hello { magic, version, from, to, nonce_dialer, http_addr }`
//! 2. listener → `Welcome { version, from, nonce_listener, mac_listener, http_addr }` where
//!    `mac_listener = HMAC(secret, "listener" | transcript)`; or `Reject { reason }`
//! 3. dialer checks `mac_listener`, → `Auth { mac_dialer }`, `mac_dialer = HMAC(secret,
//!    "dialer" | transcript)`; the listener checks it in constant time.
//!
//! `transcript = nonce_dialer | nonce_listener | dialer id | listener id | version`, so a MAC
//! can be replayed neither on another connection (fresh nonces) nor in the other direction
//! (the role label).

use super::types::{Message, NodeId};
use crate::binary;
use crate::crypto::{ct_eq, hmac::hmac_sha256};

/// The protocol version both sides must speak. Version 2 added `MessageBody::CommitNotice`
/// (variant 11): a version-1 peer could not decode it, so it is refused at the handshake.
pub const PROTOCOL_VERSION: u32 = 2;
/// Magic opening a `Hello`.
pub const HELLO_MAGIC: [u8; 8] = *b"LITHRAFT";
/// Bytes of the length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Largest frame accepted (kind + body), in bytes: a Raft append window (1 MiB by default) or a
/// snapshot chunk fits with room to spare.
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest handshake frame accepted, in bytes (the handshake is small; an unauthenticated peer
/// must not make us buffer 32 MiB).
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4096;
/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a handshake MAC (HMAC-SHA256).
pub const MAC_BYTES: usize = 32;
/// Longest HTTP address carried in the handshake, in bytes.
pub const HTTP_ADDR_BYTES_MAX: usize = 256;

/// Frame kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Dialer's opening.
    Hello,
    /// Listener's challenge answer and counter-challenge.
    Welcome,
    /// Dialer's proof.
    Auth,
    /// Listener refuses the connection (version, identity or secret).
    Reject,
    /// One Raft message (binary codec).
    Message,
}

impl FrameKind {
    fn to_byte(self) -> u8 {
        match self {
            FrameKind::Hello => 1,
            FrameKind::Welcome => 2,
            FrameKind::Auth => 3,
            FrameKind::Reject => 4,
            FrameKind::Message => 5,
        }
    }

    fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Hello),
            2 => Some(FrameKind::Welcome),
            3 => Some(FrameKind::Auth),
            4 => Some(FrameKind::Reject),
            5 => Some(FrameKind::Message),
            _ => None,
        }
    }
}

/// Why bytes are not a valid frame or handshake message. One fixed meaning per variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix exceeds the limit in force.
    TooLarge {
        /// The announced length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A zero length (no kind byte).
    Empty,
    /// An unknown kind byte.
    UnknownKind(u8),
    /// A handshake body is malformed.
    Malformed(&'static str),
    /// The peer speaks another protocol version.
    Version(u32),
    /// A MAC did not verify.
    BadMac,
    /// A Raft message did not decode.
    Message(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLarge { bytes, max } => {
                write!(f, "frame of {bytes} bytes exceeds the limit of {max}")
            }
            WireError::Empty => f.write_str("empty frame"),
            WireError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            WireError::Malformed(what) => write!(f, "malformed handshake: {what}"),
            WireError::Version(version) => write!(
                f,
                "peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
            ),
            WireError::BadMac => f.write_str("authentication failed (cluster secret mismatch)"),
            WireError::Message(message) => write!(f, "bad raft message: {message}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A complete frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its kind.
    pub kind: FrameKind,
    /// Its body.
    pub body: &'a [u8],
    /// Bytes of the buffer it occupies (prefix included).
    pub consumed: usize,
}

/// Parses the frame at the start of `buf`. `Ok(None)` means "need more bytes".
///
/// # Errors
/// `TooLarge` as soon as the prefix announces more than `max` bytes (before they arrive),
/// `Empty`, `UnknownKind`.
pub fn parse_frame(buf: &[u8], max: usize) -> Result<Option<Frame<'_>>, WireError> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(WireError::TooLarge { bytes: len, max });
    }
    if len == 0 {
        return Err(WireError::Empty);
    }
    let Some(frame) = buf.get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + len) else {
        return Ok(None);
    };
    let kind = FrameKind::from_byte(frame[0]).ok_or(WireError::UnknownKind(frame[0]))?;
    Ok(Some(Frame {
        kind,
        body: &frame[1..],
        consumed: FRAME_PREFIX_BYTES + len,
    }))
}

/// Appends a frame to `out`; `write_body` appends the body.
///
/// # Panics
/// If the body exceeds [`FRAME_BYTES_MAX`] (our own messages are bounded by the Raft config).
pub fn encode_frame(out: &mut Vec<u8>, kind: FrameKind, write_body: impl FnOnce(&mut Vec<u8>)) {
    let mark = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX_BYTES]);
    out.push(kind.to_byte());
    write_body(out);
    let len = out.len() - mark - FRAME_PREFIX_BYTES;
    assert!(len <= FRAME_BYTES_MAX, "outgoing frame of {len} bytes");
    out[mark..mark + FRAME_PREFIX_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Appends a `Message` frame.
pub fn encode_message(out: &mut Vec<u8>, message: &Message) {
    encode_frame(out, FrameKind::Message, |body| {
        binary::Encode::encode(message, body);
    });
}

/// Decodes a `Message` frame's body.
///
/// # Errors
/// `Message` with the codec's complaint.
pub fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    binary::from_slice(body).map_err(|e| WireError::Message(e.to_string()))
}

/// The dialer's opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version spoken.
    pub version: u32,
    /// Dialer's node id.
    pub from: NodeId,
    /// The node id the dialer believes it reaches.
    pub to: NodeId,
    /// Fresh random challenge.
    pub nonce: [u8; NONCE_BYTES],
    /// Dialer's HTTP address (for forwarding writes to a leader).
    pub http_addr: String,
}

/// The listener's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version spoken.
    pub version: u32,
    /// Listener's node id.
    pub from: NodeId,
    /// Fresh random counter-challenge.
    pub nonce: [u8; NONCE_BYTES],
    /// Proof of the secret over the transcript.
    pub mac: [u8; MAC_BYTES],
    /// Listener's HTTP address.
    pub http_addr: String,
}

/// Appends a length-prefixed text of at most `HTTP_ADDR_BYTES_MAX` bytes (an address, a
/// rejection's reason): a longer one is cut at the last character boundary within the bound,
/// so the peer, which refuses a text that is not UTF-8, reads what fits.
fn put_addr(out: &mut Vec<u8>, addr: &str) {
    let mut len = addr.len().min(HTTP_ADDR_BYTES_MAX);
    while !addr.is_char_boundary(len) {
        len -= 1;
    }
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&addr.as_bytes()[..len]);
}

/// A bounds-checked cursor over a handshake body.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn addr(&mut self) -> Result<String, WireError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        if len > HTTP_ADDR_BYTES_MAX {
            return Err(WireError::Malformed("http address too long"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed("http address utf-8"))
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
}

impl Hello {
    /// Appends the `Hello` frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(out, FrameKind::Hello, |body| {
            body.extend_from_slice(&HELLO_MAGIC);
            body.extend_from_slice(&self.version.to_le_bytes());
            body.extend_from_slice(&self.from.to_le_bytes());
            body.extend_from_slice(&self.to.to_le_bytes());
            body.extend_from_slice(&self.nonce);
            put_addr(body, &self.http_addr);
        });
    }

    /// Decodes a `Hello` body. The version is returned as sent; the caller compares it.
    ///
    /// # Errors
    /// `Malformed` on a wrong magic or layout.
    pub fn decode(body: &[u8]) -> Result<Hello, WireError> {
        let mut cursor = Cursor { rest: body };
        if cursor.array::<8>()? != HELLO_MAGIC {
            return Err(WireError::Malformed("bad magic"));
        }
        let hello = Hello {
            version: cursor.u32()?,
            from: cursor.u64()?,
            to: cursor.u64()?,
            nonce: cursor.array()?,
            http_addr: cursor.addr()?,
        };
        cursor.finish()?;
        Ok(hello)
    }
}

impl Welcome {
    /// Appends the `Welcome` frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(out, FrameKind::Welcome, |body| {
            body.extend_from_slice(&self.version.to_le_bytes());
            body.extend_from_slice(&self.from.to_le_bytes());
            body.extend_from_slice(&self.nonce);
            body.extend_from_slice(&self.mac);
            put_addr(body, &self.http_addr);
        });
    }

    /// Decodes a `Welcome` body.
    ///
    /// # Errors
    /// `Malformed` on a wrong layout.
    pub fn decode(body: &[u8]) -> Result<Welcome, WireError> {
        let mut cursor = Cursor { rest: body };
        let welcome = Welcome {
            version: cursor.u32()?,
            from: cursor.u64()?,
            nonce: cursor.array()?,
            mac: cursor.array()?,
            http_addr: cursor.addr()?,
        };
        cursor.finish()?;
        Ok(welcome)
    }
}

/// Appends an `Auth` frame carrying the dialer's MAC.
pub fn encode_auth(out: &mut Vec<u8>, mac: &[u8; MAC_BYTES]) {
    encode_frame(out, FrameKind::Auth, |body| body.extend_from_slice(mac));
}

/// Decodes an `Auth` body.
///
/// # Errors
/// `Malformed` unless the body is exactly one MAC.
pub fn decode_auth(body: &[u8]) -> Result<[u8; MAC_BYTES], WireError> {
    let mut cursor = Cursor { rest: body };
    let mac = cursor.array()?;
    cursor.finish()?;
    Ok(mac)
}

/// Appends a `Reject` frame with a short reason.
pub fn encode_reject(out: &mut Vec<u8>, reason: &str) {
    encode_frame(out, FrameKind::Reject, |body| put_addr(body, reason));
}

/// Decodes a `Reject` body into its reason.
///
/// # Errors
/// `Malformed` on a wrong layout.
pub fn decode_reject(body: &[u8]) -> Result<String, WireError> {
    let mut cursor = Cursor { rest: body };
    let reason = cursor.addr()?;
    cursor.finish()?;
    Ok(reason)
}

/// Which side a MAC proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The connecting node.
    Dialer,
    /// The accepting node.
    Listener,
}

/// The MAC `side` sends over the handshake transcript.
pub fn handshake_mac(
    secret: &[u8],
    side: Side,
    nonce_dialer: &[u8; NONCE_BYTES],
    nonce_listener: &[u8; NONCE_BYTES],
    dialer: NodeId,
    listener: NodeId,
) -> [u8; MAC_BYTES] {
    let label: &[u8] = match side {
        Side::Dialer => b"lithair-raft dialer",
        Side::Listener => b"lithair-raft listener",
    };
    let mut transcript = Vec::with_capacity(label.len() + 2 * NONCE_BYTES + 20);
    transcript.extend_from_slice(label);
    transcript.extend_from_slice(nonce_dialer);
    transcript.extend_from_slice(nonce_listener);
    transcript.extend_from_slice(&dialer.to_le_bytes());
    transcript.extend_from_slice(&listener.to_le_bytes());
    transcript.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hmac_sha256(secret, &transcript)
}

/// Checks a received MAC in constant time.
///
/// # Errors
/// `BadMac` when it does not match.
pub fn verify_mac(expected: &[u8; MAC_BYTES], received: &[u8; MAC_BYTES]) -> Result<(), WireError> {
    if ct_eq(expected, received) {
        Ok(())
    } else {
        Err(WireError::BadMac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, EntryKind, MessageBody};
    use proptest::prelude::*;

    fn sample_message() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 7,
            body: MessageBody::Append {
                prev_index: 3,
                prev_term: 6,
                entries: vec![Entry {
                    term: 7,
                    index: 4,
                    kind: EntryKind::Normal,
                    data: b"payload".to_vec().into(),
                }],
                commit: 3,
            },
        }
    }

    #[test]
    fn message_frame_round_trips_and_every_prefix_is_partial() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample_message());
        for cut in 0..out.len() {
            assert_eq!(
                parse_frame(&out[..cut], FRAME_BYTES_MAX),
                Ok(None),
                "cut {cut}"
            );
        }
        out.extend_from_slice(b"next");
        let frame = parse_frame(&out, FRAME_BYTES_MAX).unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::Message);
        assert_eq!(frame.consumed, out.len() - 4);
        assert_eq!(decode_message(frame.body).unwrap(), sample_message());
    }

    #[test]
    fn oversized_empty_and_unknown_frames_are_errors() {
        let big = ((HANDSHAKE_FRAME_BYTES_MAX + 1) as u32).to_le_bytes();
        assert_eq!(
            parse_frame(&big, HANDSHAKE_FRAME_BYTES_MAX),
            Err(WireError::TooLarge {
                bytes: HANDSHAKE_FRAME_BYTES_MAX + 1,
                max: HANDSHAKE_FRAME_BYTES_MAX
            })
        );
        assert_eq!(parse_frame(&[0, 0, 0, 0], 10), Err(WireError::Empty));
        assert_eq!(
            parse_frame(&[1, 0, 0, 0, 99], 10),
            Err(WireError::UnknownKind(99))
        );
    }

    #[test]
    fn handshake_messages_round_trip() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            from: 3,
            to: 1,
            nonce: [7; NONCE_BYTES],
            http_addr: "127.0.0.1:8083".into(),
        };
        let mut out = Vec::new();
        hello.encode(&mut out);
        let frame = parse_frame(&out, HANDSHAKE_FRAME_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert_eq!(frame.kind, FrameKind::Hello);
        assert_eq!(Hello::decode(frame.body).unwrap(), hello);
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            from: 1,
            nonce: [9; NONCE_BYTES],
            mac: [1; MAC_BYTES],
            http_addr: "127.0.0.1:8081".into(),
        };
        out.clear();
        welcome.encode(&mut out);
        let frame = parse_frame(&out, HANDSHAKE_FRAME_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert_eq!(Welcome::decode(frame.body).unwrap(), welcome);
        out.clear();
        encode_reject(&mut out, "wrong node id");
        let frame = parse_frame(&out, HANDSHAKE_FRAME_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert_eq!(decode_reject(frame.body).unwrap(), "wrong node id");
        assert!(Hello::decode(&frame.body[..1]).is_err());
    }

    /// A reason past the bound is cut at a character boundary: the peer reads the part that
    /// fits (cut inside a character, it refused the whole frame as not UTF-8; found by
    /// fuzzing).
    #[test]
    fn a_long_reason_is_cut_where_a_character_ends() {
        for reason in [
            "é".repeat(200),
            format!("x{}", "é".repeat(200)),
            "a".repeat(300),
        ] {
            let mut out = Vec::new();
            encode_reject(&mut out, &reason);
            let frame = parse_frame(&out, HANDSHAKE_FRAME_BYTES_MAX)
                .unwrap()
                .unwrap();
            let read = decode_reject(frame.body).expect("decodes");
            assert!(reason.starts_with(&read));
            assert!(read.len() <= HTTP_ADDR_BYTES_MAX && read.len() > HTTP_ADDR_BYTES_MAX - 4);
        }
    }

    #[test]
    fn macs_bind_secret_side_and_nonces() {
        let (a, b) = ([1u8; NONCE_BYTES], [2u8; NONCE_BYTES]);
        let dialer = handshake_mac(b"secret", Side::Dialer, &a, &b, 1, 2);
        assert!(verify_mac(
            &dialer,
            &handshake_mac(b"secret", Side::Dialer, &a, &b, 1, 2)
        )
        .is_ok());
        for other in [
            handshake_mac(b"other", Side::Dialer, &a, &b, 1, 2),
            handshake_mac(b"secret", Side::Listener, &a, &b, 1, 2),
            handshake_mac(b"secret", Side::Dialer, &b, &a, 1, 2),
            handshake_mac(b"secret", Side::Dialer, &a, &b, 2, 1),
        ] {
            assert_eq!(verify_mac(&dialer, &other), Err(WireError::BadMac));
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some(frame)) = parse_frame(&bytes, HANDSHAKE_FRAME_BYTES_MAX) {
                prop_assert!(frame.consumed <= bytes.len());
                let _ = Hello::decode(frame.body);
                let _ = Welcome::decode(frame.body);
                let _ = decode_auth(frame.body);
                let _ = decode_reject(frame.body);
                let _ = decode_message(frame.body);
            }
        }
    }
}
