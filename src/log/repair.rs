//! Cutting a damaged log at its first damage, on an operator's explicit request.
//!
//! Owns: finding the first place recovery refuses (a damaged frame with valid data after it,
//! damage in a segment that is not the last, a segment that does not start where the one
//! before it ends) and cutting the log there: that segment truncated at the damage (removed
//! if its header is damaged) and every later segment removed. Must not: run next to a writer
//! (the caller holds the data-directory lock), decide for the operator (`plan` only reports;
//! `apply` is a separate call), or look past the log (snapshots are the caller's concern).
//!
//! Segments missing at the end (the extent record names a newer segment than any present) are
//! damage too: the cut then removes nothing and lowers the record to what is there, which is
//! the operator accepting the loss. So is a damaged extent record (its bytes fail their
//! checks): with the segments whole and contiguous, the repair writes the record anew, naming
//! the newest segment present (whether a newer one was lost cannot be told any more: the
//! operator accepts that too).
//!
//! Why a tool and not recovery: recovery cuts a torn tail on its own (nothing after it was
//! acknowledged), but damage followed by valid frames may hold acknowledged entries beyond
//! it. Only an operator can choose to lose them, after trying a replica or a backup.

use super::extent;
use super::segment::{self, Ending};
use super::Error;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

/// Where a damaged log would be cut, and what that loses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    /// The segment holding the first damage.
    pub damaged: PathBuf,
    /// The first index its name (and header) give it.
    pub damaged_first: u64,
    /// Offset of the first damaged byte in it (0: its header; the segment is removed).
    pub offset: u64,
    /// What recovery found there.
    pub reason: String,
    /// Index of the first entry the cut removes (everything before it is kept).
    pub first_lost_index: u64,
    /// Bytes of `damaged` from `offset` on, removed.
    pub damaged_bytes_cut: u64,
    /// Later segments removed whole, in order.
    pub later_segments: Vec<PathBuf>,
    /// The log's first index (what is kept is `first_index..first_lost_index`).
    pub first_index: u64,
    /// `Some(recorded)`: what is present is whole, but the segments from the one the extent
    /// record names (`recorded`, which is `damaged_first`) on are missing; the cut removes
    /// nothing and lowers the record to the newest segment present.
    pub missing_newest: Option<u64>,
    /// `Some(why)`: the extent record is damaged (why it is not a record). The cut writes it
    /// anew, naming the newest segment it leaves, instead of lowering it. When it is the only
    /// damage, `damaged` is the record itself (see [`RepairPlan::record_only`]).
    pub damaged_record: Option<String>,
}

impl RepairPlan {
    /// Whether the only damage is the extent record: the segments are whole and contiguous,
    /// and the cut removes nothing (it rewrites the record).
    pub fn record_only(&self) -> bool {
        self.damaged_record.is_some()
            && self.damaged.file_name() == Some(extent::EXTENT_FILE_NAME.as_ref())
    }
}

/// What [`survey`] finds in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The first damage a start refuses, if any.
    pub plan: Option<RepairPlan>,
    /// The entries the segments hold up to the first damage (`first..next`, `next`
    /// excluded), or `None` when no segment is present.
    pub present: Option<(u64, u64)>,
}

/// The first damage recovery would refuse in `log_dir`, or `None` when it would open (a torn
/// tail of the last segment is not damage: opening cuts it).
///
/// # Errors
/// I/O failures listing or reading segments.
pub fn plan(log_dir: &Path) -> Result<Option<RepairPlan>, Error> {
    Ok(survey(log_dir)?.plan)
}

/// [`plan`], plus the entries the segments hold up to the first damage (a single node's
/// caller compares them with its newest snapshot: a log ending before it is refused too).
///
/// # Errors
/// I/O failures listing or reading segments.
pub fn survey(log_dir: &Path) -> Result<Survey, Error> {
    let (recorded, damaged_record) = match extent::read_newest(log_dir) {
        Ok(recorded) => (recorded, None),
        // Not a record any more: the segments alone say what the log holds, and the repair
        // writes the record anew from them.
        Err(Error::Corrupt { path, reason, .. }) if path == extent::extent_path(log_dir) => {
            (None, Some(reason))
        }
        Err(other) => return Err(other),
    };
    let firsts = segment::list_segments(log_dir)?;
    let Some(&first_index) = firsts.first() else {
        let plan = match &damaged_record {
            Some(reason) => Some(record_plan(log_dir, reason, 1, 1)),
            None => {
                recorded.map(|recorded| missing_plan(log_dir, recorded, None, recorded, recorded))
            }
        };
        return Ok(Survey {
            plan,
            present: None,
        });
    };
    let mut buffer = Vec::new();
    let mut next_index = first_index;
    for (position, &first) in firsts.iter().enumerate() {
        let path = segment::segment_path(log_dir, first);
        let is_last = position + 1 == firsts.len();
        let later = |from: usize| -> Vec<PathBuf> {
            firsts[from..]
                .iter()
                .map(|&first| segment::segment_path(log_dir, first))
                .collect()
        };
        let plan_at = |offset: u64, reason: String, file_bytes: u64| RepairPlan {
            damaged: path.clone(),
            damaged_first: first,
            offset,
            reason,
            first_lost_index: next_index,
            damaged_bytes_cut: file_bytes.saturating_sub(offset),
            later_segments: later(position + 1),
            first_index,
            missing_newest: None,
            damaged_record: damaged_record.clone(),
        };
        let damage = |plan: RepairPlan| {
            Ok(Survey {
                present: Some((first_index, plan.first_lost_index)),
                plan: Some(plan),
            })
        };
        let file_bytes = fs::metadata(&path)
            .map_err(|e| Error::io(&path, "stat", e))?
            .len();
        if let Some(reason) = segment::discontinuity(first, next_index) {
            return damage(plan_at(0, reason, file_bytes));
        }
        match segment::read_segment(&path, &mut buffer) {
            Ok(()) => {}
            // Refused unread (larger than any segment): nothing in it can be trusted.
            Err(Error::Corrupt { reason, .. }) => return damage(plan_at(0, reason, file_bytes)),
            Err(other) => return Err(other),
        }
        // The index after the last whole frame before the damage: the first one the cut loses.
        let mut scanned_to = first;
        let mut count = |frame: &super::Frame<'_>| {
            scanned_to = frame.index + u64::from(frame.count);
            Ok(())
        };
        match segment::scan_segment(&path, &buffer, first, &mut count) {
            Ok(scan) => {
                if let (Ending::Torn { offset, reason }, false) = (&scan.ending, is_last) {
                    let reason = format!("{reason} in a segment that is not the last");
                    return damage(RepairPlan {
                        first_lost_index: scan.next_index,
                        ..plan_at(*offset, reason, file_bytes)
                    });
                }
                next_index = scan.next_index;
            }
            Err(Error::Corrupt {
                path: damaged,
                offset,
                reason,
            }) => {
                assert_eq!(damaged, path, "a scan reports damage in its own segment");
                return damage(RepairPlan {
                    first_lost_index: scanned_to,
                    ..plan_at(offset, reason, file_bytes)
                });
            }
            Err(other) => return Err(other),
        }
    }
    let newest = *firsts.last().expect("not empty");
    let plan = match &damaged_record {
        Some(reason) => Some(record_plan(log_dir, reason, first_index, next_index)),
        None => recorded
            .filter(|&recorded| recorded > newest)
            .map(|recorded| missing_plan(log_dir, recorded, Some(newest), first_index, next_index)),
    };
    Ok(Survey {
        plan,
        present: Some((first_index, next_index)),
    })
}

/// The plan for a damaged extent record over whole, contiguous segments holding
/// `first_index..next_index`: nothing to remove, the record to write anew.
fn record_plan(log_dir: &Path, reason: &str, first_index: u64, next_index: u64) -> RepairPlan {
    RepairPlan {
        damaged: extent::extent_path(log_dir),
        damaged_first: next_index,
        offset: 0,
        reason: reason.to_string(),
        first_lost_index: next_index,
        damaged_bytes_cut: 0,
        later_segments: Vec::new(),
        first_index,
        missing_newest: None,
        damaged_record: Some(reason.to_string()),
    }
}

/// The plan for segments missing at the end: nothing to remove, the record to lower.
/// What is present holds `first_index..next_index` (`next_index` is the first index lost).
fn missing_plan(
    log_dir: &Path,
    recorded: u64,
    newest: Option<u64>,
    first_index: u64,
    next_index: u64,
) -> RepairPlan {
    let present = match newest {
        Some(newest) => format!("the newest present starts at index {newest}"),
        None => "no segment is present".to_string(),
    };
    RepairPlan {
        damaged: segment::segment_path(log_dir, recorded),
        damaged_first: recorded,
        offset: 0,
        reason: format!(
            "missing: the extent record says the newest segment starts at index {recorded}, \
             but {present}"
        ),
        first_lost_index: next_index,
        damaged_bytes_cut: 0,
        later_segments: Vec::new(),
        first_index,
        missing_newest: Some(recorded),
        damaged_record: None,
    }
}

/// Cuts the log as `plan` says: later segments removed (the last first, so the log stays
/// contiguous at every step of an interrupted cut), then the damaged one truncated at the
/// damage, or removed when the damage is its header; everything synced.
///
/// # Errors
/// I/O failures; a cut stopped half-way leaves a log that `plan` finds damaged again (or
/// none), so running it again finishes the job.
pub fn apply(log_dir: &Path, plan: &RepairPlan) -> Result<(), Error> {
    apply_with_hook(log_dir, plan, &|| Ok(()))
}

/// [`apply`], calling `after_lowering` once the extent record is lowered and before anything
/// is removed (tests stop there, as a crash would).
fn apply_with_hook(
    log_dir: &Path,
    plan: &RepairPlan,
    after_lowering: &dyn Fn() -> Result<(), Error>,
) -> Result<(), Error> {
    assert!(
        plan.damaged.parent() == Some(log_dir),
        "the plan is for another log"
    );
    // The newest segment the cut leaves, recorded first: a cut stopped half-way then leaves
    // a record no newer than what is left.
    let firsts = segment::list_segments(log_dir)?;
    let record_only = plan.record_only();
    let newest_left = match (
        plan.missing_newest.is_some() || record_only,
        plan.offset < super::HEADER_BYTES as u64,
    ) {
        (true, _) => firsts.last().copied(),
        (false, true) => firsts
            .iter()
            .copied()
            .take_while(|&first| first < plan.damaged_first)
            .last(),
        (false, false) => Some(plan.damaged_first),
    };
    match plan.damaged_record {
        // Nothing to lower from: the record is written anew, before anything is removed.
        Some(_) => extent::rewrite_newest(log_dir, newest_left)?,
        None => extent::lower_newest(log_dir, newest_left)?,
    }
    after_lowering()?;
    if plan.missing_newest.is_some() || record_only {
        assert!(plan.later_segments.is_empty(), "nothing to remove");
        return Ok(());
    }
    for path in plan.later_segments.iter().rev() {
        fs::remove_file(path).map_err(|e| Error::io(path, "remove", e))?;
    }
    segment::sync_dir(log_dir)?;
    let path = &plan.damaged;
    if plan.offset < super::HEADER_BYTES as u64 {
        fs::remove_file(path).map_err(|e| Error::io(path, "remove", e))?;
    } else {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, "open", e))?;
        file.set_len(plan.offset)
            .map_err(|e| Error::io(path, "truncate", e))?;
        file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
    }
    segment::sync_dir(log_dir)
}

/// Removes every segment of `log_dir` and the extent record (first, whatever state it is in),
/// oldest segment first, then syncs the directory. For a log that ends before the newest
/// snapshot: the caller has checked that the snapshot is whole and covers every entry
/// present. A removal stopped half-way leaves older segments missing and no record: the same
/// log ending before the snapshot, which the caller removes again.
///
/// # Errors
/// I/O failures.
pub fn remove_all(log_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    extent::rewrite_newest(log_dir, None)?;
    remove_segments(log_dir, &segment::list_segments(log_dir)?)
}

/// Removes every segment of `log_dir` before the one starting at `keep_from`, oldest first (so
/// what an interrupted removal leaves is contiguous), then syncs the directory. For damage that
/// a snapshot covers: the caller has checked that the newest snapshot holds every entry before
/// `keep_from`.
///
/// # Errors
/// I/O failures; `keep_from` not the first index of a segment is [`Error::Invalid`].
pub fn remove_before(log_dir: &Path, keep_from: u64) -> Result<Vec<PathBuf>, Error> {
    let firsts = segment::list_segments(log_dir)?;
    if !firsts.contains(&keep_from) {
        let message = format!("no segment of {} starts at {keep_from}", log_dir.display());
        return Err(Error::Invalid { message });
    }
    let before = firsts
        .iter()
        .take_while(|&&first| first < keep_from)
        .count();
    remove_segments(log_dir, &firsts[..before])
}

/// Removes the segments of `log_dir` starting at `firsts`, in that order (oldest first: what
/// an interrupted removal leaves is contiguous), then syncs the directory.
fn remove_segments(log_dir: &Path, firsts: &[u64]) -> Result<Vec<PathBuf>, Error> {
    let mut removed = Vec::new();
    for &first in firsts {
        let path = segment::segment_path(log_dir, first);
        fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
        removed.push(path);
    }
    segment::sync_dir(log_dir)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::segment::test_segment_bytes as segment_bytes;

    fn log_dir(name: &str, segments: &[(u64, Vec<u8>)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lithair-repair-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create dir");
        for (first, bytes) in segments {
            fs::write(segment::segment_path(&dir, *first), bytes).expect("write");
        }
        dir
    }

    fn names(dir: &Path) -> Vec<u64> {
        segment::list_segments(dir).expect("list")
    }

    #[test]
    fn a_hole_is_cut_at_the_segment_after_it() {
        let dir = log_dir(
            "hole",
            &[
                (1, segment_bytes(1, 3)),
                (6, segment_bytes(6, 2)),
                (8, segment_bytes(8, 2)),
            ],
        );
        let plan = plan(&dir).expect("plan").expect("damage");
        assert_eq!((plan.offset, plan.first_lost_index), (0, 4));
        assert_eq!(plan.damaged, segment::segment_path(&dir, 6));
        assert_eq!(plan.later_segments, [segment::segment_path(&dir, 8)]);
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1]);
        assert_eq!(plan_of(&dir), None, "nothing left to cut");
        let _ = fs::remove_dir_all(&dir);
    }

    fn plan_of(dir: &Path) -> Option<RepairPlan> {
        plan(dir).expect("plan")
    }

    #[test]
    fn a_damaged_header_removes_its_segment_and_a_torn_middle_segment_is_cut() {
        let mut bad_header = segment_bytes(4, 2);
        bad_header[0] ^= 0xff;
        let dir = log_dir(
            "header",
            &[
                (1, segment_bytes(1, 3)),
                (4, bad_header),
                (6, segment_bytes(6, 2)),
            ],
        );
        let plan = plan_of(&dir).expect("damage");
        assert_eq!((plan.offset, plan.first_lost_index), (0, 4));
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1]);
        let _ = fs::remove_dir_all(&dir);

        // A segment that is not the last, ending in half a frame: cut where its frames end.
        let whole = segment_bytes(4, 2);
        let mut torn = segment_bytes(1, 3);
        let torn_at = torn.len() as u64;
        torn.extend_from_slice(&whole[crate::log::HEADER_BYTES..whole.len() - 3]);
        let dir = log_dir("torn", &[(1, torn), (4, whole)]);
        let plan = plan_of(&dir).expect("damage");
        assert_eq!((plan.offset, plan.first_lost_index), (torn_at, 4));
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1]);
        let kept = fs::read(segment::segment_path(&dir, 1)).expect("read");
        assert_eq!(kept, segment_bytes(1, 3));
        assert_eq!(plan_of(&dir), None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A cut removing the newest segments lowers the extent record first: stopped right
    /// after (as a crash there), the directory still opens (nothing removed, the record no
    /// newer than the newest segment); finished, the record names the segment kept.
    #[test]
    fn a_cut_lowers_the_record_before_removing_and_a_stopped_one_leaves_a_log_that_opens() {
        let mut bad_header = segment_bytes(4, 2);
        bad_header[0] ^= 0xff;
        let dir = log_dir(
            "extent-order",
            &[
                (1, segment_bytes(1, 3)),
                (4, bad_header),
                (6, segment_bytes(6, 2)),
            ],
        );
        extent::record_newest(&dir, 6).expect("record");
        let plan = plan_of(&dir).expect("damage");
        assert_eq!(plan.missing_newest, None);
        let stop = || {
            Err(Error::Invalid {
                message: "stopped".to_string(),
            })
        };
        assert!(apply_with_hook(&dir, &plan, &stop).is_err());
        assert_eq!(names(&dir), [1, 4, 6], "nothing removed yet");
        assert_eq!(extent::read_newest(&dir).expect("read"), Some(1));
        assert_eq!(extent::check_extent(&dir).expect("opens"), [1, 4, 6]);
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1]);
        assert_eq!(extent::read_newest(&dir).expect("read"), Some(1));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Segments missing at the end are damage `plan` reports (what is present ends the log);
    /// applying it removes nothing and lowers the record to the newest segment present, or
    /// removes it when none is.
    #[test]
    fn missing_newest_segments_are_accepted_by_lowering_the_record() {
        let dir = log_dir(
            "extent-missing",
            &[(1, segment_bytes(1, 3)), (4, segment_bytes(4, 2))],
        );
        extent::record_newest(&dir, 9).expect("record");
        let plan = plan_of(&dir).expect("missing segments");
        assert_eq!(plan.missing_newest, Some(9));
        assert_eq!((plan.first_index, plan.first_lost_index), (1, 6));
        assert_eq!(plan.damaged, segment::segment_path(&dir, 9));
        assert!(plan.later_segments.is_empty());
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1, 4]);
        assert_eq!(extent::read_newest(&dir).expect("read"), Some(4));
        assert_eq!(plan_of(&dir), None);
        for first in [1, 4] {
            fs::remove_file(segment::segment_path(&dir, first)).expect("delete");
        }
        let plan = plan_of(&dir).expect("every segment missing");
        assert_eq!(plan.missing_newest, Some(4));
        apply(&dir, &plan).expect("apply");
        assert_eq!(extent::read_newest(&dir).expect("read"), None);
        assert_eq!(plan_of(&dir), None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A damaged extent record is damage `plan` reports: alone (whole segments), the cut
    /// writes it anew naming the newest segment; beside other damage, the cut writes it
    /// anew naming the newest segment it leaves (it cannot be lowered from).
    #[test]
    fn a_damaged_record_is_written_anew_alone_or_beside_a_cut() {
        let dir = log_dir(
            "extent-damaged",
            &[(1, segment_bytes(1, 3)), (4, segment_bytes(4, 2))],
        );
        fs::write(extent::extent_path(&dir), b"not a record").expect("damage");
        let plan = plan_of(&dir).expect("a damaged record");
        assert!(plan.record_only(), "{plan:?}");
        assert_eq!((plan.first_index, plan.first_lost_index), (1, 6));
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1, 4]);
        assert_eq!(extent::read_newest(&dir).expect("read"), Some(4));
        assert_eq!(plan_of(&dir), None);

        fs::write(segment::segment_path(&dir, 9), segment_bytes(9, 2)).expect("after a hole");
        fs::write(extent::extent_path(&dir), b"not a record").expect("damage");
        let plan = plan_of(&dir).expect("a hole");
        assert!(
            !plan.record_only() && plan.damaged_record.is_some(),
            "{plan:?}"
        );
        assert_eq!(plan.damaged, segment::segment_path(&dir, 9));
        apply(&dir, &plan).expect("apply");
        assert_eq!(names(&dir), [1, 4]);
        assert_eq!(extent::read_newest(&dir).expect("read"), Some(4));
        assert_eq!(plan_of(&dir), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
