//! The only module allowed to contain `unsafe`: hand-declared libc functions (epoll, signals,
//! file locks) behind safe wrappers. Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! Must not: contain logic beyond translating between Rust types and system calls.

pub mod crc32c_hw;
#[cfg(target_os = "linux")]
pub mod epoll;
pub mod fs;
pub mod futex;
pub mod poll;
pub mod prealloc;
pub mod rlimit;
pub mod signal;
pub mod socket;
pub mod waker;

/// The readiness poller of this platform: epoll on Linux, `poll(2)` elsewhere.
#[cfg(target_os = "linux")]
pub type Poller = epoll::Epoll;
/// The readiness poller of this platform: epoll on Linux, `poll(2)` elsewhere.
#[cfg(not(target_os = "linux"))]
pub type Poller = poll::PollPoller;

/// What a registration waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest {
    /// Wake when readable (or the peer closed).
    pub read: bool,
    /// Wake when writable.
    pub write: bool,
    /// Edge-triggered (epoll): report only changes, so the owner must read until a short read
    /// or `WouldBlock`, and re-arm (modify) after pausing. The `poll(2)` backend ignores it
    /// (level-triggered reports are a superset).
    pub edge: bool,
}

impl Interest {
    /// Readable only.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
        edge: false,
    };
    /// Writable only.
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
        edge: false,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        read: true,
        write: true,
        edge: false,
    };
    /// Neither (errors and hang-ups are still reported).
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
        edge: false,
    };
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// Data (or EOF) can be read.
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
    /// Error or hang-up on the descriptor.
    pub closed: bool,
}
