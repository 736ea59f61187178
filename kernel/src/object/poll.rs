//! Poll: a set of (handle, object, interests). `check` finds a ready entry;
//! waiting (in the syscall layer) parks the caller as this poll's waiter,
//! and any watched object's change wakes it.
//!
//! A thread waiting in `poll_wait_recv` also lends the poll its receive
//! buffer (a [`RecvSlot`]): a message sent to a watched channel while the
//! thread waits, with nothing queued before it, is copied straight into
//! that buffer ([`Poll::deliver`]), and the thread wakes with it in hand:
//! no queueing, no allocation, no second look (see `rendezvous`).

use alloc::sync::Arc;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::abi::POLL_ENTRIES_MAX;

use super::channel::Channel;
use super::rendezvous::Handed;
use super::rendezvous::Mailbox;
use super::rendezvous::RecvSlot;
use super::Pollable;
use crate::sched;
use crate::sched::Thread;
use crate::sync::SpinLock;
use crate::sync::SpinLockGuard;

/// A watched object. The poll holds it strongly (no upgrade on every
/// scan); closing the handle removes it from every poll (see
/// `syscall::handle_close`), so watching never keeps a channel open.
struct Entry {
    id: HandleId,
    /// The process whose handle table `id` is in: numbers are per table,
    /// so a handle leaving one table (closed, or moved into a message)
    /// must not take the entry another process made, under the same
    /// number, for the same object (the end of a channel a message moved
    /// to it, say, watched before the sender's table let go of it).
    owner: u64,
    object: Arc<dyn Pollable>,
    interests: Readiness,
    /// The same object as a channel, if it is one and the handle may
    /// receive from it (`poll_wait_recv` receives in the same call).
    receiver: Option<Arc<Channel>>,
}

/// A ready entry, as [`Poll::check`] finds it.
pub struct Ready {
    pub id: HandleId,
    pub readiness: Readiness,
    /// The channel to receive from: the entry's receiver, when readable.
    pub channel: Option<Arc<Channel>>,
}

/// What a wait came to: a ready entry, or a message delivered into the
/// waiter's buffer.
pub enum Waited {
    Ready(Ready),
    Delivered { id: HandleId, info: RecvInfo },
}

struct Inner {
    entries: Vec<Entry>,
    /// The waiting thread's buffer, while it waits in `poll_wait_recv`
    /// (taken away by the delivery that fills it).
    slot: Option<RecvSlot>,
}

pub struct Poll {
    me: Weak<Poll>,
    inner: SpinLock<Inner>,
    /// The thread blocked in `poll_wait`, as a leaked `Arc` (null if
    /// none): swapped atomically, so waking needs no lock.
    waiter: AtomicPtr<Thread>,
    /// Where the next scan starts, so one busy object cannot starve others.
    cursor: AtomicUsize,
    /// Whether an entry may have become ready since a scan last found none
    /// ready: set by every change a watched object reports ([`Poll::notify`])
    /// and by a scan that found one (others may be ready too); cleared by a
    /// wait that scans. A wait with it clear blocks without asking every
    /// entry for its readiness: nothing can be ready that was not at that
    /// scan, since each object reports every change that can make it
    /// ready. (A delivery into the waiter's buffer changes no readiness,
    /// so it only wakes: [`Poll::wake_waiter`].)
    stale: AtomicBool,
}

impl Poll {
    pub fn new() -> Arc<Poll> {
        Arc::new_cyclic(|me| Poll {
            me: me.clone(),
            inner: SpinLock::new(Inner {
                entries: Vec::new(),
                slot: None,
            }),
            waiter: AtomicPtr::new(core::ptr::null_mut()),
            cursor: AtomicUsize::new(0),
            stale: AtomicBool::new(true),
        })
    }

    pub fn add(
        &self,
        owner: u64,
        id: HandleId,
        object: Arc<dyn Pollable>,
        interests: Readiness,
        receiver: Option<Arc<Channel>>,
    ) -> Result<(), Error> {
        {
            let mut inner = self.inner.lock();
            let entries = &mut inner.entries;
            if entries.iter().any(|e| e.id == id) {
                return Err(Error::AlreadyExists);
            }
            if entries.len() >= POLL_ENTRIES_MAX {
                return Err(Error::InvalidArgument);
            }
            entries.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
            entries.push(Entry {
                id,
                owner,
                object: object.clone(),
                interests,
                receiver,
            });
        }
        if let Err(e) = object.listeners().add(self.me.clone()) {
            self.inner.lock().entries.retain(|e| e.id != id);
            return Err(e);
        }
        // It may be ready already.
        self.notify();
        Ok(())
    }

    pub fn remove(&self, id: HandleId) -> Result<(), Error> {
        let entry = {
            let mut inner = self.inner.lock();
            let entries = &mut inner.entries;
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

    /// The handle `id` of process `owner`'s table, naming `object`, left
    /// that table: stop watching it through that handle.
    pub fn forget(&self, owner: u64, id: HandleId, object: *const ()) {
        self.inner.lock().entries.retain(|e| {
            !(e.id == id && e.owner == owner && Arc::as_ptr(&e.object) as *const () == object)
        });
        // As in `remove`: the waiter looks again.
        self.notify();
    }

    /// One ready entry, if any: `Err(PollEmpty)` if nothing is watched.
    pub fn check(&self) -> Result<Option<Ready>, Error> {
        self.scan(&self.inner.lock().entries)
    }

    fn scan(&self, entries: &[Entry]) -> Result<Option<Ready>, Error> {
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
                let channel = match ready.contains(Readiness::READABLE) {
                    true => e.receiver.clone(),
                    false => None,
                };
                return Ok(Some(Ready {
                    id: e.id,
                    readiness: ready,
                    channel,
                }));
            }
            i += 1;
        }
        Ok(None)
    }

    /// Registers `me` as the waiter, lending `slot` (if any), and looks for
    /// a ready entry: `Some` if the wait is over already (a ready entry;
    /// nothing stays registered then), `None` if `me` is to block (it is
    /// `prepare_block`ed; a change from here on wakes it, and a message
    /// delivered into the slot is reported in the slot's mailbox).
    #[inline(always)]
    pub fn arm(&self, me: Arc<Thread>, slot: Option<RecvSlot>) -> Result<Option<Ready>, Error> {
        let mut inner = self.inner.lock();
        // Registered *before* the scan, so a change between the scan and
        // the block cannot be missed.
        me.prepare_block();
        let waiter = Arc::as_ptr(&me);
        self.set_waiter(me);
        // An empty poll is always scanned, so the wait fails (`PollEmpty`).
        if self.stale.swap(false, Ordering::AcqRel) || inner.entries.is_empty() {
            match self.scan(&inner.entries) {
                Ok(None) => {}
                found => {
                    // Other entries may be ready as well.
                    self.stale.store(true, Ordering::Release);
                    // Ours (nothing runs while we hold the lock), unless a
                    // wake took it already, which cancelled the block.
                    if let Some(me) = self.take_waiter() {
                        debug_assert!(core::ptr::eq(Arc::as_ptr(&me), waiter));
                        me.cancel_block();
                    }
                    return found;
                }
            }
        }
        inner.slot = slot;
        Ok(None)
    }

    /// The waiter woke (or gives up waiting): takes back the slot it lent
    /// with `mailbox`, if it is still lent. Once this returns, no delivery
    /// into it can come: the mailbox says whether one came before.
    #[inline(always)]
    pub fn disarm(&self, mailbox: &Mailbox) {
        let mut inner = self.inner.lock();
        if inner.slot.is_some_and(|s| s.is_lent_with(mailbox)) {
            inner.slot = None;
        }
    }

    /// Copies a message (`kind`, `data`, no handles) sent to `channel`
    /// into the buffer of the thread waiting here, if one waits with a
    /// slot it fits, and this poll watches `channel` for `READABLE`
    /// through a handle that may receive. `Some` if it did (the slot's
    /// mailbox has the news, the slot is used up): the waiter, taken off
    /// this poll, for the sender to wake. `held`: a lock the caller holds.
    #[inline(always)]
    pub fn deliver<U: ?Sized>(
        &self,
        channel: *const Channel,
        kind: u8,
        data: &[u8],
        held: &SpinLockGuard<'_, U>,
    ) -> Option<Handed> {
        let mut inner = self.inner.lock_nested(held);
        let slot = inner.slot?;
        let id = inner
            .entries
            .iter()
            .find(|e| {
                e.interests.contains(Readiness::READABLE)
                    && e.receiver.as_ref().is_some_and(|r| Arc::as_ptr(r) == channel)
            })
            .map(|e| e.id)?;
        if !slot.fill(id, kind, data) {
            return None;
        }
        inner.slot = None;
        drop(inner);
        Some(Handed::new(self.take_waiter()))
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

    /// Something watched changed: the next wait scans, and the waiter, if
    /// any, wakes.
    pub fn notify(&self) {
        self.stale.store(true, Ordering::Release);
        self.wake_waiter();
    }

    /// Wakes the waiter, if any, with no change to look for.
    fn wake_waiter(&self) {
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
    use crate::object::rendezvous::RecvSlot;

    /// What `check` finds, without the channel.
    fn ids(p: &Poll) -> Option<(HandleId, Readiness)> {
        p.check().unwrap().map(|r| (r.id, r.readiness))
    }

    /// A handle leaving one process's table takes only that process's
    /// entry: another process may watch the same object under the same
    /// number (the channel end a message moved to it, before the sender's
    /// table let go of it).
    #[test]
    fn forget_takes_only_the_entry_of_the_table_the_handle_left() {
        let (_a, b) = Channel::new_pair();
        let p = Poll::new();
        p.add(7, HandleId(3), b.clone(), Readiness::READABLE, None)
            .unwrap();
        let ptr = Arc::as_ptr(&b) as *const ();
        p.forget(8, HandleId(3), ptr);
        assert!(p.check().is_ok(), "another process's handle took the entry");
        p.forget(7, HandleId(3), ptr);
        assert_eq!(p.check().err(), Some(Error::PollEmpty));
    }

    #[test]
    fn empty_poll_is_an_error() {
        let p = Poll::new();
        assert_eq!(p.check().err(), Some(Error::PollEmpty));
    }

    #[test]
    fn reports_readable_and_peer_closed() {
        let p = Poll::new();
        let (a, b) = Channel::new_pair();
        p.add(0, HandleId(1), b.clone(), Readiness::READABLE | Readiness::PEER_CLOSED, None)
            .unwrap();
        assert!(p.check().unwrap().is_none());
        a.send(ChannelMessage::new(3, b"x", Vec::new()).unwrap())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(ids(&p), Some((HandleId(1), Readiness::READABLE)));
        b.recv(16, 4, 4).unwrap();
        assert!(p.check().unwrap().is_none());
        drop(a);
        assert_eq!(ids(&p), Some((HandleId(1), Readiness::PEER_CLOSED)));
    }

    #[test]
    fn duplicates_and_unknown_entries() {
        let p = Poll::new();
        let t = Timer::new();
        p.add(0, HandleId(3), t.clone(), Readiness::READABLE, None).unwrap();
        assert_eq!(
            p.add(0, HandleId(3), t.clone(), Readiness::READABLE, None).err(),
            Some(Error::AlreadyExists)
        );
        assert_eq!(p.remove(HandleId(4)).err(), Some(Error::NotFound));
        p.remove(HandleId(3)).unwrap();
        assert_eq!(p.check().err(), Some(Error::PollEmpty));
    }

    /// A poll watching `b` (id 1) for messages, through a handle that may
    /// receive, and a running thread 7 about to wait on it.
    fn receiving() -> (Arc<Poll>, Arc<Channel>, Arc<Channel>, Arc<Thread>) {
        let p = Poll::new();
        let (a, b) = Channel::new_pair();
        p.add(0, HandleId(1), b.clone(), Readiness::READABLE, Some(b.clone()))
            .unwrap();
        (p, a, b, Thread::for_test(7))
    }

    /// Whether `hand_over` delivered (waking the receiver at once).
    fn handed(ch: &Channel, data: &[u8]) -> Result<bool, Error> {
        let lock = SpinLock::new(());
        let held = lock.lock();
        ch.hand_over(3, data, &held).map(|h| h.map(Handed::wake).is_some())
    }

    #[test]
    fn a_waiting_receiver_gets_the_message_in_its_buffer() {
        let (p, a, _b, me) = receiving();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        let slot = RecvSlot::new(&mut buf, &mailbox);
        assert!(p.arm(me.clone(), Some(slot)).unwrap().is_none());
        assert_eq!(handed(&a, b"hello"), Ok(true));
        // The slot is used up: the next message queues.
        assert_eq!(handed(&a, b"again"), Ok(false));
        let (id, info) = mailbox.take().expect("nothing delivered");
        assert_eq!((id, info.kind, info.data_len, info.num_handles), (HandleId(1), 3, 5, 0));
        assert_eq!(&buf[..5], b"hello");
        // Taken once; the slot is gone already, so disarming changes nothing.
        assert!(mailbox.take().is_none());
        p.disarm(&mailbox);
        assert!(mailbox.take().is_none());
    }

    #[test]
    fn a_queued_message_goes_first() {
        let (p, a, b, me) = receiving();
        a.send(ChannelMessage::new(3, b"first", Vec::new()).unwrap())
            .map_err(|e| e.0)
            .unwrap();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        // Ready at once: the slot is never lent, so nothing overtakes.
        let armed = p.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap();
        assert!(matches!(armed, Some(Ready { id: HandleId(1), .. })));
        assert_eq!(handed(&a, b"second"), Ok(false));
        assert!(mailbox.take().is_none());
        assert_eq!(b.recv(16, 4, 4).unwrap().data, b"first");
    }

    #[test]
    fn a_message_too_big_for_the_buffer_is_queued() {
        let (p, a, b, me) = receiving();
        let mut buf = [0u8; 4];
        let mailbox = Mailbox::new();
        assert!(p.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap().is_none());
        assert_eq!(handed(&a, b"too long"), Ok(false));
        p.disarm(&mailbox);
        assert!(mailbox.take().is_none());
        assert_eq!(buf, [0; 4]);
        assert_eq!(b.queued(), 0);
    }

    #[test]
    fn nothing_is_delivered_without_a_slot_or_the_right_to_receive() {
        let (p, a, _b, me) = receiving();
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        assert_eq!(handed(&a, b"x"), Ok(false));
        p.disarm(&Mailbox::new());

        let q = Poll::new();
        let (c, d) = Channel::new_pair();
        q.add(0, HandleId(2), d.clone(), Readiness::READABLE, None).unwrap();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        assert!(q.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap().is_none());
        assert_eq!(handed(&c, b"x"), Ok(false));
        q.disarm(&mailbox);
        assert!(mailbox.take().is_none());
    }

    /// Preempted after arming, before it blocks (`switch` cancels the
    /// block): the wake finds it running and does nothing, and the thread
    /// still finds the message when it gets to look.
    #[test]
    fn a_receiver_preempted_before_blocking_still_gets_the_message() {
        let (p, a, _b, me) = receiving();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        assert!(p.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap().is_none());
        me.cancel_block();
        assert_eq!(handed(&a, b"while away"), Ok(true));
        let (_, info) = mailbox.take().expect("nothing delivered");
        assert_eq!(&buf[..info.data_len], b"while away");
    }

    /// Woken for something else before a message came: once the slot is
    /// taken back, no delivery can land in it.
    #[test]
    fn a_disarmed_slot_gets_nothing() {
        let (p, a, b, me) = receiving();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        assert!(p.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap().is_none());
        p.disarm(&mailbox);
        assert_eq!(handed(&a, b"late"), Ok(false));
        assert!(mailbox.take().is_none());
        assert_eq!(buf, [0; 16]);
        a.send(ChannelMessage::new(3, b"late", Vec::new()).unwrap()).map_err(|e| e.0).unwrap();
        assert_eq!(b.recv(16, 4, 4).unwrap().data, b"late");
    }

    #[test]
    fn each_delivery_goes_to_the_slot_lent_at_the_time() {
        let (p, a, _b, me) = receiving();
        let mut buf = [0u8; 16];
        let mailbox = Mailbox::new();
        assert!(p.arm(me.clone(), Some(RecvSlot::new(&mut buf, &mailbox))).unwrap().is_none());
        assert_eq!(handed(&a, b"for 7"), Ok(true));
        // Another thread arming meanwhile lends its own slot: the next
        // message is its, and 7's news stays in 7's mailbox.
        let other = Thread::for_test(8);
        let mut other_buf = [0u8; 16];
        let other_mailbox = Mailbox::new();
        let other_slot = RecvSlot::new(&mut other_buf, &other_mailbox);
        assert!(p.arm(other.clone(), Some(other_slot)).unwrap().is_none());
        assert_eq!(handed(&a, b"for 8"), Ok(true));
        // 7 disarming does not take 8's slot.
        p.disarm(&mailbox);
        let (_, info) = mailbox.take().expect("7 got nothing");
        assert_eq!(&buf[..info.data_len], b"for 7");
        let (_, info) = other_mailbox.take().expect("8 got nothing");
        assert_eq!(&other_buf[..info.data_len], b"for 8");
    }

    #[test]
    fn scanning_is_fair() {
        let p = Poll::new();
        let (a1, b1) = Channel::new_pair();
        let (a2, b2) = Channel::new_pair();
        p.add(0, HandleId(1), b1.clone(), Readiness::READABLE, None).unwrap();
        p.add(0, HandleId(2), b2.clone(), Readiness::READABLE, None).unwrap();
        for _ in 0..3 {
            a1.send(ChannelMessage::new(3, b"", Vec::new()).unwrap()).map_err(|e| e.0).unwrap();
            a2.send(ChannelMessage::new(3, b"", Vec::new()).unwrap()).map_err(|e| e.0).unwrap();
        }
        // Both stay readable; the scan alternates between them.
        let first = p.check().unwrap().unwrap().id;
        let second = p.check().unwrap().unwrap().id;
        assert_ne!(first, second);
    }

    /// A pollable whose readiness is set by hand and counts how often it
    /// is asked.
    struct Counted {
        ready: AtomicBool,
        asked: AtomicUsize,
        listeners: super::super::Listeners,
    }

    impl super::super::Pollable for Counted {
        fn readiness(&self) -> Readiness {
            self.asked.fetch_add(1, Ordering::Relaxed);
            match self.ready.load(Ordering::Relaxed) {
                true => Readiness::READABLE,
                false => Readiness::empty(),
            }
        }
        fn listeners(&self) -> &super::super::Listeners {
            &self.listeners
        }
    }

    #[test]
    fn a_wait_asks_the_entries_again_only_after_a_change() {
        let p = Poll::new();
        let c = Arc::new(Counted {
            ready: AtomicBool::new(false),
            asked: AtomicUsize::new(0),
            listeners: super::super::Listeners::new(),
        });
        p.add(0, HandleId(1), c.clone(), Readiness::READABLE, None).unwrap();
        let me = Thread::for_test(7);
        // The first wait scans and finds nothing: the thread would block.
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        p.disarm(&Mailbox::new());
        assert_eq!(c.asked.load(Ordering::Relaxed), 1);
        // Nothing reported a change: the next wait blocks without asking.
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        p.disarm(&Mailbox::new());
        assert_eq!(c.asked.load(Ordering::Relaxed), 1);
        // The object becomes ready and says so: the next wait finds it,
        // and keeps finding it while it stays ready (level-triggered).
        c.ready.store(true, Ordering::Relaxed);
        c.listeners.notify();
        for _ in 0..2 {
            match p.arm(me.clone(), None).unwrap() {
                Some(r) => assert_eq!(r.id, HandleId(1)),
                _ => panic!("the ready entry was not found"),
            }
        }
        // Once it is not ready, one scan says so and the next wait blocks.
        c.ready.store(false, Ordering::Relaxed);
        let asked = c.asked.load(Ordering::Relaxed);
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        p.disarm(&Mailbox::new());
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        p.disarm(&Mailbox::new());
        assert_eq!(c.asked.load(Ordering::Relaxed), asked + 1);
    }

    #[test]
    fn a_wait_on_an_emptied_poll_fails_even_without_a_change() {
        let p = Poll::new();
        let (_a, b) = Channel::new_pair();
        p.add(0, HandleId(1), b.clone(), Readiness::READABLE, None).unwrap();
        let me = Thread::for_test(7);
        assert!(p.arm(me.clone(), None).unwrap().is_none());
        p.disarm(&Mailbox::new());
        p.remove(HandleId(1)).unwrap();
        assert_eq!(p.arm(me.clone(), None).err(), Some(Error::PollEmpty));
    }
}
