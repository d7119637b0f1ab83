//! Server-Sent Events (HTML Living Standard, "Server-sent events"): `text/event-stream`
//! responses written over a `Body::Stream`, with heartbeats so idle streams survive proxies and
//! dead clients are noticed.
//!
//! Owns: the event wire format (`event:`, `id:`, `retry:`, `data:` lines, blank line).
//! Must not: know what the events mean (live queries produce them).

use crate::http::request::Request;
use crate::http::response::{Response, StreamWriter};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Default interval between heartbeat comments on an idle stream.
pub const HEARTBEAT_MS: u64 = 15_000;
/// How long a stream waiting for its next event may go without looking at the server's
/// shutdown flag: the most a graceful shutdown waits for an idle stream to end.
pub const STOP_CHECK_MS: u64 = 200;

/// One event. `data` may hold newlines (sent as several `data:` lines); `event` and `id` may
/// not, so line breaks in them are replaced by spaces rather than splitting the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type (`event:`), `message` when absent.
    pub event: Option<String>,
    /// The id (`id:`), which the browser sends back as `Last-Event-ID` on reconnect.
    pub id: Option<String>,
    /// The payload.
    pub data: String,
    /// Reconnection delay advice (`retry:`) in milliseconds.
    pub retry_ms: Option<u64>,
}

impl SseEvent {
    /// An event carrying `data`.
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the event type.
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Sets the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets `retry:`.
    pub fn retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = Some(ms);
        self
    }

    /// The wire form, ending with the blank line that dispatches the event.
    pub fn encode(&self) -> String {
        let one_line = |s: &str| s.replace(['\r', '\n', '\0'], " ");
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(event) = &self.event {
            out.push_str(&format!("event: {}\n", one_line(event)));
        }
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {}\n", one_line(id)));
        }
        if let Some(ms) = self.retry_ms {
            out.push_str(&format!("retry: {ms}\n"));
        }
        // CRLF, LF and CR all end a line in the stream format; normalise to one `data:` each.
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// What a producer with nothing to send does next (see [`SseWriter::idle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Wait for an event at most this long, then ask again.
    Wait(Duration),
    /// Nothing was written for a whole heartbeat interval: write something (a comment).
    Heartbeat,
    /// The server is shutting down, or the client closed the connection: return, which ends
    /// the response cleanly (the browser reconnects, with `Last-Event-ID`, to a server that is
    /// up).
    Stop,
}

/// Writes events into a streamed response; each write is flushed so it leaves at once.
pub struct SseWriter<'a> {
    out: StreamWriter<'a>,
    last_write: Instant,
}

impl<'a> SseWriter<'a> {
    /// Wraps the stream writer the server hands to `Body::Stream`.
    pub fn new(out: &'a mut StreamWriter<'_>) -> Self {
        Self {
            out: out.reborrow(),
            last_write: Instant::now(),
        }
    }

    /// Sends one event. An error means the client is gone: stop producing.
    pub fn send(&mut self, event: &SseEvent) -> io::Result<()> {
        self.write(event.encode().as_bytes())
    }

    /// Sends a comment line (ignored by clients): `: text`.
    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        let text = text.replace(['\r', '\n'], " ");
        self.write(format!(": {text}\n\n").as_bytes())
    }

    /// True once the server has begun a graceful shutdown.
    pub fn stopping(&self) -> bool {
        self.out.stopping()
    }

    /// The next step of a producer that has nothing to send and heartbeats every `heartbeat`:
    /// its waits are cut into slices of at most [`STOP_CHECK_MS`], so neither a shutdown nor a
    /// client that went away waits for an idle stream's heartbeat.
    pub fn idle(&self, heartbeat: Duration) -> Idle {
        if self.stopping() || self.out.peer_gone() {
            return Idle::Stop;
        }
        match heartbeat.checked_sub(self.last_write.elapsed()) {
            Some(left) if !left.is_zero() => {
                Idle::Wait(left.min(Duration::from_millis(STOP_CHECK_MS)))
            }
            _ => Idle::Heartbeat,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()?;
        self.last_write = Instant::now();
        Ok(())
    }
}

/// Builds `text/event-stream` responses.
///
/// ```
/// use lithair::http::sse::{Sse, SseEvent};
/// let (tx, rx) = std::sync::mpsc::channel();
/// tx.send(SseEvent::data("hello").event("greeting")).unwrap();
/// let response = Sse::new().heartbeat_ms(10_000).from_channel(rx);
/// assert_eq!(response.headers.get("content-type"), Some("text/event-stream"));
/// ```
#[derive(Debug, Clone)]
pub struct Sse {
    heartbeat: Duration,
}

impl Default for Sse {
    fn default() -> Self {
        Self::new()
    }
}

impl Sse {
    /// Heartbeats every [`HEARTBEAT_MS`].
    pub fn new() -> Self {
        Self {
            heartbeat: Duration::from_millis(HEARTBEAT_MS),
        }
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        assert!(ms > 0, "heartbeat interval must be positive");
        self.heartbeat = Duration::from_millis(ms);
        self
    }

    /// A response whose body runs `produce` with an [`SseWriter`] on a worker thread.
    pub fn stream(
        self,
        produce: impl FnOnce(&mut SseWriter<'_>) -> io::Result<()> + Send + 'static,
    ) -> Response {
        Response::stream(200, "text/event-stream", move |out| {
            produce(&mut SseWriter::new(out))
        })
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Accel-Buffering", "no")
    }

    /// A response that forwards every event received on `events` until the sender is dropped
    /// or the client goes away, with a heartbeat comment after each idle interval.
    pub fn from_channel(self, events: Receiver<SseEvent>) -> Response {
        let heartbeat = self.heartbeat;
        self.stream(move |writer| pump(writer, &events, heartbeat))
    }
}

/// The `Last-Event-ID` a reconnecting browser sends: the id of the last event it received,
/// from which a stream should resume.
pub fn last_event_id(req: &Request) -> Option<&str> {
    req.header("last-event-id")
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

fn pump(
    writer: &mut SseWriter<'_>,
    events: &Receiver<SseEvent>,
    heartbeat: Duration,
) -> io::Result<()> {
    // Tell the client it is connected before the first event arrives.
    writer.comment("ok")?;
    loop {
        match writer.idle(heartbeat) {
            Idle::Stop => return Ok(()),
            Idle::Heartbeat => writer.comment("heartbeat")?,
            Idle::Wait(slice) => match events.recv_timeout(slice) {
                Ok(event) => writer.send(&event)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::Body;
    use std::sync::mpsc;

    #[test]
    fn last_event_id_header() {
        let mut req = Request::new(crate::http::request::Method::Get, "/stream");
        assert_eq!(last_event_id(&req), None);
        req.headers.append("Last-Event-ID", " 41 ");
        assert_eq!(last_event_id(&req), Some("41"));
    }

    #[test]
    fn encoding() {
        let e = SseEvent::data("line1\nline2\r\nline3")
            .event("up\ndate")
            .id("7")
            .retry_ms(500);
        assert_eq!(
            e.encode(),
            "event: up date\nid: 7\nretry: 500\ndata: line1\ndata: line2\ndata: line3\n\n"
        );
        assert_eq!(SseEvent::data("").encode(), "data: \n\n");
    }

    #[test]
    fn channel_stream_writes_events_and_ends_with_the_sender() {
        let (tx, rx) = mpsc::channel();
        tx.send(SseEvent::data("a").id("1")).expect("send");
        tx.send(SseEvent::data("b")).expect("send");
        drop(tx);
        let response = Sse::new().from_channel(rx);
        assert_eq!(response.headers.get("cache-control"), Some("no-cache"));
        let Body::Stream(write) = response.body else {
            panic!("not a stream")
        };
        let mut out = Vec::new();
        write(&mut StreamWriter::new(&mut out)).expect("stream");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            ": ok\n\nid: 1\ndata: a\n\ndata: b\n\n"
        );
    }

    #[test]
    fn heartbeats_while_idle() {
        let (tx, rx) = mpsc::channel::<SseEvent>();
        // The writer fails after the heartbeat is written, as a gone client's socket would.
        struct Closing(Vec<u8>, usize);
        impl Write for Closing {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                self.1 -= 1;
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Closing(Vec::new(), 2);
        let result = pump(
            &mut SseWriter::new(&mut StreamWriter::new(&mut sink)),
            &rx,
            Duration::from_millis(1),
        );
        assert!(result.is_err(), "a gone client ends the stream");
        assert_eq!(String::from_utf8_lossy(&sink.0), ": ok\n\n: heartbeat\n\n");
        drop(tx);
    }

    #[test]
    fn an_idle_stream_ends_cleanly_once_the_server_stops() {
        let (tx, rx) = mpsc::channel::<SseEvent>();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut sink = Vec::new();
        {
            let mut out = StreamWriter::with_stop(&mut sink, &stop);
            let mut writer = SseWriter::new(&mut out);
            let hour = Duration::from_secs(3600);
            // Idle waits are sliced so the flag is seen within STOP_CHECK_MS, whatever the
            // heartbeat.
            assert_eq!(
                writer.idle(hour),
                Idle::Wait(Duration::from_millis(STOP_CHECK_MS))
            );
            assert_eq!(writer.idle(Duration::ZERO), Idle::Heartbeat);
            stop.store(true, std::sync::atomic::Ordering::Release);
            assert_eq!(writer.idle(hour), Idle::Stop);
            // The pump returns Ok (the server then sends the last chunk) instead of waiting.
            pump(&mut writer, &rx, hour).expect("a clean end");
        }
        assert_eq!(String::from_utf8_lossy(&sink), ": ok\n\n");
        drop(tx);
    }
}
