//! Socket calls std does not expose: the listen backlog, a send that never blocks, and
//! sending a file region without copying it through user space.
//!
//! Owns: `listen(2)` on an already-bound socket; `send(2)` with `MSG_DONTWAIT`;
//! `sendfile(2)` on Linux.
//! Must not: create or bind sockets (std does that).

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::RawFd;

extern "C" {
    fn listen(sockfd: c_int, backlog: c_int) -> c_int;
    fn send(sockfd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize;
}

// `off_t` is 64 bits on every 64-bit Linux target; elsewhere `send_file` says unsupported.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
extern "C" {
    fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut i64, count: usize) -> isize;
}

/// Largest count one `sendfile(2)` call moves on Linux (`MAX_RW_COUNT`); larger requests are
/// clipped here rather than by the kernel, so the count asked is the count that may come back.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const SENDFILE_COUNT_MAX: usize = 0x7fff_f000;

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

/// Sends up to `len` bytes of the file `file` from `offset` on the socket `socket`, by the
/// kernel, without copying them through user space (`sendfile(2)`). Blocks as a write on
/// `socket` would (a blocking socket's send timeout ends the wait). Returns the bytes sent:
/// 0 when `offset` is at or past the end of the file.
///
/// # Errors
/// `Unsupported` where the platform or the file cannot do it (the caller copies instead);
/// otherwise the socket's or the file's error (`WouldBlock` for a timed-out send).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn send_file(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let Ok(mut at) = i64::try_from(offset) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let count = len.min(SENDFILE_COUNT_MAX);
    loop {
        // SAFETY: `at` is a live local the kernel reads and updates during the call only; the
        // descriptors are plain integers (a bad one is reported as an error).
        let sent = unsafe { sendfile(socket, file, &mut at, count) };
        if sent >= 0 {
            let sent = sent as usize;
            assert!(sent <= count, "sendfile reported more bytes than asked");
            return Ok(sent);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(EINTR) => continue,
            // The file (or socket) cannot be spliced: not an I/O failure.
            Some(EINVAL | ENOSYS | EOPNOTSUPP) => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, error))
            }
            _ => return Err(error),
        }
    }
}

/// `sendfile(2)` is not used on this platform: always `Unsupported` (the caller copies).
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn send_file(_socket: RawFd, _file: RawFd, _offset: u64, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const EINTR: i32 = 4;
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const EINVAL: i32 = 22;
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const ENOSYS: i32 = 38;
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const EOPNOTSUPP: i32 = 95;

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

    /// A region of a file reaches the peer byte for byte; at the end of the file nothing is
    /// sent; a socket whose peer stopped reading times out like a write.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn a_file_region_is_sent_by_the_kernel() {
        use std::io::Read;
        let path = std::env::temp_dir().join(format!("lithair-sendfile-{}", std::process::id()));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).expect("write the file");
        let file = std::fs::File::open(&path).expect("open");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 200_000];
            server.read_exact(&mut got).expect("read");
            (server, got)
        });
        let mut sent = 0usize;
        while sent < 200_000 {
            let n = send_file(
                client.as_raw_fd(),
                file.as_raw_fd(),
                1_000 + sent as u64,
                200_000 - sent,
            )
            .expect("sendfile");
            assert!(n > 0, "no progress at {sent}");
            sent += n;
        }
        let (server, got) = reader.join().expect("reader");
        assert!(got == content[1_000..201_000], "the region, in order");
        let end = content.len() as u64;
        assert_eq!(
            send_file(client.as_raw_fd(), file.as_raw_fd(), end, 10).ok(),
            Some(0)
        );
        // Nobody reads any more: a blocking socket with a send timeout gives up.
        client
            .set_write_timeout(Some(std::time::Duration::from_millis(50)))
            .expect("timeout");
        let stalled = (0..10_000)
            .find_map(|_| send_file(client.as_raw_fd(), file.as_raw_fd(), 0, content.len()).err());
        let stalled = stalled.expect("the buffers filled and the send timed out");
        assert_eq!(stalled.kind(), io::ErrorKind::WouldBlock, "{stalled}");
        drop(server);
        let _ = std::fs::remove_file(&path);
    }
}
