//! `ConfSlot`: the leader driver's membership change waiting for a log index.
//!
//! In a node the engine's sequencer assigns the log indexes of its batches itself (each
//! event's envelope holds its index), so the batches on their way to the Raft thread have
//! indexes already. A membership change appended at the log's end at once would take the
//! index of the next of them, which the driver would then abandon, and the sequencer would
//! rebuild its copy of the state (a clone of the committed state) and fail the writes in
//! transit.
//! So the change waits here until the engine gives it an index: at once when nothing is in
//! transit ([`Replica::reserve_index`]), else the next index the sequencer leaves free before
//! one of its batches (the `slot` of [`crate::engine::Proposer::propose`]), which the driver
//! fills with the change just before appending that batch ([`ConfSlot::fill`]).
//!
//! Owns: at most one waiting change, the answer to whoever asked for it, and the rule that a
//! free index is never left empty (a no-op fills it when the change is gone).
//! Must not: block (it runs on the Raft thread) or append anywhere but at the log's end.

use super::core::RaftError;
use super::raw_node::RawNode;
use super::storage::Storage;
use super::types::{ConfChange, NodeId, Payload};
use crate::engine::Replica;
use std::sync::mpsc::Sender;

/// Where the outcome of an operator's change goes: the index of its entry, or the refusal.
pub(crate) type ConfReply = Sender<Result<u64, RaftError>>;

/// The one membership change waiting for an index (see the module docs).
#[derive(Default)]
pub(crate) struct ConfSlot {
    /// The change and whoever waits for its outcome (`None`: the driver's own promotion of
    /// a learner, which nobody waits for).
    pending: Option<(ConfChange, Option<ConfReply>)>,
}

/// Hands `outcome` to `reply`, if anyone waits for it (a caller that gave up is no error).
fn answer(reply: Option<ConfReply>, outcome: Result<u64, RaftError>) {
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

impl ConfSlot {
    /// Whether a change waits for an index.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A new change: refused at once when one already waits (`ConfChangePending`) or when
    /// the core would refuse it now; otherwise it waits, and is appended at once if the
    /// engine grants the next index now ([`ConfSlot::retry`]). `leading`: whether the engine
    /// was told it leads (the sequencer runs only then; before, the change needs no index
    /// from it).
    pub(crate) fn request<S: Storage>(
        &mut self,
        raw: &mut RawNode<S>,
        replica: &dyn Replica,
        leading: bool,
        change: ConfChange,
        reply: Option<ConfReply>,
    ) {
        if self.pending.is_some() {
            answer(reply, Err(RaftError::ConfChangePending));
            return;
        }
        if let Err(refusal) = raw.check_conf_change(change) {
            answer(reply, Err(refusal));
            return;
        }
        self.pending = Some((change, reply));
        self.retry(raw, replica, leading);
    }

    /// Asks the engine again for the next index (after a request, and on every tick while a
    /// change waits: the sequencer may have gone idle since it was asked) and appends the
    /// change there when granted. A change the core now refuses (leadership lost, a transfer
    /// began) is answered with the refusal, before any index is asked for.
    pub(crate) fn retry<S: Storage>(
        &mut self,
        raw: &mut RawNode<S>,
        replica: &dyn Replica,
        leading: bool,
    ) {
        let Some((change, _)) = self.pending else {
            return;
        };
        if let Err(refusal) = raw.check_conf_change(change) {
            self.answer(Err(refusal));
            return;
        }
        let next_index = raw.last_index() + 1;
        if leading && !replica.reserve_index(raw.term(), next_index) {
            return; // The sequencer leaves an index free before its next batch.
        }
        let appended = raw.propose_conf_change(change);
        // Checked just above, on this thread, with nothing stepped in between.
        assert_eq!(
            appended,
            Ok(next_index),
            "a checked membership change goes to the index reserved for it"
        );
        self.answer(appended);
    }

    /// A batch arrived after an index its sequencer left free, `slot`, which is the log's
    /// next index: appends the waiting change there, or, when none waits any more (it was
    /// appended meanwhile or answered) or the core now refuses it, a no-op, so the batch's
    /// indexes still follow. `false` when even the no-op is refused (a leadership transfer
    /// began): the batch cannot be appended either.
    pub(crate) fn fill<S: Storage>(&mut self, raw: &mut RawNode<S>, slot: u64) -> bool {
        assert_eq!(
            slot,
            raw.last_index() + 1,
            "a free index is filled at the log's end"
        );
        if let Some((change, _)) = self.pending {
            match raw.check_conf_change(change) {
                Ok(()) => {
                    let appended = raw.propose_conf_change(change);
                    assert_eq!(appended, Ok(slot), "the change takes the free index");
                    self.answer(appended);
                    return true;
                }
                Err(refusal) => self.answer(Err(refusal)),
            }
        }
        match raw.propose(vec![Payload::default()]) {
            Ok(index) => {
                assert_eq!(index, slot, "the no-op takes the free index");
                true
            }
            Err(_) => false,
        }
    }

    /// This node no longer leads: the waiting change (if any) is refused with `NotLeader`
    /// naming the leader it knows, and is not retried.
    pub(crate) fn lose_leadership(&mut self, leader: NodeId) {
        if self.pending.is_some() {
            self.answer(Err(RaftError::NotLeader { leader }));
        }
    }

    fn answer(&mut self, outcome: Result<u64, RaftError>) {
        let (_, reply) = self.pending.take().expect("a change waits");
        answer(reply, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Token;
    use crate::raft::types::Role;
    use crate::raft::{Config, EntryKind, MemStorage};
    use std::sync::mpsc::{self, Receiver};
    use std::sync::Arc;

    /// A replica whose `reserve_index` answers as told and counts its calls.
    struct Reserve {
        grant: std::sync::atomic::AtomicBool,
        asked: std::sync::Mutex<Vec<(u64, u64)>>,
    }

    impl Reserve {
        fn new(grant: bool) -> Reserve {
            Reserve {
                grant: std::sync::atomic::AtomicBool::new(grant),
                asked: std::sync::Mutex::new(Vec::new()),
            }
        }
    }

    impl Replica for Reserve {
        fn apply(&self, _: u64, _: &[Arc<[u8]>], _: Option<Token>) {}
        fn abandon(&self, _: Token) {}
        fn set_leader(&self, _: Option<u64>) {}
        fn set_next_index(&self, _: u64) {}
        fn reserve_index(&self, term: u64, next_index: u64) -> bool {
            self.asked.lock().unwrap().push((term, next_index));
            self.grant.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn snapshot_index(&self) -> u64 {
            0
        }
        fn restore(&self, _: u64) -> Result<(), String> {
            Ok(())
        }
        fn delivered_index(&self) -> u64 {
            0
        }
        fn applied_index(&self) -> u64 {
            0
        }
        fn applied_digest(&self) -> (u64, [u8; crate::engine::DIGEST_BYTES]) {
            (0, [0; crate::engine::DIGEST_BYTES])
        }
    }

    /// A single-voter leader whose no-op is committed (a change may be proposed).
    fn leader() -> RawNode<MemStorage> {
        let mut config = Config::new(1);
        config.election_ticks = 10;
        config.heartbeat_ticks = 1;
        let mut raw = RawNode::new(config, MemStorage::bootstrap(&[1])).expect("valid config");
        let mut ticks = 0;
        while raw.role() != Role::Leader
            || raw.check_conf_change(ConfChange::AddLearner(2)).is_err()
        {
            ticks += 1;
            assert!(ticks < 1000, "a single voter leads");
            raw.tick();
            persist(&mut raw);
        }
        raw
    }

    /// Persists and applies everything the core hands out.
    fn persist(raw: &mut RawNode<MemStorage>) {
        while raw.has_ready() {
            let ready = raw.ready();
            raw.storage_mut().append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                raw.storage_mut().set_hard_state(hard_state);
            }
            raw.advance();
        }
    }

    fn reply() -> (Option<ConfReply>, Receiver<Result<u64, RaftError>>) {
        let (sender, receiver) = mpsc::channel();
        (Some(sender), receiver)
    }

    /// The kind of the log's last entry and whether it is empty (persisted first).
    fn last_kind(raw: &mut RawNode<MemStorage>) -> (EntryKind, bool) {
        persist(raw);
        let last = raw.last_index();
        let entry = raw
            .storage()
            .entries(last, last + 1, u64::MAX)
            .expect("held")[0]
            .clone();
        (entry.kind, entry.data.is_empty())
    }

    #[test]
    fn a_granted_change_is_appended_at_once_at_the_index_asked_for() {
        let mut raw = leader();
        let replica = Reserve::new(true);
        let (sender, outcome) = reply();
        let next = raw.last_index() + 1;
        let mut slot = ConfSlot::default();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(2), sender);
        assert_eq!(outcome.try_recv(), Ok(Ok(next)));
        assert!(!slot.is_pending());
        assert_eq!(*replica.asked.lock().unwrap(), vec![(raw.term(), next)]);
        assert_eq!(last_kind(&mut raw).0, EntryKind::ConfChange);
    }

    #[test]
    fn before_the_engine_leads_a_change_asks_no_index() {
        let mut raw = leader();
        let replica = Reserve::new(false);
        let (sender, outcome) = reply();
        let mut slot = ConfSlot::default();
        slot.request(&mut raw, &replica, false, ConfChange::AddLearner(2), sender);
        assert!(outcome.try_recv().expect("answered").is_ok());
        assert!(replica.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn a_refused_change_is_answered_at_once_and_does_not_wait() {
        let mut raw = leader();
        let replica = Reserve::new(false);
        let mut slot = ConfSlot::default();
        let (sender, outcome) = reply();
        slot.request(&mut raw, &replica, true, ConfChange::Remove(7), sender);
        assert_eq!(
            outcome.try_recv(),
            Ok(Err(RaftError::InvalidRequest("no such member")))
        );
        assert!(!slot.is_pending());
        assert!(replica.asked.lock().unwrap().is_empty(), "no index asked");
        // A second change while one waits is refused as pending.
        let (first, first_outcome) = reply();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(2), first);
        assert!(slot.is_pending());
        assert!(first_outcome.try_recv().is_err(), "it waits");
        let (second, second_outcome) = reply();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(3), second);
        assert_eq!(
            second_outcome.try_recv(),
            Ok(Err(RaftError::ConfChangePending))
        );
        assert!(slot.is_pending(), "the first still waits");
    }

    #[test]
    fn a_waiting_change_takes_the_free_index_a_batch_brings() {
        let mut raw = leader();
        let replica = Reserve::new(false);
        let mut slot = ConfSlot::default();
        let (sender, outcome) = reply();
        let before = raw.last_index();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(2), sender);
        assert!(slot.is_pending() && outcome.try_recv().is_err());
        assert_eq!(raw.last_index(), before, "nothing appended while refused");
        // A tick asks again; still refused.
        slot.retry(&mut raw, &replica, true);
        assert_eq!(replica.asked.lock().unwrap().len(), 2);
        assert!(slot.fill(&mut raw, before + 1));
        assert_eq!(outcome.try_recv(), Ok(Ok(before + 1)));
        assert_eq!(last_kind(&mut raw).0, EntryKind::ConfChange);
        assert!(!slot.is_pending());
    }

    #[test]
    fn a_free_index_without_a_waiting_change_gets_a_noop() {
        let mut raw = leader();
        let mut slot = ConfSlot::default();
        let next = raw.last_index() + 1;
        assert!(slot.fill(&mut raw, next));
        assert_eq!(raw.last_index(), next);
        assert_eq!(last_kind(&mut raw), (EntryKind::Normal, true));
        // A waiting change the core refuses by now is answered, and a no-op fills the index.
        let replica = Reserve::new(false);
        let (sender, outcome) = reply();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(2), sender);
        persist(&mut raw);
        slot.pending = Some((ConfChange::Remove(9), slot.pending.take().and_then(|p| p.1)));
        assert!(slot.fill(&mut raw, next + 1));
        assert_eq!(
            outcome.try_recv(),
            Ok(Err(RaftError::InvalidRequest("no such member")))
        );
        assert_eq!(last_kind(&mut raw), (EntryKind::Normal, true));
    }

    #[test]
    fn a_waiting_change_is_refused_when_leadership_is_lost() {
        let mut raw = leader();
        let replica = Reserve::new(false);
        let mut slot = ConfSlot::default();
        let (sender, outcome) = reply();
        slot.request(&mut raw, &replica, true, ConfChange::AddLearner(2), sender);
        slot.lose_leadership(3);
        assert_eq!(
            outcome.try_recv(),
            Ok(Err(RaftError::NotLeader { leader: 3 }))
        );
        assert!(!slot.is_pending());
        // Nothing is appended on the next tick or free index for it.
        let last = raw.last_index();
        slot.retry(&mut raw, &replica, true);
        assert_eq!(raw.last_index(), last);
    }
}
