//! The fake kernel's channels, polls and timers, in plain memory. A wait
//! that would block returns `PollEmpty` instead, so a main loop under test
//! runs until nothing is ready and then returns.

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::abi::CHANNEL_QUEUE_MAX;

type Queued = (u8, Vec<u8>, Vec<HandleId>);

enum Object {
    Channel {
        peer: u32,
        /// Messages for this end.
        inbox: VecDeque<Queued>,
    },
    Poll {
        watched: Vec<(HandleId, Readiness)>,
        cursor: usize,
    },
    Timer {
        fired: bool,
    },
    /// A console: what the test typed, not yet read, and what was written.
    Console {
        input: VecDeque<u8>,
        output: Vec<u8>,
    },
}

pub struct Ipc {
    objects: BTreeMap<u32, Object>,
}

impl Default for Ipc {
    fn default() -> Ipc {
        Ipc::new()
    }
}

impl Ipc {
    pub const fn new() -> Ipc {
        Ipc {
            objects: BTreeMap::new(),
        }
    }

    /// Closes `id` if it is one of ours.
    pub fn close(&mut self, id: HandleId) -> bool {
        self.objects.remove(&id.0).is_some()
    }

    pub fn channel_pair(&mut self, a: u32, b: u32) {
        let end = |peer| Object::Channel {
            peer,
            inbox: VecDeque::new(),
        };
        self.objects.insert(a, end(b));
        self.objects.insert(b, end(a));
    }

    pub fn poll(&mut self, id: u32) {
        let poll = Object::Poll {
            watched: Vec::new(),
            cursor: 0,
        };
        self.objects.insert(id, poll);
    }

    pub fn timer(&mut self, id: u32) {
        self.objects.insert(id, Object::Timer { fired: false });
    }

    fn readiness(&self, id: HandleId) -> Readiness {
        match self.objects.get(&id.0) {
            Some(Object::Channel { peer, inbox }) => {
                let mut r = Readiness::empty();
                if !inbox.is_empty() {
                    r |= Readiness::READABLE;
                }
                match self.objects.get(peer) {
                    Some(Object::Channel { inbox: theirs, .. })
                        if theirs.len() < CHANNEL_QUEUE_MAX =>
                    {
                        r |= Readiness::WRITABLE;
                    }
                    Some(Object::Channel { .. }) => {}
                    _ => r |= Readiness::PEER_CLOSED,
                }
                r
            }
            Some(Object::Timer { fired: true }) => Readiness::READABLE,
            Some(Object::Console { input, .. }) if !input.is_empty() => Readiness::READABLE,
            _ => Readiness::empty(),
        }
    }

    pub fn send(
        &mut self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        let peer = match self.objects.get(&ch.0) {
            Some(Object::Channel { peer, .. }) => *peer,
            Some(_) => return Err(Error::WrongObjectType),
            None => return Err(Error::InvalidHandle),
        };
        match self.objects.get_mut(&peer) {
            Some(Object::Channel { inbox, .. }) if inbox.len() >= CHANNEL_QUEUE_MAX => {
                Err(Error::QueueFull)
            }
            Some(Object::Channel { inbox, .. }) => {
                inbox.push_back((kind, data.to_vec(), handles.to_vec()));
                Ok(())
            }
            _ => Err(Error::PeerClosed),
        }
    }

    pub fn recv(
        &mut self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        let peer_alive = match self.objects.get(&ch.0) {
            Some(Object::Channel { peer, .. }) => self.objects.contains_key(peer),
            Some(_) => return Err(Error::WrongObjectType),
            None => return Err(Error::InvalidHandle),
        };
        let Some(Object::Channel { inbox, .. }) = self.objects.get_mut(&ch.0) else {
            return Err(Error::InvalidHandle);
        };
        let Some((kind, body, moved)) = inbox.pop_front() else {
            return Err(if peer_alive {
                Error::WouldBlock
            } else {
                Error::PeerClosed
            });
        };
        data[..body.len()].copy_from_slice(&body);
        handles[..moved.len()].copy_from_slice(&moved);
        Ok(RecvInfo {
            kind,
            data_len: body.len(),
            num_handles: moved.len(),
        })
    }

    pub fn poll_add(
        &mut self,
        poll: HandleId,
        target: HandleId,
        interests: Readiness,
    ) -> Result<(), Error> {
        let Some(Object::Poll { watched, .. }) = self.objects.get_mut(&poll.0) else {
            return Err(Error::InvalidHandle);
        };
        if watched.iter().any(|(id, _)| *id == target) {
            return Err(Error::AlreadyExists);
        }
        watched.push((target, interests));
        Ok(())
    }

    pub fn poll_remove(&mut self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        let Some(Object::Poll { watched, .. }) = self.objects.get_mut(&poll.0) else {
            return Err(Error::InvalidHandle);
        };
        let before = watched.len();
        watched.retain(|(id, _)| *id != target);
        if watched.len() == before {
            Err(Error::NotFound)
        } else {
            Ok(())
        }
    }

    /// The next ready entry, round robin; `PollEmpty` when nothing is ready
    /// (where the real kernel would block).
    pub fn is_channel(&self, id: HandleId) -> bool {
        matches!(self.objects.get(&id.0), Some(Object::Channel { .. }))
    }

    pub fn poll_wait(&mut self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        let Some(Object::Poll { watched, cursor }) = self.objects.get(&poll.0) else {
            return Err(Error::InvalidHandle);
        };
        let n = watched.len();
        let found = (0..n).find_map(|i| {
            let (id, interests) = watched[(cursor + i) % n];
            let ready = self.readiness(id) & interests;
            (!ready.is_empty()).then_some((i, id, ready))
        });
        let (i, id, ready) = found.ok_or(Error::PollEmpty)?;
        if let Some(Object::Poll { cursor, .. }) = self.objects.get_mut(&poll.0) {
            *cursor = (*cursor + i + 1) % n;
        }
        if let Some(Object::Timer { fired }) = self.objects.get_mut(&id.0) {
            *fired = false; // reading a timer's readiness disarms it
        }
        Ok((id, ready))
    }

    /// Time passes at once: the timer is ready as soon as it is set.
    pub fn timer_set(&mut self, timer: HandleId) -> Result<(), Error> {
        match self.objects.get_mut(&timer.0) {
            Some(Object::Timer { fired }) => {
                *fired = true;
                Ok(())
            }
            _ => Err(Error::InvalidHandle),
        }
    }

    pub fn console(&mut self, id: u32) {
        let console = Object::Console {
            input: VecDeque::new(),
            output: Vec::new(),
        };
        self.objects.insert(id, console);
    }

    fn console_mut(&mut self, id: HandleId) -> Result<(&mut VecDeque<u8>, &mut Vec<u8>), Error> {
        match self.objects.get_mut(&id.0) {
            Some(Object::Console { input, output }) => Ok((input, output)),
            Some(_) => Err(Error::WrongObjectType),
            None => Err(Error::InvalidHandle),
        }
    }

    /// Queues `bytes` as typed on console `id`.
    pub fn console_type(&mut self, id: HandleId, bytes: &[u8]) -> Result<(), Error> {
        self.console_mut(id)?.0.extend(bytes.iter().copied());
        Ok(())
    }

    /// Takes what was written to console `id` so far.
    pub fn console_output(&mut self, id: HandleId) -> Result<Vec<u8>, Error> {
        Ok(core::mem::take(self.console_mut(id)?.1))
    }

    pub fn console_read(&mut self, id: HandleId, buf: &mut [u8]) -> Result<usize, Error> {
        let (input, _) = self.console_mut(id)?;
        if buf.is_empty() {
            return Err(Error::InvalidArgument);
        }
        if input.is_empty() {
            return Err(Error::WouldBlock);
        }
        let n = buf.len().min(input.len());
        for (slot, b) in buf.iter_mut().zip(input.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }

    /// Like the kernel, takes at most `CONSOLE_WRITE_MAX` bytes a call.
    pub fn console_write(&mut self, id: HandleId, data: &[u8]) -> Result<usize, Error> {
        let n = data.len().min(crate::abi::CONSOLE_WRITE_MAX);
        self.console_mut(id)?.1.extend_from_slice(&data[..n]);
        Ok(n)
    }
}
