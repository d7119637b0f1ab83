//! Static files: `Router::static_dir("/assets", "./public")`.
//!
//! Owns: mapping URL segments to files under one root with no way out (no `..`, no encoded
//! separators, no dotfiles, no symlink leading outside), MIME types, validators (`ETag`,
//! `Last-Modified`, 304), ranges (206, 416) and `Cache-Control`; and where a request runs.
//! Where the kernel can open and read without waiting for the disk (Linux 5.12+: `openat2`
//! with `RESOLVE_CACHED`, `preadv2` with `RWF_NOWAIT`), the route is inline: the reactor
//! answers what the kernel has cached, and hands a request that would wait (a path or bytes
//! not cached, an absolute symlink to check) to threads of this directory's own
//! ([`DISK_WAIT_THREADS`]), which answer it deferred. Elsewhere everything runs on a worker.
//! Must not: list directories, or read more than `FILE_BODY_BUFFERED_BYTES_MAX` of a file
//! into memory (a larger body is a `Body::File` region the server sends itself, by
//! `sendfile`).
//!
//! Architecture invariant: every file opened is beneath the root: resolved there by the kernel
//! (`RESOLVE_BENEATH`), or by its canonical form of root + checked segments, which starts with
//! the canonical root. A refused path answers 404, the same as a missing one, so probing
//! reveals nothing.

use crate::http::conditional::{self, RangeOutcome};
use crate::http::handler::Handler;
use crate::http::httpdate;
use crate::http::limits::FILE_BODY_BUFFERED_BYTES_MAX;
use crate::http::mime;
use crate::http::percent;
use crate::http::pool::{Job, Pool};
use crate::http::problem::Problem;
use crate::http::request::{Method, Request};
use crate::http::response::{file_read_failed, read_file_region, Body, Response};
use crate::http::router::RestSegments;
use crate::sys;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default `Cache-Control`: caches may keep the file but must revalidate (cheap with ETag).
pub const DEFAULT_CACHE_CONTROL: &str = "no-cache";
/// File served for a directory.
pub const INDEX_FILE: &str = "index.html";

/// Threads that serve what the reactor could not without waiting for the disk (a path or
/// bytes not cached), per [`StaticDir`], started on the first such request.
pub const DISK_WAIT_THREADS: usize = 4;
/// Requests queued for those threads at most; past it a request is answered 503.
pub const DISK_WAIT_QUEUE_MAX: usize = 1024;

/// Serves the files under one directory; see the module docs.
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
    /// The root, open: paths are resolved beneath it by the kernel (`sys::fs::open_beneath`).
    root_dir: Arc<File>,
    cache_control: String,
    /// Whether this kernel opens and reads without waiting when it can (`RESOLVE_CACHED`,
    /// `RWF_NOWAIT`): then requests run on the reactor, and only those that would wait go to
    /// `disk_wait`.
    inline: bool,
    /// The threads for requests that must wait for the disk (`None` inside: they could not
    /// be started, such requests answer 503).
    disk_wait: Arc<OnceLock<Option<Pool>>>,
}

/// What `open` found: the file, its metadata and the path whose name gives its type; `None`
/// for 404.
type Opened = Option<(File, std::fs::Metadata, PathBuf)>;

/// Where a request is served: on a thread that must not wait for the disk (a reactor), or on
/// one that may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Never,
    Allowed,
}

/// Why `serve` stopped before an answer.
enum Refusal {
    /// The answer is this problem (404, 405, 416, 500).
    Problem(Problem),
    /// The answer needs the disk, and this thread must not wait for it.
    WouldWait,
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Refusal {
        Refusal::Problem(problem)
    }
}

impl StaticDir {
    /// Serves `root`, which must be an existing directory (resolved once, here).
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = std::fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_dir = Arc::new(File::open(&root)?);
        // The root was just opened, so a kernel with `RESOLVE_CACHED` resolves "." from cache.
        let inline = matches!(
            sys::fs::open_beneath_cached(&root_dir, Path::new(".")),
            Ok(Some(_))
        );
        Ok(Self {
            root,
            root_dir,
            cache_control: DEFAULT_CACHE_CONTROL.to_string(),
            inline,
            disk_wait: Arc::new(OnceLock::new()),
        })
    }

    /// Sets `Cache-Control` (e.g. `public, max-age=31536000, immutable` for hashed names).
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = value.to_string();
        self
    }

    /// The path below the root that `segments` name (a directory's index for a trailing `/`),
    /// or `None` when a segment is refused.
    fn relative_path(segments: &[String]) -> Option<PathBuf> {
        let (last, dirs) = segments
            .split_last()
            .map_or((None, segments), |(l, d)| (Some(l), d));
        if !dirs.iter().all(|s| is_safe_segment(s)) {
            return None;
        }
        let mut path: PathBuf = dirs.iter().collect();
        match last {
            Some(name) if !name.is_empty() => {
                if !is_safe_segment(name) {
                    return None;
                }
                path.push(name);
            }
            // `/assets/` or `/assets/dir/`: the directory's index.
            _ => path.push(INDEX_FILE),
        }
        Some(path)
    }

    /// The file a request maps to, or `None` (refused or missing: both answer 404), checked
    /// by its canonical path (every symlink resolved) starting with the canonical root.
    pub fn resolve(&self, segments: &[String]) -> Option<PathBuf> {
        let path = self.root.join(Self::relative_path(segments)?);
        let mut canonical = std::fs::canonicalize(&path).ok()?;
        if canonical.is_dir() {
            canonical = std::fs::canonicalize(canonical.join(INDEX_FILE)).ok()?;
        }
        // Symlinks are resolved by canonicalize: one pointing outside lands here and is refused.
        if !canonical.starts_with(&self.root) || !canonical.is_file() {
            return None;
        }
        Some(canonical)
    }

    /// Opens the file `segments` name: its file, its metadata (a regular file's) and the path
    /// whose name gives its type; `None` answers 404. The kernel resolves the path beneath the
    /// root (`sys::fs::open_beneath`), so no component can be swapped for a way out between a
    /// check and the open; where it cannot (no `openat2`) and for an absolute symlink (which
    /// it does not follow there), [`StaticDir::resolve`] checks the canonical path instead.
    /// With `Wait::Never`, only a path the kernel has cached is opened: anything else, the
    /// canonical-path check included, is `WouldWait`.
    fn open(&self, segments: &[String], wait: Wait) -> Result<Opened, Refusal> {
        let Some(mut relative) = Self::relative_path(segments) else {
            return Ok(None);
        };
        let open_at = |relative: &Path| match wait {
            Wait::Never => sys::fs::open_beneath_cached(&self.root_dir, relative),
            Wait::Allowed => sys::fs::open_beneath(&self.root_dir, relative),
        };
        let mut opened = open_at(&relative);
        if let Ok(Some(dir)) = &opened {
            match dir.metadata() {
                Ok(meta) if meta.is_dir() => {
                    relative.push(INDEX_FILE);
                    opened = open_at(&relative);
                }
                Ok(_) => {}
                Err(_) => return Ok(None),
            }
        }
        // An absolute symlink or a way out (`None`), or no `openat2`: the canonical-path check,
        // which reads links and directories, so not on a thread that must not wait.
        let check_canonical = match &opened {
            Ok(Some(_)) => false,
            Ok(None) => true,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::WouldBlock
            ),
        };
        if check_canonical && wait == Wait::Never {
            return Err(Refusal::WouldWait);
        }
        let (file, path) = match opened {
            Ok(Some(file)) => (file, self.root.join(relative)),
            _ if check_canonical => match self.open_checked(segments) {
                Some(opened) => opened,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let Ok(meta) = file.metadata() else {
            return Ok(None);
        };
        Ok(meta.is_file().then_some((file, meta, path)))
    }

    /// The body for `len` bytes of `file` from `offset`: read into memory when it is small
    /// enough to go out with the head (`FILE_BODY_BUFFERED_BYTES_MAX`), else the file region,
    /// which the server sends itself (by `sendfile`, on a stream thread, which may wait; a
    /// compression layer hands a file region it deflates to a worker). With `Wait::Never`
    /// only bytes in the page cache are read; others are `WouldWait`.
    fn body(file: File, offset: u64, len: u64, wait: Wait) -> Result<Body, Refusal> {
        if len > FILE_BODY_BUFFERED_BYTES_MAX {
            return Ok(Body::File { file, offset, len });
        }
        match wait {
            Wait::Allowed => Ok(Body::Bytes(read_file_region(&file, offset, len)?)),
            Wait::Never => {
                let mut bytes = vec![0u8; len as usize];
                match sys::fs::read_cached(&file, offset, &mut bytes) {
                    Ok(read) if read == bytes.len() => Ok(Body::Bytes(bytes)),
                    // Partly cached, or the file shrank: a thread that may wait finds out.
                    Ok(_) => Err(Refusal::WouldWait),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported
                        ) =>
                    {
                        Err(Refusal::WouldWait)
                    }
                    Err(e) => Err(file_read_failed(e).into()),
                }
            }
        }
    }

    /// Serves `req` on one of the threads that may wait for the disk: the answer comes as a
    /// deferred response. A request the queue has no room for is answered 503 (its responder
    /// dropped unanswered).
    fn serve_later(&self, req: &Request) -> Response {
        let mut copy = Request::new(req.method.clone(), &req.target);
        copy.headers = req.headers.clone();
        if let Some(rest) = req.extensions.get::<RestSegments>() {
            copy.extensions.insert(RestSegments(rest.0.clone()));
        }
        let (placeholder, responder) = Response::deferred();
        let this = self.clone();
        let job: Job = Box::new(move || {
            let answer = match this.serve(&copy, Wait::Allowed) {
                Ok(response) => response,
                Err(Refusal::Problem(problem)) => problem.into_response(),
                Err(Refusal::WouldWait) => unreachable!("a thread that may wait serves it all"),
            };
            responder.complete(answer);
        });
        let threads = self.disk_wait.get_or_init(|| {
            Pool::named("disk", DISK_WAIT_THREADS, DISK_WAIT_QUEUE_MAX)
                .inspect_err(|e| {
                    eprintln!("lithair http: static files cannot wait for the disk: {e}")
                })
                .ok()
        });
        if let Some(threads) = threads {
            // Refused: the job and its responder are dropped, which answers 503.
            let _ = threads.try_submit(job);
        }
        placeholder
    }

    /// Opens the file [`StaticDir::resolve`] allows, by its canonical path.
    fn open_checked(&self, segments: &[String]) -> Option<(File, PathBuf)> {
        let path = self.resolve(segments)?;
        let file = File::open(&path).ok()?;
        Some((file, path))
    }

    fn segments(req: &Request) -> Result<Vec<String>, Problem> {
        if let Some(rest) = req.extensions.get::<RestSegments>() {
            return Ok(rest.0.clone());
        }
        // Used outside a router: the whole path is relative to the root.
        let body = req.path.strip_prefix('/').unwrap_or(&req.path);
        body.split('/')
            .map(|s| {
                percent::decode(s)
                    .map(|c| c.into_owned())
                    .map_err(|e| Problem::bad_request(format!("path: {e}")))
            })
            .collect()
    }

    fn serve(&self, req: &Request, wait: Wait) -> Result<Response, Refusal> {
        if !matches!(req.method, Method::Get | Method::Head) {
            return Err(Problem::method_not_allowed("GET, HEAD").into());
        }
        let segments = Self::segments(req)?;
        let not_found = || Problem::not_found("no such file").with_instance(req.path.clone());
        let (file, meta, path) = self.open(&segments, wait)?.ok_or_else(not_found)?;
        let len = meta.len();
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let now = SystemTime::now();
        let etag = conditional::etag_for(len, modified);
        // A modification time in the future (a skewed clock, an unpacked archive) is sent as
        // now (RFC 9110 §8.8.2.1 MUST): sent as is, a client revalidating with it would get
        // 304 for every change made before that time comes. The comparisons below use the
        // true time, so such a file is never "not modified" since a date before it.
        let mut response = Response::new(200)
            .with_header("ETag", etag.as_str())
            .with_header("Last-Modified", httpdate::format(modified.min(now)))
            .with_header("Cache-Control", self.cache_control.as_str());
        let unmodified = match req.header("if-none-match") {
            Some(tags) => conditional::none_match(tags, &etag),
            None => req
                .header("if-modified-since")
                .is_some_and(|d| conditional::not_modified_since(d, modified)),
        };
        let content_type = mime::for_path(&path.to_string_lossy());
        if unmodified {
            // The type and length the 200 would carry (a 304 may carry the 200's length, RFC
            // 9110 §8.6): a gzip layer in front decides from them whether the 200 would have
            // varied on Accept-Encoding, so the 304 says so too (RFC 9110 §15.4.5).
            response.status = 304;
            response.headers.insert("Content-Type", content_type);
            response.headers.insert("Content-Length", len.to_string());
            return Ok(response);
        }
        response.headers.insert("Content-Type", content_type);
        response.headers.insert("Accept-Ranges", "bytes");
        let range_applies = req
            .header("if-range")
            .is_none_or(|v| conditional::if_range_matches(v, &etag, modified, now));
        let outcome = match req.header("range") {
            Some(range) if range_applies => conditional::range(range, len),
            _ => RangeOutcome::Full,
        };
        match outcome {
            RangeOutcome::Full => response.body = Self::body(file, 0, len, wait)?,
            RangeOutcome::Partial { start, len: part } => {
                response.status = 206;
                let end = start + part - 1;
                response
                    .headers
                    .insert("Content-Range", format!("bytes {start}-{end}/{len}"));
                response.body = Self::body(file, start, part, wait)?;
            }
            RangeOutcome::Unsatisfiable => {
                let mut refused = Problem::new(416)
                    .with_detail(format!("file has {len} bytes"))
                    .into_response();
                refused
                    .headers
                    .insert("Content-Range", format!("bytes */{len}"));
                return Ok(refused);
            }
        }
        Ok(response)
    }
}

/// A segment that names an entry inside its directory and nothing else.
fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && (!segment.starts_with('.') || segment == ".well-known")
        && !segment.contains(['/', '\\', '\0', ':'])
        && !segment.bytes().any(|b| b.is_ascii_control())
}

impl Handler for StaticDir {
    /// On a kernel that can open and read without waiting (see `inline`), tries that first,
    /// on the reactor, and hands what would wait to its own threads; elsewhere serves it all
    /// here (a worker).
    fn call(&self, req: &mut Request) -> Response {
        let wait = if self.inline {
            Wait::Never
        } else {
            Wait::Allowed
        };
        match self.serve(req, wait) {
            Ok(response) => response,
            Err(Refusal::Problem(problem)) => problem.into_response(),
            Err(Refusal::WouldWait) => self.serve_later(req),
        }
    }

    fn is_inline(&self, _req: &Request) -> bool {
        self.inline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response the client gets: this one, or a deferred one's once completed.
    fn answer(mut response: Response) -> Response {
        use crate::http::deferred::Deferred;
        let Some(deferred) = Deferred::take(&mut response) else {
            return response;
        };
        let (sender, answered) = std::sync::mpsc::channel();
        let deliver = Box::new(move |r| sender.send(r).map_err(drop).expect("receiver"));
        deferred.attach(response, deliver).unwrap_or_else(|| {
            answered
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("answered")
        })
    }

    fn body_text(response: &Response) -> String {
        String::from_utf8_lossy(response.body.as_bytes().unwrap_or_default()).into_owned()
    }

    /// On a kernel that opens and reads without waiting, a cached file is answered at once
    /// (on the reactor, its bytes read with the head); what needs the canonical-path check
    /// (an absolute symlink) is answered deferred, from a thread that may wait; both answers
    /// are what a thread that may wait gives.
    #[test]
    fn the_reactor_answers_what_is_cached_and_hands_the_rest_over() {
        let base =
            std::env::temp_dir().join(format!("lithair-static-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("mkdir");
        std::fs::write(base.join("data.json"), "{\"a\":1}").expect("write");
        std::os::unix::fs::symlink(base.join("data.json"), base.join("alias.json"))
            .expect("symlink");
        let dir = StaticDir::new(&base).expect("a directory");
        let get = |path: &str| Request::new(Method::Get, path);
        let waited = dir
            .serve(&get("/data.json"), Wait::Allowed)
            .ok()
            .expect("served");
        assert_eq!(
            (waited.status, body_text(&waited)),
            (200, "{\"a\":1}".into())
        );
        if !dir.inline {
            eprintln!("this kernel cannot open without waiting: nothing more to check");
            return;
        }
        assert!(dir.is_inline(&get("/data.json")));
        let now = dir.call(&mut get("/data.json"));
        assert!(!now.is_deferred(), "cached: answered at once");
        assert_eq!(now.headers, waited.headers);
        assert_eq!(body_text(&now), body_text(&waited));
        // A path never looked up may need the disk to be found missing: 404 either way.
        assert_eq!(answer(dir.call(&mut get("/missing.json"))).status, 404);
        // Past what is read with the head: a file region, answered at once (a stream thread
        // sends it).
        std::fs::write(base.join("big.txt"), "x".repeat(40_000)).expect("write");
        let _ = dir.call(&mut get("/big.txt"));
        let big = dir.call(&mut get("/big.txt"));
        assert!(!big.is_deferred(), "its path is cached by now");
        assert!(
            matches!(big.body, Body::File { len: 40_000, .. }),
            "{:?}",
            big.body
        );
        let later = dir.call(&mut get("/alias.json"));
        assert!(
            later.is_deferred(),
            "an absolute symlink is checked where waiting is allowed"
        );
        let later = answer(later);
        assert_eq!((later.status, body_text(&later)), (200, "{\"a\":1}".into()));
        // It ran on this directory's disk-wait threads, named so in a thread list.
        let threads = std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.starts_with("lithair-disk-"))
                    .count()
            })
            .unwrap_or(DISK_WAIT_THREADS);
        assert_eq!(threads, DISK_WAIT_THREADS);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn segment_rules() {
        for bad in [
            "", ".", "..", ".env", ".git", "a/b", "a\\b", "c:", "x\0y", "a\nb",
        ] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
        for good in ["a", "index.html", ".well-known", "a..b", "x y"] {
            assert!(is_safe_segment(good), "{good:?}");
        }
    }
}
