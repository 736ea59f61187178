//! One-shot timers. Armed timers sit in a deadline-ordered queue; the
//! timer interrupt fires the expired ones, which become readable.

use alloc::collections::BinaryHeap;
use alloc::sync::Arc;
use alloc::sync::Weak;
use core::cmp::Ordering as CmpOrdering;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::Readiness;

use super::Listeners;
use super::Pollable;
use crate::sync::SpinLock;

pub struct Timer {
    /// The armed deadline (ns since boot), or 0 when disarmed.
    deadline: AtomicU64,
    fired: AtomicBool,
    listeners: Listeners,
}

struct Armed {
    deadline: u64,
    timer: Weak<Timer>,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Armed {}
impl PartialOrd for Armed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Armed {
    // Reversed: BinaryHeap is a max-heap; we want the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.deadline.cmp(&self.deadline)
    }
}

static ARMED: SpinLock<BinaryHeap<Armed>> = SpinLock::new(BinaryHeap::new());

impl Timer {
    pub fn new() -> Arc<Timer> {
        Arc::new(Timer {
            deadline: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            listeners: Listeners::new(),
        })
    }

    /// Arms the timer for `now + after_ns` (replacing an earlier deadline).
    /// Returns the deadline.
    pub fn set(self: &Arc<Self>, now: u64, after_ns: u64) -> Result<u64, Error> {
        let deadline = now.saturating_add(after_ns).max(1);
        self.fired.store(false, Ordering::Relaxed);
        self.deadline.store(deadline, Ordering::Relaxed);
        let mut armed = ARMED.lock();
        // The earlier deadline's entry goes: a timer re-armed in a loop
        // keeps one entry, not one per call until each deadline passes.
        let me = Arc::as_ptr(self);
        armed.retain(|a| a.timer.as_ptr() != me);
        armed.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        armed.push(Armed {
            deadline,
            timer: Arc::downgrade(self),
        });
        Ok(deadline)
    }
}

impl Drop for Timer {
    /// An armed timer leaves the queue with its last handle: its entry
    /// would keep the timer's memory (the `Weak`) until the deadline, for
    /// ever with a far one.
    fn drop(&mut self) {
        let me: *const Timer = self;
        let mut armed = ARMED.lock();
        armed.retain(|a| a.timer.as_ptr() != me);
        if armed.is_empty() {
            // Give the queue's memory back too, so it does not stay at its
            // largest size for the rest of the system's life.
            *armed = BinaryHeap::new();
        }
    }
}

/// Fires every timer whose deadline is at or before `now`; returns the next
/// deadline still pending.
pub fn fire_expired(now: u64) -> Option<u64> {
    loop {
        let expired = {
            let mut armed = ARMED.lock();
            match armed.peek() {
                Some(a) if a.deadline <= now => armed.pop(),
                Some(a) => return Some(a.deadline),
                None => return None,
            }
        };
        let Some(Armed { deadline, timer }) = expired else {
            continue;
        };
        let Some(timer) = timer.upgrade() else {
            continue;
        };
        // A timer re-armed since carries a new deadline: this entry is stale.
        if timer
            .deadline
            .compare_exchange(deadline, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            timer.fired.store(true, Ordering::Relaxed);
            timer.listeners.notify();
        }
    }
}

impl Pollable for Timer {
    fn readiness(&self) -> Readiness {
        if self.fired.load(Ordering::Relaxed) {
            Readiness::READABLE
        } else {
            Readiness::empty()
        }
    }

    fn consume(&self, ready: Readiness) {
        if ready.contains(Readiness::READABLE) {
            self.fired.store(false, Ordering::Relaxed);
        }
    }

    fn listeners(&self) -> &Listeners {
        &self.listeners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries in the queue for the timer `t` points to.
    fn entries_for(t: &Weak<Timer>) -> usize {
        ARMED.lock().iter().filter(|a| a.timer.ptr_eq(t)).count()
    }

    #[test]
    fn rearming_keeps_one_entry() {
        let t = Timer::new();
        for i in 0..1000 {
            t.set(1_000, u64::MAX - i).unwrap();
        }
        assert_eq!(entries_for(&Arc::downgrade(&t)), 1);
        // The one left is the latest deadline.
        t.set(1_000, 10).unwrap();
        fire_expired(1_010);
        assert!(t.readiness().contains(Readiness::READABLE));
        assert_eq!(entries_for(&Arc::downgrade(&t)), 0);
    }

    #[test]
    fn a_dropped_armed_timer_leaves_the_queue() {
        let t = Timer::new();
        t.set(0, u64::MAX).unwrap();
        let weak = Arc::downgrade(&t);
        assert_eq!(entries_for(&weak), 1);
        drop(t);
        // Before: the entry (and with it the timer's memory, held by the
        // entry's `Weak`) stayed until the deadline, here never.
        assert_eq!(entries_for(&weak), 0);
    }

    #[test]
    fn fires_in_deadline_order_and_rearm_replaces() {
        let a = Timer::new();
        let b = Timer::new();
        a.set(1_000_000, 500).unwrap();
        b.set(1_000_000, 100).unwrap();
        a.set(1_000_000, 50).unwrap(); // replaces the 500
        fire_expired(1_000_060);
        assert!(a.readiness().contains(Readiness::READABLE));
        assert!(b.readiness().is_empty());
        fire_expired(1_000_100);
        assert!(b.readiness().contains(Readiness::READABLE));
        // The stale 500 ns entry fires nothing.
        a.consume(Readiness::READABLE);
        fire_expired(1_000_600);
        assert!(a.readiness().is_empty());
    }
}
