//! The `lithair` command: log-level tools over a data directory.
//!
//! `lithair replay --data DIR`, `lithair log verify|inspect|stats --data DIR`,
//! `lithair snapshot --data DIR`. Owns: reading and reporting only; it never takes the data
//! directory lock and never modifies files, so it is safe next to a running server. Must not:
//! decode event payloads (it does not know the application's types; apps get typed `replay`
//! and `snapshot` through `App::run`).

use lithair::engine::{self, EnvelopeRef};
use lithair::log::{self, Frame};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage:
  lithair replay --data DIR                 replay the log: event count, time, stream digest
  lithair log verify --data DIR             check every frame, envelope and snapshot
  lithair log inspect --data DIR [--from I] [--to J] [--type T]
                                            events as JSON lines (payload as hex)
  lithair log stats --data DIR              segments, frames, events per type
  lithair snapshot --data DIR               list snapshots and check their checksums";

/// Events between two progress lines on a terminal.
const PROGRESS_EVERY_EVENTS: u64 = 1_000_000;

struct Args {
    words: Vec<String>,
}

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        let at = self.words.iter().position(|word| word == name)?;
        self.words.get(at + 1).map(String::as_str)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, String> {
        match self.value(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} expects a number, got {text:?}")),
        }
    }

    fn data_dir(&self) -> Result<PathBuf, String> {
        self.value("--data")
            .map(PathBuf::from)
            .ok_or_else(|| "missing --data DIR".to_string())
    }
}

fn main() -> ExitCode {
    let args = Args {
        words: std::env::args().skip(1).collect(),
    };
    let command: Vec<&str> = args.words.iter().take(2).map(String::as_str).collect();
    let result = match command.as_slice() {
        ["replay", ..] => args.data_dir().and_then(|dir| replay(&dir)),
        ["log", "verify", ..] => args.data_dir().and_then(|dir| verify(&dir)),
        ["log", "inspect", ..] => args.data_dir().and_then(|dir| inspect(&dir, &args)),
        ["log", "stats", ..] => args.data_dir().and_then(|dir| stats(&dir)),
        ["snapshot", ..] => args.data_dir().and_then(|dir| snapshots(&dir)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lithair: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Visits every decoded envelope from `from`, in index order.
fn each_event(
    dir: &Path,
    from: u64,
    visit: &mut dyn FnMut(&Frame<'_>, EnvelopeRef<'_>) -> bool,
) -> Result<(), String> {
    let log_dir = dir.join(log::LOG_DIR_NAME);
    if !log_dir.is_dir() {
        return Err(format!("{} has no log directory", dir.display()));
    }
    log::read_range(&log_dir, from, &mut |frame| {
        for (offset, entry) in frame.entries().enumerate() {
            let index = frame.index + offset as u64;
            if index < from {
                continue;
            }
            let envelope = engine::decode_entry(entry).map_err(|e| log::Error::Visitor {
                index,
                message: format!("bad envelope: {e}"),
            })?;
            if envelope.index != index {
                let message = format!("envelope says index {}", envelope.index);
                return Err(log::Error::Visitor { index, message });
            }
            if !visit(frame, envelope) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .map_err(|e| e.to_string())
}

fn replay(dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (mut count, mut digest, mut last) = (0u64, 0xcbf2_9ce4_8422_2325u64, 0u64);
    each_event(dir, 0, &mut |_, envelope| {
        for &byte in envelope.payload {
            digest = (digest ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        count += 1;
        last = envelope.index;
        if terminal && count % PROGRESS_EVERY_EVENTS == 0 {
            eprint!("\r{count} events...");
        }
        true
    })?;
    if terminal {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("replayed {count} events (last index {last}) in {seconds:.3} s; stream digest {digest:016x}");
    println!("(the stream digest hashes the payloads in log order; an app's `replay` prints its state digest)");
    Ok(())
}

fn verify(dir: &Path) -> Result<(), String> {
    let log_dir = dir.join(log::LOG_DIR_NAME);
    let segments = log::list_segments(&log_dir).map_err(|e| e.to_string())?;
    let (mut frames, mut events, mut first, mut last) = (0u64, 0u64, None, 0u64);
    let mut previous_frame = None;
    each_event(dir, 0, &mut |frame, envelope| {
        if previous_frame != Some(frame.index) {
            frames += 1;
            previous_frame = Some(frame.index);
        }
        events += 1;
        first.get_or_insert(envelope.index);
        last = envelope.index;
        true
    })?;
    println!(
        "log: {} segments, {frames} frames, {events} events, indexes {}..={last}",
        segments.len(),
        first.unwrap_or(0)
    );
    for index in engine::list_snapshots(dir).map_err(|e| e.to_string())? {
        check_snapshot(dir, index)?;
    }
    println!("ok");
    Ok(())
}

fn check_snapshot(dir: &Path, index: u64) -> Result<(), String> {
    let path = engine::snapshot_dir(dir).join(format!("{index:020}.snap"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    match engine::parse_snapshot(&bytes) {
        Ok((named, body)) if named == index => {
            println!(
                "snapshot {}: index {index}, {} bytes, checksums ok",
                path.display(),
                body.len()
            );
            Ok(())
        }
        Ok((named, _)) => Err(format!("{}: names index {named}", path.display())),
        Err(reason) => Err(format!("{}: {reason}", path.display())),
    }
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_option(out: &mut String, name: &str, value: Option<&str>) {
    out.push_str(&format!(",\"{name}\":"));
    match value {
        Some(text) => json_string(out, text),
        None => out.push_str("null"),
    }
}

fn inspect(dir: &Path, args: &Args) -> Result<(), String> {
    let from = args.number("--from")?.unwrap_or(0);
    let to = args.number("--to")?.unwrap_or(u64::MAX);
    let wanted_type = args.value("--type");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = String::new();
    let mut write_error = None;
    each_event(dir, from, &mut |_, envelope| {
        if envelope.index > to {
            return false;
        }
        if wanted_type.is_some_and(|wanted| wanted != envelope.event_type) {
            return true;
        }
        line.clear();
        line.push_str(&format!(
            "{{\"index\":{},\"timestamp_ms\":{},\"type\":",
            envelope.index, envelope.timestamp_ms
        ));
        json_string(&mut line, envelope.event_type);
        line.push_str(&format!(
            ",\"schema_version\":{},\"request_id\":{}",
            envelope.schema_version, envelope.request_id
        ));
        json_option(&mut line, "idempotency_key", envelope.idempotency_key);
        json_option(&mut line, "actor", envelope.actor);
        json_option(&mut line, "correlation_id", envelope.correlation_id);
        line.push_str(",\"payload_hex\":\"");
        for byte in envelope.payload {
            line.push_str(&format!("{byte:02x}"));
        }
        line.push_str("\"}\n");
        if let Err(error) = out.write_all(line.as_bytes()) {
            write_error = Some(error);
            return false;
        }
        true
    })?;
    match write_error {
        // A closed pipe (`| head`) is a normal way to stop reading.
        Some(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.to_string()),
        _ => out.flush().or(Ok(())),
    }
}

fn stats(dir: &Path) -> Result<(), String> {
    let log_dir = dir.join(log::LOG_DIR_NAME);
    let segments = log::list_segments(&log_dir).map_err(|e| e.to_string())?;
    let mut bytes = 0u64;
    for first in &segments {
        let path = log::segment_path(&log_dir, *first);
        bytes += std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
    }
    let (mut frames, mut events, mut payload_bytes) = (0u64, 0u64, 0u64);
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut previous_frame = None;
    each_event(dir, 0, &mut |frame, envelope| {
        if previous_frame != Some(frame.index) {
            frames += 1;
            previous_frame = Some(frame.index);
        }
        events += 1;
        payload_bytes += envelope.payload.len() as u64;
        *per_type.entry(envelope.event_type.to_string()).or_insert(0) += 1;
        true
    })?;
    println!("segments: {} ({bytes} bytes)", segments.len());
    println!(
        "frames: {frames}, events: {events}, events per frame: {:.1}",
        events as f64 / frames.max(1) as f64
    );
    println!(
        "payload bytes: {payload_bytes}, log bytes per event: {:.1}",
        bytes as f64 / events.max(1) as f64
    );
    for (event_type, count) in per_type {
        println!("  {event_type}: {count}");
    }
    let snapshots = engine::list_snapshots(dir).map_err(|e| e.to_string())?;
    println!("snapshots: {snapshots:?}");
    Ok(())
}

fn snapshots(dir: &Path) -> Result<(), String> {
    let indexes = engine::list_snapshots(dir).map_err(|e| e.to_string())?;
    if indexes.is_empty() {
        println!("no snapshots in {}", engine::snapshot_dir(dir).display());
    }
    for index in indexes {
        check_snapshot(dir, index)?;
    }
    println!(
        "(taking a snapshot needs the application's state type: run the app's `snapshot` command)"
    );
    Ok(())
}
