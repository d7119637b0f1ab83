//! The hand-offs of the submit path: the bounded submission queue between submitters and the
//! sequencer (with its group-commit pacing), and the one-shot reply slot a submitter parks on.
//!
//! Owns: when the sequencer wakes and how much it takes. A submitter wakes the sequencer only
//! when the sequencer sleeps waiting for work; while the log holds as many batches as allowed
//! (`EngineOptions::log_batches_max`), jobs pile up with no wakeup at all, and the sequencer
//! takes them all at once when the log acknowledges. With more than one batch allowed, the
//! log writes a batch while the fsync of the previous one runs, and that batch joins the next
//! fsync. Two kinds of taker, both holding the engine's sequencing role while they take: the
//! sequencer thread, which waits here ([`JobQueue::wait_ready`], without the role), and on a
//! single node the log completion that acknowledged a batch, which takes the next one only if
//! it may go at once and never waits ([`JobQueue::try_take`]).
//! Must not: decide, encode or apply anything, or hold its lock while running user code.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Longest time the sequencer holds the next batch back, after the log acknowledged the
/// previous one, waiting for that batch's submitters to come back with their next command, in
/// microseconds. Without it, submitters that return while a fsync runs and those that return
/// after it split into two alternating half-size groups; with it, they share one fsync. The
/// wait ends as soon as as many commands arrived as the previous batch answered (one
/// submitter: at once), so a lone caller never waits for it.
pub const GROUP_WAIT_US_MAX: u64 = 200;

/// Default of `EngineOptions::log_batches_max`: batches handed to the log and not yet
/// acknowledged, at most. One: the next batch waits for the previous one's fsync, and takes
/// every job that arrived meanwhile. Measured on the shared 2-core box (see the commit-pipe
/// report), 2 or more split 64 submitters into two alternating half-size groups (about 30
/// events per fsync instead of 50) and lost 10 to 30% of the events/s.
pub const LOG_BATCHES_DEFAULT: usize = 1;

/// Largest `EngineOptions::log_batches_max` (half the [`WAKE_LANES`], so waiters of
/// batches in the log rarely share a lane).
pub const LOG_BATCHES_MAX: usize = WAKE_LANES / 2;

/// Why a job was not queued; the job comes back so its reply can be answered.
pub(super) enum Refused<J> {
    /// The queue holds its capacity (only from [`JobQueue::try_push_inline`]).
    Full(J),
    /// The queue is closed (the engine shuts down).
    Closed(J),
}

/// A bounded multi-producer queue drained in whole batches by one consumer at a time, the
/// holder of the sequencing role.
///
/// Pushing takes no lock (a lock-free channel and atomic counters): a whole batch of
/// submitters, woken at once, comes back at once, and a shared lock made a third of them
/// sleep on it. The control state (log busy, pacing, sequencer asleep) sits behind a mutex
/// that only the sequencer, the writer's acknowledgement and the one submitter that wakes the
/// sequencer take.
pub(super) struct JobQueue<J> {
    sender: mpsc::Sender<J>,
    /// Received from only under the control lock, by the holder of the sequencing role (the
    /// lock is never contended).
    receiver: Mutex<mpsc::Receiver<J>>,
    /// Room reserved by submitters (jobs sent or about to be) and not yet taken: the bound.
    queued: AtomicUsize,
    /// Jobs in the channel and not yet taken (counted after the send, so each one counted
    /// can be received).
    available: AtomicUsize,
    /// Commands queued since the last acknowledgement of the log.
    arrived: AtomicUsize,
    /// Commands the last acknowledged batch answered: that many callers may come back
    /// (written under the control lock, read by submitters without it).
    awaited: AtomicUsize,
    /// Batches taken so far (the last one's number).
    taken: AtomicU64,
    closed: AtomicBool,
    /// What the sequencer sleeps for (the `SLEEP_*` constants), read by submitters to decide
    /// whether to wake it.
    sleep: AtomicU8,
    control: Mutex<Control>,
    /// The sequencer waits here for jobs, for the log to finish, or for the group wait.
    sequencer: Condvar,
    /// Submitters blocked on a full queue wait here.
    room: Condvar,
    capacity: usize,
    /// Batches allowed in the log at once (1..=[`LOG_BATCHES_MAX`]).
    batches_max: usize,
    /// `None`: no pacing (Relaxed durability, cluster mode: nothing to amortize here).
    group_wait: Option<Duration>,
}

/// The sequencer is awake.
const SLEEP_NONE: u8 = 0;
/// The sequencer sleeps until jobs come (no deadline): any job wakes it.
const SLEEP_FOR_JOBS: u8 = 1;
/// The sequencer sleeps until the group is complete or a deadline: only the job completing
/// the group wakes it.
const SLEEP_FOR_GROUP: u8 = 2;
/// The sequencer sleeps until the log acknowledges a batch (as many as allowed are in it):
/// jobs never wake it.
const SLEEP_FOR_LOG: u8 = 3;

struct Control {
    submitters_waiting: usize,
    /// Jobs taken from the channel but not sequenced yet (the sequencing role's backlog).
    held: usize,
    /// Batches appended to the log and not yet acknowledged by the writer.
    in_log: usize,
    /// When the writer acknowledged the last batch.
    acknowledged_at: Option<Instant>,
}

impl<J> JobQueue<J> {
    /// A queue of `capacity` jobs (> 0) that lets `batches_max` batches be in the log at once
    /// (1..=[`LOG_BATCHES_MAX`]); `pace` enables the group wait.
    pub(super) fn new(capacity: usize, pace: bool, batches_max: usize) -> Self {
        assert!(capacity > 0, "a job queue holds at least one job");
        assert!(
            (1..=LOG_BATCHES_MAX).contains(&batches_max),
            "batches in the log: 1..=LOG_BATCHES_MAX, not {batches_max}"
        );
        let (sender, receiver) = mpsc::channel();
        JobQueue {
            sender,
            receiver: Mutex::new(receiver),
            queued: AtomicUsize::new(0),
            available: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
            awaited: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            sleep: AtomicU8::new(SLEEP_NONE),
            control: Mutex::new(Control {
                submitters_waiting: 0,
                held: 0,
                in_log: 0,
                acknowledged_at: None,
            }),
            sequencer: Condvar::new(),
            room: Condvar::new(),
            capacity,
            batches_max,
            group_wait: pace.then(|| Duration::from_micros(GROUP_WAIT_US_MAX)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().expect("job queue poisoned")
    }

    /// [`JobQueue::push_inline`] with no attempt to take.
    #[cfg(test)]
    pub(super) fn push(&self, job: J) -> Result<u64, Refused<J>> {
        self.push_inline(job, || false)
    }

    /// Queues `job`, waiting while the queue is full. Returns the first batch the job can be in
    /// (the next one taken; a later one if that batch is full; see [`WakeBoard`]).
    ///
    /// Once the job is counted, lets the submitter try to take and hand on a batch itself
    /// before anyone is woken: `inline` returns `true` when it
    /// took one with [`JobQueue::try_take_alone`] (so nothing counted before its take is
    /// left), and the sequencer is then not woken for this job.
    ///
    /// No lost wake-up: the protocol (see `should_wake`) is that every counted job's
    /// submitter judges the sleep state after counting it, and only the submitter whose
    /// count was consumed by its own take skips that. Every job counted before that take
    /// was drained by it (it takes only when exactly one job is counted, under the control
    /// lock), and any job counted later has a submitter of its own that judges the state
    /// after counting it. A submitter never claims the wake (`should_wake`) before it tries
    /// to sequence: a claim clears the sleep state, after which no other submitter wakes
    /// the sequencer, so a claim must always be followed by a notify, which it is here (the
    /// claim comes after `inline`, only when it took nothing).
    pub(super) fn push_inline(
        &self,
        job: J,
        inline: impl FnOnce() -> bool,
    ) -> Result<u64, Refused<J>> {
        if !self.reserve_room() {
            // Rare: wait for room under the control lock (the sequencer signals it).
            let mut control = self.lock();
            while !self.reserve_room() {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(Refused::Closed(job));
                }
                control.submitters_waiting += 1;
                // The sequencer may sleep through an acknowledgement (see
                // `log_done_quietly`) while this waits for it to make room: wake it.
                self.sequencer.notify_one();
                control = self.room.wait(control).expect("job queue poisoned");
                control.submitters_waiting -= 1;
            }
        }
        self.enqueue(job, inline)
    }

    /// [`JobQueue::try_push_inline`] with no attempt to take.
    #[cfg(test)]
    pub(super) fn try_push(&self, job: J) -> Result<u64, Refused<J>> {
        self.try_push_inline(job, || false)
    }

    /// Queues `job` unless the queue is full ([`Refused::Full`]); otherwise as
    /// [`JobQueue::push_inline`].
    pub(super) fn try_push_inline(
        &self,
        job: J,
        inline: impl FnOnce() -> bool,
    ) -> Result<u64, Refused<J>> {
        if !self.reserve_room() {
            return Err(Refused::Full(job));
        }
        self.enqueue(job, inline)
    }

    /// Counts one more queued job in `queued` if the queue has room for it; `false` (and
    /// nothing counted) when it is full.
    fn reserve_room(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Sends a job whose room is reserved in `queued`.
    fn enqueue(&self, job: J, inline: impl FnOnce() -> bool) -> Result<u64, Refused<J>> {
        if self.closed.load(Ordering::SeqCst) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Closed(job));
        }
        // Read before sending: the job cannot be taken by an earlier batch than this.
        let batch = self.taken.load(Ordering::SeqCst) + 1;
        if let Err(mpsc::SendError(job)) = self.sender.send(job) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Closed(job));
        }
        self.available.fetch_add(1, Ordering::SeqCst);
        let arrived = self.arrived.fetch_add(1, Ordering::SeqCst) + 1;
        if inline() {
            return Ok(batch);
        }
        if self.should_wake(arrived) {
            // Under the lock: the sequencer is inside its wait, or has not checked yet.
            let _control = self.lock();
            self.sequencer.notify_one();
        }
        Ok(batch)
    }

    /// Whether this submitter (whose job made `arrived`) must wake the sequencer: it sleeps
    /// for something this job brings, and this submitter claimed the duty (only one wakes
    /// it; the sequencer reads every counter again once awake).
    ///
    /// Ordering (all SeqCst): the job is counted (`available`, `arrived`) before `sleep` is
    /// read here, and the sequencer stores its sleep state before it reads the counters. So
    /// either the sequencer's reads see this job, or this read sees its sleep state. The
    /// sequencer stores `SLEEP_FOR_JOBS` first and may then switch to `SLEEP_FOR_GROUP` (the
    /// group is incomplete) under its lock: a claim of `SLEEP_FOR_JOBS` that loses that race
    /// must look again and judge the group state, or the job completing the group wakes
    /// nobody and the sequencer sleeps out `GROUP_WAIT_US_MAX`. The claim is re-evaluated on
    /// every failed exchange, and a successful claim notifies under the sequencer's lock, so
    /// the sequencer is either inside its wait or has not checked yet (it checks again).
    fn should_wake(&self, arrived: usize) -> bool {
        let mut state = self.sleep.load(Ordering::SeqCst);
        loop {
            let wanted = match state {
                SLEEP_FOR_JOBS => true,
                SLEEP_FOR_GROUP => arrived >= self.awaited.load(Ordering::SeqCst),
                _ => false,
            };
            if !wanted {
                return false;
            }
            match self
                .sleep
                .compare_exchange(state, SLEEP_NONE, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Whether the sequencer may take a batch now (`jobs`: some are queued or held back);
    /// `Err(Some(d))`: not before `d` from now unless something changes, `Err(None)`: not
    /// until something changes.
    fn ready(&self, control: &Control, jobs: bool, now: Instant) -> Result<(), Option<Duration>> {
        if !jobs || control.in_log >= self.batches_max {
            return Err(None);
        }
        // A batch already in the log is being synced: this one joins the next fsync whenever
        // it goes, so holding it back gains nothing.
        if control.in_log > 0 {
            return Ok(());
        }
        let (Some(wait), Some(at)) = (self.group_wait, control.acknowledged_at) else {
            return Ok(());
        };
        let arrived = self.arrived.load(Ordering::SeqCst);
        let awaited = self.awaited.load(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) || arrived >= awaited {
            return Ok(());
        }
        let waited = now.saturating_duration_since(at);
        if waited >= wait {
            return Ok(());
        }
        Err(Some(wait - waited))
    }

    /// Blocks until a batch may go, then moves up to `max` jobs into `out`, and numbers the
    /// batch (1, 2, ...: the caller makes exactly one log batch of each take). With a backlog
    /// (jobs left over from the last batch are in `out`), waits only for the log. Returns
    /// `None` once the queue is closed and drained and there is no backlog. (The engine's
    /// sequencer thread runs the two steps itself, [`JobQueue::wait_ready`] without the
    /// sequencing role and [`JobQueue::try_take`] with it.)
    #[cfg(test)]
    pub(super) fn take_batch(&self, out: &mut VecDeque<J>, max: usize) -> Option<u64> {
        loop {
            self.hold(out.len());
            if !self.wait_ready() {
                return None;
            }
            if let Some(batch) = self.try_take(out, max, false) {
                return Some(batch);
            }
        }
    }

    /// The sequencer thread: blocks until a batch may go (jobs queued or held back, and the
    /// log and the group wait allow it); `false` once the queue is closed with no job queued
    /// or held. Takes nothing: the caller then takes the sequencing role and calls
    /// [`JobQueue::try_take`], which judges again (a log completion may have taken the batch
    /// meanwhile).
    pub(super) fn wait_ready(&self) -> bool {
        let mut control = self.lock();
        loop {
            // SeqCst store, then SeqCst loads of the counters below: a submitter that queued
            // after these loads sees the sleep state and wakes us.
            self.sleep.store(SLEEP_FOR_JOBS, Ordering::SeqCst);
            let jobs = control.held > 0 || self.available.load(Ordering::SeqCst) > 0;
            if !jobs && self.closed.load(Ordering::SeqCst) {
                self.sleep.store(SLEEP_NONE, Ordering::SeqCst);
                return false;
            }
            let verdict = self.verdict(&control, control.held > 0, jobs, Instant::now());
            let state = match verdict {
                Ok(()) => break,
                Err(_) if control.in_log >= self.batches_max => SLEEP_FOR_LOG,
                Err(None) => SLEEP_FOR_JOBS,
                Err(Some(_)) => SLEEP_FOR_GROUP,
            };
            self.sleep.store(state, Ordering::SeqCst);
            control = match verdict {
                Err(Some(left)) => {
                    let waited = self.sequencer.wait_timeout(control, left);
                    waited.expect("job queue poisoned").0
                }
                _ => self.sequencer.wait(control).expect("job queue poisoned"),
            };
        }
        self.sleep.store(SLEEP_NONE, Ordering::SeqCst);
        true
    }

    /// Whether a batch may go: with a backlog, as soon as the log has room; else as
    /// [`JobQueue::ready`] says.
    fn verdict(
        &self,
        control: &Control,
        backlog: bool,
        jobs: bool,
        now: Instant,
    ) -> Result<(), Option<Duration>> {
        match backlog {
            true if control.in_log >= self.batches_max => Err(None),
            true => Ok(()),
            false => self.ready(control, jobs, now),
        }
    }

    /// Takes a batch if one may go now, never blocking: moves up to `max` jobs into `out`
    /// (the backlog of the one holding the sequencing role) and numbers the batch; with
    /// `to_log`, also counts it in the log (as [`JobQueue::log_started`], in the same step, so
    /// no other taker sees the room it fills). `None`: nothing may go now (no job, the log is
    /// full, or the group wait holds the batch back).
    pub(super) fn try_take(&self, out: &mut VecDeque<J>, max: usize, to_log: bool) -> Option<u64> {
        self.take_if(out, max, to_log, |_| true)
    }

    /// [`JobQueue::try_take`] when `may` allows it, judged under the control lock.
    fn take_if(
        &self,
        out: &mut VecDeque<J>,
        max: usize,
        to_log: bool,
        may: impl FnOnce(&Control) -> bool,
    ) -> Option<u64> {
        let mut control = self.lock();
        if !may(&control) {
            return None;
        }
        let jobs = !out.is_empty() || self.available.load(Ordering::SeqCst) > 0;
        self.verdict(&control, !out.is_empty(), jobs, Instant::now())
            .ok()?;
        self.drain(&control, out, max);
        control.held = out.len();
        if to_log {
            assert!(
                control.in_log < self.batches_max,
                "more batches in the log writer than allowed"
            );
            control.in_log += 1;
            if control.in_log >= self.batches_max {
                self.sleep_for_log();
            }
        }
        let batch = self.taken.fetch_add(1, Ordering::SeqCst) + 1;
        let wake_submitters = control.submitters_waiting > 0;
        drop(control);
        if wake_submitters {
            self.room.notify_all();
        }
        Some(batch)
    }

    /// Whether exactly one job is queued and not taken (a hint, read without the lock: lets
    /// a submitter skip the sequencing role when others are queued, as under load).
    pub(super) fn alone(&self) -> bool {
        self.available.load(Ordering::SeqCst) == 1
    }

    /// A submitter whose job is counted (see [`JobQueue::push_inline`]), holding the
    /// sequencing role: takes a batch of one job when that job is the only one counted and
    /// nothing is held back, and a batch may go now; counts it in the log with `to_log` (as
    /// [`JobQueue::try_take`]). After such a take nothing counted is left in the channel.
    /// `None`: other jobs are queued or held (the sequencer takes them together), or nothing
    /// may go now.
    pub(super) fn try_take_alone(&self, out: &mut VecDeque<J>, to_log: bool) -> Option<u64> {
        if !out.is_empty() || self.available.load(Ordering::SeqCst) != 1 {
            return None;
        }
        // Judged again under the control lock, in the take: `drain` reads `available` under
        // it too, so the one job counted here is the one job drained.
        let alone =
            |control: &Control| control.held == 0 && self.available.load(Ordering::SeqCst) == 1;
        self.take_if(out, 1, to_log, alone)
    }

    /// The log is full (a take just filled it): a sequencer asleep for jobs or for the group
    /// now sleeps for the log, so jobs queued meanwhile do not wake it for nothing (no batch
    /// can go before an acknowledgement, whose [`JobQueue::wake_after_log`] judges a sleeper
    /// for the log again). Called under the control lock; an awake sequencer (`SLEEP_NONE`,
    /// or a claimed wake) is left alone.
    fn sleep_for_log(&self) {
        for from in [SLEEP_FOR_JOBS, SLEEP_FOR_GROUP] {
            let _ = self.sleep.compare_exchange(
                from,
                SLEEP_FOR_LOG,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// The sequencing role's holder left `held` jobs taken but not sequenced (a batch stops
    /// at its size bounds); called before it lets go of the role. Wakes the sequencer thread
    /// when they may go now and it sleeps: nobody else would (no job needs to arrive).
    pub(super) fn hold(&self, held: usize) {
        let mut control = self.lock();
        control.held = held;
        if held > 0
            && control.in_log < self.batches_max
            && self.sleep.load(Ordering::SeqCst) != SLEEP_NONE
        {
            self.sequencer.notify_one();
        }
    }

    /// Moves the counted jobs, up to `max` in `out`, from the channel into `out` (under the
    /// control lock, so room waiters see `queued` change only while it is held).
    fn drain(&self, _control: &Control, out: &mut VecDeque<J>, max: usize) {
        let receiver = self.receiver.lock().expect("job receiver poisoned");
        let count = self
            .available
            .load(Ordering::SeqCst)
            .min(max.saturating_sub(out.len()));
        for _ in 0..count {
            let job = receiver
                .try_recv()
                .expect("a counted job is in the channel");
            out.push_back(job);
        }
        self.available.fetch_sub(count, Ordering::SeqCst);
        self.queued.fetch_sub(count, Ordering::SeqCst);
    }

    /// The sequencer hands a batch to the log (counted until it is acknowledged); the
    /// engine counts it in its take instead ([`JobQueue::try_take`]).
    #[cfg(test)]
    pub(super) fn log_started(&self) {
        let mut control = self.lock();
        assert!(
            control.in_log < self.batches_max,
            "more batches in the log writer than allowed"
        );
        control.in_log += 1;
    }

    /// The log acknowledged the batch (durable, or failed); it answered `answered` commands.
    #[cfg(test)]
    pub(super) fn log_done(&self, answered: usize) {
        self.log_done_quietly(answered);
        self.wake_after_log();
    }

    /// Like [`JobQueue::log_done`] without waking the sequencer: for the thread about to
    /// answer the batch's submitters itself, whose callbacks resubmit. The sequencer keeps
    /// sleeping (their jobs wake nobody) until [`JobQueue::wake_after_log`], after the
    /// answers, so it wakes once with the whole group instead of twice (once to find the
    /// group incomplete), and does not take a core from the answering thread meanwhile. A
    /// submitter blocked on a full queue wakes it anyway (see [`JobQueue::push_inline`]).
    pub(super) fn log_done_quietly(&self, answered: usize) {
        let mut control = self.lock();
        assert!(control.in_log > 0, "a log acknowledgement without a batch");
        control.in_log -= 1;
        self.awaited.store(answered, Ordering::SeqCst);
        self.arrived.store(0, Ordering::SeqCst);
        control.acknowledged_at = Some(Instant::now());
    }

    /// After an acknowledgement (and the answers, and a take by the completion if it took
    /// one): makes the sleeping sequencer wait for what it must wait for now, waking it only
    /// when it has something to judge. With the log full again (the completion took the
    /// next batch), it rightly sleeps for the log: nothing. Asleep for the log with room
    /// now and no job here (answered callers have not come back yet), it is switched to wait
    /// for jobs, without a wake: the first job wakes it (a wake now would only find nothing
    /// to take). Otherwise it is woken and judges every counter again.
    pub(super) fn wake_after_log(&self) {
        let control = self.lock();
        if control.in_log >= self.batches_max {
            return;
        }
        // Something for the sequencer to judge: jobs, or a close (it then drains and stops;
        // after a close no job comes to wake it, and `close` woke it before this batch was
        // acknowledged, when it could only go back to sleep for the log).
        let judge = |control: &Control| {
            control.held > 0
                || self.available.load(Ordering::SeqCst) > 0
                || self.closed.load(Ordering::SeqCst)
        };
        match self.sleep.load(Ordering::SeqCst) {
            SLEEP_NONE => {}
            // Asleep for jobs with none here (a submitter took its own batch: see
            // `push_inline`): the next job counted reads this state and wakes it.
            SLEEP_FOR_JOBS if !judge(&control) => {}
            SLEEP_FOR_LOG => {
                // Stored before the counters are read (as the sequencer does, see
                // `should_wake`): a job counted after these reads sees the new state.
                self.sleep.store(SLEEP_FOR_JOBS, Ordering::SeqCst);
                if judge(&control) {
                    self.sequencer.notify_one();
                }
            }
            _ => self.sequencer.notify_one(),
        }
    }

    /// Refuses new jobs; the sequencer drains what is queued, then stops.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _control = self.lock();
        self.sequencer.notify_all();
        self.room.notify_all();
    }
}

/// Lanes of a `WakeBoard`: waiters of batch `b` sleep on lane `b % WAKE_LANES`, so waking
/// one batch rarely disturbs the waiters of the next ones (at most `log_batches_max` + 1
/// batches have waiters at a time: those in the log, and the next one queued).
pub const WAKE_LANES: usize = 16;

/// Where submitters of the single-node log path sleep: the applier fills every reply slot of
/// a batch, then wakes the batch's lane with one `futex` call (one system call, and at most
/// one preemption of the applier, instead of one per submitter).
///
/// Invariant: batches are released in order (the log acknowledges them in the order they
/// were handed to it, and the applier releases them in that order), so a filled slot's
/// batch is at most `released`.
pub(super) struct WakeBoard {
    /// The last batch whose slots are all filled.
    released: AtomicU64,
    lanes: [Lane; WAKE_LANES],
}

#[derive(Default)]
struct Lane {
    /// The futex word: bumped on every wake of this lane.
    sequence: AtomicU32,
    /// Threads inside (or about to enter) the futex wait: no system call when zero.
    sleepers: AtomicU32,
}

impl WakeBoard {
    /// A board, where the platform lets many threads sleep on one word (else `None`: slots
    /// then wake their waiter one by one).
    pub(super) fn new() -> Option<Self> {
        crate::sys::futex::SUPPORTED.then(|| WakeBoard {
            released: AtomicU64::new(0),
            lanes: Default::default(),
        })
    }

    fn lane(&self, batch: u64) -> &Lane {
        &self.lanes[(batch % WAKE_LANES as u64) as usize]
    }

    /// Every slot of `batch` is filled: wake its waiters.
    ///
    /// # Panics
    /// If `batch` is not the one after the last released (batches are released in order).
    pub(super) fn release(&self, batch: u64) {
        let previous = self.released.swap(batch, Ordering::SeqCst);
        assert_eq!(previous + 1, batch, "batches are released in order");
        Self::wake(self.lane(batch));
    }

    /// Wakes every lane (a slot answered outside its batch: shutdown, a panic).
    fn wake_everyone(&self) {
        for lane in &self.lanes {
            Self::wake(lane);
        }
    }

    fn wake(lane: &Lane) {
        // Change the word first, then count sleepers (both SeqCst): a waiter counted after
        // this load waits for the old value, so the kernel returns it at once (see
        // `sys::futex` on why skipping the call then loses no wakeup).
        lane.sequence.fetch_add(1, Ordering::SeqCst);
        if lane.sleepers.load(Ordering::SeqCst) > 0 {
            crate::sys::futex::wake_all(&lane.sequence);
        }
    }

    /// Sleeps until `filled` is set. `batch` is the first batch the job can be in (the one
    /// after the last handed to the log when it was queued): it may land in a later one, which
    /// the released counter tells.
    fn wait_for(&self, filled: &AtomicBool, batch: u64) {
        let mut batch = batch;
        loop {
            let lane = self.lane(batch);
            // Read before the checks: a wake after them changes the word, so the futex
            // wait below returns at once instead of missing it.
            let sequence = lane.sequence.load(Ordering::SeqCst);
            if filled.load(Ordering::SeqCst) {
                return;
            }
            // The applier fills every slot of a batch before releasing it, so a released
            // batch with our slot still empty was not ours (re-checking `filled` first, on
            // the next turn, covers a fill that landed between the two loads).
            if self.released.load(Ordering::SeqCst) >= batch {
                batch += 1; // Not in that batch: the next one, or later.
                continue;
            }
            lane.sleepers.fetch_add(1, Ordering::SeqCst);
            crate::sys::futex::wait(&lane.sequence, sequence);
            lane.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A one-shot reply slot. On the single-node log path the waiter sleeps on the [`WakeBoard`]
/// lane of its batch; otherwise it parks its own thread and the answerer unparks exactly that
/// thread after releasing the lock (no contention on wake). Nobody is woken if nobody waits.
pub(super) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    /// Set (after the value is stored) when the value is there; checked across spurious
    /// wakeups.
    filled: AtomicBool,
    board: Option<Arc<WakeBoard>>,
}

struct SlotState<T> {
    value: Option<T>,
    answered: bool,
    /// A parked waiter (only without a board).
    waiter: Option<Thread>,
}

impl<T> Slot<T> {
    /// An empty slot; with `board`, waiters sleep on it.
    pub(super) fn new(board: Option<Arc<WakeBoard>>) -> Self {
        Slot {
            state: Mutex::new(SlotState {
                value: None,
                answered: false,
                waiter: None,
            }),
            filled: AtomicBool::new(false),
            board,
        }
    }

    /// Stores the answer; returns the parked waiter, if any.
    fn store(&self, value: T) -> Option<Thread> {
        let waiter = {
            let mut state = self.state.lock().expect("reply slot poisoned");
            assert!(!state.answered, "a submission is answered once");
            state.answered = true;
            state.value = Some(value);
            state.waiter.take()
        };
        self.filled.store(true, Ordering::SeqCst);
        waiter
    }

    /// Stores the answer and wakes the waiter at once, wherever it sleeps.
    ///
    /// # Panics
    /// If the slot was already answered (a submission is answered once).
    pub(super) fn put(&self, value: T) {
        if let Some(waiter) = self.store(value) {
            waiter.unpark();
        }
        if let Some(board) = &self.board {
            board.wake_everyone();
        }
    }

    /// Stores the answer of a job of a log batch; with a board, the waiter wakes when the
    /// applier releases the batch ([`WakeBoard::release`]), else at once.
    pub(super) fn fill(&self, value: T) {
        if self.board.is_none() {
            return self.put(value);
        }
        let waiter = self.store(value);
        assert!(waiter.is_none(), "with a board nobody parks");
    }

    /// Waits for the answer and takes it; `batch` as for [`WakeBoard`]'s waits.
    pub(super) fn take(&self, batch: u64) -> T {
        match &self.board {
            Some(board) => board.wait_for(&self.filled, batch),
            None => {
                {
                    let mut state = self.state.lock().expect("reply slot poisoned");
                    if let Some(value) = state.value.take() {
                        return value;
                    }
                    state.waiter = Some(thread::current());
                }
                while !self.filled.load(Ordering::SeqCst) {
                    thread::park();
                }
            }
        }
        let mut state = self.state.lock().expect("reply slot poisoned");
        state.value.take().expect("a filled slot holds its value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_answers_a_waiter_on_another_thread_and_one_that_comes_late() {
        for late in [false, true] {
            let slot = Arc::new(Slot::new(None));
            let answerer = {
                let slot = Arc::clone(&slot);
                thread::spawn(move || slot.put(42_u32))
            };
            if late {
                answerer.join().unwrap();
                assert_eq!(slot.take(0), 42);
            } else {
                assert_eq!(slot.take(0), 42);
                answerer.join().unwrap();
            }
        }
    }

    #[test]
    #[should_panic(expected = "answered once")]
    fn slot_refuses_a_second_answer() {
        let slot = Slot::new(None);
        slot.put(1_u8);
        slot.put(2_u8);
    }

    #[test]
    fn queue_holds_jobs_while_the_log_is_busy_and_hands_them_over_at_once() {
        let queue = Arc::new(JobQueue::new(16, false, 1));
        queue.log_started();
        for job in 0..5_u32 {
            assert!(queue.push(job).is_ok());
        }
        let taker = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                let mut out = VecDeque::new();
                assert_eq!(queue.take_batch(&mut out, 64), Some(1));
                out
            })
        };
        queue.log_done(5);
        let taken: Vec<u32> = taker.join().unwrap().into_iter().collect();
        assert_eq!(taken, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_quiet_acknowledgement_wakes_nobody_until_told_but_a_full_queue_wakes_the_sequencer() {
        let queue = Arc::new(JobQueue::new(2, true, 1));
        queue.log_started();
        assert!(queue.push(1_u32).is_ok());
        assert!(queue.push(2).is_ok());
        let (taken_sender, taken) = mpsc::channel();
        let sequencer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                let mut out = VecDeque::new();
                // Sleeps for the log first (one batch is in it).
                while let Some(batch) = queue.take_batch(&mut out, 8) {
                    taken_sender
                        .send((batch, out.drain(..).collect::<Vec<_>>()))
                        .expect("test alive");
                }
            })
        };
        while queue.sleep.load(Ordering::SeqCst) != SLEEP_FOR_LOG {
            thread::yield_now();
        }
        // The answering thread acknowledged quietly; its resubmit finds the queue full and
        // must wake the sleeping sequencer itself, or it waits forever for room.
        queue.log_done_quietly(2);
        let pusher = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.push(3).is_ok())
        };
        let first = taken
            .recv_timeout(Duration::from_secs(30))
            .expect("the blocked submitter woke the sequencer");
        assert_eq!(first, (1, vec![1, 2]));
        assert!(pusher.join().expect("pusher"), "room was made");
        queue.log_started();
        queue.log_done_quietly(1);
        queue.wake_after_log();
        let second = taken
            .recv_timeout(Duration::from_secs(30))
            .expect("the explicit wake after the answers");
        assert_eq!(second, (2, vec![3]));
        queue.close();
        sequencer.join().expect("sequencer");
    }

    #[test]
    fn queue_hands_a_second_batch_to_the_log_only_when_allowed() {
        let queue = JobQueue::new(16, true, 2);
        queue.log_started();
        assert!(queue.push(1_u32).is_ok());
        let mut out = VecDeque::new();
        // One batch is in the log (its fsync runs): the next goes at once, no group wait.
        assert_eq!(queue.take_batch(&mut out, 8), Some(1));
        queue.log_started();
        assert!(queue.push(2).is_ok());
        let state = queue.lock();
        assert_eq!(
            queue.ready(&state, true, Instant::now()),
            Err(None),
            "two in the log: wait for an acknowledgement"
        );
        drop(state);
        queue.log_done(1);
        out.clear();
        assert_eq!(queue.take_batch(&mut out, 8), Some(2));
        assert_eq!(out.drain(..).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_completion_takes_the_next_batch_only_when_it_may_go_and_counts_it_in_the_log() {
        let queue = JobQueue::new(16, true, 1);
        let mut backlog = VecDeque::new();
        queue.log_started();
        assert!(queue.push(1_u32).is_ok());
        assert_eq!(
            queue.try_take(&mut backlog, 8, true),
            None,
            "the log is full"
        );
        queue.log_done_quietly(3);
        assert!(queue.push(2).is_ok());
        assert_eq!(
            queue.try_take(&mut backlog, 8, true),
            None,
            "one of three answered callers is back: the group wait holds the batch"
        );
        assert!(queue.push(3).is_ok());
        assert!(queue.push(4).is_ok());
        assert_eq!(queue.try_take(&mut backlog, 2, true), Some(1));
        assert_eq!(backlog.drain(..).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            queue.lock().in_log,
            1,
            "the take counted its batch in the log"
        );
        assert_eq!(
            queue.try_take(&mut backlog, 8, true),
            None,
            "jobs 3 and 4 wait for the acknowledgement"
        );
        queue.log_done_quietly(2);
        backlog.push_back(9); // a job held back by the last take's size bounds goes first
        assert_eq!(queue.try_take(&mut backlog, 8, false), Some(2));
        assert_eq!(backlog.drain(..).collect::<Vec<_>>(), vec![9, 3, 4]);
    }

    #[test]
    fn after_an_acknowledgement_the_sequencer_waits_for_jobs_without_a_wake_and_a_held_job_wakes_it(
    ) {
        let queue = Arc::new(JobQueue::<u32>::new(16, false, 2));
        queue.log_started();
        queue.log_started();
        let (ready_sender, ready) = mpsc::channel();
        let sequencer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                while queue.wait_ready() {
                    ready_sender.send(()).expect("test alive");
                    queue.hold(0);
                }
            })
        };
        while queue.sleep.load(Ordering::SeqCst) != SLEEP_FOR_LOG {
            thread::yield_now();
        }
        queue.log_done_quietly(1);
        queue.wake_after_log();
        assert_eq!(
            queue.sleep.load(Ordering::SeqCst),
            SLEEP_FOR_JOBS,
            "room in the log and no job: it waits for jobs"
        );
        // A completion left a job held back (its batch hit a size bound): nobody would
        // queue anything to wake the sequencer, so the hold does.
        queue.hold(1);
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("the held job woke the sequencer");
        queue.close();
        sequencer.join().expect("sequencer");
    }

    #[test]
    fn a_submitter_takes_its_job_alone_only_when_nothing_else_is_queued_or_held() {
        let queue = JobQueue::new(16, false, 1);
        let mut backlog = VecDeque::new();
        assert!(queue.push(1_u32).is_ok());
        assert!(queue.push(2).is_ok());
        assert_eq!(
            queue.try_take_alone(&mut backlog, true),
            None,
            "two jobs queued: the sequencer takes them together"
        );
        assert_eq!(queue.try_take(&mut backlog, 1, false), Some(1));
        queue.hold(1);
        backlog.clear();
        assert_eq!(
            queue.try_take_alone(&mut backlog, true),
            None,
            "a job is held back by the role"
        );
        queue.hold(0);
        assert_eq!(queue.try_take_alone(&mut backlog, true), Some(2));
        assert_eq!(backlog.drain(..).collect::<Vec<_>>(), vec![2]);
        assert_eq!(queue.available.load(Ordering::SeqCst), 0);
        assert!(queue.push(3).is_ok());
        assert_eq!(
            queue.try_take_alone(&mut backlog, true),
            None,
            "the log is full"
        );
    }

    #[test]
    fn a_submitter_that_took_its_batch_wakes_nobody_and_one_that_did_not_claims_the_wake() {
        let queue = JobQueue::new(16, false, 1);
        let mut backlog = VecDeque::new();
        // As a sequencer asleep for jobs leaves it.
        queue.sleep.store(SLEEP_FOR_JOBS, Ordering::SeqCst);
        let pushed =
            queue.push_inline(1_u32, || queue.try_take_alone(&mut backlog, true).is_some());
        assert_eq!(pushed.ok(), Some(1));
        assert_eq!(
            queue.sleep.load(Ordering::SeqCst),
            SLEEP_FOR_LOG,
            "not claimed; the take filled the log, so the sleeper now waits for the log"
        );
        assert_eq!(backlog.drain(..).collect::<Vec<_>>(), vec![1]);
        queue.log_done_quietly(1);
        queue.wake_after_log();
        assert_eq!(queue.sleep.load(Ordering::SeqCst), SLEEP_FOR_JOBS);
        queue.wake_after_log();
        assert_eq!(
            queue.sleep.load(Ordering::SeqCst),
            SLEEP_FOR_JOBS,
            "asleep for jobs with none queued: left asleep"
        );
        assert!(queue.push_inline(2, || false).is_ok());
        assert_eq!(
            queue.sleep.load(Ordering::SeqCst),
            SLEEP_NONE,
            "a submitter that did not take claimed the wake"
        );
    }

    /// Many submitters take their own batches while a sequencer thread takes the rest: every
    /// job is taken exactly once, in one order, and nobody waits forever (a lost wake-up
    /// hangs the sequencer with jobs queued, and the test with it). With `to_log`, a log
    /// thread acknowledges batches as the engine's completion does.
    fn submitters_and_the_sequencer_share_the_role(pace: bool, batches_max: usize, to_log: bool) {
        const SUBMITTERS: usize = 6;
        const JOBS_EACH: usize = 400;
        let queue = Arc::new(JobQueue::<usize>::new(8, pace, batches_max));
        let role = Arc::new(Mutex::new(Vec::<usize>::new()));
        let (log_sender, log) = mpsc::channel::<usize>();
        let take = {
            let (queue, role, log_sender) = (Arc::clone(&queue), Arc::clone(&role), log_sender);
            move |alone: bool, blocking: bool| -> bool {
                let mut taken = match blocking {
                    true => role.lock().expect("role"),
                    false => match role.try_lock() {
                        Ok(taken) => taken,
                        Err(_) => return false,
                    },
                };
                let mut out = VecDeque::new();
                let batch = match alone {
                    true => queue.try_take_alone(&mut out, to_log),
                    false => queue.try_take(&mut out, 3, to_log),
                };
                if batch.is_none() {
                    return false;
                }
                let count = out.len();
                taken.extend(out);
                if to_log {
                    log_sender.send(count).expect("log alive");
                }
                queue.hold(0);
                true
            }
        };
        let sequencer = {
            let (queue, take) = (Arc::clone(&queue), take.clone());
            thread::spawn(move || {
                while queue.wait_ready() {
                    take(false, true);
                }
            })
        };
        let acknowledger = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                while let Ok(count) = log.recv_timeout(Duration::from_secs(60)) {
                    queue.log_done_quietly(count);
                    queue.wake_after_log();
                }
            })
        };
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|submitter| {
                let (queue, take) = (Arc::clone(&queue), take.clone());
                thread::spawn(move || {
                    for job in 0..JOBS_EACH {
                        let pushed =
                            queue.push_inline(submitter * JOBS_EACH + job, || take(true, false));
                        assert!(pushed.is_ok());
                    }
                })
            })
            .collect();
        for submitter in submitters {
            submitter.join().expect("submitter");
        }
        let total = SUBMITTERS * JOBS_EACH;
        let (done_sender, done) = mpsc::channel();
        let watcher = {
            let role = Arc::clone(&role);
            thread::spawn(move || {
                while role.lock().expect("role").len() < total {
                    thread::yield_now();
                }
                done_sender.send(()).expect("test alive");
            })
        };
        done.recv_timeout(Duration::from_secs(60))
            .expect("every job was taken: no lost wake-up");
        watcher.join().expect("watcher");
        queue.close();
        sequencer.join().expect("sequencer");
        drop(take);
        acknowledger.join().expect("acknowledger");
        let mut taken = std::mem::take(&mut *role.lock().expect("role"));
        for submitter in 0..SUBMITTERS {
            let own: Vec<usize> = taken
                .iter()
                .copied()
                .filter(|job| job / JOBS_EACH == submitter)
                .collect();
            assert!(
                own.windows(2).all(|pair| pair[0] < pair[1]),
                "FIFO per submitter"
            );
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..total).collect::<Vec<_>>(), "each job taken once");
    }

    #[test]
    fn submitters_taking_their_own_batches_lose_no_wake_up_without_a_log() {
        submitters_and_the_sequencer_share_the_role(false, 1, false);
    }

    #[test]
    fn submitters_taking_their_own_batches_lose_no_wake_up_with_a_paced_log() {
        for batches_max in [1, 2] {
            submitters_and_the_sequencer_share_the_role(true, batches_max, true);
        }
    }

    #[test]
    #[should_panic(expected = "1..=LOG_BATCHES_MAX")]
    fn queue_refuses_zero_batches_in_the_log() {
        let _ = JobQueue::<u32>::new(4, false, 0);
    }

    #[test]
    fn the_job_completing_the_group_wakes_a_sequencer_that_switched_to_the_group_wait() {
        let queue = JobQueue::<u32>::new(8, true, 1);
        queue.awaited.store(3, Ordering::SeqCst);
        // The sequencer went from waiting for jobs to waiting for the group after this
        // submitter read its state: the claim is judged again against the group.
        queue.sleep.store(SLEEP_FOR_GROUP, Ordering::SeqCst);
        assert!(!queue.should_wake(2), "the group is not complete yet");
        assert_eq!(queue.sleep.load(Ordering::SeqCst), SLEEP_FOR_GROUP);
        assert!(queue.should_wake(3), "the third job completes the group");
        assert_eq!(queue.sleep.load(Ordering::SeqCst), SLEEP_NONE);
        assert!(!queue.should_wake(4), "only one submitter wakes it");
        queue.sleep.store(SLEEP_FOR_JOBS, Ordering::SeqCst);
        assert!(
            queue.should_wake(1),
            "any job wakes a sequencer waiting for jobs"
        );
        queue.sleep.store(SLEEP_FOR_LOG, Ordering::SeqCst);
        assert!(
            !queue.should_wake(9),
            "jobs never wake a sequencer waiting for the log"
        );
    }

    #[test]
    fn queue_takes_at_most_max_and_keeps_the_rest_in_order() {
        let queue = JobQueue::new(16, false, 1);
        for job in 0..10_u32 {
            assert!(queue.push(job).is_ok());
        }
        let mut out = VecDeque::new();
        assert_eq!(queue.take_batch(&mut out, 4), Some(1));
        assert_eq!(out.drain(..).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(queue.take_batch(&mut out, 100), Some(2));
        assert_eq!(out.drain(..).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn queue_full_and_closed_give_the_job_back() {
        let queue = JobQueue::new(2, false, 1);
        assert!(queue.try_push(1_u32).is_ok());
        assert!(queue.try_push(2).is_ok());
        assert!(matches!(queue.try_push(3), Err(Refused::Full(3))));
        queue.close();
        assert!(matches!(queue.push(4), Err(Refused::Closed(4))));
        let mut out = VecDeque::new();
        assert!(
            queue.take_batch(&mut out, 10).is_some(),
            "queued jobs drain after close"
        );
        assert_eq!(out.len(), 2);
        out.clear();
        assert_eq!(queue.take_batch(&mut out, 10), None);
    }

    #[test]
    fn paced_queue_waits_for_the_answered_callers_but_never_beyond_the_bound() {
        let queue = JobQueue::new(64, true, 1);
        queue.log_started();
        queue.log_done(3);
        let at = queue.lock().acknowledged_at.expect("acknowledged");
        let bound = Duration::from_micros(GROUP_WAIT_US_MAX);
        assert!(queue.push(1_u32).is_ok());
        assert!(queue.push(2).is_ok());
        {
            let state = queue.lock();
            assert_eq!(queue.ready(&state, true, at), Err(Some(bound)));
            assert_eq!(
                queue.ready(&state, true, at + bound / 2),
                Err(Some(bound - bound / 2))
            );
            assert_eq!(queue.ready(&state, true, at + bound), Ok(()));
        }
        assert!(queue.push(3).is_ok());
        let state = queue.lock();
        assert_eq!(
            queue.ready(&state, true, at),
            Ok(()),
            "all three are back: go at once"
        );
    }

    #[test]
    fn unpaced_queue_and_a_single_caller_never_wait() {
        let unpaced = JobQueue::new(64, false, 1);
        unpaced.log_started();
        unpaced.log_done(3);
        assert!(unpaced.push(1_u32).is_ok());
        let state = unpaced.lock();
        assert_eq!(unpaced.ready(&state, true, Instant::now()), Ok(()));
        drop(state);
        let single = JobQueue::new(64, true, 1);
        single.log_started();
        single.log_done(1);
        assert!(single.push(1_u32).is_ok());
        let state = single.lock();
        let at = state.acknowledged_at.expect("acknowledged");
        assert_eq!(single.ready(&state, true, at), Ok(()));
    }

    fn board_slot() -> (Arc<WakeBoard>, Arc<Slot<u32>>) {
        let board = Arc::new(WakeBoard::new().expect("futex on the test platform"));
        let slot = Arc::new(Slot::new(Some(Arc::clone(&board))));
        (board, slot)
    }

    #[test]
    fn board_waiter_follows_its_job_into_a_later_batch() {
        let (board, slot) = board_slot();
        let waiter = {
            let slot = Arc::clone(&slot);
            // Queued while batch 1 was open, but the job landed in batch 3.
            thread::spawn(move || slot.take(1))
        };
        board.release(1);
        board.release(2);
        slot.fill(7);
        board.release(3);
        assert_eq!(waiter.join().unwrap(), 7);
    }

    #[test]
    fn board_waiter_wakes_on_an_answer_outside_any_batch() {
        let (_board, slot) = board_slot();
        let waiter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.take(5))
        };
        slot.put(9);
        assert_eq!(waiter.join().unwrap(), 9);
    }

    #[test]
    fn board_wakes_every_waiter_of_a_batch_with_one_release() {
        let board = Arc::new(WakeBoard::new().expect("futex on the test platform"));
        let slots: Vec<Arc<Slot<usize>>> = (0..48)
            .map(|_| Arc::new(Slot::new(Some(Arc::clone(&board)))))
            .collect();
        let waiters: Vec<_> = slots
            .iter()
            .map(|slot| {
                let slot = Arc::clone(slot);
                thread::spawn(move || slot.take(1))
            })
            .collect();
        for (answer, slot) in slots.iter().enumerate() {
            slot.fill(answer);
        }
        board.release(1);
        let answers: Vec<usize> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(answers, (0..48).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "released in order")]
    fn board_refuses_a_batch_out_of_order() {
        let board = WakeBoard::new().expect("futex on the test platform");
        board.release(2);
    }

    #[test]
    fn every_job_of_many_concurrent_submitters_is_taken_once_in_non_empty_batches() {
        const THREADS: u32 = 8;
        const JOBS_PER_THREAD: u32 = 500;
        let queue = Arc::new(JobQueue::new(64, true, 1));
        let submitters: Vec<_> = (0..THREADS)
            .map(|thread| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    for job in 0..JOBS_PER_THREAD {
                        assert!(queue.push(thread * JOBS_PER_THREAD + job).is_ok());
                    }
                })
            })
            .collect();
        let mut seen = vec![false; (THREADS * JOBS_PER_THREAD) as usize];
        let mut out = VecDeque::new();
        let mut expected_batch = 1;
        let mut taken = 0;
        while taken < seen.len() {
            let batch = queue.take_batch(&mut out, 100).expect("open queue");
            assert_eq!(batch, expected_batch);
            expected_batch += 1;
            assert!(!out.is_empty(), "batch {batch} is empty");
            queue.log_started();
            let answered = out.len();
            for job in out.drain(..) {
                assert!(
                    !std::mem::replace(&mut seen[job as usize], true),
                    "job {job} twice"
                );
                taken += 1;
            }
            queue.log_done(answered);
        }
        for submitter in submitters {
            submitter.join().unwrap();
        }
        queue.close();
        assert_eq!(queue.take_batch(&mut out, 100), None);
    }
}
