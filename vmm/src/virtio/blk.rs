//! virtio-blk (device id 2): a disk for the guest whose sectors live
//! behind a host-side [`BlockBackend`] that answers later.
//!
//! One request queue. Each chain is a request: a 16-byte header (`type`,
//! reserved, `sector`) in its device-readable part, the data (readable
//! for a write, writable for a read), and the status byte as the last
//! writable byte. The model serves IN, OUT, FLUSH and GET_ID; any other type
//! gets UNSUPP.
//!
//! Requests are served asynchronously: a read or write is cut into backend
//! operations of at most `max_op_sectors` sectors (the block protocol's
//! message size; a read of up to `max_read_sectors` ([`Blk::with_long_reads`])
//! whose answer comes in parts of `max_op_sectors`), with at most
//! [`MAX_OPS_IN_FLIGHT`] answers (parts) due from the backend at once (a
//! write's sectors go from the guest's buffers straight into the
//! backend's); the host side answers each one (each part) with
//! [`Blk::complete`] (a read's sectors go straight into the guest's
//! buffers) and then polls the
//! transport, which returns the finished requests (status byte, used ring,
//! interrupt) and takes new ones. At most [`MAX_REQUESTS`] requests are
//! held; further chains wait in the ring. While operations are out the
//! used ring says `NO_NOTIFY`: their answers bring the next poll, so the
//! guest's notifications (VM exits) would add nothing.
//!
//! Everything in a chain is the guest's and untrusted. A request the model
//! can answer but not serve (a header shorter than 16 bytes, data that is
//! not whole sectors, sectors past the disk's end, a write to a read-only
//! disk, a read with extra readable bytes) gets IOERR; a chain with no
//! writable byte for the status cannot be answered at all and breaks the
//! device (DEVICE_NEEDS_RESET, like the ring errors of the queue layer).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::on_queue;
use super::DeviceError;
use super::VirtioDevice;
use super::DEVICE_ID_BLOCK;
use super::VIRTIO_F_INDIRECT_DESC;
use crate::memory::GuestMemory;
use crate::memory::MemError;
use crate::virtio::queue::Descriptor;
use crate::virtio::queue::DescriptorChain;
use crate::virtio::queue::Virtqueue;

pub const REQUEST_QUEUE: u16 = 0;
pub const SECTOR_SIZE: usize = 512;
/// `virtio_blk_outhdr`: type, reserved, sector.
pub const REQUEST_HEADER_LEN: usize = 16;
/// A GET_ID answer: the device's serial, zero-padded.
pub const ID_LEN: usize = 20;

/// Feature bits (virtio 1.x, 5.2.3).
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

/// Request types.
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Status byte values.
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Requests held at once (popped, not yet returned).
pub const MAX_REQUESTS: usize = 128;
/// Answers (a long read's parts each count) due from the backend at once,
/// and so backend operations out at most: below the 64 messages a channel
/// queues (sequential 64 MiB under QEMU: writes about 1.3 and reads 1.7
/// times as fast as with 32).
pub const MAX_OPS_IN_FLIGHT: usize = 56;
/// Data buffers a request may have (`seg_max`), and the largest one
/// (`size_max`).
pub const SEG_MAX: u32 = 126;
pub const SIZE_MAX: u32 = 1 << 20;
const QUEUE_SIZE: u16 = 128;
/// capacity (u64), size_max, seg_max, geometry, blk_size, topology (8
/// bytes), writeback, unused, num_queues.
const CONFIG_LEN: usize = 36;
const SERIAL: &[u8] = b"starina-disk";

/// Why the backend did not take an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No room now: the model tries again at its next poll (after an
    /// answer).
    Busy,
    /// It cannot be done (the disk is gone): the request fails (IOERR).
    Failed,
}

/// The host side of the disk. Each accepted operation is answered, later,
/// with [`Blk::complete`] and its `id`.
pub trait BlockBackend {
    /// Reads `count` sectors from `sector` on.
    fn read(&mut self, id: u32, sector: u64, count: u32) -> Result<(), Refusal>;
    /// Writes `count` sectors from `sector` on. `fill` puts them into the
    /// buffer it is given (`count` sectors long: the backend's own, so
    /// that they are copied once) and says whether it could; when it could
    /// not, the operation is not started and fails (`Refusal::Failed`).
    fn write(
        &mut self,
        id: u32,
        sector: u64,
        count: u32,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<(), Refusal>;
    /// Makes the writes answered so far durable.
    fn flush(&mut self, id: u32) -> Result<(), Refusal>;
}

/// What an answer to an operation ([`Blk::complete`]) was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The operation is done (its last part came, or it failed).
    Done,
    /// A part of a long read; more are due.
    Part,
    /// No operation with that id is out (an answer after a reset, or a
    /// made-up one): dropped.
    Unknown,
}

/// What the device did, for the VMM's log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlkStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests answered IOERR or UNSUPP.
    pub errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Flush,
}

/// A request being served.
struct Request {
    head: u16,
    kind: Kind,
    /// The guest's data buffers (without the header and the status byte).
    data: Vec<Descriptor>,
    status_addr: u64,
    sector: u64,
    /// Sectors to move (1 for a flush: one operation).
    total: u64,
    /// Sectors handed to the backend so far.
    issued: u64,
    /// Operations with the backend.
    ops_out: u32,
    failed: bool,
}

impl Request {
    fn done(&self) -> bool {
        (self.failed || self.issued == self.total) && self.ops_out == 0
    }
}

/// An operation with the backend: its request and what part of it.
#[derive(Clone, Copy)]
struct Op {
    request: u64,
    /// Its first sector, counted from the request's.
    offset: u64,
    count: u32,
    /// Sectors of a read answered so far (its parts come in order).
    received: u32,
    /// Answers still due (a long read's parts; 1 otherwise).
    answers_due: u32,
}

/// A checked request, or the status to answer a chain with at once.
enum Parsed {
    Serve(Request),
    Answer { status: u8, written: u32 },
}

/// A virtio-blk device over a [`BlockBackend`].
pub struct Blk {
    capacity: u64,
    read_only: bool,
    max_op_sectors: u32,
    /// Sectors a read may carry (its answer in parts of `max_op_sectors`).
    max_read_sectors: u32,
    backend: Box<dyn BlockBackend + Send>,
    /// Requests by arrival number (oldest first).
    requests: BTreeMap<u64, Request>,
    next_request: u64,
    ops: BTreeMap<u32, Op>,
    next_op: u32,
    /// Answers due for `ops` (at most [`MAX_OPS_IN_FLIGHT`]).
    answers_due: usize,
    stats: BlkStats,
}

impl Blk {
    /// A disk of `capacity` sectors; operations carry at most
    /// `max_op_sectors` (at least 1) sectors.
    pub fn new(
        capacity: u64,
        read_only: bool,
        max_op_sectors: u32,
        backend: Box<dyn BlockBackend + Send>,
    ) -> Blk {
        let max_op_sectors = max_op_sectors.max(1);
        Blk {
            capacity,
            read_only,
            max_op_sectors,
            max_read_sectors: max_op_sectors,
            backend,
            requests: BTreeMap::new(),
            next_request: 0,
            ops: BTreeMap::new(),
            next_op: 1,
            answers_due: 0,
            stats: BlkStats::default(),
        }
    }

    /// Lets a read carry up to `max_read_sectors` sectors (at least
    /// `max_op_sectors`): the backend answers it in parts of
    /// `max_op_sectors` sectors (the last one shorter), in order, each
    /// with its own [`Blk::complete`]; or once, with a failure.
    pub fn with_long_reads(mut self, max_read_sectors: u32) -> Blk {
        self.max_read_sectors = max_read_sectors.max(self.max_op_sectors);
        self
    }

    /// The answers an operation of `count` sectors of `kind` is due.
    fn answers_for(&self, kind: Kind, count: u32) -> u32 {
        match kind {
            Kind::Read => count.div_ceil(self.max_op_sectors),
            _ => 1,
        }
    }

    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    /// Operations the backend has not answered.
    pub fn ops_in_flight(&self) -> usize {
        self.ops.len()
    }

    /// The backend's answer to operation `id` (or to its next part): `Ok`
    /// with the sectors of a read (empty for a write or flush), or `Err`
    /// when it failed. A read's sectors go into the guest's buffers now;
    /// poll the transport after, so that finished requests are returned.
    /// A part that is not whole sectors, or more than the read has left,
    /// fails the read.
    pub fn complete(
        &mut self,
        mem: &mut dyn GuestMemory,
        id: u32,
        result: Result<&[u8], ()>,
    ) -> Answered {
        let Some(op) = self.ops.get_mut(&id) else {
            return Answered::Unknown;
        };
        let left = op.count - op.received;
        let (ok, sectors) = match (result, self.requests.get(&op.request)) {
            (Ok(data), Some(request)) if request.kind == Kind::Read => {
                let sectors = data.len() / SECTOR_SIZE;
                let whole = data.len().is_multiple_of(SECTOR_SIZE)
                    && sectors > 0
                    && sectors <= left as usize
                    && (sectors == left as usize || sectors == self.max_op_sectors as usize);
                let at = (op.offset as usize + op.received as usize) * SECTOR_SIZE;
                let ok = whole && scatter(mem, &request.data, at, data).is_ok();
                (ok, sectors as u32)
            }
            (Ok(_), _) => (true, left),
            (Err(()), _) => (false, left),
        };
        op.received += sectors;
        op.answers_due = op.answers_due.saturating_sub(1);
        let done = !ok || op.received >= op.count || op.answers_due == 0;
        if !done {
            self.answers_due = self.answers_due.saturating_sub(1);
            return Answered::Part;
        }
        let op = *op;
        self.ops.remove(&id);
        // A failed read's error stands for all of its parts still due.
        self.answers_due = self.answers_due.saturating_sub(op.answers_due as usize + 1);
        if let Some(request) = self.requests.get_mut(&op.request) {
            request.ops_out -= 1;
            request.failed |= !ok || op.received < op.count;
        }
        Answered::Done
    }

    /// The backend is gone: every operation out fails.
    pub fn backend_lost(&mut self) {
        self.answers_due = 0;
        for (_, op) in core::mem::take(&mut self.ops) {
            if let Some(request) = self.requests.get_mut(&op.request) {
                request.ops_out -= 1;
                request.failed = true;
            }
        }
    }

    /// Takes the chains waiting in the ring, up to [`MAX_REQUESTS`] held.
    fn take_requests(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while self.requests.len() < MAX_REQUESTS {
            let Some(chain) = on_queue(REQUEST_QUEUE, q.pop(mem))? else {
                break;
            };
            match self.parse(&chain, mem)? {
                Parsed::Serve(request) => {
                    self.requests.insert(self.next_request, request);
                    self.next_request += 1;
                }
                Parsed::Answer { status, written } => {
                    let status_addr = status_addr(&chain)?;
                    self.answer(q, mem, chain.head, status_addr, status, written)?;
                }
            }
        }
        Ok(())
    }

    /// Checks a chain against the disk.
    fn parse(
        &mut self,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
    ) -> Result<Parsed, DeviceError> {
        let readable = chain.readable_len();
        let room = chain.writable_len();
        let status_addr = status_addr(chain)?;
        let ioerr = Parsed::Answer {
            status: VIRTIO_BLK_S_IOERR,
            written: 1,
        };
        if readable < REQUEST_HEADER_LEN as u64 {
            return Ok(ioerr);
        }
        let mut header = [0u8; REQUEST_HEADER_LEN];
        gather(mem, &readable_buffers(chain), 0, &mut header)?;
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let (kind, data) = match kind {
            VIRTIO_BLK_T_IN if readable == REQUEST_HEADER_LEN as u64 => {
                (Kind::Read, writable_data(chain))
            }
            VIRTIO_BLK_T_OUT if room == 1 => (Kind::Write, readable_data(chain)),
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => return Ok(ioerr),
            VIRTIO_BLK_T_FLUSH if self.read_only => return Ok(ok(1)),
            VIRTIO_BLK_T_FLUSH => (Kind::Flush, Vec::new()),
            VIRTIO_BLK_T_GET_ID => {
                let written = write_id(mem, &writable_data(chain))?;
                return Ok(ok(written + 1));
            }
            _ => {
                return Ok(Parsed::Answer {
                    status: VIRTIO_BLK_S_UNSUPP,
                    written: 1,
                })
            }
        };
        let bytes: u64 = data.iter().map(|d| u64::from(d.len)).sum();
        let total = match kind {
            Kind::Flush => 1,
            _ if !bytes.is_multiple_of(SECTOR_SIZE as u64) => return Ok(ioerr),
            _ => bytes / SECTOR_SIZE as u64,
        };
        let in_range = kind == Kind::Flush
            || sector
                .checked_add(total)
                .is_some_and(|end| end <= self.capacity);
        if !in_range || (kind == Kind::Write && self.read_only) {
            return Ok(ioerr);
        }
        if total == 0 {
            return Ok(ok(1));
        }
        Ok(Parsed::Serve(Request {
            head: chain.head,
            kind,
            data,
            status_addr,
            sector,
            total,
            issued: 0,
            ops_out: 0,
            failed: false,
        }))
    }

    /// Hands operations to the backend, oldest request first, while it
    /// takes them and fewer than [`MAX_OPS_IN_FLIGHT`] are out.
    fn issue(&mut self, mem: &mut dyn GuestMemory) {
        let mut requests = core::mem::take(&mut self.requests);
        'requests: for (&number, request) in requests.iter_mut() {
            while !request.failed && request.issued < request.total {
                let max = match request.kind {
                    Kind::Read => self.max_read_sectors,
                    _ => self.max_op_sectors,
                };
                let count = (request.total - request.issued).min(u64::from(max)) as u32;
                let answers = self.answers_for(request.kind, count);
                if self.answers_due + answers as usize > MAX_OPS_IN_FLIGHT {
                    break 'requests;
                }
                let id = self.next_op_id();
                match self.start_op(mem, request, id, count) {
                    Ok(()) => {
                        self.answers_due += answers as usize;
                        self.ops.insert(
                            id,
                            Op {
                                request: number,
                                offset: request.issued,
                                count,
                                received: 0,
                                answers_due: answers,
                            },
                        );
                        request.issued += u64::from(count);
                        request.ops_out += 1;
                    }
                    Err(Refusal::Busy) => break 'requests,
                    Err(Refusal::Failed) => request.failed = true,
                }
            }
        }
        self.requests = requests;
    }

    /// Starts one operation of `request`: `count` sectors from what it
    /// issued so far.
    fn start_op(
        &mut self,
        mem: &mut dyn GuestMemory,
        request: &Request,
        id: u32,
        count: u32,
    ) -> Result<(), Refusal> {
        let sector = request.sector + request.issued;
        match request.kind {
            Kind::Read => self.backend.read(id, sector, count),
            Kind::Flush => self.backend.flush(id),
            Kind::Write => {
                let at = request.issued as usize * SECTOR_SIZE;
                let mut fill = |buf: &mut [u8]| gather(mem, &request.data, at, buf).is_ok();
                self.backend.write(id, sector, count, &mut fill)
            }
        }
    }

    fn next_op_id(&mut self) -> u32 {
        loop {
            let id = self.next_op;
            self.next_op = self.next_op.wrapping_add(1);
            if !self.ops.contains_key(&id) {
                return id;
            }
        }
    }

    /// Returns every request whose operations are all answered.
    fn finish(&mut self, q: &mut Virtqueue, mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        let done: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.done())
            .map(|(&n, _)| n)
            .collect();
        for number in done {
            let Some(r) = self.requests.remove(&number) else {
                continue;
            };
            let bytes = r.total * SECTOR_SIZE as u64;
            let (status, written) = match (r.failed, r.kind) {
                (true, _) => (VIRTIO_BLK_S_IOERR, 1),
                (false, Kind::Read) => {
                    self.stats.reads += 1;
                    self.stats.bytes_read += bytes;
                    (
                        VIRTIO_BLK_S_OK,
                        u32::try_from(bytes + 1).unwrap_or(u32::MAX),
                    )
                }
                (false, Kind::Write) => {
                    self.stats.writes += 1;
                    self.stats.bytes_written += bytes;
                    (VIRTIO_BLK_S_OK, 1)
                }
                (false, Kind::Flush) => {
                    self.stats.flushes += 1;
                    (VIRTIO_BLK_S_OK, 1)
                }
            };
            self.answer(q, mem, r.head, r.status_addr, status, written)?;
        }
        Ok(())
    }

    /// Writes a request's status byte and returns its chain.
    fn answer(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
        head: u16,
        status_addr: u64,
        status: u8,
        written: u32,
    ) -> Result<(), DeviceError> {
        if status != VIRTIO_BLK_S_OK {
            self.stats.errors += 1;
        }
        mem.write(status_addr, &[status])?;
        on_queue(REQUEST_QUEUE, q.add_used(mem, head, written))
    }
}

fn ok(written: u32) -> Parsed {
    Parsed::Answer {
        status: VIRTIO_BLK_S_OK,
        written,
    }
}

/// Where the status byte goes: the last byte of the last writable buffer.
fn status_addr(chain: &DescriptorChain) -> Result<u64, DeviceError> {
    chain
        .descriptors
        .iter()
        .rev()
        .find(|d| d.writable && d.len > 0)
        .map(|d| d.addr + u64::from(d.len) - 1)
        .ok_or(DeviceError::Protocol(
            "a virtio-blk request without a writable status byte",
        ))
}

fn readable_buffers(chain: &DescriptorChain) -> Vec<Descriptor> {
    chain
        .descriptors
        .iter()
        .filter(|d| !d.writable)
        .copied()
        .collect()
}

/// A write's data: the readable bytes after the header.
fn readable_data(chain: &DescriptorChain) -> Vec<Descriptor> {
    let mut skip = REQUEST_HEADER_LEN as u32;
    let mut out = Vec::new();
    for d in chain.descriptors.iter().filter(|d| !d.writable) {
        let cut = skip.min(d.len);
        skip -= cut;
        if d.len > cut {
            out.push(Descriptor {
                addr: d.addr + u64::from(cut),
                len: d.len - cut,
                writable: false,
            });
        }
    }
    out
}

/// A read's data: the writable bytes but the last (the status byte).
fn writable_data(chain: &DescriptorChain) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = chain
        .descriptors
        .iter()
        .filter(|d| d.writable && d.len > 0)
        .copied()
        .collect();
    if let Some(last) = out.last_mut() {
        last.len -= 1;
        if last.len == 0 {
            out.pop();
        }
    }
    out
}

/// Writes the serial into a GET_ID's buffers; returns the bytes written.
fn write_id(mem: &mut dyn GuestMemory, data: &[Descriptor]) -> Result<u32, MemError> {
    let mut id = [0u8; ID_LEN];
    id[..SERIAL.len()].copy_from_slice(SERIAL);
    let room: u64 = data.iter().map(|d| u64::from(d.len)).sum();
    let n = (room.min(ID_LEN as u64)) as usize;
    scatter(mem, data, 0, &id[..n])?;
    Ok(n as u32)
}

/// Calls `f` with each piece of `buffers` that bytes `[at, at + len)` of
/// their concatenation fall in: (guest address, offset into those bytes,
/// length).
fn pieces(
    buffers: &[Descriptor],
    at: usize,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), MemError>,
) -> Result<(), MemError> {
    let mut skip = at;
    let mut done = 0;
    for d in buffers {
        if done == len {
            break;
        }
        let d_len = d.len as usize;
        if skip >= d_len {
            skip -= d_len;
            continue;
        }
        let n = (d_len - skip).min(len - done);
        f(d.addr + skip as u64, done, n)?;
        done += n;
        skip = 0;
    }
    if done < len {
        return Err(MemError::OutOfBounds {
            gpa: 0,
            len: len as u64,
        });
    }
    Ok(())
}

/// Reads `out.len()` bytes from offset `at` of the buffers.
fn gather(
    mem: &dyn GuestMemory,
    buffers: &[Descriptor],
    at: usize,
    out: &mut [u8],
) -> Result<(), MemError> {
    let len = out.len();
    pieces(buffers, at, len, |addr, from, n| {
        mem.read(addr, &mut out[from..from + n])
    })
}

/// Writes `data` at offset `at` of the buffers.
fn scatter(
    mem: &mut dyn GuestMemory,
    buffers: &[Descriptor],
    at: usize,
    data: &[u8],
) -> Result<(), MemError> {
    pieces(buffers, at, data.len(), |addr, from, n| {
        mem.write(addr, &data[from..from + n])
    })
}

impl VirtioDevice for Blk {
    fn device_id(&self) -> u32 {
        DEVICE_ID_BLOCK
    }

    fn features(&self) -> u64 {
        // Indirect tables let a request of SEG_MAX buffers take one ring
        // entry.
        let mut features = VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_F_INDIRECT_DESC;
        if self.read_only {
            features |= VIRTIO_BLK_F_RO;
        }
        features
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn queue_max_size(&self, _index: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        data.copy_from_slice(&config[offset..offset + data.len()]);
    }

    fn reset(&mut self) {
        // Requests belong to the driver that is gone; answers to their
        // operations are dropped when they come.
        self.requests.clear();
        self.ops.clear();
        self.answers_due = 0;
    }

    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        _notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        let [q] = queues else {
            return Err(DeviceError::Protocol("virtio-blk needs one queue"));
        };
        if !q.ready {
            return Ok(());
        }
        self.finish(q, mem)?;
        self.take_requests(q, mem)?;
        self.issue(mem);
        self.finish(q, mem)?;
        // While operations are out, their answers make the host side poll
        // the device, which takes new requests then: the guest need not
        // notify (each notification is a VM exit). The guest runs only
        // between polls, so it sees the flag clear again as soon as nothing
        // is out.
        let quiet = !self.ops.is_empty();
        on_queue(REQUEST_QUEUE, q.suppress_notifications(mem, quiet))
    }
}

#[cfg(test)]
mod tests;
