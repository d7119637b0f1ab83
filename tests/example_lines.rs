//! The output lines issue 4 names, read from the example binaries run as processes, as anyone
//! rerunning a benchmark reads them: `engine_bench durable --submitters K --seconds S` ends
//! with `durable: N events in S s (E events/s, B events per fsync)`, and
//! `engine_bench replay --events N [--snapshot]` ends with `replay: N events in S s (E
//! events/s)`. A command line that measures nothing is refused (exit 2), not run. An app's
//! `replay` prints event count, time and digest, and `snapshot` what it wrote, as lines for a
//! person.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`, beside this test binary's `deps/` directory.
///
/// # Panics
/// When the example is not built (`cargo test` builds the examples of the package first).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: build examples first",
        path.display()
    );
    path
}

/// A fresh directory for one run.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithair-lines-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `engine_bench` with `args` and `--dir dir`; returns its exit code and last stdout line.
fn engine_bench(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(example_binary("engine_bench"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run engine_bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("").to_string();
    (output.status.code(), last)
}

/// The number `text` starts with, and the rest after it.
fn number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// Reads `PREFIX: N events in S s (E events/s` and returns (N, S, E, the rest after `events/s`).
fn rate_line<'a>(line: &'a str, prefix: &str) -> Option<(f64, f64, f64, &'a str)> {
    let rest = line.strip_prefix(prefix)?.strip_prefix(": ")?;
    let (count, rest) = number(rest)?;
    let (seconds, rest) = number(rest.strip_prefix(" events in ")?)?;
    let (rate, rest) = number(rest.strip_prefix(" s (")?)?;
    Some((count, seconds, rate, rest.strip_prefix(" events/s")?))
}

#[test]
fn engine_bench_durable_ends_with_the_line_issue_4_names() {
    let dir = scratch("durable");
    let (code, line) = engine_bench(&["durable", "--submitters", "2", "--seconds", "0.3"], &dir);
    assert_eq!(code, Some(0), "{line}");
    let (count, seconds, rate, rest) = rate_line(&line, "durable").unwrap_or_else(|| {
        panic!("not `durable: N events in S s (E events/s, B events per fsync)`: {line:?}")
    });
    let (per_fsync, rest) = rest
        .strip_prefix(", ")
        .and_then(number)
        .unwrap_or_else(|| panic!("no events per fsync in {line:?}"));
    assert_eq!(rest, " events per fsync)", "{line:?}");
    assert!(count >= 1.0 && seconds > 0.0 && rate > 0.0, "{line:?}");
    assert!((1.0..=2.0).contains(&per_fsync), "2 submitters: {line:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn engine_bench_replay_ends_with_the_line_issue_4_names() {
    for snapshot in [false, true] {
        let dir = scratch(if snapshot { "replay-snap" } else { "replay" });
        let mut args = vec!["replay", "--events", "20000"];
        if snapshot {
            args.push("--snapshot");
        }
        let (code, line) = engine_bench(&args, &dir);
        assert_eq!(code, Some(0), "{line}");
        let (count, seconds, rate, rest) = rate_line(&line, "replay")
            .unwrap_or_else(|| panic!("not `replay: N events in S s (E events/s)`: {line:?}"));
        assert_eq!(rest, ")", "{line:?}");
        assert_eq!(count, 20_000.0, "{line:?}");
        assert!(seconds >= 0.0 && rate > 0.0, "{line:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// No submitter, no window or no time measures nothing: a usage error (exit 2) naming the
/// flag. `--submitters 0` used to run and print `durable: 0 events ...` with exit 0.
#[test]
fn engine_bench_refuses_a_run_that_measures_nothing() {
    let dir = scratch("refused");
    for args in [
        ["--submitters", "0", "--seconds", "1"],
        ["--submitters", "2", "--seconds", "0"],
        ["--submitters", "2", "--seconds", "inf"],
        ["--submitters", "2", "--seconds", "NaN"],
    ] {
        let mut line = vec!["durable"];
        line.extend(args);
        let output = Command::new(example_binary("engine_bench"))
            .args(&line)
            .arg("--dir")
            .arg(&dir)
            .output()
            .expect("run engine_bench");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{line:?}: {stderr}");
        assert!(stderr.contains("must be"), "{line:?}: {stderr}");
    }
    let output = Command::new(example_binary("engine_bench"))
        .args([
            "durable",
            "--submitters",
            "1",
            "--seconds",
            "1",
            "--window",
            "0",
        ])
        .output()
        .expect("run engine_bench");
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the `blog` example with `args`; returns its exit code and stdout.
fn blog(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(example_binary("blog"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .output()
        .expect("run blog");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout)
}

/// Issue 4: `replay` rebuilds the state and prints event count, time and digest; `snapshot`
/// says which index it covers and where it is (it printed `SnapshotInfo { .. }`).
#[test]
fn an_apps_replay_and_snapshot_print_lines_for_a_person() {
    let dir = scratch("blog");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (code, stdout) = blog(&["snapshot"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    let line = stdout.lines().next().unwrap_or("");
    let expected = format!(
        "snapshot: index 0 in {} (0 log segments deleted)",
        dir.join("snapshots")
            .join("00000000000000000000.snap")
            .display()
    );
    assert_eq!(line, expected);
    let (code, stdout) = blog(&["replay"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    let line = stdout.lines().next().unwrap_or("");
    let (count, _, _, rest) = rate_line(line, "replay")
        .unwrap_or_else(|| panic!("not `replay: N events in S s (E events/s)...`: {line:?}"));
    assert_eq!(count, 0.0, "{line}");
    let digest = rest
        .strip_prefix("), applied index 0, digest ")
        .unwrap_or_else(|| panic!("no digest in {line:?}"));
    assert_eq!(digest.len(), 64, "a SHA-256 in hex: {line:?}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{line:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
