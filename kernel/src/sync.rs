//! An interrupt-safe spin lock. Taking it disables interrupts on this CPU
//! (restored on unlock), so an interrupt handler that takes the same lock can
//! never deadlock against the code it interrupted; the spinning makes it
//! correct when more CPUs come up.
//!
//! It also means that in thread context "interrupts are off" is exactly
//! "this CPU holds a kernel lock" (components cannot turn interrupts off):
//! the panic and fault paths use that to tell a component's failure from the
//! kernel's.
//!
//! Which lock may be taken while holding which: docs/locks.md (the lock
//! hierarchy); two CPUs nesting two locks in opposite orders deadlock.

use core::cell::UnsafeCell;
use core::ops::Deref;
use core::ops::DerefMut;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use crate::arch::irq;

pub struct SpinLock<T: ?Sized> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: ?Sized + Send> Send for SpinLock<T> {}

pub struct SpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
    irq_was_enabled: bool,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> SpinLock<T> {
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        let irq_was_enabled = irq::save_and_disable();
        self.acquire();
        SpinLockGuard {
            lock: self,
            irq_was_enabled,
        }
    }

    /// Takes the lock while the caller holds another (`_held`): interrupts
    /// are off already, so there is nothing to save or restore. (Lock order
    /// is the caller's business, as with nested `lock`s.)
    #[inline(always)]
    pub fn lock_nested<U: ?Sized>(&self, _held: &SpinLockGuard<'_, U>) -> SpinLockGuard<'_, T> {
        self.acquire();
        SpinLockGuard {
            lock: self,
            irq_was_enabled: false,
        }
    }

    #[inline(always)]
    fn acquire(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    /// Whether someone holds the lock (for diagnostics only).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl<T: ?Sized> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> SpinLockGuard<'_, T> {
    /// Leaves interrupts off when the lock is released, for a caller that
    /// goes on without them (a switch to another thread): whether they
    /// were on before the lock was taken, for the caller to restore.
    #[inline(always)]
    pub fn keep_interrupts_off(&mut self) -> bool {
        core::mem::replace(&mut self.irq_was_enabled, false)
    }
}

impl<T: ?Sized> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        irq::restore(self.irq_was_enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_lock_is_taken_and_released_like_any_other() {
        let outer = SpinLock::new(1);
        let inner = SpinLock::new(2);
        let held = outer.lock();
        {
            let mut g = inner.lock_nested(&held);
            assert!(inner.is_locked());
            *g += 1;
        }
        assert!(!inner.is_locked());
        assert!(outer.is_locked());
        drop(held);
        assert!(!outer.is_locked());
        assert_eq!(*inner.lock(), 3);
    }

    #[test]
    fn keeping_interrupts_off_hands_back_the_saved_state_once() {
        let lock = SpinLock::new(());
        let mut g = lock.lock();
        let was = g.keep_interrupts_off();
        // The release restores nothing now: the state is the caller's.
        assert!(!g.keep_interrupts_off());
        drop(g);
        assert!(!lock.is_locked());
        // (Host tests run with interrupts "off": nothing was saved.)
        assert!(!was);
    }
}
