//! A WebSocket session: one [`Connection`], the application's [`WsHandler`], and its link to a
//! shared [`Hub`]. This is what a transport drives after the 101 answer.
//!
//! Owns: dispatching protocol events to the handler (exactly one `on_close` per session),
//! moving hub frames into the connection's output without letting it grow past
//! [`OUTPUT_HIGH_WATER_BYTES`], closing slow consumers, and leaving the hub at the end.
//! Must not: touch sockets, block on I/O or read clocks. The transport (the HTTP reactor, or a
//! blocking loop in examples and tests) calls `on_input`, `on_eof`, `on_tick`, `on_wake` and
//! `on_writable`, writes [`Session::output`], and drops the socket once
//! [`Session::is_finished`]. Wakers registered with [`SharedHub`] are called from whichever
//! thread changed the hub; they must only schedule `on_wake` (never call into the session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::http::handler::catch_logged;

use super::close::{self, CloseFrame};
use super::connection::{
    Abandon, Config, Connection, Event, Message, ProtocolError, SendError, State,
};
use super::hub::{ConnId, Hub, HubConfig, HubError, OVERFLOW_CLOSE_CODE};

/// Hub frames are moved into the connection's output only while it holds less than this.
pub const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;

/// How a session ended, as its handler's `on_close` is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The close handshake: the peer's close frame (`None` if it carried no code).
    Closed(Option<CloseFrame>),
    /// The peer broke the protocol; we closed with the error's code.
    Failed(ProtocolError),
    /// The transport ended without a close handshake.
    Abandoned(Abandon),
}

/// The application side of a WebSocket endpoint. Runs on the transport's thread: keep it quick
/// (hand long work to a worker and come back through the hub). A panicking callback is caught
/// and logged; its session is closed with 1011 (and still leaves the hub).
pub trait WsHandler: Send + 'static {
    /// The session started (after the 101 answer).
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {}
    /// A complete message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message);
    /// The session ended; called exactly once.
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _ended: &Ended) {}
}

/// Runs one `WsHandler` callback. Sessions run on the HTTP reactor: a panic is caught and
/// logged (see `catch_logged`), and the caller closes this session with 1011 instead. True
/// when the callback returned.
fn handler_call(callback: &'static str, f: impl FnOnce()) -> bool {
    catch_logged(callback, "closing the session with 1011", f).is_some()
}

/// What a handler may do with its session.
pub struct Ctx<'a> {
    id: ConnId,
    connection: &'a mut Connection,
    hub: Option<&'a SharedHub>,
}

impl Ctx<'_> {
    /// This session's id in the hub.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Sends a message to this peer.
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self.connection.send(message)
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.connection.close(code, reason);
    }

    /// The hub this session is registered with, if any.
    pub fn hub(&self) -> Option<&SharedHub> {
        self.hub
    }
}

/// A waker: schedules `on_wake` for one session on its transport's thread.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A [`Hub`] shared by sessions on many threads, with a waker per connection.
pub struct SharedHub {
    hub: Mutex<Hub>,
    wakers: Mutex<HashMap<ConnId, Waker>>,
}

impl SharedHub {
    /// A shared hub with the given limits.
    pub fn new(config: HubConfig) -> Arc<SharedHub> {
        Arc::new(SharedHub {
            hub: Mutex::new(Hub::new(config)),
            wakers: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `operation` on the hub, then wakes every connection that got frames into an empty
    /// queue or overflowed. Wakers run after the hub lock is released.
    pub fn with<R>(&self, operation: impl FnOnce(&mut Hub) -> R) -> R {
        let (result, woken) = {
            let mut hub = lock(&self.hub);
            let result = operation(&mut hub);
            let mut woken = hub.take_ready();
            woken.extend(hub.take_overflowed());
            (result, woken)
        };
        if !woken.is_empty() {
            let wakers: Vec<Waker> = {
                let registry = lock(&self.wakers);
                woken
                    .iter()
                    .filter_map(|id| registry.get(id).cloned())
                    .collect()
            };
            for waker in wakers {
                waker();
            }
        }
        result
    }

    fn register(&self, id: ConnId, user: &str, waker: Waker) -> Result<(), HubError> {
        self.with(|hub| hub.connect(id, user))?;
        lock(&self.wakers).insert(id, waker);
        Ok(())
    }

    fn unregister(&self, id: ConnId) {
        lock(&self.wakers).remove(&id);
        self.with(|hub| hub.disconnect(id));
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves data that is still consistent
/// between whole hub operations, so poisoning is not propagated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One WebSocket session. See the module documentation for the transport's part.
pub struct Session {
    id: ConnId,
    connection: Connection,
    handler: Box<dyn WsHandler>,
    hub: Option<Arc<SharedHub>>,
    started: bool,
    ended: bool,
}

impl Session {
    /// A session for a connection that just got its 101 answer, at transport time `now_ms`.
    pub fn new(id: ConnId, config: Config, handler: Box<dyn WsHandler>, now_ms: u64) -> Session {
        Session {
            id,
            connection: Connection::new(config, now_ms),
            handler,
            hub: None,
            started: false,
            ended: false,
        }
    }

    /// Registers the session with `hub` under `user` (the name authentication gave it).
    pub fn join_hub(
        &mut self,
        hub: Arc<SharedHub>,
        user: &str,
        waker: Waker,
    ) -> Result<(), HubError> {
        assert!(
            !self.started && self.hub.is_none(),
            "join the hub before start, once"
        );
        hub.register(self.id, user, waker)?;
        self.hub = Some(hub);
        Ok(())
    }

    /// Calls the handler's `on_open`. The transport calls it once, right after the 101.
    pub fn start(&mut self) {
        assert!(!self.started, "a session starts once");
        self.started = true;
        let mut ctx = Ctx {
            id: self.id,
            connection: &mut self.connection,
            hub: self.hub.as_deref(),
        };
        let ran = handler_call("WsHandler::on_open", || self.handler.on_open(&mut ctx));
        if !ran {
            self.connection
                .close(close::INTERNAL_ERROR, "internal error");
            self.dispatch();
            return;
        }
        self.pull_from_hub();
    }

    /// Bytes received from the peer.
    pub fn on_input(&mut self, bytes: &[u8]) {
        self.connection.receive(bytes);
        self.dispatch();
    }

    /// The peer closed its side of the TCP connection.
    pub fn on_eof(&mut self) {
        self.connection.receive_eof();
        self.dispatch();
    }

    /// The transport's clock advanced (monotonic milliseconds).
    pub fn on_tick(&mut self, now_ms: u64) {
        self.connection.tick(now_ms);
        self.dispatch();
    }

    /// A waker fired: frames are waiting in the hub, or this session overflowed its queue.
    pub fn on_wake(&mut self) {
        self.pull_from_hub();
    }

    /// Output was flushed: room for more hub frames.
    pub fn on_writable(&mut self) {
        self.pull_from_hub();
    }

    /// Starts the close handshake from the server side (shutdown, a refused hub join); the
    /// session ends when the peer answers or the close times out. Does nothing unless open.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.connection.close(code, reason);
        self.dispatch();
    }

    /// Bytes to write to the socket.
    pub fn output(&self) -> &[u8] {
        self.connection.output()
    }

    /// Marks `count` output bytes as written.
    pub fn consume_output(&mut self, count: usize) {
        self.connection.consume_output(count);
    }

    /// True once the session is over and its output is flushed: close the socket.
    pub fn is_finished(&self) -> bool {
        self.ended && self.connection.output_len() == 0
    }

    /// Hands every pending event to the handler.
    fn dispatch(&mut self) {
        while let Some(event) = self.connection.poll_event() {
            let ended = match event {
                Event::Message(message) => {
                    let mut ctx = Ctx {
                        id: self.id,
                        connection: &mut self.connection,
                        hub: self.hub.as_deref(),
                    };
                    let handler = &mut self.handler;
                    if !handler_call("WsHandler::on_message", || {
                        handler.on_message(&mut ctx, message)
                    }) {
                        // Closing queues our close frame; the peer's answer (or the close
                        // timeout) ends the session through this loop as usual.
                        self.connection
                            .close(close::INTERNAL_ERROR, "internal error");
                    }
                    None
                }
                Event::Close(frame) => Some(Ended::Closed(frame)),
                Event::Failed(error) => Some(Ended::Failed(error)),
                Event::Abandoned(reason) => Some(Ended::Abandoned(reason)),
                Event::Ping(_) | Event::Pong(_) | Event::TimedOut(_) => None,
            };
            if let Some(ended) = ended {
                self.end(&ended);
            }
        }
        self.pull_from_hub();
    }

    /// Runs `on_close` once and leaves the hub.
    fn end(&mut self, ended: &Ended) {
        assert_eq!(self.connection.state(), State::Closed);
        if self.ended {
            return;
        }
        self.ended = true;
        let mut ctx = Ctx {
            id: self.id,
            connection: &mut self.connection,
            hub: self.hub.as_deref(),
        };
        // Even if `on_close` panics, the session leaves the hub.
        handler_call("WsHandler::on_close", || {
            self.handler.on_close(&mut ctx, ended)
        });
        if let Some(hub) = &self.hub {
            hub.unregister(self.id);
        }
    }

    /// Moves queued hub frames into the output, up to the high-water mark; closes the
    /// connection when the hub says so (an overflow, or [`Hub::close`] once drained).
    fn pull_from_hub(&mut self) {
        let Some(hub) = self.hub.clone() else { return };
        if self.ended || self.connection.state() != State::Open {
            return;
        }
        let id = self.id;
        let connection = &mut self.connection;
        let close = hub.with(|hub| {
            if hub.is_overflowed(id) {
                return Some((OVERFLOW_CLOSE_CODE, "send queue overflow".to_string()));
            }
            while connection.output_len() < OUTPUT_HIGH_WATER_BYTES {
                let Some(frame) = hub.pop_frame(id) else {
                    break;
                };
                // Cannot fail: the state was checked above and nothing here closes it.
                let sent = connection.send_encoded(&frame);
                assert!(sent.is_ok(), "connection closed while pulling hub frames");
            }
            hub.take_close(id)
        });
        if let Some((code, reason)) = close {
            self.connection.close(code, &reason);
            // The hub forgets it now; the session ends when the peer answers or the close times out.
            hub.unregister(id);
            assert_eq!(self.connection.state(), State::Closing);
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
