//! Helpers shared by the integration test binaries (each includes this file with `mod common;`).
//!
//! Owns: scratch directories. Must not: hold the checks of any one topic; those stay in the
//! topic's file.

use std::path::PathBuf;

/// An empty scratch directory path for one test: `lithair-<topic>-<name>-<pid>` under the
/// system temp directory, with whatever an earlier run left there removed. The process id keeps
/// concurrent test runs apart; the test removes the directory when it passes.
pub fn fresh_dir(topic: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithair-{topic}-{name}-{}", std::process::id()));
    // A leftover from a failed run is expected; a missing directory is the normal case.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
