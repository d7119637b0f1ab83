//! An operator's damaged data directories: segments lost in the middle, at the start or at
//! the end (the newest, caught by the log's extent record), a segment whose creation a crash
//! cut short. The engine and the `lithair` tools must agree:
//! refuse what cannot be recovered (naming the file), recover what is safe.

mod common;

use lithair::engine::{Command, Context, Engine, EngineOptions, State};
use lithair::prelude::Binary;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Small segments, so a few hundred events span several.
const SEGMENT_BYTES: u64 = 2048;
/// Events written by [`filled`].
const EVENTS: u64 = 200;

#[derive(Binary, Clone, Debug, Default, PartialEq)]
struct Kv {
    map: BTreeMap<u64, u64>,
}

#[derive(Binary)]
struct Set {
    key: u64,
    value: u64,
}

impl State for Kv {
    type Event = Set;
    fn apply(&mut self, event: &Set) {
        self.map.insert(event.key, event.value);
    }
}

struct Put(u64);

impl Command<Kv> for Put {
    type Rejection = ();
    fn decide(&self, _: &Kv, _: &Context) -> Result<Vec<Set>, ()> {
        Ok(vec![Set {
            key: self.0,
            value: self.0 * 3,
        }])
    }
}

fn options() -> EngineOptions {
    EngineOptions {
        segment_bytes_max: SEGMENT_BYTES,
        ..EngineOptions::default()
    }
}

/// A data directory holding [`EVENTS`] events (keys 1..), with a snapshot after `snapshot_at`
/// events if given.
fn filled(name: &str, snapshots_at: &[u64]) -> PathBuf {
    let dir = common::fresh_dir("durability", name);
    let (engine, _) = Engine::open(&dir, options(), Kv::default()).expect("open");
    for key in 1..=EVENTS {
        engine.submit(Put(key)).expect("put");
        if snapshots_at.contains(&key) {
            engine.snapshot().expect("snapshot");
        }
    }
    drop(engine);
    dir
}

/// The segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let firsts = lithair::log::list_segments(&dir.join("log")).expect("list");
    let log_dir = dir.join("log");
    firsts
        .into_iter()
        .map(|first| lithair::log::segment_path(&log_dir, first))
        .collect()
}

/// Runs the `lithair` tool on `dir`: exit code, stdout, stderr.
fn tool(dir: &Path, words: &[&str]) -> (Option<i32>, String, String) {
    let data = dir.to_string_lossy();
    let mut words = words.to_vec();
    words.extend(["--data", &data]);
    lithair_tool(&words)
}

/// `log repair` on `dir`: the dry run succeeds, names `reported` and changes nothing (a start
/// still refuses); then `--apply` succeeds. Returns what `--apply` printed. `label` says which
/// case failed, where a test runs several.
fn repair_dry_run_then_apply(dir: &Path, reported: &str, label: &str) -> String {
    let (code, stdout, stderr) = tool(dir, &["log", "repair"]);
    assert_eq!(code, Some(0), "{label}: {stderr}");
    assert!(
        stdout.contains(reported) && stdout.contains("dry run"),
        "{label}: {stdout}"
    );
    assert!(
        Engine::open(dir, options(), Kv::default()).is_err(),
        "{label}: a dry run changes nothing"
    );
    let (code, stdout, stderr) = tool(dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(0), "{label}: {stderr}");
    stdout
}

/// Runs the `lithair` tool with exactly `words`: exit code, stdout, stderr.
fn lithair_tool(words: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lithair"))
        .args(words)
        .output()
        .expect("run lithair");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs each reading tool (`log verify`, `replay`, `log inspect`, `log stats`) on `dir`,
/// asserts it exits 1, and returns each one's words and stderr.
fn every_reading_tool_fails(dir: &Path) -> Vec<(&'static [&'static str], String)> {
    let reading: [&'static [&'static str]; 4] = [
        &["log", "verify"],
        &["replay"],
        &["log", "inspect"],
        &["log", "stats"],
    ];
    reading
        .into_iter()
        .map(|words| {
            let (code, _, stderr) = tool(dir, words);
            assert_eq!(code, Some(1), "{words:?} must fail: {stderr}");
            (words, stderr)
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_segment_missing_in_the_middle_fails_every_tool_naming_the_segment_after_the_hole() {
    let dir = filled("hole", &[]);
    let files = segments(&dir);
    assert!(files.len() >= 4, "{files:?}");
    std::fs::remove_file(&files[1]).expect("delete a middle segment");
    let after_hole = file_name(&files[2]);
    for (words, stderr) in every_reading_tool_fails(&dir) {
        assert!(
            stderr.contains(&after_hole) && stderr.contains("segment starts at index"),
            "{words:?}: {stderr}"
        );
        // Nothing follows a hole: the message must not send the operator looking for it.
        assert!(!stderr.contains("followed by valid data"), "{stderr}");
    }
    // The engine refuses the same directory.
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let message = refused.expect_err("a hole in the log").to_string();
    assert!(message.contains(&after_hole), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_refuses_a_log_whose_first_entries_no_snapshot_covers() {
    // Compacted behind snapshots (the second deletes what the first covers): the log starts
    // late, and that is fine.
    let dir = filled("start", &[100, 150]);
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("indexes 1..="), "compacted: {stdout}");
    // Without the snapshot, the entries before the log's start are lost: a start refuses it,
    // and so must verify.
    std::fs::remove_dir_all(dir.join("snapshots")).expect("delete snapshots");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains("the log starts at index") && !stdout.ends_with("ok\n"),
        "{stdout}{stderr}"
    );
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    assert!(refused.is_err(), "the engine refuses it too");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_all_zero_last_segment_is_a_creation_cut_short_and_the_engine_starts() {
    let dir = filled("zero-segment", &[]);
    let files = segments(&dir);
    // A crash (power loss) right after a rollover created and preallocated the next segment,
    // before its header reached the disk: the file is there, every byte zero.
    let next = lithair::log::segment_path(&dir.join("log"), EVENTS + 1);
    std::fs::write(&next, vec![0u8; 4096]).expect("write a zeroed segment");
    let (code, _, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "nothing acknowledged is missing: {stderr}");
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("open");
    assert_eq!(opened.applied_index, EVENTS);
    let truncated = opened
        .log
        .truncated
        .clone()
        .expect("the segment is cut back");
    assert_eq!((truncated.0, truncated.1), (next.clone(), 0));
    engine.submit(Put(EVENTS + 1)).expect("appends go on");
    drop(engine);
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("reopen");
    assert_eq!(opened.applied_index, EVENTS + 1);
    assert_eq!(engine.read(|kv| kv.map.len() as u64), EVENTS + 1);
    drop(engine);
    // The same zeros in a segment that is not the last hide entries: still refused.
    let middle = &files[1];
    let length = std::fs::metadata(middle).expect("stat").len();
    std::fs::write(middle, vec![0u8; length as usize]).expect("zero a middle segment");
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let message = refused.expect_err("zeroed middle segment").to_string();
    assert!(message.contains(&file_name(middle)), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_reports_a_torn_tail_the_next_start_will_cut() {
    let dir = filled("torn", &[]);
    let last = segments(&dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&last).expect("read");
    let end = bytes.iter().rposition(|&byte| byte != 0).expect("data") + 1;
    // Half of a frame's length and checksum, as a crash in the middle of a write leaves it.
    bytes[end..end + 5].copy_from_slice(&[0x31, 0, 0, 0, 0x7f]);
    std::fs::write(&last, &bytes).expect("write");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "a torn tail is not corruption: {stderr}");
    let note = format!("torn tail in {}", last.display());
    assert!(
        stdout.contains(&note) && stdout.contains(&format!("at offset {end}")),
        "{stdout}"
    );
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    let (_, opened) = Engine::open(&dir, options(), Kv::default()).expect("open");
    let truncated = opened.log.truncated.expect("the start cuts it");
    assert_eq!((truncated.0, truncated.1), (last, end as u64));
    let (_, stdout, _) = tool(&dir, &["log", "verify"]);
    assert!(!stdout.contains("torn tail"), "cut: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn opening_past_damaged_newer_snapshots_keeps_the_one_it_loaded() {
    // A snapshot at 150 compacts the log up to the one at 100, which it prunes once a newer
    // file is there: the state cannot be rebuilt without the one at 150.
    let dir = filled("kept", &[100, 150]);
    let snapshots = dir.join("snapshots");
    let good = snapshots.join(format!("{:020}.snap", 150));
    let mut damaged = std::fs::read(&good).expect("read snapshot");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    // Two newer files that fail their checksums (left by crashes, damaged on disk).
    for index in [160u64, 170] {
        let path = snapshots.join(format!("{index:020}.snap"));
        std::fs::write(path, &damaged).expect("write damaged snapshot");
    }
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("open");
    assert_eq!((opened.snapshot_index, opened.applied_index), (150, EVENTS));
    drop(engine);
    assert!(good.exists(), "the snapshot the state came from is kept");
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("reopen");
    assert_eq!((opened.snapshot_index, opened.applied_index), (150, EVENTS));
    assert_eq!(engine.read(|kv| kv.map.len() as u64), EVENTS);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Peak resident memory of this process so far, in bytes (`VmHWM`).
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|number| number.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

/// How much more than before a start may hold at its peak while passing over oversized
/// files: far below their size (they are sparse, so they cost no disk).
const OVERSIZED_PEAK_BYTES_MAX: u64 = 256 << 20;
/// Size a snapshot file is extended to (sparse).
const OVERSIZED_SNAPSHOT_BYTES: u64 = 2 << 30;

#[test]
fn oversized_segment_and_snapshot_files_are_refused_or_passed_over_unread() {
    let dir = common::fresh_dir("durability", "oversized");
    let (engine, _) = Engine::open(&dir, options(), Kv::default()).expect("open");
    for key in 1..=EVENTS {
        engine.submit(Put(key)).expect("put");
        if key == EVENTS - 5 {
            engine.snapshot().expect("snapshot");
        }
    }
    let newest = engine.snapshot().expect("snapshot").path;
    drop(engine);
    // The newest snapshot grown to gigabytes (a sparse file: its header still checks out).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open snapshot");
    file.set_len(OVERSIZED_SNAPSHOT_BYTES).expect("extend");
    drop(file);
    let before = peak_resident_bytes();
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("open");
    let grown = peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < OVERSIZED_PEAK_BYTES_MAX,
        "the oversized snapshot was read: {grown} bytes"
    );
    // Passed over as damaged: the older snapshot and the log give the same state.
    assert_eq!(
        (opened.snapshot_index, opened.applied_index),
        (EVENTS - 5, EVENTS)
    );
    drop(engine);
    // The last segment grown past any size the log writes: refused, naming it, unread.
    let last = segments(&dir).pop().expect("a segment");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open segment");
    file.set_len(lithair::log::SEGMENT_FILE_BYTES_MAX + 1)
        .expect("extend");
    drop(file);
    let before = peak_resident_bytes();
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let grown = peak_resident_bytes().saturating_sub(before);
    let message = refused.expect_err("an oversized segment").to_string();
    assert!(
        message.contains(&file_name(&last)) && message.contains("more than a segment holds"),
        "{message}"
    );
    assert!(
        grown < OVERSIZED_PEAK_BYTES_MAX,
        "the segment was read: {grown} bytes"
    );
    let (code, _, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    // And no log is configured to write such segments.
    let too_large = EngineOptions {
        segment_bytes_max: lithair::log::SEGMENT_BYTES_LIMIT + 1,
        ..EngineOptions::default()
    };
    let fresh = common::fresh_dir("durability", "oversized-option");
    assert!(Engine::open(&fresh, too_large, Kv::default()).is_err());
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_snapshot_past_the_end_of_the_log_refuses_the_start() {
    let dir = filled("past-end", &[EVENTS]);
    // The log is gone (segments deleted by hand) and the only snapshot is damaged: the
    // engine used to start on an empty state as if nothing had ever been written.
    std::fs::remove_dir_all(dir.join("log")).expect("delete the log");
    let snapshot = dir.join("snapshots").join(format!("{EVENTS:020}.snap"));
    let mut bytes = std::fs::read(&snapshot).expect("read snapshot");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snapshot, &bytes).expect("damage snapshot");
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let message = refused
        .expect_err("entries up to the snapshot are lost")
        .to_string();
    assert!(
        message.contains(&file_name(&snapshot)) && message.contains("the log ends at index 0"),
        "{message}"
    );
    // Refused again on the next try: nothing was changed that would let it through.
    assert!(Engine::open(&dir, options(), Kv::default()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Puts keys `first..first + count`, one event each, in one command (one frame).
struct PutMany {
    first: u64,
    count: u64,
}

impl Command<Kv> for PutMany {
    type Rejection = ();
    fn decide(&self, _: &Kv, _: &Context) -> Result<Vec<Set>, ()> {
        Ok((self.first..self.first + self.count)
            .map(|key| Set {
                key,
                value: key * 3,
            })
            .collect())
    }
}

/// Events per command in [`a_subscriber_catching_up_across_compaction_never_skips_events`].
const EVENTS_PER_COMMAND: u64 = 100;
/// Commands written there: more events than one catch-up read takes, and a number that
/// leaves the last segment holding frames below the snapshot (it is kept by compaction).
const COMMANDS: u64 = 59;
/// Segment size there: a few frames of [`EVENTS_PER_COMMAND`] events each per segment.
const CATCH_UP_SEGMENT_BYTES: u64 = 16 * 1024;

#[test]
fn a_subscriber_catching_up_across_compaction_never_skips_events() {
    let catch_up = lithair::engine::CATCH_UP_EVENTS_MAX as u64;
    assert!(COMMANDS * EVENTS_PER_COMMAND > catch_up + 2 * EVENTS_PER_COMMAND);
    let dir = common::fresh_dir("durability", "catch-up");
    let options = EngineOptions {
        segment_bytes_max: CATCH_UP_SEGMENT_BYTES,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(&dir, options, Kv::default()).expect("open");
    let put = |command: u64| {
        let first = 1 + command * EVENTS_PER_COMMAND;
        let put = PutMany {
            first,
            count: EVENTS_PER_COMMAND,
        };
        engine.submit(put).expect("put");
    };
    (0..COMMANDS - 1).for_each(put);
    // The snapshot a later one compacts the log up to (it keeps the log after this one).
    let fallback = engine.snapshot().expect("first snapshot");
    put(COMMANDS - 1);
    let mut subscription = engine.subscribe(1).expect("subscribe");
    let wait = std::time::Duration::from_secs(5);
    // The first catch-up read takes the first few thousand events from the log.
    let first = subscription
        .next_timeout(wait)
        .expect("first")
        .expect("event");
    assert_eq!(first.envelope.index, 1);
    // A snapshot compacts the log behind the subscriber's reader, up to the previous one.
    let info = engine.snapshot().expect("snapshot");
    assert_eq!(info.index, fallback.index + EVENTS_PER_COMMAND);
    assert!(info.segments_deleted > 0, "segments were compacted");
    // What is left starts past the reader's position and still holds events it needs next.
    let left = lithair::log::list_segments(&dir.join("log")).expect("list")[0];
    assert!(
        left > catch_up + EVENTS_PER_COMMAND && left <= info.index,
        "segment {left} left after a snapshot at {}",
        info.index
    );
    let mut expected = 2;
    loop {
        match subscription.next_timeout(wait) {
            Ok(Some(event)) => {
                assert_eq!(event.envelope.index, expected, "an event was skipped");
                expected += 1;
            }
            // The reader found the entries it needs gone: an error, as a resubscribe would.
            Err(error) => {
                assert!(
                    error.to_string().contains("no longer in the log"),
                    "{error}"
                );
                break;
            }
            Ok(None) => panic!("the catch-up stopped without an error at {expected}"),
        }
        if expected > COMMANDS * EVENTS_PER_COMMAND {
            panic!("every event came although the log was compacted under the reader");
        }
    }
    drop(subscription);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `lithair` tool tells a wrong command line (exit 2, with the usage) from a command that
/// failed (exit 1): a missing `--data` or a bad number used to exit 1 like a damaged log.
#[test]
fn the_tool_exits_2_on_a_wrong_command_line_and_1_on_a_failure() {
    let run = |words: &[&str]| {
        let (code, _, stderr) = lithair_tool(words);
        (code, stderr)
    };
    for words in [
        &["log", "verify"][..],
        &["log", "inspect", "--data", "x", "--from", "z"],
        &["nothing"],
    ] {
        let (code, stderr) = run(words);
        assert_eq!(code, Some(2), "{words:?}: {stderr}");
        assert!(stderr.contains("usage:"), "{words:?}: {stderr}");
    }
    let missing = std::env::temp_dir().join("lithair-no-such-data-dir");
    let (code, _, stderr) = tool(&missing, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("usage:"), "{stderr}");
}

/// The `lithair` tool checks every flag against what its command takes, as an app's command
/// line does: a misspelled filter (`--form 5`), a flag without its value, a flag another
/// command takes, or a stray word is a usage error (exit 2, naming it) instead of being
/// ignored, which printed every event as if no filter had been asked for. `--name=value` is
/// accepted as apps accept it.
#[test]
fn the_tool_refuses_flags_its_command_does_not_take_and_accepts_name_equals_value() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden_v1");
    let golden = golden.to_string_lossy().into_owned();
    let run = lithair_tool;
    for (words, named) in [
        (
            &["log", "inspect", "--data", &golden, "--form", "2"][..],
            "--form",
        ),
        (&["log", "inspect", "--data", &golden, "--from"], "--from"),
        (
            &["log", "inspect", "--data", &golden, "--to", "--from", "2"],
            "--to",
        ),
        (&["log", "stats", "--data", &golden, "--apply"], "--apply"),
        (
            &["log", "verify", "--data", &golden, "--from", "2"],
            "--from",
        ),
        (&["log", "verify", &golden], &golden),
        (&["replay", "--data", &golden, "extra"], "extra"),
        (&["snapshot", "--dat", &golden], "--dat"),
    ] {
        let (code, stdout, stderr) = run(words);
        assert_eq!(code, Some(2), "{words:?}: {stderr}");
        assert!(stdout.is_empty(), "{words:?} ran: {stdout}");
        assert!(stderr.contains(named), "{words:?}: {stderr}");
        assert!(stderr.contains("usage:"), "{words:?}: {stderr}");
    }
    let data = format!("--data={golden}");
    let (code, stdout, stderr) = run(&["log", "inspect", &data, "--from=2", "--to", "2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("{\"index\":2,"), "{stdout}");
    let (code, stdout, stderr) = run(&["log", "verify", &data]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
}

/// `log repair` gets a single node past damage a start refuses (a damaged frame with valid
/// frames after it: acknowledged entries may lie beyond, so recovery never cuts it itself).
/// A dry run says what the cut loses and changes nothing; `--apply` cuts the damaged segment
/// at the damage and removes the later ones, and the engine then opens with every entry
/// before it. It refuses a directory in use, a cluster node's, and a cut that would leave the
/// log ending before the newest snapshot.
/// Damage in log entries the newest snapshot covers (kept since the previous snapshot, as the
/// older one's fallback) does not stop a start, which replays from the snapshot on, but fails
/// `log verify` and breaks the fallback. `log repair` used to refuse it (a cut there ends the
/// log before the snapshot); it removes the segments up to the damage's end instead, and
/// loses nothing a start needs.
#[test]
fn log_repair_removes_damaged_segments_the_newest_snapshot_covers() {
    let dir = filled("repair-covered", &[100, 150]);
    let log_dir = dir.join("log");
    let firsts = lithair::log::list_segments(&log_dir).expect("list");
    let covered = firsts
        .windows(2)
        .position(|pair| pair[1] <= 151)
        .expect("a segment below the newest snapshot is kept");
    let damaged = lithair::log::segment_path(&log_dir, firsts[covered]);
    let keep_from = firsts[covered + 1];
    let used = lithair::log::used_bytes(&damaged, firsts[covered]).expect("used bytes");
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[used as usize / 2] ^= 0xff;
    std::fs::write(&damaged, &bytes).expect("damage a frame in the middle");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(1), "verify finds the damage: {stdout}{stderr}");

    let (code, stdout, stderr) = tool(&dir, &["log", "repair"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("newest snapshot (150) covers") && stdout.contains("dry run"),
        "{stdout}"
    );
    assert_eq!(lithair::log::list_segments(&log_dir).expect("list"), firsts);
    let (code, stdout, stderr) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("now starts at index {keep_from}")),
        "{stdout}"
    );
    assert_eq!(
        lithair::log::list_segments(&log_dir).expect("list"),
        firsts[covered + 1..].to_vec()
    );
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("opens now");
    assert_eq!((opened.snapshot_index, opened.applied_index), (150, EVENTS));
    engine.read(|kv| assert!((1..=EVENTS).all(|key| kv.map.get(&key) == Some(&(key * 3)))));
    drop(engine);
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_repair_cuts_at_damage_a_start_refuses_only_when_told() {
    let dir = filled("repair", &[]);
    let files = segments(&dir);
    assert!(files.len() >= 4, "{files:?}");
    let damaged = &files[1];
    let first = lithair::log::list_segments(&dir.join("log")).expect("list")[1];
    let used = lithair::log::used_bytes(damaged, first).expect("used bytes");
    let mut bytes = std::fs::read(damaged).expect("read");
    bytes[used as usize / 2] ^= 0xff;
    std::fs::write(damaged, &bytes).expect("damage a frame in the middle");
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    assert!(
        refused.is_err(),
        "a start refuses damage followed by valid frames"
    );
    let contents = |files: &[PathBuf]| -> Vec<Option<Vec<u8>>> {
        files.iter().map(|f| std::fs::read(f).ok()).collect()
    };
    let before = contents(&files);

    // In use: refused.
    {
        let _held = lithair::log::lock_data_dir(&dir).expect("lock");
        let (code, _, stderr) = tool(&dir, &["log", "repair", "--apply"]);
        assert_eq!(code, Some(1), "{stderr}");
    }
    // A snapshot file past the damage (even a damaged one) proves entries the cut would
    // lose below it: refused, as the start would refuse the cut log.
    let snapshots = dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).expect("mkdir");
    let fake = snapshots.join(format!("{:020}.snap", EVENTS + 1000));
    std::fs::write(&fake, b"not a snapshot").expect("write");
    let (code, _, stderr) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("newest snapshot"), "{stderr}");
    std::fs::remove_file(&fake).expect("remove");
    // A cluster node's directory: refused (it rejoins from its peers).
    let hard_state = dir.join(lithair::raft::storage_log::HARD_STATE_FILE_NAME);
    std::fs::write(&hard_state, b"").expect("write");
    let (code, _, stderr) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cluster"), "{stderr}");
    std::fs::remove_file(&hard_state).expect("remove");
    assert_eq!(contents(&files), before, "nothing refused changed a file");

    // A dry run reports and changes nothing.
    let (code, stdout, stderr) = tool(&dir, &["log", "repair"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&file_name(damaged)) && stdout.contains("dry run"),
        "{stdout}"
    );
    assert_eq!(contents(&files), before, "a dry run changes nothing");

    let (code, stdout, stderr) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    let kept: u64 = stdout
        .rsplit("ends at index ")
        .next()
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("the last index kept: {stdout}"));
    assert!(kept >= first && kept < EVENTS, "{stdout}");
    assert_eq!(
        segments(&dir),
        files[..2].to_vec(),
        "later segments removed"
    );
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("opens now");
    assert_eq!(opened.applied_index, kept);
    engine.read(|kv| {
        assert_eq!(kv.map.len() as u64, kept);
        assert!((1..=kept).all(|key| kv.map.get(&key) == Some(&(key * 3))));
    });
    drop(engine);
    let (code, stdout, _) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("nothing to repair"), "{stdout}");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `log backup` cut short never leaves a destination that looks like a data directory: the
/// copy is made beside it and renamed into place only once whole and verified. Cut by an
/// error after its first file, nothing is left; cut by a panic there (as a process killed
/// mid-copy), only the staging directory is, named as incomplete, and the next backup to the
/// same destination refuses it until it is removed.
#[test]
fn a_log_backup_cut_short_leaves_no_destination() {
    use lithair::engine::backup::{log_backup, log_backup_with_hook, STAGING_SUFFIX};
    let dir = filled("backup-cut", &[100, 150]);
    let dest = common::fresh_dir("durability", "backup-cut-copy");
    let _ = std::fs::remove_dir_all(&dest);
    let staging = dest.with_file_name(format!(
        "{}{STAGING_SUFFIX}",
        dest.file_name().expect("a name").to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let mut out = Vec::new();
    let cut = |_: &Path| Err("cut here".to_string());
    let error = log_backup_with_hook(&dir, &dest, &mut out, &cut).expect_err("cut short");
    assert!(error.contains("cut here"), "{error}");
    assert!(!dest.exists(), "no destination after a failed backup");
    assert!(
        !staging.exists(),
        "a failed backup removes its staging copy"
    );

    // A panic in the hook: the process dies there, as a kill mid-copy would leave it.
    let killed = std::panic::catch_unwind(|| {
        let mut out = Vec::new();
        let kill = |_: &Path| -> Result<(), String> { panic!("killed mid-copy") };
        let _ = log_backup_with_hook(&dir, &dest, &mut out, &kill);
    });
    assert!(killed.is_err());
    assert!(
        !dest.exists(),
        "no destination after a backup killed mid-copy"
    );
    assert!(
        staging.is_dir(),
        "the incomplete copy is left under its own name"
    );
    let error = log_backup(&dir, &dest, &mut out).expect_err("refuses the leftover");
    assert!(error.contains("cut short"), "{error}");
    assert!(!dest.exists());

    std::fs::remove_dir_all(&staging).expect("remove the leftover");
    log_backup(&dir, &dest, &mut out).expect("backs up");
    assert!(!staging.exists(), "renamed into place");
    let (copy, _) = Engine::open(&dest, options(), Kv::default()).expect("open the copy");
    assert_eq!(copy.applied_index(), EVENTS);
    drop(copy);
    let _ = std::fs::remove_dir_all(&dest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `log backup` copies a data directory to a new one that opens to the very state (the
/// newest snapshot and the log after it), checks the copy, refuses a destination holding
/// files and a cluster node's directory, and needs `--to`.
#[test]
fn log_backup_copies_a_directory_that_opens_to_the_same_state() {
    let dir = filled("backup", &[100, 150]);
    let dest = common::fresh_dir("durability", "backup-copy");
    let _ = std::fs::remove_dir_all(&dest); // A destination that does not exist yet.
    let dest_text = dest.to_string_lossy().into_owned();
    let (code, stdout, stderr) = tool(&dir, &["log", "backup", "--to", &dest_text]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("snapshot 150") && stdout.contains("verified"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("last index {EVENTS}")), "{stdout}");
    let (original, _) = Engine::open(&dir, options(), Kv::default()).expect("open original");
    let expected = original.digest();
    drop(original);
    let (copy, _) = Engine::open(&dest, options(), Kv::default()).expect("open the copy");
    assert_eq!(
        copy.digest(),
        expected,
        "the copy opens to the original's state"
    );
    drop(copy);
    let (code, _, stderr) = tool(&dir, &["log", "backup", "--to", &dest_text]);
    assert_eq!(code, Some(1), "a destination holding files: {stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    let (code, _, stderr) = tool(&dir, &["log", "backup"]);
    assert_eq!(code, Some(2), "`--to` is required: {stderr}");
    let inside = dir.join("backup").to_string_lossy().into_owned();
    let (code, _, stderr) = tool(&dir, &["log", "backup", "--to", &inside]);
    assert_eq!(code, Some(1), "a destination inside the data: {stderr}");
    assert!(stderr.contains("inside the data directory"), "{stderr}");
    assert!(
        !dir.join("backup").exists(),
        "nothing left in the data directory"
    );
    std::fs::write(dir.join("raft-hardstate"), b"").expect("mark a cluster node");
    let elsewhere = common::fresh_dir("durability", "backup-cluster");
    let elsewhere = elsewhere.to_string_lossy().into_owned();
    let (code, _, stderr) = tool(&dir, &["log", "backup", "--to", &elsewhere]);
    assert_eq!(code, Some(1), "a cluster node's directory: {stderr}");
    assert!(stderr.contains("cluster node"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dest);
}

/// The newest segment deleted from a stopped node's directory: a start, `replay` and every
/// `log` tool refuse, naming it and the way out; `log repair` says what accepting the loss
/// keeps and, with `--apply`, accepts it (the extent record is lowered), after which the
/// directory opens to the state of what is left and goes on.
#[test]
fn a_deleted_newest_segment_is_refused_until_log_repair_accepts_the_loss() {
    let dir = filled("newest", &[]);
    let files = segments(&dir);
    assert!(files.len() >= 3, "{files:?}");
    let newest = files.last().expect("a segment").clone();
    std::fs::remove_file(&newest).expect("delete the newest segment");
    let missing = file_name(&newest);
    for (words, stderr) in every_reading_tool_fails(&dir) {
        assert!(
            stderr.contains(&missing)
                && stderr.contains("is missing")
                && stderr.contains("log repair --apply"),
            "{words:?}: {stderr}"
        );
    }
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let message = refused.expect_err("the newest segment is gone").to_string();
    assert!(message.contains(&missing), "{message}");
    let stdout = repair_dry_run_then_apply(&dir, &missing, "");
    assert!(stdout.contains("accepted"), "{stdout}");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    let (engine, _) = Engine::open(&dir, options(), Kv::default()).expect("opens after repair");
    let kept = engine.applied_index();
    assert!(
        kept > 0 && kept < EVENTS,
        "what the other segments hold: {kept}"
    );
    engine.read(|kv| assert!((1..=kept).all(|key| kv.map.get(&key) == Some(&(key * 3)))));
    engine.submit(Put(EVENTS + 1)).expect("appends go on");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every segment deleted (a snapshot left): a start refuses rather than begin an empty log
/// after the snapshot; accepted by `log repair --apply`, it does.
#[test]
fn every_segment_deleted_is_refused_until_accepted() {
    let dir = filled("all-segments", &[150]);
    for file in segments(&dir) {
        std::fs::remove_file(&file).expect("delete");
    }
    let refused = Engine::open(&dir, options(), Kv::default()).map(|_| ());
    let message = refused.expect_err("no segment left").to_string();
    assert!(message.contains("no segment is present"), "{message}");
    let (code, _, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, stdout, stderr) = tool(&dir, &["log", "repair", "--apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("accepted"), "{stdout}");
    let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("opens");
    assert_eq!((opened.snapshot_index, engine.applied_index()), (150, 150));
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backup carries an extent record of its own (its deleted newest segment is caught like
/// the original's), and a source missing its newest segment is not copied as a shorter log.
#[test]
fn log_backup_records_the_copys_newest_segment_and_refuses_a_source_missing_its_own() {
    let dir = filled("backup-extent", &[100]);
    let dest = common::fresh_dir("durability", "backup-extent-copy");
    let dest_text = dest.to_string_lossy().into_owned();
    let (code, _, stderr) = tool(&dir, &["log", "backup", "--to", &dest_text]);
    assert_eq!(code, Some(0), "{stderr}");
    let copied = segments(&dest);
    let newest_copy = copied.last().expect("a segment").clone();
    let recorded = lithair::log::read_newest(&dest.join("log")).expect("read");
    assert_eq!(
        recorded.map(|first| lithair::log::segment_path(&dest.join("log"), first)),
        Some(newest_copy.clone())
    );
    std::fs::remove_file(&newest_copy).expect("delete the copy's newest segment");
    let (code, _, stderr) = tool(&dest, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&file_name(&newest_copy)), "{stderr}");

    // Cut short right after writing the copy's record: no destination, the original opens.
    let cut_dest = common::fresh_dir("durability", "backup-extent-cut");
    let cut_at_record = |path: &Path| match path.ends_with(lithair::log::EXTENT_FILE_NAME) {
        true => Err("cut at the record".to_string()),
        false => Ok(()),
    };
    let mut out = Vec::new();
    let error =
        lithair::engine::backup::log_backup_with_hook(&dir, &cut_dest, &mut out, &cut_at_record)
            .expect_err("cut short");
    assert!(error.contains("cut at the record"), "{error}");
    assert!(!cut_dest.exists(), "no destination after a cut backup");
    let (original, _) = Engine::open(&dir, options(), Kv::default()).expect("the original opens");
    assert_eq!(original.applied_index(), EVENTS);
    drop(original);

    let newest = segments(&dir).last().expect("a segment").clone();
    std::fs::remove_file(&newest).expect("delete the original's newest segment");
    let elsewhere = common::fresh_dir("durability", "backup-extent-refused");
    let elsewhere_text = elsewhere.to_string_lossy().into_owned();
    let (code, _, stderr) = tool(&dir, &["log", "backup", "--to", &elsewhere_text]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&file_name(&newest)), "{stderr}");
    assert!(!elsewhere.exists(), "no copy of a shorter log");
    let _ = std::fs::remove_dir_all(&dest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged extent record (`log/NEWEST`) is refused by a start and every tool, naming it;
/// `log repair` reports it and, with `--apply`, writes it anew from the segments present when
/// they are whole and contiguous, after which the directory opens to its whole state. It used
/// to fail like the start, leaving the operator only a hand deletion.
#[test]
fn a_damaged_extent_record_is_written_anew_by_log_repair() {
    let dir = filled("record-damaged", &[]);
    let record = dir.join("log").join("NEWEST");
    let mut bytes = std::fs::read(&record).expect("read the record");
    bytes[13] ^= 0xff;
    std::fs::write(&record, &bytes).expect("damage the record");
    for (words, stderr) in every_reading_tool_fails(&dir) {
        assert!(stderr.contains("NEWEST"), "{words:?}: {stderr}");
    }
    assert!(Engine::open(&dir, options(), Kv::default()).is_err());
    let stdout = repair_dry_run_then_apply(&dir, "NEWEST", "");
    assert!(stdout.contains("rewrote"), "{stdout}");
    let (code, stdout, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    let newest = segments(&dir).last().expect("a segment").clone();
    let (engine, _) = Engine::open(&dir, options(), Kv::default()).expect("opens after repair");
    assert_eq!(engine.applied_index(), EVENTS, "nothing was lost");
    engine.read(|kv| assert!((1..=EVENTS).all(|key| kv.map.get(&key) == Some(&(key * 3)))));
    drop(engine);
    // The new record does its job: the newest segment deleted now is caught again.
    std::fs::remove_file(&newest).expect("delete the newest segment");
    let (code, _, stderr) = tool(&dir, &["log", "verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&file_name(&newest)), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The newest segments deleted, down to a log that ends before the newest snapshot: a start
/// refuses it (with or without the extent record), and `log repair --apply` used to refuse
/// too ("a start would refuse them still") although the start's own message points at it.
/// The snapshot covers every entry left, so accepting the loss keeps its state: the segments
/// and the record go, and the log starts again after the snapshot.
#[test]
fn a_log_cut_back_before_the_newest_snapshot_is_accepted_by_keeping_the_snapshot() {
    for with_record in [true, false] {
        let name = format!("before-snapshot-{with_record}");
        let dir = filled(&name, &[150]);
        let log_dir = dir.join("log");
        let files = segments(&dir);
        let firsts = lithair::log::list_segments(&log_dir).expect("list");
        let kept = firsts.iter().filter(|&&first| first <= 100).count();
        assert!(kept >= 1 && kept < files.len(), "{firsts:?}");
        for file in &files[kept..] {
            std::fs::remove_file(file).expect("delete a newest segment");
        }
        if !with_record {
            std::fs::remove_file(log_dir.join("NEWEST")).expect("delete the record");
        }
        assert!(Engine::open(&dir, options(), Kv::default()).is_err());
        let label = format!("with the record: {with_record}");
        let stdout = repair_dry_run_then_apply(&dir, "snapshot (150)", &label);
        assert!(stdout.contains("removed"), "{stdout}");
        let (engine, opened) = Engine::open(&dir, options(), Kv::default()).expect("opens");
        assert_eq!((opened.snapshot_index, engine.applied_index()), (150, 150));
        engine.read(|kv| assert!((1..=150).all(|key| kv.map.get(&key) == Some(&(key * 3)))));
        engine.submit(Put(EVENTS + 1)).expect("appends go on");
        drop(engine);
        let (code, _, stderr) = tool(&dir, &["log", "verify"]);
        assert_eq!(code, Some(0), "{stderr}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
