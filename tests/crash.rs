//! Crash tests with real processes: a child process (this test binary re-executed) writes from
//! many threads and prints every acknowledged id; the parent SIGKILLs it at random moments,
//! restarts on the same directory, and checks every acknowledged write is present and
//! unchanged. Also: a failed fsync aborts the process; a second process cannot open the
//! directory while the first holds it.

mod common;

use lithair::binary::{self, Decode, Encode, Reader};
use lithair::engine::{Command, Context, Engine, EngineOptions, State};
use lithair::log::Faults;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_DIR_ENV: &str = "LITHAIR_CRASH_CHILD_DIR";
const CHILD_MODE_ENV: &str = "LITHAIR_CRASH_CHILD_MODE";
const CHILD_GENERATION_ENV: &str = "LITHAIR_CRASH_CHILD_GENERATION";
const CHILD_THREADS: u64 = 8;
const KILL_CYCLES: u64 = 12;
const CHILD_READY_TIMEOUT_MS: u64 = 20_000;

#[derive(Clone, Debug, Default, PartialEq)]
struct Registry {
    values: BTreeMap<u64, u64>,
}

struct Put {
    id: u64,
    value: u64,
}

impl Encode for Registry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.values.encode(out);
    }
}

impl Decode for Registry {
    fn decode(reader: &mut Reader<'_>) -> Result<Self, binary::Error> {
        Ok(Registry {
            values: Decode::decode(reader)?,
        })
    }
}

impl Encode for Put {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.value.encode(out);
    }
}

impl Decode for Put {
    fn decode(reader: &mut Reader<'_>) -> Result<Self, binary::Error> {
        Ok(Put {
            id: Decode::decode(reader)?,
            value: Decode::decode(reader)?,
        })
    }
}

impl State for Registry {
    type Event = Put;
    fn apply(&mut self, event: &Put) {
        let previous = self.values.insert(event.id, event.value);
        assert!(previous.is_none(), "id {} written twice", event.id);
    }
}

struct PutCommand(u64);

impl Command<Registry> for PutCommand {
    type Rejection = ();
    fn decide(&self, registry: &Registry, _: &Context) -> Result<Vec<Put>, ()> {
        if registry.values.contains_key(&self.0) {
            return Err(());
        }
        Ok(vec![Put {
            id: self.0,
            value: value_of(self.0),
        }])
    }
}

fn value_of(id: u64) -> u64 {
    id.wrapping_mul(31).wrapping_add(7)
}

fn small_segments() -> EngineOptions {
    EngineOptions {
        segment_bytes_max: 64 * 1024,
        snapshot_every_events: 400,
        ..EngineOptions::default()
    }
}

/// Child entry point (ignored in normal runs; the parent runs it with `--ignored`).
#[test]
#[ignore]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mode = std::env::var(CHILD_MODE_ENV).unwrap_or_default();
    let generation: u64 = std::env::var(CHILD_GENERATION_ENV)
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let faults = Arc::new(Faults::default());
    let options = EngineOptions {
        faults: Some(Arc::clone(&faults)),
        ..small_segments()
    };
    let (engine, _) =
        Engine::open(Path::new(&dir), options, Registry::default()).expect("child open");
    let engine = Arc::new(engine);
    println!("ready");
    if mode == "fsync-fail" {
        engine.submit(PutCommand(1)).expect("first write");
        println!("ack 1");
        faults.fail_next_syncs(1);
        let _ = engine.submit(PutCommand(2));
        println!("unreachable: the failed fsync must stop the process");
        return;
    }
    let stdout = Arc::new(Mutex::new(()));
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|thread| {
            let (engine, stdout) = (Arc::clone(&engine), Arc::clone(&stdout));
            std::thread::spawn(move || {
                for sequence in 0.. {
                    let id = generation * 1_000_000_000 + thread * 10_000_000 + sequence;
                    engine.submit(PutCommand(id)).expect("child submit");
                    let _guard = stdout.lock().expect("stdout lock");
                    println!("ack {id}");
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn spawn_child(dir: &Path, mode: &str, generation: u64) -> std::process::Child {
    Process::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode)
        .env(CHILD_GENERATION_ENV, generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Reads the child's stdout on a thread: `ready` and every acknowledged id.
fn collect_acks(
    child: &mut std::process::Child,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<Vec<u64>>,
) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness prints `test crash_child ... ` without a newline before the child runs.
            if line.ends_with("ready") {
                let _ = ready_sender.send(());
            } else if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.parse().expect("acked id"));
            }
        }
        acked
    });
    (ready, reader)
}

/// A small xorshift generator; the seed is printed so a failing run can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let dir = common::fresh_dir("crash", "kill");
    let mut seed = std::env::var("LITHAIR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash test seed {seed} (set LITHAIR_CRASH_SEED to replay)");
    let mut all_acked = BTreeSet::new();
    for generation in 1..=KILL_CYCLES {
        let mut child = spawn_child(&dir, "write", generation);
        let (ready, reader) = collect_acks(&mut child);
        ready
            .recv_timeout(Duration::from_millis(CHILD_READY_TIMEOUT_MS))
            .expect("child ready");
        if generation == 1 {
            // One owner per data directory: the live child holds the lock.
            let error = Engine::open(&dir, small_segments(), Registry::default())
                .err()
                .expect("locked");
            assert!(
                error.to_string().contains("in use by another process"),
                "{error}"
            );
        }
        std::thread::sleep(Duration::from_millis(30 + next_random(&mut seed) % 250));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        let acked = reader.join().expect("reader");
        all_acked.extend(acked.iter().copied());
        let (engine, opened) =
            Engine::open(&dir, small_segments(), Registry::default()).expect("recover");
        engine.read(|registry| {
            for id in &all_acked {
                assert_eq!(
                    registry.values.get(id),
                    Some(&value_of(*id)),
                    "acknowledged id {id} lost (seed {seed})"
                );
            }
        });
        println!(
            "cycle {generation}: {} acked this run, {} stored, snapshot at {}, torn tail {:?}",
            acked.len(),
            opened.applied_index,
            opened.snapshot_index,
            opened.log.truncated.as_ref().map(|t| t.1)
        );
        let live = engine.digest();
        drop(engine);
        let replayed =
            lithair::engine::replay_dir(&dir, Registry::default(), true, &[]).expect("replay");
        assert_eq!(lithair::engine::digest(&replayed.state), live);
    }
    assert!(!all_acked.is_empty(), "the children acknowledged nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_fsync_aborts_the_process_and_nothing_unacknowledged_is_claimed() {
    use std::os::unix::process::ExitStatusExt;
    let dir = common::fresh_dir("crash", "fsync");
    let mut child = spawn_child(&dir, "fsync-fail", 0);
    let (_ready, reader) = collect_acks(&mut child);
    let mut stderr = child.stderr.take().expect("piped stderr");
    let started = Instant::now();
    let status = child.wait().expect("wait child");
    let mut message = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut message).expect("stderr");
    assert_eq!(
        status.signal(),
        Some(6),
        "expected SIGABRT, got {status:?} after {:?}",
        started.elapsed()
    );
    assert!(
        message.contains("FATAL") && message.contains("fsync"),
        "stderr: {message}"
    );
    assert_eq!(reader.join().expect("reader"), vec![1]);
    let (engine, _) = Engine::open(&dir, small_segments(), Registry::default()).expect("recover");
    engine.read(|registry| assert_eq!(registry.values.get(&1), Some(&value_of(1))));
    drop(engine);
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&dir);
}
