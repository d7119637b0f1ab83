//! The only module allowed to contain `unsafe`: hand-declared libc functions (epoll, signals,
//! file locks) behind safe wrappers. Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! Must not: contain logic beyond translating between Rust types and system calls.

pub mod clock;
pub mod crc32c_hw;
#[cfg(target_os = "linux")]
pub mod epoll;
pub mod fs;
pub mod futex;
pub mod poll;
pub mod prealloc;
pub mod rlimit;
pub mod sha256_hw;
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
    /// The peer shut down its sending side (epoll's `EPOLLRDHUP`): once the data already
    /// received is read, a read returns EOF. An edge-triggered reader must then read past a
    /// short read, as no later edge will announce that EOF. Always false for `poll(2)`, whose
    /// level-triggered reports repeat while EOF is pending.
    pub peer_closed: bool,
}

/// The contract both pollers keep, as tests for one of them: `$new` builds the poller. Each
/// backend's test module invokes it, so the two run the same checks.
#[cfg(test)]
macro_rules! poller_contract_tests {
    ($new:expr) => {
        use crate::sys::Interest;
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;

        #[test]
        fn reports_readable_then_writable_after_modify() {
            let mut poller = $new;
            let (mut a, b) = UnixStream::pair().expect("pair");
            poller.add(b.as_raw_fd(), 7, Interest::READ).expect("add");
            let mut events = Vec::new();
            poller.wait(&mut events, 0).expect("wait");
            assert!(events.is_empty());
            a.write_all(b"x").expect("write");
            poller.wait(&mut events, 1000).expect("wait");
            assert_eq!(events.len(), 1);
            assert!(events[0].readable && events[0].token == 7);
            poller
                .modify(b.as_raw_fd(), 8, Interest::WRITE)
                .expect("mod");
            poller.wait(&mut events, 1000).expect("wait");
            assert!(events[0].writable && !events[0].readable && events[0].token == 8);
            poller.delete(b.as_raw_fd()).expect("del");
            poller.wait(&mut events, 0).expect("wait");
            assert!(events.is_empty(), "no event after delete: {events:?}");
            assert!(poller.delete(b.as_raw_fd()).is_err());
        }
    };
}
#[cfg(test)]
use poller_contract_tests;
