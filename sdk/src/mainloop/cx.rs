//! The handlers' view of the loop: the objects it watches, their states and
//! outboxes. Everything a handler may change while handling an event goes
//! through here.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::channel::Channel;
use crate::channel::MessageBuffer;
use crate::channel::SendError;
use crate::command::Job;
use crate::driver::Interrupt;
use crate::message::Message;
use crate::outbox::Flushed;
use crate::outbox::Outbox;
use crate::outbox::Pending;
use crate::poll::Poll;
use crate::timer::Timer;

use super::slots::Slots;

pub(super) enum Object {
    /// The channel to startup: its `Open`s become `connect`/`reconnect`.
    Supervisor(Channel),
    Channel(Channel),
    Timer(Timer),
    Interrupt(Interrupt),
    /// A started command: READABLE once it has ended.
    Job(Job),
}

pub(super) struct Slot<S> {
    pub(super) object: Object,
    /// `None` while lent to the handler running for this object, and for
    /// the supervisor channel (which has no state).
    pub(super) state: Option<S>,
    pub(super) outbox: Outbox,
    /// Channels only: whether its messages are taken (see
    /// [`Cx::pause_receiving`]).
    receiving: bool,
}

impl<S> Slot<S> {
    fn channel(&self) -> Option<&Channel> {
        match &self.object {
            Object::Supervisor(ch) | Object::Channel(ch) => Some(ch),
            _ => None,
        }
    }

    /// What the poll watches this channel for: messages and the peer's
    /// close while receiving, and room while the outbox waits.
    fn channel_interests(&self) -> Readiness {
        let mut interests = Readiness::empty();
        if self.receiving {
            interests |= CHANNEL_INTERESTS;
        }
        if !self.outbox.is_empty() {
            interests |= Readiness::WRITABLE;
        }
        interests
    }
}

const CHANNEL_INTERESTS: Readiness = Readiness::READABLE.union(Readiness::PEER_CLOSED);

pub struct Cx<S> {
    pub(super) poll: Poll,
    pub(super) slots: Slots<S>,
    pub(super) stopped: bool,
    /// A reply not sent yet ([`Cx::reply_data`]): its channel, and where
    /// its bytes are.
    pub(super) reply: Option<HandleId>,
    pub(super) reply_bytes: ReplyBytes,
    pub(super) reply_data: Vec<u8>,
    /// The loop's receive buffer, which holds the message being handled
    /// (the loop receives into it only while no handler runs), and where
    /// its bytes start.
    received: Rc<RefCell<MessageBuffer>>,
    received_at: usize,
    received_len: usize,
}

/// Where the bytes of a reply not sent yet are.
#[derive(Clone)]
pub(super) enum ReplyBytes {
    /// Copied into [`Cx::reply_data`].
    Copied,
    /// Part of the message being handled, still in the receive buffer.
    Received(Range<usize>),
}

impl<S> Cx<S> {
    pub(super) fn new(received: Rc<RefCell<MessageBuffer>>) -> Result<Cx<S>, Error> {
        let (received_at, received_len) = {
            let buf = received.borrow();
            (buf.data.as_ptr() as usize, buf.data.len())
        };
        Ok(Cx {
            poll: Poll::create()?,
            slots: Slots::new(),
            stopped: false,
            reply: None,
            reply_bytes: ReplyBytes::Copied,
            reply_data: Vec::new(),
            received,
            received_at,
            received_len,
        })
    }

    fn add(
        &mut self,
        id: HandleId,
        object: Object,
        state: Option<S>,
        interests: Readiness,
    ) -> Result<HandleId, Error> {
        self.poll.add(id, interests)?;
        let slot = Slot {
            object,
            state,
            outbox: Outbox::new(),
            receiving: true,
        };
        self.slots.insert(id, slot);
        Ok(id)
    }

    /// Watches the channel to startup: clients offered on it arrive at
    /// [`Handler::connect`](super::Handler::connect), fresh channels to
    /// restarted providers at [`Handler::reconnect`](super::Handler::reconnect).
    pub fn add_supervisor(&mut self, ch: Channel) -> Result<HandleId, Error> {
        self.add(ch.id(), Object::Supervisor(ch), None, CHANNEL_INTERESTS)
    }

    pub fn add_channel(&mut self, ch: Channel, state: S) -> Result<HandleId, Error> {
        self.add(ch.id(), Object::Channel(ch), Some(state), CHANNEL_INTERESTS)
    }

    pub fn add_timer(&mut self, timer: Timer, state: S) -> Result<HandleId, Error> {
        self.add(
            timer.id(),
            Object::Timer(timer),
            Some(state),
            Readiness::READABLE,
        )
    }

    pub fn add_interrupt(&mut self, irq: Interrupt, state: S) -> Result<HandleId, Error> {
        self.add(
            irq.id(),
            Object::Interrupt(irq),
            Some(state),
            Readiness::READABLE,
        )
    }

    /// Watches a command's job: once the command has ended, the loop takes
    /// the job out and hands it to
    /// [`Handler::job_ended`](super::Handler::job_ended) with its state.
    /// [`Cx::remove`] drops it, which ends the command if it still runs.
    pub fn add_job(&mut self, job: Job, state: S) -> Result<HandleId, Error> {
        self.add(job.id(), Object::Job(job), Some(state), Readiness::READABLE)
    }

    /// Job `id` in the loop, to kill it or look at its status.
    pub fn job(&self, id: HandleId) -> Option<&Job> {
        match self.slots.get(id).map(|slot| &slot.object) {
            Some(Object::Job(job)) => Some(job),
            _ => None,
        }
    }

    pub(super) fn take_slot(&mut self, id: HandleId) -> Option<Slot<S>> {
        self.send_reply();
        let slot = self.slots.remove(id)?;
        let _ = self.poll.remove(id);
        Some(slot)
    }

    /// Stops watching `id` and closes it (a channel's unsent backlog is
    /// dropped). Returns its state, or `None` if `id` is the object being
    /// handled (its state is lent to the handler) or not in the loop.
    pub fn remove(&mut self, id: HandleId) -> Option<S> {
        self.take_slot(id).and_then(|slot| slot.state)
    }

    /// Sends `msg` on channel `id`. If the peer's queue is full, the
    /// message waits in the channel's outbox and goes out, in order, when
    /// the peer has room ([`Handler::drained`](super::Handler::drained)
    /// says when all of it has). Fails with [`Error::BacklogFull`] past
    /// [`crate::outbox::BACKLOG_MAX_BYTES`] (the message is dropped),
    /// [`Error::PeerClosed`] if the peer is gone, and
    /// [`Error::NotFound`] if `id` is no channel of this loop.
    pub fn send(&mut self, id: HandleId, msg: Message<'_>) -> Result<(), Error> {
        self.send_reply();
        let slot = self.slots.get_mut(id).ok_or(Error::NotFound)?;
        let ch = slot.channel().ok_or(Error::WrongObjectType)?;
        if !slot.outbox.is_empty() {
            return slot.outbox.push(Pending::from_message(msg));
        }
        match ch.send(msg) {
            Ok(()) => Ok(()),
            Err(SendError {
                error: Error::QueueFull,
                message,
            }) => self.wait_for_room(id, Pending::from_message(message)),
            Err(e) => Err(e.error),
        }
    }

    /// Sends bytes as a `Data` message, like [`Cx::send`].
    pub fn send_data(&mut self, id: HandleId, data: &[u8]) -> Result<(), Error> {
        self.send_reply();
        self.send_data_now(id, data)
    }

    /// Sends bytes as a `Data` message on channel `id` as the loop goes
    /// back to waiting, in the same kernel call as the wait
    /// ([`crate::poll::Poll::send_data_wait_recv`]): the answer to the
    /// message being handled. A peer waiting for it runs at once. Any
    /// other send, reply or removal through this `Cx` sends it first, so
    /// the order of everything sent through the loop is kept; a handler
    /// that uses a channel directly ([`Cx::channel`]) or blocks should
    /// send with [`Cx::send_data`]. Errors come as [`Cx::send_data`]'s
    /// would, but after the handler returned: a full peer queue keeps the
    /// reply in the outbox, anything else is logged. A reply that is part
    /// of the message being handled (an echo, a header stripped) is sent
    /// from the loop's receive buffer; any other is copied first.
    pub fn reply_data(&mut self, id: HandleId, data: &[u8]) -> Result<(), Error> {
        self.send_reply();
        let slot = self.slots.get(id).ok_or(Error::NotFound)?;
        slot.channel().ok_or(Error::WrongObjectType)?;
        if !slot.outbox.is_empty() {
            return self.send_data_now(id, data);
        }
        self.reply_bytes = match self.received_range(data) {
            Some(range) => ReplyBytes::Received(range),
            None => {
                self.reply_data.clear();
                self.reply_data.extend_from_slice(data);
                ReplyBytes::Copied
            }
        };
        self.reply = Some(id);
        Ok(())
    }

    /// Where `data` is in the receive buffer, if it is part of it (then it
    /// is part of the message being handled: allocations do not overlap).
    fn received_range(&self, data: &[u8]) -> Option<Range<usize>> {
        let start = (data.as_ptr() as usize).checked_sub(self.received_at)?;
        let end = start.checked_add(data.len())?;
        (end <= self.received_len).then_some(start..end)
    }

    /// Runs `f` with the bytes of the reply [`Cx::reply_data`] left.
    fn with_reply_bytes<R>(&mut self, f: impl FnOnce(&mut Self, &[u8]) -> R) -> R {
        match self.reply_bytes.clone() {
            ReplyBytes::Received(range) => {
                let received = Rc::clone(&self.received);
                let buf = received.borrow();
                f(self, &buf.data[range])
            }
            ReplyBytes::Copied => {
                let data = core::mem::take(&mut self.reply_data);
                let result = f(self, &data);
                self.reply_data = data;
                result
            }
        }
    }

    /// Sends the reply [`Cx::reply_data`] left, if any, now.
    #[inline(always)]
    pub(super) fn send_reply(&mut self) {
        if let Some(id) = self.reply.take() {
            self.send_reply_now(id);
        }
    }

    #[inline(never)]
    fn send_reply_now(&mut self, id: HandleId) {
        let result = self.with_reply_bytes(|cx, data| cx.send_data_now(id, data));
        self.reply_result(id, result);
    }

    /// What became of a reply sent after its handler returned (its bytes
    /// still where [`Cx::reply_bytes`] says).
    pub(super) fn reply_result(&mut self, id: HandleId, result: Result<(), Error>) {
        match result {
            Ok(()) => {}
            Err(Error::QueueFull) => {
                let kept = self.with_reply_bytes(|cx, data| {
                    cx.wait_for_room(id, Pending::from_message(Message::Data(data)))
                });
                if let Err(e) = kept {
                    log::warn!("reply dropped: {e}");
                }
            }
            // The usual race: a client left while we answered it.
            Err(Error::PeerClosed) => log::debug!("reply: peer closed"),
            Err(e) => log::warn!("reply failed: {e}"),
        }
    }

    fn send_data_now(&mut self, id: HandleId, data: &[u8]) -> Result<(), Error> {
        let slot = self.slots.get_mut(id).ok_or(Error::NotFound)?;
        let ch = slot.channel().ok_or(Error::WrongObjectType)?;
        if !slot.outbox.is_empty() {
            return slot.outbox.push(Pending::from_message(Message::Data(data)));
        }
        match ch.send_data(data) {
            Ok(()) => Ok(()),
            Err(Error::QueueFull) => {
                self.wait_for_room(id, Pending::from_message(Message::Data(data)))
            }
            Err(e) => Err(e),
        }
    }

    /// The peer of `id` is full: keep `pending` and ask for `WRITABLE`.
    fn wait_for_room(&mut self, id: HandleId, pending: Pending) -> Result<(), Error> {
        let slot = self.slots.get_mut(id).ok_or(Error::NotFound)?;
        slot.outbox.push(pending)?;
        self.rewatch(id)
    }

    /// Tells the poll what channel `id` is now watched for.
    fn rewatch(&mut self, id: HandleId) -> Result<(), Error> {
        let interests = self
            .slots
            .get(id)
            .ok_or(Error::NotFound)?
            .channel_interests();
        match self.poll.remove(id) {
            Ok(()) | Err(Error::NotFound) => {}
            Err(e) => return Err(e),
        }
        if interests.is_empty() {
            return Ok(());
        }
        self.poll.add(id, interests)
    }

    /// Stops taking messages from channel `id` (they wait in the kernel's
    /// queue, so its sender meets backpressure) until
    /// [`Cx::resume_receiving`]. For flow control: a relay whose
    /// destination is behind stops reading its source. Sends still work.
    pub fn pause_receiving(&mut self, id: HandleId) -> Result<(), Error> {
        self.set_receiving(id, false)
    }

    /// Takes messages from channel `id` again (and reports its peer's
    /// close).
    pub fn resume_receiving(&mut self, id: HandleId) -> Result<(), Error> {
        self.set_receiving(id, true)
    }

    fn set_receiving(&mut self, id: HandleId, on: bool) -> Result<(), Error> {
        let slot = self.slots.get_mut(id).ok_or(Error::NotFound)?;
        if slot.channel().is_none() {
            return Err(Error::WrongObjectType);
        }
        if slot.receiving == on {
            return Ok(());
        }
        slot.receiving = on;
        self.rewatch(id)
    }

    /// Bytes queued for channel `id` that its peer has no room for yet
    /// (0 if none, or if `id` is not a channel here). A producer that can
    /// wait (a file being streamed) pauses while this is above zero and
    /// resumes on [`Handler::drained`](super::Handler::drained).
    pub fn backlog_bytes(&self, id: HandleId) -> usize {
        self.slots.get(id).map_or(0, |slot| slot.outbox.bytes())
    }

    /// Sends what waits in `id`'s outbox; `Ok(true)` once it is empty.
    pub(super) fn flush(&mut self, id: HandleId) -> Result<bool, Error> {
        self.send_reply();
        let Some(slot) = self.slots.get_mut(id) else {
            return Ok(false);
        };
        let (Object::Supervisor(ch) | Object::Channel(ch)) = &slot.object else {
            return Ok(false);
        };
        let was_waiting = !slot.outbox.is_empty();
        let flushed = slot
            .outbox
            .flush(|kind, body, handles| ch.send_raw(kind, body, handles));
        if matches!(flushed, Ok(Flushed::Waiting)) {
            return Ok(false);
        }
        // Drained (or the peer is gone): stop asking for WRITABLE.
        self.rewatch(id)?;
        flushed.map(|_| was_waiting)
    }

    /// Arms timer `id` to fire `after_ns` from now.
    pub fn set_timer(&mut self, id: HandleId, after_ns: u64) -> Result<(), Error> {
        match self.slots.get(id).map(|s| &s.object) {
            Some(Object::Timer(timer)) => timer.set(after_ns),
            Some(_) => Err(Error::WrongObjectType),
            None => Err(Error::NotFound),
        }
    }

    /// Unmasks interrupt `id` after the device was serviced.
    pub fn ack_interrupt(&mut self, id: HandleId) -> Result<(), Error> {
        match self.slots.get(id).map(|s| &s.object) {
            Some(Object::Interrupt(irq)) => irq.ack(),
            Some(_) => Err(Error::WrongObjectType),
            None => Err(Error::NotFound),
        }
    }

    /// Channel `id`, for calls the loop does not wrap.
    pub fn channel(&self, id: HandleId) -> Option<&Channel> {
        self.slots.get(id)?.channel()
    }

    /// The state of object `id`: any object but the one being handled,
    /// whose state the handler already holds.
    pub fn state_mut(&mut self, id: HandleId) -> Option<&mut S> {
        self.slots.get_mut(id)?.state.as_mut()
    }

    /// Every watched object's id, in ascending order.
    pub fn ids(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.slots.ids()
    }

    /// Every object's id and state (but the one being handled's).
    pub fn states_mut(&mut self) -> impl Iterator<Item = (HandleId, &mut S)> {
        self.slots
            .iter_mut()
            .filter_map(|(id, slot)| slot.state.as_mut().map(|s| (id, s)))
    }

    /// How many objects the loop watches.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// Makes [`Mainloop::run`](super::Mainloop::run) return after this
    /// event.
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}
