//! The `bench_server` example as a child process of an integration test (included with
//! `#[path]`): where cargo built it, and a guard that kills it when the test ends, so a failed
//! assertion leaves no server behind.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Child;

/// Kills the child process when dropped, and reaps it.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/<profile>/examples/bench_server`, beside this test binary's `deps/` directory.
///
/// # Panics
/// When the example is not built (`cargo test` builds the examples of the package first).
pub fn bench_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bench = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples/bench_server");
    assert!(
        bench.exists(),
        "{} missing: build examples first",
        bench.display()
    );
    bench
}
