//! The engine's side of replication: the `Proposer` the sequencer hands batches to
//! (implemented by the Raft node), the `Replica` the node feeds committed entries and
//! leadership changes into, and the reserved envelopes that store Raft's own entries (no-ops
//! and membership changes) in the engine's log.
//!
//! Owns: the rule that every node applies the same committed entries in the same order,
//! through the same path (decode, applier), and the layout of the reserved envelopes.
//! Must not: know about Raft messages or sockets (the `raft` layer sits above the engine).
//!
//! In cluster mode the engine's log *is* the Raft log: one log entry is one Raft entry, its
//! index is the Raft index and the event index, and the frame term is the Raft term. An
//! event's Raft entry data is its envelope bytes as the log stores them. A Raft no-op or
//! membership change is stored as an envelope of a reserved event type at its index, so every
//! index of the log decodes as an envelope; the applier skips those (they consume an index,
//! change no state, and are never handed to subscribers).

use super::envelope::{self, Envelope};
use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

/// Opaque data the sequencer attaches to a proposal and gets back when it commits.
pub type Token = Box<dyn Any + Send>;

/// Largest total size of one command's events, in bytes: each event's encoded envelope plus
/// [`COMMAND_EVENT_OVERHEAD_BYTES`]. In a cluster a command's events are consecutive Raft
/// entries that must reach every follower in one message (all of them or none survive a
/// leader crash), so a bigger command is refused at submit
/// ([`crate::engine::SubmitError::TooLarge`], HTTP 413), in cluster and single-node mode alike.
/// The Raft layer checks that this fits a peer frame with margin.
pub const COMMAND_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes each event adds toward [`COMMAND_BYTES_MAX`] besides its envelope: a bound on what a
/// Raft message adds around one entry.
pub const COMMAND_EVENT_OVERHEAD_BYTES: usize = 32;

/// Event type of the reserved envelope storing a Raft no-op (a new leader's first entry).
pub const RAFT_NOOP_EVENT_TYPE: &str = "$raft.noop";
/// Event type of the reserved envelope storing a Raft membership change; its payload is the
/// encoded change.
pub const RAFT_CONF_EVENT_TYPE: &str = "$raft.conf";

/// Whether `event_type` names a reserved (Raft-internal) envelope that apply skips.
pub fn is_reserved(event_type: &str) -> bool {
    event_type == RAFT_NOOP_EVENT_TYPE || event_type == RAFT_CONF_EVENT_TYPE
}

/// A Raft-internal entry as stored in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved<'a> {
    /// A leader's no-op.
    Noop,
    /// A membership change (its encoded bytes).
    Conf(&'a [u8]),
}

/// Appends the reserved envelope of `entry` at `index` to `out`.
pub fn encode_reserved(out: &mut Vec<u8>, index: u64, entry: Reserved<'_>) {
    let (event_type, payload): (&'static str, &[u8]) = match entry {
        Reserved::Noop => (RAFT_NOOP_EVENT_TYPE, &[]),
        Reserved::Conf(bytes) => (RAFT_CONF_EVENT_TYPE, bytes),
    };
    let envelope = Envelope {
        index,
        timestamp_ms: 0,
        event_type: Cow::Borrowed(event_type),
        schema_version: 0,
        request_id: 0,
        idempotency_key: None,
        actor: None,
        correlation_id: None,
        request_fingerprint: None,
    };
    envelope::encode_entry(out, &envelope, |out| out.extend_from_slice(payload));
}

/// What a stored log entry is to Raft: `Ok(None)` for an event, `Ok(Some(_))` for a reserved
/// entry; `Err` if it is not an envelope or names another index than `index`.
pub fn classify(index: u64, entry: &[u8]) -> Result<Option<Reserved<'_>>, String> {
    let envelope = envelope::decode_entry(entry).map_err(|e| format!("bad envelope: {e}"))?;
    if envelope.index != index {
        return Err(format!("envelope says index {}", envelope.index));
    }
    Ok(match envelope.event_type {
        RAFT_NOOP_EVENT_TYPE => Some(Reserved::Noop),
        RAFT_CONF_EVENT_TYPE => Some(Reserved::Conf(envelope.payload)),
        _ => None,
    })
}

/// Receives the sequencer's batches (the Raft node, in cluster mode).
pub trait Proposer: Send + Sync {
    /// Proposes `entries` (one envelope each, for indexes `first_index..`) under leadership
    /// `term`. Exactly one of [`Replica::apply`] (with the token) or [`Replica::abandon`] must
    /// eventually receive `token`; the node abandons a proposal whose first index is not the
    /// index its log gives it. The entries are shared bytes: the Raft log keeps them (and
    /// hands them to each follower) without copying them.
    ///
    /// `slot`: an index the sequencer left free before the entries because the node asked
    /// for one ([`Replica::reserve_index`] answered `false`); then `slot + 1 == first_index`,
    /// and the node appends its waiting membership change there (or a no-op when it has none
    /// any more) before the entries.
    fn propose(
        &self,
        term: u64,
        slot: Option<u64>,
        first_index: u64,
        entries: Vec<Arc<[u8]>>,
        token: Token,
    );
}

/// What the Raft node drives on the engine.
pub trait Replica: Send + Sync {
    /// Applies committed entries `first_index..`, in commit order. Each is an event envelope,
    /// or empty for a Raft-internal entry (no-op, membership) that only consumes its index.
    /// Entries at or below [`Replica::delivered_index`] are ignored (re-delivered after a
    /// restart). `token` is present with the last entry of a proposal this node made in the
    /// term it committed under. The entries are shared bytes, so the engine decodes them on
    /// its applier thread rather than on the caller's.
    fn apply(&self, first_index: u64, entries: &[Arc<[u8]>], token: Option<Token>);
    /// The proposal carrying `token` will not be acknowledged (leadership lost, entry
    /// replaced, or a mismatched index); its submitters get a retryable error.
    fn abandon(&self, token: Token);
    /// `Some(term)` once this node leads `term` and every entry before its term is handed to
    /// `apply`; `None` when it does not lead. The sequencer only runs under `Some`.
    fn set_leader(&self, term: Option<u64>);
    /// The index the leader's log gives its next entry: where the sequencer continues after
    /// (re)building its copy. Set before [`Replica::set_leader`] and before abandoning a
    /// proposal for a mismatched index.
    fn set_next_index(&self, next_index: u64);
    /// Called by the leader's Raft thread (never blocks) when it has a membership change to
    /// append at `next_index`, the index its log gives the next entry, in leadership `term`:
    /// `true` when the sequencer will not use `next_index` (nothing of it is in transit to
    /// the node, or it does not sequence in `term` yet, or it will rebuild its copy from the
    /// log's end), so the node appends the change there now; `false` when the sequencer may
    /// have batches on their way for that index: it then leaves the next free index before
    /// its next batch (the `slot` of [`Proposer::propose`]), and the node asks again on its
    /// next tick in case the sequencer went idle. The default (a replica without a
    /// sequencer, or one that rebuilds after any surprise) always grants.
    fn reserve_index(&self, term: u64, next_index: u64) -> bool {
        let _ = (term, next_index);
        true
    }
    /// How many times the sequencer rebuilt its speculative copy from the committed state
    /// because a batch it sequenced did not reach the log (an abandoned proposal, a failed
    /// append): each costs a clone of the committed state (structural for an app's state)
    /// and fails the writes in transit. 0 for a replica without a sequencer.
    fn sequencer_rebuilds(&self) -> u64 {
        0
    }
    /// The index of the newest durable snapshot (0: none), which the node may compact its log
    /// to and sends to followers behind the compaction point.
    fn snapshot_index(&self) -> u64;
    /// Replaces the state by the snapshot file covering `index` (installed from the leader,
    /// already durable in the data directory) in delivery order: after every entry handed to
    /// [`Replica::apply`] before, before every entry handed after. Returns without waiting for
    /// the replacement (the Raft thread calls it; decoding a large snapshot takes seconds):
    /// [`Replica::delivered_index`] is `index` on return, so later entries continue from
    /// `index + 1`, while [`Replica::applied_index`] and the state stay as they were until the
    /// snapshot's state is in place, then both jump to it at once (never a state in between,
    /// never an applied index whose state is not in place). An `index` at or below the
    /// delivered index is already held: nothing happens.
    ///
    /// A snapshot that fails to decode later is fatal to the process (the log before it is
    /// gone; applying later entries on the old state would fork the replica).
    ///
    /// # Errors
    /// The file cannot be opened or its header is damaged, or the engine is shutting down.
    fn restore(&self, index: u64) -> Result<(), String>;
    /// Last index handed to the applier (applied soon after).
    fn delivered_index(&self) -> u64;
    /// Last index applied to the committed state.
    fn applied_index(&self) -> u64;
    /// Last index applied to the committed state, and the state digest at it: the digest the
    /// state keeps ([`super::State::digest`]), so a status answer costs no pass over a state
    /// that keeps one.
    fn applied_digest(&self) -> (u64, [u8; super::state_digest::DIGEST_BYTES]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserved_entries_round_trip_and_events_classify_as_events() {
        let mut noop = Vec::new();
        encode_reserved(&mut noop, 7, Reserved::Noop);
        assert_eq!(classify(7, &noop), Ok(Some(Reserved::Noop)));
        assert!(classify(8, &noop).is_err());
        let mut conf = Vec::new();
        encode_reserved(&mut conf, 9, Reserved::Conf(b"\x01abcdefgh"));
        assert_eq!(
            classify(9, &conf),
            Ok(Some(Reserved::Conf(b"\x01abcdefgh")))
        );
        let event = Envelope {
            index: 3,
            timestamp_ms: 5,
            event_type: Cow::Borrowed("Created"),
            schema_version: 1,
            request_id: 2,
            idempotency_key: None,
            actor: None,
            correlation_id: None,
            request_fingerprint: None,
        };
        let mut bytes = Vec::new();
        envelope::encode_entry(&mut bytes, &event, |out| out.push(1));
        assert_eq!(classify(3, &bytes), Ok(None));
        assert!(is_reserved(RAFT_NOOP_EVENT_TYPE) && !is_reserved("Created"));
    }

    proptest! {
        #[test]
        fn random_entries_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify(1, &bytes);
        }
    }
}
