//! Building a snapshot without the live state: the committed state at a chosen index N is
//! rebuilt on the snapshot thread from the newest snapshot file plus the log up to N, through
//! the same routine recovery uses ([`replay::rebuild`]), then encoded and written atomically.
//! The applier never waits for it: the only thing shared with the live state is N itself.
//! A state handed in ([`Source::retained`]) is continued instead: the one kept from the
//! previous snapshot, or a copy of the live state at N that the engine took for a state that
//! clones cheaply (`State::CLONES_CHEAPLY`), which is encoded as it is.
//!
//! Owns: making N durable before a snapshot claims it (Relaxed mode) and the check that the
//! rebuilt state is exactly at N. Must not: take the committed state's lock, or delete log
//! segments (the engine does that, after the snapshot is durable).

use super::replay::{self, Base};
use super::snapshot::{self, SnapshotHook};
use super::state::{State, Tracked, Upcaster};
use crate::binary;
use crate::log::{self, Error};
use std::fs;
use std::path::{Path, PathBuf};

/// How to rebuild the state for a snapshot.
pub(super) struct Source<'a, S> {
    /// The data directory (its snapshots and log).
    pub data_dir: &'a Path,
    /// The engine's initial state while no snapshot file exists yet.
    pub initial: Option<S>,
    /// The engine's idempotency window bound, so the rebuilt window equals the live one.
    pub idempotency_keys_max: usize,
    /// The engine's upcasters, as recovery uses them.
    pub upcasters: &'a [Upcaster],
    /// Relaxed durability: entries up to N may be written but not yet fsynced.
    pub relaxed: bool,
    /// The state the previous snapshot was built from, kept by
    /// [`super::EngineOptions::snapshot_keep_state`], or a copy of the live state (at the
    /// index asked for): the rebuild then replays only the log after it (nothing, for the
    /// copy), instead of loading the newest snapshot file.
    pub retained: Option<Tracked<S>>,
}

/// What [`write_at`] did.
pub(super) struct Written<S> {
    /// The index the newest snapshot covers: the one asked for, or a newer one already there
    /// (a cluster follower may have installed one from its leader meanwhile).
    pub index: u64,
    /// Its file.
    pub path: PathBuf,
    /// The state at `index` when it was rebuilt here (for the next snapshot to continue from,
    /// if kept).
    pub state: Option<Tracked<S>>,
}

/// Writes a snapshot of the committed state at `index` (an applied batch boundary, so every
/// entry up to it is in the log, and durable unless `source.relaxed`).
pub(super) fn write_at<S: State>(
    source: Source<'_, S>,
    index: u64,
    hook: Option<&SnapshotHook>,
) -> Result<Written<S>, Error> {
    let log_dir = source.data_dir.join(log::LOG_DIR_NAME);
    if source.relaxed {
        // Never a snapshot beyond the durable log: a crash would leave a snapshot the log
        // does not reach, and recovery refuses that.
        sync_log_through(&log_dir, index)?;
    }
    let newest_file = snapshot::list_snapshots(source.data_dir)?.last().copied();
    let mut retained = source.retained;
    // Already at the index (a copy of the live state), and newer than every file: encoded
    // as it is, the log is not read.
    if let Some(copy) = retained.take_if(|kept| {
        kept.applied_index == index && newest_file.is_none_or(|newest| newest < index)
    }) {
        return write_state(source.data_dir, copy, hook);
    }
    // A kept state behind the newest file (an install replaced the log after it) or past
    // the index asked for (a restore moved the state elsewhere) cannot continue: drop it.
    let base = match retained {
        Some(kept)
            if kept.applied_index <= index
                && newest_file.is_none_or(|newest| newest <= kept.applied_index) =>
        {
            Base::State(Box::new(kept))
        }
        _ => Base::Newest(source.initial),
    };
    let rebuilt = replay::rebuild(
        source.data_dir,
        base,
        source.idempotency_keys_max,
        index,
        source.upcasters,
        |from, visit| log::read_range(&log_dir, from, visit),
    )?;
    if let Some(newest) = rebuilt.snapshot.filter(|&newest| newest >= index) {
        let path = snapshot::snapshot_file(source.data_dir, newest);
        return Ok(Written {
            index: newest,
            path,
            state: Some(rebuilt.tracked),
        });
    }
    let tracked = rebuilt.tracked;
    if tracked.applied_index != index {
        // The stored log ended early: segments replaced under us (a Raft install).
        let message = format!(
            "snapshot at {index}: the stored log ends at {}",
            tracked.applied_index
        );
        return Err(Error::Invalid { message });
    }
    write_state(source.data_dir, tracked, hook)
}

/// Encodes `tracked` into the snapshot file of its applied index, atomically.
fn write_state<S: State>(
    data_dir: &Path,
    tracked: Tracked<S>,
    hook: Option<&SnapshotHook>,
) -> Result<Written<S>, Error> {
    let index = tracked.applied_index;
    // Two passes over the state (see `binary::Spill`), neither holding more than a piece of
    // its encoding: a snapshot of a large state costs no state-sized buffer.
    let mut measure = binary::Spill::measure();
    tracked.encode_snapshot_spilled(&mut measure);
    let measured = measure
        .finish()
        .map_err(|message| Error::Invalid { message })?;
    let path = snapshot::write_snapshot_with(data_dir, index, measured.bytes, hook, |sink| {
        // The file's first error, kept whole (the spill carries only a message).
        let mut failed = None;
        let mut to_file = |piece: &[u8]| {
            sink(piece).map_err(|error| {
                let message = error.to_string();
                failed = Some(error);
                message
            })
        };
        let mut emit = binary::Spill::emit(&measured, &mut to_file);
        tracked.encode_snapshot_spilled(&mut emit);
        let emitted = emit.finish();
        match (failed, emitted) {
            (Some(error), _) => Err(error),
            (None, Err(message)) => Err(Error::Invalid { message }),
            (None, Ok(_)) => Ok(()),
        }
    })?;
    Ok(Written {
        index,
        path,
        state: Some(tracked),
    })
}

/// Fsyncs every segment holding entries up to `index`, and the log directory (for segments
/// created since the last sync). An fsync through another descriptor of the same file
/// flushes the writer's data too.
fn sync_log_through(log_dir: &Path, index: u64) -> Result<(), Error> {
    for first in log::list_segments(log_dir)? {
        if first > index {
            break;
        }
        let path = log::segment_path(log_dir, first);
        let file = fs::File::open(&path).map_err(|e| Error::io(&path, "open", e))?;
        file.sync_data().map_err(|e| Error::io(&path, "fsync", e))?;
    }
    log::sync_dir(log_dir)
}
