//! `log backup`: a consistent copy of a single node's data directory, taken beside the running
//! server.
//!
//! Owns: choosing what to copy (the newest whole snapshot and the log from just after it),
//! copying it, making the copy durable and checking it as a start would.
//! Must not: take the data directory's lock or write anything in it (the server keeps
//! running), or copy a cluster node's directory (its copies are its peers; a restored Raft log
//! could vote and answer with entries its cluster no longer has).
//!
//! Why a copy is consistent without the lock: snapshot files are renamed into place whole and
//! never change; segments only grow, and compaction deletes whole segments below a snapshot.
//! A copy of the newest whole snapshot and of every segment from the one holding the entry
//! after it, each cut at its last whole frame, is therefore the log as it stood at some
//! instant, unless a file vanished or a frame was landing under the read: then the copy fails
//! its check (or a read fails) and is taken again, at most [`BACKUP_ATTEMPTS_MAX`] times.
//!
//! A backup is whole only once it printed "verified": one cut short (the process killed
//! mid-copy) is left as it is in its destination, segments before the snapshot, and must not be
//! used.

use super::{repair, snapshot, tools};
use crate::log;
use std::io::Write;
use std::path::Path;

/// Copies attempted before a backup gives up (each failed one raced with the server's
/// compaction or a write, or met real damage, which every attempt meets again).
pub const BACKUP_ATTEMPTS_MAX: usize = 5;

/// Copies `data` (a single node's data directory, in use or not) to `dest`, which must not
/// exist or be empty, and checks the copy as `log verify` does. The copy starts as the
/// original would have at the instant it was taken: the same state, every write acknowledged
/// before the backup began included.
///
/// # Errors
/// A cluster node's directory, a destination that holds files, damage in the original (every
/// attempt meets it), I/O failures.
pub fn log_backup(data: &Path, dest: &Path, out: &mut dyn Write) -> Result<(), String> {
    let log_dir = data.join(log::LOG_DIR_NAME);
    if !log_dir.is_dir() {
        return Err(format!("{} has no log directory", data.display()));
    }
    if let Some(name) = repair::CLUSTER_FILE_NAMES
        .iter()
        .find(|name| data.join(name).exists())
    {
        return Err(format!(
            "{} is a cluster node's data directory ({name}): its copies are the other nodes; \
             back up a cluster by its data, not its Raft log",
            data.display()
        ));
    }
    prepare_destination(dest)?;
    // Compared once both exist (canonical paths see through `..` and links).
    if let (Ok(source), Ok(target)) = (data.canonicalize(), dest.canonicalize()) {
        if target.starts_with(&source) {
            let _ = std::fs::remove_dir(dest); // Empty: made or found empty just now.
            return Err(format!(
                "{} is inside the data directory: a backup there is lost with it",
                dest.display()
            ));
        }
    }
    let mut failures = Vec::new();
    for _ in 0..BACKUP_ATTEMPTS_MAX {
        let copied = copy_once(data, dest).and_then(|copy| {
            let mut report = Vec::new();
            tools::log_verify(dest, &mut report).map(|()| copy)
        });
        match copied {
            Ok(copy) => {
                let io = |e: std::io::Error| e.to_string();
                let snapshot = copy
                    .snapshot
                    .map_or("none".to_string(), |index| index.to_string());
                writeln!(
                    out,
                    "backup: {} -> {}: snapshot {snapshot}, {} segments, {} bytes; verified",
                    data.display(),
                    dest.display(),
                    copy.segments,
                    copy.bytes
                )
                .map_err(io)?;
                return tools::replay_stream(dest, out);
            }
            Err(failure) => {
                failures.push(failure);
                clear_copy(dest)?;
            }
        }
    }
    Err(format!(
        "no consistent copy in {BACKUP_ATTEMPTS_MAX} attempts (damage in the original? run \
         `log verify`): {}",
        failures.last().map_or("", String::as_str)
    ))
}

/// What one attempt copied.
struct Copy {
    snapshot: Option<u64>,
    segments: usize,
    bytes: u64,
}

/// The destination exists and is empty afterwards, or it is refused: a backup never writes
/// over files.
fn prepare_destination(dest: &Path) -> Result<(), String> {
    if dest.exists() {
        let mut entries =
            std::fs::read_dir(dest).map_err(|e| format!("cannot read {}: {e}", dest.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty: a backup goes to a new directory",
                dest.display()
            ));
        }
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))
}

/// Removes what a failed attempt wrote (only the two folders this module creates).
fn clear_copy(dest: &Path) -> Result<(), String> {
    for folder in [dest.join(log::LOG_DIR_NAME), snapshot::snapshot_dir(dest)] {
        match std::fs::remove_dir_all(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot clear {}: {e}", folder.display())),
        }
    }
    Ok(())
}

/// One copy: the newest whole snapshot, then the segments from the one holding the entry
/// after it, each cut at its last whole frame, every file and folder synced.
fn copy_once(data: &Path, dest: &Path) -> Result<Copy, String> {
    let snapshot = newest_whole_snapshot(data)?;
    let from = snapshot.as_ref().map_or(1, |(index, _)| index + 1);
    let source_log = data.join(log::LOG_DIR_NAME);
    let firsts = log::list_segments(&source_log).map_err(|e| e.to_string())?;
    // The segment holding `from` is the last one starting at or before it.
    let keep_from = firsts.iter().rposition(|&first| first <= from).unwrap_or(0);
    let dest_log = dest.join(log::LOG_DIR_NAME);
    std::fs::create_dir_all(&dest_log).map_err(|e| e.to_string())?;
    let mut copy = Copy {
        snapshot: None,
        segments: 0,
        bytes: 0,
    };
    let mut buf = Vec::new();
    for &first in &firsts[keep_from..] {
        let source = log::segment_path(&source_log, first);
        log::read_segment(&source, &mut buf).map_err(|e| e.to_string())?;
        let end = log::valid_end(&source, &buf, first).map_err(|e| e.to_string())?;
        let end = usize::try_from(end).map_err(|_| "segment offset past memory".to_string())?;
        assert!(end <= buf.len(), "a valid end past the bytes read");
        let target = log::segment_path(&dest_log, first);
        write_synced(&target, &buf[..end])?;
        copy.segments += 1;
        copy.bytes += end as u64;
    }
    log::sync_dir(&dest_log).map_err(|e| e.to_string())?;
    if let Some((index, file)) = snapshot {
        let folder = snapshot::snapshot_dir(dest);
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        write_synced(&snapshot::snapshot_file(dest, index), &file)?;
        log::sync_dir(&folder).map_err(|e| e.to_string())?;
        copy.snapshot = Some(index);
        copy.bytes += file.len() as u64;
    }
    log::sync_dir(dest).map_err(|e| e.to_string())?;
    Ok(copy)
}

/// The newest snapshot whose checksum holds, with its file's bytes, as a start would load
/// it (a damaged newest falls back to the older one); `None` when there is none. A snapshot
/// pruned between listing and reading is passed over like a damaged one.
fn newest_whole_snapshot(data: &Path) -> Result<Option<(u64, Vec<u8>)>, String> {
    let listed = snapshot::list_snapshots(data).map_err(|e| e.to_string())?;
    for &index in listed.iter().rev() {
        let Ok(file) = snapshot::read_snapshot_file(data, index) else {
            continue;
        };
        if snapshot::parse_snapshot(&file).is_ok() {
            return Ok(Some((index, file)));
        }
    }
    Ok(None)
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)
}
