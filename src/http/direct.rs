//! Sending streamed (`Body::Stream`) bodies, and file (`Body::File`) bodies the page cache does
//! not hold, from one of the server's stream threads (`streams::StreamThreads`: a long body
//! holds no handler worker), with blocking writes bounded by the write deadline, while the
//! reactor leaves the socket alone; and the non-blocking send a connection uses for a file
//! body that is cached (`conn`, `DirectState::Sending`).
//!
//! Owns: chunk framing of a stream's writes and sending file regions (by `sendfile(2)`, else
//! a copy loop), and sending a file region without waiting, for the reactor
//! (`send_region_now`: a connection sends a cached region itself as its socket takes it).
//! Must not: touch the poller; the reactor unregisters the socket before and re-registers it
//! after (see `Outcome::DirectDone`).

use super::chunked::{encode_chunk, LAST_CHUNK};
use super::handler::catch_logged;
use super::response::StreamWriter;
use super::writer::Direct;
use crate::sys;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Size of each read of a file body, where the kernel cannot send it (`copy_file`).
const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// A `Write` that frames every write as one chunk (or passes bytes through on HTTP/1.0).
struct BodyWriter<'a> {
    stream: &'a TcpStream,
    chunked: bool,
    frame: Vec<u8>,
}

impl Write for BodyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.chunked {
            return self.stream.write(buf);
        }
        // One chunk per call, sent at once: SSE events must not wait in a buffer.
        self.frame.clear();
        encode_chunk(buf, &mut self.frame);
        self.stream.write_all(&self.frame)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `direct` on `stream` (a clone of the connection's socket); a streamed body sees
/// `stopping` (the server's shutdown flag) through its `StreamWriter`. Returns true when the
/// body was sent completely and the connection may be reused.
pub(crate) fn send_direct(
    stream: &TcpStream,
    direct: Direct,
    write_timeout_ms: u64,
    stopping: &AtomicBool,
) -> bool {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_millis(write_timeout_ms.max(1))))
            .is_err()
    {
        return false;
    }
    let ok = match direct {
        Direct::Stream { write, chunked } => {
            let mut writer = BodyWriter {
                stream,
                chunked,
                frame: Vec::new(),
            };
            let written = catch_logged("a streamed body", "closing the connection", || {
                write(&mut StreamWriter::for_connection(
                    &mut writer,
                    stopping,
                    stream,
                ))
            });
            match written {
                Some(Ok(())) => !chunked || writer.stream.write_all(LAST_CHUNK).is_ok(),
                Some(Err(_)) | None => false,
            }
        }
        Direct::File { file, offset, len } => send_file(stream, &file, offset, len).is_ok(),
    };
    // The reactor expects a non-blocking socket back.
    let restored = stream.set_nonblocking(true).is_ok() && stream.set_write_timeout(None).is_ok();
    ok && restored
}

/// Why [`send_region_now`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// The whole region went out.
    Done,
    /// The socket takes no more now: go on when it is writable.
    SocketFull,
    /// The kernel cannot splice this file: the rest needs a stream thread's copy loop.
    CannotSplice,
}

/// Sends a file region by `sendfile(2)` as far as the socket takes it: on a non-blocking
/// socket (the reactor's), never waiting for the client; the caller makes sure the region is
/// in the page cache, or the file's reads would hold it. Returns the bytes sent and why it
/// stopped.
///
/// # Errors
/// The socket's or the file's error, or `UnexpectedEof` when the file shrank after its length
/// was announced: the response cannot be completed.
pub(crate) fn send_region_now(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> io::Result<(u64, Stopped)> {
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).unwrap_or(usize::MAX);
        match sys::socket::send_file(stream.as_raw_fd(), file.as_raw_fd(), offset + sent, want) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((sent, Stopped::SocketFull))
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return Ok((sent, Stopped::CannotSplice))
            }
            Err(e) => return Err(e),
        }
    }
    assert_eq!(sent, len, "sent more than the file region");
    Ok((sent, Stopped::Done))
}

/// Sends the file region by the kernel (`sendfile(2)`), no byte copied through this
/// process; where the platform or the file cannot, by reads and writes. On the blocking
/// socket a stream thread holds, a full socket means its send timeout ran out.
fn send_file(stream: &TcpStream, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    match send_region_now(stream, file, offset, len)? {
        (_, Stopped::Done) => Ok(()),
        (sent, Stopped::CannotSplice) => copy_file(stream, file, offset + sent, len - sent),
        (_, Stopped::SocketFull) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
    }
}

/// Sends the file region by reads into a buffer and writes from it.
fn copy_file(stream: &TcpStream, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    let mut buffer = vec![0u8; FILE_CHUNK_BYTES.min(len as usize).max(1)];
    let mut sent = 0u64;
    let mut writer = stream;
    while sent < len {
        let want = (len - sent).min(buffer.len() as u64) as usize;
        let n = file.read_at(&mut buffer[..want], offset + sent)?;
        if n == 0 {
            // The file shrank after Content-Length was sent: the response cannot be completed.
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        writer.write_all(&buffer[..n])?;
        sent += n as u64;
    }
    assert_eq!(sent, len, "sent more than the file region");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Both ways of sending a file region give the same bytes, and both fail (rather than
    /// send short) when the file is shorter than the region announced.
    #[test]
    fn a_file_region_goes_out_whole_by_the_kernel_or_by_copies() {
        let path = std::env::temp_dir().join(format!("lithair-direct-{}", std::process::id()));
        let content: Vec<u8> = (0..500_000u32).map(|i| (i % 249) as u8).collect();
        std::fs::write(&path, &content).expect("write the file");
        let file = std::fs::File::open(&path).expect("open");
        type Send = fn(&TcpStream, &std::fs::File, u64, u64) -> io::Result<()>;
        let ways: [(&str, Send); 2] = [("kernel", send_file), ("copies", copy_file)];
        for (way, send) in ways {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
            let (mut server, _) = listener.accept().expect("accept");
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                server.read_to_end(&mut got).expect("read");
                got
            });
            send(&client, &file, 7, 400_000).expect(way);
            let past_the_end = send(&client, &file, 499_990, 100).expect_err(way);
            assert_eq!(past_the_end.kind(), io::ErrorKind::UnexpectedEof, "{way}");
            drop(client);
            let got = reader.join().expect("reader");
            assert_eq!(
                got.len(),
                400_010,
                "{way}: the region, then the file's last 10 bytes"
            );
            assert!(got[..400_000] == content[7..400_007], "{way}");
            assert!(got[400_000..] == content[499_990..], "{way}");
        }
        let _ = std::fs::remove_file(&path);
    }

    /// Without waiting, a region goes out as far as the socket takes it (here: the client
    /// reads nothing until the end, so a large region stops at a full socket), the blocking
    /// path continues where it stopped, the bytes in order; a file that shrank is an error.
    #[test]
    fn a_region_goes_out_without_waiting_as_far_as_the_socket_takes_it() {
        let path = std::env::temp_dir().join(format!("lithair-direct-now-{}", std::process::id()));
        let content: Vec<u8> = (0..(16u32 << 20)).map(|i| (i % 247) as u8).collect();
        std::fs::write(&path, &content).expect("write the file");
        let file = std::fs::File::open(&path).expect("open");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.set_nonblocking(true).expect("non-blocking");
        let past_the_end = send_region_now(&client, &file, content.len() as u64, 10);
        assert_eq!(
            past_the_end.expect_err("shrank").kind(),
            io::ErrorKind::UnexpectedEof
        );
        let len = content.len() as u64 - 3;
        let (sent, stopped) = send_region_now(&client, &file, 3, len).expect("sent now");
        if stopped != Stopped::CannotSplice {
            assert_eq!(stopped, Stopped::SocketFull, "16 MiB fit no socket: {sent}");
            assert!(sent > 0 && sent < len, "{sent}");
        }
        client.set_nonblocking(false).expect("blocking");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).expect("read");
            got
        });
        send_file(&client, &file, 3 + sent, len - sent).expect("the rest");
        drop(client);
        let got = reader.join().expect("reader");
        assert!(got[..] == content[3..], "the region, in order");
        let _ = std::fs::remove_file(&path);
    }
}
