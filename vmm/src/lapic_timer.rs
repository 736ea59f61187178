//! The local APIC timer: one-shot and periodic counting at a fixed
//! frequency (divided by the divide configuration register), and the
//! TSC-deadline mode, all kept as an absolute deadline in host
//! nanoseconds.
//!
//! The counter is never stepped: the current count is computed from the
//! time the count was loaded, and the VMM asks [`ApicTimer::poll`] whether
//! the deadline passed.

/// The frequency the timer counts at before division, in Hz: 1 GHz, one
/// count per nanosecond (the guest calibrates it, or uses TSC-deadline).
pub const TIMER_HZ: u64 = 1_000_000_000;
/// The shortest period a periodic timer gets, in ns: a guest that loads a
/// tiny count cannot make the VMM exit millions of times a second.
pub const MIN_PERIOD_NS: u64 = 100_000;

/// LVT timer mode (bits 17-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

impl TimerMode {
    /// The mode an LVT timer value selects (the reserved mode 3 counts as
    /// one-shot).
    pub fn of_lvt(lvt: u32) -> TimerMode {
        match (lvt >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }
}

/// The timer's counting state.
#[derive(Debug, Clone, Default)]
pub struct ApicTimer {
    /// Divide configuration register (bits 0, 1 and 3 used).
    divide: u32,
    /// Initial count register.
    initial: u32,
    /// When the count was loaded (or the current period began).
    start_ns: u64,
    /// When it fires next.
    deadline_ns: Option<u64>,
    /// The TSC-deadline MSR as the guest wrote it.
    tsc_deadline: u64,
}

impl ApicTimer {
    pub fn divide(&self) -> u32 {
        self.divide
    }

    pub fn initial(&self) -> u32 {
        self.initial
    }

    pub fn tsc_deadline(&self) -> u64 {
        self.tsc_deadline
    }

    /// The divisor the divide configuration selects (1 to 128).
    pub fn divisor(&self) -> u64 {
        let code = (self.divide & 3) | ((self.divide >> 1) & 4);
        match code {
            7 => 1,
            c => 2 << c,
        }
    }

    fn ns_per_count(&self) -> u64 {
        (self.divisor() * 1_000_000_000 / TIMER_HZ).max(1)
    }

    /// Writes the divide configuration; a running count keeps its deadline
    /// (Linux writes it before loading a count).
    pub fn set_divide(&mut self, value: u32) {
        self.divide = value & 0xb;
    }

    /// Writes the initial count (not in TSC-deadline mode): 0 stops the
    /// timer, anything else starts counting down from it now.
    pub fn set_initial(&mut self, mode: TimerMode, count: u32, now_ns: u64) {
        if mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = count;
        self.start_ns = now_ns;
        self.deadline_ns = (count != 0).then(|| now_ns.saturating_add(self.period_ns(mode)));
    }

    fn period_ns(&self, mode: TimerMode) -> u64 {
        let ns = u64::from(self.initial).saturating_mul(self.ns_per_count());
        match mode {
            TimerMode::Periodic => ns.max(MIN_PERIOD_NS),
            _ => ns,
        }
    }

    /// The current count register at `now_ns`.
    pub fn current(&self, mode: TimerMode, now_ns: u64) -> u32 {
        if mode == TimerMode::TscDeadline || self.deadline_ns.is_none() || self.initial == 0 {
            return 0;
        }
        let elapsed = now_ns.saturating_sub(self.start_ns) / self.ns_per_count();
        let initial = u64::from(self.initial);
        match mode {
            TimerMode::Periodic => (initial - elapsed % initial) as u32,
            _ => initial.saturating_sub(elapsed) as u32,
        }
    }

    /// Writes the TSC-deadline MSR: `tsc` in guest TSC units, `at_ns` that
    /// moment in host time (`None` when the VMM cannot convert it yet). 0
    /// disarms. Ignored outside TSC-deadline mode, as on hardware.
    pub fn set_tsc_deadline(&mut self, mode: TimerMode, tsc: u64, at_ns: Option<u64>) {
        if mode != TimerMode::TscDeadline {
            return;
        }
        self.tsc_deadline = tsc;
        self.deadline_ns = if tsc == 0 { None } else { at_ns };
    }

    /// The LVT timer's mode changed: a count or deadline of the old mode
    /// is disarmed.
    pub fn mode_changed(&mut self) {
        self.initial = 0;
        self.tsc_deadline = 0;
        self.deadline_ns = None;
    }

    /// When the timer fires next, if armed.
    pub fn deadline_ns(&self) -> Option<u64> {
        self.deadline_ns
    }

    /// Whether the timer fired by `now_ns` (once, however many periods
    /// passed: missed periodic ticks are not queued up). A periodic timer
    /// re-arms for its next period after `now_ns`.
    pub fn poll(&mut self, mode: TimerMode, now_ns: u64) -> bool {
        let Some(deadline) = self.deadline_ns else {
            return false;
        };
        if deadline > now_ns {
            return false;
        }
        match mode {
            TimerMode::Periodic => {
                let period = self.period_ns(mode);
                let missed = (now_ns - deadline) / period;
                self.start_ns = deadline + missed * period;
                self.deadline_ns = Some(self.start_ns + period);
            }
            TimerMode::OneShot => self.deadline_ns = None,
            TimerMode::TscDeadline => {
                self.deadline_ns = None;
                self.tsc_deadline = 0;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_follow_the_divide_register() {
        let mut t = ApicTimer::default();
        let cases = [
            (0, 2),
            (1, 4),
            (2, 8),
            (3, 16),
            (8, 32),
            (9, 64),
            (10, 128),
            (11, 1),
        ];
        for (value, divisor) in cases {
            t.set_divide(value);
            assert_eq!(t.divisor(), divisor, "divide {value:#x}");
        }
    }

    #[test]
    fn one_shot_counts_down_and_fires_once() {
        let mut t = ApicTimer::default();
        t.set_divide(0xb); // divide by 1: a count per ns
        t.set_initial(TimerMode::OneShot, 1000, 5000);
        assert_eq!(t.current(TimerMode::OneShot, 5400), 600);
        assert_eq!(t.deadline_ns(), Some(6000));
        assert!(!t.poll(TimerMode::OneShot, 5999));
        assert!(t.poll(TimerMode::OneShot, 6001));
        assert!(!t.poll(TimerMode::OneShot, 9000));
        assert_eq!(t.current(TimerMode::OneShot, 9000), 0);
    }

    #[test]
    fn periodic_rearms_without_queueing_missed_ticks() {
        let mut t = ApicTimer::default();
        t.set_divide(0xb);
        t.set_initial(TimerMode::Periodic, 1_000_000, 0); // 1 ms
        assert!(t.poll(TimerMode::Periodic, 5_500_000));
        assert_eq!(t.deadline_ns(), Some(6_000_000));
        assert!(!t.poll(TimerMode::Periodic, 5_900_000));
        assert_eq!(t.current(TimerMode::Periodic, 5_750_000), 250_000);
    }

    #[test]
    fn a_tiny_periodic_count_is_held_to_the_minimum_period() {
        let mut t = ApicTimer::default();
        t.set_divide(0xb);
        t.set_initial(TimerMode::Periodic, 1, 0);
        assert_eq!(t.deadline_ns(), Some(MIN_PERIOD_NS));
    }

    #[test]
    fn zero_stops_and_tsc_deadline_ignores_the_count() {
        let mut t = ApicTimer::default();
        t.set_initial(TimerMode::OneShot, 10, 0);
        t.set_initial(TimerMode::OneShot, 0, 1);
        assert_eq!(t.deadline_ns(), None);
        t.set_initial(TimerMode::TscDeadline, 10, 0);
        assert_eq!(t.deadline_ns(), None);
        t.set_tsc_deadline(TimerMode::TscDeadline, 12345, Some(777));
        assert_eq!(t.deadline_ns(), Some(777));
        assert!(t.poll(TimerMode::TscDeadline, 777));
        assert_eq!(t.tsc_deadline(), 0);
        t.set_tsc_deadline(TimerMode::OneShot, 5, Some(1));
        assert_eq!(t.deadline_ns(), None, "only in TSC-deadline mode");
    }
}
