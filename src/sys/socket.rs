//! Socket options std does not expose: the listen backlog.
//!
//! Owns: `listen(2)` on an already-bound socket.
//! Must not: create or bind sockets (std does that).

use std::ffi::c_int;
use std::io;
use std::os::fd::RawFd;

extern "C" {
    fn listen(sockfd: c_int, backlog: c_int) -> c_int;
}

/// Calls `listen(fd, backlog)` again on a listening socket: Linux and the BSDs then update the
/// accept-queue length (std binds with a small fixed backlog).
pub fn set_listen_backlog(fd: RawFd, backlog: i32) -> io::Result<()> {
    assert!(backlog > 0, "backlog must be positive, got {backlog}");
    // SAFETY: listen takes no pointers; a bad fd is reported as an error.
    if unsafe { listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn backlog_can_be_raised_on_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        set_listen_backlog(listener.as_raw_fd(), 1024).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        assert!(listener.accept().is_ok());
    }
}
