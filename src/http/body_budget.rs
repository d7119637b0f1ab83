//! `BodyBudget`: the bytes of request bodies the whole server holds at once.
//!
//! Why: each body is bounded (`body_bytes_max`, 2 MiB by default), but not their sum. Clients
//! that each send most of a large body, then a byte now and then to stay under the body
//! deadline, would hold `connections_max` times `body_bytes_max` (100 GiB with the defaults)
//! for as long as they like. With a budget, a body that would take the server past it is
//! refused (503 with `Retry-After`, then close) and its bytes freed at once; the bodies already
//! held go on.
//!
//! A body is charged by the capacity of its buffer (what it really takes), from its first
//! bytes until its request is dropped (a worker done with it, or its connection closed), so
//! requests waiting for a worker count too. A handler that takes the bytes out of its request
//! and keeps them is past what the server can see.
//!
//! Owns: the shared count and each body's charge against it.
//! Must not: decide what a refusal answers (the connection does).

use super::stats::BodyGauges;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The budget of one server, shared by its reactors; its count is the server's gauge.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    gauges: Arc<BodyGauges>,
    max: usize,
}

impl BodyBudget {
    /// A budget of `max` bytes, counted in `gauges` (none used yet).
    pub(crate) fn new(max: usize, gauges: Arc<BodyGauges>) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { gauges, max })
    }

    /// Bytes charged now, by every body held.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.gauges.held_bytes.load(Ordering::Relaxed)
    }

    /// Adds `bytes` if the sum stays within the budget; false (and nothing added, a refusal
    /// counted) otherwise.
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .gauges
            .held_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&sum| sum <= self.max)
            })
            .is_ok();
        if !taken {
            self.gauges.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    fn give_back(&self, bytes: usize) {
        let before = self.gauges.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "a body gives back only what it was charged"
        );
    }
}

/// What one body is charged; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct BodyCharge {
    charged: Option<(Arc<BodyBudget>, usize)>,
}

impl BodyCharge {
    /// Charges the body up to `capacity` bytes against `budget` (a body only grows, so only
    /// the growth is added). False when the budget cannot take it: the charge is unchanged,
    /// and the caller refuses the body.
    pub(crate) fn cover(&mut self, budget: &Arc<BodyBudget>, capacity: usize) -> bool {
        let (held, charged) = self.charged.get_or_insert_with(|| (Arc::clone(budget), 0));
        debug_assert!(Arc::ptr_eq(held, budget), "one budget per body");
        let Some(growth) = capacity.checked_sub(*charged).filter(|&g| g > 0) else {
            return true;
        };
        if !held.take(growth) {
            return false;
        }
        *charged = capacity;
        true
    }

    /// Bytes charged now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.charged.as_ref().map_or(0, |(_, bytes)| *bytes)
    }
}

impl Drop for BodyCharge {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = self.charged.take() {
            budget.give_back(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_charged_by_growth_and_give_back_on_drop() {
        let budget = BodyBudget::new(1000, Arc::default());
        let mut a = BodyCharge::default();
        assert!(a.cover(&budget, 300));
        assert!(a.cover(&budget, 300), "no growth, no charge");
        assert!(a.cover(&budget, 200), "a smaller capacity charges nothing");
        assert_eq!((a.bytes(), budget.used()), (300, 300));
        let mut b = BodyCharge::default();
        assert!(b.cover(&budget, 700));
        assert_eq!(budget.used(), 1000);
        // Past the budget: refused, nothing added, the earlier charge kept.
        assert!(!a.cover(&budget, 301));
        assert_eq!((a.bytes(), budget.used()), (300, 1000));
        drop(b);
        assert_eq!(budget.used(), 300);
        assert!(a.cover(&budget, 1000));
        drop(a);
        assert_eq!(budget.used(), 0);
        // A charge that never covered anything gives back nothing.
        drop(BodyCharge::default());
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.gauges.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_bodies_never_take_the_budget_past_its_bound() {
        let budget = BodyBudget::new(64 * 1024, Arc::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let budget = &budget;
                scope.spawn(move || {
                    for round in 0..2_000 {
                        let mut charge = BodyCharge::default();
                        for step in 1..=8 {
                            if !charge.cover(budget, step * 1024 + round % 7) {
                                break;
                            }
                            assert!(budget.used() <= 64 * 1024);
                        }
                    }
                });
            }
        });
        assert_eq!(budget.used(), 0, "every charge was given back");
    }
}
