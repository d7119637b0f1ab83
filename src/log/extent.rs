//! The log's extent record: `log/NEWEST`, naming the newest segment the log has had, so that a
//! deleted newest segment (an operator's mistake, a bad script, a restore from a partial copy)
//! is refused at open instead of replaying a shorter history in silence.
//!
//! Owns: the record's format, its atomic rewrite, and the check "the newest segment present is
//! at least the recorded one". Must not: be touched per append or per commit (it is written
//! when a segment is created, and lowered before anything shrinks the log), or refuse a
//! directory without it (written by an older version: accepted unchecked, recorded at the next
//! open).
//!
//! Why the record can never be stale-high for a healthy directory: it is raised only after the
//! segment it names is durable (created, fsynced, its directory entry fsynced), and lowered
//! (durably) before any operation that removes the newest segment removes it. A crash between
//! the two steps of either leaves it low, which only weakens the check until the next open
//! rewrites it. Compaction deletes old segments, never the newest, and leaves it alone.

use super::segment;
use super::Error;
use crate::crypto::crc32c;
use std::fs;
use std::path::{Path, PathBuf};

/// Name of the record in the log directory (not a segment name: listing ignores it).
pub const EXTENT_FILE_NAME: &str = "NEWEST";
/// The record being rewritten (by [`segment::replace_file_durably`]), renamed over
/// [`EXTENT_FILE_NAME`] once durable.
const EXTENT_TEMP_NAME: &str = "NEWEST.tmp";
/// First bytes of the record.
const EXTENT_MAGIC: [u8; 8] = *b"LITHNEW\0";
/// Format version of the record.
const EXTENT_VERSION: u32 = 1;
/// magic (8) | version u32 | newest segment's first index u64 | CRC32C of the 20 bytes before.
pub const EXTENT_BYTES: usize = 24;

/// The record's bytes naming `newest` as the newest segment's first index.
fn encode(newest: u64) -> [u8; EXTENT_BYTES] {
    assert!(newest >= 1, "a segment never starts at index 0");
    let mut bytes = [0u8; EXTENT_BYTES];
    bytes[0..8].copy_from_slice(&EXTENT_MAGIC);
    bytes[8..12].copy_from_slice(&EXTENT_VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&newest.to_le_bytes());
    let checksum = crc32c::crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

/// The newest segment's first index a record holds, or why it is not a record.
fn decode(bytes: &[u8]) -> Result<u64, &'static str> {
    if bytes.len() != EXTENT_BYTES {
        return Err("wrong length");
    }
    if bytes[0..8] != EXTENT_MAGIC {
        return Err("bad magic");
    }
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..20]) != stored {
        return Err("bad checksum");
    }
    if u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) != EXTENT_VERSION {
        return Err("unknown format version");
    }
    let newest = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if newest == 0 {
        return Err("names index 0");
    }
    Ok(newest)
}

/// Path of the record in `log_dir`.
pub fn extent_path(log_dir: &Path) -> PathBuf {
    log_dir.join(EXTENT_FILE_NAME)
}

/// The first index of the newest segment the record names; `None` when there is no record (a
/// directory written before it existed, or a reset in progress). A damaged record is
/// [`Error::Corrupt`]: it is written whole by a rename, so damage is not a crash's doing.
pub fn read_newest(log_dir: &Path) -> Result<Option<u64>, Error> {
    let path = extent_path(log_dir);
    let Some(bytes) = segment::read_record(&path, EXTENT_BYTES)? else {
        return Ok(None);
    };
    match decode(&bytes) {
        Ok(newest) => Ok(Some(newest)),
        Err(reason) => Err(Error::Corrupt {
            path,
            offset: 0,
            reason: format!(
                "damaged log extent record ({reason}); `log repair --apply` writes it anew from \
                 the segments present (or delete it to open without the check: the next open \
                 writes it again)"
            ),
        }),
    }
}

/// Records `newest` durably (temp file, fsync, rename, fsync of the directory). Called once the
/// segment starting at `newest` is durable, never before: by the log's writer (which alone
/// writes a live log's record) and by `log backup` for its copy.
///
/// # Panics
/// If `newest` is 0 (no segment starts there).
pub fn record_newest(log_dir: &Path, newest: u64) -> Result<(), Error> {
    segment::replace_file_durably(log_dir, EXTENT_FILE_NAME, &encode(newest))
        .map_err(|e| Error::io(extent_path(log_dir), "replace", e))
}

/// Lowers the record (durably) to `newest` before the log shrinks to it; `None` (the log is
/// about to hold no segment) removes it. A record already at or below `newest`, or none, is
/// left as it is: lowering never raises.
pub(super) fn lower_newest(log_dir: &Path, newest: Option<u64>) -> Result<(), Error> {
    let Some(recorded) = read_newest(log_dir)? else {
        return Ok(());
    };
    match newest {
        Some(newest) if newest >= recorded => Ok(()),
        Some(newest) => record_newest(log_dir, newest),
        None => {
            let path = extent_path(log_dir);
            fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
            segment::sync_dir(log_dir)
        }
    }
}

/// Writes the record anew (durably) naming `newest`, or removes it for `None`, whatever the
/// record holds now: for `log repair` over a damaged record, which cannot be lowered from.
/// The caller has judged the segments: the newest present starts at `newest`.
pub(super) fn rewrite_newest(log_dir: &Path, newest: Option<u64>) -> Result<(), Error> {
    match newest {
        Some(newest) => record_newest(log_dir, newest),
        None => match segment::remove_if_present(&extent_path(log_dir))? {
            true => segment::sync_dir(log_dir),
            false => Ok(()),
        },
    }
}

/// Lists the segments of `log_dir` and checks them against the record: the newest segment
/// present must start at or after the recorded one. The record is read before the listing, so
/// beside a running single node (whose log only rolls forward and compacts old segments) a
/// roll between the two never reads as a loss. Returns the listing.
///
/// # Errors
/// [`Error::MissingSegments`] when the newest recorded segment is gone; a damaged record; I/O.
pub fn check_extent(log_dir: &Path) -> Result<Vec<u64>, Error> {
    let recorded = read_newest(log_dir)?;
    let firsts = segment::list_segments(log_dir)?;
    let newest = firsts.last().copied();
    match recorded {
        Some(recorded) if newest.is_none_or(|newest| newest < recorded) => {
            Err(Error::MissingSegments {
                path: segment::segment_path(log_dir, recorded),
                recorded,
                newest,
            })
        }
        _ => Ok(firsts),
    }
}

/// Removes a temp record left by a crash mid-rewrite (the record itself is whole either way).
pub(super) fn remove_stale(log_dir: &Path) -> Result<(), Error> {
    segment::remove_if_present(&log_dir.join(EXTENT_TEMP_NAME)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lithair-extent-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create dir");
        dir
    }

    #[test]
    fn a_record_reads_back_and_any_flipped_bit_is_refused() {
        let bytes = encode(0x0102_0304_0506);
        assert_eq!(decode(&bytes), Ok(0x0102_0304_0506));
        for bit in 0..EXTENT_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err(), "bit {bit}");
        }
        assert!(decode(&bytes[..EXTENT_BYTES - 1]).is_err());
    }

    #[test]
    fn lowering_never_raises_and_to_none_removes_the_record() {
        let dir = temp_dir("lower");
        lower_newest(&dir, Some(5)).expect("no record: nothing to lower");
        assert_eq!(read_newest(&dir).expect("read"), None);
        record_newest(&dir, 40).expect("record");
        lower_newest(&dir, Some(90)).expect("not a lowering");
        assert_eq!(read_newest(&dir).expect("read"), Some(40));
        lower_newest(&dir, Some(12)).expect("lower");
        assert_eq!(read_newest(&dir).expect("read"), Some(12));
        lower_newest(&dir, None).expect("remove");
        assert_eq!(read_newest(&dir).expect("read"), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_check_refuses_a_newest_segment_older_than_the_record_or_none() {
        let dir = temp_dir("check");
        fs::write(segment::segment_path(&dir, 1), b"").expect("write");
        fs::write(segment::segment_path(&dir, 9), b"").expect("write");
        assert_eq!(check_extent(&dir).expect("no record"), [1, 9]);
        record_newest(&dir, 9).expect("record");
        assert_eq!(check_extent(&dir).expect("whole"), [1, 9]);
        fs::remove_file(segment::segment_path(&dir, 9)).expect("delete");
        let refused = check_extent(&dir).expect_err("newest gone");
        assert!(matches!(
            refused,
            Error::MissingSegments {
                recorded: 9,
                newest: Some(1),
                ..
            }
        ));
        assert!(refused.to_string().contains("00000000000000000009.log"));
        fs::remove_file(segment::segment_path(&dir, 1)).expect("delete");
        assert!(matches!(
            check_extent(&dir),
            Err(Error::MissingSegments { newest: None, .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
