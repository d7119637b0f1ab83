//! Raft: a sans-IO consensus core (messages and ticks in, a `Ready` out), the TCP transport and
//! the node driver that connects the core to the log.
//!
//! Must not: read clocks, open sockets or spawn threads inside the core.
