//! Static files: `Router::static_dir("/assets", "./public")`.
//!
//! Owns: mapping URL segments to files under one root with no way out (no `..`, no encoded
//! separators, no dotfiles, no symlink leading outside), MIME types, validators (`ETag`,
//! `Last-Modified`, 304), ranges (206, 416) and `Cache-Control`.
//! Must not: list directories, or read files into memory (bodies are `Body::File` regions the
//! server sends itself: a small one read by the worker, a large one by `sendfile`).
//!
//! Architecture invariant: every path opened is the canonical form of root + checked segments,
//! and starts with the canonical root. A refused path answers 404, the same as a missing one,
//! so probing reveals nothing.

use crate::http::conditional::{self, RangeOutcome};
use crate::http::handler::Handler;
use crate::http::httpdate;
use crate::http::mime;
use crate::http::percent;
use crate::http::problem::Problem;
use crate::http::request::{Method, Request};
use crate::http::response::{Body, Response};
use crate::http::router::RestSegments;
use crate::sys;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default `Cache-Control`: caches may keep the file but must revalidate (cheap with ETag).
pub const DEFAULT_CACHE_CONTROL: &str = "no-cache";
/// File served for a directory.
pub const INDEX_FILE: &str = "index.html";

/// Serves the files under one directory; see the module docs.
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
    /// The root, open: paths are resolved beneath it by the kernel (`sys::fs::open_beneath`).
    root_dir: Arc<File>,
    cache_control: String,
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
        Ok(Self {
            root,
            root_dir,
            cache_control: DEFAULT_CACHE_CONTROL.to_string(),
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
    fn open(&self, segments: &[String]) -> Option<(File, std::fs::Metadata, PathBuf)> {
        let mut relative = Self::relative_path(segments)?;
        let mut opened = sys::fs::open_beneath(&self.root_dir, &relative);
        if let Ok(Some(dir)) = &opened {
            if dir.metadata().ok()?.is_dir() {
                relative.push(INDEX_FILE);
                opened = sys::fs::open_beneath(&self.root_dir, &relative);
            }
        }
        let (file, path) = match opened {
            Ok(Some(file)) => (file, self.root.join(relative)),
            Ok(None) => self.open_checked(segments)?,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.open_checked(segments)?,
            Err(_) => return None,
        };
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta, path))
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

    fn serve(&self, req: &Request) -> Result<Response, Problem> {
        if !matches!(req.method, Method::Get | Method::Head) {
            return Err(Problem::method_not_allowed("GET, HEAD"));
        }
        let segments = Self::segments(req)?;
        let not_found = || Problem::not_found("no such file").with_instance(req.path.clone());
        let (file, meta, path) = self.open(&segments).ok_or_else(not_found)?;
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
            RangeOutcome::Full => {
                response.body = Body::File {
                    file,
                    offset: 0,
                    len,
                }
            }
            RangeOutcome::Partial { start, len: part } => {
                response.status = 206;
                let end = start + part - 1;
                response
                    .headers
                    .insert("Content-Range", format!("bytes {start}-{end}/{len}"));
                response.body = Body::File {
                    file,
                    offset: start,
                    len: part,
                };
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
    fn call(&self, req: &mut Request) -> Response {
        self.serve(req).unwrap_or_else(Problem::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
