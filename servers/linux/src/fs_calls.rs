//! Blocking calls to the fs server by (inode, name), which the client
//! `starina::fs::Files` does not offer (its paths are absolute; the FUSE
//! bridge knows inodes, not paths). Each call sends one `wire` request and
//! waits for its answer, at most [`starina::fs::answer::CALL_TIMEOUT_MS`]
//! (the waiting is the SDK's, `starina::fs::answer`, shared with `Files`).
//!
//! One poll and one timer serve the `fs` channel and every open file: an
//! open file costs the server one handle (its channel), not three (a
//! `starina::fs::File` has its own poll and timer), which matters with the
//! 1,024 handles a process may hold. A file's channel joins the poll only
//! while a call on it waits.

use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::MessageBuffer;
use starina::fs::answer;
use starina::fs::answer::kernel_error;
use starina::fs::answer::wait_answer;
use starina::fs::answer::Answer;
use starina::fs::wire::FileRequest;
use starina::fs::wire::Request;
use starina::fs::FsError;
use starina::poll::Poll;
use starina::timer::Timer;
use starina::Channel;
use starina::HandleId;
use starina::Message;

/// The `fs` channel and what waiting on it takes.
pub struct FsCalls {
    fs: Channel,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    next_call: u32,
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

    /// Waits for the answer to `call_id` on `on` (the fs channel or a
    /// file's, in the poll meanwhile).
    fn wait(&mut self, on: HandleId, call_id: u32) -> Result<Answer, FsError> {
        wait_answer(&self.poll, &self.timer, &mut self.buf, on, call_id)
    }
}

fn malformed() -> FsError {
    answer::malformed("a request")
}
