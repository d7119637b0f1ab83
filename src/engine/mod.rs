//! The event engine: state in RAM behind a `RwLock`, commands decided by one sequencer thread,
//! events applied in log order, subscriptions, snapshots and replay.
//!
//! Owns: the invariant "log order is apply order is replay order".
//! Must not: read clocks or randomness inside `apply`; know about HTTP.
//!
//! ## Pipeline
//! `submit` queues a command (bounded queue, `queue.rs`). The **sequencer** thread drains
//! every queued command into one batch; each command decides against a *speculative copy*
//! of the state that already includes every accepted command (even those not yet durable),
//! then its events are applied to that copy, so later commands see them. (We chose a full
//! speculative copy over a staging view: it works for any `State` without help, at the cost
//! of applying each event twice and keeping two copies in RAM.) The batch goes to the **log
//! writer** as one append; the writer group-commits every pending append with one `write`
//! and one `fdatasync`. The **applier** then applies the batch to the committed state under
//! the write lock, runs post-commit hooks, feeds subscribers and wakes the submitters. On a
//! single node the applier is the log thread that saw the fsync complete (no hand-off: it
//! runs in the append's completion, while the other log thread writes and fsyncs the next
//! batch); in a cluster it is a thread of its own fed by the Raft replica. Hooks and
//! `submit_then` callbacks run there too, so a wait on the engine from them asserts.
//!
//! Group-commit pacing (single node): one batch is in the log writer at a time. While it is
//! written and fsynced, new commands pile up in the queue without waking anyone; when the
//! writer acknowledges it, the sequencer takes them all. In Durable mode it first waits (at
//! most `GROUP_WAIT_US_MAX`) until as many commands arrived as the acknowledged batch
//! answered, so the callers it is about to wake share the next fsync instead of splitting
//! into two alternating half-size groups; a lone caller never waits. The applier fills every
//! reply of a batch, then wakes all its waiting submitters with one `futex` call.
//!
//! Rejections, conflicts and duplicate (idempotent) answers are also delivered only after the
//! batch they were decided in is durable, since they may depend on events still in flight.
//!
//! If an append fails (disk full), its submitters get the error, later in-flight batches fail
//! too (they no longer continue the log), and the sequencer rebuilds its speculative copy from
//! the committed state once nothing is in flight.

pub mod backup;
mod chunked;
mod core;
mod envelope;
mod policy;
mod queue;
pub mod repair;
mod replay;
mod replica;
mod snapshot;
mod snapshotter;
mod state;
mod state_digest;
mod subscribe;
pub mod tools;

pub use self::core::{
    Engine, EngineOptions, Opened, ReplayProgress, SnapshotInfo, StateReader, SubmitError, Then,
    Ticket, BATCH_COMMANDS_MAX, IDEMPOTENCY_KEYS_DEFAULT, NOT_COMMITTED, QUEUE_COMMANDS_DEFAULT,
    QUEUE_FULL, REPLAY_PROGRESS_EVENTS, SUBSCRIBER_BUFFER_EVENTS_DEFAULT,
};
pub use envelope::{decode_entry, encode_entry, Envelope, EnvelopeRef};
pub use policy::{SnapshotPolicy, SnapshotTail};
pub use queue::{GROUP_WAIT_US_MAX, LOG_BATCHES_DEFAULT, LOG_BATCHES_MAX, WAKE_LANES};
pub use replay::{decode_event, replay_dir};
pub use replica::{
    classify, encode_reserved, is_reserved, Proposer, Replica, Reserved, Token, COMMAND_BYTES_MAX,
    COMMAND_EVENT_OVERHEAD_BYTES, RAFT_CONF_EVENT_TYPE, RAFT_NOOP_EVENT_TYPE,
};
pub use snapshot::{
    install_received_snapshot, install_snapshot_file, list_snapshots, load_at_with,
    open_snapshot_file, parse_snapshot, read_snapshot_file, snapshot_dir, SnapshotHook,
    SnapshotStep, SNAPSHOT_DIR_NAME, SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
pub use state::{
    Command, Committed, Context, Convert, Meta, Receipt, State, Tracked, Upcaster,
    IDEMPOTENCY_KEYS_MAX,
};
pub use state_digest::{
    digest, digest_hex, encoding_digest, full_digests, MultisetHash, DIGEST_BYTES, MULTISET_LANES,
};
pub use subscribe::{SubscribeError, Subscription, CATCH_UP_EVENTS_MAX};
