//! The smoltcp device on the guest's side of the NAT: frames from the
//! guest's virtio-net wait in `rx` until smoltcp polls them; frames smoltcp
//! sends collect in `tx` until the main thread hands them to the vCPU
//! thread. The link is private to the guest and the NAT, so its MTU is the
//! virtio-net device's (64 KiB): the guest sends whole TCP segments of up
//! to 64 KiB as one frame. Memory corrupts nothing: smoltcp checks no
//! checksum on it, and computes none once the guest's driver took the
//! device's checksum offload.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::Checksum;
use smoltcp::phy::Device;
use smoltcp::phy::DeviceCapabilities;
use smoltcp::phy::Medium;
use smoltcp::time::Instant;

/// Frames smoltcp may queue for the guest before it is told to hold back
/// (the vCPU thread's queue bounds the rest).
pub const TX_QUEUE_MAX: usize = 256;

pub struct Link {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
    /// The guest takes frames without checksums (virtio-net's GUEST_CSUM
    /// and CSUM were negotiated).
    pub checksum_offload: bool,
}

impl Link {
    pub fn new(mtu: usize) -> Link {
        Link {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
            checksum_offload: false,
        }
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.tx.len() >= TX_QUEUE_MAX {
            return None;
        }
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < TX_QUEUE_MAX).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        let checksum = if self.checksum_offload {
            Checksum::None
        } else {
            Checksum::Tx
        };
        // Linux checks every IPv4 header's checksum (20 bytes: cheap) and
        // ICMP's is rare: those are always computed.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps.checksum.tcp = checksum;
        caps.checksum.udp = checksum;
        caps
    }
}
