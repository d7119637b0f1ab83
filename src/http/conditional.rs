//! Validators and ranges (RFC 9110 §8.8, §13, §14): `ETag`, `If-None-Match`,
//! `If-Modified-Since`, `Range` and `If-Range`, as pure functions over header text.
//!
//! Owns: deciding between 200, 206, 304 and 416 for a representation of known length and
//! validators.
//! Must not: touch files or build responses (`static_files` does both).

use crate::http::httpdate;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most ranges looked at in one `Range` header; a request for more is served whole
/// (RFC 9110 §14.2 lets a server ignore `Range`), which also defeats overlapping-range abuse.
pub const RANGES_MAX: usize = 1;

/// A strong entity tag from a file's length and modification time, quoted: `"1a2b-5f3e1c"`.
pub fn etag_for(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// Weak comparison (RFC 9110 §8.8.3.2): equal opaque tags, ignoring `W/`.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// Whether `If-None-Match` (one or more header values) matches `etag`, so a GET may answer 304.
/// The gzip middleware's variant of the tag (`"x-gzip"` for `"x"`) matches too: a client that
/// received the compressed representation revalidates with it.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| {
        let plain = tag.strip_suffix("-gzip\"").map(|open| format!("{open}\""));
        tag == "*" || weak_eq(tag, etag) || plain.is_some_and(|p| weak_eq(&p, etag))
    })
}

/// Whether the resource is unmodified since the `If-Modified-Since` date (compared in whole
/// seconds, the header's resolution). An unparsable date means "modified".
pub fn not_modified_since(if_modified_since: &str, modified: SystemTime) -> bool {
    let Some(since) = httpdate::parse(if_modified_since.trim()) else {
        return false;
    };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs(modified) <= secs(since)
}

/// The outcome of a `Range` header against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No usable range: send all of it with 200.
    Full,
    /// Send `len` bytes from `start` with 206 and `Content-Range: bytes start-end/total`.
    Partial {
        /// First byte offset.
        start: u64,
        /// Number of bytes (at least 1).
        len: u64,
    },
    /// No range overlaps the representation: 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

/// Evaluates `Range: bytes=...` (only one range; see [`RANGES_MAX`]). Syntax errors and other
/// units give `Full`, as RFC 9110 §14.2 requires of an invalid header.
pub fn range(header: &str, len: u64) -> RangeOutcome {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.split(',').count() > RANGES_MAX {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end_inclusive) = match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                return RangeOutcome::Unsatisfiable;
            }
            (len.saturating_sub(suffix), len - 1)
        }
        (false, Some(start), None) if last.trim().is_empty() => (start, len.saturating_sub(1)),
        (false, Some(start), Some(end)) if end >= start => (start, end.min(len.saturating_sub(1))),
        _ => return RangeOutcome::Full,
    };
    if start >= len {
        return RangeOutcome::Unsatisfiable;
    }
    assert!(start <= end_inclusive && end_inclusive < len);
    RangeOutcome::Partial {
        start,
        len: end_inclusive - start + 1,
    }
}

/// Whether `If-Range` (an entity tag or a date) still matches, so `Range` applies. A weak tag
/// never matches (RFC 9110 §13.1.5 requires a strong comparison), and neither does a date
/// unless `Last-Modified` is a strong validator: the file last changed at least one second
/// before `now` (RFC 9110 §8.8.2.2). A file rewritten within the second its date names keeps
/// that date, so a range of the new bytes would have been spliced onto the old ones.
pub fn if_range_matches(if_range: &str, etag: &str, modified: SystemTime, now: SystemTime) -> bool {
    let value = if_range.trim();
    if value.starts_with('"') {
        return value == etag;
    }
    if value.starts_with("W/") {
        return false;
    }
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let strong = secs(modified) < secs(now);
    strong && httpdate::parse(value).is_some_and(|date| secs(modified) == secs(date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn range_cases() {
        use RangeOutcome::*;
        let cases: &[(&str, u64, RangeOutcome)] = &[
            ("bytes=0-0", 10, Partial { start: 0, len: 1 }),
            ("bytes=2-5", 10, Partial { start: 2, len: 4 }),
            ("bytes=2-", 10, Partial { start: 2, len: 8 }),
            ("bytes=-3", 10, Partial { start: 7, len: 3 }),
            ("bytes=-30", 10, Partial { start: 0, len: 10 }),
            ("bytes=5-100", 10, Partial { start: 5, len: 5 }),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=5-2", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("items=0-1", 10, Full),
            ("bytes=", 10, Full),
            ("bytes=99999999999999999999999-", 10, Full),
        ];
        for (header, len, expected) in cases {
            assert_eq!(range(header, *len), *expected, "{header} of {len}");
        }
    }

    #[test]
    fn validators() {
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_500);
        let tag = etag_for(42, t);
        assert!(none_match(&tag, &tag));
        assert!(none_match(&format!("\"x\", W/{tag}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("\"other\"", &tag));
        let gzip_variant = format!("{}-gzip\"", tag.trim_end_matches('"'));
        assert!(none_match(&gzip_variant, &tag), "{gzip_variant}");
        assert!(!none_match("\"other-gzip\"", &tag));
        assert!(not_modified_since("Sun, 06 Nov 1994 08:49:37 GMT", t));
        assert!(!not_modified_since("Sun, 06 Nov 1994 08:49:36 GMT", t));
        assert!(!not_modified_since("garbage", t));
        let later = t + Duration::from_secs(1);
        assert!(if_range_matches(&tag, &tag, t, t));
        assert!(!if_range_matches(&format!("W/{tag}"), &tag, t, later));
        assert!(if_range_matches(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            &tag,
            t,
            later
        ));
        assert!(!if_range_matches(
            "Sun, 06 Nov 1994 08:49:38 GMT",
            &tag,
            t,
            later
        ));
        // Modified in the very second that is still running: the date is a weak validator.
        let same_second = UNIX_EPOCH + Duration::from_millis(784_111_777_900);
        assert!(!if_range_matches(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            &tag,
            t,
            same_second
        ));
    }

    proptest::proptest! {
        #[test]
        fn prop_partial_stays_inside(header in "bytes=[0-9]{0,3}-[0-9]{0,3}", len in 0u64..2000) {
            if let RangeOutcome::Partial { start, len: n } = range(&header, len) {
                proptest::prop_assert!(n >= 1 && start + n <= len);
            }
        }
    }
}
