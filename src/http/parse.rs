//! The pure HTTP/1.1 request-head parser (RFC 9112 §2–§5) and the framing rules that decide
//! how long the body is (§6.3), in the shape of httparse: `parse_head` returns `Complete` or
//! `Partial` ("need more bytes"), borrows every slice from the input and never allocates.
//!
//! Owns: the syntax of the request line and header fields, and smuggling defences (strict
//! `Content-Length` / `Transfer-Encoding` / `Host` rules).
//! Must not: perform I/O, allocate, or know about connections. Partial is only safe to retry
//! because the caller enforces the byte limits passed in `HeadLimits` and a read deadline.

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
    /// The field value without surrounding whitespace.
    pub value: &'b str,
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
    /// NUL, bare CR, another control byte, or invalid UTF-8 in a field value.
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

/// A field-value byte (VCHAR, SP, HTAB or obs-text); CR, LF, NUL, DEL and other CTLs are not.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

fn text(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|_| ParseError::BadHeaderValue)
}

/// Parses a request head from the start of `buf`. Header fields go to `slots`; a full slice
/// with more fields is `TooManyHeaders`.
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
    pos += line.len;
    let mut count = 0;
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
        let (slot, used) = match parse_field(rest)? {
            Status::Complete(field) => field,
            Status::Partial => return partial(buf, limits),
        };
        if count == slots.len() {
            return Err(ParseError::TooManyHeaders);
        }
        slots[count] = slot;
        count += 1;
        pos += used;
        if pos > limits.head_bytes_max {
            return Err(ParseError::HeadTooLarge);
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
    Ok(Status::Complete(Head {
        method: line.method,
        target: line.target,
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

struct RequestLine<'b> {
    method: &'b str,
    target: &'b str,
    version: Version,
    len: usize,
}

fn parse_request_line<'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
) -> Result<Status<RequestLine<'b>>, ParseError> {
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
    let target_len = match buf[target_start..]
        .iter()
        .position(|&b| !(0x21..=0x7e).contains(&b))
    {
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
        method: text(&buf[..method_len]).map_err(|_| ParseError::BadMethod)?,
        target: text(&buf[target_start..target_end]).map_err(|_| ParseError::BadTarget)?,
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

fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    check_version_prefix(v)?;
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        _ => Err(ParseError::UnsupportedVersion),
    }
}

/// One `name: value CRLF` line at the start of `buf`; returns the slot and bytes used.
pub(crate) fn parse_field(buf: &[u8]) -> Result<Status<(HeaderSlot<'_>, usize)>, ParseError> {
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
    let value_len = match buf[value_start..].iter().position(|&b| !is_value_byte(b)) {
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
    let value = text(&buf[value_start..value_end])?.trim_matches([' ', '\t']);
    let name = text(&buf[..name_len]).map_err(|_| ParseError::BadHeaderName)?;
    Ok(Status::Complete((
        HeaderSlot { name, value },
        value_end + 2,
    )))
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
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(merge_content_length(length, field.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in field.value.split(',').map(|c| c.trim_matches([' ', '\t'])) {
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
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("host") {
            host_count += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !field.value.eq_ignore_ascii_case("100-continue") {
                return Err(ParseError::UnsupportedExpectation);
            }
            expect_continue = true;
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
