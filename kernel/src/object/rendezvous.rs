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
//! returns. Every access happens under the poll's lock.
//!
//! Only messages without handles are delivered this way: moving handles
//! means the receiver's handle table, whose lock a sender of the same
//! process may hold.

use alloc::sync::Arc;

use starina::abi::HandleId;
use starina::abi::RecvInfo;

use crate::sched;
use crate::sched::Thread;

/// A waiting thread's receive buffer.
#[derive(Clone, Copy)]
pub struct RecvSlot {
    owner: u64,
    data: *mut u8,
    capacity: usize,
}

// SAFETY: the pointer is only dereferenced under the owning poll's lock,
// while the thread that lent it waits (see the module docs).
unsafe impl Send for RecvSlot {}

impl RecvSlot {
    /// The buffer of thread `owner`, which waits in a call given `buf`.
    pub fn new(owner: u64, buf: &mut [u8]) -> RecvSlot {
        RecvSlot {
            owner,
            data: buf.as_mut_ptr(),
            capacity: buf.len(),
        }
    }

    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Copies `data` in, if it fits: what the receiver is told.
    pub fn fill(&self, kind: u8, data: &[u8]) -> Option<RecvInfo> {
        if data.len() > self.capacity {
            return None;
        }
        // SAFETY: the slot is registered, so its owner is blocked in the
        // call that lent `capacity` bytes at `data` and no one else writes
        // them (module docs); `data` is a sender's slice, a different
        // buffer (a thread cannot send while it waits).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.data, data.len()) };
        Some(RecvInfo {
            kind,
            data_len: data.len(),
            num_handles: 0,
        })
    }
}

/// A message delivered into `owner`'s slot, from the channel watched as `id`.
#[derive(Clone, Copy)]
pub struct Delivered {
    owner: u64,
    id: HandleId,
    info: RecvInfo,
}

impl Delivered {
    pub fn new(owner: u64, id: HandleId, info: RecvInfo) -> Delivered {
        Delivered { owner, id, info }
    }

    pub fn owner(&self) -> u64 {
        self.owner
    }

    pub fn id(&self) -> HandleId {
        self.id
    }

    pub fn info(&self) -> RecvInfo {
        self.info
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
