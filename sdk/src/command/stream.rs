//! A command's streams: ordinary channels carrying `Data` messages, the end
//! of a stream being a `Close` (or the writer's end going away).
//!
//! [`Input`] reads bytes, lines or everything; [`Output`] writes bytes,
//! waiting while the reader's queue is full, and reports a reader that is
//! gone as [`IoError::BrokenPipe`] (a command's SIGPIPE).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::Error;
use crate::abi::Readiness;
use crate::abi::MESSAGE_DATA_MAX;
use crate::channel::Channel;
use crate::channel::MessageBuffer;
use crate::message::Message;
use crate::poll::Poll;

/// The longest line [`Input::read_line`] returns whole; a longer one
/// comes in pieces of this size.
pub const LINE_MAX: usize = 1 << 20;

/// Why reading or writing a stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The reader is gone (like EPIPE).
    BrokenPipe,
    /// The writer broke the stream (`Abort`), with its reason.
    Aborted(String),
    /// Something other than `Data`, `Close` or `Abort` arrived.
    Malformed,
    /// A system call failed.
    Kernel(Error),
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::BrokenPipe => f.write_str("broken pipe"),
            IoError::Aborted(why) => write!(f, "stream aborted: {why}"),
            IoError::Malformed => f.write_str("stream carried a message that is not data"),
            IoError::Kernel(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for IoError {
    fn from(e: Error) -> IoError {
        match e {
            Error::PeerClosed => IoError::BrokenPipe,
            e => IoError::Kernel(e),
        }
    }
}

/// The reading end of a stream.
pub struct Input {
    channel: Channel,
    poll: Option<Poll>,
    buf: MessageBuffer,
    /// Bytes received and not yet returned: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input").field("channel", &self.channel.id()).finish()
    }
}

impl Input {
    pub fn new(channel: Channel) -> Input {
        Input {
            channel,
            poll: None,
            buf: MessageBuffer::new(),
            pending: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The next chunk of bytes as the writer sent them, waiting for one;
    /// `None` at the end of the stream.
    pub fn read_chunk(&mut self) -> Result<Option<&[u8]>, IoError> {
        if self.pos >= self.pending.len() && !self.fill()? {
            return Ok(None);
        }
        let chunk = &self.pending[self.pos..];
        self.pos = self.pending.len();
        Ok(Some(chunk))
    }

    /// Copies up to `out.len()` bytes into `out`; 0 at the end of the stream.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, IoError> {
        if self.pos >= self.pending.len() && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// The next line with its `\n` (the last one may lack it); `None` at
    /// the end. A line longer than [`LINE_MAX`] comes in pieces.
    pub fn read_line(&mut self) -> Result<Option<Vec<u8>>, IoError> {
        let mut line = Vec::new();
        loop {
            if self.pos >= self.pending.len() && !self.fill()? {
                return Ok((!line.is_empty()).then_some(line));
            }
            let rest = &self.pending[self.pos..];
            let room = LINE_MAX - line.len();
            let (take, done) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ if rest.len() >= room => (room, true),
                _ => (rest.len(), false),
            };
            line.extend_from_slice(&rest[..take]);
            self.pos += take;
            if done {
                return Ok(Some(line));
            }
        }
    }

    /// Everything up to the end of the stream, at most `limit` bytes
    /// (`Kernel(OverBudget)` past it).
    pub fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, IoError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            if all.len() + chunk.len() > limit {
                return Err(IoError::Kernel(Error::OverBudget));
            }
            all.extend_from_slice(chunk);
        }
        Ok(all)
    }

    /// Waits for the next `Data` message; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, IoError> {
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.channel.try_recv(&mut self.buf) {
                Ok(Message::Data([])) => continue,
                Ok(Message::Data(d)) => {
                    self.pending.clear();
                    self.pending.extend_from_slice(d);
                    self.pos = 0;
                    return Ok(true);
                }
                Ok(Message::Close) | Err(Error::PeerClosed) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(Message::Abort { reason, .. }) => {
                    self.eof = true;
                    return Err(IoError::Aborted(String::from(reason)));
                }
                Ok(_) | Err(Error::MalformedMessage) => return Err(IoError::Malformed),
                Err(Error::WouldBlock) => self.wait(Readiness::READABLE)?,
                Err(e) => return Err(IoError::Kernel(e)),
            }
        }
    }

    fn wait(&mut self, ready: Readiness) -> Result<(), Error> {
        wait_on(&mut self.poll, &self.channel, ready)
    }
}

/// Waits until `channel` is `ready` or its peer is gone, on a poll made
/// once and kept.
fn wait_on(poll: &mut Option<Poll>, channel: &Channel, ready: Readiness) -> Result<(), Error> {
    if poll.is_none() {
        let p = Poll::create()?;
        p.add(channel.id(), Readiness::READABLE | Readiness::WRITABLE | Readiness::PEER_CLOSED)?;
        *poll = Some(p);
    }
    let p = poll.as_ref().ok_or(Error::NotFound)?;
    loop {
        let (_, got) = p.wait()?;
        if got.intersects(ready | Readiness::PEER_CLOSED) {
            return Ok(());
        }
    }
}

/// The writing end of a stream.
pub struct Output {
    channel: Channel,
    poll: Option<Poll>,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output").field("channel", &self.channel.id()).finish()
    }
}

impl Output {
    pub fn new(channel: Channel) -> Output {
        Output {
            channel,
            poll: None,
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends all of `bytes`, in messages of at most `MESSAGE_DATA_MAX`,
    /// waiting while the reader's queue is full.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        for chunk in bytes.chunks(MESSAGE_DATA_MAX) {
            loop {
                match self.channel.send_data(chunk) {
                    Ok(()) => break,
                    Err(Error::QueueFull) => {
                        wait_on(&mut self.poll, &self.channel, Readiness::WRITABLE)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Writes `text`.
    pub fn print(&mut self, text: &str) -> Result<(), IoError> {
        self.write(text.as_bytes())
    }

    /// Ends the stream (a `Close`); the reader sees the end once it has
    /// read what came before.
    pub fn close(&mut self) -> Result<(), IoError> {
        loop {
            match self.channel.send(Message::Close) {
                Ok(()) => return Ok(()),
                Err(e) if e.error == Error::QueueFull => {
                    wait_on(&mut self.poll, &self.channel, Readiness::WRITABLE)?
                }
                Err(e) => return Err(e.error.into()),
            }
        }
    }
}

/// Buffers small writes into full messages: for output made of many small
/// pieces (`ls`, `seq`). [`Buffered::flush`] (or dropping it) sends the rest.
pub struct Buffered<'a> {
    out: &'a mut Output,
    buf: Vec<u8>,
}

impl<'a> Buffered<'a> {
    pub fn new(out: &'a mut Output) -> Buffered<'a> {
        Buffered {
            out,
            buf: Vec::new(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= MESSAGE_DATA_MAX {
            self.flush()?;
        }
        Ok(())
    }

    pub fn print(&mut self, text: &str) -> Result<(), IoError> {
        self.write(text.as_bytes())
    }

    pub fn flush(&mut self) -> Result<(), IoError> {
        let pending = core::mem::take(&mut self.buf);
        self.out.write(&pending)
    }
}

impl Drop for Buffered<'_> {
    fn drop(&mut self) {
        // An error here has nowhere to go: the reader is gone.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kernel::FakeKernel;

    #[test]
    fn lines_span_messages_and_the_end_is_a_close_or_the_writer_going() {
        FakeKernel::install();
        let (w, r) = Channel::create().unwrap();
        let mut input = Input::new(r);
        w.send_data(b"one\ntw").unwrap();
        w.send_data(b"o\nthree").unwrap();
        w.send(Message::Close).unwrap();
        assert_eq!(input.read_line().unwrap().unwrap(), b"one\n");
        assert_eq!(input.read_line().unwrap().unwrap(), b"two\n");
        assert_eq!(input.read_line().unwrap().unwrap(), b"three");
        assert_eq!(input.read_line().unwrap(), None);

        let (w, r) = Channel::create().unwrap();
        let mut input = Input::new(r);
        w.send_data(b"abc").unwrap();
        drop(w);
        assert_eq!(input.read_to_end(10).unwrap(), b"abc");
    }

    #[test]
    fn a_line_longer_than_the_bound_comes_in_pieces() {
        FakeKernel::install();
        let (w, r) = Channel::create().unwrap();
        let mut input = Input::new(r);
        let big = alloc::vec![b'x'; MESSAGE_DATA_MAX];
        for _ in 0..LINE_MAX / MESSAGE_DATA_MAX {
            w.send_data(&big).unwrap();
        }
        assert_eq!(input.read_line().unwrap().unwrap().len(), LINE_MAX);
        w.send_data(b"x\nnext").unwrap();
        drop(w);
        assert_eq!(input.read_line().unwrap().unwrap(), b"x\n");
        assert_eq!(input.read_line().unwrap().unwrap(), b"next");
        assert_eq!(input.read_line().unwrap(), None);
    }

    #[test]
    fn writing_to_a_reader_that_is_gone_is_a_broken_pipe() {
        FakeKernel::install();
        let (w, r) = Channel::create().unwrap();
        let mut out = Output::new(w);
        out.write(b"hi").unwrap();
        drop(r);
        assert_eq!(out.write(b"more"), Err(IoError::BrokenPipe));
    }

    #[test]
    fn an_abort_is_an_error_with_its_reason() {
        FakeKernel::install();
        let (w, r) = Channel::create().unwrap();
        let mut input = Input::new(r);
        w.send(Message::Abort {
            code: 7,
            reason: "reset",
        })
        .unwrap();
        assert_eq!(input.read_line(), Err(IoError::Aborted("reset".into())));
    }
}
