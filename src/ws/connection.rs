//! The per-connection WebSocket state machine: bytes in, events and bytes out.
//!
//! Owns: frame sequencing (fragmented messages with control frames interleaved), reassembly,
//! UTF-8 validation of text as each piece arrives (after inflation for a compressed message),
//! the frame and message size limits, permessage-deflate's RSV1 (which messages are compressed,
//! both ways), automatic pongs, the close handshake, and the ping and idle timers (driven by
//! [`Connection::tick`]).
//! Must not: touch sockets, threads or clocks. The driver (the HTTP reactor, or a blocking loop)
//! feeds received bytes to [`Connection::receive`], writes [`Connection::output`] to the socket,
//! calls [`Connection::tick`] with a monotonic time, and drops the socket once the state is
//! [`State::Closed`] and the output is flushed. After each `receive` and `tick` the driver polls
//! every event: an event's effect (a pong, a close reply) is written when it is polled, so the
//! application's answers to earlier events precede it on the wire.

use std::collections::VecDeque;
use std::fmt;

use super::close::{self, CloseError, CloseFrame};
use super::deflate::{Deflate, Params};
use super::frame::{
    self, apply_mask, parse_header, FrameError, FrameHeader, Opcode, ParseConfig, Role, Status,
    RSV1,
};
use super::utf8::Utf8Validator;
use crate::crypto::deflate::DeflateError;

/// Default largest message (all fragments together), in bytes (16 MiB).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Default silence after which the server pings the peer.
pub const PING_INTERVAL_MS: u64 = 30_000;
/// Default time a ping may go unanswered (no byte at all received) before the connection closes.
pub const PONG_TIMEOUT_MS: u64 = 30_000;
/// Default time to wait for the peer's close frame after sending ours.
pub const CLOSE_TIMEOUT_MS: u64 = 5_000;
/// Bytes reserved up front for a message whose header announces a large payload; the rest grows
/// with the data actually received, so a lying header costs no memory.
const RESERVE_BYTES_MAX: u64 = 64 * 1024;
/// Consumed output bytes kept at the front of the buffer before it is compacted.
const OUTPUT_COMPACT_BYTES: usize = 64 * 1024;
/// A compressed message may be this fraction (1/n) larger than the message limit on the wire.
const COMPRESSED_SLACK_RATIO: u64 = 1024;
/// ...plus this many bytes (block headers of a short message).
const COMPRESSED_SLACK_BYTES: u64 = 64;

/// Limits and timers of one connection. Validated once by [`Connection::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which side this end is (servers require masked input and send unmasked frames).
    pub role: Role,
    /// Largest frame payload accepted, in bytes (1009 beyond).
    pub frame_bytes_max: u64,
    /// Largest message accepted, all fragments together, in bytes (1009 beyond).
    pub message_bytes_max: usize,
    /// Silence after which a ping is sent; 0 disables pings.
    pub ping_interval_ms: u64,
    /// How long a ping may stay unanswered before the connection is closed with 1001.
    pub pong_timeout_ms: u64,
    /// Time without a data message after which the connection is closed with 1001; 0 disables.
    pub idle_timeout_ms: u64,
    /// How long to wait for the peer's close frame before giving up on a clean close.
    pub close_timeout_ms: u64,
    /// Seed of the masking keys of a client (RFC 6455 §5.3). A server ignores it. The keys come
    /// from a xorshift generator: fine for tests and load clients, not for a browser-grade client.
    pub mask_seed: u64,
    /// The permessage-deflate parameters agreed in the opening handshake; `None` without the
    /// extension (RSV1 is then a protocol error). An endpoint fills it in per connection.
    pub deflate: Option<Params>,
}

impl Config {
    /// Server defaults.
    pub const SERVER: Config = Config {
        role: Role::Server,
        frame_bytes_max: frame::FRAME_BYTES_MAX,
        message_bytes_max: MESSAGE_BYTES_MAX,
        ping_interval_ms: PING_INTERVAL_MS,
        pong_timeout_ms: PONG_TIMEOUT_MS,
        idle_timeout_ms: 0,
        close_timeout_ms: CLOSE_TIMEOUT_MS,
        mask_seed: 0,
        deflate: None,
    };

    /// Client defaults (masking keys from `mask_seed`, which should differ per connection).
    pub const CLIENT: Config = Config {
        role: Role::Client,
        ping_interval_ms: 0,
        mask_seed: 0x9E37_79B9_7F4A_7C15,
        ..Config::SERVER
    };
}

/// A complete message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; incoming data is discarded.
    Closing,
    /// Nothing more will be read or sent: flush [`Connection::output`], then close the socket.
    Closed,
}

/// How the peer broke the protocol. The connection is failed with [`ProtocolError::close_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame header broke a rule.
    Frame(FrameError),
    /// A close frame's payload broke a rule.
    Close(CloseError),
    /// A continuation frame arrived with no message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// A text message is not valid UTF-8.
    InvalidUtf8,
    /// A message grew past the message size limit (for a compressed one: once inflated).
    MessageTooBig,
    /// A compressed message is not valid DEFLATE data.
    Compression(DeflateError),
}

impl ProtocolError {
    /// The close status code the connection is failed with (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::Frame(error) => error.close_code(),
            ProtocolError::Close(error) => error.close_code(),
            ProtocolError::InvalidUtf8 | ProtocolError::Compression(_) => close::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig => close::MESSAGE_TOO_BIG,
            ProtocolError::UnexpectedContinuation | ProtocolError::ExpectedContinuation => {
                close::PROTOCOL_ERROR
            }
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(error) => error.fmt(f),
            ProtocolError::Close(error) => error.fmt(f),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new message before the previous one was finished")
            }
            ProtocolError::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            ProtocolError::MessageTooBig => f.write_str("message exceeds the size limit"),
            ProtocolError::Compression(error) => write!(f, "compressed message: {error}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why the connection ended without the peer's close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandon {
    /// The peer closed the TCP connection (RFC 6455 §7.1.5: status 1006).
    Eof,
    /// The peer did not answer our close frame in time.
    CloseTimeout,
}

/// What [`Connection::receive`] and [`Connection::tick`] report, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete message.
    Message(Message),
    /// A ping arrived; its pong is already queued.
    Ping(Vec<u8>),
    /// A pong arrived.
    Pong(Vec<u8>),
    /// The peer's close frame arrived (`None`: it carried no status code). If the peer started
    /// the close, our answer is queued. The state is now [`State::Closed`].
    Close(Option<CloseFrame>),
    /// The peer broke the protocol: a close frame with the error's code is queued and the state
    /// is [`State::Closed`].
    Failed(ProtocolError),
    /// A timer expired: a close frame with this code (1001) is queued; the state is `Closing`.
    TimedOut(u16),
    /// The connection ended without a close handshake; the state is `Closed`.
    Abandoned(Abandon),
}

/// Why a send was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A close frame was already sent or received: no more messages may be sent.
    Closed,
    /// A ping payload longer than 125 bytes.
    ControlTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the WebSocket connection is closing",
            SendError::ControlTooLong => "a control frame payload is at most 125 bytes",
        })
    }
}

impl std::error::Error for SendError {}

/// Where incoming bytes go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Collecting a frame header (a prefix may be stashed in `header_stash`).
    Header,
    /// Receiving the payload of this frame; `received` bytes of it so far.
    Payload { header: FrameHeader, received: u64 },
}

/// The kind of the message being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// One WebSocket connection's protocol state. See the module documentation for the driver loop.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    parse_config: ParseConfig,
    state: State,
    read: Read,
    /// A header prefix split across reads. INVARIANT: `header_stash_len < HEADER_BYTES_MAX`.
    header_stash: [u8; frame::HEADER_BYTES_MAX],
    header_stash_len: usize,
    /// The message in progress: `Some` from its first frame until its final one.
    kind: Option<Kind>,
    /// Data frames that arrive after our close are skipped, not reassembled.
    discarding: bool,
    /// False once a close, a failure or EOF is queued: later input is ignored.
    reading: bool,
    message: Vec<u8>,
    /// The message in progress had RSV1 on its first frame: `message` holds DEFLATE data.
    compressed: bool,
    /// permessage-deflate state, when negotiated.
    deflate: Option<Deflate>,
    utf8: Utf8Validator,
    control: Vec<u8>,
    events: VecDeque<Event>,
    /// Bytes to send: `output[output_start..]`.
    output: Vec<u8>,
    output_start: usize,
    timers: Timers,
    mask_state: u64,
}

/// Timer bookkeeping, all in the driver's monotonic milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timers {
    now_ms: u64,
    /// Last tick at which any byte had been received.
    heard_ms: u64,
    /// Last tick at which a data message had been received.
    message_ms: u64,
    /// Bytes or messages arrived since the last tick.
    heard_since_tick: bool,
    message_since_tick: bool,
    ping_sent_ms: Option<u64>,
    close_sent_ms: Option<u64>,
}

impl Connection {
    /// A connection that just completed its opening handshake, at driver time `now_ms`.
    ///
    /// # Panics
    /// If the configuration is unusable (a zero limit, or a frame limit above 2^63).
    pub fn new(config: Config, now_ms: u64) -> Connection {
        assert!(
            config.frame_bytes_max > 0 && config.frame_bytes_max >> 63 == 0,
            "frame_bytes_max out of range"
        );
        assert!(
            config.message_bytes_max > 0,
            "message_bytes_max must be positive"
        );
        assert!(
            config.ping_interval_ms == 0 || config.pong_timeout_ms > 0,
            "pings need a pong timeout"
        );
        let parse_config = ParseConfig {
            role: config.role,
            rsv_allowed: if config.deflate.is_some() { RSV1 } else { 0 },
            frame_bytes_max: config.frame_bytes_max,
        };
        Connection {
            config,
            parse_config,
            state: State::Open,
            read: Read::Header,
            header_stash: [0; frame::HEADER_BYTES_MAX],
            header_stash_len: 0,
            kind: None,
            discarding: false,
            reading: true,
            message: Vec::new(),
            compressed: false,
            deflate: config
                .deflate
                .map(|params| Deflate::new(params, config.role)),
            utf8: Utf8Validator::new(),
            control: Vec::new(),
            events: VecDeque::new(),
            output: Vec::new(),
            output_start: 0,
            timers: Timers {
                now_ms,
                heard_ms: now_ms,
                message_ms: now_ms,
                heard_since_tick: false,
                message_since_tick: false,
                ping_sent_ms: None,
                close_sent_ms: None,
            },
            mask_state: config.mask_seed | 1,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next event, oldest first.
    ///
    /// An event's effect on the output and the state happens when it is polled, not when its
    /// bytes arrived: a message followed by a protocol error in the same read lets the
    /// application answer the message before the close frame is written (Autobahn 3.2, 5.15).
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        self.apply(&event);
        Some(event)
    }

    /// Performs the effect of an event as it is handed to the application.
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Ping(payload) => {
                if self.state == State::Open {
                    self.write_frame(Opcode::Pong, payload);
                }
            }
            Event::Close(frame) => {
                if self.state == State::Open {
                    // Echo the status code (RFC 6455 §5.5.1), or an empty close for an empty one.
                    let reply = frame.as_ref().map(|received| received.code.to_be_bytes());
                    self.write_frame(
                        Opcode::Close,
                        reply.as_ref().map_or(&[][..], |code| &code[..]),
                    );
                }
                self.finish();
            }
            Event::Failed(error) => {
                if self.state == State::Open {
                    let mut payload = Vec::with_capacity(close::REASON_BYTES_MAX + 2);
                    close::write_payload(&mut payload, error.close_code(), &error.to_string());
                    self.write_frame(Opcode::Close, &payload);
                }
                self.finish();
            }
            Event::Abandoned(_) => self.finish(),
            Event::Message(_) | Event::Pong(_) | Event::TimedOut(_) => {}
        }
    }

    /// Enters the final state and frees reassembly memory.
    fn finish(&mut self) {
        assert!(!self.reading, "input stops before the connection is closed");
        self.state = State::Closed;
        self.message = Vec::new();
        self.compressed = false;
        self.deflate = None;
        self.control = Vec::new();
        self.kind = None;
    }

    /// Bytes waiting to be written to the socket.
    pub fn output(&self) -> &[u8] {
        &self.output[self.output_start..]
    }

    /// Number of bytes waiting to be written.
    pub fn output_len(&self) -> usize {
        self.output.len() - self.output_start
    }

    /// Marks the first `count` bytes of [`Connection::output`] as written.
    pub fn consume_output(&mut self, count: usize) {
        assert!(
            count <= self.output_len(),
            "consumed {count} of {} pending bytes",
            self.output_len()
        );
        self.output_start += count;
        if self.output_start == self.output.len() {
            self.output.clear();
            self.output_start = 0;
        } else if self.output_start >= OUTPUT_COMPACT_BYTES
            && self.output_start * 2 >= self.output.len()
        {
            self.output.drain(..self.output_start);
            self.output_start = 0;
        }
    }

    /// Takes every pending output byte at once (for drivers that keep their own write buffer).
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut taken = std::mem::take(&mut self.output);
        taken.drain(..self.output_start);
        self.output_start = 0;
        taken
    }

    /// Feeds bytes received from the peer. Every byte is consumed; events queue up for
    /// [`Connection::poll_event`] and answers (pongs, close replies) for [`Connection::output`].
    pub fn receive(&mut self, mut input: &[u8]) {
        if !input.is_empty() {
            self.timers.heard_since_tick = true;
        }
        while !input.is_empty() && self.reading {
            let used = match self.read {
                Read::Header => self.read_header(input),
                Read::Payload { header, received } => self.read_payload(input, header, received),
            };
            assert!(used > 0 && used <= input.len(), "every step consumes input");
            input = &input[used..];
        }
    }

    /// The peer closed its side of the TCP connection.
    pub fn receive_eof(&mut self) {
        if self.reading {
            self.stop_reading(Event::Abandoned(Abandon::Eof));
        }
    }

    /// Queues the last event input can produce; the state follows when it is polled.
    fn stop_reading(&mut self, event: Event) {
        assert!(self.reading);
        assert!(matches!(
            event,
            Event::Close(_) | Event::Failed(_) | Event::Abandoned(_)
        ));
        self.reading = false;
        self.events.push_back(event);
    }

    /// Consumes bytes of a frame header; returns how many.
    fn read_header(&mut self, input: &[u8]) -> usize {
        let stashed = self.header_stash_len;
        let take = input.len().min(frame::HEADER_BYTES_MAX - stashed);
        let parsed = if stashed == 0 {
            parse_header(input, &self.parse_config)
        } else {
            self.header_stash[stashed..stashed + take].copy_from_slice(&input[..take]);
            parse_header(&self.header_stash[..stashed + take], &self.parse_config)
        };
        match parsed {
            Err(error) => {
                self.fail(ProtocolError::Frame(error));
                input.len()
            }
            Ok(Status::Partial) => {
                // A header is at most 14 bytes, so a partial one always fits the stash.
                assert!(stashed + take < frame::HEADER_BYTES_MAX && take == input.len());
                if stashed == 0 {
                    self.header_stash[..take].copy_from_slice(&input[..take]);
                }
                self.header_stash_len = stashed + take;
                take
            }
            Ok(Status::Complete(header)) => {
                assert!(header.header_len > stashed);
                self.header_stash_len = 0;
                self.begin_frame(header);
                header.header_len - stashed
            }
        }
    }

    /// Checks a data frame's place in the message sequence and prepares to receive its payload.
    fn begin_frame(&mut self, header: FrameHeader) {
        if header.opcode.is_control() {
            self.control.clear();
        } else if self.state == State::Closing {
            self.discarding = true;
        } else {
            self.discarding = false;
            let kind = match (header.opcode, self.kind) {
                (Opcode::Continuation, None) => {
                    return self.fail(ProtocolError::UnexpectedContinuation)
                }
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return self.fail(ProtocolError::ExpectedContinuation)
                }
                (Opcode::Text, None) => Kind::Text,
                (Opcode::Binary, None) => Kind::Binary,
                (Opcode::Continuation, Some(kind)) => kind,
                (Opcode::Close | Opcode::Ping | Opcode::Pong, _) => {
                    unreachable!("control frames are handled above")
                }
            };
            if self.kind.is_none() {
                self.utf8 = Utf8Validator::new();
                self.kind = Some(kind);
                self.compressed = header.rsv & RSV1 != 0;
            }
            let total = (self.message.len() as u64).saturating_add(header.payload_len);
            if total > self.wire_bytes_max() {
                return self.fail(ProtocolError::MessageTooBig);
            }
            self.message
                .reserve(header.payload_len.min(RESERVE_BYTES_MAX) as usize);
        }
        self.read = Read::Payload {
            header,
            received: 0,
        };
        if header.payload_len == 0 {
            self.end_frame(header);
        }
    }

    /// Consumes payload bytes of the current frame; returns how many.
    fn read_payload(&mut self, input: &[u8], header: FrameHeader, received: u64) -> usize {
        assert!(received < header.payload_len);
        let remaining = header.payload_len - received;
        let take = if remaining < input.len() as u64 {
            remaining as usize
        } else {
            input.len()
        };
        let chunk = &input[..take];
        if header.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut self.control[start..], key, received);
            }
        } else if !self.discarding {
            let start = self.message.len();
            self.message.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut self.message[start..], key, received);
            }
            // Validate each piece as it lands: an invalid byte fails the connection now, not
            // when the rest of a long frame has arrived (RFC 6455 §8.1, Autobahn 6.4.x).
            let text = self.kind == Some(Kind::Text) && !self.compressed;
            if text && self.utf8.feed(&self.message[start..]).is_err() {
                self.fail(ProtocolError::InvalidUtf8);
                return take;
            }
        }
        let received = received + take as u64;
        if received == header.payload_len {
            self.end_frame(header);
        } else {
            self.read = Read::Payload { header, received };
        }
        take
    }

    /// Handles a frame whose payload is complete.
    fn end_frame(&mut self, header: FrameHeader) {
        self.read = Read::Header;
        if header.opcode.is_control() {
            return self.end_control_frame(header.opcode);
        }
        if !header.fin {
            return;
        }
        if self.discarding {
            self.discarding = false;
            return;
        }
        let Some(kind) = self.kind.take() else {
            unreachable!("a data frame always has a message kind")
        };
        let payload = std::mem::take(&mut self.message);
        match self.complete_message(kind, payload) {
            Ok(message) => {
                self.timers.message_since_tick = true;
                self.events.push_back(Event::Message(message));
            }
            Err(error) => self.fail(error),
        }
    }

    /// Turns a reassembled payload into a message: inflated if compressed, text validated.
    fn complete_message(&mut self, kind: Kind, payload: Vec<u8>) -> Result<Message, ProtocolError> {
        if !std::mem::take(&mut self.compressed) {
            return match kind {
                Kind::Binary => Ok(Message::Binary(payload)),
                Kind::Text if !self.utf8.is_boundary() => Err(ProtocolError::InvalidUtf8),
                Kind::Text => Ok(Message::Text(
                    String::from_utf8(payload)
                        .expect("the incremental validator accepted this text"),
                )),
            };
        }
        let Some(deflate) = self.deflate.as_mut() else {
            unreachable!("RSV1 is refused by the frame parser without permessage-deflate")
        };
        let inflated = deflate
            .decompress(payload, self.config.message_bytes_max)
            .map_err(|error| match error {
                DeflateError::OutputTooLarge => ProtocolError::MessageTooBig,
                other => ProtocolError::Compression(other),
            })?;
        match kind {
            Kind::Binary => Ok(Message::Binary(inflated)),
            Kind::Text => String::from_utf8(inflated)
                .map(Message::Text)
                .map_err(|_| ProtocolError::InvalidUtf8),
        }
    }

    /// Largest payload of one message on the wire. DEFLATE can grow incompressible data a
    /// little (5 bytes per 64 KiB stored block), so a compressed message gets that slack; its
    /// inflated size is held to `message_bytes_max` separately.
    fn wire_bytes_max(&self) -> u64 {
        let limit = self.config.message_bytes_max as u64;
        if self.compressed {
            limit.saturating_add(limit / COMPRESSED_SLACK_RATIO + COMPRESSED_SLACK_BYTES)
        } else {
            limit
        }
    }

    /// Answers a complete ping, pong or close frame.
    fn end_control_frame(&mut self, opcode: Opcode) {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            Opcode::Ping => {
                // Pings that cross our close frame are not answered.
                if self.state == State::Open {
                    self.events.push_back(Event::Ping(payload));
                }
            }
            Opcode::Pong => {
                self.timers.ping_sent_ms = None;
                self.events.push_back(Event::Pong(payload));
            }
            Opcode::Close => self.receive_close(&payload),
            _ => unreachable!("{opcode:?} is not a control opcode"),
        }
    }

    /// The peer's close frame: answer it (if we did not start the close) and finish.
    fn receive_close(&mut self, payload: &[u8]) {
        match close::parse_payload(payload) {
            Ok(frame) => self.stop_reading(Event::Close(frame)),
            Err(error) => self.fail(ProtocolError::Close(error)),
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): stop reading now; the close frame with the
    /// error's code is written when the event is polled.
    fn fail(&mut self, error: ProtocolError) {
        self.stop_reading(Event::Failed(error));
    }
}

impl Connection {
    /// Queues a message.
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        match message {
            Message::Text(text) => self.send_text(text),
            Message::Binary(data) => self.send_binary(data),
        }
    }

    /// Queues a text message in one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(Opcode::Text, text.as_bytes())
    }

    /// Queues a binary message in one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(Opcode::Binary, data)
    }

    /// Queues frames that were encoded once for many connections (a broadcast); they must come
    /// from [`encode_server_message`] and the connection must be a server.
    pub fn send_encoded(&mut self, frames: &[u8]) -> Result<(), SendError> {
        assert_eq!(
            self.config.role,
            Role::Server,
            "pre-encoded frames are unmasked server frames"
        );
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        self.output.extend_from_slice(frames);
        Ok(())
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > frame::CONTROL_PAYLOAD_BYTES_MAX {
            return Err(SendError::ControlTooLong);
        }
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        self.write_frame(Opcode::Ping, payload);
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit). Does nothing unless open.
    ///
    /// # Panics
    /// If `code` may not be sent (a reserved one such as 1005 or 1006, or one below 1000: see
    /// [`close::is_valid_code`]): a caller's mistake, never the peer's.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.state != State::Open {
            return;
        }
        let mut payload = Vec::with_capacity(close::REASON_BYTES_MAX + 2);
        close::write_payload(&mut payload, code, reason);
        self.write_frame(Opcode::Close, &payload);
        self.state = State::Closing;
        self.timers.close_sent_ms = Some(self.timers.now_ms);
        // A message in progress will never be delivered now: the rest of a data frame that
        // has begun is skipped like the data frames that follow (`begin_frame` in `Closing`).
        self.kind = None;
        self.message = Vec::new();
        self.compressed = false;
        self.discarding = true;
    }

    /// Advances the connection's clock to `now_ms` (monotonic, never going back) and runs the
    /// ping, pong, idle and close timers. Call it every second or so.
    pub fn tick(&mut self, now_ms: u64) {
        assert!(
            now_ms >= self.timers.now_ms,
            "time went back from {} to {now_ms}",
            self.timers.now_ms
        );
        let timers = &mut self.timers;
        timers.now_ms = now_ms;
        if std::mem::take(&mut timers.heard_since_tick) {
            timers.heard_ms = now_ms;
            // Any byte proves the peer alive, not only the pong itself.
            timers.ping_sent_ms = None;
        }
        if std::mem::take(&mut timers.message_since_tick) {
            timers.message_ms = now_ms;
        }
        let timers = self.timers;
        let config = self.config;
        match self.state {
            // Once input has ended, only polling the final event remains.
            _ if !self.reading => {}
            State::Closed => {}
            State::Closing => {
                let sent_ms = timers.close_sent_ms.unwrap_or(now_ms);
                if now_ms - sent_ms >= config.close_timeout_ms {
                    self.stop_reading(Event::Abandoned(Abandon::CloseTimeout));
                }
            }
            State::Open => {
                let ping_overdue = timers
                    .ping_sent_ms
                    .is_some_and(|sent| now_ms - sent >= config.pong_timeout_ms);
                let idle = config.idle_timeout_ms > 0
                    && now_ms - timers.message_ms >= config.idle_timeout_ms;
                if ping_overdue || idle {
                    self.close(
                        close::GOING_AWAY,
                        if idle { "idle timeout" } else { "ping timeout" },
                    );
                    self.events.push_back(Event::TimedOut(close::GOING_AWAY));
                } else if config.ping_interval_ms > 0
                    && timers.ping_sent_ms.is_none()
                    && now_ms - timers.heard_ms >= config.ping_interval_ms
                {
                    self.write_frame(Opcode::Ping, b"");
                    self.timers.ping_sent_ms = Some(now_ms);
                }
            }
        }
    }

    fn send_data(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        match self
            .deflate
            .as_mut()
            .and_then(|deflate| deflate.compress(payload))
        {
            Some(packed) => self.write_frame_rsv(RSV1, opcode, &packed),
            None => self.write_frame(opcode, payload),
        }
        Ok(())
    }

    /// Appends one final frame to the output, masked when this end is a client.
    fn write_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        self.write_frame_rsv(0, opcode, payload);
    }

    /// [`Connection::write_frame`] with RSV bits (RSV1: a compressed message).
    fn write_frame_rsv(&mut self, rsv: u8, opcode: Opcode, payload: &[u8]) {
        let mask = match self.config.role {
            Role::Server => None,
            Role::Client => Some(self.next_mask()),
        };
        frame::write_frame_rsv(&mut self.output, true, rsv, opcode, payload, mask);
    }

    /// xorshift64: a fresh masking key per client frame.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut state = self.mask_state;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        self.mask_state = state;
        let bytes = state.to_le_bytes();
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }
}

/// Encodes a message as one unmasked server frame, for sending the same bytes to many
/// connections with [`Connection::send_encoded`].
pub fn encode_server_message(message: &Message) -> Vec<u8> {
    let (opcode, payload) = match message {
        Message::Text(text) => (Opcode::Text, text.as_bytes()),
        Message::Binary(data) => (Opcode::Binary, data.as_slice()),
    };
    let mut out = Vec::with_capacity(payload.len() + frame::HEADER_BYTES_MAX);
    frame::write_frame(&mut out, true, opcode, payload, None);
    out
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
