//! A `poll(2)` poller with the same interface as `epoll::Epoll`, for platforms without epoll.
//! Compiled on every Unix so that its tests run on Linux too.
//!
//! Owns: the registration table (fd, token, interest) rebuilt into a pollfd array per wait.
//! Must not: be used where epoll exists (it is O(registrations) per wait).

use super::{Event, Interest};
use std::ffi::{c_int, c_short};
use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

const POLLIN: c_short = 0x001;
const POLLOUT: c_short = 0x004;
const POLLERR: c_short = 0x008;
const POLLHUP: c_short = 0x010;

#[cfg(target_os = "linux")]
type PollCount = std::ffi::c_ulong;
#[cfg(not(target_os = "linux"))]
type PollCount = std::ffi::c_uint;

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

extern "C" {
    fn poll(fds: *mut PollFd, nfds: PollCount, timeout: c_int) -> c_int;
}

/// Whether `fd` has something to read (data, end of stream or an error) right now: one
/// `poll(2)` with a zero timeout. Used to notice a peer that closed a connection the server
/// only writes to (a streamed response), without reading from it.
///
/// # Errors
/// The `poll` call failed.
pub fn readable_now(fd: RawFd) -> io::Result<bool> {
    let mut one = PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: `one` is a valid, exclusively borrowed `pollfd` array of length 1 for the whole
    // call, and a zero timeout returns at once; poll writes only its `revents` field.
    let ready = unsafe { poll(&mut one, 1, 0) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready > 0 && one.revents & (POLLIN | POLLHUP | POLLERR) != 0)
}

#[derive(Clone, Copy)]
struct Registration {
    fd: RawFd,
    token: u64,
    interest: Interest,
}

/// A level-triggered poller over `poll(2)`.
#[derive(Default)]
pub struct PollPoller {
    registrations: Mutex<Vec<Registration>>,
    fds: Vec<PollFd>,
    tokens: Vec<u64>,
}

impl PollPoller {
    /// Creates an empty poller.
    pub fn new() -> io::Result<PollPoller> {
        Ok(PollPoller::default())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Vec<Registration>> {
        // A poisoned table only means another thread panicked mid-update of plain data.
        self.registrations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `fd` with `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut table = self.table();
        if table.iter().any(|r| r.fd == fd) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        table.push(Registration {
            fd,
            token,
            interest,
        });
        Ok(())
    }

    /// Registers a descriptor shared by several pollers (plain registration here).
    pub fn add_shared(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.add(fd, token, Interest::READ)
    }

    /// Changes the interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut table = self.table();
        let entry = table
            .iter_mut()
            .find(|r| r.fd == fd)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        entry.token = token;
        entry.interest = interest;
        Ok(())
    }

    /// Unregisters `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut table = self.table();
        let before = table.len();
        table.retain(|r| r.fd != fd);
        if table.len() == before {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) and fills `out` (cleared first).
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        self.fds.clear();
        self.tokens.clear();
        let table = self
            .registrations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for r in table.iter() {
            let mut events = 0;
            if r.interest.read {
                events |= POLLIN;
            }
            if r.interest.write {
                events |= POLLOUT;
            }
            self.fds.push(PollFd {
                fd: r.fd,
                events,
                revents: 0,
            });
            self.tokens.push(r.token);
        }
        drop(table);
        let count = PollCount::try_from(self.fds.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `fds` holds `count` initialised pollfd structs that outlive the call; the
        // kernel writes only their `revents` fields.
        let n = unsafe { poll(self.fds.as_mut_ptr(), count, timeout_ms) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(error);
        }
        for (pfd, token) in self.fds.iter().zip(&self.tokens) {
            if pfd.revents == 0 {
                continue;
            }
            out.push(Event {
                token: *token,
                readable: pfd.revents & POLLIN != 0,
                writable: pfd.revents & POLLOUT != 0,
                closed: pfd.revents & (POLLERR | POLLHUP) != 0,
                peer_closed: false,
            });
        }
        assert!(
            out.len() <= n as usize,
            "poll reported {n}, found {}",
            out.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    super::super::poller_contract_tests!(super::PollPoller::new().expect("poller"));

    #[test]
    fn readable_now_sees_data_and_the_end_of_the_stream_without_waiting() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let fd = server.as_raw_fd();
        assert!(!super::readable_now(fd).expect("poll"), "nothing sent yet");
        client.write_all(b"x").expect("write");
        let seen = |fd| {
            (0..1000).any(|_| {
                super::readable_now(fd).expect("poll") || {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    false
                }
            })
        };
        assert!(seen(fd), "data");
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut &server, &mut byte).expect("read");
        drop(client);
        assert!(seen(fd), "the end of the stream");
        assert_eq!(server.peek(&mut byte).expect("peek"), 0);
    }
}
