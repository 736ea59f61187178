//! Poll: a set of (handle, object, interests). `check` finds a ready entry;
//! waiting (in the syscall layer) parks the caller as this poll's waiter,
//! and any watched object's change wakes it.

use alloc::sync::Arc;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::Readiness;
use starina::abi::POLL_ENTRIES_MAX;

use super::Pollable;
use crate::sched;
use crate::sched::Thread;
use crate::sync::SpinLock;

/// A watched object. The poll holds it strongly (no upgrade on every
/// scan); closing the handle removes it from every poll (see
/// `syscall::handle_close`), so watching never keeps a channel open.
struct Entry {
    id: HandleId,
    object: Arc<dyn Pollable>,
    interests: Readiness,
}

pub struct Poll {
    me: Weak<Poll>,
    entries: SpinLock<Vec<Entry>>,
    /// The thread blocked in `poll_wait`, as a leaked `Arc` (null if
    /// none): swapped atomically, so waking needs no lock.
    waiter: AtomicPtr<Thread>,
    /// Where the next scan starts, so one busy object cannot starve others.
    cursor: AtomicUsize,
}

impl Poll {
    pub fn new() -> Arc<Poll> {
        Arc::new_cyclic(|me| Poll {
            me: me.clone(),
            entries: SpinLock::new(Vec::new()),
            waiter: AtomicPtr::new(core::ptr::null_mut()),
            cursor: AtomicUsize::new(0),
        })
    }

    pub fn add(
        &self,
        id: HandleId,
        object: Arc<dyn Pollable>,
        interests: Readiness,
    ) -> Result<(), Error> {
        {
            let mut entries = self.entries.lock();
            if entries.iter().any(|e| e.id == id) {
                return Err(Error::AlreadyExists);
            }
            if entries.len() >= POLL_ENTRIES_MAX {
                return Err(Error::InvalidArgument);
            }
            entries.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
            entries.push(Entry {
                id,
                object: object.clone(),
                interests,
            });
        }
        if let Err(e) = object.listeners().add(self.me.clone()) {
            self.entries.lock().retain(|e| e.id != id);
            return Err(e);
        }
        // It may be ready already.
        self.notify();
        Ok(())
    }

    pub fn remove(&self, id: HandleId) -> Result<(), Error> {
        let entry = {
            let mut entries = self.entries.lock();
            let pos = entries
                .iter()
                .position(|e| e.id == id)
                .ok_or(Error::NotFound)?;
            entries.swap_remove(pos)
        };
        entry.object.listeners().remove(&self.me);
        // A thread waiting on this poll must look again: it may have
        // nothing left to wait for (`PollEmpty`), else it waits for ever.
        self.notify();
        Ok(())
    }

    /// The handle `id` naming `object` was closed: stop watching it.
    pub fn forget(&self, id: HandleId, object: *const ()) {
        self.entries
            .lock()
            .retain(|e| !(e.id == id && Arc::as_ptr(&e.object) as *const () == object));
        // As in `remove`: the waiter looks again.
        self.notify();
    }

    /// One ready entry, if any: `Err(PollEmpty)` if nothing is watched.
    pub fn check(&self) -> Result<Option<(HandleId, Readiness)>, Error> {
        let entries = self.entries.lock();
        let n = entries.len();
        if n == 0 {
            return Err(Error::PollEmpty);
        }
        let mut i = self.cursor.load(Ordering::Relaxed);
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let e = &entries[i];
            let ready = e.object.readiness() & e.interests;
            if !ready.is_empty() {
                e.object.consume(ready);
                self.cursor.store(i + 1, Ordering::Relaxed);
                return Ok(Some((e.id, ready)));
            }
            i += 1;
        }
        Ok(None)
    }

    fn take_waiter(&self) -> Option<Arc<Thread>> {
        let ptr = self.waiter.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if ptr.is_null() {
            None
        } else {
            // SAFETY: non-null values in `waiter` come from `Arc::into_raw`
            // in `set_waiter`, and the swap hands each to exactly one taker.
            Some(unsafe { Arc::from_raw(ptr) })
        }
    }

    pub fn set_waiter(&self, thread: Arc<Thread>) {
        let old = self.waiter.swap(Arc::into_raw(thread) as *mut Thread, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: as in `take_waiter`: we own the Arc we swapped out.
            drop(unsafe { Arc::from_raw(old) });
        }
    }

    pub fn clear_waiter(&self) {
        drop(self.take_waiter());
    }

    /// Something watched changed: wake the waiter, if any.
    pub fn notify(&self) {
        if let Some(thread) = self.take_waiter() {
            sched::wake(thread);
        }
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        self.clear_waiter();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::channel::Channel;
    use crate::object::channel::ChannelMessage;
    use crate::object::timer::Timer;

    #[test]
    fn empty_poll_is_an_error() {
        let p = Poll::new();
        assert_eq!(p.check().err(), Some(Error::PollEmpty));
    }

    #[test]
    fn reports_readable_and_peer_closed() {
        let p = Poll::new();
        let (a, b) = Channel::new_pair();
        p.add(HandleId(1), b.clone(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .unwrap();
        assert_eq!(p.check().unwrap(), None);
        a.send(ChannelMessage::new(3, b"x", Vec::new()).unwrap())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(p.check().unwrap(), Some((HandleId(1), Readiness::READABLE)));
        b.recv(16, 4, 4).unwrap();
        assert_eq!(p.check().unwrap(), None);
        drop(a);
        assert_eq!(
            p.check().unwrap(),
            Some((HandleId(1), Readiness::PEER_CLOSED))
        );
    }

    #[test]
    fn duplicates_and_unknown_entries() {
        let p = Poll::new();
        let t = Timer::new();
        p.add(HandleId(3), t.clone(), Readiness::READABLE).unwrap();
        assert_eq!(
            p.add(HandleId(3), t.clone(), Readiness::READABLE).err(),
            Some(Error::AlreadyExists)
        );
        assert_eq!(p.remove(HandleId(4)).err(), Some(Error::NotFound));
        p.remove(HandleId(3)).unwrap();
        assert_eq!(p.check().err(), Some(Error::PollEmpty));
    }

    #[test]
    fn scanning_is_fair() {
        let p = Poll::new();
        let (a1, b1) = Channel::new_pair();
        let (a2, b2) = Channel::new_pair();
        p.add(HandleId(1), b1.clone(), Readiness::READABLE).unwrap();
        p.add(HandleId(2), b2.clone(), Readiness::READABLE).unwrap();
        for _ in 0..3 {
            a1.send(ChannelMessage::new(3, b"", Vec::new()).unwrap()).map_err(|e| e.0).unwrap();
            a2.send(ChannelMessage::new(3, b"", Vec::new()).unwrap()).map_err(|e| e.0).unwrap();
        }
        // Both stay readable; the scan alternates between them.
        let first = p.check().unwrap().unwrap().0;
        let second = p.check().unwrap().unwrap().0;
        assert_ne!(first, second);
    }
}
