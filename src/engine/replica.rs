//! The engine's side of replication: the batch payload that travels through Raft, the
//! `Proposer` the sequencer hands batches to (implemented by the Raft node), and the
//! `Replica` the node feeds committed batches and leadership changes into.
//!
//! Owns: the payload layout and the rule that every node applies the same committed batches
//! in the same order, through the same path (decode, local log, applier).
//! Must not: know about Raft messages or sockets (the `raft` layer sits above the engine).
//!
//! Payload: `first_index u64 LE | count u32 LE | entries`, where `entries` are the log's
//! entry framing (`len u32 LE | envelope`), so a follower appends them to its local log as
//! they are. The local log in cluster mode is a materialized copy of the committed Raft log
//! (written without fsync: the Raft log is the durable record and re-delivers what a crash
//! lost); indexes inside it are event indexes, identical on every node.

use std::any::Any;

/// Opaque data the sequencer attaches to a proposal and gets back when it commits.
pub type Token = Box<dyn Any + Send>;

/// Bytes of the payload header.
pub const PAYLOAD_HEADER_BYTES: usize = 12;

/// Receives the sequencer's batches (the Raft node, in cluster mode).
pub trait Proposer: Send + Sync {
    /// Proposes `payload` under leadership `term`. Exactly one of [`Replica::apply`] (with the
    /// token) or [`Replica::abandon`] must eventually receive `token`.
    fn propose(&self, term: u64, payload: Vec<u8>, token: Token);
}

/// What the Raft node drives on the engine.
pub trait Replica: Send + Sync {
    /// Applies one committed batch. Called in commit order; `token` is present when this node
    /// proposed the batch in the term it committed under.
    fn apply(&self, payload: &[u8], token: Option<Token>);
    /// The proposal carrying `token` will not be acknowledged (leadership lost or entry
    /// replaced); its submitters get a retryable error.
    fn abandon(&self, token: Token);
    /// `Some(term)` once this node leads `term` and every entry before its term is handed to
    /// `apply`; `None` when it does not lead. The sequencer only runs under `Some`.
    fn set_leader(&self, term: Option<u64>);
    /// Last event index handed to the local log for applying (applied soon after).
    fn delivered_index(&self) -> u64;
    /// Last event index applied to the committed state.
    fn applied_index(&self) -> u64;
    /// Last event index applied to the committed state, and the state digest at it.
    fn applied_digest(&self) -> (u64, [u8; super::state::DIGEST_BYTES]);
}

/// Builds a payload from a batch's first index and its entries' on-disk framing.
pub fn encode_payload(first_index: u64, count: u32, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_HEADER_BYTES + entries.len());
    out.extend_from_slice(&first_index.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(entries);
    out
}

/// Splits a payload into its first index and entry payloads; `None` if malformed (length
/// prefixes that overrun, a count that disagrees, or trailing bytes).
pub fn decode_payload(payload: &[u8]) -> Option<(u64, Vec<&[u8]>)> {
    let header = payload.get(..PAYLOAD_HEADER_BYTES)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&header[..8]);
    let first_index = u64::from_le_bytes(word);
    let mut count_bytes = [0u8; 4];
    count_bytes.copy_from_slice(&header[8..]);
    let count = u32::from_le_bytes(count_bytes) as usize;
    let mut rest = &payload[PAYLOAD_HEADER_BYTES..];
    // Each entry takes at least its 4-byte prefix: bound the allocation by the input.
    let mut entries = Vec::with_capacity(count.min(rest.len() / 4));
    while !rest.is_empty() {
        let prefix = rest.get(..4)?;
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let entry = rest.get(4..4usize.checked_add(len)?)?;
        entries.push(entry);
        rest = &rest[4 + len..];
    }
    (entries.len() == count && first_index > 0).then_some((first_index, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EntryBatch;
    use proptest::prelude::*;

    #[test]
    fn payload_round_trips() {
        let mut batch = EntryBatch::new();
        batch.push(b"one");
        batch.push(b"");
        batch.push(b"three");
        let payload = encode_payload(42, batch.len(), batch.as_bytes());
        let (first, entries) = decode_payload(&payload).unwrap();
        assert_eq!(first, 42);
        assert_eq!(entries, vec![&b"one"[..], b"", b"three"]);
        assert!(decode_payload(&payload[..payload.len() - 1]).is_none());
        let mut wrong_count = payload.clone();
        wrong_count[8] = 2;
        assert!(decode_payload(&wrong_count).is_none());
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some((first, entries)) = decode_payload(&bytes) {
                prop_assert!(first > 0);
                prop_assert!(entries.iter().map(|e| e.len() + 4).sum::<usize>() + 12 == bytes.len());
            }
        }
    }
}
