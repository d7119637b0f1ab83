//! The TCP transport between Raft peers: a listener on the peer port that authenticates each
//! dialer and hands its messages to the node, and one writer thread per peer with a bounded
//! queue, so a slow or dead peer never blocks the leader. While a writer sleeps with nothing
//! queued, the sender writes to its socket itself with a send that cannot block (see
//! `PeerQueue`), leaving only what does not fit to the writer.
//!
//! Owns: sockets, the handshake's I/O, reconnection with backoff, per-peer queues, and the
//! table of peers' HTTP addresses learned in handshakes.
//! Must not: interpret Raft messages (the node does) or block the caller of `send`.
//!
//! Each connection carries messages in one direction only (dialer to listener): a node dials
//! every peer to send, and receives on the connections peers dialed to it. Raft tolerates loss,
//! so a full queue or a broken connection drops messages instead of waiting.
//!
//! When the last connection a peer dialed to us ends with end-of-file or a reset (its process
//! died: the kernel closed its sockets), the transport reports it ([`Lost`]) so the node can
//! react before an election timeout passes.

use super::types::{Message, NodeId};
use super::wire::{
    self, FrameKind, Hello, Side, Welcome, FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX, NONCE_BYTES,
    PROTOCOL_VERSION,
};
use crate::crypto::random;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// First reconnection delay, in milliseconds (doubled up to the maximum).
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 20;
/// Longest reconnection delay, in milliseconds.
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 1000;
/// Time allowed for connecting, and for the whole handshake once connected, in milliseconds.
/// One deadline for the handshake, not a timeout per read: a dialer that sends a byte now
/// and then would otherwise hold a handshake slot (of `HANDSHAKES_PENDING_MAX`) for as long
/// as it likes without ever authenticating.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2000;
/// Time a write to a peer may block before the connection is dropped, in milliseconds.
pub const WRITE_TIMEOUT_MS: u64 = 5000;
/// Authenticated inbound peer connections served at once.
pub const INBOUND_CONNECTIONS_MAX: usize = 64;
/// Inbound connections still in their handshake at once. A new one past it closes the oldest
/// of them that has not sent a valid `Hello` (else the oldest): a dialer flooding the port
/// with connections that never authenticate can hold at most this many, never an
/// authenticated peer's slot, and a real peer, which sends its `Hello` at once, is pushed out
/// during the rest of its handshake only by a flood that says hello too.
pub const HANDSHAKES_PENDING_MAX: usize = 16;
/// Length of the peer listener's accept queue (the kernel caps it at `somaxconn`).
pub const PEER_LISTEN_BACKLOG: i32 = 1024;
/// How often blocked threads check for shutdown, in milliseconds.
const STOP_POLL_MS: u64 = 100;

/// What a node's transport needs to know.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id.
    pub id: NodeId,
    /// Address to listen on for peers.
    pub listen: SocketAddr,
    /// Where to reach each peer (this node excluded).
    pub peers: Vec<(NodeId, String)>,
    /// The shared cluster secret.
    pub secret: Vec<u8>,
    /// This node's HTTP address, announced to peers.
    pub http_addr: String,
    /// This node's peer address as peers dial it (reported in the peer table).
    pub peer_addr: String,
}

/// Receives every authenticated message (called from the reader threads).
pub type Deliver = Arc<dyn Fn(Message) + Send + Sync>;

/// Told the id of a peer whose last inbound connection broke (end of file or reset, not our
/// own shutdown), called from a reader thread. A hint, not a verdict: the peer may re-dial.
pub type Lost = Arc<dyn Fn(NodeId) + Send + Sync>;

/// The running transport. Dropping it stops its threads.
pub struct Transport {
    id: NodeId,
    /// Where each peer's writer dials (set with its queue).
    peer_addrs: Mutex<HashMap<NodeId, String>>,
    http_addrs: Arc<Mutex<HashMap<NodeId, String>>>,
    stop: Arc<AtomicBool>,
    shared: Arc<Endpoint>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// The address the peer listener is bound to (the real port when configured with 0).
    listen_addr: SocketAddr,
}

/// What every transport thread shares.
struct Endpoint {
    id: NodeId,
    secret: Vec<u8>,
    http_addr: String,
    /// Authenticated inbound connections open per peer: each one's number and a handle to
    /// shut it down when a newer one of the same peer supersedes it (see [`open_inbound`]).
    inbound: Mutex<HashMap<NodeId, Vec<(u64, TcpStream)>>>,
    lost: Lost,
    /// Each peer's outgoing queue (its writer's work and wake-ups).
    queues: Mutex<HashMap<NodeId, Arc<PeerQueue>>>,
}

impl Transport {
    /// Binds the peer port and starts the listener and one writer per peer. Messages go to
    /// `deliver`; peers whose connections to us broke, to `lost`.
    ///
    /// # Errors
    /// The bind error, or an empty secret (replication is never unauthenticated).
    pub fn start(config: TransportConfig, deliver: Deliver, lost: Lost) -> io::Result<Transport> {
        if config.secret.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster secret is required (--cluster-secret or LITHAIR_CLUSTER_SECRET)",
            ));
        }
        let listener = TcpListener::bind(config.listen)?;
        // std's small accept queue, filled by a burst of connections (a flood, or many
        // peers redialing at once), drops a real peer's SYN: its dial then waits out a
        // retransmission, a second or more.
        crate::sys::socket::set_listen_backlog(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            PEER_LISTEN_BACKLOG,
        )?;
        let listen_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let http_addrs = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::new(Endpoint {
            id: config.id,
            secret: config.secret,
            http_addr: config.http_addr,
            inbound: Mutex::new(HashMap::new()),
            lost,
            queues: Mutex::new(HashMap::new()),
        });
        let accept = {
            let (shared, stop, addrs) = (shared.clone(), stop.clone(), http_addrs.clone());
            thread::Builder::new()
                .name("lithair-raft-accept".into())
                .spawn(move || accept_loop(&listener, &shared, &stop, &addrs, &deliver))?
        };
        let transport = Transport {
            id: config.id,
            peer_addrs: Mutex::new(HashMap::from([(config.id, config.peer_addr)])),
            http_addrs,
            stop,
            shared,
            threads: Mutex::new(vec![accept]),
            listen_addr,
        };
        for (peer, addr) in config.peers {
            transport.add_peer(peer, addr)?;
        }
        Ok(transport)
    }

    /// The address the peer listener is bound to: the OS-chosen port when started on port 0.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Starts a writer toward `peer` at `addr` (no-op if one exists or `peer` is this node).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn add_peer(&self, peer: NodeId, addr: String) -> io::Result<()> {
        let mut queues = self
            .shared
            .queues
            .lock()
            .expect("transport queues poisoned");
        if peer == self.id || queues.contains_key(&peer) {
            return Ok(());
        }
        let queue = Arc::new(PeerQueue::default());
        queue.lock().addr = addr.clone();
        self.peer_addrs
            .lock()
            .expect("peer address table poisoned")
            .insert(peer, addr.clone());
        let (shared, stop, addrs, receiver) = (
            self.shared.clone(),
            self.stop.clone(),
            self.http_addrs.clone(),
            Arc::clone(&queue),
        );
        let handle = thread::Builder::new()
            .name(format!("lithair-raft-peer-{peer}"))
            .spawn(move || {
                let writer = PeerWriter {
                    peer,
                    shared,
                    stop,
                    http_addrs: addrs,
                };
                writer.run(&receiver);
            })?;
        queues.insert(peer, queue);
        self.threads
            .lock()
            .expect("transport threads poisoned")
            .push(handle);
        Ok(())
    }

    /// Queues `message` for its destination; drops it if the peer's queue is full or unknown.
    pub fn send(&self, message: Message) {
        self.send_all(std::iter::once(message));
    }

    /// Queues `messages` for their destinations in order (dropping those whose peer's queue
    /// is full or unknown), waking each peer's writer at most once: the Raft thread hands over
    /// everything a pass produced in one call, and each writer sends it with one `write`.
    pub fn send_all(&self, messages: impl IntoIterator<Item = Message>) {
        let messages = messages.into_iter();
        let queues = self
            .shared
            .queues
            .lock()
            .expect("transport queues poisoned");
        // The whole pass's count split over the peers: most passes address each peer alike.
        let per_peer = messages.size_hint().0.div_ceil(queues.len().max(1));
        // Few peers: a linear scan beats hashing per message.
        let mut touched: Vec<(NodeId, Arc<PeerQueue>, Vec<Message>)> =
            Vec::with_capacity(queues.len());
        for message in messages {
            let to = message.to;
            if let Some(at) = touched.iter().position(|(peer, _, _)| *peer == to) {
                touched[at].2.push(message);
            } else if let Some(queue) = queues.get(&to) {
                let mut batch = Vec::with_capacity(per_peer);
                batch.push(message);
                touched.push((to, Arc::clone(queue), batch));
            }
        }
        // A push may encode and send(2) directly: not under the table's lock, which the log
        // writer's fsync completion (held messages) and peer changes also take.
        drop(queues);
        for (_, queue, batch) in touched {
            queue.push(batch);
        }
    }

    /// Dials `peer` at `addr` from now on (adds it when unknown). A node id keeps its address
    /// while it is a member; this is for an id that left the cluster and joins again from
    /// another address.
    ///
    /// # Errors
    /// The transport could not start a writer thread for a new peer.
    pub fn set_peer_addr(&self, peer: NodeId, addr: String) -> io::Result<()> {
        if peer == self.id {
            return Ok(());
        }
        let queue = self
            .shared
            .queues
            .lock()
            .expect("transport queues poisoned")
            .get(&peer)
            .cloned();
        let Some(queue) = queue else {
            return self.add_peer(peer, addr);
        };
        self.peer_addrs
            .lock()
            .expect("peer address table poisoned")
            .insert(peer, addr.clone());
        queue.readdress(addr);
        Ok(())
    }

    /// Stops sending to `peer` and forgets its addresses: a member removed from the cluster.
    /// Its writer ends on its next turn; messages still addressed to it are dropped, as for
    /// any unknown peer.
    pub fn remove_peer(&self, peer: NodeId) {
        let queue = self
            .shared
            .queues
            .lock()
            .expect("transport queues poisoned")
            .remove(&peer);
        if let Some(queue) = queue {
            queue.close();
        }
        if peer != self.id {
            self.peer_addrs
                .lock()
                .expect("peer address table poisoned")
                .remove(&peer);
        }
        self.http_addrs
            .lock()
            .expect("http address table poisoned")
            .remove(&peer);
    }

    /// The address this transport dials to reach `peer`, if it is a known peer.
    pub fn peer_addr(&self, peer: NodeId) -> Option<String> {
        self.peer_addrs
            .lock()
            .expect("peer address table poisoned")
            .get(&peer)
            .cloned()
    }

    /// Every known peer and the address this transport dials for it, sorted by id.
    pub fn peer_addrs(&self) -> Vec<(NodeId, String)> {
        let table = self.peer_addrs.lock().expect("peer address table poisoned");
        let mut peers: Vec<(NodeId, String)> =
            table.iter().map(|(id, addr)| (*id, addr.clone())).collect();
        peers.sort();
        peers
    }

    /// The HTTP address `peer` announced in a handshake, if any yet.
    pub fn http_addr(&self, peer: NodeId) -> Option<String> {
        if peer == self.id {
            return Some(self.shared.http_addr.clone());
        }
        self.http_addrs
            .lock()
            .expect("http address table poisoned")
            .get(&peer)
            .cloned()
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let queues = std::mem::take(
            &mut *self
                .shared
                .queues
                .lock()
                .expect("transport queues poisoned"),
        );
        for queue in queues.values() {
            queue.close();
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads poisoned"));
        for handle in threads {
            let _ = handle.join();
        }
    }
}

/// One peer's outgoing messages: the Raft thread appends whole batches, the peer's writer
/// takes everything queued at once. INVARIANT: `messages` holds at most
/// `PEER_QUEUE_MESSAGES_MAX` messages (more are dropped: Raft tolerates loss, and a slow peer
/// must never block the leader).
///
/// When the writer sleeps with nothing queued, the pusher writes the batch to the socket
/// itself, without blocking (see [`PeerQueue::push`]): a message then leaves without waking
/// the writer thread (one system call instead of a wake-up, a context switch and the
/// writer's own calls), which is the common case below saturation and the whole path of a
/// lone client's write. Only what does not fit in the socket buffer is left to the writer.
#[derive(Default)]
struct PeerQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    messages: Vec<Message>,
    /// The writer sleeps on `ready`: the next push must wake it (and only then: a wake-up is
    /// a system call, and a busy writer takes the queue on its next turn anyway).
    idle: bool,
    /// The transport is gone: the writer ends.
    closed: bool,
    /// The writer's authenticated connection, while it has one.
    stream: Option<Arc<TcpStream>>,
    /// Encoded bytes a direct send could not fit in the socket buffer (the tail of a frame
    /// included): the writer sends them before anything queued after them.
    unsent: Vec<u8>,
    /// A direct send failed: the writer must drop the connection and dial again.
    broken: bool,
    /// The peer dialed us anew: it may have restarted. A writer waiting out a backoff dials
    /// at once; a connected one first checks that its connection still leads somewhere.
    nudged: bool,
    /// Buffer the direct sends encode into (kept for its capacity).
    scratch: Vec<u8>,
    /// Where the writer dials: read at each dial, so a new address (a removed member that
    /// rejoined from another place) takes effect at the next connection.
    addr: String,
}

/// What a writer found in its queue.
enum Taken {
    /// Bytes and messages to send (the writer's buffers now hold them, bytes first).
    Messages,
    /// Nothing within the wait.
    Nothing,
    /// A direct send broke the connection: dial again.
    Broken,
    /// The transport is gone.
    Closed,
}

impl PeerQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every critical section is a push, a swap or a flag: a poisoned lock holds whole data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `batch` at once if the writer sleeps with nothing queued (see [`PeerQueue`]);
    /// otherwise appends it (dropping what does not fit) and wakes the writer if it sleeps.
    fn push(&self, mut batch: Vec<Message>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        // Not while a nudge is pending: the connection may lead to a process that is gone
        // (see `nudge`), and bytes written into it would be lost; the writer checks first.
        if state.idle
            && state.messages.is_empty()
            && state.unsent.is_empty()
            && !state.broken
            && !state.nudged
        {
            if let Some(stream) = state.stream.clone() {
                Self::send_direct(&mut state, &stream, &batch);
                let wake = state.broken || !state.unsent.is_empty();
                drop(state);
                if wake {
                    self.ready.notify_one();
                }
                return;
            }
        }
        let room = PEER_QUEUE_MESSAGES_MAX.saturating_sub(state.messages.len());
        batch.truncate(room);
        state.messages.append(&mut batch);
        assert!(state.messages.len() <= PEER_QUEUE_MESSAGES_MAX);
        let wake = state.idle && !state.messages.is_empty();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// The direct path of [`PeerQueue::push`], under the queue lock while the writer sleeps
    /// (so nothing it writes can interleave): encodes `batch` and sends what fits now. The
    /// rest waits in `unsent` for the writer; a failed send marks the connection broken
    /// (the batch is lost, as it would be in a connection that breaks after a write).
    fn send_direct(state: &mut QueueState, stream: &TcpStream, batch: &[Message]) {
        use std::os::fd::AsRawFd;
        let mut out = std::mem::take(&mut state.scratch);
        out.clear();
        for message in batch {
            wire::encode_message(&mut out, message);
        }
        match crate::sys::socket::send_nonblocking(stream.as_raw_fd(), &out) {
            Ok(sent) if sent == out.len() => {}
            Ok(sent) => state.unsent.extend_from_slice(&out[sent..]),
            Err(_) => state.broken = true,
        }
        state.scratch = out;
    }

    /// Waits up to `wait` for work and moves all of it into `bytes` (what a direct send left
    /// over) and `into` (messages), both emptied first.
    fn take(&self, bytes: &mut Vec<u8>, into: &mut Vec<Message>, wait: Duration) -> Taken {
        into.clear();
        bytes.clear();
        let mut state = self.lock();
        let waiting = |state: &QueueState| {
            state.messages.is_empty()
                && state.unsent.is_empty()
                && !state.closed
                && !state.broken
                && !state.nudged
        };
        if waiting(&state) {
            state.idle = true;
            state = self
                .ready
                .wait_timeout_while(state, wait, |state| waiting(state))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            state.idle = false;
        }
        // A nudge while connected asks for the liveness check that `Nothing` leads to.
        let nudged = std::mem::take(&mut state.nudged);
        if state.closed {
            return Taken::Closed;
        }
        if state.broken {
            return Taken::Broken;
        }
        std::mem::swap(&mut state.messages, into);
        std::mem::swap(&mut state.unsent, bytes);
        if nudged || (into.is_empty() && bytes.is_empty()) {
            // Nudged with work queued too: the check comes first, the work stays queued.
            if nudged {
                std::mem::swap(&mut state.messages, into);
                std::mem::swap(&mut state.unsent, bytes);
            }
            Taken::Nothing
        } else {
            Taken::Messages
        }
    }

    /// Lends the writer's new connection to direct sends.
    fn attach(&self, stream: &Arc<TcpStream>) {
        let mut state = self.lock();
        assert!(state.stream.is_none(), "a peer queue serves one connection");
        state.stream = Some(Arc::clone(stream));
        state.unsent.clear();
        state.broken = false;
    }

    /// Takes the connection back from direct sends (it is being dropped); what they left
    /// unsent belonged to it and is dropped too.
    fn detach(&self) {
        let mut state = self.lock();
        state.stream = None;
        state.unsent.clear();
        state.broken = false;
    }

    /// Forgets everything queued (stale once the peer was unreachable).
    fn clear(&self) {
        self.lock().messages.clear();
    }

    /// The writer's wait between failed dials: `backoff`, cut short by [`PeerQueue::nudge`]
    /// (also one that came during the failed dial) or a close. True when nudged.
    fn back_off(&self, backoff: Duration) -> bool {
        let mut state = self.lock();
        state = self
            .ready
            .wait_timeout_while(state, backoff, |state| !state.nudged && !state.closed)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        std::mem::take(&mut state.nudged)
    }

    /// The peer just dialed us, so it is up, and perhaps a new process: ends the writer's
    /// [`PeerQueue::back_off`] early, or has a connected writer check (before anything more
    /// is written into it) that its connection did not lead to the process that is gone.
    fn nudge(&self) {
        self.lock().nudged = true;
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Dials `addr` from now on: a connection to the old address is dropped (as after a
    /// failed send) and a backoff ends, so the writer dials the new one at once.
    fn readdress(&self, addr: String) {
        let mut state = self.lock();
        state.addr = addr;
        if state.stream.is_some() {
            state.broken = true;
        }
        state.nudged = true;
        drop(state);
        self.ready.notify_one();
    }
}

fn fresh_nonce() -> io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    random::fill_bytes(&mut nonce)?;
    Ok(nonce)
}

fn protocol_error(error: wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// Reads one frame of at most `max` bytes into `buf` (which may hold leftovers) and returns
/// its kind and body, leaving later bytes in `buf`; `TimedOut` once `deadline` passes
/// (however the bytes trickle in).
fn read_frame(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<(FrameKind, Vec<u8>)> {
    // Handshake frames only (small): a small stack chunk.
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = wire::parse_frame(buf, max).map_err(protocol_error)? {
            let out = (frame.kind, frame.body.to_vec());
            let consumed = frame.consumed;
            buf.drain(..consumed);
            return Ok(out);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopping"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer handshake took too long",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Inbound connections in their handshake, oldest first, with a handle to close each and
/// whether its dialer sent a valid `Hello` yet.
#[derive(Default)]
struct Pending {
    next_id: u64,
    queue: VecDeque<(u64, TcpStream, bool)>,
}

impl Pending {
    /// Registers a connection starting its handshake, closing one pending connection first
    /// if [`HANDSHAKES_PENDING_MAX`] are pending: the oldest that has not sent a valid `Hello`,
    /// else the oldest. A real peer sends its `Hello` at once, so a flood of connections
    /// that send nothing cannot push it out during the rest of its handshake. `None` if the
    /// socket cannot be cloned.
    fn admit(&mut self, stream: &TcpStream) -> Option<u64> {
        let handle = stream.try_clone().ok()?;
        while self.queue.len() >= HANDSHAKES_PENDING_MAX {
            let silent = self.queue.iter().position(|(_, _, hello)| !hello);
            if let Some((_, evicted, _)) = self.queue.remove(silent.unwrap_or(0)) {
                // Its reader sees the end of the stream and gives up its handshake.
                let _ = evicted.shutdown(std::net::Shutdown::Both);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, handle, false));
        assert!(self.queue.len() <= HANDSHAKES_PENDING_MAX);
        Some(id)
    }

    /// Connection `id` sent a valid `Hello`: evicted only after every silent one.
    fn hello_received(&mut self, id: u64) {
        if let Some(entry) = self.queue.iter_mut().find(|(pending, _, _)| *pending == id) {
            entry.2 = true;
        }
    }

    /// The handshake of `id` ended (either way); false if it had been closed meanwhile.
    fn leave(&mut self, id: u64) -> bool {
        let position = self.queue.iter().position(|(pending, _, _)| *pending == id);
        position.map(|at| self.queue.remove(at)).is_some()
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Endpoint>,
    stop: &Arc<AtomicBool>,
    http_addrs: &Arc<Mutex<HashMap<NodeId, String>>>,
    deliver: &Deliver,
) {
    let admission = Arc::new(Admission::default());
    let mut readers: Vec<thread::JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let Some(id) = admission
                    .pending
                    .lock()
                    .expect("pending handshakes poisoned")
                    .admit(&stream)
                else {
                    continue; // Dropping the stream closes it.
                };
                let (shared, stop, addrs, deliver, admitted) = (
                    shared.clone(),
                    stop.clone(),
                    http_addrs.clone(),
                    deliver.clone(),
                    admission.clone(),
                );
                let spawned = thread::Builder::new()
                    .name("lithair-raft-reader".into())
                    .spawn(move || {
                        let hello = || {
                            admitted
                                .pending
                                .lock()
                                .expect("pending handshakes poisoned")
                                .hello_received(id);
                        };
                        let ended = |ok| admitted.after_handshake(id, ok);
                        let _ =
                            serve_inbound(stream, &shared, &stop, &addrs, &deliver, hello, ended);
                    });
                match spawned {
                    Ok(handle) => readers.push(handle),
                    Err(_) => {
                        admission.after_handshake(id, false);
                    }
                }
                readers.retain(|handle| !handle.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    for handle in readers {
        let _ = handle.join();
    }
}

/// Who may take an inbound connection's thread: at most [`HANDSHAKES_PENDING_MAX`]
/// connections in their handshake and [`INBOUND_CONNECTIONS_MAX`] authenticated ones.
#[derive(Default)]
struct Admission {
    pending: Mutex<Pending>,
    authenticated: AtomicUsize,
}

impl Admission {
    /// Ends the handshake of connection `id`; with `ok` (it authenticated), takes an
    /// authenticated slot and returns a guard that gives it back, or `None` when none is
    /// free or the connection had been closed as the oldest pending one.
    fn after_handshake(self: &Arc<Self>, id: u64, ok: bool) -> Option<AuthenticatedSlot> {
        let still_open = self
            .pending
            .lock()
            .expect("pending handshakes poisoned")
            .leave(id);
        if !(ok && still_open) {
            return None;
        }
        let taken = self.authenticated.fetch_add(1, Ordering::SeqCst);
        let slot = AuthenticatedSlot(Arc::clone(self));
        (taken < INBOUND_CONNECTIONS_MAX).then_some(slot)
    }
}

/// An authenticated connection's slot, given back on drop.
struct AuthenticatedSlot(Arc<Admission>);

impl Drop for AuthenticatedSlot {
    fn drop(&mut self) {
        let before = self.0.authenticated.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "an authenticated slot given back twice");
    }
}

/// Listener side: authenticate the dialer, then deliver its messages until the connection ends.
/// `hello_accepted` is called once the dialer's `Hello` passed its checks; `handshake_ended`
/// is told whether the handshake succeeded and returns the connection's authenticated slot
/// (`None`: no slot, the connection closes).
fn serve_inbound<Slot>(
    mut stream: TcpStream,
    shared: &Endpoint,
    stop: &AtomicBool,
    http_addrs: &Mutex<HashMap<NodeId, String>>,
    deliver: &Deliver,
    hello_accepted: impl FnOnce(),
    handshake_ended: impl FnOnce(bool) -> Option<Slot>,
) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let mut buf = Vec::new();
    let handshake = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| {
            accept_handshake(
                &mut stream,
                &mut buf,
                shared,
                stop,
                deadline,
                hello_accepted,
            )
        });
    let slot = handshake_ended(handshake.is_ok());
    let hello = handshake?;
    let Some(_slot) = slot else {
        return Err(io::Error::other(
            "no inbound slot: too many peer connections, or closed during its handshake",
        ));
    };
    http_addrs
        .lock()
        .expect("http address table poisoned")
        .insert(hello.from, hello.http_addr.clone());
    let peer = hello.from;
    let number = open_inbound(shared, peer, &stream)?;
    // The peer just dialed us, so it is up, perhaps restarted. Our writer toward it dials now
    // if it waits out a backoff (from while the peer was down), or checks its connection if it
    // has one (it may lead to the old process). Otherwise what this node sends meanwhile, a
    // vote the new process asked for say, would wait up to RECONNECT_BACKOFF_MS_MAX or be
    // written into a dead socket and lost.
    let queue = shared
        .queues
        .lock()
        .expect("transport queues poisoned")
        .get(&peer)
        .cloned();
    if let Some(queue) = queue {
        queue.nudge();
    }
    let ended = read_messages(&mut stream, &buf, shared, stop, &hello, deliver);
    let remaining = close_inbound(shared, peer, number);
    // End of file or a reset: the peer's process closed the connection (or died). Not a
    // protocol error, a timeout or our own shutdown; and not while another connection from
    // the same peer (a re-dial) is open.
    let broke = matches!(
        ended.as_ref().map_err(io::Error::kind),
        Err(io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted)
    );
    if remaining == 0 && broke && !stop.load(Ordering::Relaxed) {
        (shared.lost)(peer);
    }
    ended
}

/// Numbers the authenticated inbound connections (see [`open_inbound`]).
static INBOUND_NUMBERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records `stream`, a new authenticated connection of `peer`, and shuts down the older ones
/// of that peer; returns its number for [`close_inbound`]. A peer's writer keeps one
/// connection toward us at a time and dials anew only once it gave the last one up, so an
/// older connection is one it abandoned. Most are closed by the peer's kernel, but not when
/// its host vanished (power loss, a partition outlasting the close): without this, such a
/// connection would hold its authenticated slot for good, and once they took all
/// [`INBOUND_CONNECTIONS_MAX`] no peer could reach this node again. The readers of the shut
/// connections see their end and give their slots back; no loss is reported for them, since
/// the new connection stays open.
///
/// # Errors
/// The handle could not be made (the connection then closes).
fn open_inbound(shared: &Endpoint, peer: NodeId, stream: &TcpStream) -> io::Result<u64> {
    let handle = stream.try_clone()?;
    let number = INBOUND_NUMBERS.fetch_add(1, Ordering::SeqCst);
    let mut table = shared.inbound.lock().expect("inbound table poisoned");
    let open = table.entry(peer).or_default();
    for (_, older) in open.iter() {
        // Already closed by its peer, perhaps: nothing more to do then.
        let _ = older.shutdown(std::net::Shutdown::Both);
    }
    open.push((number, handle));
    Ok(number)
}

/// Forgets connection `number` of `peer` (its reader ended); returns how many of that
/// peer's remain open.
fn close_inbound(shared: &Endpoint, peer: NodeId, number: u64) -> usize {
    let mut table = shared.inbound.lock().expect("inbound table poisoned");
    let open = table.entry(peer).or_default();
    let before = open.len();
    open.retain(|(n, _)| *n != number);
    assert_eq!(
        open.len() + 1,
        before,
        "inbound connection {number} of {peer} closed twice"
    );
    let remaining = open.len();
    if remaining == 0 {
        table.remove(&peer);
    }
    remaining
}

/// Bytes a peer reader asks the socket for at once (many frames per `read` under load).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Delivers the authenticated peer's messages until the connection ends (the error says how).
/// `leftover` holds what the handshake read past its last frame. Frames are decoded in place
/// from one buffer that is zeroed once per connection, not per frame.
fn read_messages(
    stream: &mut TcpStream,
    leftover: &[u8],
    shared: &Endpoint,
    stop: &AtomicBool,
    hello: &Hello,
    deliver: &Deliver,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(STOP_POLL_MS)))?;
    let mut buf = vec![0u8; READ_CHUNK_BYTES.max(leftover.len())];
    buf[..leftover.len()].copy_from_slice(leftover);
    // INVARIANT: start <= filled <= buf.len(); buf[start..filled] is unparsed input.
    let (mut start, mut filled) = (0, leftover.len());
    loop {
        while let Some(frame) =
            wire::parse_frame(&buf[start..filled], FRAME_BYTES_MAX).map_err(protocol_error)?
        {
            if frame.kind != FrameKind::Message {
                return Err(protocol_error(wire::WireError::Malformed(
                    "expected message",
                )));
            }
            let message = wire::decode_message(frame.body).map_err(protocol_error)?;
            start += frame.consumed;
            // An authenticated peer may speak only for itself, and only to us.
            if message.from == hello.from && message.to == shared.id {
                deliver(message);
            }
        }
        assert!(start <= filled && filled <= buf.len());
        if start == filled {
            (start, filled) = (0, 0);
        } else if filled == buf.len() {
            // A partial frame at the end: move it to the front, and grow only for a frame
            // larger than the buffer (bounded by FRAME_BYTES_MAX through parse_frame).
            buf.copy_within(start..filled, 0);
            (start, filled) = (0, filled - start);
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopping"));
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Listener side of the handshake: check the `Hello`, answer `Welcome` (or `Reject`), verify
/// the dialer's MAC, all before `deadline`. Returns the authenticated `Hello`.
fn accept_handshake(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Endpoint,
    stop: &AtomicBool,
    deadline: Instant,
    hello_accepted: impl FnOnce(),
) -> io::Result<Hello> {
    let (kind, body) = read_frame(stream, buf, HANDSHAKE_FRAME_BYTES_MAX, stop, deadline)?;
    let hello = match kind {
        FrameKind::Hello => Hello::decode(&body).map_err(protocol_error)?,
        _ => return Err(protocol_error(wire::WireError::Malformed("expected hello"))),
    };
    let refusal = if hello.version != PROTOCOL_VERSION {
        Some(format!(
            "protocol version {PROTOCOL_VERSION} required, dialer speaks {} (upgrade every node)",
            hello.version
        ))
    } else if hello.to != shared.id {
        Some(format!("this is node {}, not {}", shared.id, hello.to))
    } else if hello.from == shared.id || hello.from == super::types::NODE_NONE {
        Some("bad dialer id".to_string())
    } else {
        None
    };
    let mut out = Vec::new();
    if let Some(reason) = refusal {
        wire::encode_reject(&mut out, &reason);
        let _ = stream.write_all(&out);
        return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
    }
    hello_accepted();
    let nonce = fresh_nonce()?;
    let (secret, me) = (&shared.secret, shared.id);
    let mac = wire::handshake_mac(secret, Side::Listener, &hello.nonce, &nonce, hello.from, me);
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        from: me,
        nonce,
        mac,
        http_addr: shared.http_addr.clone(),
    };
    welcome.encode(&mut out);
    stream.write_all(&out)?;
    let (kind, body) = read_frame(stream, buf, HANDSHAKE_FRAME_BYTES_MAX, stop, deadline)?;
    if kind != FrameKind::Auth {
        return Err(protocol_error(wire::WireError::Malformed("expected auth")));
    }
    let received = wire::decode_auth(&body).map_err(protocol_error)?;
    let expected = wire::handshake_mac(secret, Side::Dialer, &hello.nonce, &nonce, hello.from, me);
    wire::verify_mac(&expected, &received).map_err(protocol_error)?;
    Ok(hello)
}

/// One peer's outgoing side: connect, authenticate, write queued messages; on any error drop
/// the connection and reconnect with backoff, discarding what queued meanwhile.
struct PeerWriter {
    peer: NodeId,
    shared: Arc<Endpoint>,
    stop: Arc<AtomicBool>,
    http_addrs: Arc<Mutex<HashMap<NodeId, String>>>,
}

impl PeerWriter {
    fn run(&self, queue: &PeerQueue) {
        let mut backoff_ms = RECONNECT_BACKOFF_MS_MIN;
        // A closed queue: the transport is gone or the peer was removed.
        while !self.stop.load(Ordering::Relaxed) && !queue.is_closed() {
            match self.connect(queue) {
                Ok(stream) => {
                    backoff_ms = RECONNECT_BACKOFF_MS_MIN;
                    if self.pump(stream, queue).is_none() {
                        return; // The transport is gone.
                    }
                }
                Err(_) => {
                    // Messages queued while the peer is unreachable are stale by now.
                    queue.clear();
                    backoff_ms = if queue.back_off(Duration::from_millis(backoff_ms)) {
                        RECONNECT_BACKOFF_MS_MIN
                    } else {
                        (backoff_ms * 2).min(RECONNECT_BACKOFF_MS_MAX)
                    };
                }
            }
        }
    }

    fn connect(&self, queue: &PeerQueue) -> io::Result<TcpStream> {
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let dial = queue.lock().addr.clone();
        let addr = dial
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "peer address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        let deadline = Instant::now() + timeout;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)))?;
        let nonce = fresh_nonce()?;
        let mut out = Vec::new();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            from: self.shared.id,
            to: self.peer,
            nonce,
            http_addr: self.shared.http_addr.clone(),
        };
        hello.encode(&mut out);
        stream.write_all(&out)?;
        let mut buf = Vec::new();
        let (kind, body) = read_frame(
            &mut stream,
            &mut buf,
            HANDSHAKE_FRAME_BYTES_MAX,
            &self.stop,
            deadline,
        )?;
        let welcome = match kind {
            FrameKind::Welcome => Welcome::decode(&body).map_err(protocol_error)?,
            FrameKind::Reject => {
                let reason = wire::decode_reject(&body).map_err(protocol_error)?;
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
            }
            _ => {
                return Err(protocol_error(wire::WireError::Malformed(
                    "expected welcome",
                )))
            }
        };
        if welcome.version != PROTOCOL_VERSION {
            return Err(protocol_error(wire::WireError::Version(welcome.version)));
        }
        let (me, peer, secret) = (self.shared.id, self.peer, &self.shared.secret);
        let expected =
            wire::handshake_mac(secret, Side::Listener, &nonce, &welcome.nonce, me, peer);
        wire::verify_mac(&expected, &welcome.mac).map_err(protocol_error)?;
        let mac = wire::handshake_mac(secret, Side::Dialer, &nonce, &welcome.nonce, me, peer);
        out.clear();
        wire::encode_auth(&mut out, &mac);
        stream.write_all(&out)?;
        self.http_addrs
            .lock()
            .expect("http address table poisoned")
            .insert(peer, welcome.http_addr);
        Ok(stream)
    }

    /// Writes queued messages until an error (`Some`) or until the transport is dropped
    /// (`None`), lending the connection to direct sends meanwhile (see [`PeerQueue`]).
    fn pump(&self, stream: TcpStream, queue: &PeerQueue) -> Option<()> {
        let stream = Arc::new(stream);
        queue.attach(&stream);
        let outcome = self.pump_attached(&stream, queue);
        queue.detach();
        outcome
    }

    /// The loop of [`PeerWriter::pump`]: everything queued at once (after what a direct send
    /// left over), encoded into one buffer, one `write`.
    fn pump_attached(&self, stream: &TcpStream, queue: &PeerQueue) -> Option<()> {
        let mut out = Vec::new();
        let mut batch = Vec::new();
        loop {
            match queue.take(&mut out, &mut batch, Duration::from_millis(STOP_POLL_MS)) {
                Taken::Messages => {}
                Taken::Closed => return None,
                Taken::Broken => return Some(()),
                Taken::Nothing if self.stop.load(Ordering::Relaxed) => return None,
                Taken::Nothing => {
                    // An idle connection to a peer that restarted would swallow the next
                    // message (written into a dead socket); find out now and re-dial.
                    if peer_closed(stream) {
                        return Some(());
                    }
                    continue;
                }
            }
            for message in batch.drain(..) {
                wire::encode_message(&mut out, &message);
            }
            let mut writer = stream;
            if writer.write_all(&out).is_err() {
                return Some(());
            }
        }
    }
}

/// Whether the listener closed `stream`: it never writes after the handshake, so readable
/// means end of file (or an error).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || stream.set_nonblocking(false).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::MessageBody;
    use std::time::Instant;

    /// Port 0: the OS picks a port at bind and `listen_addr` tells it, so tests never race
    /// for a port between picking and binding it.
    fn any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// A message node 1 may send node 2 at any time.
    fn heartbeat_1_to_2() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            },
        }
    }

    /// Starts node 2 listening with `secret_2` (delivering to `deliver_2`, reporting lost
    /// peers to `lost_2`), then node 1 dialing it with `secret_1`; returns (node 1, node 2).
    fn start_pair(
        secret_1: &[u8],
        secret_2: &[u8],
        deliver_2: Deliver,
        lost_2: Lost,
    ) -> (Transport, Transport) {
        let config = |id, peers: Vec<(NodeId, String)>, secret: &[u8]| {
            let listen = any_port();
            TransportConfig {
                id,
                listen,
                peers,
                secret: secret.to_vec(),
                http_addr: format!("127.0.0.1:808{id}"),
                peer_addr: listen.to_string(),
            }
        };
        let node_2 = Transport::start(config(2, vec![], secret_2), deliver_2, lost_2).unwrap();
        let addr_2 = node_2.listen_addr().to_string();
        let node_1 = Transport::start(
            config(1, vec![(2, addr_2)], secret_1),
            Arc::new(|_| {}),
            Arc::new(|_| {}),
        )
        .unwrap();
        (node_1, node_2)
    }

    /// Starts a pair (see `start_pair`); returns what node 2 received after node 1 sent
    /// heartbeats until one arrived or `bound` passed.
    fn exchange(secret_1: &[u8], secret_2: &[u8], bound: Duration) -> Vec<Message> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let deliver_2: Deliver = Arc::new(move |m| sink.lock().unwrap().push(m));
        let (node_1, _node_2) = start_pair(secret_1, secret_2, deliver_2, Arc::new(|_| {}));
        let started = Instant::now();
        while received.lock().unwrap().is_empty() && started.elapsed() < bound {
            node_1.send(heartbeat_1_to_2());
            thread::sleep(Duration::from_millis(20));
        }
        let out = received.lock().unwrap().clone();
        if !out.is_empty() {
            assert_eq!(node_1.http_addr(2).as_deref(), Some("127.0.0.1:8082"));
        }
        out
    }

    #[test]
    fn peers_with_the_secret_exchange_messages() {
        let received = exchange(b"secret", b"secret", Duration::from_secs(30));
        assert!(!received.is_empty(), "no message arrived");
        assert!(received.iter().all(|m| m.from == 1 && m.to == 2));
    }

    #[test]
    fn a_wrong_secret_delivers_nothing() {
        // Long enough for several reconnection attempts; nothing may ever arrive.
        let received = exchange(b"secret", b"other", Duration::from_millis(500));
        assert!(received.is_empty(), "an unauthenticated peer was heard");
    }

    #[test]
    fn a_peer_that_goes_away_is_reported_lost_once_its_last_connection_ends() {
        let (delivered, lost) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (sink, lost_sink) = (Arc::clone(&delivered), Arc::clone(&lost));
        let (node_1, _node_2) = start_pair(
            b"secret",
            b"secret",
            Arc::new(move |_| *sink.lock().unwrap() += 1),
            Arc::new(move |peer| lost_sink.lock().unwrap().push(peer)),
        );
        let started = Instant::now();
        while *delivered.lock().unwrap() == 0 && started.elapsed() < Duration::from_secs(30) {
            node_1.send(heartbeat_1_to_2());
            thread::sleep(Duration::from_millis(20));
        }
        assert!(*delivered.lock().unwrap() > 0, "no message arrived");
        assert!(lost.lock().unwrap().is_empty(), "lost while connected");
        // Node 1 goes away: its connection closes, and node 2 hears of it.
        drop(node_1);
        let started = Instant::now();
        while lost.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*lost.lock().unwrap(), vec![1]);
    }

    /// An `Append` from 1 to 2 carrying one entry of `bytes` bytes, tagged with `index`.
    fn append_1_to_2(index: u64, bytes: usize) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Append {
                prev_index: index - 1,
                prev_term: 1,
                entries: vec![crate::raft::Entry {
                    term: 1,
                    index,
                    kind: crate::raft::EntryKind::Normal,
                    data: vec![(index % 251) as u8; bytes].into(),
                }],
                commit: 0,
            },
        }
    }

    #[test]
    fn batches_arrive_whole_and_in_order_also_frames_larger_than_a_read() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let (node_1, _node_2) = start_pair(
            b"secret",
            b"secret",
            Arc::new(move |m| sink.lock().unwrap().push(m)),
            Arc::new(|_| {}),
        );
        // Wait until the connection is up (messages queued before it are dropped).
        let started = Instant::now();
        while received.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(30) {
            node_1.send(heartbeat_1_to_2());
            thread::sleep(Duration::from_millis(20));
        }
        received.lock().unwrap().clear();
        // Small frames and frames of several read buffers, in one batch and across batches,
        // with a message to an unknown peer mixed in (dropped, the rest unaffected).
        let sizes = [10, 3 * READ_CHUNK_BYTES + 17, 1, READ_CHUNK_BYTES - 3, 200];
        let mut sent = Vec::new();
        for (at, bytes) in sizes.iter().enumerate() {
            sent.push(append_1_to_2(at as u64 + 1, *bytes));
        }
        let mut stray = heartbeat_1_to_2();
        stray.to = 9;
        node_1.send_all(vec![
            sent[0].clone(),
            stray,
            sent[1].clone(),
            sent[2].clone(),
        ]);
        node_1.send_all(sent[3..].to_vec());
        let started = Instant::now();
        while received.lock().unwrap().len() < sent.len()
            && started.elapsed() < Duration::from_secs(30)
        {
            thread::sleep(Duration::from_millis(10));
        }
        let got: Vec<Message> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| matches!(m.body, MessageBody::Append { .. }))
            .cloned()
            .collect();
        assert_eq!(got, sent);
    }

    #[test]
    fn a_peer_queue_drops_past_its_bound_and_hands_over_everything_in_order() {
        let queue = PeerQueue::default();
        let many: Vec<Message> = (1..=PEER_QUEUE_MESSAGES_MAX as u64 + 5)
            .map(|index| append_1_to_2(index, 1))
            .collect();
        queue.push(many[..10].to_vec());
        queue.push(many[10..].to_vec());
        let (mut bytes, mut taken) = (Vec::new(), Vec::new());
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Messages
        ));
        assert_eq!(taken, many[..PEER_QUEUE_MESSAGES_MAX].to_vec());
        assert!(bytes.is_empty());
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::from_millis(1)),
            Taken::Nothing
        ));
        assert!(taken.is_empty());
        queue.push(many[..1].to_vec());
        queue.close();
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Closed
        ));
    }

    /// A connected pair of loopback sockets (sender, receiver).
    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let sender = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (receiver, _) = listener.accept().expect("accept");
        (sender, receiver)
    }

    /// Every message framed in `bytes`, which must hold whole frames only.
    fn frames(bytes: &[u8]) -> Vec<Message> {
        let (mut out, mut rest) = (Vec::new(), bytes);
        while !rest.is_empty() {
            let frame = wire::parse_frame(rest, FRAME_BYTES_MAX)
                .expect("frame")
                .expect("whole frame");
            out.push(wire::decode_message(frame.body).expect("message"));
            rest = &rest[frame.consumed..];
        }
        out
    }

    #[test]
    fn a_sleeping_writer_lets_the_pusher_send_and_later_pushes_queue_behind_leftovers() {
        let (sender, mut receiver) = socket_pair();
        let queue = PeerQueue::default();
        queue.attach(&Arc::new(sender));
        let first = vec![append_1_to_2(1, 8), append_1_to_2(2, 8)];
        // The writer is not asleep: the batch waits in the queue.
        queue.push(first.clone());
        let (mut bytes, mut taken) = (Vec::new(), Vec::new());
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Messages
        ));
        assert_eq!(taken, first);
        // Asleep with nothing queued: the pusher writes the frames itself.
        queue.lock().idle = true;
        let second = vec![append_1_to_2(3, 8)];
        queue.push(second.clone());
        assert!(queue.lock().messages.is_empty());
        let mut got = vec![0u8; 64 * 1024];
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = receiver.read(&mut got).expect("read");
        assert_eq!(frames(&got[..n]), second);
        // Bytes a direct send left over go first; pushes meanwhile queue behind them.
        queue.lock().unsent.extend_from_slice(&got[..n]);
        queue.push(first.clone());
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Messages
        ));
        assert_eq!(frames(&bytes), second);
        assert_eq!(taken, first);
        queue.detach();
        assert!(queue.lock().stream.is_none());
    }

    #[test]
    fn a_direct_send_into_a_closed_connection_sends_the_writer_to_dial_again() {
        let (sender, receiver) = socket_pair();
        let queue = PeerQueue::default();
        queue.attach(&Arc::new(sender));
        drop(receiver);
        let (mut bytes, mut taken) = (Vec::new(), Vec::new());
        // A reset may take a send or two to surface.
        for index in 1..=64 {
            queue.lock().idle = true;
            queue.push(vec![append_1_to_2(index, 8)]);
            queue.lock().idle = false;
            if queue.lock().broken {
                break;
            }
            let _ = queue.take(&mut bytes, &mut taken, Duration::ZERO);
        }
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Broken
        ));
        queue.detach();
        assert!(!queue.lock().broken);
    }

    #[test]
    fn a_nudge_makes_a_connected_writer_check_its_connection_before_writing_into_it() {
        let (sender, _receiver) = socket_pair();
        let queue = PeerQueue::default();
        queue.attach(&Arc::new(sender));
        // The peer dialed us anew (it may be a new process): nothing goes straight into the
        // old connection any more; the writer wakes for its liveness check first, and what
        // was pushed meanwhile waits for the connection that passes it.
        queue.lock().idle = true;
        queue.nudge();
        let vote = vec![append_1_to_2(1, 8)];
        queue.push(vote.clone());
        assert_eq!(queue.lock().messages, vote, "queued, not sent directly");
        queue.lock().idle = false;
        let (mut bytes, mut taken) = (Vec::new(), Vec::new());
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::from_secs(5)),
            Taken::Nothing
        ));
        assert!(taken.is_empty() && bytes.is_empty());
        // The check passed (or a new connection is up): the work is handed over as usual.
        assert!(matches!(
            queue.take(&mut bytes, &mut taken, Duration::ZERO),
            Taken::Messages
        ));
        assert_eq!(taken, vote);
    }

    #[test]
    fn a_nudge_cuts_a_reconnection_backoff_short() {
        let queue = Arc::new(PeerQueue::default());
        let nudger = Arc::clone(&queue);
        let nudge = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            nudger.nudge();
        });
        // An hour's backoff: only the nudge can end it within the test's lifetime.
        assert!(queue.back_off(Duration::from_secs(3600)));
        nudge.join().expect("nudger");
        assert!(!queue.back_off(Duration::ZERO), "a nudge is used once");
    }

    /// A dialer of protocol version 1 (which cannot decode `CommitNotice`) is refused at the
    /// handshake, with a reason that names both versions.
    #[test]
    fn a_dialer_of_another_protocol_version_is_refused_with_both_versions() {
        let (mut dialer, mut listener) = socket_pair();
        let hello = Hello {
            version: PROTOCOL_VERSION - 1,
            from: 2,
            to: 1,
            nonce: [7; wire::NONCE_BYTES],
            http_addr: String::new(),
        };
        let mut out = Vec::new();
        hello.encode(&mut out);
        dialer.write_all(&out).expect("hello sent");
        let shared = Endpoint {
            id: 1,
            secret: b"secret".to_vec(),
            http_addr: String::new(),
            inbound: Mutex::new(HashMap::new()),
            lost: Arc::new(|_| {}),
            queues: Mutex::new(HashMap::new()),
        };
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let refused = accept_handshake(
            &mut listener,
            &mut Vec::new(),
            &shared,
            &stop,
            deadline,
            || {},
        )
        .expect_err("refused");
        let (kind, body) = read_frame(
            &mut dialer,
            &mut Vec::new(),
            HANDSHAKE_FRAME_BYTES_MAX,
            &stop,
            deadline,
        )
        .expect("an answer");
        assert_eq!(kind, FrameKind::Reject);
        let reason = wire::decode_reject(&body).expect("a reason");
        let expected = format!(
            "protocol version {PROTOCOL_VERSION} required, dialer speaks {}",
            PROTOCOL_VERSION - 1
        );
        assert!(reason.starts_with(&expected), "{reason}");
        assert_eq!(refused.to_string(), reason);
    }

    /// Node 2 listening (secret `secret`), counting the messages it receives in the
    /// returned counter.
    fn counting_listener() -> (Transport, Arc<AtomicUsize>) {
        let received = Arc::new(AtomicUsize::new(0));
        let sink = Arc::clone(&received);
        let listen = any_port();
        let node_2 = Transport::start(
            TransportConfig {
                id: 2,
                listen,
                peers: vec![],
                secret: b"secret".to_vec(),
                http_addr: "127.0.0.1:8082".into(),
                peer_addr: listen.to_string(),
            },
            Arc::new(move |_| {
                sink.fetch_add(1, Ordering::SeqCst);
            }),
            Arc::new(|_| {}),
        )
        .unwrap();
        (node_2, received)
    }

    /// Node 1 dialing `addr_2` with the same secret, sending it heartbeats until `received`
    /// counts one or `bound` passes; whether one got through.
    fn a_peer_gets_through(addr_2: SocketAddr, received: &AtomicUsize, bound: Duration) -> bool {
        let node_1 = Transport::start(
            TransportConfig {
                id: 1,
                listen: any_port(),
                peers: vec![(2, addr_2.to_string())],
                secret: b"secret".to_vec(),
                http_addr: "127.0.0.1:8081".into(),
                peer_addr: String::new(),
            },
            Arc::new(|_| {}),
            Arc::new(|_| {}),
        )
        .unwrap();
        let started = Instant::now();
        while received.load(Ordering::SeqCst) == 0 && started.elapsed() < bound {
            node_1.send(heartbeat_1_to_2());
            thread::sleep(Duration::from_millis(20));
        }
        received.load(Ordering::SeqCst) > 0
    }

    /// A full handshake table closes a connection that sent nothing before one whose dialer
    /// sent a valid `Hello` (a real peer, which sends it at once), however many silent ones
    /// arrive after it; only when every pending dialer said hello does the oldest go.
    #[test]
    fn a_silent_connection_is_closed_before_one_that_said_hello() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut pending = Pending::default();
        let mut dialers = Vec::new();
        let mut admit = |pending: &mut Pending| {
            dialers.push(TcpStream::connect(addr).unwrap());
            let (accepted, _) = listener.accept().unwrap();
            pending.admit(&accepted).unwrap()
        };
        let first = admit(&mut pending);
        pending.hello_received(first);
        for _ in 0..3 * HANDSHAKES_PENDING_MAX {
            admit(&mut pending);
        }
        assert!(
            pending.leave(first),
            "the peer that said hello is still pending"
        );
        let all: Vec<u64> = (0..HANDSHAKES_PENDING_MAX)
            .map(|_| admit(&mut pending))
            .collect();
        for id in &all {
            pending.hello_received(*id);
        }
        admit(&mut pending);
        assert!(!pending.leave(all[0]), "all said hello: the oldest went");
        assert!(pending.leave(all[1]));
    }

    /// A dialer that keeps opening connections and never authenticates holds at most
    /// `HANDSHAKES_PENDING_MAX` of them (each new one closes the oldest), so a real peer gets
    /// in at once. Before, the flood's first 64 held every inbound slot until the handshake
    /// deadline, and its next ones took each slot as it freed.
    #[test]
    fn a_flood_of_connections_that_never_authenticate_does_not_keep_a_peer_out() {
        let (node_2, received) = counting_listener();
        let addr_2 = node_2.listen_addr();
        let mut held: Vec<TcpStream> = (0..2 * INBOUND_CONNECTIONS_MAX)
            .map(|_| TcpStream::connect(addr_2).unwrap())
            .collect();
        let flooding = Arc::new(AtomicBool::new(true));
        let flooder = {
            let flooding = Arc::clone(&flooding);
            thread::spawn(move || {
                while flooding.load(Ordering::SeqCst) {
                    if let Ok(stream) = TcpStream::connect(addr_2) {
                        held.push(stream);
                    }
                    if held.len() > 4 * INBOUND_CONNECTIONS_MAX {
                        held.remove(0);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                held.len()
            })
        };
        // Well within the handshake deadline, which used to be the first chance to get in.
        let bound = Duration::from_millis(HANDSHAKE_TIMEOUT_MS / 2);
        let got_through = a_peer_gets_through(addr_2, &received, bound);
        flooding.store(false, Ordering::SeqCst);
        assert!(flooder.join().unwrap() > INBOUND_CONNECTIONS_MAX);
        assert!(got_through, "a flood of idle connections kept the peer out");
    }

    /// Dialers that send their handshake a byte at a time, each byte well within a read
    /// timeout, fill every inbound slot; a real peer must still get through once they have
    /// had the handshake's time (before, each slot was held as long as bytes kept coming,
    /// up to a 4 KiB frame at the dribbler's pace: the node was cut off from its peers).
    #[test]
    fn handshakes_that_dribble_cannot_hold_the_inbound_slots() {
        let (node_2, received) = counting_listener();
        let addr_2 = node_2.listen_addr();
        // Connected before node 1 dials: the listener's backlog hands them over first.
        let mut slow: Vec<TcpStream> = (0..INBOUND_CONNECTIONS_MAX)
            .map(|_| TcpStream::connect(addr_2).unwrap())
            .collect();
        for stream in &mut slow {
            // A Hello announcing the largest handshake frame, then its body a byte at a time.
            let mut opening = (HANDSHAKE_FRAME_BYTES_MAX as u32).to_le_bytes().to_vec();
            opening.push(1);
            stream.write_all(&opening).unwrap();
        }
        let dribbling = Arc::new(AtomicBool::new(true));
        let dribbler = {
            let dribbling = Arc::clone(&dribbling);
            thread::spawn(move || {
                while dribbling.load(Ordering::SeqCst) {
                    for stream in &mut slow {
                        let _ = stream.write(b"L");
                    }
                    thread::sleep(Duration::from_millis(HANDSHAKE_TIMEOUT_MS / 10));
                }
            })
        };
        // Bound: the handshake's time, a reconnection backoff, and a wide margin.
        let bound = Duration::from_millis(3 * HANDSHAKE_TIMEOUT_MS + RECONNECT_BACKOFF_MS_MAX);
        let got_through = a_peer_gets_through(addr_2, &received, bound);
        dribbling.store(false, Ordering::SeqCst);
        dribbler.join().unwrap();
        assert!(got_through, "slow handshakes kept the peer out");
    }

    /// Dials `addr` as node `from` toward node 2 with the secret `secret` and completes the
    /// handshake, then leaves the connection open and silent: a peer whose host vanished
    /// (power loss, a long partition) never closes it.
    fn authenticated_connection(addr: SocketAddr, from: NodeId) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("dial");
        let nonce = [from as u8; wire::NONCE_BYTES];
        let mut out = Vec::new();
        Hello {
            version: PROTOCOL_VERSION,
            from,
            to: 2,
            nonce,
            http_addr: String::new(),
        }
        .encode(&mut out);
        stream.write_all(&out).expect("hello sent");
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (kind, body) = read_frame(
            &mut stream,
            &mut Vec::new(),
            HANDSHAKE_FRAME_BYTES_MAX,
            &stop,
            deadline,
        )
        .expect("an answer");
        assert_eq!(kind, FrameKind::Welcome);
        let welcome = Welcome::decode(&body).expect("a welcome");
        let mac = wire::handshake_mac(b"secret", Side::Dialer, &nonce, &welcome.nonce, from, 2);
        out.clear();
        wire::encode_auth(&mut out, &mac);
        stream.write_all(&out).expect("auth sent");
        stream
    }

    /// Whether the listener closed `stream` within `bound`.
    fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
        stream.set_read_timeout(Some(bound)).expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !is_timeout(&e),
        }
    }

    /// Connections a peer dialed before and never closed (its host vanished) must not pile
    /// up: each takes an authenticated slot for good, and once they fill all of them no peer
    /// gets through any more. A newer authenticated connection of a peer supersedes its older
    /// ones (a peer's writer keeps one connection toward us at a time).
    #[test]
    fn a_peer_dialing_anew_supersedes_its_connections_left_open() {
        let (node_2, received) = counting_listener();
        let addr_2 = node_2.listen_addr();
        let mut first = authenticated_connection(addr_2, 1);
        let mut left_open = Vec::new();
        for _ in 0..INBOUND_CONNECTIONS_MAX {
            left_open.push(authenticated_connection(addr_2, 1));
        }
        assert!(
            closed_within(&mut first, Duration::from_secs(30)),
            "a superseded connection stays open"
        );
        // Another peer's connection is not touched by node 1's.
        let mut other = authenticated_connection(addr_2, 3);
        assert!(
            a_peer_gets_through(addr_2, &received, Duration::from_secs(30)),
            "stale connections keep the peer out"
        );
        assert!(!closed_within(&mut other, Duration::from_millis(100)));
        drop(left_open);
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let config = TransportConfig {
            id: 1,
            listen: any_port(),
            peers: vec![],
            secret: vec![],
            http_addr: String::new(),
            peer_addr: String::new(),
        };
        assert!(Transport::start(config, Arc::new(|_| {}), Arc::new(|_| {})).is_err());
    }
}
