//! Kernel objects, one module each. Objects that can be polled implement
//! [`Pollable`] and keep a [`Listeners`] list of the polls watching them.

pub mod channel;
pub mod console;
#[cfg(not(test))]
pub mod device;
#[cfg(not(test))]
pub mod dma;
#[cfg(not(test))]
pub mod interrupt;
#[cfg(not(test))]
pub mod job;
pub mod poll;
pub mod rendezvous;
pub mod system;
pub mod timer;
#[cfg(not(test))]
pub mod vm;

use alloc::sync::Weak;
use alloc::vec::Vec;

use starina::abi::Readiness;

use crate::sync::SpinLock;
use poll::Poll;

pub trait Pollable: Send + Sync {
    /// Current readiness (level).
    fn readiness(&self) -> Readiness;
    /// Called when poll reports `ready` to a waiter (timers disarm here).
    fn consume(&self, _ready: Readiness) {}
    fn listeners(&self) -> &Listeners;
}

/// The polls watching an object. Lock order: an object's own lock is
/// released before its listeners are notified.
pub struct Listeners {
    polls: SpinLock<Vec<Weak<Poll>>>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self::new()
    }
}

impl Listeners {
    pub const fn new() -> Listeners {
        Listeners {
            polls: SpinLock::new(Vec::new()),
        }
    }

    pub fn add(&self, poll: Weak<Poll>) -> Result<(), starina::abi::Error> {
        let mut polls = self.polls.lock();
        polls.retain(|p| p.strong_count() > 0);
        polls
            .try_reserve(1)
            .map_err(|_| starina::abi::Error::OutOfMemory)?;
        polls.push(poll);
        Ok(())
    }

    pub fn remove(&self, poll: &Weak<Poll>) {
        self.polls
            .lock()
            .retain(|p| p.strong_count() > 0 && !Weak::ptr_eq(p, poll));
    }

    /// The polls watching this object.
    pub fn polls(&self) -> Vec<alloc::sync::Arc<Poll>> {
        self.polls.lock().iter().filter_map(|p| p.upgrade()).collect()
    }

    /// Offers a message sent to `channel` (the end these listeners are
    /// of; its address is only compared, never followed) to the polls
    /// watching it, for a thread waiting with a receive buffer
    /// ([`Poll::deliver`]): `Some` if one took it. `held`: a lock the
    /// caller holds (interrupts are off).
    #[inline(always)]
    pub fn deliver<U: ?Sized>(
        &self,
        channel: *const channel::Channel,
        kind: u8,
        data: &[u8],
        held: &crate::sync::SpinLockGuard<'_, U>,
    ) -> Option<rendezvous::Handed> {
        let polls = self.polls.lock_nested(held);
        // A plain loop: the send path inlines it (an iterator adapter
        // stays a call of its own).
        for p in polls.iter() {
            let Some(p) = p.upgrade() else { continue };
            if let Some(handed) = p.deliver(channel, kind, data, &polls) {
                return Some(handed);
            }
        }
        None
    }

    /// Wakes every poll watching this object.
    pub fn notify(&self) {
        let polls = self.polls.lock();
        for p in polls.iter() {
            if let Some(p) = p.upgrade() {
                p.notify();
            }
        }
    }
}
