//! Core configuration, validated once before a node starts, and the seeded PRNG that draws
//! randomized election timeouts.
//!
//! Owns: every tunable of the consensus core, with its unit in its name.
//! Must not: read the environment or a clock; the seed comes from the caller.

use super::types::{NodeId, NODE_NONE};
use std::fmt;

/// How leaders confirm ReadIndex reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Confirm leadership with a quorum heartbeat round (linearizable, default).
    Safe,
    /// Trust the CheckQuorum lease (no round trip; assumes bounded clock drift and is bypassed
    /// by leadership transfer, which is therefore refused in this mode).
    Lease,
}

/// Settings of one Raft node. Ticks are the caller's unit of time.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Base election timeout; the effective one is drawn in `[election, 2 * election)`.
    pub election_ticks: u32,
    /// Leader heartbeat interval; must be below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Probe electability before disrupting the cluster with a new term.
    pub pre_vote: bool,
    /// A leader without a quorum for an election timeout steps down; voters ignore campaigns
    /// while they hear from a leader.
    pub check_quorum: bool,
    /// Most entries in one Append.
    pub msg_entries_max: u64,
    /// Most payload bytes in one Append (always at least one entry).
    pub msg_bytes_max: u64,
    /// Most Append messages in flight per follower.
    pub inflight_msgs_max: u64,
    /// Most payload bytes in flight per follower.
    pub inflight_bytes_max: u64,
    /// Size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Largest snapshot a follower accepts.
    pub snapshot_bytes_max: u64,
    /// ReadIndex confirmation mode.
    pub read_mode: ReadMode,
    /// The leader promotes a learner to voter once it has caught up with the commit index.
    pub auto_promote_learners: bool,
    /// The index the application has already applied (e.g. from its snapshot) on start.
    pub applied: u64,
    /// Seed of the election-timeout PRNG (mixed with `id`).
    pub seed: u64,
}

impl Config {
    /// Defaults close to etcd's: election 10 ticks, heartbeat 1 tick, PreVote and CheckQuorum on.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            msg_entries_max: 256,
            msg_bytes_max: 1 << 20,
            inflight_msgs_max: 64,
            inflight_bytes_max: 16 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_bytes_max: 1 << 34,
            read_mode: ReadMode::Safe,
            auto_promote_learners: true,
            applied: 0,
            seed: 0,
        }
    }

    /// Rejects inconsistent settings, in plain words.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problem = if self.id == NODE_NONE {
            "id must not be 0"
        } else if self.heartbeat_ticks == 0 {
            "heartbeat_ticks must be at least 1"
        } else if self.election_ticks <= self.heartbeat_ticks {
            "election_ticks must be greater than heartbeat_ticks"
        } else if self.msg_entries_max == 0 || self.msg_bytes_max == 0 {
            "msg_entries_max and msg_bytes_max must be at least 1"
        } else if self.inflight_msgs_max == 0 || self.inflight_bytes_max == 0 {
            "inflight_msgs_max and inflight_bytes_max must be at least 1"
        } else if self.snapshot_chunk_bytes == 0 {
            "snapshot_chunk_bytes must be at least 1"
        } else if self.read_mode == ReadMode::Lease && !self.check_quorum {
            "read_mode Lease requires check_quorum (the lease is the CheckQuorum window)"
        } else {
            return Ok(());
        };
        Err(ConfigError { problem })
    }
}

/// An invalid [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong.
    pub problem: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// SplitMix64: a tiny deterministic PRNG (not for secrets). Used for election jitter and by
/// the simulator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`); the slight modulo bias is irrelevant here.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        self.next_u64() % bound
    }

    /// True with probability `per_million / 1_000_000`.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_problem() {
        assert_eq!(Config::new(1).validate(), Ok(()));
        let mut config = Config::new(0);
        assert_eq!(
            config.validate().map_err(|e| e.problem),
            Err("id must not be 0")
        );
        config = Config::new(1);
        config.election_ticks = 1;
        assert!(config.validate().is_err());
        config = Config::new(1);
        config.check_quorum = false;
        config.read_mode = ReadMode::Lease;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("check_quorum"));
    }

    #[test]
    fn splitmix_is_deterministic_and_bounded() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            let value = a.below(10);
            assert_eq!(value, b.below(10));
            assert!(value < 10);
        }
    }
}
