//! The names the NAT answers itself, at the gateway's DNS address:
//! `starina.internal` (the native side, as the guest reaches it). Every
//! other query is forwarded, unchanged, to the DNS server tcpip uses.

use alloc::vec::Vec;

use smoltcp::wire::Ipv4Address;

/// The name of the native side in the guest.
pub const INTERNAL_NAME: &str = "starina.internal";

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const TTL_S: u32 = 60;

/// The question of a standard query with exactly one: (name in lower
/// case without the final dot, type, class, where the question ends).
fn question(query: &[u8]) -> Option<(Vec<u8>, u16, u16, usize)> {
    if query.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // A query (QR 0), opcode QUERY, one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut name = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // No compression in a question; labels are at most 63 bytes.
        if len > 63 || name.len() + len > 253 {
            return None;
        }
        if !name.is_empty() {
            name.push(b'.');
        }
        name.extend(query.get(at..at + len)?.iter().map(u8::to_ascii_lowercase));
        at += len;
    }
    let tail = query.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    Some((name, qtype, qclass, at + 4))
}

/// The answer to `query` if it asks for a name the NAT owns: an A record
/// of `addr` for an A query, an empty answer (the name exists, but has no
/// such record) for any other type. `None`: forward it.
pub fn local_answer(query: &[u8], addr: Ipv4Address) -> Option<Vec<u8>> {
    let (name, qtype, qclass, end) = question(query)?;
    if name != INTERNAL_NAME.as_bytes() {
        return None;
    }
    let answers: u16 = (qtype == TYPE_A && qclass == CLASS_IN).into();
    let mut reply = Vec::with_capacity(end + 16);
    reply.extend_from_slice(&query[..2]);
    // QR, the query's RD, RA; NOERROR.
    let rd = query[2] & 0x01;
    reply.extend_from_slice(&[0x84 | rd, 0x80]);
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&answers.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..end]);
    if answers == 1 {
        // The name by pointer to the question's (offset 12).
        reply.extend_from_slice(&[0xc0, 12]);
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&TTL_S.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&addr.octets());
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = alloc::vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    const GW: Ipv4Address = Ipv4Address::new(10, 0, 3, 2);

    #[test]
    fn internal_name_is_answered() {
        let q = query("Starina.Internal", TYPE_A);
        let r = local_answer(&q, GW).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 0, 3, 2]);
        assert_eq!(&r[12..q.len()], &q[12..], "the question is echoed");
    }

    #[test]
    fn other_types_get_no_records() {
        let q = query("starina.internal", 28); // AAAA
        let r = local_answer(&q, GW).unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
        assert_eq!(r.len(), q.len());
    }

    #[test]
    fn other_names_and_garbage_are_forwarded() {
        assert_eq!(local_answer(&query("example.com", TYPE_A), GW), None);
        assert_eq!(local_answer(&query("internal", TYPE_A), GW), None);
        assert_eq!(local_answer(&query("x.starina.internal", TYPE_A), GW), None);
        assert_eq!(local_answer(&[], GW), None);
        let q = query("starina.internal", TYPE_A);
        for len in 0..q.len() {
            assert_eq!(local_answer(&q[..len], GW), None, "truncated at {len}");
        }
        // A response, not a query.
        let mut r = q.clone();
        r[2] |= 0x80;
        assert_eq!(local_answer(&r, GW), None);
        // A label running past the end.
        let mut bad = q.clone();
        bad[12] = 60;
        assert_eq!(local_answer(&bad, GW), None);
    }
}
