//! Socket calls std does not expose: the listen backlog, and a send that never blocks.
//!
//! Owns: `listen(2)` on an already-bound socket; `send(2)` with `MSG_DONTWAIT`.
//! Must not: create or bind sockets (std does that).

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::RawFd;

extern "C" {
    fn listen(sockfd: c_int, backlog: c_int) -> c_int;
    fn send(sockfd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize;
}

/// `MSG_DONTWAIT | MSG_NOSIGNAL` (Linux): this call alone does not block, and a closed peer
/// is an `EPIPE` error rather than a signal.
#[cfg(target_os = "linux")]
const SEND_FLAGS: c_int = 0x40 | 0x4000;
/// `MSG_DONTWAIT` (macOS and the BSDs; std ignores `SIGPIPE` in Rust binaries).
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: c_int = 0x80;

/// Sends what fits in the socket's buffer now, without blocking even on a blocking socket
/// (other threads may use the same socket in blocking mode meanwhile). Returns the bytes
/// sent: fewer than `bytes.len()` (possibly 0) when the buffer is full.
///
/// # Errors
/// The socket's error (a reset or closed connection, a bad descriptor).
pub fn send_nonblocking(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call; send
        // only reads them. A bad fd is reported as an error.
        let sent = unsafe { send(fd, bytes.as_ptr().cast(), bytes.len(), SEND_FLAGS) };
        if sent >= 0 {
            let sent = sent as usize;
            assert!(sent <= bytes.len(), "send reported more bytes than given");
            return Ok(sent);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(0),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
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

    #[test]
    fn a_nonblocking_send_stops_at_a_full_buffer_and_reports_a_closed_peer() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        assert_eq!(
            send_nonblocking(client.as_raw_fd(), b"hello").expect("send"),
            5
        );
        let mut got = [0u8; 5];
        server.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello");
        // Nobody reads: the buffers fill and the send returns short (never blocks).
        let chunk = vec![7u8; 1 << 20];
        let mut sent_total = 0usize;
        let mut short = false;
        for _ in 0..1024 {
            let sent = send_nonblocking(client.as_raw_fd(), &chunk).expect("send");
            sent_total += sent;
            if sent < chunk.len() {
                short = true;
                break;
            }
        }
        assert!(short, "1 GiB fit in the socket buffers");
        assert!(sent_total > 0);
        drop(server);
        // The reset may take a send or two to surface.
        let failed = (0..64).any(|_| send_nonblocking(client.as_raw_fd(), b"x").is_err());
        assert!(failed, "sending to a closed peer kept succeeding");
    }
}
