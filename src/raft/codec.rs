//! Hand-written `Encode` / `Decode` for the Raft wire types (`Message`, `Entry`, `ConfState`),
//! following the binary codec's conventions: structs framed as `varint(len) body`, enums as
//! `varint(variant) framed-body`, fields in declaration order.
//!
//! Owns: the byte layout of the peer protocol's payloads (framing and handshake belong to the
//! transport).
//! Must not: panic on any input; validation of meaning (entry order, sizes) stays in the core.

use super::types::{ConfState, Entry, EntryKind, Message, MessageBody, Payload};
use crate::binary::{begin_struct, end_struct, write_varint, Decode, Encode, Error, Reader};

/// Implements `Encode` and `Decode` for a struct as `varint(len) body`, with the fields in the
/// order listed. That order is the wire layout, so it must stay the declaration order.
macro_rules! struct_codec {
    ($ty:ident { $($field:ident),+ $(,)? } $(, bytes_min = $bytes_min:expr)?) => {
        impl Encode for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                let mark = begin_struct(out);
                $(self.$field.encode(out);)+
                end_struct(out, mark);
            }
        }

        impl Decode for $ty {
            $(const ENCODED_BYTES_MIN: usize = $bytes_min;)?

            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                let mut body = r.struct_body()?;
                Ok($ty {
                    $($field: body.field(stringify!($field))?,)+
                })
            }
        }
    };
}

/// Implements `Encode` and `Decode` for an enum as `varint(variant) varint(len) body`, each
/// variant's fields in the order listed. The variant numbers are the wire layout: never reuse
/// or renumber one, append new kinds at the end.
macro_rules! enum_codec {
    ($ty:ident { $($variant:literal => $name:ident $({ $($field:ident),+ $(,)? })?),+ $(,)? }) => {
        impl Encode for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                match self {
                    $($ty::$name $({ $($field),+ })? => {
                        write_varint(out, $variant);
                        let mark = begin_struct(out);
                        $($($field.encode(out);)+)?
                        end_struct(out, mark);
                    })+
                }
            }
        }

        impl Decode for $ty {
            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                let variant = r.read_varint()?;
                // Fieldless variants still carry an (empty) body, read here for all.
                #[allow(unused_mut, unused_variables)]
                let mut body = r.struct_body()?;
                match variant {
                    $($variant => Ok($ty::$name $({
                        $($field: body.field(stringify!($field))?,)+
                    })?),)+
                    other => Err(Error::unknown_variant(other)),
                }
            }
        }
    };
}

enum_codec! {
    EntryKind {
        0 => Normal,
        1 => ConfChange,
    }
}

// A payload travels as a `Vec<u8>` does (a count, then the bytes), decoded with one copy
// straight into its shared allocation.
impl Encode for Payload {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_slice().encode(out);
    }
}

impl Decode for Payload {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.nested(|r| {
            let count = r.read_count(1)?;
            Ok(Payload::from(r.read_bytes(count)?))
        })
    }
}

// Entry: a framed body of four fields is at least the length byte and four one-byte fields.
struct_codec! { Entry { term, index, kind, data }, bytes_min = 5 }

struct_codec! { ConfState { voters, learners } }

struct_codec! { Message { from, to, term, body } }

enum_codec! {
    MessageBody {
        0 => Append { prev_index, prev_term, entries, commit },
        1 => AppendResponse { index, reject, hint_index, hint_term },
        2 => RequestVote { last_index, last_term, pre_vote, transfer },
        3 => VoteResponse { granted, pre_vote },
        4 => Heartbeat { commit, read_round },
        5 => HeartbeatResponse { read_round },
        6 => InstallSnapshot { index, snapshot_term, conf, offset, total_bytes, data },
        7 => SnapshotResponse { index, received_bytes, done },
        8 => TimeoutNow,
        9 => ReadIndex { ctx },
        10 => ReadIndexResponse { index, ctx },
        11 => CommitNotice { prev_index, prev_term, commit },
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
                data: data.into(),
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
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(prev_index, prev_term, commit)| MessageBody::CommitNotice {
                    prev_index,
                    prev_term,
                    commit
                }
            ),
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

    /// Pins the bytes of one message, so a change to the macros cannot move the wire layout
    /// unnoticed (round trips alone would pass with any self-consistent layout).
    #[test]
    fn wire_layout_of_an_append() {
        let entry = Entry {
            term: 5,
            index: 5,
            kind: EntryKind::Normal,
            data: vec![9].into(),
        };
        let message = Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Append {
                prev_index: 4,
                prev_term: 5,
                entries: vec![entry],
                commit: 6,
            },
        };
        let entry_bytes = [6, 5, 5, 0, 0, 1, 9];
        let mut expected = vec![16, 1, 2, 3, 0, 11, 4, 5, 1];
        expected.extend_from_slice(&entry_bytes);
        expected.push(6);
        assert_eq!(to_vec(&message), expected);
        assert_eq!(from_slice::<Message>(&expected), Ok(message));
    }

    /// Pins the commit notice's bytes (variant 11, new in protocol version 2).
    #[test]
    fn wire_layout_of_a_commit_notice() {
        let message = Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::CommitNotice {
                prev_index: 4,
                prev_term: 5,
                commit: 6,
            },
        };
        let expected = vec![8, 1, 2, 3, 11, 3, 4, 5, 6];
        assert_eq!(to_vec(&message), expected);
        assert_eq!(from_slice::<Message>(&expected), Ok(message));
    }

    #[test]
    fn unknown_variants_are_errors() {
        let mut bytes = Vec::new();
        write_varint(&mut bytes, 12);
        bytes.push(0);
        assert!(from_slice::<MessageBody>(&bytes).is_err());
        assert_eq!(
            from_slice::<MessageBody>(&[8, 0]),
            Ok(MessageBody::TimeoutNow)
        );
    }
}
