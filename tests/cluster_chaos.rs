//! Real-process chaos: three nodes under write load, one node at a time killed with `kill -9`
//! at a random moment (once during its first start, and sometimes again while it is still
//! starting: opening its log, replaying, catching up) and started again on its data. Snapshots every few dozen events and
//! small segments keep compaction and InstallSnapshot in play. At the end every node is up, they
//! converge on one state, and every acknowledged write reads back on every node.
//!
//! Seeded (`LITHAIR_CHAOS_SEED` replays a run; the seed is printed); no timed assertions, only
//! bounded polls.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kill rounds of one run (`LITHAIR_CHAOS_ROUNDS` sets another number, for longer runs by
/// hand).
const ROUNDS: u64 = 10;
/// Longest pause between events of a round, in milliseconds.
const PAUSE_MS_MAX: u64 = 600;

/// xorshift64*: the run's only source of randomness, so a seed replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[test]
fn nodes_killed_at_random_moments_lose_no_acknowledged_write() {
    let seed = std::env::var("LITHAIR_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
                | 1
        });
    eprintln!("chaos seed {seed} (LITHAIR_CHAOS_SEED={seed} replays the kill schedule)");
    let mut rng = Rng(seed);
    let options = NodeOptions {
        snapshot_every_events: Some(40),
        segment_bytes_max: Some(4096),
        ..NodeOptions::default()
    };
    let mut cluster = start_cluster_with("chaos", &options, &mut |_, _, real| real);
    // A node killed during its first start (bootstrapping its log and Raft state) and started
    // again on what it left.
    std::thread::sleep(Duration::from_millis(rng.below(PAUSE_MS_MAX / 4)));
    let victim = rng.below(cluster.nodes.len() as u64) as usize;
    cluster.nodes[victim].kill();
    cluster.nodes[victim].spawn();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    wait_leader(&cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (addrs, stop, acked) = (addrs.clone(), Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                for n in 0.. {
                    let Some(id) = write_item(&addrs, w, &format!("chaos-{w}-{n}"), &stop) else {
                        break;
                    };
                    acked.lock().expect("acked").insert(id);
                }
            })
        })
        .collect();
    let rounds = std::env::var("LITHAIR_CHAOS_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(ROUNDS);
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(rng.below(PAUSE_MS_MAX)));
        let victim = rng.below(cluster.nodes.len() as u64) as usize;
        cluster.nodes[victim].kill();
        std::thread::sleep(Duration::from_millis(rng.below(PAUSE_MS_MAX)));
        cluster.nodes[victim].spawn();
        if rng.below(3) == 0 {
            // Again while it starts: opening its log, replaying, catching up.
            std::thread::sleep(Duration::from_millis(rng.below(PAUSE_MS_MAX / 4)));
            cluster.nodes[victim].kill();
            cluster.nodes[victim].spawn();
        }
    }
    // Writes still commit with every node back.
    let before = acked.lock().expect("acked").len();
    poll(Duration::from_secs(60), || {
        (acked.lock().expect("acked").len() > before + 10).then_some(())
    })
    .expect("writes commit after the last restart");
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    let converged = wait_converged(&cluster);
    eprintln!(
        "chaos: {} acknowledged writes, converged at event index {}",
        acked.len(),
        converged[0].applied_event
    );
    for addr in &addrs {
        assert_readable(*addr, &acked);
    }
}
