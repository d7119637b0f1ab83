//! `Node`: the driver that runs a `RawNode` on a thread, ticks it from a timer, steps peer
//! messages and proposals into it, and handles each `Ready` in the documented order: send,
//! persist (fsync), send what depended on the persist, apply committed entries, advance.
//!
//! Owns: the Raft thread, the proposal tokens of the entries this node proposed, leadership
//! hand-over to the engine, and the status snapshot served by `GET /_lithair/cluster`.
//! Must not: block on the network (the transport queues), or apply an entry before it is
//! committed.
//!
//! Architecture invariant: only the Raft thread touches the `RawNode` and its storage; every
//! other thread talks to it through the inbox.

use super::config::Config;
use super::raw_node::{RawNode, Ready};
use super::storage::Storage;
use super::storage_log::{InstallStep, LogStorage};
use super::transport::{Deliver, Transport, TransportConfig};
use super::types::{ConfChange, EntryKind, Message, NodeId, Role, NODE_NONE};
use crate::engine::{Proposer, Replica, Token};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Length of one Raft tick, in milliseconds (election after 10-20 ticks, heartbeat every tick).
pub const TICK_MS: u64 = 20;
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
    /// The shared cluster secret.
    pub secret: Vec<u8>,
    /// The data directory (the Raft log is the engine's log in its `log` folder).
    pub data_dir: PathBuf,
}

/// Something for the Raft thread to do.
enum Event {
    Tick,
    Message(Message),
    Propose {
        term: u64,
        first_index: u64,
        entries: Vec<Vec<u8>>,
        token: Token,
    },
    TransferLeader(NodeId, Sender<Result<(), String>>),
    /// A single-server membership change (leader only).
    ConfChange(ConfChange, Sender<Result<u64, String>>),
    /// A linearizable read: answered with the event index the engine must reach first.
    ReadIndex(Sender<Result<u64, String>>),
}

/// Longest wait for a linearizable read's confirmation, in milliseconds.
pub const READ_INDEX_TIMEOUT_MS: u64 = 2000;

/// The inbox end of a node that does not run yet: create it first, give its proposer to the
/// engine, then start the node with it.
pub struct Inbox {
    sender: Sender<Event>,
    receiver: Receiver<Event>,
}

impl Inbox {
    /// A new inbox.
    pub fn new() -> Inbox {
        let (sender, receiver) = mpsc::channel();
        Inbox { sender, receiver }
    }

    /// The proposer the engine's sequencer hands its batches to.
    pub fn proposer(&self) -> Arc<dyn Proposer> {
        Arc::new(InboxProposer {
            sender: Mutex::new(self.sender.clone()),
        })
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

struct InboxProposer {
    sender: Mutex<Sender<Event>>,
}

impl Proposer for InboxProposer {
    fn propose(&self, term: u64, first_index: u64, entries: Vec<Vec<u8>>, token: Token) {
        let sender = self.sender.lock().expect("proposer poisoned");
        // If the node is gone the token drops, and its submitters learn the engine is closed.
        let _ = sender.send(Event::Propose {
            term,
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
    /// Leader only: the highest index known replicated on it.
    pub match_index: u64,
    /// Leader only: entries it lags behind the leader's last index.
    pub lag: u64,
    /// Its HTTP address, when known.
    pub http_addr: Option<String>,
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
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// A running node. Dropping it stops the Raft thread, the timer and the transport.
pub struct Node {
    inbox: Sender<Event>,
    transport: Arc<Transport>,
    status: Arc<Mutex<ClusterStatus>>,
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
        let voters: Vec<NodeId> = config.members.iter().map(|(id, _)| *id).collect();
        if !voters.contains(&config.id) {
            let message = format!("node {} is not in the cluster map", config.id);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let storage = LogStorage::open(log, &config.data_dir, &voters)?;
        let raft_config = raft_config(config.id, &*replica, &storage)?;
        let applied = raft_config.applied;
        let install_crash = std::env::var(INSTALL_CRASH_ENV).ok();
        let raw = RawNode::new(raft_config, storage)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let sender = inbox.sender.clone();
        let deliver: Deliver = Arc::new(move |message| {
            let _ = sender.send(Event::Message(message));
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
            },
            deliver,
        )?);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let status = Arc::new(Mutex::new(ClusterStatus::default()));
        let ticker = {
            let (sender, stop) = (inbox.sender.clone(), Arc::clone(&stop));
            thread::Builder::new()
                .name("lithair-raft-tick".into())
                .spawn(move || run_ticker(&sender, &stop))?
        };
        let driver = Driver {
            raw,
            transport: Arc::clone(&transport),
            replica,
            tokens: BTreeMap::new(),
            status: Arc::clone(&status),
            stop: Arc::clone(&stop),
            lead_from: None,
            leading: false,
            applied,
            reads: std::collections::HashMap::new(),
            confirmed: Vec::new(),
            next_read: 0,
            snapshots_installed: 0,
            install_crash,
        };
        let receiver = inbox.receiver;
        let raft = thread::Builder::new()
            .name("lithair-raft".into())
            .spawn(move || driver.run(&receiver))?;
        Ok(Node {
            inbox: inbox.sender,
            transport,
            status,
            stop,
            threads: vec![ticker, raft],
        })
    }

    /// The latest status.
    pub fn status(&self) -> ClusterStatus {
        self.status.lock().expect("status poisoned").clone()
    }

    /// The HTTP address of `id` (learned in the peer handshake), if known.
    pub fn http_addr(&self, id: NodeId) -> Option<String> {
        self.transport.http_addr(id)
    }

    /// Confirms with the leader (ReadIndex, batched with other reads) that this node has
    /// every write committed before now, and returns the engine event index to wait for
    /// before reading locally.
    ///
    /// # Errors
    /// No leader known, the read queue is full, or no confirmation in time.
    pub fn read_index(&self) -> Result<u64, String> {
        let (reply, outcome) = mpsc::channel();
        self.inbox
            .send(Event::ReadIndex(reply))
            .map_err(|_| "the node is stopping".to_string())?;
        match outcome.recv_timeout(Duration::from_millis(READ_INDEX_TIMEOUT_MS)) {
            Ok(result) => result,
            Err(_) => Err("the read was not confirmed by a leader in time".to_string()),
        }
    }

    /// Proposes a membership change (this node must lead); returns the entry's index. The
    /// change takes effect when committed; a leader that removes itself then steps down.
    ///
    /// # Errors
    /// Not the leader, another change pending, or no voter would remain.
    pub fn propose_conf_change(&self, change: ConfChange) -> Result<u64, String> {
        let (reply, outcome) = mpsc::channel();
        self.inbox
            .send(Event::ConfChange(change, reply))
            .map_err(|_| "the node is stopping".to_string())?;
        outcome
            .recv()
            .map_err(|_| "the node is stopping".to_string())?
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
        // The ticker exits on `stop`, then drops its sender; the Raft thread exits once every
        // sender (ours, the ticker's, the transport's, the proposers') is gone or on `stop`.
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// The runs of consecutive entries (first and last index) that hold the events of one
/// command (the same request id), when a command has more than one event: a follower must
/// receive such a run whole, or a leader crash could commit part of a command.
fn command_runs(first_index: u64, entries: &[Vec<u8>]) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut current: Option<(u64, u64, u64)> = None; // (request id, first, last)
    for (offset, entry) in entries.iter().enumerate() {
        let index = first_index + offset as u64;
        let request = crate::engine::decode_entry(entry)
            .ok()
            .map(|e| e.request_id);
        match (current, request) {
            (Some((id, first, _)), Some(r)) if r == id => current = Some((id, first, index)),
            _ => {
                if let Some((_, first, last)) = current.take().filter(|c| c.2 > c.1) {
                    runs.push((first, last));
                }
                current = request.map(|r| (r, index, index));
            }
        }
    }
    if let Some((_, first, last)) = current.filter(|c| c.2 > c.1) {
        runs.push((first, last));
    }
    runs
}

/// The core's settings for a node whose engine is `replica`.
fn raft_config(id: NodeId, replica: &dyn Replica, storage: &LogStorage) -> io::Result<Config> {
    let mut config = Config::new(id);
    config.seed = crate::crypto::random::u64()?;
    // The engine may hold more than the commit hint (a snapshot past it); the core must not
    // believe anything beyond its commit applied, so it re-delivers that part and the engine
    // ignores what it already holds.
    config.applied = replica.applied_index().min(storage.hard_state().commit);
    config.snapshot_chunk_bytes = SNAPSHOT_CHUNK_BYTES;
    Ok(config)
}

fn run_ticker(sender: &Sender<Event>, stop: &std::sync::atomic::AtomicBool) {
    let tick = Duration::from_millis(TICK_MS);
    let mut next = Instant::now() + tick;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        next += tick;
        if sender.send(Event::Tick).is_err() {
            return;
        }
    }
    // Wake the Raft thread so it sees `stop`.
    let _ = sender.send(Event::Tick);
}

/// The Raft thread's state.
struct Driver {
    raw: RawNode<LogStorage>,
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
    /// Last index handed to the engine.
    applied: u64,
    /// Reads waiting for their confirmation, by context id.
    reads: std::collections::HashMap<u64, Sender<Result<u64, String>>>,
    /// Confirmed reads waiting until their index is handed to the engine.
    confirmed: Vec<(u64, Sender<Result<u64, String>>)>,
    next_read: u64,
    /// Snapshots installed from a leader since start.
    snapshots_installed: u64,
    /// Test hook: abort after this install step (see [`INSTALL_CRASH_ENV`]).
    install_crash: Option<String>,
}

impl Driver {
    fn run(mut self, inbox: &Receiver<Event>) {
        let stop_poll = Duration::from_millis(TICK_MS * 5);
        loop {
            let first = match inbox.recv_timeout(stop_poll) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stopped = !self.handle(first);
            for _ in 1..INBOX_BATCH_MAX {
                let Ok(event) = inbox.try_recv() else { break };
                stopped |= !self.handle(event);
            }
            while self.raw.has_ready() {
                let ready = self.raw.ready();
                if let Err(error) = self.process(ready) {
                    // Without durable storage this node must not vote or acknowledge anything.
                    eprintln!("lithair: raft storage failed, stopping the node: {error}");
                    stopped = true;
                    break;
                }
            }
            if let Err(error) = self.compact() {
                eprintln!("lithair: raft log compaction failed, stopping the node: {error}");
                stopped = true;
            }
            self.update_leadership();
            self.publish_status();
            if stopped {
                break;
            }
        }
        self.step_down();
    }

    /// Handles one event; `false` when the node should stop.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Tick => {
                self.raw.tick();
                // The ticker sends one last tick after `stop` so this check runs.
                !self.stop.load(std::sync::atomic::Ordering::SeqCst)
            }
            Event::Message(message) => {
                self.raw.step(message);
                true
            }
            Event::Propose {
                term,
                first_index,
                entries,
                token,
            } => {
                self.propose(term, first_index, entries, token);
                true
            }
            Event::ConfChange(change, reply) => {
                let outcome = self.raw.propose_conf_change(change);
                let _ = reply.send(outcome.map_err(|e| e.to_string()));
                true
            }
            Event::ReadIndex(reply) => {
                self.read_index(reply);
                true
            }
            Event::TransferLeader(to, reply) => {
                let outcome = self.raw.transfer_leader(to).map_err(|e| e.to_string());
                let _ = reply.send(outcome);
                true
            }
        }
    }

    fn read_index(&mut self, reply: Sender<Result<u64, String>>) {
        self.next_read += 1;
        let id = self.next_read;
        match self.raw.read_index(id.to_le_bytes().to_vec()) {
            Ok(()) => {
                self.reads.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    /// Answers confirmed reads whose index is handed to the engine (Raft indexes are event
    /// indexes: the engine waits until it applied the read index).
    fn answer_reads(&mut self) {
        let applied = self.applied;
        self.confirmed.retain(|(index, reply)| {
            if *index > applied {
                return true;
            }
            let _ = reply.send(Ok(*index));
            false
        });
    }

    /// Proposes a batch of the sequencer. Its envelopes carry indexes the sequencer assigned,
    /// so they must be exactly the indexes the log gives them; otherwise (an entry the
    /// sequencer did not know about, e.g. a membership change, took an index) the batch is
    /// abandoned and the sequencer continues from the log's real end.
    fn propose(&mut self, term: u64, first_index: u64, entries: Vec<Vec<u8>>, token: Token) {
        let status_term = self.raw.status().term;
        if !self.leading || term != status_term || entries.is_empty() {
            self.replica.abandon(token);
            return;
        }
        let next_index = self.raw.last_index() + 1;
        if first_index != next_index {
            self.replica.set_next_index(next_index);
            self.replica.abandon(token);
            return;
        }
        let count = entries.len() as u64;
        for (first, last) in command_runs(first_index, &entries) {
            self.raw.keep_together(first, last);
        }
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

    /// Hands committed entries to the engine, each proposal of this node with its token
    /// (attached to the run ending at the proposal's last entry).
    fn apply_committed(&mut self, committed: &[super::types::Entry]) {
        let Some(first) = committed.first() else {
            return;
        };
        let mut run: Vec<&[u8]> = Vec::with_capacity(committed.len());
        let mut run_first = first.index;
        for entry in committed {
            let data: &[u8] = match entry.kind {
                EntryKind::Normal => &entry.data,
                EntryKind::ConfChange => &[],
            };
            run.push(data);
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

    /// Handles one Ready in the order `Ready` documents.
    fn process(&mut self, mut ready: Ready) -> io::Result<()> {
        for message in ready.messages.drain(..) {
            self.transport.send(message);
        }
        let snapshot = ready.snapshot.take();
        if let Some(snapshot) = &snapshot {
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
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state)?;
        }
        for message in ready.persisted_messages.drain(..) {
            self.transport.send(message);
        }
        if let Some(snapshot) = snapshot {
            let index = snapshot.meta.index;
            self.replica.restore(index).map_err(io::Error::other)?;
            self.applied = index;
            self.snapshots_installed += 1;
            eprintln!("lithair: installed a snapshot from the leader at index {index}");
        }
        let committed = std::mem::take(&mut ready.committed_entries);
        self.apply_committed(&committed);
        for read in ready.read_states.drain(..) {
            let Ok(bytes) = <[u8; 8]>::try_from(read.ctx.as_slice()) else {
                continue;
            };
            if let Some(reply) = self.reads.remove(&u64::from_le_bytes(bytes)) {
                self.confirmed.push((read.index, reply));
            }
        }
        self.answer_reads();
        self.raw.advance();
        Ok(())
    }

    /// Compacts the log to the engine's newest durable snapshot once it is applied here
    /// (so never above the commit index).
    fn compact(&mut self) -> io::Result<()> {
        let index = self.replica.snapshot_index();
        if index <= self.raw.storage().snapshot_index() || index > self.applied {
            return Ok(());
        }
        self.raw.storage_mut().compact(index)
    }

    /// Tells the engine when it may sequence: only as leader, and only once every entry
    /// before this term's first entry is handed to it (so its copy starts from all of them).
    fn update_leadership(&mut self) {
        let status = self.raw.status();
        if status.role != Role::Leader {
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
            self.leading = true;
            self.replica.set_next_index(self.raw.last_index() + 1);
            self.replica.set_leader(Some(status.term));
        }
    }

    fn step_down(&mut self) {
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
        self.reads.clear();
    }

    fn publish_status(&self) {
        let status = self.raw.status();
        let mut members: Vec<MemberStatus> = Vec::new();
        let all = status.conf.voters.iter().map(|&id| (id, true));
        let learners = status.conf.learners.iter().map(|&id| (id, false));
        for (id, voter) in all.chain(learners) {
            let match_index = if id == status.id {
                status.last_index
            } else {
                status
                    .match_indexes
                    .iter()
                    .find(|(peer, _)| *peer == id)
                    .map_or(0, |(_, index)| *index)
            };
            let is_leader = status.role == Role::Leader;
            members.push(MemberStatus {
                id,
                voter,
                match_index: if is_leader { match_index } else { 0 },
                lag: if is_leader {
                    status.last_index.saturating_sub(match_index)
                } else {
                    0
                },
                http_addr: self.transport.http_addr(id),
            });
        }
        let snapshot = ClusterStatus {
            id: status.id,
            role: role_name(status.role),
            term: status.term,
            leader: if status.leader_id == NODE_NONE {
                NODE_NONE
            } else {
                status.leader_id
            },
            commit: status.commit,
            applied: self.applied,
            last_index: self.raw.storage().last_index(),
            members,
            snapshot_index: self.raw.storage().snapshot_index(),
            snapshots_installed: self.snapshots_installed,
        };
        *self.status.lock().expect("status poisoned") = snapshot;
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
        };
        let mut out = Vec::new();
        crate::engine::encode_entry(&mut out, &envelope, |_| {});
        out
    }

    #[test]
    fn command_runs_are_the_multi_event_commands() {
        let requests = [1, 2, 2, 2, 3, 4, 4];
        let entries: Vec<Vec<u8>> = requests
            .iter()
            .enumerate()
            .map(|(k, &r)| event(10 + k as u64, r))
            .collect();
        assert_eq!(command_runs(10, &entries), vec![(11, 13), (15, 16)]);
        assert_eq!(command_runs(10, &[Vec::new(), event(11, 1)]), vec![]);
    }
}
