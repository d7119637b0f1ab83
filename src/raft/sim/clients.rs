//! Simulated clients: each submits puts through `propose` and gets through ReadIndex to some
//! node (or, half the time on a lease-mode leader whose lease holds, through `lease_read`, as
//! the node's HTTP threads do), waits for the answer from that node only, and records
//! invoke/return times for the linearizability checker.
//!
//! Owns: the history and the rule "an unanswered put may or may not have happened".
//! Must not: look at other nodes to decide an outcome (a real client cannot).

use super::linearize::{OpKind, Operation, RETURN_UNKNOWN};
use super::node::{Handled, PutOp, SimNode};
use crate::raft::{NodeId, SplitMix64};
use std::collections::BTreeMap;

/// A client gives up on an operation after this many ticks.
const OP_TIMEOUT_TICKS: u64 = 120;
/// Most entries of one multi-entry put (a run several Append windows long).
const MULTI_PUT_PARTS_MAX: u64 = 24;

#[derive(Clone, Copy, Debug)]
enum Waiting {
    Put { value: u64 },
    Get,
    GetAfterApply { index: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    op_id: u64,
    node: NodeId,
    key: u64,
    invoke: u64,
    deadline_tick: u64,
    waiting: Waiting,
}

pub(crate) struct Clients {
    pending: Vec<Option<Pending>>,
    history: Vec<Operation>,
    next_op_id: u64,
    next_value: u64,
    keys: u64,
}

impl Clients {
    pub(crate) fn new(clients: u64, keys: u64) -> Clients {
        assert!(keys >= 1, "at least one key");
        Clients {
            pending: vec![None; clients as usize],
            history: Vec::new(),
            next_op_id: 1,
            next_value: 1,
            keys,
        }
    }

    /// Idle clients may start an operation.
    pub(crate) fn step(
        &mut self,
        time: u64,
        tick: u64,
        active: bool,
        leader_hint: NodeId,
        nodes: &mut BTreeMap<NodeId, SimNode>,
        rng: &mut SplitMix64,
    ) {
        if !active {
            return;
        }
        for client in 0..self.pending.len() {
            if self.pending[client].is_some() || !rng.chance(300_000) {
                continue;
            }
            let node = if leader_hint != 0 && rng.chance(800_000) {
                leader_hint
            } else {
                1 + rng.below(nodes.len() as u64)
            };
            let key = 1 + rng.below(self.keys);
            let op_id = self.next_op_id;
            let Some(raw) = nodes.get_mut(&node).and_then(|n| n.raw.as_mut()) else {
                continue;
            };
            let waiting = if rng.chance(500_000) {
                let value = self.next_value;
                // A quarter of the puts are commands of several entries, most of them larger
                // than one Append's window (`node_config`): they must still apply whole.
                let parts = if rng.chance(250_000) {
                    2 + rng.below(MULTI_PUT_PARTS_MAX - 1)
                } else {
                    1
                };
                if raw
                    .propose(PutOp::encode_parts(op_id, key, value, parts))
                    .is_err()
                {
                    continue;
                }
                self.next_value += 1;
                Waiting::Put { value }
            } else if let Some(lease) = raw.lease_read().filter(|_| rng.chance(500_000)) {
                // A lease read as a node's HTTP thread serves it: the index of now, no round.
                Waiting::GetAfterApply { index: lease.index }
            } else {
                if raw.read_index(op_id.to_le_bytes().to_vec()).is_err() {
                    continue;
                }
                Waiting::Get
            };
            self.next_op_id += 1;
            let deadline_tick = tick + OP_TIMEOUT_TICKS;
            self.pending[client] = Some(Pending {
                op_id,
                node,
                key,
                invoke: time,
                deadline_tick,
                waiting,
            });
        }
    }

    fn record(&mut self, client: usize, ret: u64, kind: Option<OpKind>) {
        let pending = self.pending[client].take().expect("recording a pending op");
        if let Some(kind) = kind {
            let op = Operation {
                client: client as u64,
                key: pending.key,
                invoke: pending.invoke,
                ret,
                kind,
            };
            self.history.push(op);
        }
    }

    /// Gives up: a put's outcome becomes unknown, a get is forgotten (it had no effect).
    fn abandon(&mut self, client: usize) {
        let Some(pending) = self.pending[client] else {
            return;
        };
        let kind = match pending.waiting {
            Waiting::Put { value } => Some(OpKind::Put(value)),
            Waiting::Get | Waiting::GetAfterApply { .. } => None,
        };
        self.record(client, RETURN_UNKNOWN, kind);
    }

    pub(crate) fn node_crashed(&mut self, id: NodeId) {
        for client in 0..self.pending.len() {
            if self.pending[client].is_some_and(|p| p.node == id) {
                self.abandon(client);
            }
        }
    }

    pub(crate) fn expire(&mut self, _time: u64, tick: u64) {
        for client in 0..self.pending.len() {
            if self.pending[client].is_some_and(|p| p.deadline_tick <= tick) {
                self.abandon(client);
            }
        }
    }

    /// Answers clients waiting on node `id` from what its last Ready did.
    pub(crate) fn on_handled(
        &mut self,
        id: NodeId,
        time: u64,
        handled: &Handled,
        nodes: &BTreeMap<NodeId, SimNode>,
    ) {
        for (_, put, _) in &handled.applied {
            let Some(put) = put else { continue };
            let found = self
                .pending
                .iter()
                .position(|p| p.is_some_and(|p| p.node == id && p.op_id == put.op_id));
            if let Some(client) = found {
                self.record(client, time, Some(OpKind::Put(put.value)));
            }
        }
        for read in &handled.read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(read.ctx.as_slice()) else {
                continue;
            };
            let op_id = u64::from_le_bytes(bytes);
            for pending in self.pending.iter_mut().flatten() {
                if pending.node == id
                    && pending.op_id == op_id
                    && matches!(pending.waiting, Waiting::Get)
                {
                    pending.waiting = Waiting::GetAfterApply { index: read.index };
                }
            }
        }
        let machine = &nodes[&id].machine;
        for client in 0..self.pending.len() {
            let Some(pending) = self.pending[client] else {
                continue;
            };
            if let Waiting::GetAfterApply { index } = pending.waiting {
                if pending.node == id && machine.applied >= index {
                    let value = machine.kv.get(&pending.key).copied().unwrap_or(0);
                    self.record(client, time, Some(OpKind::Get(value)));
                }
            }
        }
    }

    /// Ends the run: unanswered puts are recorded as unknown.
    pub(crate) fn finish(&mut self, _time: u64) -> Vec<Operation> {
        for client in 0..self.pending.len() {
            self.abandon(client);
        }
        std::mem::take(&mut self.history)
    }
}
