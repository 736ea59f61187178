//! Idle halt-polling: an idle CPU spins a short, adaptive while before it
//! halts, when a wake-up is likely soon. Waking a halted CPU costs a
//! reschedule IPI and the CPU's way out of `hlt` (35-50 µs of guest time
//! per cross-CPU round trip under QEMU's multi-threaded TCG); a polling
//! CPU is told through its doorbell instead ([`ring`]), and picks the work
//! up at once. The same idea as Linux's cpuidle-haltpoll governor.
//!
//! The window adapts per CPU ([`Window`]): it grows when a halt ended
//! soon after the poll gave up (a longer poll would have caught the
//! wake-up), shrinks when halts are long (the CPU is truly idle), and
//! turns off for a while after polls that never catch anything (e.g.
//! single-threaded TCG, where the other CPU runs only while this one
//! halts). The time spent polling is the idle thread's, so the per-CPU
//! load still counts it as idle.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::AtomicU8;
use core::sync::atomic::Ordering;

use super::runqueue::MAX_CPUS;

/// The longest poll: about what a wake-up by IPI costs (see above). A
/// longer poll can save no more than that wake-up, but burns a host thread
/// that, on an overcommitted host, the waker needs: with 200 µs the
/// cross-CPU IPC round trip got 25% slower on a loaded 2-core host.
pub const MAX_NS: u64 = 50_000;
/// The first window once polling (re)starts.
const START_NS: u64 = 12_500;
/// Polls in a row at the longest window that catch nothing before polling
/// stops for a while.
const FRUITLESS_LIMIT: u32 = 8;
/// Idle periods without polling after that.
const COOLDOWN: u32 = 256;

/// A CPU's doorbell: not polling.
const QUIET: u8 = 0;
/// Polling: a waker rings instead of sending an IPI.
const POLLING: u8 = 1;
/// Rung while polling: work came.
const RUNG: u8 = 2;

static DOORBELL: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(QUIET) }; MAX_CPUS];
/// When each CPU last switched from its idle thread to another.
static LEFT_IDLE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Tells `cpu` about new work by its doorbell if it polls now: `false` if
/// it does not (the caller sends the IPI). A CPU that stopped polling
/// before this cannot miss the work: it checks the run queue under the
/// scheduler's lock before it halts, and the work was queued under it.
pub fn ring(cpu: usize) -> bool {
    DOORBELL[cpu]
        .compare_exchange(POLLING, RUNG, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// `cpu` switches from its idle thread to another at `now` (its poll, if
/// any, is over: wakers must interrupt it again).
pub fn busy(cpu: usize, now: u64) {
    DOORBELL[cpu].store(QUIET, Ordering::Release);
    LEFT_IDLE[cpu].store(now, Ordering::Relaxed);
}

/// How long a halt of `cpu` begun at `start` lasted, now that its idle
/// thread runs again at `now`: until the CPU switched to a thread, if the
/// interrupt that ended it did (that thread's run is no halt).
pub fn halted_ns(cpu: usize, start: u64, now: u64) -> u64 {
    let left = LEFT_IDLE[cpu].load(Ordering::Relaxed);
    let end = if left >= start { left.min(now) } else { now };
    end.saturating_sub(start)
}

/// How a poll ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    /// The doorbell rang: work is queued.
    Rung,
    /// The window passed without a ring: halt.
    TimedOut,
    /// The CPU ran another thread meanwhile: look again.
    Interrupted,
}

/// Spins on `cpu`'s doorbell until it rings or `now()` passes `until`.
/// Interrupts stay on: a device's interrupt is taken at once, as in a halt.
pub fn poll(cpu: usize, until: u64, now: impl Fn() -> u64) -> Polled {
    let bell = &DOORBELL[cpu];
    bell.store(POLLING, Ordering::Release);
    while bell.load(Ordering::Acquire) == POLLING && now() < until {
        core::hint::spin_loop();
    }
    match bell.swap(QUIET, Ordering::AcqRel) {
        RUNG => Polled::Rung,
        POLLING => Polled::TimedOut,
        _ => Polled::Interrupted,
    }
}

/// One CPU's poll window, adapted after every idle period.
#[derive(Debug, Default)]
pub struct Window {
    ns: u64,
    fruitless: u32,
    cooldown: u32,
}

impl Window {
    /// How long to poll before the next halt (0: halt at once).
    pub fn ns(&self) -> u64 {
        self.ns
    }

    /// Before an idle period: counts the cooldown down.
    pub fn begin(&mut self) {
        self.cooldown = self.cooldown.saturating_sub(1);
    }

    /// The poll caught a wake-up.
    pub fn caught(&mut self) {
        self.fruitless = 0;
    }

    /// The poll (of [`Window::ns`]) caught nothing and the halt that
    /// followed lasted `halted_ns`.
    pub fn missed(&mut self, halted_ns: u64) {
        if self.cooldown > 0 {
            return;
        }
        if self.ns >= MAX_NS {
            self.fruitless += 1;
            if self.fruitless >= FRUITLESS_LIMIT {
                *self = Window {
                    ns: 0,
                    fruitless: 0,
                    cooldown: COOLDOWN,
                };
                return;
            }
        }
        if self.ns.saturating_add(halted_ns) <= MAX_NS {
            // The wake-up came soon after: a longer poll catches it.
            self.ns = (self.ns * 2).clamp(START_NS, MAX_NS);
        } else if halted_ns > MAX_NS {
            // Truly idle: poll less.
            self.ns /= 2;
            if self.ns < START_NS {
                self.ns = 0;
                self.fruitless = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_halts_grow_the_window_to_its_bound() {
        let mut w = Window::default();
        assert_eq!(w.ns(), 0);
        w.missed(10_000);
        assert_eq!(w.ns(), START_NS);
        for _ in 0..20 {
            w.missed(0);
            w.caught();
        }
        assert_eq!(w.ns(), MAX_NS);
    }

    #[test]
    fn long_halts_shrink_it_to_nothing() {
        let mut w = Window::default();
        w.missed(10_000);
        w.missed(10_000);
        assert_eq!(w.ns(), 2 * START_NS);
        w.missed(10_000_000);
        assert_eq!(w.ns(), START_NS);
        w.missed(10_000_000);
        assert_eq!(w.ns(), 0);
        // Idle stays idle: no polling.
        w.missed(10_000_000);
        assert_eq!(w.ns(), 0);
    }

    #[test]
    fn polls_that_never_catch_anything_stop_for_a_while() {
        let mut w = Window::default();
        while w.ns() < MAX_NS {
            w.missed(1_000);
        }
        assert_eq!(w.ns(), MAX_NS);
        for _ in 0..FRUITLESS_LIMIT {
            w.begin();
            w.missed(1_000);
        }
        assert_eq!(w.ns(), 0);
        for _ in 0..COOLDOWN - 1 {
            w.begin();
            w.missed(1_000);
            assert_eq!(w.ns(), 0);
        }
        w.begin();
        w.missed(1_000);
        assert_eq!(w.ns(), START_NS);
    }

    #[test]
    fn a_caught_wake_up_resets_the_fruitless_count() {
        let mut w = Window::default();
        while w.ns() < MAX_NS {
            w.missed(1_000);
        }
        for _ in 0..3 * FRUITLESS_LIMIT {
            w.missed(1_000);
            w.caught();
        }
        assert_eq!(w.ns(), MAX_NS);
    }

    #[test]
    fn the_doorbell_rings_only_while_polling() {
        // CPU 7: no other test uses its doorbell.
        assert!(!ring(7));
        let rung = poll(7, 0, || 1);
        assert_eq!(rung, Polled::TimedOut);
        DOORBELL[7].store(POLLING, Ordering::Release);
        assert!(ring(7));
        assert!(!ring(7));
        busy(7, 500);
        assert!(!ring(7));
        // The halt ended when the CPU switched to a thread, else now.
        assert_eq!(halted_ns(7, 100, 900), 400);
        assert_eq!(halted_ns(7, 600, 900), 300);
    }
}
