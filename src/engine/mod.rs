//! The event engine: state in RAM behind a `RwLock`, commands decided by one sequencer thread,
//! events applied in log order, subscriptions, snapshots and replay.
//!
//! Owns: the invariant "log order is apply order is replay order".
//! Must not: read clocks or randomness inside `apply`; know about HTTP.
