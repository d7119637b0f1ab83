//! A linearizability checker for a per-key register (Wing–Gong search with memoization of
//! visited (linearized set, value) states, as in Porcupine / Lowe), over client histories of
//! invoke and return times.
//!
//! Owns: the verdict "this history could have come from one atomic register per key".
//! Must not: run unbounded; the search stops at a state budget and says `Unknown`.

use std::collections::{BTreeMap, HashSet};

/// The return time of an operation whose outcome the client never learned (it may or may
/// not have taken effect, at any time after its invocation).
pub const RETURN_UNKNOWN: u64 = u64::MAX;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote the value.
    Put(u64),
    /// Read the value (`0` when the key was never written).
    Get(u64),
}

/// One client operation on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (for reports only).
    pub client: u64,
    /// The register.
    pub key: u64,
    /// When the client invoked it.
    pub invoke: u64,
    /// When it returned (`RETURN_UNKNOWN` if never).
    pub ret: u64,
    /// What it did.
    pub kind: OpKind,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order respects real time and register semantics for every key.
    Linearizable,
    /// No such order exists for `key`.
    NotLinearizable {
        /// The offending key.
        key: u64,
    },
    /// The search for `key` exceeded its budget.
    Unknown {
        /// The key whose search was cut short.
        key: u64,
    },
}

/// Checks a whole history, key by key (registers are independent, so the partition is exact).
pub fn check_history(history: &[Operation], states_max: usize) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for op in history {
        assert!(
            op.invoke < op.ret,
            "operation returns before it is invoked: {op:?}"
        );
        by_key.entry(op.key).or_default().push(*op);
    }
    for (key, ops) in by_key {
        match check_register(ops, states_max) {
            Some(true) => {}
            Some(false) => return Verdict::NotLinearizable { key },
            None => return Verdict::Unknown { key },
        }
    }
    Verdict::Linearizable
}

/// One search frame: the set linearized so far, the register value, the earliest return among
/// the rest (an op invoked after it cannot go next) and the next candidate position to try.
struct Frame {
    done: Vec<u64>,
    value: u64,
    min_ret: u64,
    next: usize,
}

fn is_done(done: &[u64], k: usize) -> bool {
    done[k / 64] & (1 << (k % 64)) != 0
}

fn min_return(ops: &[Operation], done: &[u64]) -> u64 {
    (0..ops.len())
        .filter(|&k| !is_done(done, k))
        .map(|k| ops[k].ret)
        .min()
        .unwrap_or(RETURN_UNKNOWN)
}

/// `Some(verdict)` or `None` when the budget ran out.
fn check_register(mut ops: Vec<Operation>, states_max: usize) -> Option<bool> {
    ops.sort_by_key(|op| (op.invoke, op.ret));
    let words = ops.len().div_ceil(64);
    let done = vec![0u64; words];
    let mut visited: HashSet<(Vec<u64>, u64)> = HashSet::new();
    let mut stack = vec![Frame {
        min_ret: min_return(&ops, &done),
        done,
        value: 0,
        next: 0,
    }];
    let mut linearized = 0usize;
    while let Some(frame) = stack.last_mut() {
        if linearized == ops.len() {
            return Some(true);
        }
        // Candidates are sorted by invocation: stop at the first invoked after `min_ret`.
        let mut chosen = None;
        while frame.next < ops.len() && ops[frame.next].invoke <= frame.min_ret {
            let k = frame.next;
            frame.next += 1;
            if is_done(&frame.done, k) {
                continue;
            }
            let value = match ops[k].kind {
                OpKind::Put(v) => v,
                OpKind::Get(v) if v == frame.value => v,
                OpKind::Get(_) => continue,
            };
            let mut done = frame.done.clone();
            done[k / 64] |= 1 << (k % 64);
            if visited.insert((done.clone(), value)) {
                chosen = Some((done, value));
                break;
            }
        }
        match chosen {
            Some((done, value)) => {
                if visited.len() > states_max {
                    return None;
                }
                stack.push(Frame {
                    min_ret: min_return(&ops, &done),
                    done,
                    value,
                    next: 0,
                });
                linearized += 1;
            }
            None => {
                stack.pop();
                linearized = linearized.saturating_sub(1);
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, invoke: u64, ret: u64, kind: OpKind) -> Operation {
        Operation {
            client,
            key: 1,
            invoke,
            ret,
            kind,
        }
    }

    const BUDGET: usize = 100_000;

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            op(1, 0, 1, OpKind::Get(0)),
            op(1, 2, 3, OpKind::Put(5)),
            op(2, 4, 5, OpKind::Get(5)),
        ];
        assert_eq!(check_history(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_not() {
        let history = [op(1, 0, 1, OpKind::Put(5)), op(2, 2, 3, OpKind::Get(0))];
        assert_eq!(
            check_history(&history, BUDGET),
            Verdict::NotLinearizable { key: 1 }
        );
    }

    #[test]
    fn concurrent_reads_may_see_either_value_but_not_flip_back() {
        // The write overlaps both reads; the reads are ordered: new then old is impossible.
        let ok = [
            op(1, 0, 10, OpKind::Put(7)),
            op(2, 1, 2, OpKind::Get(0)),
            op(3, 3, 4, OpKind::Get(7)),
        ];
        assert_eq!(check_history(&ok, BUDGET), Verdict::Linearizable);
        let bad = [
            op(1, 0, 10, OpKind::Put(7)),
            op(2, 1, 2, OpKind::Get(7)),
            op(3, 3, 4, OpKind::Get(0)),
        ];
        assert_eq!(
            check_history(&bad, BUDGET),
            Verdict::NotLinearizable { key: 1 }
        );
    }

    #[test]
    fn unknown_writes_may_or_may_not_take_effect() {
        let seen = [
            op(1, 0, RETURN_UNKNOWN, OpKind::Put(3)),
            op(2, 5, 6, OpKind::Get(3)),
        ];
        assert_eq!(check_history(&seen, BUDGET), Verdict::Linearizable);
        let unseen = [
            op(1, 0, RETURN_UNKNOWN, OpKind::Put(3)),
            op(2, 5, 6, OpKind::Get(0)),
        ];
        assert_eq!(check_history(&unseen, BUDGET), Verdict::Linearizable);
        // But a value nobody wrote can never be read.
        let invented = [
            op(1, 0, RETURN_UNKNOWN, OpKind::Put(3)),
            op(2, 5, 6, OpKind::Get(4)),
        ];
        assert_eq!(
            check_history(&invented, BUDGET),
            Verdict::NotLinearizable { key: 1 }
        );
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut history = vec![op(1, 0, 1, OpKind::Put(1))];
        history.push(Operation {
            client: 2,
            key: 2,
            invoke: 2,
            ret: 3,
            kind: OpKind::Get(0),
        });
        assert_eq!(check_history(&history, BUDGET), Verdict::Linearizable);
        history.push(op(2, 4, 5, OpKind::Get(0)));
        assert_eq!(
            check_history(&history, BUDGET),
            Verdict::NotLinearizable { key: 1 }
        );
    }

    #[test]
    fn budget_exhaustion_is_reported_not_guessed() {
        // Many concurrent writes and one impossible read: the search must explore a lot.
        let mut history: Vec<Operation> =
            (0..12).map(|v| op(v, 0, 100, OpKind::Put(v + 1))).collect();
        history.push(op(99, 101, 102, OpKind::Get(50)));
        assert_eq!(check_history(&history, 10), Verdict::Unknown { key: 1 });
        assert_eq!(
            check_history(&history, 1_000_000),
            Verdict::NotLinearizable { key: 1 }
        );
    }

    #[test]
    fn many_overlapping_ops_stay_within_budget() {
        // Three clients, 60 ops each, every op overlapping its neighbours: a realistic sim load.
        let mut history = Vec::new();
        let mut value = 0;
        for step in 0..60u64 {
            for client in 0..3u64 {
                let invoke = step * 10 + client;
                let kind = if client == 0 {
                    value = step + 1;
                    OpKind::Put(value)
                } else {
                    OpKind::Get(if client == 1 {
                        value.saturating_sub(1)
                    } else {
                        value
                    })
                };
                history.push(op(client, invoke, invoke + 12, kind));
            }
        }
        assert_eq!(check_history(&history, BUDGET), Verdict::Linearizable);
    }
}
