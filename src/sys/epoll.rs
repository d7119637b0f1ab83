//! Linux epoll behind a safe wrapper (level-triggered).
//!
//! Owns: the epoll file descriptor and its raw event buffer.
//! Must not: interpret events beyond translating them into `Event`.

use super::{Event, Interest};
use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const EPOLL_CLOEXEC: c_int = 0o2_000_000;
const EPOLL_CTL_ADD: c_int = 1;
const EPOLL_CTL_DEL: c_int = 2;
const EPOLL_CTL_MOD: c_int = 3;
const EPOLLIN: u32 = 0x001;
const EPOLLOUT: u32 = 0x004;
const EPOLLERR: u32 = 0x008;
const EPOLLHUP: u32 = 0x010;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLET: u32 = 1 << 31;

/// Upper bound on events returned by one `wait`.
pub const EVENTS_PER_WAIT_MAX: usize = 1024;

/// `struct epoll_event`: packed on x86-64 (kernel ABI), naturally aligned elsewhere.
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

extern "C" {
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
    fn epoll_wait(epfd: c_int, events: *mut EpollEvent, maxevents: c_int, timeout: c_int) -> c_int;
}

/// An epoll instance, level-triggered unless a registration asks for edges (`Interest::edge`).
pub struct Epoll {
    fd: OwnedFd,
    buffer: Vec<EpollEvent>,
}

fn bits(interest: Interest) -> u32 {
    // RDHUP only with read interest: level-triggered, it would otherwise repeat forever after
    // the peer's FIN while we are not reading.
    let mut bits = 0;
    if interest.read {
        bits |= EPOLLIN | EPOLLRDHUP;
    }
    if interest.write {
        bits |= EPOLLOUT;
    }
    if interest.edge {
        bits |= EPOLLET;
    }
    bits
}

impl Epoll {
    /// Creates an epoll instance (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own exclusively; OwnedFd closes it once.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let zero = EpollEvent { events: 0, data: 0 };
        Ok(Epoll {
            fd,
            buffer: vec![zero; EVENTS_PER_WAIT_MAX],
        })
    }

    fn ctl(&self, op: c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = EpollEvent {
            events,
            data: token,
        };
        // SAFETY: `event` is a valid, initialised epoll_event living across the call; the
        // kernel only reads it. A bad `fd` is reported as an error, not UB.
        let rc = unsafe { epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Registers `fd` with `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(EPOLL_CTL_ADD, fd, bits(interest), token)
    }

    /// Registers a descriptor shared by several pollers (a listener): only one of them is
    /// woken per readiness change (EPOLLEXCLUSIVE), avoiding a thundering herd.
    pub fn add_shared(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLEXCLUSIVE, token)
    }

    /// Changes the interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(EPOLL_CTL_MOD, fd, bits(interest), token)
    }

    /// Unregisters `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ms` (-1: forever) and appends the reports to `out` (cleared first).
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        let capacity = c_int::try_from(self.buffer.len()).unwrap_or(c_int::MAX);
        // SAFETY: the buffer holds `capacity` initialised epoll_event slots that outlive the
        // call; the kernel writes at most `capacity` of them.
        let n = unsafe {
            epoll_wait(
                self.fd.as_raw_fd(),
                self.buffer.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(error);
        }
        let n = n as usize;
        assert!(n <= self.buffer.len(), "epoll_wait returned {n} events");
        for raw in &self.buffer[..n] {
            let (events, token) = (raw.events, raw.data);
            out.push(Event {
                token,
                readable: events & (EPOLLIN | EPOLLRDHUP) != 0,
                writable: events & EPOLLOUT != 0,
                closed: events & (EPOLLERR | EPOLLHUP) != 0,
                peer_closed: events & EPOLLRDHUP != 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    super::super::poller_contract_tests!(super::Epoll::new().expect("poller"));
}
