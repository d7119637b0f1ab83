//! `Node`: the driver that runs a `RawNode` on a thread, ticks it from a timer, steps peer
//! messages and proposals into it, and handles each `Ready` in the documented order: send,
//! persist (fsync), send what depended on the persist, apply committed entries, advance.
//!
//! Persistence runs in the background (etcd-raft's async storage writes): a Ready's entries
//! go to the log writer thread and the Raft thread moves on (`RawNode::advance_append`), so
//! acknowledgements, heartbeats and new proposals are stepped while the disk syncs. When the
//! writer reports them durable the driver exposes them to the core (`LogStorage::mirror`,
//! `RawNode::persisted`: only then does a leader count its own copy) and sends the messages
//! that promised them (a follower's acknowledgement), in Ready order. A Ready that truncates
//! the log, installs a snapshot or changes the term or vote waits for the queue to drain and
//! is handled synchronously.
//!
//! Owns: the Raft thread, the proposal tokens of the entries this node proposed, leadership
//! hand-over to the engine, the membership change waiting for an index the sequencer leaves
//! it (`conf_slot`), and the status snapshot served by `GET /_lithair/cluster`.
//! Must not: block on the network (the transport queues), or apply an entry before it is
//! committed.
//!
//! Architecture invariant: only the Raft thread touches the `RawNode` and its storage; every
//! other thread talks to it through the inbox.

use super::conf_slot::{ConfReply, ConfSlot};
use super::config::{Config, ReadMode};
use super::core::RaftError;
use super::leader::lease_ticks;
use super::raw_node::{RawNode, Ready, Status};
use super::reads::{BatchListener, ReadBatcher, ReadLease, RoundClock, StartBatch};
use super::storage::Storage;
use super::storage_log::{InstallStep, LogStorage};
use super::transport::{Deliver, Lost, Transport, TransportConfig};
use super::types::{ConfChange, EntryKind, Message, MessageBody, NodeId, Role, NODE_NONE};
use crate::engine::{Proposer, Replica, Token};
use crate::log::fatal::AbortOnPanic;
use crate::log::inbox::{Inbox as EventQueue, Received};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Length of one Raft tick, in milliseconds (election after 10-20 ticks, heartbeat every tick).
pub const TICK_MS: u64 = 20;
/// A stalled Raft pass (longer than an election timeout) is reported at most this often.
const STALL_REPORT_EVERY_S: u64 = 10;
/// Inbox events handled before the node processes a Ready (bounds latency under load).
const INBOX_BATCH_MAX: usize = 4096;
/// Bytes of one InstallSnapshot chunk. The leader sends the next chunk when the previous one
/// is acknowledged (one in flight per follower), and resumes from the follower's acknowledged
/// offset after a reconnection.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Test hook: the environment variable naming an install step (`file`, `record` or `log`)
/// after which the process aborts, to test that a crash in the middle of an install leaves a
/// node able to start.
pub const INSTALL_CRASH_ENV: &str = "LITHAIR_TEST_CRASH_DURING_INSTALL";
/// Test hook: the environment variable giving a smaller InstallSnapshot chunk (in bytes, 1 to
/// [`SNAPSHOT_CHUNK_BYTES`]), so a test sends a small state in many chunks. Other values are
/// ignored.
pub const SNAPSHOT_CHUNK_ENV: &str = "LITHAIR_TEST_SNAPSHOT_CHUNK_BYTES";
/// A learner is promoted to voter once it lags the leader's last index by at most this many
/// entries: close enough that it can keep up, so adding its vote does not stall commits.
pub const LEARNER_PROMOTE_LAG_ENTRIES_MAX: u64 = 64;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Every initial voter and where its peer port is (this node included).
    pub members: Vec<(NodeId, String)>,
    /// Where to listen for peers.
    pub peer_listen: SocketAddr,
    /// This node's HTTP address (announced to peers so followers can forward to a leader).
    pub http_addr: String,
    /// This node's peer address as the others dial it (reported to joining nodes).
    pub peer_addr: String,
    /// The shared cluster secret.
    pub secret: Vec<u8>,
    /// The data directory (the Raft log is the engine's log in its `log` folder).
    pub data_dir: PathBuf,
    /// Dynamic membership: this node learns the membership from the leader's log (a new log
    /// is not bootstrapped from `members`, and this node need not be in it).
    pub join: bool,
    /// How the leader confirms linearizable reads.
    pub read_mode: ReadMode,
}

/// Something for the Raft thread to do.
enum Event {
    /// A tick of the ticker: the whole ticks of wall time it stands for (see
    /// [`TickSchedule`]; 0 for the last one, which only wakes a stopping node), and the
    /// instant the ticks sent so far reach ([`TickSchedule::covered`]).
    Tick {
        wall_ticks: u32,
        through: Instant,
    },
    Message(Message),
    Propose {
        term: u64,
        slot: Option<u64>,
        first_index: u64,
        entries: Vec<Arc<[u8]>>,
        token: Token,
    },
    TransferLeader(NodeId, Sender<Result<(), String>>),
    /// A single-server membership change (leader only).
    ConfChange(ConfChange, ConfReply),
    /// One batch of linearizable reads (its id): the batcher learns the event index the
    /// engine must reach before they may be served.
    ReadIndex(u64),
    /// The log writer made more entries durable (see [`PersistWatermark`]).
    Persisted,
    /// The last connection a peer dialed to this node broke (see [`Lost`]).
    PeerLost(NodeId),
}

/// Longest wait for a linearizable read's confirmation, in milliseconds.
pub const READ_INDEX_TIMEOUT_MS: u64 = 2000;
/// Ticks after which the driver gives up on an unconfirmed read batch (no leader confirmed
/// it), so the next batch can start; its readers retry.
const READ_BATCH_EXPIRY_TICKS: u64 = READ_INDEX_TIMEOUT_MS / TICK_MS;
/// Ticks after which an unconfirmed read batch is asked again: the request or its answer
/// may have been dropped (Raft messages may be), and asking twice is harmless.
const READ_BATCH_RETRY_TICKS: u64 = 10;

pub use super::reads::AppliedWatch;

/// The sending end of the Raft thread's event queue (ticker, peer readers, proposer, log
/// completions, operator calls). The queue wakes the Raft thread only when it is parked, with
/// one short lock per event and no wake-up at all while it is busy with a pass (see
/// `crate::log::inbox`). Sends fail once the Raft thread has exited (it closes the queue).
struct QueueSender<T>(Arc<EventQueue<T>>);

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender(Arc::clone(&self.0))
    }
}

impl<T> QueueSender<T> {
    fn send(&self, event: T) -> Result<(), T> {
        self.0.push(event)
    }
}

/// The inbox end of a node that does not run yet: create it first, give its proposer to the
/// engine, then start the node with it.
pub struct Inbox {
    sender: QueueSender<Event>,
}

impl Inbox {
    /// A new inbox.
    pub fn new() -> Inbox {
        Inbox {
            sender: QueueSender(Arc::new(EventQueue::new())),
        }
    }

    /// The proposer the engine's sequencer hands its batches to.
    pub fn proposer(&self) -> Arc<dyn Proposer> {
        Arc::new(InboxProposer {
            sender: self.sender.clone(),
        })
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

struct InboxProposer {
    sender: QueueSender<Event>,
}

impl Proposer for InboxProposer {
    fn propose(
        &self,
        term: u64,
        slot: Option<u64>,
        first_index: u64,
        entries: Vec<Arc<[u8]>>,
        token: Token,
    ) {
        let sender = &self.sender;
        // If the node is gone (its queue closed) the token drops, and its submitters learn the
        // engine is closed.
        let _ = sender.send(Event::Propose {
            term,
            slot,
            first_index,
            entries,
            token,
        });
    }
}

/// A member as reported by the status endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Whether it votes.
    pub voter: bool,
    /// The highest index known replicated on it: only a leader tracks it (`None` on any
    /// other node).
    pub match_index: Option<u64>,
    /// Entries it lags behind the leader's last index, measured when the status is read;
    /// `None` where `match_index` is. The match index may be a tick older than the last
    /// index, so a lag may count entries the member received during that tick.
    pub lag: Option<u64>,
    /// How the leader feeds its log (`"probe"`, `"replicate"`, `"snapshot"`): only a
    /// leader knows, and only of the others (`None` for itself and on any other node).
    pub replication: Option<&'static str>,
    /// Milliseconds since the leader last heard from it, to a tick (`TICK_MS`): `None` where
    /// `replication` is. A member that is down or cut off grows this; a live one stays
    /// within a heartbeat interval.
    pub last_heard_ms: Option<u64>,
    /// Its HTTP address, when known.
    pub http_addr: Option<String>,
    /// Its peer (Raft) address, when known.
    pub peer_addr: Option<String>,
}

/// What `GET /_lithair/cluster` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: &'static str,
    /// Its term.
    pub term: u64,
    /// The leader it knows (0: none).
    pub leader: NodeId,
    /// Raft commit index.
    pub commit: u64,
    /// Raft index of the last entry handed to the engine.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Members.
    pub members: Vec<MemberStatus>,
    /// The index the log is compacted to (the Raft snapshot's; 0: none).
    pub snapshot_index: u64,
    /// Snapshots installed from a leader since this process started.
    pub snapshots_installed: u64,
    /// Snapshot transfers to followers restarted (as leader) because a newer snapshot
    /// replaced theirs mid-transfer, since this process started.
    pub snapshot_sends_restarted: u64,
    /// Linearizable reads that joined a ReadIndex batch since this process started (lease
    /// reads, which need no round, are not counted).
    pub batched_reads: u64,
    /// ReadIndex batches this node started (each one confirmation asked of the leader, or
    /// of its own core when it leads) since this process started.
    pub read_batches: u64,
    /// Why this node is no member of its cluster any more, once it learned it was removed
    /// (`None` while it is a member, or does not know otherwise).
    pub removed: Option<String>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// The peers file in the data directory: this node's id and peer address and every peer's
/// address, so a node that joined restarts without `--join` and reaches members added later.
pub const PEER_BOOK_FILE_NAME: &str = "cluster-peers";
/// Largest peers file read, in bytes.
pub const PEER_BOOK_BYTES_MAX: u64 = 1 << 20;

/// What the peers file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerBook {
    /// This node's id.
    pub id: NodeId,
    /// This node's peer address.
    pub peer_addr: String,
    /// Every other known peer and its peer address.
    pub peers: Vec<(NodeId, String)>,
}

impl PeerBook {
    /// Whether `id` is this node or a peer it records.
    fn knows(&self, id: NodeId) -> bool {
        id == self.id || self.peers.iter().any(|(known, _)| *known == id)
    }

    /// Records `addr` as peer `id`'s address, replacing any it had (peers stay sorted).
    fn put(&mut self, id: NodeId, addr: String) {
        self.peers.retain(|(known, _)| *known != id);
        self.peers.push((id, addr));
        self.peers.sort();
    }

    /// The file's text: `id N`, `peer_addr A`, then one `peer N A` line per peer.
    pub fn encode(&self) -> String {
        let mut text = format!("id {}\npeer_addr {}\n", self.id, self.peer_addr);
        for (id, addr) in &self.peers {
            text.push_str(&format!("peer {id} {addr}\n"));
        }
        text
    }

    /// Parses [`PeerBook::encode`] output; `None` when malformed.
    pub fn decode(text: &str) -> Option<PeerBook> {
        let (mut id, mut peer_addr, mut peers) = (None, None, Vec::new());
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let mut words = line.split_whitespace();
            match (words.next()?, words.next()?, words.next()) {
                ("id", value, None) => id = Some(value.parse().ok()?),
                ("peer_addr", value, None) => peer_addr = Some(value.to_string()),
                ("peer", value, Some(addr)) => peers.push((value.parse().ok()?, addr.to_string())),
                _ => return None,
            }
            if words.next().is_some() {
                return None;
            }
        }
        Some(PeerBook {
            id: id.filter(|&id| id != NODE_NONE)?,
            peer_addr: peer_addr?,
            peers,
        })
    }

    /// Reads the peers file of `data_dir`, if there is one.
    ///
    /// # Errors
    /// I/O failures, or a malformed file.
    pub fn read(data_dir: &std::path::Path) -> io::Result<Option<PeerBook>> {
        use std::io::Read;
        let path = data_dir.join(PEER_BOOK_FILE_NAME);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.take(PEER_BOOK_BYTES_MAX).read_to_string(&mut text)?;
        match PeerBook::decode(&text) {
            Some(book) => Ok(Some(book)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed peers file {}", path.display()),
            )),
        }
    }

    /// Replaces the peers file of `data_dir` (temporary file, fsync, rename, directory fsync).
    ///
    /// # Errors
    /// I/O failures.
    pub fn write(&self, data_dir: &std::path::Path) -> io::Result<()> {
        crate::log::replace_file_durably(data_dir, PEER_BOOK_FILE_NAME, self.encode().as_bytes())
    }
}

/// A running node. Dropping it stops the Raft thread, the timer and the transport.
pub struct Node {
    inbox: QueueSender<Event>,
    transport: Arc<Transport>,
    /// The peers file's content; its lock also serializes rewrites of the file. Shared with
    /// the Raft thread, which forgets a member's address when its removal applies.
    book: Arc<Mutex<PeerBook>>,
    data_dir: PathBuf,
    applied: Arc<AppliedWatch>,
    reads: Arc<ReadBatcher>,
    lease: Arc<ReadLease>,
    /// The cluster secret (signs and checks operator requests; never leaves the node).
    secret: Vec<u8>,
    status: Arc<Mutex<ClusterStatus>>,
    /// Why this node is no member of its cluster any more, once it learned it was removed
    /// (see [`Node::set_removal`]); `None` while it is a member, or does not know otherwise.
    removal: Mutex<Option<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Node {
    /// Opens the Raft storage over the engine's `log`, binds the peer port and starts the
    /// threads. The engine must have replayed its log up to the hard state's commit hint
    /// (see [`super::storage_log::read_hard_state`]).
    ///
    /// # Errors
    /// Storage or socket failures, or an invalid configuration.
    pub fn start(
        config: NodeConfig,
        inbox: Inbox,
        replica: Arc<dyn Replica>,
        log: Arc<crate::log::Log>,
    ) -> io::Result<Node> {
        let (raw, applied) = open_raw_node(&config, &*replica, log)?;
        let batch_sender = inbox.sender.clone();
        let start_batch: StartBatch =
            Box::new(move |batch| batch_sender.send(Event::ReadIndex(batch)).is_ok());
        let batcher = Arc::new(ReadBatcher::numbered_after(
            start_batch,
            super::reads::fresh_batch_base()?,
        ));
        let lease = Arc::new(ReadLease::default());
        let answerer: Arc<OnceLock<std::sync::Weak<Transport>>> = Arc::default();
        let deliver = deliver_messages(
            config.id,
            inbox.sender.clone(),
            Arc::clone(&batcher),
            Arc::clone(&lease),
            Arc::clone(&answerer),
        );
        let sender = inbox.sender.clone();
        let lost: Lost = Arc::new(move |peer| {
            let _ = sender.send(Event::PeerLost(peer));
        });
        let peers = config
            .members
            .iter()
            .filter(|(id, _)| *id != config.id)
            .cloned()
            .collect();
        let transport = Arc::new(Transport::start(
            TransportConfig {
                id: config.id,
                listen: config.peer_listen,
                peers,
                secret: config.secret.clone(),
                http_addr: config.http_addr.clone(),
                peer_addr: config.peer_addr.clone(),
            },
            deliver,
            lost,
        )?);
        // Only the peer readers use it, and only while the node (holding the transport) lives.
        let _ = answerer.set(Arc::downgrade(&transport));
        let book = Arc::new(Mutex::new(load_peer_book(&config, &transport)?));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let status = Arc::new(Mutex::new(ClusterStatus::default()));
        let ticker = {
            let (sender, stop) = (inbox.sender.clone(), Arc::clone(&stop));
            thread::Builder::new()
                .name("lithair-raft-tick".into())
                .spawn(move || {
                    let _fatal = AbortOnPanic::new("raft ticker");
                    run_ticker(&sender, &stop)
                })?
        };
        let replica_applied = replica.applied_index();
        let persist_next = raw.storage().last_index() + 1;
        let lease_length = Duration::from_millis(lease_ticks(raw.election_ticks()) * TICK_MS);
        let driver = Driver {
            raw,
            book: Arc::clone(&book),
            data_dir: config.data_dir.clone(),
            transport: Arc::clone(&transport),
            replica,
            tokens: BTreeMap::new(),
            status: Arc::clone(&status),
            stop: Arc::clone(&stop),
            lead_from: None,
            leading: false,
            conf_slot: ConfSlot::default(),
            applied,
            reads: std::collections::HashMap::new(),
            confirmed: Vec::new(),
            snapshots_installed: 0,
            install_crash: std::env::var(INSTALL_CRASH_ENV).ok(),
            batcher: Arc::clone(&batcher),
            ticks: 0,
            // No later than the ticker's start: the first lease checks may only count more.
            ticked_through: Instant::now(),
            stall_reported: None,
            stalls_unreported: 0,
            persists: std::collections::VecDeque::new(),
            submitted: 0,
            persist_next,
            watermark: Arc::new(PersistWatermark::default()),
            wake: inbox.sender.clone(),
            wake_through: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            outbox: Vec::new(),
            members_shape: None,
            members_tick: None,
            held: Arc::new(Mutex::new(HeldMessages::default())),
            lease: Arc::clone(&lease),
            rounds: RoundClock::default(),
            lease_length,
        };
        let queue = Arc::clone(&inbox.sender.0);
        let raft = thread::Builder::new()
            .name("lithair-raft".into())
            .spawn(move || {
                let _fatal = AbortOnPanic::new("raft driver");
                driver.run(&queue)
            })?;
        let applied = Arc::new(AppliedWatch::default());
        applied.raise(replica_applied);
        Ok(Node {
            inbox: inbox.sender,
            transport,
            book,
            data_dir: config.data_dir,
            applied,
            reads: batcher,
            lease,
            secret: config.secret,
            status,
            removal: Mutex::new(None),
            stop,
            threads: vec![ticker, raft],
        })
    }

    /// Why this node is no member of its cluster any more (it was removed), if it learned so.
    pub fn removal(&self) -> Option<String> {
        self.removal.lock().expect("removal poisoned").clone()
    }

    /// Records that this node was removed from its cluster (`Some`, with what says so), or
    /// that it is a member again (`None`); true when this changes what was recorded.
    pub fn set_removal(&self, removal: Option<String>) -> bool {
        let mut recorded = self.removal.lock().expect("removal poisoned");
        let changed = *recorded != removal;
        *recorded = removal;
        changed
    }

    /// The latest status.
    pub fn status(&self) -> ClusterStatus {
        let mut status = self.status.lock().expect("status poisoned").clone();
        (status.batched_reads, status.read_batches) = self.reads.counts();
        status.removed = self.removal();
        // The member list may be a tick older than the indexes: measure every lag from the
        // fresh last index (a lag a tick old never says 0 of a member that is behind), and
        // the leader itself matches everything it has.
        for member in &mut status.members {
            if let Some(matched) = &mut member.match_index {
                if member.id == status.id {
                    *matched = status.last_index;
                }
                member.lag = Some(status.last_index.saturating_sub(*matched));
            }
        }
        status
    }

    /// This node's id and the leader it knows (0: none), without copying the status.
    pub fn leader(&self) -> (NodeId, NodeId) {
        let status = self.status.lock().expect("status poisoned");
        (status.id, status.leader)
    }

    /// This node's latest role (`"leader"`, `"follower"`, ...), without copying the status.
    pub fn role(&self) -> &'static str {
        self.status.lock().expect("status poisoned").role
    }

    /// The HTTP address of `id` (learned in the peer handshake), if known.
    pub fn http_addr(&self, id: NodeId) -> Option<String> {
        self.transport.http_addr(id)
    }

    /// The peer (Raft) address this node uses to reach `id`, if known.
    pub fn peer_addr(&self, id: NodeId) -> Option<String> {
        self.transport.peer_addr(id)
    }

    /// Every peer this node can reach, with its peer address.
    pub fn peer_addrs(&self) -> Vec<(NodeId, String)> {
        self.transport.peer_addrs()
    }

    /// Starts sending to `id` at `addr` (no-op when `id` is already known or is this node).
    ///
    /// # Errors
    /// The transport could not start a writer thread.
    pub fn add_peer(&self, id: NodeId, addr: String) -> io::Result<()> {
        let mut book = self.book.lock().expect("peer book poisoned");
        if book.knows(id) {
            return Ok(());
        }
        self.transport.add_peer(id, addr.clone())?;
        book.put(id, addr);
        book.write(&self.data_dir)
    }

    /// Dials `id` at `addr` from now on, recorded in the peers file (added when unknown): for
    /// an id that left the cluster and joins again from another address. A member's address
    /// is never replaced (see the join handler).
    ///
    /// # Errors
    /// The peers file could not be written, or the transport could not start a writer.
    pub fn set_peer_addr(&self, id: NodeId, addr: String) -> io::Result<()> {
        let mut book = self.book.lock().expect("peer book poisoned");
        if id == book.id {
            return Ok(());
        }
        self.transport.set_peer_addr(id, addr.clone())?;
        book.put(id, addr);
        book.write(&self.data_dir)
    }

    /// HMAC-SHA256 of `message` under the cluster secret.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        crate::crypto::hmac::hmac_sha256(&self.secret, message)
    }

    /// Whether `tag` is the HMAC-SHA256 of `message` under the cluster secret (constant time).
    pub fn authenticate(&self, message: &[u8], tag: &[u8]) -> bool {
        crate::crypto::ct_eq(&self.sign(message), tag)
    }

    /// What linearizable reads wait on; the app raises it from its post-commit hook.
    pub fn applied_watch(&self) -> Arc<AppliedWatch> {
        Arc::clone(&self.applied)
    }

    /// Confirms with the leader (ReadIndex, batched with other reads) that this node has
    /// every write committed before now, and returns the engine event index to wait for
    /// before reading locally. A lease-mode leader whose lease holds answers at once, without
    /// the Raft thread (see [`Node::lease_read_index`]).
    ///
    /// # Errors
    /// No leader known, the read queue is full, or no confirmation in time.
    pub fn read_index(&self) -> Result<u64, String> {
        if let Some(index) = self.lease.read_index() {
            return Ok(index);
        }
        self.reads
            .read(Duration::from_millis(READ_INDEX_TIMEOUT_MS))
    }

    /// Joins the next ReadIndex batch that starts after now without waiting (see
    /// [`ReadBatcher::join`]); its outcome reaches the listener set by
    /// [`Node::on_read_batch`].
    ///
    /// # Errors
    /// The node is stopping.
    pub(crate) fn read_join(&self) -> Result<u64, String> {
        self.reads.join()
    }

    /// Sets the listener that hears every read batch's outcome; `false` when the node
    /// already has one (one per node).
    pub(crate) fn on_read_batch(&self, listener: BatchListener) -> bool {
        self.reads.listen(listener)
    }

    /// Lease mode, on the leader while its lease holds: the engine event index a
    /// linearizable read starting now must see applied. Lock-free; `None` elsewhere.
    pub fn lease_read_index(&self) -> Option<u64> {
        self.lease.read_index()
    }

    /// Proposes a membership change (this node must lead); returns the entry's index. The
    /// change takes effect when committed; a leader that removes itself then steps down. It
    /// is appended at an index the engine's sequencer does not use (see `conf_slot`): at
    /// once when no batch is on its way to the Raft thread, else just before the next one
    /// (or on a later tick), so the answer may take a batch's turnaround or a tick.
    ///
    /// # Errors
    /// The core's refusal: not the leader (also when the node is stopping: it leads no
    /// more), another change or a transfer pending (passing), or an invalid change (no such
    /// member, the reserved id, no voter would remain: final).
    pub fn propose_conf_change(&self, change: ConfChange) -> Result<u64, RaftError> {
        let stopping = || RaftError::NotLeader { leader: NODE_NONE };
        let (reply, outcome) = mpsc::channel();
        self.inbox
            .send(Event::ConfChange(change, reply))
            .map_err(|_| stopping())?;
        outcome.recv().map_err(|_| stopping())?
    }

    /// Asks the leader (this node) to hand leadership to `to`.
    ///
    /// # Errors
    /// Not the leader, an unknown target, or the node is stopping.
    pub fn transfer_leader(&self, to: NodeId) -> Result<(), String> {
        let (reply, outcome) = mpsc::channel();
        self.inbox
            .send(Event::TransferLeader(to, reply))
            .map_err(|_| "the node is stopping".to_string())?;
        outcome
            .recv()
            .map_err(|_| "the node is stopping".to_string())?
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // The ticker sends a last tick after `stop`; the Raft thread exits on it (or on its
        // next timed wake-up) and closes its queue, so later sends fail.
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Whether two entries hold events of one command (the same request id; reserved envelopes
/// carry none): the core keeps such a run whole in every Append, so a leader crash never
/// leaves a node with part of a command (see `RawNode::set_same_command`).
fn same_command(a: &[u8], b: &[u8]) -> bool {
    let request = |entry: &[u8]| {
        crate::engine::decode_entry(entry)
            .ok()
            .map(|e| e.request_id)
            .filter(|&id| id != 0)
    };
    matches!((request(a), request(b)), (Some(x), Some(y)) if x == y)
}

/// Opens the Raft storage on the engine's log (bootstrapped from the static map unless the
/// node joins) and the core; returns it with the index the core starts from as applied.
fn open_raw_node(
    config: &NodeConfig,
    replica: &dyn Replica,
    log: Arc<crate::log::Log>,
) -> io::Result<(RawNode<LogStorage>, u64)> {
    let mut voters: Vec<NodeId> = config.members.iter().map(|(id, _)| *id).collect();
    if config.join {
        // A joining node starts empty: the leader's log tells it the membership.
        voters.clear();
    } else if !voters.contains(&config.id) {
        let message = format!("node {} is not in the cluster map", config.id);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let storage = LogStorage::open(log, &config.data_dir, &voters)?;
    let raft_config = raft_config(config, replica, &storage)?;
    let applied = raft_config.applied;
    let mut raw = RawNode::new(raft_config, storage)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    raw.set_same_command(same_command);
    Ok((raw, applied))
}

/// The core's settings for a node whose engine is `replica`.
fn raft_config(
    config: &NodeConfig,
    replica: &dyn Replica,
    storage: &LogStorage,
) -> io::Result<Config> {
    let mut raft_config = Config::new(config.id);
    raft_config.seed = crate::crypto::random::u64()?;
    // The engine may hold more than the commit hint (a snapshot past it); the core must not
    // believe anything beyond its commit applied, so it re-delivers that part and the engine
    // ignores what it already holds.
    raft_config.applied = replica.applied_index().min(storage.hard_state().commit);
    raft_config.snapshot_chunk_bytes = std::env::var(SNAPSHOT_CHUNK_ENV)
        .ok()
        .and_then(|bytes| bytes.parse::<u64>().ok())
        .filter(|bytes| (1..=SNAPSHOT_CHUNK_BYTES).contains(bytes))
        .unwrap_or(SNAPSHOT_CHUNK_BYTES);
    raft_config.read_mode = config.read_mode;
    // The driver promotes learners itself, with a lag threshold (see `promote_learners`).
    raft_config.auto_promote_learners = false;
    Ok(raft_config)
}

/// What the peer readers do with each message: most go to the Raft thread; read answers
/// skip it. A ReadIndex answer completes this node's batch at once: its index was confirmed by
/// the node that led when it answered (a quorum round or its lease, after our batch started),
/// so it covers every write committed before the batch, whatever our own term or role; the
/// reads then wait until the engine applied it. A lease-mode leader whose lease holds answers
/// a follower's ReadIndex from the reader too (the lease read of `ReadLease::read_index`,
/// taken after the request arrived). Saves two Raft-thread wake-ups per follower batch.
fn deliver_messages(
    id: NodeId,
    sender: QueueSender<Event>,
    batcher: Arc<ReadBatcher>,
    lease: Arc<ReadLease>,
    answerer: Arc<OnceLock<std::sync::Weak<Transport>>>,
) -> Deliver {
    Arc::new(move |message: Message| {
        match &message.body {
            MessageBody::ReadIndexResponse { index, ctx } => {
                if let Ok(bytes) = <[u8; 8]>::try_from(ctx.as_slice()) {
                    batcher.complete(u64::from_le_bytes(bytes), Ok(*index));
                }
                return;
            }
            MessageBody::ReadIndex { ctx } => {
                let transport = answerer.get().and_then(std::sync::Weak::upgrade);
                if let (Some(index), Some(transport)) = (lease.read_index(), transport) {
                    transport.send(Message {
                        from: id,
                        to: message.from,
                        term: lease.term(),
                        body: MessageBody::ReadIndexResponse {
                            index,
                            ctx: ctx.clone(),
                        },
                    });
                    return;
                }
            }
            _ => {}
        }
        let _ = sender.send(Event::Message(message));
    })
}

/// Reads the peers file (refusing another node's), starts writers toward the peers it names
/// that the configuration did not, and rewrites it with the configuration's peers added.
fn load_peer_book(config: &NodeConfig, transport: &Transport) -> io::Result<PeerBook> {
    let stored = PeerBook::read(&config.data_dir)?;
    if let Some(stored) = &stored {
        if stored.id != config.id {
            let message = format!(
                "{} belongs to node {}, not {}",
                config.data_dir.display(),
                stored.id,
                config.id
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        for (peer, addr) in &stored.peers {
            transport.add_peer(*peer, addr.clone())?;
        }
    }
    let book = PeerBook {
        id: config.id,
        peer_addr: config.peer_addr.clone(),
        peers: transport
            .peer_addrs()
            .into_iter()
            .filter(|(peer, _)| *peer != config.id)
            .collect(),
    };
    if stored.as_ref() != Some(&book) {
        book.write(&config.data_dir)?;
    }
    Ok(book)
}

/// The ticker's schedule, which keeps the core's clock (its ticks) on the safe side of both
/// lease promises. A follower honours a leader's lease for `election_ticks` of its own ticks
/// after hearing from it, so its ticks must never run faster than the wall clock: ticks are
/// sent at least a tick apart, and a ticker that woke late (a loaded machine, a stopped
/// process) sends one tick and goes on a full tick later, never the ticks it missed back to
/// back (a burst right after a heartbeat would end the follower's promise early, while the
/// leader still serves lease reads). A lease-mode leader answers reads from its lease while
/// fewer than `lease_ticks` of its ticks passed since the round it rests on, so its ticks must
/// never run slower: each tick carries the whole ticks of wall time it stands for (more than
/// one after a stall), which a leader counts all and any other role counts as one
/// ([`core_ticks`]). Both counts move where the tick sits in the inbox, in order with the
/// messages that arrived meanwhile (a leader's burst does not overtake the acknowledgements
/// CheckQuorum looks for).
struct TickSchedule {
    start: Instant,
    /// When the next tick is due.
    next: Instant,
    /// Whole ticks of wall time the ticks sent so far stand for.
    wall_ticks: u64,
}

impl TickSchedule {
    fn new(start: Instant) -> TickSchedule {
        TickSchedule {
            start,
            next: start + Duration::from_millis(TICK_MS),
            wall_ticks: 0,
        }
    }

    /// When the next tick is due.
    fn due(&self) -> Instant {
        self.next
    }

    /// The instant the ticks sent so far reach: the start plus the wall ticks they stand for.
    fn covered(&self) -> Instant {
        // In milliseconds, not `Duration * u32`: ticks pass u32 after 2.7 years of uptime.
        self.start + Duration::from_millis(TICK_MS.saturating_mul(self.wall_ticks))
    }

    /// A tick is sent at `now` (at or after [`TickSchedule::due`]): returns the whole ticks
    /// of wall time it stands for (at least one) and schedules the next a full tick later.
    fn send_at(&mut self, now: Instant) -> u32 {
        let tick = Duration::from_millis(TICK_MS);
        assert!(now >= self.next, "a tick sent before it was due");
        let total = (now.duration_since(self.start).as_nanos() / tick.as_nanos()) as u64;
        let wall_ticks = total - self.wall_ticks;
        // Sends are at least a tick apart, so each stands for at least one tick.
        assert!(wall_ticks >= 1, "a tick standing for no wall time");
        self.wall_ticks = total;
        self.next = now + tick;
        u32::try_from(wall_ticks).unwrap_or(u32::MAX)
    }
}

/// Whole ticks of wall time from `through` (where the ticks the Raft thread handled reach) to
/// `now`: what a ticker that is late (stalled, or its tick still queued behind other events)
/// owes the core. A lease-mode leader checks its lease on its ticks plus these
/// ([`RawNode::set_ticks_owed`]), so its lease never outlasts the wall clock while the tick
/// that would end it has not arrived.
fn ticks_owed(through: Instant, now: Instant) -> u64 {
    let owed = now.saturating_duration_since(through).as_nanos() / u128::from(TICK_MS * 1_000_000);
    u64::try_from(owed).unwrap_or(u64::MAX)
}

/// Ticks the core counts for a ticker tick standing for `wall_ticks` of wall time (see
/// [`TickSchedule`]): all of them on a leader, one on any other role (none for the last,
/// empty tick that wakes a stopping node).
fn core_ticks(leader: bool, wall_ticks: u32) -> u32 {
    if leader {
        wall_ticks
    } else {
        wall_ticks.min(1)
    }
}

fn run_ticker(sender: &QueueSender<Event>, stop: &std::sync::atomic::AtomicBool) {
    let mut schedule = TickSchedule::new(Instant::now());
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let now = Instant::now();
        if schedule.due() > now {
            thread::sleep(schedule.due() - now);
        }
        let wall_ticks = schedule.send_at(Instant::now().max(schedule.due()));
        let through = schedule.covered();
        if sender
            .send(Event::Tick {
                wall_ticks,
                through,
            })
            .is_err()
        {
            return;
        }
    }
    // Wake the Raft thread so it sees `stop`.
    let through = schedule.covered();
    let _ = sender.send(Event::Tick {
        wall_ticks: 0,
        through,
    });
}

/// How far the log writer got with the entries the Raft thread queued: the sequence number
/// of the last durable submission, or the first failure. The writer raises it (and wakes the
/// Raft thread through its inbox); the Raft thread waits on it only to drain the queue before
/// a step that must not overtake queued writes (truncation, snapshot, term or vote change).
#[derive(Default)]
struct PersistWatermark {
    state: Mutex<(u64, Option<String>)>,
    raised: std::sync::Condvar,
    /// Whether the Raft thread waits on `raised` (rarely): a notification is a system call
    /// even with nobody waiting, and the log writer raises the watermark after every sync.
    waiting: std::sync::atomic::AtomicBool,
}

impl PersistWatermark {
    fn raise(&self, sequence: u64, result: Result<(), String>) {
        let mut state = self.state.lock().expect("persist watermark poisoned");
        assert!(sequence > state.0, "persists complete in submission order");
        state.0 = sequence;
        if let Err(error) = result {
            state.1.get_or_insert(error);
        }
        // Read under the lock the waiter sets it under: no wake-up is missed.
        if self.waiting.load(std::sync::atomic::Ordering::Relaxed) {
            self.raised.notify_all();
        }
    }

    /// The last durable submission, or the first failure.
    fn durable(&self) -> Result<u64, String> {
        let state = self.state.lock().expect("persist watermark poisoned");
        state.1.clone().map_or(Ok(state.0), Err)
    }

    /// Waits until submission `sequence` is durable (or some submission failed).
    fn wait(&self, sequence: u64) -> Result<u64, String> {
        let state = self.state.lock().expect("persist watermark poisoned");
        self.waiting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let state = self
            .raised
            .wait_while(state, |state| state.0 < sequence && state.1.is_none())
            .expect("persist watermark poisoned");
        self.waiting
            .store(false, std::sync::atomic::Ordering::Relaxed);
        state.1.clone().map_or(Ok(state.0), Err)
    }
}

/// One Ready's persist in flight: its entries (exposed to the core once durable) and its
/// last entry for [`RawNode::persisted`]. The messages that promise it durable wait in
/// [`HeldMessages`].
struct Persist {
    /// The submission that must be durable first.
    sequence: u64,
    entries: Vec<super::types::Entry>,
    last: Option<(u64, u64)>,
}

/// Messages that promise queued entries durable (a follower's acknowledgements), each with
/// the log writer submission that must be durable before it leaves. The log writer's
/// completion sends them itself, right after the `fdatasync` (one thread hop on the
/// acknowledgement's path instead of two: no detour through the Raft thread). Both threads
/// send under this lock, so messages leave in the order the Raft thread produced them.
/// INVARIANT: `held` is sorted by submission, and every submission in it is above `durable`.
#[derive(Default)]
struct HeldMessages {
    /// The last submission the log writer made durable.
    durable: u64,
    held: std::collections::VecDeque<(u64, Vec<Message>)>,
}

impl HeldMessages {
    /// Records `sequence` durable and sends every message that waited for it (log writer).
    fn release(held: &Mutex<HeldMessages>, sequence: u64, transport: &Transport) {
        let mut state = held.lock().expect("held messages poisoned");
        assert!(
            sequence > state.durable,
            "persists complete in submission order"
        );
        state.durable = sequence;
        let mut out = Vec::new();
        while state.held.front().is_some_and(|(at, _)| *at <= sequence) {
            let (_, messages) = state.held.pop_front().expect("front checked");
            out.extend(messages);
        }
        if !out.is_empty() {
            transport.send_all(out);
        }
    }

    /// Sends `messages` now if submission `sequence` is durable, else holds them until it
    /// is (Raft thread).
    fn send_after(
        held: &Mutex<HeldMessages>,
        sequence: u64,
        messages: Vec<Message>,
        transport: &Transport,
    ) {
        let mut state = held.lock().expect("held messages poisoned");
        if state.durable >= sequence {
            assert!(
                state.held.is_empty(),
                "held messages outlived their persist"
            );
            transport.send_all(messages);
        } else {
            assert!(state.held.back().is_none_or(|(at, _)| *at <= sequence));
            state.held.push_back((sequence, messages));
        }
    }
}

/// The Raft thread's state.
struct Driver {
    raw: RawNode<LogStorage>,
    /// The peers file's content (see [`Node`]) and the directory it is written to.
    book: Arc<Mutex<PeerBook>>,
    data_dir: PathBuf,
    transport: Arc<Transport>,
    replica: Arc<dyn Replica>,
    /// Proposals of this node, by the index of their last entry: the term proposed in and the
    /// engine's token.
    tokens: BTreeMap<u64, (u64, Token)>,
    status: Arc<Mutex<ClusterStatus>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// As leader: the index of the first entry of this term (its no-op).
    lead_from: Option<u64>,
    /// Whether the engine was told it leads.
    leading: bool,
    /// The membership change waiting for an index the sequencer does not use.
    conf_slot: ConfSlot,
    /// Last index handed to the engine.
    applied: u64,
    /// Read batches waiting for their confirmation: batch id to the ticks it was first and
    /// last asked at.
    reads: std::collections::HashMap<u64, (u64, u64)>,
    /// Confirmed read batches (Raft index, batch id) waiting until that index is applied.
    confirmed: Vec<(u64, u64)>,
    batcher: Arc<ReadBatcher>,
    /// Ticks handled so far (read batch expiry).
    ticks: u64,
    /// The wall instant the ticks handled so far reach (see [`ticks_owed`]).
    ticked_through: Instant,
    /// When a stalled pass was last reported, and the stalls since (see `report_stall`).
    stall_reported: Option<Instant>,
    stalls_unreported: u64,
    /// The lease HTTP threads read (lease mode).
    lease: Arc<ReadLease>,
    /// When each heartbeat round started (turns the core's lease into a deadline).
    rounds: RoundClock,
    /// How long a lease lasts from the start of the round it rests on.
    lease_length: Duration,
    /// Snapshots installed from a leader since start.
    snapshots_installed: u64,
    /// Test hook: abort after this install step (see [`INSTALL_CRASH_ENV`]).
    install_crash: Option<String>,
    /// Readies whose persist is in flight, oldest first (at most one per Ready the loop
    /// handled, and the loop drains it before any synchronous step).
    persists: std::collections::VecDeque<Persist>,
    /// Sequence number of the last submission to the log writer.
    submitted: u64,
    /// The index the next queued entry must have to continue the queue.
    persist_next: u64,
    watermark: Arc<PersistWatermark>,
    /// Wakes the Raft thread when a persist completes.
    wake: QueueSender<Event>,
    /// The log writer wakes this thread after a persist whose last entry is at or below
    /// this index (`u64::MAX`: after every persist); see [`Driver::publish_wake_through`].
    wake_through: Arc<std::sync::atomic::AtomicU64>,
    /// Messages produced in this pass, in order, not yet handed to the transport (see
    /// [`Driver::flush_outbox`]).
    outbox: Vec<Message>,
    /// Role, term and membership the published member list was built for, and the tick it
    /// was built at (see [`Driver::publish_status`]).
    members_shape: Option<(Role, u64, super::types::ConfState)>,
    members_tick: Option<u64>,
    /// Messages waiting for the log writer (see [`HeldMessages`]).
    held: Arc<Mutex<HeldMessages>>,
}

/// Closes the Raft thread's event queue when the thread leaves [`Driver::run`], normally or by
/// a panic, and drops what is still queued: like a dropped channel receiver, the ticker and
/// every other sender learn the node is gone, and a queued proposal's token drops, so its
/// submitters learn the engine is closed instead of waiting forever.
struct CloseOnExit<'a>(&'a EventQueue<Event>);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        drop(self.0.close_and_take());
    }
}

/// A step of one pass of the Raft thread, as the stall report names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Tick,
    PeerMessage,
    Proposal,
    MembershipChange,
    ReadIndex,
    LeaderTransfer,
    PersistNotice,
    PeerLost,
    CollectPersisted,
    StoreReady,
    SendToPeers,
    Compact,
    Publish,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Tick => "handling a tick",
            Step::PeerMessage => "stepping a peer's message",
            Step::Proposal => "appending a proposal",
            Step::MembershipChange => "appending a membership change",
            Step::ReadIndex => "starting a read round",
            Step::LeaderTransfer => "starting a leadership transfer",
            Step::PersistNotice => "taking a persist notice",
            Step::PeerLost => "handling a lost peer",
            Step::CollectPersisted => "collecting persisted entries",
            Step::StoreReady => "storing and applying a ready (disk writes, snapshot installs)",
            Step::SendToPeers => "handing messages to the peers",
            Step::Compact => "compacting the log",
            Step::Publish => "publishing leadership and lease",
        }
    }
}

impl Event {
    /// The step handling this event is reported as.
    fn step(&self) -> Step {
        match self {
            Event::Tick { .. } => Step::Tick,
            Event::Message(_) => Step::PeerMessage,
            Event::Propose { .. } => Step::Proposal,
            Event::ConfChange(..) => Step::MembershipChange,
            Event::ReadIndex(_) => Step::ReadIndex,
            Event::TransferLeader(..) => Step::LeaderTransfer,
            Event::Persisted => Step::PersistNotice,
            Event::PeerLost(_) => Step::PeerLost,
        }
    }
}

/// Times the steps of one pass (one `Instant::now` per step), keeping the slowest, so a
/// stall report says where the time went.
struct PassClock {
    began: Instant,
    mark: Instant,
    slowest: Option<(Step, Duration)>,
}

impl PassClock {
    fn new(began: Instant) -> PassClock {
        PassClock {
            began,
            mark: began,
            slowest: None,
        }
    }

    /// Ends `step`, which ran since the previous lap (or the pass's start).
    fn lap(&mut self, step: Step) {
        self.lap_at(step, Instant::now());
    }

    fn lap_at(&mut self, step: Step, now: Instant) {
        let took = now.saturating_duration_since(self.mark);
        self.mark = now;
        if self.slowest.is_none_or(|(_, slowest)| took > slowest) {
            self.slowest = Some((step, took));
        }
    }

    fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    fn slowest(&self) -> Option<(Step, Duration)> {
        self.slowest
    }
}

/// The stall report's line: how long the pass took, the election timeout it exceeded, how
/// many such passes it stands for, and its slowest step.
fn stall_line(
    took: Duration,
    timeout: Duration,
    passes: u64,
    slowest: Option<(Step, Duration)>,
) -> String {
    let slowest = match slowest {
        Some((step, step_took)) => {
            format!(
                "slowest step: {} ms {}",
                step_took.as_millis(),
                step.describe()
            )
        }
        None => "no step timed".to_string(),
    };
    format!(
        "lithair: the raft thread was stalled {} ms in one pass ({slowest}), longer than an \
         election timeout ({} ms): heartbeats and votes waited ({passes} such pass(es) since \
         the last report; a loaded or swapping machine, or a slow disk)",
        took.as_millis(),
        timeout.as_millis(),
    )
}

impl Driver {
    fn run(mut self, inbox: &EventQueue<Event>) {
        let closer = CloseOnExit(inbox);
        let stop_poll = Duration::from_millis(TICK_MS * 5);
        let mut events: Vec<Event> = Vec::new();
        loop {
            let take = |queue: &mut std::collections::VecDeque<Event>| {
                let count = queue.len().min(INBOX_BATCH_MAX);
                events.extend(queue.drain(..count));
            };
            match inbox.recv_with(Some(stop_poll), take) {
                Received::Taken((), _) => {}
                Received::TimedOut => {
                    if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                Received::Closed => break,
            }
            // Before any heartbeat round this pass creates: a lease counts from here.
            let pass_began = Instant::now();
            let mut clock = PassClock::new(pass_began);
            let mut stopped = false;
            for event in events.drain(..) {
                let step = event.step();
                stopped |= !self.handle(event);
                clock.lap(step);
            }
            self.publish_wake_through();
            let mut persisted = self.collect_persisted();
            clock.lap(Step::CollectPersisted);
            while persisted.is_ok() && self.raw.has_ready() {
                let ready = self.raw.ready();
                persisted = self.process(ready);
                clock.lap(Step::StoreReady);
            }
            // Everything this pass produced, one hand-over (and at most one wake-up) per peer.
            self.flush_outbox();
            clock.lap(Step::SendToPeers);
            if let Err(error) = persisted {
                // Without durable storage this node must not vote or acknowledge anything.
                eprintln!("lithair: raft storage failed, stopping the node: {error}");
                break;
            }
            if let Err(error) = self.compact() {
                eprintln!("lithair: raft log compaction failed, stopping the node: {error}");
                stopped = true;
            }
            clock.lap(Step::Compact);
            let status = self.raw.status();
            self.update_leadership(&status);
            self.publish_lease(pass_began);
            clock.lap(Step::Publish);
            self.report_stall(&clock);
            self.publish_status(&status);
            if stopped {
                break;
            }
        }
        drop(closer);
        self.step_down();
    }

    /// Handles one event; `false` when the node should stop.
    fn handle(&mut self, event: Event) -> bool {
        // Before any step that may answer a read from the lease (a ReadIndex of this node or
        // of a follower): the wall time since the last tick, as the core counts it.
        self.owe_ticks();
        match event {
            Event::Tick {
                wall_ticks,
                through,
            } => {
                self.ticked_through = self.ticked_through.max(through);
                self.tick_core(wall_ticks);
                self.ticks += 1;
                self.expire_reads();
                // The sequencer may have gone idle since it was asked for an index.
                let (raw, replica) = (&mut self.raw, &*self.replica);
                self.conf_slot.retry(raw, replica, self.leading);
                self.promote_learners();
                // The ticker sends one last tick after `stop` so this check runs.
                !self.stop.load(std::sync::atomic::Ordering::SeqCst)
            }
            Event::Message(message) => {
                self.raw.step(message);
                true
            }
            Event::Propose {
                term,
                slot,
                first_index,
                entries,
                token,
            } => {
                self.propose(term, slot, first_index, entries, token);
                true
            }
            Event::ConfChange(change, reply) => {
                let (raw, replica) = (&mut self.raw, &*self.replica);
                self.conf_slot
                    .request(raw, replica, self.leading, change, Some(reply));
                true
            }
            Event::ReadIndex(batch) => {
                // Closed to new readers only now: those that joined while this event waited
                // in the inbox share its round.
                if self.batcher.seal(batch) {
                    self.read_index(batch);
                }
                true
            }
            Event::TransferLeader(to, reply) => {
                let outcome = self.raw.transfer_leader(to).map_err(|e| e.to_string());
                let _ = reply.send(outcome);
                true
            }
            // The loop collects completed persists after every batch of events.
            Event::Persisted => true,
            Event::PeerLost(peer) => {
                if self.raw.leader_unreachable(peer) {
                    eprintln!("lithair: lost the connection from leader {peer}; campaigning early");
                }
                true
            }
        }
    }

    /// Gives the core the ticks [`core_ticks`] counts for a ticker tick; a leader that
    /// steps down on the way counts no more (a follower never counts a burst).
    /// Tells the core the ticks of wall time gone by since the last tick it was given.
    fn owe_ticks(&mut self) {
        let owed = ticks_owed(self.ticked_through, Instant::now());
        self.raw.set_ticks_owed(owed);
    }

    fn tick_core(&mut self, wall_ticks: u32) {
        let leader = self.raw.role() == Role::Leader;
        for _ in 0..core_ticks(leader, wall_ticks) {
            if leader && self.raw.role() != Role::Leader {
                break;
            }
            self.raw.tick();
        }
    }

    /// As leader, proposes `AddVoter` for the first learner that lags the last index by at
    /// most `LEARNER_PROMOTE_LAG_ENTRIES_MAX` entries, through the same wait for an index as
    /// an operator's change. One change at a time: the core refuses a second while one is
    /// uncommitted, this one while another waits for its index, and this runs again on the
    /// next tick.
    fn promote_learners(&mut self) {
        let status = self.raw.status();
        if status.role != Role::Leader
            || status.conf.learners.is_empty()
            || self.conf_slot.is_pending()
        {
            return;
        }
        let caught_up = status.conf.learners.iter().copied().find(|learner| {
            status
                .followers
                .iter()
                .find(|follower| follower.id == *learner)
                .is_some_and(|follower| {
                    follower.match_index > 0
                        && status.last_index.saturating_sub(follower.match_index)
                            <= LEARNER_PROMOTE_LAG_ENTRIES_MAX
                })
        });
        if let Some(learner) = caught_up {
            // Refused while another change is pending or before this term's no-op commits.
            let (raw, replica) = (&mut self.raw, &*self.replica);
            let change = ConfChange::AddVoter(learner);
            self.conf_slot
                .request(raw, replica, self.leading, change, None);
        }
    }

    fn read_index(&mut self, batch: u64) {
        match self.raw.read_index(batch.to_le_bytes().to_vec()) {
            Ok(()) => {
                let first = self
                    .reads
                    .get(&batch)
                    .map_or(self.ticks, |(first, _)| *first);
                self.reads.insert(batch, (first, self.ticks));
            }
            Err(e) => {
                self.reads.remove(&batch);
                self.batcher.complete(batch, Err(e.to_string()));
            }
        }
    }

    /// Asks again for read batches unconfirmed for `READ_BATCH_RETRY_TICKS`, and fails those
    /// unconfirmed for `READ_BATCH_EXPIRY_TICKS` (their readers retry).
    fn expire_reads(&mut self) {
        let now = self.ticks;
        let batcher = &self.batcher;
        let mut again = Vec::new();
        self.reads.retain(|batch, (first, last)| {
            if batcher.settled(*batch) {
                return false; // A peer reader delivered its answer (see `deliver_messages`).
            }
            let alive = now - *first < READ_BATCH_EXPIRY_TICKS;
            if !alive {
                batcher.complete(*batch, Err("no leader confirmed the read".to_string()));
            } else if now - *last >= READ_BATCH_RETRY_TICKS {
                again.push(*batch);
            }
            alive
        });
        for batch in again {
            self.read_index(batch);
        }
    }

    /// Answers confirmed read batches whose index is handed to the engine (Raft indexes are
    /// event indexes: the reader waits until the engine applied the read index).
    fn answer_reads(&mut self) {
        let applied = self.applied;
        let batcher = &self.batcher;
        self.confirmed.retain(|(index, batch)| {
            if *index > applied {
                return true;
            }
            batcher.complete(*batch, Ok(*index));
            false
        });
    }

    /// Publishes the lease for HTTP threads: the core's answer (a lease-mode leader that
    /// committed in its term and holds a quorum-acknowledged round), as a deadline counted
    /// from an instant before that round was created. `pass_began` precedes every round this
    /// pass created.
    fn publish_lease(&mut self, pass_began: Instant) {
        self.rounds.note(self.raw.read_round(), pass_began);
        self.owe_ticks();
        let deadline = self
            .raw
            .lease_read()
            .and_then(|read| self.rounds.deadline(read.round, self.lease_length));
        if deadline.is_some() {
            self.lease.publish_commit(self.raw.commit_index());
        }
        self.lease.publish_deadline(deadline);
    }

    /// Proposes a batch of the sequencer. Its envelopes carry indexes the sequencer assigned,
    /// so they must be exactly the indexes the log gives them; otherwise (an entry the
    /// sequencer did not know about took an index, or a batch before it was abandoned) the
    /// batch is abandoned and the sequencer continues from the log's real end. A batch after
    /// an index its sequencer left free (`slot`) first has that index filled: with the
    /// membership change waiting for it, or a no-op.
    fn propose(
        &mut self,
        term: u64,
        slot: Option<u64>,
        first_index: u64,
        entries: Vec<Arc<[u8]>>,
        token: Token,
    ) {
        if !self.leading || term != self.raw.term() || entries.is_empty() {
            self.replica.abandon(token);
            return;
        }
        assert!(
            slot.is_none_or(|slot| slot + 1 == first_index),
            "a free index {slot:?} is just before its batch at {first_index}"
        );
        let next_index = self.raw.last_index() + 1;
        if slot.unwrap_or(first_index) != next_index {
            self.replica.set_next_index(next_index);
            self.replica.abandon(token);
            return;
        }
        if slot.is_some() && !self.conf_slot.fill(&mut self.raw, next_index) {
            // Refused even a no-op (a leadership transfer began): so is the batch.
            self.replica.set_next_index(next_index);
            self.replica.abandon(token);
            return;
        }
        let count = entries.len() as u64;
        match self.raw.propose(entries) {
            Ok(last_index) => {
                assert_eq!(
                    last_index,
                    first_index + count - 1,
                    "a proposal did not get consecutive indexes"
                );
                self.tokens.insert(last_index, (term, token));
            }
            Err(_) => self.replica.abandon(token),
        }
    }

    /// Forgets removed member `id`'s address, in the peers file too, and stops sending to it,
    /// as its removal applies: in log order on every node, so before a later re-add of the
    /// same id. A node that rejoins after losing its data (from wherever it now listens) is
    /// then a new peer whose address every node learns, instead of one they dial at its old
    /// place. An id whose address is learnt again later (its re-add replayed at a restart)
    /// comes back through the peer resolver, as any member without an address.
    fn forget_peer(&self, id: NodeId) {
        let mut book = self.book.lock().expect("peer book poisoned");
        if id == book.id || !book.knows(id) {
            return;
        }
        self.transport.remove_peer(id);
        book.peers.retain(|(known, _)| *known != id);
        if let Err(error) = book.write(&self.data_dir) {
            // The file keeps the old address: a restart dials it again, which only costs
            // failed dials; the removal itself is in the log.
            eprintln!("lithair: cannot record the removal of node {id} in the peers file: {error}");
        }
    }

    /// Hands committed entries to the engine, each proposal of this node with its token
    /// (attached to the run ending at the proposal's last entry).
    fn apply_committed(&mut self, committed: &[super::types::Entry]) {
        let Some(first) = committed.first() else {
            return;
        };
        let mut run: Vec<Arc<[u8]>> = Vec::with_capacity(committed.len());
        let mut run_first = first.index;
        for entry in committed {
            run.push(match entry.kind {
                EntryKind::Normal => entry.data.shared(),
                EntryKind::ConfChange => {
                    if let Some(ConfChange::Remove(removed)) = ConfChange::decode(&entry.data) {
                        self.forget_peer(removed);
                    }
                    Arc::from(&[][..])
                }
            });
            let token = match self.tokens.remove(&entry.index) {
                Some((term, token)) if term == entry.term => Some(token),
                Some((_, token)) => {
                    // Replaced by another leader's entry: not what the submitters asked for.
                    self.replica.abandon(token);
                    None
                }
                None => None,
            };
            if token.is_some() {
                self.replica.apply(run_first, &run, token);
                run.clear();
                run_first = entry.index + 1;
            }
            self.applied = entry.index;
        }
        if !run.is_empty() {
            self.replica.apply(run_first, &run, None);
        }
    }

    /// Handles one Ready in the order `Ready` documents. Its entries go to the log writer
    /// without waiting (the Raft thread keeps stepping acknowledgements and heartbeats while
    /// the disk works); the messages that promise them durable wait in `persists`. A Ready
    /// that truncates, installs a snapshot, changes the term or vote, or commits past a
    /// membership change first waits for everything queued, then is handled synchronously.
    fn process(&mut self, mut ready: Ready) -> io::Result<()> {
        if ready
            .soft_state
            .is_some_and(|soft| soft.role != Role::Leader)
        {
            // Before any message of this Ready leaves (a vote for another node among them):
            // a node that stepped down serves no lease read from its old lease, even for the
            // rest of this pass (`publish_lease` at its end would withdraw it only then).
            self.lease.publish_deadline(None);
        }
        // Before anything below can reveal the commit index (lease reads rely on it).
        self.lease.publish_commit(self.raw.commit_index());
        self.outbox.append(&mut ready.messages);
        // Before the acknowledgements that count these bytes as received leave.
        let chunks = std::mem::take(&mut ready.snapshot_chunks);
        self.raw.storage_mut().store_snapshot_chunks(&chunks)?;
        let continues = ready
            .entries
            .first()
            .is_none_or(|first| first.index == self.persist_next);
        let hard_state_durable = !ready.commit_passed_conf_change
            && ready
                .hard_state
                .is_none_or(|hard_state| !self.raw.storage().changes_term_or_vote(hard_state));
        if ready.snapshot.is_none() && continues && hard_state_durable {
            return self.process_async(ready);
        }
        // The peers get to work before this thread waits for the disk.
        self.flush_outbox();
        self.drain_persists()?;
        self.persist_now(&mut ready)?;
        // At once: a later Ready of this pass may hold messages that the log writer sends
        // as soon as they are durable; these must leave before them.
        self.outbox.append(&mut ready.persisted_messages);
        self.flush_outbox();
        self.finish_ready(ready)?;
        self.raw.advance();
        self.persist_next = self.raw.storage().last_index() + 1;
        Ok(())
    }

    /// The common case of [`Driver::process`]: queue the entries, apply what is committed
    /// and durable, and hold the messages that depend on the queued entries.
    fn process_async(&mut self, mut ready: Ready) -> io::Result<()> {
        let entries = std::mem::take(&mut ready.entries);
        if let Some(last) = entries.last() {
            self.submitted += 1;
            self.persist_next = last.index + 1;
            let (sequence, watermark, wake, held, transport) = (
                self.submitted,
                Arc::clone(&self.watermark),
                self.wake.clone(),
                Arc::clone(&self.held),
                Arc::downgrade(&self.transport),
            );
            let (last_index, wake_through) = (last.index, Arc::clone(&self.wake_through));
            let done = Box::new(move |result: Result<(), String>| {
                // Before the watermark: once the Raft thread sees it raised, everything
                // that waited for it has left (so nothing it sends later overtakes it).
                if let (Ok(()), Some(transport)) = (&result, transport.upgrade()) {
                    HeldMessages::release(&held, sequence, &transport);
                }
                let failed = result.is_err();
                watermark.raise(sequence, result);
                // Pairs with the fence of `publish_wake_through`: either that pass's
                // `collect_persisted` sees this watermark, or this load sees its index.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                let through = wake_through.load(std::sync::atomic::Ordering::SeqCst);
                if failed || last_index <= through {
                    let _ = wake.send(Event::Persisted);
                }
            });
            self.raw.storage().submit(&entries, done);
        }
        if let Some(hard_state) = ready.hard_state {
            // Only the commit index changed: recorded in memory, no file write.
            self.raw.storage_mut().set_hard_state(hard_state)?;
        }
        let messages = std::mem::take(&mut ready.persisted_messages);
        self.finish_ready(ready)?;
        let last = self.raw.advance_append();
        assert_eq!(last, entries.last().map(|e| (e.index, e.term)));
        if !messages.is_empty() {
            // Everything queued before them must be durable (the latest submission).
            HeldMessages::send_after(&self.held, self.submitted, messages, &self.transport);
        }
        if !entries.is_empty() {
            self.persists.push_back(Persist {
                sequence: self.submitted,
                entries,
                last,
            });
        }
        Ok(())
    }

    /// The synchronous part of [`Driver::process`]: snapshot, entries (truncating the
    /// suffix they replace), hard state, each durable on return.
    fn persist_now(&mut self, ready: &mut Ready) -> io::Result<()> {
        if let Some(snapshot) = &ready.snapshot {
            let crash = self.install_crash.clone();
            let after = move |step: InstallStep| {
                let name = match step {
                    InstallStep::File => "file",
                    InstallStep::Record => "record",
                    InstallStep::Log => "log",
                };
                if crash.as_deref() == Some(name) {
                    eprintln!("lithair: test hook: crashing after install step `{name}`");
                    std::process::abort();
                }
            };
            self.raw.storage_mut().install(snapshot, &after)?;
        }
        let storage = self.raw.storage_mut();
        storage.append(&ready.entries)?;
        match ready.hard_state {
            // Its commit passed a membership change: durable before anything else (see
            // `Ready::commit_passed_conf_change`). Everything queued is durable by now, and
            // this Ready's entries too, so the file never names a commit the log lacks.
            Some(hard_state) if ready.commit_passed_conf_change => {
                storage.set_hard_state_durably(hard_state)?;
            }
            Some(hard_state) => storage.set_hard_state(hard_state)?,
            None => {}
        }
        Ok(())
    }

    /// Steps 4 and 5 of a Ready: hand a received snapshot to the engine (which restores it
    /// on its applier, in turn), hand committed entries to the engine, and note confirmed
    /// reads.
    fn finish_ready(&mut self, mut ready: Ready) -> io::Result<()> {
        if let Some(snapshot) = ready.snapshot.take() {
            let index = snapshot.meta.index;
            // Queued for the engine's applier, which decodes it after the entries handed to
            // it before and before those handed after: this thread does not wait for the
            // decode (seconds for a large state), so it goes on answering heartbeats, appends
            // and votes. `applied` counts what is handed to the engine: reads confirmed at an
            // index wait for the engine's own applied index (`AppliedWatch`), which reaches
            // `index` only once the snapshot's state is in place.
            self.replica.restore(index).map_err(io::Error::other)?;
            self.applied = index;
            self.snapshots_installed += 1;
            // Removals the snapshot covers are entries this node never applies: forget
            // their ids' addresses as `apply_committed` would have. (A member added after
            // the snapshot and forgotten here is learnt again, as any member without one.)
            let conf = &snapshot.meta.conf;
            let known: Vec<NodeId> = {
                let book = self.book.lock().expect("peer book poisoned");
                book.peers.iter().map(|(id, _)| *id).collect()
            };
            for id in known {
                if !conf.voters.contains(&id) && !conf.learners.contains(&id) {
                    self.forget_peer(id);
                }
            }
            eprintln!(
                "lithair: installed a snapshot from the leader at index {index} \
                 (the engine's applier loads it)"
            );
        }
        let committed = std::mem::take(&mut ready.committed_entries);
        self.apply_committed(&committed);
        for read in ready.read_states.drain(..) {
            let Ok(bytes) = <[u8; 8]>::try_from(read.ctx.as_slice()) else {
                continue;
            };
            let batch = u64::from_le_bytes(bytes);
            if self.reads.remove(&batch).is_some() {
                self.confirmed.push((read.index, batch));
            }
        }
        self.answer_reads();
        Ok(())
    }

    /// Tells the log writer which completed persists need this thread at once (before the
    /// pass collects them). A leader counts its own copy toward commits: every persist. A
    /// follower only for entries it already knows committed (applying them waits for it);
    /// its acknowledgement left from the log writer, so the rest waits for the next wake-up,
    /// which the leader's next Append (carrying the commit index) or a tick brings: one
    /// wake-up of this thread saved per fsync. Delaying `persisted` is always safe.
    fn publish_wake_through(&self) {
        let through = if self.raw.role() == Role::Follower {
            self.raw.commit_index()
        } else {
            u64::MAX
        };
        self.wake_through
            .store(through, std::sync::atomic::Ordering::SeqCst);
        // Pairs with the log writer's fence (see `process_async`).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Exposes the entries the log writer made durable to the core (oldest Ready first);
    /// the messages that waited for them already left (see [`HeldMessages`]).
    fn collect_persisted(&mut self) -> io::Result<()> {
        let durable = self.watermark.durable().map_err(io::Error::other)?;
        while self.persists.front().is_some_and(|p| p.sequence <= durable) {
            let persist = self.persists.pop_front().expect("front checked");
            self.raw.storage_mut().mirror(&persist.entries);
            if let Some((index, term)) = persist.last {
                self.raw.persisted(index, term);
            }
        }
        Ok(())
    }

    /// Hands the messages produced so far to the transport in one call: each peer's writer
    /// is woken once for all of them and sends them with one `write`.
    fn flush_outbox(&mut self) {
        if !self.outbox.is_empty() {
            self.transport.send_all(self.outbox.drain(..));
        }
    }

    /// Waits until everything queued is durable, then collects it.
    fn drain_persists(&mut self) -> io::Result<()> {
        self.watermark
            .wait(self.submitted)
            .map_err(io::Error::other)?;
        self.collect_persisted()?;
        assert!(
            self.persists.is_empty(),
            "a drained persist is still queued"
        );
        Ok(())
    }

    /// Compacts the log to the engine's newest durable snapshot once it is applied here
    /// (so never above the commit index).
    fn compact(&mut self) -> io::Result<()> {
        // The record of an earlier compaction, written off this thread, may have failed.
        if let Some(failure) = self.raw.storage().take_compaction_failure() {
            return Err(failure);
        }
        let index = self.replica.snapshot_index();
        if index <= self.raw.storage().snapshot_index() || index > self.applied {
            return Ok(());
        }
        self.raw.storage_mut().compact(index)
    }

    /// Tells the engine when it may sequence: only as leader, and only once every entry
    /// before this term's first entry is handed to it (so its copy starts from all of them).
    fn update_leadership(&mut self, status: &Status) {
        self.lease.publish_term(status.term);
        if status.role != Role::Leader {
            self.conf_slot.lose_leadership(status.leader_id);
            if self.lead_from.is_some() {
                self.step_down();
            }
            return;
        }
        let lead_from = *self.lead_from.get_or_insert_with(|| {
            // The first entry of our term is the no-op appended on election; find it.
            let mut index = status.last_index;
            while index > 1 && self.raw.term_of(index - 1) == Some(status.term) {
                index -= 1;
            }
            index
        });
        if !self.leading && self.applied >= lead_from {
            eprintln!(
                "lithair: node {} leads term {} (from log index {lead_from})",
                status.id, status.term
            );
            self.leading = true;
            self.replica.set_next_index(self.raw.last_index() + 1);
            self.replica.set_leader(Some(status.term));
        }
    }

    /// Says on stderr when one pass of the Raft thread took longer than an election timeout:
    /// heartbeats and votes waited that long, so the other nodes may have elected (a leader
    /// change otherwise left no trace of why). At most one line per `STALL_REPORT_EVERY_S`,
    /// with the count of the passes it stands for, and the slowest step of this pass (a disk
    /// that stalls shows as storing, a starved thread as a pass no step of which was slow).
    fn report_stall(&mut self, clock: &PassClock) {
        let timeout = Duration::from_millis(u64::from(self.raw.election_ticks()) * TICK_MS);
        let took = clock.elapsed();
        if took <= timeout {
            return;
        }
        self.stalls_unreported += 1;
        let due = self
            .stall_reported
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(STALL_REPORT_EVERY_S));
        if due {
            eprintln!(
                "{}",
                stall_line(took, timeout, self.stalls_unreported, clock.slowest())
            );
            self.stall_reported = Some(Instant::now());
            self.stalls_unreported = 0;
        }
    }

    fn step_down(&mut self) {
        if self.lead_from.is_some() {
            let status = self.raw.status();
            eprintln!(
                "lithair: node {} no longer leads (term {}, now {}, leader {})",
                status.id,
                status.term,
                role_name(status.role),
                status.leader_id
            );
        }
        self.lease.publish_deadline(None);
        self.lead_from = None;
        if self.leading {
            self.leading = false;
            self.replica.set_leader(None);
        }
        // They may still commit under a later leader; the clients retry (idempotency keys
        // make that safe) and learn the outcome then.
        for (_, (_, token)) in std::mem::take(&mut self.tokens) {
            self.replica.abandon(token);
        }
        // Reads in flight may never be confirmed now; their callers retry.
        for (batch, _) in std::mem::take(&mut self.reads) {
            let outcome = Err("leadership changed during the read".to_string());
            self.batcher.complete(batch, outcome);
        }
    }

    /// Publishes the status HTTP threads read. The indexes are fresh every pass; the member
    /// list (string copies and transport look-ups) is rebuilt when the role, term or
    /// membership changed and otherwise once per tick, so its match indexes and lags lag by
    /// at most a tick (a pass runs per batch of events: thousands a second under load).
    fn publish_status(&mut self, status: &Status) {
        let same_shape = self
            .members_shape
            .as_ref()
            .is_some_and(|(role, term, conf)| {
                *role == status.role && *term == status.term && *conf == status.conf
            });
        let rebuild = !same_shape || self.members_tick != Some(self.ticks);
        let members = rebuild.then(|| self.member_statuses(status));
        if rebuild {
            self.members_shape = Some((status.role, status.term, status.conf.clone()));
            self.members_tick = Some(self.ticks);
        }
        let mut published = self.status.lock().expect("status poisoned");
        published.id = status.id;
        published.role = role_name(status.role);
        published.term = status.term;
        published.leader = status.leader_id;
        published.commit = status.commit;
        published.applied = self.applied;
        published.last_index = self.raw.storage().last_index();
        published.snapshot_index = self.raw.storage().snapshot_index();
        published.snapshots_installed = self.snapshots_installed;
        published.snapshot_sends_restarted = status.snapshot_sends_restarted;
        let replaced = members.map(|members| std::mem::replace(&mut published.members, members));
        drop(published);
        drop(replaced); // Freed outside the lock.
    }

    fn member_statuses(&self, status: &Status) -> Vec<MemberStatus> {
        let mut members: Vec<MemberStatus> = Vec::new();
        let all = status.conf.voters.iter().map(|&id| (id, true));
        let learners = status.conf.learners.iter().map(|&id| (id, false));
        let is_leader = status.role == Role::Leader;
        for (id, voter) in all.chain(learners) {
            let follower = status.followers.iter().find(|follower| follower.id == id);
            let match_index = match follower {
                _ if id == status.id => status.last_index,
                Some(follower) => follower.match_index,
                None => 0,
            };
            members.push(MemberStatus {
                id,
                voter,
                match_index: is_leader.then_some(match_index),
                lag: is_leader.then(|| status.last_index.saturating_sub(match_index)),
                replication: follower.map(|follower| follower.replication.name()),
                last_heard_ms: follower.map(|follower| follower.silent_ticks * TICK_MS),
                http_addr: self.transport.http_addr(id),
                peer_addr: self.transport.peer_addr(id),
            });
        }
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Envelope;
    use std::borrow::Cow;

    fn event(index: u64, request_id: u64) -> Vec<u8> {
        let envelope = Envelope {
            index,
            timestamp_ms: 1,
            event_type: Cow::Borrowed("E"),
            schema_version: 1,
            request_id,
            idempotency_key: None,
            actor: None,
            correlation_id: None,
            request_fingerprint: None,
        };
        let mut out = Vec::new();
        crate::engine::encode_entry(&mut out, &envelope, |_| {});
        out
    }

    /// What a ticker does when it wakes at each of `wakes_ms` (offsets from its start): the
    /// ticks it sends, as (offset, wall ticks it stands for).
    fn ticks_sent(wakes_ms: &[u64]) -> Vec<(u64, u32)> {
        let start = Instant::now();
        let mut schedule = TickSchedule::new(start);
        let mut sent = Vec::new();
        for &wake in wakes_ms {
            let now = start + Duration::from_millis(wake);
            if schedule.due() > now {
                continue; // Still asleep: `run_ticker` sleeps until `due`.
            }
            sent.push((wake, schedule.send_at(now)));
        }
        sent
    }

    #[test]
    fn a_late_ticker_sends_one_tick_a_follower_counts_once_and_a_leader_in_full() {
        // On time: one tick every TICK_MS, each standing for one tick of wall time.
        let on_time: Vec<u64> = (1..=5).map(|k| k * TICK_MS).collect();
        let expected: Vec<(u64, u32)> = on_time.iter().map(|&at| (at, 1)).collect();
        assert_eq!(ticks_sent(&on_time), expected);
        // Stalled for five ticks, then polled every millisecond: a catch-up schedule would
        // send five ticks within a few milliseconds, each counted by a follower as a tick
        // of a leader's lease gone by.
        let stall_end = 6 * TICK_MS + TICK_MS / 2;
        let wakes: Vec<u64> = (stall_end..=stall_end + 3 * TICK_MS).collect();
        let sent = ticks_sent(&wakes);
        assert_eq!(sent.len(), 4, "the ticker goes on after a stall: {sent:?}");
        for pair in sent.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= TICK_MS,
                "ticks {} and {} ms after start are less than a tick apart",
                pair[0].0,
                pair[1].0
            );
        }
        // The late tick stands for the six ticks of wall time gone by; a leader counts them
        // all (its lease never outlasts the wall clock), a follower one.
        assert_eq!(sent[0], (stall_end, 6));
        assert_eq!(core_ticks(true, sent[0].1), 6);
        assert_eq!(core_ticks(false, sent[0].1), 1);
        // Then a leader's count stays with the wall clock.
        let leader_total: u32 = sent.iter().map(|&(_, w)| core_ticks(true, w)).sum();
        let last = sent[sent.len() - 1].0;
        assert_eq!(u64::from(leader_total), last / TICK_MS);
        assert_eq!(
            core_ticks(false, 0),
            0,
            "the stopping wake-up counts nothing"
        );
    }

    #[test]
    fn a_pass_clock_keeps_the_slowest_step_and_the_stall_line_names_it() {
        let began = Instant::now();
        let mut clock = PassClock::new(began);
        let ms = Duration::from_millis;
        clock.lap_at(Step::Tick, began + ms(2));
        clock.lap_at(Step::StoreReady, began + ms(302));
        clock.lap_at(Step::SendToPeers, began + ms(310));
        assert_eq!(clock.slowest(), Some((Step::StoreReady, ms(300))));
        let line = stall_line(ms(310), ms(200), 3, clock.slowest());
        assert_eq!(
            line,
            "lithair: the raft thread was stalled 310 ms in one pass (slowest step: 300 ms \
             storing and applying a ready (disk writes, snapshot installs)), longer than an \
             election timeout (200 ms): heartbeats and votes waited (3 such pass(es) since the \
             last report; a loaded or swapping machine, or a slow disk)"
        );
        assert!(!line.contains("  "), "one space between words: {line}");
    }

    #[test]
    fn the_ticks_a_late_ticker_owes_are_the_wall_time_since_the_last_tick_it_sent() {
        let start = Instant::now();
        let tick = Duration::from_millis(TICK_MS);
        let mut schedule = TickSchedule::new(start);
        schedule.send_at(start + tick * 2 + tick / 2);
        assert_eq!(schedule.covered(), start + tick * 2);
        // On time: less than a tick since the last one, nothing owed.
        assert_eq!(
            ticks_owed(schedule.covered(), start + tick * 2 + tick / 2),
            0
        );
        // The ticker stalls: seven and a half ticks later it has sent nothing, and the core
        // is owed the seven whole ticks of wall time gone by.
        assert_eq!(
            ticks_owed(schedule.covered(), start + tick * 9 + tick / 2),
            7
        );
        // The late tick stands for those seven and reaches where the wall clock is.
        assert_eq!(schedule.send_at(start + tick * 9 + tick / 2), 7);
        assert_eq!(schedule.covered(), start + tick * 9);
        assert_eq!(
            ticks_owed(schedule.covered(), start + tick * 9 + tick / 2),
            0
        );
        // A clock reading before the covered instant (taken earlier by another thread) owes
        // nothing rather than underflowing.
        assert_eq!(ticks_owed(schedule.covered(), start), 0);
    }

    #[test]
    fn entries_of_one_request_are_one_command() {
        assert!(same_command(&event(11, 2), &event(12, 2)));
        assert!(!same_command(&event(11, 2), &event(12, 3)));
        assert!(!same_command(&event(11, 0), &event(12, 0)));
        assert!(!same_command(&[], &event(12, 1)));
        assert!(!same_command(&[1, 2, 3], &[1, 2, 3]));
    }

    #[test]
    fn peer_books_round_trip_and_reject_malformed_files() {
        let book = PeerBook {
            id: 4,
            peer_addr: "127.0.0.1:9084".into(),
            peers: vec![(1, "127.0.0.1:9081".into()), (2, "127.0.0.1:9082".into())],
        };
        assert_eq!(PeerBook::decode(&book.encode()), Some(book));
        for bad in [
            "",
            "id 0\npeer_addr a\n",
            "id 4\n",
            "id x\npeer_addr a\n",
            "id 4\npeer_addr a\npeer 1\n",
            "id 4\npeer_addr a\npeer 1 b c\n",
            "id 4\npeer_addr a\nother 1\n",
        ] {
            assert_eq!(PeerBook::decode(bad), None, "{bad:?}");
        }
    }
}
