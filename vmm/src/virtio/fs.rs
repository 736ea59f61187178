//! virtio-fs (device id 26): FUSE requests from the guest's `virtiofs`
//! file system to a host-side [`FuseHandler`].
//!
//! Queue 0 is the high-priority queue (Linux sends FORGET and INTERRUPT
//! there), queue 1 the one request queue. Each chain holds a FUSE request in
//! its device-readable descriptors and room for the reply in its
//! device-writable ones. The model gathers the request, hands the bytes to
//! the handler and scatters the reply back; it knows only the FUSE headers
//! (to answer with an error itself), never what the requests mean, so the
//! VMM does not depend on the FUSE server.
//!
//! Everything in a chain is the guest's and untrusted. A request larger
//! than [`MAX_REQUEST`] or shorter than a FUSE header, and a reply larger
//! than the chain's writable room, get an error reply (or none, when the
//! chain has no room for even a header); nothing the guest writes panics.
//! Requests run synchronously, one at a time, in the order popped.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::on_queue;
use super::DeviceError;
use super::VirtioDevice;
use super::DEVICE_ID_FS;
use super::VIRTIO_F_INDIRECT_DESC;
use crate::memory::GuestMemory;
use crate::virtio::queue::DescriptorChain;
use crate::virtio::queue::Virtqueue;

pub const HIPRIO_QUEUE: u16 = 0;
pub const REQUEST_QUEUE: u16 = 1;
/// Length of the tag in the config space.
pub const TAG_LEN: usize = 36;
/// FUSE's in_header and out_header sizes.
pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
/// The largest request accepted: a 1 MiB write with its headers.
pub const MAX_REQUEST: usize = (1 << 20) + 4096;
const QUEUE_SIZE: u16 = 256;

/// errno values the device answers with on its own.
const EIO: i32 = 5;
const E2BIG: i32 = 7;
const EINVAL: i32 = 22;

/// The host side of the file system: one FUSE request in, its reply out.
pub trait FuseHandler {
    /// Handles one whole FUSE request (in_header and body). Returns the
    /// whole reply (out_header and body), or an empty vector for requests
    /// that have none (FORGET, BATCH_FORGET). `reply_room` is the most the
    /// chain can take: a longer reply is replaced by an EIO error.
    fn handle(&mut self, request: &[u8], reply_room: usize) -> Vec<u8>;
}

/// A virtio-fs device with one request queue.
pub struct FsDevice {
    tag: [u8; TAG_LEN],
    handler: Box<dyn FuseHandler + Send>,
    /// Chains answered with an error by the device itself (for the log).
    refused: u64,
}

impl FsDevice {
    /// A device the guest mounts as `tag` (at most [`TAG_LEN`] bytes; a
    /// longer tag is an error).
    pub fn new(tag: &str, handler: Box<dyn FuseHandler + Send>) -> Result<FsDevice, DeviceError> {
        if tag.is_empty() || tag.len() > TAG_LEN {
            return Err(DeviceError::Protocol(
                "a virtio-fs tag is 1 to 36 bytes long",
            ));
        }
        let mut raw = [0u8; TAG_LEN];
        raw[..tag.len()].copy_from_slice(tag.as_bytes());
        Ok(FsDevice {
            tag: raw,
            handler,
            refused: 0,
        })
    }

    /// Chains the device answered with an error (or dropped) without
    /// reaching the handler.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    fn serve_queue(
        &mut self,
        index: u16,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while let Some(chain) = on_queue(index, q.pop(mem))? {
            let written = self.serve_chain(index, &chain, mem)?;
            on_queue(index, q.add_used(mem, chain.head, written as u32))?;
        }
        Ok(())
    }

    /// Answers one chain; returns how many reply bytes were written.
    fn serve_chain(
        &mut self,
        index: u16,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
    ) -> Result<usize, DeviceError> {
        let room = usize::try_from(chain.writable_len()).unwrap_or(usize::MAX);
        let readable = chain.readable_len();
        if readable > MAX_REQUEST as u64 {
            let header = read_prefix(chain, mem, IN_HEADER_LEN)?;
            return self.refuse(chain, mem, &header, E2BIG, room);
        }
        let mut request = Vec::new();
        on_queue(index, chain.read_into(mem, &mut request, MAX_REQUEST))?;
        if request.len() < IN_HEADER_LEN {
            return self.refuse(chain, mem, &request, EINVAL, room);
        }
        let reply = self.handler.handle(&request, room);
        if reply.is_empty() || room == 0 {
            // No reply (FORGET), or the guest left no room for one.
            return Ok(0);
        }
        if reply.len() > room {
            log::warn!(
                "virtio-fs: a {}-byte reply does not fit the guest's {room} bytes",
                reply.len()
            );
            return self.refuse(chain, mem, &request, EIO, room);
        }
        Ok(chain.write_from(mem, &reply)?)
    }

    /// Answers with an error of the device's own: the request's `unique`
    /// (when its header could be read) and `-errno`.
    fn refuse(
        &mut self,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
        request: &[u8],
        errno: i32,
        room: usize,
    ) -> Result<usize, DeviceError> {
        self.refused += 1;
        if room < OUT_HEADER_LEN {
            return Ok(0);
        }
        let unique = request
            .get(8..16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        Ok(chain.write_from(mem, &error_reply(unique, errno))?)
    }
}

/// A FUSE out_header carrying `-errno` and nothing else.
pub fn error_reply(unique: u64, errno: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(OUT_HEADER_LEN);
    out.extend_from_slice(&(OUT_HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(-errno).to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    out
}

/// The first `n` device-readable bytes of a chain (fewer if it has fewer).
fn read_prefix(
    chain: &DescriptorChain,
    mem: &dyn GuestMemory,
    n: usize,
) -> Result<Vec<u8>, DeviceError> {
    let mut out = Vec::with_capacity(n);
    for d in chain.descriptors.iter().filter(|d| !d.writable) {
        let take = (d.len as usize).min(n - out.len());
        let start = out.len();
        out.resize(start + take, 0);
        mem.read(d.addr, &mut out[start..])?;
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

impl VirtioDevice for FsDevice {
    fn device_id(&self) -> u32 {
        DEVICE_ID_FS
    }

    fn features(&self) -> u64 {
        // Indirect tables let a 1 MiB request fit a 256-entry ring.
        VIRTIO_F_INDIRECT_DESC
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _index: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        // tag[36], num_request_queues (u32).
        TAG_LEN + 4
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut config = [0u8; TAG_LEN + 4];
        config[..TAG_LEN].copy_from_slice(&self.tag);
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes());
        data.copy_from_slice(&config[offset..offset + data.len()]);
    }

    fn interrupt_may_wait(&self, index: u16) -> bool {
        // The high-priority queue carries FORGET: no reply, the driver
        // only frees the buffer (Linux's virtio-fs sends no INTERRUPT).
        index == HIPRIO_QUEUE
    }

    fn reset(&mut self) {
        // The FUSE session is the handler's: a new INIT starts it over.
    }

    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        _notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        let [hiprio, requests] = queues else {
            return Err(DeviceError::Protocol("virtio-fs needs two queues"));
        };
        if hiprio.ready {
            self.serve_queue(HIPRIO_QUEUE, hiprio, mem)?;
        }
        if requests.ready {
            self.serve_queue(REQUEST_QUEUE, requests, mem)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::memory::VecMemory;
    use crate::virtio::mmio::reg;
    use crate::virtio::mmio::tests::bring_up;
    use crate::virtio::mmio::tests::r32;
    use crate::virtio::mmio::tests::w32;
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::queue::tests::AVAIL;
    use crate::virtio::queue::tests::DESC;
    use crate::virtio::queue::tests::USED;
    use crate::virtio::queue::VIRTQ_DESC_F_NEXT;
    use crate::virtio::queue::VIRTQ_DESC_F_WRITE;

    /// Replies with the request's unique and a body of `reply_len` bytes of
    /// 0xab; records every request; no reply for opcode 2 (FORGET).
    struct Recorder {
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        reply_len: usize,
    }

    impl FuseHandler for Recorder {
        fn handle(&mut self, request: &[u8], _room: usize) -> Vec<u8> {
            self.seen.lock().unwrap().push(request.to_vec());
            if request[4] == 2 {
                return Vec::new();
            }
            let mut out = error_reply(u64::from_le_bytes(request[8..16].try_into().unwrap()), 0);
            out.resize(OUT_HEADER_LEN + self.reply_len, 0xab);
            let len = out.len() as u32;
            out[..4].copy_from_slice(&len.to_le_bytes());
            out
        }
    }

    const RQ: u64 = 0x4000;

    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

    fn setup(reply_len: usize) -> (MmioTransport<FsDevice>, VecMemory, Seen) {
        let seen: Seen = Default::default();
        let handler = Recorder {
            seen: seen.clone(),
            reply_len,
        };
        let dev = FsDevice::new("starina", Box::new(handler)).unwrap();
        let mut mem = VecMemory::new(0x140000);
        let mut t = MmioTransport::new(dev);
        bring_up(&mut t, &mut mem);
        assert_eq!(r32(&mut t, reg::DEVICE_ID), 26);
        (t, mem, seen)
    }

    fn set_desc(mem: &mut VecMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + RQ + 16 * i as u64;
        mem.write_u64(at, addr).unwrap();
        mem.write_u32(at + 8, len).unwrap();
        mem.write_u16(at + 12, flags).unwrap();
        mem.write_u16(at + 14, next).unwrap();
    }

    /// Publishes `head` on the request queue and notifies; returns the used
    /// entry (head, len).
    fn submit(t: &mut MmioTransport<FsDevice>, mem: &mut VecMemory, head: u16) -> (u32, u32) {
        let idx = mem.read_u16(AVAIL + RQ + 2).unwrap();
        mem.write_u16(AVAIL + RQ + 4 + 2 * (idx % 8) as u64, head)
            .unwrap();
        mem.write_u16(AVAIL + RQ + 2, idx.wrapping_add(1)).unwrap();
        w32(t, mem, reg::QUEUE_NOTIFY, REQUEST_QUEUE as u32);
        let used = mem.read_u16(USED + RQ + 2).unwrap();
        assert_eq!(used, idx.wrapping_add(1), "the chain was used");
        let at = USED + RQ + 4 + 8 * (idx % 8) as u64;
        (mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap())
    }

    fn request(opcode: u32, unique: u64, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&((IN_HEADER_LEN + body.len()) as u32).to_le_bytes());
        r.extend_from_slice(&opcode.to_le_bytes());
        r.extend_from_slice(&unique.to_le_bytes());
        r.resize(IN_HEADER_LEN, 0);
        r.extend_from_slice(body);
        r
    }

    fn out_header(mem: &VecMemory, at: u64) -> (u32, i32, u64) {
        (
            mem.read_u32(at).unwrap(),
            mem.read_u32(at + 4).unwrap() as i32,
            mem.read_u64(at + 8).unwrap(),
        )
    }

    #[test]
    fn config_space() {
        let (mut t, _mem, _) = setup(0);
        let mut tag = [0u8; 8];
        t.read(reg::CONFIG, &mut tag).unwrap();
        assert_eq!(&tag, b"starina\0");
        assert_eq!(r32(&mut t, reg::CONFIG + 36), 1);
        assert!(FsDevice::new(
            &"x".repeat(37),
            Box::new(Recorder {
                seen: Default::default(),
                reply_len: 0
            })
        )
        .is_err());
    }

    #[test]
    fn request_gathered_and_reply_scattered() {
        let (mut t, mut mem, seen) = setup(20);
        let req = request(3, 77, b"body");
        // The request split over two descriptors, the reply over two.
        mem.write(0x20000, &req[..10]).unwrap();
        mem.write(0x21000, &req[10..]).unwrap();
        set_desc(&mut mem, 0, 0x20000, 10, VIRTQ_DESC_F_NEXT, 1);
        set_desc(
            &mut mem,
            1,
            0x21000,
            req.len() as u32 - 10,
            VIRTQ_DESC_F_NEXT,
            2,
        );
        set_desc(
            &mut mem,
            2,
            0x22000,
            8,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            3,
        );
        set_desc(&mut mem, 3, 0x23000, 100, VIRTQ_DESC_F_WRITE, 0);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 36));
        assert_eq!(seen.lock().unwrap().as_slice(), &[req]);
        let mut reply = [0u8; 36];
        mem.read(0x22000, &mut reply[..8]).unwrap();
        mem.read(0x23000, &mut reply[8..]).unwrap();
        assert_eq!(&reply[..4], &36u32.to_le_bytes());
        assert_eq!(&reply[8..16], &77u64.to_le_bytes());
        assert!(reply[16..].iter().all(|&b| b == 0xab));
        assert!(t.irq_level());
    }

    #[test]
    fn reply_too_long_is_eio() {
        let (mut t, mut mem, _) = setup(100);
        let req = request(15, 5, &[0; 40]);
        mem.write(0x20000, &req).unwrap();
        set_desc(&mut mem, 0, 0x20000, req.len() as u32, VIRTQ_DESC_F_NEXT, 1);
        set_desc(&mut mem, 1, 0x22000, 64, VIRTQ_DESC_F_WRITE, 0);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 16));
        assert_eq!(out_header(&mem, 0x22000), (16, -EIO, 5));
        assert_eq!(t.device().refused(), 1);
    }

    #[test]
    fn forget_without_reply() {
        let (mut t, mut mem, seen) = setup(0);
        let req = request(2, 9, &1u64.to_le_bytes());
        mem.write(0x20000, &req).unwrap();
        set_desc(&mut mem, 0, 0x20000, req.len() as u32, 0, 0);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 0));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    /// Publishes a FORGET on the high-priority queue (its rings at
    /// DESC/AVAIL/USED) and notifies; returns the used index after it.
    fn forget_on_hiprio(t: &mut MmioTransport<FsDevice>, mem: &mut VecMemory) -> u16 {
        let req = request(2, 0, &1u64.to_le_bytes());
        mem.write(0x30000, &req).unwrap();
        mem.write_u64(DESC, 0x30000).unwrap();
        mem.write_u32(DESC + 8, req.len() as u32).unwrap();
        mem.write_u16(DESC + 12, 0).unwrap();
        let idx = mem.read_u16(AVAIL + 2).unwrap();
        mem.write_u16(AVAIL + 4 + 2 * (idx % 8) as u64, 0).unwrap();
        mem.write_u16(AVAIL + 2, idx.wrapping_add(1)).unwrap();
        w32(t, mem, reg::QUEUE_NOTIFY, HIPRIO_QUEUE as u32);
        mem.read_u16(USED + 2).unwrap()
    }

    fn ack(t: &mut MmioTransport<FsDevice>, mem: &mut VecMemory) {
        let status = r32(t, reg::INTERRUPT_STATUS);
        w32(t, mem, reg::INTERRUPT_ACK, status);
        assert!(!t.irq_level());
    }

    #[test]
    fn forget_interrupt_waits_for_the_next_one() {
        let (mut t, mut mem, seen) = setup(0);
        // Returned at once, but no interrupt of its own.
        assert_eq!(forget_on_hiprio(&mut t, &mut mem), 1);
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(!t.irq_level());
        // The guest halts: the interrupt comes.
        t.raise_deferred();
        assert!(t.irq_level());
        ack(&mut t, &mut mem);
        t.raise_deferred();
        assert!(!t.irq_level(), "nothing waits any more");
        // A request's interrupt carries a waiting FORGET's along.
        forget_on_hiprio(&mut t, &mut mem);
        assert!(!t.irq_level());
        let req = request(3, 8, b"");
        mem.write(0x20000, &req).unwrap();
        set_desc(&mut mem, 0, 0x20000, req.len() as u32, VIRTQ_DESC_F_NEXT, 1);
        set_desc(&mut mem, 1, 0x22000, 64, VIRTQ_DESC_F_WRITE, 0);
        submit(&mut t, &mut mem, 0);
        assert!(t.irq_level());
        ack(&mut t, &mut mem);
        t.raise_deferred();
        assert!(!t.irq_level());
        // However busy the guest: at most MAX_DEFERRED wait.
        for n in 1..=crate::virtio::mmio::MAX_DEFERRED {
            forget_on_hiprio(&mut t, &mut mem);
            assert_eq!(t.irq_level(), n == crate::virtio::mmio::MAX_DEFERRED);
        }
    }

    #[test]
    fn short_and_huge_requests_are_refused() {
        let (mut t, mut mem, seen) = setup(0);
        // Shorter than an in_header.
        mem.write(0x20000, &request(3, 11, b"")[..20]).unwrap();
        set_desc(&mut mem, 0, 0x20000, 20, VIRTQ_DESC_F_NEXT, 1);
        set_desc(&mut mem, 1, 0x22000, 64, VIRTQ_DESC_F_WRITE, 0);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 16));
        assert_eq!(out_header(&mem, 0x22000), (16, -EINVAL, 11));
        // One descriptor naming 1 MiB + 64 KiB of RAM, twice in a chain.
        mem.write(0x20000, &request(16, 12, b"")).unwrap();
        set_desc(&mut mem, 0, 0x20000, 0x110000, VIRTQ_DESC_F_NEXT, 2);
        set_desc(&mut mem, 2, 0x20000, 0x110000, VIRTQ_DESC_F_NEXT, 1);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 16));
        assert_eq!(out_header(&mem, 0x22000), (16, -E2BIG, 12));
        // No writable part at all: used with 0 bytes, nothing written.
        set_desc(&mut mem, 0, 0x20000, 10, 0, 0);
        assert_eq!(submit(&mut t, &mut mem, 0), (0, 0));
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(t.device().refused(), 3);
        assert_eq!(t.status() & crate::virtio::status::DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn looping_chain_needs_reset_without_panic() {
        let (mut t, mut mem, seen) = setup(0);
        set_desc(&mut mem, 0, 0x20000, 40, VIRTQ_DESC_F_NEXT, 1);
        set_desc(&mut mem, 1, 0x20000, 40, VIRTQ_DESC_F_NEXT, 0);
        mem.write_u16(AVAIL + RQ + 4, 0).unwrap();
        mem.write_u16(AVAIL + RQ + 2, 1).unwrap();
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, REQUEST_QUEUE as u32);
        assert_ne!(t.status() & crate::virtio::status::DEVICE_NEEDS_RESET, 0);
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn random_chains_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let (mut t, mut mem, _) = setup((next() % 300) as usize);
            for i in 0..8u16 {
                let v = next();
                let addr = 0x20000 + (v & 0xffff);
                let len = if v & 0x10000 != 0 {
                    (v >> 20) as u32
                } else {
                    (v >> 20) as u32 & 0xff
                };
                let flags = ((v >> 52) & 3) as u16;
                set_desc(&mut mem, i, addr, len, flags, ((v >> 56) % 9) as u16);
            }
            for _ in 0..4 {
                let idx = mem.read_u16(AVAIL + RQ + 2).unwrap();
                mem.write_u16(AVAIL + RQ + 4 + 2 * (idx % 8) as u64, (next() % 9) as u16)
                    .unwrap();
                mem.write_u16(AVAIL + RQ + 2, idx.wrapping_add(1)).unwrap();
                w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, REQUEST_QUEUE as u32);
            }
        }
    }
}
