//! The request side of the HTTP API contract: `Method`, `Version`, `Headers`, `Extensions` and
//! `Request` (see the shared http-contract).
//!
//! Owns: the in-memory shape of a parsed request and the header list shared with responses.
//! Must not: parse bytes from the network (that is `parse`) or perform I/O.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::RefCell;
use std::net::SocketAddr;

/// One stored header: name and value, each static or owned.
type Entry = (Cow<'static, str>, Cow<'static, str>);

/// Emptied header lists kept per thread for the next responses (see `Headers::recycled`).
const SPARE_LISTS_MAX: usize = 8;
/// A list with more slots than this is freed rather than kept (a rare, large response).
const SPARE_LIST_SLOTS_MAX: usize = 32;

thread_local! {
    /// Header lists of responses already written on this thread: a response built and written
    /// on the reactor thread takes its list from here instead of allocating one.
    static SPARE_LISTS: RefCell<Vec<Vec<Entry>>> = const { RefCell::new(Vec::new()) };
}

/// A request method. Unknown but well-formed methods are kept as `Other`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `CONNECT`
    Connect,
    /// Any other token, exactly as received (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// The method's token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other(token) => token,
        }
    }

    /// Maps a method token (already validated as a token) to a `Method`.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            other => Method::Other(other.to_string()),
        }
    }

    /// Safe methods (RFC 9110 §9.2.1) may be processed in parallel when pipelined.
    pub fn is_safe(&self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Options | Method::Trace
        )
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol version of a request. Only HTTP/1.0 and HTTP/1.1 are accepted (others get 505).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`: close after each response unless `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: persistent by default.
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Header list preserving order; names compared case-insensitively (ASCII).
///
/// Names and values are stored as `Cow<'static, str>` so that responses built from static
/// strings (the common case) cost no allocation per header.
///
/// INVARIANT: the list is `head`, then `entries`, then `tail`. `head` and `tail` are runs of
/// static pairs set by `Headers::static_head` (a response's `Content-Type`) and
/// `Headers::set_static_tail` (the default security headers): no allocation, one store instead
/// of one push per header, and the writer copies known runs pre-rendered. A change that could
/// reorder or touch a run first moves it into `entries` (appending after the head is in order).
#[derive(Clone, Debug, Default)]
pub struct Headers {
    head: &'static [(&'static str, &'static str)],
    entries: Vec<Entry>,
    tail: &'static [(&'static str, &'static str)],
}

impl PartialEq for Headers {
    /// The same headers in the same order, however they are stored.
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl Headers {
    /// An empty list; allocates nothing until the first header.
    pub fn new() -> Headers {
        Headers {
            head: &[],
            entries: Vec::new(),
            tail: &[],
        }
    }

    /// A list made of the static run `head` (no allocation; see the type's invariant).
    pub(crate) fn static_head(head: &'static [(&'static str, &'static str)]) -> Headers {
        Headers {
            head,
            entries: Vec::new(),
            tail: &[],
        }
    }

    /// The static run before `entries` (see [`Headers::static_head`]).
    pub(crate) fn head_run(&self) -> &'static [(&'static str, &'static str)] {
        self.head
    }

    /// Moves the head run into `entries`, before a change that would touch it.
    #[cold]
    fn materialize_head(&mut self) {
        let head = std::mem::take(&mut self.head);
        let moved = head
            .iter()
            .map(|&(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value)));
        self.entries.splice(0..0, moved);
    }

    /// An empty list with room for `capacity` headers.
    pub fn with_capacity(capacity: usize) -> Headers {
        Headers {
            head: &[],
            entries: Vec::with_capacity(capacity),
            tail: &[],
        }
    }

    /// Appends `run` (static pairs, in order) without copying it into the list; the writer
    /// recognises a run it knows and copies its pre-rendered lines.
    pub(crate) fn set_static_tail(&mut self, run: &'static [(&'static str, &'static str)]) {
        self.materialize_tail();
        self.tail = run;
    }

    /// The static run after `entries` (see [`Headers::set_static_tail`]).
    pub(crate) fn static_tail(&self) -> &'static [(&'static str, &'static str)] {
        self.tail
    }

    /// Makes `entries` ready to take a header at the end: the tail moved in first (it must
    /// stay last), and a spare list taken if there is no allocation yet (a response made of
    /// static runs that a middleware then adds to).
    #[inline]
    fn before_push(&mut self) {
        if self.entries.capacity() == 0 {
            self.take_spare_list();
        }
        self.materialize_tail();
    }

    #[cold]
    fn take_spare_list(&mut self) {
        let spare = SPARE_LISTS
            .try_with(|lists| lists.borrow_mut().pop())
            .ok()
            .flatten();
        if let Some(list) = spare {
            assert!(list.is_empty(), "a spare header list holds headers");
            self.entries = list;
        }
    }

    /// Moves the static tail into `entries`, before a change that must see one plain list.
    #[inline]
    fn materialize_tail(&mut self) {
        if !self.tail.is_empty() {
            self.move_tail();
        }
    }

    /// `materialize_tail` for a list that has a tail (rare: a header set after the security
    /// headers).
    #[cold]
    fn move_tail(&mut self) {
        let tail = std::mem::take(&mut self.tail);
        self.entries.reserve(tail.len());
        for &(name, value) in tail {
            self.entries
                .push((Cow::Borrowed(name), Cow::Borrowed(value)));
        }
    }

    /// An empty list with room for at least `capacity` headers, reusing a list that an
    /// earlier response on this thread gave back with [`Headers::recycle`] when there is one.
    #[inline(always)]
    pub(crate) fn recycled(capacity: usize) -> Headers {
        let spare = SPARE_LISTS
            .try_with(|lists| lists.borrow_mut().pop())
            .ok()
            .flatten();
        let mut entries = spare.unwrap_or_default();
        assert!(entries.is_empty(), "a spare header list holds headers");
        entries.reserve(capacity);
        Headers {
            head: &[],
            entries,
            tail: &[],
        }
    }

    /// Empties the list and keeps its allocation for [`Headers::recycled`] on this thread
    /// (within limits); called once a response's head is written.
    #[inline(always)]
    pub(crate) fn recycle(self) {
        let mut entries = self.entries;
        if entries.capacity() == 0 || entries.capacity() > SPARE_LIST_SLOTS_MAX {
            return;
        }
        entries.clear();
        // During thread teardown the spare lists may be gone: the list is simply freed.
        let _ = SPARE_LISTS.try_with(|lists| {
            let mut lists = lists.borrow_mut();
            if lists.len() < SPARE_LISTS_MAX {
                lists.push(entries);
            }
        });
    }

    /// The value of the first header named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        let in_run = |run: &'static [(&'static str, &'static str)]| {
            run.iter()
                .find(|(n, _)| same_name(n, name))
                .map(|&(_, v)| v)
        };
        if let Some(value) = in_run(self.head) {
            return Some(value);
        }
        let stored = self.entries.iter().find(|(n, _)| same_name(n, name));
        match stored {
            Some((_, value)) => Some(value),
            None => in_run(self.tail),
        }
    }

    /// Every value of the headers named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v)
    }

    /// True when at least one header is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces every header named `name` with one header `name: value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.before_push();
        self.entries
            .push((Cow::Owned(name), Cow::Owned(value.into())));
    }

    /// Appends `name: value`, keeping existing headers of that name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.before_push();
        self.entries
            .push((Cow::Owned(name.into()), Cow::Owned(value.into())));
    }

    /// Like `insert` for static strings: no allocation.
    pub fn insert_static(&mut self, name: &'static str, value: &'static str) {
        self.remove(name);
        self.before_push();
        self.entries
            .push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }

    /// Like `append` for static strings: no allocation.
    pub fn append_static(&mut self, name: &'static str, value: &'static str) {
        self.before_push();
        self.entries
            .push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }

    /// Appends a header from parts that may already be static (no allocation for those).
    pub fn append_cow(&mut self, name: Cow<'static, str>, value: Cow<'static, str>) {
        self.before_push();
        self.entries.push((name, value));
    }

    /// Removes every header named `name`.
    pub fn remove(&mut self, name: &str) {
        if self.head.iter().any(|(n, _)| same_name(n, name)) {
            self.materialize_head();
        }
        if self.tail.iter().any(|(n, _)| same_name(n, name)) {
            self.materialize_tail();
        }
        self.entries.retain(|(n, _)| !same_name(n, name));
    }

    /// The headers between the static runs, in order, as stored: the writer trusts
    /// `Cow::Borrowed` parts (see `http::writer`). The runs are [`Headers::head_run`] and
    /// [`Headers::static_tail`].
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Every header in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let head = self.head.iter().map(|&(n, v)| (n, v));
        let tail = self.tail.iter().map(|&(n, v)| (n, v));
        let stored = self.entries.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        head.chain(stored).chain(tail)
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.head.len() + self.entries.len() + self.tail.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.entries.is_empty() && self.tail.is_empty()
    }

    /// Removes every header, keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.head = &[];
        self.entries.clear();
        self.tail = &[];
    }

    /// Removes every header, keeping the owned strings in `spare` (at most `spare_max`) so
    /// that the next request's headers reuse them instead of allocating.
    #[inline]
    pub(crate) fn clear_into(&mut self, spare: &mut Vec<String>, spare_max: usize) {
        self.head = &[];
        self.tail = &[];
        // Popped rather than drained: the order of the spare strings does not matter, and
        // this runs on every request.
        while let Some((name, value)) = self.entries.pop() {
            if let (Cow::Owned(text), true) = (name, spare.len() < spare_max) {
                spare.push(text);
            }
            if let (Cow::Owned(text), true) = (value, spare.len() < spare_max) {
                spare.push(text);
            }
        }
    }

    /// True when any comma-separated element of any `name` header equals `token`
    /// (ASCII case-insensitive), e.g. `has_token("connection", "close")`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Header names compare ASCII case-insensitively; the length test, inlined, settles most
/// comparisons without a call.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

/// A typed map for data attached to a request by middleware (request id, user, ...).
/// One value per type.
#[derive(Default)]
pub struct Extensions {
    entries: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// An empty map; allocates nothing.
    pub fn new() -> Extensions {
        Extensions {
            entries: Vec::new(),
        }
    }

    /// Stores `value`, returning the previous value of that type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        let previous = self.remove::<T>();
        self.entries.push((TypeId::of::<T>(), Box::new(value)));
        previous
    }

    /// The value of type `T`, if present.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.entries
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }

    /// The value of type `T`, mutably, if present.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_mut::<T>())
    }

    /// Removes and returns the value of type `T`, if present.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let index = self
            .entries
            .iter()
            .position(|(id, _)| *id == TypeId::of::<T>())?;
        let (_, boxed) = self.entries.swap_remove(index);
        boxed.downcast::<T>().ok().map(|b| *b)
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} values)", self.entries.len())
    }
}

/// Trailer fields of a chunked request body, stored in `Request::extensions` when present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailers(pub Headers);

/// The header values of a request that were not UTF-8, with the bytes received: RFC 9110
/// §5.5 has a recipient treat such obs-text (bytes 0x80-0xFF) as opaque data, while a
/// request's [`Headers`] hold text, each invalid sequence replaced by U+FFFD. Kept in
/// `Request::extensions` only when there is one (a rare request: a Latin-1 cookie), so the
/// usual request pays nothing; read it through [`Request::header_bytes`] and
/// [`Request::headers_raw`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawHeaderValues {
    /// In header order: the field name, its value as stored in `headers`, the bytes received.
    values: Vec<(String, String, Vec<u8>)>,
}

impl RawHeaderValues {
    /// Records that the field `name`, stored as `text`, arrived as `bytes`.
    pub fn push(&mut self, name: &str, text: &str, bytes: &[u8]) {
        self.values
            .push((name.to_string(), text.to_string(), bytes.to_vec()));
    }

    /// The bytes of the first value recorded after `from` for field `name` stored as `text`,
    /// and where it was recorded.
    fn find(&self, name: &str, text: &str, from: usize) -> Option<(usize, &[u8])> {
        let later = self.values.iter().enumerate().skip(from);
        later
            .filter(|(_, (n, t, _))| n.eq_ignore_ascii_case(name) && t == text)
            .map(|(at, (_, _, bytes))| (at, bytes.as_slice()))
            .next()
    }
}

/// A complete request: head plus whole (de-chunked) body.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The raw request-target as received.
    pub target: String,
    /// The raw (still percent-encoded) path; absolute-form is reduced to its path.
    pub path: String,
    /// The raw query without `?`, `""` if none.
    pub query: String,
    /// The protocol version.
    pub version: Version,
    /// The header fields, in order.
    pub headers: Headers,
    /// The whole body, de-chunked.
    pub body: Vec<u8>,
    /// The peer's address, when known.
    pub remote_addr: Option<SocketAddr>,
    /// Path parameters, filled by the router (percent-decoded).
    pub params: Vec<(String, String)>,
    /// Typed data attached by middleware.
    pub extensions: Extensions,
    /// What was decided from the head; not part of the API.
    pub(crate) planned: Planned,
}

/// What the server and the router learned from a request's head (see `Handler::plan`), kept
/// with the request so that no later stage routes or asks twice, plus strings of earlier
/// requests kept for reuse (the reactor reuses one request for every head it parses).
#[derive(Debug)]
pub(crate) struct Planned {
    /// `Handler::plan` ran for this request and `inline` holds its answer.
    pub(crate) done: bool,
    /// See `HeadPlan::inline`.
    pub(crate) inline: bool,
    /// Address of the routing table whose route is remembered; 0 for none.
    pub(crate) table: usize,
    /// Index of the remembered route's handler in that table.
    pub(crate) route: usize,
    /// The method the route was matched for (a middleware may rewrite it before routing).
    pub(crate) method: Method,
    /// The path the route was matched for.
    pub(crate) path: String,
    /// Parameter pairs of earlier requests, reused to fill `params`.
    pub(crate) spare_params: Vec<(String, String)>,
    /// Header strings of earlier requests, reused to fill `headers`.
    pub(crate) spare_strings: Vec<String>,
    /// What the body holds of the server's body budget, given back with the request.
    pub(crate) body_charge: super::body_budget::BodyCharge,
}

impl Planned {
    fn new() -> Planned {
        Planned {
            done: false,
            inline: false,
            table: 0,
            route: 0,
            method: Method::Get,
            path: String::new(),
            spare_params: Vec::new(),
            spare_strings: Vec::new(),
            body_charge: super::body_budget::BodyCharge::default(),
        }
    }
}

/// Most parameter pairs kept for reuse between requests.
const SPARE_PARAMS_MAX: usize = 16;

impl Request {
    /// Forgets the plan and route of the previous request; keeps its parameter strings for
    /// reuse by `take_param_strings`.
    pub(crate) fn reset_plan(&mut self) {
        self.planned.done = false;
        self.planned.table = 0;
        self.recycle_params();
    }

    /// Empties `params`, keeping its strings for reuse by `take_param_strings`.
    pub(crate) fn recycle_params(&mut self) {
        if self.params.is_empty() {
            return;
        }
        let room = SPARE_PARAMS_MAX.saturating_sub(self.planned.spare_params.len());
        let params = self.params.drain(..).take(room);
        self.planned.spare_params.extend(params);
    }

    /// An empty (name, value) pair for `params`, reusing earlier strings when possible.
    pub(crate) fn take_param_strings(&mut self) -> (String, String) {
        let mut pair = self.planned.spare_params.pop().unwrap_or_default();
        pair.0.clear();
        pair.1.clear();
        pair
    }
}

impl Request {
    /// An empty `GET /` HTTP/1.1 request; mostly for tests and for building requests by hand.
    pub fn new(method: Method, target: &str) -> Request {
        let mut request = Request {
            method,
            target: String::new(),
            path: String::new(),
            query: String::new(),
            version: Version::Http11,
            headers: Headers::new(),
            body: Vec::new(),
            remote_addr: None,
            params: Vec::new(),
            extensions: Extensions::new(),
            planned: Planned::new(),
        };
        request.set_target(target);
        request
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The first header named `name` as the bytes received: the same as [`Request::header`]
    /// unless the value was not UTF-8 (see [`RawHeaderValues`]), in which case these are
    /// its original bytes rather than its text with U+FFFD in place of each invalid sequence.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let text = self.headers.get(name)?;
        let raw = self.extensions.get::<RawHeaderValues>();
        let received = raw.and_then(|raw| raw.find(name, text, 0));
        Some(received.map_or(text.as_bytes(), |(_, bytes)| bytes))
    }

    /// Every header in order, its value as the bytes received (see [`Request::header_bytes`]):
    /// what a proxy forwards, so a value that was not UTF-8 passes through unchanged.
    pub fn headers_raw(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let raw = self.extensions.get::<RawHeaderValues>();
        // Where the next search of the recorded values starts: values are recorded in header
        // order, so two equal stored values of one name take their records in turn.
        let mut next = 0;
        self.headers.iter().map(move |(name, text)| {
            let received = raw.and_then(|raw| raw.find(name, text, next));
            match received {
                Some((at, bytes)) => {
                    next = at + 1;
                    (name, bytes)
                }
                None => (name, text.as_bytes()),
            }
        })
    }

    /// Sets `target`, `path` and `query` from a raw request-target (origin-form, absolute-form,
    /// authority-form or `*`), reusing the strings' allocations.
    #[inline]
    pub fn set_target(&mut self, target: &str) {
        self.target.clear();
        self.target.push_str(target);
        let (path, query) = split_target(target);
        self.path.clear();
        self.path.push_str(path);
        self.query.clear();
        self.query.push_str(query);
    }
}

/// The index of the first `?` or `#` in `bytes`, eight bytes per step: this runs on every
/// request's target.
#[inline]
fn query_or_fragment(bytes: &[u8]) -> Option<usize> {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    // Exact zero-byte test: true when some byte of `word` is 0.
    let has_zero = |word: u64| word.wrapping_sub(LOW_BITS) & !word & HIGH_BITS != 0;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let word = u64::from_le_bytes(eight);
        if has_zero(word ^ (LOW_BITS * u64::from(b'?')))
            || has_zero(word ^ (LOW_BITS * u64::from(b'#')))
        {
            break;
        }
        at += 8;
    }
    let found = bytes[at..].iter().position(|&b| b == b'?' || b == b'#');
    found.map(|n| at + n)
}

/// Splits a request-target into (path, query). Absolute-form `http://host/p?q` gives `/p`, `q`;
/// an absolute-form without a path gives `/`. Pure.
#[inline]
pub fn split_target(target: &str) -> (&str, &str) {
    // Fast path for origin-form, by far the most common (no substring search).
    if target.starts_with('/') {
        // One scan for the first `?` or `#`; the usual target has neither.
        let bytes = target.as_bytes();
        let Some(at) = query_or_fragment(bytes) else {
            return (target, "");
        };
        if bytes[at] == b'#' {
            return (&target[..at], "");
        }
        let after = &target[at + 1..];
        let end = after.bytes().position(|b| b == b'#').unwrap_or(after.len());
        return (&target[..at], &after[..end]);
    }
    let without_fragment = target.split('#').next().unwrap_or(target);
    let origin = match without_fragment.find("://") {
        Some(scheme_end) if !without_fragment.starts_with('/') => {
            let after_scheme = &without_fragment[scheme_end + 3..];
            match after_scheme.find(['/', '?']) {
                Some(i) => &after_scheme[i..],
                None => "",
            }
        }
        _ => without_fragment,
    };
    let (path, query) = match origin.find('?') {
        Some(i) => (&origin[..i], &origin[i + 1..]),
        None => (origin, ""),
    };
    if path.is_empty() && without_fragment.contains("://") {
        ("/", query)
    } else {
        (path, query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("Set-Cookie", "a=1");
        h.append_static("set-cookie", "b=2");
        h.append("Host", "x");
        assert_eq!(h.get("SET-COOKIE"), Some("a=1"));
        assert_eq!(h.get_all("set-cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
        h.insert("SET-cookie", "c=3");
        assert_eq!(h.get_all("set-cookie").collect::<Vec<_>>(), ["c=3"]);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("Host", "x"), ("SET-cookie", "c=3")]
        );
        h.remove("host");
        assert_eq!(h.len(), 1);
        assert!(h.has_token("set-cookie", "C=3"));
    }

    #[test]
    fn a_static_tail_reads_and_changes_like_appended_headers() {
        static RUN: [(&str, &str); 2] = [("X-A", "1"), ("X-B", "2")];
        let with_tail = || {
            let mut h = Headers::new();
            h.append("Content-Type", "text/plain");
            h.set_static_tail(&RUN);
            h
        };
        let mut plain = Headers::new();
        plain.append("Content-Type", "text/plain");
        plain.append_static("X-A", "1");
        plain.append_static("X-B", "2");
        let h = with_tail();
        assert_eq!(h, plain);
        assert_eq!(
            (h.len(), h.get("x-b"), h.contains("X-A")),
            (3, Some("2"), true)
        );
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), ["1"]);
        assert_eq!((h.entries().len(), h.static_tail().len()), (1, 2));
        // Every change keeps the order of a plain list.
        let edits: [fn(&mut Headers); 5] = [
            |h| h.append("X-C", "3"),
            |h| h.append_static("X-A", "9"),
            |h| h.insert("x-a", "0"),
            |h| h.insert_static("Content-Type", "x"),
            |h| h.remove("X-B"),
        ];
        for edit in edits {
            let (mut a, mut b) = (with_tail(), plain.clone());
            edit(&mut a);
            edit(&mut b);
            assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        }
        // The same with a static head run before the stored headers.
        static HEAD: [(&str, &str); 1] = [("Content-Type", "text/plain")];
        let with_both = || {
            let mut h = Headers::static_head(&HEAD);
            h.set_static_tail(&RUN);
            h
        };
        assert_eq!(with_both(), plain);
        assert_eq!(with_both().get("content-type"), Some("text/plain"));
        for edit in edits {
            let (mut a, mut b) = (with_both(), plain.clone());
            edit(&mut a);
            edit(&mut b);
            assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        }
        let mut h = with_both();
        h.clear();
        assert!(h.is_empty() && h.head_run().is_empty());
        let mut twice = with_tail();
        twice.set_static_tail(&RUN);
        assert_eq!(twice.len(), 5);
        assert_eq!(twice.iter().nth(3), Some(("X-A", "1")));
        let mut h = with_tail();
        h.clear();
        assert!(h.is_empty() && h.static_tail().is_empty());
        let mut h = with_tail();
        h.clear_into(&mut Vec::new(), 4);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn cleared_headers_and_params_leave_reusable_strings() {
        let mut h = Headers::new();
        h.append("X-A", "1");
        h.append_static("Host", "h");
        let mut spare = Vec::new();
        h.clear_into(&mut spare, 2);
        assert!(h.is_empty());
        // Only owned strings are kept, and no more than asked.
        assert_eq!(spare, ["X-A", "1"]);
        h.append("X-B", "2");
        h.clear_into(&mut spare, 2);
        assert_eq!(spare.len(), 2);
        let mut r = Request::new(Method::Get, "/");
        r.params.push(("id".into(), "7".into()));
        r.reset_plan();
        assert!(r.params.is_empty());
        let (name, value) = r.take_param_strings();
        assert!(name.is_empty() && value.is_empty() && name.capacity() >= 2);
    }

    #[test]
    fn extensions_hold_one_value_per_type() {
        let mut e = Extensions::new();
        assert_eq!(e.insert(5u32), None);
        assert_eq!(e.insert(7u32), Some(5));
        e.insert(String::from("id"));
        assert_eq!(e.get::<u32>(), Some(&7));
        *e.get_mut::<String>().expect("present") += "-1";
        assert_eq!(e.remove::<String>().as_deref(), Some("id-1"));
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn query_or_fragment_finds_the_first_of_either_at_any_offset() {
        for len in 0..20 {
            for at in 0..len {
                for mark in [b'?', b'#'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = mark;
                    if at + 1 < len {
                        bytes[len - 1] = b'?';
                    }
                    assert_eq!(query_or_fragment(&bytes), Some(at), "{bytes:?}");
                }
            }
            let plain: Vec<u8> = (0..len)
                .map(|i| b'!' + (i as u8 % 90))
                .filter(|b| *b != b'?' && *b != b'#')
                .collect();
            assert_eq!(query_or_fragment(&plain), None);
        }
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let cases = [
            ("/", "/", ""),
            ("/a/b?x=1&y", "/a/b", "x=1&y"),
            ("/a?", "/a", ""),
            ("http://example.com/p/q?z=2", "/p/q", "z=2"),
            ("http://example.com", "/", ""),
            ("http://example.com?k", "/", "k"),
            ("*", "*", ""),
            ("/x#frag", "/x", ""),
            ("/x?q=1#f?g", "/x", "q=1"),
            ("/x?a?b", "/x", "a?b"),
            ("/x#f?g", "/x", ""),
        ];
        for (target, path, query) in cases {
            assert_eq!(split_target(target), (path, query), "{target}");
        }
        let r = Request::new(Method::Get, "http://h/p?q=1");
        assert_eq!(
            (r.target.as_str(), r.path.as_str()),
            ("http://h/p?q=1", "/p")
        );
        assert_eq!(r.query, "q=1");
    }
}
