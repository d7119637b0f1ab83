//! JSON (RFC 8259): the `Value` tree, a strict parser, a writer, and the `ToJson` / `FromJson`
//! traits with a typed fast path that reads straight from text.
//!
//! Must not: perform I/O.
