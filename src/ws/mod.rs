//! WebSocket (RFC 6455): the upgrade, frame parsing and writing, the per-connection state
//! machine, and the hub (rooms, presence, bounded send queues).
//!
//! Owns: the protocol, entirely sans-IO: [`handshake`] validates an upgrade request and builds
//! the 101 answer, [`frame`] parses and writes frames, [`Connection`] turns received bytes into
//! [`Event`]s and output bytes, [`deflate`] negotiates and runs permessage-deflate (RFC 7692),
//! [`hub`] routes messages between connections.
//! Must not: own sockets, threads or clocks; connections live in the HTTP reactor (or, for the
//! test clients, a blocking loop), which feeds bytes and time in and writes bytes out.
//!
//! ```
//! use lithair::ws::{Config, Connection, Event, Message};
//!
//! let mut connection = Connection::new(Config::SERVER, 0);
//! // A masked text frame "Hello" from a client (RFC 6455 §5.7).
//! connection.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! assert_eq!(connection.poll_event(), Some(Event::Message(Message::Text("Hello".into()))));
//! connection.send_text("Hello").unwrap();
//! assert_eq!(connection.output(), b"\x81\x05Hello");
//! ```

pub mod close;
mod connection;
pub mod deflate;
pub mod endpoint;
pub mod frame;
pub mod handshake;
pub mod hub;
mod session;
pub mod upgrade;
pub mod utf8;

pub use close::CloseFrame;
pub use connection::{
    encode_server_message, Abandon, Config, Connection, Event, Message, ProtocolError, SendError,
    State, CLOSE_TIMEOUT_MS, MESSAGE_BYTES_MAX, PING_INTERVAL_MS, PONG_TIMEOUT_MS,
};
pub use deflate::{DeflateConfig, Params as DeflateParams};
pub use endpoint::Endpoint;
pub use frame::{Opcode, Role, Status, FRAME_BYTES_MAX};
pub use handshake::{accept_key, HandshakeError, Upgrade};
pub use hub::{ConnId, Hub, HubConfig, HubError, Peer};
pub use session::{Ctx, Ended, Session, SharedHub, Waker, WsHandler, OUTPUT_HIGH_WATER_BYTES};
pub use upgrade::{accept, Accepted, Anonymous, Authenticate};
