//! `Progress`: what a leader knows about one follower's log, and the flow-control window of
//! Append messages in flight to it.
//!
//! Owns: the probe / replicate / snapshot state machine per follower and `match < next`.
//! Must not: send anything; the leader decides from these answers.

use std::collections::VecDeque;

/// How the leader currently feeds a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// One Append per heartbeat until the matching point is found.
    Probe,
    /// Optimistic pipelining within the in-flight window.
    Replicate,
    /// Sending snapshot `index` in chunks; `acked_bytes` received so far.
    Snapshot { index: u64, acked_bytes: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    // INVARIANT: match_index < next_index.
    pub(crate) match_index: u64,
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// Probe: an Append is outstanding. Snapshot: a chunk is outstanding.
    pub(crate) probe_sent: bool,
    /// Heard from since the last CheckQuorum.
    pub(crate) recent_active: bool,
    /// The leader's tick count when it last heard from this follower (or started tracking
    /// it): how long a member has been silent, for the status.
    pub(crate) heard_at_tick: u64,
    /// The highest ReadIndex round this follower acknowledged.
    pub(crate) read_round_acked: u64,
    // (last index, bytes) of each Append in flight, oldest first.
    inflights: VecDeque<(u64, u64)>,
    inflight_bytes: u64,
}

impl Progress {
    /// Tracking starts at `next_index`, at tick `now` (counted as heard from then).
    pub(crate) fn new(next_index: u64, now: u64) -> Progress {
        assert!(next_index >= 1, "next index 0");
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: true,
            heard_at_tick: now,
            read_round_acked: 0,
            inflights: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    pub(crate) fn become_probe(&mut self) {
        if let ProgressState::Snapshot { index, .. } = self.state {
            self.next_index = (self.match_index + 1).max(index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.reset_state(ProgressState::Probe);
    }

    pub(crate) fn become_replicate(&mut self) {
        self.next_index = self.match_index + 1;
        self.reset_state(ProgressState::Replicate);
    }

    pub(crate) fn become_snapshot(&mut self, index: u64) {
        self.reset_state(ProgressState::Snapshot {
            index,
            acked_bytes: 0,
        });
    }

    /// Records an acknowledged index; false if it is stale.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// Handles a rejection of the Append whose `prev_index` was `rejected`; `next_hint` is where
    /// the follower's hint says to retry. False if the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: u64, next_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            return true;
        }
        if self.next_index.saturating_sub(1) != rejected {
            return false;
        }
        self.next_index = next_hint.min(rejected).max(self.match_index + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Records a sent Append ending at `last_index` in Replicate state.
    pub(crate) fn sent_entries(&mut self, last_index: u64, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                self.next_index = last_index + 1;
                self.inflights.push_back((last_index, bytes));
                self.inflight_bytes += bytes;
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {
                panic!("entries sent to a follower in snapshot state")
            }
        }
    }

    /// Frees the window up to `index`.
    pub(crate) fn free_to(&mut self, index: u64) {
        while let Some(&(last, bytes)) = self.inflights.front() {
            if last > index {
                break;
            }
            self.inflights.pop_front();
            self.inflight_bytes -= bytes;
        }
    }

    /// Frees the oldest in-flight message (its ack was probably lost).
    pub(crate) fn free_first(&mut self) {
        if let Some((_, bytes)) = self.inflights.pop_front() {
            self.inflight_bytes -= bytes;
        }
    }

    pub(crate) fn inflight_full(&self, msgs_max: u64, bytes_max: u64) -> bool {
        self.inflights.len() as u64 >= msgs_max || self.inflight_bytes >= bytes_max
    }

    pub(crate) fn is_paused(&self, msgs_max: u64, bytes_max: u64) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight_full(msgs_max, bytes_max),
            ProgressState::Snapshot { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_fills_and_frees() {
        let mut progress = Progress::new(5, 0);
        progress.maybe_update(4);
        progress.become_replicate();
        progress.sent_entries(6, 10);
        progress.sent_entries(8, 10);
        assert!(progress.is_paused(2, 100));
        assert!(!progress.is_paused(3, 100));
        progress.free_to(6);
        assert!(!progress.is_paused(2, 100));
        assert_eq!(progress.next_index, 9);
    }

    #[test]
    fn probe_ignores_stale_rejections_and_uses_hints() {
        let mut progress = Progress::new(10, 0);
        assert!(!progress.maybe_decrease_to(5, 3));
        assert!(progress.maybe_decrease_to(9, 4));
        assert_eq!(progress.next_index, 4);
        progress.maybe_update(2);
        assert!(progress.maybe_decrease_to(3, 1));
        assert_eq!(progress.next_index, 3);
    }
}
