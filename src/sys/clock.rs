//! The kernel's monotonic clocks read directly: the precise one, and the coarse one the kernel
//! updates once per tick (1 to 10 ms), which costs a few nanoseconds to read where the precise
//! one costs some 30 (both through the vDSO here: 6 ns against 30 ns a read).
//!
//! Owns: `clock_gettime` for `CLOCK_MONOTONIC` and `CLOCK_MONOTONIC_COARSE`.
//! Must not: decide what is timed; callers pick which clock they can afford.

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod linux {
    use std::ffi::{c_int, c_long};

    pub(super) const CLOCK_MONOTONIC: c_int = 1;
    pub(super) const CLOCK_MONOTONIC_COARSE: c_int = 6;

    #[repr(C)]
    struct Timespec {
        seconds: c_long,
        nanoseconds: c_long,
    }

    extern "C" {
        fn clock_gettime(clock: c_int, time: *mut Timespec) -> c_int;
    }

    /// `clock` in microseconds, or `None` if the kernel refuses it (a coarse clock is
    /// missing before Linux 2.6.32).
    pub(super) fn read_us(clock: c_int) -> Option<u64> {
        let mut time = Timespec {
            seconds: 0,
            nanoseconds: 0,
        };
        // SAFETY: `time` is a valid, writable timespec for the duration of the call, which
        // writes only it.
        if unsafe { clock_gettime(clock, &mut time) } != 0 {
            return None;
        }
        let seconds = u64::try_from(time.seconds).ok()?;
        let micros = u64::try_from(time.nanoseconds).ok()? / 1_000;
        Some(seconds.saturating_mul(1_000_000).saturating_add(micros))
    }
}

/// The monotonic clock (`CLOCK_MONOTONIC`, the clock `std::time::Instant` reads on Linux) in
/// microseconds since an arbitrary start; `None` where it is not read this way (not 64-bit
/// Linux).
pub fn monotonic_us() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    return linux::read_us(linux::CLOCK_MONOTONIC);
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    return None;
}

/// The same clock as [`monotonic_us`] as of the kernel's last tick (`CLOCK_MONOTONIC_COARSE`):
/// never ahead of it, behind by at most a tick, and several times cheaper to read. `None`
/// where it is not available.
pub fn coarse_monotonic_us() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    return linux::read_us(linux::CLOCK_MONOTONIC_COARSE);
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    return None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn the_coarse_clock_trails_the_precise_one_by_at_most_a_tick() {
        // A tick is at most 10 ms (HZ=100); allow scheduling noise on top.
        const TICK_US_MAX: u64 = 10_000;
        for _ in 0..1_000 {
            let coarse = coarse_monotonic_us().expect("CLOCK_MONOTONIC_COARSE");
            let precise = monotonic_us().expect("CLOCK_MONOTONIC");
            assert!(coarse <= precise, "coarse {coarse} ahead of {precise}");
            assert!(precise - coarse < TICK_US_MAX * 5, "{precise} - {coarse}");
        }
        // Both advance, and the coarse one by whole ticks.
        let before = coarse_monotonic_us().expect("coarse");
        std::thread::sleep(std::time::Duration::from_millis(25));
        let after = coarse_monotonic_us().expect("coarse");
        assert!(after >= before + 10_000, "{before} -> {after}");
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn the_precise_clock_runs_with_instant() {
        let base = monotonic_us().expect("monotonic");
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let elapsed = start.elapsed().as_micros() as u64;
        let now = monotonic_us().expect("monotonic");
        // Read around the same interval: the raw difference brackets Instant's.
        assert!(now - base >= elapsed, "{} < {elapsed}", now - base);
        assert!(now - base < elapsed + 2_000, "{} vs {elapsed}", now - base);
    }

    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    #[test]
    fn elsewhere_the_clocks_are_not_read() {
        assert_eq!((monotonic_us(), coarse_monotonic_us()), (None, None));
    }
}
