//! Direct delivery: a thread blocked in `poll_wait_recv` lends its poll its
//! receive buffer, and a sender with nothing queued before it copies its
//! message straight in (one copy, no queue entry, no allocation).
//!
//! The buffer is the waiting call's `&mut [u8]`, kept as a raw pointer
//! while the call is blocked. It stays valid, and is touched by no one
//! else, for exactly as long as the slot is registered in the poll: the
//! waiting thread is inside the call (its arguments alive) until it takes
//! the slot back ([`super::poll::Poll::disarm`], or `arm` never registering
//! it), and a killed waiter is woken and takes it back before its call
//! returns. Every write happens under the poll's lock. The news of a
//! delivery goes to a [`Mailbox`] beside the buffer, which the waiter
//! reads without the lock once the sender has let go of the slot.
//!
//! Only messages without handles are delivered this way: moving handles
//! means the receiver's handle table, whose lock a sender of the same
//! process may hold.

use alloc::sync::Arc;
use core::cell::Cell;
use core::ptr::NonNull;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use starina::abi::HandleId;
use starina::abi::RecvInfo;

use crate::sched;
use crate::sched::Thread;

/// Where a message delivered into a waiting thread's buffer is reported:
/// a cell on the waiting call's stack, next to the buffer it lends. The
/// sender writes it under the poll's lock as it takes the slot away; the
/// waiter reads it without the lock once it runs again (a delivery
/// needs no second look at the poll).
/// (The news is kept packed, a few words to write and read on every
/// delivery: no handles come this way, and a length fits 32 bits.)
#[derive(Default)]
pub struct Mailbox {
    done: AtomicBool,
    kind: Cell<u8>,
    id: Cell<u32>,
    data_len: Cell<u32>,
}

// SAFETY: the cells are written once per lending, by the sender under the
// poll's lock and before `done` is set (Release); the waiter reads them
// only after seeing `done` (Acquire), and lends the slot again only after
// that (see the module docs).
unsafe impl Sync for Mailbox {}

impl Mailbox {
    pub fn new() -> Mailbox {
        Mailbox::default()
    }

    /// The delivered message, if one was: the channel's id in the poll,
    /// and what the receiver is told.
    pub fn take(&self) -> Option<(HandleId, RecvInfo)> {
        if !self.done.load(Ordering::Acquire) {
            return None;
        }
        self.done.store(false, Ordering::Relaxed);
        let info = RecvInfo {
            kind: self.kind.get(),
            data_len: self.data_len.get() as usize,
            num_handles: 0,
        };
        Some((HandleId(self.id.get()), info))
    }
}

/// A waiting thread's receive buffer, and where it hears of a delivery
/// (the mailbox, one per waiting call, also says whose slot it is).
#[derive(Clone, Copy)]
pub struct RecvSlot {
    data: *mut u8,
    capacity: usize,
    mailbox: NonNull<Mailbox>,
}

// SAFETY: the pointers are only dereferenced under the owning poll's lock,
// while the thread that lent them waits (see the module docs).
unsafe impl Send for RecvSlot {}

impl RecvSlot {
    /// The buffer of a thread that waits in a call given `buf` and
    /// `mailbox` (both outlive the slot's registration).
    pub fn new(buf: &mut [u8], mailbox: &Mailbox) -> RecvSlot {
        RecvSlot {
            data: buf.as_mut_ptr(),
            capacity: buf.len(),
            mailbox: NonNull::from(mailbox),
        }
    }

    /// Whether this is the slot lent with `mailbox`.
    pub fn is_lent_with(&self, mailbox: &Mailbox) -> bool {
        core::ptr::eq(self.mailbox.as_ptr(), mailbox)
    }

    /// Copies `data` in, if it fits, and tells the owner's mailbox that
    /// it came from the channel watched as `id`. `false` if it does not
    /// fit (nothing written). The caller unregisters the slot: it is used.
    pub fn fill(&self, id: HandleId, kind: u8, data: &[u8]) -> bool {
        if data.len() > self.capacity {
            return false;
        }
        if !data.is_empty() {
            // SAFETY: the slot is registered, so its owner is blocked in
            // the call that lent `capacity` bytes at `data` and no one else
            // writes them (module docs); `data` is a sender's slice, a
            // different buffer (a thread cannot send while it waits).
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.data, data.len()) };
        }
        // SAFETY: as above, the mailbox lives in the owner's waiting call
        // while the slot is registered; only this sender, under the poll's
        // lock, writes it, before `done` says it may be read.
        let mailbox = unsafe { self.mailbox.as_ref() };
        mailbox.kind.set(kind);
        mailbox.id.set(id.0);
        // `data.len()` is within `capacity`, at most `MESSAGE_DATA_MAX`.
        mailbox.data_len.set(data.len() as u32);
        mailbox.done.store(true, Ordering::Release);
        true
    }
}

/// A message handed over: the receiver it was delivered to, taken off its
/// poll's wait but not yet woken. The sender wakes it: at once
/// ([`Handed::wake`]), or by switching to it as it blocks itself (a send
/// followed by a wait, `syscall::wait`). Dropped, it wakes the receiver,
/// so no path can leave it asleep with its message.
#[must_use]
pub struct Handed(Option<Arc<Thread>>);

impl Handed {
    pub fn new(receiver: Option<Arc<Thread>>) -> Handed {
        Handed(receiver)
    }

    /// The receiver, for a direct switch (the caller must then run or
    /// wake it).
    pub fn into_receiver(self) -> Option<Arc<Thread>> {
        // Nothing is left to drop once the receiver is out.
        let mut handed = core::mem::ManuallyDrop::new(self);
        handed.0.take()
    }

    pub fn wake(self) {
        drop(self);
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            sched::wake(thread);
        }
    }
}
