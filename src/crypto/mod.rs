//! Hand-written primitives: SHA-1, SHA-256, HMAC, base64, CRC32C and randomness.
//!
//! Owns: byte-exact implementations checked against published test vectors.
//! Must not: depend on any other Lithair layer.

pub mod base64;
pub mod sha1;
