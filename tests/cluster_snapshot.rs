//! Real-process test of snapshots through Raft: three nodes of a small app on loopback, each a
//! child process (this test binary re-run in child mode, through the shared cluster harness),
//! snapshotting every few hundred events so the leader compacts its log.
//!
//! - a follower stopped while the leader writes and compacts, restarted, catches up through an
//!   InstallSnapshot (its `/_lithair/cluster` reports an installed snapshot) and its digest
//!   converges with the others;
//! - a follower that crashes in the middle of an install (test hook after each install step)
//!   starts again on its data directory and converges too.
//!
//! No timed assertions: every wait is a bounded poll that fails only past a generous bound.

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

use cluster_harness::*;
use lithair::raft::storage_log::INCOMING_SNAPSHOT_FILE_NAME;
use std::net::SocketAddr;
use std::time::Duration;

/// Snapshot (and so compaction) interval of the test nodes, in events.
const SNAPSHOT_EVERY_EVENTS: u64 = 200;
/// Log segment size of the test nodes: small, so a few hundred writes fill several segments.
const SEGMENT_BYTES_MAX: u64 = 16 * 1024;
/// Writes made while a follower is down: several snapshot intervals.
const WRITES_WHILE_DOWN: usize = 800;
const WRITER_THREADS: usize = 8;

fn start_snapshotting_cluster(name: &str) -> Cluster {
    let options = NodeOptions {
        snapshot_every_events: Some(SNAPSHOT_EVERY_EVENTS),
        segment_bytes_max: Some(SEGMENT_BYTES_MAX),
        ..NodeOptions::default()
    };
    start_cluster_with(&format!("snapshot-{name}"), &options, &mut |_, _, real| {
        real
    })
}

/// Creates `count` items through `addr` with a few threads; every write must be acknowledged.
/// Each write carries its own idempotency key, so a retry after a lost answer creates nothing.
fn write_items(addr: SocketAddr, tag: &str, count: usize) {
    std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            scope.spawn(move || {
                for k in (thread..count).step_by(WRITER_THREADS) {
                    let headers =
                        format!("Content-Type: application/json\r\nIdempotency-Key: {tag}-{k}\r\n");
                    let created = poll(Duration::from_secs(20), || {
                        let (code, _) =
                            http(addr, "POST", "/api/items", &headers, "{\"name\":\"t\"}")?;
                        matches!(code, 200 | 201).then_some(())
                    });
                    assert!(created.is_some(), "item {tag}-{k} was not acknowledged");
                }
            });
        }
    });
}

/// Stops a follower, writes until the leader compacted past it, and returns the follower's
/// position and the leader's index.
fn stop_follower_and_compact_past_it(cluster: &mut Cluster, tag: &str) -> (usize, usize) {
    let leader = wait_leader(cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    let stopped_at = status(cluster.nodes[follower].http)
        .expect("the follower answers")
        .applied_event;
    cluster.nodes[follower].kill();
    write_items(cluster.nodes[leader].http, tag, WRITES_WHILE_DOWN);
    let compacted = poll(Duration::from_secs(30), || {
        let s = status(cluster.nodes[leader].http)?;
        (s.snapshot_index > stopped_at + 1).then_some(s.snapshot_index)
    });
    assert!(
        compacted.is_some(),
        "the leader compacted its log past the stopped follower ({stopped_at})"
    );
    (follower, leader)
}

/// Where node `k` streams a snapshot it receives.
fn incoming_file(cluster: &Cluster, k: usize) -> std::path::PathBuf {
    cluster
        .dir
        .join(format!("d{}", cluster.nodes[k].id))
        .join(INCOMING_SNAPSHOT_FILE_NAME)
}

#[test]
fn a_follower_behind_the_compaction_point_catches_up_through_a_snapshot() {
    let mut cluster = start_snapshotting_cluster("catch-up");
    let leader = wait_leader(&cluster);
    write_items(cluster.nodes[leader].http, "warm", 50);
    wait_converged(&cluster);

    // 1. A plain restart after compaction: the follower gets a snapshot. A garbage incoming
    // snapshot file (a transfer a crash cut short) is dropped, never installed.
    let (follower, _) = stop_follower_and_compact_past_it(&mut cluster, "a");
    let incoming = incoming_file(&cluster, follower);
    std::fs::write(&incoming, b"a cut-short transfer").expect("write the leftover");
    cluster.nodes[follower].spawn();
    let all = wait_converged(&cluster);
    assert!(
        !incoming.exists(),
        "the incoming snapshot file is gone once installed"
    );
    let installed = all[follower].snapshots_installed;
    assert!(
        installed >= 1,
        "the restarted follower caught up through a snapshot: {all:?}"
    );
    assert!(all[follower].applied_event >= WRITES_WHILE_DOWN as u64);

    // 2. A crash after each install step, then a restart on the same data directory.
    for (round, step) in ["file", "record", "log"].iter().enumerate() {
        let tag = format!("crash{round}");
        let (follower, _) = stop_follower_and_compact_past_it(&mut cluster, &tag);
        cluster.nodes[follower].spawn_with_crash_hook(Some(step));
        let mut child = cluster.nodes[follower].child.take().expect("spawned");
        let exited = poll(Duration::from_secs(30), || child.try_wait().ok().flatten());
        let Some(exit) = exited else {
            let _ = child.kill();
            panic!("the follower did not crash during the install (step {step})");
        };
        assert!(!exit.success(), "the crash hook aborts the process");
        let log = std::fs::read_to_string(cluster.nodes[follower].log_path()).unwrap_or_default();
        assert!(
            log.contains(&format!("crashing after install step `{step}`")),
            "the follower crashed in the install, at step {step}:\n{log}"
        );
        cluster.nodes[follower].spawn();
        let all = wait_converged(&cluster);
        assert!(all.iter().all(|s| s.applied_event == all[0].applied_event));
        let incoming = incoming_file(&cluster, follower);
        assert!(
            !incoming.exists(),
            "no incoming file left after round {round}"
        );
    }
}

/// Items of one bulk command building a state of many snapshot chunks, and their name bytes.
const BULK_ITEMS: usize = 100;
const BULK_NAME_BYTES: usize = 1000;

fn start_chunked_cluster(name: &str, snapshot_every_events: u64, chunk_bytes: u64) -> Cluster {
    let options = NodeOptions {
        snapshot_every_events: Some(snapshot_every_events),
        segment_bytes_max: Some(SEGMENT_BYTES_MAX),
        snapshot_chunk_bytes: Some(chunk_bytes),
    };
    start_cluster_with(&format!("snapshot-{name}"), &options, &mut |_, _, real| {
        real
    })
}

/// Creates `commands` bulk commands of [`BULK_ITEMS`] items through `addr`.
fn write_bulk(addr: SocketAddr, commands: usize) {
    let path = format!("/api/bulk/{BULK_ITEMS}/{BULK_NAME_BYTES}");
    for _ in 0..commands {
        let created = poll(Duration::from_secs(20), || {
            http(addr, "POST", &path, "", "").filter(|(code, _)| *code == 201)
        });
        assert!(created.is_some(), "a bulk command was not acknowledged");
    }
}

/// The size of node `k`'s newest snapshot file (0: none).
fn newest_snapshot_bytes(cluster: &Cluster, k: usize) -> u64 {
    let dir = cluster
        .dir
        .join(format!("d{}", cluster.nodes[k].id))
        .join(lithair::engine::SNAPSHOT_DIR_NAME);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            name.ends_with(".snap")
                .then(|| Some((name, entry.metadata().ok()?.len())))?
        })
        .collect();
    files.sort();
    files.last().map_or(0, |(_, bytes)| *bytes)
}

/// Converges a fresh cluster, stops a follower, then writes three bulks (about 300 KB of
/// state) and enough items that the leader compacts its log past the follower. Returns the
/// leader's and the stopped follower's positions.
fn leave_a_follower_behind_a_bulk(cluster: &mut Cluster) -> (usize, usize) {
    let leader = wait_leader(cluster);
    write_items(cluster.nodes[leader].http, "warm", 20);
    wait_converged(cluster);
    let follower = (leader + 1) % cluster.nodes.len();
    cluster.nodes[follower].kill();
    write_bulk(cluster.nodes[leader].http, 3);
    write_items(
        cluster.nodes[leader].http,
        "a",
        2 * SNAPSHOT_EVERY_EVENTS as usize,
    );
    (leader, follower)
}

#[test]
fn a_follower_catches_up_through_a_snapshot_sent_in_many_chunks() {
    const CHUNK_BYTES: u64 = 4096;
    let mut cluster = start_chunked_cluster("many-chunks", SNAPSHOT_EVERY_EVENTS, CHUNK_BYTES);
    // A state of about 300 KB (some 70 chunks).
    let (leader, follower) = leave_a_follower_behind_a_bulk(&mut cluster);
    let compacted = poll(Duration::from_secs(30), || {
        let s = status(cluster.nodes[leader].http)?;
        (s.snapshot_index > 3 * BULK_ITEMS as u64).then_some(())
    });
    assert!(
        compacted.is_some(),
        "the leader compacted past the bulk writes"
    );
    let sent_bytes = newest_snapshot_bytes(&cluster, leader);
    assert!(
        sent_bytes > 50 * CHUNK_BYTES,
        "the leader's snapshot spans many chunks: {sent_bytes} bytes"
    );
    cluster.nodes[follower].spawn();
    let all = wait_converged(&cluster);
    assert!(
        all[follower].snapshots_installed >= 1,
        "the follower caught up through a snapshot: {all:?}"
    );
    assert!(!incoming_file(&cluster, follower).exists());
}

#[test]
fn a_newer_snapshot_taken_mid_transfer_restarts_it_and_the_follower_converges() {
    // Small chunks: the transfer of a state of about 300 KB takes thousands of round trips,
    // long enough for writes meanwhile to make the leader take (and compact to) newer
    // snapshots, every few dozen events, before it ends.
    const CHUNK_BYTES: u64 = 64;
    const EVERY_EVENTS: u64 = 40;
    let mut cluster = start_chunked_cluster("mid-transfer", EVERY_EVENTS, CHUNK_BYTES);
    let (leader, follower) = leave_a_follower_behind_a_bulk(&mut cluster);
    let leader_http = cluster.nodes[leader].http;
    let compacted = poll(Duration::from_secs(30), || {
        let s = status(leader_http)?;
        (s.snapshot_index > 3 * BULK_ITEMS as u64).then_some(())
    });
    assert!(
        compacted.is_some(),
        "the leader compacted past the bulk writes"
    );
    let restarted_before = status(leader_http)
        .expect("leader")
        .snapshot_sends_restarted;

    // The follower comes back while writes go on, until the leader restarted its transfer.
    cluster.nodes[follower].spawn();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let restarted = std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            let stop = &stop;
            scope.spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let headers = format!(
                        "Content-Type: application/json\r\nIdempotency-Key: during-{thread}-{k}\r\n"
                    );
                    let _ = http(
                        leader_http,
                        "POST",
                        "/api/items",
                        &headers,
                        "{\"name\":\"t\"}",
                    );
                    k += 1;
                }
            });
        }
        let restarted = poll(Duration::from_secs(60), || {
            let s = status(leader_http)?;
            (s.snapshot_sends_restarted > restarted_before).then_some(s.snapshot_sends_restarted)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        restarted
    });
    assert!(
        restarted.is_some(),
        "the leader took a newer snapshot mid-transfer and restarted the transfer"
    );
    // Once the writes stop, the restarted transfer ends and every node holds one state.
    let all = wait_converged(&cluster);
    assert!(
        all[follower].snapshots_installed >= 1,
        "the follower caught up through a snapshot: {all:?}"
    );
    assert!(all.iter().all(|s| s.digest == all[0].digest));
    assert!(!incoming_file(&cluster, follower).exists());
}

// ---- In-process: the engine's cluster path driven by hand, as the Raft node drives it. ----

mod engine_cluster {
    use lithair::engine::{
        encode_reserved, Command, Context, Engine, EngineOptions, Proposer, Replica, Reserved,
        State, SubmitError, Token, NOT_COMMITTED,
    };
    use lithair::log::EntryBatch;
    use lithair::prelude::*;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Binary, Clone, Debug, Default, PartialEq)]
    pub struct Counter {
        total: u64,
    }

    impl State for Counter {
        type Event = u64;
        fn apply(&mut self, event: &u64) {
            self.total += event;
        }
    }

    struct Add(u64);

    impl Command<Counter> for Add {
        type Rejection = ();
        fn decide(&self, _: &Counter, _: &Context) -> Result<Vec<u64>, ()> {
            Ok(vec![self.0, self.0])
        }
    }

    type Proposal = (u64, u64, Vec<Arc<[u8]>>, Token);

    /// Records proposals, as the node's inbox would receive them.
    struct Recorder(Mutex<mpsc::Sender<Proposal>>);

    impl Proposer for Recorder {
        fn propose(
            &self,
            term: u64,
            slot: Option<u64>,
            first_index: u64,
            entries: Vec<Arc<[u8]>>,
            token: Token,
        ) {
            assert_eq!(slot, None, "this test's node never waits for an index");
            let _ = self
                .0
                .lock()
                .unwrap()
                .send((term, first_index, entries, token));
        }
    }

    fn reserved(index: u64, entry: Reserved<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reserved(&mut out, index, entry);
        out
    }

    /// Writes entries to the shared log as the Raft storage does (frame term = Raft term).
    fn persist(log: &lithair::log::Log, term: u64, first_index: u64, entries: &[impl AsRef<[u8]>]) {
        let mut batch = EntryBatch::new();
        for entry in entries {
            batch.push(entry.as_ref());
        }
        log.append_wait(term, first_index, batch).unwrap();
    }

    /// Bootstrap membership (term 1) and a leader's no-op (term 2) at indexes 1 and 2, both
    /// applied; node 2 leads and the next entry is 3.
    fn bootstrap(log: &lithair::log::Log, replica: &dyn Replica) {
        let conf = reserved(1, Reserved::Conf(&[1, 1, 0, 0, 0, 0, 0, 0, 0]));
        persist(log, 1, 1, &[conf]);
        persist(log, 2, 2, &[reserved(2, Reserved::Noop)]);
        replica.apply(1, &[Arc::from(&[][..]), Arc::from(&[][..])], None);
        replica.set_next_index(3);
        replica.set_leader(Some(2));
    }

    fn open(dir: &std::path::Path, hint: u64) -> (Engine<Counter>, mpsc::Receiver<Proposal>, u64) {
        open_with(dir, hint, EngineOptions::default())
    }

    fn open_with(
        dir: &std::path::Path,
        hint: u64,
        options: EngineOptions,
    ) -> (Engine<Counter>, mpsc::Receiver<Proposal>, u64) {
        open_recorded(dir, hint, options, Counter::default())
    }

    /// A cluster engine over `initial` in `dir` whose proposals arrive on the returned
    /// channel, and its applied index at open.
    fn open_recorded<S: State>(
        dir: &std::path::Path,
        hint: u64,
        options: EngineOptions,
        initial: S,
    ) -> (Engine<S>, mpsc::Receiver<Proposal>, u64) {
        let (sender, proposals) = mpsc::channel();
        let proposer: Arc<dyn Proposer> = Arc::new(Recorder(Mutex::new(sender)));
        let (engine, opened) = Engine::open_cluster(dir, options, initial, proposer, hint).unwrap();
        (engine, proposals, opened.applied_index)
    }

    fn next(proposals: &mpsc::Receiver<Proposal>) -> Proposal {
        proposals.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn raft_entries_consume_indexes_mismatches_retry_and_replay_stops_at_the_commit_hint() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (engine, proposals, applied) = open(&dir, 0);
        assert_eq!(applied, 0);
        let replica = engine.replica();
        let log = engine.cluster_log();
        bootstrap(&log, replica.as_ref());

        // A command's two events become Raft entries 3 and 4.
        let ticket = engine.submit_async(Add(5), Default::default());
        let (term, first, entries, token) = next(&proposals);
        assert_eq!((term, first, entries.len()), (2, 3, 2));
        persist(&log, 2, 3, &entries);
        replica.apply(3, &entries, Some(token));
        let receipt = ticket.wait().unwrap();
        assert_eq!((receipt.first_index, receipt.last_index), (3, 4));
        // The status digest: computed at an applied index, kept until the next write.
        let at_four = replica.applied_digest();
        assert_eq!(at_four, (4, engine.digest()));
        assert_eq!(
            replica.applied_digest(),
            at_four,
            "asked again between writes"
        );

        // A membership change took index 5 first: the proposal at 5 is abandoned, and the
        // sequencer continues at 6 once rebuilt.
        let ticket = engine.submit_async(Add(1), Default::default());
        let (_, first, _, token) = next(&proposals);
        assert_eq!(first, 5);
        persist(
            &log,
            2,
            5,
            &[reserved(5, Reserved::Conf(&[2, 4, 0, 0, 0, 0, 0, 0, 0]))],
        );
        replica.set_next_index(6);
        replica.abandon(token);
        match ticket.wait() {
            Err(SubmitError::Storage(message)) => assert_eq!(message, NOT_COMMITTED),
            other => panic!("expected a retryable error, got {other:?}"),
        }
        let ticket = engine.submit_async(Add(7), Default::default());
        let (_, first, entries, token) = next(&proposals);
        assert_eq!(first, 6);
        persist(&log, 2, 6, &entries);
        replica.apply(5, &[Arc::from(&[][..])], None);
        replica.apply(6, &entries, Some(token));
        assert_eq!(ticket.wait().unwrap().first_index, 6);
        assert_eq!(
            engine.sequencer_rebuilds(),
            1,
            "the abandoned proposal's rebuild"
        );
        assert_eq!(engine.applied_index(), 7);
        assert_eq!(engine.read(|s| s.total), 24);
        let digest = engine.digest();
        assert_eq!(
            replica.applied_digest(),
            (7, digest),
            "writes since: computed anew"
        );
        assert_ne!(digest, at_four.1);
        drop((replica, log));
        drop(engine);

        // The durable commit hint says 4: replay stops there, the rest is re-delivered.
        let (engine, _proposals, applied) = open(&dir, 4);
        assert_eq!(applied, 4);
        assert_eq!(engine.read(|s| s.total), 10);
        let replica = engine.replica();
        let mut all = Vec::new();
        lithair::log::read_range(&dir.join("log"), 1, &mut |frame| {
            all.extend(frame.entries().map(<[u8]>::to_vec));
            Ok(true)
        })
        .unwrap();
        assert_eq!(all.len(), 7);
        let shared: Vec<Arc<[u8]>> = all.iter().map(|entry| Arc::from(&entry[..])).collect();
        replica.apply(1, &shared, None);
        let converged = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            engine.applied_index() == 7
        });
        assert!(converged, "the re-delivered tail is applied");
        assert_eq!(engine.digest(), digest);
        drop(replica);
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn callbacks_answer_abandoned_proposals_and_applied_hooks_see_raft_entries() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-then-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (engine, proposals, _) = open(&dir, 0);
        let (seen, applied) = mpsc::channel();
        engine.on_applied(move |index| {
            let _ = seen.send(index);
        });
        let replica = engine.replica();
        let log = engine.cluster_log();
        bootstrap(&log, replica.as_ref());
        // Entries 1 and 2 carry no event; the applied hook still reports index 2.
        assert_eq!(applied.recv_timeout(Duration::from_secs(10)), Ok(2));
        // A deferred (callback) submission whose proposal is abandoned is still answered.
        let (answer, answered) = mpsc::channel();
        engine.submit_then(
            Add(1),
            Default::default(),
            Box::new(move |outcome| {
                let _ = answer.send(outcome.map(|receipt| receipt.first_index));
            }),
        );
        let (_, first, _, token) = next(&proposals);
        assert_eq!(first, 3);
        replica.abandon(token);
        match answered.recv_timeout(Duration::from_secs(10)) {
            Ok(Err(SubmitError::Storage(message))) => assert_eq!(message, NOT_COMMITTED),
            other => panic!("expected a retryable error, got {other:?}"),
        }
        drop((replica, log));
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Commits one `Add(amount)` command through the leader's path (propose, persist, apply).
    fn commit_add(engine: &Engine<Counter>, proposals: &mpsc::Receiver<Proposal>, amount: u64) {
        let replica = engine.replica();
        let ticket = engine.submit_async(Add(amount), Default::default());
        let (term, first, entries, token) = next(proposals);
        persist(&engine.cluster_log(), term, first, &entries);
        replica.apply(first, &entries, Some(token));
        ticket.wait().unwrap();
    }

    #[test]
    fn an_installed_snapshot_is_the_size_the_snapshot_trigger_weighs_the_tail_against() {
        let base = std::env::temp_dir().join(format!("lithair-csnap-tail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (leader_dir, follower_dir) = (base.join("leader"), base.join("follower"));
        // A snapshot on the leader, to send.
        let (leader, proposals, _) = open(&leader_dir, 0);
        bootstrap(&leader.cluster_log(), leader.replica().as_ref());
        for amount in 1..=3 {
            commit_add(&leader, &proposals, amount);
        }
        let sent = leader.snapshot().unwrap();
        let file = lithair::engine::read_snapshot_file(&leader_dir, sent.index).unwrap();
        let digest = leader.digest();
        drop(leader);

        // A follower (here leading its own log, to write a tail before the install) with the
        // tail rule on and a period no test run reaches.
        let options = EngineOptions {
            snapshot_every_events: 1_000_000,
            snapshot_tail_percent: 100,
            ..EngineOptions::default()
        };
        let (follower, proposals, _) = open_with(&follower_dir, 0, options.clone());
        let replica = follower.replica();
        bootstrap(&follower.cluster_log(), replica.as_ref());
        commit_add(&follower, &proposals, 1);
        let before = follower.snapshot_tail();
        assert_eq!((before.events, before.snapshot_bytes), (2, 0));
        assert!(before.bytes > 0);
        replica.set_leader(None);
        lithair::engine::install_snapshot_file(&follower_dir, sent.index, &file).unwrap();
        replica.restore(sent.index).unwrap();
        // The applier decodes it: the restore itself returns at once.
        wait_applied(&follower, sent.index);
        assert_eq!(follower.digest(), digest);
        // The installed file is now the newest snapshot: its size counts, its tail is empty.
        let installed = lithair::engine::SnapshotTail {
            events: 0,
            bytes: 0,
            snapshot_bytes: file.len() as u64,
        };
        assert_eq!(follower.snapshot_tail(), installed);
        drop(replica);
        drop(follower);

        // After a restart the size comes from the file on disk.
        let (follower, _proposals, applied) = open_with(&follower_dir, sent.index, options);
        assert_eq!(applied, sent.index);
        assert_eq!(follower.snapshot_tail(), installed);
        drop(follower);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Waits (up to 10 s) until `engine` applied `index`; fails the test past that.
    fn wait_applied<S: State>(engine: &Engine<S>, index: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.applied_index() < index {
            assert!(
                std::time::Instant::now() < deadline,
                "index {index} not applied in 10 s (applied {})",
                engine.applied_index()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A proposal with the index left free before it (see `Proposer::propose`).
    type SlotProposal = (Option<u64>, u64, Vec<Arc<[u8]>>, Token);

    /// Records proposals with their free index.
    struct SlotRecorder(Mutex<mpsc::Sender<SlotProposal>>);

    impl Proposer for SlotRecorder {
        fn propose(
            &self,
            term: u64,
            slot: Option<u64>,
            first_index: u64,
            entries: Vec<Arc<[u8]>>,
            token: Token,
        ) {
            assert_eq!(term, 2, "bootstrap's leadership");
            let _ = self
                .0
                .lock()
                .unwrap()
                .send((slot, first_index, entries, token));
        }
    }

    /// Asks for `next_index` until the answer is `true`, for a bounded time: the first asks
    /// may meet the sequencer thread still holding its role after its last batch (which
    /// only asks it for a free index, then withdrawn by the grant).
    fn reserve_when_idle(replica: &dyn Replica, next_index: u64) {
        let granted = (0..500).any(|_| {
            let granted = replica.reserve_index(2, next_index);
            if !granted {
                std::thread::sleep(Duration::from_millis(10));
            }
            granted
        });
        assert!(granted, "an idle sequencer grants index {next_index}");
    }

    /// A membership change while a batch is in transit to the Raft node: the engine refuses
    /// it the next index (which that batch holds) and leaves the index after its batches
    /// free before the next one instead; once nothing is in transit it grants the next index
    /// at once. No proposal is abandoned, no write fails, the sequencer never rebuilds.
    #[test]
    fn a_membership_change_gets_an_index_no_batch_holds() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-slot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (sender, proposals) = mpsc::channel();
        let proposer: Arc<dyn Proposer> = Arc::new(SlotRecorder(Mutex::new(sender)));
        let options = EngineOptions::default();
        let (engine, _) =
            Engine::open_cluster(&dir, options, Counter::default(), proposer, 0).unwrap();
        let replica = engine.replica();
        let log = engine.cluster_log();
        bootstrap(&log, replica.as_ref());
        let next = || proposals.recv_timeout(Duration::from_secs(10)).unwrap();
        let change = |index: u64| reserved(index, Reserved::Conf(&[2, 4, 0, 0, 0, 0, 0, 0, 0]));

        // Entries 3 and 4 are on their way to the node: index 3 is not free.
        let first_ticket = engine.submit_async(Add(5), Default::default());
        let (slot, first, first_entries, first_token) = next();
        assert_eq!((slot, first, first_entries.len()), (None, 3, 2));
        assert!(!replica.reserve_index(2, 3), "index 3 is in transit");
        // The next batch comes after a free index, 5, which the node fills with the change.
        let second_ticket = engine.submit_async(Add(1), Default::default());
        let (slot, first, second_entries, second_token) = next();
        assert_eq!((slot, first, second_entries.len()), (Some(5), 6, 2));
        persist(&log, 2, 3, &first_entries);
        persist(&log, 2, 5, &[change(5)]);
        persist(&log, 2, 6, &second_entries);
        replica.apply(3, &first_entries, Some(first_token));
        let mut run: Vec<Arc<[u8]>> = vec![Arc::from(&[][..])];
        run.extend(second_entries);
        replica.apply(5, &run, Some(second_token));
        assert_eq!(first_ticket.wait().unwrap().first_index, 3);
        assert_eq!(second_ticket.wait().unwrap().first_index, 6);

        // Nothing in transit: index 8 is granted at once, and the next batch starts after it.
        reserve_when_idle(replica.as_ref(), 8);
        let third_ticket = engine.submit_async(Add(2), Default::default());
        let (slot, first, third_entries, third_token) = next();
        assert_eq!((slot, first), (None, 9), "no second free index");
        persist(&log, 2, 8, &[change(8)]);
        persist(&log, 2, 9, &third_entries);
        let mut run: Vec<Arc<[u8]>> = vec![Arc::from(&[][..])];
        run.extend(third_entries);
        replica.apply(8, &run, Some(third_token));
        assert_eq!(third_ticket.wait().unwrap().first_index, 9);
        assert_eq!(engine.applied_index(), 10);
        assert_eq!(engine.read(|s| s.total), 16);
        assert_eq!(
            engine.sequencer_rebuilds(),
            0,
            "the sequencer never rebuilt"
        );
        assert_eq!(replica.sequencer_rebuilds(), 0);
        // A log that ends past the copy's next index (11) with nothing in flight: granted,
        // so a change on an idle leader never waits for a write (the copy's next proposal
        // mismatches and rebuilds after the change).
        reserve_when_idle(replica.as_ref(), 12);
        drop((replica, log));
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Copies of [`Copies`] alive now, and the most ever alive at once.
    static COPIES_LIVE: AtomicI64 = AtomicI64::new(0);
    static COPIES_PEAK: AtomicI64 = AtomicI64::new(0);

    /// A state that counts its live copies (one test uses it: the counters are global).
    #[derive(Debug)]
    pub struct Copies {
        total: u64,
    }

    impl Copies {
        fn counted(total: u64) -> Copies {
            let live = COPIES_LIVE.fetch_add(1, SeqCst) + 1;
            COPIES_PEAK.fetch_max(live, SeqCst);
            Copies { total }
        }
    }

    impl Clone for Copies {
        fn clone(&self) -> Copies {
            Copies::counted(self.total)
        }
    }

    impl Drop for Copies {
        fn drop(&mut self) {
            COPIES_LIVE.fetch_sub(1, SeqCst);
        }
    }

    impl lithair::binary::Encode for Copies {
        fn encode(&self, out: &mut Vec<u8>) {
            self.total.encode(out);
        }
    }

    impl lithair::binary::Decode for Copies {
        fn decode(r: &mut lithair::binary::Reader<'_>) -> Result<Copies, lithair::binary::Error> {
            u64::decode(r).map(Copies::counted)
        }
    }

    impl State for Copies {
        type Event = u64;
        fn apply(&mut self, event: &u64) {
            self.total += event;
        }
    }

    struct AddCopies(u64);

    impl Command<Copies> for AddCopies {
        type Rejection = ();
        fn decide(&self, _: &Copies, _: &Context) -> Result<Vec<u64>, ()> {
            Ok(vec![self.0])
        }
    }

    /// Waits (up to 10 s) until `live` copies of the state exist, and says how many did.
    fn copies_become(live: i64) -> i64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = COPIES_LIVE.load(SeqCst);
            if now == live || std::time::Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn only_a_leader_holds_a_second_copy_of_the_state_and_a_rebuild_never_a_third() {
        let dir = std::env::temp_dir().join(format!("lithair-csnap-copies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (engine, proposals, _) =
            open_recorded(&dir, 0, EngineOptions::default(), Copies::counted(0));
        let replica = engine.replica();
        let log = engine.cluster_log();
        let conf = reserved(1, Reserved::Conf(&[1, 1, 0, 0, 0, 0, 0, 0, 0]));
        persist(&log, 1, 1, &[conf]);
        replica.apply(1, &[Arc::from(&[][..])], None);
        // A follower: the committed state, and the initial one the snapshotter starts from
        // while there is no snapshot file. The sequencer thread is up (it serves any job).
        std::thread::sleep(Duration::from_millis(200));
        let follower = COPIES_LIVE.load(SeqCst);
        assert_eq!(follower, 2, "a follower holds no sequencer copy");

        // Leading term 2: the sequencer builds its copy at its first batch.
        persist(&log, 2, 2, &[reserved(2, Reserved::Noop)]);
        replica.apply(2, &[Arc::from(&[][..])], None);
        replica.set_next_index(3);
        replica.set_leader(Some(2));
        let ticket = engine.submit_async(AddCopies(5), Default::default());
        let (_, first, entries, token) = next(&proposals);
        assert_eq!(first, 3);
        persist(&log, 2, 3, &entries);
        replica.apply(3, &entries, Some(token));
        ticket.wait().unwrap();
        assert_eq!(
            COPIES_LIVE.load(SeqCst),
            follower + 1,
            "a leader's sequencer copy"
        );

        // Leading term 3 at once (no step-down seen): the old copy goes before the new one
        // is built.
        persist(&log, 3, 4, &[reserved(4, Reserved::Noop)]);
        replica.apply(4, &[Arc::from(&[][..])], None);
        replica.set_next_index(5);
        replica.set_leader(Some(3));
        COPIES_PEAK.store(COPIES_LIVE.load(SeqCst), SeqCst);
        let ticket = engine.submit_async(AddCopies(7), Default::default());
        let (term, first, entries, token) = next(&proposals);
        assert_eq!((term, first), (3, 5));
        persist(&log, 3, 5, &entries);
        replica.apply(5, &entries, Some(token));
        ticket.wait().unwrap();
        assert_eq!(COPIES_LIVE.load(SeqCst), follower + 1);
        assert_eq!(
            COPIES_PEAK.load(SeqCst),
            follower + 1,
            "a rebuild held the old copy and the new one at once"
        );

        // Stepping down frees the copy (on a thread of its own).
        replica.set_leader(None);
        assert_eq!(
            copies_become(follower),
            follower,
            "a former leader keeps its copy"
        );
        assert_eq!(engine.read(|s| s.total), 12);
        drop(replica);
        drop(engine);
        assert_eq!(copies_become(0), 0, "copies outlive the engine");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // ---- A restore on the Raft thread queues the decode for the applier. ----

    /// The one snapshot decode of [`Ordered`] that waits (armed by the test that uses it):
    /// it says on the first channel that it began, then waits for the second.
    type DecodeGate = (mpsc::Sender<()>, mpsc::Receiver<()>);
    static DECODE_GATE: Mutex<Option<DecodeGate>> = Mutex::new(None);
    /// Set in the child process of the fatal-restore test: every decode of [`Ordered`] fails.
    static DECODE_REFUSED: AtomicBool = AtomicBool::new(false);

    /// A state that keeps its events in the order it applied them (so an event applied on
    /// the wrong state, or out of order, shows), whose snapshot decode waits at
    /// [`DECODE_GATE`] while it is armed. Only the tests below use it.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct Ordered {
        seen: Vec<u64>,
    }

    impl lithair::binary::Encode for Ordered {
        fn encode(&self, out: &mut Vec<u8>) {
            self.seen.encode(out);
        }
    }

    impl lithair::binary::Decode for Ordered {
        fn decode(r: &mut lithair::binary::Reader<'_>) -> Result<Ordered, lithair::binary::Error> {
            let seen = Vec::<u64>::decode(r)?;
            if DECODE_REFUSED.load(SeqCst) {
                return Err(lithair::binary::Error::custom(
                    "this test's state refuses to decode",
                ));
            }
            let gate = DECODE_GATE.lock().unwrap().take();
            if let Some((began, release)) = gate {
                let _ = began.send(());
                // Bounded: a test that failed before opening the gate must not hold the
                // applier (and the engine's shutdown) for good.
                let _ = release.recv_timeout(Duration::from_secs(60));
            }
            Ok(Ordered { seen })
        }
    }

    impl State for Ordered {
        type Event = u64;
        fn apply(&mut self, event: &u64) {
            self.seen.push(*event);
        }
    }

    /// Two events: `n`, then `n + 1`.
    struct Push(u64);

    impl Command<Ordered> for Push {
        type Rejection = ();
        fn decide(&self, _: &Ordered, _: &Context) -> Result<Vec<u64>, ()> {
            Ok(vec![self.0, self.0 + 1])
        }
    }

    /// Commits `Push(n)` through the leader's path; returns its first index and its entries
    /// (what a follower is handed).
    fn commit_push(
        engine: &Engine<Ordered>,
        proposals: &mpsc::Receiver<Proposal>,
        n: u64,
    ) -> (u64, Vec<Arc<[u8]>>) {
        let replica = engine.replica();
        let ticket = engine.submit_async(Push(n), Default::default());
        let (term, first, entries, token) = next(proposals);
        persist(&engine.cluster_log(), term, first, &entries);
        replica.apply(first, &entries, Some(token));
        ticket.wait().unwrap();
        (first, entries)
    }

    /// What a follower of [`leader_with_snapshot`] is handed.
    struct Sent {
        /// `Push(1)`'s entries (3 and 4), applied before the snapshot.
        early: (u64, Vec<Arc<[u8]>>),
        /// The snapshot's index and file.
        index: u64,
        file: Vec<u8>,
        /// `Push(10)`'s entries (after the snapshot).
        late: (u64, Vec<Arc<[u8]>>),
        /// The leader's state and digest after everything.
        seen: Vec<u64>,
        digest: [u8; lithair::engine::DIGEST_BYTES],
    }

    /// A leader in `dir` commits `Push(1)`, `Push(3)`, snapshots, commits `Push(10)`.
    fn leader_with_snapshot(dir: &std::path::Path) -> Sent {
        let (leader, proposals, _) =
            open_recorded(dir, 0, EngineOptions::default(), Ordered::default());
        bootstrap(&leader.cluster_log(), leader.replica().as_ref());
        let early = commit_push(&leader, &proposals, 1);
        commit_push(&leader, &proposals, 3);
        let snapshot = leader.snapshot().unwrap();
        let file = lithair::engine::read_snapshot_file(dir, snapshot.index).unwrap();
        let late = commit_push(&leader, &proposals, 10);
        let sent = Sent {
            early,
            index: snapshot.index,
            file,
            late,
            seen: leader.read(|s| s.seen.clone()),
            digest: leader.digest(),
        };
        assert_eq!((sent.early.0, sent.index, sent.late.0), (3, 6, 7));
        sent
    }

    /// A follower in `dir` that applied the bootstrap entries and `Push(1)` from `sent`, and
    /// holds `sent`'s snapshot file (installed as the Raft storage does before the restore).
    fn follower_before_restore(
        dir: &std::path::Path,
        sent: &Sent,
    ) -> (Engine<Ordered>, mpsc::Receiver<Proposal>) {
        let (follower, proposals, _) =
            open_recorded(dir, 0, EngineOptions::default(), Ordered::default());
        let replica = follower.replica();
        replica.apply(1, &[Arc::from(&[][..]), Arc::from(&[][..])], None);
        replica.apply(sent.early.0, &sent.early.1, None);
        wait_applied(&follower, 4);
        lithair::engine::install_snapshot_file(dir, sent.index, &sent.file).unwrap();
        (follower, proposals)
    }

    /// Serializes the tests that arm [`DECODE_GATE`] (a gate is global to the binary).
    static GATE_USERS: Mutex<()> = Mutex::new(());

    /// Arms [`DECODE_GATE`]: the next decode of [`Ordered`] says it began on the first
    /// receiver and waits until the sender sends (or is dropped). Hold the guard meanwhile.
    fn arm_decode_gate() -> (
        std::sync::MutexGuard<'static, ()>,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
    ) {
        let users = GATE_USERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (began, decode_began) = mpsc::channel();
        let (release, released) = mpsc::channel();
        *DECODE_GATE.lock().unwrap() = Some((began, released));
        (users, decode_began, release)
    }

    /// `Replica::restore` runs on the Raft thread, which must keep answering heartbeats and
    /// votes: it returns while the snapshot still decodes (on the applier, held here at a
    /// gate). Until the state is replaced, readers see the old state at its own applied
    /// index; the entries handed over after the restore queue behind it and apply on the
    /// snapshot's state, in order; the applied hooks see each index once, in order.
    #[test]
    fn a_restore_returns_before_its_decode_and_later_entries_apply_on_the_snapshot() {
        let base = std::env::temp_dir().join(format!("lithair-csnap-async-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let sent = leader_with_snapshot(&base.join("leader"));
        let (follower, _proposals) = follower_before_restore(&base.join("follower"), &sent);
        // Each applied index the hooks are told, with the state's size then (the hooks run
        // on the applier, between two batches: the state is the state at that index).
        let (told, applied_told) = mpsc::channel();
        let reader = follower.reader();
        follower.on_applied(move |index| {
            let _ = told.send((index, reader.read(|s| s.seen.len())));
        });
        let replica = follower.replica();
        assert_eq!(follower.read(|s| s.seen.clone()), [1, 2]);

        let (_gate, decode_began, release) = arm_decode_gate();
        let (returned, restore_returned) = mpsc::channel();
        let restoring = Arc::clone(&replica);
        let index = sent.index;
        std::thread::spawn(move || {
            let _ = returned.send(restoring.restore(index));
        });
        match restore_returned.recv_timeout(Duration::from_secs(10)) {
            Ok(result) => result.unwrap(),
            Err(_) => {
                let _ = release.send(()); // let the blocked restore end before failing
                panic!("Replica::restore waited for the snapshot's decode (the Raft thread would stall)");
            }
        }
        decode_began
            .recv_timeout(Duration::from_secs(10))
            .expect("the applier decodes the snapshot");
        // The decode is under way and cannot finish (the gate is shut): the old state and its
        // applied index are what readers see; only the delivered index moved.
        assert_eq!(replica.delivered_index(), sent.index);
        assert_eq!(follower.applied_index(), 4);
        assert_eq!(replica.applied_index(), 4);
        assert_eq!(replica.applied_digest().0, 4);
        assert_eq!(follower.read(|s| s.seen.clone()), [1, 2]);
        // The next entries queue behind the restore (the call returns at once).
        replica.apply(sent.late.0, &sent.late.1, None);
        assert_eq!(replica.delivered_index(), 8);
        assert_eq!(follower.applied_index(), 4);

        release.send(()).unwrap();
        wait_applied(&follower, 8);
        assert_eq!(follower.read(|s| s.seen.clone()), sent.seen);
        assert_eq!(sent.seen, [1, 2, 3, 4, 10, 11]);
        assert_eq!(follower.digest(), sent.digest);
        assert_eq!(replica.snapshot_index(), sent.index);
        // (The hooks may be told 4 too: the hook was added as that batch finished.)
        let mut told = Vec::new();
        while told.last().is_none_or(|&(index, _)| index < 8) {
            let (index, size) = applied_told
                .recv_timeout(Duration::from_secs(10))
                .expect("the applied hooks are told 8");
            if index > 4 {
                told.push((index, size));
            }
        }
        assert_eq!(
            told,
            [(6, 4), (8, 6)],
            "each applied index once, in order, once its state is in place"
        );
        drop(replica);
        drop(follower);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// One event: how many events the state holds when the command is decided.
    struct Count;

    impl Command<Ordered> for Count {
        type Rejection = ();
        fn decide(&self, state: &Ordered, _: &Context) -> Result<Vec<u64>, ()> {
            Ok(vec![state.seen.len() as u64])
        }
    }

    /// A node elected while its restore is still queued on the applier (its Raft thread went
    /// on, so it can win a vote) must not sequence against the old state: the restore counts
    /// as a batch in flight, and the sequencer copies the committed state only once none is.
    #[test]
    fn a_leader_elected_during_a_restore_decides_on_the_snapshots_state() {
        let base = std::env::temp_dir().join(format!("lithair-csnap-elect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let sent = leader_with_snapshot(&base.join("leader"));
        let (follower, proposals) = follower_before_restore(&base.join("follower"), &sent);
        let replica = follower.replica();
        let (_gate, decode_began, release) = arm_decode_gate();
        replica.restore(sent.index).unwrap();
        decode_began
            .recv_timeout(Duration::from_secs(10))
            .expect("the applier decodes the snapshot");
        // Elected in term 3 with everything up to the snapshot handed over (the driver's
        // condition), and nothing after it: only the restore itself is in flight.
        replica.set_next_index(sent.index + 1);
        replica.set_leader(Some(3));
        let ticket = follower.submit_async(Count, Default::default());
        // No proposal while the restore waits at the gate: it would be decided on [1, 2].
        // (A wrong build may propose later than this; a right one never proposes here.)
        assert!(
            proposals.recv_timeout(Duration::from_millis(300)).is_err(),
            "sequenced before the restore replaced the state"
        );
        release.send(()).unwrap();
        let (term, first, entries, token) = next(&proposals);
        assert_eq!((term, first, entries.len()), (3, 7, 1));
        replica.apply(first, &entries, Some(token));
        assert_eq!(ticket.wait().unwrap().first_index, 7);
        // Decided on the snapshot's state (4 events), not the old one (2).
        assert_eq!(follower.read(|s| s.seen.clone()), [1, 2, 3, 4, 4]);
        drop(replica);
        drop(follower);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Set (to the test's directory) in the child process that
    /// `a_snapshot_that_does_not_decode_on_the_applier_stops_the_process` starts.
    const FATAL_CHILD_ENV: &str = "LITHAIR_TEST_FATAL_RESTORE_DIR";

    /// A snapshot that does not decode on the applier is fatal, as it was when the Raft
    /// thread decoded it (the node stopped then): the process stops with a FATAL line naming
    /// the snapshot, and the entries handed over after the restore never apply on the old
    /// state. Run in a child process (this binary again), which the failure aborts.
    #[test]
    fn a_snapshot_that_does_not_decode_on_the_applier_stops_the_process() {
        if let Some(base) = std::env::var_os(FATAL_CHILD_ENV) {
            let base = std::path::PathBuf::from(base);
            let sent = leader_with_snapshot(&base.join("leader"));
            let (follower, _proposals) = follower_before_restore(&base.join("follower"), &sent);
            let replica = follower.replica();
            DECODE_REFUSED.store(true, SeqCst);
            if let Err(error) = replica.restore(sent.index) {
                // Where it failed before the applier decoded it (the node then stopped).
                eprintln!("child: restore failed on the caller: {error}");
                std::process::exit(0);
            }
            replica.apply(sent.late.0, &sent.late.1, None);
            for _ in 0..2_000 {
                if follower.applied_index() > 4 {
                    eprintln!(
                        "child: applied {} on the old state",
                        follower.applied_index()
                    );
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::process::exit(0); // reached only if the failure did not stop the process
        }
        let base = std::env::temp_dir().join(format!("lithair-csnap-fatal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let exe = std::env::current_exe().expect("the test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "engine_cluster::a_snapshot_that_does_not_decode_on_the_applier_stops_the_process",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(FATAL_CHILD_ENV, &base)
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the child went on: {stderr}");
        assert!(!stderr.contains("child: restore failed"), "{stderr}");
        assert!(
            stderr.contains("the snapshot installed from the leader at index 6 cannot be restored")
                && stderr.contains("refuses to decode"),
            "{stderr}"
        );
        assert!(
            stderr.contains("FATAL: the engine applier thread panicked"),
            "{stderr}"
        );
        assert!(!stderr.contains("on the old state"), "{stderr}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
