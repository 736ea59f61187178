//! TCP checksums on the link, 32 bytes a step: smoltcp's own loop adds
//! 2 bytes per step and was a third of every instruction tcpip and the
//! linux server ran in a download (`make profile`). smoltcp is told to
//! leave TCP checksums to the link (`Link::capabilities`): frames from the
//! driver are checked here before smoltcp sees them ([`tcp_frame_ok`]),
//! frames smoltcp sends are filled in here ([`fill_tcp_frame`]). IPv4
//! header, UDP and ICMP checksums stay with smoltcp (short, or rare).
//!
//! The sum is RFC 1071's ones' complement sum, taken over 64-bit words
//! with the carries added back in (the same sum, folded at the end), in the
//! machine's byte order, which the fold's result is turned from.

/// Ethernet header, and the offset of the IPv4 header.
const ETHERNET_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_TCP: u8 = 6;
/// Offset of the checksum in the TCP header.
const TCP_CHECKSUM_AT: usize = 16;
const TCP_HEADER_MIN: usize = 20;

/// The ones' complement sum of `data` as a 64-bit accumulator (not folded)
/// in native byte order; an odd last byte counts as if followed by zero.
/// 32 bytes a step into a 128-bit sum (an add and an add-with-carry per
/// word, no carry to fold back until the end).
fn sum(data: &[u8], acc: u64) -> u64 {
    let word = |c: &[u8]| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let mut wide = u128::from(acc);
    let mut blocks = data.chunks_exact(32);
    // A frame's words cannot carry a 128-bit sum over: the wrapping adds
    // only spare the overflow checks.
    for b in &mut blocks {
        wide = wide
            .wrapping_add(u128::from(word(&b[0..8])))
            .wrapping_add(u128::from(word(&b[8..16])))
            .wrapping_add(u128::from(word(&b[16..24])))
            .wrapping_add(u128::from(word(&b[24..32])));
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        wide += u128::from(word(w));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    wide += u128::from(word(&tail));
    // Fold 128 to 64 bits with end-around carries.
    let (lo, hi) = (wide as u64, (wide >> 64) as u64);
    let (s, carry) = lo.overflowing_add(hi);
    s + u64::from(carry)
}

/// Folds a 64-bit accumulator to 16 bits, in network byte order.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::from_be(acc as u16)
}

/// The IPv4 pseudo-header's sum for a TCP segment of `len` bytes.
fn pseudo_header(ip: &[u8], len: usize) -> u64 {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&ip[12..20]);
    p[9] = PROTO_TCP;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    sum(&p, 0)
}

/// The IPv4 header and TCP segment of an Ethernet frame, if it carries an
/// unfragmented TCP segment whose lengths are consistent; `None` for
/// anything else (ARP, UDP, fragments, malformed frames: smoltcp judges
/// those itself).
fn tcp_segment(frame: &[u8]) -> Option<(core::ops::Range<usize>, core::ops::Range<usize>)> {
    if frame.len() < ETHERNET_LEN + 20 || frame[12..14] != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETHERNET_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ip[9] != PROTO_TCP || fragment || ihl < 20 {
        return None;
    }
    if total > ip.len() || total < ihl + TCP_HEADER_MIN {
        return None;
    }
    let ip_range = ETHERNET_LEN..ETHERNET_LEN + ihl;
    Some((ip_range.clone(), ip_range.end..ETHERNET_LEN + total))
}

/// Whether a received frame may go to smoltcp: its TCP checksum is right,
/// or it is not a TCP segment this link checks (see [`tcp_segment`]).
pub fn tcp_frame_ok(frame: &[u8]) -> bool {
    let Some((ip, tcp)) = tcp_segment(frame) else {
        return true;
    };
    let acc = pseudo_header(&frame[ip], tcp.len());
    fold(sum(&frame[tcp], acc)) == 0xffff
}

/// Fills in the TCP checksum of a frame smoltcp sent with it zeroed.
pub fn fill_tcp_frame(frame: &mut [u8]) {
    let Some((ip, tcp)) = tcp_segment(frame) else {
        return;
    };
    let at = tcp.start + TCP_CHECKSUM_AT;
    frame[at..at + 2].fill(0);
    let acc = pseudo_header(&frame[ip], tcp.len());
    let checksum = !fold(sum(&frame[tcp], acc));
    frame[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::IpAddress;
    use smoltcp::wire::Ipv4Address;
    use smoltcp::wire::TcpPacket;

    /// An Ethernet/IPv4/TCP frame with `payload` bytes of a pattern.
    fn frame(payload: usize, seed: u32) -> Vec<u8> {
        let tcp_len = TCP_HEADER_MIN + payload;
        let mut f = vec![0u8; ETHERNET_LEN + 20 + tcp_len];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut f[ETHERNET_LEN..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = PROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 2, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 2, 15]);
        let mut x = seed | 1;
        for b in ip[20..].iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        ip[20 + 12] = 0x50; // data offset 5
        f
    }

    /// smoltcp's own verdict on the frame's TCP checksum.
    fn smoltcp_agrees(f: &[u8]) -> bool {
        let tcp = TcpPacket::new_unchecked(&f[ETHERNET_LEN + 20..]);
        let src = IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 2));
        let dst = IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 15));
        tcp.verify_checksum(&src, &dst)
    }

    #[test]
    fn filled_checksums_are_smoltcps() {
        for payload in [0, 1, 2, 3, 7, 8, 9, 1459, 1460] {
            for seed in 1..20 {
                let mut f = frame(payload, seed);
                fill_tcp_frame(&mut f);
                assert!(smoltcp_agrees(&f), "payload {payload} seed {seed}");
                assert!(tcp_frame_ok(&f));
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut f = frame(100, 5);
        fill_tcp_frame(&mut f);
        for byte in ETHERNET_LEN + 20..f.len() {
            for bit in [0, 7] {
                f[byte] ^= 1 << bit;
                assert!(!tcp_frame_ok(&f), "byte {byte} bit {bit}");
                f[byte] ^= 1 << bit;
            }
        }
        // The pseudo-header's addresses count too.
        f[ETHERNET_LEN + 15] ^= 1;
        assert!(!tcp_frame_ok(&f));
    }

    #[test]
    fn other_frames_are_left_to_smoltcp() {
        let mut udp = frame(40, 3);
        udp[ETHERNET_LEN + 9] = 17;
        assert!(tcp_frame_ok(&udp));
        let mut fragment = frame(40, 3);
        fragment[ETHERNET_LEN + 6] = 0x20; // more fragments
        assert!(tcp_frame_ok(&fragment));
        let mut arp = frame(40, 3);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(tcp_frame_ok(&arp));
        // Lengths that disagree with the frame: not touched, smoltcp
        // refuses them.
        let mut long = frame(40, 3);
        long[ETHERNET_LEN + 2..ETHERNET_LEN + 4].copy_from_slice(&9000u16.to_be_bytes());
        assert!(tcp_frame_ok(&long));
        let copy = long.clone();
        fill_tcp_frame(&mut long);
        assert_eq!(long, copy);
        for len in 0..ETHERNET_LEN + 20 {
            assert!(tcp_frame_ok(&frame(40, 3)[..len]));
        }
    }

    #[test]
    fn ethernet_padding_is_not_summed() {
        // A short segment padded to the 60-byte minimum frame.
        let mut f = frame(0, 9);
        fill_tcp_frame(&mut f);
        f.extend_from_slice(&[0xaa; 6]);
        assert!(tcp_frame_ok(&f));
    }
}
