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
const CLUSTER_FILE_NAMES: [&str; 2] = [
    crate::raft::storage_log::HARD_STATE_FILE_NAME,
    crate::raft::node::PEER_BOOK_FILE_NAME,
];

/// Finds the first damage in `data`'s log that a start refuses and reports the cut that gets
/// past it (the entries from the damage on are lost); with `apply`, makes the cut.
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
    let Some(plan) = repair::plan(&log_dir).map_err(|e| e.to_string())? else {
        return writeln!(out, "no damage a start would refuse: nothing to repair").map_err(io);
    };
    let kept_last = plan.first_lost_index - 1;
    let newest_snapshot = snapshot::list_snapshots(data)
        .map_err(|e| e.to_string())?
        .last()
        .copied()
        .unwrap_or(0);
    if newest_snapshot > kept_last || (kept_last < plan.first_index && plan.first_index > 1) {
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
    writeln!(
        out,
        "damage: {} at offset {}: {}",
        plan.damaged.display(),
        plan.offset,
        plan.reason
    )
    .map_err(io)?;
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
