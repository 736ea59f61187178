//! When startup restarts a component that ended: a budget of restarts per
//! time window (spec `max_restarts` within `restart_window_s`, like
//! systemd's `StartLimitBurst` within `StartLimitIntervalSec`) and a delay
//! before each restart that doubles with every restart in the window.
//!
//! Pure arithmetic on nanosecond timestamps, so that host tests check it.
//! Unlike systemd, a spent budget does not end the component for good:
//! startup holds it down until the window ends, so a component that keeps
//! crashing costs at most `max_restarts` restarts per window, forever.

/// The delay before the first restart in a window.
pub const FIRST_DELAY_NS: u64 = 10_000_000;
/// The longest delay between restarts within a window, and the shortest
/// hold-down after a spent budget.
pub const MAX_DELAY_NS: u64 = 2_000_000_000;

const NS_PER_S: u64 = 1_000_000_000;

/// A component's restart budget, from its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub max_restarts: u32,
    pub window_s: u32,
}

impl RestartLimit {
    fn window_ns(&self) -> u64 {
        u64::from(self.window_s).saturating_mul(NS_PER_S)
    }
}

/// What startup does about a component that ended and wants a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart it after `delay_ns`; it is restart `nth` of this window.
    Restart { delay_ns: u64, nth: u32 },
    /// The window's budget is spent: restart it after `delay_ns` (when the
    /// window has ended), as the first restart of the next window.
    HoldDown { delay_ns: u64 },
    /// `max_restarts` is 0: never restart it.
    Never,
}

/// The restarts of one component in its current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartWindow {
    /// When the window began (ns since boot).
    start_ns: u64,
    /// Restarts in it so far.
    count: u32,
}

impl RestartWindow {
    /// Decides about a restart asked for at `now_ns`, and counts it.
    pub fn decide(&mut self, limit: RestartLimit, now_ns: u64) -> RestartDecision {
        if limit.max_restarts == 0 {
            return RestartDecision::Never;
        }
        let window_end = self.start_ns.saturating_add(limit.window_ns());
        if self.count == 0 || now_ns >= window_end {
            self.start_ns = now_ns;
            self.count = 0;
        }
        if self.count < limit.max_restarts {
            self.count += 1;
            return RestartDecision::Restart {
                delay_ns: backoff_ns(self.count),
                nth: self.count,
            };
        }
        let delay_ns = window_end.saturating_sub(now_ns).max(MAX_DELAY_NS);
        self.start_ns = now_ns.saturating_add(delay_ns);
        self.count = 1;
        RestartDecision::HoldDown { delay_ns }
    }
}

/// The delay before restart `nth` (1 = first) of a window: 10 ms, doubling,
/// at most 2 s.
pub fn backoff_ns(nth: u32) -> u64 {
    let doublings = nth.saturating_sub(1);
    match 1u64.checked_shl(doublings) {
        Some(factor) if factor <= MAX_DELAY_NS / FIRST_DELAY_NS => FIRST_DELAY_NS * factor,
        _ => MAX_DELAY_NS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const LINUX: RestartLimit = RestartLimit {
        max_restarts: 5,
        window_s: 60,
    };

    #[test]
    fn backoff_doubles_from_10_ms_to_a_2_s_cap() {
        let delays: Vec<u64> = (1..=10).map(backoff_ns).collect();
        assert_eq!(
            delays,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000].map(|ms| ms * MS)
        );
        assert_eq!(backoff_ns(0), 10 * MS);
        assert_eq!(backoff_ns(64), MAX_DELAY_NS);
        assert_eq!(backoff_ns(u32::MAX), MAX_DELAY_NS);
    }

    #[test]
    fn restarts_within_the_budget_back_off() {
        let mut w = RestartWindow::default();
        let now = 100 * S;
        for nth in 1..=5 {
            assert_eq!(
                w.decide(LINUX, now + u64::from(nth) * S),
                RestartDecision::Restart {
                    delay_ns: backoff_ns(nth),
                    nth
                }
            );
        }
    }

    #[test]
    fn a_spent_budget_holds_down_until_the_window_ends() {
        let mut w = RestartWindow::default();
        for i in 0..5 {
            w.decide(LINUX, 10 * S + i * S);
        }
        // Sixth crash at 20 s: the window began at 10 s, so it ends at 70 s.
        assert_eq!(
            w.decide(LINUX, 20 * S),
            RestartDecision::HoldDown { delay_ns: 50 * S }
        );
        // That restart (at 70 s) was the first of the next window.
        assert_eq!(
            w.decide(LINUX, 71 * S),
            RestartDecision::Restart {
                delay_ns: 20 * MS,
                nth: 2
            }
        );
    }

    #[test]
    fn a_hold_down_lasts_at_least_the_longest_backoff() {
        let mut w = RestartWindow::default();
        let limit = RestartLimit {
            max_restarts: 1,
            window_s: 1,
        };
        w.decide(limit, 0);
        assert_eq!(
            w.decide(limit, 999 * MS),
            RestartDecision::HoldDown {
                delay_ns: MAX_DELAY_NS
            }
        );
    }

    /// Six crashes a minute apart: each is the first of its window, so
    /// the budget never runs out (the old counter gave up after five).
    #[test]
    fn the_budget_is_replenished_after_a_quiet_window() {
        let mut w = RestartWindow::default();
        for i in 0..100u64 {
            assert_eq!(
                w.decide(LINUX, 5 * S + i * 61 * S),
                RestartDecision::Restart {
                    delay_ns: 10 * MS,
                    nth: 1
                }
            );
        }
    }

    #[test]
    fn zero_max_restarts_never_restarts() {
        let mut w = RestartWindow::default();
        let limit = RestartLimit {
            max_restarts: 0,
            window_s: 60,
        };
        assert_eq!(w.decide(limit, 0), RestartDecision::Never);
        assert_eq!(w.decide(limit, 1000 * S), RestartDecision::Never);
    }

    #[test]
    fn times_near_the_end_of_u64_saturate() {
        let mut w = RestartWindow::default();
        let limit = RestartLimit {
            max_restarts: 1,
            window_s: 86_400,
        };
        assert!(matches!(
            w.decide(limit, u64::MAX - 10 * S),
            RestartDecision::Restart { nth: 1, .. }
        ));
        assert_eq!(
            w.decide(limit, u64::MAX - 5 * S),
            RestartDecision::HoldDown { delay_ns: 5 * S }
        );
    }
}
