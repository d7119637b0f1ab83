//! The pending-cut record: `log/CUT`, written durably before a truncation cuts a segment inside
//! a frame, so that a crash in the middle of that cut is finished at the next open instead of
//! losing the entries the frame keeps.
//!
//! Why: frames hold many entries (a group's appends of one term are one frame), so a Raft
//! truncation of a conflicting tail often falls inside one. The entries it keeps are at or
//! below the truncation index: entries this node acknowledged, which a leader may have counted
//! as committed. Cutting the file at the frame's start and writing the kept entries back lost
//! them to a crash (or a power loss that kept the new size) in between.
//!
//! How: the kept entries are the frame's first entries, so their bytes already sit where the
//! shorter frame needs them. Only the frame's head changes (length, checksum, count), and the
//! file's end. The record names the segment, the frame's offset and the new head; the cut
//! writes the head in place, then sets the new end, then fsyncs, then removes the record.
//! Every step is redone as it is by [`finish_pending`], so a crash at any point (a torn head
//! included) ends in the same file. Nothing below the new end is ever removed before the
//! record is durable, and nothing is appended while it exists.
//!
//! Owns: the record's format, writing it, and carrying out the cut it names. Must not: decide
//! where to cut (the writer does), or be written for a cut between frames (a single `set_len`,
//! all or nothing for the entries kept).

use super::frame::{
    self, Status, FRAME_BYTES_MAX, FRAME_HEAD_BYTES, FRAME_PREFIX_BYTES, HEADER_BYTES,
};
use super::segment;
use super::Error;
use crate::crypto::crc32c;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the record in the log directory (not a segment name: listing ignores it).
pub const CUT_FILE_NAME: &str = "CUT";
/// The record being written (by [`segment::replace_file_durably`]), renamed over
/// [`CUT_FILE_NAME`] once durable.
const CUT_TEMP_NAME: &str = "CUT.tmp";
/// First bytes of the record.
const CUT_MAGIC: [u8; 8] = *b"LITHCUT\0";
/// Format version of the record.
const CUT_VERSION: u32 = 1;
/// Bytes of a frame's head as the cut rewrites it: `len | crc32c | index | term | count`.
pub(super) const HEAD_BYTES: usize = FRAME_PREFIX_BYTES + FRAME_HEAD_BYTES;
/// magic (8) | version u32 | segment's first index u64 | frame offset u64 | new head (28) |
/// CRC32C of the bytes before.
const CUT_BYTES: usize = 8 + 4 + 8 + 8 + HEAD_BYTES + 4;

/// A cut inside a frame: the frame at `offset` of the segment starting at `segment` gets
/// `head`, and the file ends where that shorter frame does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PendingCut {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) head: [u8; HEAD_BYTES],
}

impl PendingCut {
    /// Where the file ends once cut: after the shorter frame the head describes.
    fn end(&self) -> u64 {
        let len = u32::from_le_bytes(self.head[0..4].try_into().expect("4 bytes"));
        self.offset + FRAME_PREFIX_BYTES as u64 + u64::from(len)
    }

    fn encode(&self) -> [u8; CUT_BYTES] {
        let mut bytes = [0u8; CUT_BYTES];
        bytes[0..8].copy_from_slice(&CUT_MAGIC);
        bytes[8..12].copy_from_slice(&CUT_VERSION.to_le_bytes());
        bytes[12..20].copy_from_slice(&self.segment.to_le_bytes());
        bytes[20..28].copy_from_slice(&self.offset.to_le_bytes());
        bytes[28..28 + HEAD_BYTES].copy_from_slice(&self.head);
        let checksum = crc32c::crc32c(&bytes[..CUT_BYTES - 4]);
        bytes[CUT_BYTES - 4..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<PendingCut, &'static str> {
        if bytes.len() != CUT_BYTES {
            return Err("wrong length");
        }
        if bytes[0..8] != CUT_MAGIC {
            return Err("bad magic");
        }
        let stored = u32::from_le_bytes(bytes[CUT_BYTES - 4..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[..CUT_BYTES - 4]) != stored {
            return Err("bad checksum");
        }
        if u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) != CUT_VERSION {
            return Err("unknown format version");
        }
        let cut = PendingCut {
            segment: u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
            offset: u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
            head: bytes[28..28 + HEAD_BYTES].try_into().expect("a head"),
        };
        // Checked before `end` is computed or a frame of that size read back: whatever the
        // record says stays within a segment.
        let len = u32::from_le_bytes(cut.head[0..4].try_into().expect("4 bytes")) as usize;
        if cut.segment == 0 || !(FRAME_HEAD_BYTES..=FRAME_BYTES_MAX).contains(&len) {
            return Err("a segment or frame length no log writes");
        }
        if cut.offset < HEADER_BYTES as u64 || cut.offset > segment::SEGMENT_FILE_BYTES_MAX {
            return Err("an offset outside a segment");
        }
        Ok(cut)
    }
}

/// Path of the record in `log_dir`.
fn cut_path(log_dir: &Path) -> PathBuf {
    log_dir.join(CUT_FILE_NAME)
}

/// Records `cut` durably (temp file, fsync, rename, fsync of the directory), before the
/// segment is touched.
pub(super) fn record(log_dir: &Path, cut: &PendingCut) -> Result<(), Error> {
    segment::replace_file_durably(log_dir, CUT_FILE_NAME, &cut.encode())
        .map_err(|e| Error::io(cut_path(log_dir), "replace", e))
}

/// Carries out `cut` on `file` (the segment it names): the head in place, the new end, fsync.
/// Then checks that the shorter frame reads back whole, so a record that does not fit the
/// segment is damage, never a silent rewrite.
pub(super) fn apply(file: &fs::File, path: &Path, cut: &PendingCut) -> Result<(), Error> {
    file.write_all_at(&cut.head, cut.offset)
        .map_err(|e| Error::io(path, "write", e))?;
    file.set_len(cut.end())
        .map_err(|e| Error::io(path, "truncate", e))?;
    file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    let mut shorter = vec![0u8; (cut.end() - cut.offset) as usize];
    file.read_exact_at(&mut shorter, cut.offset)
        .map_err(|e| Error::io(path, "read", e))?;
    match frame::parse_frame(&shorter) {
        Ok(Status::Complete(found)) if found.frame_bytes == shorter.len() => Ok(()),
        _ => Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: cut.offset,
            reason: "the frame a pending cut rewrote does not read back whole".to_string(),
        }),
    }
}

/// Removes the record once its cut is durable (then fsyncs the directory).
pub(super) fn clear(log_dir: &Path) -> Result<(), Error> {
    let path = cut_path(log_dir);
    fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
    segment::sync_dir(log_dir)
}

/// The pending cut in `log_dir`, if a crash left one. A damaged record is [`Error::Corrupt`]:
/// it is written whole by a rename, so damage is not a crash's doing.
pub(super) fn read_pending(log_dir: &Path) -> Result<Option<PendingCut>, Error> {
    let path = cut_path(log_dir);
    let Some(bytes) = segment::read_record(&path, CUT_BYTES)? else {
        return Ok(None);
    };
    PendingCut::decode(&bytes)
        .map(Some)
        .map_err(|reason| Error::Corrupt {
            path,
            offset: 0,
            reason: format!("damaged pending-cut record ({reason})"),
        })
}

/// Whether `log_dir` holds a cut a crash interrupted, which the next open finishes: until
/// then, the segment it names may read as shorter than the log is (tools that copy or
/// judge segments without opening the log refuse such a directory).
///
/// # Errors
/// I/O failures and a damaged record.
pub fn cut_pending(log_dir: &Path) -> Result<bool, Error> {
    Ok(read_pending(log_dir)?.is_some())
}

/// Finishes a cut a crash interrupted, before the log is read: removes a half-written record
/// (the cut had not begun), carries out a whole one and removes it. Returns the cut finished.
///
/// # Errors
/// A damaged record, a record naming a segment that is not there or a frame that does not
/// read back whole, and I/O failures: the log is not opened over a half-made cut.
pub(super) fn finish_pending(log_dir: &Path) -> Result<Option<PendingCut>, Error> {
    if segment::remove_if_present(&log_dir.join(CUT_TEMP_NAME))? {
        segment::sync_dir(log_dir)?;
    }
    let Some(cut) = read_pending(log_dir)? else {
        return Ok(None);
    };
    let path = segment::segment_path(log_dir, cut.segment);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "open (to finish a pending cut)", e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(&path, "stat", e))?
        .len();
    // The kept entries are still in place: the cut never shrinks the file below its new end.
    if size < cut.end() {
        return Err(Error::Corrupt {
            path,
            offset: cut.offset,
            reason: format!(
                "a pending cut ends its frame at offset {}, past the segment's end ({size})",
                cut.end()
            ),
        });
    }
    apply(&file, &path, &cut)?;
    clear(log_dir)?;
    eprintln!(
        "lithair log: finished a truncation a crash interrupted ({}, frame at offset {})",
        path.display(),
        cut.offset
    );
    Ok(Some(cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_any_flipped_bit_is_refused() {
        let cut = PendingCut {
            segment: 7,
            offset: 4242,
            head: std::array::from_fn(|i| i as u8),
        };
        let bytes = cut.encode();
        assert_eq!(PendingCut::decode(&bytes), Ok(cut));
        for bit in 0..CUT_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(PendingCut::decode(&flipped).is_err(), "bit {bit}");
        }
        assert!(PendingCut::decode(&bytes[..CUT_BYTES - 1]).is_err());
    }

    #[test]
    fn a_record_naming_a_frame_or_offset_no_segment_holds_is_refused() {
        let cut = |segment: u64, offset: u64, len: u32| {
            let mut head = [0u8; HEAD_BYTES];
            head[0..4].copy_from_slice(&len.to_le_bytes());
            PendingCut {
                segment,
                offset,
                head,
            }
        };
        assert!(PendingCut::decode(&cut(1, 4096, 100).encode()).is_ok());
        for bad in [
            cut(0, 4096, 100),
            cut(1, 4096, 0),
            cut(1, 4096, FRAME_BYTES_MAX as u32 + 1),
            cut(1, 0, 100),
            cut(1, u64::MAX - 4, 100),
        ] {
            assert!(PendingCut::decode(&bad.encode()).is_err(), "{bad:?}");
        }
    }
}
