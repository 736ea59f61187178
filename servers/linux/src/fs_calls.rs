//! Blocking calls to the fs server by (inode, name), which the client
//! `starina::fs::Files` does not offer (its paths are absolute; the FUSE
//! bridge knows inodes, not paths). Each call sends one `wire` request and
//! waits for its answer, at most [`CALL_TIMEOUT_MS`].
//!
//! One poll and one timer serve the `fs` channel and every open file: an
//! open file costs the server one handle (its channel), not three (a
//! `starina::fs::File` has its own poll and timer), which matters with the
//! 1,024 handles a process may hold. A file's channel joins the poll only
//! while a call on it waits.

use alloc::format;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::MessageBuffer;
use starina::fs::wire;
use starina::fs::wire::FileRequest;
use starina::fs::wire::Request;
use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina::poll::Poll;
use starina::timer::Timer;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

/// How long a call waits for the fs server (as `Files` does).
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// The `fs` channel and what waiting on it takes.
pub struct FsCalls {
    fs: Channel,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    next_call: u32,
}

/// What came back for a call.
enum Answer {
    Data(Vec<u8>),
    Channel(Channel),
}

fn kernel_error(what: &str, e: Error) -> FsError {
    let kind = match e {
        Error::PeerClosed => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    FsError::new(kind, format!("{what}: {e:?}"))
}

fn malformed() -> FsError {
    FsError::new(
        ErrorKind::Malformed,
        "a malformed answer from the fs server",
    )
}

fn gone() -> FsError {
    FsError::new(ErrorKind::Unavailable, "the fs server is gone")
}

impl FsCalls {
    /// Takes the spec's `fs` channel.
    pub fn new(fs: Channel) -> Result<FsCalls, FsError> {
        let setup = |e| kernel_error("setting up fs calls", e);
        let poll = Poll::create().map_err(setup)?;
        let timer = Timer::create().map_err(setup)?;
        poll.add(fs.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(setup)?;
        poll.add(timer.id(), Readiness::READABLE).map_err(setup)?;
        Ok(FsCalls {
            fs,
            poll,
            timer,
            buf: MessageBuffer::new(),
            next_call: 1,
        })
    }

    fn call_id(&mut self) -> u32 {
        let id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1).max(1);
        id
    }

    /// A request on the `fs` channel; its result bytes.
    pub fn call(&mut self, request: &Request<'_>) -> Result<Vec<u8>, FsError> {
        let call_id = self.call_id();
        self.fs
            .send_data_waiting(&request.encode(call_id))
            .map_err(|e| kernel_error("sending to the fs server", e))?;
        match self.wait(self.fs.id(), call_id)? {
            Answer::Data(data) => Ok(data),
            Answer::Channel(_) => Err(malformed()),
        }
    }

    /// Opens `uri` (`inode:<n>?<options>`); the open file's channel.
    pub fn open(&mut self, uri: &str) -> Result<Channel, FsError> {
        let call_id = self.call_id();
        let msg = Message::Open {
            call_id,
            uri,
            handle: None,
        };
        self.fs
            .send(msg)
            .map_err(|e| kernel_error("sending to the fs server", e.error))?;
        match self.wait(self.fs.id(), call_id)? {
            Answer::Channel(channel) => Ok(channel),
            Answer::Data(_) => Err(malformed()),
        }
    }

    /// A request on an open file's channel; its result bytes.
    pub fn call_file(
        &mut self,
        file: &Channel,
        request: &FileRequest<'_>,
    ) -> Result<Vec<u8>, FsError> {
        let call_id = self.call_id();
        file.send_data_waiting(&request.encode(call_id))
            .map_err(|e| kernel_error("sending to an open file", e))?;
        self.poll
            .add(file.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(|e| kernel_error("waiting on an open file", e))?;
        let answer = self.wait(file.id(), call_id);
        // Leaving the poll cannot fail for a channel just added.
        let _ = self.poll.remove(file.id());
        match answer? {
            Answer::Data(data) => Ok(data),
            Answer::Channel(_) => Err(malformed()),
        }
    }

    /// Waits for the answer to `call_id` on `on`; anything else that
    /// arrives (answers to calls that timed out) is dropped.
    fn wait(&mut self, on: HandleId, call_id: u32) -> Result<Answer, FsError> {
        let waiting = |e| kernel_error("waiting for the fs server", e);
        self.timer.set_ms(CALL_TIMEOUT_MS).map_err(waiting)?;
        loop {
            let event = self.poll.wait_recv(&mut self.buf).map_err(waiting)?;
            if event.id == self.timer.id() {
                return Err(FsError::new(
                    ErrorKind::TimedOut,
                    "the fs server did not answer in time",
                ));
            }
            let info = match event.received {
                Some(Ok(info)) => info,
                Some(Err(Error::WouldBlock)) => continue,
                Some(Err(e)) => return Err(waiting(e)),
                None if event.ready.contains(Readiness::PEER_CLOSED) => return Err(gone()),
                None => continue,
            };
            let handles = self.buf.take_handles(&info);
            let msg = Message::decode(info.kind, self.buf.data(&info), handles);
            if event.id != on {
                continue;
            }
            if let Some(answer) = answer_to(msg.map_err(|_| malformed())?, call_id)? {
                return Ok(answer);
            }
        }
    }
}

/// The answer `msg` carries for `call_id`, if it is one.
fn answer_to(msg: Message<'_>, call_id: u32) -> Result<Option<Answer>, FsError> {
    Ok(match msg {
        Message::Data(body) => match wire::split_reply(body) {
            Some((id, result)) if id == call_id => Some(Answer::Data(result.to_vec())),
            Some(_) => None,
            None => return Err(malformed()),
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
