//! Content types by file extension, and which types are worth compressing.
//!
//! Owns: the extension table used by static files.
//! Must not: sniff file contents (with `X-Content-Type-Options: nosniff`, the table is the truth).

use std::borrow::Cow;

/// Type for an unknown extension: browsers download it instead of rendering it.
pub const DEFAULT_TYPE: &str = "application/octet-stream";

const TABLE: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("xml", "application/xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("wasm", "application/wasm"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("wav", "audio/wav"),
];

/// Content type for a file name, by its extension (case-insensitive).
pub fn for_path(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return DEFAULT_TYPE;
    };
    TABLE
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or(DEFAULT_TYPE, |(_, t)| t)
}

/// The media type of a `Content-Type` value without its parameters, lower-cased
/// (`Text/HTML; charset=utf-8` gives `text/html`; RFC 9110 §8.3.1).
pub fn essence(content_type: &str) -> Cow<'_, str> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // Borrowed in the usual case (already lower case): this runs per response and request.
    if essence.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(essence.to_ascii_lowercase())
    } else {
        Cow::Borrowed(essence)
    }
}

/// Whether a response of this content type shrinks under gzip (text, JSON, XML, SVG, wasm);
/// already-compressed images, fonts, archives and media do not.
pub fn is_compressible(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            &*essence,
            "application/json"
                | "application/problem+json"
                | "application/xml"
                | "application/javascript"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        assert_eq!(for_path("/a/b/app.WASM"), "application/wasm");
        assert_eq!(for_path("font.woff2"), "font/woff2");
        assert_eq!(for_path("feed.rss"), "application/rss+xml");
        assert_eq!(for_path("index.html"), "text/html; charset=utf-8");
        assert_eq!(for_path("logo.svg"), "image/svg+xml");
        assert_eq!(for_path("README"), DEFAULT_TYPE);
        assert_eq!(for_path("dir.d/noext"), DEFAULT_TYPE);
        assert_eq!(for_path("archive.tar.unknown"), DEFAULT_TYPE);
    }

    #[test]
    fn essence_drops_parameters_and_case() {
        assert_eq!(essence("Text/HTML; charset=utf-8"), "text/html");
        assert_eq!(essence(" application/json "), "application/json");
        assert_eq!(essence(""), "");
    }

    #[test]
    fn compressible_types() {
        assert!(is_compressible("text/html; charset=utf-8"));
        assert!(is_compressible("application/problem+json"));
        assert!(is_compressible("image/svg+xml"));
        assert!(!is_compressible("image/png"));
        assert!(!is_compressible("font/woff2"));
        assert!(!is_compressible("application/gzip"));
    }
}
