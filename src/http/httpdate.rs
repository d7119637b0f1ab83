//! HTTP dates (RFC 9110 §5.6.7): formatting and parsing IMF-fixdate,
//! `Sun, 06 Nov 1994 08:49:37 GMT`, for `Last-Modified`, `If-Modified-Since` and cookie
//! `Expires`.
//!
//! Owns: the calendar arithmetic and the conversion between `SystemTime` (whole seconds)
//! and the text form (the `Date` header's per-second cache is [`super::date`]'s).
//! Must not: read the clock (callers pass the time in).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const SECONDS_PER_DAY: u64 = 86_400;
/// Latest year we format or parse (keeps arithmetic far from overflow).
const YEAR_MAX: u64 = 9999;

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_BYTES: usize = 29;

/// Formats Unix time `secs` as an IMF-fixdate. Pure.
pub fn format_http_date(secs: u64) -> [u8; HTTP_DATE_BYTES] {
    let days = secs / SECONDS_PER_DAY;
    let second_of_day = secs % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize].as_bytes());
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    let year = year.min(YEAR_MAX);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], second_of_day / 3600);
    two_digits(&mut out[20..22], second_of_day / 60 % 60);
    two_digits(&mut out[23..25], second_of_day % 60);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    assert!(n < 100, "two_digits({n})");
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31); civil-from-days over 400-year
/// eras (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Inverse of [`civil_from_days`]; `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// Formats `time` (truncated to seconds; times before 1970 format as the epoch).
pub fn format(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let text = format_http_date(secs);
    std::str::from_utf8(&text)
        .expect("an IMF-fixdate is ASCII")
        .to_owned()
}

/// Parses an IMF-fixdate; `None` for anything else (the obsolete formats are not accepted,
/// so a conditional request with one is treated as unconditional, as RFC 9110 allows).
pub fn parse(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(range)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| text.get(8..11) == Some(*m))? as u64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let secs = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(format(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse("Sun, 06 Xyz 1994 08:49:37 GMT"), None);
        assert_eq!(parse("Sun, 06 Nov 1994 28:49:37 GMT"), None);
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse("Sun, +6 Nov 1994 08:49:37 GMT"), None);
    }

    proptest::proptest! {
        #[test]
        fn prop_round_trip(secs in 0u64..253_402_300_799) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse(&format(t)), Some(t));
        }

        #[test]
        fn prop_parse_never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }
    }
}
