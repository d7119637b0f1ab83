//! A cross-thread wake-up descriptor: an eventfd on Linux, a non-blocking socket pair elsewhere.
//!
//! Owns: the descriptor(s) that make a poller return from `wait`.
//! Must not: carry data: a wake-up only says "look at your queues".

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_uint};
    use std::fs::File;
    use std::io;
    use std::os::fd::FromRawFd;

    const EFD_CLOEXEC: c_int = 0o2_000_000;
    const EFD_NONBLOCK: c_int = 0o4_000;

    extern "C" {
        fn eventfd(initval: c_uint, flags: c_int) -> c_int;
    }

    /// Returns (reader, writer): both the same eventfd.
    pub fn pair() -> io::Result<(File, File)> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned only by this File.
        let file = unsafe { File::from_raw_fd(fd) };
        let writer = file.try_clone()?;
        Ok((file, writer))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::unix::net::UnixStream;

    /// Returns (reader, writer) ends of a non-blocking socket pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok((reader, writer))
    }
}

/// A wake-up descriptor: register `fd()` for reading, call `wake()` from any thread.
#[derive(Debug)]
pub struct Waker {
    #[cfg(target_os = "linux")]
    reader: std::fs::File,
    #[cfg(target_os = "linux")]
    writer: std::fs::File,
    #[cfg(not(target_os = "linux"))]
    reader: std::os::unix::net::UnixStream,
    #[cfg(not(target_os = "linux"))]
    writer: std::os::unix::net::UnixStream,
}

impl Waker {
    /// Creates a waker.
    pub fn new() -> io::Result<Waker> {
        let (reader, writer) = imp::pair()?;
        Ok(Waker { reader, writer })
    }

    /// The descriptor to register for readability.
    pub fn fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// The descriptor a signal handler may write 8 bytes to.
    pub fn write_fd(&self) -> RawFd {
        self.writer.as_raw_fd()
    }

    /// Makes the descriptor readable. Never blocks; a full counter/pipe already means "awake".
    pub fn wake(&self) {
        let _ = (&self.writer).write(&1u64.to_ne_bytes());
    }

    /// Consumes pending wake-ups so a level-triggered poller stops reporting them.
    pub fn drain(&self) {
        let mut buffer = [0u8; 64];
        // Bounded: an eventfd is drained by one read; a socket pair by a few.
        for _ in 0..64 {
            match (&self.reader).read(&mut buffer) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Interest, Poller};

    #[test]
    fn wake_makes_fd_readable_and_drain_clears_it() {
        let waker = Waker::new().expect("waker");
        let mut poller = Poller::new().expect("poller");
        poller.add(waker.fd(), 1, Interest::READ).expect("add");
        let mut events = Vec::new();
        poller.wait(&mut events, 0).expect("wait");
        assert!(events.is_empty());
        waker.wake();
        waker.wake();
        poller.wait(&mut events, 1000).expect("wait");
        assert_eq!(events.len(), 1);
        waker.drain();
        poller.wait(&mut events, 0).expect("wait");
        assert!(events.is_empty());
    }
}
