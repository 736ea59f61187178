//! The block protocol (a disk driver and its clients), and [`Disk`], its
//! synchronous client.
//!
//! On the fixed message kinds ([`crate::message`]), on the channel a client
//! gets for one of the driver's services (`disk`, `linux_root`: a partition
//! each, whose sectors the client counts from 0; a driver that cannot serve
//! the service sends `Error { call_id: 0, .. }` instead of the hello and
//! closes the channel):
//!
//! - driver to client, first: `Open { call_id: 0, uri: "disk:<sectors>:<rw|ro>" }`
//!   (no handle) announces the disk: its size in 512-byte sectors and
//!   whether it takes writes;
//! - client to driver: requests, one per `Data` message: a [`Header`]
//!   (little-endian: `op: u8` ([`Op`]), `id: u32`, `sector: u64`,
//!   `count: u32`, [`HEADER_LEN`] bytes), and for a write the `count`
//!   sectors to write right after it. A flush has `sector` and `count` 0;
//!   a write moves 1 to [`MAX_SECTORS_PER_MESSAGE`] sectors, a read 1 to
//!   [`MAX_SECTORS_PER_READ`].
//! - driver to client: for each request, when it is done, either `Data`
//!   (for a write or flush one reply, the request's header; for a read one
//!   reply per part of it ([`read_parts`]), in order, each the request's
//!   header with the part's `sector` and `count`, then its sectors), or one
//!   `Error { call_id: id, code, text }` with a code of [`codes`] (a
//!   failed read sends none of its parts).
//!
//! A read of more than a message holds is one request for the driver and
//! the device (one device request, one reply set), so that its cost per
//! request is paid once per [`MAX_SECTORS_PER_READ`] sectors, not once per
//! message.
//!
//! Replies come as the device completes requests, not in request order:
//! the `id` (the client's choice) matches them. A flush makes durable the
//! writes whose replies arrived before it was sent (the device does not
//! order requests); [`Disk`] waits for its writes before it flushes.
//!
//! Decoding checks every field (a short header, an unknown op, a length
//! that is not what the header says, a range past the disk's end): a bad
//! message gets an error, never a panic.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::Error;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::abi::MESSAGE_DATA_MAX;
use crate::channel::MessageBuffer;
use crate::message::Message;
use crate::poll::Poll;
use crate::timer::Timer;
use crate::Channel;

pub const SECTOR_SIZE: usize = 512;
/// Bytes of a request or reply header.
pub const HEADER_LEN: usize = 17;
/// Sectors one read or write carries at most (so that a request or reply
/// fits in one message).
pub const MAX_SECTORS_PER_MESSAGE: u32 = ((MESSAGE_DATA_MAX - HEADER_LEN) / SECTOR_SIZE) as u32;
/// Sectors one read asks for at most: its reply comes in parts of at most
/// [`MAX_SECTORS_PER_MESSAGE`] sectors ([`read_parts`]).
pub const MAX_SECTORS_PER_READ: u32 = 8 * MAX_SECTORS_PER_MESSAGE;
/// Requests [`Disk`] keeps in flight at once.
pub const IN_FLIGHT: usize = 8;
/// How long [`Disk::connect`] waits for the driver's hello.
pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// How long [`Disk`] waits for any one reply before it gives up.
pub const REPLY_TIMEOUT_MS: u64 = 60_000;

/// The error codes of `Error` replies.
pub mod codes {
    /// The request is malformed (short header, unknown op, bad length).
    pub const MALFORMED: u16 = crate::message::codes::INVALID;
    /// A write to a read-only disk.
    pub const READ_ONLY: u16 = 0x101;
    /// Sectors past the end of the disk.
    pub const OUT_OF_RANGE: u16 = 0x102;
    /// The device failed the request.
    pub const IO: u16 = 0x103;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Read = 1,
    Write = 2,
    Flush = 3,
}

impl Op {
    pub fn from_raw(raw: u8) -> Option<Op> {
        match raw {
            1 => Some(Op::Read),
            2 => Some(Op::Write),
            3 => Some(Op::Flush),
            _ => None,
        }
    }
}

/// What the driver announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub sectors: u64,
    pub read_only: bool,
}

impl DiskInfo {
    /// The hello's URI: `disk:<sectors>:<rw|ro>`.
    pub fn uri(&self) -> String {
        let mode = if self.read_only { "ro" } else { "rw" };
        format!("disk:{}:{mode}", self.sectors)
    }

    pub fn parse_uri(uri: &str) -> Result<DiskInfo, DiskError> {
        let bad = || DiskError::Protocol(format!("not a disk hello: {uri:?}"));
        let rest = uri.strip_prefix("disk:").ok_or_else(bad)?;
        let (sectors, mode) = rest.split_once(':').ok_or_else(bad)?;
        let sectors = sectors.parse::<u64>().map_err(|_| bad())?;
        let read_only = match mode {
            "rw" => false,
            "ro" => true,
            _ => return Err(bad()),
        };
        Ok(DiskInfo { sectors, read_only })
    }

    /// Whether `count` sectors from `sector` are all on the disk.
    pub fn contains(&self, sector: u64, count: u64) -> bool {
        sector
            .checked_add(count)
            .is_some_and(|end| end <= self.sectors)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The disk does not take writes.
    ReadOnly,
    /// Sectors past the end of the disk.
    OutOfRange,
    /// The device failed the request.
    Io(String),
    /// The driver's channel closed.
    Gone,
    /// The other side broke the protocol (or sent something this side
    /// cannot read).
    Protocol(String),
    /// The caller asked for something the protocol cannot carry (a length
    /// that is not a multiple of [`SECTOR_SIZE`]).
    Invalid(String),
}

impl DiskError {
    /// The `Error` reply's code and text for this error.
    pub fn code(&self) -> u16 {
        match self {
            DiskError::ReadOnly => codes::READ_ONLY,
            DiskError::OutOfRange => codes::OUT_OF_RANGE,
            DiskError::Io(_) | DiskError::Gone => codes::IO,
            DiskError::Protocol(_) | DiskError::Invalid(_) => codes::MALFORMED,
        }
    }

    /// The error an `Error` reply with `code` and `text` stands for.
    pub fn from_reply(code: u16, text: &str) -> DiskError {
        match code {
            codes::READ_ONLY => DiskError::ReadOnly,
            codes::OUT_OF_RANGE => DiskError::OutOfRange,
            codes::IO => DiskError::Io(String::from(text)),
            codes::MALFORMED => {
                DiskError::Protocol(format!("the driver refused a request: {text}"))
            }
            _ => DiskError::Protocol(format!("unknown error code {code}: {text}")),
        }
    }
}

impl core::fmt::Display for DiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DiskError::ReadOnly => write!(f, "the disk is read-only"),
            DiskError::OutOfRange => write!(f, "sectors past the end of the disk"),
            DiskError::Io(text) => write!(f, "I/O error: {text}"),
            DiskError::Gone => write!(f, "the disk driver is gone"),
            DiskError::Protocol(text) => write!(f, "block protocol error: {text}"),
            DiskError::Invalid(text) => write!(f, "invalid disk request: {text}"),
        }
    }
}

/// The header of every request and reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub op: Op,
    pub id: u32,
    pub sector: u64,
    pub count: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.op as u8;
        out[1..5].copy_from_slice(&self.id.to_le_bytes());
        out[5..13].copy_from_slice(&self.sector.to_le_bytes());
        out[13..17].copy_from_slice(&self.count.to_le_bytes());
        out
    }

    /// Splits a message into its header and the bytes after it.
    pub fn decode(msg: &[u8]) -> Result<(Header, &[u8]), BadHeader> {
        let id = msg
            .get(1..5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let Some((head, rest)) = msg.split_first_chunk::<HEADER_LEN>() else {
            return Err(BadHeader {
                id,
                text: format!("{}-byte message: shorter than a header", msg.len()),
            });
        };
        let Some(op) = Op::from_raw(head[0]) else {
            return Err(BadHeader {
                id,
                text: format!("unknown op {}", head[0]),
            });
        };
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&head[5..13]);
        let header = Header {
            op,
            id: id.unwrap_or(0),
            sector: u64::from_le_bytes(sector),
            count: u32::from_le_bytes([head[13], head[14], head[15], head[16]]),
        };
        Ok((header, rest))
    }
}

/// A message that does not start with a header: its id when it is long
/// enough to have one, and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHeader {
    pub id: Option<u32>,
    pub text: String,
}

/// A request the driver has checked against its disk.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Read {
        id: u32,
        sector: u64,
        count: u32,
    },
    Write {
        id: u32,
        sector: u64,
        data: &'a [u8],
    },
    Flush {
        id: u32,
    },
}

impl Request<'_> {
    pub fn header(&self) -> Header {
        match *self {
            Request::Read { id, sector, count } => Header {
                op: Op::Read,
                id,
                sector,
                count,
            },
            Request::Write { id, sector, data } => Header {
                op: Op::Write,
                id,
                sector,
                count: (data.len() / SECTOR_SIZE) as u32,
            },
            Request::Flush { id } => Header {
                op: Op::Flush,
                id,
                sector: 0,
                count: 0,
            },
        }
    }
}

/// A request the driver refuses: the id to answer (0 when the message was
/// too short to carry one) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub id: u32,
    pub error: DiskError,
}

/// Decodes and checks a request against `disk` (the driver's side).
pub fn parse_request<'a>(msg: &'a [u8], disk: &DiskInfo) -> Result<Request<'a>, Refused> {
    let (header, body) = Header::decode(msg).map_err(|bad| Refused {
        id: bad.id.unwrap_or(0),
        error: DiskError::Protocol(bad.text),
    })?;
    let id = header.id;
    let refuse = |error| Refused { id, error };
    let malformed = |text: String| refuse(DiskError::Protocol(text));
    if header.op == Op::Flush {
        if header.sector != 0 || header.count != 0 || !body.is_empty() {
            return Err(malformed(String::from("a flush carries no sectors")));
        }
        return Ok(Request::Flush { id });
    }
    let max = match header.op {
        Op::Read => MAX_SECTORS_PER_READ,
        _ => MAX_SECTORS_PER_MESSAGE,
    };
    if header.count == 0 || header.count > max {
        return Err(malformed(format!(
            "{} sectors in one {:?} request (1 to {max})",
            header.count, header.op
        )));
    }
    let bytes = header.count as usize * SECTOR_SIZE;
    let expected = if header.op == Op::Write { bytes } else { 0 };
    if body.len() != expected {
        return Err(malformed(format!(
            "{} bytes after the header of a {:?} of {} sectors (expected {expected})",
            body.len(),
            header.op,
            header.count
        )));
    }
    if header.op == Op::Write && disk.read_only {
        return Err(refuse(DiskError::ReadOnly));
    }
    if !disk.contains(header.sector, u64::from(header.count)) {
        return Err(refuse(DiskError::OutOfRange));
    }
    Ok(match header.op {
        Op::Read => Request::Read {
            id,
            sector: header.sector,
            count: header.count,
        },
        _ => Request::Write {
            id,
            sector: header.sector,
            data: body,
        },
    })
}

/// The parts the reply to a read of `count` sectors from `sector` comes
/// in: (first sector, sectors), in order, each but the last
/// [`MAX_SECTORS_PER_MESSAGE`] sectors long.
pub fn read_parts(sector: u64, count: u32) -> impl Iterator<Item = (u64, u32)> {
    let step = MAX_SECTORS_PER_MESSAGE;
    (0..count.div_ceil(step)).map(move |i| {
        let done = i * step;
        (sector + u64::from(done), (count - done).min(step))
    })
}

/// One request of a transfer that is still waiting for its reply.
#[derive(Clone, Copy, Debug)]
struct Pending {
    header: Header,
    /// Where its bytes start in the caller's buffer.
    offset: usize,
}

/// Checks a `Data` reply against the request it answers and returns the
/// sectors it carries (empty but for a read).
fn check_reply<'a>(reply: &'a [u8], request: &Header) -> Result<&'a [u8], DiskError> {
    let (header, data) = Header::decode(reply).map_err(|bad| DiskError::Protocol(bad.text))?;
    if header != *request {
        return Err(DiskError::Protocol(format!(
            "reply {header:?} to request {request:?}"
        )));
    }
    let expected = match request.op {
        Op::Read => request.count as usize * SECTOR_SIZE,
        _ => 0,
    };
    if data.len() != expected {
        return Err(DiskError::Protocol(format!(
            "{}-byte reply to {request:?} (expected {expected})",
            data.len()
        )));
    }
    Ok(data)
}

/// The caller's side of a transfer.
enum Io<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Io<'_> {
    fn len(&self) -> usize {
        match self {
            Io::Read(buf) => buf.len(),
            Io::Write(data) => data.len(),
        }
    }
}

/// A synchronous client of a disk driver: each call returns when the disk
/// has done it. Transfers of any size are split into requests of at most
/// [`MAX_SECTORS_PER_MESSAGE`] sectors, [`IN_FLIGHT`] of them at a time.
/// It blocks: use it from a thread of its own, not from a main loop.
///
/// A failed request fails its call only after the call's other requests
/// are answered, so the next call starts clean. [`DiskError::Gone`] means
/// the driver's channel closed (the driver stopped or restarts): a new
/// channel comes from the supervisor (`reconnect`), for a new `Disk`.
pub struct Disk {
    channel: Channel,
    info: DiskInfo,
    next_id: u32,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    out: Vec<u8>,
}

impl Disk {
    /// Takes the channel from the spec's `[needs] disk = "disk"`; waits (up
    /// to [`HELLO_TIMEOUT_MS`]) for the driver's hello.
    pub fn connect(channel: Channel) -> Result<Disk, DiskError> {
        let mut disk = Disk::prepare(channel)?;
        disk.info = match disk.receive(HELLO_TIMEOUT_MS, |msg| match msg {
            Message::Open {
                call_id: 0,
                uri,
                handle: None,
            } => DiskInfo::parse_uri(uri),
            other => Err(DiskError::Protocol(format!(
                "expected the disk hello, got {:?}",
                other.kind()
            ))),
        }) {
            Ok(Some(info)) => info?,
            Ok(None) => {
                return Err(DiskError::Protocol(format!(
                    "no hello from the disk driver within {HELLO_TIMEOUT_MS} ms"
                )))
            }
            Err(e) => return Err(e),
        };
        Ok(disk)
    }

    /// The client's objects around `channel`, the disk not known yet.
    fn prepare(channel: Channel) -> Result<Disk, DiskError> {
        let kernel_error =
            |e: Error| DiskError::Protocol(format!("cannot wait for the driver: {e}"));
        let poll = Poll::create().map_err(kernel_error)?;
        let timer = Timer::create().map_err(kernel_error)?;
        poll.add(channel.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(kernel_error)?;
        poll.add(timer.id(), Readiness::READABLE)
            .map_err(kernel_error)?;
        Ok(Disk {
            channel,
            info: DiskInfo {
                sectors: 0,
                read_only: true,
            },
            next_id: 1,
            poll,
            timer,
            buf: MessageBuffer::new(),
            out: Vec::with_capacity(MESSAGE_DATA_MAX),
        })
    }

    /// A client on a channel whose hello was already read (`info` is what
    /// it said): for a caller that spoke to the driver directly first.
    pub fn from_hello(channel: Channel, info: DiskInfo) -> Result<Disk, DiskError> {
        let mut disk = Disk::prepare(channel)?;
        disk.info = info;
        Ok(disk)
    }

    pub fn info(&self) -> DiskInfo {
        self.info
    }

    /// Reads `buf.len()` bytes (a multiple of [`SECTOR_SIZE`]) from `sector` on.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.transfer(Op::Read, sector, Io::Read(buf))
    }

    /// Writes `data` (a multiple of [`SECTOR_SIZE`] bytes) from `sector` on.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.transfer(Op::Write, sector, Io::Write(data))
    }

    /// Makes every write done so far durable.
    pub fn flush(&mut self) -> Result<(), DiskError> {
        let header = Header {
            op: Op::Flush,
            id: self.take_id(),
            sector: 0,
            count: 0,
        };
        self.send(&header, &[])?;
        let mut pending = alloc::vec![Pending { header, offset: 0 }];
        self.collect(&mut pending, &mut Io::Write(&[]))
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn transfer(&mut self, op: Op, sector: u64, mut io: Io<'_>) -> Result<(), DiskError> {
        let len = io.len();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::Invalid(format!(
                "{len} bytes is not a multiple of {SECTOR_SIZE}"
            )));
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        if !self.info.contains(sector, sectors) {
            return Err(DiskError::OutOfRange);
        }
        if op == Op::Write && self.info.read_only {
            return Err(DiskError::ReadOnly);
        }
        let mut pending: Vec<Pending> = Vec::with_capacity(IN_FLIGHT);
        let mut done = 0u64;
        let mut first_error = None;
        while done < sectors || !pending.is_empty() {
            while first_error.is_none() && done < sectors && pending.len() < IN_FLIGHT {
                let count = (sectors - done).min(u64::from(MAX_SECTORS_PER_MESSAGE)) as u32;
                let header = Header {
                    op,
                    id: self.take_id(),
                    sector: sector + done,
                    count,
                };
                let offset = done as usize * SECTOR_SIZE;
                let body = match &io {
                    Io::Write(data) => &data[offset..offset + count as usize * SECTOR_SIZE],
                    Io::Read(_) => &[],
                };
                self.send(&header, body)?;
                pending.push(Pending { header, offset });
                done += u64::from(count);
            }
            if pending.is_empty() {
                break;
            }
            if let Err(e) = self.collect_one(&mut pending, &mut io) {
                if matches!(e, DiskError::Gone | DiskError::Protocol(_)) {
                    return Err(e);
                }
                // Let the requests in flight finish, so that their replies
                // do not meet the next call.
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for the replies to every request in `pending`.
    fn collect(&mut self, pending: &mut Vec<Pending>, io: &mut Io<'_>) -> Result<(), DiskError> {
        let mut first_error = None;
        while !pending.is_empty() {
            if let Err(e) = self.collect_one(pending, io) {
                if matches!(e, DiskError::Gone | DiskError::Protocol(_)) {
                    return Err(e);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Takes one reply to a request of `pending` (and its data, for a read).
    fn collect_one(
        &mut self,
        pending: &mut Vec<Pending>,
        io: &mut Io<'_>,
    ) -> Result<(), DiskError> {
        let outcome = self.receive(REPLY_TIMEOUT_MS, |msg| match msg {
            Message::Data(reply) => {
                let (header, _) =
                    Header::decode(reply).map_err(|bad| DiskError::Protocol(bad.text))?;
                let at = find(pending, header.id)?;
                let request = pending.swap_remove(at);
                let data = check_reply(reply, &request.header)?;
                if let Io::Read(buf) = io {
                    buf[request.offset..request.offset + data.len()].copy_from_slice(data);
                }
                Ok(())
            }
            Message::Error {
                call_id,
                code,
                text,
            } => {
                let at = find(pending, call_id)?;
                pending.swap_remove(at);
                Err(DiskError::from_reply(code, text))
            }
            other => Err(DiskError::Protocol(format!(
                "unexpected {:?} from the disk driver",
                other.kind()
            ))),
        })?;
        outcome.unwrap_or_else(|| {
            Err(DiskError::Io(format!(
                "the disk driver did not answer within {REPLY_TIMEOUT_MS} ms"
            )))
        })
    }

    fn send(&mut self, header: &Header, body: &[u8]) -> Result<(), DiskError> {
        self.out.clear();
        self.out.extend_from_slice(&header.to_bytes());
        self.out.extend_from_slice(body);
        match self.channel.send_data_waiting(&self.out) {
            Ok(()) => Ok(()),
            Err(Error::PeerClosed) => Err(DiskError::Gone),
            Err(e) => Err(DiskError::Protocol(format!("cannot send a request: {e}"))),
        }
    }

    /// Waits up to `timeout_ms` for the next message and hands it to `f`
    /// (`Ok(None)`: none came in time).
    fn receive<R>(
        &mut self,
        timeout_ms: u64,
        f: impl FnOnce(Message<'_>) -> R,
    ) -> Result<Option<R>, DiskError> {
        // A reply is often there already (several are in flight): take it
        // without arming the timer.
        let info = match self
            .channel
            .recv_raw(&mut self.buf.data, &mut self.buf.handles)
        {
            Ok(info) => info,
            Err(Error::WouldBlock) => match self.wait(timeout_ms)? {
                Some(info) => info,
                None => return Ok(None),
            },
            Err(e) => return Err(receive_error(e)),
        };
        let handles = self.buf.take_handles(&info);
        let msg = Message::decode(info.kind, self.buf.data(&info), handles)
            .map_err(|e| DiskError::Protocol(format!("undecodable message: {e}")))?;
        Ok(Some(f(msg)))
    }

    /// Blocks until a message arrives (received into `self.buf`) or
    /// `timeout_ms` pass (`None`).
    fn wait(&mut self, timeout_ms: u64) -> Result<Option<RecvInfo>, DiskError> {
        self.timer.set_ms(timeout_ms).map_err(receive_error)?;
        loop {
            let event = self.poll.wait_recv(&mut self.buf).map_err(receive_error)?;
            if event.id == self.timer.id() {
                return Ok(None);
            }
            match event.received {
                Some(Ok(info)) => return Ok(Some(info)),
                Some(Err(Error::WouldBlock)) => {}
                Some(Err(e)) => return Err(receive_error(e)),
                None if event.ready.contains(Readiness::PEER_CLOSED) => {
                    return Err(DiskError::Gone)
                }
                None => {}
            }
        }
    }
}

fn receive_error(e: Error) -> DiskError {
    match e {
        Error::PeerClosed => DiskError::Gone,
        e => DiskError::Protocol(format!("cannot receive from the disk driver: {e}")),
    }
}

/// Where the request with `id` is in `pending`.
fn find(pending: &[Pending], id: u32) -> Result<usize, DiskError> {
    pending
        .iter()
        .position(|p| p.header.id == id)
        .ok_or_else(|| {
            DiskError::Protocol(format!("a reply to request {id}, which is not waiting"))
        })
}

#[cfg(test)]
mod tests;
