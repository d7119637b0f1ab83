//! A multi-producer queue for a small pool of consumer threads that wakes a consumer only when
//! one is parked and no wake is already on its way, and numbers every take so consumers can
//! keep the order in which they took.
//!
//! Why not `std::sync::mpsc` behind a mutex (what the log's two writer threads shared before):
//! the thread waiting for the receiver's mutex was woken each time the other thread took a
//! request and let go of the mutex, only to park again on the channel: a second thread wake
//! (20-40 us of scheduling delay on the shared VM) for every lone append. Here the idle
//! consumers all park on one condition variable and a push wakes exactly one of them, and
//! none if every consumer is awake (it finds the item when it comes back for more).
//!
//! Owns: queueing, parking and waking. Must not: look at the items or hold its lock while a
//! caller's code runs other than the `take` closure (which only moves items out).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The outcome of [`Inbox::recv_with`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received<R> {
    /// What the `take` closure returned, and the number of this take (0, 1, 2, ... in the
    /// order takes happened under the lock).
    Taken(R, u64),
    /// The timeout passed with nothing queued.
    TimedOut,
    /// The inbox is closed and empty.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    /// Consumers parked on `ready`.
    parked: u32,
    /// Wakes issued and not yet consumed by a parked consumer (a push wakes a consumer only
    /// when `parked > wakes_pending`).
    wakes_pending: u32,
    /// Takes so far (the number the next take gets).
    takes: u64,
    closed: bool,
}

/// See the module doc.
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Inbox<T> {
    /// An empty, open inbox.
    pub(crate) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                items: VecDeque::new(),
                parked: 0,
                wakes_pending: 0,
                takes: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().expect("inbox poisoned")
    }

    /// Queues `item`, waking one parked consumer unless a wake is already on its way; gives
    /// the item back when the inbox is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        self.push_inner(item, true)
    }

    /// Queues `item` from one of this inbox's own consumers, which comes back to
    /// [`Inbox::recv_with`] before it parks again and takes the item then: no parked consumer
    /// is woken for it (that wake would cost a thread hop, and the consumer it wakes would
    /// find the pusher's turn still running). The caller guarantees it comes back; gives the
    /// item back when the inbox is closed.
    pub(crate) fn push_from_consumer(&self, item: T) -> Result<(), T> {
        self.push_inner(item, false)
    }

    fn push_inner(&self, item: T, wake: bool) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        if wake && state.parked > state.wakes_pending {
            state.wakes_pending += 1;
            drop(state);
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Closes the inbox: later pushes are refused; consumers take what is queued, then get
    /// [`Received::Closed`].
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let parked = state.parked;
        state.wakes_pending = parked;
        drop(state);
        self.ready.notify_all();
    }

    /// Closes the inbox like [`Inbox::close`] and hands back what is still queued, so the
    /// caller drops it outside the lock (for a consumer that stops taking: the items' owners
    /// then learn they will not be handled, as with a dropped channel receiver).
    pub(crate) fn close_and_take(&self) -> VecDeque<T> {
        let mut state = self.lock();
        let items = std::mem::take(&mut state.items);
        state.closed = true;
        state.wakes_pending = state.parked;
        drop(state);
        self.ready.notify_all();
        items
    }

    /// Waits (at most `timeout`, if given) until something is queued, then calls `take` on
    /// the queue under the lock. `take` must remove at least one item (it sees a non-empty
    /// queue), so the next consumer does not take the same items.
    pub(crate) fn recv_with<R>(
        &self,
        timeout: Option<Duration>,
        take: impl FnOnce(&mut VecDeque<T>) -> R,
    ) -> Received<R> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.lock();
        while state.items.is_empty() {
            if state.closed {
                return Received::Closed;
            }
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Received::TimedOut,
                },
                None => None,
            };
            state.parked += 1;
            state = match left {
                Some(left) => {
                    self.ready
                        .wait_timeout(state, left)
                        .expect("inbox poisoned")
                        .0
                }
                None => self.ready.wait(state).expect("inbox poisoned"),
            };
            state.parked -= 1;
            // A wake meant for another parked consumer may be consumed here (a spurious or
            // timed-out wake): harmless, since this consumer now looks at the queue itself.
            state.wakes_pending = state.wakes_pending.saturating_sub(1).min(state.parked);
        }
        let before = state.items.len();
        let taken = take(&mut state.items);
        assert!(state.items.len() < before, "a take must remove an item");
        let number = state.takes;
        state.takes += 1;
        Received::Taken(taken, number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn take_all(queue: &mut VecDeque<u64>) -> Vec<u64> {
        queue.drain(..).collect()
    }

    #[test]
    fn takes_are_numbered_and_keep_push_order_and_close_drains_first() {
        let inbox = Inbox::new();
        inbox.push(1).unwrap();
        inbox.push(2).unwrap();
        assert_eq!(
            inbox.recv_with(None, |q| q.pop_front().unwrap()),
            Received::Taken(1, 0)
        );
        inbox.push(3).unwrap();
        assert_eq!(
            inbox.recv_with(None, take_all),
            Received::Taken(vec![2, 3], 1)
        );
        assert_eq!(
            inbox.recv_with(Some(Duration::from_millis(1)), take_all),
            Received::TimedOut
        );
        inbox.push(4).unwrap();
        inbox.close();
        assert_eq!(inbox.push(5), Err(5), "a closed inbox refuses pushes");
        assert_eq!(inbox.recv_with(None, take_all), Received::Taken(vec![4], 2));
        assert_eq!(inbox.recv_with(None, take_all), Received::Closed);
    }

    #[test]
    fn a_push_from_a_consumer_wakes_no_parked_consumer() {
        let inbox: Arc<Inbox<u64>> = Arc::new(Inbox::new());
        let consumer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Received::Taken(items, _) = inbox.recv_with(None, take_all) {
                    got.extend(items);
                }
                got
            })
        };
        while inbox.lock().parked == 0 {
            std::thread::yield_now();
        }
        inbox.push_from_consumer(1).unwrap();
        let state = inbox.lock();
        // Unless a spurious wake-up took it meanwhile, the item waits with no wake issued.
        assert!(
            state.parked == 0 || state.wakes_pending == 0,
            "no wake for a consumer's own push"
        );
        drop(state);
        inbox.push(2).unwrap();
        inbox.close();
        assert_eq!(consumer.join().unwrap(), vec![1, 2]);
    }

    #[test]
    fn parked_consumers_receive_every_item_exactly_once_and_close_wakes_them() {
        let inbox: Arc<Inbox<u64>> = Arc::new(Inbox::new());
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut numbers = Vec::new();
                    while let Received::Taken(items, number) = inbox.recv_with(None, take_all) {
                        got.extend(items);
                        numbers.push(number);
                    }
                    (got, numbers)
                })
            })
            .collect();
        for item in 0..5_000_u64 {
            inbox.push(item).unwrap();
            if item % 97 == 0 {
                std::thread::yield_now();
            }
        }
        inbox.close();
        let mut all = Vec::new();
        let mut numbers = Vec::new();
        for consumer in consumers {
            let (got, taken) = consumer.join().unwrap();
            // One consumer's items come in push order (takes remove from the front).
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "order within a consumer"
            );
            all.extend(got);
            numbers.extend(taken);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..5_000).collect::<Vec<_>>(),
            "each item exactly once"
        );
        numbers.sort_unstable();
        let expected: Vec<u64> = (0..numbers.len() as u64).collect();
        assert_eq!(
            numbers, expected,
            "take numbers are 0.. without gap or repeat"
        );
    }
}
