//! virtio-net (device id 1): one Ethernet link between the guest and the
//! host, one receive and one transmit queue, no control queue, no offloads.
//!
//! The link is point-to-point (the guest and the linux server's NAT), so it
//! offers a big MTU ([`Net::MTU`]) instead of segmentation offloads: Linux
//! then posts "big packet" receive chains of about 64 KiB and sends TCP
//! segments that large, computing every checksum itself. Every chain starts
//! with the 12-byte `virtio_net_hdr_v1` (VERSION_1 makes it that size,
//! `num_buffers` included); the host side sees bare Ethernet frames.
//!
//! Both directions are bounded. Frames for the guest wait in a backlog of
//! [`RX_BACKLOG_FRAMES`] / [`RX_BACKLOG_BYTES`] until it posts buffers; past
//! that [`Net::push_rx`] refuses them (the NAT's TCP retransmits). Frames
//! from the guest wait for [`Net::take_tx`] up to [`TX_BACKLOG_FRAMES`] /
//! [`TX_BACKLOG_BYTES`]; past that the transmit buffers stay in the ring, so
//! the guest's queue stops: backpressure, not loss. What a guest gets wrong
//! in a frame (a header asking for an offload, a length out of range) costs
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
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;

/// Config `status`: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Header `flags`: the device is to complete the checksum (needs CSUM).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
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

const QUEUE_SIZE: u16 = 256;
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
        }
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
            let in_range = (HEADER_LEN + ETHERNET_HEADER_LEN) as u64
                ..=(HEADER_LEN + MAX_FRAME) as u64;
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
        if flags != 0 || gso_type != VIRTIO_NET_HDR_GSO_NONE {
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
        // No CSUM, GUEST_CSUM, TSO or MRG_RXBUF: the big MTU does their
        // job. Indirect tables let a ~64 KiB chain (18 descriptors for a
        // Linux receive buffer, up to 19 for a transmit) take one ring
        // entry, so a 256-entry ring holds 256 of them, not 14.
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MTU | VIRTIO_F_INDIRECT_DESC
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _index: u16) -> u16 {
        QUEUE_SIZE
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
