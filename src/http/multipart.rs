//! `multipart/form-data` (RFC 7578 over RFC 2046 §5.1): an incremental parser over bytes, and
//! a collector that keeps small parts in memory and streams large ones to temporary files.
//!
//! Owns: boundary scanning, part headers (`Content-Disposition`, `Content-Type`), limits on
//! part count, part size and header size.
//! Must not: trust a client file name as a path (use [`Part::file_name_safe`] if you must).
//!
//! The parser ([`Parser`]) does no I/O and keeps at most one boundary's worth of body bytes
//! plus one part's headers buffered; feeding it the input split at any byte gives the same
//! events.

use crate::http::form::content_type_is;
use crate::http::problem::Problem;
use crate::http::request::Request;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest boundary RFC 2046 allows.
pub const BOUNDARY_BYTES_MAX: usize = 70;
/// Largest header block of one part.
pub const PART_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Default most parts per body.
pub const PARTS_MAX: usize = 64;
/// Default largest part.
pub const PART_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Default size above which a part goes to a temporary file instead of memory.
pub const PART_MEMORY_BYTES_MAX: usize = 64 * 1024;
/// Permissions of an upload's temporary file: read and write for the server's user only.
#[cfg(unix)]
pub const TEMP_FILE_MODE: u32 = 0o600;
/// Padding spaces or tabs accepted after a delimiter before its line break.
const PADDING_BYTES_MAX: usize = 64;

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// More parts than the limit.
    TooManyParts(usize),
    /// A part is larger than the limit.
    PartTooLarge(u64),
    /// A part's header block is larger than [`PART_HEADER_BYTES_MAX`].
    HeaderTooLarge,
    /// A header line or the delimiter line is malformed.
    Malformed(&'static str),
    /// The body ended before the closing delimiter.
    Truncated,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyParts(n) => write!(f, "more than {n} parts"),
            Self::PartTooLarge(n) => write!(f, "a part exceeds {n} bytes"),
            Self::HeaderTooLarge => write!(f, "part headers exceed {PART_HEADER_BYTES_MAX} bytes"),
            Self::Malformed(what) => write!(f, "malformed multipart body: {what}"),
            Self::Truncated => f.write_str("multipart body ends before its closing boundary"),
        }
    }
}

impl std::error::Error for MultipartError {}

/// The headers of one part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHead {
    /// The form field name (`Content-Disposition: form-data; name="..."`).
    pub name: String,
    /// The client's file name, if it sent one. Untrusted text, not a path.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<String>,
}

/// What the parser found, in order: for each part a `Start`, zero or more `Data`, an `End`;
/// then one `Done`.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A part begins.
    Start(PartHead),
    /// Bytes of the current part.
    Data(&'a [u8]),
    /// The current part is complete.
    End,
    /// The closing delimiter was read; input after it is ignored.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// The incremental parser. Feed bytes with [`Parser::feed`], then call [`Parser::finish`].
pub struct Parser {
    /// `\r\n--boundary`: every delimiter, the first included thanks to a virtual leading CRLF.
    delimiter: Vec<u8>,
    pending: Vec<u8>,
    state: State,
    parts: usize,
    parts_max: usize,
    part_bytes: u64,
    part_bytes_max: u64,
}

impl Parser {
    /// A parser for `boundary` (1..=70 bytes) with the given limits.
    pub fn new(
        boundary: &str,
        parts_max: usize,
        part_bytes_max: u64,
    ) -> Result<Self, MultipartError> {
        if boundary.is_empty()
            || boundary.len() > BOUNDARY_BYTES_MAX
            || boundary.bytes().any(|b| b.is_ascii_control())
        {
            return Err(MultipartError::Malformed("bad boundary"));
        }
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Ok(Self {
            delimiter,
            pending: b"\r\n".to_vec(),
            state: State::Preamble,
            parts: 0,
            parts_max,
            part_bytes: 0,
            part_bytes_max,
        })
    }

    /// Consumes `input`, calling `sink` for each event.
    pub fn feed<E: From<MultipartError>>(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.state == State::Done {
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        while self.step(sink)? {}
        Ok(())
    }

    /// Checks the body was complete.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(MultipartError::Truncated)
        }
    }

    /// One state transition; `Ok(false)` when more input is needed.
    fn step<E: From<MultipartError>>(
        &mut self,
        sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let keep = self.delimiter.len() - 1;
        match self.state {
            State::Preamble => match find(&self.pending, &self.delimiter) {
                Some(at) => {
                    self.pending.drain(..at + self.delimiter.len());
                    self.state = State::AfterDelimiter;
                    Ok(true)
                }
                None => {
                    let drop = self.pending.len().saturating_sub(keep);
                    self.pending.drain(..drop);
                    Ok(false)
                }
            },
            State::AfterDelimiter => self.after_delimiter(sink),
            State::Headers => self.headers(sink),
            State::Body => match find(&self.pending, &self.delimiter) {
                Some(at) => {
                    self.data(at, sink)?;
                    sink(Event::End)?;
                    self.pending.drain(..self.delimiter.len());
                    self.state = State::AfterDelimiter;
                    Ok(true)
                }
                None => {
                    let safe = self.pending.len().saturating_sub(keep);
                    self.data(safe, sink)?;
                    Ok(false)
                }
            },
            State::Done => Ok(false),
        }
    }

    /// Emits the first `n` pending bytes as part data and drops them.
    fn data<E: From<MultipartError>>(
        &mut self,
        n: usize,
        sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if n == 0 {
            return Ok(());
        }
        self.part_bytes += n as u64;
        if self.part_bytes > self.part_bytes_max {
            return Err(MultipartError::PartTooLarge(self.part_bytes_max).into());
        }
        sink(Event::Data(&self.pending[..n]))?;
        self.pending.drain(..n);
        Ok(())
    }

    fn after_delimiter<E: From<MultipartError>>(
        &mut self,
        sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.pending.len() < 2 {
            return Ok(false);
        }
        if self.pending.starts_with(b"--") {
            self.pending.clear();
            self.state = State::Done;
            sink(Event::Done)?;
            return Ok(false);
        }
        let padding = self
            .pending
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if padding > PADDING_BYTES_MAX {
            return Err(MultipartError::Malformed("delimiter line too long").into());
        }
        let rest = &self.pending[padding..];
        if rest.len() < 2 {
            return Ok(false);
        }
        if !rest.starts_with(b"\r\n") {
            return Err(MultipartError::Malformed("delimiter not followed by CRLF").into());
        }
        if self.parts == self.parts_max {
            return Err(MultipartError::TooManyParts(self.parts_max).into());
        }
        self.pending.drain(..padding + 2);
        self.state = State::Headers;
        Ok(true)
    }

    fn headers<E: From<MultipartError>>(
        &mut self,
        sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let end = if self.pending.starts_with(b"\r\n") {
            Some(0)
        } else {
            find(&self.pending, b"\r\n\r\n").map(|i| i + 2)
        };
        let Some(end) = end else {
            if self.pending.len() > PART_HEADER_BYTES_MAX {
                return Err(MultipartError::HeaderTooLarge.into());
            }
            return Ok(false);
        };
        if end > PART_HEADER_BYTES_MAX {
            return Err(MultipartError::HeaderTooLarge.into());
        }
        let head = parse_head(&self.pending[..end])?;
        self.pending.drain(..end + 2);
        self.parts += 1;
        self.part_bytes = 0;
        self.state = State::Body;
        sink(Event::Start(head))?;
        Ok(true)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    debug_assert!(!needle.is_empty());
    if haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    (0..=haystack.len() - needle.len())
        .find(|&i| haystack[i] == first && haystack[i..].starts_with(needle))
}

/// Parses a part's header lines (each ending in CRLF). Bytes that are not UTF-8 (a filename
/// in Latin-1 from an old client) are read as U+FFFD, as in a request's own header fields
/// (obs-text is opaque data, RFC 9110 §5.5): the part is kept, its name may differ.
fn parse_head(block: &[u8]) -> Result<PartHead, MultipartError> {
    let text = String::from_utf8_lossy(block);
    let mut head = PartHead::default();
    let mut disposition = false;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(MultipartError::Malformed("header line without ':'"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            let mut params = split_params(value);
            let kind = params.next().map(|(k, _)| k).unwrap_or_default();
            if !kind.eq_ignore_ascii_case("form-data") {
                return Err(MultipartError::Malformed("part is not form-data"));
            }
            disposition = true;
            for (k, v) in params {
                match k.to_ascii_lowercase().as_str() {
                    "name" => head.name = v,
                    "filename" => head.filename = Some(v),
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.to_string());
        }
    }
    if !disposition {
        return Err(MultipartError::Malformed(
            "part without Content-Disposition",
        ));
    }
    Ok(head)
}

/// `form-data; name="a;b"; filename="x\"y"` into ("form-data", ""), ("name", "a;b"), ...
fn split_params(value: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let mut pieces = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => pieces.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces.into_iter().map(|p| match p.split_once('=') {
        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
        None => (p.trim().to_string(), String::new()),
    })
}

/// Limits for [`Request::multipart`].
#[derive(Debug, Clone)]
pub struct MultipartLimits {
    /// Most parts.
    pub parts_max: usize,
    /// Largest part in bytes.
    pub part_bytes_max: u64,
    /// Parts above this size are streamed to a temporary file.
    pub memory_part_bytes_max: usize,
    /// Where temporary files go (`std::env::temp_dir()` by default).
    pub temp_dir: PathBuf,
}

impl Default for MultipartLimits {
    fn default() -> Self {
        Self {
            parts_max: PARTS_MAX,
            part_bytes_max: PART_BYTES_MAX,
            memory_part_bytes_max: PART_MEMORY_BYTES_MAX,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// A temporary file holding one large part; deleted when dropped unless persisted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    len: u64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    fn create(dir: &Path) -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "lithair-upload-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        // create_new refuses an existing name, so a planted symlink cannot redirect the write.
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        // Owner only: the default (0666 less the umask, usually 0644) let every local user
        // read uploads in a shared temporary directory while they were being handled.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, TEMP_FILE_MODE);
        let file = options.open(&path)?;
        Ok(Self {
            path,
            file: Some(file),
            len: 0,
        })
    }

    /// Where the data is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the whole file.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(self.len as usize);
        File::open(&self.path)?.read_to_end(&mut data)?;
        Ok(data)
    }

    /// Moves the file to `target` (same file system) and keeps it.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: a file already removed by someone else is not an error here.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a part's bytes are.
#[derive(Debug)]
pub enum PartData {
    /// Small parts.
    Memory(Vec<u8>),
    /// Parts above `memory_part_bytes_max`.
    File(TempFile),
}

/// One part of a multipart body.
#[derive(Debug)]
pub struct Part {
    /// Its headers.
    pub head: PartHead,
    /// Its bytes.
    pub data: PartData,
}

impl Part {
    /// The data as text, if it is in memory and UTF-8 (form fields).
    pub fn text(&self) -> Option<&str> {
        match &self.data {
            PartData::Memory(bytes) => std::str::from_utf8(bytes).ok(),
            PartData::File(_) => None,
        }
    }

    /// The last path component of the client's file name, without separators, control
    /// characters or a leading dot; `None` if nothing usable is left.
    pub fn file_name_safe(&self) -> Option<String> {
        let raw = self.head.filename.as_deref()?;
        let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        let cleaned: String = last
            .chars()
            .filter(|c| !c.is_control() && *c != ':')
            .collect();
        let cleaned = cleaned.trim_start_matches('.').trim().to_string();
        (!cleaned.is_empty()).then_some(cleaned)
    }
}

/// Why collecting failed: a format error or an I/O error on a temporary file.
enum CollectError {
    Format(MultipartError),
    Io(io::Error),
}

impl From<MultipartError> for CollectError {
    fn from(e: MultipartError) -> Self {
        Self::Format(e)
    }
}

/// Parses `body` into parts, spilling big ones to temporary files.
pub fn collect(
    body: &[u8],
    boundary: &str,
    limits: &MultipartLimits,
) -> Result<Vec<Part>, Problem> {
    let mut parser =
        Parser::new(boundary, limits.parts_max, limits.part_bytes_max).map_err(to_problem)?;
    let mut parts: Vec<Part> = Vec::new();
    let mut sink = |event: Event<'_>| -> Result<(), CollectError> {
        match event {
            Event::Start(head) => parts.push(Part {
                head,
                data: PartData::Memory(Vec::new()),
            }),
            Event::Data(bytes) => {
                let part = parts.last_mut().expect("Data follows Start");
                append(part, bytes, limits).map_err(CollectError::Io)?;
            }
            Event::End | Event::Done => {}
        }
        Ok(())
    };
    // Fed in slices, as a socket would deliver it: the parser never holds the whole body.
    for chunk in body.chunks(64 * 1024) {
        parser.feed(chunk, &mut sink).map_err(|e| match e {
            CollectError::Format(e) => to_problem(e),
            CollectError::Io(e) => Problem::internal().with_detail(format!("storing upload: {e}")),
        })?;
    }
    parser.finish().map_err(to_problem)?;
    Ok(parts)
}

fn append(part: &mut Part, bytes: &[u8], limits: &MultipartLimits) -> io::Result<()> {
    if let PartData::Memory(buf) = &mut part.data {
        if buf.len() + bytes.len() <= limits.memory_part_bytes_max {
            buf.extend_from_slice(bytes);
            return Ok(());
        }
        let mut temp = TempFile::create(&limits.temp_dir)?;
        let file = temp.file.as_mut().expect("open while collecting");
        file.write_all(buf)?;
        temp.len = buf.len() as u64;
        part.data = PartData::File(temp);
    }
    let PartData::File(temp) = &mut part.data else {
        unreachable!("spilled above")
    };
    temp.file
        .as_mut()
        .expect("open while collecting")
        .write_all(bytes)?;
    temp.len += bytes.len() as u64;
    Ok(())
}

fn to_problem(e: MultipartError) -> Problem {
    match e {
        MultipartError::PartTooLarge(n) => Problem::payload_too_large(n),
        MultipartError::TooManyParts(_) => Problem::new(413).with_detail(e.to_string()),
        other => Problem::bad_request(other.to_string()),
    }
}

impl Request {
    /// The body as `multipart/form-data` parts: 415 for another content type, 400 for a
    /// malformed body, 413 beyond the limits.
    pub fn multipart(&self, limits: &MultipartLimits) -> Result<Vec<Part>, Problem> {
        if !content_type_is(self, "multipart/form-data") {
            return Err(Problem::new(415).with_detail("expected multipart/form-data"));
        }
        let content_type = self.header("content-type").unwrap_or("");
        let boundary = split_params(content_type)
            .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v)
            .ok_or_else(|| Problem::bad_request("multipart/form-data without a boundary"))?;
        collect(&self.body, &boundary, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"../../a \\\"b\\\".txt\"\r\nContent-Type: text/plain\r\n\r\n\
line1\r\n--XyNot-a-boundary\r\n--XyZ--\r\nepilogue";

    fn events(body: &[u8], split: usize) -> Result<Vec<String>, MultipartError> {
        let mut parser = Parser::new("XyZ", 10, 1000)?;
        let mut out: Vec<String> = Vec::new();
        let mut sink = |e: Event<'_>| -> Result<(), MultipartError> {
            match e {
                Event::Data(d) => match out.last_mut() {
                    Some(last) if last.starts_with("data:") => {
                        last.push_str(&String::from_utf8_lossy(d))
                    }
                    _ => out.push(format!("data:{}", String::from_utf8_lossy(d))),
                },
                other => out.push(format!("{other:?}")),
            }
            Ok(())
        };
        let (a, b) = body.split_at(split.min(body.len()));
        parser.feed(a, &mut sink)?;
        parser.feed(b, &mut sink)?;
        parser.finish()?;
        Ok(out)
    }

    #[test]
    fn same_events_at_every_split() {
        let whole = events(BODY, BODY.len()).expect("parse");
        assert_eq!(whole.len(), 7, "{whole:?}");
        assert!(whole[0].contains("name: \"title\""));
        assert_eq!(whole[1], "data:Hello");
        assert!(
            whole[3].contains("filename: Some(\"../../a \\\"b\\\".txt\")"),
            "{}",
            whole[3]
        );
        assert_eq!(whole[4], "data:line1\r\n--XyNot-a-boundary");
        assert_eq!(whole[6], "Done");
        for split in 0..BODY.len() {
            assert_eq!(
                events(BODY, split).expect("parse"),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn part_headers_with_obs_text_are_read_lossily() {
        let head =
            parse_head(b"Content-Disposition: form-data; name=\"f\"; filename=\"caf\xe9.txt\"\r\n")
                .expect("kept");
        assert_eq!(
            (head.name.as_str(), head.filename.as_deref()),
            ("f", Some("caf\u{fffd}.txt"))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            events(&BODY[..BODY.len() - 20], BODY.len()),
            Err(MultipartError::Truncated)
        );
        let no_disposition = b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--";
        assert!(matches!(
            events(no_disposition, 3),
            Err(MultipartError::Malformed(_))
        ));
        let mut parser = Parser::new("XyZ", 1, 1000).expect("parser");
        let two = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n--XyZ--";
        let r = parser.feed(two, &mut |_| Ok::<(), MultipartError>(()));
        assert_eq!(r, Err(MultipartError::TooManyParts(1)));
        let mut parser = Parser::new("XyZ", 5, 3).expect("parser");
        let big = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n12345\r\n--XyZ--";
        assert_eq!(
            parser.feed(big, &mut |_| Ok::<(), MultipartError>(())),
            Err(MultipartError::PartTooLarge(3))
        );
        let huge_head = [
            b"--XyZ\r\nX: ".to_vec(),
            vec![b'a'; PART_HEADER_BYTES_MAX + 10],
        ]
        .concat();
        let mut parser = Parser::new("XyZ", 5, 3).expect("parser");
        assert_eq!(
            parser.feed(&huge_head, &mut |_| Ok::<(), MultipartError>(())),
            Err(MultipartError::HeaderTooLarge)
        );
        assert!(Parser::new("", 1, 1).is_err());
        assert!(Parser::new(&"b".repeat(71), 1, 1).is_err());
    }

    #[test]
    fn large_parts_spill_to_temp_files() {
        let payload = vec![b'z'; 5000];
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"C:\\\\x\\\\.evil.bin\"\r\n\r\n".to_vec();
        body.extend_from_slice(&payload);
        body.extend_from_slice(
            b"\r\n--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nsmall\r\n--B--\r\n",
        );
        let limits = MultipartLimits {
            memory_part_bytes_max: 1000,
            ..MultipartLimits::default()
        };
        let parts = collect(&body, "B", &limits).expect("collect");
        assert_eq!(parts.len(), 2);
        let PartData::File(temp) = &parts[0].data else {
            panic!("expected a spilled part")
        };
        assert_eq!(temp.len(), 5000);
        assert_eq!(temp.read_all().expect("read"), payload);
        assert_eq!(parts[0].file_name_safe().as_deref(), Some("evil.bin"));
        assert_eq!(parts[1].text(), Some("small"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(temp.path())
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                TEMP_FILE_MODE,
                "{mode:o}: other users can read it"
            );
        }
        let path = temp.path().to_path_buf();
        drop(parts);
        assert!(!path.exists(), "temporary file removed on drop");
    }

    proptest::proptest! {
        #[test]
        fn prop_random_input_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut parser = Parser::new("ab", 4, 100).expect("parser");
            let _ = parser.feed(&data, &mut |_| Ok::<(), MultipartError>(()));
            let _ = parser.finish();
        }
    }
}
