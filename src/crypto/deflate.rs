//! DEFLATE (RFC 1951) encoder and decoder, gzip framing (RFC 1952) and the IEEE CRC-32.
//!
//! Owns: the compressed formats used by HTTP `Content-Encoding: gzip` and WebSocket
//! permessage-deflate (RFC 7692, `ws::deflate`), which uses [`compress_raw_sync_window`] and
//! [`inflate_raw_partial`] with the previous messages as the dictionary (context takeover).
//! Must not: perform I/O or allocate past the caller's output limit while decoding (a small
//! compressed input can expand 1000x: every decoder takes an `output_bytes_max`).
//!
//! The encoder is LZ77 over a 32 KiB window with hash chains and one-step lazy matching, then for
//! each block picks the cheapest of stored, fixed-Huffman and dynamic-Huffman encodings.

use std::fmt;

/// Size of the LZ77 window: the largest distance DEFLATE can express.
pub const WINDOW_BYTES: usize = 32 * 1024;
/// Longest match DEFLATE can express.
const MATCH_BYTES_MAX: usize = 258;
/// Shortest match worth emitting.
const MATCH_BYTES_MIN: usize = 3;
/// How many earlier positions the matcher visits per byte: bounds the worst case (e.g. a run
/// of one repeated byte) to linear time.
const CHAIN_STEPS_MAX: usize = 48;
/// A match at least this long is taken at once, without looking further down the chain.
const MATCH_NICE_BYTES: usize = 128;
/// A match at least this long is taken without checking the next position (lazy matching).
const LAZY_BYTES_MAX: usize = 32;
/// With a match this long already, the lazy check searches a quarter of the chain.
const GOOD_BYTES: usize = 8;
/// Tokens per block: a new Huffman table every so often follows changes in the data.
const BLOCK_TOKENS_MAX: usize = 16 * 1024;
/// Largest stored block payload (LEN is 16 bits).
const STORED_BYTES_MAX: usize = 65_535;
const HASH_BITS: u32 = 15;
/// Fewest hash bits: the table of a short input (a WebSocket message, a small answer) has
/// about as many heads as the input has bytes, so compressing it does not start by clearing
/// a full window's 128 KiB (which cost more than the compression of a 256-byte message).
const HASH_BITS_MIN: u32 = 8;
/// Every how many dictionary positions one enters the hash chains. The dictionary (previous
/// messages) is re-indexed for every message, which dominates the cost of a short one; a match
/// into it is still found from the next indexed position, at the price of up to three
/// literals (measured on JSON chat messages: 4x less time, 0.102 -> 0.106 compressed ratio).
const DICTIONARY_INDEX_STEP: usize = 4;
/// No position recorded in a hash chain slot.
const NIL: u32 = u32::MAX;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// Order in which code-length code lengths are sent (RFC 1951 §3.2.7).
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
const LITLEN_CODES: usize = 288;
const DIST_CODES: usize = 32;
const CODE_BITS_MAX: usize = 15;
const CLEN_BITS_MAX: usize = 7;
const END_OF_BLOCK: usize = 256;

/// Why a compressed stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateError {
    /// The input ended in the middle of a block or header.
    Truncated,
    /// Block type 3 is reserved.
    BadBlockType,
    /// A stored block's LEN and NLEN do not complement each other.
    StoredLength,
    /// A Huffman table in a dynamic block is over-subscribed or incomplete.
    BadTable,
    /// A code decodes to a symbol that cannot appear there (e.g. length code 286).
    BadSymbol,
    /// A back-reference points before the start of the output.
    DistanceTooFar,
    /// The output would exceed the caller's limit.
    OutputTooLarge,
    /// The gzip header is malformed (magic, method or flags).
    BadGzipHeader,
    /// The gzip trailer's CRC-32 does not match the data.
    BadGzipCrc,
    /// The gzip trailer's size does not match the data.
    BadGzipSize,
    /// Bytes follow the final block where the framing allows none.
    TrailingData,
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "deflate: input ends inside a block",
            Self::BadBlockType => "deflate: reserved block type 3",
            Self::StoredLength => "deflate: stored block LEN/NLEN mismatch",
            Self::BadTable => "deflate: invalid Huffman code lengths",
            Self::BadSymbol => "deflate: invalid symbol",
            Self::DistanceTooFar => "deflate: distance reaches before the output start",
            Self::OutputTooLarge => "deflate: output exceeds the limit",
            Self::BadGzipHeader => "gzip: bad header",
            Self::BadGzipCrc => "gzip: CRC-32 mismatch",
            Self::BadGzipSize => "gzip: size mismatch",
            Self::TrailingData => "deflate: data after the final block",
        })
    }
}

impl std::error::Error for DeflateError {}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as used by gzip and zip.

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = crc32_table();

/// Continues a CRC-32 (IEEE) over `data`; start with `0`.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// CRC-32 (IEEE) of `data`, as in gzip trailers.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

// ---------------------------------------------------------------------------------------------
// Decoder.

/// Reads bits least-significant first, as DEFLATE packs them.
struct BitReader<'a> {
    input: &'a [u8],
    /// Next byte of `input` to load into `bits`.
    pos: usize,
    bits: u64,
    count: u32,
}

impl<'a> BitReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            bits: 0,
            count: 0,
        }
    }

    fn need(&mut self, n: u32) -> Result<(), DeflateError> {
        debug_assert!(n <= 32);
        while self.count < n {
            let byte = *self.input.get(self.pos).ok_or(DeflateError::Truncated)?;
            self.pos += 1;
            self.bits |= u64::from(byte) << self.count;
            self.count += 8;
        }
        Ok(())
    }

    /// Loads whole bytes while they fit; returns the bits available (may be few at the end).
    fn fill(&mut self) -> u32 {
        while self.count <= 56 && self.pos < self.input.len() {
            self.bits |= u64::from(self.input[self.pos]) << self.count;
            self.pos += 1;
            self.count += 8;
        }
        self.count
    }

    fn bits(&mut self, n: u32) -> Result<u32, DeflateError> {
        if n == 0 {
            return Ok(0);
        }
        self.need(n)?;
        let v = (self.bits & ((1u64 << n) - 1)) as u32;
        self.bits >>= n;
        self.count -= n;
        Ok(v)
    }

    /// Drops the bits up to the next byte boundary (stored blocks start there).
    fn align(&mut self) {
        let drop = self.count % 8;
        self.bits >>= drop;
        self.count -= drop;
    }

    /// Returns the buffered bits to the input; only at a byte boundary (after [`Self::align`]).
    fn unload(&mut self) {
        assert_eq!(self.count % 8, 0, "unload only at a byte boundary");
        self.pos -= (self.count / 8) as usize;
        self.bits = 0;
        self.count = 0;
    }

    /// Bytes consumed so far, counting buffered whole bytes as unread.
    fn consumed_bytes(&self) -> usize {
        self.pos - (self.count / 8) as usize
    }

    fn at_end(&self) -> bool {
        self.count < 8 && self.pos == self.input.len()
    }
}

/// A canonical Huffman code as counts per length plus symbols sorted by code (RFC 1951 §3.2.2).
struct Huffman {
    counts: [u16; CODE_BITS_MAX + 1],
    symbols: Vec<u16>,
    /// Indexed by the next [`FAST_BITS`] input bits: `symbol | length << 9` for codes of at
    /// most `FAST_BITS` bits, 0 for longer codes (decoded the slow way).
    fast: Vec<u16>,
}

/// Bits resolved by one table lookup; most literal/length codes are this short or shorter.
const FAST_BITS: u32 = 9;

impl Huffman {
    /// Builds the decoding table; refuses over-subscribed codes and incomplete ones, except
    /// the single-code case zlib emits for a block with one distance.
    fn new(lengths: &[u8]) -> Result<Self, DeflateError> {
        let mut counts = [0u16; CODE_BITS_MAX + 1];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = left * 2 - i32::from(count);
            if left < 0 {
                return Err(DeflateError::BadTable);
            }
        }
        let used: u16 = counts.iter().sum();
        let single = used == 1 && counts[1] == 1;
        if left > 0 && used != 0 && !single {
            return Err(DeflateError::BadTable);
        }
        let mut offsets = [0u16; CODE_BITS_MAX + 2];
        for len in 1..=CODE_BITS_MAX {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; usize::from(used)];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let slot = &mut offsets[usize::from(len)];
                symbols[usize::from(*slot)] = symbol as u16;
                *slot += 1;
            }
        }
        Ok(Self {
            counts,
            symbols,
            fast: fast_table(lengths),
        })
    }

    /// Decodes one symbol: one table lookup for short codes, else bit by bit.
    fn decode(&self, reader: &mut BitReader<'_>) -> Result<u16, DeflateError> {
        if reader.fill() >= FAST_BITS {
            let entry = self.fast[(reader.bits & ((1 << FAST_BITS) - 1)) as usize];
            if entry != 0 {
                let len = u32::from(entry >> 9);
                reader.bits >>= len;
                reader.count -= len;
                return Ok(entry & 0x1FF);
            }
        }
        self.decode_slow(reader)
    }

    /// Decodes one symbol one bit at a time over the canonical ranges.
    fn decode_slow(&self, reader: &mut BitReader<'_>) -> Result<u16, DeflateError> {
        let mut code: i32 = 0;
        let mut first: i32 = 0;
        let mut index: i32 = 0;
        for len in 1..=CODE_BITS_MAX {
            code |= reader.bits(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return Ok(self.symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(DeflateError::BadSymbol)
    }
}

/// The lookup table of [`Huffman::fast`] for canonical codes of `lengths`.
fn fast_table(lengths: &[u8]) -> Vec<u16> {
    let mut fast = vec![0u16; 1 << FAST_BITS];
    let codes = canonical_codes(lengths);
    for (symbol, (&len, &code)) in lengths.iter().zip(&codes).enumerate() {
        let len = u32::from(len);
        if len == 0 || len > FAST_BITS {
            continue;
        }
        // Every index whose low `len` bits are the (bit-reversed) code decodes to it.
        let entry = symbol as u16 | (len as u16) << 9;
        for high in 0..1usize << (FAST_BITS - len) {
            fast[usize::from(code) | high << len] = entry;
        }
    }
    fast
}

fn fixed_lengths() -> ([u8; LITLEN_CODES], [u8; DIST_CODES]) {
    let mut lit = [0u8; LITLEN_CODES];
    for (i, l) in lit.iter_mut().enumerate() {
        *l = match i {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
    }
    // Distance codes 30 and 31 never occur but take part in the code (RFC 1951 §3.2.6).
    (lit, [5u8; DIST_CODES])
}

/// The result of decoding as much of a raw DEFLATE stream as the input holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflated {
    /// The decompressed bytes.
    pub data: Vec<u8>,
    /// Input bytes used (the final block may end inside the last one).
    pub consumed_bytes: usize,
    /// Whether a block with BFINAL set was decoded.
    pub finished: bool,
}

/// Decodes a complete raw DEFLATE stream (ending with a final block).
pub fn inflate_raw(input: &[u8], output_bytes_max: usize) -> Result<Vec<u8>, DeflateError> {
    let inflated = inflate_stream(input, &[], output_bytes_max, true)?;
    debug_assert!(inflated.finished);
    Ok(inflated.data)
}

/// Decodes raw DEFLATE that may stop at a block boundary without a final block, as
/// permessage-deflate sends it (after the receiver re-appends `00 00 ff ff`). `dictionary` is
/// the previous window for context takeover (pass `&[]` without it).
pub fn inflate_raw_partial(
    input: &[u8],
    dictionary: &[u8],
    output_bytes_max: usize,
) -> Result<Inflated, DeflateError> {
    inflate_stream(input, dictionary, output_bytes_max, false)
}

fn inflate_stream(
    input: &[u8],
    dictionary: &[u8],
    output_bytes_max: usize,
    require_final: bool,
) -> Result<Inflated, DeflateError> {
    let dict = &dictionary[dictionary.len().saturating_sub(WINDOW_BYTES)..];
    // A guess from the input, never past what the caller allows out: many small messages or
    // gzip members each reserved up to 1 MiB whatever their limit.
    let guess = input
        .len()
        .saturating_mul(3)
        .min(1 << 20)
        .min(output_bytes_max);
    let mut out = Vec::with_capacity(dict.len() + guess);
    out.extend_from_slice(dict);
    let limit = dict.len().saturating_add(output_bytes_max);
    let mut reader = BitReader::new(input);
    let mut finished = false;
    while !finished {
        if !require_final && reader.at_end() {
            break;
        }
        finished = reader.bits(1)? == 1;
        match reader.bits(2)? {
            0 => inflate_stored(&mut reader, &mut out, limit)?,
            1 => inflate_codes(&mut reader, &mut out, limit, fixed_tables())?,
            2 => {
                let tables = read_dynamic_tables(&mut reader)?;
                inflate_codes(&mut reader, &mut out, limit, &tables)?;
            }
            _ => return Err(DeflateError::BadBlockType),
        }
    }
    let consumed_bytes = reader.consumed_bytes();
    assert!(consumed_bytes <= input.len());
    out.drain(..dict.len());
    Ok(Inflated {
        data: out,
        consumed_bytes,
        finished,
    })
}

/// The fixed-Huffman tables, built once.
fn fixed_tables() -> &'static (Huffman, Huffman) {
    static TABLES: std::sync::OnceLock<(Huffman, Huffman)> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let (lit, dist) = fixed_lengths();
        let build = |l: &[u8]| Huffman::new(l).expect("the fixed code is complete");
        (build(&lit), build(&dist))
    })
}

fn inflate_stored(
    reader: &mut BitReader<'_>,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), DeflateError> {
    reader.align();
    // A Huffman block before this one may have buffered up to 7 bytes ahead; LEN, NLEN and
    // the data are read from the input directly, so give those bytes back first.
    reader.unload();
    let lengths = reader
        .input
        .get(reader.pos..reader.pos + 4)
        .ok_or(DeflateError::Truncated)?;
    let len = u16::from_le_bytes([lengths[0], lengths[1]]);
    let nlen = u16::from_le_bytes([lengths[2], lengths[3]]);
    if len != !nlen {
        return Err(DeflateError::StoredLength);
    }
    let start = reader.pos + 4;
    let end = start + len as usize;
    let bytes = reader
        .input
        .get(start..end)
        .ok_or(DeflateError::Truncated)?;
    if out.len() + bytes.len() > limit {
        return Err(DeflateError::OutputTooLarge);
    }
    out.extend_from_slice(bytes);
    reader.pos = end;
    Ok(())
}

fn read_dynamic_tables(reader: &mut BitReader<'_>) -> Result<(Huffman, Huffman), DeflateError> {
    let hlit = reader.bits(5)? as usize + 257;
    let hdist = reader.bits(5)? as usize + 1;
    let hclen = reader.bits(4)? as usize + 4;
    if hlit > 286 || hdist > 30 {
        return Err(DeflateError::BadTable);
    }
    let mut clen_lengths = [0u8; 19];
    for &slot in &CLEN_ORDER[..hclen] {
        clen_lengths[slot] = reader.bits(3)? as u8;
    }
    let clen = Huffman::new(&clen_lengths)?;
    let mut lengths = [0u8; 286 + 30];
    let total = hlit + hdist;
    let mut i = 0;
    while i < total {
        let symbol = clen.decode(reader)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let prev = *lengths[..i].last().ok_or(DeflateError::BadTable)?;
                (prev, 3 + reader.bits(2)? as usize)
            }
            17 => (0, 3 + reader.bits(3)? as usize),
            _ => (0, 11 + reader.bits(7)? as usize),
        };
        if i + repeat > total {
            return Err(DeflateError::BadTable);
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[END_OF_BLOCK] == 0 {
        return Err(DeflateError::BadTable);
    }
    Ok((
        Huffman::new(&lengths[..hlit])?,
        Huffman::new(&lengths[hlit..total])?,
    ))
}

fn inflate_codes(
    reader: &mut BitReader<'_>,
    out: &mut Vec<u8>,
    limit: usize,
    (lit, dist): &(Huffman, Huffman),
) -> Result<(), DeflateError> {
    loop {
        let symbol = usize::from(lit.decode(reader)?);
        if symbol < 256 {
            if out.len() >= limit {
                return Err(DeflateError::OutputTooLarge);
            }
            out.push(symbol as u8);
            continue;
        }
        if symbol == END_OF_BLOCK {
            return Ok(());
        }
        let code = symbol - 257;
        if code >= LENGTH_BASE.len() {
            return Err(DeflateError::BadSymbol);
        }
        let len =
            usize::from(LENGTH_BASE[code]) + reader.bits(u32::from(LENGTH_EXTRA[code]))? as usize;
        let dcode = usize::from(dist.decode(reader)?);
        if dcode >= DIST_BASE.len() {
            return Err(DeflateError::BadSymbol);
        }
        let distance =
            usize::from(DIST_BASE[dcode]) + reader.bits(u32::from(DIST_EXTRA[dcode]))? as usize;
        if distance > out.len() {
            return Err(DeflateError::DistanceTooFar);
        }
        if out.len() + len > limit {
            return Err(DeflateError::OutputTooLarge);
        }
        let start = out.len() - distance;
        // Overlapping copies repeat the period `distance`: copy what exists, which doubles
        // the available pattern each round.
        let mut left = len;
        while left > 0 {
            let n = left.min(out.len() - start);
            out.extend_from_within(start..start + n);
            left -= n;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder.

/// Writes bits least-significant first.
struct BitWriter {
    out: Vec<u8>,
    bits: u64,
    count: u32,
}

impl BitWriter {
    fn new(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            bits: 0,
            count: 0,
        }
    }

    fn put(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 32);
        debug_assert!(n == 32 || u64::from(value) < (1u64 << n));
        self.bits |= u64::from(value) << self.count;
        self.count += n;
        while self.count >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.count -= 8;
        }
    }

    fn align(&mut self) {
        if self.count > 0 {
            self.out.push(self.bits as u8);
            self.bits = 0;
            self.count = 0;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.align();
        self.out
    }
}

/// A literal byte (`dist == 0`, `len` holds the byte) or a back-reference.
#[derive(Clone, Copy)]
struct Token {
    len: u16,
    dist: u16,
}

fn length_code(len: usize) -> usize {
    debug_assert!((MATCH_BYTES_MIN..=MATCH_BYTES_MAX).contains(&len));
    // LENGTH_BASE is sorted; the last base not above `len` is its code.
    LENGTH_BASE.partition_point(|&b| usize::from(b) <= len) - 1
}

fn dist_code(dist: usize) -> usize {
    debug_assert!((1..=WINDOW_BYTES).contains(&dist));
    DIST_BASE.partition_point(|&b| usize::from(b) <= dist) - 1
}

/// Huffman code lengths for `freqs`, none longer than `bits_max`. Two symbols at least get a
/// code so that every table is complete (a strict decoder accepts it).
fn huffman_lengths(freqs: &[u32], bits_max: usize) -> Vec<u8> {
    let mut freqs: Vec<u32> = freqs.to_vec();
    let used = freqs.iter().filter(|&&f| f > 0).count();
    for slot in freqs
        .iter_mut()
        .filter(|f| **f == 0)
        .take(2usize.saturating_sub(used))
    {
        *slot = 1;
    }
    loop {
        let lengths = huffman_lengths_unbounded(&freqs);
        if lengths.iter().all(|&l| usize::from(l) <= bits_max) {
            return lengths;
        }
        // Flattening the distribution shortens the deepest codes; a flat one gives a balanced
        // tree of depth ceil(log2 n) <= 9 for 288 symbols, so this ends.
        for f in freqs.iter_mut().filter(|f| **f > 0) {
            *f = (*f >> 1).max(1);
        }
    }
}

fn huffman_lengths_unbounded(freqs: &[u32]) -> Vec<u8> {
    let mut leaves: Vec<(u64, usize)> = freqs
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0)
        .map(|(s, &f)| (u64::from(f), s))
        .collect();
    leaves.sort_unstable();
    let n = leaves.len();
    assert!(n >= 2, "huffman_lengths pads to two symbols");
    // Two-queue construction: leaves in order, then merged nodes created in weight order.
    let mut parent = vec![0usize; 2 * n - 1];
    let mut weight: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    let (mut next_leaf, mut next_node) = (0usize, n);
    for created in n..2 * n - 1 {
        let mut pick = || {
            let take_leaf =
                next_leaf < n && (next_node >= created || weight[next_leaf] <= weight[next_node]);
            if take_leaf {
                next_leaf += 1;
                next_leaf - 1
            } else {
                next_node += 1;
                next_node - 1
            }
        };
        let (a, b) = (pick(), pick());
        weight.push(weight[a] + weight[b]);
        parent[a] = created;
        parent[b] = created;
    }
    let mut depth = vec![0u8; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]].saturating_add(1);
    }
    let mut lengths = vec![0u8; freqs.len()];
    for (i, &(_, symbol)) in leaves.iter().enumerate() {
        lengths[symbol] = depth[i];
    }
    lengths
}

/// Canonical codes for `lengths`, bit-reversed so they can be written LSB first.
fn canonical_codes(lengths: &[u8]) -> Vec<u16> {
    let mut counts = [0u16; CODE_BITS_MAX + 1];
    for &l in lengths {
        counts[usize::from(l)] += 1;
    }
    counts[0] = 0;
    let mut next = [0u16; CODE_BITS_MAX + 2];
    let mut code = 0u16;
    for bits in 1..=CODE_BITS_MAX {
        code = (code + counts[bits - 1]) << 1;
        next[bits] = code;
    }
    lengths
        .iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[usize::from(l)];
            next[usize::from(l)] += 1;
            c.reverse_bits() >> (16 - u32::from(l))
        })
        .collect()
}

/// The LZ77 stage: finds back-references with hash chains over the whole input.
struct Matcher<'a> {
    data: &'a [u8],
    /// Farthest distance a match may reach back (a power of two, at most [`WINDOW_BYTES`]).
    window_bytes: usize,
    head: Vec<u32>,
    prev: Vec<u32>,
    /// `head` has `1 << hash_bits` entries.
    hash_bits: u32,
}

impl<'a> Matcher<'a> {
    fn new(data: &'a [u8], window_bytes: usize) -> Self {
        assert!(window_bytes.is_power_of_two() && window_bytes <= WINDOW_BYTES);
        let hash_bits = data
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .clamp(HASH_BITS_MIN, HASH_BITS);
        Self {
            data,
            window_bytes,
            head: vec![NIL; 1 << hash_bits],
            hash_bits,
            // One chain slot per position that can be in the window at once: a short input
            // (a WebSocket message) does not pay for clearing a full window's table.
            prev: vec![NIL; data.len().next_power_of_two().min(WINDOW_BYTES)],
        }
    }

    fn hash(&self, pos: usize) -> usize {
        let d = self.data;
        let v = u32::from(d[pos]) << 16 | u32::from(d[pos + 1]) << 8 | u32::from(d[pos + 2]);
        (v.wrapping_mul(0x9E37_79B1) >> (32 - self.hash_bits)) as usize
    }

    fn insert(&mut self, pos: usize) {
        if pos + MATCH_BYTES_MIN > self.data.len() {
            return;
        }
        let h = self.hash(pos);
        let slot = pos & (self.prev.len() - 1);
        self.prev[slot] = self.head[h];
        self.head[h] = pos as u32;
    }

    /// Longest earlier match for `pos` as (length, distance), visiting at most `steps_max`
    /// chain entries; length 0 if none.
    fn longest(&self, pos: usize, steps_max: usize) -> (usize, usize) {
        let data = self.data;
        let max = (data.len() - pos).min(MATCH_BYTES_MAX);
        if max < MATCH_BYTES_MIN {
            return (0, 0);
        }
        let (mut best_len, mut best_dist) = (0, 0);
        let mut candidate = self.head[self.hash(pos)];
        for _ in 0..steps_max {
            if candidate == NIL {
                break;
            }
            let cand = candidate as usize;
            if cand >= pos || pos - cand > self.window_bytes {
                break;
            }
            if data[cand + best_len.min(max - 1)] == data[pos + best_len.min(max - 1)] {
                let len = common_prefix(&data[cand..cand + max], &data[pos..pos + max]);
                if len > best_len {
                    (best_len, best_dist) = (len, pos - cand);
                    if len >= MATCH_NICE_BYTES || len == max {
                        break;
                    }
                }
            }
            let next = self.prev[cand & (self.prev.len() - 1)];
            // A slot reused by a newer position breaks the chain's decreasing order: stop.
            if next != NIL && next as usize >= cand {
                break;
            }
            candidate = next;
        }
        if best_len < MATCH_BYTES_MIN {
            return (0, 0);
        }
        (best_len, best_dist)
    }
}

/// Length of the common prefix of two equally long slices, eight bytes at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    debug_assert_eq!(a.len(), b.len());
    let mut n = 0;
    while n + 8 <= a.len() {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[n..n + 8].try_into().expect("8 bytes"));
        if x != y {
            return n + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..]
        .iter()
        .zip(&b[n..])
        .take_while(|(p, q)| p == q)
        .count()
}

/// Compresses `data` as a complete raw DEFLATE stream (last block has BFINAL).
pub fn compress_raw(data: &[u8]) -> Vec<u8> {
    let mut writer = BitWriter::new(data.len() / 2 + 64);
    encode_blocks(data, 0, WINDOW_BYTES, &mut writer, true);
    writer.finish()
}

/// Compresses `data` as raw DEFLATE ending with a sync flush (an empty stored block, bytes
/// `00 00 ff ff`) and no final block, as permessage-deflate frames a message; the caller removes
/// the trailing four bytes per RFC 7692 §7.2.1.
pub fn compress_raw_sync(data: &[u8]) -> Vec<u8> {
    compress_raw_sync_with_dictionary(&[], data)
}

/// Like [`compress_raw_sync`], but back-references may reach into `dictionary` (the last
/// [`WINDOW_BYTES`] of it are used): the previous messages, for permessage-deflate with
/// context takeover. The peer decodes with [`inflate_raw_partial`] and the same dictionary.
pub fn compress_raw_sync_with_dictionary(dictionary: &[u8], data: &[u8]) -> Vec<u8> {
    compress_raw_sync_window(dictionary, data, WINDOW_BYTES)
}

/// Like [`compress_raw_sync_with_dictionary`], with back-references reaching at most
/// `window_bytes` back (a power of two from 256 to [`WINDOW_BYTES`]): for a peer that asked
/// for a smaller LZ77 window (permessage-deflate's `server_max_window_bits`, RFC 7692 §7.1.2).
///
/// # Panics
/// If `window_bytes` is not a power of two in that range.
pub fn compress_raw_sync_window(dictionary: &[u8], data: &[u8], window_bytes: usize) -> Vec<u8> {
    assert!(
        window_bytes.is_power_of_two() && (256..=WINDOW_BYTES).contains(&window_bytes),
        "window of {window_bytes} bytes"
    );
    let dict = &dictionary[dictionary.len().saturating_sub(window_bytes)..];
    let joined;
    let (buffer, start) = if dict.is_empty() {
        (data, 0)
    } else {
        joined = [dict, data].concat();
        (&joined[..], dict.len())
    };
    let mut writer = BitWriter::new(data.len() / 2 + 64);
    encode_blocks(buffer, start, window_bytes, &mut writer, false);
    writer.put(0, 3); // BFINAL = 0, BTYPE = 00 (stored)
    writer.align();
    writer.put(0x0000, 16);
    writer.put(0xFFFF, 16);
    let out = writer.finish();
    debug_assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out
}

/// Encodes `data[start..]` as blocks; `data[..start]` only primes the window.
fn encode_blocks(
    data: &[u8],
    start: usize,
    window_bytes: usize,
    writer: &mut BitWriter,
    last_is_final: bool,
) {
    assert!(
        start <= window_bytes && start <= data.len(),
        "dictionary larger than the window"
    );
    let mut matcher = Matcher::new(data, window_bytes);
    for p in (0..start).step_by(DICTIONARY_INDEX_STEP) {
        matcher.insert(p);
    }
    let mut tokens: Vec<Token> = Vec::with_capacity(BLOCK_TOKENS_MAX + 1);
    let mut block_start = start;
    let mut pos = start;
    let mut lookahead: Option<(usize, usize)> = None;
    let mut final_written = false;
    while pos < data.len() {
        let (len, dist) = lookahead
            .take()
            .unwrap_or_else(|| matcher.longest(pos, CHAIN_STEPS_MAX));
        matcher.insert(pos);
        // Lazy matching: prefer a literal now if the next position matches longer. The next
        // position's search is kept for the next round, so no position is searched twice.
        if (MATCH_BYTES_MIN..LAZY_BYTES_MAX).contains(&len) && pos + 1 < data.len() {
            let steps = if len >= GOOD_BYTES {
                CHAIN_STEPS_MAX / 4
            } else {
                CHAIN_STEPS_MAX
            };
            let next = matcher.longest(pos + 1, steps);
            if next.0 > len {
                lookahead = Some(next);
            }
        }
        if lookahead.is_none() && len >= MATCH_BYTES_MIN {
            tokens.push(Token {
                len: len as u16,
                dist: dist as u16,
            });
            for p in pos + 1..pos + len {
                matcher.insert(p);
            }
            pos += len;
        } else {
            tokens.push(Token {
                len: u16::from(data[pos]),
                dist: 0,
            });
            pos += 1;
        }
        if tokens.len() >= BLOCK_TOKENS_MAX {
            final_written = last_is_final && pos == data.len();
            write_block(writer, &tokens, &data[block_start..pos], final_written);
            tokens.clear();
            block_start = pos;
        }
    }
    assert_eq!(pos, data.len());
    if !tokens.is_empty() || (last_is_final && !final_written) {
        // Also covers empty input: one final block holding only end-of-block.
        write_block(writer, &tokens, &data[block_start..], last_is_final);
    }
}

struct BlockTables {
    lit_lengths: Vec<u8>,
    dist_lengths: Vec<u8>,
}

fn write_block(writer: &mut BitWriter, tokens: &[Token], raw: &[u8], is_final: bool) {
    let mut lit_freq = [0u32; LITLEN_CODES];
    let mut dist_freq = [0u32; DIST_CODES];
    for t in tokens {
        if t.dist == 0 {
            lit_freq[usize::from(t.len)] += 1;
        } else {
            lit_freq[257 + length_code(usize::from(t.len))] += 1;
            dist_freq[dist_code(usize::from(t.dist))] += 1;
        }
    }
    lit_freq[END_OF_BLOCK] += 1;
    let dynamic = BlockTables {
        lit_lengths: huffman_lengths(&lit_freq[..286], CODE_BITS_MAX),
        dist_lengths: huffman_lengths(&dist_freq[..30], CODE_BITS_MAX),
    };
    let (fixed_lit, fixed_dist) = fixed_lengths();
    let fixed = BlockTables {
        lit_lengths: fixed_lit.to_vec(),
        dist_lengths: fixed_dist.to_vec(),
    };
    let header = dynamic_header(&dynamic);
    let dynamic_bits = header.bits + data_bits(&dynamic, &lit_freq, &dist_freq);
    let fixed_bits = data_bits(&fixed, &lit_freq, &dist_freq);
    // Stored: per chunk 3 header bits, padding (at most 7) and 32 bits of LEN/NLEN.
    let chunks = raw.len().div_ceil(STORED_BYTES_MAX).max(1) as u64;
    let stored_bits = raw.len() as u64 * 8 + chunks * (3 + 7 + 32);
    if stored_bits <= fixed_bits.min(dynamic_bits) {
        write_stored(writer, raw, is_final);
    } else if fixed_bits <= dynamic_bits {
        writer.put(u32::from(is_final) | 1 << 1, 3);
        write_tokens(writer, &fixed, tokens);
    } else {
        writer.put(u32::from(is_final) | 2 << 1, 3);
        header.write(writer, &dynamic);
        write_tokens(writer, &dynamic, tokens);
    }
}

fn write_stored(writer: &mut BitWriter, raw: &[u8], is_final: bool) {
    let mut chunks = raw.chunks(STORED_BYTES_MAX).peekable();
    if raw.is_empty() {
        writer.put(u32::from(is_final), 3);
        writer.align();
        writer.put(0, 16);
        writer.put(0xFFFF, 16);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        writer.put(u32::from(is_final && last), 3);
        writer.align();
        let len = chunk.len() as u32;
        writer.put(len, 16);
        writer.put(!len & 0xFFFF, 16);
        assert_eq!(writer.count, 0);
        writer.out.extend_from_slice(chunk);
    }
}

fn data_bits(tables: &BlockTables, lit_freq: &[u32], dist_freq: &[u32]) -> u64 {
    let mut bits = 0u64;
    for (symbol, &f) in lit_freq.iter().enumerate().take(286) {
        let extra = if symbol > 256 {
            u64::from(LENGTH_EXTRA[symbol - 257])
        } else {
            0
        };
        bits += u64::from(f) * (u64::from(tables.lit_lengths[symbol]) + extra);
    }
    for (code, &f) in dist_freq.iter().enumerate().take(30) {
        bits += u64::from(f) * (u64::from(tables.dist_lengths[code]) + u64::from(DIST_EXTRA[code]));
    }
    bits
}

fn write_tokens(writer: &mut BitWriter, tables: &BlockTables, tokens: &[Token]) {
    let lit_codes = canonical_codes(&tables.lit_lengths);
    let dist_codes = canonical_codes(&tables.dist_lengths);
    let put_lit = |w: &mut BitWriter, s: usize| {
        assert!(tables.lit_lengths[s] > 0, "symbol {s} has no code");
        w.put(u32::from(lit_codes[s]), u32::from(tables.lit_lengths[s]));
    };
    for t in tokens {
        if t.dist == 0 {
            put_lit(writer, usize::from(t.len));
            continue;
        }
        let (len, dist) = (usize::from(t.len), usize::from(t.dist));
        let lc = length_code(len);
        put_lit(writer, 257 + lc);
        writer.put(
            (len - usize::from(LENGTH_BASE[lc])) as u32,
            u32::from(LENGTH_EXTRA[lc]),
        );
        let dc = dist_code(dist);
        assert!(
            tables.dist_lengths[dc] > 0,
            "distance code {dc} has no code"
        );
        writer.put(
            u32::from(dist_codes[dc]),
            u32::from(tables.dist_lengths[dc]),
        );
        writer.put(
            (dist - usize::from(DIST_BASE[dc])) as u32,
            u32::from(DIST_EXTRA[dc]),
        );
    }
    put_lit(writer, END_OF_BLOCK);
}

/// The run-length coded code lengths of a dynamic block and their own Huffman code.
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// (code-length symbol 0..=18, extra bits value).
    runs: Vec<(u8, u8)>,
    clen_lengths: Vec<u8>,
    bits: u64,
}

fn dynamic_header(tables: &BlockTables) -> DynamicHeader {
    let hlit = 257.max(
        tables
            .lit_lengths
            .iter()
            .rposition(|&l| l != 0)
            .map_or(0, |p| p + 1),
    );
    let hdist = 1.max(
        tables
            .dist_lengths
            .iter()
            .rposition(|&l| l != 0)
            .map_or(0, |p| p + 1),
    );
    let mut all: Vec<u8> = tables.lit_lengths[..hlit].to_vec();
    all.extend_from_slice(&tables.dist_lengths[..hdist]);
    let runs = run_length(&all);
    let mut freq = [0u32; 19];
    for &(s, _) in &runs {
        freq[usize::from(s)] += 1;
    }
    let clen_lengths = huffman_lengths(&freq, CLEN_BITS_MAX);
    let hclen = 4.max(
        CLEN_ORDER
            .iter()
            .rposition(|&s| clen_lengths[s] != 0)
            .map_or(0, |p| p + 1),
    );
    let mut bits = 5 + 5 + 4 + 3 * hclen as u64;
    for &(s, _) in &runs {
        let extra = match s {
            16 => 2,
            17 => 3,
            18 => 7,
            _ => 0,
        };
        bits += u64::from(clen_lengths[usize::from(s)]) + extra;
    }
    DynamicHeader {
        hlit,
        hdist,
        hclen,
        runs,
        clen_lengths,
        bits,
    }
}

impl DynamicHeader {
    fn write(&self, writer: &mut BitWriter, tables: &BlockTables) {
        debug_assert!(self.hlit <= tables.lit_lengths.len());
        writer.put((self.hlit - 257) as u32, 5);
        writer.put((self.hdist - 1) as u32, 5);
        writer.put((self.hclen - 4) as u32, 4);
        for &slot in &CLEN_ORDER[..self.hclen] {
            writer.put(u32::from(self.clen_lengths[slot]), 3);
        }
        let codes = canonical_codes(&self.clen_lengths);
        for &(s, extra) in &self.runs {
            let s = usize::from(s);
            writer.put(u32::from(codes[s]), u32::from(self.clen_lengths[s]));
            match s {
                16 => writer.put(u32::from(extra), 2),
                17 => writer.put(u32::from(extra), 3),
                18 => writer.put(u32::from(extra), 7),
                _ => {}
            }
        }
    }
}

/// Run-length codes a code-length sequence with symbols 16 (repeat previous 3-6), 17 (zeros
/// 3-10) and 18 (zeros 11-138).
fn run_length(lengths: &[u8]) -> Vec<(u8, u8)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < lengths.len() {
        let value = lengths[i];
        let run = lengths[i..].iter().take_while(|&&l| l == value).count();
        let mut left = run;
        if value == 0 {
            while left >= 11 {
                let n = left.min(138);
                runs.push((18, (n - 11) as u8));
                left -= n;
            }
            if left >= 3 {
                runs.push((17, (left - 3) as u8));
                left = 0;
            }
        } else {
            runs.push((value, 0));
            left -= 1;
            while left >= 3 {
                let n = left.min(6);
                runs.push((16, (n - 3) as u8));
                left -= n;
            }
        }
        runs.extend(std::iter::repeat_n((value, 0), left));
        i += run;
    }
    runs
}

// ---------------------------------------------------------------------------------------------
// gzip (RFC 1952).

const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
const GZIP_METHOD_DEFLATE: u8 = 8;
const FLAG_HCRC: u8 = 0x02;
const FLAG_EXTRA: u8 = 0x04;
const FLAG_NAME: u8 = 0x08;
const FLAG_COMMENT: u8 = 0x10;
const FLAG_RESERVED: u8 = 0xE0;
/// OS byte "unknown" (255): the output does not depend on the host.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Compresses `data` into a single gzip member (no name, mtime 0).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 32);
    out.extend_from_slice(&GZIP_MAGIC);
    out.extend_from_slice(&[GZIP_METHOD_DEFLATE, 0, 0, 0, 0, 0, 0, GZIP_OS_UNKNOWN]);
    out.extend_from_slice(&compress_raw(data));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Decompresses gzip data (one or more concatenated members), checking each CRC-32 and size.
pub fn gunzip(data: &[u8], output_bytes_max: usize) -> Result<Vec<u8>, DeflateError> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let header = gzip_header_len(rest)?;
        let budget = output_bytes_max - out.len();
        let member = inflate_stream(&rest[header..], &[], budget, true)?;
        let trailer_at = header + member.consumed_bytes;
        let trailer = rest
            .get(trailer_at..trailer_at + 8)
            .ok_or(DeflateError::Truncated)?;
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc != crc32(&member.data) {
            return Err(DeflateError::BadGzipCrc);
        }
        if size != member.data.len() as u32 {
            return Err(DeflateError::BadGzipSize);
        }
        out.extend_from_slice(&member.data);
        rest = &rest[trailer_at + 8..];
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

/// Length of the gzip member header at the start of `data`.
fn gzip_header_len(data: &[u8]) -> Result<usize, DeflateError> {
    let fixed = data.get(..10).ok_or(DeflateError::Truncated)?;
    if fixed[..2] != GZIP_MAGIC || fixed[2] != GZIP_METHOD_DEFLATE || fixed[3] & FLAG_RESERVED != 0
    {
        return Err(DeflateError::BadGzipHeader);
    }
    let flags = fixed[3];
    let mut pos = 10;
    if flags & FLAG_EXTRA != 0 {
        let xlen = data.get(pos..pos + 2).ok_or(DeflateError::Truncated)?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [FLAG_NAME, FLAG_COMMENT] {
        if flags & flag != 0 {
            let zero = data.get(pos..).and_then(|s| s.iter().position(|&b| b == 0));
            pos += zero.ok_or(DeflateError::Truncated)? + 1;
        }
    }
    if flags & FLAG_HCRC != 0 {
        pos += 2;
    }
    if pos > data.len() {
        return Err(DeflateError::Truncated);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 24;

    #[test]
    fn the_output_reserved_up_front_stays_within_the_output_limit() {
        // 100,000 empty stored blocks: half a megabyte in, nothing out.
        let mut input = Vec::new();
        for _ in 0..100_000 {
            input.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        }
        input.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
        let out = inflate_raw(&input, 16).expect("valid empty blocks");
        assert!(out.is_empty());
        assert!(out.capacity() <= 16, "reserved {}", out.capacity());
    }

    fn round_trip(data: &[u8]) {
        let packed = compress_raw(data);
        assert_eq!(inflate_raw(&packed, LIMIT).expect("inflate"), data);
        let zipped = gzip(data);
        assert_eq!(gunzip(&zipped, LIMIT).expect("gunzip"), data);
        let sync = compress_raw_sync(data);
        let partial = inflate_raw_partial(&sync, &[], LIMIT).expect("partial");
        assert_eq!(partial.data, data);
        assert!(!partial.finished);
        assert_eq!(partial.consumed_bytes, sync.len());
    }

    #[test]
    fn crc32_known_vectors() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trips_of_shapes() {
        round_trip(b"");
        round_trip(b"a");
        round_trip(b"abcabcabcabcabcabcabcabc");
        round_trip(&[0u8; 100_000]);
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {} of text\n", i % 977).into_bytes())
            .collect();
        round_trip(&text);
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        round_trip(&noise);
    }

    #[test]
    fn input_ending_exactly_at_a_block_boundary() {
        // One literal, then matches of exactly 258 bytes: BLOCK_TOKENS_MAX tokens in all, so
        // the last full block is the final one and no second final block may follow it.
        let noise = vec![0u8; 1 + (BLOCK_TOKENS_MAX - 1) * MATCH_BYTES_MAX];
        round_trip(&noise);
        let packed = compress_raw(&noise);
        let inflated = inflate_raw_partial(&packed, &[], LIMIT).expect("inflate");
        assert!(inflated.finished);
        assert_eq!(
            inflated.consumed_bytes,
            packed.len(),
            "trailing bytes after the final block"
        );
    }

    #[test]
    fn dictionary_shrinks_repeated_messages() {
        let first = b"{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hello everyone\"}".to_vec();
        let second = b"{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hello again\"}".to_vec();
        let alone = compress_raw_sync(&second);
        let primed = compress_raw_sync_with_dictionary(&first, &second);
        assert!(
            primed.len() < alone.len(),
            "{} vs {}",
            primed.len(),
            alone.len()
        );
        let back = inflate_raw_partial(&primed, &first, LIMIT).expect("inflate");
        assert_eq!(back.data, second);
        // A dictionary longer than the window keeps only its tail.
        let long = vec![b'q'; WINDOW_BYTES + 100];
        let packed = compress_raw_sync_with_dictionary(&long, b"qqqqqqqq");
        assert_eq!(
            inflate_raw_partial(&packed, &long, LIMIT)
                .expect("inflate")
                .data,
            b"qqqqqqqq"
        );
    }

    #[test]
    fn stored_block_after_a_huffman_block() {
        // A fixed block whose decoding buffers bytes ahead, then a stored block: the stored
        // block's LEN/NLEN and data must come from where the buffered bits say, not later.
        let mut stream = compress_raw_sync(&b"abcabcabcabcabcabcabcabcabcabcabcabc".repeat(4));
        stream.truncate(stream.len() - 4); // keep the stored block's header bits only
                                           // LEN/NLEN of that empty block, then a final stored block holding "xyz".
        stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x01, 0x03, 0x00, 0xfc, 0xff]);
        stream.extend_from_slice(b"xyz");
        let inflated = inflate_raw_partial(&stream, &[], LIMIT).expect("inflate");
        let mut expected = b"abcabcabcabcabcabcabcabcabcabcabcabc".repeat(4);
        expected.extend_from_slice(b"xyz");
        assert_eq!(inflated.data, expected);
        assert!(inflated.finished);
    }

    #[test]
    fn smaller_window_never_reaches_further() {
        // Matches into the dictionary exist at every distance; with a 256-byte window the
        // stream must decode against only the dictionary's last 256 bytes.
        let dictionary: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let data: Vec<u8> = dictionary.iter().step_by(3).copied().take(600).collect();
        let mut message = dictionary[100..700].to_vec();
        message.extend_from_slice(&dictionary[3800..]);
        message.extend_from_slice(&data);
        for window_bytes in [256, 1024, WINDOW_BYTES] {
            let packed = compress_raw_sync_window(&dictionary, &message, window_bytes);
            let tail = &dictionary[dictionary.len() - window_bytes.min(dictionary.len())..];
            let back = inflate_raw_partial(&packed, tail, LIMIT).expect("within the window");
            assert_eq!(back.data, message, "window {window_bytes}");
        }
        let wide = compress_raw_sync_window(&dictionary, &message, WINDOW_BYTES);
        let narrow = compress_raw_sync_window(&dictionary, &message, 256);
        assert!(
            wide.len() < narrow.len(),
            "{} vs {}",
            wide.len(),
            narrow.len()
        );
        assert_eq!(
            inflate_raw_partial(&wide, &dictionary[dictionary.len() - 256..], LIMIT),
            Err(DeflateError::DistanceTooFar),
            "the full window does reach past 256 bytes"
        );
    }

    #[test]
    fn compresses_repetitive_text() {
        let text = "<li class=\"item\">hello world</li>\n".repeat(1000);
        let packed = compress_raw(text.as_bytes());
        assert!(
            packed.len() * 20 < text.len(),
            "{} -> {}",
            text.len(),
            packed.len()
        );
    }

    #[test]
    fn empty_input_is_one_fixed_block() {
        assert_eq!(compress_raw(b""), vec![0x03, 0x00]);
        assert_eq!(inflate_raw(&[0x03, 0x00], 10).expect("empty"), b"");
    }

    #[test]
    fn rfc7692_example_hello() {
        // RFC 7692 §7.2.3.1: "Hello" compressed with a fixed block, sync tail removed.
        let msg = [
            0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let got = inflate_raw_partial(&msg, &[], 100).expect("hello");
        assert_eq!(got.data, b"Hello");
        // §7.2.3.2: the second message references the first through the shared window.
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff];
        let got = inflate_raw_partial(&second, b"Hello", 100).expect("takeover");
        assert_eq!(got.data, b"Hello");
    }

    #[test]
    fn known_gzip_vector_from_the_gzip_tool() {
        // `printf 'hello hello hello\n' | gzip -9n | xxd -i`
        let data = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9,
            0xc9, 0x57, 0xc8, 0x40, 0x90, 0x5c, 0x00, 0x3b, 0x7c, 0x8a, 0xdf, 0x12, 0x00, 0x00,
            0x00,
        ];
        assert_eq!(
            gunzip(&data, 100).expect("gzip vector"),
            b"hello hello hello\n"
        );
    }

    #[test]
    fn refuses_corruption_and_bombs() {
        let zipped = gzip(b"some data that will be checked");
        let mut bad = zipped.clone();
        let n = bad.len();
        bad[n - 5] ^= 1; // CRC byte
        assert_eq!(gunzip(&bad, LIMIT), Err(DeflateError::BadGzipCrc));
        assert_eq!(
            gunzip(&zipped[..zipped.len() - 1], LIMIT),
            Err(DeflateError::Truncated)
        );
        assert_eq!(gunzip(b"\x1f\x8c\x08", LIMIT), Err(DeflateError::Truncated));
        assert_eq!(inflate_raw(&[0x07], LIMIT), Err(DeflateError::BadBlockType));
        let bomb = compress_raw(&vec![0u8; 1 << 20]);
        assert_eq!(inflate_raw(&bomb, 1000), Err(DeflateError::OutputTooLarge));
        // Stored block with LEN 1 and a wrong NLEN.
        assert_eq!(
            inflate_raw(&[0x01, 0x01, 0x00, 0x00, 0x00, b'x'], 10),
            Err(DeflateError::StoredLength)
        );
    }

    #[test]
    fn huffman_lengths_respect_the_limit() {
        // Fibonacci frequencies force a degenerate tree deeper than 15 without the limit.
        let mut freqs = vec![0u32; 30];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freqs.iter_mut() {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let lengths = huffman_lengths(&freqs, CODE_BITS_MAX);
        assert!(lengths.iter().all(|&l| (1..=15).contains(&l)));
        assert!(Huffman::new(&lengths).is_ok(), "table must be complete");
    }

    #[test]
    fn system_gzip_agrees_both_ways() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let Ok(probe) = Command::new("gzip").arg("--version").output() else {
            return; // no gzip binary on this machine
        };
        assert!(probe.status.success());
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(500);
        let ours = gzip(text.as_bytes());
        let run = |args: &[&str], input: Vec<u8>| {
            let mut child = Command::new("gzip")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn gzip");
            let mut stdin = child.stdin.take().expect("stdin");
            let writer = std::thread::spawn(move || stdin.write_all(&input));
            let out = child.wait_with_output().expect("gzip output");
            writer.join().expect("writer").expect("write");
            assert!(out.status.success());
            out.stdout
        };
        assert_eq!(run(&["-dc"], ours), text.as_bytes());
        let theirs = run(&["-9nc"], text.clone().into_bytes());
        assert_eq!(gunzip(&theirs, LIMIT).expect("theirs"), text.as_bytes());
    }

    proptest::proptest! {
        #[test]
        fn prop_round_trip(data in proptest::collection::vec(0u8..4, 0..3000)) {
            round_trip(&data);
        }

        #[test]
        fn prop_random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = inflate_raw(&data, 10_000);
            let _ = gunzip(&data, 10_000);
        }
    }
}
