//! Chat: rooms, presence and history persisted as events, with a small HTML page.
//!
//! `cargo run --release --example chat -- --port 8080 --data data/chat`, then open
//! `http://127.0.0.1:8080/`. Each message is a `Message` record written through the engine
//! (durable before it is broadcast), so a reload, or a restart of the server, shows the history.
//!
//! WebSocket `GET /ws?room=R&user=U`: on open the client gets `{"type":"history",...}` (the
//! last messages of the room) and `{"type":"members",...}`; others in the room get presence
//! notices (`{"type":"presence","event":"join"|"leave",...}`). The client sends
//! `{"type":"say","text":"..."}`; everyone in the room (sender included) gets
//! `{"type":"message","message":{...}}` once it is durable. A joiner misses no message: one
//! stored while it joins comes in the history, as a broadcast, or both (ids tell them apart;
//! a broadcast may even precede the history). `GET /api/messages?room=R` (and
//! `/api/messages/stream`, `/api/messages/live`) are the generated model routes.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lithair::app::schema::{Filter, FilterOp};
use lithair::app::{App, Handle, Model};
use lithair::http::problem::Problem;
use lithair::http::{Request, Response, Router};
use lithair::json::{self, ToJson};
use lithair::prelude::*;
use lithair::ws::{self, Ctx, Endpoint, Message as WsMessage, SharedHub, WsHandler};

/// Messages sent to a joiner as history.
const HISTORY_MESSAGES_MAX: usize = 50;
/// Longest message text, in bytes.
const TEXT_BYTES_MAX: usize = 2000;
/// Longest user name, in bytes.
const USER_BYTES_MAX: usize = 40;
/// Messages waiting to be written before new ones are refused (the sender is told).
const WRITE_QUEUE_MAX: usize = 4096;

/// One chat message, stored as events of the `Message` model.
#[derive(Model, Clone, Debug, PartialEq)]
pub struct Message {
    /// Assigned by the sequencer.
    #[db(primary_key)]
    pub id: u64,
    /// The room.
    #[db(indexed)]
    #[http(validate = "len(1..=40)")]
    pub room: String,
    /// Who sent it.
    #[http(validate = "len(1..=40)")]
    pub user: String,
    /// What they said.
    #[http(validate = "len(1..=2000)")]
    pub text: String,
    /// When the server accepted it (milliseconds since the Unix epoch).
    #[db(default)]
    pub sent_ms: u64,
}

/// The chat app (the test drives the same function).
pub fn app() -> App {
    App::new("chat")
        .model::<Message>()
        .routes(|router: Router, handle: &Handle| chat_routes(router, handle))
}

fn main() -> std::process::ExitCode {
    app().run()
}

/// `GET /` (the page) and `GET /ws` (the chat socket).
pub fn chat_routes(router: Router, handle: &Handle) -> Router {
    let hub = SharedHub::new(ws::HubConfig::default());
    let writer = Arc::new(Writer::start(handle, &hub));
    let handle = handle.clone();
    // The authentication hook names the connection in the hub (presence shows it); a real
    // app would read a session cookie or a token here.
    let endpoint = Endpoint::per_request().hub(Arc::clone(&hub)).authenticate(
        |req: &Request| -> Result<String, Response> {
            let pairs = req.query_pairs().unwrap_or_default();
            let user = pairs.iter().find(|(key, _)| key == "user");
            Ok(user.map_or_else(String::new, |(_, value)| value.trim().to_string()))
        },
    );
    router
        .get("/", |_: &mut Request| {
            Response::static_bytes(200, "text/html; charset=utf-8", PAGE.as_bytes())
        })
        .get("/ws", move |req: &mut Request| {
            chat_socket(&handle, &endpoint, &writer.sender, req)
        })
}

fn chat_socket(
    handle: &Handle,
    endpoint: &Endpoint,
    writes: &SyncSender<Message>,
    req: &mut Request,
) -> Response {
    let pairs = req.query_pairs().unwrap_or_default();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_string())
    };
    let room = get("room").unwrap_or_else(|| "lobby".into());
    let user = get("user").unwrap_or_default();
    let valid =
        |s: &str| !s.is_empty() && s.len() <= USER_BYTES_MAX && !s.contains(char::is_control);
    if !valid(&room) || !valid(&user) {
        let detail = format!("room and user must be 1 to {USER_BYTES_MAX} printable bytes");
        return Problem::bad_request(detail).into_response();
    }
    let (handle, writes) = (handle.clone(), writes.clone());
    endpoint.respond_with(req, move |_, _| {
        Box::new(ChatSession {
            handle,
            writes,
            room,
            user,
        })
    })
}

struct ChatSession {
    handle: Handle,
    writes: SyncSender<Message>,
    room: String,
    user: String,
}

impl WsHandler for ChatSession {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        let Some(hub) = ctx.hub() else {
            let history = history(&self.handle, &self.room);
            let _ = ctx.send(&WsMessage::Text(history));
            return;
        };
        let id = ctx.id();
        // Join first, then read the history: a message stored before the read is in it, one
        // stored after is broadcast to this member. Read first, a message stored and broadcast
        // between the read and the join reached the joiner neither way. A message may now come
        // both ways (stored before the read, broadcast after the join): the page shows each
        // id once. Presence: the hub tells the others; the joiner gets the member list.
        let members = hub.with(|hub| hub.join(id, &self.room));
        let members = match members {
            Ok(members) => members,
            Err(error) => return ctx.close(1008, &error.to_string()),
        };
        let history = history(&self.handle, &self.room);
        let _ = ctx.send(&WsMessage::Text(history));
        let mut w = json::Writer::new();
        w.begin_object();
        w.field("type");
        w.str("members");
        w.field("room");
        w.str(&self.room);
        w.field("users");
        w.begin_array();
        for peer in members {
            w.element();
            w.str(&peer.user);
        }
        w.end_array();
        w.end_object();
        let _ = ctx.send(&WsMessage::Text(w.finish().unwrap_or_default()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: WsMessage) {
        let WsMessage::Text(text) = message else {
            return ctx.close(1003, "text messages only");
        };
        let said = json::parse(&text)
            .ok()
            .filter(|value| value["type"].as_str() == Some("say"))
            .and_then(|value| value["text"].as_str().map(str::to_string));
        let Some(said) = said.filter(|t| !t.trim().is_empty() && t.len() <= TEXT_BYTES_MAX) else {
            return reply_error(
                ctx,
                "expected {\"type\":\"say\",\"text\":\"1 to 2000 bytes\"}",
            );
        };
        let message = Message {
            id: 0,
            room: self.room.clone(),
            user: self.user.clone(),
            text: said,
            sent_ms: now_ms(),
        };
        match self.writes.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => reply_error(ctx, "the server is busy; try again"),
            Err(TrySendError::Disconnected(_)) => ctx.close(1011, "chat writer stopped"),
        }
    }
}

fn reply_error(ctx: &mut Ctx<'_>, text: &str) {
    let mut w = json::Writer::new();
    w.begin_object();
    w.field("type");
    w.str("error");
    w.field("error");
    w.str(text);
    w.end_object();
    let _ = ctx.send(&WsMessage::Text(w.finish().unwrap_or_default()));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"type":"history","room":..,"messages":[...]}`: the room's last messages, oldest first.
fn history(handle: &Handle, room: &str) -> String {
    // An equality filter built directly: the query syntax would read a room named `~a`,
    // `>m` or `!lobby` as an operator and hand a joiner the history of other rooms.
    let Some(field) = Message::FIELDS.iter().position(|f| f.name == "room") else {
        unreachable!("`Message` has a `room` field")
    };
    let filter = Filter {
        field,
        op: FilterOp::Eq,
        operand: room.to_string(),
    };
    let mut messages: Vec<Message> = handle.read(|state| {
        let mut selected = state
            .collection::<Message>()
            .select(std::slice::from_ref(&filter));
        let skip = selected.len().saturating_sub(HISTORY_MESSAGES_MAX);
        selected.drain(..skip);
        selected.into_iter().map(|r| r.value.clone()).collect()
    });
    messages.sort_by_key(|m| m.id);
    let mut w = json::Writer::new();
    w.begin_object();
    w.field("type");
    w.str("history");
    w.field("room");
    w.str(room);
    w.field("messages");
    messages.write_json(&mut w);
    w.end_object();
    w.finish().unwrap_or_default()
}

/// The writer thread and its queue. Dropped with the routes (when the server stops): closes
/// the queue and waits for the thread, so nothing holds the engine afterwards.
struct Writer {
    sender: SyncSender<Message>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(handle: &Handle, hub: &Arc<SharedHub>) -> Writer {
        let (sender, queue) = mpsc::sync_channel(WRITE_QUEUE_MAX);
        let (handle, hub) = (handle.clone(), Arc::clone(hub));
        // The writer waits for each commit, which a reactor thread must never do.
        let thread = std::thread::Builder::new()
            .name("chat-writer".into())
            .spawn(move || write_messages(&handle, &hub, &queue))
            .expect("spawn the chat writer");
        Writer {
            sender,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Sessions (holding sender clones) are gone once the server stopped; replacing ours
        // closes the channel, so the thread's `recv` fails and it returns.
        let (closed, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.sender, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes each message durably, then broadcasts it to its room.
fn write_messages(handle: &Handle, hub: &SharedHub, queue: &Receiver<Message>) {
    while let Ok(message) = queue.recv() {
        let stored = match handle.create(message) {
            Ok(stored) => stored,
            Err(error) => {
                eprintln!("chat: a message was not stored: {error}");
                continue;
            }
        };
        let mut w = json::Writer::new();
        w.begin_object();
        w.field("type");
        w.str("message");
        w.field("message");
        stored.write_json(&mut w);
        w.end_object();
        let text = w.finish().unwrap_or_default();
        hub.with(|hub| hub.broadcast(&stored.room, &WsMessage::Text(text), None));
    }
}

/// The page: join a room under a name, see history and presence, talk.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lithair chat</title>
<style>
body{font:15px system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
#log{border:1px solid #ccc;height:24rem;overflow-y:auto;padding:.5rem;white-space:pre-wrap}
.sys{color:#777}.me{color:#064}#members{color:#555;font-size:13px}
form{display:flex;gap:.5rem;margin-top:.5rem}input[name=text]{flex:1}
</style></head><body>
<h1>Lithair chat</h1>
<form id="join"><input name="user" placeholder="your name" required maxlength="40">
<input name="room" value="lobby" required maxlength="40"><button>Join</button></form>
<p id="members"></p><div id="log"></div>
<form id="say"><input name="text" autocomplete="off" maxlength="2000" disabled><button disabled>Send</button></form>
<script>
"use strict";
const log = document.getElementById("log"), members = document.getElementById("members");
const say = document.getElementById("say");
let socket = null, me = "", users = [];
// A message may arrive both in the history and as a broadcast, or as a broadcast before the
// history: each id is shown once, the early ones after the history.
let seen = new Set(), early = [], joined = false;
function line(text, cls) {
  const div = document.createElement("div");
  div.textContent = text; if (cls) div.className = cls;
  log.appendChild(div); log.scrollTop = log.scrollHeight;
}
function show(m) {
  if (seen.has(m.id)) return;
  seen.add(m.id);
  const t = new Date(m.sent_ms).toLocaleTimeString();
  line(t + "  " + m.user + ": " + m.text, m.user === me ? "me" : "");
}
function showMembers() { members.textContent = "In the room: " + users.join(", "); }
document.getElementById("join").onsubmit = (e) => {
  e.preventDefault();
  const f = new FormData(e.target); me = f.get("user");
  if (socket) socket.close();
  log.textContent = ""; seen = new Set(); early = []; joined = false;
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("room", f.get("room")); url.searchParams.set("user", me);
  socket = new WebSocket(url);
  socket.onopen = () => { for (const el of say.elements) el.disabled = false; say.text.focus(); };
  socket.onclose = (ev) => { line("disconnected (" + ev.code + ")", "sys");
    for (const el of say.elements) el.disabled = true; };
  socket.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "history") {
      msg.messages.forEach(show); line("— joined " + msg.room + " —", "sys");
      joined = true; early.forEach(show); early = [];
    }
    else if (msg.type === "members") { users = msg.users; showMembers(); }
    else if (msg.type === "presence") {
      if (msg.event === "join") users.push(msg.user);
      else { const i = users.indexOf(msg.user); if (i >= 0) users.splice(i, 1); }
      showMembers(); line(msg.user + (msg.event === "join" ? " joined" : " left"), "sys");
    }
    else if (msg.type === "message") { if (joined) show(msg.message); else early.push(msg.message); }
    else if (msg.type === "error") line("error: " + msg.error, "sys");
  };
};
say.onsubmit = (e) => {
  e.preventDefault();
  const text = say.text.value.trim();
  if (text && socket) socket.send(JSON.stringify({type: "say", text}));
  say.text.value = "";
};
</script></body></html>
"#;
