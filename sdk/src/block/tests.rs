use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::fake_kernel::FakeKernel;

const DISK: DiskInfo = DiskInfo {
    sectors: 1000,
    read_only: false,
};

fn request(op: u8, id: u32, sector: u64, count: u32, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![op];
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(&sector.to_le_bytes());
    msg.extend_from_slice(&count.to_le_bytes());
    msg.extend_from_slice(body);
    msg
}

fn refused(msg: &[u8], disk: &DiskInfo) -> Refused {
    match parse_request(msg, disk) {
        Err(r) => r,
        Ok(req) => panic!("accepted {req:?}"),
    }
}

fn is_malformed(r: &Refused) -> bool {
    matches!(r.error, DiskError::Protocol(_))
}

#[test]
fn a_header_round_trips() {
    let h = Header {
        op: Op::Write,
        id: 0xdead_beef,
        sector: 0x0123_4567_89ab_cdef,
        count: 31,
    };
    let bytes = h.to_bytes();
    assert_eq!(
        bytes.to_vec(),
        request(2, 0xdead_beef, 0x0123_4567_89ab_cdef, 31, &[])
    );
    assert_eq!(Header::decode(&bytes), Ok((h, &[][..])));
    assert_eq!(MAX_SECTORS_PER_MESSAGE, 31);
}

#[test]
fn short_messages_and_unknown_ops_are_malformed() {
    for len in [0, 1, 4, 5, 16] {
        let msg = &request(1, 7, 0, 1, &[])[..len];
        let r = refused(msg, &DISK);
        assert!(is_malformed(&r), "{len} bytes: {r:?}");
        // The id is answered once the message has one.
        assert_eq!(r.id, if len >= 5 { 7 } else { 0 });
    }
    for op in [0, 4, 255] {
        let r = refused(&request(op, 9, 0, 1, &[]), &DISK);
        assert!(is_malformed(&r) && r.id == 9, "{r:?}");
    }
}

#[test]
fn lengths_that_lie_are_malformed() {
    let sector = [0x5a; SECTOR_SIZE];
    // A write of 2 sectors with 1, and with 3.
    let r = refused(&request(2, 1, 0, 2, &sector), &DISK);
    assert!(is_malformed(&r), "{r:?}");
    let three = [sector, sector, sector].concat();
    assert!(is_malformed(&refused(&request(2, 1, 0, 2, &three), &DISK)));
    // A read with bytes after its header; a flush with sectors.
    assert!(is_malformed(&refused(&request(1, 1, 0, 1, &sector), &DISK)));
    assert!(is_malformed(&refused(&request(3, 1, 0, 1, &[]), &DISK)));
    assert!(is_malformed(&refused(&request(3, 1, 5, 0, &[]), &DISK)));
    // Zero sectors, a read of more than its parts hold, a write of more
    // than a message holds.
    assert!(is_malformed(&refused(&request(1, 1, 0, 0, &[]), &DISK)));
    let r = refused(&request(1, 1, 0, MAX_SECTORS_PER_READ + 1, &[]), &DISK);
    assert!(is_malformed(&r));
    let n = MAX_SECTORS_PER_MESSAGE + 1;
    let body = vec![0u8; n as usize * SECTOR_SIZE];
    let r = refused(&request(2, 1, 0, n, &body[..]), &DISK);
    assert!(is_malformed(&r));
    assert!(is_malformed(&refused(
        &request(1, 1, 0, u32::MAX, &[]),
        &DISK
    )));
}

#[test]
fn a_long_read_is_one_request_answered_in_parts() {
    assert_eq!(MAX_SECTORS_PER_READ, 8 * MAX_SECTORS_PER_MESSAGE);
    assert_eq!(
        parse_request(&request(1, 4, 10, MAX_SECTORS_PER_READ, &[]), &DISK),
        Ok(Request::Read {
            id: 4,
            sector: 10,
            count: MAX_SECTORS_PER_READ
        })
    );
    let parts: Vec<(u64, u32)> = read_parts(100, 70).collect();
    assert_eq!(parts, vec![(100, 31), (131, 31), (162, 8)]);
    assert_eq!(read_parts(5, 31).collect::<Vec<_>>(), vec![(5, 31)]);
    assert_eq!(read_parts(5, 1).collect::<Vec<_>>(), vec![(5, 1)]);
    let all: u32 = read_parts(0, MAX_SECTORS_PER_READ).map(|p| p.1).sum();
    assert_eq!(all, MAX_SECTORS_PER_READ);
    assert_eq!(read_parts(0, MAX_SECTORS_PER_READ).count(), 8);
}

#[test]
fn sectors_past_the_end_are_out_of_range() {
    for (sector, count) in [(1000, 1), (999, 2), (u64::MAX, 1), (u64::MAX - 1, 31)] {
        let r = refused(&request(1, 3, sector, count, &[]), &DISK);
        assert_eq!(
            r,
            Refused {
                id: 3,
                error: DiskError::OutOfRange
            }
        );
    }
    assert_eq!(
        parse_request(&request(1, 3, 999, 1, &[]), &DISK),
        Ok(Request::Read {
            id: 3,
            sector: 999,
            count: 1
        })
    );
}

#[test]
fn writes_to_a_read_only_disk_are_refused() {
    let ro = DiskInfo {
        sectors: 1000,
        read_only: true,
    };
    let data = [1u8; SECTOR_SIZE];
    let r = refused(&request(2, 4, 0, 1, &data), &ro);
    assert_eq!(
        r,
        Refused {
            id: 4,
            error: DiskError::ReadOnly
        }
    );
    assert!(parse_request(&request(1, 4, 0, 1, &[]), &ro).is_ok());
    assert_eq!(
        parse_request(&request(3, 5, 0, 0, &[]), &ro),
        Ok(Request::Flush { id: 5 })
    );
    let msg = request(2, 6, 10, 1, &data);
    let w = parse_request(&msg, &DISK).unwrap();
    assert_eq!(
        w,
        Request::Write {
            id: 6,
            sector: 10,
            data: &data
        }
    );
    assert_eq!(
        w.header(),
        Header {
            op: Op::Write,
            id: 6,
            sector: 10,
            count: 1
        }
    );
}

#[test]
fn the_hello_uri_round_trips_and_bad_ones_are_errors() {
    for info in [
        DISK,
        DiskInfo {
            sectors: u64::MAX,
            read_only: true,
        },
    ] {
        assert_eq!(DiskInfo::parse_uri(&info.uri()), Ok(info));
    }
    assert_eq!(DISK.uri(), "disk:1000:rw");
    for bad in [
        "",
        "disk:",
        "disk:12",
        "disk:12:rx",
        "disk:-1:rw",
        "net:12:rw",
        "disk:1 :ro",
    ] {
        assert!(
            matches!(DiskInfo::parse_uri(bad), Err(DiskError::Protocol(_))),
            "{bad}"
        );
    }
}

#[test]
fn error_codes_round_trip() {
    for e in [
        DiskError::ReadOnly,
        DiskError::OutOfRange,
        DiskError::Io("bad".into()),
    ] {
        assert_eq!(DiskError::from_reply(e.code(), "bad"), e);
    }
    assert!(matches!(
        DiskError::from_reply(999, "x"),
        DiskError::Protocol(_)
    ));
}

/// A client connected to a fake driver end, the hello already sent.
fn connected(info: DiskInfo) -> (Disk, Channel) {
    FakeKernel::install();
    let (client, driver) = Channel::create().unwrap();
    let uri = info.uri();
    driver
        .send(Message::Open {
            call_id: 0,
            uri: &uri,
            handle: None,
        })
        .unwrap();
    (Disk::connect(client).unwrap(), driver)
}

fn reply(header: Header, data: &[u8]) -> Vec<u8> {
    let mut msg = header.to_bytes().to_vec();
    msg.extend_from_slice(data);
    msg
}

/// The requests the client sent, decoded.
fn sent(driver: &Channel) -> Vec<(Header, Vec<u8>)> {
    let mut buf = MessageBuffer::new();
    let mut out = Vec::new();
    while let Ok(Message::Data(msg)) = driver.try_recv(&mut buf) {
        let (h, body) = Header::decode(msg).unwrap();
        out.push((h, body.to_vec()));
    }
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 512) as u8).collect()
}

#[test]
fn a_read_is_split_and_its_replies_placed_whatever_their_order() {
    let (mut disk, driver) = connected(DISK);
    assert_eq!(disk.info(), DISK);
    let data = pattern(40 * SECTOR_SIZE);
    // Replies to ids 1 (31 sectors from 100) and 2 (9 from 131), 2 first.
    let second = Header {
        op: Op::Read,
        id: 2,
        sector: 131,
        count: 9,
    };
    let first = Header {
        op: Op::Read,
        id: 1,
        sector: 100,
        count: 31,
    };
    driver.send_data(&reply(second, &data[31 * 512..])).unwrap();
    driver.send_data(&reply(first, &data[..31 * 512])).unwrap();
    let mut buf = vec![0u8; 40 * SECTOR_SIZE];
    disk.read(100, &mut buf).unwrap();
    assert!(buf == data);
    let requests = sent(&driver);
    assert_eq!(requests, vec![(first, vec![]), (second, vec![])]);
}

#[test]
fn a_write_carries_its_bytes_and_a_flush_follows() {
    let (mut disk, driver) = connected(DISK);
    let data = pattern(3 * SECTOR_SIZE);
    let w = Header {
        op: Op::Write,
        id: 1,
        sector: 7,
        count: 3,
    };
    driver.send_data(&reply(w, &[])).unwrap();
    disk.write(7, &data).unwrap();
    let f = Header {
        op: Op::Flush,
        id: 2,
        sector: 0,
        count: 0,
    };
    driver.send_data(&reply(f, &[])).unwrap();
    disk.flush().unwrap();
    assert_eq!(sent(&driver), vec![(w, data), (f, vec![])]);
}

#[test]
fn an_error_reply_is_the_callers_error_after_the_other_replies() {
    let (mut disk, driver) = connected(DISK);
    driver
        .send(Message::Error {
            call_id: 1,
            code: codes::IO,
            text: "medium error",
        })
        .unwrap();
    let second = Header {
        op: Op::Read,
        id: 2,
        sector: 31,
        count: 1,
    };
    driver.send_data(&reply(second, &[0u8; 512])).unwrap();
    let mut buf = vec![0u8; 32 * SECTOR_SIZE];
    assert_eq!(
        disk.read(0, &mut buf),
        Err(DiskError::Io("medium error".into()))
    );
    // The next call meets no stale reply.
    let third = Header {
        op: Op::Read,
        id: 3,
        sector: 0,
        count: 1,
    };
    driver.send_data(&reply(third, &[9u8; 512])).unwrap();
    disk.read(0, &mut buf[..512]).unwrap();
    assert_eq!(buf[..512], [9u8; 512]);
}

#[test]
fn replies_that_lie_are_protocol_errors() {
    let (mut disk, driver) = connected(DISK);
    let mut buf = vec![0u8; SECTOR_SIZE];
    // Too few bytes for the sector asked for.
    let h = Header {
        op: Op::Read,
        id: 1,
        sector: 0,
        count: 1,
    };
    driver.send_data(&reply(h, &[0u8; 100])).unwrap();
    assert!(matches!(
        disk.read(0, &mut buf),
        Err(DiskError::Protocol(_))
    ));
    // A reply to a request never sent, and a short one.
    driver
        .send_data(&reply(Header { id: 77, ..h }, &[0u8; 512]))
        .unwrap();
    assert!(matches!(
        disk.read(0, &mut buf),
        Err(DiskError::Protocol(_))
    ));
    driver.send_data(&[1, 2, 3]).unwrap();
    assert!(matches!(
        disk.read(0, &mut buf),
        Err(DiskError::Protocol(_))
    ));
}

#[test]
fn bad_calls_are_refused_before_anything_is_sent() {
    let (mut disk, driver) = connected(DiskInfo {
        sectors: 10,
        read_only: true,
    });
    let mut buf = vec![0u8; 1000];
    assert!(matches!(disk.read(0, &mut buf), Err(DiskError::Invalid(_))));
    assert_eq!(disk.read(10, &mut buf[..512]), Err(DiskError::OutOfRange));
    assert_eq!(
        disk.read(u64::MAX, &mut buf[..512]),
        Err(DiskError::OutOfRange)
    );
    assert_eq!(disk.write(0, &buf[..512]), Err(DiskError::ReadOnly));
    assert!(sent(&driver).is_empty());
}

#[test]
fn connect_needs_the_hello() {
    FakeKernel::install();
    let (client, driver) = Channel::create().unwrap();
    driver.send_data(b"hello").unwrap();
    assert!(matches!(Disk::connect(client), Err(DiskError::Protocol(_))));
    let (client, driver) = Channel::create().unwrap();
    driver
        .send(Message::Open {
            call_id: 0,
            uri: "disk:x:rw",
            handle: None,
        })
        .unwrap();
    assert!(matches!(Disk::connect(client), Err(DiskError::Protocol(_))));
    let (client, driver) = Channel::create().unwrap();
    drop(driver);
    assert_eq!(Disk::connect(client).err(), Some(DiskError::Gone));
}

#[test]
fn a_driver_that_goes_away_is_gone() {
    let (mut disk, driver) = connected(DISK);
    drop(driver);
    let mut buf = vec![0u8; SECTOR_SIZE];
    assert_eq!(disk.read(0, &mut buf), Err(DiskError::Gone));
}

#[test]
fn a_disk_can_move_to_a_thread_of_its_own() {
    fn send<T: Send>() {}
    send::<Disk>();
}
