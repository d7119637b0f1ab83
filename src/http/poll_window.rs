//! `PollWindow`: how long a reactor keeps polling for events before it sleeps in the kernel.
//!
//! Why: a reactor that sleeps in `epoll_wait` between requests must be woken by the kernel when
//! the next one arrives, and that wake-up (an inter-processor interrupt, a scheduler pass) is
//! paid by the *sender*, inside its `write`. Under sustained load the next request is only
//! microseconds away, so a short spell of non-blocking polls catches it with no wake-up at
//! all: measured on loopback (perf on wrk), the wake-ups went from 3.5-4.9 % of the client's
//! CPU to 2.2-2.8 %, and one sequential client got its answers faster (`benches/poll-cost.sh`
//! compares). Under light load the spell would
//! only burn CPU, so the window adapts, as Linux KVM's halt-polling does: it grows (doubling
//! from [`POLL_WINDOW_START_US`]) when the reactor slept less than the most it may poll (a
//! longer spell would have caught the event), and halves (to zero below the start) when it
//! slept longer or woke with nothing. A spell that catches an event leaves it as it is.
//!
//! Polling yields the CPU between polls; a yield that took [`POLL_YIELD_CONTENDED_US`] or
//! more means another thread ran there (a worker, the log writer, another process on a busy
//! machine), whose time the polling would take: the spell ends, the window closes, and it
//! reopens only as sleeps prove short again. On a CPU of its own (the benchmarks' setting) a
//! yield returns at once and polling goes on.
//!
//! Owns: the window and its adaptation; pure (fed durations, no clock, no I/O).
//! Must not: poll or read the clock itself (the reactor does both).

/// Where a growing window starts, in microseconds (then it doubles up to the maximum).
pub const POLL_WINDOW_START_US: u64 = 10;

/// A yield between polls that took this long (microseconds) means another thread wanted the
/// CPU (an uncontended `sched_yield` returns in about a microsecond).
pub const POLL_YIELD_CONTENDED_US: u64 = 10;

/// The adaptive polling window of one reactor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollWindow {
    max_us: u64,
    window_us: u64,
}

impl PollWindow {
    /// A window that never exceeds `max_us` (0: never poll, always sleep at once). It starts
    /// closed and opens only once sleeps turn out short.
    pub fn new(max_us: u64) -> PollWindow {
        PollWindow {
            max_us,
            window_us: 0,
        }
    }

    /// How long to poll before sleeping, in microseconds (0: sleep at once).
    pub fn window_us(&self) -> u64 {
        self.window_us
    }

    /// Whether the window can ever open (the reactor reads the clock around idle spells only
    /// then).
    pub fn enabled(&self) -> bool {
        self.max_us > 0
    }

    /// Reports a spell cut short because another thread wanted the CPU: the window closes
    /// (and is not grown by the sleep that follows).
    pub fn after_contention(&mut self) {
        self.window_us = 0;
    }

    /// Reports an idle spell that ended in a sleep: `idle_us` from the end of the last turn's
    /// work to the end of the sleep (polling included), and whether the sleep ended with
    /// events (false: a timer timeout or a spurious return). A spell that polling ended is
    /// not reported: it changes nothing.
    pub fn after_sleep(&mut self, idle_us: u64, woke_with_events: bool) {
        if !self.enabled() {
            return;
        }
        if woke_with_events && idle_us <= self.max_us {
            self.window_us = (self.window_us * 2)
                .max(POLL_WINDOW_START_US)
                .min(self.max_us);
        } else {
            self.window_us /= 2;
            if self.window_us < POLL_WINDOW_START_US {
                self.window_us = 0;
            }
        }
        debug_assert!(self.window_us <= self.max_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_window_never_opens() {
        let mut window = PollWindow::new(0);
        for _ in 0..10 {
            window.after_sleep(1, true);
        }
        assert_eq!(window.window_us(), 0);
        assert!(!window.enabled());
    }

    #[test]
    fn short_sleeps_open_the_window_by_doubling_up_to_the_maximum() {
        let mut window = PollWindow::new(50);
        assert_eq!(window.window_us(), 0, "it starts closed");
        let mut seen = Vec::new();
        for _ in 0..5 {
            window.after_sleep(30, true);
            seen.push(window.window_us());
        }
        assert_eq!(seen, [10, 20, 40, 50, 50]);
    }

    #[test]
    fn long_sleeps_and_empty_wakeups_close_the_window_by_halving() {
        let mut window = PollWindow::new(80);
        for _ in 0..4 {
            window.after_sleep(5, true);
        }
        assert_eq!(window.window_us(), 80);
        window.after_sleep(81, true);
        assert_eq!(window.window_us(), 40);
        window.after_sleep(5, false);
        assert_eq!(window.window_us(), 20);
        window.after_sleep(1_000_000, true);
        assert_eq!(window.window_us(), 10);
        window.after_sleep(1_000_000, true);
        assert_eq!(window.window_us(), 0, "below the start it closes");
        window.after_sleep(1_000_000, true);
        assert_eq!(window.window_us(), 0);
    }

    #[test]
    fn contention_closes_the_window_and_short_sleeps_reopen_it() {
        let mut window = PollWindow::new(50);
        for _ in 0..3 {
            window.after_sleep(5, true);
        }
        assert_eq!(window.window_us(), 40);
        window.after_contention();
        assert_eq!(window.window_us(), 0);
        window.after_sleep(5, true);
        assert_eq!(window.window_us(), 10);
    }

    #[test]
    fn a_maximum_below_the_start_caps_the_window() {
        let mut window = PollWindow::new(4);
        window.after_sleep(2, true);
        assert_eq!(window.window_us(), 4);
        window.after_sleep(2, true);
        assert_eq!(window.window_us(), 4);
        window.after_sleep(5, true);
        assert_eq!(window.window_us(), 0);
    }
}
