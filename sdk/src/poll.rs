//! Poll: wait for any of a set of objects to become ready.

use core::ops::Range;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::PollEvent;
use crate::abi::Readiness;
use crate::channel::Channel;
use crate::channel::MessageBuffer;
use crate::handle::OwnedHandle;
use crate::message::MessageKind;
use crate::syscall::kernel;

#[derive(Debug)]
pub struct Poll(OwnedHandle);

impl Poll {
    pub fn create() -> Result<Poll, Error> {
        kernel()
            .poll_create()
            .map(|h| Poll(OwnedHandle::from_raw(h)))
    }

    /// A poll on a handle this component owns (e.g. one it received).
    pub fn from_handle(handle: OwnedHandle) -> Poll {
        Poll(handle)
    }

    pub fn add(&self, target: HandleId, interests: Readiness) -> Result<(), Error> {
        kernel().poll_add(self.0.id(), target, interests)
    }

    pub fn remove(&self, target: HandleId) -> Result<(), Error> {
        kernel().poll_remove(self.0.id(), target)
    }

    /// Blocks until a watched object is ready.
    pub fn wait(&self) -> Result<(HandleId, Readiness), Error> {
        kernel().poll_wait(self.0.id())
    }

    /// Blocks until a watched object is ready; if it is a readable channel
    /// (watched through a handle that may receive), also receives its next
    /// message into `buf` (`event.received`, as [`crate::Channel::recv_raw`]
    /// would report it). A main loop makes one call per message.
    pub fn wait_recv(&self, buf: &mut MessageBuffer) -> Result<PollEvent, Error> {
        kernel().poll_wait_recv(self.0.id(), &mut buf.data, &mut buf.handles)
    }

    /// Sends `data` as a `Data` message on `ch`, then waits as
    /// [`Poll::wait_recv`] does, in one kernel call: for a client that asks
    /// and waits for the answer, or a loop that replies and waits for the
    /// next message. A peer waiting for the message gets it straight into
    /// its buffer and runs at once. `Err` if the send failed (nothing sent,
    /// nothing waited: `Error::QueueFull` means retry after `WRITABLE`);
    /// `Ok` holds what the wait came to.
    pub fn send_data_wait_recv(
        &self,
        ch: &Channel,
        data: &[u8],
        buf: &mut MessageBuffer,
    ) -> Result<Result<PollEvent, Error>, Error> {
        self.send_data_wait_recv_on(ch.id(), data, buf)
    }

    /// [`Poll::send_data_wait_recv`] for a loop answering with (part of)
    /// the message it just received: sends `buf`'s bytes `range` and then
    /// receives into `buf`, with no copy of the answer of its own.
    /// [`Error::InvalidArgument`] if `range` is not inside the buffer.
    pub fn send_received_wait_recv(
        &self,
        ch: &Channel,
        range: Range<usize>,
        buf: &mut MessageBuffer,
    ) -> Result<Result<PollEvent, Error>, Error> {
        self.send_received_wait_recv_on(ch.id(), range, buf)
    }

    /// [`Poll::send_data_wait_recv`] on the channel handle `ch` (the main
    /// loop's, which knows its channels by id).
    #[inline(always)]
    pub(crate) fn send_data_wait_recv_on(
        &self,
        ch: HandleId,
        data: &[u8],
        buf: &mut MessageBuffer,
    ) -> Result<Result<PollEvent, Error>, Error> {
        kernel().channel_send_poll_wait_recv(
            ch,
            MessageKind::Data as u8,
            data,
            &[],
            self.0.id(),
            &mut buf.data,
            &mut buf.handles,
        )
    }

    /// [`Poll::send_received_wait_recv`] on the channel handle `ch`.
    #[inline(always)]
    pub(crate) fn send_received_wait_recv_on(
        &self,
        ch: HandleId,
        range: Range<usize>,
        buf: &mut MessageBuffer,
    ) -> Result<Result<PollEvent, Error>, Error> {
        kernel().channel_send_received_poll_wait_recv(
            ch,
            MessageKind::Data as u8,
            range,
            self.0.id(),
            &mut buf.data,
            &mut buf.handles,
        )
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }
}
