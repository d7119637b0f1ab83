//! Reading stored frames by index range without the writer: replication, subscriptions'
//! catch-up, and the `log` tools.
//!
//! Owns: iteration over segment files from a given index. Must not: modify files, or take the
//! data-directory lock (tools may read a live log).

use super::frame::{self, Frame, Status, HEADER_BYTES};
use super::segment::{self, Ending};
use super::Error;
use std::path::{Path, PathBuf};

/// Visits every stored frame that holds entries at or after `from_index`, oldest first, until
/// `visit` returns `false` or the log ends.
///
/// A partial frame at the very end (a write in progress or a torn tail) ends the iteration;
/// damage followed by valid data, and a segment that does not start where the one before it
/// ends (a segment missing in the middle), are [`Error::Corrupt`]. Frames may start before
/// `from_index`: skip their first entries.
pub fn read_range(
    log_dir: &Path,
    from_index: u64,
    visit: &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>,
) -> Result<(), Error> {
    let firsts = segment::list_segments(log_dir)?;
    let start = firsts
        .iter()
        .rposition(|&first| first <= from_index)
        .unwrap_or(0);
    let mut buffer = Vec::new();
    let mut stopped = false;
    // Where the previous segment read ended: the next one must start exactly there.
    let mut expected_first = None;
    for (position, &first) in firsts.iter().enumerate().skip(start) {
        let path = segment::segment_path(log_dir, first);
        // A segment deleted or lost in the middle: reading on would skip its entries without
        // a word (recovery refuses the same log).
        if let Some(reason) =
            expected_first.and_then(|expected| segment::discontinuity(first, expected))
        {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason,
            });
        }
        segment::read_segment(&path, &mut buffer)?;
        let mut filter = |frame: &Frame<'_>| {
            if frame.count > 0 && frame.last_index() >= from_index {
                stopped = !visit(frame)?;
            }
            Ok(!stopped)
        };
        let scan = segment::scan_segment_until(&path, &buffer, first, &mut filter)?;
        let is_last = position + 1 == firsts.len();
        if let (Ending::Torn { offset, reason }, false) = (scan.ending, is_last) {
            let reason = format!("{reason} in a segment that is not the last");
            return Err(Error::Corrupt {
                path,
                offset,
                reason,
            });
        }
        if stopped {
            break;
        }
        expected_first = Some(scan.next_index);
    }
    Ok(())
}

/// A position in the log that reads forward frame by frame, keeping the current segment in
/// memory, so repeated small reads (a subscriber catching up) do not re-read whole segments.
#[derive(Debug)]
pub struct Cursor {
    log_dir: PathBuf,
    /// Index of the next entry wanted.
    next_index: u64,
    /// First index of the segment in `buffer`, if one is loaded.
    loaded: Option<u64>,
    buffer: Vec<u8>,
    offset: usize,
}

impl Cursor {
    /// A cursor at `from_index`.
    pub fn new(log_dir: &Path, from_index: u64) -> Self {
        Cursor {
            log_dir: log_dir.to_path_buf(),
            next_index: from_index,
            loaded: None,
            buffer: Vec::new(),
            offset: 0,
        }
    }

    /// Index of the next entry the cursor will reach.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Visits frames holding entries at or after the cursor's index until `visit` returns
    /// `false` or the stored log ends (an incomplete last frame ends it too). Frames may start
    /// before the cursor's index: skip their first entries.
    pub fn read(
        &mut self,
        visit: &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        loop {
            if !self.has_frame_start() && !self.load()? {
                return Ok(());
            }
            let first = self.loaded.expect("a segment is loaded");
            let parsed = frame::parse_frame(&self.buffer[self.offset..]);
            let found = match parsed {
                Ok(Status::Complete(found)) => found,
                // A write in progress at the very end: the stored log ends here for now.
                Ok(Status::Partial) => {
                    if !self.load()? {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => {
                    let path = segment::segment_path(&self.log_dir, first);
                    return Err(Error::Corrupt {
                        path,
                        offset: self.offset as u64,
                        reason: error.to_string(),
                    });
                }
            };
            if found.count > 0 && found.index > self.next_index {
                // The segments holding the entries between were deleted under the reader
                // (compacted behind a snapshot while a subscriber caught up): a hole, never
                // a silent skip to the entries after it.
                let path = segment::segment_path(&self.log_dir, first);
                let reason = format!(
                    "frame starts at index {} but the reader needs {} next (entries {}..={} \
                     are no longer in the log)",
                    found.index,
                    self.next_index,
                    self.next_index,
                    found.index - 1
                );
                return Err(Error::Corrupt {
                    path,
                    offset: self.offset as u64,
                    reason,
                });
            }
            self.offset += found.frame_bytes;
            if found.count == 0 || found.last_index() < self.next_index {
                continue;
            }
            self.next_index = found.last_index() + 1;
            if !visit(&found)? {
                return Ok(());
            }
        }
    }

    /// Loads the segment holding `next_index` (re-reading the current one if it may have
    /// grown). Returns `false` when there is nothing new to read.
    fn load(&mut self) -> Result<bool, Error> {
        let firsts = segment::list_segments(&self.log_dir)?;
        let Some(&first) = firsts
            .iter()
            .rev()
            .find(|&&first| first <= self.next_index)
            .or(firsts.first())
        else {
            return Ok(false);
        };
        let resume_at = if self.loaded == Some(first) {
            self.offset
        } else {
            HEADER_BYTES
        };
        let path = segment::segment_path(&self.log_dir, first);
        segment::read_segment(&path, &mut self.buffer)?;
        match frame::parse_header(&self.buffer) {
            Ok(Status::Complete(_)) => {}
            // The writer creates a segment file and then writes its header: a reader can see
            // the file in between. Nothing is loaded, so the next call looks again from the
            // header instead of taking the header's bytes for a frame.
            Ok(Status::Partial) => {
                self.buffer.clear();
                self.loaded = None;
                self.offset = 0;
                return Ok(false);
            }
            Err(error) => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason: error.to_string(),
                })
            }
        }
        self.loaded = Some(first);
        self.offset = resume_at.min(self.buffer.len());
        // Progress is possible only if a whole frame (or damage to report) is there now; a
        // preallocated zero tail or a frame still being written means "nothing new yet".
        let partial = matches!(
            frame::parse_frame(&self.buffer[self.offset..]),
            Ok(Status::Partial)
        );
        if self.has_frame_start() && !partial {
            return Ok(true);
        }
        // "Not yet" holds only for the segment being written. The writer creates the next
        // segment after its last write to this one, and `firsts` was listed before this read:
        // if a later segment exists, this one is finished, so an end short of the next
        // segment's first index (a zeroed length, a cut frame, missing entries) is damage a
        // tailing reader must report rather than wait on forever.
        if let Some(&later) = firsts.iter().find(|&&other| other > first) {
            if self.next_index < later {
                return Err(Error::Corrupt {
                    path,
                    offset: self.offset as u64,
                    reason: format!(
                        "segment ends before index {} but the next segment starts at {later}",
                        self.next_index
                    ),
                });
            }
        }
        Ok(false)
    }

    /// True when the loaded buffer holds something at the cursor other than the end of the
    /// written data (end of file, or a preallocated zero tail: a frame's `len` is never 0).
    fn has_frame_start(&self) -> bool {
        let rest = &self.buffer[self.offset.min(self.buffer.len())..];
        let zero_len = rest.get(..4) == Some(&[0, 0, 0, 0][..]);
        !rest.is_empty() && !zero_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::segment::test_segment_bytes as segment_bytes;

    fn read_indexes(cursor: &mut Cursor) -> Result<Vec<u64>, Error> {
        let mut seen = Vec::new();
        cursor.read(&mut |frame| {
            seen.extend((0..frame.count as u64).map(|offset| frame.index + offset));
            Ok(true)
        })?;
        Ok(seen)
    }

    /// A log directory with segment 1 holding `first_bytes` and segment `later` (if any) whole.
    fn damaged_log(name: &str, first_bytes: &[u8], later: Option<u64>) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lithair-cursor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        std::fs::write(segment::segment_path(&dir, 1), first_bytes).expect("write");
        if let Some(later) = later {
            let bytes = segment_bytes(later, 2);
            std::fs::write(segment::segment_path(&dir, later), bytes).expect("write");
        }
        dir
    }

    fn is_corrupt_in_first_segment(result: Result<Vec<u64>, Error>) -> bool {
        matches!(result, Err(Error::Corrupt { path, .. }) if path.ends_with(segment::segment_name(1)))
    }

    #[test]
    fn a_zeroed_length_before_valid_data_is_waited_on_only_in_the_last_segment() {
        // Frame 1..=3, then four zero bytes where a length should be, then a valid frame.
        let mut bytes = segment_bytes(1, 3);
        let second = segment_bytes(4, 2);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&second[HEADER_BYTES..]);
        // Last segment: a write may still be landing, so it is "nothing new yet".
        let dir = damaged_log("zero-last", &bytes, None);
        let mut cursor = Cursor::new(&dir, 1);
        assert_eq!(read_indexes(&mut cursor).expect("valid prefix"), [1, 2, 3]);
        assert_eq!(read_indexes(&mut cursor).expect("still waiting"), [0u64; 0]);
        let _ = std::fs::remove_dir_all(&dir);
        // A later segment exists: this one is finished, so the same bytes are damage.
        let dir = damaged_log("zero-mid", &bytes, Some(6));
        let mut cursor = Cursor::new(&dir, 1);
        assert!(is_corrupt_in_first_segment(read_indexes(&mut cursor)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_finished_segment_missing_entries_or_cut_mid_frame_is_corruption() {
        let whole = segment_bytes(1, 3);
        // Entries 4 and 5 missing: segment 1 ends cleanly (zero tail), segment 6 follows.
        let mut zero_tail = whole.clone();
        zero_tail.resize(whole.len() + 64, 0);
        // A frame cut in the middle, then segment 6.
        let mut cut = whole.clone();
        cut.extend_from_slice(&segment_bytes(4, 2)[HEADER_BYTES..HEADER_BYTES + 10]);
        for (name, bytes) in [("gap", zero_tail), ("cut", cut)] {
            let dir = damaged_log(name, &bytes, Some(6));
            let mut cursor = Cursor::new(&dir, 1);
            let mut seen = Vec::new();
            let result = cursor.read(&mut |frame| {
                seen.push(frame.index);
                Ok(true)
            });
            assert_eq!(seen, [1], "{name}: the valid frame is delivered first");
            assert!(
                is_corrupt_in_first_segment(result.map(|()| seen.clone())),
                "{name}"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_range_read_judges_no_bytes_past_where_its_reader_stopped() {
        // Frame 1..=3, then zeros where a length should be, then a valid frame 4..=5: what a
        // read racing an append can see (the page of one group read before its write, the
        // next group's page after).
        let mut bytes = segment_bytes(1, 3);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&segment_bytes(4, 2)[HEADER_BYTES..]);
        let dir = damaged_log("range-stop", &bytes, None);
        let mut seen = Vec::new();
        let stopped = read_range(&dir, 1, &mut |frame| {
            seen.push(frame.index);
            Ok(frame.last_index() < 3)
        });
        assert!(stopped.is_ok(), "{stopped:?}");
        assert_eq!(seen, [1]);
        // A reader that wants everything reads those zeros as a write still in flight (what a
        // power loss also leaves, see `segment::unwritten_in_flight`): the data ends there.
        let mut all = Vec::new();
        let whole = read_range(&dir, 1, &mut |frame| {
            all.push(frame.index);
            Ok(true)
        });
        assert!(whole.is_ok() && all == [1], "{whole:?} {all:?}");
        let _ = std::fs::remove_dir_all(&dir);
        // Bytes no write in flight leaves (not zeros), before a valid frame: damage reported.
        let mut bytes = segment_bytes(1, 3);
        bytes.extend_from_slice(&[0x5A; 4]);
        bytes.extend_from_slice(&segment_bytes(4, 2)[HEADER_BYTES..]);
        let dir = damaged_log("range-garbage", &bytes, None);
        let whole = read_range(&dir, 1, &mut |_| Ok(true));
        assert!(matches!(whole, Err(Error::Corrupt { .. })), "{whole:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_deleted_under_the_cursor_are_a_hole_not_a_skip() {
        let dir =
            std::env::temp_dir().join(format!("lithair-cursor-deleted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        for (first, entries) in [(1, 3), (4, 2), (6, 2)] {
            let path = segment::segment_path(&dir, first);
            std::fs::write(path, segment_bytes(first, entries)).expect("write");
        }
        let mut cursor = Cursor::new(&dir, 1);
        let mut seen = Vec::new();
        cursor
            .read(&mut |frame| {
                seen.push(frame.index);
                Ok(false)
            })
            .expect("first frame");
        assert_eq!((seen, cursor.next_index()), (vec![1], 4));
        // Compaction behind a snapshot deletes the oldest segments while the reader is away.
        for first in [1, 4] {
            std::fs::remove_file(segment::segment_path(&dir, first)).expect("delete");
        }
        let result = read_indexes(&mut cursor);
        assert!(
            matches!(&result, Err(Error::Corrupt { reason, .. }) if reason.contains("4..=5")),
            "{result:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_segment_without_its_header_yet_is_nothing_new_then_read_from_its_start() {
        let dir =
            std::env::temp_dir().join(format!("lithair-cursor-header-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        std::fs::write(segment::segment_path(&dir, 1), segment_bytes(1, 3)).expect("write");
        let mut cursor = Cursor::new(&dir, 1);
        assert_eq!(read_indexes(&mut cursor).expect("first segment"), [1, 2, 3]);
        // The writer rolled over: the next file exists, empty and then with part of its header.
        let next = segment::segment_path(&dir, 4);
        let full = segment_bytes(4, 2);
        for visible in [0, HEADER_BYTES / 2] {
            std::fs::write(&next, &full[..visible]).expect("write part");
            assert_eq!(
                read_indexes(&mut cursor).expect("partial header"),
                [0u64; 0]
            );
        }
        std::fs::write(&next, &full).expect("write whole");
        assert_eq!(read_indexes(&mut cursor).expect("second segment"), [4, 5]);
        assert_eq!(cursor.next_index(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
