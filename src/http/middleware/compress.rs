//! gzip response compression with our own deflate, for compressible types above a threshold
//! when `Accept-Encoding` allows it; always `Vary: Accept-Encoding` when the choice mattered.
//! A 304 carries the `ETag` and `Vary` the 200 would have carried (RFC 9110 §15.4.5): the
//! compressed variant's tag when the client revalidates it, and `Vary` by the 200's rule.
//! A deferred response (a write answered once durable) is encoded by the same rule once it
//! completes, by a worker rather than the thread that completed it (the engine's applier,
//! which must not spend its time on deflate): see `Response::map_answer`. So is a file region
//! (a static file past what goes out with its head), handed over as a deferred answer
//! complete already: its route may run on a reactor, which must not read and deflate it.
//!
//! Variants are kept (`gzip_cache`, [`GZIP_CACHE_BYTES_MAX`] by default) for the bodies that
//! come back: a whole file, by its version, and bytes in memory that carry an `ETag` or are
//! static (an `ETag` says the representation is meant to be reused; others, a list that
//! changes at every write, would only churn the cache). A file whose variant is kept is answered
//! where the route runs, without reading it. A keyable body is deflated by one request at a
//! time: others that miss it meanwhile send it as it is (see `gzip_cache`).

use super::gzip_cache::{
    FileVersion, GzipCache, GzipCacheStats, Turn, Variant, GZIP_CACHE_BYTES_MAX,
};
use super::Middleware;
use crate::http::handler::Handler;
use crate::http::mime;
use crate::http::problem::Problem;
use crate::http::request::Request;
use crate::http::response::{read_file_region, Body, Response};
use std::sync::Arc;
use std::time::SystemTime;

/// Bodies smaller than this are sent as they are: gzip's 18 bytes of framing and the CPU are
/// not worth it.
pub const COMPRESS_BYTES_MIN: usize = 1024;
/// Largest file region read into memory to compress; bigger files go out uncompressed.
pub const COMPRESS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The gzip middleware; see the module docs. Its clones share one cache of variants.
#[derive(Debug, Clone)]
pub struct Compression {
    bytes_min: usize,
    cache: Arc<GzipCache>,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            bytes_min: COMPRESS_BYTES_MIN,
            cache: Arc::new(GzipCache::new(GZIP_CACHE_BYTES_MAX)),
        }
    }
}

impl Compression {
    /// Compresses bodies of at least `bytes_min` bytes.
    pub fn min_bytes(bytes_min: usize) -> Self {
        Self {
            bytes_min,
            ..Self::default()
        }
    }

    /// Keeps at most `bytes_max` bytes of variants (default [`GZIP_CACHE_BYTES_MAX`]; 0 keeps
    /// none: every body is deflated each time it is sent).
    #[must_use]
    pub fn cache_bytes(mut self, bytes_max: usize) -> Self {
        self.cache = Arc::new(GzipCache::new(bytes_max));
        self
    }

    /// How the cache of variants has served so far.
    pub fn cache_stats(&self) -> GzipCacheStats {
        self.cache.stats()
    }
}

/// Whether `Accept-Encoding` lets us send gzip: `gzip`/`x-gzip` or `*` with a non-zero q.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for element in accept_encoding.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            let value = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
            value.is_some_and(|v| v.trim().parse::<f32>().map_or(true, |q| q <= 0.0))
        });
        match coding.as_str() {
            "gzip" | "x-gzip" => return !q_zero,
            "*" => star = !q_zero,
            _ => {}
        }
    }
    star
}

/// `"abc"` to `"abc-gzip"` (and `W/"abc"` to `W/"abc-gzip"`): the encoded representation is a
/// different one, so its strong validator must differ (RFC 9110 §8.8.3).
fn gzip_etag(etag: &str) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}-gzip\""),
        None => etag.to_string(),
    }
}

/// Whether `If-None-Match` lists `tag` itself (weak comparison, RFC 9110 §8.8.3.2), not
/// merely a tag of another variant.
fn lists_tag(if_none_match: &str, tag: &str) -> bool {
    let opaque = tag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .any(|t| t.trim().trim_start_matches("W/") == opaque)
}

/// A 304 revalidating the compressed variant: the tag the client holds is the gzip one (only
/// this middleware mints those, so the resource is compressible), and the 200 to this request
/// would have carried it and `Vary: Accept-Encoding`. Without this, the 304 named the identity
/// tag and a cache holding the gzip variant could not match it to the stored response.
/// Returns whether the client held the gzip tag.
fn revalidated_variant(asked: &Asked, response: &mut Response) -> bool {
    let Some(etag) = response.headers.get("etag") else {
        return false;
    };
    let gzip_tag = gzip_etag(etag);
    if gzip_tag == etag {
        return false;
    }
    let held = asked
        .if_none_match
        .iter()
        .any(|inm| lists_tag(inm, &gzip_tag));
    if !held {
        return false;
    }
    response.headers.append_static("Vary", "Accept-Encoding");
    if asked.accepts_gzip {
        response.headers.insert("ETag", gzip_tag);
        // The 200 would be the gzip variant, whose length is not the identity one.
        response.headers.remove("content-length");
    }
    true
}

/// Any other 304 carries what the 200 to this request would (RFC 9110 §15.4.5), decided by
/// the rule of the 200 from what the 304 tells: its `Content-Type` and `Content-Length` (static
/// files send the 200's). A 304 that does not tell is taken as possibly compressed: an extra
/// `Vary` costs a cache a miss, a missing one breaks the RFC's MUST. A length past
/// `COMPRESS_FILE_BYTES_MAX` is taken for a file's (not compressed). When the 200 would be
/// compressed, the 304 loses the identity length (the 200's is the gzip one, unknown here)
/// and, unless the client revalidated with a tag it holds, names the gzip tag the 200 would.
fn not_modified(asked: &Asked, response: &mut Response, bytes_min: usize) {
    if revalidated_variant(asked, response) {
        return;
    }
    let h = &response.headers;
    let length = h.get("content-length").map(str::parse::<u64>);
    let compressible = !h.contains("content-encoding")
        && h.get("content-type").is_none_or(mime::is_compressible)
        && match length {
            Some(Ok(n)) => n >= bytes_min as u64 && n <= COMPRESS_FILE_BYTES_MAX,
            Some(Err(_)) | None => true,
        };
    if !compressible {
        return;
    }
    response.headers.append_static("Vary", "Accept-Encoding");
    if !asked.accepts_gzip {
        return;
    }
    response.headers.remove("content-length");
    if asked.if_none_match.is_empty() {
        if let Some(etag) = response.headers.get("etag").map(gzip_etag) {
            response.headers.insert("ETag", etag);
        }
    }
}

/// What the request asked that decides the encoding, kept apart from the request: a deferred
/// answer is encoded once the request is gone, by the rule an ordinary one is.
struct Asked {
    accepts_gzip: bool,
    /// The `If-None-Match` fields (none: the request sent none).
    if_none_match: Vec<String>,
}

impl Asked {
    fn of(req: &Request) -> Asked {
        Asked {
            accepts_gzip: req.headers.get_all("accept-encoding").any(accepts_gzip),
            if_none_match: req
                .headers
                .get_all("if-none-match")
                .map(str::to_string)
                .collect(),
        }
    }
}

impl Middleware for Compression {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let asked = Asked::of(req);
        let response = next.call(req);
        let bytes_min = self.bytes_min;
        if response.is_deferred() {
            let cache = Arc::clone(&self.cache);
            return response
                .map_answer(move |answer| encode(&asked, answer, bytes_min, &cache, None));
        }
        if asked.accepts_gzip
            && matches!(response.body, Body::File { .. })
            && compressible(&response, bytes_min)
        {
            if let Some(kept) = kept_variant(&response, &self.cache) {
                return encode(&asked, response, bytes_min, &self.cache, Some(kept));
            }
            // Reading and deflating a file region takes long, and the route may run on a
            // reactor (cached static files do): handed over as a deferred answer, complete
            // already, whose map a worker runs.
            let (placeholder, responder) = Response::deferred();
            responder.complete(response);
            let cache = Arc::clone(&self.cache);
            return placeholder
                .map_answer(move |answer| encode(&asked, answer, bytes_min, &cache, None));
        }
        encode(&asked, response, bytes_min, &self.cache, None)
    }
}

/// Whether `response` (not a 304) is one this layer compresses for a client that accepts
/// gzip: a success of a compressible type, not encoded nor partial already, whose whole body
/// is known and within the bounds.
fn compressible(response: &Response, bytes_min: usize) -> bool {
    let h = &response.headers;
    let eligible = (200..300).contains(&response.status)
        && !matches!(response.status, 204 | 206)
        && !h.contains("content-encoding")
        && !h.contains("content-range")
        && h.get("content-type").is_some_and(mime::is_compressible);
    let size = response.body.len().unwrap_or(0);
    let fits = match &response.body {
        Body::Bytes(_) | Body::Static(_) => true,
        Body::File { len, .. } => *len <= COMPRESS_FILE_BYTES_MAX,
        Body::Empty | Body::Stream(_) => false,
    };
    eligible && fits && size >= bytes_min as u64
}

/// The answer to send for `response` to a request that asked `asked`: gzip-encoded when the
/// rules in the module docs allow it, with the `Vary` and `ETag` they call for. `kept`: the
/// variant of its body, when the caller looked it up already.
fn encode(
    asked: &Asked,
    mut response: Response,
    bytes_min: usize,
    cache: &GzipCache,
    kept: Option<Variant>,
) -> Response {
    if response.status == 304 {
        not_modified(asked, &mut response, bytes_min);
        return response;
    }
    if !compressible(&response, bytes_min) {
        return response;
    }
    response.headers.append_static("Vary", "Accept-Encoding");
    if !asked.accepts_gzip {
        return response;
    }
    let variant = match kept.or_else(|| kept_variant(&response, cache)) {
        Some(kept) => kept,
        None => match make_variant(&response, cache) {
            Ok(Some(made)) => made,
            // Another request is deflating this very body: sending it as it is costs less
            // than deflating it again, and is as right an answer (it has its `Vary`).
            Ok(None) => return response,
            Err(problem) => return problem.into_response(),
        },
    };
    let Variant::Gzip(packed) = variant else {
        return response;
    };
    response.body = Body::Bytes(packed.to_vec());
    response.headers.insert("Content-Encoding", "gzip");
    if let Some(etag) = response.headers.get("etag").map(gzip_etag) {
        response.headers.insert("ETag", etag);
    }
    response
}

/// The bytes of `response`'s body when their variant may be kept and looked up by them: bytes
/// with an `ETag`, static bytes (see the module docs; files go by their version).
fn keyable_bytes(response: &Response) -> Option<&[u8]> {
    match &response.body {
        Body::Bytes(plain) if response.headers.contains("etag") => Some(plain),
        Body::Static(plain) => Some(plain),
        _ => None,
    }
}

/// The version of a file body that is a whole file, settled enough to key its variant.
fn file_version(response: &Response) -> Option<FileVersion> {
    let Body::File { file, offset, len } = &response.body else {
        return None;
    };
    FileVersion::settled(file, SystemTime::now()).filter(|v| v.is_whole(*offset, *len))
}

/// The variant kept for `response`'s body, if any: never reads a file, so any thread may ask.
fn kept_variant(response: &Response, cache: &GzipCache) -> Option<Variant> {
    match file_version(response) {
        Some(version) => cache.file(&version),
        None => keyable_bytes(response).and_then(|plain| cache.bytes(plain)),
    }
}

/// The variant of `response`'s body, made now (a file region read, then deflated), and kept
/// when its key allows: a file's only if it is still at the version taken before the read.
/// `None` when another thread is making the same variant now: the body goes as it is.
fn make_variant(response: &Response, cache: &GzipCache) -> Result<Option<Variant>, Problem> {
    match &response.body {
        Body::File { file, offset, len } => {
            let version = file_version(response);
            let claim = match version.map(|v| cache.claim_file(v)) {
                Some(Turn::Busy) => return Ok(None),
                Some(Turn::Mine(claim)) => {
                    // The thread that held the claim before may have kept it since the miss.
                    if let Some(kept) = kept_variant(response, cache) {
                        return Ok(Some(kept));
                    }
                    Some(claim)
                }
                Some(Turn::Unkeyed) | None => None,
            };
            let plain = read_file_region(file, *offset, *len)?;
            let variant = cache.make(&plain);
            if let Some(claim) = claim.filter(|_| version.is_some_and(|v| v.still(file))) {
                claim.keep_file(&variant);
            }
            Ok(Some(variant))
        }
        Body::Bytes(plain) => Ok(make_bytes_variant(response, plain, cache)),
        Body::Static(plain) => Ok(make_bytes_variant(response, plain, cache)),
        other => unreachable!("checked compressible: {other:?}"),
    }
}

/// The variant of bytes in memory, made now and kept when they are keyable (see
/// [`keyable_bytes`]); `None` when another thread is making it now.
fn make_bytes_variant(response: &Response, plain: &[u8], cache: &GzipCache) -> Option<Variant> {
    if keyable_bytes(response).is_none() {
        return Some(cache.make(plain));
    }
    match cache.claim_bytes(plain) {
        Turn::Busy => None,
        Turn::Mine(claim) => {
            // The thread that held the claim before may have kept it since the miss.
            if let Some(kept) = cache.bytes(plain) {
                return Some(kept);
            }
            let variant = cache.make(plain);
            claim.keep_bytes(plain, &variant);
            Some(variant)
        }
        Turn::Unkeyed => Some(cache.make(plain)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::deflate;
    use crate::http::request::Method;
    use std::time::Duration;

    #[test]
    fn accept_encoding_cases() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("br, *"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip;q=0.000, *"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
        assert!(!accepts_gzip("*;q=0"));
    }

    #[test]
    fn a_304_for_the_compressed_variant_names_it() {
        let not_modified = |_: &mut Request| Response::new(304).with_header("ETag", "\"v1\"");
        let mw = Compression::default();
        let answer = |headers: &[(&str, &str)]| {
            let mut req = Request::new(Method::Get, "/");
            for (n, v) in headers {
                req.headers.append(*n, *v);
            }
            let r = mw.call(&mut req, &not_modified);
            let etag = r.headers.get("etag").map(str::to_string);
            (etag, r.headers.get("vary").map(str::to_string))
        };
        let vary = Some("Accept-Encoding".to_string());
        assert_eq!(
            answer(&[
                ("Accept-Encoding", "gzip"),
                ("If-None-Match", "\"v1-gzip\"")
            ]),
            (Some("\"v1-gzip\"".into()), vary.clone())
        );
        assert_eq!(
            answer(&[
                ("Accept-Encoding", "gzip"),
                ("If-None-Match", "\"a\", W/\"v1-gzip\"")
            ]),
            (Some("\"v1-gzip\"".into()), vary.clone())
        );
        assert_eq!(
            answer(&[("If-None-Match", "\"v1-gzip\"")]),
            (Some("\"v1\"".into()), vary.clone())
        );
        // The identity tag revalidated: the client holds that variant, whose tag stays; the
        // 200 would still have varied on Accept-Encoding (nothing says it is small or of a
        // type never compressed), so the 304 says so (RFC 9110 §15.4.5).
        assert_eq!(
            answer(&[("Accept-Encoding", "gzip"), ("If-None-Match", "\"v1\"")]),
            (Some("\"v1\"".into()), vary.clone())
        );
        // Revalidated by date: the 200 would have been the gzip variant, with its tag.
        assert_eq!(
            answer(&[("Accept-Encoding", "gzip")]),
            (Some("\"v1-gzip\"".into()), vary)
        );
    }

    #[test]
    fn a_304_varies_as_its_200_would() {
        let mw = Compression::default();
        let answer = |headers: &'static [(&'static str, &'static str)]| {
            let not_modified = move |_: &mut Request| {
                let mut r = Response::new(304).with_header("ETag", "\"v1\"");
                for (n, v) in headers {
                    r.headers.append(*n, *v);
                }
                r
            };
            let mut req = Request::new(Method::Get, "/");
            req.headers.append("Accept-Encoding", "gzip");
            let r = mw.call(&mut req, &not_modified);
            let get = |name: &str| r.headers.get(name).map(str::to_string);
            (get("vary"), get("content-length"))
        };
        let vary = Some("Accept-Encoding".to_string());
        // Too small, of a type never compressed, too large a file, already encoded: no Vary.
        assert_eq!(
            answer(&[("Content-Length", "10")]),
            (None, Some("10".into()))
        );
        assert_eq!(answer(&[("Content-Type", "image/png")]), (None, None));
        const HUGE: &[(&str, &str)] = &[("Content-Length", "99999999")];
        assert_eq!(answer(HUGE), (None, Some("99999999".into())));
        assert_eq!(answer(&[("Content-Encoding", "br")]), (None, None));
        // Compressible: Vary, and the identity length goes (the 200's is the gzip one).
        const CSS: &[(&str, &str)] = &[("Content-Type", "text/css"), ("Content-Length", "5000")];
        assert_eq!(answer(CSS), (vary.clone(), None));
        assert_eq!(answer(&[]), (vary, None));
    }

    /// A deferred answer is encoded by the rule an ordinary one is, once it completes: the
    /// request's `Accept-Encoding` is remembered, since the request is gone by then.
    #[test]
    fn a_deferred_answer_is_encoded_once_completed() {
        use crate::http::deferred::Deferred;
        let big = "{\"name\":\"widget\"}".repeat(200);
        let mw = Compression::default();
        for accept in [Some("gzip"), None] {
            let (placeholder, responder) = Response::deferred();
            let handler = std::sync::Mutex::new(Some(placeholder));
            let handler =
                move |_: &mut Request| handler.lock().expect("lock").take().expect("called once");
            let mut req = Request::new(Method::Post, "/items");
            if let Some(accept) = accept {
                req.headers.append("Accept-Encoding", accept);
            }
            let mut placeholder = mw.call(&mut req, &handler);
            assert!(
                placeholder.headers.get("vary").is_none(),
                "decided at completion"
            );
            drop(req);
            let answer = Response::bytes(201, "application/json", big.clone().into_bytes());
            responder.complete(answer);
            let deferred = Deferred::take(&mut placeholder).expect("still deferred");
            let sent = deferred
                .attach(placeholder, Box::new(|_| panic!("already complete")))
                .expect("already complete");
            assert_eq!(sent.status, 201);
            assert_eq!(sent.headers.get("vary"), Some("Accept-Encoding"));
            let body = sent.body.as_bytes().expect("bytes");
            match accept {
                Some(_) => {
                    assert_eq!(sent.headers.get("content-encoding"), Some("gzip"));
                    assert_eq!(
                        deflate::gunzip(body, 1 << 20).expect("gunzip"),
                        big.as_bytes()
                    );
                }
                None => assert_eq!(body, big.as_bytes()),
            }
        }
    }

    /// A handler answering the whole file at `path`, as a file region, as text.
    fn whole_file(path: std::path::PathBuf) -> impl Fn(&mut Request) -> Response {
        move |_: &mut Request| {
            let file = std::fs::File::open(&path).expect("open");
            let len = file.metadata().expect("metadata").len();
            Response::new(200)
                .with_header("Content-Type", "text/plain")
                .with_body(Body::File {
                    file,
                    offset: 0,
                    len,
                })
        }
    }

    /// A file region to compress is handed over as a deferred answer, complete already (so
    /// a worker reads and deflates it, not a reactor); one that is not compressed stays an
    /// ordinary answer.
    #[test]
    fn a_file_region_to_compress_is_handed_over() {
        use crate::http::deferred::Deferred;
        let path = std::env::temp_dir().join(format!("lithair-gzip-file-{}", std::process::id()));
        let text = "a static text file, compressible\n".repeat(100);
        std::fs::write(&path, &text).expect("write");
        let handler = whole_file(path.clone());
        let mw = Compression::default();
        let mut plain_req = Request::new(Method::Get, "/");
        let plain = mw.call(&mut plain_req, &handler);
        assert!(!plain.is_deferred(), "nothing to deflate");
        assert!(matches!(plain.body, Body::File { .. }));
        let mut req = Request::new(Method::Get, "/");
        req.headers.append("Accept-Encoding", "gzip");
        let mut placeholder = mw.call(&mut req, &handler);
        assert!(
            placeholder.is_deferred(),
            "deflated where a worker finishes it"
        );
        let deferred = Deferred::take(&mut placeholder).expect("deferred");
        let sent = deferred
            .attach(placeholder, Box::new(|_| panic!("complete already")))
            .expect("complete already");
        assert_eq!(sent.headers.get("content-encoding"), Some("gzip"));
        let packed = sent.body.as_bytes().expect("bytes");
        assert_eq!(
            deflate::gunzip(packed, 1 << 20).expect("gunzip"),
            text.as_bytes()
        );
        let _ = std::fs::remove_file(&path);
    }

    /// A body with an `ETag`, or static, is deflated once and then sent from the cache; one
    /// without (a list that changes at every write) each time; none with a zero budget.
    #[test]
    fn bodies_meant_to_be_reused_are_deflated_once() {
        let text = "a page worth keeping, compressible\n".repeat(100);
        let tagged = {
            let text = text.clone();
            move |_: &mut Request| Response::text(200, text.clone()).with_header("ETag", "\"7\"")
        };
        let untagged = {
            let text = text.clone();
            move |_: &mut Request| Response::text(200, text.clone())
        };
        static PAGE: &[u8] = &[b'x'; 5000];
        let fixed = |_: &mut Request| Response::static_bytes(200, "text/plain", PAGE);
        let send = |mw: &Compression, handler: &dyn Handler, expected: &[u8]| {
            let mut req = Request::new(Method::Get, "/");
            req.headers.append("Accept-Encoding", "gzip");
            let r = mw.call(&mut req, handler);
            assert_eq!(r.headers.get("content-encoding"), Some("gzip"));
            let packed = r.body.as_bytes().expect("bytes");
            assert_eq!(deflate::gunzip(packed, 1 << 20).expect("gunzip"), expected);
        };
        let made_and_hits = |mw: &Compression| {
            let stats = mw.cache_stats();
            (stats.made, stats.hits)
        };
        let mw = Compression::default();
        for _ in 0..3 {
            send(&mw, &tagged, text.as_bytes());
        }
        assert_eq!(made_and_hits(&mw), (1, 2));
        for _ in 0..3 {
            send(&mw, &untagged, text.as_bytes());
        }
        assert_eq!(made_and_hits(&mw), (4, 2));
        for _ in 0..3 {
            send(&mw, &fixed, PAGE);
        }
        assert_eq!(made_and_hits(&mw), (5, 4));
        let uncached = Compression::default().cache_bytes(0);
        for _ in 0..3 {
            send(&uncached, &tagged, text.as_bytes());
        }
        assert_eq!(made_and_hits(&uncached), (3, 0));
    }

    /// A whole file left unchanged is read and deflated once, by a worker; sent again, its
    /// variant is answered at once, where the route runs, and the file is not read.
    #[test]
    fn a_settled_file_is_answered_from_the_cache_without_a_worker() {
        use crate::http::deferred::Deferred;
        let path = std::env::temp_dir().join(format!("lithair-gzip-kept-{}", std::process::id()));
        let text = "a settled static file, compressible\n".repeat(2_000);
        std::fs::write(&path, &text).expect("write");
        std::thread::sleep(super::super::FILE_SETTLED_AFTER + Duration::from_millis(100));
        let handler = whole_file(path.clone());
        let mw = Compression::default();
        let gzip_request = || {
            let mut req = Request::new(Method::Get, "/");
            req.headers.append("Accept-Encoding", "gzip");
            req
        };
        let mut first = mw.call(&mut gzip_request(), &handler);
        assert!(first.is_deferred(), "the first is deflated by a worker");
        let deferred = Deferred::take(&mut first).expect("deferred");
        let first = deferred
            .attach(first, Box::new(|_| panic!("complete already")))
            .expect("complete already");
        let again = mw.call(&mut gzip_request(), &handler);
        assert!(!again.is_deferred(), "kept: answered at once");
        for sent in [&first, &again] {
            assert_eq!(sent.headers.get("content-encoding"), Some("gzip"));
            let packed = sent.body.as_bytes().expect("bytes");
            assert_eq!(
                deflate::gunzip(packed, 1 << 22).expect("gunzip"),
                text.as_bytes()
            );
        }
        let stats = mw.cache_stats();
        assert_eq!((stats.made, stats.hits, stats.entries), (1, 1, 1));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn compresses_large_text_only_when_accepted() {
        let big = "hello compression ".repeat(200);
        let body = big.clone();
        let handler =
            move |_: &mut Request| Response::text(200, body.clone()).with_header("ETag", "\"v1\"");
        let mw = Compression::default();
        let mut req = Request::new(Method::Get, "/");
        req.headers.append("Accept-Encoding", "gzip, br");
        let r = mw.call(&mut req, &handler);
        assert_eq!(r.headers.get("content-encoding"), Some("gzip"));
        assert_eq!(r.headers.get("vary"), Some("Accept-Encoding"));
        assert_eq!(r.headers.get("etag"), Some("\"v1-gzip\""));
        let packed = r.body.as_bytes().expect("bytes");
        assert_eq!(
            deflate::gunzip(packed, 1 << 20).expect("gunzip"),
            big.as_bytes()
        );
        let mut plain_req = Request::new(Method::Get, "/");
        let r = mw.call(&mut plain_req, &handler);
        assert_eq!(r.headers.get("content-encoding"), None);
        assert_eq!(r.headers.get("vary"), Some("Accept-Encoding"));
        let small = |_: &mut Request| Response::text(200, "tiny");
        assert_eq!(mw.call(&mut req, &small).headers.get("vary"), None);
        let png = |_: &mut Request| Response::bytes(200, "image/png", vec![0; 5000]);
        assert_eq!(
            mw.call(&mut req, &png).headers.get("content-encoding"),
            None
        );
    }
}
