//! A deterministic simulator for the Raft core: N nodes in one thread with a seeded network
//! (drops, duplicates, reordering, delays, partitions), a seeded clock (ticks), disks that lose
//! unsynced writes on a crash, restarts, membership changes, leadership transfers and clients
//! whose histories feed the linearizability checker. Survivors of a crash may be told the
//! crashed node is unreachable (as the transport tells them when its connections close), and
//! running nodes are sometimes told so wrongly (a reset connection), to exercise the early
//! campaign rule (`leader_loss.rs`). A node's ticker may stall: its core then gets no ticks
//! but is told the ticks owed, and one late tick follows, as the node driver does. Public only
//! for tests (`#[doc(hidden)]`).
//!
//! Owns: fault injection and the after-every-step safety checks; a seed replays bit for bit.
//! Must not: use real time, threads, sockets or unseeded randomness.

mod check;
mod clients;
pub mod linearize;
mod node;

use self::check::Checker;
use self::clients::Clients;
use self::node::SimNode;
use crate::raft::{
    ConfChange, Config, Message, MessageBody, NodeId, RaftError, ReadMode, Role, SplitMix64,
    Storage,
};
use std::collections::BTreeMap;
use std::fmt;

/// Knobs of one simulation run. Probabilities are per million.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Node ids are `1..=nodes_max`; the ones above `initial_voters` start outside the cluster.
    pub nodes_max: u64,
    /// Voters at bootstrap.
    pub initial_voters: u64,
    /// Ticks with faults and client load.
    pub fault_ticks: u64,
    /// Ticks allowed after healing for one leader, equal logs and equal digests.
    pub heal_ticks_max: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Registers the clients use.
    pub keys: u64,
    /// Per message.
    pub drop_per_million: u64,
    /// Per message.
    pub duplicate_per_million: u64,
    /// Messages take `1..=delay_ticks_max` ticks (random, so they reorder).
    pub delay_ticks_max: u64,
    /// Per tick: split the nodes into two random sides.
    pub partition_per_million: u64,
    /// Per tick: heal the partition.
    pub heal_per_million: u64,
    /// Per tick: crash a random node.
    pub crash_per_million: u64,
    /// Per Ready that must sync: crash after the write, before the fsync.
    pub crash_before_sync_per_million: u64,
    /// Per Ready: persist its entries in the background (the node driver's mode), when the
    /// driver would (otherwise synchronously).
    pub background_persist_per_million: u64,
    /// Per tick and node: complete its background persists (sync, report, release the
    /// messages that waited). A crash first loses them.
    pub persist_complete_per_million: u64,
    /// Per tick: restart a crashed node.
    pub restart_per_million: u64,
    /// Per crash and surviving node: on the next tick, it is told the crashed node is
    /// unreachable (the transport saw its connection close).
    pub crash_notice_per_million: u64,
    /// Per tick: a random running node is told another running node is unreachable (a
    /// connection reset while both run).
    pub false_notice_per_million: u64,
    /// Per tick: the leader adds a learner or removes a member.
    pub membership_per_million: u64,
    /// Per tick: the leader transfers leadership.
    pub transfer_per_million: u64,
    /// Per tick: a random running node's ticker stalls (its thread descheduled) for
    /// `1..=ticker_stall_ticks_max` ticks. Its core gets no ticks meanwhile but is told the
    /// ticks owed before every step, as the node driver does; then one late tick arrives,
    /// which a leader counts in full and any other role once (the driver's `core_ticks`).
    pub ticker_stall_per_million: u64,
    /// The longest ticker stall, in ticks.
    pub ticker_stall_ticks_max: u64,
    /// A node snapshots and compacts once this many entries are applied past its snapshot.
    pub compact_entries: u64,
    /// Read mode of every node.
    pub read_mode: ReadMode,
    /// Print every event to stderr (for replaying a failing seed).
    pub verbose: bool,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            nodes_max: 5,
            initial_voters: 3,
            fault_ticks: 400,
            heal_ticks_max: 600,
            clients: 3,
            keys: 3,
            drop_per_million: 20_000,
            duplicate_per_million: 10_000,
            delay_ticks_max: 3,
            partition_per_million: 8_000,
            heal_per_million: 20_000,
            crash_per_million: 5_000,
            crash_before_sync_per_million: 2_000,
            background_persist_per_million: 700_000,
            persist_complete_per_million: 500_000,
            restart_per_million: 30_000,
            crash_notice_per_million: 700_000,
            false_notice_per_million: 10_000,
            membership_per_million: 6_000,
            transfer_per_million: 3_000,
            // Every run meets a few stalls (elections and CheckQuorum on late ticks).
            ticker_stall_per_million: 10_000,
            ticker_stall_ticks_max: 30,
            compact_entries: 24,
            read_mode: ReadMode::Safe,
            verbose: false,
        }
    }
}

/// A safety or liveness violation, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The tick it was detected at.
    pub tick: u64,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "raft sim seed {} failed at tick {}: {} (replay: LITHAIR_SIM_SEED={} cargo test --release --test raft_sim replay_one_seed)",
            self.seed, self.tick, self.message, self.seed
        )
    }
}

/// What a successful run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// Hash of every event in order: equal for two runs of one seed.
    pub trace_hash: u64,
    /// Ticks run (fault phase plus healing).
    pub ticks: u64,
    /// Ticks the heal phase needed.
    pub heal_ticks: u64,
    /// Highest committed index.
    pub committed: u64,
    /// Leaders elected (over all terms).
    pub leaders_elected: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Membership changes proposed and accepted.
    pub membership_changes: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Unreachable-leader notices a follower acted on (early campaigns).
    pub early_campaigns: u64,
    /// Ticker stalls injected.
    pub ticker_stalls: u64,
    /// Commit notices a leader sent (each then faces the network's faults like any message).
    pub commit_notices: u64,
    /// Commit notices the network dropped or duplicated.
    pub commit_notices_faulted: u64,
    /// The client history.
    pub history: Vec<linearize::Operation>,
}

struct Sim {
    seed: u64,
    options: SimOptions,
    rng: SplitMix64,
    tick: u64,
    events: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    // (deliver at tick, sequence) -> message
    network: BTreeMap<(u64, u64), Message>,
    side: BTreeMap<NodeId, u8>,
    checker: Checker,
    clients: Clients,
    trace_hash: u64,
    crashes: u64,
    membership_changes: u64,
    snapshots_installed: u64,
    early_campaigns: u64,
    ticker_stalls: u64,
    commit_notices: u64,
    commit_notices_faulted: u64,
    /// Unreachable notices due next tick: (told node, unreachable node).
    notices: Vec<(NodeId, NodeId)>,
    faults_on: bool,
}

/// Runs one seed to completion.
///
/// # Errors
/// The first violated property, with the seed and tick.
pub fn run(seed: u64, options: &SimOptions) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(seed, options.clone());
    sim.run().map_err(|message| SimFailure {
        seed,
        tick: sim.tick,
        message,
    })
}

fn node_config(id: NodeId, seed: u64, read_mode: ReadMode) -> Config {
    let mut config = Config::new(id);
    config.election_ticks = 10;
    config.heartbeat_ticks = 2;
    config.msg_entries_max = 8;
    config.msg_bytes_max = 512;
    config.inflight_msgs_max = 4;
    config.snapshot_chunk_bytes = 40;
    config.read_mode = read_mode;
    config.seed = seed;
    config
}

impl Sim {
    fn new(seed: u64, options: SimOptions) -> Sim {
        assert!(
            options.initial_voters >= 1 && options.initial_voters <= options.nodes_max,
            "bad node counts"
        );
        let voters: Vec<NodeId> = (1..=options.initial_voters).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=options.nodes_max {
            let initial: &[NodeId] = if id <= options.initial_voters {
                &voters
            } else {
                &[]
            };
            nodes.insert(
                id,
                SimNode::new(node_config(id, seed, options.read_mode), initial),
            );
        }
        let clients = Clients::new(options.clients, options.keys);
        Sim {
            seed,
            rng: SplitMix64::new(seed.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0xE703_7ED1_A0B4_28DB),
            options,
            tick: 0,
            events: 0,
            nodes,
            network: BTreeMap::new(),
            side: BTreeMap::new(),
            checker: Checker::default(),
            clients,
            trace_hash: 0,
            crashes: 0,
            membership_changes: 0,
            snapshots_installed: 0,
            early_campaigns: 0,
            ticker_stalls: 0,
            commit_notices: 0,
            commit_notices_faulted: 0,
            notices: Vec::new(),
            faults_on: true,
        }
    }

    fn run(&mut self) -> Result<SimReport, String> {
        for _ in 0..self.options.fault_ticks {
            self.inject_faults();
            self.step_tick(true)?;
        }
        self.heal();
        let mut heal_ticks = 0;
        while let Err(why) = self.converged() {
            if heal_ticks >= self.options.heal_ticks_max {
                return Err(format!(
                    "no convergence {heal_ticks} ticks after healing: {why}"
                ));
            }
            self.step_tick(false)?;
            heal_ticks += 1;
        }
        let end = self.next_time();
        let history = self.clients.finish(end);
        if let linearize::Verdict::NotLinearizable { key } =
            linearize::check_history(&history, 2_000_000)
        {
            return Err(format!("client history is not linearizable on key {key}"));
        }
        Ok(SimReport {
            trace_hash: self.trace_hash,
            ticks: self.tick,
            heal_ticks,
            committed: self.checker.highest_committed(),
            leaders_elected: self.checker.leaders_elected,
            crashes: self.crashes,
            membership_changes: self.membership_changes,
            snapshots_installed: self.snapshots_installed,
            early_campaigns: self.early_campaigns,
            ticker_stalls: self.ticker_stalls,
            commit_notices: self.commit_notices,
            commit_notices_faulted: self.commit_notices_faulted,
            history,
        })
    }

    fn next_time(&mut self) -> u64 {
        self.events += 1;
        self.tick * 1_000_000 + self.events % 1_000_000
    }

    fn trace(&mut self, words: &[u64]) {
        self.trace_hash = node::mix(self.trace_hash ^ 0xCBF2_9CE4_8422_2325, words, &[]);
    }

    /// One tick: clocks advance, clients act, due messages are delivered, Readies are handled.
    fn step_tick(&mut self, clients_active: bool) -> Result<(), String> {
        self.tick += 1;
        self.deliver_notices()?;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            if let Some(node) = self.nodes.get_mut(&id).filter(|n| n.raw.is_some()) {
                node.tick_clock();
            }
            self.drain_ready(id)?;
        }
        let time = self.next_time();
        let leader_hint = self.leader_hint();
        self.clients.step(
            time,
            self.tick,
            clients_active,
            leader_hint,
            &mut self.nodes,
            &mut self.rng,
        );
        for &id in &ids {
            self.drain_ready(id)?;
        }
        self.complete_persists(&ids)?;
        self.deliver_due()?;
        let time = self.next_time();
        self.clients.expire(time, self.tick);
        for &id in &ids {
            let node = self.nodes.get_mut(&id).expect("node");
            if node.machine.applied
                >= node.disk.durable.first_index() + self.options.compact_entries
            {
                node.compact();
            }
        }
        Ok(())
    }

    /// Completes the background persists of some nodes (each with
    /// `persist_complete_per_million`), sends what waited for them and handles the Readies
    /// that follow (a leader may commit).
    fn complete_persists(&mut self, ids: &[NodeId]) -> Result<(), String> {
        for &id in ids {
            if !self.rng.chance(self.options.persist_complete_per_million) {
                continue;
            }
            let released = self.nodes.get_mut(&id).expect("node").complete_persists();
            self.trace(&[self.tick, id, released.len() as u64]);
            for message in released {
                self.send(message);
            }
            self.drain_ready(id)?;
        }
        Ok(())
    }

    fn leader_hint(&self) -> NodeId {
        let mut best = (0, 0);
        for (&id, node) in &self.nodes {
            if let Some(status) = node.raw.as_ref().map(|r| r.status()) {
                if status.role == Role::Leader && status.term > best.0 {
                    best = (status.term, id);
                }
            }
        }
        best.1
    }

    fn deliver_due(&mut self) -> Result<(), String> {
        while let Some((&(at, seq), _)) = self.network.first_key_value() {
            if at > self.tick {
                break;
            }
            let message = self.network.remove(&(at, seq)).expect("key just seen");
            let (from, to) = (message.from, message.to);
            if !self.connected(from, to) {
                continue;
            }
            if self.nodes.get(&to).is_none_or(|n| n.raw.is_none()) {
                continue;
            }
            self.trace(&[
                self.tick,
                from,
                to,
                message.term,
                message.body.name().len() as u64,
            ]);
            let raw = self
                .nodes
                .get_mut(&to)
                .and_then(|n| n.raw.as_mut())
                .expect("checked running");
            if self.options.verbose {
                eprintln!("t{} deliver {message:?}", self.tick);
            }
            raw.step(message);
            self.drain_ready(to)?;
        }
        Ok(())
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.side.get(&a).copied().unwrap_or(0) == self.side.get(&b).copied().unwrap_or(0)
    }

    fn send(&mut self, message: Message) {
        let faults = self.faults_on;
        let notice = matches!(message.body, MessageBody::CommitNotice { .. });
        self.commit_notices += u64::from(notice);
        if faults && self.rng.chance(self.options.drop_per_million) {
            self.commit_notices_faulted += u64::from(notice);
            return;
        }
        let copies = if faults && self.rng.chance(self.options.duplicate_per_million) {
            self.commit_notices_faulted += u64::from(notice);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.options.delay_ticks_max.max(1));
            self.events += 1;
            self.network
                .insert((self.tick + delay, self.events), message.clone());
        }
    }

    fn drain_ready(&mut self, id: NodeId) -> Result<(), String> {
        const READIES_PER_DRAIN_MAX: u32 = 64;
        for _ in 0..READIES_PER_DRAIN_MAX {
            let crash =
                self.faults_on && self.rng.chance(self.options.crash_before_sync_per_million);
            let background = self.rng.chance(self.options.background_persist_per_million);
            let node = self.nodes.get_mut(&id).expect("node");
            let handled = node.handle_ready(crash, background);
            self.snapshots_installed += u64::from(handled.installed_snapshot);
            if handled.crashed {
                self.crashes += 1;
                self.checker.node_restarted(id);
                self.clients.node_crashed(id);
                self.queue_crash_notices(id);
            }
            let node = self.nodes.get(&id).expect("node");
            self.checker.after_ready(id, node.raw.as_ref(), &handled)?;
            if self.options.verbose && (handled.crashed || handled.ready_hard_state.is_some()) {
                let status = node.raw.as_ref().map(|r| r.status());
                eprintln!(
                    "t{} node {id} crashed={} hard={:?} {status:?}",
                    self.tick, handled.crashed, handled.ready_hard_state
                );
            }
            let hard = handled
                .ready_hard_state
                .map_or([0, 0, 0], |h| [h.term, h.vote, h.commit]);
            self.trace(&[
                self.tick,
                id,
                hard[0],
                hard[1],
                hard[2],
                handled.applied.len() as u64,
            ]);
            let nothing = handled.sent.is_empty()
                && handled.applied.is_empty()
                && handled.read_states.is_empty()
                && handled.ready_hard_state.is_none()
                && handled.persisted.is_empty();
            let time = self.next_time();
            self.clients.on_handled(id, time, &handled, &self.nodes);
            for message in handled.sent {
                self.send(message);
            }
            if nothing && !self.nodes[&id].raw.as_ref().is_some_and(|r| r.has_ready()) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn inject_faults(&mut self) {
        let options = self.options.clone();
        if self.rng.chance(options.partition_per_million) {
            for id in 1..=options.nodes_max {
                let side = self.rng.below(2) as u8;
                self.side.insert(id, side);
            }
        }
        if self.rng.chance(options.heal_per_million) {
            self.side.clear();
        }
        if self.rng.chance(options.crash_per_million) {
            let id = 1 + self.rng.below(options.nodes_max);
            if let Some(node) = self.nodes.get_mut(&id).filter(|n| n.raw.is_some()) {
                if options.verbose {
                    eprintln!("t{} crash {id}", self.tick);
                }
                node.crash();
                self.crashes += 1;
                self.checker.node_restarted(id);
                self.clients.node_crashed(id);
                self.queue_crash_notices(id);
            }
        }
        if self.rng.chance(options.false_notice_per_million) {
            let told = 1 + self.rng.below(options.nodes_max);
            let about = 1 + self.rng.below(options.nodes_max);
            if told != about {
                self.notices.push((told, about));
            }
        }
        if self.rng.chance(options.restart_per_million) {
            let id = 1 + self.rng.below(options.nodes_max);
            if let Some(node) = self.nodes.get_mut(&id).filter(|n| n.raw.is_none()) {
                if options.verbose {
                    eprintln!("t{} restart {id}", self.tick);
                }
                node.restart();
            }
        }
        if self.rng.chance(options.membership_per_million) {
            self.change_membership();
        }
        if self.rng.chance(options.ticker_stall_per_million) {
            let id = 1 + self.rng.below(options.nodes_max);
            let ticks = 1 + self.rng.below(options.ticker_stall_ticks_max.max(1));
            if let Some(node) = self.nodes.get_mut(&id).filter(|n| n.raw.is_some()) {
                if options.verbose {
                    eprintln!("t{} ticker of {id} stalls for {ticks} ticks", self.tick);
                }
                node.stall_left = node.stall_left.max(ticks);
                self.ticker_stalls += 1;
            }
        }
        if self.rng.chance(options.transfer_per_million) {
            let leader = self.leader_hint();
            let target = 1 + self.rng.below(options.nodes_max);
            if let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) {
                let _ = raw.transfer_leader(target);
            }
        }
    }

    /// Each running survivor of `crashed` hears of it next tick with
    /// `crash_notice_per_million`.
    fn queue_crash_notices(&mut self, crashed: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if id != crashed && self.rng.chance(self.options.crash_notice_per_million) {
                self.notices.push((id, crashed));
            }
        }
    }

    /// Tells each noticed node (if it runs) that the other is unreachable.
    fn deliver_notices(&mut self) -> Result<(), String> {
        for (told, about) in std::mem::take(&mut self.notices) {
            let Some(raw) = self.nodes.get_mut(&told).and_then(|n| n.raw.as_mut()) else {
                continue;
            };
            let acted = raw.leader_unreachable(about);
            if self.options.verbose {
                eprintln!(
                    "t{} node {told} told {about} is unreachable: {acted}",
                    self.tick
                );
            }
            self.early_campaigns += u64::from(acted);
            self.trace(&[self.tick, told, about, u64::from(acted)]);
            self.drain_ready(told)?;
        }
        Ok(())
    }

    fn change_membership(&mut self) {
        let leader = self.leader_hint();
        let target = 1 + self.rng.below(self.options.nodes_max);
        let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) else {
            return;
        };
        let conf = raw.status().conf;
        let change = if conf.is_voter(target) || conf.is_learner(target) {
            if conf.voters.len() <= 3 && conf.is_voter(target) {
                return;
            }
            ConfChange::Remove(target)
        } else {
            ConfChange::AddLearner(target)
        };
        match raw.propose_conf_change(change) {
            Ok(index) => {
                if self.options.verbose {
                    eprintln!(
                        "t{} leader {leader} proposes {change:?} at {index}",
                        self.tick
                    );
                }
                self.membership_changes += 1;
            }
            Err(
                RaftError::NotLeader { .. }
                | RaftError::ConfChangePending
                | RaftError::TransferInProgress,
            ) => {}
            Err(other) => panic!("unexpected refusal of {change:?}: {other}"),
        }
    }

    fn heal(&mut self) {
        self.faults_on = false;
        self.side.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).expect("node");
            if node.raw.is_none() {
                node.restart();
                self.checker.node_restarted(id);
            }
        }
    }

    /// One leader; every member of its configuration has its log, commit and digest.
    fn converged(&self) -> Result<(), String> {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.raw
                    .as_ref()
                    .is_some_and(|r| r.status().role == Role::Leader)
            })
            .map(|(&id, _)| id)
            .collect();
        let [leader] = leaders[..] else {
            return Err(format!("leaders {leaders:?}"));
        };
        let reference = self.nodes[&leader]
            .raw
            .as_ref()
            .expect("leader runs")
            .status();
        let digest = self.nodes[&leader].machine.digest;
        for &id in reference.conf.voters.iter().chain(&reference.conf.learners) {
            let node = &self.nodes[&id];
            let status = node.raw.as_ref().expect("healed nodes run").status();
            let same_log = (status.last_index, status.last_term)
                == (reference.last_index, reference.last_term);
            let all_applied =
                status.commit == reference.last_index && node.machine.applied == status.commit;
            if !same_log || !all_applied || node.machine.digest != digest {
                return Err(format!(
                    "node {id} at {:?} vs leader {leader} at {:?}",
                    status, reference
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sim(seed {}, tick {})", self.seed, self.tick)
    }
}
