//! Channels: a connected pair of endpoints. Each endpoint owns the queue of
//! messages sent *to* it; a send pushes onto the peer's queue. The queue is
//! bounded ([`CHANNEL_QUEUE_MAX`]): a full queue is `QueueFull`, and the
//! sender's poll reports `WRITABLE` again once the receiver drains one.
//!
//! Channel ends travel inside messages, one level deep at most: an end that
//! is in flight (inside some queue) never carries channel ends in its own
//! queue, and an end whose queue carries channel ends is never sent. So
//! dropping a queue drops at most one level of ends (no recursion to blow
//! a kernel stack), and no cycle of ends holding each other can form (a
//! cycle needs an in-flight end that carries another), so every end is
//! freed once its last handle is gone. A send that would break the rule is
//! `InvalidTransfer`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::sync::Weak;
use alloc::vec::Vec;

use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::Readiness;
use starina::abi::CHANNEL_QUEUE_MAX;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;

use super::rendezvous::Handed;
use super::Listeners;
use super::Pollable;
use crate::handle::Handle;
use crate::handle::Object;
use crate::sync::SpinLock;
use crate::sync::SpinLockGuard;

/// A message in flight: its bytes and the handles it moves.
pub struct ChannelMessage {
    pub kind: u8,
    pub data: Vec<u8>,
    pub handles: Vec<Handle>,
}

impl ChannelMessage {
    /// The channel ends this message moves.
    fn channels(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.handles.iter().filter_map(|h| match &h.object {
            Object::Channel(c) => Some(c),
            _ => None,
        })
    }

    /// Copies `data` into a new message (checking the limits).
    pub fn new(kind: u8, data: &[u8], handles: Vec<Handle>) -> Result<ChannelMessage, Error> {
        if data.len() > MESSAGE_DATA_MAX {
            return Err(Error::MessageTooLarge);
        }
        if handles.len() > MESSAGE_HANDLES_MAX {
            return Err(Error::TooManyHandles);
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(data.len())
            .map_err(|_| Error::OutOfMemory)?;
        buf.extend_from_slice(data);
        Ok(ChannelMessage {
            kind,
            data: buf,
            handles,
        })
    }
}

struct Inner {
    queue: VecDeque<ChannelMessage>,
}

/// What both ends of a pair share, one [`EndState`] per end.
struct PairState {
    ends: [EndState; 2],
}

/// One end's state that both ends read without locks, so that readiness
/// (asked on every poll) costs a few atomic loads: its queue length and
/// liveness. Its listeners live here too, so that a sender reaches its
/// peer's polls through the pair it holds, without taking a reference to
/// the peer itself.
struct EndState {
    queued: AtomicUsize,
    alive: AtomicBool,
    listeners: Listeners,
    /// The end's address, only ever compared (a poll entry for this end
    /// holds the end: see [`Channel::hand_over`]); set once, as the pair
    /// is made.
    at: AtomicUsize,
}

impl EndState {
    fn new() -> EndState {
        EndState {
            queued: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
            listeners: Listeners::new(),
            at: AtomicUsize::new(0),
        }
    }
}

pub struct Channel {
    /// Which end of the pair this is (index into `PairState`).
    side: usize,
    /// How many handles to this end sit in queues (see the module docs).
    in_flight: AtomicUsize,
    /// How many channel ends the messages queued for this end move.
    carried: AtomicUsize,
    state: Arc<PairState>,
    peer: spin::Once<Weak<Channel>>,
    inner: SpinLock<Inner>,
}

impl Channel {
    fn endpoint(side: usize, state: Arc<PairState>) -> Channel {
        Channel {
            side,
            in_flight: AtomicUsize::new(0),
            carried: AtomicUsize::new(0),
            state,
            peer: spin::Once::new(),
            inner: SpinLock::new(Inner {
                queue: VecDeque::new(),
            }),
        }
    }

    /// A connected pair.
    pub fn new_pair() -> (Arc<Channel>, Arc<Channel>) {
        let state = Arc::new(PairState {
            ends: [EndState::new(), EndState::new()],
        });
        let a = Arc::new(Channel::endpoint(0, state.clone()));
        let b = Arc::new(Channel::endpoint(1, state));
        a.mine()
            .at
            .store(Arc::as_ptr(&a) as usize, Ordering::Relaxed);
        b.mine()
            .at
            .store(Arc::as_ptr(&b) as usize, Ordering::Relaxed);
        a.peer.call_once(|| Arc::downgrade(&b));
        b.peer.call_once(|| Arc::downgrade(&a));
        (a, b)
    }

    /// This end's shared state (`side` is 0 or 1: the mask spares the
    /// bounds check on the send path).
    #[inline(always)]
    fn mine(&self) -> &EndState {
        &self.state.ends[self.side & 1]
    }

    /// The peer's shared state, there even after the peer is gone.
    #[inline(always)]
    fn theirs(&self) -> &EndState {
        &self.state.ends[(self.side ^ 1) & 1]
    }

    #[inline(always)]
    pub fn peer(&self) -> Option<Arc<Channel>> {
        self.peer.get().and_then(|p| p.upgrade())
    }

    pub fn is_peer_of(&self, other: &Arc<Channel>) -> bool {
        self.peer
            .get()
            .is_some_and(|p| core::ptr::eq(p.as_ptr(), Arc::as_ptr(other)))
    }

    /// Queues `msg` on the peer. On error the message comes back untouched.
    pub fn send(&self, msg: ChannelMessage) -> Result<(), (Error, ChannelMessage)> {
        let Some(peer) = self.peer() else {
            return Err((Error::PeerClosed, msg));
        };
        let moves = msg.channels().count();
        if moves > 0 && !peer.may_carry(&msg) {
            return Err((Error::InvalidTransfer, msg));
        }
        {
            let mut inner = peer.inner.lock();
            if inner.queue.len() >= CHANNEL_QUEUE_MAX {
                return Err((Error::QueueFull, msg));
            }
            if inner.queue.try_reserve(1).is_err() {
                return Err((Error::OutOfMemory, msg));
            }
            for c in msg.channels() {
                c.in_flight.fetch_add(1, Ordering::AcqRel);
            }
            peer.carried.fetch_add(moves, Ordering::AcqRel);
            inner.queue.push_back(msg);
            self.theirs()
                .queued
                .store(inner.queue.len(), Ordering::Release);
        }
        peer.listeners().notify();
        Ok(())
    }

    /// Hands a message without handles straight to a thread waiting to
    /// receive on the peer (see `rendezvous`), if one waits and nothing
    /// is queued before it (order is kept). `Some` if it did: the
    /// receiver, for the caller to wake; if not, the caller queues it with
    /// [`Channel::send`]. The caller holds a lock (`held`, its handle
    /// table's), so the locks taken here need not save interrupts.
    #[inline(always)]
    pub fn hand_over<U: ?Sized>(
        &self,
        kind: u8,
        data: &[u8],
        held: &SpinLockGuard<'_, U>,
    ) -> Result<Option<Handed>, Error> {
        let peer = self.theirs();
        if !peer.alive.load(Ordering::Acquire) {
            return Err(Error::PeerClosed);
        }
        if peer.queued.load(Ordering::Acquire) > 0 {
            return Ok(None);
        }
        // The peer's address, only to be compared: a poll that watches the
        // peer holds it, so a match is alive (and a peer gone since
        // matches nothing: the caller's queued send then says so).
        let peer_at = peer.at.load(Ordering::Relaxed) as *const Channel;
        Ok(peer.listeners.deliver(peer_at, kind, data, held))
    }

    /// Takes the next message if it fits in `data_cap` bytes and
    /// `handles_cap` handles; a message too large stays queued
    /// (`BufferTooSmall`). `room` says how many handles the receiver's table
    /// can still take (`HandleTableFull` otherwise, message kept).
    pub fn recv(
        &self,
        data_cap: usize,
        handles_cap: usize,
        room: usize,
    ) -> Result<ChannelMessage, Error> {
        let was_full;
        let msg = {
            let mut inner = self.inner.lock();
            let Some(front) = inner.queue.front() else {
                return Err(if self.peer().is_none() {
                    Error::PeerClosed
                } else {
                    Error::WouldBlock
                });
            };
            if front.data.len() > data_cap || front.handles.len() > handles_cap {
                return Err(Error::BufferTooSmall);
            }
            if front.handles.len() > room {
                return Err(Error::HandleTableFull);
            }
            was_full = inner.queue.len() >= CHANNEL_QUEUE_MAX;
            let msg = inner.queue.pop_front().unwrap();
            self.mine()
                .queued
                .store(inner.queue.len(), Ordering::Release);
            self.landed(&msg);
            msg
        };
        if was_full {
            // The sender may be waiting for room.
            self.theirs().listeners.notify();
        }
        Ok(msg)
    }

    /// Whether this end may receive `msg`'s channel ends: it is not in
    /// flight itself, and none of them carries ends of its own.
    fn may_carry(&self, msg: &ChannelMessage) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && msg.channels().all(|c| {
                c.carried.load(Ordering::Acquire) == 0 && !core::ptr::eq(Arc::as_ptr(c), self)
            })
    }

    /// `msg` left this end's queue: its channel ends are no longer in
    /// flight here.
    fn landed(&self, msg: &ChannelMessage) {
        let mut moves = 0;
        for c in msg.channels() {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
            moves += 1;
        }
        self.carried.fetch_sub(moves, Ordering::AcqRel);
    }

    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }
}

impl Pollable for Channel {
    fn readiness(&self) -> Readiness {
        let mut r = Readiness::empty();
        if self.mine().queued.load(Ordering::Acquire) > 0 {
            r |= Readiness::READABLE;
        }
        let peer = self.theirs();
        if !peer.alive.load(Ordering::Acquire) {
            r |= Readiness::PEER_CLOSED;
        } else if peer.queued.load(Ordering::Acquire) < CHANNEL_QUEUE_MAX {
            r |= Readiness::WRITABLE;
        }
        r
    }

    fn listeners(&self) -> &Listeners {
        &self.mine().listeners
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // Messages never received: their channel ends are no longer in
        // flight (they are dropped with the queue, one level deep).
        let queue = core::mem::take(&mut self.inner.lock().queue);
        for msg in &queue {
            self.landed(msg);
        }
        drop(queue);
        // The last reference to this end is gone: the peer sees PEER_CLOSED.
        self.mine().alive.store(false, Ordering::Release);
        self.theirs().listeners.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(data: &[u8]) -> ChannelMessage {
        ChannelMessage::new(3, data, Vec::new()).unwrap()
    }

    /// A message moving a handle to channel end `end`.
    fn moving(end: &Arc<Channel>) -> ChannelMessage {
        let handle = Handle::new(Object::Channel(end.clone()), starina::abi::Rights::DEFAULT);
        ChannelMessage::new(3, b"", alloc::vec![handle]).unwrap()
    }

    fn send(from: &Arc<Channel>, m: ChannelMessage) -> Result<(), Error> {
        from.send(m).map_err(|(e, _)| e)
    }

    #[test]
    fn an_end_that_carries_ends_is_not_sent() {
        let (a, a2) = Channel::new_pair();
        let (_b, b2) = Channel::new_pair();
        let (c, _c2) = Channel::new_pair();
        send(&a, moving(&b2)).unwrap(); // a2 now carries b2
        assert_eq!(send(&c, moving(&a2)), Err(Error::InvalidTransfer));
    }

    #[test]
    fn an_end_in_flight_receives_no_ends() {
        let (a, _a2) = Channel::new_pair();
        let (b, b2) = Channel::new_pair();
        let (_c, c2) = Channel::new_pair();
        send(&a, moving(&b2)).unwrap(); // b2 is in flight
        assert_eq!(send(&b, moving(&c2)), Err(Error::InvalidTransfer));
        // Plain data still reaches it.
        send(&b, msg(b"data")).unwrap();
    }

    #[test]
    fn no_cycle_of_ends_can_form() {
        let (a, a2) = Channel::new_pair();
        let (b, b2) = Channel::new_pair();
        send(&a, moving(&b2)).unwrap(); // b2 inside a2's queue
                                        // a2 inside b2's queue would close the cycle: refused.
        assert_eq!(send(&b, moving(&a2)), Err(Error::InvalidTransfer));
    }

    #[test]
    fn receiving_or_dropping_a_queue_lands_the_ends() {
        let (a, a2) = Channel::new_pair();
        let (b, b2) = Channel::new_pair();
        let (_c, c2) = Channel::new_pair();
        send(&a, moving(&b2)).unwrap();
        drop(a2.recv(64, 4, 10).unwrap());
        // b2 is out of flight: it may receive ends again.
        send(&b, moving(&c2)).unwrap();

        let (d, d2) = Channel::new_pair();
        let (e, e2) = Channel::new_pair();
        send(&d, moving(&e2)).unwrap();
        drop(d2); // its queue goes, and e2 with it is no longer in flight
        drop(d);
        let (_f, f2) = Channel::new_pair();
        send(&e, moving(&f2)).unwrap();
    }

    #[test]
    fn messages_arrive_in_order() {
        let (a, b) = Channel::new_pair();
        a.send(msg(b"one")).map_err(|e| e.0).unwrap();
        a.send(msg(b"two")).map_err(|e| e.0).unwrap();
        assert_eq!(b.recv(64, 4, 10).unwrap().data, b"one");
        assert_eq!(b.recv(64, 4, 10).unwrap().data, b"two");
        assert_eq!(b.recv(64, 4, 10).err(), Some(Error::WouldBlock));
        assert_eq!(a.recv(64, 4, 10).err(), Some(Error::WouldBlock));
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(
            ChannelMessage::new(3, &[0; MESSAGE_DATA_MAX + 1], Vec::new()).err(),
            Some(Error::MessageTooLarge)
        );
        assert!(ChannelMessage::new(3, &[0; MESSAGE_DATA_MAX], Vec::new()).is_ok());
    }

    #[test]
    fn full_queue_is_backpressure_and_loses_nothing() {
        let (a, b) = Channel::new_pair();
        for i in 0..CHANNEL_QUEUE_MAX {
            a.send(msg(&[i as u8])).map_err(|e| e.0).unwrap();
        }
        assert!(!a.readiness().contains(Readiness::WRITABLE));
        let (err, back) = a.send(msg(b"extra")).unwrap_err();
        assert_eq!(err, Error::QueueFull);
        assert_eq!(back.data, b"extra");
        assert_eq!(b.recv(64, 4, 10).unwrap().data, [0]);
        assert!(a.readiness().contains(Readiness::WRITABLE));
        a.send(back).map_err(|e| e.0).unwrap();
        for i in 1..CHANNEL_QUEUE_MAX {
            assert_eq!(b.recv(64, 4, 10).unwrap().data, [i as u8]);
        }
        assert_eq!(b.recv(64, 4, 10).unwrap().data, b"extra");
    }

    #[test]
    fn small_buffer_keeps_the_message() {
        let (a, b) = Channel::new_pair();
        a.send(msg(b"hello")).map_err(|e| e.0).unwrap();
        assert_eq!(b.recv(4, 4, 10).err(), Some(Error::BufferTooSmall));
        assert_eq!(b.recv(5, 4, 10).unwrap().data, b"hello");
    }

    #[test]
    fn peer_closed_after_drain() {
        let (a, b) = Channel::new_pair();
        a.send(msg(b"last words")).map_err(|e| e.0).unwrap();
        drop(a);
        assert!(b.readiness().contains(Readiness::PEER_CLOSED));
        assert!(b.readiness().contains(Readiness::READABLE));
        assert_eq!(b.recv(64, 4, 10).unwrap().data, b"last words");
        assert_eq!(b.recv(64, 4, 10).err(), Some(Error::PeerClosed));
        assert_eq!(
            b.send(msg(b"x")).err().map(|e| e.0),
            Some(Error::PeerClosed)
        );
    }
}
