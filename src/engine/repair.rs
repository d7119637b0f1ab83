//! `log repair`: the operator's way past damage that recovery refuses on a single node.
//!
//! Owns: the checks around `log::repair` that need more than the log (the data-directory
//! lock, the snapshots, whether the directory belongs to a cluster node) and the report.
//! Must not: cut anything without `apply` (the default is a dry run that says what would be
//! lost), or cut a cluster node's log (its peers hold the entries: it rejoins instead).

use super::snapshot;
use crate::log::{self, repair};
use std::io::Write;
use std::path::Path;

/// Files whose presence marks a cluster node's data directory (Raft state, peer book).
pub(crate) const CLUSTER_FILE_NAMES: [&str; 2] = [
    crate::raft::storage_log::HARD_STATE_FILE_NAME,
    crate::raft::node::PEER_BOOK_FILE_NAME,
];

/// Finds the first damage in `data`'s log that a start refuses and reports the cut that gets
/// past it (the entries from the damage on are lost); with `apply`, makes the cut. Damage in
/// entries the newest whole snapshot covers is removed from the front instead (see
/// `covered_cut`): nothing a start needs is lost.
///
/// # Errors
/// A directory in use (locked), a cluster node's directory, a cut the newest snapshot would
/// not survive (the log would end before it), I/O failures.
pub fn log_repair(data: &Path, apply: bool, out: &mut dyn Write) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let log_dir = data.join(log::LOG_DIR_NAME);
    if !log_dir.is_dir() {
        // Checked before the lock, which would leave a LOCK file in a directory that is not
        // a data directory at all.
        return Err(format!("{} has no log directory", data.display()));
    }
    // Held to the end: no server may append while the log is judged and cut.
    let _lock = log::lock_data_dir(data).map_err(|e| e.to_string())?;
    if let Some(name) = CLUSTER_FILE_NAMES
        .iter()
        .find(|name| data.join(name).exists())
    {
        return Err(format!(
            "{} is a cluster node's directory ({name}): its peers hold its entries; remove \
             the node (`cluster leave`), empty its directory and join it again instead",
            data.display()
        ));
    }
    let survey = repair::survey(&log_dir).map_err(|e| e.to_string())?;
    let newest_snapshot = snapshot::list_snapshots(data)
        .map_err(|e| e.to_string())?
        .last()
        .copied()
        .unwrap_or(0);
    let Some(plan) = survey.plan else {
        // Whole and contiguous, but a start still refuses a log that ends before the newest
        // snapshot (its newest segments were deleted, in a directory without an extent
        // record, or by a removal `drop_covered_log` did not finish).
        if let Some((_, next_index)) = survey.present {
            if next_index - 1 < newest_snapshot {
                let reason = format!(
                    "the log ends at index {} but the newest snapshot covers up to \
                     {newest_snapshot}",
                    next_index - 1
                );
                return drop_covered_log(data, &log_dir, &reason, newest_snapshot, apply, out);
            }
        }
        return writeln!(out, "no damage a start would refuse: nothing to repair").map_err(io);
    };
    let kept_last = plan.first_lost_index - 1;
    if plan.record_only() {
        return rewrite_record(
            data,
            &log_dir,
            &plan,
            survey.present,
            newest_snapshot,
            apply,
            out,
        );
    }
    if plan.missing_newest.is_some() {
        return accept_missing(data, &log_dir, &plan, newest_snapshot, apply, out);
    }
    if newest_snapshot > kept_last || (kept_last < plan.first_index && plan.first_index > 1) {
        if let Some(keep_from) = covered_cut(data, &log_dir, &plan, newest_snapshot)? {
            return cut_covered_damage(&log_dir, &plan, newest_snapshot, keep_from, apply, out);
        }
        return Err(format!(
            "{}: {} at offset {}; cutting there would keep the log only up to index \
             {kept_last}, before what the newest snapshot ({newest_snapshot}) covers or \
             where the log starts ({}): a start would refuse it still; restore the data \
             directory from a replica or backup",
            plan.damaged.display(),
            plan.reason,
            plan.offset,
            plan.first_index
        ));
    }
    write_damage(&plan, out)?;
    let kept = match kept_last >= plan.first_index {
        true => format!("entries {}..={kept_last}", plan.first_index),
        false => "no entry".to_string(),
    };
    let damaged_cut = match plan.offset < log::HEADER_BYTES as u64 {
        true => "removed whole".to_string(),
        false => format!(
            "{} bytes cut from offset {}",
            plan.damaged_bytes_cut, plan.offset
        ),
    };
    writeln!(
        out,
        "the cut keeps {kept}; loses every entry from index {} on: {} {damaged_cut}, {} later \
         segment(s) removed",
        plan.first_lost_index,
        plan.damaged.display(),
        plan.later_segments.len()
    )
    .map_err(io)?;
    for path in &plan.later_segments {
        writeln!(out, "  remove {}", path.display()).map_err(io)?;
    }
    if !apply {
        return writeln!(
            out,
            "dry run: nothing changed; try a replica or a backup first, then run again with \
             --apply to cut"
        )
        .map_err(io);
    }
    repair::apply(&log_dir, &plan).map_err(|e| e.to_string())?;
    writeln!(out, "cut: the log now ends at index {kept_last}").map_err(io)
}

/// Where the log could start instead when its first damage lies in entries the newest
/// snapshot covers: the first index of the segment after the damage (or of the damaged
/// segment itself when the damage is a gap before it), if that is at most one past the
/// snapshot and the snapshot is whole. A start then loads the snapshot and replays from the
/// index after it, never reading what was removed.
fn covered_cut(
    data: &Path,
    log_dir: &Path,
    plan: &repair::RepairPlan,
    newest_snapshot: u64,
) -> Result<Option<u64>, String> {
    if newest_snapshot == 0 || snapshot::load_at(data, newest_snapshot).is_err() {
        return Ok(None);
    }
    let keep_from = if plan.first_lost_index < plan.damaged_first {
        // A gap: the damaged segment itself is whole, the missing entries come before it.
        Some(plan.damaged_first)
    } else {
        let firsts = log::list_segments(log_dir).map_err(|e| e.to_string())?;
        firsts.into_iter().find(|&first| first > plan.damaged_first)
    };
    Ok(keep_from.filter(|&keep_from| keep_from <= newest_snapshot + 1))
}

/// Reports (and with `apply`, makes) the removal of the segments before `keep_from`, whose
/// entries, damage included, the newest snapshot covers.
fn cut_covered_damage(
    log_dir: &Path,
    plan: &repair::RepairPlan,
    newest_snapshot: u64,
    keep_from: u64,
    apply: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    write_damage(plan, out)?;
    writeln!(
        out,
        "the newest snapshot ({newest_snapshot}) covers every entry before index {keep_from}: \
         removing the segments before it loses no entry a start needs (only the older \
         snapshot's fallback); the log would start at index {keep_from}"
    )
    .map_err(io)?;
    write_removals(log_dir, keep_from, out)?;
    if !apply {
        return writeln!(
            out,
            "dry run: nothing changed; run again with --apply to remove them"
        )
        .map_err(io);
    }
    let removed = repair::remove_before(log_dir, keep_from).map_err(|e| e.to_string())?;
    writeln!(
        out,
        "removed {} segment(s): the log now starts at index {keep_from}",
        removed.len()
    )
    .map_err(io)?;
    if repair::plan(log_dir).map_err(|e| e.to_string())?.is_some() {
        writeln!(out, "more damage remains: run `log repair` again").map_err(io)?;
    }
    Ok(())
}

/// Reports (and with `apply`, accepts) the loss of segments missing at the end of the log:
/// nothing is removed, the extent record is lowered to the newest segment present. Refused when
/// what is present ends before the newest snapshot (a start would refuse it still); with no
/// segment left a start begins an empty log after the snapshot (or at 1).
fn accept_missing(
    data: &Path,
    log_dir: &Path,
    plan: &repair::RepairPlan,
    newest_snapshot: u64,
    apply: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let present = !log::list_segments(log_dir)
        .map_err(|e| e.to_string())?
        .is_empty();
    let kept_last = plan.first_lost_index - 1;
    if present && newest_snapshot > kept_last {
        let reason = format!("{}: {}", plan.damaged.display(), plan.reason);
        return drop_covered_log(data, log_dir, &reason, newest_snapshot, apply, out);
    }
    write_damage(plan, out)?;
    let kept = match present {
        true => format!("entries {}..={kept_last}", plan.first_index),
        false => "no entry (a start begins after the newest snapshot, if any)".to_string(),
    };
    writeln!(
        out,
        "accepting the loss keeps {kept}: the entries of the missing segment(s) are lost; \
         nothing is removed, the log's extent record is lowered"
    )
    .map_err(io)?;
    if !apply {
        return writeln!(
            out,
            "dry run: nothing changed; restore the missing segments from a backup or replica if \
             you can, else run again with --apply to accept the loss"
        )
        .map_err(io);
    }
    repair::apply(log_dir, plan).map_err(|e| e.to_string())?;
    match present {
        true => writeln!(out, "accepted: the log now ends at index {kept_last}").map_err(io),
        false => writeln!(
            out,
            "accepted: the log holds no segment; a start creates one"
        )
        .map_err(io),
    }
}

/// Reports (and with `apply`, makes) a new extent record over whole, contiguous segments, in
/// place of a damaged one: it names the newest segment present. Whether a newer segment was
/// lost too cannot be told any more; if what is present ends before the newest snapshot, one
/// was, and the log goes as `drop_covered_log` says.
fn rewrite_record(
    data: &Path,
    log_dir: &Path,
    plan: &repair::RepairPlan,
    present: Option<(u64, u64)>,
    newest_snapshot: u64,
    apply: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let kept = match present {
        Some((first, next)) if next - 1 < newest_snapshot => {
            let reason = format!(
                "{}: {}; the segments present end at index {} but the newest snapshot covers \
                 up to {newest_snapshot}",
                plan.damaged.display(),
                plan.reason,
                next - 1
            );
            debug_assert!(first <= next);
            return drop_covered_log(data, log_dir, &reason, newest_snapshot, apply, out);
        }
        Some((first, next)) if next > first => format!("entries {first}..={}", next - 1),
        Some(_) => "no entry".to_string(),
        None => "no segment (a start begins after the newest snapshot, if any)".to_string(),
    };
    write_damage(plan, out)?;
    let newest = log::list_segments(log_dir)
        .map_err(|e| e.to_string())?
        .last()
        .copied();
    let record = match newest {
        Some(newest) => format!("write a new record naming the segment starting at {newest}"),
        None => "remove the record (no segment is present)".to_string(),
    };
    writeln!(
        out,
        "the segments present are whole and contiguous and hold {kept}: {record}; if a newer \
         segment was deleted too, its entries are lost (restore the record from a backup or \
         replica to keep that check)"
    )
    .map_err(io)?;
    if !apply {
        return writeln!(
            out,
            "dry run: nothing changed; run again with --apply to write the record"
        )
        .map_err(io);
    }
    repair::apply(log_dir, plan).map_err(|e| e.to_string())?;
    writeln!(out, "rewrote the log's extent record").map_err(io)
}

/// Reports (and with `apply`, makes) the removal of every segment and of the extent record
/// when what the segments hold ends before the newest snapshot (`why`): a start refuses that
/// log, and the snapshot covers every entry in it. The snapshot's state is kept; whatever the
/// log held after it (in segments that are gone) is lost, and the log starts again after it.
/// Refused when the newest snapshot does not load whole (then nothing is left to start from).
fn drop_covered_log(
    data: &Path,
    log_dir: &Path,
    why: &str,
    newest_snapshot: u64,
    apply: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    if snapshot::load_at(data, newest_snapshot).is_err() {
        return Err(format!(
            "{why}; the newest snapshot ({newest_snapshot}) does not load whole: a start would \
             refuse the log still; restore the missing segments from a replica or backup"
        ));
    }
    writeln!(out, "damage: {why}").map_err(io)?;
    writeln!(
        out,
        "the newest snapshot ({newest_snapshot}) covers every entry the segments present \
         hold: removing them and the extent record keeps the state up to index \
         {newest_snapshot}; every entry after it (in the missing segments) is lost, and the \
         log starts again at index {}",
        newest_snapshot + 1
    )
    .map_err(io)?;
    write_removals(log_dir, u64::MAX, out)?;
    if !apply {
        return writeln!(
            out,
            "dry run: nothing changed; restore the missing segments from a backup or replica if \
             you can, else run again with --apply to accept the loss"
        )
        .map_err(io);
    }
    let removed = repair::remove_all(log_dir).map_err(|e| e.to_string())?;
    writeln!(
        out,
        "removed {} segment(s): a start loads the snapshot at {newest_snapshot} and begins \
         the log after it",
        removed.len()
    )
    .map_err(io)
}

/// Lists the segments of `log_dir` that start before `before`, one "  remove PATH" line each.
fn write_removals(log_dir: &Path, before: u64, out: &mut dyn Write) -> Result<(), String> {
    let firsts = log::list_segments(log_dir).map_err(|e| e.to_string())?;
    for first in firsts.into_iter().take_while(|&first| first < before) {
        let path = log::segment_path(log_dir, first);
        writeln!(out, "  remove {}", path.display()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The report's first line: where the damage is and what it is.
fn write_damage(plan: &repair::RepairPlan, out: &mut dyn Write) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    writeln!(
        out,
        "damage: {} at offset {}: {}",
        plan.damaged.display(),
        plan.offset,
        plan.reason
    )
    .map_err(io)?;
    match &plan.damaged_record {
        Some(reason) if !plan.record_only() => writeln!(
            out,
            "damage: the log's extent record is damaged too ({reason}): the cut writes it anew"
        )
        .map_err(io),
        _ => Ok(()),
    }
}
