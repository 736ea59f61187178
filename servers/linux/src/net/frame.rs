//! What the NAT needs to know of a guest frame before smoltcp sees it, and
//! the UDP frames it builds for the guest itself. Pure functions on bytes:
//! anything malformed is `Other` (smoltcp then drops it, as it drops any
//! bad frame).

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::EthernetAddress;
use smoltcp::wire::EthernetFrame;
use smoltcp::wire::EthernetProtocol;
use smoltcp::wire::EthernetRepr;
use smoltcp::wire::IpProtocol;
use smoltcp::wire::Ipv4Address;
use smoltcp::wire::Ipv4Packet;
use smoltcp::wire::Ipv4Repr;
use smoltcp::wire::UdpPacket;
use smoltcp::wire::UdpRepr;

/// One end of a flow: an IPv4 address and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: Ipv4Address,
    pub port: u16,
}

impl From<Endpoint> for smoltcp::wire::IpEndpoint {
    fn from(e: Endpoint) -> Self {
        smoltcp::wire::IpEndpoint::new(e.addr.into(), e.port)
    }
}

impl From<Endpoint> for smoltcp::wire::IpListenEndpoint {
    fn from(e: Endpoint) -> Self {
        smoltcp::wire::IpEndpoint::from(e).into()
    }
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// What a frame from the guest is to the NAT.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A TCP SYN without ACK: a connection the guest opens.
    Syn { from: Endpoint, to: Endpoint },
    /// A UDP datagram (IPv4, unfragmented).
    Udp {
        from: Endpoint,
        to: Endpoint,
        payload: &'a [u8],
    },
    /// Anything else (ARP, other TCP segments, ICMP, IPv6, garbage):
    /// smoltcp's.
    Other,
}

/// The IPv4 packet in an Ethernet frame, if it is one (with a sane header
/// and total length, not fragmented).
fn ipv4(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let payload = &frame[EthernetFrame::<&[u8]>::header_len()..];
    let ip = Ipv4Packet::new_checked(payload).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    Some(ip)
}

pub fn classify(frame: &[u8]) -> Kind<'_> {
    let Some(ip) = ipv4(frame) else {
        return Kind::Other;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let header = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let body = &frame[EthernetFrame::<&[u8]>::header_len()..][header..total];
    match ip.next_header() {
        IpProtocol::Tcp if body.len() >= 20 => {
            let flags = body[13];
            let (syn, ack, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
            if !syn || ack || rst {
                return Kind::Other;
            }
            Kind::Syn {
                from: Endpoint {
                    addr: src,
                    port: u16::from_be_bytes([body[0], body[1]]),
                },
                to: Endpoint {
                    addr: dst,
                    port: u16::from_be_bytes([body[2], body[3]]),
                },
            }
        }
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(body) else {
                return Kind::Other;
            };
            let len = usize::from(udp.len());
            Kind::Udp {
                from: Endpoint {
                    addr: src,
                    port: udp.src_port(),
                },
                to: Endpoint {
                    addr: dst,
                    port: udp.dst_port(),
                },
                payload: &body[8..len],
            }
        }
        _ => Kind::Other,
    }
}

/// An Ethernet frame carrying one UDP datagram, `from` -> `to`.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    from: Endpoint,
    to: Endpoint,
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.port,
        dst_port: to.port,
    };
    let ip = Ipv4Repr {
        src_addr: from.addr,
        dst_addr: to.addr,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
    let checksums = ChecksumCapabilities::default();
    let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut eth_frame);
    let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
    ip.emit(&mut ip_packet, &checksums);
    let mut udp_packet = UdpPacket::new_unchecked(ip_packet.payload_mut());
    udp.emit(
        &mut udp_packet,
        &from.addr.into(),
        &to.addr.into(),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &checksums,
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ep(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint {
            addr: Ipv4Address::from_octets(a),
            port,
        }
    }

    #[test]
    fn udp_round_trip() {
        let from = ep([10, 0, 3, 15], 40000);
        let to = ep([8, 8, 8, 8], 53);
        let frame = udp_frame(A, B, from, to, b"hello");
        assert_eq!(
            classify(&frame),
            Kind::Udp {
                from,
                to,
                payload: b"hello"
            }
        );
        // The checksums are right: smoltcp's checked parse agrees.
        let ip = ipv4(&frame).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(&from.addr.into(), &to.addr.into()));
    }

    fn tcp_frame(flags: u8) -> Vec<u8> {
        let mut frame = udp_frame(
            A,
            B,
            ep([10, 0, 3, 15], 1234),
            ep([1, 2, 3, 4], 80),
            &[0; 12],
        );
        // Turn the UDP datagram into a 20-byte TCP header.
        frame[14 + 9] = 6;
        let tcp = &mut frame[14 + 20..];
        tcp[..4].copy_from_slice(&[0x04, 0xd2, 0, 80]);
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        frame
    }

    #[test]
    fn syns_are_told_from_other_segments() {
        assert_eq!(
            classify(&tcp_frame(0x02)),
            Kind::Syn {
                from: ep([10, 0, 3, 15], 1234),
                to: ep([1, 2, 3, 4], 80)
            }
        );
        assert_eq!(classify(&tcp_frame(0x12)), Kind::Other); // SYN+ACK
        assert_eq!(classify(&tcp_frame(0x10)), Kind::Other); // ACK
        assert_eq!(classify(&tcp_frame(0x06)), Kind::Other); // SYN+RST
    }

    #[test]
    fn garbage_is_other() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0xff; 13]), Kind::Other);
        let mut frame = udp_frame(A, B, ep([1, 1, 1, 1], 1), ep([2, 2, 2, 2], 2), b"x");
        // A total length past the frame.
        frame[14 + 2] = 0xff;
        assert_eq!(classify(&frame), Kind::Other);
        // A UDP length past the packet.
        let mut frame = udp_frame(A, B, ep([1, 1, 1, 1], 1), ep([2, 2, 2, 2], 2), b"x");
        frame[14 + 20 + 5] = 200;
        assert_eq!(classify(&frame), Kind::Other);
        // A fragment.
        let mut frame = udp_frame(A, B, ep([1, 1, 1, 1], 1), ep([2, 2, 2, 2], 2), b"x");
        frame[14 + 6] = 0x20;
        assert_eq!(classify(&frame), Kind::Other);
        for len in 0..frame.len() {
            let _ = classify(&frame[..len]);
        }
    }
}
