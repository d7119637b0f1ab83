//! What a server answered, counted by status class, for `/_lithair/metrics`.
//!
//! Each reactor counts in a slot of its own, a cache line apart from the others, so counting
//! is one uncontended atomic add per response (no line bounces between reactors); a reader
//! sums the slots.
//!
//! Owns: the counters.
//! Must not: block or allocate on the counting path (it runs on the reactor for every answer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Slots of a [`ServerStats`]: reactor `k` counts in slot `k % STATS_SLOTS` (more reactors
/// than slots only share lines, they never lose counts).
pub const STATS_SLOTS: usize = 16;

/// Status classes counted: 1xx to 5xx (a status outside 100..=599 counts as 5xx).
pub const STATUS_CLASSES: usize = 5;

/// One reactor's counters, alone on its cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct StatsSlot {
    responses: [AtomicU64; STATUS_CLASSES],
}

impl StatsSlot {
    /// Counts one answer with `status`.
    pub(crate) fn count(&self, status: u16) {
        let class = match usize::from(status / 100) {
            class @ 1..=STATUS_CLASSES => class - 1,
            _ => STATUS_CLASSES - 1,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters a server keeps of its answers, shared with whoever reads them (`Server::stats`
/// hands them to the server; a clone reads the same counters).
#[derive(Clone, Debug)]
pub struct ServerStats {
    slots: Arc<[StatsSlot; STATS_SLOTS]>,
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats {
            slots: Arc::new(std::array::from_fn(|_| StatsSlot::default())),
        }
    }
}

impl ServerStats {
    /// Counters at zero.
    pub fn new() -> ServerStats {
        ServerStats::default()
    }

    /// The slot reactor `reactor` counts in.
    pub(crate) fn slot(&self, reactor: usize) -> &StatsSlot {
        &self.slots[reactor % STATS_SLOTS]
    }

    /// Responses written so far by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]` (a refusal
    /// written before any request was read, the 503 past the connection limit, included).
    pub fn responses_by_class(&self) -> [u64; STATUS_CLASSES] {
        let mut sums = [0; STATUS_CLASSES];
        for slot in self.slots.iter() {
            for (sum, counter) in sums.iter_mut().zip(&slot.responses) {
                *sum += counter.load(Ordering::Relaxed);
            }
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_across_slots() {
        let stats = ServerStats::new();
        let reader = stats.clone();
        stats.slot(0).count(200);
        stats.slot(1).count(204);
        stats.slot(STATS_SLOTS + 1).count(404);
        stats.slot(3).count(101);
        stats.slot(3).count(503);
        stats.slot(3).count(999);
        stats.slot(3).count(0);
        assert_eq!(reader.responses_by_class(), [1, 2, 0, 1, 3]);
        assert_eq!(std::mem::align_of::<StatsSlot>(), 64);
    }
}
