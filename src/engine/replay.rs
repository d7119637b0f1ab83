//! Rebuilding state from snapshot + log: decoding envelopes, upcasting old schema versions and
//! applying in log order. Used by `Engine::open`, subscriptions' catch-up and the tools.
//!
//! Owns: the rule that a record which cannot be decoded stops recovery (never skipped).
//! Must not: write anything.

use super::envelope::{self, EnvelopeRef};
use super::snapshot;
use super::state::{Committed, Receipt, State, Tracked, Upcaster};
use crate::binary;
use crate::log::{self, Error, Frame};
use std::borrow::Cow;
use std::path::Path;

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
                        .map_or(true, |t| t == envelope.event_type)
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

/// Applies every entry of `frame` above `tracked.applied_index` to `tracked`.
pub fn apply_frame<S: State>(
    tracked: &mut Tracked<S>,
    frame: &Frame<'_>,
    upcasters: &[Upcaster],
) -> Result<(), Error> {
    for (offset, entry) in frame.entries().enumerate() {
        let index = frame.index + offset as u64;
        if index <= tracked.applied_index {
            continue;
        }
        let visitor = |message: String| Error::Visitor { index, message };
        let envelope =
            envelope::decode_entry(entry).map_err(|e| visitor(format!("bad envelope: {e}")))?;
        if envelope.index != index {
            return Err(visitor(format!("envelope says index {}", envelope.index)));
        }
        let event = decode_event::<S>(&envelope, upcasters).map_err(visitor)?;
        tracked.apply(index, envelope.request_id, &event);
        if let Some(key) = envelope.idempotency_key {
            let receipt = Receipt {
                first_index: index,
                last_index: index,
                timestamp_ms: envelope.timestamp_ms,
                request_id: envelope.request_id,
                duplicate: false,
            };
            tracked.remember(&std::sync::Arc::from(key), receipt);
        }
    }
    Ok(())
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
        let event = decode_event::<S>(&envelope, upcasters).map_err(visitor)?;
        out.push(Committed {
            envelope: envelope.to_envelope(),
            event,
        });
    }
    Ok(())
}

/// Loads the newest valid snapshot of `data_dir`, or wraps `initial` when there is none.
pub fn load_snapshot<S: State>(
    data_dir: &Path,
    initial: S,
    idempotency_keys_max: usize,
) -> Result<Tracked<S>, Error> {
    match snapshot::load_newest(data_dir)? {
        Some((index, body)) => {
            let tracked =
                Tracked::<S>::decode_snapshot(&body, idempotency_keys_max).map_err(|e| {
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
        None => Ok(Tracked::new(initial, 0, idempotency_keys_max)),
    }
}

/// Read-only replay for tools: snapshot (if `use_snapshot`) plus the log tail, without the
/// directory lock and without truncating anything. A torn tail simply ends the replay.
pub fn replay_dir<S: State>(
    data_dir: &Path,
    initial: S,
    use_snapshot: bool,
    upcasters: &[Upcaster],
) -> Result<Tracked<S>, Error> {
    let keys_max = usize::MAX;
    let mut tracked = if use_snapshot {
        load_snapshot(data_dir, initial, keys_max)?
    } else {
        Tracked::new(initial, 0, keys_max)
    };
    let from = tracked.applied_index + 1;
    let log_dir = data_dir.join(log::LOG_DIR_NAME);
    check_log_start(&log_dir, from)?;
    log::read_range(&log_dir, from, &mut |frame| {
        apply_frame(&mut tracked, frame, upcasters)?;
        Ok(true)
    })?;
    Ok(tracked)
}

/// Refuses a log whose oldest segment starts after `from` (entries would be missing).
pub fn check_log_start(log_dir: &Path, from: u64) -> Result<(), Error> {
    let firsts = log::list_segments(log_dir)?;
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
