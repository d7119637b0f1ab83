//! The segmented append-only log: record framing, CRC32C, group commit, recovery, compaction.
//!
//! Owns: the on-disk format and the durability promise ("acknowledged means fsynced").
//! Must not: decode event payloads; it stores opaque bytes.
