//! The disk driver (virtio_blk) on the disk the host made for this run:
//! ext2-formatted, so sector 2 holds the superblock. The tests write only
//! the boot area (sectors 0..2, which ext2 leaves alone) for good, and put
//! back whatever else they overwrite.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use starina::block::codes;
use starina::block::Disk;
use starina::block::DiskError;
use starina::block::DiskInfo;
use starina::block::Header;
use starina::block::Op;
use starina::block::SECTOR_SIZE;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::timer::now_ns;
use starina::Message;

use super::Ctx;
use super::TestResult;

/// The client the later tests share, or why there is none.
pub enum DiskSlot {
    /// The driver's channel, its hello not read yet.
    Channel(Channel),
    Ready(Disk),
    Broken(String),
}

impl DiskSlot {
    fn disk(&mut self) -> Result<&mut Disk, String> {
        if matches!(self, DiskSlot::Channel(_)) {
            let slot = core::mem::replace(self, DiskSlot::Broken(String::new()));
            if let DiskSlot::Channel(ch) = slot {
                *self = match Disk::connect(ch) {
                    Ok(disk) => DiskSlot::Ready(disk),
                    Err(e) => DiskSlot::Broken(format!("connect: {e}")),
                };
            }
        }
        match self {
            DiskSlot::Ready(disk) => Ok(disk),
            DiskSlot::Broken(why) => Err(format!("no disk client: {why}")),
            DiskSlot::Channel(_) => Err("no disk client".to_string()),
        }
    }
}

/// One request sent as raw bytes; the reply, `Ok` for `Data`, `Err((id,
/// code))` for `Error`.
fn raw_request(
    ch: &Channel,
    buf: &mut MessageBuffer,
    request: &[u8],
) -> Result<Result<Vec<u8>, (u32, u16)>, String> {
    ch.send_data(request).map_err(|e| format!("send: {e}"))?;
    match ch.recv_within(buf, 30_000) {
        Ok(Some(Message::Data(d))) => Ok(Ok(d.to_vec())),
        Ok(Some(Message::Error { call_id, code, .. })) => Ok(Err((call_id, code))),
        Ok(Some(other)) => Err(format!("unexpected {:?}", other.kind())),
        Ok(None) => Err("no reply within 30 s".to_string()),
        Err(e) => Err(format!("receive: {e}")),
    }
}

fn header(op: Op, id: u32, sector: u64, count: u32) -> Vec<u8> {
    Header {
        op,
        id,
        sector,
        count,
    }
    .to_bytes()
    .to_vec()
}

/// The driver checks what it is sent: requests past the end, short or
/// lying ones get `Error` replies naming the request; a good read after
/// them still works. (Speaks the protocol by hand, then hands the channel
/// to the shared client.)
pub fn disk_driver_checks_requests(cx: &mut Ctx) -> TestResult {
    let DiskSlot::Channel(ch) = core::mem::replace(&mut cx.disk, DiskSlot::Broken("taken".into()))
    else {
        return Err("the disk channel was already used".to_string());
    };
    let info = match ch.recv_within(&mut cx.buf, 5_000) {
        Ok(Some(Message::Open {
            call_id: 0,
            uri,
            handle: None,
        })) => DiskInfo::parse_uri(uri).map_err(|e| e.to_string()),
        other => Err(format!("expected the disk hello, got {other:?}")),
    };
    let info = info.inspect_err(|why| cx.disk = DiskSlot::Broken(why.clone()))?;
    let result = check_requests(&ch, &mut cx.buf, &info);
    // The later tests use the channel through the client, whatever happened.
    cx.disk = match Disk::from_hello(ch, info) {
        Ok(disk) => DiskSlot::Ready(disk),
        Err(e) => DiskSlot::Broken(e.to_string()),
    };
    check!(info.sectors > 0 && !info.read_only, "disk {info:?}");
    result
}

fn check_requests(ch: &Channel, buf: &mut MessageBuffer, info: &DiskInfo) -> TestResult {
    let end = info.sectors;
    let cases: [(&str, Vec<u8>, u32, u16); 5] = [
        (
            "past the end",
            header(Op::Read, 11, end - 1, 2),
            11,
            codes::OUT_OF_RANGE,
        ),
        (
            "a wrapping sector",
            header(Op::Read, 12, u64::MAX, 1),
            12,
            codes::OUT_OF_RANGE,
        ),
        ("a short header", vec![1, 2, 3], 0, codes::MALFORMED),
        (
            "a write without its bytes",
            header(Op::Write, 14, 0, 1),
            14,
            codes::MALFORMED,
        ),
        (
            "an unknown op",
            [&[9u8][..], &header(Op::Read, 15, 0, 1)[1..]].concat(),
            15,
            codes::MALFORMED,
        ),
    ];
    for (what, request, id, code) in cases {
        match raw_request(ch, buf, &request)? {
            Err(got) => check!(
                got == (id, code),
                "{what}: Error {got:?}, expected {:?}",
                (id, code)
            ),
            Ok(d) => return Err(format!("{what}: accepted ({} bytes back)", d.len())),
        }
    }
    let good = header(Op::Read, 16, end - 1, 1);
    match raw_request(ch, buf, &good)? {
        Ok(reply) => check!(
            reply.len() == good.len() + SECTOR_SIZE && reply[..good.len()] == good[..],
            "a good read after bad ones: {}-byte reply",
            reply.len()
        ),
        Err(e) => return Err(format!("a good read after bad ones failed: {e:?}")),
    }
    Ok(())
}

/// The host formatted the disk ext2: the superblock's magic 0xEF53 sits at
/// byte 56 of sector 2.
pub fn disk_holds_the_hosts_ext2(cx: &mut Ctx) -> TestResult {
    let disk = cx.disk.disk()?;
    let mut sector = vec![0u8; SECTOR_SIZE];
    disk.read(2, &mut sector)
        .map_err(|e| format!("read sector 2: {e}"))?;
    let magic = u16::from_le_bytes([sector[56], sector[57]]);
    check!(magic == 0xef53, "ext2 magic {magic:#06x} in sector 2");
    Ok(())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 ^ seed)
        .collect()
}

fn write_and_read_back(disk: &mut Disk, sector: u64, data: &[u8]) -> TestResult {
    disk.write(sector, data)
        .map_err(|e| format!("write {} bytes at {sector}: {e}", data.len()))?;
    let mut back = vec![0u8; data.len()];
    disk.read(sector, &mut back)
        .map_err(|e| format!("read {} bytes at {sector}: {e}", data.len()))?;
    if let Some(at) = back.iter().zip(data).position(|(a, b)| a != b) {
        return Err(format!(
            "{} bytes at sector {sector}: byte {at} reads {:#04x}, written {:#04x}",
            data.len(),
            back[at],
            data[at]
        ));
    }
    Ok(())
}

/// The boot area (sectors 0..2) takes two different patterns in turn, each
/// read back, and a flush.
pub fn disk_writes_read_back(cx: &mut Ctx) -> TestResult {
    let disk = cx.disk.disk()?;
    for seed in [0xa5, 0x3c] {
        write_and_read_back(disk, 0, &pattern(2 * SECTOR_SIZE, seed))?;
    }
    disk.flush().map_err(|e| format!("flush: {e}"))
}

/// Reads and writes past the end are `OutOfRange`; a length that is not
/// whole sectors is refused.
pub fn disk_refuses_past_the_end(cx: &mut Ctx) -> TestResult {
    let disk = cx.disk.disk()?;
    let end = disk.info().sectors;
    let mut buf = vec![0u8; 2 * SECTOR_SIZE];
    let got = disk.read(end - 1, &mut buf);
    check!(
        got == Err(DiskError::OutOfRange),
        "read across the end: {got:?}"
    );
    let got = disk.write(end, &buf[..SECTOR_SIZE]);
    check!(
        got == Err(DiskError::OutOfRange),
        "write past the end: {got:?}"
    );
    let got = disk.read(0, &mut buf[..100]);
    check!(
        matches!(got, Err(DiskError::Invalid(_))),
        "a 100-byte read: {got:?}"
    );
    // The last sector itself is on the disk.
    disk.read(end - 1, &mut buf[..SECTOR_SIZE])
        .map_err(|e| format!("read the last sector: {e}"))
}

/// A transfer of many messages (256 KiB from sector 0: ext2's superblock
/// and group descriptors too, put back afterwards) reads what was written.
pub fn disk_multi_message_transfer(cx: &mut Ctx) -> TestResult {
    let disk = cx.disk.disk()?;
    let len = 256 * 1024;
    let mut saved = vec![0u8; len];
    disk.read(0, &mut saved).map_err(|e| format!("save: {e}"))?;
    let result = write_and_read_back(disk, 0, &pattern(len, 0x77));
    disk.write(0, &saved).map_err(|e| format!("restore: {e}"))?;
    disk.flush().map_err(|e| format!("flush: {e}"))?;
    result
}

/// Two clients of the one driver (the spec's `disk` and `disk_other`):
/// each gets the hello and sees what the other wrote; one going away
/// leaves the other served.
pub fn disk_serves_several_clients(cx: &mut Ctx) -> TestResult {
    let other = cx
        .disk_other
        .take()
        .ok_or("the second disk channel was already used")?;
    let mut other = Disk::connect(other).map_err(|e| format!("second client: {e}"))?;
    let disk = cx.disk.disk()?;
    check!(
        other.info() == disk.info(),
        "hellos differ: {:?}, {:?}",
        other.info(),
        disk.info()
    );
    let mut back = vec![0u8; 2 * SECTOR_SIZE];
    for (seed, writer_is_first) in [(0x21, true), (0x42, false)] {
        let data = pattern(2 * SECTOR_SIZE, seed);
        let (writer, reader) = if writer_is_first {
            (&mut *disk, &mut other)
        } else {
            (&mut other, &mut *disk)
        };
        writer.write(0, &data).map_err(|e| format!("write: {e}"))?;
        reader
            .read(0, &mut back)
            .map_err(|e| format!("read: {e}"))?;
        check!(
            back == data,
            "a client does not see the other's write (seed {seed:#x})"
        );
    }
    drop(other);
    disk.read(0, &mut back)
        .map_err(|e| format!("after the other client left: {e}"))
}

/// 1 MiB through the client: read, written and read back (a region past
/// the first MiB, put back afterwards). Logs the rates.
pub fn disk_throughput(cx: &mut Ctx) -> TestResult {
    let disk = cx.disk.disk()?;
    let len = 1024 * 1024;
    let sector = 4096;
    check!(disk.info().contains(sector, 2048), "disk too small");
    let mut saved = vec![0u8; len];
    let t0 = now_ns();
    disk.read(sector, &mut saved)
        .map_err(|e| format!("read: {e}"))?;
    let t1 = now_ns();
    let data = pattern(len, 0x11);
    disk.write(sector, &data)
        .map_err(|e| format!("write: {e}"))?;
    let t2 = now_ns();
    let mut back = vec![0u8; len];
    disk.read(sector, &mut back)
        .map_err(|e| format!("read back: {e}"))?;
    let t3 = now_ns();
    disk.write(sector, &saved)
        .map_err(|e| format!("restore: {e}"))?;
    check!(
        back == data,
        "1 MiB read back differs from what was written"
    );
    let us = |ns: u64| ns / 1000;
    let mib_s = |ns: u64| 1_000_000_000 / ns.max(1);
    log::info!(
        "disk: 1 MiB read {} us ({} MiB/s), written {} us ({} MiB/s), read back {} us ({} MiB/s)",
        us(t1 - t0),
        mib_s(t1 - t0),
        us(t2 - t1),
        mib_s(t2 - t1),
        us(t3 - t2),
        mib_s(t3 - t2)
    );
    Ok(())
}
