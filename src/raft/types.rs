//! Plain data of the Raft protocol: log entries, configuration, hard state, snapshots and the
//! peer messages.
//!
//! Owns: the shape of everything that crosses the wire or the disk.
//! Must not: hold behaviour beyond small pure helpers; every type here is integers, `Vec<u8>`,
//! [`Payload`] and `Vec<Entry>` so the binary codec can encode it by hand.

/// A node identifier. `0` is reserved for "none".
pub type NodeId = u64;

/// The reserved identifier meaning "no node".
pub const NODE_NONE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Application data (an empty payload is the no-op a new leader appends).
    Normal,
    /// A single-server membership change; `data` is a [`ConfChange::encode`] value.
    ConfChange,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The position in the log, starting at 1.
    pub index: u64,
    /// What `data` holds.
    pub kind: EntryKind,
    /// Opaque bytes (application) or an encoded [`ConfChange`].
    pub data: Payload,
}

/// An entry's bytes, shared: the log, each follower's Append, the persist queue and the
/// committed entries handed to the engine all hold the same allocation, so a copy of an
/// entry is a reference count, not a `malloc` and a `memcpy` (an entry is copied four to six
/// times between its proposal and its apply).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Payload(std::sync::Arc<[u8]>);

impl Payload {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The shared allocation itself (for a holder outside the Raft layer, the engine).
    pub fn shared(&self) -> std::sync::Arc<[u8]> {
        std::sync::Arc::clone(&self.0)
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload(bytes.into())
    }
}

impl From<std::sync::Arc<[u8]>> for Payload {
    fn from(bytes: std::sync::Arc<[u8]>) -> Payload {
        Payload(bytes)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Payload {
        Payload(bytes.into())
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Entry {
    /// The size used by flow control: payload plus a fixed header estimate.
    pub fn size_bytes(&self) -> u64 {
        const ENTRY_HEADER_BYTES: u64 = 24;
        self.data.len() as u64 + ENTRY_HEADER_BYTES
    }
}

/// A single-server membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a voter (or promote a learner).
    AddVoter(NodeId),
    /// Add a non-voting learner that receives the log.
    AddLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

/// The byte length of an encoded [`ConfChange`].
pub const CONF_CHANGE_BYTES: usize = 9;

impl ConfChange {
    /// Encodes as one tag byte and a little-endian node id.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, id) = match *self {
            ConfChange::AddVoter(id) => (1u8, id),
            ConfChange::AddLearner(id) => (2u8, id),
            ConfChange::Remove(id) => (3u8, id),
        };
        let mut out = Vec::with_capacity(CONF_CHANGE_BYTES);
        out.push(tag);
        out.extend_from_slice(&id.to_le_bytes());
        out
    }

    /// Decodes [`ConfChange::encode`] output; `None` on any malformed input.
    pub fn decode(bytes: &[u8]) -> Option<ConfChange> {
        if bytes.len() != CONF_CHANGE_BYTES {
            return None;
        }
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&bytes[1..]);
        let id = u64::from_le_bytes(id_bytes);
        if id == NODE_NONE {
            return None;
        }
        match bytes[0] {
            1 => Some(ConfChange::AddVoter(id)),
            2 => Some(ConfChange::AddLearner(id)),
            3 => Some(ConfChange::Remove(id)),
            _ => None,
        }
    }

    /// The node the change is about.
    pub fn node_id(&self) -> NodeId {
        match *self {
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id) | ConfChange::Remove(id) => id,
        }
    }
}

/// The cluster membership: voters decide, learners only receive the log. Both lists are sorted
/// and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Voting members, sorted.
    pub voters: Vec<NodeId>,
    /// Non-voting members, sorted.
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A configuration of voters only.
    pub fn with_voters(voters: &[NodeId]) -> ConfState {
        let mut conf = ConfState {
            voters: voters.to_vec(),
            learners: Vec::new(),
        };
        conf.voters.sort_unstable();
        conf.voters.dedup();
        conf
    }

    /// Applies one change (idempotent). Applications that snapshot their state call this for
    /// every committed `ConfChange` entry so the snapshot carries the membership at its index.
    pub fn apply(&mut self, change: ConfChange) {
        let id = change.node_id();
        self.voters.retain(|&v| v != id);
        self.learners.retain(|&l| l != id);
        match change {
            ConfChange::AddVoter(_) => self.voters.push(id),
            ConfChange::AddLearner(_) => self.learners.push(id),
            ConfChange::Remove(_) => {}
        }
        self.voters.sort_unstable();
        self.learners.sort_unstable();
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }
}

/// The state that must be durable before messages depending on it leave the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// Whom this node voted for in `term` (`NODE_NONE` if nobody).
    pub vote: NodeId,
    /// The highest index known committed (persisting it lazily is allowed).
    pub commit: u64,
}

/// What a snapshot covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The membership as of `index`.
    pub conf: ConfState,
}

/// A state-machine snapshot: opaque bytes plus what it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Index, term and membership covered.
    pub meta: SnapshotMeta,
    /// The application's serialized state.
    pub data: Vec<u8>,
}

/// A confirmed linearizable read: once the state machine has applied `index`, the read
/// identified by `ctx` may be served from local state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index at the time the read was requested on the leader.
    pub index: u64,
    /// The caller's context bytes, returned unchanged.
    pub ctx: Vec<u8>,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Probing with a pre-vote whether an election could succeed.
    PreCandidate,
    /// Running an election.
    Candidate,
    /// Leading the cluster.
    Leader,
}

/// One peer message. `term` is the sender's term (for a granted pre-vote response: the term
/// the pre-vote was for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// See the type documentation.
    pub term: u64,
    /// The kind and its fields.
    pub body: MessageBody,
}

/// The message kinds of the peer protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader to follower: append `entries` after (`prev_index`, `prev_term`).
    Append {
        /// Index of the entry preceding `entries`.
        prev_index: u64,
        /// Term of that entry.
        prev_term: u64,
        /// The entries, consecutive indexes from `prev_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: u64,
    },
    /// Leader to follower in Replicate state: the commit index moved and no entries are left
    /// to send, so only the commit travels. The follower checks (`prev_index`, `prev_term`)
    /// exactly as for an `Append` and, when they match, commits up to `min(commit,
    /// prev_index)` **without answering** (the answer would tell the leader nothing new:
    /// every entry up to `prev_index` was sent in an Append that has its own answer). On a
    /// mismatch it answers with a rejecting `AppendResponse` and hints, as for an `Append`,
    /// so the leader repairs the log (an Append lost in flight shows up there).
    CommitNotice {
        /// Index of the last entry sent to this follower.
        prev_index: u64,
        /// Term of that entry.
        prev_term: u64,
        /// The leader's commit index.
        commit: u64,
    },
    /// Follower to leader: the result of an `Append` (or of a mismatching `CommitNotice`).
    AppendResponse {
        /// On success the last index now matching; on rejection the rejected `prev_index`.
        index: u64,
        /// Whether the append was rejected for a log mismatch.
        reject: bool,
        /// On rejection: the largest index at or below `index` whose term is at most the
        /// leader's `prev_term` (fast backtracking hint).
        hint_index: u64,
        /// The term at `hint_index` in the follower's log.
        hint_term: u64,
    },
    /// Candidate (or pre-candidate) to voter.
    RequestVote {
        /// The candidate's last log index.
        last_index: u64,
        /// The candidate's last log term.
        last_term: u64,
        /// Whether this is a pre-vote (the voter does not change its state).
        pre_vote: bool,
        /// Set by leadership transfer: voters ignore their leader lease.
        transfer: bool,
    },
    /// Voter to candidate.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
        /// Whether this answers a pre-vote.
        pre_vote: bool,
    },
    /// Leader to follower: keep-alive that also confirms leadership for ReadIndex round
    /// `read_round` (0 = none).
    Heartbeat {
        /// `min(follower match, leader commit)`.
        commit: u64,
        /// The ReadIndex round this heartbeat belongs to.
        read_round: u64,
    },
    /// Follower to leader: the heartbeat arrived.
    HeartbeatResponse {
        /// The round echoed back.
        read_round: u64,
    },
    /// Leader to follower: one chunk of a snapshot.
    InstallSnapshot {
        /// The snapshot's last index.
        index: u64,
        /// The term at that index.
        snapshot_term: u64,
        /// The membership as of `index`.
        conf: ConfState,
        /// The byte offset of `data` within the snapshot.
        offset: u64,
        /// The snapshot's total size in bytes.
        total_bytes: u64,
        /// The chunk.
        data: Vec<u8>,
    },
    /// Follower to leader: how much of snapshot `index` it holds.
    SnapshotResponse {
        /// The snapshot's last index.
        index: u64,
        /// Bytes received contiguously so far (== total when installed).
        received_bytes: u64,
        /// Whether the snapshot is now installed (or already covered by the log).
        done: bool,
    },
    /// Leader to transfer target: start an election now, ignoring leases.
    TimeoutNow,
    /// Follower to leader: a forwarded ReadIndex request.
    ReadIndex {
        /// The caller's context.
        ctx: Vec<u8>,
    },
    /// Leader to follower: the answer to a forwarded ReadIndex.
    ReadIndexResponse {
        /// The read index.
        index: u64,
        /// The caller's context.
        ctx: Vec<u8>,
    },
}

impl MessageBody {
    /// A short stable name for traces and errors.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::Append { .. } => "Append",
            MessageBody::CommitNotice { .. } => "CommitNotice",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::SnapshotResponse { .. } => "SnapshotResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_round_trips_and_rejects_garbage() {
        for change in [
            ConfChange::AddVoter(7),
            ConfChange::AddLearner(1),
            ConfChange::Remove(9),
        ] {
            assert_eq!(ConfChange::decode(&change.encode()), Some(change));
        }
        assert_eq!(ConfChange::decode(&[]), None);
        assert_eq!(ConfChange::decode(&[4, 1, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(ConfChange::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn conf_state_apply_keeps_lists_disjoint() {
        let mut conf = ConfState::with_voters(&[3, 1, 2]);
        conf.apply(ConfChange::AddLearner(4));
        assert!(conf.is_learner(4) && !conf.is_voter(4));
        conf.apply(ConfChange::AddVoter(4));
        assert!(conf.is_voter(4) && !conf.is_learner(4));
        conf.apply(ConfChange::Remove(1));
        assert_eq!(conf.voters, vec![2, 3, 4]);
        assert!(conf.learners.is_empty());
    }
}
