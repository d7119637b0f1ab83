//! The `Date` header value (IMF-fixdate, RFC 9110 §5.6.7), formatted at most once per second.
//!
//! Owns: the per-thread cache. The calendar arithmetic and formatting are
//! [`super::httpdate`]'s.

pub use super::httpdate::{format_http_date, HTTP_DATE_BYTES};
use std::time::{SystemTime, UNIX_EPOCH};

/// A `Date` value refreshed when the second changes.
#[derive(Clone, Debug)]
pub struct DateCache {
    secs: u64,
    bytes: [u8; HTTP_DATE_BYTES],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> DateCache {
        let mut cache = DateCache {
            secs: u64::MAX,
            bytes: [0; HTTP_DATE_BYTES],
        };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Updates the value if `now` is in a different second.
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.secs {
            self.secs = secs;
            self.bytes = format_http_date(secs);
        }
    }

    /// The formatted date.
    pub fn get(&self) -> &[u8; HTTP_DATE_BYTES] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
        ];
        for (secs, text) in cases {
            assert_eq!(&format_http_date(secs), text.as_bytes(), "{secs}");
        }
    }

    #[test]
    fn cache_refreshes_on_new_second_only() {
        let mut cache = DateCache::new();
        cache.refresh(UNIX_EPOCH + std::time::Duration::from_millis(784_111_777_400));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(UNIX_EPOCH + std::time::Duration::from_millis(784_111_777_900));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(UNIX_EPOCH + std::time::Duration::from_secs(784_111_778));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
