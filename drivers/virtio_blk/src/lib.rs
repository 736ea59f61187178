//! The virtio-blk driver: serves the sectors of a virtio-blk disk
//! (virtio-pci on q35, virtio-mmio on microvm) to any number of clients,
//! on the block protocol of [`starina::block`] (each client gets its
//! part's hello, then sends requests and gets replies).
//!
//! It reads the disk's MBR at start ([`partitions`]) and exports two
//! services: `disk` (partition 1, the native file system; the whole disk
//! when there is no MBR) and `linux_root` (partition 2, Linux's root). A
//! client is confined to its part: its sectors count from the part's start
//! and are checked against the part's length. A client of a part the disk
//! does not have gets an `Error` (`NOT_FOUND`, why) instead of the hello,
//! and its channel is closed.
//!
//! Requests are checked (header, length, sector range, a write to a
//! read-only disk) and a bad one gets an `Error` reply; the rest go to the
//! device at once (a read of several parts as one device request, into a
//! buffer laid out as its replies: each part's header, then its sectors), up to [`QUEUE_SIZE`] of them (from all clients), and
//! each is answered when the device completes it (on its interrupt), in
//! whatever order it does. An I/O error from the device is an `Error`
//! reply to that request. A client's requests that wait in its channel are
//! taken in a row (up to [`BATCH_MAX`]), each received straight into the
//! buffer the device uses, and the device is notified once for all of
//! them (QEMU then merges adjacent ones).
//!
//! Backpressure: while the device's queue is full, a request waits here
//! and its client's channel is not read (its next requests wait in the
//! channel) until descriptors come back; while a client has more than
//! [`CLIENT_BACKLOG_MAX`] bytes of replies it has not taken, its channel is
//! not read either.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod partitions;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::block::codes;
use starina::block::parse_request;
use starina::block::read_parts;
use starina::block::DiskInfo;
use starina::block::Header;
use starina::block::Request;
use starina::block::HEADER_LEN;
use starina::block::MAX_SECTORS_PER_MESSAGE;
use starina::block::MAX_SECTORS_PER_READ;
use starina::block::SECTOR_SIZE;
use starina::driver::virtio::blk::Completion;
use starina::driver::virtio::blk::NotQueued;
use starina::driver::virtio::blk::NotQueuedReason;
use starina::driver::virtio::blk::Op;
use starina::driver::virtio::transport;
use starina::handle::OwnedHandle;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::message::codes::NOT_FOUND;
use starina::message::MessageKind;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

use crate::partitions::Part;
use crate::partitions::Table;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Descriptors of the request queue: requests with the device at once.
const QUEUE_SIZE: usize = 64;
/// Reply bytes a client has not taken beyond which its requests are not read.
const CLIENT_BACKLOG_MAX: usize = 128 * 1024;
/// Request buffers kept for reuse (as many as the device takes at once).
const SPARE_MAX: usize = QUEUE_SIZE;
/// Buffers of reads longer than a message kept for reuse.
const SPARE_READS_MAX: usize = 16;
/// The longest read's buffer: its parts' headers and sectors.
const READ_BUFFER_MAX: usize = read_buffer_len(MAX_SECTORS_PER_READ);
/// Requests taken from one client's channel in a row (one device
/// notification for all of them).
const BATCH_MAX: usize = QUEUE_SIZE;

type Blk = starina::driver::virtio::blk::Blk<QUEUE_SIZE>;

/// What a watched object is to the driver.
enum Watched {
    /// A client, by its number (never reused, unlike handle ids).
    Client(u32),
    Interrupt,
}

struct Client {
    channel: HandleId,
    /// The part of the disk it is confined to.
    part: Part,
    /// A request of this client waits for the device's queue.
    queue_wait: bool,
    /// Its replies pile up.
    backlogged: bool,
    /// Whether its channel is read.
    receiving: bool,
}

/// A checked request, with its buffer (the request header, then the
/// sectors; for a read, each part's header and sectors), to hand to the
/// device.
struct Ready {
    client: u32,
    op: Op,
    sector: u64,
    buf: Vec<u8>,
}

/// The buffer of a read of `count` sectors: each part's reply header, then
/// its sectors.
const fn read_buffer_len(count: u32) -> usize {
    let parts = count.div_ceil(MAX_SECTORS_PER_MESSAGE) as usize;
    parts * HEADER_LEN + count as usize * SECTOR_SIZE
}

struct Driver {
    blk: Blk,
    /// The whole disk.
    info: DiskInfo,
    /// Its partition table, read at start.
    table: Table,
    clients: BTreeMap<u32, Client>,
    next_client: u32,
    /// Requests the device's queue had no room for, oldest first.
    waiting: VecDeque<Ready>,
    spare: Spare,
    io_errors: u64,
}

/// Buffers kept for reuse: message-sized ones, and those of long reads.
#[derive(Default)]
struct Spare {
    small: Vec<Vec<u8>>,
    reads: Vec<Vec<u8>>,
}

pub fn main(env: Env) -> Result<(), String> {
    let device = env.disk;
    let where_ = device.describe();
    let transport = transport(&device)
        .map_err(|e| format!("{where_}: cannot open the virtio transport: {e}"))?;
    let blk = Blk::new(transport)
        .map_err(|e| format!("{where_}: virtio-blk initialization failed: {e:?}"))?;
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let mut blk = blk;
    let table = read_table(&mut blk, &where_);
    let mut driver = Driver {
        info: DiskInfo {
            sectors: blk.capacity(),
            read_only: blk.read_only(),
        },
        table,
        blk,
        clients: BTreeMap::new(),
        next_client: 1,
        waiting: VecDeque::new(),
        spare: Spare::default(),
        io_errors: 0,
    };
    let result = run(&mut driver, env.supervisor, irq, &where_);
    // `device` drops last: the kernel quiesces the disk before its DMA
    // memory is freed.
    drop(driver);
    drop(device);
    result.map_err(|e| format!("{where_}: {e}"))
}

fn run(
    driver: &mut Driver,
    supervisor: Channel,
    irq: starina::driver::Interrupt,
    where_: &str,
) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(supervisor)?;
    ml.cx().add_interrupt(irq, Watched::Interrupt)?;
    let info = driver.info;
    log::info!(
        "{where_}: disk of {} sectors ({} MiB), {}, {}",
        info.sectors,
        info.sectors * SECTOR_SIZE as u64 / (1024 * 1024),
        if info.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if driver.blk.supports_flush() {
            "write cache (flush)"
        } else {
            "no write cache"
        }
    );
    ml.run(driver)
}

impl Handler for Driver {
    type State = Watched;

    fn connect(
        &mut self,
        cx: &mut Cx<Watched>,
        service: &str,
        client: Channel,
    ) -> Result<(), Error> {
        let part = match partitions::part_for(service, &self.table, self.info) {
            Ok(part) => part,
            Err(why) => {
                log::info!("a '{service}' client: {why}; refused");
                let refusal = Message::Error {
                    call_id: 0,
                    code: NOT_FOUND,
                    text: &why,
                };
                if let Err(e) = client.send(refusal) {
                    log::debug!("a '{service}' client: the refusal was lost: {e:?}");
                }
                // Closed as `client` drops.
                return Ok(());
            }
        };
        let uri = part.info.uri();
        client.send(Message::Open {
            call_id: 0,
            uri: &uri,
            handle: None,
        })?;
        let number = self.next_client;
        self.next_client += 1;
        let channel = cx.add_channel(client, Watched::Client(number))?;
        self.clients.insert(
            number,
            Client {
                channel,
                part,
                queue_wait: false,
                backlogged: false,
                receiving: true,
            },
        );
        Ok(())
    }

    fn message(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        state: &mut Watched,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let Watched::Client(client) = *state else {
            return Ok(());
        };
        self.blk.hold_notifications();
        self.request(cx, client, msg);
        self.more_requests(cx, id, client);
        // Flushes without a device cache complete here, not on an interrupt.
        self.complete(cx);
        self.blk.kick();
        Ok(())
    }

    fn peer_closed(
        &mut self,
        _cx: &mut Cx<Watched>,
        _id: HandleId,
        state: Watched,
    ) -> Result<(), Error> {
        if let Watched::Client(client) = state {
            self.clients.remove(&client);
            // Requests of its still with the device complete unanswered.
            let mut kept = VecDeque::new();
            for ready in self.waiting.drain(..) {
                if ready.client == client {
                    recycle(&mut self.spare, ready.buf);
                } else {
                    kept.push_back(ready);
                }
            }
            self.waiting = kept;
        }
        Ok(())
    }

    fn interrupt(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        _: &mut Watched,
    ) -> Result<(), Error> {
        // Reading the ISR lowers the line; completions after this raise it
        // again, and the ack below unmasks it.
        self.blk.ack_interrupt();
        self.blk.hold_notifications();
        self.complete(cx);
        self.blk.kick();
        cx.ack_interrupt(id)
    }

    fn drained(
        &mut self,
        cx: &mut Cx<Watched>,
        _: HandleId,
        state: &mut Watched,
    ) -> Result<(), Error> {
        if let Watched::Client(client) = *state {
            if let Some(c) = self.clients.get_mut(&client) {
                c.backlogged = false;
            }
            self.update_receiving(cx, client);
        }
        Ok(())
    }
}

impl Driver {
    /// Checks one message of `client` (from the main loop) and hands it to
    /// the device, or answers it with an error.
    fn request(&mut self, cx: &mut Cx<Watched>, client: u32, msg: Message<'_>) {
        let Message::Data(bytes) = msg else {
            log::warn!("client {client}: ignoring {:?}", msg.kind());
            return;
        };
        let mut buf = self.take_buffer();
        // A message is never longer than MESSAGE_DATA_MAX.
        let len = bytes.len().min(buf.len());
        buf[..len].copy_from_slice(&bytes[..len]);
        self.request_in(cx, client, buf, len);
    }

    /// Takes the requests already waiting in `client`'s channel (up to
    /// [`BATCH_MAX`], while it is read), so that the device is notified
    /// once for all of them. Each is received straight into the buffer it
    /// is served from (a write's sectors are not copied again).
    fn more_requests(&mut self, cx: &mut Cx<Watched>, id: HandleId, client: u32) {
        for _ in 1..BATCH_MAX {
            if !self.clients.get(&client).is_some_and(|c| c.receiving) {
                break;
            }
            let Some(channel) = cx.channel(id) else {
                break;
            };
            let mut buf = self.take_buffer();
            let mut handles = [HandleId(0); MESSAGE_HANDLES_MAX];
            let info = match channel.recv_raw(&mut buf, &mut handles) {
                Ok(info) => info,
                // Nothing more now, or the client is gone (the main loop
                // sees that next).
                Err(_) => {
                    recycle(&mut self.spare, buf);
                    break;
                }
            };
            let handles: Vec<OwnedHandle> = handles[..info.num_handles]
                .iter()
                .map(|&h| OwnedHandle::from_raw(h))
                .collect();
            if info.kind == MessageKind::Data as u8 && handles.is_empty() {
                self.request_in(cx, client, buf, info.data_len);
                continue;
            }
            // Not a request: what the main loop would make of it (the
            // handles close as it drops).
            match Message::decode(info.kind, &buf[..info.data_len], handles) {
                Ok(msg) => log::warn!("client {client}: ignoring {:?}", msg.kind()),
                Err(e) => log::warn!("client {client}: an undecodable message ({e}), dropped"),
            }
            recycle(&mut self.spare, buf);
        }
    }

    /// A buffer of [`MESSAGE_DATA_MAX`] bytes for a request: a spare one
    /// (not cleared: what the request does not overwrite is cut off before
    /// it goes to the device) or a new one.
    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = self
            .spare
            .small
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MESSAGE_DATA_MAX));
        buf.resize(MESSAGE_DATA_MAX, 0);
        buf
    }

    /// Serves the request in `buf[..len]` from `buf` itself: the header
    /// stays in front (it is the reply's, with the client's sector), then
    /// the sectors to write, or room for the sectors to read (which the
    /// device overwrites; a failed read sends none of them); its sector on
    /// the disk is its part's start plus the client's. A bad request gets
    /// an error reply.
    fn request_in(&mut self, cx: &mut Cx<Watched>, client: u32, mut buf: Vec<u8>, len: usize) {
        let Some(part) = self.clients.get(&client).map(|c| c.part) else {
            recycle(&mut self.spare, buf);
            return;
        };
        let checked = match parse_request(&buf[..len], &part.info) {
            Ok(Request::Read { id, sector, count }) if count > MAX_SECTORS_PER_MESSAGE => {
                let parts = self.read_buffer(id, sector, count);
                recycle(&mut self.spare, core::mem::replace(&mut buf, parts));
                Ok((Op::Read, part.start + sector, read_buffer_len(count)))
            }
            Ok(Request::Read { sector, count, .. }) => Ok((
                Op::Read,
                part.start + sector,
                HEADER_LEN + count as usize * SECTOR_SIZE,
            )),
            Ok(Request::Write { sector, .. }) => Ok((Op::Write, part.start + sector, len)),
            Ok(Request::Flush { .. }) => Ok((Op::Flush, 0, HEADER_LEN)),
            Err(refused) => Err(refused),
        };
        match checked {
            Ok((op, sector, used)) => {
                buf.truncate(used);
                let ready = Ready {
                    client,
                    op,
                    sector,
                    buf,
                };
                self.submit(cx, ready);
            }
            Err(refused) => {
                recycle(&mut self.spare, buf);
                log::debug!(
                    "client {client}: request {} refused: {}",
                    refused.id,
                    refused.error
                );
                let text = format!("{}", refused.error);
                self.reply_error(cx, client, refused.id, refused.error.code(), &text);
            }
        }
    }

    /// The buffer of request `id`, a read of `count` sectors from the
    /// client's `sector`: each part's reply header, then room for its
    /// sectors.
    fn read_buffer(&mut self, id: u32, sector: u64, count: u32) -> Vec<u8> {
        let mut buf = self.spare.reads.pop().unwrap_or_default();
        buf.resize(read_buffer_len(count), 0);
        let mut at = 0;
        for (sector, count) in read_parts(sector, count) {
            let header = Header {
                op: starina::block::Op::Read,
                id,
                sector,
                count,
            };
            buf[at..at + HEADER_LEN].copy_from_slice(&header.to_bytes());
            at += HEADER_LEN + count as usize * SECTOR_SIZE;
        }
        buf
    }

    /// Hands a request to the device, or makes it wait (after the ones
    /// already waiting) and stops reading its client.
    fn submit(&mut self, cx: &mut Cx<Watched>, ready: Ready) {
        if !self.waiting.is_empty() {
            self.wait(cx, ready);
            return;
        }
        if let Some(ready) = self.try_submit(cx, ready) {
            self.wait(cx, ready);
        }
    }

    fn wait(&mut self, cx: &mut Cx<Watched>, ready: Ready) {
        let client = ready.client;
        self.waiting.push_back(ready);
        if let Some(c) = self.clients.get_mut(&client) {
            c.queue_wait = true;
        }
        self.update_receiving(cx, client);
    }

    /// Queues `ready` to the device; gives it back if the queue is full.
    fn try_submit(&mut self, cx: &mut Cx<Watched>, ready: Ready) -> Option<Ready> {
        let Ready {
            client,
            op,
            sector,
            buf,
        } = ready;
        let id = request_id(&buf);
        let tag = (u64::from(client) << 32) | u64::from(id);
        let queued = match op {
            Op::Read => {
                let ranges = read_ranges(buf.len());
                self.blk.read_into(tag, sector, buf, ranges)
            }
            Op::Write => self.blk.write(tag, sector, buf, HEADER_LEN),
            Op::Flush => self.blk.flush(tag, buf),
        };
        match queued {
            Ok(()) => None,
            Err(NotQueued {
                reason: NotQueuedReason::Full,
                buf,
            }) => Some(Ready {
                client,
                op,
                sector,
                buf,
            }),
            Err(NotQueued { reason, buf }) => {
                // Checked against the same disk before: not expected.
                log::error!("client {client}: request {id} not queued: {reason:?}");
                recycle(&mut self.spare, buf);
                self.reply_error(
                    cx,
                    client,
                    id,
                    codes::MALFORMED,
                    "refused by the device queue",
                );
                None
            }
        }
    }

    /// Answers every request the device is done with, then queues the
    /// requests that waited for room.
    fn complete(&mut self, cx: &mut Cx<Watched>) {
        loop {
            while let Some(done) = self.blk.poll_completion() {
                self.answer(cx, done);
            }
            if !self.submit_waiting(cx) {
                return;
            }
        }
    }

    /// Queues waiting requests while the device has room; `true` if any
    /// went.
    fn submit_waiting(&mut self, cx: &mut Cx<Watched>) -> bool {
        let mut any = false;
        while let Some(ready) = self.waiting.pop_front() {
            let client = ready.client;
            if let Some(back) = self.try_submit(cx, ready) {
                self.waiting.push_front(back);
                break;
            }
            any = true;
            if !self.waiting.iter().any(|r| r.client == client) {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.queue_wait = false;
                }
                self.update_receiving(cx, client);
            }
        }
        any
    }

    fn answer(&mut self, cx: &mut Cx<Watched>, done: Completion) {
        let client = (done.tag >> 32) as u32;
        let id = done.tag as u32;
        let Some(channel) = self.clients.get(&client).map(|c| c.channel) else {
            recycle(&mut self.spare, done.buf);
            return;
        };
        match done.result {
            Ok(()) => {
                let replies = match done.op {
                    Op::Read => read_replies(done.buf.len()),
                    Op::Write | Op::Flush => alloc::vec![0..HEADER_LEN],
                };
                for reply in replies {
                    if let Err(e) = cx.send_data(channel, &done.buf[reply]) {
                        log::debug!("client {client}: reply to request {id} lost: {e}");
                        break;
                    }
                }
            }
            Err(e) => {
                self.io_errors += 1;
                log::warn!(
                    "client {client}: {:?} request {id} failed ({} so far): {e}",
                    done.op,
                    self.io_errors
                );
                let text = format!("{e}");
                self.reply_error(cx, client, id, codes::IO, &text);
            }
        }
        recycle(&mut self.spare, done.buf);
        if cx.backlog_bytes(channel) > CLIENT_BACKLOG_MAX {
            if let Some(c) = self.clients.get_mut(&client) {
                c.backlogged = true;
            }
            self.update_receiving(cx, client);
        }
    }

    fn reply_error(&mut self, cx: &mut Cx<Watched>, client: u32, id: u32, code: u16, text: &str) {
        let Some(channel) = self.clients.get(&client).map(|c| c.channel) else {
            return;
        };
        let msg = Message::Error {
            call_id: id,
            code,
            text,
        };
        if let Err(e) = cx.send(channel, msg) {
            log::debug!("client {client}: error reply to request {id} lost: {e}");
        }
    }

    /// Reads `client`'s channel exactly while nothing of it waits.
    fn update_receiving(&mut self, cx: &mut Cx<Watched>, client: u32) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let on = !c.queue_wait && !c.backlogged;
        if on == c.receiving {
            return;
        }
        c.receiving = on;
        let result = if on {
            cx.resume_receiving(c.channel)
        } else {
            cx.pause_receiving(c.channel)
        };
        if let Err(e) = result {
            log::error!("client {client}: cannot change reading its channel: {e}");
        }
    }
}

/// The request id in a request buffer's header (after the op byte).
fn request_id(buf: &[u8]) -> u32 {
    match buf.get(1..5) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Keeps `buf` for the next request, up to [`SPARE_MAX`] message-sized
/// ones and [`SPARE_READS_MAX`] of long reads.
fn recycle(spare: &mut Spare, buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity <= MESSAGE_DATA_MAX {
        if spare.small.len() < SPARE_MAX {
            spare.small.push(buf);
        }
    } else if capacity <= READ_BUFFER_MAX && spare.reads.len() < SPARE_READS_MAX {
        spare.reads.push(buf);
    }
}

/// Where a read's replies are in its buffer of `len` bytes (as
/// `Driver::read_buffer` lays it out, or one header and its sectors): each
/// part's header and sectors.
fn read_replies(len: usize) -> Vec<Range<usize>> {
    read_ranges(len)
        .into_iter()
        .map(|r| r.start - HEADER_LEN..r.end)
        .collect()
}

/// Where the sectors go in a read's buffer of `len` bytes: after each
/// part's header.
fn read_ranges(len: usize) -> Vec<Range<usize>> {
    let part = HEADER_LEN + MAX_SECTORS_PER_MESSAGE as usize * SECTOR_SIZE;
    let mut ranges = Vec::new();
    let mut at = 0;
    while at + HEADER_LEN < len {
        let end = (at + part).min(len);
        ranges.push(at + HEADER_LEN..end);
        at = end;
    }
    ranges
}

/// How long the driver waits for the disk's first sector at start.
const TABLE_TIMEOUT_MS: u64 = 5_000;

/// Reads the partition table (sector 0) before any client is served, and
/// logs what it says. A disk whose first sector cannot be read is taken as
/// one without a table (the whole disk is `disk`).
fn read_table(blk: &mut Blk, where_: &str) -> Table {
    let sector0 = match read_sector0(blk) {
        Ok(sector0) => sector0,
        Err(why) => {
            log::warn!("{where_}: cannot read the partition table: {why}; serving the whole disk");
            return Table::WholeDisk;
        }
    };
    let mut problems = Vec::new();
    let table = partitions::parse(&sector0, blk.capacity(), &mut problems);
    for problem in &problems {
        log::warn!("{where_}: partition table: {problem}");
    }
    match &table {
        Table::WholeDisk => log::info!("{where_}: no partition table: the whole disk is 'disk'"),
        Table::Mbr(entries) => {
            for e in entries {
                log::info!(
                    "{where_}: partition {}: type {:#04x}, sectors {}+{} ({} MiB)",
                    e.number,
                    e.kind,
                    e.start,
                    e.sectors,
                    e.sectors * SECTOR_SIZE as u64 / (1024 * 1024)
                );
            }
        }
    }
    table
}

/// Sector 0, read through the request queue (polled: the main loop does
/// not run yet).
fn read_sector0(blk: &mut Blk) -> Result<Vec<u8>, String> {
    if blk.capacity() == 0 {
        return Err(String::from("the disk is empty"));
    }
    if let Err(e) = blk.read(0, 0, alloc::vec![0u8; SECTOR_SIZE], 0) {
        return Err(format!("not queued: {:?}", e.reason));
    }
    let start = starina::timer::now_ns();
    loop {
        if let Some(done) = blk.poll_completion() {
            // Lowers the line raised for it; the main loop's first
            // interrupt then finds nothing to do.
            blk.ack_interrupt();
            return done.result.map(|()| done.buf).map_err(|e| format!("{e}"));
        }
        if starina::timer::now_ns().saturating_sub(start) > TABLE_TIMEOUT_MS * 1_000_000 {
            return Err(format!("no answer within {TABLE_TIMEOUT_MS} ms"));
        }
        let _ = starina::timer::sleep_ms(1);
    }
}
