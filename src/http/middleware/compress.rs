//! gzip response compression with our own deflate, for compressible types above a threshold
//! when `Accept-Encoding` allows it; always `Vary: Accept-Encoding` when the choice mattered.

use super::Middleware;
use crate::crypto::deflate;
use crate::http::handler::Handler;
use crate::http::mime;
use crate::http::problem::Problem;
use crate::http::request::Request;
use crate::http::response::{Body, Response};
use std::io::{Read, Seek, SeekFrom};

/// Bodies smaller than this are sent as they are: gzip's 18 bytes of framing and the CPU are
/// not worth it.
pub const COMPRESS_BYTES_MIN: usize = 1024;
/// Largest file region read into memory to compress; bigger files go out uncompressed.
pub const COMPRESS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The gzip middleware; see the module docs.
#[derive(Debug, Clone)]
pub struct Compression {
    bytes_min: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            bytes_min: COMPRESS_BYTES_MIN,
        }
    }
}

impl Compression {
    /// Compresses bodies of at least `bytes_min` bytes.
    pub fn min_bytes(bytes_min: usize) -> Self {
        Self { bytes_min }
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

fn read_region(file: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

impl Middleware for Compression {
    fn call(&self, req: &mut Request, next: &dyn Handler) -> Response {
        let accepts = req.headers.get_all("accept-encoding").any(accepts_gzip);
        let mut response = next.call(req);
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
        if !eligible || !fits || size < self.bytes_min as u64 {
            return response;
        }
        response.headers.append_static("Vary", "Accept-Encoding");
        if !accepts {
            return response;
        }
        let plain = match std::mem::replace(&mut response.body, Body::Empty) {
            Body::Bytes(b) => b,
            Body::Static(b) => b.to_vec(),
            Body::File {
                mut file,
                offset,
                len,
            } => match read_region(&mut file, offset, len) {
                Ok(b) => b,
                Err(e) => {
                    return Problem::internal()
                        .with_detail(format!("reading file: {e}"))
                        .into_response()
                }
            },
            other => unreachable!("checked above: {other:?}"),
        };
        let packed = deflate::gzip(&plain);
        if packed.len() >= plain.len() {
            response.body = Body::Bytes(plain);
            return response;
        }
        response.body = Body::Bytes(packed);
        response.headers.insert("Content-Encoding", "gzip");
        if let Some(etag) = response.headers.get("etag").map(gzip_etag) {
            response.headers.insert("ETag", etag);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Method;

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
