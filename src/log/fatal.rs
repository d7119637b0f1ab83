//! Stopping the process when a thread that owns durable or replicated state cannot go on.
//!
//! Owns: the rule that such a thread never dies quietly. A panic there is a broken invariant
//! or a bug in code that must not fail (`apply`, the sequencer, the log writer, the Raft
//! driver); leaving the rest of the process running would keep answering reads from a state
//! that no longer advances while every write waits for good. Stopping loudly lets a supervisor
//! restart the node, which recovers from its log.
//! Must not: be used on threads that run application code they can contain (HTTP workers,
//! stream threads): those catch the panic and answer 500 instead.

/// Aborts the process if the thread holding it unwinds from a panic. Create one at the top of
/// a critical thread's body; it does nothing on a normal return.
#[must_use = "the guard acts when dropped: bind it to a variable for the thread's whole body"]
pub(crate) struct AbortOnPanic {
    thread: &'static str,
}

impl AbortOnPanic {
    /// A guard for the thread named `thread` (for the message).
    pub(crate) fn new(thread: &'static str) -> Self {
        Self { thread }
    }
}

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The panic's own message and location were printed just before, by the hook.
            eprintln!(
                "lithair: FATAL: the {} thread panicked; stopping the process instead of \
                 serving without it (a restart recovers from the log)",
                self.thread
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the child process that `a_panic_under_the_guard_aborts_the_process` starts.
    const CHILD_ENV: &str = "LITHAIR_ABORT_ON_PANIC_CHILD";

    #[test]
    fn a_normal_return_under_the_guard_does_nothing() {
        let finished = std::thread::spawn(|| {
            let _guard = AbortOnPanic::new("test");
            7
        })
        .join();
        assert_eq!(finished.ok(), Some(7));
    }

    #[test]
    fn a_panic_under_the_guard_aborts_the_process() {
        if std::env::var_os(CHILD_ENV).is_some() {
            // The child: this panic must take the whole process down, not just this thread.
            let _ = std::thread::spawn(|| {
                let _guard = AbortOnPanic::new("test");
                panic!("a broken invariant, on purpose");
            })
            .join();
            std::process::exit(0); // reached only if the guard did not abort
        }
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new(exe)
            .args([
                "--exact",
                "log::fatal::tests::a_panic_under_the_guard_aborts_the_process",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the child went on: {stderr}");
        assert!(
            stderr.contains("FATAL: the test thread panicked"),
            "{stderr}"
        );
    }
}
