//! The byte layout of segment headers and batch frames, and a pure parser over bytes.
//!
//! Owns: encoding and decoding of the on-disk format (docs/LOG_FORMAT.md). Must not: perform
//! I/O, allocate while parsing, or look inside entry payloads.

use crate::crypto::crc32c;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LITHLOG\0";
/// On-disk format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header: magic, version, reserved, first index, reserved, CRC32C.
pub const HEADER_BYTES: usize = 32;
/// Bytes before the checksummed part of a frame: `len u32 | crc32c u32`.
pub const FRAME_PREFIX_BYTES: usize = 8;
/// Bytes of the checksummed frame head: `index u64 | term u64 | count u32`.
pub const FRAME_HEAD_BYTES: usize = 20;
/// Bytes of the length prefix of each entry inside a frame.
pub const ENTRY_PREFIX_BYTES: usize = 4;
/// Largest frame body (`len` field) accepted; a larger value is treated as damage.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Result of parsing a prefix of a byte stream: a complete value, or "need more bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole value was parsed.
    Complete(T),
    /// The buffer ends before the value does; this is not an error.
    Partial,
}

/// Why bytes are not a valid frame or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The `len` field is below the frame head size or above [`FRAME_BYTES_MAX`].
    BadLength,
    /// The stored CRC32C does not match the bytes.
    BadChecksum,
    /// The checksum matches but the entries do not fill the frame exactly `count` times.
    BadEntries,
    /// The segment header magic, version or checksum is wrong.
    BadHeader,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::BadLength => "frame length out of range",
            FrameError::BadChecksum => "frame checksum mismatch",
            FrameError::BadEntries => "frame entries do not match their count",
            FrameError::BadHeader => "bad segment header (magic, version or checksum)",
        })
    }
}

/// A parsed, checksum-verified batch frame borrowing its entries from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Index of the first entry; entries are numbered consecutively.
    pub index: u64,
    /// Raft term of the batch (0 on a single node).
    pub term: u64,
    /// Number of entries.
    pub count: u32,
    /// Total bytes of the frame on disk, prefix included.
    pub frame_bytes: usize,
    entries: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Index of the last entry (`index + count - 1`); `index - 1` for an empty frame.
    pub fn last_index(&self) -> u64 {
        self.index + u64::from(self.count) - 1
    }

    /// The entry payloads in order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            rest: self.entries,
            left: self.count,
        }
    }
}

/// Iterator over the entry payloads of a verified frame.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            assert!(
                self.rest.is_empty(),
                "verified frame has trailing entry bytes"
            );
            return None;
        }
        // The frame was verified by `parse_frame`, so these reads are in bounds.
        let len = read_u32(self.rest, 0) as usize;
        let entry = &self.rest[ENTRY_PREFIX_BYTES..ENTRY_PREFIX_BYTES + len];
        self.rest = &self.rest[ENTRY_PREFIX_BYTES + len..];
        self.left -= 1;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Parses one frame at the start of `buf`.
///
/// `Partial` means the declared frame extends past `buf` (a torn tail, or more bytes to read).
/// The entries are validated, so iterating them afterwards cannot fail.
pub fn parse_frame(buf: &[u8]) -> Result<Status<Frame<'_>>, FrameError> {
    if buf.len() < FRAME_PREFIX_BYTES {
        return Ok(Status::Partial);
    }
    let len = read_u32(buf, 0) as usize;
    if !(FRAME_HEAD_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Err(FrameError::BadLength);
    }
    let frame_bytes = FRAME_PREFIX_BYTES + len;
    if buf.len() < frame_bytes {
        return Ok(Status::Partial);
    }
    let body = &buf[FRAME_PREFIX_BYTES..frame_bytes];
    if crc32c::crc32c(body) != read_u32(buf, 4) {
        return Err(FrameError::BadChecksum);
    }
    let count = read_u32(body, 16);
    let entries = &body[FRAME_HEAD_BYTES..];
    check_entries(entries, count)?;
    Ok(Status::Complete(Frame {
        index: read_u64(body, 0),
        term: read_u64(body, 8),
        count,
        frame_bytes,
        entries,
    }))
}

/// Checks that `entries` holds exactly `count` length-prefixed entries and nothing else.
fn check_entries(entries: &[u8], count: u32) -> Result<(), FrameError> {
    let mut at = 0usize;
    for _ in 0..count {
        if entries.len() - at < ENTRY_PREFIX_BYTES {
            return Err(FrameError::BadEntries);
        }
        let len = read_u32(entries, at) as usize;
        at += ENTRY_PREFIX_BYTES;
        if entries.len() - at < len {
            return Err(FrameError::BadEntries);
        }
        at += len;
    }
    if at != entries.len() {
        return Err(FrameError::BadEntries);
    }
    Ok(())
}

/// Reads the index and term a frame claims without verifying it (used to look for valid data
/// after damage). `None` if `buf` is too short.
pub fn peek_index_term(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() < FRAME_PREFIX_BYTES + FRAME_HEAD_BYTES {
        return None;
    }
    Some((
        read_u64(buf, FRAME_PREFIX_BYTES),
        read_u64(buf, FRAME_PREFIX_BYTES + 8),
    ))
}

/// Entries being collected for one append, already in their on-disk framing.
///
/// Building the bytes on the caller's thread keeps the writer thread's work to one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryBatch {
    bytes: Vec<u8>,
    count: u32,
}

impl EntryBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for at least `bytes` more bytes of framed entries (one allocation
    /// instead of a doubling series when the caller knows about how much is coming).
    pub fn reserve(&mut self, bytes: usize) {
        self.bytes.reserve(bytes);
    }

    /// Bytes the batch can hold without allocating.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends one entry with the given payload.
    ///
    /// # Panics
    ///
    /// As [`EntryBatch::push_with`], on a payload of 4 GiB or more.
    pub fn push(&mut self, payload: &[u8]) {
        self.push_with(|out| out.extend_from_slice(payload));
    }

    /// Appends one entry whose payload `write` appends to the given buffer (no extra copy).
    ///
    /// # Panics
    ///
    /// If the payload is 4 GiB or more: the entry prefix is a `u32`. Payloads are the process's
    /// own encoded events, far below that (request bodies are bounded long before).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let mark = self.bytes.len();
        self.bytes.extend_from_slice(&[0; ENTRY_PREFIX_BYTES]);
        write(&mut self.bytes);
        let len = self.bytes.len() - mark - ENTRY_PREFIX_BYTES;
        let len = u32::try_from(len).expect("entry payload larger than 4 GiB");
        self.bytes[mark..mark + ENTRY_PREFIX_BYTES].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the batch holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in their on-disk framing (`len u32 LE | payload` each), e.g. to ship a
    /// batch to Raft peers.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes the entries occupy on disk.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Removes every entry, keeping the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

/// Appends one frame holding `parts` (consecutive entry batches) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, index: u64, term: u64, parts: &[&EntryBatch]) {
    let count: u32 = parts.iter().map(|part| part.count).sum();
    let entry_bytes: usize = parts.iter().map(|part| part.bytes.len()).sum();
    let len = FRAME_HEAD_BYTES + entry_bytes;
    assert!(
        len <= FRAME_BYTES_MAX,
        "frame of {len} bytes exceeds FRAME_BYTES_MAX"
    );
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for part in parts {
        out.extend_from_slice(&part.bytes);
    }
    let crc = crc32c::crc32c(&out[start + FRAME_PREFIX_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len() - start, FRAME_PREFIX_BYTES + len);
}

/// Encodes a segment header for a segment whose first entry is `first_index`.
pub fn encode_header(first_index: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Parses a segment header, returning the first index it names.
pub fn parse_header(buf: &[u8]) -> Result<Status<u64>, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Ok(Status::Partial);
    }
    let valid = buf[0..8] == SEGMENT_MAGIC
        && read_u32(buf, 8) == FORMAT_VERSION
        && crc32c::crc32c(&buf[..28]) == read_u32(buf, 28);
    if !valid {
        return Err(FrameError::BadHeader);
    }
    Ok(Status::Complete(read_u64(buf, 16)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_reserved_batch_takes_its_entries_without_allocating() {
        let mut batch = EntryBatch::new();
        batch.reserve(100);
        let (capacity, buffer) = (batch.capacity(), batch.as_bytes().as_ptr());
        assert!(capacity >= 100);
        for _ in 0..10 {
            batch.push(&[7; 6]);
        }
        assert_eq!(batch.byte_len(), 100);
        assert_eq!(
            (batch.capacity(), batch.as_bytes().as_ptr()),
            (capacity, buffer)
        );
        batch.clear();
        assert_eq!(
            batch.capacity(),
            capacity,
            "a cleared batch keeps its allocation"
        );
    }

    fn batch(payloads: &[&[u8]]) -> EntryBatch {
        let mut batch = EntryBatch::new();
        for payload in payloads {
            batch.push(payload);
        }
        batch
    }

    #[test]
    fn frame_round_trip_and_every_prefix_is_partial() {
        let first = batch(&[b"alpha", b""]);
        let second = batch(&[b"gamma-delta"]);
        let mut out = Vec::new();
        encode_frame(&mut out, 7, 3, &[&first, &second]);
        for cut in 0..out.len() {
            assert_eq!(
                parse_frame(&out[..cut]),
                Ok(Status::Partial),
                "prefix {cut}"
            );
        }
        let Ok(Status::Complete(frame)) = parse_frame(&out) else {
            panic!("not complete")
        };
        assert_eq!(
            (frame.index, frame.term, frame.count, frame.frame_bytes),
            (7, 3, 3, out.len())
        );
        assert_eq!(frame.last_index(), 9);
        let entries: Vec<&[u8]> = frame.entries().collect();
        assert_eq!(entries, vec![&b"alpha"[..], b"", b"gamma-delta"]);
    }

    #[test]
    fn damaged_frames_are_errors() {
        let mut out = Vec::new();
        encode_frame(&mut out, 1, 0, &[&batch(&[b"payload"])]);
        let mut flipped = out.clone();
        flipped[20] ^= 0x10;
        assert_eq!(parse_frame(&flipped), Err(FrameError::BadChecksum));
        let mut short = out.clone();
        short[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(parse_frame(&short), Err(FrameError::BadLength));
        // A correct checksum over entries that do not add up is still rejected.
        let mut lying = out.clone();
        lying[FRAME_PREFIX_BYTES + 16..FRAME_PREFIX_BYTES + 20]
            .copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&lying[FRAME_PREFIX_BYTES..]);
        lying[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse_frame(&lying), Err(FrameError::BadEntries));
    }

    #[test]
    fn header_round_trip_and_damage() {
        let header = encode_header(42);
        assert_eq!(parse_header(&header), Ok(Status::Complete(42)));
        assert_eq!(parse_header(&header[..31]), Ok(Status::Partial));
        let mut bad = header;
        bad[17] ^= 1;
        assert_eq!(parse_header(&bad), Err(FrameError::BadHeader));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_frame(&bytes);
            let _ = parse_header(&bytes);
            let _ = peek_index_term(&bytes);
        }

        #[test]
        fn encode_parse_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
            index in 1u64..u64::MAX / 2, term in any::<u64>(),
        ) {
            let mut entries = EntryBatch::new();
            for payload in &payloads { entries.push(payload); }
            let mut out = Vec::new();
            encode_frame(&mut out, index, term, &[&entries]);
            let Ok(Status::Complete(frame)) = parse_frame(&out) else { panic!("not complete") };
            prop_assert_eq!(frame.index, index);
            prop_assert_eq!(frame.term, term);
            let decoded: Vec<Vec<u8>> = frame.entries().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(decoded, payloads);
        }
    }
}
