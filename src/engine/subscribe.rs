//! Subscriptions: committed events from a given index, first read back from the log
//! (catch-up), then delivered live by the applier, with no gap and no duplicate.
//!
//! Owns: the hand-over between catch-up and live delivery, and cutting off slow subscribers
//! (a bounded buffer per subscriber; the engine never waits for one). Must not: block the
//! applier, or cost memory for a buffer's capacity rather than its content: a buffer is an
//! unbounded channel bounded by a count (a `sync_channel` allocates and touches its whole
//! capacity up front, 1 MiB at the default, per subscriber), and a dropped subscription's
//! slot is pruned when the next one registers, not only at the next delivery (a read-only
//! app whose clients reconnect kept every slot).

use super::replay;
use super::state::{Committed, State, Upcaster};
use crate::log::{self, Error};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Events read from the log per catch-up step.
pub const CATCH_UP_EVENTS_MAX: usize = 4096;

/// What a subscriber's slot and its [`Subscription`] share.
#[derive(Default)]
struct Buffer {
    /// Events sent and not yet received: at most the slot's capacity.
    pending: AtomicUsize,
    /// Set when the buffer was full: the slot is gone and the subscription lagged.
    cut_off: AtomicBool,
}

struct Slot<E> {
    sender: mpsc::Sender<Arc<Committed<E>>>,
    buffer: Arc<Buffer>,
    capacity: usize,
}

impl<E> Slot<E> {
    /// True while its [`Subscription`] exists (it holds the other reference to `buffer`).
    fn subscribed(&self) -> bool {
        Arc::strong_count(&self.buffer) > 1
    }
}

/// The live subscribers and the last index handed to them (guarded by one mutex so that
/// registration and delivery cannot interleave).
pub struct Subscribers<E> {
    delivered_index: u64,
    slots: Vec<Slot<E>>,
}

impl<E> Subscribers<E> {
    pub(super) fn new(delivered_index: u64) -> Self {
        Subscribers {
            delivered_index,
            slots: Vec::new(),
        }
    }

    pub(super) fn register<S: State<Event = E>>(
        &mut self,
        from_index: u64,
        capacity: usize,
        log_dir: PathBuf,
        upcasters: Vec<Upcaster>,
    ) -> Subscription<S> {
        assert!(capacity > 0, "a subscriber buffer holds at least one event");
        // Slots of dropped subscriptions go now: with no delivery to find them (a read-only
        // app), subscribers that come and go would pile up.
        self.slots.retain(Slot::subscribed);
        let (sender, live) = mpsc::channel();
        let buffer = Arc::new(Buffer::default());
        self.slots.push(Slot {
            sender,
            buffer: Arc::clone(&buffer),
            capacity,
        });
        let next_index = from_index.max(1);
        Subscription {
            next_index,
            catch_up_end: self.delivered_index,
            buffered: VecDeque::new(),
            live,
            buffer,
            log_dir,
            upcasters,
            cursor: None,
            peeked: None,
        }
    }

    /// Slots held: live subscriptions, plus dropped ones not pruned yet.
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Cluster mode: the state jumped to a snapshot at `index` (installed from the leader);
    /// every subscriber misses events and is cut off (it resubscribes, or learns the range
    /// is gone).
    pub(super) fn restart_at(&mut self, index: u64) {
        for slot in self.slots.drain(..) {
            slot.buffer.cut_off.store(true, Ordering::SeqCst);
        }
        self.delivered_index = index;
    }

    /// Hands a committed batch to every subscriber without blocking; a full buffer cuts that
    /// subscriber off.
    pub(super) fn deliver(&mut self, events: Vec<Committed<E>>, last_index: u64) {
        assert!(
            last_index > self.delivered_index,
            "delivery must move forward"
        );
        self.delivered_index = last_index;
        if self.slots.is_empty() {
            return;
        }
        let events: Vec<Arc<Committed<E>>> = events.into_iter().map(Arc::new).collect();
        self.slots.retain(|slot| {
            for event in &events {
                // Counted before the send, so the receiver never decrements below zero.
                let pending = slot.buffer.pending.fetch_add(1, Ordering::AcqRel);
                if pending >= slot.capacity {
                    slot.buffer.cut_off.store(true, Ordering::SeqCst);
                    return false;
                }
                if slot.sender.send(Arc::clone(event)).is_err() {
                    return false; // the subscription was dropped
                }
            }
            true
        });
    }
}

/// Why a subscription ended.
#[derive(Debug)]
pub enum SubscribeError {
    /// The subscriber fell more than its buffer behind and was cut off; resubscribe from the
    /// next index it needs.
    Lagged {
        /// The index it should resubscribe from.
        next_index: u64,
    },
    /// Reading the log for catch-up failed (e.g. the range was compacted into a snapshot).
    Log(Error),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Lagged { next_index } => {
                write!(
                    f,
                    "subscriber fell too far behind; resubscribe from {next_index}"
                )
            }
            SubscribeError::Log(error) => write!(f, "catch-up failed: {error}"),
        }
    }
}

/// A stream of committed events in index order.
pub struct Subscription<S: State> {
    next_index: u64,
    /// Last index that must come from the log; later ones arrive on `live`.
    catch_up_end: u64,
    buffered: VecDeque<Arc<Committed<S::Event>>>,
    live: mpsc::Receiver<Arc<Committed<S::Event>>>,
    buffer: Arc<Buffer>,
    log_dir: PathBuf,
    upcasters: Vec<Upcaster>,
    /// Catch-up position, kept between reads so each segment is read once.
    cursor: Option<log::Cursor>,
    /// A live event [`Subscription::is_closed`] took off the channel to look past it; the
    /// next live read yields it first.
    peeked: Option<Arc<Committed<S::Event>>>,
}

impl<S: State> Subscription<S> {
    /// Index of the next event this subscription will yield.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Waits up to `timeout` for the next event. `Ok(None)`: nothing yet, or the engine closed
    /// (see [`Subscription::is_closed`]).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Arc<Committed<S::Event>>>, SubscribeError> {
        if self.next_index <= self.catch_up_end && self.buffered.is_empty() {
            self.fill_from_log().map_err(SubscribeError::Log)?;
        }
        if let Some(event) = self.buffered.pop_front() {
            return Ok(Some(self.advance(event)));
        }
        loop {
            let received = match self.peeked.take() {
                Some(event) => Ok(event),
                None => self.live.recv_timeout(timeout).inspect(|_| self.received()),
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected)
                    if self.buffer.cut_off.load(Ordering::SeqCst) =>
                {
                    return Err(SubscribeError::Lagged {
                        next_index: self.next_index,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            };
            // Live events the catch-up already yielded (subscribed from before the present).
            if event.envelope.index < self.next_index {
                continue;
            }
            return Ok(Some(self.advance(event)));
        }
    }

    /// True when the engine has shut down and every event was consumed. An event found
    /// waiting is kept for the next [`Subscription::next_timeout`] (asking loses nothing).
    pub fn is_closed(&mut self) -> bool {
        if !self.buffered.is_empty() || self.peeked.is_some() {
            return false;
        }
        match self.live.try_recv() {
            Ok(event) => {
                self.received();
                self.peeked = Some(event);
                false
            }
            Err(mpsc::TryRecvError::Empty) => false,
            // Cut off is not closed: the next read reports `Lagged`.
            Err(mpsc::TryRecvError::Disconnected) => !self.buffer.cut_off.load(Ordering::SeqCst),
        }
    }

    /// One event left the live channel: room for another in the buffer.
    fn received(&self) {
        let before = self.buffer.pending.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "received more events than were sent");
    }

    fn advance(&mut self, event: Arc<Committed<S::Event>>) -> Arc<Committed<S::Event>> {
        // Cluster mode: Raft-internal entries take indexes but yield no event, so the next
        // event may lie beyond `next_index`; never before it.
        assert!(
            event.envelope.index >= self.next_index,
            "subscription duplicate: {} after {}",
            event.envelope.index,
            self.next_index
        );
        self.next_index = event.envelope.index + 1;
        event
    }

    fn fill_from_log(&mut self) -> Result<(), Error> {
        let (from, to) = (self.next_index, self.catch_up_end);
        let mut events = Vec::new();
        let upcasters = &self.upcasters;
        let log_dir = &self.log_dir;
        let cursor = match &mut self.cursor {
            Some(cursor) => cursor,
            None => {
                replay::check_log_start(log_dir, from)?;
                self.cursor.insert(log::Cursor::new(log_dir, from))
            }
        };
        cursor.read(&mut |frame| {
            replay::committed_events::<S>(frame, from, to, upcasters, &mut events)?;
            Ok(events.len() < CATCH_UP_EVENTS_MAX && frame.last_index() < to)
        })?;
        if events.is_empty() {
            if cursor.next_index() > to {
                // Only Raft-internal entries in the range: nothing to yield from the log.
                self.next_index = to + 1;
                return Ok(());
            }
            let message = format!("catch-up from {from} found no event there in the log");
            return Err(Error::Invalid { message });
        }
        self.buffered.extend(events.into_iter().map(Arc::new));
        Ok(())
    }
}
