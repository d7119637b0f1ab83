//! Early failure detection: a follower told that its leader is unreachable (the transport saw
//! the leader's connection close: a crashed process's sockets are closed by its kernel at
//! once) forgets that leader and campaigns after a short delay staggered by rank, instead of
//! waiting a whole randomized election timeout after the leader's last heartbeat.
//!
//! Owns: the core's `leader_unreachable` rule and why it is safe.
//! Must not: do I/O or read clocks (the node driver relays the transport's notice), or act in
//! lease mode.
//!
//! Why it is safe. Election safety, log matching and leader completeness never depend on
//! timing: a vote is still granted only once per term, to an up-to-date log, through the
//! persisted hard state. Timing matters to two things only:
//! - Lease reads (`ReadMode::Lease`): a leader serves reads alone while a quorum acknowledged
//!   it within the lease, trusting that none of those followers votes for anyone else before
//!   an election timeout passes since that acknowledgement. A notice can be wrong (a reset
//!   connection to a leader that still runs and still holds its lease), and a follower that
//!   forgot its leader grants votes at once, so the rule is off in lease mode. Linearizable
//!   reads in the default mode confirm leadership with a quorum round (ReadIndex), which a
//!   newer leader makes fail; they never rely on time.
//! - Disruption (CheckQuorum, PreVote): a follower that hears from a leader ignores
//!   campaigns. A node wrongly told its leader is gone only forgets that leader: its pre-vote
//!   fails while the other voters still hear the leader, and the leader's next heartbeat
//!   (over a re-dialed connection) makes it follow again with a fresh timer. Only when a
//!   quorum got the notice (the leader really died, or is cut off from all of them) does an
//!   election succeed early, as it would have after the timeout.
//!
//! The stagger: every survivor gets the notice at about the same instant; if they all
//! campaigned at once, their pre-votes would cross, each would grant the other's and their
//! elections would split the vote, costing a full timeout. So the survivor with the lowest id
//! campaigns at once and each next one `LEADER_LOSS_STAGGER_TICKS` ticks later (on a tick
//! boundary, so at least one whole tick after the first): by then the first one's vote request
//! has reached it (a round trip is well under a tick), and it granted it, or, when its own log
//! is more up to date and it refused, it campaigns itself and wins. The first one campaigns
//! once more after every other survivor had its turn: its first pre-vote may have reached a
//! survivor that had not heard of the loss yet (which ignores it, still following the dead
//! leader), and when that survivor's log is the older one, nobody else can win.

use super::config::ReadMode;
use super::core::Raft;
use super::storage::Storage;
use super::types::{NodeId, Role, NODE_NONE};

/// Ticks between the early campaigns of successive survivors (by id) of a lost leader.
pub const LEADER_LOSS_STAGGER_TICKS: u32 = 2;

impl<S: Storage> Raft<S> {
    /// The transport reports that the connection on which `peer` sends to this node broke.
    /// If `peer` is the leader this follower follows (and lease reads are off), forget it and
    /// campaign now (`rank` 0) or bring the election forward to `LEADER_LOSS_STAGGER_TICKS *
    /// rank` ticks from now, `rank` counting the other surviving voters with a lower id.
    /// Returns whether it did.
    pub(crate) fn leader_unreachable(&mut self, peer: NodeId) -> bool {
        if self.config.read_mode == ReadMode::Lease
            || peer == NODE_NONE
            || self.role != Role::Follower
            || self.leader_id != peer
            || !self.promotable()
        {
            return false;
        }
        let rank = self
            .conf
            .voters
            .iter()
            .filter(|&&voter| voter != peer && voter < self.id)
            .count() as u32;
        self.leader_id = NODE_NONE;
        let delay = if rank == 0 {
            self.campaign(false);
            // The retry, after every other survivor's turn.
            let survivors = self.conf.voters.iter().filter(|&&v| v != peer).count() as u32;
            LEADER_LOSS_STAGGER_TICKS.saturating_mul(survivors)
        } else {
            LEADER_LOSS_STAGGER_TICKS.saturating_mul(rank)
        };
        // Move the clock, not the timeout: the early campaign restarts the clock (`tick`), so
        // a failed one waits a whole randomized timeout before the next. Never later than the
        // timeout already running.
        let early = self.randomized_election_ticks.saturating_sub(delay);
        self.election_elapsed = self.election_elapsed.max(early);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Config, MemStorage, Message, RawNode};
    use std::collections::{BTreeMap, BTreeSet};

    /// Three voters, messages delivered in order until quiet; `dead` nodes neither receive nor
    /// send.
    struct Trio {
        nodes: BTreeMap<NodeId, RawNode<MemStorage>>,
        dead: BTreeSet<NodeId>,
    }

    impl Trio {
        fn new(read_mode: ReadMode) -> Trio {
            let nodes = (1..=3)
                .map(|id| {
                    let mut config = Config::new(id);
                    config.read_mode = read_mode;
                    config.seed = 11;
                    let raw = RawNode::new(config, MemStorage::bootstrap(&[1, 2, 3]));
                    (id, raw.expect("valid config"))
                })
                .collect();
            let mut trio = Trio {
                nodes,
                dead: BTreeSet::new(),
            };
            trio.deliver();
            trio
        }

        fn deliver(&mut self) {
            let mut queue: Vec<Message> = Vec::new();
            for _ in 0..10_000 {
                for (id, raw) in self.nodes.iter_mut() {
                    while raw.has_ready() {
                        let mut ready = raw.ready();
                        queue.append(&mut ready.messages);
                        raw.storage_mut().append(&ready.entries);
                        if let Some(hard_state) = ready.hard_state {
                            raw.storage_mut().set_hard_state(hard_state);
                        }
                        queue.append(&mut ready.persisted_messages);
                        raw.advance();
                    }
                    if self.dead.contains(id) {
                        queue.retain(|m| m.from != *id);
                    }
                }
                if queue.is_empty() {
                    return;
                }
                for message in std::mem::take(&mut queue) {
                    if !self.dead.contains(&message.to) && !self.dead.contains(&message.from) {
                        self.nodes.get_mut(&message.to).expect("node").step(message);
                    }
                }
            }
            panic!("messages did not quiesce");
        }

        /// One tick of every live node; returns how many ticks until someone leads (other
        /// than `old`), at most `bound`.
        fn ticks_to_new_leader(&mut self, old: NodeId, bound: u32) -> Option<u32> {
            for tick in 1..=bound {
                for (id, raw) in self.nodes.iter_mut() {
                    if !self.dead.contains(id) {
                        raw.tick();
                    }
                }
                self.deliver();
                if self.leader().is_some_and(|leader| leader != old) {
                    return Some(tick);
                }
            }
            None
        }

        fn leader(&self) -> Option<NodeId> {
            self.nodes
                .iter()
                .filter(|(id, raw)| !self.dead.contains(id) && raw.status().role == Role::Leader)
                .map(|(id, _)| *id)
                .max_by_key(|id| self.nodes[id].status().term)
        }

        fn elect(&mut self, id: NodeId) {
            self.node(id).campaign();
            self.deliver();
            assert_eq!(self.leader(), Some(id));
            // Heartbeats tell the followers who leads.
            self.ticks_to_new_leader(0, 2);
        }

        fn node(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
            self.nodes.get_mut(&id).expect("node")
        }
    }

    #[test]
    fn survivors_of_a_dead_leader_elect_without_waiting_for_a_timeout() {
        for dead_leader in 1..=3 {
            let mut trio = Trio::new(ReadMode::Safe);
            trio.elect(dead_leader);
            let old_term = trio.nodes[&dead_leader].status().term;
            trio.dead.insert(dead_leader);
            for id in (1..=3).filter(|&id| id != dead_leader).rev() {
                assert!(trio.node(id).leader_unreachable(dead_leader));
            }
            // The lowest surviving id campaigns at once and wins, before any tick: the
            // election timeout (at least 10 ticks) never comes into it.
            trio.deliver();
            let leader = trio.leader().expect("a leader");
            assert_eq!(leader, if dead_leader == 1 { 2 } else { 1 });
            assert_eq!(trio.nodes[&leader].status().term, old_term + 1);
        }
    }

    #[test]
    fn a_more_up_to_date_survivor_wins_one_stagger_later() {
        let mut trio = Trio::new(ReadMode::Safe);
        trio.elect(3);
        // Node 1 misses the last entry: it must not win, node 2 (which has it) must.
        trio.dead.insert(1);
        trio.node(3).propose(vec![b"x".to_vec()]).expect("leader");
        trio.deliver();
        trio.dead.clear();
        let last = trio.nodes[&3].status().last_index;
        assert_eq!(trio.nodes[&2].status().last_index, last);
        assert!(trio.nodes[&1].status().last_index < last);
        trio.dead.insert(3);
        for id in [1, 2] {
            assert!(trio.node(id).leader_unreachable(3));
        }
        // Node 1 campaigns at once and loses; node 2 campaigns on its stagger.
        trio.deliver();
        assert_ne!(trio.nodes[&1].status().role, Role::Leader);
        let ticks = trio.ticks_to_new_leader(3, 10);
        assert_eq!(ticks, Some(LEADER_LOSS_STAGGER_TICKS));
        assert_eq!(trio.leader(), Some(2));
    }

    #[test]
    fn the_first_survivor_tries_again_when_its_first_pre_vote_was_ignored() {
        let mut trio = Trio::new(ReadMode::Safe);
        trio.elect(1);
        // Node 3 misses the last entry, so only node 2 can win.
        trio.dead.insert(3);
        trio.node(1).propose(vec![b"x".to_vec()]).expect("leader");
        trio.deliver();
        trio.dead = BTreeSet::from([1]);
        // Node 2 hears of the loss first and campaigns at once; node 3 still follows node 1
        // and ignores the pre-vote. Then node 3 hears of it and campaigns on its stagger, in
        // vain (its log is older).
        assert!(trio.node(2).leader_unreachable(1));
        trio.deliver();
        assert!(trio.node(3).leader_unreachable(1));
        assert_eq!(trio.leader(), None);
        let ticks = trio.ticks_to_new_leader(1, 10);
        // Node 2's retry comes after both turns (2 survivors), long before a timeout.
        assert_eq!(ticks, Some(2 * LEADER_LOSS_STAGGER_TICKS));
        assert_eq!(trio.leader(), Some(2));
    }

    #[test]
    fn a_wrong_notice_does_not_disrupt_a_live_leader() {
        let mut trio = Trio::new(ReadMode::Safe);
        trio.elect(2);
        let term = trio.nodes[&2].status().term;
        // Only node 1 lost its connection (it is re-dialed): its early pre-vote fails, and
        // the next heartbeat makes it follow node 2 again.
        assert!(trio.node(1).leader_unreachable(2));
        assert_eq!(trio.ticks_to_new_leader(2, 30), None);
        for id in 1..=3 {
            let status = trio.nodes[&id].status();
            assert_eq!((status.term, status.leader_id), (term, 2), "node {id}");
        }
    }

    #[test]
    fn notices_about_others_or_in_lease_mode_change_nothing() {
        let mut trio = Trio::new(ReadMode::Safe);
        trio.elect(2);
        // Not its leader; a leader is not a follower.
        assert!(!trio.node(1).leader_unreachable(3));
        assert!(!trio.node(2).leader_unreachable(1));
        assert!(!trio.node(1).leader_unreachable(NODE_NONE));
        assert_eq!(trio.nodes[&1].status().leader_id, 2);

        let mut trio = Trio::new(ReadMode::Lease);
        // Fresh lease-mode nodes honour a lease they may have granted before a restart for
        // an election timeout: the first leader comes from the clock.
        trio.ticks_to_new_leader(0, 100).expect("a first leader");
        let leader = trio.leader().expect("a leader");
        trio.ticks_to_new_leader(0, 2);
        trio.dead.insert(leader);
        for id in (1..=3).filter(|&id| id != leader) {
            assert!(!trio.node(id).leader_unreachable(leader));
            assert_eq!(trio.nodes[&id].status().leader_id, leader);
        }
        // Lease mode keeps the full timeout: nobody may vote before the lease expires.
        let ticks = trio
            .ticks_to_new_leader(leader, 100)
            .expect("elected eventually");
        assert!(ticks >= 10, "elected after {ticks} ticks, inside the lease");
    }
}
