//! Blocking calls to the fs server: send one request, wait for its
//! answer (at most [`CALL_TIMEOUT_MS`]). [`Calls`] is what `Files` and
//! `File` are built on, and what a client that speaks the protocol itself
//! uses (the linux server's FUSE backend names inodes, not paths): one poll
//! and one timer serve its channel and, while a call on one waits, any
//! open file's channel, so an open file costs one handle.

use alloc::format;
use alloc::vec::Vec;

use super::wire;
use super::ErrorKind;
use super::FsError;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::channel::MessageBuffer;
use crate::poll::Poll;
use crate::timer::Timer;
use crate::Channel;
use crate::Message;

/// How long a call waits for its answer before giving up (`TimedOut`).
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// What came back for a call.
enum Answer {
    /// A request's result bytes (after the call id).
    Data(Vec<u8>),
    /// An `Open`'s channel.
    Channel(Channel),
}

/// A kernel error while calling the fs server, as a file error.
fn kernel_error(what: &str, e: Error) -> FsError {
    let kind = match e {
        Error::PeerClosed => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    FsError::new(kind, format!("{what}: {e:?}"))
}

/// An answer that does not decode.
pub(super) fn malformed(what: &str) -> FsError {
    FsError::new(
        ErrorKind::Malformed,
        format!("the fs server's answer to {what} is malformed"),
    )
}

/// Waits on `poll` (which watches channel `on` and `timer`) for the answer
/// to `call_id` on `on`, at most [`CALL_TIMEOUT_MS`]. Messages on other
/// channels of the poll, and answers to earlier calls that timed out, are
/// dropped. An `Error` answer is the call's error.
fn wait_answer(
    poll: &Poll,
    timer: &Timer,
    buf: &mut MessageBuffer,
    on: HandleId,
    call_id: u32,
) -> Result<Answer, FsError> {
    let waiting = |e| kernel_error("waiting for the fs server", e);
    timer.set_ms(CALL_TIMEOUT_MS).map_err(waiting)?;
    loop {
        let event = poll.wait_recv(buf).map_err(waiting)?;
        if event.id == timer.id() {
            return Err(FsError::new(
                ErrorKind::TimedOut,
                "the fs server did not answer in time",
            ));
        }
        let info = match event.received {
            Some(Ok(info)) => info,
            Some(Err(Error::WouldBlock)) => continue,
            Some(Err(e)) => return Err(waiting(e)),
            None if event.ready.contains(Readiness::PEER_CLOSED) => {
                return Err(FsError::new(
                    ErrorKind::Unavailable,
                    "the fs server is gone",
                ))
            }
            None => continue,
        };
        let handles = buf.take_handles(&info);
        let msg = Message::decode(info.kind, buf.data(&info), handles);
        if event.id != on {
            continue;
        }
        if let Some(answer) = answer_to(msg.map_err(|_| malformed("a call"))?, call_id)? {
            return Ok(answer);
        }
    }
}

/// A channel to the fs server (the `fs` channel or an open file's) with
/// what waiting on it takes.
pub struct Calls {
    channel: Channel,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    next_call: u32,
}

impl Calls {
    pub fn new(channel: Channel) -> Result<Calls, FsError> {
        let setup = |e| kernel_error("setting up the fs client", e);
        let poll = Poll::create().map_err(setup)?;
        let timer = Timer::create().map_err(setup)?;
        poll.add(channel.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(setup)?;
        poll.add(timer.id(), Readiness::READABLE).map_err(setup)?;
        Ok(Calls {
            channel,
            poll,
            timer,
            buf: MessageBuffer::new(),
            next_call: 1,
        })
    }

    /// The channel the calls go on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    fn call_id(&mut self) -> u32 {
        let id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1).max(1);
        id
    }

    /// Sends the `Data` request `encode` makes for a call id and waits
    /// for its result bytes.
    pub fn call(&mut self, encode: impl FnOnce(u32) -> Vec<u8>) -> Result<Vec<u8>, FsError> {
        let call_id = self.call_id();
        self.channel
            .send_data_waiting(&encode(call_id))
            .map_err(|e| kernel_error("sending to the fs server", e))?;
        let on = self.channel.id();
        self.data_answer(on, call_id)
    }

    /// Sends `Open` and waits for the channel it opens.
    pub fn open(&mut self, uri: &str) -> Result<Channel, FsError> {
        let call_id = self.call_id();
        let msg = Message::Open {
            call_id,
            uri,
            handle: None,
        };
        self.channel
            .send(msg)
            .map_err(|e| kernel_error("sending to the fs server", e.error))?;
        let on = self.channel.id();
        match wait_answer(&self.poll, &self.timer, &mut self.buf, on, call_id)? {
            Answer::Channel(ch) => Ok(ch),
            Answer::Data(_) => Err(malformed("open")),
        }
    }

    /// A request on `file`, an open file's channel (not this one's): it
    /// joins the poll while its call waits.
    pub fn call_file(
        &mut self,
        file: &Channel,
        encode: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<Vec<u8>, FsError> {
        let call_id = self.call_id();
        file.send_data_waiting(&encode(call_id))
            .map_err(|e| kernel_error("sending to an open file", e))?;
        self.poll
            .add(file.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(|e| kernel_error("waiting on an open file", e))?;
        let result = self.data_answer(file.id(), call_id);
        // Leaving the poll cannot fail for a channel just added.
        let _ = self.poll.remove(file.id());
        result
    }

    fn data_answer(&mut self, on: HandleId, call_id: u32) -> Result<Vec<u8>, FsError> {
        match wait_answer(&self.poll, &self.timer, &mut self.buf, on, call_id)? {
            Answer::Data(data) => Ok(data),
            Answer::Channel(_) => Err(malformed("a request")),
        }
    }
}

/// The answer `msg` carries for `call_id`, if it is one.
fn answer_to(msg: Message<'_>, call_id: u32) -> Result<Option<Answer>, FsError> {
    Ok(match msg {
        Message::Data(body) => match wire::split_reply(body) {
            Some((id, result)) if id == call_id => Some(Answer::Data(result.to_vec())),
            Some(_) => None,
            None => return Err(malformed("a call")),
        },
        Message::OpenReply {
            call_id: id,
            handle,
        } if id == call_id => Some(Answer::Channel(Channel::from_handle(handle))),
        Message::Error {
            call_id: id,
            code,
            text,
        } if id == call_id => return Err(FsError::new(ErrorKind::from_code(code), text)),
        _ => None,
    })
}
