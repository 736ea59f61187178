//! The smoltcp device on top of the virtio-net driver's channel: received
//! frames wait in `rx` until smoltcp polls them; frames smoltcp sends
//! collect in `tx` until the main loop hands them to the driver. Frames
//! cross the channel packed, several per message (`starina::frames`).
//! TCP checksums are checked and filled in here (`crate::checksum`), not
//! by smoltcp: a received TCP segment with a wrong one is dropped and
//! counted (`rx_bad_checksum`), as smoltcp would drop it.
//! A received frame's buffer is reused ([`FramePool`]) once smoltcp read
//! it; frames smoltcp sends are written straight into the messages for the
//! driver ([`TxQueue`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::phy::Checksum;
use smoltcp::phy::Device;
use smoltcp::phy::DeviceCapabilities;
use smoltcp::phy::Medium;
use smoltcp::time::Instant;
use starina::frames::for_each_frame;
use starina::frames::Malformed;

use crate::checksum;
use crate::tx_queue::TxQueue;

/// Frames waiting for the driver before smoltcp is told to hold back.
pub const TX_QUEUE_MAX: usize = 512;
/// Received frames waiting for smoltcp before new ones are dropped.
pub const RX_QUEUE_MAX: usize = 512;
/// Frames one `poll` takes in, so listeners are refilled between bursts
/// of new connections.
pub const RX_BUDGET: usize = 16;
/// Frame buffers a pool keeps for reuse at most (each up to a frame long).
const SPARE_MAX: usize = 64;

/// Frame buffers to reuse, at most [`SPARE_MAX`].
#[derive(Default)]
pub struct FramePool {
    spare: Vec<Vec<u8>>,
}

impl FramePool {
    /// An empty buffer (one given back earlier, or a new one).
    pub fn take(&mut self) -> Vec<u8> {
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.clear();
        frame
    }

    /// Keeps `frame`'s memory for a later `take` (or frees it when the
    /// pool is full).
    pub fn give(&mut self, frame: Vec<u8>) {
        if self.spare.len() < SPARE_MAX {
            self.spare.push(frame);
        }
    }
}

pub struct Link {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: TxQueue,
    pub rx_budget: usize,
    pub rx_dropped: u64,
    /// (listening port, SYNs it can still take during this poll).
    pub syn_budget: Vec<(u16, usize)>,
    pub syn_dropped: u64,
    /// TCP segments dropped for a wrong checksum.
    pub rx_bad_checksum: u64,
    /// Buffers for received frames, given back once smoltcp read them.
    rx_pool: FramePool,
}

/// The destination port of a TCP SYN (without ACK) in an Ethernet/IPv4
/// frame, or `None` for anything else (or anything malformed).
pub fn syn_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || ip.len() < ihl + 20 {
        return None;
    }
    let tcp = &ip[ihl..];
    let flags = tcp[13];
    let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
    (syn && !ack).then(|| u16::from_be_bytes([tcp[2], tcp[3]]))
}

impl Link {
    /// SYNs to `port` among the next `frames` received frames.
    pub fn syns_waiting(&self, port: u16, frames: usize) -> usize {
        (self.rx.iter().take(frames))
            .filter(|f| syn_port(f) == Some(port))
            .count()
    }
}

/// The MAC address of the driver's `ethernet:<mac>` announcement
/// (`52:54:00:12:34:56`), or `None` if it is not one.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Link {
    pub fn new() -> Link {
        Link {
            rx: VecDeque::new(),
            tx: TxQueue::default(),
            rx_budget: RX_BUDGET,
            rx_dropped: 0,
            syn_budget: Vec::new(),
            syn_dropped: 0,
            rx_bad_checksum: 0,
            rx_pool: FramePool::default(),
        }
    }

    /// Queues a received frame. The main loop reads the driver's channel
    /// only while `rx` has room, so this drops only past twice that (a
    /// frame delivered as an event while the queue is full is kept).
    /// Queues the frames of a message from the driver.
    pub fn push_rx_batch(&mut self, frames: &[u8]) {
        let result = for_each_frame(frames, |frame| self.push_rx(frame));
        if let Err(Malformed { at }) = result {
            self.rx_dropped += 1;
            log::warn!("malformed frames from the driver (at byte {at}); the rest dropped");
        }
    }

    pub fn push_rx(&mut self, frame: &[u8]) {
        if self.rx.len() >= 2 * RX_QUEUE_MAX {
            self.rx_dropped += 1;
            return;
        }
        if !checksum::tcp_frame_ok(frame) {
            self.rx_bad_checksum += 1;
            return;
        }
        let mut buf = self.rx_pool.take();
        buf.extend_from_slice(frame);
        self.rx.push_back(buf);
    }
}

/// A received frame; its buffer goes back to `pool` once read.
pub struct RxToken<'a> {
    frame: Vec<u8>,
    pool: &'a mut FramePool,
}

/// Room for a frame to send, in `tx`.
pub struct TxToken<'a>(&'a mut TxQueue);

impl smoltcp::phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.frame);
        self.pool.give(self.frame);
        r
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.0.push(len, |frame| {
            let r = f(frame);
            checksum::fill_tcp_frame(frame);
            r
        })
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if self.rx_budget == 0 || self.tx.frames() >= TX_QUEUE_MAX {
            return None;
        }
        let mut frame = self.rx.pop_front()?;
        self.rx_budget -= 1;
        // A SYN to a listener with no free socket: drop it, the peer
        // retransmits (smoltcp would answer it with a reset).
        while let Some(port) = syn_port(&frame) {
            match self.syn_budget.iter_mut().find(|(p, _)| *p == port) {
                Some((_, 0)) => {
                    self.syn_dropped += 1;
                    let next = self.rx.pop_front()?;
                    self.rx_pool.give(core::mem::replace(&mut frame, next));
                }
                Some((_, n)) => {
                    *n -= 1;
                    break;
                }
                None => break,
            }
        }
        let rx = RxToken {
            frame,
            pool: &mut self.rx_pool,
        };
        Some((rx, TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.tx.frames() >= TX_QUEUE_MAX {
            return None;
        }
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.checksum.tcp = Checksum::None;
        caps
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn tcp_frame(flags: u8, port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[34 + 2..34 + 4].copy_from_slice(&port.to_be_bytes());
        f[34 + 13] = flags;
        f
    }

    #[test]
    fn finds_syns_only() {
        assert_eq!(syn_port(&tcp_frame(0x02, 80)), Some(80));
        assert_eq!(syn_port(&tcp_frame(0x12, 80)), None);
        assert_eq!(syn_port(&tcp_frame(0x10, 80)), None);
        assert_eq!(syn_port(&[]), None);
        assert_eq!(syn_port(&tcp_frame(0x02, 80)[..40]), None);
    }

    #[test]
    fn parses_mac_addresses() {
        assert_eq!(
            parse_mac("52:54:00:12:34:ab"),
            Some([0x52, 0x54, 0x00, 0x12, 0x34, 0xab])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:zz"), None);
        assert_eq!(parse_mac(""), None);
    }

    #[test]
    fn takes_packed_frames() {
        let mut link = Link::new();
        let mut batch = starina::frames::FrameBatch::new();
        assert!(batch.push(&tcp_frame(0x10, 80)));
        assert!(batch.push(&tcp_frame(0x02, 81)));
        link.push_rx_batch(batch.bytes());
        assert_eq!(link.rx.len(), 2);
        assert_eq!(link.rx[1], tcp_frame(0x02, 81));
        assert_eq!(link.rx_dropped, 0);
        let mut cut = batch.bytes().to_vec();
        cut.pop();
        link.push_rx_batch(&cut);
        assert_eq!(link.rx.len(), 3, "the whole frame before the cut arrives");
        assert_eq!(link.rx_dropped, 1);
    }

    #[test]
    fn drops_syns_past_the_budget() {
        let mut link = Link::new();
        link.syn_budget.push((80, 1));
        link.push_rx(&tcp_frame(0x02, 80));
        link.push_rx(&tcp_frame(0x02, 80));
        link.push_rx(&tcp_frame(0x10, 80));
        let now = Instant::from_millis(0);
        let mut got = Vec::new();
        while let Some((rx, _tx)) = link.receive(now) {
            got.push(smoltcp::phy::RxToken::consume(rx, |b| b[34 + 13]));
        }
        assert_eq!(got, [0x02, 0x10]);
        assert_eq!(link.syn_dropped, 1);
    }
}
