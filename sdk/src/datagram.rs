//! One UDP datagram and its peer in one `Data` message: the body of a
//! `udp-listen:` channel of tcpip, both ways (servers/tcpip/src/lib.rs).
//!
//! The body is a 6-byte header, the peer's IPv4 address (4 bytes, network
//! order) then its port (2 bytes, big-endian), followed by the payload (0
//! bytes or more). From tcpip, the peer is who sent the datagram; to
//! tcpip, who it goes to. A body shorter than the header, or naming port
//! 0, is malformed.

use alloc::vec::Vec;

use crate::abi::MESSAGE_DATA_MAX;

/// Bytes in front of each payload.
pub const HEADER_LEN: usize = 6;
/// The largest payload one message carries.
pub const PAYLOAD_MAX: usize = MESSAGE_DATA_MAX - HEADER_LEN;

/// The other end of a datagram: an IPv4 address and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    pub addr: [u8; 4],
    pub port: u16,
}

/// Why a body is not a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short(usize),
    /// The header names port 0.
    PortZero,
}

impl core::fmt::Display for Malformed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Malformed::Short(n) => write!(
                f,
                "{n} bytes, shorter than the {HEADER_LEN}-byte peer header"
            ),
            Malformed::PortZero => f.write_str("the peer header names port 0"),
        }
    }
}

/// The message body for `payload` to or from `peer`; `None` if the
/// payload is larger than [`PAYLOAD_MAX`].
pub fn encode(peer: Peer, payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > PAYLOAD_MAX {
        return None;
    }
    let mut body = Vec::with_capacity(HEADER_LEN + payload.len());
    body.extend_from_slice(&peer.addr);
    body.extend_from_slice(&peer.port.to_be_bytes());
    body.extend_from_slice(payload);
    Some(body)
}

/// The peer and payload of a message body.
pub fn decode(body: &[u8]) -> Result<(Peer, &[u8]), Malformed> {
    let Some((header, payload)) = body.split_first_chunk::<HEADER_LEN>() else {
        return Err(Malformed::Short(body.len()));
    };
    let port = u16::from_be_bytes([header[4], header[5]]);
    if port == 0 {
        return Err(Malformed::PortZero);
    }
    let addr = [header[0], header[1], header[2], header[3]];
    Ok((Peer { addr, port }, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: Peer = Peer {
        addr: [10, 0, 2, 2],
        port: 0x1234,
    };

    #[test]
    fn round_trip() {
        let body = encode(PEER, b"ping").unwrap();
        assert_eq!(body, [10, 0, 2, 2, 0x12, 0x34, b'p', b'i', b'n', b'g']);
        assert_eq!(decode(&body), Ok((PEER, &b"ping"[..])));
        // An empty datagram is a datagram.
        let empty = encode(PEER, b"").unwrap();
        assert_eq!(empty.len(), HEADER_LEN);
        assert_eq!(decode(&empty), Ok((PEER, &b""[..])));
    }

    #[test]
    fn the_largest_payload_fills_a_message() {
        let big = alloc::vec![7u8; PAYLOAD_MAX];
        assert_eq!(encode(PEER, &big).unwrap().len(), MESSAGE_DATA_MAX);
        assert_eq!(encode(PEER, &[0; PAYLOAD_MAX + 1]), None);
    }

    #[test]
    fn malformed_bodies() {
        for n in 0..HEADER_LEN {
            assert_eq!(decode(&[1; HEADER_LEN][..n]), Err(Malformed::Short(n)));
        }
        assert_eq!(decode(&[1, 2, 3, 4, 0, 0, 9]), Err(Malformed::PortZero));
        let text = alloc::format!("{}", Malformed::Short(3));
        assert_eq!(text, "3 bytes, shorter than the 6-byte peer header");
    }

    #[test]
    fn any_body_decodes_or_is_refused() {
        // xorshift bytes of every length up to 40: a body that decodes
        // encodes back to itself.
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..40 {
            for _ in 0..64 {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        if x.is_multiple_of(3) {
                            0
                        } else {
                            x as u8
                        }
                    })
                    .collect();
                match decode(&body) {
                    Ok((peer, payload)) => assert_eq!(encode(peer, payload).unwrap(), body),
                    Err(Malformed::Short(n)) => assert!(n < HEADER_LEN && n == body.len()),
                    Err(Malformed::PortZero) => assert_eq!(body[4..6], [0, 0]),
                }
            }
        }
    }
}
