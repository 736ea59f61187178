//! Requests on the `fs` channel that name files by (inode, name), which the
//! blocking client `starina::fs::Files` does not offer (its paths are
//! absolute): the FUSE bridge knows inodes, not paths. Each call sends one
//! `wire::Request` with a `PathArg { base: <inode>, path: <name> }` and
//! waits for its answer, like `Files` does, on the same channel.
//!
//! Call ids have the top bit set, so they never meet the ids `Files`
//! itself uses on that channel (it counts up from 1); each side skips
//! answers that are not its own.

use alloc::format;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::MessageBuffer;
use starina::fs::wire;
use starina::fs::wire::Request;
use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina::poll::Poll;
use starina::timer::Timer;
use starina::Channel;
use starina::Error;
use starina::Message;

/// How long a call waits for the fs server (as `Files` does).
const CALL_TIMEOUT_MS: u64 = 60_000;
const OWN_CALL_BIT: u32 = 1 << 31;

/// Waits for answers on the `fs` channel.
pub struct FsCalls {
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    next_call: u32,
}

fn kernel_error(what: &str, e: Error) -> FsError {
    let kind = match e {
        Error::PeerClosed => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    FsError::new(kind, format!("{what}: {e:?}"))
}

impl FsCalls {
    /// Sets up waiting on `channel` (the one `Files` holds).
    pub fn new(channel: &Channel) -> Result<FsCalls, FsError> {
        let setup = |e| kernel_error("setting up fs calls", e);
        let poll = Poll::create().map_err(setup)?;
        let timer = Timer::create().map_err(setup)?;
        poll.add(channel.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(setup)?;
        poll.add(timer.id(), Readiness::READABLE).map_err(setup)?;
        Ok(FsCalls {
            poll,
            timer,
            buf: MessageBuffer::new(),
            next_call: 0,
        })
    }

    /// Sends `request` on `channel` and waits for its result bytes.
    pub fn call(&mut self, channel: &Channel, request: &Request<'_>) -> Result<Vec<u8>, FsError> {
        self.next_call = self.next_call.wrapping_add(1);
        let call_id = self.next_call | OWN_CALL_BIT;
        channel
            .send_data_waiting(&request.encode(call_id))
            .map_err(|e| kernel_error("sending to the fs server", e))?;
        self.wait(channel, call_id)
    }

    fn wait(&mut self, channel: &Channel, call_id: u32) -> Result<Vec<u8>, FsError> {
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
            if event.id != channel.id() {
                continue;
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
            let handles = self.buf.take_handles(&info);
            let malformed = || FsError::new(ErrorKind::Malformed, "a malformed answer");
            match Message::decode(info.kind, self.buf.data(&info), handles) {
                Ok(Message::Data(body)) => match wire::split_reply(body) {
                    Some((id, result)) if id == call_id => return Ok(result.to_vec()),
                    Some(_) => continue,
                    None => return Err(malformed()),
                },
                Ok(Message::Error {
                    call_id: id,
                    code,
                    text,
                }) if id == call_id => return Err(FsError::new(ErrorKind::from_code(code), text)),
                Ok(_) => continue,
                Err(_) => return Err(malformed()),
            }
        }
    }
}
