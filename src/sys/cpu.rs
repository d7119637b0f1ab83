//! Which CPU the calling thread runs on, and restricting it to one CPU for a while (Linux:
//! `sched_getcpu`, `sched_getaffinity`, `sched_setaffinity`).
//!
//! Owns: the hand-declared bindings and their safe wrappers. Must not: decide when to pin
//! (`log::sync` does). Elsewhere than Linux, [`current`] returns `None` and pinning does
//! nothing.

/// CPUs a mask covers (glibc's `cpu_set_t` size: 1024 bits).
pub const CPUS_MAX: usize = 1024;

/// A thread's allowed CPUs, as the kernel gives and takes them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CpuMask([u64; CPUS_MAX / 64]);

impl std::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<usize> = (0..CPUS_MAX)
            .filter(|&cpu| self.0[cpu / 64] & (1 << (cpu % 64)) != 0)
            .collect();
        write!(f, "CpuMask{cpus:?}")
    }
}

impl CpuMask {
    /// The mask allowing only `cpu` (< [`CPUS_MAX`]).
    pub fn only(cpu: usize) -> Self {
        let mut words = [0_u64; CPUS_MAX / 64];
        words[cpu / 64] = 1 << (cpu % 64);
        CpuMask(words)
    }

    /// Whether `cpu` is allowed.
    pub fn allows(&self, cpu: usize) -> bool {
        cpu < CPUS_MAX && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }
}

/// The CPU the calling thread runs on now (it may move right after), if the platform says.
pub fn current() -> Option<usize> {
    imp::current()
}

/// The calling thread's allowed CPUs, if the platform says.
pub fn allowed() -> Option<CpuMask> {
    imp::allowed()
}

/// Restricts the calling thread to `mask` (it moves at once if it runs elsewhere); returns
/// whether the kernel accepted it.
pub fn restrict(mask: &CpuMask) -> bool {
    imp::restrict(mask)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{CpuMask, CPUS_MAX};

    extern "C" {
        fn sched_getcpu() -> i32;
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }

    pub fn current() -> Option<usize> {
        // SAFETY: no arguments; returns a CPU number or -1.
        let cpu = unsafe { sched_getcpu() };
        usize::try_from(cpu).ok().filter(|&cpu| cpu < CPUS_MAX)
    }

    pub fn allowed() -> Option<CpuMask> {
        let mut words = [0_u64; CPUS_MAX / 64];
        // SAFETY: `words` is a live, writable buffer of exactly the size passed (pid 0: the
        // calling thread); the kernel writes at most that many bytes.
        let result =
            unsafe { sched_getaffinity(0, std::mem::size_of_val(&words), words.as_mut_ptr()) };
        (result == 0).then_some(CpuMask(words))
    }

    pub fn restrict(mask: &CpuMask) -> bool {
        // SAFETY: `mask.0` is a live buffer of exactly the size passed, only read by the
        // kernel (pid 0: the calling thread).
        let result =
            unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask.0), mask.0.as_ptr()) };
        result == 0
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::CpuMask;

    pub fn current() -> Option<usize> {
        None
    }

    pub fn allowed() -> Option<CpuMask> {
        None
    }

    pub fn restrict(_mask: &CpuMask) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_restricted_to_one_allowed_cpu_runs_there_and_gets_its_mask_back() {
        std::thread::spawn(|| {
            let (Some(mask), Some(_)) = (allowed(), current()) else {
                return; // Not Linux: nothing to check.
            };
            let cpu = (0..CPUS_MAX)
                .rev()
                .find(|&cpu| mask.allows(cpu))
                .expect("a thread runs on some CPU");
            assert!(restrict(&CpuMask::only(cpu)));
            assert_eq!(current(), Some(cpu));
            assert_eq!(allowed(), Some(CpuMask::only(cpu)));
            assert!(restrict(&mask));
            assert_eq!(allowed(), Some(mask));
        })
        .join()
        .expect("test thread");
    }
}
