//! Operator tools over a data directory, shared by the `lithair` binary and every app's CLI:
//! `log verify`, `log inspect`, `log stats`, a log-level `replay`, and snapshot listing.
//!
//! Owns: reading and reporting. Must not: take the data-directory lock or modify files (safe
//! next to a running server), or decode payloads (it does not know the application's types;
//! typed replay is `Engine::open` / `replay_dir`).

use super::envelope::{self, EnvelopeRef};
use super::replay;
use super::snapshot;
use crate::log::{self, Frame};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Events between two progress lines of `replay` on a terminal.
pub const PROGRESS_EVERY_EVENTS: u64 = 1_000_000;

fn io(error: std::io::Error) -> String {
    error.to_string()
}

/// Visits every decoded envelope from `from`, in index order, until `visit` returns `false`.
fn each_event(
    data: &Path,
    from: u64,
    visit: &mut dyn FnMut(&Frame<'_>, EnvelopeRef<'_>) -> bool,
) -> Result<(), String> {
    let log_dir = data.join(log::LOG_DIR_NAME);
    if !log_dir.is_dir() {
        return Err(format!("{} has no log directory", data.display()));
    }
    // Judged as a start would: a deleted newest segment is not a shorter log.
    log::check_extent(&log_dir).map_err(|e| e.to_string())?;
    log::read_range(&log_dir, from, &mut |frame| {
        for (offset, entry) in frame.entries().enumerate() {
            let index = frame.index + offset as u64;
            if index < from {
                continue;
            }
            let envelope = envelope::decode_entry(entry).map_err(|e| log::Error::Visitor {
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

/// What every whole-log scan counts.
#[derive(Default)]
struct Totals {
    frames: u64,
    events: u64,
    /// Index of the first event; `None` for an empty log.
    first: Option<u64>,
    last: u64,
    payload_bytes: u64,
}

/// Visits every envelope from the start of the log, counting as it goes.
fn scan_totals(data: &Path, visit: &mut dyn FnMut(EnvelopeRef<'_>)) -> Result<Totals, String> {
    let mut totals = Totals::default();
    // A frame carries one or more envelopes: count it on its first.
    let mut previous_frame = None;
    each_event(data, 0, &mut |frame, envelope| {
        if previous_frame != Some(frame.index) {
            totals.frames += 1;
            previous_frame = Some(frame.index);
        }
        totals.events += 1;
        totals.first.get_or_insert(envelope.index);
        totals.last = envelope.index;
        totals.payload_bytes += envelope.payload.len() as u64;
        visit(envelope);
        true
    })?;
    assert!(
        totals.frames <= totals.events,
        "every frame counted holds an event"
    );
    Ok(totals)
}

/// Replays the log without the application's types: event count, time and a digest of the
/// payload stream in log order (FNV-1a-64).
pub fn replay_stream(data: &Path, out: &mut dyn Write) -> Result<(), String> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (mut count, mut digest, mut last) = (0u64, 0xcbf2_9ce4_8422_2325u64, 0u64);
    each_event(data, 0, &mut |_, envelope| {
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
    if terminal && count >= PROGRESS_EVERY_EVENTS {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    writeln!(out, "replayed {count} events (last index {last}) in {seconds:.3} s; stream digest {digest:016x}").map_err(io)
}

/// Whole-log scans `log verify` makes at most. Damage is reported once two scans in a row
/// find the same; beside a running server a scan can fail on the moving log without damage (a
/// segment compacted away after it was listed, a frame read while its write was landing), and
/// the next scan, of the log as it is then, does not fail the same way.
const VERIFY_SCANS_MAX: usize = 5;

/// Checks every frame, envelope and snapshot; `Err` names the file and offset of damage.
///
/// Safe beside a running server: damage is reported only when a second scan finds it again
/// (at most `VERIFY_SCANS_MAX` scans); snapshots are listed after the scan (the log never starts past
/// the newest snapshot, so the newest listed then covers the start the scan saw); a snapshot
/// pruned between listing and reading is noted, not damage.
pub fn log_verify(data: &Path, out: &mut dyn Write) -> Result<(), String> {
    let log_dir = data.join(log::LOG_DIR_NAME);
    let (segments, totals, tail) = scan_whole_log(data, &log_dir)?;
    let (first, last) = (totals.first.unwrap_or(0), totals.last);
    let (frames, events) = (totals.frames, totals.events);
    writeln!(
        out,
        "log: {} segments, {frames} frames, {events} events, indexes {first}..={last}",
        segments.len()
    )
    .map_err(io)?;
    if let Some(torn) = tail {
        writeln!(out, "{torn}").map_err(io)?;
    }
    let snapshots = snapshot::list_snapshots(data).map_err(|e| e.to_string())?;
    for &index in &snapshots {
        check_snapshot(data, index, out)?;
    }
    // Every snapshot passed its checks, so a start loads the newest and replays the log from
    // the index after it: a log starting later (its first segments deleted with no snapshot
    // covering them) is refused there, so it must not pass here.
    let needed_from = snapshots.last().map_or(1, |newest| newest + 1);
    replay::check_first_segment(&segments, needed_from).map_err(|e| e.to_string())?;
    writeln!(out, "ok").map_err(io)
}

/// A whole-log scan whose failure, if any, a second scan confirmed: the segments listed before
/// it, its totals and the torn-tail note of its last segment.
fn scan_whole_log(
    data: &Path,
    log_dir: &Path,
) -> Result<(Vec<u64>, Totals, Option<String>), String> {
    let mut previous_error = None;
    for _ in 0..VERIFY_SCANS_MAX {
        let segments = log::list_segments(log_dir).map_err(|e| e.to_string())?;
        let scanned = scan_totals(data, &mut |_| {})
            .and_then(|totals| Ok((totals, torn_tail(log_dir, &segments)?)));
        match scanned {
            Ok((totals, tail)) => return Ok((segments, totals, tail)),
            Err(error) if previous_error.as_ref() == Some(&error) => return Err(error),
            Err(error) => previous_error = Some(error),
        }
    }
    let error = previous_error.expect("every scan failed, the last one set its error");
    Err(format!(
        "{error} (the log kept changing under {VERIFY_SCANS_MAX} scans, each failing \
         differently: run it again, or with the server stopped)"
    ))
}

/// A note when the last segment ends with a torn write (bytes after its last whole frame
/// that are not the zero tail, with no whole frame after them): the next start cuts them, and
/// an operator checking a directory after a crash should see that rather than a bare "ok".
/// The bytes are read once and judged as read: beside a running server, frames appended
/// after a second read would otherwise pass for a torn tail. A segment compacted away since
/// the listing has no tail to report.
fn torn_tail(log_dir: &Path, segments: &[u64]) -> Result<Option<String>, String> {
    let Some(&last) = segments.last() else {
        return Ok(None);
    };
    let path = log::segment_path(log_dir, last);
    let mut bytes = Vec::new();
    match log::read_segment(&path, &mut bytes) {
        Err(log::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        other => other.map_err(|e| e.to_string())?,
    }
    let valid_end = log::valid_end(&path, &bytes, last).map_err(|e| e.to_string())?;
    let rest = bytes.get(valid_end as usize..).unwrap_or_default();
    if log::is_zero_tail(rest) {
        return Ok(None);
    }
    Ok(Some(format!(
        "torn tail in {} at offset {valid_end}: {} bytes after the last whole frame \
         (a write cut short, or one in progress on a running server; a start truncates them)",
        path.display(),
        rest.len()
    )))
}

/// Checks one listed snapshot. One that is gone by the time it is read while a newer one
/// exists was pruned by a running server: a note, not damage.
fn check_snapshot(data: &Path, index: u64, out: &mut dyn Write) -> Result<(), String> {
    let path = snapshot::snapshot_file(data, index);
    // A running server prunes a snapshot only once newer ones exist: two more may have been
    // written since the listing, so even the newest listed can be gone. Gone with no newer
    // one beside it is damage.
    let pruned = |source: &std::io::Error| {
        source.kind() == std::io::ErrorKind::NotFound
            && snapshot::list_snapshots(data)
                .is_ok_and(|now| now.last().is_some_and(|&newer| newer > index))
    };
    let checked = match snapshot::check_file(&path) {
        Err(log::Error::Io { source, .. }) if pruned(&source) => {
            return writeln!(
                out,
                "snapshot {}: removed while checking (pruned by a running server)",
                path.display()
            )
            .map_err(io);
        }
        other => other.map_err(|e| e.to_string())?,
    };
    match checked.map(|checked| (checked.index, checked.body_bytes)) {
        Ok((named, body_bytes)) if named == index => writeln!(
            out,
            "snapshot {}: index {index}, {body_bytes} bytes, checksums ok",
            path.display(),
        )
        .map_err(io),
        Ok((named, _)) => Err(format!("{}: names index {named}", path.display())),
        Err(reason) => Err(format!("{}: {reason}", path.display())),
    }
}

fn json_option(out: &mut String, name: &str, value: Option<&str>) {
    out.push_str(&format!(",\"{name}\":"));
    match value {
        Some(text) => out.push_str(&crate::json::quote(text)),
        None => out.push_str("null"),
    }
}

/// One envelope as a JSON line (payload as hex: the tools do not know the payload types).
fn envelope_json(line: &mut String, envelope: &EnvelopeRef<'_>) {
    line.clear();
    line.push_str(&format!(
        "{{\"index\":{},\"timestamp_ms\":{},\"type\":",
        envelope.index, envelope.timestamp_ms
    ));
    line.push_str(&crate::json::quote(envelope.event_type));
    line.push_str(&format!(
        ",\"schema_version\":{},\"request_id\":{}",
        envelope.schema_version, envelope.request_id
    ));
    json_option(line, "idempotency_key", envelope.idempotency_key);
    json_option(line, "actor", envelope.actor);
    json_option(line, "correlation_id", envelope.correlation_id);
    match envelope.request_fingerprint {
        Some(fingerprint) => {
            line.push_str(&format!(",\"request_fingerprint\":\"{fingerprint:016x}\""))
        }
        None => line.push_str(",\"request_fingerprint\":null"),
    }
    line.push_str(",\"payload_hex\":\"");
    for byte in envelope.payload {
        line.push_str(&format!("{byte:02x}"));
    }
    line.push_str("\"}\n");
}

/// Prints events in `[from, to]` (of `event_type` if given) as JSON lines. A closed pipe
/// (`| head`) ends the output without an error.
pub fn log_inspect(
    data: &Path,
    from: Option<u64>,
    to: Option<u64>,
    event_type: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let mut line = String::new();
    let mut write_error = None;
    each_event(data, from, &mut |_, envelope| {
        if envelope.index > to {
            return false;
        }
        if event_type.is_some_and(|wanted| wanted != envelope.event_type) {
            return true;
        }
        envelope_json(&mut line, &envelope);
        if let Err(error) = out.write_all(line.as_bytes()) {
            write_error = Some(error);
            return false;
        }
        true
    })?;
    match write_error {
        Some(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.to_string()),
        _ => out.flush().or(Ok(())),
    }
}

/// Prints segment, frame and event counts, sizes and events per type.
pub fn log_stats(data: &Path, out: &mut dyn Write) -> Result<(), String> {
    let log_dir = data.join(log::LOG_DIR_NAME);
    let segments = log::list_segments(&log_dir).map_err(|e| e.to_string())?;
    let mut bytes = 0u64;
    for first in &segments {
        let path = log::segment_path(&log_dir, *first);
        // Without the preallocated zero tail: the bytes the log really holds.
        bytes += log::used_bytes(&path, *first).map_err(|e| e.to_string())?;
    }
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    let totals = scan_totals(data, &mut |envelope| {
        *per_type.entry(envelope.event_type.to_string()).or_insert(0) += 1;
    })?;
    let (frames, events, payload_bytes) = (totals.frames, totals.events, totals.payload_bytes);
    let per_frame = events as f64 / frames.max(1) as f64;
    let per_event = bytes as f64 / events.max(1) as f64;
    writeln!(out, "segments: {} ({bytes} bytes)", segments.len()).map_err(io)?;
    writeln!(
        out,
        "frames: {frames}, events: {events}, events per frame: {per_frame:.1}"
    )
    .map_err(io)?;
    writeln!(
        out,
        "payload bytes: {payload_bytes}, log bytes per event: {per_event:.1}"
    )
    .map_err(io)?;
    for (name, count) in per_type {
        writeln!(out, "  {name}: {count}").map_err(io)?;
    }
    let snapshots = snapshot::list_snapshots(data).map_err(|e| e.to_string())?;
    writeln!(out, "snapshots: {snapshots:?}").map_err(io)
}

/// Lists snapshots and checks their checksums.
pub fn snapshot_list(data: &Path, out: &mut dyn Write) -> Result<(), String> {
    let indexes = snapshot::list_snapshots(data).map_err(|e| e.to_string())?;
    if indexes.is_empty() {
        writeln!(
            out,
            "no snapshots in {}",
            snapshot::snapshot_dir(data).display()
        )
        .map_err(io)?;
    }
    for &index in &indexes {
        check_snapshot(data, index, out)?;
    }
    Ok(())
}
