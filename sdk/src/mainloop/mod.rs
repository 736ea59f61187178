//! The one main loop every component has: a poll over its channels, timers
//! and interrupts, and one [`Handler`] method per kind of event.
//!
//! ```ignore
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type State = ();
//!
//!     fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
//!         cx.add_channel(ch, ()).map(drop)
//!     }
//!
//!     fn message(&mut self, cx: &mut Cx<()>, id: HandleId, _: &mut (), msg: Message<'_>) -> Result<(), Error> {
//!         match msg {
//!             Message::Data(data) => cx.send_data(id, data),
//!             _ => Err(Error::NotSupported),
//!         }
//!     }
//! }
//!
//! pub fn main(env: Env) -> Result<(), Error> {
//!     let mut ml = Mainloop::new()?;
//!     ml.cx().add_supervisor(env.supervisor)?;
//!     ml.run(&mut Echo)
//! }
//! ```
//!
//! Handlers change the loop through their [`Cx`] while they run: add a
//! client, drop a connection, arm a timer, send. A send the peer has no
//! room for waits in the channel's outbox and goes out when the peer
//! drains ([`crate::outbox`]): no component writes that dance itself.

mod cx;
mod handler;
mod slots;
#[cfg(test)]
mod tests;

use alloc::rc::Rc;
use core::cell::RefCell;

pub use cx::Cx;
use cx::Object;
use cx::ReplyBytes;
pub use handler::Handler;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::PollEvent;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::channel::Channel;
use crate::channel::MessageBuffer;
use crate::handle::OwnedHandle;
use crate::message::Message;
use crate::message::MessageKind;

pub struct Mainloop<S> {
    cx: Cx<S>,
    /// The receive buffer, shared with `cx` so that a reply can be sent
    /// from the message it answers ([`Cx::reply_data`]): borrowed
    /// mutably only while no handler runs.
    buf: Rc<RefCell<MessageBuffer>>,
}

/// What one readiness report turned out to be, found before any handler
/// borrows the loop.
enum Happened {
    Timer,
    Interrupt,
    /// A message is in the receive buffer.
    Received {
        info: RecvInfo,
        supervisor: bool,
    },
    Failed(Error),
    PeerClosed,
    JobEnded,
    Drained,
    Nothing,
}

impl<S> Mainloop<S> {
    pub fn new() -> Result<Self, Error> {
        let buf = Rc::new(RefCell::new(MessageBuffer::new()));
        Ok(Mainloop {
            cx: Cx::new(Rc::clone(&buf))?,
            buf,
        })
    }

    /// The loop's context, to add objects before [`Mainloop::run`].
    pub fn cx(&mut self) -> &mut Cx<S> {
        &mut self.cx
    }

    /// Waits for events and hands each to `handler`, until a handler calls
    /// [`Cx::stop`] or nothing is left to watch.
    pub fn run<H: Handler<State = S>>(&mut self, handler: &mut H) -> Result<(), Error> {
        self.cx.stopped = false;
        while !self.cx.stopped {
            // One call per message: the kernel receives from a readable
            // channel as it reports it.
            let PollEvent {
                id,
                ready,
                received,
            } = match self.wait() {
                Ok(event) => event,
                Err(Error::PollEmpty) => return Ok(()),
                Err(e) => return Err(e),
            };
            let happened = match received {
                Some(received) => self.received(id, received),
                None => self.find_out(id, ready),
            };
            self.dispatch(handler, id, happened);
            if ready.contains(Readiness::WRITABLE) {
                // After the message: its replies queue behind the outbox.
                let flushed = self.flushed(id);
                self.dispatch(handler, id, flushed);
            }
        }
        self.cx.send_reply();
        Ok(())
    }

    /// Waits for the next event, sending the last handler's reply
    /// ([`Cx::reply_data`]) in the same call.
    fn wait(&mut self) -> Result<PollEvent, Error> {
        let Some(id) = self.cx.reply.take() else {
            return self.cx.poll.wait_recv(&mut self.buf.borrow_mut());
        };
        // `id` is a channel of the loop: `reply_data` checked, and every
        // removal sends the reply first (the kernel checks again).
        let sent = {
            let buf = &mut *self.buf.borrow_mut();
            match &self.cx.reply_bytes {
                ReplyBytes::Received(range) => {
                    self.cx.poll.send_received_wait_recv_on(id, range.clone(), buf)
                }
                ReplyBytes::Copied => {
                    self.cx.poll.send_data_wait_recv_on(id, &self.cx.reply_data, buf)
                }
            }
        };
        match sent {
            Ok(waited) => waited,
            Err(e) => {
                self.cx.reply_result(id, Err(e));
                self.cx.poll.wait_recv(&mut self.buf.borrow_mut())
            }
        }
    }

    /// What the kernel's receive (with the readiness report) came to.
    #[inline(always)]
    fn received(&mut self, id: HandleId, received: Result<RecvInfo, Error>) -> Happened {
        let supervisor = match self.cx.slots.get(id).map(|slot| &slot.object) {
            Some(Object::Supervisor(_)) => true,
            Some(Object::Channel(_)) => false,
            _ => return self.received_stale(received),
        };
        match received {
            Ok(info) => Happened::Received { info, supervisor },
            Err(Error::WouldBlock) => Happened::Nothing,
            Err(Error::PeerClosed) => Happened::PeerClosed,
            Err(e) => Happened::Failed(e),
        }
    }

    /// A message received from a channel removed since (stale
    /// readiness): closes the handles that came with it.
    #[cold]
    fn received_stale(&mut self, received: Result<RecvInfo, Error>) -> Happened {
        if let Ok(info) = received {
            self.buf.borrow().handles[..info.num_handles]
                .iter()
                .for_each(|h| drop(OwnedHandle::from_raw(*h)));
        }
        Happened::Nothing
    }

    /// `WRITABLE` on `id`: flushes its outbox.
    fn flushed(&mut self, id: HandleId) -> Happened {
        match self.cx.flush(id) {
            Ok(true) => Happened::Drained,
            Ok(false) => Happened::Nothing,
            Err(Error::PeerClosed) => Happened::PeerClosed,
            Err(e) => Happened::Failed(e),
        }
    }

    /// What `ready` on `id` means when the kernel received nothing with it:
    /// a timer, an interrupt, the peer gone, or a channel this handle may
    /// not receive from (the receive says why). Readiness is
    /// level-triggered, so whatever is left is reported again by the next
    /// wait.
    fn find_out(&mut self, id: HandleId, ready: Readiness) -> Happened {
        let (ch, supervisor) = match self.cx.slots.get(id).map(|slot| &slot.object) {
            None => return Happened::Nothing, // removed since: stale readiness
            Some(Object::Timer(_)) => return Happened::Timer,
            Some(Object::Interrupt(_)) => return Happened::Interrupt,
            Some(Object::Job(_)) => return Happened::JobEnded,
            Some(Object::Supervisor(ch)) => (ch, true),
            Some(Object::Channel(ch)) => (ch, false),
        };
        if ready.contains(Readiness::READABLE) {
            let received = {
                let buf = &mut *self.buf.borrow_mut();
                ch.recv_raw(&mut buf.data, &mut buf.handles)
            };
            if let Ok(info) = received {
                return Happened::Received { info, supervisor };
            }
            return self.received(id, received);
        }
        if ready.contains(Readiness::PEER_CLOSED) {
            return Happened::PeerClosed;
        }
        Happened::Nothing
    }

    /// Hands what happened to the handler. The common case, bytes and no
    /// handles, is inlined into the loop; everything else is a call.
    #[inline(always)]
    fn dispatch<H: Handler<State = S>>(&mut self, h: &mut H, id: HandleId, happened: Happened) {
        let result = match happened {
            // The common case needs no decoding: bytes, no handles.
            Happened::Received { info, supervisor: false }
                if info.kind == MessageKind::Data as u8 && info.num_handles == 0 =>
            {
                let Mainloop { cx, buf } = self;
                let buf = buf.borrow();
                let msg = Message::Data(&buf.data[..info.data_len]);
                lend(cx, id, |cx, state| h.message(cx, id, state, msg))
            }
            happened => self.dispatch_other(h, id, happened),
        };
        match result {
            Ok(()) => {}
            // The usual race: a client left while we answered it.
            Err(Error::PeerClosed) => log::debug!("handler: peer closed"),
            Err(e) => log::warn!("handler failed: {e}"),
        }
    }

    #[inline(never)]
    fn dispatch_other<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        id: HandleId,
        happened: Happened,
    ) -> Result<(), Error> {
        let Mainloop { cx, buf } = self;
        let buf = buf.borrow();
        match happened {
            Happened::Nothing => Ok(()),
            Happened::Timer => lend(cx, id, |cx, state| h.timer(cx, id, state)),
            Happened::Interrupt => lend(cx, id, |cx, state| h.interrupt(cx, id, state)),
            Happened::Drained => lend(cx, id, |cx, state| h.drained(cx, id, state)),
            Happened::Failed(error) => {
                lend(cx, id, |cx, state| h.bad_message(cx, id, state, error))
            }
            Happened::PeerClosed => peer_closed(cx, h, id),
            Happened::JobEnded => job_ended(cx, h, id),
            // (Bytes without handles came through `dispatch`.)
            Happened::Received { info, supervisor } => {
                let handles = buf.handles[..info.num_handles]
                    .iter()
                    .map(|h| OwnedHandle::from_raw(*h))
                    .collect();
                match Message::decode(info.kind, &buf.data[..info.data_len], handles) {
                    Ok(msg) if supervisor => from_supervisor(cx, h, msg),
                    Ok(msg) => lend(cx, id, |cx, state| h.message(cx, id, state, msg)),
                    Err(error) => lend(cx, id, |cx, state| h.bad_message(cx, id, state, error)),
                }
            }
        }
    }
}

/// Runs `f` with object `id`'s state, lent out of the loop so that `f` can
/// use the whole [`Cx`]; puts it back unless `f` removed the object.
fn lend<S>(
    cx: &mut Cx<S>,
    id: HandleId,
    f: impl FnOnce(&mut Cx<S>, &mut S) -> Result<(), Error>,
) -> Result<(), Error> {
    let Some(mut state) = cx.slots.get_mut(id).and_then(|slot| slot.state.take()) else {
        return Ok(()); // the supervisor (stateless), or gone
    };
    let result = f(cx, &mut state);
    if let Some(slot) = cx.slots.get_mut(id) {
        // Still there, and not replaced by a new object under a reused id.
        if slot.state.is_none() && !matches!(slot.object, Object::Supervisor(_)) {
            slot.state = Some(state);
        }
    }
    result
}

fn is_supervisor<S>(cx: &Cx<S>, id: HandleId) -> bool {
    matches!(
        cx.slots.get(id).map(|slot| &slot.object),
        Some(Object::Supervisor(_))
    )
}

fn peer_closed<S, H: Handler<State = S>>(
    cx: &mut Cx<S>,
    h: &mut H,
    id: HandleId,
) -> Result<(), Error> {
    if is_supervisor(cx, id) {
        cx.remove(id);
        log::warn!("supervisor channel closed");
        return Ok(());
    }
    match cx.remove(id) {
        Some(state) => h.peer_closed(cx, id, state),
        None => Ok(()),
    }
}

/// Job `id`'s command ended: the job leaves the loop (it would stay
/// readable) and goes to the handler with its state.
fn job_ended<S, H: Handler<State = S>>(
    cx: &mut Cx<S>,
    h: &mut H,
    id: HandleId,
) -> Result<(), Error> {
    let Some(slot) = cx.take_slot(id) else {
        return Ok(());
    };
    match (slot.object, slot.state) {
        (Object::Job(job), Some(state)) => h.job_ended(cx, id, state, job),
        _ => Ok(()),
    }
}

/// Startup's messages: `Open { uri: "connect:<service>" }` offers a client,
/// `Open { uri: "reconnect:<field>" }` a fresh channel to a provider.
fn from_supervisor<S, H: Handler<State = S>>(
    cx: &mut Cx<S>,
    h: &mut H,
    msg: Message<'_>,
) -> Result<(), Error> {
    let Message::Open {
        uri,
        handle: Some(handle),
        ..
    } = msg
    else {
        log::warn!(
            "ignoring an unexpected {:?} message from the supervisor",
            msg.kind()
        );
        return Ok(());
    };
    let ch = Channel::from_handle(handle);
    if let Some(service) = uri.strip_prefix("connect:") {
        h.connect(cx, service, ch)
    } else if let Some(field) = uri.strip_prefix("reconnect:") {
        h.reconnect(cx, field, ch)
    } else {
        log::warn!("ignoring an unexpected offer from the supervisor: {uri}");
        Ok(())
    }
}
