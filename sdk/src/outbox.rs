//! Backpressure, written once: the messages a channel's peer had no room
//! for, kept in order until it drains its queue, up to a bound.
//!
//! The mainloop owns one [`Outbox`] per channel. A send goes straight to
//! the kernel while the outbox is empty; once the peer's queue is full, this
//! send and every later one wait here (so order is kept) and go out on
//! `WRITABLE`. Past [`BACKLOG_MAX_BYTES`] a send fails with
//! [`Error::BacklogFull`] and nothing is queued: a peer that stops reading
//! costs its sender a bounded amount of memory.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::message::Message;

/// The most bytes one channel's outbox holds (bodies plus
/// [`MESSAGE_OVERHEAD_BYTES`] per message).
pub const BACKLOG_MAX_BYTES: usize = 256 * 1024;
/// What one queued message costs beyond its body, so that a flood of empty
/// messages is bounded too.
pub const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// A message that waits for room: its kind byte, encoded body and the
/// handles it moves (closed if it is dropped unsent).
#[derive(Debug)]
pub struct Pending {
    pub kind: u8,
    pub body: Vec<u8>,
    pub handles: Vec<OwnedHandle>,
}

impl Pending {
    /// An owned copy of `msg`; its handle moves into the copy.
    pub fn from_message(msg: Message<'_>) -> Pending {
        let kind = msg.kind() as u8;
        let mut body = Vec::new();
        msg.encode_body(&mut body);
        let handles = msg.into_handle().into_iter().collect();
        Pending {
            kind,
            body,
            handles,
        }
    }

    fn cost(&self) -> usize {
        self.body.len() + MESSAGE_OVERHEAD_BYTES
    }
}

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything went out: the outbox is empty.
    Drained,
    /// The peer is full again; the rest waits for the next `WRITABLE`.
    Waiting,
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    bytes: usize,
}

impl Outbox {
    pub const fn new() -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes waiting (bodies plus per-message overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues `msg` behind the others, or fails with
    /// [`Error::BacklogFull`] (dropping it) if that would pass the bound.
    pub fn push(&mut self, msg: Pending) -> Result<(), Error> {
        let cost = msg.cost();
        if self.bytes + cost > BACKLOG_MAX_BYTES {
            return Err(Error::BacklogFull);
        }
        self.bytes += cost;
        self.queue.push_back(msg);
        Ok(())
    }

    /// Sends queued messages in order with `send(kind, body, handles)`
    /// until one meets [`Error::QueueFull`] or the outbox is empty. Another
    /// error (the peer closed) drops everything queued and is returned.
    pub fn flush<F>(&mut self, mut send: F) -> Result<Flushed, Error>
    where
        F: FnMut(u8, &[u8], &[HandleId]) -> Result<(), Error>,
    {
        while let Some(front) = self.queue.front() {
            let mut ids = [HandleId(0); crate::abi::MESSAGE_HANDLES_MAX];
            let n = front.handles.len().min(ids.len());
            for (slot, h) in ids.iter_mut().zip(&front.handles) {
                *slot = h.id();
            }
            match send(front.kind, &front.body, &ids[..n]) {
                Ok(()) => {
                    let sent = self.queue.pop_front().expect("front exists");
                    self.bytes -= sent.cost();
                    // The handles now belong to the peer.
                    sent.handles.into_iter().for_each(|h| {
                        h.into_raw();
                    });
                }
                Err(Error::QueueFull) => return Ok(Flushed::Waiting),
                Err(e) => {
                    self.clear();
                    return Err(e);
                }
            }
        }
        Ok(Flushed::Drained)
    }

    /// Drops everything queued (closing the handles it carried).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn data(bytes: &[u8]) -> Pending {
        Pending::from_message(Message::Data(bytes))
    }

    #[test]
    fn flush_sends_in_order_until_the_peer_is_full() {
        let mut outbox = Outbox::new();
        for i in 0..5u8 {
            outbox.push(data(&[i])).unwrap();
        }
        let mut sent = vec![];
        let result = outbox.flush(|_, body, _| {
            if sent.len() == 3 {
                return Err(Error::QueueFull);
            }
            sent.push(body[0]);
            Ok(())
        });
        assert_eq!(result, Ok(Flushed::Waiting));
        assert_eq!(sent, [0, 1, 2]);
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.bytes(), 2 * (1 + MESSAGE_OVERHEAD_BYTES));

        let result = outbox.flush(|_, body, _| {
            sent.push(body[0]);
            Ok(())
        });
        assert_eq!(result, Ok(Flushed::Drained));
        assert_eq!(sent, [0, 1, 2, 3, 4]);
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn past_the_bound_a_push_fails_and_queues_nothing() {
        let mut outbox = Outbox::new();
        let chunk = vec![7u8; 16 * 1024];
        let per = chunk.len() + MESSAGE_OVERHEAD_BYTES;
        let fit = BACKLOG_MAX_BYTES / per;
        for _ in 0..fit {
            outbox.push(data(&chunk)).unwrap();
        }
        assert_eq!(outbox.push(data(&chunk)), Err(Error::BacklogFull));
        assert_eq!(outbox.len(), fit);
        assert_eq!(outbox.bytes(), fit * per);
    }

    #[test]
    fn empty_messages_are_bounded_too() {
        let mut outbox = Outbox::new();
        let mut n = 0;
        while outbox.push(data(&[])).is_ok() {
            n += 1;
        }
        assert_eq!(n, BACKLOG_MAX_BYTES / MESSAGE_OVERHEAD_BYTES);
    }

    #[test]
    fn a_closed_peer_drops_the_backlog() {
        let mut outbox = Outbox::new();
        outbox.push(data(b"a")).unwrap();
        outbox.push(data(b"b")).unwrap();
        let result = outbox.flush(|_, _, _| Err(Error::PeerClosed));
        assert_eq!(result, Err(Error::PeerClosed));
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn kinds_and_bodies_are_kept() {
        let mut outbox = Outbox::new();
        outbox
            .push(Pending::from_message(Message::Abort {
                code: 7,
                reason: "gone",
            }))
            .unwrap();
        let mut seen = None;
        outbox
            .flush(|kind, body, handles| {
                seen = Some((kind, body.to_vec(), handles.len()));
                Ok(())
            })
            .unwrap();
        let (kind, body, handles) = seen.unwrap();
        let decoded = Message::decode(kind, &body, vec![]).unwrap();
        assert!(matches!(decoded, Message::Abort { code: 7, reason: "gone" }));
        assert_eq!(handles, 0);
    }
}
