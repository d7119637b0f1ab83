//! When a background snapshot is due: the rule alone, as a pure function of the log written
//! since the last snapshot and the size of the newest snapshot file.
//!
//! Owns: the trigger rule. Must not: read the clock, the disk or the engine's state (the
//! engine hands it its counters; benchmarks and tests call it the same way).
//!
//! A snapshot costs O(state size): the snapshotter rebuilds the state, encodes it and writes
//! it whole. With a fixed period alone (every N events or bytes) the snapshot work per event
//! grows with the state, and past some size one snapshot takes longer than the period
//! between two: the snapshot thread then runs for good. The tail rule (the idea of Redis's
//! `auto-aof-rewrite-percentage`) also asks the log written since the last snapshot to reach
//! a percentage of that snapshot's size, so a snapshot of S bytes is paid for by at least
//! `percent / 100 * S` bytes of log: the snapshot work per logged byte is bounded by
//! `100 / percent` whatever the state size, and the log tail that recovery replays stays
//! within `percent / 100` of the snapshot (or one period, whichever is larger).

/// A whole in percent: the tail rule compares `bytes * PERCENT` with `snapshot_bytes *
/// tail_percent`.
const PERCENT: u128 = 100;

/// When the engine takes a background snapshot (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// The period in events since the last snapshot (0: not by count).
    pub every_events: u64,
    /// The period in log bytes since the last snapshot (0: not by size).
    pub every_bytes: u64,
    /// Percent of the newest snapshot file's size that the log bytes since it must also
    /// reach (0: off, the period alone decides).
    pub tail_percent: u32,
}

/// The log written since the last snapshot, and that snapshot's size: what the rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotTail {
    /// Events logged since the last snapshot started.
    pub events: u64,
    /// Log bytes (entries with their length prefix) since the last snapshot started.
    pub bytes: u64,
    /// Size of the newest snapshot file in bytes (0: none yet).
    pub snapshot_bytes: u64,
}

impl SnapshotPolicy {
    /// Whether a snapshot is due: the period is reached (by events or by bytes, whichever
    /// is set; never when neither is) and the log bytes since the last snapshot are at least
    /// `tail_percent` % of the newest snapshot's size. With no snapshot yet (size 0) the
    /// first one comes at the period.
    pub fn due(&self, tail: &SnapshotTail) -> bool {
        let period = (self.every_events > 0 && tail.events >= self.every_events)
            || (self.every_bytes > 0 && tail.bytes >= self.every_bytes);
        // Widened: `bytes * 100` and `snapshot_bytes * percent` cannot overflow a u128.
        let enough_tail = u128::from(tail.bytes) * PERCENT
            >= u128::from(tail.snapshot_bytes) * u128::from(self.tail_percent);
        period && enough_tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(events: u64, bytes: u64, snapshot_bytes: u64) -> SnapshotTail {
        SnapshotTail {
            events,
            bytes,
            snapshot_bytes,
        }
    }

    #[test]
    fn the_period_and_the_tail_percentage_must_both_be_reached() {
        let by_events = |tail_percent| SnapshotPolicy {
            every_events: 100,
            every_bytes: 0,
            tail_percent,
        };
        let by_bytes = |tail_percent| SnapshotPolicy {
            every_events: 0,
            every_bytes: 1_000,
            tail_percent,
        };
        let neither = SnapshotPolicy {
            every_events: 0,
            every_bytes: 0,
            tail_percent: 0,
        };
        let cases = [
            // Percent 0: the old behaviour, the period alone.
            (by_events(0), tail(99, 10_000, 1 << 30), false),
            (by_events(0), tail(100, 1, 1 << 30), true),
            (by_bytes(0), tail(1_000_000, 999, 0), false),
            (by_bytes(0), tail(1, 1_000, 1 << 30), true),
            // No snapshot yet: the first one at the period.
            (by_events(100), tail(100, 1, 0), true),
            (by_events(100), tail(99, 1, 0), false),
            (by_bytes(100), tail(0, 1_000, 0), true),
            // A large snapshot postpones the next one until the tail reaches its share.
            (by_events(100), tail(100, 4_999, 5_000), false),
            (by_events(100), tail(100, 5_000, 5_000), true),
            (by_events(50), tail(1_000, 2_499, 5_000), false),
            (by_events(50), tail(1_000, 2_500, 5_000), true),
            (by_events(200), tail(1_000, 9_999, 5_000), false),
            (by_events(200), tail(1_000, 10_000, 5_000), true),
            // ... but the tail alone never triggers one before the period.
            (by_events(100), tail(99, 1 << 40, 5_000), false),
            (by_bytes(100), tail(1 << 20, 999, 1), false),
            // Neither period set: never, whatever the tail.
            (neither, tail(u64::MAX, u64::MAX, 0), false),
            // No overflow at the extremes.
            (by_events(u32::MAX), tail(100, u64::MAX, u64::MAX), false),
            (by_events(100), tail(100, u64::MAX, u64::MAX), true),
        ];
        for (policy, tail, due) in cases {
            assert_eq!(policy.due(&tail), due, "{policy:?} {tail:?}");
        }
    }
}
