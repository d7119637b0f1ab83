//! Segment files on disk: naming, listing, and scanning one segment's frames.
//!
//! Owns: the rules that tell a torn tail (truncate) from corruption (refuse). Must not: write
//! to segments (the writer thread does) or interpret entry payloads.

use super::frame::{
    self, Frame, FrameError, Status, FRAME_HEAD_BYTES, FRAME_PREFIX_BYTES, HEADER_BYTES,
};
use super::writer::{APPEND_BYTES_MAX, GROUP_BYTES_MAX};
use super::Error;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Number of decimal digits in a segment file name.
const SEGMENT_NAME_DIGITS: usize = 20;
/// Largest `segment_bytes_max` a log accepts (1 GiB): segments are read whole into memory, so
/// their size must have a bound a reader can check.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;
/// Largest segment file a reader loads: a segment of [`SEGMENT_BYTES_LIMIT`], plus the group
/// that crossed it (at most `GROUP_BYTES_MAX` plus one append of `APPEND_BYTES_MAX`) and the
/// zero-filled slack, rounded up. A larger file (sparse, or not written by the log) is refused
/// before any of it is read, instead of allocating its size.
pub const SEGMENT_FILE_BYTES_MAX: u64 = SEGMENT_BYTES_LIMIT + 2 * APPEND_BYTES_MAX as u64;
/// Most bytes a crash can find written but not yet acknowledged at the end of a log: the writer
/// writes the next group while the previous one is being fsynced, so two groups (each at most
/// `GROUP_BYTES_MAX` plus the append that crossed it).
pub const IN_FLIGHT_BYTES_MAX: usize = 2 * (GROUP_BYTES_MAX + APPEND_BYTES_MAX);
/// The unit a disk writes whole or not at all (what a power loss leaves old or new).
const SECTOR_BYTES: usize = 512;
/// How far past the last good index a frame found after damage may claim to start and still be
/// taken as evidence of valid data (filters out random bytes before computing a CRC).
const SCAN_INDEX_WINDOW: u64 = 1 << 32;

/// The file name of the segment whose first entry is `first_index`.
pub fn segment_name(first_index: u64) -> String {
    format!("{first_index:0width$}.log", width = SEGMENT_NAME_DIGITS)
}

/// Why a segment starting at `first` cannot follow one that ends before `expected` (a hole:
/// entries deleted or lost in the middle; or an overlap), or `None` when it can. Recovery,
/// range reads and `repair` judge a log's continuity with it alike.
pub fn discontinuity(first: u64, expected: u64) -> Option<String> {
    let what = match first.cmp(&expected) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Greater => format!("entries {expected}..={} are missing", first - 1),
        std::cmp::Ordering::Less => "the segments overlap".to_string(),
    };
    Some(format!(
        "segment starts at index {first} but the previous one ends before {expected} ({what})"
    ))
}

/// The index a file named `NNNN…N{suffix}` (exactly `SEGMENT_NAME_DIGITS` decimal digits,
/// as segments and snapshots are named) stands for; `None` for any other name. Digits only:
/// `parse` alone would also take a leading `+`, and such a name would list an index whose
/// file (named by the digits alone) is another one, or none.
pub fn index_named(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Path of a segment in `log_dir`.
pub fn segment_path(log_dir: &Path, first_index: u64) -> PathBuf {
    log_dir.join(segment_name(first_index))
}

/// First indexes of the segments in `log_dir`, ascending. Other files are ignored.
///
/// # Errors
/// I/O failures, and a file named as the segment of index 0 ([`Error::Corrupt`]): indexes
/// start at 1, so the log never wrote it, and nothing about it can be trusted (it used to
/// stop an open, and a repair, on an assertion).
pub fn list_segments(log_dir: &Path) -> Result<Vec<u64>, Error> {
    let entries = fs::read_dir(log_dir).map_err(|e| Error::io(log_dir, "list", e))?;
    let mut firsts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(log_dir, "list", e))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(|name| index_named(name, ".log")) {
            if first == 0 {
                return Err(Error::Corrupt {
                    path: entry.path(),
                    offset: 0,
                    reason: "a segment named index 0, which no log writes (indexes start at \
                        1): move the file out of the log directory"
                        .to_string(),
                });
            }
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Reads a whole segment file into `buf` (reused across segments to avoid reallocations).
/// A file larger than [`SEGMENT_FILE_BYTES_MAX`] is [`Error::Corrupt`], and nothing is read.
pub fn read_segment(path: &Path, buf: &mut Vec<u8>) -> Result<(), Error> {
    buf.clear();
    let file = fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let bytes = file
        .metadata()
        .map_err(|e| Error::io(path, "stat", e))?
        .len();
    if bytes > SEGMENT_FILE_BYTES_MAX {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: SEGMENT_FILE_BYTES_MAX,
            reason: format!(
                "the file is {bytes} bytes, more than a segment holds \
                 (SEGMENT_FILE_BYTES_MAX, {SEGMENT_FILE_BYTES_MAX})"
            ),
        });
    }
    // Bounded even if the file grows while it is read (a live log's active segment).
    file.take(SEGMENT_FILE_BYTES_MAX + 1)
        .read_to_end(buf)
        .map_err(|e| Error::io(path, "read", e))?;
    assert!(
        buf.len() as u64 <= SEGMENT_FILE_BYTES_MAX + 1,
        "read past the bound"
    );
    Ok(())
}

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte belongs to a valid frame.
    Clean,
    /// Damage at `offset` with no valid frame after it: a torn tail, safe to truncate if this is
    /// the last segment.
    Torn {
        /// Offset of the first byte that is not part of a valid frame.
        offset: u64,
        /// What was found there.
        reason: &'static str,
    },
}

/// Result of scanning one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Index the next entry after this segment must have.
    pub next_index: u64,
    /// Term of the last frame, if the segment has one.
    pub last_term: Option<u64>,
    /// Offset just past the last valid frame.
    pub valid_end: u64,
    /// Whether and where the segment is damaged.
    pub ending: Ending,
}

/// Scans the frames of a segment held in `bytes`, checking the header and index continuity, and
/// hands each frame to `visit` in order.
///
/// Damage followed by any valid frame is corruption (an error naming the offset); damage with
/// nothing valid after it is reported as [`Ending::Torn`] for the caller to decide.
pub fn scan_segment(
    path: &Path,
    bytes: &[u8],
    expected_first: u64,
    visit: &mut dyn FnMut(&Frame<'_>) -> Result<(), Error>,
) -> Result<Scan, Error> {
    scan_segment_until(path, bytes, expected_first, &mut |frame| {
        visit(frame).map(|()| true)
    })
}

/// [`scan_segment`] that stops right after the frame for which `visit` returns `false`, and
/// then reports a clean end there: what follows is not looked at. A reader of a live log
/// wants no verdict on bytes past what it asked for, where appends may be landing as it
/// reads (an earlier page read before its write, a later one after: zeros before a valid
/// frame, which would otherwise read as corruption).
pub fn scan_segment_until(
    path: &Path,
    bytes: &[u8],
    expected_first: u64,
    visit: &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>,
) -> Result<Scan, Error> {
    let corrupt = |offset: usize, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    // A segment whose creation was cut short by a crash (power loss before its first fsync)
    // may come back at its preallocated size with nothing written, its header read as zeros.
    // Nothing in it was ever acknowledged (a segment is fsynced before any append lands in
    // it), so it ends like an incomplete header: a torn tail if it is the last segment.
    let never_written = is_zero_tail(bytes);
    let header = match never_written {
        true => None,
        false => read_header(bytes, expected_first, &corrupt)?,
    };
    let Some(first) = header else {
        let ending = Ending::Torn {
            offset: 0,
            reason: match never_written && bytes.len() >= HEADER_BYTES {
                true => "segment never written (only zeros)",
                false => "incomplete segment header",
            },
        };
        return Ok(Scan {
            next_index: expected_first,
            last_term: None,
            valid_end: 0,
            ending,
        });
    };
    let mut at = HEADER_BYTES;
    let mut next_index = first;
    let mut last_term = None;
    while at < bytes.len() {
        // Only a zero `len` field leads to the (single, final) scan of the remainder.
        if bytes[at..].iter().take(4).all(|&byte| byte == 0) && is_zero_tail(&bytes[at..]) {
            // Preallocated space never written: the clean end of the segment.
            break;
        }
        let reason = match frame::parse_frame(&bytes[at..]) {
            Ok(Status::Complete(frame)) => {
                if frame.index != next_index {
                    let message = format!(
                        "frame index {} where {next_index} was expected",
                        frame.index
                    );
                    return Err(corrupt(at, message));
                }
                let more = visit(&frame)?;
                next_index += u64::from(frame.count);
                last_term = Some(frame.term);
                at += frame.frame_bytes;
                if !more {
                    break;
                }
                continue;
            }
            Ok(Status::Partial) => "incomplete frame",
            Err(error) => frame_error_reason(error),
        };
        let mut reason = reason;
        if let Some(found) = valid_frame_after(bytes, at, next_index) {
            if !unwritten_in_flight(bytes, at, found) {
                let message = format!("{reason} (a valid frame follows at offset {found})");
                return Err(corrupt(at, message));
            }
            reason = "unwritten sectors before a group written during their fsync (a power \
                loss): neither was acknowledged";
        }
        let ending = Ending::Torn {
            offset: at as u64,
            reason,
        };
        return Ok(Scan {
            next_index,
            last_term,
            valid_end: at as u64,
            ending,
        });
    }
    Ok(Scan {
        next_index,
        last_term,
        valid_end: at as u64,
        ending: Ending::Clean,
    })
}

/// True when `rest` (what follows the last valid frame) is all zeros: preallocated space,
/// the clean end of a segment. A frame's `len` is never 0, so a 0 `len` marks the end; any
/// other byte after it means damage (a torn write, or corruption if a valid frame follows).
pub fn is_zero_tail(rest: &[u8]) -> bool {
    rest.iter().all(|&byte| byte == 0)
}

/// Bytes of a segment file in use: up to the end of its last valid frame, without the
/// preallocated zero tail (what `log stats` reports as the log's size).
pub fn used_bytes(path: &Path, expected_first: u64) -> Result<u64, Error> {
    let mut bytes = Vec::new();
    read_segment(path, &mut bytes)?;
    valid_end(path, &bytes, expected_first)
}

/// [`used_bytes`] of a segment's contents already read (`bytes`, from `path`).
pub fn valid_end(path: &Path, bytes: &[u8], expected_first: u64) -> Result<u64, Error> {
    let scan = scan_segment(path, bytes, expected_first, &mut |_| Ok(()))?;
    Ok(scan.valid_end)
}

/// The first index a segment's header names, checked against the expected one; `None` when the
/// header itself is incomplete (a torn segment creation).
fn read_header(
    bytes: &[u8],
    expected_first: u64,
    corrupt: &dyn Fn(usize, String) -> Error,
) -> Result<Option<u64>, Error> {
    let first = match frame::parse_header(bytes) {
        Ok(Status::Complete(first)) => first,
        Ok(Status::Partial) => return Ok(None),
        Err(error) => return Err(corrupt(0, error.to_string())),
    };
    if first != expected_first {
        return Err(corrupt(
            0,
            format!("header names first index {first}, expected {expected_first}"),
        ));
    }
    Ok(Some(first))
}

fn frame_error_reason(error: FrameError) -> &'static str {
    match error {
        FrameError::BadLength => "bad frame length",
        FrameError::BadChecksum => "bad checksum",
        FrameError::BadEntries => "bad entry framing",
        FrameError::BadHeader => "bad header",
    }
}

/// Whether damage at `damage`, with a valid frame at `found` after it, is what a power loss in
/// the middle of an fsync leaves rather than corruption. The writer writes group N+1 while
/// group N is being fsynced; a power loss then may keep a sector of N+1 and not one of N (a
/// disk's cache writes back in any order), and a sector not written keeps its old content:
/// zeros, the space ahead of the writer being zero-filled. Neither group was acknowledged (N+1
/// only ever is after a later fsync, which covers N). So: everything from the damage on lies
/// within [`IN_FLIGHT_BYTES_MAX`] of the end of the data, and the damaged frame shows an
/// unwritten sector: its head is zeros, or a whole sector inside it is. Other damage (a flipped
/// bit, bytes that are not zeros, damage further back) stays corruption: a power loss cannot
/// make it. Read only for the last segment (the caller refuses a torn ending elsewhere).
fn unwritten_in_flight(bytes: &[u8], damage: usize, found: usize) -> bool {
    debug_assert!(damage < found && found <= bytes.len());
    let data_end = bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    if data_end.saturating_sub(damage) > IN_FLIGHT_BYTES_MAX {
        return false;
    }
    let zeros = |range: std::ops::Range<usize>| bytes[range].iter().all(|&byte| byte == 0);
    let head_end = (damage + FRAME_PREFIX_BYTES + FRAME_HEAD_BYTES).min(found);
    let first_sector = damage.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    zeros(damage..head_end)
        || (first_sector..found)
            .step_by(SECTOR_BYTES)
            .any(|sector| sector + SECTOR_BYTES <= found && zeros(sector..sector + SECTOR_BYTES))
}

/// Looks for a checksum-valid frame starting after `damage` whose index is plausible (not below
/// `next_index`). Only such evidence turns damage into corruption.
fn valid_frame_after(bytes: &[u8], damage: usize, next_index: u64) -> Option<usize> {
    let window_end = next_index.saturating_add(SCAN_INDEX_WINDOW);
    (damage + 1..bytes.len()).find(|&at| {
        let Some((index, _term)) = frame::peek_index_term(&bytes[at..]) else {
            return false;
        };
        (next_index..window_end).contains(&index)
            && matches!(frame::parse_frame(&bytes[at..]), Ok(Status::Complete(_)))
    })
}

/// Tests: a segment file holding a header and one frame of `entries` entries from `first`
/// (each entry its index, little-endian).
#[cfg(test)]
pub(crate) fn test_segment_bytes(first: u64, entries: u64) -> Vec<u8> {
    let mut batch = super::EntryBatch::new();
    for index in first..first + entries {
        batch.push(&index.to_le_bytes());
    }
    let mut bytes = frame::encode_header(first).to_vec();
    frame::encode_frame(&mut bytes, first, 1, &[&batch]);
    bytes
}

/// Replaces the small file `dir/name` by `bytes` so that a crash leaves the old content or the
/// new, never a mix: write `name.tmp`, fsync it, rename it over `name`, fsync `dir`. A
/// `name.tmp` left by a crash is overwritten by the next call.
///
/// # Errors
/// The first I/O failure; `name` then still holds its old content.
pub fn replace_file_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, dir.join(name))?;
    fs::File::open(dir)?.sync_all()
}

/// The bytes of the small record file `path` (the extent record, a pending cut): at most
/// `bytes_max + 1` are read, so whatever sits under the name, a file longer than a record is
/// told apart without reading it whole. `None` when there is no such file.
pub(super) fn read_record(path: &Path, bytes_max: usize) -> Result<Option<Vec<u8>>, Error> {
    let mut bytes = Vec::with_capacity(bytes_max + 1);
    match fs::File::open(path) {
        Ok(file) => file
            .take(bytes_max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, "read", e))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(path, "read", error)),
    };
    Ok(Some(bytes))
}

/// Deletes `path` if it is there; true when it was (the caller fsyncs the directory when the
/// removal must be durable).
pub(super) fn remove_if_present(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Error::io(path, "delete", error)),
    }
}

/// Opens `dir` and fsyncs it so that a rename, creation or deletion inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    let handle = fs::File::open(dir).map_err(|e| Error::io(dir, "open directory", e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io(dir, "fsync directory", e))
}
