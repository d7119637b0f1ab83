//! The read side of a node: batching of ReadIndex requests, the wait until the engine applied
//! a read's index, and the lease a leader publishes so HTTP threads serve linearizable reads
//! without the Raft thread.
//!
//! Owns: `ReadBatcher` (one ReadIndex round in flight, later reads join the next; readers
//! either wait for their batch or join it and hear its outcome through the batch listener;
//! it counts reads and batches for the node status, so a test can see reads share rounds),
//! `AppliedWatch`, `ReadLease` (the shared lease deadline and commit index) and `RoundClock`
//! (when each heartbeat round started, in monotonic time).
//! Must not: touch the `RawNode` (only the Raft thread does) or decide whether a lease holds
//! (the core does; this module only turns the core's answer into a deadline in real time).
//!
//! Why a lease read is linearizable (`--read-mode lease`): the core grants a lease when a
//! quorum acknowledged a heartbeat round; voters refuse to elect anyone for an election
//! timeout after hearing from the leader, so no other leader can exist until
//! `lease_ticks * TICK_MS` after the round started. The Raft thread notes an `Instant` taken
//! *before* each round was created and publishes `that instant + lease` as the deadline, so
//! the deadline is never later than the one the voters honour (same drift assumption as the
//! core's, see `leader.rs`), even when the Raft thread runs late. It publishes the commit
//! index before any message, acknowledgement or read answer can reveal it, so a reader that
//! sees the lease valid and then loads the commit index gets an index covering every write
//! acknowledged, and every linearizable read answered, before the reader arrived.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Batches linearizable reads: at most one ReadIndex request is in flight. A batch stays open
/// to new readers until the Raft thread seals it, just before it asks for the confirmation
/// (so every reader of a batch arrived before its ReadIndex); a read arriving after that joins
/// the next batch, sent the moment the current one completes (a confirmation asked before a
/// read arrived may not cover it). So the Raft thread sees one event per batch, not per read,
/// and readers arriving while it gets round to the batch still share it.
pub(crate) struct ReadBatcher {
    state: Mutex<ReadBatches>,
    completed: std::sync::Condvar,
    /// Told every batch's outcome, after the lock is released (see [`ReadBatcher::join`]).
    listener: OnceLock<BatchListener>,
}

/// Starts batch `id` (hands it to the Raft thread); `false` when the node is stopping.
pub(crate) type StartBatch = Box<dyn Fn(u64) -> bool + Send>;

/// Hears each batch's id and outcome once it completes, on the completing thread (the Raft
/// thread or a peer reader), without any batcher lock held. A batch's outcome also serves
/// every earlier batch: a later batch started after their reads arrived.
pub(crate) type BatchListener = Box<dyn Fn(u64, &Result<u64, String>) + Send + Sync>;

/// What a stopped node answers reads with.
const STOPPING: &str = "the node is stopping";

struct ReadBatches {
    start: StartBatch,
    /// Id of the last batch sent to the Raft thread.
    sent: u64,
    /// Whether batch `sent` awaits its outcome.
    in_flight: bool,
    /// Whether batch `sent` is closed to new readers (its confirmation was asked for).
    sealed: bool,
    /// Whether some reader waits for batch `sent + 1`.
    next_wanted: bool,
    /// Id of the last completed batch, and its outcome (the engine index to reach).
    completed: u64,
    outcome: Result<u64, String>,
    /// Reads that joined a batch so far (for the status counters).
    joined: u64,
    /// The number the first batch follows (see [`ReadBatcher::numbered_after`]).
    base: u64,
}

/// Largest number a node's first read batch is numbered after (see
/// [`ReadBatcher::numbered_after`]): leaves room for 2^62 batches before the count wraps.
pub(crate) const READ_BATCH_BASE_MAX: u64 = u64::MAX >> 2;

impl ReadBatcher {
    /// A batcher whose first batch is number 1 (tests).
    #[cfg(test)]
    pub(crate) fn new(start: StartBatch) -> ReadBatcher {
        ReadBatcher::numbered_after(start, 0)
    }

    /// A batcher whose first batch is number `base + 1`. A batch's number travels as the
    /// ReadIndex context, and its answer completes whichever batch of this node bears that
    /// number: a node must number its batches apart from its earlier runs, or an answer to
    /// a batch of the process before a restart (still queued toward this node's id when it
    /// came back) would complete the new batch of the same number with an index confirmed
    /// before the new batch's reads arrived (a stale read). A node takes a random `base`.
    pub(crate) fn numbered_after(start: StartBatch, base: u64) -> ReadBatcher {
        assert!(
            base <= READ_BATCH_BASE_MAX,
            "read batch base {base} too large"
        );
        ReadBatcher {
            state: Mutex::new(ReadBatches {
                start,
                sent: base,
                in_flight: false,
                sealed: false,
                next_wanted: false,
                completed: base,
                outcome: Err("no read yet".to_string()),
                joined: 0,
                base,
            }),
            completed: std::sync::Condvar::new(),
            listener: OnceLock::new(),
        }
    }

    /// Reads that joined a batch, and batches started (sent or not), since the batcher was
    /// made: a batch shared by many reads shows as fewer batches than reads.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let state = self.state.lock().expect("read batcher poisoned");
        (state.joined, state.sent - state.base)
    }

    /// Sets the listener [`ReadBatcher::join`]ed reads hear their outcome from; `false` when
    /// one is already set (it stays).
    pub(crate) fn listen(&self, listener: BatchListener) -> bool {
        self.listener.set(listener).is_ok()
    }

    /// Joins the next batch that starts after now, without waiting: its id, whose outcome
    /// (or a later batch's) reaches the listener. A caller that files the read under that id
    /// must do so under a lock the listener also takes, so the outcome cannot slip between.
    ///
    /// # Errors
    /// The node is stopping (no batch will start).
    pub(crate) fn join(&self) -> Result<u64, String> {
        let mut state = self.state.lock().expect("read batcher poisoned");
        let mine = state.join();
        if state.completed >= mine {
            return Err(STOPPING.to_string()); // Its start failed: nobody else is in it.
        }
        Ok(mine)
    }

    /// Raft thread, before it asks for batch `batch`'s confirmation: closes it to new readers.
    /// `false` when that batch is no longer in flight (nothing to ask for).
    pub(crate) fn seal(&self, batch: u64) -> bool {
        let mut state = self.state.lock().expect("read batcher poisoned");
        if !state.in_flight || state.sent != batch {
            return false;
        }
        state.sealed = true;
        true
    }

    /// Whether batch `batch` has its outcome (the driver stops tracking it).
    pub(crate) fn settled(&self, batch: u64) -> bool {
        self.state.lock().expect("read batcher poisoned").completed >= batch
    }

    /// Joins the next batch that starts after now and waits for its outcome.
    pub(crate) fn read(&self, timeout: Duration) -> Result<u64, String> {
        let mut state = self.state.lock().expect("read batcher poisoned");
        let mine = state.join();
        let (state, _) = self
            .completed
            .wait_timeout_while(state, timeout, |state| state.completed < mine)
            .expect("read batcher poisoned");
        if state.completed < mine {
            return Err("the read was not confirmed by a leader in time".to_string());
        }
        // A later batch's outcome serves too: it started after this read arrived.
        state.outcome.clone()
    }

    /// Records batch `batch`'s outcome, wakes its readers and starts the next batch.
    /// Any thread may call it; a batch completes once (later calls for it are ignored).
    pub(crate) fn complete(&self, batch: u64, outcome: Result<u64, String>) {
        let mut failed_next = None;
        {
            let mut state = self.state.lock().expect("read batcher poisoned");
            if !state.in_flight || batch != state.sent {
                return; // Already completed (expired, then confirmed late).
            }
            assert!(batch > state.completed, "read batches complete in order");
            state.completed = batch;
            state.outcome = outcome.clone();
            state.in_flight = false;
            if std::mem::take(&mut state.next_wanted) {
                state.start_next();
                if !state.in_flight {
                    failed_next = Some(state.sent);
                }
            }
            self.completed.notify_all();
        }
        if let Some(listener) = self.listener.get() {
            listener(batch, &outcome);
            if let Some(next) = failed_next {
                listener(next, &Err(STOPPING.to_string()));
            }
        }
    }
}

/// A random base for a node's read batch numbers (see [`ReadBatcher::numbered_after`]).
///
/// # Errors
/// The system's random source failed.
pub(crate) fn fresh_batch_base() -> std::io::Result<u64> {
    Ok(crate::crypto::random::u64()? & READ_BATCH_BASE_MAX)
}

impl ReadBatches {
    /// The batch a read arriving now belongs to: the open one, or when the one in flight is
    /// sealed (its confirmation may predate this read) the next one (sent when the current one
    /// completes), or a new one started now.
    fn join(&mut self) -> u64 {
        self.joined += 1;
        if self.in_flight && !self.sealed {
            self.sent
        } else if self.in_flight {
            self.next_wanted = true;
            self.sent + 1
        } else {
            self.start_next();
            self.sent
        }
    }

    fn start_next(&mut self) {
        assert!(!self.in_flight, "one read batch in flight at most");
        self.sent += 1;
        self.sealed = false;
        if (self.start)(self.sent) {
            self.in_flight = true;
        } else {
            self.completed = self.sent;
            self.outcome = Err(STOPPING.to_string());
        }
    }
}

/// The engine's applied event index as the node's waiters see it: the app's post-commit hook
/// raises it, linearizable reads wait on it (condition variable, no polling).
#[derive(Default)]
pub struct AppliedWatch {
    /// The applied index, and the readers waiting: `notify_all` is a system call even with
    /// nobody waiting, and the applier raises the index after every batch.
    applied: Mutex<(u64, u32)>,
    raised: std::sync::Condvar,
}

impl AppliedWatch {
    /// Records that the engine applied every event up to `index`.
    pub fn raise(&self, index: u64) {
        let mut applied = self.applied.lock().expect("applied watch poisoned");
        if index > applied.0 {
            applied.0 = index;
            if applied.1 > 0 {
                self.raised.notify_all();
            }
        }
    }

    /// Waits until `index` is applied; `false` when `timeout` passed first.
    pub fn wait(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.lock().expect("applied watch poisoned");
        applied.1 += 1;
        let (mut applied, _) = self
            .raised
            .wait_timeout_while(applied, timeout, |applied| applied.0 < index)
            .expect("applied watch poisoned");
        applied.1 -= 1;
        applied.0 >= index
    }
}

/// Heartbeat rounds whose start time the Raft thread remembers (older rounds grant no lease).
const ROUNDS_REMEMBERED_MAX: usize = 1024;

/// A leader's lease as HTTP threads see it: a deadline in monotonic time and the commit
/// index. Written by the Raft thread only; read lock-free by any thread.
pub struct ReadLease {
    origin: Instant,
    /// Nanoseconds after `origin` until which the lease holds; 0: no lease.
    until_ns: AtomicU64,
    /// The commit index, published before anything reveals it (see the module doc).
    commit: AtomicU64,
    /// The node's term, for the messages a peer reader sends on the lease's behalf.
    term: AtomicU64,
}

impl Default for ReadLease {
    fn default() -> Self {
        ReadLease {
            origin: Instant::now(),
            until_ns: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            term: AtomicU64::new(0),
        }
    }
}

impl ReadLease {
    /// The index a linearizable read starting now must see applied before it is served, if
    /// this node's lease holds now; `None` otherwise (ask the leader instead).
    pub fn read_index(&self) -> Option<u64> {
        let until = self.until_ns.load(Ordering::SeqCst);
        if until == 0 || self.now_ns() >= until {
            return None;
        }
        // Loaded after the lease check: at least the commit index of that moment.
        Some(self.commit.load(Ordering::SeqCst))
    }

    /// Raft thread: publishes the commit index. Call before sending messages, acknowledging
    /// writes or answering reads that depend on it.
    pub(crate) fn publish_commit(&self, commit: u64) {
        let previous = self.commit.swap(commit, Ordering::SeqCst);
        assert!(
            previous <= commit,
            "commit index went back: {previous} -> {commit}"
        );
    }

    /// Raft thread: the node's current term (labels answers sent under the lease; a read
    /// answer's validity rests on the lease, not on this label).
    pub(crate) fn publish_term(&self, term: u64) {
        self.term.store(term, Ordering::SeqCst);
    }

    /// The term last published.
    pub(crate) fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    /// Raft thread: the lease holds until `deadline` (`None`: no lease from now on).
    pub(crate) fn publish_deadline(&self, deadline: Option<Instant>) {
        let until = deadline.map_or(0, |deadline| {
            let ns = deadline.saturating_duration_since(self.origin).as_nanos();
            // At least 1 (0 means none); an absurdly far deadline saturates.
            u64::try_from(ns).unwrap_or(u64::MAX).max(1)
        });
        self.until_ns.store(until, Ordering::SeqCst);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// When heartbeat rounds started, as ranges of round numbers created after an `Instant`
/// noted before the Raft thread did the work that created them (so never later than the
/// real start).
#[derive(Default)]
pub(crate) struct RoundClock {
    /// (first round, last round, an instant before both were created), oldest first.
    ranges: VecDeque<(u64, u64, Instant)>,
    /// The newest round noted.
    noted: u64,
}

impl RoundClock {
    /// Notes that every round above the last noted one up to `round` was created after
    /// `before`.
    pub(crate) fn note(&mut self, round: u64, before: Instant) {
        if round <= self.noted {
            return;
        }
        self.ranges.push_back((self.noted + 1, round, before));
        self.noted = round;
        if self.ranges.len() > ROUNDS_REMEMBERED_MAX {
            self.ranges.pop_front();
        }
    }

    /// An instant no later than the start of `round`, if remembered.
    pub(crate) fn started(&self, round: u64) -> Option<Instant> {
        self.ranges
            .iter()
            .rev()
            .find(|(first, last, _)| (*first..=*last).contains(&round))
            .map(|(_, _, before)| *before)
    }

    /// The deadline of a lease resting on `round` (`None`: none, or the round is forgotten),
    /// given the lease length.
    pub(crate) fn deadline(&self, round: Option<u64>, lease: Duration) -> Option<Instant> {
        match round {
            // A sole voter needs no confirmation: a deadline far enough to never matter,
            // republished (or withdrawn) after every event the Raft thread handles.
            None => Some(Instant::now() + Duration::from_secs(LEASE_SOLE_VOTER_S)),
            Some(round) => self.started(round).map(|start| start + lease),
        }
    }
}

/// A sole voter's lease length, in seconds: it is republished or withdrawn on every pass of
/// the Raft thread, so this only needs to outlast one pass.
const LEASE_SOLE_VOTER_S: u64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{self, Receiver};
    use std::sync::Arc;
    use std::thread;

    fn next_batch(receiver: &Receiver<u64>) -> u64 {
        receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("expected a read batch")
    }

    fn batcher() -> (Arc<ReadBatcher>, Receiver<u64>) {
        let (sender, receiver) = mpsc::channel();
        let start: StartBatch = Box::new(move |batch| sender.send(batch).is_ok());
        (Arc::new(ReadBatcher::new(start)), receiver)
    }

    #[test]
    fn an_answer_to_a_batch_of_an_earlier_run_completes_no_batch_of_this_one() {
        // The node before a restart: its first batch is in flight when it stops.
        let (sender, earlier_run) = mpsc::channel();
        let start: StartBatch = Box::new(move |batch| sender.send(batch).is_ok());
        let before = ReadBatcher::numbered_after(start, fresh_batch_base().expect("random"));
        assert!(before.join().is_ok());
        let stale = next_batch(&earlier_run);
        // The node after the restart, with a read of its own in flight.
        let (sender, this_run) = mpsc::channel();
        let start: StartBatch = Box::new(move |batch| sender.send(batch).is_ok());
        let after = Arc::new(ReadBatcher::numbered_after(
            start,
            fresh_batch_base().expect("random"),
        ));
        let reader = {
            let after = Arc::clone(&after);
            thread::spawn(move || after.read(Duration::from_secs(30)))
        };
        let current = next_batch(&this_run);
        // The leader's answer to the earlier run's batch arrives (index 5, confirmed then).
        after.complete(stale, Ok(5));
        assert!(
            !after.settled(current),
            "a stale answer completed batch {current}"
        );
        after.complete(current, Ok(9));
        assert_eq!(reader.join().expect("reader"), Ok(9));
        assert_eq!(after.counts(), (1, 1), "the counters count from the base");
    }

    #[test]
    fn a_read_arriving_during_a_batch_waits_for_the_next_one() {
        let (batcher, receiver) = batcher();
        let reader = |batcher: &Arc<ReadBatcher>| {
            let batcher = Arc::clone(batcher);
            thread::spawn(move || batcher.read(Duration::from_secs(30)))
        };
        let first = reader(&batcher);
        assert_eq!(next_batch(&receiver), 1);
        assert!(
            batcher.seal(1),
            "the driver asks for batch 1's confirmation"
        );
        let second = reader(&batcher);
        while !batcher.state.lock().unwrap().next_wanted {
            thread::yield_now();
        }
        // Batch 1 started before the second read arrived: it answers the first read only,
        // and batch 2 leaves at once for the second.
        batcher.complete(1, Ok(5));
        assert_eq!(first.join().unwrap(), Ok(5));
        assert_eq!(next_batch(&receiver), 2);
        assert!(!second.is_finished());
        batcher.complete(1, Ok(0)); // Late: ignored.
        batcher.complete(2, Ok(7));
        assert_eq!(second.join().unwrap(), Ok(7));
        assert!(receiver.try_recv().is_err(), "no batch without readers");
    }

    #[test]
    fn an_unanswered_batch_times_out_and_the_next_read_starts_a_batch() {
        let (batcher, receiver) = batcher();
        assert!(batcher.read(Duration::from_millis(1)).is_err());
        assert_eq!(next_batch(&receiver), 1);
        // The driver expires batch 1; the next read starts batch 2 itself.
        batcher.complete(1, Err("expired".into()));
        let reader = {
            let batcher = Arc::clone(&batcher);
            thread::spawn(move || batcher.read(Duration::from_secs(30)))
        };
        assert_eq!(next_batch(&receiver), 2);
        batcher.complete(2, Ok(9));
        assert_eq!(reader.join().unwrap(), Ok(9));
        // A stopped node (its inbox gone) fails reads at once instead of waiting.
        let stopped = ReadBatcher::new(Box::new(|_| false));
        assert!(stopped.read(Duration::from_secs(30)).is_err());
    }

    #[test]
    fn joined_reads_hear_their_batch_from_the_listener_without_waiting() {
        let (batcher, receiver) = batcher();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener: BatchListener = {
            let heard = Arc::clone(&heard);
            Box::new(move |batch, outcome| heard.lock().unwrap().push((batch, outcome.clone())))
        };
        assert!(batcher.listen(listener));
        assert!(
            !batcher.listen(Box::new(|_, _| {})),
            "one listener per batcher"
        );
        assert_eq!(
            batcher.join(),
            Ok(1),
            "nothing in flight: batch 1 starts now"
        );
        assert_eq!(next_batch(&receiver), 1);
        assert_eq!(
            batcher.join(),
            Ok(1),
            "not sealed yet: still open to readers"
        );
        assert!(batcher.seal(1));
        assert!(!batcher.seal(2), "batch 2 is not in flight");
        // Batch 1's confirmation may predate these reads: they join batch 2.
        assert_eq!(batcher.join(), Ok(2));
        assert_eq!(batcher.join(), Ok(2));
        assert!(receiver.try_recv().is_err(), "one batch in flight at most");
        assert!(!batcher.settled(1));
        batcher.complete(1, Ok(5));
        assert!(batcher.settled(1) && !batcher.settled(2));
        assert_eq!(next_batch(&receiver), 2);
        assert!(batcher.seal(2));
        batcher.complete(2, Ok(6));
        batcher.complete(2, Ok(9)); // Late duplicate: ignored, not heard.
        assert_eq!(*heard.lock().unwrap(), vec![(1, Ok(5)), (2, Ok(6))]);
        assert!(receiver.try_recv().is_err(), "no batch without readers");
        assert_eq!(batcher.counts(), (4, 2), "four reads shared two batches");
    }

    #[test]
    fn a_batch_that_cannot_start_fails_its_joiners() {
        let stopped = ReadBatcher::new(Box::new(|_| false));
        assert!(stopped.join().is_err(), "nobody would ever confirm it");
        // Batch 1 leaves, then the node stops: batch 2's joiners hear the failure.
        let started = Arc::new(AtomicU64::new(0));
        let batcher = {
            let started = Arc::clone(&started);
            ReadBatcher::new(Box::new(move |_| {
                started.fetch_add(1, Ordering::SeqCst) == 0
            }))
        };
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener: BatchListener = {
            let heard = Arc::clone(&heard);
            Box::new(move |batch, outcome| heard.lock().unwrap().push((batch, outcome.is_ok())))
        };
        assert!(batcher.listen(listener));
        assert_eq!(batcher.join(), Ok(1));
        assert!(batcher.seal(1));
        assert_eq!(batcher.join(), Ok(2));
        batcher.complete(1, Ok(3));
        assert_eq!(*heard.lock().unwrap(), vec![(1, true), (2, false)]);
        assert!(batcher.settled(2));
    }

    #[test]
    fn the_applied_watch_wakes_waiters_and_never_goes_back() {
        let watch = Arc::new(AppliedWatch::default());
        assert!(!watch.wait(1, Duration::from_millis(1)));
        let waiter = {
            let watch = Arc::clone(&watch);
            thread::spawn(move || watch.wait(3, Duration::from_secs(30)))
        };
        watch.raise(3);
        watch.raise(2);
        assert!(waiter.join().unwrap());
        assert!(watch.wait(3, Duration::from_millis(1)));
    }

    #[test]
    fn a_lease_serves_until_its_deadline_with_the_published_commit() {
        let lease = ReadLease::default();
        assert_eq!(lease.read_index(), None, "no lease before one is published");
        lease.publish_commit(7);
        lease.publish_deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(lease.read_index(), Some(7));
        lease.publish_commit(9);
        assert_eq!(lease.read_index(), Some(9));
        lease.publish_deadline(Some(Instant::now()));
        assert_eq!(
            lease.read_index(),
            None,
            "a deadline in the past grants nothing"
        );
        lease.publish_deadline(Some(Instant::now() + Duration::from_secs(60)));
        lease.publish_deadline(None);
        assert_eq!(lease.read_index(), None, "withdrawn");
    }

    #[test]
    fn round_starts_are_never_later_than_noted_and_forgotten_rounds_grant_nothing() {
        let mut clock = RoundClock::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(20);
        clock.note(3, t0);
        clock.note(3, t1); // Nothing new: round 3 keeps its earlier instant.
        clock.note(5, t1);
        assert_eq!(clock.started(1), Some(t0));
        assert_eq!(clock.started(3), Some(t0));
        assert_eq!(clock.started(4), Some(t1));
        assert_eq!(clock.started(6), None, "not created yet");
        let lease = Duration::from_millis(160);
        assert_eq!(clock.deadline(Some(5), lease), Some(t1 + lease));
        for round in 6..6 + ROUNDS_REMEMBERED_MAX as u64 {
            clock.note(round, t1);
        }
        assert_eq!(clock.started(1), None, "forgotten");
        assert_eq!(clock.deadline(Some(1), lease), None);
        assert!(
            clock.deadline(None, lease).is_some(),
            "a sole voter needs no round"
        );
    }
}
