//! The router: a trie over path segments with static segments, `{param}` and `{*rest}`,
//! method routing (405 with `Allow`), groups with a shared prefix and middleware, and global
//! middleware. A `Router` is a [`Handler`].
//!
//! ```
//! use lithair::http::{Request, Response, router::Router, problem::HttpResult};
//! fn show(req: &mut Request) -> HttpResult {
//!     let id: u64 = req.param("id")?;
//!     Ok(Response::text(200, format!("item {id}")))
//! }
//! let app = Router::new()
//!     .get("/items/{id}", show)
//!     .group("/api", |g| g.get("/ping", |_: &mut Request| Response::text(200, "pong")));
//! ```
//!
//! Owns: matching a raw path to a route, percent-decoding path segments (after splitting on
//! `/`, so `%2F` never separates segments), filling `Request::params`.
//! Must not: read bodies or know about specific middleware beyond the default security headers.
//!
//! Matching prefers, at each segment, a static child, then a parameter, then a catch-all, and
//! backtracks, so `/items/new` beats `/items/{id}` and either may fall through to `{*rest}`.
//! Registration mistakes (a duplicate route, two parameter names at one position) panic at
//! start-up with the pattern, like any other configuration error found before serving.

use crate::http::handler::{Handler, HeadPlan, Inline};
use crate::http::middleware::{wrap, Layered, Middleware, SecurityHeaders, Timeout};
use crate::http::percent;
use crate::http::problem::Problem;
use crate::http::request::{Method, Request};
use crate::http::respond::IntoResponse;
use crate::http::response::Response;
use crate::http::route_stats::{self, RouteCounters, RouteLabel, RouteStats};
use crate::http::static_files::StaticDir;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Most path segments matched; deeper paths are 404 without walking the trie.
pub const PATH_SEGMENTS_MAX: usize = 64;

/// The decoded segments matched by a `{*rest}` catch-all, stored in `Request::extensions`.
/// Consumers that touch the file system use these rather than re-splitting the joined string,
/// because a decoded segment may itself contain `/` (from `%2F`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestSegments(pub Vec<String>);

/// Asks the router for the pattern it matches: a layer that wants it (the access log) puts
/// this in `Request::extensions` before calling inward, and finds [`MatchedRoute`] there
/// afterwards. Asked for, so a request nobody asks about copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantMatchedRoute;

/// The pattern of the route that answered (`/items/{id}`, group prefix included), put in
/// `Request::extensions` by the router when [`WantMatchedRoute`] asked for it. Absent when no
/// route answered (404, 405, an automatic OPTIONS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute(pub String);

/// Something the router can register as a route handler: closures returning anything
/// [`IntoResponse`], plus handler types ([`Layered`], [`StaticDir`], [`Router`], `Inline`,
/// `Arc<dyn Handler>`). The marker parameter only keeps the implementations apart.
pub trait IntoHandler<Marker> {
    /// The shared handler.
    fn into_handler(self) -> Arc<dyn Handler>;
}

/// Adapts `Fn(&mut Request) -> R` to [`Handler`].
struct FnHandler<F, R>(F, PhantomData<fn() -> R>);

impl<F, R> Handler for FnHandler<F, R>
where
    F: Fn(&mut Request) -> R + Send + Sync + 'static,
    R: IntoResponse + 'static,
{
    fn call(&self, req: &mut Request) -> Response {
        (self.0)(req).into_response()
    }
}

/// Marker for closures.
pub struct FnMarker<R>(PhantomData<R>);
/// Marker for handler types.
pub struct HandlerMarker;

impl<F, R> IntoHandler<FnMarker<R>> for F
where
    F: Fn(&mut Request) -> R + Send + Sync + 'static,
    R: IntoResponse + 'static,
{
    fn into_handler(self) -> Arc<dyn Handler> {
        Arc::new(FnHandler(self, PhantomData))
    }
}

macro_rules! handler_types {
    ($($t:ty),*) => {$(
        impl IntoHandler<HandlerMarker> for $t {
            fn into_handler(self) -> Arc<dyn Handler> {
                Arc::new(self)
            }
        }
    )*};
}
handler_types!(Layered, StaticDir, Router, Timeout);

impl IntoHandler<HandlerMarker> for Arc<dyn Handler> {
    fn into_handler(self) -> Arc<dyn Handler> {
        self
    }
}

impl<H: Handler> IntoHandler<HandlerMarker> for Inline<H> {
    fn into_handler(self) -> Arc<dyn Handler> {
        Arc::new(self)
    }
}

/// Adds per-route middleware to a handler: `router.post("/upload", upload.with(BodyLimit::bytes(1024)))`.
pub trait WithMiddleware<Marker>: IntoHandler<Marker> + Sized {
    /// Wraps this handler in `middleware` (applied inside any group and global layers).
    fn with(self, middleware: impl Middleware) -> Layered {
        Layered::new(Arc::new(middleware), self.into_handler())
    }
}

impl<Marker, T: IntoHandler<Marker>> WithMiddleware<Marker> for T {}

/// A route's handlers per method, as indexes into `Table::handlers`.
#[derive(Clone, Default)]
struct Endpoint {
    methods: Vec<(Method, usize)>,
    /// Per method whose handler has middleware of its own (`handler.with(cors)`): that
    /// middleware around the automatic OPTIONS answer, which answers a preflight asking for
    /// the method (see [`Endpoint::find_for`]).
    preflights: Vec<(Method, usize)>,
    /// The automatic answer inside a group's layers (see [`Group::layer`]): OPTIONS when no
    /// OPTIONS handler is routed here, and the 405 of any other method not routed here.
    implicit_options: Option<usize>,
}

impl Endpoint {
    fn find(&self, method: &Method) -> Option<usize> {
        if let Some(&(_, handler)) = self.methods.iter().find(|(m, _)| m == method) {
            return Some(handler);
        }
        match method {
            // HEAD is answered by GET's handler when not routed (the server drops the body).
            Method::Head => {
                let get = self.methods.iter().find(|(m, _)| matches!(m, Method::Get));
                get.map(|&(_, handler)| handler)
            }
            Method::Options => self.implicit_options,
            _ => None,
        }
    }

    /// The handler for `method`, where a CORS preflight (`OPTIONS` asking for `preflight`,
    /// its `Access-Control-Request-Method`) that no OPTIONS route answers goes through the
    /// layers of the route it asks about: a CORS layer given to one route answers it.
    fn find_for(&self, method: &Method, preflight: Option<&Method>) -> Option<usize> {
        if let (Method::Options, Some(asked)) = (method, preflight) {
            let routed = self.methods.iter().any(|(m, _)| *m == Method::Options);
            let layers = |m: &Method| {
                self.preflights
                    .iter()
                    .find(|(p, _)| p == m)
                    .map(|&(_, index)| index)
            };
            // HEAD is answered by GET's route when not routed itself (see `find`).
            let asked_head_as_get =
                *asked == Method::Head && !self.methods.iter().any(|(m, _)| *m == Method::Head);
            let found = if asked_head_as_get {
                layers(&Method::Get)
            } else {
                layers(asked)
            };
            if let (false, Some(index)) = (routed, found) {
                return Some(index);
            }
        }
        self.find(method)
    }

    /// Whether `index` is this endpoint's automatic OPTIONS answer, in a group's layers or a
    /// route's (it needs `Allow`).
    fn is_implicit_options(&self, index: usize) -> bool {
        self.implicit_options == Some(index) || self.preflights.iter().any(|&(_, i)| i == index)
    }

    /// The `Allow` header value: routed methods, plus HEAD with GET, plus OPTIONS.
    fn allow(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        if names.contains(&"GET") && !names.contains(&"HEAD") {
            names.push("HEAD");
        }
        if !names.contains(&"OPTIONS") {
            names.push("OPTIONS");
        }
        names.join(", ")
    }
}

#[derive(Default)]
struct Node {
    statics: Vec<(String, Node)>,
    param: Option<(String, Box<Node>)>,
    catch_all: Option<(String, Endpoint)>,
    endpoint: Option<Endpoint>,
}

enum Segment<'a> {
    Static(&'a str),
    Param(&'a str),
    CatchAll(&'a str),
}

fn parse_pattern(pattern: &str) -> Vec<Segment<'_>> {
    assert!(
        pattern.starts_with('/'),
        "route {pattern:?} must start with '/'"
    );
    let body = &pattern[1..];
    if body.is_empty() {
        return Vec::new();
    }
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(
            |(i, part)| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.starts_with('*') => {
                    assert!(
                        i == last,
                        "route {pattern:?}: {{*{name}}} must be the last segment"
                    );
                    Segment::CatchAll(&name[1..])
                }
                Some(name) => {
                    assert!(!name.is_empty(), "route {pattern:?}: empty parameter name");
                    Segment::Param(name)
                }
                None => {
                    assert!(
                        !part.contains(['{', '}']),
                        "route {pattern:?}: braces inside a segment"
                    );
                    Segment::Static(part)
                }
            },
        )
        .collect()
}

impl Node {
    fn insert(&mut self, pattern: &str, method: Method, handler: usize) {
        let endpoint = self.endpoint_mut(pattern);
        assert!(
            endpoint.methods.iter().all(|(m, _)| *m != method),
            "route {method} {pattern:?} registered twice"
        );
        endpoint.methods.push((method, handler));
    }

    /// The endpoint of `pattern`, created (with the nodes leading to it) if new.
    fn endpoint_mut(&mut self, pattern: &str) -> &mut Endpoint {
        let mut node = self;
        let new_endpoint = Endpoint::default;
        let mut endpoint_slot = None;
        for segment in parse_pattern(pattern) {
            match segment {
                Segment::Static(s) => {
                    let index = match node.statics.iter().position(|(k, _)| k == s) {
                        Some(i) => i,
                        None => {
                            node.statics.push((s.to_string(), Node::default()));
                            node.statics.len() - 1
                        }
                    };
                    node = &mut node.statics[index].1;
                }
                Segment::Param(name) => {
                    let (existing, child) = node
                        .param
                        .get_or_insert_with(|| (name.to_string(), Box::default()));
                    assert!(
                        existing == name,
                        "route {pattern:?}: {{{name}}} conflicts with {{{existing}}}"
                    );
                    node = child;
                }
                Segment::CatchAll(name) => {
                    let (existing, endpoint) = node
                        .catch_all
                        .get_or_insert_with(|| (name.to_string(), new_endpoint()));
                    assert!(
                        existing == name,
                        "route {pattern:?}: {{*{name}}} conflicts with {{*{existing}}}"
                    );
                    endpoint_slot = Some(endpoint);
                    break;
                }
            }
        }
        match endpoint_slot {
            Some(e) => e,
            None => node.endpoint.get_or_insert_with(new_endpoint),
        }
    }

    /// Finds the endpoint for `segments[at..]`, pushing what parameters capture onto
    /// `captures` (positions only: nothing is copied until a route is chosen).
    fn lookup<'n>(
        &'n self,
        segments: &[&str],
        at: usize,
        captures: &mut Captures<'n>,
    ) -> Option<&'n Endpoint> {
        let Some(first) = segments.get(at) else {
            if let Some(endpoint) = &self.endpoint {
                return Some(endpoint);
            }
            let (name, endpoint) = self.catch_all.as_ref()?;
            captures.push(Capture::Rest(name, at));
            return Some(endpoint);
        };
        if let Some((_, child)) = self.statics.iter().find(|(k, _)| k == first) {
            if let Some(found) = child.lookup(segments, at + 1, captures) {
                return Some(found);
            }
        }
        // A parameter never captures an empty segment: `/items/` is not `/items/{id}`.
        if let (Some((name, child)), false) = (&self.param, first.is_empty()) {
            let mark = captures.len();
            captures.push(Capture::Param(name, at));
            if let Some(found) = child.lookup(segments, at + 1, captures) {
                return Some(found);
            }
            captures.truncate(mark);
        }
        let (name, endpoint) = self.catch_all.as_ref()?;
        captures.push(Capture::Rest(name, at));
        Some(endpoint)
    }
}

/// Routes capture few parameters: this many live on the stack, more spill to the heap.
const CAPTURES_INLINE: usize = 4;

/// The captures of one lookup, in order, without a heap allocation in the usual case.
struct Captures<'n> {
    inline: [Capture<'n>; CAPTURES_INLINE],
    spill: Vec<Capture<'n>>,
    len: usize,
}

impl<'n> Captures<'n> {
    fn new() -> Self {
        Captures {
            inline: [Capture::Param("", 0); CAPTURES_INLINE],
            spill: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, capture: Capture<'n>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = capture,
            None => self.spill.push(capture),
        }
        self.len += 1;
        assert_eq!(
            self.len,
            self.len.min(CAPTURES_INLINE) + self.spill.len(),
            "captures out of step"
        );
    }

    fn truncate(&mut self, len: usize) {
        self.spill.truncate(len.saturating_sub(CAPTURES_INLINE));
        self.len = self.len.min(len);
    }

    fn iter(&self) -> impl Iterator<Item = Capture<'n>> + '_ {
        let inline = &self.inline[..self.len.min(CAPTURES_INLINE)];
        inline.iter().chain(self.spill.iter()).copied()
    }
}

/// What a parameter matched: `{name}` at one segment, or `{*name}` from a segment to the end.
#[derive(Clone, Copy)]
enum Capture<'n> {
    Param(&'n str, usize),
    Rest(&'n str, usize),
}

/// Segments of a path without escapes that fit on the stack (longer paths use the heap).
const SEGMENTS_INLINE: usize = 16;

/// The `/`-separated parts of `body`, in one pass over its bytes (`/` is ASCII, so every cut
/// is a char boundary).
fn raw_segments(body: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    body.bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'/').then_some(i))
        .chain([body.len()])
        .map(move |end| {
            let segment = body.get(start..end).unwrap_or("");
            start = end + 1;
            segment
        })
}

/// Runs `f` over the decoded segments of a raw path (`/` is `[]`, `/a/` is `["a", ""]`).
/// Paths without escapes (the usual case) are split into a stack buffer without allocating.
/// `Ok(None)` when the path has more than [`PATH_SEGMENTS_MAX`] segments.
fn with_segments<R>(path: &str, f: impl FnOnce(&[&str]) -> R) -> Result<Option<R>, Problem> {
    let Some(body) = path.strip_prefix('/') else {
        return Err(Problem::bad_request("request path must start with '/'"));
    };
    if body.is_empty() {
        return Ok(Some(f(&[])));
    }
    if !body.contains('%') {
        let mut buffer = [""; SEGMENTS_INLINE];
        let mut count = 0;
        for segment in raw_segments(body) {
            let Some(slot) = buffer.get_mut(count) else {
                // A long path: rare enough for a heap list.
                let segments: Vec<&str> = raw_segments(body).take(PATH_SEGMENTS_MAX + 1).collect();
                return Ok((segments.len() <= PATH_SEGMENTS_MAX).then(|| f(&segments)));
            };
            *slot = segment;
            count += 1;
        }
        return Ok(Some(f(&buffer[..count])));
    }
    let decoded = body
        .split('/')
        .take(PATH_SEGMENTS_MAX + 1)
        .map(|s| percent::decode(s).map_err(|e| Problem::bad_request(format!("path: {e}"))))
        .collect::<Result<Vec<Cow<'_, str>>, Problem>>()?;
    if decoded.len() > PATH_SEGMENTS_MAX {
        return Ok(None);
    }
    let segments: Vec<&str> = decoded.iter().map(|c| c.as_ref()).collect();
    Ok(Some(f(&segments)))
}

/// The routes: a trie for matching, the handlers it points to, and an exact-path map for
/// routes made only of static segments.
#[derive(Default)]
struct Table {
    root: Node,
    handlers: Vec<Arc<dyn Handler>>,
    /// Per handler, the route it answers for the per-route metrics (`None`: an automatic
    /// OPTIONS answer, which belongs to no route).
    labels: Vec<Option<RouteLabel>>,
    /// Static-only patterns by their path. A raw path without `%` that equals one of them is
    /// exactly what the trie would find (it prefers static children at every segment), so a
    /// hit skips splitting and walking.
    exact: HashMap<String, Endpoint, BuildHasherDefault<PathHasher>>,
    /// The same entries as `exact` while there are at most `EXACT_SCAN_MAX`: comparing a few
    /// lengths costs less than hashing the path and probing.
    exact_scan: Vec<(String, Endpoint)>,
}

/// Up to this many static-only routes are found by a scan rather than by hashing.
const EXACT_SCAN_MAX: usize = 16;

/// FNV-1a over the path bytes. A weak hash is safe here: the exact-path map is filled at
/// start-up and only read while serving, so crafted paths can at worst walk the longest chain
/// of registered routes (a few entries), never grow one; and it costs a fraction of SipHash.
#[derive(Default)]
struct PathHasher(u64);

impl Hasher for PathHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = if self.0 == 0 { FNV_OFFSET } else { self.0 };
        // Eight bytes per step (FNV-1a's step on words): one multiply per word instead of
        // one per byte; every request to a static route hashes its path.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            hash = (hash ^ u64::from_le_bytes(eight)).wrapping_mul(FNV_PRIME);
        }
        for &byte in words.remainder() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.0 = hash;
    }
}

/// What resolving a request found. `Found` holds the handler index; the parameters are
/// already in `Request::params`.
enum Resolved {
    /// The handler, the `{*rest}` segments, and the `Allow` value when the handler is an
    /// automatic OPTIONS answer.
    Found(usize, Option<Vec<String>>, Option<String>),
    MethodNotAllowed(String),
    Options(String),
    NotFound,
    BadPath(Problem),
}

impl Table {
    fn insert(&mut self, pattern: &str, method: Method, handler: Arc<dyn Handler>) {
        let index = self.handlers.len();
        self.root.insert(pattern, method.clone(), index);
        let preflight = handler.layers_around(Arc::new(ImplicitOptions));
        self.handlers.push(handler);
        self.labels.push(Some(RouteLabel {
            method: method.clone(),
            pattern: pattern.to_string(),
        }));
        let asked = method.clone();
        self.update_exact(pattern, |endpoint| endpoint.methods.push((method, index)));
        if let Some(preflight) = preflight {
            let index = self.handlers.len();
            self.handlers.push(preflight);
            self.labels.push(None);
            self.root
                .endpoint_mut(pattern)
                .preflights
                .push((asked.clone(), index));
            self.update_exact(pattern, |endpoint| endpoint.preflights.push((asked, index)));
        }
    }

    /// Registers a group's automatic OPTIONS answer for `pattern`, unless one is there
    /// already (the first group's layers answer).
    fn insert_implicit_options(&mut self, pattern: &str, handler: Arc<dyn Handler>) {
        let index = self.handlers.len();
        let endpoint = self.root.endpoint_mut(pattern);
        if endpoint.implicit_options.is_some() {
            return;
        }
        endpoint.implicit_options = Some(index);
        self.handlers.push(handler);
        self.labels.push(None);
        self.update_exact(pattern, |endpoint| endpoint.implicit_options = Some(index));
    }

    /// Applies `change` to the exact-path entry of a static-only `pattern` (the trie's
    /// endpoint has had the same change).
    fn update_exact(&mut self, pattern: &str, change: impl FnOnce(&mut Endpoint)) {
        let segments = pattern.split('/').count().saturating_sub(1);
        // A pattern with `%` is left to the trie, which decodes the path first: so a raw path
        // found here holds no `%` and needs no decoding (nor a scan for `%`).
        if !pattern.contains(['{', '}', '%']) && segments <= PATH_SEGMENTS_MAX {
            change(self.exact.entry(pattern.to_string()).or_default());
            self.exact_scan.clear();
            if self.exact.len() <= EXACT_SCAN_MAX {
                let entries = self.exact.iter().map(|(p, e)| (p.clone(), e.clone()));
                self.exact_scan.extend(entries);
            }
        }
    }

    /// The endpoint for a path and, if it routes `method`, its handler; no copies.
    fn find<'t>(
        &'t self,
        segments: &[&str],
        method: &Method,
        preflight: Option<&Method>,
        captures: &mut Captures<'t>,
    ) -> Option<(&'t Endpoint, Option<usize>)> {
        let endpoint = self.root.lookup(segments, 0, captures)?;
        Some((endpoint, endpoint.find_for(method, preflight)))
    }

    #[inline(always)]
    fn exact_hit(&self, path: &str) -> Option<&Endpoint> {
        if self.exact.len() <= EXACT_SCAN_MAX {
            assert_eq!(
                self.exact_scan.len(),
                self.exact.len(),
                "scan list out of date"
            );
            return self
                .exact_scan
                .iter()
                .find(|(pattern, _)| pattern == path)
                .map(|(_, endpoint)| endpoint);
        }
        self.exact.get(path)
    }

    #[inline]
    fn choose(
        endpoint: &Endpoint,
        method: &Method,
        preflight: Option<&Method>,
        rest: Option<Vec<String>>,
    ) -> Resolved {
        match (endpoint.find_for(method, preflight), method) {
            (Some(index), _) if endpoint.is_implicit_options(index) => {
                Resolved::Found(index, rest, Some(endpoint.allow()))
            }
            (Some(index), _) => Resolved::Found(index, rest, None),
            (None, Method::Options) => Resolved::Options(endpoint.allow()),
            // A group with layers refuses a method inside them too, so a CORS layer puts its
            // headers on the 405 (without them a browser reports a CORS failure instead).
            (None, _) => match endpoint.implicit_options {
                Some(index) => Resolved::Found(index, rest, Some(endpoint.allow())),
                None => Resolved::MethodNotAllowed(endpoint.allow()),
            },
        }
    }

    /// Matches `req` and, when a handler is found, fills `req.params` (reusing its strings).
    #[inline]
    fn resolve(&self, req: &mut Request) -> Resolved {
        req.recycle_params();
        let preflight = preflight_method(req);
        let preflight = preflight.as_ref();
        if let Some(endpoint) = self.exact_hit(&req.path) {
            return Table::choose(endpoint, &req.method, preflight, None);
        }
        // The segments borrow the path while the parameters are written into the request.
        let path = std::mem::take(&mut req.path);
        let outcome = with_segments(&path, |segments| {
            let mut captures = Captures::new();
            let Some(endpoint) = self.root.lookup(segments, 0, &mut captures) else {
                return Resolved::NotFound;
            };
            let mut rest = None;
            if endpoint.find_for(&req.method, preflight).is_some() {
                for capture in captures.iter() {
                    let (mut name, mut value) = req.take_param_strings();
                    match capture {
                        Capture::Param(key, at) => {
                            name.push_str(key);
                            value.push_str(segments[at]);
                        }
                        Capture::Rest(key, at) => {
                            name.push_str(key);
                            // Joined in place: no temporary string per request.
                            for (i, segment) in segments[at..].iter().enumerate() {
                                if i > 0 {
                                    value.push('/');
                                }
                                value.push_str(segment);
                            }
                            rest = Some(segments[at..].iter().map(|s| s.to_string()).collect());
                        }
                    }
                    req.params.push((name, value));
                }
            }
            Table::choose(endpoint, &req.method, preflight, rest)
        });
        req.path = path;
        match outcome {
            Ok(Some(resolved)) => resolved,
            Ok(None) => Resolved::NotFound,
            Err(problem) => Resolved::BadPath(problem),
        }
    }

    /// Whether the routed handler is inline; error answers are cheap and never block.
    fn is_inline(&self, req: &Request) -> bool {
        let preflight = preflight_method(req);
        let preflight = preflight.as_ref();
        if let Some(endpoint) = self.exact_hit(&req.path) {
            return endpoint
                .find_for(&req.method, preflight)
                .is_none_or(|index| self.handlers[index].is_inline(req));
        }
        let inline = with_segments(&req.path, |segments| {
            let mut captures = Captures::new();
            match self.find(segments, &req.method, preflight, &mut captures) {
                Some((_, Some(index))) => self.handlers[index].is_inline(req),
                _ => true,
            }
        });
        inline.unwrap_or(Some(true)).unwrap_or(true)
    }
}

/// The method a CORS preflight asks about (`Access-Control-Request-Method` on an `OPTIONS`);
/// `None` for every other request, without reading a header.
fn preflight_method(req: &Request) -> Option<Method> {
    if req.method != Method::Options {
        return None;
    }
    let asked = req.header("access-control-request-method")?.trim();
    super::parse::is_token(asked).then(|| Method::from_token(asked))
}

/// The `Allow` value for an [`ImplicitOptions`] answer, put in `Request::extensions` by the
/// router when it chose one.
struct ImplicitAllow(String);

/// A group's automatic OPTIONS answer (204 with `Allow`) and 405 (with `Allow`), registered
/// inside the group's layers so they see those requests: a CORS layer on a group answers
/// preflights this way, and puts its headers on refusals. Also inside a route's own layers,
/// for the preflights asking about that route (see `Endpoint::find_for`).
struct ImplicitOptions;

impl Handler for ImplicitOptions {
    fn call(&self, req: &mut Request) -> Response {
        let allow = req
            .extensions
            .get::<ImplicitAllow>()
            .map_or_else(|| "OPTIONS".to_string(), |a| a.0.clone());
        if req.method == Method::Options {
            return Response::no_content().with_header("Allow", allow);
        }
        // Chosen for a method the path does not route: the router's own 405, given inside
        // the group's layers.
        Problem::method_not_allowed(&allow)
            .with_detail(format!("{} is not allowed here", req.method))
            .into_response()
    }

    fn is_inline(&self, _req: &Request) -> bool {
        true
    }
}

/// The innermost handler of a router: resolves and dispatches, counting each routed answer
/// when the router was given [`RouteStats`].
struct Dispatch {
    table: Arc<Table>,
    /// Where routed answers are counted (`None`: they are not).
    counters: Option<Arc<RouteCounters>>,
}

/// Counts a routed handler's answer as a 5xx if the handler panics (the server answers 500);
/// disarmed when it returns.
struct CountOnPanic<'a> {
    counters: &'a RouteCounters,
    index: usize,
    started: Instant,
    armed: bool,
}

impl Drop for CountOnPanic<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.counters.count(self.index, 500, self.started);
        }
    }
}

impl Dispatch {
    /// Identifies this router's table in `Request::planned`.
    fn table_id(&self) -> usize {
        Arc::as_ptr(&self.table) as usize
    }

    /// Runs handler `index`, counting its answer when routes are counted: at once, or for a
    /// deferred response when its responder completes it (a write, once durable). On a
    /// reactor it reads no precise clock (see `http::route_stats` for how it times).
    fn run(&self, index: usize, req: &mut Request) -> Response {
        let handler = &self.table.handlers[index];
        if req.extensions.get::<WantMatchedRoute>().is_some() {
            if let Some(Some(label)) = self.table.labels.get(index) {
                req.extensions.insert(MatchedRoute(label.pattern.clone()));
            }
        }
        let Some(counters) = self.counters.as_ref().filter(|c| c.counts(index)) else {
            return handler.call(req);
        };
        let turn = route_stats::turn_began();
        let mut on_panic = CountOnPanic {
            counters,
            index,
            started: turn.unwrap_or_else(Instant::now),
            armed: true,
        };
        let response = handler.call(req);
        on_panic.armed = false;
        let started = on_panic.started;
        match &response.deferred {
            // Answered within the reactor's turn: timed on its coarse clock.
            None if turn.is_some() => {
                let elapsed_us = route_stats::inline_elapsed_us();
                counters.count_us(index, response.status, elapsed_us);
            }
            None => counters.count(index, response.status, started),
            Some(deferred) => {
                let counters = Arc::clone(counters);
                deferred.watch(Box::new(move |answered: &mut Response| {
                    counters.count(index, answered.status, started);
                }));
            }
        }
        response
    }

    /// The route `plan` chose for this request, if it is still valid: chosen by this table,
    /// for the method and path the request has now.
    fn remembered(&self, req: &Request) -> Option<usize> {
        let planned = &req.planned;
        let valid = planned.table == self.table_id()
            && planned.method == req.method
            && planned.path == req.path;
        valid.then_some(planned.route)
    }

    fn found(req: &mut Request, rest: Option<Vec<String>>, allow: Option<String>) {
        if let Some(rest) = rest {
            req.extensions.insert(RestSegments(rest));
        }
        if let Some(allow) = allow {
            req.extensions.insert(ImplicitAllow(allow));
        }
    }
}

impl Handler for Dispatch {
    fn call(&self, req: &mut Request) -> Response {
        if let Some(index) = self.remembered(req) {
            return self.run(index, req);
        }
        // Routed again (a nested router, or a middleware rewrote the request): any route
        // remembered belongs to an earlier match, so inner routers must match again too.
        req.planned.table = 0;
        match self.table.resolve(req) {
            Resolved::Found(index, rest, allow) => {
                Dispatch::found(req, rest, allow);
                self.run(index, req)
            }
            Resolved::MethodNotAllowed(allow) => Problem::method_not_allowed(&allow)
                .with_detail(format!("{} is not allowed here", req.method))
                .into_response(),
            Resolved::Options(allow) => Response::no_content().with_header("Allow", allow),
            Resolved::NotFound => Problem::not_found("no route matches this path")
                .with_instance(req.path.clone())
                .into_response(),
            Resolved::BadPath(problem) => problem.into_response(),
        }
    }

    fn is_inline(&self, req: &Request) -> bool {
        self.table.is_inline(req)
    }

    fn plan(&self, req: &mut Request) -> HeadPlan {
        let Resolved::Found(index, rest, allow) = self.table.resolve(req) else {
            // Error answers are cheap, never block, and read no body.
            return HeadPlan {
                inline: true,
                body_bytes_max: None,
            };
        };
        Dispatch::found(req, rest, allow);
        req.planned.table = self.table_id();
        req.planned.route = index;
        req.planned.method.clone_from(&req.method);
        req.planned.path.clone_from(&req.path);
        self.table.handlers[index].plan(req)
    }
}

/// Routes requests to handlers by path and method. See the module docs.
pub struct Router {
    table: Arc<Table>,
    layers: Vec<Arc<dyn Middleware>>,
    /// The global layers around `Dispatch`, built on the first request.
    composed: OnceLock<Arc<dyn Handler>>,
    /// Where each routed answer is counted, when asked for ([`Router::count_routes`]).
    route_stats: Option<RouteStats>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

/// The per-method shorthands of `route`, the same on [`Router`] and [`Group`] (each has its own
/// `route`: the group adds its prefix).
macro_rules! method_shorthands {
    () => {
        /// Registers a GET route (HEAD is answered by it too).
        pub fn get<M>(self, pattern: &str, handler: impl IntoHandler<M>) -> Self {
            self.route(Method::Get, pattern, handler)
        }

        /// Registers a POST route.
        pub fn post<M>(self, pattern: &str, handler: impl IntoHandler<M>) -> Self {
            self.route(Method::Post, pattern, handler)
        }

        /// Registers a PUT route.
        pub fn put<M>(self, pattern: &str, handler: impl IntoHandler<M>) -> Self {
            self.route(Method::Put, pattern, handler)
        }

        /// Registers a PATCH route.
        pub fn patch<M>(self, pattern: &str, handler: impl IntoHandler<M>) -> Self {
            self.route(Method::Patch, pattern, handler)
        }

        /// Registers a DELETE route.
        pub fn delete<M>(self, pattern: &str, handler: impl IntoHandler<M>) -> Self {
            self.route(Method::Delete, pattern, handler)
        }
    };
}

impl Router {
    /// An empty router with the default security headers as its first global layer.
    pub fn new() -> Self {
        Self::bare().layer(SecurityHeaders::default())
    }

    /// An empty router with no middleware at all.
    pub fn bare() -> Self {
        Self {
            table: Arc::new(Table::default()),
            layers: Vec::new(),
            composed: OnceLock::new(),
            route_stats: None,
        }
    }

    fn table_mut(&mut self) -> &mut Table {
        // Builder methods run before serving; a composed chain would hold a second reference.
        self.composed = OnceLock::new();
        Arc::get_mut(&mut self.table).expect("router table shared while still being built")
    }

    /// Registers `handler` for `method` on `pattern`.
    pub fn route<M>(mut self, method: Method, pattern: &str, handler: impl IntoHandler<M>) -> Self {
        self.table_mut()
            .insert(pattern, method, handler.into_handler());
        self
    }

    method_shorthands!();

    /// Adds a global middleware; the first added runs first (outermost). Global middleware
    /// also sees 404 and 405 answers.
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.composed = OnceLock::new();
        self.layers.push(Arc::new(middleware));
        self
    }

    /// Registers routes under `prefix` with middleware of their own:
    /// `router.group("/api", |g| g.layer(auth).get("/items", list))`.
    pub fn group(mut self, prefix: &str, build: impl FnOnce(Group) -> Group) -> Self {
        let group = build(Group::new(prefix));
        for (method, pattern, handler) in group.into_routes() {
            match method {
                Some(method) => self.table_mut().insert(&pattern, method, handler),
                None => self.table_mut().insert_implicit_options(&pattern, handler),
            }
        }
        self
    }

    /// Serves files under `root` at `prefix` (GET and HEAD): `static_dir("/assets", "./public")`.
    /// Panics if `root` is not a readable directory: a start-up configuration error.
    pub fn static_dir(self, prefix: &str, root: &str) -> Self {
        let dir = StaticDir::new(root)
            .unwrap_or_else(|e| panic!("static_dir({prefix:?}, {root:?}): {e}"));
        let pattern = format!("{}/{{*path}}", prefix.trim_end_matches('/'));
        self.get(&pattern, dir)
    }

    /// Counts every answer of a routed handler in `stats`, by route (its method and pattern):
    /// status class and handler time (see `http::route_stats`). Off unless asked for: it costs
    /// a few atomic adds per routed request, and two clock reads on a worker.
    pub fn count_routes(mut self, stats: RouteStats) -> Self {
        self.composed = OnceLock::new();
        self.route_stats = Some(stats);
        self
    }

    fn composed(&self) -> &Arc<dyn Handler> {
        self.composed.get_or_init(|| {
            let counters = self.route_stats.as_ref().map(|stats| {
                let counters = Arc::new(RouteCounters::new(self.table.labels.clone()));
                stats.attach(Arc::clone(&counters));
                counters
            });
            wrap(
                Arc::new(Dispatch {
                    table: Arc::clone(&self.table),
                    counters,
                }),
                &self.layers,
            )
        })
    }
}

impl Handler for Router {
    fn call(&self, req: &mut Request) -> Response {
        self.composed().call(req)
    }

    fn is_inline(&self, req: &Request) -> bool {
        self.composed().is_inline(req)
    }

    fn plan(&self, req: &mut Request) -> HeadPlan {
        self.composed().plan(req)
    }
}

/// A group's route: its method, or `None` for the automatic OPTIONS answer.
type GroupRoute = (Option<Method>, String, Arc<dyn Handler>);

/// Routes under a shared prefix with shared middleware (see [`Router::group`]).
pub struct Group {
    prefix: String,
    layers: Vec<Arc<dyn Middleware>>,
    routes: Vec<GroupRoute>,
}

impl Group {
    fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        assert!(
            prefix.is_empty() || prefix.starts_with('/'),
            "group prefix {prefix:?} must start with '/'"
        );
        Self {
            prefix: prefix.to_string(),
            layers: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Adds middleware for every route of this group (wherever `layer` is called in it).
    /// The layers also see OPTIONS requests to the group's paths, answered with 204 and
    /// `Allow` unless the group routes OPTIONS itself: a CORS layer here answers preflights.
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.layers.push(Arc::new(middleware));
        self
    }

    /// Registers `handler` for `method` on `prefix + pattern` (`"/"` is the prefix itself).
    pub fn route<M>(mut self, method: Method, pattern: &str, handler: impl IntoHandler<M>) -> Self {
        let full = match pattern {
            "/" | "" if !self.prefix.is_empty() => self.prefix.clone(),
            _ => format!("{}{pattern}", self.prefix),
        };
        self.routes
            .push((Some(method), full, handler.into_handler()));
        self
    }

    method_shorthands!();

    /// A nested group: its prefix is appended and its layers run inside this group's.
    pub fn group(mut self, prefix: &str, build: impl FnOnce(Group) -> Group) -> Self {
        let inner = build(Group::new(&format!("{}{prefix}", self.prefix)));
        self.routes.extend(inner.into_routes());
        self
    }

    fn into_routes(self) -> Vec<GroupRoute> {
        let layers = self.layers;
        let mut routes = self.routes;
        if !layers.is_empty() {
            // Without this, OPTIONS on a group path got the router's own answer, which runs
            // only the global layers: a group's CORS layer never saw a preflight.
            // Every path gets one (a routed OPTIONS still wins, see `Endpoint::find`): it also
            // gives the 405 of the methods the path does not route, inside the layers.
            let mut bare: Vec<String> = Vec::new();
            for (_, pattern, _) in &routes {
                let answered = routes.iter().any(|(m, p, _)| p == pattern && m.is_none());
                if !answered && !bare.contains(pattern) {
                    bare.push(pattern.clone());
                }
            }
            for pattern in bare {
                routes.push((None, pattern, Arc::new(ImplicitOptions)));
            }
        }
        routes
            .into_iter()
            .map(|(m, p, h)| (m, p, wrap(h, &layers)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stats::STATUS_CLASSES;

    fn path_hash(path: &str) -> u64 {
        let mut hasher = PathHasher::default();
        hasher.write(path.as_bytes());
        hasher.finish()
    }

    #[test]
    fn static_routes_are_found_by_scan_and_by_map_alike() {
        for count in [EXACT_SCAN_MAX, EXACT_SCAN_MAX + 4] {
            let mut router = Router::bare();
            for i in 0..count {
                let body: &'static str = Box::leak(format!("r{i}").into_boxed_str());
                let pattern = format!("/route/number/{i}");
                router = router.get(&pattern, move |_: &mut Request| Response::text(200, body));
            }
            check(&router, Method::Get, "/route/number/3", 200, "r3");
            let last = format!("/route/number/{}", count - 1);
            check(&router, Method::Get, &last, 200, &format!("r{}", count - 1));
            check(&router, Method::Get, "/route/number/99", 404, "");
            // An escaped path is decoded by the trie, never taken from the exact routes.
            check(&router, Method::Get, "/route/number/%33", 200, "r3");
        }
    }

    #[test]
    fn routed_answers_are_counted_by_route_and_the_routers_own_are_not() {
        use crate::http::deferred::Responder;
        use std::sync::{mpsc, Mutex};
        let (responders, deferred) = mpsc::channel::<Responder>();
        let responders = Mutex::new(responders);
        let stats = RouteStats::new();
        let router = Router::bare()
            .get("/items/{id}", |req: &mut Request| match req.path.as_str() {
                "/items/1" => Response::text(200, "one"),
                _ => Response::text(404, "none"),
            })
            .get("/unused", echo("unused"))
            .post("/items", move |_: &mut Request| {
                let (placeholder, responder) = Response::deferred();
                let sent = responders.lock().expect("sender").send(responder);
                sent.expect("the test holds the receiver");
                placeholder
            })
            .get("/boom", |_: &mut Request| -> Response {
                panic!("handler bug")
            })
            .group("/g", |g| {
                g.layer(SecurityHeaders::default()).get("/x", echo("x"))
            })
            .count_routes(stats.clone());
        assert!(stats.routes().is_empty(), "nothing counted before serving");
        let call = |method: Method, target: &str| {
            let mut req = Request::new(method, target);
            router.call(&mut req).status
        };
        assert_eq!(call(Method::Get, "/items/1"), 200);
        assert_eq!(call(Method::Head, "/items/1"), 200);
        assert_eq!(call(Method::Get, "/items/2"), 404);
        assert_eq!(call(Method::Get, "/g/x"), 200);
        // The router's own answers belong to no route: 404, 405, OPTIONS, and a group's.
        assert_eq!(call(Method::Get, "/nothing/here"), 404);
        assert_eq!(call(Method::Put, "/items/1"), 405);
        assert_eq!(call(Method::Options, "/items/1"), 204);
        assert_eq!(call(Method::Options, "/g/x"), 204);
        assert_eq!(call(Method::Delete, "/g/x"), 405);
        let boom =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(Method::Get, "/boom")));
        assert!(boom.is_err(), "the handler panicked");
        // Deferred answers count when completed, with their real status and time.
        assert_eq!(call(Method::Post, "/items"), 202, "the placeholder");
        assert_eq!(call(Method::Post, "/items"), 202, "the placeholder");
        let made = deferred.recv().expect("first responder");
        let dropped = deferred.recv().expect("second responder");
        let before = stats.routes();
        assert!(before.iter().all(|route| route.pattern != "/items" || {
            route.responses_by_class == [0; STATUS_CLASSES]
        }));
        std::thread::sleep(std::time::Duration::from_millis(3));
        made.complete(Response::text(201, "made"));
        drop(dropped);
        let routes = stats.routes();
        let figures: Vec<(&str, &str, [u64; STATUS_CLASSES], u64)> = routes
            .iter()
            .map(|r| {
                let timed = r.durations.count();
                (
                    r.method.as_str(),
                    r.pattern.as_str(),
                    r.responses_by_class,
                    timed,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [
                ("GET", "/items/{id}", [0, 2, 0, 1, 0], 3),
                ("POST", "/items", [0, 1, 0, 0, 1], 2),
                ("GET", "/boom", [0, 0, 0, 0, 1], 1),
                ("GET", "/g/x", [0, 1, 0, 0, 0], 1),
            ]
        );
        let posts = &routes[1].durations;
        assert!(posts.sum_us >= 2 * 3_000, "timed to completion: {posts:?}");
    }

    #[test]
    fn the_matched_pattern_is_given_only_when_asked_for() {
        let router = Router::bare()
            .group("/api", |g| g.get("/items/{id}", echo("item")))
            .get("/plain", echo("plain"));
        let matched = |target: &str, ask: bool| {
            let mut req = Request::new(Method::Get, target);
            if ask {
                req.extensions.insert(WantMatchedRoute);
            }
            let _ = router.call(&mut req);
            req.extensions.get::<MatchedRoute>().map(|r| r.0.clone())
        };
        assert_eq!(
            matched("/api/items/7", true).as_deref(),
            Some("/api/items/{id}")
        );
        assert_eq!(matched("/plain", true).as_deref(), Some("/plain"));
        assert_eq!(
            matched("/api/items/7", false),
            None,
            "not asked: nothing copied"
        );
        assert_eq!(matched("/nothing", true), None, "no route answered");
    }

    #[test]
    fn path_hash_covers_every_byte_of_words_and_remainder() {
        let base = "/a-longer-path/with/words";
        for at in 0..base.len() {
            let mut changed = base.as_bytes().to_vec();
            changed[at] ^= 0x01;
            let changed = String::from_utf8(changed).expect("ascii");
            assert_ne!(path_hash(base), path_hash(&changed), "byte {at}");
        }
        assert_eq!(path_hash(base), path_hash(base));
        assert_ne!(path_hash("/plaintext"), path_hash("/plaintex"));
        assert_ne!(path_hash("/items/12"), path_hash("/items/21"));
    }

    fn echo(name: &'static str) -> impl Fn(&mut Request) -> Response + Send + Sync + 'static {
        move |req: &mut Request| {
            let params: Vec<String> = req.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Response::text(200, format!("{name} {}", params.join(",")))
        }
    }

    fn body_text(response: &Response) -> String {
        String::from_utf8_lossy(response.body.as_bytes().unwrap_or(b"")).into_owned()
    }

    /// Runs the case on both paths: `call` alone, and the server's `plan` then `call`.
    fn check(router: &Router, method: Method, target: &str, status: u16, body: &str) -> Response {
        let mut planned = Request::new(method.clone(), target);
        let _ = router.plan(&mut planned);
        let answer = router.call(&mut planned);
        let mut req = Request::new(method.clone(), target);
        let response = router.call(&mut req);
        assert_eq!(answer.status, response.status, "planned {method} {target}");
        assert_eq!(
            body_text(&answer),
            body_text(&response),
            "{method} {target}"
        );
        assert_eq!(response.status, status, "{method} {target}");
        if status == 200 {
            let got = String::from_utf8_lossy(response.body.as_bytes().unwrap_or(b"")).into_owned();
            assert_eq!(got, body, "{method} {target}");
        }
        response
    }

    #[test]
    fn matching_table() {
        let r = Router::bare()
            .get("/", echo("root"))
            .get("/items", echo("list"))
            .get("/items/new", echo("new"))
            .get("/items/{id}", echo("show"))
            .post("/items/{id}", echo("update"))
            .get("/items/{id}/tags/{tag}", echo("tag"))
            .get("/files/{*rest}", echo("files"))
            .get("/files/special", echo("special"));
        use Method::*;
        check(&r, Get, "/", 200, "root ");
        check(&r, Get, "/items", 200, "list ");
        check(&r, Get, "/items/new", 200, "new ");
        check(&r, Get, "/items/42", 200, "show id=42");
        check(&r, Post, "/items/42", 200, "update id=42");
        check(
            &r,
            Get,
            "/items/a%20b/tags/x%2Fy",
            200,
            "tag id=a b,tag=x/y",
        );
        check(&r, Get, "/files/a/b/c.txt", 200, "files rest=a/b/c.txt");
        check(&r, Get, "/files/special", 200, "special ");
        check(&r, Get, "/files/", 200, "files rest=");
        check(&r, Get, "/nope", 404, "");
        check(&r, Get, "/items/", 404, "");
        check(&r, Get, "/items/%zz", 400, "");
        let head = check(&r, Head, "/items/1", 200, "show id=1");
        assert_eq!(head.status, 200);
        let not_allowed = check(&r, Delete, "/items/1", 405, "");
        assert_eq!(
            not_allowed.headers.get("allow"),
            Some("GET, POST, HEAD, OPTIONS")
        );
        let options = check(&r, Options, "/items/1", 204, "");
        assert_eq!(
            options.headers.get("allow"),
            Some("GET, POST, HEAD, OPTIONS")
        );
        let deep = format!("/{}", "a/".repeat(PATH_SEGMENTS_MAX + 1));
        check(&r, Get, &deep, 404, "");
    }

    #[test]
    fn segments_split_on_the_stack_and_on_the_heap() {
        let count = |path: &str| with_segments(path, |s| s.len()).ok().flatten();
        let joined = |path: &str| with_segments(path, |s| s.join("|")).ok().flatten();
        assert_eq!(count("/"), Some(0));
        assert_eq!(joined("/a/").as_deref(), Some("a|"));
        assert_eq!(joined("/a//b").as_deref(), Some("a||b"));
        assert_eq!(joined("/é/b").as_deref(), Some("é|b"));
        let path = |n: usize| format!("/{}", vec!["x"; n].join("/"));
        assert_eq!(count(&path(SEGMENTS_INLINE)), Some(SEGMENTS_INLINE));
        assert_eq!(count(&path(SEGMENTS_INLINE + 3)), Some(SEGMENTS_INLINE + 3));
        assert_eq!(count(&path(PATH_SEGMENTS_MAX)), Some(PATH_SEGMENTS_MAX));
        assert_eq!(count(&path(PATH_SEGMENTS_MAX + 1)), None);
    }

    #[test]
    fn rest_segments_keep_encoded_slashes_apart() {
        let r = Router::bare().get("/s/{*path}", |req: &mut Request| {
            let rest = req
                .extensions
                .get::<RestSegments>()
                .cloned()
                .unwrap_or(RestSegments(vec![]));
            Response::text(200, format!("{:?}", rest.0))
        });
        check(&r, Method::Get, "/s/a%2Fb/c", 200, "[\"a/b\", \"c\"]");
    }

    #[test]
    fn groups_prefix_and_layers() {
        let mark =
            |req: &mut Request, next: &dyn Handler| next.call(req).with_header("x-group", "1");
        let r = Router::bare()
            .get("/open", echo("open"))
            .group("/api", |g| {
                g.get("/", echo("api-root"))
                    .get("/items/{id}", echo("item"))
                    .group("/v2", |g| g.get("/x", echo("x")))
                    .layer(mark)
            });
        check(&r, Method::Get, "/api", 200, "api-root ");
        let item = check(&r, Method::Get, "/api/items/3", 200, "item id=3");
        assert_eq!(item.headers.get("x-group"), Some("1"));
        assert!(check(&r, Method::Get, "/api/v2/x", 200, "x ")
            .headers
            .contains("x-group"));
        assert!(!check(&r, Method::Get, "/open", 200, "open ")
            .headers
            .contains("x-group"));
    }

    #[test]
    fn group_layers_see_options_requests() {
        let mark =
            |req: &mut Request, next: &dyn Handler| next.call(req).with_header("x-group", "1");
        let own_options = |_: &mut Request| Response::text(200, "own");
        let r = Router::bare()
            .get("/open", echo("open"))
            .group("/api", |g| {
                g.layer(mark)
                    .put("/items/{id}", echo("put"))
                    .get("/items/{id}", echo("get"))
                    .get("/list", echo("list"))
                    .route(Method::Options, "/custom", own_options)
                    .post("/custom", echo("custom"))
            })
            .group("/api", |g| g.delete("/list", echo("del")).layer(mark))
            .group("/plain", |g| g.get("/x", echo("x")));
        let options = check(&r, Method::Options, "/api/items/7", 204, "");
        assert_eq!(
            (options.headers.get("allow"), options.headers.get("x-group")),
            (Some("PUT, GET, HEAD, OPTIONS"), Some("1"))
        );
        // A static path (found without the trie) and a second group on the same path.
        let options = check(&r, Method::Options, "/api/list", 204, "");
        assert_eq!(
            (options.headers.get("allow"), options.headers.get("x-group")),
            (Some("GET, DELETE, HEAD, OPTIONS"), Some("1"))
        );
        let own = check(&r, Method::Options, "/api/custom", 200, "own");
        assert_eq!(own.headers.get("x-group"), Some("1"));
        // Groups without layers and routes outside groups keep the router's own answer.
        for path in ["/plain/x", "/open"] {
            let options = check(&r, Method::Options, path, 204, "");
            assert_eq!(options.headers.get("x-group"), None, "{path}");
            assert_eq!(options.headers.get("allow"), Some("GET, HEAD, OPTIONS"));
        }
        // A method a group path does not route is refused inside the group's layers too
        // (a CORS layer's headers on the 405); elsewhere by the router itself.
        for (method, path, allow) in [
            (Method::Delete, "/api/items/7", "PUT, GET, HEAD, OPTIONS"),
            (Method::Put, "/api/custom", "OPTIONS, POST"),
        ] {
            let refused = check(&r, method, path, 405, "");
            assert_eq!(refused.headers.get("x-group"), Some("1"), "{path}");
            assert_eq!(refused.headers.get("allow"), Some(allow), "{path}");
        }
        let refused = check(&r, Method::Post, "/plain/x", 405, "");
        assert_eq!(refused.headers.get("x-group"), None);
        // A route registered later for OPTIONS replaces the automatic answer.
        let r = Router::bare()
            .group("/g", |g| g.layer(mark).get("/a", echo("a")))
            .route(Method::Options, "/g/a", own_options);
        check(&r, Method::Options, "/g/a", 200, "own");
    }

    #[test]
    fn fallible_handlers_and_route_layers() {
        fn show(req: &mut Request) -> crate::http::problem::HttpResult {
            let id: u64 = req.param("id")?;
            Ok(Response::text(200, format!("{id}")))
        }
        let stamp =
            |req: &mut Request, next: &dyn Handler| next.call(req).with_header("x-route", "1");
        let r = Router::new().get("/n/{id}", show.with(stamp));
        let ok = check(&r, Method::Get, "/n/5", 200, "5");
        assert_eq!(ok.headers.get("x-route"), Some("1"));
        assert_eq!(ok.headers.get("x-content-type-options"), Some("nosniff"));
        let bad = check(&r, Method::Get, "/n/x", 400, "");
        assert_eq!(
            bad.headers.get("content-type"),
            Some("application/problem+json")
        );
    }

    proptest::proptest! {
        #[test]
        fn prop_any_path_gets_an_answer(path in "/[a-z0-9%/.{}*+ -]{0,40}", method in 0u8..3) {
            let r = Router::bare()
                .get("/a/{x}", echo("a"))
                .post("/a/{x}/b", echo("b"))
                .get("/s/{*rest}", echo("s"));
            let method = [Method::Get, Method::Post, Method::Delete][usize::from(method)].clone();
            let mut req = Request::new(method, &path);
            let status = r.call(&mut req).status;
            proptest::prop_assert!(matches!(status, 200 | 204 | 400 | 404 | 405), "{} -> {}", path, status);
        }
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn duplicate_routes_panic_at_registration() {
        let _ = Router::bare().get("/a", echo("a")).get("/a", echo("b"));
    }

    #[test]
    fn inline_follows_the_route() {
        let r = Router::new()
            .get(
                "/fast",
                crate::http::handler::inline(|_: &mut Request| Response::text(200, "f")),
            )
            .get("/slow", echo("slow"));
        assert!(r.is_inline(&Request::new(Method::Get, "/fast")));
        assert!(!r.is_inline(&Request::new(Method::Get, "/slow")));
        assert!(r.is_inline(&Request::new(Method::Get, "/missing")));
    }

    #[test]
    fn captures_spill_past_the_inline_ones_and_truncate_back() {
        let mut captures = Captures::new();
        for at in 0..CAPTURES_INLINE + 2 {
            captures.push(Capture::Param("p", at));
        }
        let positions = |c: &Captures<'_>| {
            c.iter()
                .map(|c| match c {
                    Capture::Param(_, at) | Capture::Rest(_, at) => at,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            positions(&captures),
            (0..CAPTURES_INLINE + 2).collect::<Vec<_>>()
        );
        captures.truncate(CAPTURES_INLINE + 1);
        assert_eq!(captures.len(), CAPTURES_INLINE + 1);
        captures.truncate(2);
        captures.push(Capture::Rest("r", 9));
        assert_eq!(positions(&captures), vec![0, 1, 9]);
    }

    #[test]
    fn plan_routes_once_and_call_reuses_it() {
        let limited = echo("small").with(crate::http::middleware::BodyLimit::bytes(8));
        let r = Router::new()
            .post("/small/{id}", limited)
            .get("/fast", crate::http::handler::inline(echo("fast")))
            .get("/items/{id}", echo("item"));
        let mut req = Request::new(Method::Post, "/small/7");
        let plan = r.plan(&mut req);
        assert_eq!((plan.inline, plan.body_bytes_max), (false, Some(8)));
        assert_eq!(req.params, [("id".to_string(), "7".to_string())]);
        assert_eq!(body_text(&r.call(&mut req)), "small id=7");
        let mut req = Request::new(Method::Get, "/fast");
        assert_eq!(
            r.plan(&mut req),
            HeadPlan {
                inline: true,
                body_bytes_max: None
            }
        );
        // Errors are planned inline with no limit, and answered by `call` as usual.
        let mut req = Request::new(Method::Delete, "/fast");
        assert!(r.plan(&mut req).inline);
        assert_eq!(r.call(&mut req).status, 405);
        // One request reused for the next head (as the reactor does): nothing leaks over.
        let mut req = Request::new(Method::Get, "/items/1");
        let _ = r.plan(&mut req);
        req.set_target("/fast");
        req.reset_plan();
        let _ = r.plan(&mut req);
        assert!(req.params.is_empty(), "{:?}", req.params);
        assert_eq!(body_text(&r.call(&mut req)), "fast ");
        req.set_target("/items/22");
        req.reset_plan();
        let _ = r.plan(&mut req);
        assert_eq!(body_text(&r.call(&mut req)), "item id=22");
    }

    #[test]
    fn a_rewritten_path_or_a_nested_router_routes_again() {
        // A global layer that rewrites the path after `plan` ran: `call` must follow it.
        let rewrite = |req: &mut Request, next: &dyn Handler| {
            if req.path == "/old/5" {
                req.path = "/new/5".to_string();
            }
            next.call(req)
        };
        let r = Router::bare()
            .layer(rewrite)
            .get("/old/{id}", echo("old"))
            .get("/new/{n}", echo("new"));
        let mut req = Request::new(Method::Get, "/old/5");
        let _ = r.plan(&mut req);
        assert_eq!(body_text(&r.call(&mut req)), "new n=5");
        // A router mounted inside another: each level's parameters, inner last.
        let inner = Router::bare().get("/in/{*rest}", echo("inner"));
        let outer = Router::bare().get("/in/{*path}", inner);
        let mut req = Request::new(Method::Get, "/in/a/b");
        let _ = outer.plan(&mut req);
        assert_eq!(body_text(&outer.call(&mut req)), "inner rest=a/b");
        check(&outer, Method::Get, "/in/x", 200, "inner rest=x");
    }
}
