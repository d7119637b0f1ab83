//! The only module allowed to contain `unsafe`: hand-declared libc functions (epoll, signals,
//! file locks) behind safe wrappers. Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! Must not: contain logic beyond translating between Rust types and system calls.

pub mod crc32c_hw;
pub mod fs;
