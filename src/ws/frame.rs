//! WebSocket frame headers (RFC 6455 §5.2): parsing, writing, and payload masking.
//!
//! Owns: the wire format of one frame and every check that can be made from its header alone
//! (reserved bits, opcodes, masking by role, minimal length encoding, control-frame rules, the
//! frame size limit).
//! Must not: allocate, buffer, or know about messages; fragment sequencing, UTF-8 and the close
//! payload belong to the connection state machine in `connection.rs`.

use std::fmt;

/// Longest possible frame header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of mask.
pub const HEADER_BYTES_MAX: usize = 14;

/// Largest payload a control frame may carry (RFC 6455 §5.5).
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

/// Default largest frame payload accepted (16 MiB).
pub const FRAME_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// RSV1 in the 3-bit `rsv` value: permessage-deflate's "this message is compressed"
/// (RFC 7692 §6), allowed only on the first frame of a data message.
pub const RSV1: u8 = 0b100;

/// Result of a parser that may need more input: `Partial` means "feed more bytes", not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// The item is complete.
    Complete(T),
    /// More bytes are needed before anything can be decided.
    Partial,
}

/// Frame opcodes (RFC 6455 §5.2; §11.8 registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// Continuation of a fragmented message (0x0).
    Continuation,
    /// First frame of a UTF-8 text message (0x1).
    Text,
    /// First frame of a binary message (0x2).
    Binary,
    /// Close (0x8).
    Close,
    /// Ping (0x9).
    Ping,
    /// Pong (0xA).
    Pong,
}

impl Opcode {
    /// The 4-bit wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit wire value; `None` for the reserved values.
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Control frames (close, ping, pong) have the high opcode bit set.
    pub fn is_control(self) -> bool {
        self.to_u8() & 0x8 != 0
    }
}

/// Which end of the connection parses: decides which masking rule applies (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Receives client frames, which must be masked; sends unmasked frames.
    Server,
    /// Receives server frames, which must not be masked; sends masked frames.
    Client,
}

/// What the header parser accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseConfig {
    /// The side that receives these frames.
    pub role: Role,
    /// RSV bits (as the 3-bit value `RSV1 << 2 | RSV2 << 1 | RSV3`) that a negotiated extension
    /// gives meaning to: [`RSV1`] with permessage-deflate, else zero.
    pub rsv_allowed: u8,
    /// Largest payload of one frame, in bytes; larger frames fail with 1009.
    pub frame_bytes_max: u64,
}

impl ParseConfig {
    /// The configuration of a server with no extension and the default frame limit.
    pub const SERVER: ParseConfig = ParseConfig {
        role: Role::Server,
        rsv_allowed: 0,
        frame_bytes_max: FRAME_BYTES_MAX,
    };
    /// The configuration of a client with no extension and the default frame limit.
    pub const CLIENT: ParseConfig = ParseConfig {
        role: Role::Client,
        rsv_allowed: 0,
        frame_bytes_max: FRAME_BYTES_MAX,
    };
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as a 3-bit value (only bits allowed by [`ParseConfig::rsv_allowed`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present exactly on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Bytes the header occupies on the wire (2 to [`HEADER_BYTES_MAX`]).
    pub header_len: usize,
}

/// A violation visible in a frame header. Each maps to the close code the receiver must send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// An RSV bit is set that no negotiated extension defines.
    ReservedBits,
    /// The opcode is one of the reserved values 0x3–0x7 or 0xB–0xF.
    ReservedOpcode(u8),
    /// A control frame without FIN (control frames may not be fragmented).
    ControlFragmented,
    /// A control frame whose payload exceeds 125 bytes.
    ControlTooLong,
    /// A client sent an unmasked frame to a server.
    Unmasked,
    /// A server sent a masked frame to a client.
    Masked,
    /// The length uses more bytes than needed (e.g. 16-bit form for a length below 126).
    NonMinimalLength,
    /// The most significant bit of a 64-bit length is set.
    LengthHighBit,
    /// The payload is larger than the configured frame limit.
    TooLarge,
}

impl FrameError {
    /// The close status code to fail the connection with (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooLarge => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => f.write_str("frame sets a reserved RSV bit"),
            FrameError::ReservedOpcode(op) => write!(f, "frame uses reserved opcode 0x{op:x}"),
            FrameError::ControlFragmented => f.write_str("control frame is fragmented"),
            FrameError::ControlTooLong => f.write_str("control frame payload exceeds 125 bytes"),
            FrameError::Unmasked => f.write_str("client frame is not masked"),
            FrameError::Masked => f.write_str("server frame is masked"),
            FrameError::NonMinimalLength => f.write_str("frame length is not minimally encoded"),
            FrameError::LengthHighBit => {
                f.write_str("frame length has its most significant bit set")
            }
            FrameError::TooLarge => f.write_str("frame payload exceeds the size limit"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses a frame header from the start of `buf`.
///
/// Fails as early as the bytes allow: a reserved opcode is an error after one byte even though
/// the header is not complete. Never allocates.
pub fn parse_header(buf: &[u8], config: &ParseConfig) -> Result<Status<FrameHeader>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(Status::Partial);
    };
    let fin = first & 0x80 != 0;
    let rsv = (first >> 4) & 0x7;
    if rsv & !config.rsv_allowed != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = Opcode::from_u8(first & 0x0F).ok_or(FrameError::ReservedOpcode(first & 0x0F))?;
    // Compression is per message: its bit belongs on the first data frame only (RFC 7692 §6).
    if rsv & RSV1 != 0 && (opcode.is_control() || opcode == Opcode::Continuation) {
        return Err(FrameError::ReservedBits);
    }
    if opcode.is_control() && !fin {
        return Err(FrameError::ControlFragmented);
    }
    let Some(&second) = buf.get(1) else {
        return Ok(Status::Partial);
    };
    let masked = second & 0x80 != 0;
    match (config.role, masked) {
        (Role::Server, false) => return Err(FrameError::Unmasked),
        (Role::Client, true) => return Err(FrameError::Masked),
        _ => {}
    }
    let length_code = second & 0x7F;
    if opcode.is_control() && usize::from(length_code) > CONTROL_PAYLOAD_BYTES_MAX {
        return Err(FrameError::ControlTooLong);
    }
    let (payload_len, length_bytes) = match length_code {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(Status::Partial);
            };
            let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            if len < 126 {
                return Err(FrameError::NonMinimalLength);
            }
            (len, 2)
        }
        127 => {
            // The high bit is checked before the rest arrives: fail as early as possible.
            if buf.get(2).is_some_and(|&high| high & 0x80 != 0) {
                return Err(FrameError::LengthHighBit);
            }
            let Some(bytes) = buf.get(2..10) else {
                return Ok(Status::Partial);
            };
            let mut array = [0u8; 8];
            array.copy_from_slice(bytes);
            let len = u64::from_be_bytes(array);
            if len <= u64::from(u16::MAX) {
                return Err(FrameError::NonMinimalLength);
            }
            (len, 8)
        }
        short => (u64::from(short), 0),
    };
    if payload_len > config.frame_bytes_max {
        return Err(FrameError::TooLarge);
    }
    let mask_offset = 2 + length_bytes;
    let (mask, header_len) = if masked {
        let Some(bytes) = buf.get(mask_offset..mask_offset + 4) else {
            return Ok(Status::Partial);
        };
        (
            Some([bytes[0], bytes[1], bytes[2], bytes[3]]),
            mask_offset + 4,
        )
    } else {
        (None, mask_offset)
    };
    assert!((2..=HEADER_BYTES_MAX).contains(&header_len));
    Ok(Status::Complete(FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// A whole frame borrowed from the input buffer. The payload is still masked, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The payload bytes as received (apply [`apply_mask`] with `header.mask` to read them).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Total bytes of the frame on the wire (header plus payload).
    pub fn wire_len(&self) -> usize {
        self.header.header_len + self.payload.len()
    }
}

/// Parses a whole frame from the start of `buf`; `Partial` until its last payload byte is there.
pub fn parse_frame<'a>(
    buf: &'a [u8],
    config: &ParseConfig,
) -> Result<Status<Frame<'a>>, FrameError> {
    let header = match parse_header(buf, config)? {
        Status::Complete(header) => header,
        Status::Partial => return Ok(Status::Partial),
    };
    let available = (buf.len() - header.header_len) as u64;
    if available < header.payload_len {
        return Ok(Status::Partial);
    }
    // Fits in usize: it is at most `available`, which came from a slice length.
    let end = header.header_len + header.payload_len as usize;
    Ok(Status::Complete(Frame {
        header,
        payload: &buf[header.header_len..end],
    }))
}

/// XORs `data` with the masking key (RFC 6455 §5.3). `offset` is the position of `data[0]` within
/// the frame payload, so a payload may be unmasked in pieces as it arrives. Masking and unmasking
/// are the same operation.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let rotation = (offset % 4) as usize;
    let key = [
        mask[rotation],
        mask[(rotation + 1) % 4],
        mask[(rotation + 2) % 4],
        mask[(rotation + 3) % 4],
    ];
    // Eight bytes at a time: the key repeats every four bytes, so a doubled key lines up.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8 from `data[0]`, hence at key index 0 again.
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[index % 4];
    }
}

/// Appends a frame header to `out`. `mask` must be `Some` exactly when the writer is a client.
pub fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) {
    write_header_rsv(out, fin, 0, opcode, payload_len, mask);
}

/// Like [`write_header`], with the RSV bits `rsv` (a 3-bit value, e.g. [`RSV1`]) set.
pub fn write_header_rsv(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) {
    assert!(!opcode.is_control() || (fin && payload_len <= CONTROL_PAYLOAD_BYTES_MAX as u64));
    assert!(rsv <= 0b111, "rsv is a 3-bit value");
    assert!(rsv & RSV1 == 0 || (opcode == Opcode::Text || opcode == Opcode::Binary));
    let start = out.len();
    out.push(if fin { 0x80 } else { 0 } | rsv << 4 | opcode.to_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload_len < 126 {
        out.push(mask_bit | payload_len as u8);
    } else if payload_len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    } else {
        assert!(payload_len >> 63 == 0, "a frame length must fit in 63 bits");
        out.push(mask_bit | 127);
        out.extend_from_slice(&payload_len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    assert!(out.len() - start <= HEADER_BYTES_MAX);
}

/// Appends a whole frame to `out`, masking the payload copy when `mask` is given.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    write_frame_rsv(out, fin, 0, opcode, payload, mask);
}

/// Like [`write_frame`], with the RSV bits `rsv` set (RSV1 marks a compressed message).
pub fn write_frame_rsv(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    write_header_rsv(out, fin, rsv, opcode, payload.len() as u64, mask);
    let payload_start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[payload_start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn server(buf: &[u8]) -> Result<Status<FrameHeader>, FrameError> {
        parse_header(buf, &ParseConfig::SERVER)
    }

    // RFC 6455 §5.7 examples.
    #[test]
    fn rfc_examples() {
        let unmasked_hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let Ok(Status::Complete(frame)) = parse_frame(&unmasked_hello, &ParseConfig::CLIENT) else {
            panic!()
        };
        assert_eq!(
            (frame.header.fin, frame.header.opcode, frame.payload),
            (true, Opcode::Text, &b"Hello"[..])
        );

        let masked_hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let Ok(Status::Complete(frame)) = parse_frame(&masked_hello, &ParseConfig::SERVER) else {
            panic!()
        };
        let mut payload = frame.payload.to_vec();
        apply_mask(&mut payload, frame.header.mask.unwrap_or_default(), 0);
        assert_eq!(payload, b"Hello");
        assert_eq!(frame.header.mask, Some(KEY));

        let mut written = Vec::new();
        write_frame(&mut written, true, Opcode::Text, b"Hello", Some(KEY));
        assert_eq!(written, masked_hello);

        let fragments = [
            [0x01, 0x03, 0x48, 0x65, 0x6c],
            [0x80, 0x02, 0x6c, 0x6f, 0x00],
        ];
        let Ok(Status::Complete(first)) = parse_frame(&fragments[0], &ParseConfig::CLIENT) else {
            panic!()
        };
        assert_eq!(
            (first.header.fin, first.header.opcode),
            (false, Opcode::Text)
        );
        let Ok(Status::Complete(second)) = parse_frame(&fragments[1][..4], &ParseConfig::CLIENT)
        else {
            panic!()
        };
        assert_eq!(
            (second.header.fin, second.header.opcode, second.payload),
            (true, Opcode::Continuation, &b"lo"[..])
        );

        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let Ok(Status::Complete(frame)) = parse_frame(&ping, &ParseConfig::CLIENT) else {
            panic!()
        };
        assert_eq!(frame.header.opcode, Opcode::Ping);
    }

    #[test]
    fn extended_lengths() {
        let mut long = vec![0x82, 0x7E, 0x01, 0x00];
        long.resize(4 + 256, 0);
        let Ok(Status::Complete(frame)) = parse_frame(&long, &ParseConfig::CLIENT) else {
            panic!()
        };
        assert_eq!(
            (
                frame.header.payload_len,
                frame.payload.len(),
                frame.wire_len()
            ),
            (256, 256, 260)
        );

        let huge = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(
            parse_header(&huge, &ParseConfig::CLIENT).map(|s| match s {
                Status::Complete(h) => h.payload_len,
                Status::Partial => 0,
            }),
            Ok(65536)
        );
    }

    #[test]
    fn header_errors() {
        let cases: [(&[u8], FrameError); 13] = [
            (&[0xC1], FrameError::ReservedBits),
            (&[0x91], FrameError::ReservedBits),
            (&[0xA1], FrameError::ReservedBits),
            (&[0x83], FrameError::ReservedOpcode(3)),
            (&[0x8F], FrameError::ReservedOpcode(0xF)),
            (&[0x09], FrameError::ControlFragmented),
            (&[0x81, 0x05], FrameError::Unmasked),
            (&[0x89, 0xFE], FrameError::ControlTooLong),
            (&[0x88, 0xFE], FrameError::ControlTooLong),
            (&[0x82, 0xFE, 0x00, 0x7D], FrameError::NonMinimalLength),
            (
                &[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                FrameError::NonMinimalLength,
            ),
            (&[0x82, 0xFF, 0x80], FrameError::LengthHighBit),
            (&[0x82, 0xFF, 0, 0, 0, 0, 1, 0, 0, 1], FrameError::TooLarge),
        ];
        for (bytes, expected) in cases {
            assert_eq!(server(bytes), Err(expected), "bytes {bytes:x?}");
        }
        assert_eq!(
            parse_header(&[0x81, 0x85], &ParseConfig::CLIENT),
            Err(FrameError::Masked)
        );
        assert_eq!(FrameError::TooLarge.close_code(), 1009);
        assert_eq!(FrameError::Unmasked.close_code(), 1002);
    }

    #[test]
    fn allowed_rsv_bits_pass() {
        let config = ParseConfig {
            rsv_allowed: 0b100,
            ..ParseConfig::SERVER
        };
        let Ok(Status::Complete(header)) = parse_header(&[0xC1, 0x80, 1, 2, 3, 4], &config) else {
            panic!()
        };
        assert_eq!(header.rsv, 0b100);
        assert_eq!(
            parse_header(&[0xE1], &config),
            Err(FrameError::ReservedBits)
        );
        // RFC 7692 §6: RSV1 marks a message, so never a continuation or a control frame.
        for first in [0x40, 0xC0, 0xC8, 0xC9, 0xCA] {
            assert_eq!(
                parse_header(&[first], &config),
                Err(FrameError::ReservedBits),
                "{first:#x}"
            );
        }
        let Ok(Status::Complete(first)) = parse_header(&[0x42, 0x80, 1, 2, 3, 4], &config) else {
            panic!("a non-final compressed binary frame")
        };
        assert_eq!(
            (first.fin, first.rsv, first.opcode),
            (false, RSV1, Opcode::Binary)
        );
    }

    #[test]
    fn written_rsv1_parses_back() {
        let config = ParseConfig {
            rsv_allowed: RSV1,
            ..ParseConfig::CLIENT
        };
        let mut wire = Vec::new();
        write_frame_rsv(&mut wire, true, RSV1, Opcode::Text, b"\xf2\x00", None);
        assert_eq!(wire[0], 0xC1);
        let Ok(Status::Complete(frame)) = parse_frame(&wire, &config) else {
            panic!("parse")
        };
        assert_eq!((frame.header.rsv, frame.payload), (RSV1, &b"\xf2\x00"[..]));
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_partial() {
        for payload_len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![0x5A; payload_len];
            let mut wire = Vec::new();
            write_frame(&mut wire, true, Opcode::Binary, &payload, Some(KEY));
            for cut in 0..wire.len() {
                if payload_len > 200 && cut > 20 && cut < wire.len() - 4 {
                    continue; // The middle of a long payload adds nothing over its ends.
                }
                assert_eq!(
                    parse_frame(&wire[..cut], &ParseConfig::SERVER),
                    Ok(Status::Partial),
                    "len {payload_len} cut {cut}"
                );
            }
            let Ok(Status::Complete(frame)) = parse_frame(&wire, &ParseConfig::SERVER) else {
                panic!()
            };
            assert_eq!(frame.wire_len(), wire.len());
        }
    }

    #[test]
    fn mask_in_pieces_equals_whole() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in 0..data.len() {
            let mut pieces = data.clone();
            let (left, right) = pieces.split_at_mut(split);
            apply_mask(left, KEY, 0);
            apply_mask(right, KEY, split as u64);
            assert_eq!(pieces, whole, "split {split}");
        }
        for (index, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, data[index] ^ KEY[index % 4]);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = parse_frame(&bytes, &ParseConfig::SERVER);
            let _ = parse_frame(&bytes, &ParseConfig::CLIENT);
        }

        #[test]
        fn written_frames_parse_back(
            fin in any::<bool>(),
            opcode in prop_oneof![Just(Opcode::Continuation), Just(Opcode::Text), Just(Opcode::Binary)],
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            key in any::<[u8; 4]>(),
            masked in any::<bool>(),
        ) {
            let mut wire = Vec::new();
            let (mask, config) = if masked { (Some(key), ParseConfig::SERVER) } else { (None, ParseConfig::CLIENT) };
            write_frame(&mut wire, fin, opcode, &payload, mask);
            wire.extend_from_slice(b"next");
            let Ok(Status::Complete(frame)) = parse_frame(&wire, &config) else { panic!("did not parse") };
            prop_assert_eq!((frame.header.fin, frame.header.opcode, frame.header.mask), (fin, opcode, mask));
            prop_assert_eq!(frame.wire_len(), wire.len() - 4);
            let mut unmasked = frame.payload.to_vec();
            if let Some(key) = mask { apply_mask(&mut unmasked, key, 0); }
            prop_assert_eq!(unmasked, payload);
        }
    }
}
