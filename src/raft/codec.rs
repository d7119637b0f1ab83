//! Hand-written `Encode` / `Decode` for the Raft wire types (`Message`, `Entry`, `ConfState`),
//! following the binary codec's conventions: structs framed as `varint(len) body`, enums as
//! `varint(variant) framed-body`, fields in declaration order.
//!
//! Owns: the byte layout of the peer protocol's payloads (framing and handshake belong to the
//! transport).
//! Must not: panic on any input; validation of meaning (entry order, sizes) stays in the core.

use super::types::{ConfState, Entry, EntryKind, Message, MessageBody};
use crate::binary::{begin_struct, end_struct, write_varint, Decode, Encode, Error, Reader};

impl Encode for EntryKind {
    fn encode(&self, out: &mut Vec<u8>) {
        let variant = match self {
            EntryKind::Normal => 0,
            EntryKind::ConfChange => 1,
        };
        write_varint(out, variant);
        let mark = begin_struct(out);
        end_struct(out, mark);
    }
}

impl Decode for EntryKind {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let variant = r.read_varint()?;
        let _body = r.struct_body()?;
        match variant {
            0 => Ok(EntryKind::Normal),
            1 => Ok(EntryKind::ConfChange),
            other => Err(Error::unknown_variant(other)),
        }
    }
}

impl Encode for Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.term.encode(out);
        self.index.encode(out);
        self.kind.encode(out);
        self.data.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for Entry {
    // A framed body of four fields: at least the length byte and four one-byte fields.
    const ENCODED_BYTES_MIN: usize = 5;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(Entry {
            term: body.field("term")?,
            index: body.field("index")?,
            kind: body.field("kind")?,
            data: body.field("data")?,
        })
    }
}

impl Encode for ConfState {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.voters.encode(out);
        self.learners.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for ConfState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(ConfState {
            voters: body.field("voters")?,
            learners: body.field("learners")?,
        })
    }
}

impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.from.encode(out);
        self.to.encode(out);
        self.term.encode(out);
        self.body.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for Message {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(Message {
            from: body.field("from")?,
            to: body.field("to")?,
            term: body.field("term")?,
            body: body.field("body")?,
        })
    }
}

/// The variant index of each message kind on the wire (append new kinds at the end).
fn variant_of(body: &MessageBody) -> u64 {
    match body {
        MessageBody::Append { .. } => 0,
        MessageBody::AppendResponse { .. } => 1,
        MessageBody::RequestVote { .. } => 2,
        MessageBody::VoteResponse { .. } => 3,
        MessageBody::Heartbeat { .. } => 4,
        MessageBody::HeartbeatResponse { .. } => 5,
        MessageBody::InstallSnapshot { .. } => 6,
        MessageBody::SnapshotResponse { .. } => 7,
        MessageBody::TimeoutNow => 8,
        MessageBody::ReadIndex { .. } => 9,
        MessageBody::ReadIndexResponse { .. } => 10,
    }
}

impl Encode for MessageBody {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, variant_of(self));
        let mark = begin_struct(out);
        match self {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                (prev_index, prev_term, entries, commit).encode(out);
            }
            MessageBody::AppendResponse {
                index,
                reject,
                hint_index,
                hint_term,
            } => {
                (index, reject, hint_index, hint_term).encode(out);
            }
            MessageBody::RequestVote {
                last_index,
                last_term,
                pre_vote,
                transfer,
            } => {
                (last_index, last_term, pre_vote, transfer).encode(out);
            }
            MessageBody::VoteResponse { granted, pre_vote } => (granted, pre_vote).encode(out),
            MessageBody::Heartbeat { commit, read_round } => (commit, read_round).encode(out),
            MessageBody::HeartbeatResponse { read_round } => read_round.encode(out),
            MessageBody::InstallSnapshot {
                index,
                snapshot_term,
                conf,
                offset,
                total_bytes,
                data,
            } => {
                (index, snapshot_term, conf, offset, total_bytes, data).encode(out);
            }
            MessageBody::SnapshotResponse {
                index,
                received_bytes,
                done,
            } => {
                (index, received_bytes, done).encode(out);
            }
            MessageBody::TimeoutNow => {}
            MessageBody::ReadIndex { ctx } => ctx.encode(out),
            MessageBody::ReadIndexResponse { index, ctx } => (index, ctx).encode(out),
        }
        end_struct(out, mark);
    }
}

impl Decode for MessageBody {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let variant = r.read_varint()?;
        let mut b = r.struct_body()?;
        let body = match variant {
            0 => MessageBody::Append {
                prev_index: b.field("prev_index")?,
                prev_term: b.field("prev_term")?,
                entries: b.field("entries")?,
                commit: b.field("commit")?,
            },
            1 => MessageBody::AppendResponse {
                index: b.field("index")?,
                reject: b.field("reject")?,
                hint_index: b.field("hint_index")?,
                hint_term: b.field("hint_term")?,
            },
            2 => MessageBody::RequestVote {
                last_index: b.field("last_index")?,
                last_term: b.field("last_term")?,
                pre_vote: b.field("pre_vote")?,
                transfer: b.field("transfer")?,
            },
            3 => MessageBody::VoteResponse {
                granted: b.field("granted")?,
                pre_vote: b.field("pre_vote")?,
            },
            4 => MessageBody::Heartbeat {
                commit: b.field("commit")?,
                read_round: b.field("read_round")?,
            },
            5 => MessageBody::HeartbeatResponse {
                read_round: b.field("read_round")?,
            },
            6 => MessageBody::InstallSnapshot {
                index: b.field("index")?,
                snapshot_term: b.field("snapshot_term")?,
                conf: b.field("conf")?,
                offset: b.field("offset")?,
                total_bytes: b.field("total_bytes")?,
                data: b.field("data")?,
            },
            7 => MessageBody::SnapshotResponse {
                index: b.field("index")?,
                received_bytes: b.field("received_bytes")?,
                done: b.field("done")?,
            },
            8 => MessageBody::TimeoutNow,
            9 => MessageBody::ReadIndex {
                ctx: b.field("ctx")?,
            },
            10 => MessageBody::ReadIndexResponse {
                index: b.field("index")?,
                ctx: b.field("ctx")?,
            },
            other => return Err(Error::unknown_variant(other)),
        };
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{from_slice, to_vec};
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(term, index, conf, data)| Entry {
                term,
                index,
                kind: if conf {
                    EntryKind::ConfChange
                } else {
                    EntryKind::Normal
                },
                data,
            })
    }

    fn conf_strategy() -> impl Strategy<Value = ConfState> {
        (
            proptest::collection::vec(any::<u64>(), 0..5),
            proptest::collection::vec(any::<u64>(), 0..3),
        )
            .prop_map(|(voters, learners)| ConfState { voters, learners })
    }

    fn body_strategy() -> impl Strategy<Value = MessageBody> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(entry_strategy(), 0..4),
                any::<u64>()
            )
                .prop_map(|(prev_index, prev_term, entries, commit)| {
                    MessageBody::Append {
                        prev_index,
                        prev_term,
                        entries,
                        commit,
                    }
                }),
            (any::<u64>(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
                |(index, reject, hint_index, hint_term)| MessageBody::AppendResponse {
                    index,
                    reject,
                    hint_index,
                    hint_term
                }
            ),
            (any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
                |(last_index, last_term, pre_vote, transfer)| MessageBody::RequestVote {
                    last_index,
                    last_term,
                    pre_vote,
                    transfer
                }
            ),
            (any::<bool>(), any::<bool>())
                .prop_map(|(granted, pre_vote)| MessageBody::VoteResponse { granted, pre_vote }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(commit, read_round)| MessageBody::Heartbeat { commit, read_round }),
            any::<u64>().prop_map(|read_round| MessageBody::HeartbeatResponse { read_round }),
            (
                any::<u64>(),
                any::<u64>(),
                conf_strategy(),
                any::<u64>(),
                any::<u64>(),
                bytes()
            )
                .prop_map(|(index, snapshot_term, conf, offset, total_bytes, data)| {
                    MessageBody::InstallSnapshot {
                        index,
                        snapshot_term,
                        conf,
                        offset,
                        total_bytes,
                        data,
                    }
                }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                |(index, received_bytes, done)| {
                    MessageBody::SnapshotResponse {
                        index,
                        received_bytes,
                        done,
                    }
                }
            ),
            Just(MessageBody::TimeoutNow),
            bytes().prop_map(|ctx| MessageBody::ReadIndex { ctx }),
            (any::<u64>(), bytes())
                .prop_map(|(index, ctx)| MessageBody::ReadIndexResponse { index, ctx }),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(from in any::<u64>(), to in any::<u64>(), term in any::<u64>(), body in body_strategy()) {
            let message = Message { from, to, term, body };
            let bytes = to_vec(&message);
            prop_assert_eq!(from_slice::<Message>(&bytes), Ok(message));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = from_slice::<Message>(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(body in body_strategy()) {
            let bytes = to_vec(&Message { from: 1, to: 2, term: 3, body });
            for len in 0..bytes.len() {
                prop_assert!(from_slice::<Message>(&bytes[..len]).is_err());
            }
        }
    }

    #[test]
    fn unknown_variants_are_errors() {
        let mut bytes = Vec::new();
        write_varint(&mut bytes, 11);
        bytes.push(0);
        assert!(from_slice::<MessageBody>(&bytes).is_err());
        assert_eq!(
            from_slice::<MessageBody>(&[8, 0]),
            Ok(MessageBody::TimeoutNow)
        );
    }
}
