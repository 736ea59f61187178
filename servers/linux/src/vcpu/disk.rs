//! The guest's root disk: the virtio-blk device (`/dev/vda`) over the
//! virtio_blk driver's `linux_root` service (partition 2 of the disk), on
//! the block protocol of `starina::block`.
//!
//! The vCPU thread owns the channel. The device model
//! (`starina_vmm::virtio::blk`) cuts the guest's requests into block
//! protocol requests and hands them to [`Backend`], which sends them at
//! once (never waiting: a full channel is `Busy`, and the model tries
//! again after the next reply). A read carries up to
//! `MAX_SECTORS_PER_READ` sectors (one request for the driver and the
//! disk, answered in parts of a message each). The replies are taken after each exit
//! while requests are out (and wake the thread while the guest halts: the
//! channel is in its poll) and handed back to the model, which returns the
//! finished guest requests. A guest flush is a block protocol flush; the
//! model completes a write only when its reply came, so a guest `sync`
//! leaves the disk consistent.
//!
//! Without the service, without a hello, or with an `Error` instead (the
//! disk has no Linux root partition) the guest boots without the device
//! and one line says why.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::Readiness;
use starina::block::DiskInfo;
use starina::block::Header;
use starina::block::Op;
use starina::block::HEADER_LEN;
use starina::block::HELLO_TIMEOUT_MS;
use starina::block::MAX_SECTORS_PER_MESSAGE;
use starina::block::MAX_SECTORS_PER_READ;
use starina::block::SECTOR_SIZE;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::message::Message;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::Error;
use starina_vmm::repeats::Repeats;
use starina_vmm::virtio::blk::Answered;
use starina_vmm::virtio::blk::Blk;
use starina_vmm::virtio::blk::BlockBackend;
use starina_vmm::virtio::blk::Refusal;
use starina_vmm::vm::DeviceSlot;
use starina_vmm::vm::SlotError;
use starina_vmm::vm::Vm;

use super::Guest;

/// Requests out on the channel at most (its queue holds 64 messages; the
/// model keeps to 56, more are out only after a guest reset).
const CHANNEL_OUT_MAX: usize = 60;

/// The channel, shared by the model's backend (which sends) and the vCPU
/// thread (which receives).
struct Link {
    channel: Channel,
    /// Requests sent whose (last) replies were not taken.
    out: AtomicUsize,
    /// The driver closed the channel.
    lost: AtomicBool,
    message: spin::Mutex<Vec<u8>>,
}

/// The model's backend: each operation is one block protocol request.
struct Backend(Arc<Link>);

impl Backend {
    /// Sends one request: `header`, then `body_len` bytes that `fill` puts
    /// straight into the message (a write's sectors, from guest memory).
    fn send(
        &self,
        header: Header,
        body_len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<(), Refusal> {
        let link = &self.0;
        if link.lost.load(Ordering::Acquire) {
            return Err(Refusal::Failed);
        }
        if link.out.load(Ordering::Acquire) >= CHANNEL_OUT_MAX {
            return Err(Refusal::Busy);
        }
        let mut message = link.message.lock();
        // Resized, not cleared: every byte is written below, and the
        // buffer is zeroed only where it grows.
        message.resize(HEADER_LEN + body_len, 0);
        message[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        if !fill(&mut message[HEADER_LEN..]) {
            return Err(Refusal::Failed);
        }
        match link.channel.send_data(&message) {
            Ok(()) => {
                link.out.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(Error::QueueFull) => Err(Refusal::Busy),
            Err(e) => {
                log::error!("root disk: cannot send to the disk driver ({e}); the guest's disk I/O fails from now on");
                link.lost.store(true, Ordering::Release);
                Err(Refusal::Failed)
            }
        }
    }
}

impl BlockBackend for Backend {
    fn read(&mut self, id: u32, sector: u64, count: u32) -> Result<(), Refusal> {
        let op = Op::Read;
        let header = Header {
            op,
            id,
            sector,
            count,
        };
        self.send(header, 0, &mut |_| true)
    }

    fn write(
        &mut self,
        id: u32,
        sector: u64,
        count: u32,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<(), Refusal> {
        let op = Op::Write;
        let header = Header {
            op,
            id,
            sector,
            count,
        };
        self.send(header, count as usize * SECTOR_SIZE, fill)
    }

    fn flush(&mut self, id: u32) -> Result<(), Refusal> {
        let header = Header {
            op: Op::Flush,
            id,
            sector: 0,
            count: 0,
        };
        self.send(header, 0, &mut |_| true)
    }
}

/// The root disk of a running guest.
pub(super) struct RootDisk {
    slot: DeviceSlot<Blk>,
    link: Arc<Link>,
    buf: MessageBuffer,
    /// Requests the driver failed (logged at the 2^k-th).
    errors: Repeats,
    /// The channel is in the vCPU thread's poll.
    watched: bool,
}

/// Gives the guest its root disk (`/dev/vda`, `starina.root=/dev/vda` on
/// its command line) when the driver says hello on `channel`; otherwise
/// says why not, once.
pub(super) fn attach(
    vm: &mut Vm,
    channel: Option<Channel>,
    cmdline: &mut String,
) -> Option<RootDisk> {
    let no_disk = |why: &str| log::warn!("no root disk: {why}; Linux runs from its initramfs");
    let Some(channel) = channel else {
        no_disk("the profile has no 'linux_root' service (no virtio_blk)");
        return None;
    };
    let info = match hello(&channel) {
        Ok(info) => info,
        Err(why) => {
            no_disk(&why);
            return None;
        }
    };
    let link = Arc::new(Link {
        channel,
        out: AtomicUsize::new(0),
        lost: AtomicBool::new(false),
        message: spin::Mutex::new(Vec::new()),
    });
    let backend = Box::new(Backend(link.clone()));
    let blk = Blk::new(
        info.sectors,
        info.read_only,
        MAX_SECTORS_PER_MESSAGE,
        backend,
    )
    .with_long_reads(MAX_SECTORS_PER_READ);
    let slot = match vm.add_virtio(blk) {
        Ok(slot) => slot,
        Err(e) => {
            no_disk(&format!("no virtio-mmio slot for virtio-blk: {e}"));
            return None;
        }
    };
    cmdline.push_str(" starina.root=/dev/vda");
    log::info!(
        "root disk: {} MiB ({}), the guest's /dev/vda",
        info.sectors / 2048,
        if info.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    Some(RootDisk {
        slot,
        link,
        buf: MessageBuffer::new(),
        errors: Repeats::new(),
        watched: false,
    })
}

/// The driver's hello on `channel`: the partition's size and mode, or why
/// there is none (its `Error`, a timeout, a closed channel).
fn hello(channel: &Channel) -> Result<DiskInfo, String> {
    let mut buf = MessageBuffer::new();
    match channel.recv_within(&mut buf, HELLO_TIMEOUT_MS) {
        Ok(Some(Message::Open {
            call_id: 0,
            uri,
            handle: None,
        })) => DiskInfo::parse_uri(uri).map_err(|e| e.to_string()),
        Ok(Some(Message::Error { text, .. })) => Err(String::from(text)),
        Ok(Some(other)) => Err(format!(
            "the disk driver sent {:?} instead of its hello",
            other.kind()
        )),
        Ok(None) => Err(format!(
            "no hello from the disk driver within {HELLO_TIMEOUT_MS} ms"
        )),
        Err(Error::PeerClosed) => Err(String::from("the disk driver closed the connection")),
        Err(e) => Err(format!("cannot receive the disk driver's hello: {e}")),
    }
}

impl RootDisk {
    /// Wakes the halted guest's thread on replies. (Not on the peer's
    /// close, which would wake it for good: while requests are out every
    /// exit but a PIT access looks at the channel, and notices.)
    pub(super) fn watch(&mut self, poll: &Poll) -> Result<(), Error> {
        poll.add(self.link.channel.id(), Readiness::READABLE)?;
        self.watched = true;
        Ok(())
    }

    /// Whether the channel needs a look: replies are due, or the driver
    /// is gone and that was not handled yet.
    pub(super) fn waiting(&self) -> bool {
        self.link.out.load(Ordering::Acquire) > 0
            || (self.link.lost.load(Ordering::Acquire) && self.watched)
    }

    /// What the device did, for the log.
    pub(super) fn summary(&self, vm: &Vm) -> String {
        match vm.virtio_device(self.slot) {
            Ok(blk) => {
                let s = blk.stats();
                format!(
                    "{} reads ({} KiB), {} writes ({} KiB), {} flushes, {} errors",
                    s.reads,
                    s.bytes_read / 1024,
                    s.writes,
                    s.bytes_written / 1024,
                    s.flushes,
                    s.errors
                )
            }
            Err(e) => format!("{e}"),
        }
    }
}

/// What the channel held next.
enum Next<'a> {
    /// The reply to request `id`: the sectors of a read (empty for a
    /// write or flush), or `Err` when the driver failed it.
    Reply(u32, Result<&'a [u8], ()>),
    /// Something that is no reply (logged).
    Skip,
    /// Nothing now.
    Empty,
    /// The driver is gone (logged once).
    Gone,
}

/// Takes the next message from the driver.
fn next<'a>(link: &Link, buf: &'a mut MessageBuffer, errors: &mut Repeats) -> Next<'a> {
    match link.channel.try_recv(buf) {
        Ok(Message::Data(reply)) => match Header::decode(reply) {
            Ok((header, data)) => Next::Reply(header.id, Ok(data)),
            Err(bad) => {
                log::warn!("root disk: a reply without a header ({})", bad.text);
                Next::Skip
            }
        },
        Ok(Message::Error { call_id, text, .. }) => {
            if let Some(n) = errors.note() {
                log::warn!(
                    "root disk: request failed: {text} (failure {n}; only the 2^k-th is logged)"
                );
            }
            Next::Reply(call_id, Err(()))
        }
        Ok(other) => {
            log::warn!(
                "root disk: unexpected {:?} from the disk driver",
                other.kind()
            );
            Next::Skip
        }
        Err(Error::WouldBlock) => Next::Empty,
        Err(Error::MalformedMessage) => {
            log::warn!("root disk: an undecodable message from the disk driver");
            Next::Skip
        }
        Err(e) => {
            if !link.lost.load(Ordering::Acquire) {
                log::error!(
                    "root disk: the disk driver is gone ({e}); the guest's disk I/O fails from now on"
                );
            }
            Next::Gone
        }
    }
}

impl Guest {
    /// Hands the driver's replies to the device and lets it return the
    /// finished requests (and send more).
    pub(super) fn exchange_disk(&mut self) -> Result<(), SlotError> {
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        if !disk.waiting() {
            return Ok(());
        }
        let mut core = self.smp.core.lock();
        let core = &mut *core;
        let device = core.vm.virtio_device_mut(disk.slot)?;
        let link = &disk.link;
        let mut any = false;
        loop {
            match next(link, &mut disk.buf, &mut disk.errors) {
                Next::Reply(id, result) => {
                    if device.complete(&mut core.ram, id, result) != Answered::Part {
                        let _ = link
                            .out
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                Some(n.saturating_sub(1))
                            });
                        any = true;
                    }
                }
                Next::Skip => {}
                Next::Empty => break,
                Next::Gone => {
                    link.lost.store(true, Ordering::Release);
                    break;
                }
            }
        }
        if link.lost.load(Ordering::Acquire) {
            // Every request out fails; new ones fail at once.
            link.out.store(0, Ordering::Release);
            device.backend_lost();
            if disk.watched {
                let _ = self.poll.remove(link.channel.id());
                disk.watched = false;
            }
            any = true;
        }
        if any {
            core.vm.poll_virtio(disk.slot, &mut core.ram, now_ns())?;
        }
        Ok(())
    }
}
