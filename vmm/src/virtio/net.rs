//! virtio-net (device id 1): one Ethernet link between the guest and the
//! host, one receive and one transmit queue, no control queue; checksum
//! offload both ways, no segmentation offloads.
//!
//! The link is point-to-point (the guest and the linux server's NAT), so it
//! offers a big MTU ([`Net::MTU`]) instead of segmentation offloads: Linux
//! then posts "big packet" receive chains of about 64 KiB and sends TCP
//! segments that large. The link is memory, so checksums guard nothing on
//! it: with CSUM and GUEST_CSUM negotiated the guest leaves its TCP and UDP
//! checksums partial (NEEDS_CSUM) and takes the host's frames without them
//! (every received frame is marked DATA_VALID), and the NAT computes none
//! ([`Net::checksum_offload`]). Every chain starts with the 12-byte
//! `virtio_net_hdr_v1` (VERSION_1 makes it that size, `num_buffers`
//! included); the host side sees bare Ethernet frames.
//!
//! Both directions are bounded. Frames for the guest wait in a backlog of
//! [`RX_BACKLOG_FRAMES`] / [`RX_BACKLOG_BYTES`] until it posts buffers; past
//! that [`Net::push_rx`] refuses them (the NAT's TCP retransmits). Frames
//! from the guest wait for [`Net::take_tx`] up to [`TX_BACKLOG_FRAMES`] /
//! [`TX_BACKLOG_BYTES`]; past that the transmit buffers stay in the ring, so
//! the guest's queue stops: backpressure, not loss. What a guest gets wrong
//! in a frame (a header asking for an offload it did not negotiate, a
//! length out of range) costs
//! that frame and is counted in [`NetStats`]; what it gets wrong in the
//! rings is a [`DeviceError`] from the queue layer, as for every device.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use super::on_queue;
use super::DeviceError;
use super::VirtioDevice;
use super::DEVICE_ID_NET;
use super::VIRTIO_F_INDIRECT_DESC;
use crate::memory::GuestMemory;
use crate::memory::MemError;
use crate::repeats::Repeats;
use crate::virtio::queue::DescriptorChain;
use crate::virtio::queue::Virtqueue;

pub const RECEIVEQ: u16 = 0;
pub const TRANSMITQ: u16 = 1;

/// Feature bits (virtio 1.x, 5.1.3).
/// The guest may leave TCP/UDP checksums to the device (NEEDS_CSUM).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// The device may hand the guest frames whose checksums are not filled in
/// (DATA_VALID: the guest does not check them).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;

/// Config `status`: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Header `flags`: the device is to complete the checksum (needs CSUM).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// Header `flags`: the checksums need no check (needs GUEST_CSUM).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// Header `gso_type`: not a segmentation offload.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
pub const HEADER_LEN: usize = 12;
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The longest frame either way: the MTU plus the Ethernet header.
pub const MAX_FRAME: usize = Net::MTU as usize + ETHERNET_HEADER_LEN;

/// Frames (and their bytes) waiting for the guest's receive buffers.
pub const RX_BACKLOG_FRAMES: usize = 256;
pub const RX_BACKLOG_BYTES: usize = 4 << 20;
/// Frames (and their bytes) the guest sent that `take_tx` has not taken.
pub const TX_BACKLOG_FRAMES: usize = 256;
pub const TX_BACKLOG_BYTES: usize = 4 << 20;

/// Receive buffers the guest may post. Linux posts as many as the ring
/// holds, each ~68 KiB with this MTU (one ring entry each, with indirect
/// tables): 64 of them pin about 4.3 MiB of guest RAM, as much as the
/// host-side backlog holds. (Without VIRTIO_F_INDIRECT_DESC each takes 18
/// entries: the ring would then need 256 for 14 buffers.)
const RECEIVEQ_SIZE: u16 = 64;
const TRANSMITQ_SIZE: u16 = 256;
/// mac[6], status, max_virtqueue_pairs, mtu (u16 each).
const CONFIG_LEN: usize = 12;

/// What crossed the link, and what did not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames for the guest dropped: the backlog was full, the frame was
    /// not an Ethernet frame of at most [`MAX_FRAME`] bytes, or the guest's
    /// buffer was too small for it.
    pub rx_dropped: u64,
    /// Frames from the guest dropped: shorter than the header and an
    /// Ethernet header, longer than the header and [`MAX_FRAME`], or with
    /// a header asking for an offload that was not negotiated.
    pub tx_malformed: u64,
}

/// A virtio-net device with one queue pair.
pub struct Net {
    mac: [u8; 6],
    rx: VecDeque<Vec<u8>>,
    rx_backlog_bytes: usize,
    tx: Vec<Vec<u8>>,
    tx_backlog_bytes: usize,
    stats: NetStats,
    /// Guest mistakes, logged at the 2^k-th time.
    malformed: Repeats,
    too_small: Repeats,
    /// The features the driver accepted (set on DRIVER_OK).
    negotiated: u64,
}

impl Net {
    pub const MTU: u16 = 65520;

    /// A device whose guest interface has the address `mac`.
    pub fn new(mac: [u8; 6]) -> Net {
        Net {
            mac,
            rx: VecDeque::new(),
            rx_backlog_bytes: 0,
            tx: Vec::new(),
            tx_backlog_bytes: 0,
            stats: NetStats::default(),
            malformed: Repeats::new(),
            too_small: Repeats::new(),
            negotiated: 0,
        }
    }

    /// Whether the guest's driver accepted checksum offload both ways: it
    /// may send frames with partial checksums (NEEDS_CSUM), and takes
    /// frames without checksums, which the device marks DATA_VALID. The
    /// link is memory, which corrupts nothing, so the host side then
    /// neither checks nor computes checksums on it.
    pub fn checksum_offload(&self) -> bool {
        let both = VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM;
        self.negotiated & both == both
    }

    /// Queues an Ethernet frame (no virtio header) for the guest. Returns
    /// false, counting it in `rx_dropped`, if the backlog is full
    /// ([`RX_BACKLOG_FRAMES`] or [`RX_BACKLOG_BYTES`]) or the frame is
    /// shorter than an Ethernet header or longer than [`MAX_FRAME`]. Call
    /// the transport's `poll` after, so that it reaches the guest.
    pub fn push_rx(&mut self, frame: Vec<u8>) -> bool {
        let fits = (ETHERNET_HEADER_LEN..=MAX_FRAME).contains(&frame.len())
            && self.rx.len() < RX_BACKLOG_FRAMES
            && self.rx_backlog_bytes + frame.len() <= RX_BACKLOG_BYTES;
        if !fits {
            self.stats.rx_dropped += 1;
            return false;
        }
        self.rx_backlog_bytes += frame.len();
        self.rx.push_back(frame);
        true
    }

    /// Frames waiting for the guest's receive buffers.
    pub fn rx_backlog(&self) -> usize {
        self.rx.len()
    }

    /// Frames the guest sent that [`Net::take_tx`] has not taken.
    pub fn tx_backlog(&self) -> usize {
        self.tx.len()
    }

    /// Takes the frames the guest sent since the last call (Ethernet, the
    /// virtio header stripped), oldest first. Call the transport's `poll`
    /// after: transmit buffers held back by a full backlog move on then.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        self.tx_backlog_bytes = 0;
        core::mem::take(&mut self.tx)
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn fill_receiveq(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while let Some(frame) = self.rx.pop_front() {
            let Some(chain) = on_queue(RECEIVEQ, q.pop(mem))? else {
                // No buffer posted: the frame waits for the next one.
                self.rx.push_front(frame);
                break;
            };
            self.rx_backlog_bytes -= frame.len();
            let written = self.receive_into(&chain, mem, &frame)?;
            on_queue(RECEIVEQ, q.add_used(mem, chain.head, written as u32))?;
        }
        Ok(())
    }

    /// Writes the header and `frame` into a receive chain; returns the
    /// bytes written: 0 if the chain is too small (the frame is dropped and
    /// the guest's driver recycles a buffer it sees as too short).
    fn receive_into(
        &mut self,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
        frame: &[u8],
    ) -> Result<usize, MemError> {
        let len = HEADER_LEN + frame.len();
        if chain.writable_len() < len as u64 {
            self.stats.rx_dropped += 1;
            if let Some(n) = self.too_small.note() {
                log::warn!(
                    "virtio-net: a {}-byte frame does not fit a {}-byte receive buffer; \
                     dropped (time {n}; only the 2^k-th is logged)",
                    frame.len(),
                    chain.writable_len()
                );
            }
            return Ok(0);
        }
        let mut header = [0u8; HEADER_LEN];
        if self.negotiated & VIRTIO_NET_F_GUEST_CSUM != 0 {
            header[0] = VIRTIO_NET_HDR_F_DATA_VALID;
        }
        // num_buffers: the whole frame is in this one chain.
        header[10..12].copy_from_slice(&1u16.to_le_bytes());
        write_writable(chain, mem, 0, &header)?;
        write_writable(chain, mem, HEADER_LEN, frame)?;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        Ok(len)
    }

    fn drain_transmitq(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while let Some(chain) = on_queue(TRANSMITQ, q.pop(mem))? {
            let len = chain.readable_len();
            let in_range =
                (HEADER_LEN + ETHERNET_HEADER_LEN) as u64..=(HEADER_LEN + MAX_FRAME) as u64;
            if in_range.contains(&len) {
                let frame_len = len as usize - HEADER_LEN;
                if !self.tx_has_room(frame_len) {
                    // Left in the ring until take_tx makes room.
                    q.undo_pop();
                    break;
                }
                self.transmit(&chain, mem, frame_len)?;
            } else {
                self.count_malformed(len, "a length out of range");
            }
            on_queue(TRANSMITQ, q.add_used(mem, chain.head, 0))?;
        }
        Ok(())
    }

    fn tx_has_room(&self, frame_len: usize) -> bool {
        self.tx.len() < TX_BACKLOG_FRAMES && self.tx_backlog_bytes + frame_len <= TX_BACKLOG_BYTES
    }

    /// Takes the frame of a transmit chain whose length was checked, unless
    /// its header asks for an offload.
    fn transmit(
        &mut self,
        chain: &DescriptorChain,
        mem: &dyn GuestMemory,
        frame_len: usize,
    ) -> Result<(), MemError> {
        let mut header = [0u8; HEADER_LEN];
        read_readable(chain, mem, 0, &mut header)?;
        let (flags, gso_type) = (header[0], header[1]);
        // A partial checksum is fine once CSUM was negotiated: the other
        // end of the link checks none (see `checksum_offload`).
        let allowed = if self.negotiated & VIRTIO_NET_F_CSUM != 0 {
            VIRTIO_NET_HDR_F_NEEDS_CSUM
        } else {
            0
        };
        if flags & !allowed != 0 || gso_type != VIRTIO_NET_HDR_GSO_NONE {
            let why = if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                "NEEDS_CSUM, not negotiated"
            } else if gso_type != VIRTIO_NET_HDR_GSO_NONE {
                "a gso_type, not negotiated"
            } else {
                "unknown header flags"
            };
            self.count_malformed((HEADER_LEN + frame_len) as u64, why);
            return Ok(());
        }
        let mut frame = vec![0u8; frame_len];
        read_readable(chain, mem, HEADER_LEN, &mut frame)?;
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += frame_len as u64;
        self.tx_backlog_bytes += frame_len;
        self.tx.push(frame);
        Ok(())
    }

    fn count_malformed(&mut self, len: u64, why: &str) {
        self.stats.tx_malformed += 1;
        if let Some(n) = self.malformed.note() {
            log::warn!(
                "virtio-net: dropped a {len}-byte transmit chain with {why} \
                 (time {n}; only the 2^k-th is logged)"
            );
        }
    }
}

/// Reads the chain's device-readable bytes from `skip` on into `out`; the
/// caller has checked that the chain holds that many.
fn read_readable(
    chain: &DescriptorChain,
    mem: &dyn GuestMemory,
    mut skip: usize,
    out: &mut [u8],
) -> Result<(), MemError> {
    let mut done = 0;
    for d in chain.descriptors.iter().filter(|d| !d.writable) {
        if done == out.len() {
            break;
        }
        let len = d.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(out.len() - done);
        mem.read(d.addr + skip as u64, &mut out[done..done + n])?;
        done += n;
        skip = 0;
    }
    Ok(())
}

/// Writes `data` into the chain's device-writable bytes from `skip` on;
/// the caller has checked that the chain has room.
fn write_writable(
    chain: &DescriptorChain,
    mem: &mut dyn GuestMemory,
    mut skip: usize,
    data: &[u8],
) -> Result<(), MemError> {
    let mut done = 0;
    for d in chain.descriptors.iter().filter(|d| d.writable) {
        if done == data.len() {
            break;
        }
        let len = d.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(data.len() - done);
        mem.write(d.addr + skip as u64, &data[done..done + n])?;
        done += n;
        skip = 0;
    }
    Ok(())
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        DEVICE_ID_NET
    }

    fn features(&self) -> u64 {
        // Checksum offload both ways (the link is memory); no TSO or
        // MRG_RXBUF: the big MTU does their job. Indirect tables let a ~64 KiB chain (18 descriptors for a
        // Linux receive buffer, up to 19 for a transmit) take one ring
        // entry: a ring of n entries holds n of them, not n / 18.
        VIRTIO_NET_F_CSUM
            | VIRTIO_NET_F_GUEST_CSUM
            | VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_STATUS
            | VIRTIO_NET_F_MTU
            | VIRTIO_F_INDIRECT_DESC
    }

    fn activate(&mut self, features: u64) {
        self.negotiated = features;
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, index: u16) -> u16 {
        if index == RECEIVEQ {
            RECEIVEQ_SIZE
        } else {
            TRANSMITQ_SIZE
        }
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[0..6].copy_from_slice(&self.mac);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        // max_virtqueue_pairs: one (meaningful only with F_MQ).
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&Self::MTU.to_le_bytes());
        data.copy_from_slice(&config[offset..offset + data.len()]);
    }

    fn reset(&mut self) {
        // Frames in flight belong to the driver that is gone; the counters
        // keep counting for the VMM's log.
        self.negotiated = 0;
        self.rx.clear();
        self.rx_backlog_bytes = 0;
        self.tx.clear();
        self.tx_backlog_bytes = 0;
    }

    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        _notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        let [receiveq, transmitq] = queues else {
            return Err(DeviceError::Protocol("virtio-net needs two queues"));
        };
        if transmitq.ready {
            self.drain_transmitq(transmitq, mem)?;
        }
        if receiveq.ready {
            self.fill_receiveq(receiveq, mem)?;
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
    use crate::virtio::mmio::tests::bring_up_refusing;
    use crate::virtio::mmio::tests::r32;
    use crate::virtio::mmio::tests::w32;
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::queue::tests::AVAIL;
    use crate::virtio::queue::tests::DESC;
    use crate::virtio::queue::tests::USED;
    use crate::virtio::queue::QueueError;
    use crate::virtio::queue::VIRTQ_DESC_F_INDIRECT;
    use crate::virtio::queue::VIRTQ_DESC_F_NEXT;
    use crate::virtio::queue::VIRTQ_DESC_F_WRITE;
    use crate::virtio::status;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// Where test buffers go (the rings are below, as `bring_up` puts them).
    const BUF: u64 = 0x10000;

    /// The driver's side of one size-8 queue set up by `bring_up`.
    struct Ring {
        base: u64,
        avail_idx: u16,
        used_seen: u16,
    }

    impl Ring {
        fn of(queue: u16) -> Ring {
            Ring {
                base: 0x4000 * queue as u64,
                avail_idx: 0,
                used_seen: 0,
            }
        }

        fn desc(&self, mem: &mut VecMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let at = DESC + self.base + 16 * i as u64;
            mem.write_u64(at, addr).unwrap();
            mem.write_u32(at + 8, len).unwrap();
            mem.write_u16(at + 12, flags).unwrap();
            mem.write_u16(at + 14, next).unwrap();
        }

        fn publish(&mut self, mem: &mut VecMemory, head: u16) {
            let slot = AVAIL + self.base + 4 + 2 * (self.avail_idx % 8) as u64;
            mem.write_u16(slot, head).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write_u16(AVAIL + self.base + 2, self.avail_idx)
                .unwrap();
        }

        /// Next used entry: (head, len).
        fn used(&mut self, mem: &VecMemory) -> Option<(u32, u32)> {
            if mem.read_u16(USED + self.base + 2).unwrap() == self.used_seen {
                return None;
            }
            let at = USED + self.base + 4 + 8 * (self.used_seen % 8) as u64;
            self.used_seen = self.used_seen.wrapping_add(1);
            Some((mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap()))
        }
    }

    /// A device whose driver accepted every feature (checksum offload).
    fn setup() -> (MmioTransport<Net>, VecMemory) {
        let (t, mem) = setup_refusing(0);
        assert!(t.device().checksum_offload());
        (t, mem)
    }

    /// A device whose driver refused the features in `refused`.
    fn setup_refusing(refused: u64) -> (MmioTransport<Net>, VecMemory) {
        let mut mem = VecMemory::new(0x100000);
        let mut t = MmioTransport::new(Net::new(MAC));
        bring_up_refusing(&mut t, &mut mem, refused as u32);
        assert_eq!(r32(&mut t, reg::DEVICE_ID), DEVICE_ID_NET);
        (t, mem)
    }

    /// A driver without checksum offload (an older or stricter guest).
    fn setup_without_offload() -> (MmioTransport<Net>, VecMemory) {
        let (t, mem) = setup_refusing(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM);
        assert!(!t.device().checksum_offload());
        (t, mem)
    }

    /// An Ethernet frame of `len` bytes whose bytes say where they are.
    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn header(flags: u8, gso_type: u8) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        (h[0], h[1]) = (flags, gso_type);
        h
    }

    /// Puts header + frame at `addr` as one transmit descriptor `i`.
    fn tx_buffer(
        mem: &mut VecMemory,
        ring: &Ring,
        i: u16,
        addr: u64,
        hdr: [u8; HEADER_LEN],
        f: &[u8],
    ) {
        mem.write(addr, &hdr).unwrap();
        mem.write(addr + HEADER_LEN as u64, f).unwrap();
        ring.desc(mem, i, addr, (HEADER_LEN + f.len()) as u32, 0, 0);
    }

    fn notify(t: &mut MmioTransport<Net>, mem: &mut VecMemory, queue: u16) {
        w32(t, mem, reg::QUEUE_NOTIFY, queue as u32);
    }

    #[test]
    fn features_and_config_space() {
        let (mut t, mut mem) = setup();
        let lo = r32(&mut t, reg::DEVICE_FEATURES) as u64;
        let want = VIRTIO_NET_F_CSUM
            | VIRTIO_NET_F_GUEST_CSUM
            | VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_STATUS
            | VIRTIO_NET_F_MTU
            | VIRTIO_F_INDIRECT_DESC;
        assert_eq!(lo, want, "checksum offload only, no control queue");
        for (queue, max) in [(RECEIVEQ, 64), (TRANSMITQ, 256)] {
            w32(&mut t, &mut mem, reg::QUEUE_SEL, queue as u32);
            assert_eq!(r32(&mut t, reg::QUEUE_NUM_MAX), max);
        }
        let mut config = [0u8; CONFIG_LEN];
        for (i, b) in config.iter_mut().enumerate() {
            let mut one = [0u8; 1];
            t.read(reg::CONFIG + i as u64, &mut one).unwrap();
            *b = one[0];
        }
        assert_eq!(
            config,
            [0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0, 1, 0, 0xf0, 0xff]
        );
        let mut mtu = [0u8; 2];
        t.read(reg::CONFIG + 10, &mut mtu).unwrap();
        assert_eq!(u16::from_le_bytes(mtu), 65520);
        // Nothing past the config space.
        assert!(t.read(reg::CONFIG + 11, &mut mtu).is_err());
    }

    #[test]
    fn receive_into_header_and_data_buffers() {
        receive_into_header_and_data_buffers_with(setup(), VIRTIO_NET_HDR_F_DATA_VALID);
        receive_into_header_and_data_buffers_with(setup_without_offload(), 0);
    }

    /// The header's flags say DATA_VALID only to a driver that took
    /// GUEST_CSUM.
    fn receive_into_header_and_data_buffers_with(
        (mut t, mut mem): (MmioTransport<Net>, VecMemory),
        flags: u8,
    ) {
        let mut rx = Ring::of(RECEIVEQ);
        // A frame before any buffer waits in the backlog.
        let f = frame(100, 7);
        assert!(t.device_mut().push_rx(f.clone()));
        t.poll(&mut mem);
        assert_eq!(t.device().rx_backlog(), 1);
        assert!(!t.irq_level());
        // Linux's layout: the header in its own descriptor, then the data.
        mem.write(BUF, &[0xee; HEADER_LEN]).unwrap();
        rx.desc(
            &mut mem,
            0,
            BUF,
            12,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        rx.desc(&mut mem, 1, BUF + 0x1000, 4096, VIRTQ_DESC_F_WRITE, 0);
        rx.publish(&mut mem, 0);
        notify(&mut t, &mut mem, RECEIVEQ);
        assert_eq!(rx.used(&mem), Some((0, 112)));
        assert!(t.irq_level());
        assert_eq!(t.device().rx_backlog(), 0);
        let mut hdr = [0u8; HEADER_LEN];
        mem.read(BUF, &mut hdr).unwrap();
        assert_eq!(
            hdr,
            [flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            "num_buffers 1"
        );
        let mut got = vec![0u8; 100];
        mem.read(BUF + 0x1000, &mut got).unwrap();
        assert_eq!(got, f);
        let s = t.device().stats();
        assert_eq!((s.rx_frames, s.rx_bytes, s.rx_dropped), (1, 100, 0));
    }

    #[test]
    fn full_mtu_frame_fits_a_linux_big_packet_chain() {
        // add_recvbuf_big with mtu 65520 and 4 KiB pages: the header, the
        // rest of its page after a 32-byte padded header, 16 more pages,
        // as an indirect table (VIRTIO_F_INDIRECT_DESC).
        let (mut t, mut mem) = setup();
        let mut rx = Ring::of(RECEIVEQ);
        let table = 0x9000u64;
        let mut bufs = vec![(BUF, 12u32), (BUF + 32, 4064)];
        bufs.extend((0..16).map(|i| (BUF + 0x1000 * (i + 1), 4096)));
        for (i, &(addr, len)) in bufs.iter().enumerate() {
            let at = table + 16 * i as u64;
            let last = i == bufs.len() - 1;
            let flags = VIRTQ_DESC_F_WRITE | if last { 0 } else { VIRTQ_DESC_F_NEXT };
            mem.write_u64(at, addr).unwrap();
            mem.write_u32(at + 8, len).unwrap();
            mem.write_u16(at + 12, flags).unwrap();
            mem.write_u16(at + 14, i as u16 + 1).unwrap();
        }
        let table_len = 16 * bufs.len() as u32;
        rx.desc(&mut mem, 0, table, table_len, VIRTQ_DESC_F_INDIRECT, 0);
        rx.publish(&mut mem, 0);
        let f = frame(MAX_FRAME, 3);
        assert!(!t.device_mut().push_rx(frame(MAX_FRAME + 1, 0)));
        assert!(t.device_mut().push_rx(f.clone()));
        t.poll(&mut mem);
        assert_eq!(rx.used(&mem), Some((0, (HEADER_LEN + MAX_FRAME) as u32)));
        let mut got = Vec::new();
        for &(addr, len) in &bufs[1..] {
            let start = got.len();
            got.resize(start + len as usize, 0);
            mem.read(addr, &mut got[start..]).unwrap();
        }
        assert_eq!(&got[..MAX_FRAME], &f[..]);
        let s = t.device().stats();
        assert_eq!((s.rx_frames, s.rx_dropped), (1, 1));
    }

    #[test]
    fn frame_too_big_for_the_buffer_is_dropped_and_the_link_goes_on() {
        let (mut t, mut mem) = setup();
        let mut rx = Ring::of(RECEIVEQ);
        rx.desc(&mut mem, 0, BUF, 12 + 100, VIRTQ_DESC_F_WRITE, 0);
        rx.desc(&mut mem, 1, BUF + 0x1000, 12 + 100, VIRTQ_DESC_F_WRITE, 0);
        rx.publish(&mut mem, 0);
        rx.publish(&mut mem, 1);
        assert!(t.device_mut().push_rx(frame(101, 1)));
        assert!(t.device_mut().push_rx(frame(100, 2)));
        t.poll(&mut mem);
        // The first buffer comes back empty (Linux recycles it), the second
        // carries the frame that fits.
        assert_eq!(rx.used(&mem), Some((0, 0)));
        assert_eq!(rx.used(&mem), Some((1, 112)));
        assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
        let s = t.device().stats();
        assert_eq!((s.rx_frames, s.rx_dropped), (1, 1));
    }

    #[test]
    fn receive_backlog_is_bounded() {
        let mut n = Net::new(MAC);
        for _ in 0..RX_BACKLOG_FRAMES {
            assert!(n.push_rx(frame(ETHERNET_HEADER_LEN, 0)));
        }
        assert!(!n.push_rx(frame(ETHERNET_HEADER_LEN, 0)));
        assert_eq!(n.rx_backlog(), RX_BACKLOG_FRAMES);
        let mut n = Net::new(MAC);
        let fit = RX_BACKLOG_BYTES / MAX_FRAME;
        for _ in 0..fit {
            assert!(n.push_rx(frame(MAX_FRAME, 0)));
        }
        assert!(!n.push_rx(frame(MAX_FRAME, 0)));
        // Not Ethernet frames.
        assert!(!n.push_rx(Vec::new()));
        assert!(!n.push_rx(frame(ETHERNET_HEADER_LEN - 1, 0)));
        assert_eq!(n.rx_backlog(), fit);
        assert_eq!(n.stats().rx_dropped, 3);
    }

    #[test]
    fn transmit_strips_the_header() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        let (f1, f2) = (frame(60, 1), frame(1514, 2));
        // One descriptor: header and frame together (any_header_sg).
        tx_buffer(&mut mem, &tx, 0, BUF, header(0, 0), &f1);
        // Header and the frame's start, then the rest in a second buffer.
        mem.write(BUF + 0x1000, &header(0, 0)).unwrap();
        mem.write(BUF + 0x1000 + 12, &f2[..20]).unwrap();
        mem.write(BUF + 0x2000, &f2[20..]).unwrap();
        tx.desc(&mut mem, 1, BUF + 0x1000, 32, VIRTQ_DESC_F_NEXT, 2);
        tx.desc(&mut mem, 2, BUF + 0x2000, 1494, 0, 0);
        tx.publish(&mut mem, 0);
        tx.publish(&mut mem, 1);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert_eq!(tx.used(&mem), Some((0, 0)));
        assert_eq!(tx.used(&mem), Some((1, 0)));
        assert!(t.irq_level());
        assert_eq!(t.device_mut().take_tx(), vec![f1, f2]);
        assert!(t.device_mut().take_tx().is_empty());
        let s = t.device().stats();
        assert_eq!((s.tx_frames, s.tx_bytes, s.tx_malformed), (2, 1574, 0));
    }

    #[test]
    fn malformed_transmit_is_counted_and_dropped() {
        let (mut t, mut mem) = setup_without_offload();
        let mut tx = Ring::of(TRANSMITQ);
        let cases: [(u8, u8, usize); 6] = [
            (0, 0, ETHERNET_HEADER_LEN - 1),
            (0, 0, MAX_FRAME + 1),
            (VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 60),
            (0, 1, 1514),  // GSO_TCPV4
            (0, 0x80, 60), // GSO_ECN
            (2, 0, 60),    // DATA_VALID: receive-only
        ];
        for (i, &(flags, gso, len)) in cases.iter().enumerate() {
            let addr = BUF + 0x20000 * i as u64;
            tx_buffer(
                &mut mem,
                &tx,
                i as u16,
                addr,
                header(flags, gso),
                &frame(len, 0),
            );
            tx.publish(&mut mem, i as u16);
        }
        // A good frame after them still goes through.
        let good = frame(60, 9);
        tx_buffer(&mut mem, &tx, 7, 0xf0000, header(0, 0), &good);
        tx.publish(&mut mem, 7);
        notify(&mut t, &mut mem, TRANSMITQ);
        for i in 0..cases.len() as u32 {
            assert_eq!(tx.used(&mem), Some((i, 0)));
        }
        assert_eq!(tx.used(&mem), Some((7, 0)));
        assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(t.device_mut().take_tx(), vec![good]);
        let s = t.device().stats();
        assert_eq!((s.tx_frames, s.tx_malformed), (1, cases.len() as u64));
    }

    #[test]
    fn partial_checksums_pass_once_csum_is_negotiated() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        let (partial, gso) = (frame(1514, 3), frame(60, 4));
        tx_buffer(
            &mut mem,
            &tx,
            0,
            BUF,
            header(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0),
            &partial,
        );
        // Segmentation was not offered, checksums or not.
        tx_buffer(
            &mut mem,
            &tx,
            1,
            BUF + 0x1000,
            header(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1),
            &gso,
        );
        tx.publish(&mut mem, 0);
        tx.publish(&mut mem, 1);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert_eq!(t.device_mut().take_tx(), vec![partial]);
        let s = t.device().stats();
        assert_eq!((s.tx_frames, s.tx_malformed), (1, 1));
    }

    /// Sends `rounds` x 8 frames of `len` bytes, all taken by the device.
    fn send_rounds(
        t: &mut MmioTransport<Net>,
        mem: &mut VecMemory,
        tx: &mut Ring,
        len: usize,
        rounds: usize,
    ) {
        tx_buffer(mem, tx, 0, BUF, header(0, 0), &frame(len, 0));
        for i in 1..8 {
            tx.desc(mem, i, BUF, (HEADER_LEN + len) as u32, 0, 0);
        }
        for _ in 0..rounds {
            (0..8).for_each(|i| tx.publish(mem, i));
            notify(t, mem, TRANSMITQ);
            assert_eq!((0..8).filter_map(|_| tx.used(mem)).count(), 8);
        }
    }

    #[test]
    fn transmit_backpressure_past_the_frame_bound() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        send_rounds(&mut t, &mut mem, &mut tx, 60, TX_BACKLOG_FRAMES / 8);
        // One more stays in the ring: not returned, not lost.
        tx.publish(&mut mem, 0);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert_eq!(tx.used(&mem), None);
        assert_eq!(t.device().tx_backlog(), TX_BACKLOG_FRAMES);
        assert_eq!(t.device().stats().tx_frames, TX_BACKLOG_FRAMES as u64);
        assert_eq!(t.device_mut().take_tx().len(), TX_BACKLOG_FRAMES);
        t.poll(&mut mem);
        assert_eq!(tx.used(&mem), Some((0, 0)));
        assert_eq!(t.device_mut().take_tx(), vec![frame(60, 0)]);
        assert_eq!(t.device().stats().tx_malformed, 0);
    }

    #[test]
    fn transmit_backpressure_past_the_byte_bound() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        let fit = TX_BACKLOG_BYTES / MAX_FRAME;
        assert_eq!(fit % 8, 0);
        send_rounds(&mut t, &mut mem, &mut tx, MAX_FRAME, fit / 8);
        tx.publish(&mut mem, 0);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert_eq!(tx.used(&mem), None);
        assert_eq!(t.device_mut().take_tx().len(), fit);
        t.poll(&mut mem);
        assert_eq!(tx.used(&mem), Some((0, 0)));
        assert_eq!(t.device_mut().take_tx().len(), 1);
    }

    #[test]
    fn reset_drops_the_backlogs() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        tx_buffer(&mut mem, &tx, 0, BUF, header(0, 0), &frame(60, 0));
        tx.publish(&mut mem, 0);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert!(t.device_mut().push_rx(frame(60, 1)));
        t.poll(&mut mem);
        assert_eq!(t.device().rx_backlog(), 1);
        w32(&mut t, &mut mem, reg::STATUS, 0);
        assert_eq!(t.device().rx_backlog(), 0);
        assert!(t.device_mut().take_tx().is_empty());
        // The counters go on across a reset.
        assert_eq!(t.device().stats().tx_frames, 1);
        // A new driver starts from clean queues and a clean backlog.
        bring_up(&mut t, &mut mem);
        assert!(t.device_mut().push_rx(frame(60, 2)));
        assert_eq!(t.device().rx_backlog(), 1);
    }

    #[test]
    fn looping_transmit_chain_needs_reset() {
        let (mut t, mut mem) = setup();
        let mut tx = Ring::of(TRANSMITQ);
        tx.desc(&mut mem, 0, BUF, 100, VIRTQ_DESC_F_NEXT, 1);
        tx.desc(&mut mem, 1, BUF, 100, VIRTQ_DESC_F_NEXT, 0);
        tx.publish(&mut mem, 0);
        notify(&mut t, &mut mem, TRANSMITQ);
        assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(
            t.take_error(),
            Some(DeviceError::Queue {
                queue: TRANSMITQ,
                error: QueueError::ChainTooLong
            })
        );
        assert!(t.device_mut().take_tx().is_empty());
    }
}
