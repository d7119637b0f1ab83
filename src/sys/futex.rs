//! `futex(2)` wait and wake-all on an `AtomicU32` (Linux), so one system call can wake every
//! thread waiting on a word: the engine's applier wakes a whole batch of submitters at once
//! instead of one `unpark` (and possibly one preemption of itself) per submitter.
//!
//! Owns: the hand-declared `syscall` binding and its safe wrappers. Must not: decide who waits
//! on what (`engine::queue` does). Elsewhere than 64-bit Linux on x86_64, aarch64 or riscv64
//! (the targets whose `SYS_FUTEX` number is declared here), waiting returns at once (callers
//! re-check their condition in a loop, so that degrades to a yielding spin, never a hang).
//!
//! Why a waker may skip the system call when it counts no sleeper: the kernel reads the word
//! inside `FUTEX_WAIT` after a full barrier and compares it atomically with queueing the
//! waiter. So a waiter that announces itself (SeqCst), then waits for the value it read
//! earlier, and a waker that changes the word (SeqCst), then reads the sleeper count, cannot
//! both miss each other: either the waker sees the sleeper and wakes it, or the kernel sees
//! the changed word and the wait returns at once.

use std::sync::atomic::AtomicU32;

/// Whether [`wait`] really sleeps on this platform (callers pick another mechanism if not).
pub const SUPPORTED: bool = imp::SUPPORTED;

/// Sleeps while `word` holds `expected` (returns at once if it does not, and may return
/// spuriously: re-check in a loop).
pub fn wait(word: &AtomicU32, expected: u32) {
    imp::wait(word, expected);
}

/// Wakes every thread sleeping in [`wait`] on `word`.
pub fn wake_all(word: &AtomicU32) {
    imp::wake_all(word);
}

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
))]
mod imp {
    use std::sync::atomic::AtomicU32;

    pub const SUPPORTED: bool = true;

    extern "C" {
        fn syscall(number: i64, ...) -> i64;
    }

    #[cfg(target_arch = "x86_64")]
    const SYS_FUTEX: i64 = 202;
    #[cfg(target_arch = "aarch64")]
    const SYS_FUTEX: i64 = 98;
    #[cfg(target_arch = "riscv64")]
    const SYS_FUTEX: i64 = 98;
    const FUTEX_WAIT_PRIVATE: i32 = 128;
    const FUTEX_WAKE_PRIVATE: i32 = 1 | 128;

    pub fn wait(word: &AtomicU32, expected: u32) {
        let address = word.as_ptr();
        // SAFETY: `address` points to a live, aligned `u32` borrowed for the whole call (the
        // kernel only reads it atomically and compares it with `expected`); the timeout
        // pointer is null (wait without a deadline) and the two trailing arguments are unused
        // by FUTEX_WAIT. A spurious or interrupted return (EINTR, EAGAIN) is fine: callers
        // re-check their condition.
        unsafe {
            syscall(
                SYS_FUTEX,
                address,
                i64::from(FUTEX_WAIT_PRIVATE),
                i64::from(expected),
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0_i64,
            );
        }
    }

    pub fn wake_all(word: &AtomicU32) {
        let address = word.as_ptr();
        // SAFETY: `address` points to a live, aligned `u32`; FUTEX_WAKE only uses it as a key
        // to find waiters and reads no other argument beyond the count.
        unsafe {
            syscall(
                SYS_FUTEX,
                address,
                i64::from(FUTEX_WAKE_PRIVATE),
                i64::from(i32::MAX),
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0_i64,
            );
        }
    }
}

/// Targets without a declared `SYS_FUTEX`: waiting yields instead of sleeping (callers loop on
/// their condition, and `SUPPORTED` tells them to prefer park/unpark).
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
)))]
mod imp {
    use std::sync::atomic::AtomicU32;

    pub const SUPPORTED: bool = false;

    pub fn wait(_word: &AtomicU32, _expected: u32) {
        std::thread::yield_now();
    }

    pub fn wake_all(_word: &AtomicU32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn wait_returns_at_once_when_the_word_changed_and_wake_releases_sleepers() {
        let word = Arc::new(AtomicU32::new(1));
        wait(&word, 0);
        let sleepers: Vec<_> = (0..3)
            .map(|_| {
                let word = Arc::clone(&word);
                std::thread::spawn(move || {
                    while word.load(Ordering::Acquire) == 1 {
                        wait(&word, 1);
                    }
                })
            })
            .collect();
        word.store(2, Ordering::Release);
        wake_all(&word);
        for sleeper in sleepers {
            sleeper.join().unwrap();
        }
    }
}
