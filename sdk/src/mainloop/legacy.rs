//! The first main loop (kept while components move to [`super::Mainloop`]):
//! a poll over its channels and
//! timers, returning one event at a time to a `match` in the component.
//!
//! ```ignore
//! let mut ml = Mainloop::new()?;
//! ml.add_channel(env.supervisor, Ctx::Supervisor)?;
//! loop {
//!     match ml.next() {
//!         Event::Message { ctx, ch, msg } => { /* handle msg from ch */ }
//!         Event::PeerClosed { ctx, .. } => { /* the peer is gone; removed */ }
//!         Event::Timer { ctx, .. } => { /* a timer fired */ }
//!         Event::Writable { .. } => { /* room again after QueueFull */ }
//!         Event::Error { error, .. } => { /* a malformed message was dropped */ }
//!     }
//! }
//! ```
//! Each watched object carries a context value `C` of the component's
//! choosing (which client, which connection...), handed back with its events.

use alloc::collections::BTreeMap;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::channel::Channel;
use crate::channel::MessageBuffer;
use crate::message::Message;
use crate::poll::Poll;
use crate::timer::Timer;

enum Object {
    Channel(Channel),
    Timer(Timer),
}

struct Entry<C> {
    object: Object,
    ctx: C,
}

pub enum Event<'a, C> {
    /// A message arrived on `ch`.
    Message {
        ctx: &'a mut C,
        ch: &'a Channel,
        msg: Message<'a>,
    },
    /// `ch`'s peer closed and every message before that was delivered. The
    /// channel is out of the loop; its context comes back.
    PeerClosed { ctx: C, ch: Channel },
    /// The timer fired (it is one-shot: `set` it again to repeat).
    Timer { ctx: &'a mut C, timer: &'a Timer },
    /// The peer's queue has room again (only if asked for with
    /// [`Mainloop::watch_writable`]).
    Writable { ctx: &'a mut C, ch: &'a Channel },
    /// A message on `ch` did not decode and was dropped.
    Error {
        ctx: &'a mut C,
        ch: &'a Channel,
        error: Error,
    },
}

pub struct Mainloop<C> {
    poll: Poll,
    entries: BTreeMap<HandleId, Entry<C>>,
    buf: MessageBuffer,
}

const BASE_INTERESTS: Readiness = Readiness::READABLE.union(Readiness::PEER_CLOSED);

impl<C> Mainloop<C> {
    pub fn new() -> Result<Self, Error> {
        Ok(Mainloop {
            poll: Poll::create()?,
            entries: BTreeMap::new(),
            buf: MessageBuffer::new(),
        })
    }

    pub fn add_channel(&mut self, ch: Channel, ctx: C) -> Result<HandleId, Error> {
        let id = ch.id();
        self.poll.add(id, BASE_INTERESTS)?;
        self.entries.insert(
            id,
            Entry {
                object: Object::Channel(ch),
                ctx,
            },
        );
        Ok(id)
    }

    pub fn add_timer(&mut self, timer: Timer, ctx: C) -> Result<HandleId, Error> {
        let id = timer.id();
        self.poll.add(id, Readiness::READABLE)?;
        self.entries.insert(
            id,
            Entry {
                object: Object::Timer(timer),
                ctx,
            },
        );
        Ok(id)
    }

    /// Also report [`Event::Writable`] for this channel (or stop to).
    pub fn watch_writable(&mut self, id: HandleId, on: bool) -> Result<(), Error> {
        let interests = if on {
            BASE_INTERESTS | Readiness::WRITABLE
        } else {
            BASE_INTERESTS
        };
        self.poll.remove(id)?;
        self.poll.add(id, interests)
    }

    /// Takes a channel out of the loop, with its context.
    pub fn remove_channel(&mut self, id: HandleId) -> Option<(Channel, C)> {
        match self.entries.get(&id) {
            Some(Entry {
                object: Object::Channel(_),
                ..
            }) => {}
            _ => return None,
        }
        let _ = self.poll.remove(id);
        match self.entries.remove(&id) {
            Some(Entry {
                object: Object::Channel(ch),
                ctx,
            }) => Some((ch, ctx)),
            _ => None,
        }
    }

    pub fn channel(&self, id: HandleId) -> Option<&Channel> {
        match self.entries.get(&id) {
            Some(Entry {
                object: Object::Channel(ch),
                ..
            }) => Some(ch),
            _ => None,
        }
    }

    pub fn ctx_mut(&mut self, id: HandleId) -> Option<&mut C> {
        self.entries.get_mut(&id).map(|e| &mut e.ctx)
    }

    /// Iterates over every watched object's id and context.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (HandleId, &mut C)> {
        self.entries.iter_mut().map(|(id, e)| (*id, &mut e.ctx))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Waits for the next event. Panics only if the loop watches nothing
    /// (a component bug: it would sleep forever).
    // Not `Iterator::next`: each event borrows the loop (a lending
    // iterator), which `Iterator` cannot express.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Event<'_, C> {
        // First find out what happened (no borrows kept across waits), then
        // build the event from fresh borrows.
        let (id, action) = loop {
            let (id, ready) = match self.poll.wait() {
                Ok(r) => r,
                Err(Error::PollEmpty) => panic!("mainloop: nothing left to wait for"),
                Err(e) => panic!("mainloop: poll failed: {e}"),
            };
            let Some(entry) = self.entries.get(&id) else {
                continue; // removed since; stale readiness
            };
            let ch = match &entry.object {
                Object::Timer(_) => break (id, Action::Timer),
                Object::Channel(ch) => ch,
            };
            let mut closed = false;
            if ready.contains(Readiness::READABLE) {
                match ch.recv_raw(&mut self.buf.data, &mut self.buf.handles) {
                    Ok(info) => break (id, Action::Received(info)),
                    Err(Error::WouldBlock) => {}
                    Err(Error::PeerClosed) => closed = true,
                    Err(e) => break (id, Action::Failed(e)),
                }
            }
            if closed || ready.contains(Readiness::PEER_CLOSED) && !ready.contains(Readiness::READABLE) {
                break (id, Action::PeerClosed);
            }
            if ready.contains(Readiness::WRITABLE) {
                break (id, Action::Writable);
            }
        };

        if let Action::PeerClosed = action {
            let (ch, ctx) = self.remove_channel(id).expect("entry exists");
            return Event::PeerClosed { ctx, ch };
        }
        let entry = self.entries.get_mut(&id).expect("entry exists");
        match (&entry.object, action) {
            (Object::Timer(timer), _) => Event::Timer {
                ctx: &mut entry.ctx,
                timer,
            },
            (Object::Channel(ch), Action::Received(info)) => {
                let handles = self.buf.handles[..info.num_handles]
                    .iter()
                    .map(|h| crate::handle::OwnedHandle::from_raw(*h))
                    .collect();
                match Message::decode(info.kind, &self.buf.data[..info.data_len], handles) {
                    Ok(msg) => Event::Message {
                        ctx: &mut entry.ctx,
                        ch,
                        msg,
                    },
                    Err(error) => Event::Error {
                        ctx: &mut entry.ctx,
                        ch,
                        error,
                    },
                }
            }
            (Object::Channel(ch), Action::Failed(error)) => Event::Error {
                ctx: &mut entry.ctx,
                ch,
                error,
            },
            (Object::Channel(ch), _) => Event::Writable {
                ctx: &mut entry.ctx,
                ch,
            },
        }
    }
}

enum Action {
    Timer,
    Received(crate::abi::RecvInfo),
    Failed(Error),
    PeerClosed,
    Writable,
}
