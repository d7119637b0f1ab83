//! The hub: rooms, presence, direct messages, and a bounded send queue per connection.
//!
//! Owns: who is connected (by [`ConnId`], with the user name the upgrade's authentication gave),
//! which rooms exist and who is in them, and the frames waiting to be sent to each connection.
//! A message is encoded once into an unmasked server frame and shared (`Arc`) by every queue it
//! goes to, so a broadcast to N members costs N pointer copies, not N encodings.
//! Must not: touch sockets, block, or let one connection slow the others: a connection whose
//! queue is full is marked for closing with 1008 (policy violation) and gets nothing more;
//! the driver picks it up from [`Hub::take_overflowed`], closes it, and calls [`Hub::disconnect`].
//!
//! Driver loop (the reactor, holding the hub behind a lock): after hub calls, wake the
//! connections in [`Hub::take_ready`]; for each writable connection, move frames from
//! [`Hub::pop_frame`] into `Connection::send_encoded` while its output is small.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::close;
use super::connection::{encode_server_message, Message};

/// Default most frames waiting for one connection.
pub const QUEUE_FRAMES_MAX: usize = 1024;
/// Default most bytes waiting for one connection (4 MiB), beyond one frame (an empty queue
/// takes a frame of any size).
pub const QUEUE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Default most rooms one connection may be in.
pub const ROOMS_PER_CONNECTION_MAX: usize = 64;
/// Longest room name, in bytes.
pub const ROOM_NAME_BYTES_MAX: usize = 128;
/// The close code for a connection whose send queue overflowed.
pub const OVERFLOW_CLOSE_CODE: u16 = close::POLICY_VIOLATION;

/// A connection's identity in the hub, assigned by the driver (unique while connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// An encoded server frame, shared between the queues it was sent to.
pub type SharedFrame = Arc<[u8]>;

/// Limits of a hub. Validated by [`Hub::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Most frames queued for one connection before it is closed as a slow consumer.
    pub queue_frames_max: usize,
    /// Most bytes queued for one connection before it is closed as a slow consumer (an empty
    /// queue takes one frame of any size).
    pub queue_bytes_max: usize,
    /// Most rooms one connection may join.
    pub rooms_per_connection_max: usize,
    /// Whether members get presence notices when others join or leave their rooms.
    pub presence_notices: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_frames_max: QUEUE_FRAMES_MAX,
            queue_bytes_max: QUEUE_BYTES_MAX,
            rooms_per_connection_max: ROOMS_PER_CONNECTION_MAX,
            presence_notices: true,
        }
    }
}

/// Why a hub operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubError {
    /// The connection is not registered (or was disconnected).
    UnknownConnection(ConnId),
    /// The id is already registered.
    AlreadyConnected(ConnId),
    /// The connection is not a member of the room.
    NotInRoom(String),
    /// The connection is in too many rooms already.
    TooManyRooms,
    /// A room name that is empty, too long, or contains control characters.
    BadRoomName,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::UnknownConnection(id) => write!(f, "connection {} is not connected", id.0),
            HubError::AlreadyConnected(id) => write!(f, "connection {} is already connected", id.0),
            HubError::NotInRoom(room) => write!(f, "not a member of room {room:?}"),
            HubError::TooManyRooms => f.write_str("too many rooms joined"),
            HubError::BadRoomName => {
                write!(
                    f,
                    "a room name is 1 to {ROOM_NAME_BYTES_MAX} bytes without control characters"
                )
            }
        }
    }
}

impl std::error::Error for HubError {}

/// A member of a room, as presence reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The connection.
    pub id: ConnId,
    /// The user name given at connect time.
    pub user: String,
}

/// One connection's state in the hub.
#[derive(Debug)]
struct Member {
    user: String,
    rooms: BTreeSet<String>,
    queue: VecDeque<SharedFrame>,
    /// INVARIANT: the sum of the lengths of the frames in `queue`.
    queued_bytes: usize,
    /// Set once the queue overflowed: the connection is being closed and receives nothing more.
    overflowed: bool,
    /// Set by [`Hub::close`]: the close to send once the queue is drained; nothing more is
    /// queued meanwhile.
    close_after: Option<(u16, String)>,
}

/// Rooms, presence and per-connection send queues. See the module documentation.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    members: HashMap<ConnId, Member>,
    /// Room name to members. A room exists while it has at least one member.
    rooms: HashMap<String, BTreeSet<ConnId>>,
    /// Connections whose queue went from empty to non-empty since the last `take_ready`.
    ready: Vec<ConnId>,
    /// Connections whose queue overflowed since the last `take_overflowed`.
    overflowed: Vec<ConnId>,
}

impl Hub {
    /// An empty hub.
    ///
    /// # Panics
    /// If a limit is zero.
    pub fn new(config: HubConfig) -> Hub {
        assert!(
            config.queue_frames_max > 0 && config.queue_bytes_max > 0,
            "send queues need room"
        );
        assert!(
            config.rooms_per_connection_max > 0,
            "rooms_per_connection_max must be positive"
        );
        Hub {
            config,
            members: HashMap::new(),
            rooms: HashMap::new(),
            ready: Vec::new(),
            overflowed: Vec::new(),
        }
    }

    /// Registers a connection after its upgrade, under the user name authentication gave it.
    pub fn connect(&mut self, id: ConnId, user: impl Into<String>) -> Result<(), HubError> {
        if self.members.contains_key(&id) {
            return Err(HubError::AlreadyConnected(id));
        }
        let member = Member {
            user: user.into(),
            rooms: BTreeSet::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            overflowed: false,
            close_after: None,
        };
        self.members.insert(id, member);
        Ok(())
    }

    /// Forgets a connection: it leaves every room (members are told) and its queue is dropped.
    /// Returns the rooms it was in. Unknown ids are ignored (disconnect is idempotent).
    pub fn disconnect(&mut self, id: ConnId) -> Vec<String> {
        let Some(member) = self.members.get(&id) else {
            return Vec::new();
        };
        let rooms: Vec<String> = member.rooms.iter().cloned().collect();
        for room in &rooms {
            self.remove_from_room(id, room);
        }
        self.members.remove(&id);
        self.ready.retain(|ready| *ready != id);
        self.overflowed.retain(|overflowed| *overflowed != id);
        rooms
    }

    /// Adds a connection to a room (creating it) and returns who is in it now, the joiner
    /// included. The others get a `join` presence notice. Joining twice changes nothing.
    pub fn join(&mut self, id: ConnId, room: &str) -> Result<Vec<Peer>, HubError> {
        check_room_name(room)?;
        let limit = self.config.rooms_per_connection_max;
        let member = self
            .members
            .get_mut(&id)
            .ok_or(HubError::UnknownConnection(id))?;
        if !member.rooms.contains(room) {
            if member.rooms.len() >= limit {
                return Err(HubError::TooManyRooms);
            }
            member.rooms.insert(room.to_string());
            let user = member.user.clone();
            self.notify_presence(room, "join", id, &user);
            self.rooms.entry(room.to_string()).or_default().insert(id);
        }
        Ok(self.members_of(room))
    }

    /// Removes a connection from a room; the others get a `leave` presence notice.
    pub fn leave(&mut self, id: ConnId, room: &str) -> Result<(), HubError> {
        let member = self
            .members
            .get(&id)
            .ok_or(HubError::UnknownConnection(id))?;
        if !member.rooms.contains(room) {
            return Err(HubError::NotInRoom(room.to_string()));
        }
        self.remove_from_room(id, room);
        Ok(())
    }

    /// Who is in `room` (empty if it does not exist), in connection order.
    pub fn members_of(&self, room: &str) -> Vec<Peer> {
        let Some(ids) = self.rooms.get(room) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| {
                self.members.get(id).map(|member| Peer {
                    id: *id,
                    user: member.user.clone(),
                })
            })
            .collect()
    }

    /// The rooms a connection is in.
    pub fn rooms_of(&self, id: ConnId) -> Result<Vec<String>, HubError> {
        let member = self
            .members
            .get(&id)
            .ok_or(HubError::UnknownConnection(id))?;
        Ok(member.rooms.iter().cloned().collect())
    }

    /// Sends `message` to every member of `room` except `skip`; returns how many queues took it.
    /// The message is encoded once.
    pub fn broadcast(&mut self, room: &str, message: &Message, skip: Option<ConnId>) -> usize {
        let Some(ids) = self.rooms.get(room) else {
            return 0;
        };
        let targets: Vec<ConnId> = ids.iter().copied().filter(|id| Some(*id) != skip).collect();
        let frame: SharedFrame = encode_server_message(message).into();
        targets
            .into_iter()
            .filter(|id| self.enqueue(*id, &frame))
            .count()
    }

    /// A member's message to its room: refused unless `from` is in `room`; everyone else in the
    /// room receives it (the sender too when `echo`).
    pub fn broadcast_from(
        &mut self,
        from: ConnId,
        room: &str,
        message: &Message,
        echo: bool,
    ) -> Result<usize, HubError> {
        let member = self
            .members
            .get(&from)
            .ok_or(HubError::UnknownConnection(from))?;
        if !member.rooms.contains(room) {
            return Err(HubError::NotInRoom(room.to_string()));
        }
        Ok(self.broadcast(room, message, if echo { None } else { Some(from) }))
    }

    /// Sends `message` to one connection. `Ok(false)` when its queue overflowed (it is being
    /// closed), an error when it is not connected.
    pub fn direct(&mut self, to: ConnId, message: &Message) -> Result<bool, HubError> {
        if !self.members.contains_key(&to) {
            return Err(HubError::UnknownConnection(to));
        }
        let frame: SharedFrame = encode_server_message(message).into();
        Ok(self.enqueue(to, &frame))
    }

    /// Asks for `id` to be closed with `code` and `reason` once the frames already queued for it
    /// are sent (an application ending a feed after its last message). Nothing more is queued
    /// for it; the first close asked for wins. The driver learns it from [`Hub::take_close`].
    ///
    /// # Panics
    /// If `code` is not a close code an endpoint may send (RFC 6455 §7.4).
    pub fn close(&mut self, id: ConnId, code: u16, reason: &str) -> Result<(), HubError> {
        assert!(
            close::is_valid_code(code),
            "close code {code} may not be sent"
        );
        let member = self
            .members
            .get_mut(&id)
            .ok_or(HubError::UnknownConnection(id))?;
        if member.close_after.is_none() {
            member.close_after = Some((code, close::truncate_reason(reason).to_string()));
            // An empty queue gets no frame to wake its writer: wake it for the close.
            if member.queue.is_empty() {
                self.ready.push(id);
            }
        }
        Ok(())
    }

    /// The close [`Hub::close`] asked for `id`, once its queue is empty (taken once).
    pub fn take_close(&mut self, id: ConnId) -> Option<(u16, String)> {
        let member = self.members.get_mut(&id)?;
        if !member.queue.is_empty() {
            return None;
        }
        member.close_after.take()
    }

    /// The next frame waiting for `id`, oldest first.
    pub fn pop_frame(&mut self, id: ConnId) -> Option<SharedFrame> {
        let member = self.members.get_mut(&id)?;
        let frame = member.queue.pop_front()?;
        assert!(member.queued_bytes >= frame.len());
        member.queued_bytes -= frame.len();
        assert_eq!(member.queue.is_empty(), member.queued_bytes == 0);
        Some(frame)
    }

    /// Whether `id`'s queue overflowed (it must be closed with [`OVERFLOW_CLOSE_CODE`]).
    pub fn is_overflowed(&self, id: ConnId) -> bool {
        self.members
            .get(&id)
            .is_some_and(|member| member.overflowed)
    }

    /// Whether `id` is connected.
    pub fn is_connected(&self, id: ConnId) -> bool {
        self.members.contains_key(&id)
    }

    /// Bytes waiting for `id` (0 for unknown connections).
    pub fn queued_bytes(&self, id: ConnId) -> usize {
        self.members
            .get(&id)
            .map_or(0, |member| member.queued_bytes)
    }

    /// Frames waiting for `id` (0 for unknown connections).
    pub fn queued_frames(&self, id: ConnId) -> usize {
        self.members.get(&id).map_or(0, |member| member.queue.len())
    }

    /// Connections that got frames into an empty queue since the last call: wake their writers.
    pub fn take_ready(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.ready)
    }

    /// Slow consumers found since the last call: close each with [`OVERFLOW_CLOSE_CODE`], then
    /// [`Hub::disconnect`] it.
    pub fn take_overflowed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.overflowed)
    }

    /// Queues a frame for one connection, or marks it overflowed. Returns whether it was queued.
    fn enqueue(&mut self, id: ConnId, frame: &SharedFrame) -> bool {
        let config = self.config;
        let Some(member) = self.members.get_mut(&id) else {
            return false;
        };
        if member.overflowed || member.close_after.is_some() {
            return false;
        }
        let frames_full = member.queue.len() >= config.queue_frames_max;
        // An empty queue takes any one frame: a message larger than the byte limit (a big
        // broadcast, a large first page) is not a sign of a slow consumer, and refusing it
        // would close every recipient, however fast, and never deliver it.
        let bytes_full =
            !member.queue.is_empty() && member.queued_bytes + frame.len() > config.queue_bytes_max;
        if frames_full || bytes_full {
            // Dropping what is queued frees the memory now; the connection is closed anyway.
            member.overflowed = true;
            member.queue = VecDeque::new();
            member.queued_bytes = 0;
            self.overflowed.push(id);
            return false;
        }
        if member.queue.is_empty() {
            self.ready.push(id);
        }
        member.queue.push_back(Arc::clone(frame));
        member.queued_bytes += frame.len();
        true
    }

    /// Takes `id` out of `room` (deleting an empty room) and tells the rest.
    fn remove_from_room(&mut self, id: ConnId, room: &str) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let was_member = member.rooms.remove(room);
        assert!(was_member, "room sets of members and rooms agree");
        let user = member.user.clone();
        if let Some(ids) = self.rooms.get_mut(room) {
            ids.remove(&id);
            if ids.is_empty() {
                self.rooms.remove(room);
            }
        }
        self.notify_presence(room, "leave", id, &user);
    }

    /// Sends a presence notice about `id` to the current members of `room`.
    fn notify_presence(&mut self, room: &str, event: &str, id: ConnId, user: &str) {
        if !self.config.presence_notices {
            return;
        }
        let notice = presence_notice(event, room, id, user);
        self.broadcast(room, &Message::Text(notice), Some(id));
    }
}

/// The text of a presence notice: `{"type":"presence","event":"join","room":"r","id":7,"user":"u"}`.
pub fn presence_notice(event: &str, room: &str, id: ConnId, user: &str) -> String {
    let mut text = String::with_capacity(64 + room.len() + user.len());
    text.push_str("{\"type\":\"presence\",\"event\":");
    push_json_string(&mut text, event);
    text.push_str(",\"room\":");
    push_json_string(&mut text, room);
    text.push_str(&format!(",\"id\":{},\"user\":", id.0));
    push_json_string(&mut text, user);
    text.push('}');
    text
}

/// Appends `value` as a JSON string (RFC 8259 §7). Kept local so the hub does not depend on the
/// JSON layer for one small fixed shape.
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)))
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Room names are short and printable, so they can appear in logs and notices as they are.
fn check_room_name(room: &str) -> Result<(), HubError> {
    if room.is_empty() || room.len() > ROOM_NAME_BYTES_MAX || room.chars().any(char::is_control) {
        return Err(HubError::BadRoomName);
    }
    Ok(())
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
