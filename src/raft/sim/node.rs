//! One simulated node: a `RawNode` over `MemStorage`, a disk that loses unsynced writes on a
//! crash, and a key-value state machine with a running digest.
//!
//! Owns: the driver loop a real node would run (send, persist, sync, send, apply, advance),
//! in both of the node driver's modes: synchronous, and background persistence (the Ready is
//! advanced before its entries are durable; the messages promising them wait until the
//! simulator completes the persist, and a crash before that loses them).
//! Must not: decide faults; the simulator tells it when to crash.

use crate::raft::{
    ConfChange, ConfState, Config, Entry, EntryKind, HardState, MemStorage, Message, RawNode,
    ReadState, Ready, Role, Snapshot, Storage,
};
use std::collections::{BTreeMap, VecDeque};

/// One write that has not reached the durable disk yet.
#[derive(Clone, Debug)]
enum DiskWrite {
    Snapshot(Snapshot),
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// A disk: what survives a crash, plus writes still in the page cache.
#[derive(Clone, Debug)]
pub(crate) struct Disk {
    pub(crate) durable: MemStorage,
    unsynced: Vec<DiskWrite>,
}

impl Disk {
    /// An initial voter's disk holds the bootstrap log; a node that joins later starts empty.
    pub(crate) fn new(initial_voters: &[u64]) -> Disk {
        let durable = if initial_voters.is_empty() {
            MemStorage::new(ConfState::default())
        } else {
            MemStorage::bootstrap(initial_voters)
        };
        Disk {
            durable,
            unsynced: Vec::new(),
        }
    }

    pub(crate) fn sync(&mut self) {
        for write in self.unsynced.drain(..) {
            match write {
                DiskWrite::Snapshot(snapshot) => self.durable.apply_snapshot(snapshot),
                DiskWrite::Entries(entries) => self.durable.append(&entries),
                DiskWrite::HardState(hard_state) => {
                    // A snapshot may have raised the commit; the hard state never lowers it.
                    let commit = hard_state.commit.max(self.durable.hard_state().commit);
                    self.durable.set_hard_state(HardState {
                        commit,
                        ..hard_state
                    });
                }
            }
        }
    }

    pub(crate) fn crash(&mut self) {
        self.unsynced.clear();
    }
}

/// The replicated state machine: a map of registers and a digest chaining every applied entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Machine {
    pub(crate) kv: BTreeMap<u64, u64>,
    pub(crate) applied: u64,
    pub(crate) digest: u64,
    pub(crate) conf: ConfState,
}

/// A client write as stored in an entry. A put may be one command of several entries (a
/// run: parts `0..parts` of one `op_id`, each writing the same key and value), which the
/// checker requires to be applied whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PutOp {
    pub(crate) op_id: u64,
    pub(crate) key: u64,
    pub(crate) value: u64,
    pub(crate) part: u64,
    pub(crate) parts: u64,
}

/// Bytes of an encoded [`PutOp`].
const PUT_BYTES: usize = 40;

impl PutOp {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PUT_BYTES);
        for word in [self.op_id, self.key, self.value, self.part, self.parts] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<PutOp> {
        if bytes.len() != PUT_BYTES {
            return None;
        }
        let word =
            |k: usize| u64::from_le_bytes(bytes[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
        let put = PutOp {
            op_id: word(0),
            key: word(1),
            value: word(2),
            part: word(3),
            parts: word(4),
        };
        (put.part < put.parts).then_some(put)
    }

    /// The parts of one command: one entry each.
    pub(crate) fn encode_parts(op_id: u64, key: u64, value: u64, parts: u64) -> Vec<Vec<u8>> {
        (0..parts)
            .map(|part| {
                let put = PutOp {
                    op_id,
                    key,
                    value,
                    part,
                    parts,
                };
                put.encode()
            })
            .collect()
    }
}

/// The simulator's [`crate::raft::SameCommand`]: the parts of one put are one command.
pub(crate) fn same_put(a: &[u8], b: &[u8]) -> bool {
    matches!((PutOp::decode(a), PutOp::decode(b)), (Some(x), Some(y)) if x.op_id == y.op_id)
}

/// FNV-1a over a few words: a deterministic digest step (not cryptographic).
pub(crate) fn mix(mut hash: u64, words: &[u64], bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    for word in words {
        for byte in word.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    hash
}

pub(crate) fn entry_hash(entry: &Entry) -> u64 {
    let kind = match entry.kind {
        EntryKind::Normal => 1,
        EntryKind::ConfChange => 2,
    };
    mix(
        0xCBF2_9CE4_8422_2325,
        &[entry.index, entry.term, kind],
        &entry.data,
    )
}

impl Machine {
    /// Applies one committed entry; returns the client write it carried, if any.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Option<PutOp> {
        assert_eq!(entry.index, self.applied + 1, "apply out of order");
        self.applied = entry.index;
        self.digest = mix(self.digest, &[entry_hash(entry)], &[]);
        match entry.kind {
            EntryKind::ConfChange => {
                if let Some(change) = ConfChange::decode(&entry.data) {
                    self.conf.apply(change);
                }
                None
            }
            EntryKind::Normal => {
                let put = PutOp::decode(&entry.data)?;
                self.kv.insert(put.key, put.value);
                Some(put)
            }
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [self.applied, self.digest, self.kv.len() as u64] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for (&key, &value) in &self.kv {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(data: &[u8], conf: ConfState) -> Machine {
        let words: Vec<u64> = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        assert!(
            words.len() >= 3 && words.len() == 3 + 2 * words[2] as usize,
            "bad sim snapshot"
        );
        let kv = words[3..]
            .chunks_exact(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        Machine {
            kv,
            applied: words[0],
            digest: words[1],
            conf,
        }
    }
}

/// What a node reports back to the simulator after handling one Ready.
#[derive(Debug, Default)]
pub(crate) struct Handled {
    pub(crate) sent: Vec<Message>,
    pub(crate) applied: Vec<(Entry, Option<PutOp>, u64)>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) ready_hard_state: Option<HardState>,
    pub(crate) became_leader: bool,
    pub(crate) persisted: Vec<Entry>,
    pub(crate) installed_snapshot: bool,
    pub(crate) crashed: bool,
}

/// A Ready whose entries are written but not yet synced (background persistence): the last
/// entry to report once durable, and the messages that must wait until then.
#[derive(Debug)]
struct PendingPersist {
    last: Option<(u64, u64)>,
    messages: Vec<Message>,
}

pub(crate) struct SimNode {
    pub(crate) raw: Option<RawNode<MemStorage>>,
    pub(crate) disk: Disk,
    pub(crate) machine: Machine,
    pub(crate) config: Config,
    /// Background persists in Ready order (lost on a crash).
    pending: VecDeque<PendingPersist>,
    /// The snapshot chunks received so far (the node driver's temporary file; lost on a
    /// crash, as that file is only synced at the install).
    incoming: Vec<u8>,
    /// Ticks this node's ticker stays stalled for (0: on time).
    pub(crate) stall_left: u64,
    /// Ticks of the simulated clock the stalled ticker did not deliver yet (the node driver's
    /// `ticks_owed`, told to the core before every step).
    pub(crate) ticks_owed: u64,
}

impl SimNode {
    pub(crate) fn new(config: Config, initial_voters: &[u64]) -> SimNode {
        let disk = Disk::new(initial_voters);
        let machine = Machine::default();

        let mut node = SimNode {
            raw: None,
            disk,
            machine,
            config,
            pending: VecDeque::new(),
            incoming: Vec::new(),
            stall_left: 0,
            ticks_owed: 0,
        };
        node.restart();
        node
    }

    /// Starts from the durable disk only (after a crash, or the first time).
    pub(crate) fn restart(&mut self) {
        assert!(self.raw.is_none(), "restart of a running node");
        let storage = self.disk.durable.clone();
        let snapshot = storage.snapshot().clone();
        self.machine = if snapshot.meta.index == 0 {
            Machine {
                conf: snapshot.meta.conf.clone(),
                ..Machine::default()
            }
        } else {
            Machine::decode(&snapshot.data, snapshot.meta.conf.clone())
        };
        let mut config = self.config.clone();
        config.applied = snapshot.meta.index;
        config.seed = config
            .seed
            .wrapping_add(self.disk.durable.hard_state().term);
        let mut raw = RawNode::new(config, storage).expect("sim config is valid");
        raw.set_same_command(same_put);
        self.raw = Some(raw);
    }

    /// One tick of the simulated clock for a running node, as its node driver delivers it:
    /// on time, one tick; while its ticker is stalled, none, the core being told the ticks
    /// owed instead; when the stall ends, one late tick standing for all of them, which a
    /// leader counts in full and any other role once.
    pub(crate) fn tick_clock(&mut self) {
        let raw = self.raw.as_mut().expect("a running node");
        if self.stall_left > 1 {
            self.stall_left -= 1;
            self.ticks_owed += 1;
            raw.set_ticks_owed(self.ticks_owed);
            return;
        }
        self.stall_left = 0;
        let wall_ticks = std::mem::take(&mut self.ticks_owed) + 1;
        let leader = raw.role() == Role::Leader;
        let counted = if leader { wall_ticks } else { 1 };
        for _ in 0..counted {
            if leader && raw.role() != Role::Leader {
                break;
            }
            raw.tick();
        }
        raw.set_ticks_owed(0);
    }

    pub(crate) fn crash(&mut self) {
        self.raw = None;
        self.disk.crash();
        self.pending.clear();
        self.incoming.clear();
        // A restarted process has a new ticker.
        self.stall_left = 0;
        self.ticks_owed = 0;
    }

    /// Completes every background persist: syncs the disk, reports the entries durable in
    /// Ready order, and returns the messages that waited for them.
    pub(crate) fn complete_persists(&mut self) -> Vec<Message> {
        let mut released = Vec::new();
        let Some(raw) = self.raw.as_mut() else {
            assert!(self.pending.is_empty(), "a crashed node keeps no persist");
            return released;
        };
        if self.pending.is_empty() {
            return released;
        }
        self.disk.sync();
        for pending in self.pending.drain(..) {
            if let Some((index, term)) = pending.last {
                raw.persisted(index, term);
            }
            released.extend(pending.messages);
        }
        released
    }

    /// Runs one Ready through the driver steps. `crash_before_sync` simulates power loss after
    /// the writes reached the page cache but before fsync. `background` persists the Ready's
    /// entries without waiting when the node driver would (they continue the log, no
    /// snapshot, no term or vote change); otherwise earlier background persists complete
    /// first, as the driver drains its queue.
    pub(crate) fn handle_ready(&mut self, crash_before_sync: bool, background: bool) -> Handled {
        let mut handled = Handled::default();
        let Some(raw) = self.raw.as_mut() else {
            return handled;
        };
        if !raw.has_ready() {
            return handled;
        }
        let mut ready: Ready = raw.ready();
        handled.sent.append(&mut ready.messages);
        handled.became_leader = ready
            .soft_state
            .is_some_and(|s| s.role == crate::raft::Role::Leader);
        let written = raw.storage().hard_state();
        let term_or_vote = ready
            .hard_state
            .is_some_and(|h| (h.term, h.vote) != (written.term, written.vote));
        let continues = ready
            .entries
            .first()
            .is_none_or(|first| first.index == raw.storage().last_index() + 1);
        let background = background
            && ready.snapshot.is_none()
            && continues
            && !term_or_vote
            && !ready.commit_passed_conf_change;
        if !background {
            let released = self.complete_persists();
            handled.sent.extend(released);
        }
        self.write_ready(&mut ready, &mut handled);
        if background {
            self.finish_in_background(ready, &mut handled);
            return handled;
        }
        if crash_before_sync && ready.must_sync {
            self.crash();
            handled.crashed = true;
            return handled;
        }
        if ready.must_sync {
            self.disk.sync();
        }
        handled.sent.append(&mut ready.persisted_messages);
        self.apply_ready(&mut ready, &mut handled);
        self.raw.as_mut().expect("running").advance();
        handled
    }

    /// Writes a Ready's snapshot, entries and hard state to the page cache (the storage view
    /// and the unsynced disk).
    fn write_ready(&mut self, ready: &mut Ready, handled: &mut Handled) {
        for chunk in ready.snapshot_chunks.drain(..) {
            if chunk.offset == 0 {
                self.incoming.clear();
            }
            assert_eq!(
                chunk.offset,
                self.incoming.len() as u64,
                "snapshot chunks are contiguous"
            );
            self.incoming.extend_from_slice(&chunk.data);
            assert!(
                self.incoming.len() as u64 <= chunk.total_bytes,
                "chunk past the end"
            );
        }
        let raw = self.raw.as_mut().expect("running");
        if let Some(mut snapshot) = ready.snapshot.take() {
            assert!(snapshot.data.is_empty(), "the core keeps no snapshot bytes");
            snapshot.data = std::mem::take(&mut self.incoming);
            handled.installed_snapshot = true;
            raw.storage_mut().apply_snapshot(snapshot.clone());
            self.machine = Machine::decode(&snapshot.data, snapshot.meta.conf.clone());
            assert_eq!(
                self.machine.applied, snapshot.meta.index,
                "snapshot data and meta disagree"
            );
            self.disk.unsynced.push(DiskWrite::Snapshot(snapshot));
        }
        if !ready.entries.is_empty() {
            raw.storage_mut().append(&ready.entries);
            self.disk
                .unsynced
                .push(DiskWrite::Entries(ready.entries.clone()));
            handled.persisted = std::mem::take(&mut ready.entries);
        }
        if let Some(hard_state) = ready.hard_state {
            raw.storage_mut().set_hard_state(hard_state);
            self.disk.unsynced.push(DiskWrite::HardState(hard_state));
            handled.ready_hard_state = Some(hard_state);
        }
    }

    /// Applies a Ready's committed entries and collects its read states.
    fn apply_ready(&mut self, ready: &mut Ready, handled: &mut Handled) {
        for entry in ready.committed_entries.drain(..) {
            let put = self.machine.apply(&entry);
            handled.applied.push((entry, put, self.machine.digest));
        }
        handled.read_states = std::mem::take(&mut ready.read_states);
    }

    /// Background persistence: advance now, hold the messages until the persist completes
    /// (behind every earlier one).
    fn finish_in_background(&mut self, mut ready: Ready, handled: &mut Handled) {
        self.apply_ready(&mut ready, handled);
        let last = self.raw.as_mut().expect("running").advance_append();
        assert_eq!(
            last,
            handled.persisted.last().map(|e| (e.index, e.term)),
            "advance_append reports the Ready's last entry"
        );
        let messages = std::mem::take(&mut ready.persisted_messages);
        if last.is_none() && self.pending.is_empty() {
            handled.sent.extend(messages);
        } else if last.is_some() || !messages.is_empty() {
            self.pending.push_back(PendingPersist { last, messages });
        }
    }

    /// Takes a local snapshot of the applied state and compacts the log (fsync first, as the
    /// engine does: snapshot before truncate).
    pub(crate) fn compact(&mut self) {
        let Some(raw) = self.raw.as_mut() else { return };
        let applied = self.machine.applied;
        if applied <= raw.storage().first_index() {
            return;
        }
        self.disk.sync();
        let data = self.machine.encode();
        let conf = self.machine.conf.clone();
        if applied > self.disk.durable.last_index() {
            return;
        }
        drop(
            raw.storage_mut()
                .compact(applied, conf.clone(), data.clone()),
        );
        drop(self.disk.durable.compact(applied, conf, data));
    }
}
