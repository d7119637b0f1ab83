//! Sending streamed (`Body::Stream`) and file (`Body::File`) bodies from one of the server's
//! stream threads (`streams::StreamThreads`: a long body holds no handler worker), with
//! blocking writes bounded by the write deadline, while the reactor leaves the socket alone.
//!
//! Owns: chunk framing of a stream's writes and sending file regions (by `sendfile(2)`, else
//! a copy loop), and the reactor's attempt at a small cached file region before any
//! hand-over (`send_cached_now`).
//! Must not: touch the poller; the reactor unregisters the socket before and re-registers it
//! after (see `Outcome::DirectDone`).

use super::chunked::{encode_chunk, LAST_CHUNK};
use super::handler::catch_logged;
use super::limits::REACTOR_FILE_SEND_BYTES_MAX;
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

/// Sends what it can of a file region from the reactor, on the connection's non-blocking
/// socket, without waiting: nothing unless the region is at most
/// [`REACTOR_FILE_SEND_BYTES_MAX`] bytes and wholly in the page cache (so no disk read can
/// hold the reactor), then as much as the socket takes now. Returns the bytes sent; the rest,
/// if any, is for a stream thread.
///
/// # Errors
/// The socket's or the file's error, or `UnexpectedEof` when the file shrank after its length
/// was announced: the response cannot be completed.
pub(crate) fn send_cached_now(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    if len > REACTOR_FILE_SEND_BYTES_MAX
        || !matches!(sys::fs::is_cached(file, offset, len), Ok(true))
    {
        return Ok(0);
    }
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).unwrap_or(usize::MAX);
        match sys::socket::send_file(stream.as_raw_fd(), file.as_raw_fd(), offset + sent, want) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => sent += n as u64,
            // The socket is full (the client reads slower), or the kernel cannot splice
            // this file: the stream thread waits, or copies.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    assert!(sent <= len, "sent more than the file region");
    Ok(sent)
}

/// Sends the file region by the kernel (`sendfile(2)`), no byte copied through this
/// process; where the platform or the file cannot, by reads and writes.
fn send_file(stream: &TcpStream, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).unwrap_or(usize::MAX);
        match sys::socket::send_file(stream.as_raw_fd(), file.as_raw_fd(), offset + sent, want) {
            // The file shrank after Content-Length was sent: the response cannot be completed.
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return copy_file(stream, file, offset + sent, len - sent);
            }
            Err(e) => return Err(e),
        }
    }
    assert_eq!(sent, len, "sent more than the file region");
    Ok(())
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

    /// The reactor's attempt sends a small cached region as far as the socket takes it and
    /// leaves the rest (here: all of it, the client reading nothing until the end) to the
    /// blocking path, the bytes in order; it sends nothing of a region too large, or not in
    /// the page cache.
    #[test]
    fn the_reactor_sends_a_small_cached_region_as_far_as_the_socket_takes_it() {
        let path = std::env::temp_dir().join(format!("lithair-direct-now-{}", std::process::id()));
        let content: Vec<u8> = (0..600_000u32).map(|i| (i % 247) as u8).collect();
        std::fs::write(&path, &content).expect("write the file");
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        if !matches!(sys::fs::is_cached(&file, 0, 1), Ok(true)) {
            eprintln!("the page cache cannot be asked here: nothing to test");
            let _ = std::fs::remove_file(&path);
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.set_nonblocking(true).expect("non-blocking");
        let len = REACTOR_FILE_SEND_BYTES_MAX;
        let sent = send_cached_now(&client, &file, 3, len).expect("sent now");
        assert!(sent > 0 && sent <= len, "{sent}");
        let too_large = send_cached_now(&client, &file, 3, len + 1).expect("nothing");
        assert_eq!(too_large, 0, "too large for the reactor");
        // A hole past the end, never read, is not in the page cache.
        file.set_len(content.len() as u64 + (1 << 20))
            .expect("extend");
        let hole = send_cached_now(&client, &file, content.len() as u64, 8192).expect("hole");
        assert_eq!(hole, 0, "not cached");
        client.set_nonblocking(false).expect("blocking");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).expect("read");
            got
        });
        send_file(&client, &file, 3 + sent, len - sent).expect("the rest");
        drop(client);
        let got = reader.join().expect("reader");
        assert!(
            got[..] == content[3..3 + len as usize],
            "the region, in order"
        );
        let _ = std::fs::remove_file(&path);
    }
}
