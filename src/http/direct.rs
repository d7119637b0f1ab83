//! Sending streamed (`Body::Stream`) and file (`Body::File`) bodies from one of the server's
//! stream threads (`streams::StreamThreads`: a long body holds no handler worker), with
//! blocking writes bounded by the write deadline, while the reactor leaves the socket alone.
//!
//! Owns: chunk framing of a stream's writes and the copy loop for file regions.
//! Must not: touch the poller; the reactor unregisters the socket before and re-registers it
//! after (see `Outcome::DirectDone`).

use super::chunked::{encode_chunk, LAST_CHUNK};
use super::handler::catch_logged;
use super::response::StreamWriter;
use super::writer::Direct;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Size of each read of a file body.
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

fn send_file(stream: &TcpStream, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
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
