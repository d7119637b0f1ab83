//! Rebuilding state from snapshot + log: decoding envelopes, upcasting old schema versions and
//! applying in log order. Used by `Engine::open`, the background snapshotter, subscriptions'
//! catch-up and the tools.
//!
//! Owns: the rule that a record which cannot be decoded stops recovery (never skipped).
//! Must not: write anything.

use super::envelope::{self, EnvelopeRef};
use super::replica;
use super::snapshot;
use super::state::{Committed, Receipt, State, Tracked, Upcaster};
use crate::binary;
use crate::log::{self, Error, Frame};
use std::borrow::Cow;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

/// Decodes an event payload, upcasting it step by step to `S::SCHEMA_VERSION` first.
pub fn decode_event<S: State>(
    envelope: &EnvelopeRef<'_>,
    upcasters: &[Upcaster],
) -> Result<S::Event, String> {
    if envelope.schema_version > S::SCHEMA_VERSION {
        return Err(format!(
            "event schema version {} is newer than this build ({})",
            envelope.schema_version,
            S::SCHEMA_VERSION
        ));
    }
    if envelope.schema_version == S::SCHEMA_VERSION {
        return binary::from_slice(envelope.payload).map_err(|e| e.to_string());
    }
    let mut payload: Cow<'_, [u8]> = Cow::Borrowed(envelope.payload);
    for version in envelope.schema_version..S::SCHEMA_VERSION {
        let upcaster = upcasters
            .iter()
            .find(|u| {
                u.from_version == version
                    && u.event_type
                        .as_deref()
                        .is_none_or(|t| t == envelope.event_type)
            })
            .ok_or_else(|| {
                format!(
                    "no upcaster for {} from schema version {version}",
                    envelope.event_type
                )
            })?;
        payload = Cow::Owned((upcaster.convert)(&payload)?);
    }
    binary::from_slice(&payload).map_err(|e| e.to_string())
}

/// One event decoded from the log, ready to apply.
pub struct Decoded<E> {
    index: u64,
    request_id: u64,
    timestamp_ms: u64,
    idempotency_key: Option<Arc<str>>,
    request_fingerprint: Option<NonZeroU64>,
    /// `None` for a reserved (Raft-internal) entry, which only consumes its index.
    event: Option<E>,
}

/// Decodes (and upcasts) every entry of `frame` in `applied_index + 1 ..= last_index` into
/// `out`.
pub fn decode_frame<S: State>(
    frame: &Frame<'_>,
    applied_index: u64,
    last_index: u64,
    upcasters: &[Upcaster],
    out: &mut Vec<Decoded<S::Event>>,
) -> Result<(), Error> {
    for (offset, entry) in frame.entries().enumerate() {
        let index = frame.index + offset as u64;
        if index <= applied_index || index > last_index {
            continue;
        }
        let visitor = |message: String| Error::Visitor { index, message };
        let envelope =
            envelope::decode_entry(entry).map_err(|e| visitor(format!("bad envelope: {e}")))?;
        if envelope.index != index {
            return Err(visitor(format!("envelope says index {}", envelope.index)));
        }
        let event = if replica::is_reserved(envelope.event_type) {
            None
        } else {
            Some(decode_event::<S>(&envelope, upcasters).map_err(visitor)?)
        };
        out.push(Decoded {
            index,
            request_id: envelope.request_id,
            timestamp_ms: envelope.timestamp_ms,
            idempotency_key: envelope.idempotency_key.map(Arc::from),
            request_fingerprint: envelope.request_fingerprint,
            event,
        });
    }
    Ok(())
}

/// Applies decoded events in order, rebuilding the idempotency window as it goes.
pub fn apply_decoded<S: State>(
    tracked: &mut Tracked<S>,
    decoded: impl IntoIterator<Item = Decoded<S::Event>>,
) {
    for item in decoded {
        let Some(event) = &item.event else {
            tracked.skip_to(item.index);
            continue;
        };
        tracked.apply(item.index, item.request_id, event);
        if let Some(key) = item.idempotency_key {
            let receipt = Receipt {
                first_index: item.index,
                last_index: item.index,
                timestamp_ms: item.timestamp_ms,
                request_id: item.request_id,
                duplicate: false,
                request_fingerprint: item.request_fingerprint,
            };
            tracked.remember(&key, receipt);
        }
    }
}

/// Events decoded per chunk handed from the reading thread to the applying thread.
const REPLAY_CHUNK_EVENTS: usize = 8192;
/// Chunks buffered between the two replay threads.
const REPLAY_CHUNKS_QUEUED: usize = 4;

/// Replays with two threads: `drive` runs on the calling thread and feeds frames (reading,
/// checksums, decoding happen there); a second thread applies the decoded events up to
/// `last_index` in order (in cluster mode the log holds entries not known committed yet).
/// Returns `drive`'s result and the state.
pub fn replay_pipelined<S: State, T>(
    mut tracked: Tracked<S>,
    last_index: u64,
    upcasters: &[Upcaster],
    drive: impl FnOnce(&mut dyn FnMut(&Frame<'_>) -> Result<(), Error>) -> Result<T, Error>,
) -> Result<(T, Tracked<S>), Error> {
    let applied_index = tracked.applied_index;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Vec<Decoded<S::Event>>>(REPLAY_CHUNKS_QUEUED);
        let applier = scope.spawn(move || {
            for chunk in receiver {
                apply_decoded(&mut tracked, chunk);
            }
            tracked
        });
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK_EVENTS);
        let mut decoded_to = applied_index;
        let result = drive(&mut |frame| {
            decode_frame::<S>(frame, decoded_to, last_index, upcasters, &mut chunk)?;
            decoded_to = decoded_to.max(frame.last_index());
            if chunk.len() >= REPLAY_CHUNK_EVENTS {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_CHUNK_EVENTS));
                // The applier only stops early if it panicked, which `join` reports below.
                let _ = sender.send(full);
            }
            Ok(())
        });
        if result.is_ok() && !chunk.is_empty() {
            let _ = sender.send(chunk);
        }
        drop(sender);
        let tracked = applier.join().expect("replay applier panicked");
        result.map(|value| (value, tracked))
    })
}

/// Decodes the committed events of a frame in `[from, to]` (for subscriptions' catch-up).
pub fn committed_events<S: State>(
    frame: &Frame<'_>,
    from: u64,
    to: u64,
    upcasters: &[Upcaster],
    out: &mut Vec<Committed<S::Event>>,
) -> Result<(), Error> {
    for (offset, entry) in frame.entries().enumerate() {
        let index = frame.index + offset as u64;
        if index < from || index > to {
            continue;
        }
        let visitor = |message: String| Error::Visitor { index, message };
        let envelope =
            envelope::decode_entry(entry).map_err(|e| visitor(format!("bad envelope: {e}")))?;
        if replica::is_reserved(envelope.event_type) {
            continue; // Raft-internal: no event for subscribers.
        }
        let event = decode_event::<S>(&envelope, upcasters).map_err(visitor)?;
        out.push(Committed {
            envelope: envelope.to_envelope(),
            event,
        });
    }
    Ok(())
}

/// Decodes the body of the snapshot file named `index`, checking it holds the state at it.
fn decode_snapshot<S: State>(
    index: u64,
    input: &mut binary::Unspill<'_>,
    idempotency_keys_max: usize,
) -> Result<Tracked<S>, Error> {
    let tracked =
        Tracked::<S>::decode_snapshot_spilled(input, idempotency_keys_max).map_err(|e| {
            Error::Visitor {
                index,
                message: format!("snapshot does not decode: {e}"),
            }
        })?;
    if tracked.applied_index != index {
        let message = format!("snapshot content is at index {}", tracked.applied_index);
        return Err(Error::Visitor { index, message });
    }
    Ok(tracked)
}

/// Where [`rebuild`] starts.
pub enum Base<S> {
    /// The newest valid snapshot; without one, this initial state at index 0 (`None`: an
    /// error).
    Newest(Option<S>),
    /// This initial state at index 0, ignoring snapshots.
    Initial(S),
    /// A state already rebuilt up to its applied index, ignoring snapshots.
    State(Box<Tracked<S>>),
}

/// What [`rebuild`] produced.
pub struct Rebuilt<S, T> {
    /// Index covered by the snapshot file the rebuild started from (`None`: the base was not
    /// a snapshot file).
    pub snapshot: Option<u64>,
    /// The state after replaying the log up to the requested index.
    pub tracked: Tracked<S>,
    /// What the caller's `read` returned.
    pub read: T,
}

/// The one rebuild routine: starts from `base` (the newest valid snapshot of `data_dir`, an
/// initial state, or a state already rebuilt), then replays the log entries after it up to `last_index` through `read`, which
/// gets the first index wanted and a visitor returning `false` once `last_index` is reached.
/// `Engine::open` reads through the recovering `Log::open`; the background snapshotter and
/// the tools through [`log::read_range`] on a log that may be live.
///
/// A frame that starts past the next index wanted is a gap (segments deleted or replaced
/// under a live reader, e.g. by a Raft snapshot install): an error, never a skip.
pub fn rebuild<S: State, T>(
    data_dir: &Path,
    base: Base<S>,
    idempotency_keys_max: usize,
    last_index: u64,
    upcasters: &[Upcaster],
    read: impl FnOnce(u64, &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>) -> Result<T, Error>,
) -> Result<Rebuilt<S, T>, Error> {
    let newest = match &base {
        Base::Initial(_) | Base::State(_) => None,
        Base::Newest(_) => snapshot::load_newest_with(data_dir, |index, input| {
            decode_snapshot(index, input, idempotency_keys_max)
        })?,
    };
    let snapshot = newest.as_ref().map(|(index, _)| *index);
    let tracked = match (newest, base) {
        (Some((_, tracked)), _) => tracked,
        (None, Base::Initial(initial) | Base::Newest(Some(initial))) => {
            Tracked::new(initial, 0, idempotency_keys_max)
        }
        (None, Base::State(tracked)) => *tracked,
        (None, Base::Newest(None)) => {
            let message = format!(
                "{} holds no valid snapshot to rebuild from",
                data_dir.display()
            );
            return Err(Error::Invalid { message });
        }
    };
    let from = tracked.applied_index + 1;
    let log_dir = data_dir.join(log::LOG_DIR_NAME);
    if log_dir.is_dir() {
        // Before replaying: a log that starts too late cannot rebuild this state.
        check_log_start(&log_dir, from)?;
    }
    let mut next_wanted = from;
    let (read, tracked) = replay_pipelined(tracked, last_index, upcasters, |visit| {
        read(from, &mut |frame| {
            if frame.count > 0 && frame.index > next_wanted && next_wanted <= last_index {
                return Err(Error::Invalid {
                    message: format!(
                        "the log jumps from index {} to {}: entries are missing",
                        next_wanted - 1,
                        frame.index
                    ),
                });
            }
            visit(frame)?;
            next_wanted = next_wanted.max(frame.last_index() + 1);
            Ok(next_wanted <= last_index)
        })
    })?;
    Ok(Rebuilt {
        snapshot,
        tracked,
        read,
    })
}

/// Read-only replay for tools: snapshot (if `use_snapshot`) plus the log tail, without the
/// directory lock and without truncating anything. A torn tail simply ends the replay.
pub fn replay_dir<S: State>(
    data_dir: &Path,
    initial: S,
    use_snapshot: bool,
    upcasters: &[Upcaster],
) -> Result<Tracked<S>, Error> {
    let log_dir = data_dir.join(log::LOG_DIR_NAME);
    if log_dir.is_dir() {
        // Judged as a start would: a deleted newest segment is not a shorter log.
        log::check_extent(&log_dir)?;
    }
    let base = match use_snapshot {
        true => Base::Newest(Some(initial)),
        false => Base::Initial(initial),
    };
    let rebuilt = rebuild(
        data_dir,
        base,
        usize::MAX,
        u64::MAX,
        upcasters,
        |from, visit| log::read_range(&log_dir, from, visit),
    )?;
    Ok(rebuilt.tracked)
}

/// Refuses a log whose oldest segment starts after `from` (entries would be missing).
pub fn check_log_start(log_dir: &Path, from: u64) -> Result<(), Error> {
    check_first_segment(&log::list_segments(log_dir)?, from)
}

/// [`check_log_start`] over a listing already made (`firsts`: the segments' first indexes, in
/// order).
pub fn check_first_segment(firsts: &[u64], from: u64) -> Result<(), Error> {
    match firsts.first() {
        Some(&first) if first > from => Err(Error::Invalid {
            message: format!(
                "the log starts at index {first} but the state needs entries from {from}: \
                 a snapshot covering them is missing or damaged"
            ),
        }),
        _ => Ok(()),
    }
}
