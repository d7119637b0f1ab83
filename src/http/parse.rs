//! The pure HTTP/1.1 request-head parser (RFC 9112 §2–§5) and the framing rules that decide
//! how long the body is (§6.3), in the shape of httparse: `parse_head` returns `Complete` or
//! `Partial` ("need more bytes"), borrows every slice from the input and never allocates.
//!
//! Owns: the syntax of the request line and header fields, and smuggling defences (strict
//! `Content-Length` / `Transfer-Encoding` / `Host` rules).
//! Must not: perform I/O, allocate, or know about connections. Partial is only safe to retry
//! because the caller enforces the byte limits passed in `HeadLimits` and a read deadline.

use super::percent::is_unreserved;
use super::request::Version;

/// The result of parsing something that may not have fully arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// Parsed; holds the value.
    Complete(T),
    /// Not enough bytes yet.
    Partial,
}

/// One header field, borrowed from the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeaderSlot<'b> {
    /// The field name as received.
    pub name: &'b str,
    /// The field value without surrounding whitespace, as bytes: it may hold obs-text (bytes
    /// 0x80-0xFF, RFC 9110 §5.5) that is not UTF-8, which a recipient treats as opaque data.
    /// [`HeaderSlot::value_text`] gives it as text.
    pub value: &'b [u8],
    /// `value` as text when it is UTF-8: the parser checks a run of fields at once, which
    /// costs far less than a check per value (or per name) on every request.
    text: Option<&'b str>,
}

impl<'b> HeaderSlot<'b> {
    /// A field with `name` and `value` (checked as UTF-8 here, for [`HeaderSlot::value_text`]).
    pub fn new(name: &'b str, value: &'b [u8]) -> Self {
        HeaderSlot {
            name,
            value,
            text: std::str::from_utf8(value).ok(),
        }
    }

    /// The value as text: borrowed when it is UTF-8 (nearly always), else with each invalid
    /// sequence replaced by U+FFFD (the request's `Headers` hold text).
    pub fn value_text(&self) -> std::borrow::Cow<'b, str> {
        match self.text {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => String::from_utf8_lossy(self.value),
        }
    }
}

/// A parsed request head. Header fields are in the slot slice passed to `parse_head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'b> {
    /// The method token.
    pub method: &'b str,
    /// The request-target as received.
    pub target: &'b str,
    /// The protocol version.
    pub version: Version,
    /// How many slots hold header fields.
    pub header_count: usize,
    /// Bytes of the head including the final empty line: the body starts here.
    pub head_len: usize,
}

/// Byte limits the parser enforces (the header count limit is the slot slice's length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line, CRLF excluded (414 beyond).
    pub request_line_bytes_max: usize,
    /// Longest head, request line and final empty line included (431 beyond).
    pub head_bytes_max: usize,
}

/// Why a request head (or its framing) is rejected. Each variant has one fixed message and
/// one status code; after any of them the connection is answered and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The method is empty or not a token.
    BadMethod,
    /// The request-target holds a byte outside visible ASCII.
    BadTarget,
    /// The request line is not `method SP target SP version CRLF`.
    BadRequestLine,
    /// The version is not `HTTP/d.d`.
    BadVersion,
    /// A well-formed version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// The request line exceeds its limit.
    RequestLineTooLong,
    /// The head exceeds its byte limit.
    HeadTooLarge,
    /// More header fields than allowed.
    TooManyHeaders,
    /// A field name is empty or not a token.
    BadHeaderName,
    /// Whitespace between a field name and the colon.
    WhitespaceBeforeColon,
    /// A line folded onto the previous one (obs-fold).
    ObsFold,
    /// NUL, bare CR or another control byte in a field value (obs-text, bytes 0x80-0xFF, is
    /// accepted: RFC 9110 §5.5).
    BadHeaderValue,
    /// A line ended by LF without CR.
    BareLineFeed,
    /// `Content-Length` together with `Transfer-Encoding`.
    LengthWithTransferEncoding,
    /// A malformed or conflicting `Content-Length`.
    BadContentLength,
    /// `Transfer-Encoding` not ending in exactly one `chunked`, or sent on HTTP/1.0.
    BadTransferEncoding,
    /// A transfer coding other than `chunked`.
    UnsupportedTransferCoding,
    /// HTTP/1.1 without `Host`.
    MissingHost,
    /// More than one `Host` field.
    DuplicateHost,
    /// A `Host` value that is not `uri-host [ ":" port ]` (RFC 9110 §7.2).
    BadHost,
    /// An `Expect` other than `100-continue`.
    UnsupportedExpectation,
}

impl ParseError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedTransferCoding => 501,
            ParseError::UnsupportedExpectation => 417,
            _ => 400,
        }
    }

    /// A short, fixed explanation sent as the response body.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::BadMethod => "invalid method",
            ParseError::BadTarget => "invalid request target",
            ParseError::BadRequestLine => "malformed request line",
            ParseError::BadVersion => "malformed HTTP version",
            ParseError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "request header fields too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::BadHeaderName => "invalid header field name",
            ParseError::WhitespaceBeforeColon => "whitespace before colon in header field",
            ParseError::ObsFold => "obsolete line folding is not allowed",
            ParseError::BadHeaderValue => "invalid byte in header field value",
            ParseError::BareLineFeed => "line must end with CRLF",
            ParseError::LengthWithTransferEncoding => {
                "Content-Length together with Transfer-Encoding"
            }
            ParseError::BadContentLength => "invalid or conflicting Content-Length",
            ParseError::BadTransferEncoding => "Transfer-Encoding must end in a single chunked",
            ParseError::UnsupportedTransferCoding => {
                "only the chunked transfer coding is supported"
            }
            ParseError::MissingHost => "HTTP/1.1 request without Host",
            ParseError::DuplicateHost => "more than one Host header field",
            ParseError::BadHost => "invalid Host header field value",
            ParseError::UnsupportedExpectation => "only Expect: 100-continue is supported",
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for ParseError {}

/// tchar (RFC 9110 §5.6.2) as a lookup table: the parser tests every name byte.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// tchar (RFC 9110 §5.6.2).
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[b as usize]
}

/// `token` (RFC 9110 §5.6.2): one or more tchar.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// A field-value byte (VCHAR, SP, HTAB or obs-text); CR, LF, NUL, DEL and other CTLs are not.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// Word-at-a-time scans: eight bytes are tested with a few integer operations, and only the
/// word holding the first rejected byte is walked byte by byte.
const WORD_BYTES: usize = 8;
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// True when some byte of `word` is below `n` (`n <= 0x80`; exact, no false positives).
fn has_byte_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(LOW_BITS * u64::from(n)) & !word & HIGH_BITS != 0
}

/// True when some byte of `word` is above `n` (`n < 0x80`; exact).
fn has_byte_above(word: u64, n: u8) -> bool {
    (word.wrapping_add(LOW_BITS * u64::from(127 - n)) | word) & HIGH_BITS != 0
}

/// True when every byte of `word` is a field-value byte other than HTAB (the rare HTAB sends
/// the word to the byte loop).
fn all_plain_value_bytes(word: u64) -> bool {
    !has_byte_below(word, 0x20) && !has_byte_below(word ^ (LOW_BITS * 0x7f), 1)
}

/// True when every byte of `word` is visible ASCII (a request-target byte).
fn all_visible_ascii(word: u64) -> bool {
    !has_byte_below(word, 0x21) && !has_byte_above(word, 0x7e)
}

/// The index of the first byte of `buf` failing `byte_ok`; `word_ok` must accept a word only
/// when `byte_ok` accepts each of its bytes.
#[inline(always)]
fn first_rejected(
    buf: &[u8],
    word_ok: impl Fn(u64) -> bool,
    byte_ok: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut at = 0;
    for chunk in buf.chunks_exact(WORD_BYTES) {
        let Ok(bytes) = <[u8; WORD_BYTES]>::try_from(chunk) else {
            break;
        };
        if !word_ok(u64::from_le_bytes(bytes)) {
            break;
        }
        at += WORD_BYTES;
    }
    let found = buf[at..].iter().position(|&b| !byte_ok(b)).map(|n| at + n);
    assert!(
        found.is_none_or(|i| !byte_ok(buf[i])),
        "scan stopped on an accepted byte"
    );
    found
}

/// `buf[range]` as text, for a range the byte rules kept to ASCII (method, target, names):
/// never fails for those, so a failure is a broken scanner (stopped loudly), not bad input.
#[inline(always)]
fn ascii(buf: &[u8], range: (usize, usize)) -> &str {
    std::str::from_utf8(&buf[range.0..range.1]).expect("bytes the token rules passed are ASCII")
}

/// Where one field lies in the buffer: `[name.0, name.1)` and the value without surrounding
/// whitespace `[value.0, value.1)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FieldSpan {
    name: (usize, usize),
    value: (usize, usize),
}

impl FieldSpan {
    fn shifted(self, by: usize) -> FieldSpan {
        FieldSpan {
            name: (self.name.0 + by, self.name.1 + by),
            value: (self.value.0 + by, self.value.1 + by),
        }
    }
}

/// The slot a scanned field fills, checked alone: the name is ASCII (tchar), the value is
/// bytes (obs-text, 0x80-0xFF, is opaque data to a recipient, RFC 9110 §5.5, UTF-8 or not).
#[inline(always)]
fn slot_of(buf: &[u8], span: FieldSpan) -> HeaderSlot<'_> {
    HeaderSlot::new(ascii(buf, span.name), &buf[span.value.0..span.value.1])
}

/// Fields whose byte spans are collected before one UTF-8 check turns them into slots. A head
/// with more fields is converted in several such batches.
const SPANS_BATCH: usize = 8;

/// `text[range]` for a `text` that starts at byte `base` of the buffer. Every bound of a span
/// sits next to an ASCII delimiter, so it is a char boundary of any UTF-8 text covering it:
/// a miss is a broken scanner.
#[inline(always)]
fn piece(text: &str, base: usize, range: (usize, usize)) -> &str {
    text.get(range.0 - base..range.1 - base)
        .expect("a span's bounds are char boundaries")
}

/// Fills `slots` from `spans`, fields that lie in `buf[base..end]`, with one UTF-8 check of
/// that whole range; returns the checked text. When the range is not UTF-8 (a value holds
/// obs-text that is not), each field is checked alone and `None` is returned.
#[inline(always)]
fn fill_slots<'b>(
    buf: &'b [u8],
    base: usize,
    end: usize,
    spans: &[FieldSpan],
    slots: &mut [HeaderSlot<'b>],
) -> Option<&'b str> {
    assert_eq!(spans.len(), slots.len(), "one slot per span");
    let Ok(text) = std::str::from_utf8(&buf[base..end]) else {
        for (slot, span) in slots.iter_mut().zip(spans) {
            *slot = slot_of(buf, *span);
        }
        return None;
    };
    for (slot, span) in slots.iter_mut().zip(spans) {
        let value = piece(text, base, span.value);
        *slot = HeaderSlot {
            name: piece(text, base, span.name),
            value: value.as_bytes(),
            text: Some(value),
        };
    }
    Some(text)
}

/// Parses a request head from the start of `buf`. Header fields go to `slots`; a full slice
/// with more fields is `TooManyHeaders`. The bytes are scanned once by the syntax rules, then
/// checked as UTF-8 once per batch of fields (not once per name and value).
pub fn parse_head<'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
    slots: &mut [HeaderSlot<'b>],
) -> Result<Status<Head<'b>>, ParseError> {
    let mut pos = 0;
    // RFC 9112 §2.2: ignore empty lines before the request line (they count toward the limit).
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    if &buf[pos..] == b"\r" {
        return partial(buf, limits);
    }
    let line = match parse_request_line(&buf[pos..], limits)? {
        Status::Complete(line) => line,
        Status::Partial => return partial(buf, limits),
    };
    let line_start = pos;
    pos += line.len;
    let mut count = 0;
    let mut spans = [FieldSpan::default(); SPANS_BATCH];
    let mut batched = 0;
    let mut batch_start = line_start;
    // The first batch's checked text, which starts at the request line.
    let mut line_text: Option<Option<&str>> = None;
    loop {
        let rest = &buf[pos..];
        if rest.starts_with(b"\r\n") {
            pos += 2;
            break;
        }
        if rest.is_empty() || rest == b"\r" {
            return partial(buf, limits);
        }
        if rest[0] == b'\n' {
            return Err(ParseError::BareLineFeed);
        }
        let (span, used) = match scan_field(rest)? {
            Status::Complete(field) => field,
            Status::Partial => return partial(buf, limits),
        };
        if count == slots.len() {
            return Err(ParseError::TooManyHeaders);
        }
        spans[batched] = span.shifted(pos);
        batched += 1;
        count += 1;
        pos += used;
        if pos > limits.head_bytes_max {
            return Err(ParseError::HeadTooLarge);
        }
        if batched == SPANS_BATCH {
            let batch = &mut slots[count - batched..count];
            let text = fill_slots(buf, batch_start, pos, &spans, batch);
            line_text.get_or_insert(text);
            batched = 0;
            batch_start = pos;
        }
    }
    if pos > limits.head_bytes_max {
        return Err(ParseError::HeadTooLarge);
    }
    assert!(
        pos <= buf.len(),
        "head_len {pos} beyond buffer {}",
        buf.len()
    );
    let batch = &mut slots[count - batched..count];
    let text = fill_slots(buf, batch_start, pos, &spans[..batched], batch);
    let line_text = line_text.unwrap_or(text);
    let (method, target) = (
        line.method.shifted(line_start),
        line.target.shifted(line_start),
    );
    // The request line is ASCII by the byte rules: from the first batch's text when that
    // was UTF-8, else checked alone.
    let (method, target) = match line_text {
        Some(text) => (
            piece(text, line_start, method),
            piece(text, line_start, target),
        ),
        None => (ascii(buf, method), ascii(buf, target)),
    };
    Ok(Status::Complete(Head {
        method,
        target,
        version: line.version,
        header_count: count,
        head_len: pos,
    }))
}

/// Partial, unless the buffer already holds more than a head may.
fn partial<T>(buf: &[u8], limits: &HeadLimits) -> Result<Status<T>, ParseError> {
    if buf.len() >= limits.head_bytes_max {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(Status::Partial)
}

/// A byte range `[start, end)` relative to some origin.
#[derive(Clone, Copy, Debug)]
struct Range(usize, usize);

impl Range {
    fn shifted(self, by: usize) -> (usize, usize) {
        (self.0 + by, self.1 + by)
    }
}

/// The request line as byte ranges (method and target are ASCII by the byte rules).
struct RequestLine {
    method: Range,
    target: Range,
    version: Version,
    len: usize,
}

fn parse_request_line(buf: &[u8], limits: &HeadLimits) -> Result<Status<RequestLine>, ParseError> {
    let too_long = |end: usize| end > limits.request_line_bytes_max;
    let method_len = match buf.iter().position(|&b| !is_token_byte(b)) {
        Some(n) => n,
        None if too_long(buf.len()) => return Err(ParseError::RequestLineTooLong),
        None => return Ok(Status::Partial),
    };
    if method_len == 0 || buf[method_len] != b' ' {
        return Err(ParseError::BadMethod);
    }
    let target_start = method_len + 1;
    let target_len = match first_rejected(&buf[target_start..], all_visible_ascii, |b| {
        (0x21..=0x7e).contains(&b)
    }) {
        Some(n) => n,
        None if too_long(buf.len()) => return Err(ParseError::RequestLineTooLong),
        None => return Ok(Status::Partial),
    };
    let target_end = target_start + target_len;
    if too_long(target_end) {
        return Err(ParseError::RequestLineTooLong);
    }
    match buf[target_end] {
        b' ' if target_len > 0 => {}
        b' ' | b'\r' | b'\n' => return Err(ParseError::BadRequestLine),
        _ => return Err(ParseError::BadTarget),
    }
    let version_start = target_end + 1;
    let line_end = version_start + 8;
    if buf.len() < line_end + 2 {
        if too_long(buf.len().min(line_end)) {
            return Err(ParseError::RequestLineTooLong);
        }
        return check_version_prefix(&buf[version_start..]).map(|()| Status::Partial);
    }
    if too_long(line_end) {
        return Err(ParseError::RequestLineTooLong);
    }
    let version = parse_version(&buf[version_start..line_end])?;
    if &buf[line_end..line_end + 2] != b"\r\n" {
        return Err(ParseError::BadRequestLine);
    }
    Ok(Status::Complete(RequestLine {
        method: Range(0, method_len),
        target: Range(target_start, target_end),
        version,
        len: line_end + 2,
    }))
}

/// Rejects early a version that cannot become `HTTP/d.d`.
fn check_version_prefix(partial: &[u8]) -> Result<(), ParseError> {
    const PATTERN: &[u8; 8] = b"HTTP/d.d";
    for (i, &b) in partial.iter().take(8).enumerate() {
        let ok = match PATTERN[i] {
            b'd' => b.is_ascii_digit(),
            expected => b == expected,
        };
        if !ok {
            return Err(ParseError::BadVersion);
        }
    }
    Ok(())
}

#[inline]
fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    if v == b"HTTP/1.1" {
        return Ok(Version::Http11); // Nearly every request: one comparison.
    }
    check_version_prefix(v)?;
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        _ => Err(ParseError::UnsupportedVersion),
    }
}

/// One `name: value CRLF` line at the start of `buf`; returns the slot and bytes used.
pub(crate) fn parse_field(buf: &[u8]) -> Result<Status<(HeaderSlot<'_>, usize)>, ParseError> {
    let (span, used) = match scan_field(buf)? {
        Status::Complete(field) => field,
        Status::Partial => return Ok(Status::Partial),
    };
    Ok(Status::Complete((slot_of(buf, span), used)))
}

/// The byte rules of one field line at the start of `buf`: returns where the name and the
/// trimmed value lie, and the bytes used (CRLF included).
#[inline(always)]
fn scan_field(buf: &[u8]) -> Result<Status<(FieldSpan, usize)>, ParseError> {
    if buf[0] == b' ' || buf[0] == b'\t' {
        return Err(ParseError::ObsFold);
    }
    let name_len = match buf.iter().position(|&b| !is_token_byte(b)) {
        Some(n) => n,
        None => return Ok(Status::Partial),
    };
    match buf[name_len] {
        b':' if name_len > 0 => {}
        b' ' | b'\t' if name_len > 0 => return Err(ParseError::WhitespaceBeforeColon),
        _ => return Err(ParseError::BadHeaderName),
    }
    let value_start = name_len + 1;
    let value_len = match first_rejected(&buf[value_start..], all_plain_value_bytes, is_value_byte)
    {
        Some(n) => n,
        None => return Ok(Status::Partial),
    };
    let value_end = value_start + value_len;
    match buf[value_end] {
        b'\r' => {}
        b'\n' => return Err(ParseError::BareLineFeed),
        _ => return Err(ParseError::BadHeaderValue),
    }
    match buf.get(value_end + 1) {
        None => return Ok(Status::Partial),
        Some(b'\n') => {}
        Some(_) => return Err(ParseError::BadHeaderValue),
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let value = &buf[value_start..value_end];
    let lead = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let tail = value[lead..]
        .iter()
        .rev()
        .position(|b| !blank(b))
        .unwrap_or(0);
    let span = FieldSpan {
        name: (0, name_len),
        value: (value_start + lead, value_end - tail),
    };
    assert!(span.value.0 <= span.value.1, "trimmed value {span:?}");
    Ok(Status::Complete((span, value_end + 2)))
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// What the head says about framing and the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// How the body is delimited.
    pub body: BodyKind,
    /// The client allows the connection to persist after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// Applies the framing rules to a parsed head's fields. Pure.
pub fn framing(version: Version, fields: &[HeaderSlot<'_>]) -> Result<Framing, ParseError> {
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut host_count = 0u32;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for field in fields {
        // The length picks the one name worth comparing: most fields are none of these.
        let name = field.name;
        // Each of these fields has an ASCII grammar: a value with obs-text breaks it, and is
        // refused by that field's own rule (never read as something else).
        let text = || std::str::from_utf8(field.value).ok();
        match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                let value = text().ok_or(ParseError::BadContentLength)?;
                length = Some(merge_content_length(length, value)?);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                let value = text().ok_or(ParseError::BadTransferEncoding)?;
                chunked_last = transfer_codings(value, chunked_last)?;
                transfer_encoding = true;
            }
            4 if name.eq_ignore_ascii_case("host") => {
                // RFC 9112 §3.2: a Host with an invalid value is a 400, like a missing one.
                // Applications build absolute URLs from it (redirects, links in e-mails).
                if !is_valid_host(field.value) {
                    return Err(ParseError::BadHost);
                }
                host_count += 1;
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                // Compared as bytes: a token with obs-text is no option we know, and must not
                // hide a `close` beside it.
                for token in field.value.split(|&b| b == b',').map(trim_blank) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            6 if name.eq_ignore_ascii_case("expect") => {
                if !field.value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ParseError::UnsupportedExpectation);
                }
                expect_continue = true;
            }
            _ => {}
        }
    }
    if host_count > 1 {
        return Err(ParseError::DuplicateHost);
    }
    if host_count == 0 && version == Version::Http11 {
        return Err(ParseError::MissingHost);
    }
    let body = match (transfer_encoding, length) {
        (true, Some(_)) => return Err(ParseError::LengthWithTransferEncoding),
        (true, None) if version == Version::Http10 || !chunked_last => {
            return Err(ParseError::BadTransferEncoding)
        }
        (true, None) => BodyKind::Chunked,
        (false, Some(0)) | (false, None) => BodyKind::None,
        (false, Some(n)) => BodyKind::Length(n),
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(Framing {
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::Http11,
    })
}

/// `bytes` without leading and trailing SP and HTAB (OWS).
fn trim_blank(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name (unreserved,
/// sub-delims and percent escapes; possibly empty), an IPv4 address (a reg-name by syntax) or
/// an IP-literal in brackets, then an optional all-digit port.
pub(crate) fn is_valid_host(bytes: &[u8]) -> bool {
    let (host_end, port) = if bytes.first() == Some(&b'[') {
        let Some(close) = bytes.iter().position(|&b| b == b']') else {
            return false;
        };
        // IPv6address or IPvFuture: hex digits, `:` and `.` for the first; `v`, hex, `.` then
        // unreserved, sub-delims and `:` for the second. Both fit this set.
        let literal = &bytes[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b == b':' || is_unreserved(b) || is_sub_delim(b))
        {
            return false;
        }
        (close + 1, &bytes[close + 1..])
    } else {
        let end = bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len());
        (end, &bytes[end..])
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && (bytes.first() == Some(&b'[') || is_reg_name(&bytes[..host_end]))
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn is_reg_name(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = bytes.get(i + 1..i + 3);
                if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if REG_NAME_BYTE[usize::from(b)] => i += 1,
            _ => return false,
        }
    }
    true
}

/// The bytes a reg-name holds outside percent escapes (unreserved and sub-delims), as a table:
/// the Host of every request is checked, and one load per byte beats the two matches.
const REG_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = is_unreserved(byte) || is_sub_delim(byte);
        b += 1;
    }
    table
};

/// `sub-delims` (RFC 3986 §2.2).
const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Checks one `Transfer-Encoding` value: only `chunked`, and nothing after it (even across
/// fields: `chunked_last` says whether an earlier field already ended in it). Returns whether
/// this one ends in `chunked`.
fn transfer_codings(value: &str, mut chunked_last: bool) -> Result<bool, ParseError> {
    for coding in value.split(',').map(|c| c.trim_matches([' ', '\t'])) {
        if coding.is_empty() {
            continue;
        }
        if chunked_last {
            // Anything after chunked (even another chunked) is invalid framing.
            return Err(ParseError::BadTransferEncoding);
        }
        if !coding.eq_ignore_ascii_case("chunked") {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        chunked_last = true;
    }
    Ok(chunked_last)
}

/// Content-Length is 1*DIGIT; repeated fields (or list elements) must all agree.
fn merge_content_length(previous: Option<u64>, value: &str) -> Result<u64, ParseError> {
    let mut merged = previous;
    for element in value.split(',').map(|e| e.trim_matches([' ', '\t'])) {
        if element.is_empty() || element.len() > 19 || !element.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseError::BadContentLength);
        }
        let n: u64 = element.parse().map_err(|_| ParseError::BadContentLength)?;
        if merged.is_some_and(|m| m != n) {
            return Err(ParseError::BadContentLength);
        }
        merged = Some(n);
    }
    merged.ok_or(ParseError::BadContentLength)
}

#[cfg(test)]
mod tests;
