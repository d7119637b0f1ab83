//! The binary codec: `Encode` / `Decode`, LEB128 varints, length-prefixed values.
//!
//! Owns: the byte layout of event payloads, snapshots and the Raft wire protocol.
//! Must not: perform I/O or allocate based on untrusted lengths before checking them.
