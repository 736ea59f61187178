//! Channels: bidirectional, message-oriented, with moved handles and a
//! bounded queue (backpressure: a full peer queue is `Error::QueueFull`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::abi::MESSAGE_DATA_MAX;
use crate::abi::MESSAGE_HANDLES_MAX;
use crate::handle::OwnedHandle;
use crate::message::Message;
use crate::message::MessageKind;
use crate::poll::Poll;
use crate::syscall::kernel;
use crate::timer::Timer;

/// One end of a channel.
#[derive(Debug)]
pub struct Channel(OwnedHandle);

/// A failed send: the error and the message, handles included, so nothing
/// is lost (retry after `WRITABLE` on `QueueFull`).
#[derive(Debug)]
pub struct SendError<'a> {
    pub error: Error,
    pub message: Message<'a>,
}

impl From<SendError<'_>> for Error {
    fn from(e: SendError<'_>) -> Error {
        e.error
    }
}

/// Why [`Channel::open_within`] got no channel.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The server answered `Error`: its code and text.
    Refused { code: u16, text: String },
    /// No answer came in time.
    TimedOut,
    /// Another message came instead of the answer (consumed).
    Unexpected(MessageKind),
    /// The send or the receive failed (`PeerClosed`: the server is gone).
    Kernel(Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Refused { text, .. } => f.write_str(text),
            OpenError::TimedOut => f.write_str("no answer in time"),
            OpenError::Unexpected(kind) => write!(f, "answered {kind:?} instead"),
            OpenError::Kernel(e) => write!(f, "{e}"),
        }
    }
}

/// A reusable receive buffer, big enough for any message.
pub struct MessageBuffer {
    pub(crate) data: Vec<u8>,
    pub(crate) handles: [HandleId; MESSAGE_HANDLES_MAX],
}

impl MessageBuffer {
    pub fn new() -> MessageBuffer {
        MessageBuffer {
            data: alloc::vec![0; MESSAGE_DATA_MAX],
            handles: [HandleId(0); MESSAGE_HANDLES_MAX],
        }
    }
}

impl MessageBuffer {
    /// The body of the message `info` describes (received into this buffer).
    pub fn data(&self, info: &RecvInfo) -> &[u8] {
        &self.data[..info.data_len.min(self.data.len())]
    }

    /// The handles the message `info` describes moved to this component,
    /// now owned by the caller (taken once: the buffer forgets them).
    pub fn take_handles(&mut self, info: &RecvInfo) -> Vec<OwnedHandle> {
        let n = info.num_handles.min(self.handles.len());
        self.handles[..n]
            .iter_mut()
            .map(|h| core::mem::replace(h, HandleId(0)))
            .filter(|h| h.0 != 0)
            .map(OwnedHandle::from_raw)
            .collect()
    }
}

impl Default for MessageBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Channel {
    /// A connected pair of channel ends.
    pub fn create() -> Result<(Channel, Channel), Error> {
        let (a, b) = kernel().channel_create()?;
        Ok((
            Channel(OwnedHandle::from_raw(a)),
            Channel(OwnedHandle::from_raw(b)),
        ))
    }

    pub fn from_handle(handle: OwnedHandle) -> Channel {
        Channel(handle)
    }

    pub fn handle(&self) -> &OwnedHandle {
        &self.0
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    pub fn into_handle(self) -> OwnedHandle {
        self.0
    }

    /// Sends a message. Handles in it move to the peer on success; on
    /// failure the message comes back in the error.
    pub fn send<'a>(&self, msg: Message<'a>) -> Result<(), SendError<'a>> {
        let result = match &msg {
            // The common case needs no encoding: the kernel copies the bytes.
            Message::Data(data) => self.send_raw(MessageKind::Data as u8, data, &[]),
            Message::Close => self.send_raw(MessageKind::Close as u8, &[], &[]),
            other => {
                let mut body = Vec::new();
                other.encode_body(&mut body);
                let handles: &[HandleId] = match other.handle() {
                    Some(h) => &[h.id()],
                    None => &[],
                };
                self.send_raw(other.kind() as u8, &body, handles)
            }
        };
        match result {
            Ok(()) => {
                msg.forget_handle();
                Ok(())
            }
            Err(error) => Err(SendError {
                error,
                message: msg,
            }),
        }
    }

    /// Sends bytes as a `Data` message, waiting while the peer's queue is
    /// full. For sequential code outside a main loop (a test client, a
    /// setup step); in a [`crate::mainloop::Handler`] use `cx.send`, which
    /// never blocks.
    pub fn send_data_waiting(&self, data: &[u8]) -> Result<(), Error> {
        loop {
            match self.send_data(data) {
                Err(Error::QueueFull) => self.wait_for(Readiness::WRITABLE)?,
                other => return other,
            }
        }
    }

    /// Blocks until the channel is `ready` (or its peer closed).
    fn wait_for(&self, ready: Readiness) -> Result<(), Error> {
        let poll = Poll::create()?;
        poll.add(self.id(), ready | Readiness::PEER_CLOSED)?;
        poll.wait().map(drop)
    }

    /// Sends bytes as a `Data` message.
    pub fn send_data(&self, data: &[u8]) -> Result<(), Error> {
        self.send_raw(MessageKind::Data as u8, data, &[])
    }

    /// The raw send: a kind byte, a body and handles to move. Prefer
    /// [`Channel::send`]; this exists for protocols that build bodies
    /// themselves and for tests of the kernel's checks.
    pub fn send_raw(&self, kind: u8, data: &[u8], handles: &[HandleId]) -> Result<(), Error> {
        kernel().channel_send(self.0.id(), kind, data, handles)
    }

    /// The raw receive, for tests and custom decoding.
    pub fn recv_raw(&self, data: &mut [u8], handles: &mut [HandleId]) -> Result<RecvInfo, Error> {
        kernel().channel_recv(self.0.id(), data, handles)
    }

    /// Waits up to `timeout_ms` for the next message and decodes it
    /// (`Ok(None)`: none came in time). `Error::PeerClosed` once the peer
    /// is gone and nothing is left; a message that does not decode is
    /// consumed and reported as `Error::MalformedMessage`, its handles
    /// closed. For a component that waits for one answer; a server waits
    /// in its main loop instead.
    pub fn recv_within<'b>(
        &self,
        buf: &'b mut MessageBuffer,
        timeout_ms: u64,
    ) -> Result<Option<Message<'b>>, Error> {
        let poll = Poll::create()?;
        let timer = Timer::create()?;
        poll.add(self.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
        poll.add(timer.id(), Readiness::READABLE)?;
        timer.set_ms(timeout_ms)?;
        let info = loop {
            let event = poll.wait_recv(buf)?;
            if event.id == timer.id() {
                return Ok(None);
            }
            match event.received {
                Some(Ok(info)) => break info,
                Some(Err(Error::WouldBlock)) => {}
                Some(Err(e)) => return Err(e),
                None if event.ready.contains(Readiness::PEER_CLOSED) => {
                    return Err(Error::PeerClosed)
                }
                None => {}
            }
        };
        let handles = buf.take_handles(&info);
        Message::decode(info.kind, &buf.data[..info.data_len], handles).map(Some)
    }

    /// Asks the server at the other end to open `uri` (`Open`, call id 1,
    /// no handle) and waits up to `timeout_ms` for its answer: the channel
    /// its `OpenReply` carries, or why there is none. For a component that
    /// makes one request at a time on this channel (a command, a check); a
    /// server with many requests out matches call ids in its main loop.
    pub fn open_within(&self, uri: &str, timeout_ms: u64) -> Result<Channel, OpenError> {
        let request = Message::Open {
            call_id: 1,
            uri,
            handle: None,
        };
        self.send(request).map_err(|e| OpenError::Kernel(e.error))?;
        let mut buf = MessageBuffer::new();
        match self.recv_within(&mut buf, timeout_ms) {
            Ok(Some(Message::OpenReply { handle, .. })) => Ok(Channel::from_handle(handle)),
            Ok(Some(Message::Error { code, text, .. })) => Err(OpenError::Refused {
                code,
                text: String::from(text),
            }),
            Ok(Some(other)) => Err(OpenError::Unexpected(other.kind())),
            Ok(None) => Err(OpenError::TimedOut),
            Err(e) => Err(OpenError::Kernel(e)),
        }
    }

    /// Receives and decodes the next message without blocking
    /// (`Error::WouldBlock` if none). A message that does not decode is
    /// consumed and reported as `Error::MalformedMessage`; its handles are
    /// closed.
    pub fn try_recv<'b>(&self, buf: &'b mut MessageBuffer) -> Result<Message<'b>, Error> {
        let info = kernel().channel_recv(self.0.id(), &mut buf.data, &mut buf.handles)?;
        let handles = buf.handles[..info.num_handles]
            .iter()
            .map(|h| OwnedHandle::from_raw(*h))
            .collect();
        Message::decode(info.kind, &buf.data[..info.data_len], handles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kernel::FakeKernel;

    #[test]
    fn recv_within_takes_a_message_times_out_and_sees_the_peer_go() {
        FakeKernel::install();
        let (a, b) = Channel::create().unwrap();
        let mut buf = MessageBuffer::new();
        a.send_data(b"hi").unwrap();
        match b.recv_within(&mut buf, 10) {
            Ok(Some(Message::Data(d))) => assert_eq!(d, b"hi"),
            other => panic!("expected the message, got {other:?}"),
        }
        assert!(matches!(b.recv_within(&mut buf, 10), Ok(None)));
        drop(a);
        assert!(matches!(
            b.recv_within(&mut buf, 10),
            Err(Error::PeerClosed)
        ));
    }

    /// The server's end answers before the request is read (the answer
    /// is what `open_within` waits for either way).
    fn answered(answer: impl FnOnce(&Channel)) -> (Result<Channel, OpenError>, String) {
        let (client, server) = Channel::create().unwrap();
        answer(&server);
        let result = client.open_within("tcp:h:1", 10);
        let mut buf = MessageBuffer::new();
        let uri = match server.try_recv(&mut buf) {
            Ok(Message::Open {
                call_id: 1,
                uri,
                handle: None,
            }) => String::from(uri),
            other => panic!("the request: {other:?}"),
        };
        (result, uri)
    }

    #[test]
    fn open_within_gives_the_channel_or_says_why_not() {
        FakeKernel::install();
        let (result, uri) = answered(|server| {
            let (_, theirs) = Channel::create().unwrap();
            let reply = Message::OpenReply {
                call_id: 1,
                handle: theirs.into_handle(),
            };
            server.send(reply).unwrap();
        });
        assert!(result.is_ok());
        assert_eq!(uri, "tcp:h:1");
        let (result, _) = answered(|server| {
            let error = Message::Error {
                call_id: 1,
                code: 7,
                text: "refused here",
            };
            server.send(error).unwrap();
        });
        let refused = result.unwrap_err();
        assert_eq!(alloc::format!("{refused}"), "refused here");
        assert!(matches!(refused, OpenError::Refused { code: 7, .. }));
        let (result, _) = answered(|server| server.send_data(b"x").unwrap());
        assert_eq!(
            result.unwrap_err(),
            OpenError::Unexpected(MessageKind::Data)
        );
        let (result, _) = answered(|_| {});
        assert_eq!(result.unwrap_err(), OpenError::TimedOut);
        let (client, server) = Channel::create().unwrap();
        drop(server);
        assert_eq!(
            client.open_within("tcp:h:1", 10).unwrap_err(),
            OpenError::Kernel(Error::PeerClosed)
        );
    }
}
