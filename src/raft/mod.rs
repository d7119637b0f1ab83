//! Raft: a sans-IO consensus core (messages and ticks in, a `Ready` out), the TCP transport and
//! the node driver that connects the core to the log.
//!
//! Must not: read clocks, open sockets or spawn threads inside the core.
//!
//! # Code map
//! - `types`: entries, membership, hard state, snapshots and the peer `Message`s (plain data).
//! - `storage`: the `Storage` trait (the core's only read path to durable state) and
//!   `MemStorage`.
//! - `config`: `Config` (validated once) and the seeded `SplitMix64` PRNG.
//! - `raw_node`: `RawNode` and `Ready`, the public API; `core`, `leader`, `follower`, `log` and
//!   `progress` are the private state machine behind it.
//! - `node` and `reads`: the driver thread (with `conf_slot`, the membership change that waits
//!   for an index the engine's sequencer does not use), and the read side HTTP threads use (ReadIndex
//!   batching, the applied-index watch, the published lease).
//! - `sim`: the deterministic simulator and the linearizability checker (tests only; hidden).
//!
//! Architecture invariant: the core is deterministic. Given the same config (seed included),
//! storage and sequence of calls it produces the same Readies, bit for bit.
//!
//! # Decisions a driver must know
//! - Persist before send: `Ready::persisted_messages` (votes, append and snapshot
//!   acknowledgements, vote requests) leave only after the Ready's writes are fsynced;
//!   `Ready::messages` (heartbeats, a leader's Appends) leave at once, so heartbeats never wait
//!   for the disk. A leader counts its own entries toward commit only after `advance`.
//! - Membership takes effect when a `ConfChange` entry commits (one change at a time, and a new
//!   leader's first change waits for its no-op to commit). A new cluster starts from
//!   [`MemStorage::bootstrap`]-style log entries (`AddVoter` per initial voter at indexes
//!   `1..=n`), so a node that joins later learns the membership by replaying or from a snapshot.
//! - ReadIndex rounds ride on heartbeats: reads registered between two Readies share one round;
//!   a read is answered once a quorum acknowledged a round started after it. `ReadMode::Lease`
//!   skips the round while a quorum acknowledged a heartbeat sent less than an election timeout
//!   minus `LEASE_SAFETY_MARGIN_TICKS` ago; it assumes tick rates drift apart by less than
//!   that margin allows (see `leader.rs`) and refuses leadership transfer. `RawNode::lease_read`
//!   tells a driver when it may serve reads locally; the node driver publishes that as a
//!   deadline in monotonic time for its HTTP threads (`reads`), so a lease read never waits
//!   for the Raft thread. Ticks are the lease's clock on both sides, so a driver must never
//!   tick a follower faster than the wall clock (no catch-up bursts after a stall) nor a
//!   leader slower (catch it up); the node driver's `TickSchedule` does both. A leader's ticker
//!   can still be late (the ticker thread stalled, its tick queued behind other events): before
//!   any step that may answer from the lease the driver tells the core the whole ticks of wall
//!   time since the last tick it delivered (`RawNode::set_ticks_owed`), and the lease is
//!   checked on delivered plus owed ticks.
//! - Commit-only news costs one message and no answer: when a leader's commit index moves and
//!   a follower in Replicate state has no entries left to receive, it gets a
//!   `MessageBody::CommitNotice` instead of an entry-less Append. The follower commits up to
//!   the prefix the notice matches and answers only a mismatch (a rejection with hints, so
//!   the leader repairs a log whose Append was lost). Probes, repairs and heartbeats stay
//!   answered; CheckQuorum, ReadIndex and leases rest on heartbeat answers only.
//! - A command's events are a run of entries that every leader sends in one Append, even past
//!   the message window (`RawNode::set_same_command`, the argument in `leader.rs`): a log
//!   holds all of a run or none, so no node commits or applies part of a command. A run is at
//!   most `COMMAND_BYTES_MAX`; the engine refuses bigger commands at submit.
//! - Snapshots are sent in `snapshot_chunk_bytes` chunks; the leader core keeps none of the
//!   bytes either: it holds a `SnapshotInfo` (meta and size) and reads each chunk from storage
//!   as it sends it (`Storage::snapshot_chunk`); a chunk of a snapshot storage no longer holds
//!   is refused (`SnapshotReplaced`) and the transfer restarts with the newer one, as it does
//!   as soon as the log is compacted past the snapshot being sent. The follower core keeps none of the
//!   bytes: it takes only the chunk that continues what it has (contiguous offsets, a total
//!   under `snapshot_bytes_max`), hands it out in `Ready::snapshot_chunks` for the driver to
//!   store (the node driver streams them into a temporary file of the data directory), and
//!   reports how many bytes it took, which is where the leader resumes. A crash restarts the
//!   transfer from offset 0. Once whole, the driver fsyncs the file and persists the snapshot
//!   crash-safely (`storage_log::LogStorage::install`) before restoring the engine.
//! - In a node, the engine's log is the Raft log and the engine's snapshot the Raft snapshot
//!   (`storage_log`); the driver compacts to each durable snapshot the engine has applied,
//!   in memory at once, while `compactor`'s thread writes the snapshot record and deletes
//!   the segments it covers (the Raft thread never waits for the disk to compact).

mod codec;
mod compactor;
mod conf_slot;
mod config;
mod core;
mod follower;
mod leader;
mod leader_loss;
mod log;
mod progress;
mod raw_node;
mod storage;
mod types;

pub mod node;
pub mod reads;
pub mod storage_log;
pub mod transport;
pub mod wire;

#[doc(hidden)]
pub mod sim;

pub use self::config::{Config, ConfigError, ReadMode, SplitMix64};
pub use self::core::{
    command_bytes, never_same_command, RaftError, SameCommand, SnapshotChunk, COMMAND_BYTES_MAX,
    COMMAND_ENTRY_OVERHEAD_BYTES, READS_WAITING_MAX,
};
pub use self::leader::{lease_ticks, LeaseRead};
pub use self::leader_loss::LEADER_LOSS_STAGGER_TICKS;
pub use self::raw_node::{
    FollowerStatus, RawNode, Ready, Replication, SoftState, Status, READY_APPLY_BYTES_MAX,
};
pub use self::storage::{bootstrap_entries, MemStorage, SnapshotInfo, Storage, StorageError};
pub use self::types::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageBody, NodeId, Payload,
    ReadState, Role, Snapshot, SnapshotMeta, CONF_CHANGE_BYTES, NODE_NONE,
};

#[cfg(test)]
mod tests;
