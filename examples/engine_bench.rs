//! Engine benchmark (release mode), rerunnable by anyone:
//!
//! `engine_bench durable --submitters K --seconds S [--window W] [--log-batches B] [--callbacks]
//! [--dir PATH]` runs K submitters for S seconds, with at most B batches in the log at once
//! (`EngineOptions::log_batches_max`), durable mode. By default each submitter is a thread
//! keeping W commands in flight (default 1: submit and wait). With `--callbacks` the K
//! submitters have no thread: each one submits its next command from the `submit_then`
//! completion of the previous one (where the engine applies: a log thread), as the HTTP
//! server drives the engine; W does not apply. Both modes print the fsync count, the average fsync time and
//! how busy the disk was, then end with
//! `durable: N events in S s (E events/s, B events per fsync)`.
//!
//! With `--snapshot-every N [--preload K] [--keep-state]` a thread takes a snapshot (`Engine::snapshot`, the
//! same path as the background trigger) each time N more events committed, on a state that
//! also holds K preloaded records (a realistic size), and the run prints, before the `durable:`
//! line, `snapshot pauses: max X ms, snapshots C (longest gap outside them: Y ms)`: the longest
//! interval in which no write completed that overlaps a snapshot, and the same outside them.
//! A second line places that longest gap among the snapshot's steps (ms from its start:
//! `TemporaryWritten` ends the rebuild and the file write, `SegmentsDeleted`, `returned`).
//! `--keep-state` sets `EngineOptions::snapshot_keep_state`. The thread follows the engine's
//! trigger rule (`SnapshotPolicy::due` on `Engine::snapshot_tail`): every N events, and
//! `--tail-percent P` (default: an app's, `lithair::app::SNAPSHOT_TAIL_PERCENT_DEFAULT`) also
//! waits until the log since the last snapshot reaches P % of its size; `--tail-percent 0`
//! is the period alone.
//!
//! `engine_bench replay --events N [--snapshot] [--dir PATH]` writes N small events (with
//! `--snapshot`: a snapshot after 90% of them), then times recovery (`Engine::open`: snapshot
//! load + log replay) and ends with `replay: N events in S s (E events/s)`. `--keep` leaves the
//! directory; `--reuse --dir PATH` times recovery of a kept directory without writing again.

use lithair::app::cli::{CliError, Flags};
use lithair::binary::{self, Decode, Encode, Reader};
use lithair::engine::{
    Command, Context, Engine, EngineOptions, Envelope, Meta, SnapshotHook, SnapshotPolicy, State,
};
use lithair::log::{EntryBatch, Log, LogOptions};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters in a fixed number of slots: O(1) apply, a snapshot of a realistic size.
const SLOTS: usize = 4_096;

#[derive(Clone, Debug, PartialEq)]
struct Tally {
    slots: Vec<u64>,
    /// Preloaded records (`--preload`), never changed by events: they make the state large.
    records: BTreeMap<u64, u64>,
}

struct Add {
    slot: u32,
    amount: u64,
}

impl Encode for Tally {
    fn encode(&self, out: &mut Vec<u8>) {
        self.slots.encode(out);
        self.records.encode(out);
    }
}

impl Decode for Tally {
    fn decode(reader: &mut Reader<'_>) -> Result<Self, binary::Error> {
        let slots = Vec::<u64>::decode(reader)?;
        if slots.len() != SLOTS {
            return Err(binary::Error::custom("wrong slot count"));
        }
        let records = BTreeMap::decode(reader)?;
        Ok(Tally { slots, records })
    }
}

impl Encode for Add {
    fn encode(&self, out: &mut Vec<u8>) {
        binary::write_varint(out, u64::from(self.slot));
        binary::write_varint(out, self.amount);
    }
}

impl Decode for Add {
    fn decode(reader: &mut Reader<'_>) -> Result<Self, binary::Error> {
        let slot = reader.read_varint()?;
        if slot >= SLOTS as u64 {
            return Err(binary::Error::custom("slot out of range"));
        }
        Ok(Add {
            slot: slot as u32,
            amount: reader.read_varint()?,
        })
    }
}

impl State for Tally {
    type Event = Add;
    fn apply(&mut self, event: &Add) {
        self.slots[event.slot as usize] += event.amount;
    }
}

struct AddCommand(u32);

impl Command<Tally> for AddCommand {
    type Rejection = ();
    fn decide(&self, _: &Tally, context: &Context) -> Result<Vec<Add>, ()> {
        Ok(vec![Add {
            slot: self.0 % SLOTS as u32,
            amount: context.timestamp_ms % 7 + 1,
        }])
    }
}

fn empty() -> Tally {
    Tally {
        slots: vec![0; SLOTS],
        records: BTreeMap::new(),
    }
}

/// The value a flag lookup gave, or the usage and exit 2 when the command line is wrong.
fn arg<T>(value: Result<T, CliError>) -> T {
    value.unwrap_or_else(|error| {
        eprintln!("engine_bench: {}\n{ENGINE_BENCH_USAGE}", error.message);
        std::process::exit(2)
    })
}

/// `value` of `--name` if it is at least 1.
fn positive(name: &str, value: usize) -> Result<usize, CliError> {
    if value == 0 {
        return Err(CliError::new(format!("`--{name}` must be at least 1")));
    }
    Ok(value)
}

fn bench_dir(flags: &Flags, name: &str) -> PathBuf {
    let default = std::env::temp_dir().join(format!("lithair-bench-{name}-{}", std::process::id()));
    let dir = flags.value("dir").map_or(default, PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn durable(flags: &Flags) {
    // A run without a submitter, a window or a finite positive duration measures nothing (it
    // printed `durable: 0 events ...` and exited 0): refused like any bad value.
    let submitters: usize = arg(flags
        .require("submitters")
        .and_then(|k| positive("submitters", k)));
    let seconds: f64 = arg(flags.require("seconds").and_then(|s: f64| {
        if s.is_finite() && s > 0.0 {
            Ok(s)
        } else {
            Err(CliError::new(format!(
                "`--seconds` must be a finite number above 0, got {s}"
            )))
        }
    }));
    let window: usize = arg(flags
        .get_or("window", 1)
        .and_then(|w| positive("window", w)));
    let callbacks = flags.switch("callbacks");
    let log_batches_max: usize =
        arg(flags.get_or("log-batches", lithair::engine::LOG_BATCHES_DEFAULT));
    let snapshot_every: u64 = arg(flags.get_or("snapshot-every", 0));
    let preload: u64 = arg(flags.get_or("preload", 0));
    let policy = SnapshotPolicy {
        every_events: snapshot_every,
        every_bytes: 0,
        tail_percent: arg(flags.get_or("tail-percent", lithair::app::SNAPSHOT_TAIL_PERCENT_DEFAULT)),
    };
    let dir = bench_dir(flags, "durable");
    let options = EngineOptions {
        log_batches_max,
        snapshot_keep_state: flags.switch("keep-state"),
        ..EngineOptions::default()
    };
    let mut initial = empty();
    initial.records = (0..preload)
        .map(|key| (key, key.wrapping_mul(31)))
        .collect();
    // Gap tracking costs every completion a clock read: only for runs that take snapshots.
    let gaps = Arc::new(Gaps::new(snapshot_every > 0));
    let marking = Arc::clone(&gaps);
    let options = EngineOptions {
        snapshot_hook: (snapshot_every > 0).then(|| -> SnapshotHook {
            Arc::new(move |step| {
                marking.mark(&format!("{step:?}"));
                Ok(())
            })
        }),
        ..options
    };
    let (engine, _) = Engine::open(&dir, options, initial).expect("open engine");
    let engine = Arc::new(engine);
    let run = Run {
        stop: Arc::new(AtomicBool::new(false)),
        committed: Arc::new(AtomicU64::new(0)),
        gaps,
    };
    let snapshots = (snapshot_every > 0).then(|| snapshot_thread(&engine, &run, policy));
    let fsyncs_before = engine.fsync_count();
    let fsync_time_before = engine.fsync_time();
    let started = Instant::now();
    let duration = Duration::from_secs_f64(seconds);
    if callbacks {
        run_callbacks(&engine, &run, submitters, duration);
    } else {
        run_threads(&engine, &run, submitters, window, duration);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let snapshots = snapshots.map(|thread| thread.join().expect("snapshot thread"));
    let events = run.committed.load(Ordering::Relaxed);
    let fsyncs = (engine.fsync_count() - fsyncs_before).max(1);
    let fsync_seconds = (engine.fsync_time() - fsync_time_before).as_secs_f64();
    let unprepared = engine.unprepared_writes();
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    let mode = if callbacks {
        "callbacks".to_string()
    } else {
        format!("window {window}")
    };
    println!(
        "submitters {submitters}, {mode}, fsyncs {fsyncs} ({:.0} us each, disk busy {:.0}%, \
         {unprepared} writes past the zero-filled space)",
        fsync_seconds * 1e6 / fsyncs as f64,
        fsync_seconds * 100.0 / elapsed
    );
    if let Some(count) = snapshots {
        let (during, outside) = run.gaps.longest();
        println!(
            "snapshot pauses: max {:.1} ms, snapshots {count} (longest gap outside them: {:.1} ms)",
            during as f64 / 1e6,
            outside as f64 / 1e6
        );
        if let Some(context) = run.gaps.longest_in_context() {
            println!("{context}");
        }
    }
    println!(
        "durable: {events} events in {elapsed:.2} s ({:.0} events/s, {:.1} events per fsync)",
        events as f64 / elapsed,
        events as f64 / fsyncs as f64
    );
}

/// What the submitters of a durable run share: the stop flag, the count of durable events and
/// the gaps between completions (each an `Arc`: a clone shares them).
#[derive(Clone)]
struct Run {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    gaps: Arc<Gaps>,
}

/// The longest intervals without a completed write, during snapshots and outside them
/// (nanoseconds since the start of the run).
struct Gaps {
    /// Off: `completed` records nothing (runs without snapshots).
    tracking: bool,
    started: Instant,
    last_completion: AtomicU64,
    snapshot_running: AtomicBool,
    last_snapshot_end: AtomicU64,
    longest_during: AtomicU64,
    longest_outside: AtomicU64,
    /// Where the longest gap during a snapshot lay: (start, end).
    longest_during_at: Mutex<(u64, u64)>,
    /// Snapshot starts, steps and ends, in order: (what, when).
    marks: Mutex<Vec<(String, u64)>>,
}

impl Gaps {
    fn new(tracking: bool) -> Self {
        Gaps {
            tracking,
            started: Instant::now(),
            last_completion: AtomicU64::new(0),
            snapshot_running: AtomicBool::new(false),
            last_snapshot_end: AtomicU64::new(0),
            longest_during: AtomicU64::new(0),
            longest_outside: AtomicU64::new(0),
            longest_during_at: Mutex::new((0, 0)),
            marks: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// A write completed: the gap since the previous completion ends here.
    fn completed(&self) {
        if !self.tracking {
            return;
        }
        let now = self.now();
        let previous = self.last_completion.fetch_max(now, Ordering::AcqRel);
        if previous == 0 {
            // The first completion: before it the engine was starting (the sequencer copies
            // the state for its speculative copy), which is no pause of a running engine.
            return;
        }
        let gap = now.saturating_sub(previous);
        // The gap overlaps a snapshot if one runs now or one ended after it began.
        let during = self.snapshot_running.load(Ordering::Acquire)
            || self.last_snapshot_end.load(Ordering::Acquire) > previous;
        if !during {
            self.longest_outside.fetch_max(gap, Ordering::Relaxed);
        } else if gap > self.longest_during.load(Ordering::Relaxed) {
            // The length and its place change together, under the lock (a rare path).
            let mut at = self.longest_during_at.lock().expect("gaps");
            if gap > self.longest_during.load(Ordering::Relaxed) {
                self.longest_during.store(gap, Ordering::Relaxed);
                *at = (previous, now);
            }
        }
    }

    fn snapshot(&self, running: bool) {
        self.mark(if running { "start" } else { "returned" });
        if !running {
            self.last_snapshot_end.store(self.now(), Ordering::Release);
        }
        self.snapshot_running.store(running, Ordering::Release);
    }

    fn mark(&self, what: &str) {
        let now = self.now();
        self.marks
            .lock()
            .expect("marks")
            .push((what.to_string(), now));
    }

    /// The steps of the snapshot around the longest gap during one, in ms from its start.
    fn longest_in_context(&self) -> Option<String> {
        let (start, end) = *self.longest_during_at.lock().expect("gaps");
        let marks = self.marks.lock().expect("marks");
        let first = marks
            .iter()
            .rposition(|(what, at)| what == "start" && *at <= end)?;
        let origin = marks[first].1;
        let ms = |at: u64| (at as f64 - origin as f64) / 1e6;
        let steps: Vec<String> = marks[first + 1..]
            .iter()
            .take_while(|(what, _)| what != "start")
            .map(|(what, at)| format!("{what} {:.1}", ms(*at)))
            .collect();
        Some(format!(
            "longest snapshot gap {:.1}..{:.1} ms after its start; steps at (ms): {}",
            ms(start),
            ms(end),
            steps.join(", ")
        ))
    }

    fn longest(&self) -> (u64, u64) {
        (
            self.longest_during.load(Ordering::Relaxed),
            self.longest_outside.load(Ordering::Relaxed),
        )
    }
}

/// Takes a snapshot each time `policy` says one is due (as the engine's background trigger
/// would), until the run stops; returns how many it took.
fn snapshot_thread(
    engine: &Arc<Engine<Tally>>,
    run: &Run,
    policy: SnapshotPolicy,
) -> std::thread::JoinHandle<u64> {
    let engine = Arc::clone(engine);
    let Run { stop, gaps, .. } = run.clone();
    std::thread::spawn(move || {
        let mut taken = 0;
        while !stop.load(Ordering::Relaxed) {
            if !policy.due(&engine.snapshot_tail()) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            gaps.snapshot(true);
            engine.snapshot().expect("snapshot");
            gaps.snapshot(false);
            taken += 1;
        }
        taken
    })
}

/// The next command number of a submitter (a cheap LCG: spreads commands over the slots).
fn next_command(n: u32) -> u32 {
    n.wrapping_mul(1_103_515_245).wrapping_add(12_345)
}

/// Thread mode: `submitters` threads, each keeping `window` commands in flight; returns once
/// every thread has seen its last command through after `duration`.
fn run_threads(
    engine: &Arc<Engine<Tally>>,
    run: &Run,
    submitters: usize,
    window: usize,
    duration: Duration,
) {
    let threads: Vec<_> = (0..submitters)
        .map(|thread| {
            let engine = Arc::clone(engine);
            let Run {
                stop,
                committed,
                gaps,
            } = run.clone();
            std::thread::spawn(move || {
                let mut in_flight = VecDeque::with_capacity(window);
                let mut n = thread as u32;
                while !stop.load(Ordering::Relaxed) || !in_flight.is_empty() {
                    if !stop.load(Ordering::Relaxed) && in_flight.len() < window {
                        n = next_command(n);
                        in_flight.push_back(engine.submit_async(AddCommand(n), Meta::default()));
                        continue;
                    }
                    if let Some(ticket) = in_flight.pop_front() {
                        ticket.wait().expect("durable submit");
                        committed.fetch_add(1, Ordering::Relaxed);
                        gaps.completed();
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    run.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("submitter");
    }
}

/// Callback mode: `submitters` logical submitters without a thread each; every one resubmits
/// from its `submit_then` completion (where the engine applies: a log thread), the way the HTTP
/// server drives the engine. Returns once every chain has stopped after `duration`.
fn run_callbacks(engine: &Arc<Engine<Tally>>, run: &Run, submitters: usize, duration: Duration) {
    let chains = Arc::new(AtomicU64::new(submitters as u64));
    for k in 0..submitters {
        let chain = Chain {
            engine: Arc::clone(engine),
            stop: Arc::clone(&run.stop),
            committed: Arc::clone(&run.committed),
            gaps: Arc::clone(&run.gaps),
            chains: Arc::clone(&chains),
        };
        chain.submit(k as u32);
    }
    std::thread::sleep(duration);
    run.stop.store(true, Ordering::Relaxed);
    while chains.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One logical submitter of the callback mode.
struct Chain {
    engine: Arc<Engine<Tally>>,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    gaps: Arc<Gaps>,
    /// Chains still running (each one leaves once it sees `stop`).
    chains: Arc<AtomicU64>,
}

impl Chain {
    /// Submits the command after `n`; its completion counts it and submits the next one.
    fn submit(self, n: u32) {
        if self.stop.load(Ordering::Relaxed) {
            self.chains.fetch_sub(1, Ordering::Release);
            return;
        }
        let next = next_command(n);
        let engine = Arc::clone(&self.engine);
        engine.submit_then(
            AddCommand(next),
            Meta::default(),
            Box::new(move |outcome| {
                outcome.expect("durable submit");
                self.committed.fetch_add(1, Ordering::Relaxed);
                self.gaps.completed();
                self.submit(next);
            }),
        );
    }
}

/// Writes events `first..first + count` straight through the log, in batches.
fn write_events(dir: &Path, first: u64, count: u64) {
    let options = LogOptions {
        first_index: first,
        ..LogOptions::default()
    };
    let (log, _) = Log::open(dir, options, &mut |_| Ok(())).expect("open log");
    let mut index = first;
    let end = first + count;
    while index < end {
        let batch_end = (index + 4096).min(end);
        let mut entries = EntryBatch::new();
        let batch_first = index;
        for i in index..batch_end {
            let envelope = Envelope {
                index: i,
                timestamp_ms: 1_767_225_600_000 + i / 1000,
                event_type: std::borrow::Cow::Borrowed("event"),
                schema_version: 1,
                request_id: i,
                idempotency_key: None,
                actor: None,
                correlation_id: None,
                request_fingerprint: None,
            };
            let event = Add {
                slot: (i.wrapping_mul(2_654_435_761) % SLOTS as u64) as u32,
                amount: i % 7 + 1,
            };
            entries.push_with(|out| {
                lithair::engine::encode_entry(out, &envelope, |out| event.encode(out))
            });
        }
        log.append_wait(0, batch_first, entries).expect("append");
        index = batch_end;
    }
}

fn replay(flags: &Flags) {
    let events: u64 = arg(flags.require("events"));
    let with_snapshot = flags.switch("snapshot");
    let reuse = flags.switch("reuse");
    let dir = if reuse {
        PathBuf::from(arg(flags.require::<String>("dir")))
    } else {
        bench_dir(flags, "replay")
    };
    let head = if with_snapshot {
        events - events / 10
    } else {
        events
    };
    if !reuse {
        write_events(&dir, 1, head);
    }
    if with_snapshot && !reuse {
        let (engine, _) =
            Engine::open(&dir, EngineOptions::default(), empty()).expect("open engine");
        let info = engine.snapshot().expect("snapshot");
        println!(
            "snapshot at {}, {} segments deleted",
            info.index, info.segments_deleted
        );
        drop(engine);
        write_events(&dir, head + 1, events - head);
    }
    let bytes: u64 = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (engine, opened) = Engine::open(&dir, EngineOptions::default(), empty()).expect("recover");
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!(opened.applied_index, events);
    println!(
        "recovered: snapshot {} + {} log events ({:.1} MB of log), digest {}, cpu {cpu:.3} s",
        opened.snapshot_index,
        events - opened.snapshot_index,
        bytes as f64 / 1e6,
        lithair::engine::digest_hex(&engine.digest())
    );
    drop(engine);
    if !reuse && !flags.switch("keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "replay: {events} events in {elapsed:.3} s ({:.0} events/s)",
        events as f64 / elapsed
    );
}

/// CPU time (user + system) of this process so far, from /proc (Linux); 0 elsewhere. Reported
/// next to wall time because the shared machine's load inflates the latter.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

const ENGINE_BENCH_USAGE: &str = "usage: engine_bench durable --submitters K --seconds S \
[--window W] [--callbacks] [--log-batches B] [--dir DIR] \
[--snapshot-every N [--preload K] [--keep-state] [--tail-percent P]]
       engine_bench replay --events N [--snapshot] [--dir DIR [--reuse] [--keep]]";

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if Flags::asks_help(&words) {
        println!("{ENGINE_BENCH_USAGE}");
        return;
    }
    let rest = words.get(1..).unwrap_or_default();
    match words.first().map(String::as_str) {
        Some("durable") => {
            let valued = [
                "submitters",
                "seconds",
                "window",
                "log-batches",
                "dir",
                "snapshot-every",
                "preload",
                "tail-percent",
            ];
            let switches = ["callbacks", "keep-state"];
            durable(&arg(Flags::parse(rest, "durable", &switches, &valued)))
        }
        Some("replay") => {
            let switches = ["snapshot", "reuse", "keep"];
            replay(&arg(Flags::parse(
                rest,
                "replay",
                &switches,
                &["events", "dir"],
            )))
        }
        _ => {
            eprintln!("{ENGINE_BENCH_USAGE}");
            std::process::exit(2);
        }
    }
}
