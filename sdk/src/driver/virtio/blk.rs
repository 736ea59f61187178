//! A virtio-blk disk for drivers that must not wait for the device:
//! requests (read, write, flush) are queued and return at once; the
//! device reports them done on its interrupt, and [`Blk::poll_completion`]
//! hands each one back with its buffer.
//!
//! Built on `virtio-drivers`' raw virtqueue rather than its `VirtIOBlk`,
//! whose flush (and only flush) waits for the device by spinning, and whose
//! queue holds 16 requests; here a request is one descriptor (indirect
//! descriptors) in a queue of `N`.
//!
//! The virtqueue takes buffers the device still uses by `unsafe` contract;
//! this module keeps that contract (each request's header, data and status
//! stay here, untouched, from the moment it is queued until the device
//! hands its token back) so that drivers stay free of `unsafe`.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use bitflags::bitflags;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::DeviceStatus;
use virtio_drivers::transport::InterruptStatus;
use virtio_drivers::transport::SomeTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::Error as VirtioError;

use super::StarinaHal;

pub const SECTOR_SIZE: usize = 512;

/// The request queue's index.
const QUEUE: u16 = 0;

bitflags! {
    /// The feature bits this driver knows (virtio 1.2, 5.2.3 and 6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const RING_INDIRECT_DESC = 1 << 28;
        const VERSION_1 = 1 << 32;
    }
}

/// Request types (virtio 1.2, 5.2.6).
const TYPE_IN: u32 = 0;
const TYPE_OUT: u32 = 1;
const TYPE_FLUSH: u32 = 4;

/// Status byte values the device writes.
const STATUS_OK: u8 = 0;
const STATUS_UNSUPPORTED: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

/// Why a request was not queued; its buffer comes back.
#[derive(Debug)]
pub struct NotQueued {
    pub reason: NotQueuedReason,
    pub buf: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotQueuedReason {
    /// Every descriptor is with the device: try again after a completion.
    Full,
    /// The data is empty or not a multiple of [`SECTOR_SIZE`].
    BadLength,
    /// A write to a read-only disk.
    ReadOnly,
    /// Sectors past the end of the disk.
    OutOfRange,
}

/// What went wrong with a request the device completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The device reported an I/O error (status 1, or a status it should
    /// not use).
    Device(u8),
    /// The device does not support the request (status 2).
    Unsupported,
    /// The device completed the request in a way `virtio-drivers` refused.
    Queue(VirtioError),
}

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IoError::Device(status) => write!(f, "the device failed the request (status {status})"),
            IoError::Unsupported => write!(f, "the device does not support the request"),
            IoError::Queue(e) => write!(f, "virtqueue: {e:?}"),
        }
    }
}

/// A request the device is done with.
#[derive(Debug)]
pub struct Completion {
    /// The caller's tag, given when the request was queued.
    pub tag: u64,
    pub op: Op,
    /// The request's buffer: for a read, its data ranges hold the sectors
    /// read (when `result` is `Ok`); for a write, the data written.
    pub buf: Vec<u8>,
    pub result: Result<(), IoError>,
}

/// A request with the device: everything the device may still read or
/// write, kept here (heap memory that does not move when the request does)
/// until its token comes back.
struct InFlight {
    tag: u64,
    op: Op,
    /// `type`, reserved, `sector` (virtio 1.2, 5.2.6).
    header: Box<[u8; 16]>,
    buf: Vec<u8>,
    /// Where the sectors are in `buf`: ranges in ascending order, apart
    /// (the device reads or writes them one after the other).
    data: Vec<Range<usize>>,
    status: Box<[u8; 1]>,
}

pub struct Blk<const N: usize> {
    transport: SomeTransport<'static>,
    queue: VirtQueue<StarinaHal, N>,
    capacity: u64,
    read_only: bool,
    flush: bool,
    /// Requests with the device, by token.
    in_flight: Vec<Option<InFlight>>,
    count: usize,
    /// Requests done without the device (a flush the device need not see).
    done: VecDeque<Completion>,
    /// Notifications are held back until [`Blk::kick`].
    holding: bool,
    /// Requests were queued while holding.
    unnotified: bool,
}

impl<const N: usize> Blk<N> {
    /// Initializes the device: features, its capacity, the request queue.
    pub fn new(mut transport: SomeTransport<'static>) -> Result<Blk<N>, VirtioError> {
        let wanted =
            Features::RO | Features::FLUSH | Features::RING_INDIRECT_DESC | Features::VERSION_1;
        let features = transport.begin_init(wanted);
        let capacity = transport.read_consistent(|| {
            let low: u32 = transport.read_config_space(0)?;
            let high: u32 = transport.read_config_space(4)?;
            Ok(u64::from(low) | (u64::from(high) << 32))
        })?;
        let indirect = features.contains(Features::RING_INDIRECT_DESC);
        let queue = VirtQueue::new(&mut transport, QUEUE, indirect, false)?;
        transport.finish_init();
        Ok(Blk {
            transport,
            queue,
            capacity,
            read_only: features.contains(Features::RO),
            flush: features.contains(Features::FLUSH),
            in_flight: (0..N).map(|_| None).collect(),
            count: 0,
            done: VecDeque::new(),
            holding: false,
            unnotified: false,
        })
    }

    /// The disk's size in [`SECTOR_SIZE`] sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the device has a write cache to flush (without one, every
    /// completed write is durable and a flush completes at once).
    pub fn supports_flush(&self) -> bool {
        self.flush
    }

    /// Requests queued and not yet handed back.
    pub fn in_flight(&self) -> usize {
        self.count + self.done.len()
    }

    /// Holds the device's notification back until [`Blk::kick`]: a caller
    /// that queues several requests in a row lets the device take them all
    /// at once (one notification, which the device may answer by merging
    /// adjacent requests) instead of one by one.
    pub fn hold_notifications(&mut self) {
        self.holding = true;
    }

    /// Stops holding notifications back, and notifies the device of the
    /// requests queued meanwhile (if it asks to be notified).
    pub fn kick(&mut self) {
        self.holding = false;
        if core::mem::take(&mut self.unnotified) && self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
    }

    /// Reads (and so lowers) the device's interrupt status.
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
    }

    /// Queues a read of `buf.len() - skip` bytes from `sector` into
    /// `buf[skip..]` (the first `skip` bytes are the caller's, e.g. room
    /// for a reply header, and are left as they are).
    pub fn read(
        &mut self,
        tag: u64,
        sector: u64,
        buf: Vec<u8>,
        skip: usize,
    ) -> Result<(), NotQueued> {
        let end = buf.len();
        self.read_into(tag, sector, buf, tail(end, skip))
    }

    /// Queues one read from `sector` into the `ranges` of `buf`, one after
    /// the other (ascending, apart, each a multiple of [`SECTOR_SIZE`]
    /// long): the bytes between them are the caller's and are left as
    /// they are (e.g. a reply header in front of each part).
    pub fn read_into(
        &mut self,
        tag: u64,
        sector: u64,
        buf: Vec<u8>,
        ranges: Vec<Range<usize>>,
    ) -> Result<(), NotQueued> {
        self.queue_transfer(tag, Op::Read, sector, buf, ranges)
    }

    /// Queues a write of `buf[skip..]` from `sector` on.
    pub fn write(
        &mut self,
        tag: u64,
        sector: u64,
        buf: Vec<u8>,
        skip: usize,
    ) -> Result<(), NotQueued> {
        if self.read_only {
            return Err(NotQueued {
                reason: NotQueuedReason::ReadOnly,
                buf,
            });
        }
        let end = buf.len();
        self.queue_transfer(tag, Op::Write, sector, buf, tail(end, skip))
    }

    /// Queues a flush: once it completes, every write completed before it
    /// was queued is durable. `buf` (usually empty) comes back with it.
    pub fn flush(&mut self, tag: u64, buf: Vec<u8>) -> Result<(), NotQueued> {
        if !self.flush || self.read_only {
            self.done.push_back(Completion {
                tag,
                op: Op::Flush,
                buf,
                result: Ok(()),
            });
            return Ok(());
        }
        self.queue_request(tag, Op::Flush, 0, buf, Vec::new())
    }

    fn queue_transfer(
        &mut self,
        tag: u64,
        op: Op,
        sector: u64,
        buf: Vec<u8>,
        ranges: Vec<Range<usize>>,
    ) -> Result<(), NotQueued> {
        let mut len = 0;
        let mut end = 0;
        let mut fits = !ranges.is_empty();
        for r in &ranges {
            let r_len = r.end.saturating_sub(r.start);
            fits &= r.start >= end
                && r.end <= buf.len()
                && r_len > 0
                && r_len.is_multiple_of(SECTOR_SIZE);
            end = r.end;
            len += r_len;
        }
        if !fits {
            return Err(NotQueued {
                reason: NotQueuedReason::BadLength,
                buf,
            });
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        if sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(NotQueued {
                reason: NotQueuedReason::OutOfRange,
                buf,
            });
        }
        self.queue_request(tag, op, sector, buf, ranges)
    }

    /// Hands a request to the device.
    fn queue_request(
        &mut self,
        tag: u64,
        op: Op,
        sector: u64,
        buf: Vec<u8>,
        data: Vec<Range<usize>>,
    ) -> Result<(), NotQueued> {
        let kind = match op {
            Op::Read => TYPE_IN,
            Op::Write => TYPE_OUT,
            Op::Flush => TYPE_FLUSH,
        };
        let mut header = Box::new([0u8; 16]);
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        let mut request = InFlight {
            tag,
            op,
            header,
            buf,
            data,
            status: Box::new([0xff]),
        };
        // SAFETY: every buffer handed to the device here (the header, the
        // data ranges of `buf`, the status byte) is heap memory owned by
        // `request`, which is filed under the token below and not touched
        // until `poll_completion` sees the device hand that token back and
        // completes it with these very slices (`with_slices` builds the
        // same ones both times). A `Vec` or `Box` that moves keeps its heap
        // memory where it is.
        let queued = with_slices(&mut request, |inputs, outputs| unsafe {
            self.queue.add(inputs, outputs)
        });
        let token = match queued {
            Ok(token) => token,
            Err(_) => {
                return Err(NotQueued {
                    reason: NotQueuedReason::Full,
                    buf: request.buf,
                })
            }
        };
        match self.in_flight.get_mut(usize::from(token)) {
            Some(slot @ None) => *slot = Some(request),
            // Tokens are descriptor indices (< N), each in use once; the
            // device now holds the buffers, which must not be freed: stop.
            _ => panic!("virtio-blk: token {token} reused"),
        }
        self.count += 1;
        if self.holding {
            self.unnotified = true;
        } else if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(())
    }

    /// The next request the device is done with, if any.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        if let Some(done) = self.done.pop_front() {
            return Some(done);
        }
        let token = self.queue.peek_used()?;
        let Some(mut request) = self
            .in_flight
            .get_mut(usize::from(token))
            .and_then(Option::take)
        else {
            // The device names a request it does not have: its buffers
            // are unknown, so nothing can be completed safely.
            panic!("virtio-blk: the device completed unknown token {token}");
        };
        self.count -= 1;
        // SAFETY: these are the slices queued under `token` in
        // `queue_request` (same buffers, same ranges).
        let popped = with_slices(&mut request, |inputs, outputs| unsafe {
            self.queue.pop_used(token, inputs, outputs)
        });
        let result = match (popped, request.status[0]) {
            (Err(e), _) => Err(IoError::Queue(e)),
            (Ok(_), STATUS_OK) => Ok(()),
            (Ok(_), STATUS_UNSUPPORTED) => Err(IoError::Unsupported),
            (Ok(_), status) => Err(IoError::Device(status)),
        };
        Some(Completion {
            tag: request.tag,
            op: request.op,
            buf: request.buf,
            result,
        })
    }
}

impl<const N: usize> Drop for Blk<N> {
    fn drop(&mut self) {
        // Reset the device (it drops every request) before the queue and
        // the buffers of requests still in flight are freed with the
        // fields.
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(QUEUE);
    }
}

/// Calls `f` with the device-readable and device-writable slices of
/// `request`, in the order the device expects them (header, data, status).
fn with_slices<R>(
    request: &mut InFlight,
    f: impl for<'a> FnOnce(&'a [&'a [u8]], &'a mut [&'a mut [u8]]) -> R,
) -> R {
    let header: &[u8] = &request.header[..];
    let status: &mut [u8] = &mut request.status[..];
    match request.op {
        Op::Read => {
            let mut slices = data_slices(&mut request.buf, &request.data);
            slices.push(status);
            f(&[header], &mut slices)
        }
        Op::Write => {
            let mut readable: Vec<&[u8]> = vec![header];
            for r in &request.data {
                readable.push(&request.buf[r.clone()]);
            }
            f(&readable, &mut [status])
        }
        Op::Flush => f(&[header], &mut [status]),
    }
}

/// The one range `skip..len` (empty if `skip` is past `len`).
fn tail(len: usize, skip: usize) -> Vec<Range<usize>> {
    core::iter::once(skip.min(len)..len).collect()
}

/// The `ranges` of `buf` (ascending, apart: checked when queued) as
/// slices of their own.
fn data_slices<'a>(buf: &'a mut [u8], ranges: &[Range<usize>]) -> Vec<&'a mut [u8]> {
    let mut slices = Vec::with_capacity(ranges.len() + 1);
    let mut rest = buf;
    let mut at = 0;
    for r in ranges {
        let (_, tail) = core::mem::take(&mut rest).split_at_mut(r.start - at);
        let (slice, tail) = tail.split_at_mut(r.end - r.start);
        slices.push(slice);
        rest = tail;
        at = r.end;
    }
    slices
}
