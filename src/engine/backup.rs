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
//! Why a copy cut short cannot pass for a whole one: every attempt is written into a staging
//! directory beside the destination (`NAME` + [`STAGING_SUFFIX`]), synced and verified there,
//! and only then renamed to the destination, and the parent synced. The destination therefore
//! exists only whole; a backup killed mid-copy leaves the staging directory, named for what it
//! is, which the next backup to the same destination refuses to write over (the operator
//! removes it).

use super::{repair, snapshot, tools};
use crate::log;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Copies attempted before a backup gives up (each failed one raced with the server's
/// compaction or a write, or met real damage, which every attempt meets again).
pub const BACKUP_ATTEMPTS_MAX: usize = 5;

/// Appended to the destination's name to name the staging directory a backup is copied into
/// before it is renamed into place (beside the destination: same file system, so the rename is
/// atomic).
pub const STAGING_SUFFIX: &str = ".backup-incomplete";

/// Test hook: called with each file a backup attempt has just written into the staging
/// directory. An `Err` fails the backup there (its staging directory is removed, as on any
/// failure); a panic leaves everything as a process killed at that point would.
pub type BackupHook<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

/// Copies `data` (a single node's data directory, in use or not) to `dest`, which must not
/// exist or be empty, and checks the copy as `log verify` does. The copy starts as the
/// original would have at the instant it was taken: the same state, every write acknowledged
/// before the backup began included.
///
/// # Errors
/// A cluster node's directory, a destination that holds files, damage in the original (every
/// attempt meets it), I/O failures.
pub fn log_backup(data: &Path, dest: &Path, out: &mut dyn Write) -> Result<(), String> {
    log_backup_with_hook(data, dest, out, &|_| Ok(()))
}

/// [`log_backup`] with a [`BackupHook`] called after each file copied (for tests that cut a
/// backup short).
///
/// # Errors
/// As [`log_backup`]; also the hook's error, and a staging directory left by an earlier
/// backup cut short.
pub fn log_backup_with_hook(
    data: &Path,
    dest: &Path,
    out: &mut dyn Write,
    hook: BackupHook<'_>,
) -> Result<(), String> {
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
    let staging = staging_path(dest)?;
    prepare_destination(data, dest, &staging)?;
    let result = copy_verified(data, &staging, hook);
    let copy = match result {
        Ok(copy) => copy,
        Err(failure) => {
            // Ours alone (created new above): nothing of a failed backup is left behind.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(failure);
        }
    };
    // Whole and verified: only now does the destination appear (an empty one is replaced).
    let moved = std::fs::rename(&staging, dest)
        .map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                staging.display(),
                dest.display()
            )
        })
        .and_then(|()| sync_parent(dest));
    if let Err(failure) = moved {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(failure);
    }
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
    tools::replay_stream(dest, out)
}

/// Copies `data` into `staging` and verifies it, taking it again when an attempt raced the
/// server, at most [`BACKUP_ATTEMPTS_MAX`] times.
fn copy_verified(data: &Path, staging: &Path, hook: BackupHook<'_>) -> Result<Copy, String> {
    let mut failures = Vec::new();
    for _ in 0..BACKUP_ATTEMPTS_MAX {
        let copied = copy_once(data, staging, hook).and_then(|copy| {
            let mut report = Vec::new();
            tools::log_verify(staging, &mut report).map(|()| copy)
        });
        match copied {
            Ok(copy) => return Ok(copy),
            Err(failure) => {
                failures.push(failure);
                clear_copy(staging)?;
            }
        }
    }
    Err(format!(
        "no consistent copy in {BACKUP_ATTEMPTS_MAX} attempts (damage in the original? run \
         `log verify`): {}",
        failures.last().map_or("", String::as_str)
    ))
}

/// The staging directory of a backup to `dest`: beside it, named after it.
fn staging_path(dest: &Path) -> Result<PathBuf, String> {
    let name = dest
        .file_name()
        .ok_or_else(|| format!("{} names no directory to create", dest.display()))?;
    let mut staging = name.to_os_string();
    staging.push(STAGING_SUFFIX);
    Ok(dest.with_file_name(staging))
}

/// Fsyncs the directory holding `path`, so a rename into it is durable.
fn sync_parent(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    log::sync_dir(parent).map_err(|e| e.to_string())
}

/// What one attempt copied.
struct Copy {
    snapshot: Option<u64>,
    segments: usize,
    bytes: u64,
}

/// Refuses a destination that holds files or lies inside the data directory, and creates the
/// staging directory new (refusing one left by a backup cut short: a backup never writes over
/// files). The destination's parent is created if missing.
fn prepare_destination(data: &Path, dest: &Path, staging: &Path) -> Result<(), String> {
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
    let create = |e: std::io::Error| format!("cannot create {}: {e}", staging.display());
    if let Some(parent) = staging.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(create)?;
    }
    match std::fs::create_dir(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(format!(
                "{} exists: a backup to {} is running or was cut short (its copy is not \
                 whole); remove it and back up again",
                staging.display(),
                dest.display()
            ))
        }
        Err(e) => return Err(create(e)),
    }
    // Compared once the staging directory exists (canonical paths see through `..` and links).
    if let (Ok(source), Ok(target)) = (data.canonicalize(), staging.canonicalize()) {
        if target.starts_with(&source) {
            let _ = std::fs::remove_dir(staging); // Empty: made just now.
            return Err(format!(
                "{} is inside the data directory: a backup there is lost with it",
                dest.display()
            ));
        }
    }
    Ok(())
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
fn copy_once(data: &Path, dest: &Path, hook: BackupHook<'_>) -> Result<Copy, String> {
    let snapshot = newest_whole_snapshot(data)?;
    let from = snapshot.as_ref().map_or(1, |(index, _)| index + 1);
    let source_log = data.join(log::LOG_DIR_NAME);
    // Listed after reading the extent record: a deleted newest segment fails the backup
    // (every attempt) instead of copying a shorter log.
    let firsts = log::check_extent(&source_log).map_err(|e| e.to_string())?;
    // A cut a crash interrupted leaves a segment that reads shorter than the log is until an
    // open finishes it: copied now, the backup would lack entries the log keeps.
    if log::cut_pending(&source_log).map_err(|e| e.to_string())? {
        return Err(format!(
            "{}: a truncation a crash interrupted is pending (file {}); start the server on this \
             directory once (opening the log finishes it), then back it up",
            source_log.display(),
            log::CUT_FILE_NAME
        ));
    }
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
        hook(&target)?;
        copy.segments += 1;
        copy.bytes += end as u64;
    }
    // The copy's own extent record, written after its segments (as the log does): its newest
    // segment deleted later is caught like the original's.
    if let Some(&newest) = firsts.last() {
        log::record_newest(&dest_log, newest).map_err(|e| e.to_string())?;
        hook(&log::extent_path(&dest_log))?;
    }
    log::sync_dir(&dest_log).map_err(|e| e.to_string())?;
    if let Some((index, checked)) = snapshot {
        let folder = snapshot::snapshot_dir(dest);
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let target = snapshot::snapshot_file(dest, index);
        let length = snapshot::SNAPSHOT_HEADER_BYTES as u64 + checked.body_bytes;
        let mut source = &checked.file;
        source
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| format!("cannot read snapshot {index}: {e}"))?;
        write_synced_from(&target, &mut source.take(length), length)?;
        hook(&target)?;
        log::sync_dir(&folder).map_err(|e| e.to_string())?;
        copy.snapshot = Some(index);
        copy.bytes += length;
    }
    log::sync_dir(dest).map_err(|e| e.to_string())?;
    Ok(copy)
}

/// The newest snapshot whose checksums hold, as a start would load it (a damaged newest falls
/// back to the older one), checked by streaming and kept open: the copy is made from the
/// bytes checked even if a running server prunes the file meanwhile, and no snapshot is ever
/// held in memory whole. `None` when there is none. A snapshot pruned between listing and
/// opening is passed over like a damaged one.
fn newest_whole_snapshot(data: &Path) -> Result<Option<(u64, snapshot::CheckedFile)>, String> {
    let listed = snapshot::list_snapshots(data).map_err(|e| e.to_string())?;
    for &index in listed.iter().rev() {
        let path = snapshot::snapshot_file(data, index);
        match snapshot::check_file(&path) {
            Ok(Ok(checked)) if checked.index == index => return Ok(Some((index, checked))),
            _ => continue,
        }
    }
    Ok(None)
}

/// Writes the `length` bytes of `source` to a new file at `path` and syncs it; fewer is an
/// error (the copy would not be the file checked).
fn write_synced_from(path: &Path, source: &mut dyn Read, length: u64) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(failed)?;
    let copied = std::io::copy(source, &mut file).map_err(failed)?;
    if copied != length {
        return Err(format!(
            "cannot copy to {}: {copied} of {length} bytes read",
            path.display()
        ));
    }
    file.sync_all().map_err(failed)
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_synced_from(path, &mut &bytes[..], bytes.len() as u64)
}
