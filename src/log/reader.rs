//! Reading stored frames by index range without the writer: replication, subscriptions'
//! catch-up, and the `log` tools.
//!
//! Owns: iteration over segment files from a given index. Must not: modify files, or take the
//! data-directory lock (tools may read a live log).

use super::frame::Frame;
use super::segment::{self, Ending};
use super::Error;
use std::path::Path;

/// Visits every stored frame that holds entries at or after `from_index`, oldest first, until
/// `visit` returns `false` or the log ends.
///
/// A partial frame at the very end (a write in progress or a torn tail) ends the iteration;
/// damage followed by valid data is [`Error::Corrupt`]. Frames may start before `from_index`:
/// skip their first entries.
pub fn read_range(
    log_dir: &Path,
    from_index: u64,
    visit: &mut dyn FnMut(&Frame<'_>) -> Result<bool, Error>,
) -> Result<(), Error> {
    let firsts = segment::list_segments(log_dir)?;
    let start = firsts
        .iter()
        .rposition(|&first| first <= from_index)
        .unwrap_or(0);
    let mut buffer = Vec::new();
    let mut stopped = false;
    for (position, &first) in firsts.iter().enumerate().skip(start) {
        let path = segment::segment_path(log_dir, first);
        segment::read_segment(&path, &mut buffer)?;
        let mut filter = |frame: &Frame<'_>| {
            if stopped || frame.count == 0 || frame.last_index() < from_index {
                return Ok(());
            }
            stopped = !visit(frame)?;
            Ok(())
        };
        let scan = segment::scan_segment(&path, &buffer, first, &mut filter)?;
        let is_last = position + 1 == firsts.len();
        if let (Ending::Torn { offset, reason }, false) = (scan.ending, is_last) {
            let reason = format!("{reason} in a segment that is not the last");
            return Err(Error::Corrupt {
                path,
                offset,
                reason,
            });
        }
        if stopped {
            break;
        }
    }
    Ok(())
}
