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
use smoltcp::wire::EthernetFrame;
use smoltcp::wire::EthernetProtocol;
use smoltcp::wire::IpProtocol;
use smoltcp::wire::Ipv4Packet;
use smoltcp::wire::TcpPacket;

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
pub struct TxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    fill_checksums: bool,
}

impl smoltcp::phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.fill_checksums {
            fill_tcp_checksum(&mut frame);
        }
        self.tx.push_back(frame);
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
        Some((RxToken(frame), self.tx_token()))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < TX_QUEUE_MAX).then(|| self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        // Linux checks every IPv4 header's checksum (20 bytes: cheap) and
        // ICMP's is rare: those are always computed. TCP's are the link's
        // (see the module's comment); the NAT's smoltcp sends no UDP.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::Tx;
        caps
    }
}

impl Link {
    fn tx_token(&mut self) -> TxToken<'_> {
        TxToken {
            tx: &mut self.tx,
            fill_checksums: !self.checksum_offload,
        }
    }
}

/// Fills in the TCP checksum of an Ethernet/IPv4 frame smoltcp sent with
/// it zeroed; anything else is left as it is.
fn fill_tcp_checksum(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
        tcp.fill_checksum(&src.into(), &dst.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::TxToken as _;
    use smoltcp::wire::IpAddress;
    use smoltcp::wire::Ipv4Address;

    const GATEWAY: [u8; 4] = [10, 0, 3, 2];
    const GUEST: [u8; 4] = [10, 0, 3, 15];

    /// What smoltcp hands the link: an Ethernet/IPv4/TCP frame with 100
    /// bytes of payload and its TCP checksum zeroed.
    fn write_segment(frame: &mut [u8]) {
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut frame[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&140u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&GATEWAY);
        ip[16..20].copy_from_slice(&GUEST);
        let tcp = &mut ip[20..];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x18;
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
    }

    /// The frame the link queues for the guest when `offload` was
    /// negotiated (after smoltcp read the link's capabilities).
    fn sent(offload: bool) -> Vec<u8> {
        let mut link = Link::new(1500);
        assert!(!link.capabilities().checksum.tcp.tx());
        link.checksum_offload = offload;
        let token = link.transmit(Instant::ZERO).expect("room");
        token.consume(14 + 140, write_segment);
        link.tx.pop_front().expect("a frame")
    }

    #[test]
    fn tcp_checksums_only_without_offload() {
        let src = IpAddress::from(Ipv4Address::from(GATEWAY));
        let dst = IpAddress::from(Ipv4Address::from(GUEST));
        let filled = sent(false);
        let tcp = TcpPacket::new_checked(&filled[34..]).unwrap();
        assert_ne!(tcp.checksum(), 0);
        assert!(tcp.verify_checksum(&src, &dst));
        let left = sent(true);
        assert_eq!(TcpPacket::new_checked(&left[34..]).unwrap().checksum(), 0);
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut short = vec![0x08u8; 30];
        fill_tcp_checksum(&mut short);
        assert_eq!(short, vec![0x08u8; 30]);
        let mut udp = vec![0u8; 14 + 140];
        write_segment(&mut udp);
        udp[14 + 9] = 17;
        let copy = udp.clone();
        fill_tcp_checksum(&mut udp);
        assert_eq!(udp, copy);
    }
}
