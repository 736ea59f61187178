use alloc::vec;

use super::*;
use crate::memory::VecMemory;
use crate::virtio::mmio::reg;
use crate::virtio::mmio::tests::bring_up;
use crate::virtio::mmio::tests::r32;
use crate::virtio::mmio::tests::w32;
use crate::virtio::mmio::MmioTransport;
use crate::virtio::queue::tests::AVAIL;
use crate::virtio::queue::tests::DESC;
use crate::virtio::queue::tests::USED;
use crate::virtio::queue::QueueError;
use crate::virtio::queue::VIRTQ_DESC_F_NEXT;
use crate::virtio::queue::VIRTQ_DESC_F_WRITE;
use crate::virtio::queue::VIRTQ_USED_F_NO_NOTIFY;
use crate::virtio::status;

const CAPACITY: u64 = 256;
/// Sectors per backend operation in these tests (the block protocol's is 31).
const OP_SECTORS: u32 = 3;
const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x80000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Read(u32, u64, u32),
    Write(u32, u64, Vec<u8>),
    Flush(u32),
}

/// A backend that records what it was asked and refuses as told.
#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    /// Refuse (busy) once this many calls are out, if set.
    busy_at: Option<usize>,
    fail: bool,
}

struct Recorder(std::sync::Arc<std::sync::Mutex<Log>>);

impl Recorder {
    fn take(&self, call: Call) -> Result<(), Refusal> {
        let mut log = self.0.lock().unwrap();
        if log.fail {
            return Err(Refusal::Failed);
        }
        if log.busy_at.is_some_and(|n| log.calls.len() >= n) {
            return Err(Refusal::Busy);
        }
        log.calls.push(call);
        Ok(())
    }
}

impl BlockBackend for Recorder {
    fn read(&mut self, id: u32, sector: u64, count: u32) -> Result<(), Refusal> {
        self.take(Call::Read(id, sector, count))
    }
    fn write(
        &mut self,
        id: u32,
        sector: u64,
        count: u32,
        fill: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> Result<(), Refusal> {
        let mut data = vec![0u8; count as usize * SECTOR_SIZE];
        if !fill(&mut data) {
            return Err(Refusal::Failed);
        }
        self.take(Call::Write(id, sector, data))
    }
    fn flush(&mut self, id: u32) -> Result<(), Refusal> {
        self.take(Call::Flush(id))
    }
}

struct Rig {
    t: MmioTransport<Blk>,
    mem: VecMemory,
    log: std::sync::Arc<std::sync::Mutex<Log>>,
    avail_idx: u16,
    used_seen: u16,
    /// Whether `publish` notifies the device.
    notify: bool,
}

fn rig_with(read_only: bool) -> Rig {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Log::default()));
    let blk = Blk::new(
        CAPACITY,
        read_only,
        OP_SECTORS,
        Box::new(Recorder(log.clone())),
    );
    let mut t = MmioTransport::new(blk);
    let mut mem = VecMemory::new(0x100000);
    bring_up(&mut t, &mut mem);
    Rig {
        t,
        mem,
        log,
        avail_idx: 0,
        used_seen: 0,
        notify: true,
    }
}

fn rig() -> Rig {
    rig_with(false)
}

/// Bytes whose values say where they are.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

impl Rig {
    fn desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * i as u64;
        self.mem.write_u64(at, addr).unwrap();
        self.mem.write_u32(at + 8, len).unwrap();
        self.mem.write_u16(at + 12, flags).unwrap();
        self.mem.write_u16(at + 14, next).unwrap();
    }

    fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * (self.avail_idx % 8) as u64;
        self.mem.write_u16(slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_u16(AVAIL + 2, self.avail_idx).unwrap();
        if self.notify {
            w32(&mut self.t, &mut self.mem, reg::QUEUE_NOTIFY, 0);
        }
    }

    /// Next used entry: (head, len).
    fn used(&mut self) -> Option<(u32, u32)> {
        if self.mem.read_u16(USED + 2).unwrap() == self.used_seen {
            return None;
        }
        let at = USED + 4 + 8 * (self.used_seen % 8) as u64;
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            self.mem.read_u32(at).unwrap(),
            self.mem.read_u32(at + 4).unwrap(),
        ))
    }

    /// Linux's layout: header, data, status in descriptors 3i, 3i+1,
    /// 3i+2 (each request of `slot` gets its own addresses; the ring has
    /// 8 descriptors, so slots 0 and 1).
    fn request(&mut self, slot: u16, kind: u32, sector: u64, data: &[u8], data_flags: u16) {
        let off = 0x1000 * slot as u64;
        self.mem.write(HDR + off, &header(kind, sector)).unwrap();
        self.mem.write(DATA + off * 16, data).unwrap();
        self.mem.write(STATUS + off, &[0xff]).unwrap();
        let d = 3 * slot;
        if data.is_empty() {
            self.desc(d, HDR + off, 16, VIRTQ_DESC_F_NEXT, d + 2);
        } else {
            self.desc(d, HDR + off, 16, VIRTQ_DESC_F_NEXT, d + 1);
            self.desc(
                d + 1,
                DATA + off * 16,
                data.len() as u32,
                data_flags | VIRTQ_DESC_F_NEXT,
                d + 2,
            );
        }
        self.desc(d + 2, STATUS + off, 1, VIRTQ_DESC_F_WRITE, 0);
        self.publish(d);
    }

    fn status_of(&self, slot: u16) -> u8 {
        let mut b = [0u8];
        self.mem
            .read(STATUS + 0x1000 * slot as u64, &mut b)
            .unwrap();
        b[0]
    }

    fn calls(&self) -> Vec<Call> {
        core::mem::take(&mut self.log.lock().unwrap().calls)
    }

    /// Answers a call as a disk whose sector `s` holds `pattern(512, s)`.
    fn answer(&mut self, call: &Call) -> bool {
        let (id, data) = match call {
            Call::Read(id, sector, count) => {
                let data: Vec<u8> = (0..*count as u64)
                    .flat_map(|i| pattern(SECTOR_SIZE, (sector + i) as u8))
                    .collect();
                (*id, data)
            }
            Call::Write(id, ..) | Call::Flush(id) => (*id, Vec::new()),
        };
        let known = self.t.device_mut().complete(&mut self.mem, id, Ok(&data));
        self.t.poll(&mut self.mem);
        known != Answered::Unknown
    }
}

#[test]
fn features_and_config_space() {
    let mut r = rig();
    let lo = r32(&mut r.t, reg::DEVICE_FEATURES) as u64;
    assert_eq!(
        lo,
        VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_SIZE_MAX | VIRTIO_F_INDIRECT_DESC
    );
    assert_eq!(r32(&mut r.t, reg::DEVICE_ID), DEVICE_ID_BLOCK);
    let mut config = [0u8; 16];
    r.t.read(reg::CONFIG, &mut config[..8]).unwrap();
    r.t.read(reg::CONFIG + 8, &mut config[8..12]).unwrap();
    r.t.read(reg::CONFIG + 12, &mut config[12..16]).unwrap();
    assert_eq!(
        u64::from_le_bytes(config[..8].try_into().unwrap()),
        CAPACITY
    );
    assert_eq!(
        u32::from_le_bytes(config[8..12].try_into().unwrap()),
        SIZE_MAX
    );
    assert_eq!(
        u32::from_le_bytes(config[12..16].try_into().unwrap()),
        SEG_MAX
    );
    let mut ro = rig_with(true);
    let lo = r32(&mut ro.t, reg::DEVICE_FEATURES) as u64;
    assert_ne!(lo & VIRTIO_BLK_F_RO, 0);
}

#[test]
fn the_guest_need_not_notify_while_operations_are_out() {
    let mut r = rig();
    let used_flags = |r: &Rig| r.mem.read_u16(USED).unwrap();
    assert_eq!(used_flags(&r), 0);
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        0,
        &[0u8; SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let first = r.calls();
    assert!(matches!(first[..], [Call::Read(_, 0, 1)]), "{first:?}");
    assert_eq!(used_flags(&r), VIRTQ_USED_F_NO_NOTIFY);
    // Made available without a notification: taken when the first
    // operation's answer makes the host side poll.
    r.notify = false;
    r.request(
        1,
        VIRTIO_BLK_T_IN,
        5,
        &[0u8; SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    assert!(r.calls().is_empty());
    assert!(r.answer(&first[0]));
    let second = r.calls();
    assert!(matches!(second[..], [Call::Read(_, 5, 1)]), "{second:?}");
    assert_eq!(r.used(), Some((0, SECTOR_SIZE as u32 + 1)));
    assert_eq!(used_flags(&r), VIRTQ_USED_F_NO_NOTIFY);
    // Nothing out: the guest must notify again.
    assert!(r.answer(&second[0]));
    assert_eq!(r.used(), Some((3, SECTOR_SIZE as u32 + 1)));
    assert_eq!(used_flags(&r), 0);
    assert_eq!(
        (r.status_of(0), r.status_of(1)),
        (VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK)
    );
}

#[test]
fn a_read_is_split_and_lands_in_the_guest_buffer() {
    let mut r = rig();
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        10,
        &[0u8; 8 * SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let calls = r.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| match c {
                Call::Read(_, s, n) => (*s, *n),
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>(),
        vec![(10, 3), (13, 3), (16, 2)]
    );
    assert_eq!(r.t.device().ops_in_flight(), 3);
    // Answered out of order; the request returns with the last answer.
    assert!(r.answer(&calls[2]));
    assert!(r.answer(&calls[0]));
    assert_eq!(r.used(), None);
    assert!(!r.t.irq_level());
    assert!(r.answer(&calls[1]));
    assert_eq!(r.used(), Some((0, 8 * SECTOR_SIZE as u32 + 1)));
    assert!(r.t.irq_level());
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_OK);
    let mut got = vec![0u8; 8 * SECTOR_SIZE];
    r.mem.read(DATA, &mut got).unwrap();
    let want: Vec<u8> = (10..18)
        .flat_map(|s| pattern(SECTOR_SIZE, s as u8))
        .collect();
    assert_eq!(got, want);
    let s = r.t.device().stats();
    assert_eq!((s.reads, s.bytes_read, s.errors), (1, 4096, 0));
}

#[test]
fn a_write_with_its_header_in_the_data_buffer() {
    let mut r = rig();
    // Header and the first sectors in one readable buffer, the rest in a
    // second one: 5 sectors in all.
    let data = pattern(5 * SECTOR_SIZE, 9);
    r.mem.write(HDR, &header(VIRTIO_BLK_T_OUT, 50)).unwrap();
    r.mem.write(HDR + 16, &data[..1000]).unwrap();
    r.mem.write(DATA, &data[1000..]).unwrap();
    r.desc(0, HDR, 16 + 1000, VIRTQ_DESC_F_NEXT, 1);
    r.desc(1, DATA, (data.len() - 1000) as u32, VIRTQ_DESC_F_NEXT, 2);
    r.desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    r.publish(0);
    let calls = r.calls();
    let mut written = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let Call::Write(_, sector, bytes) = c else {
            panic!("{c:?}")
        };
        assert_eq!(*sector, 50 + 3 * i as u64);
        written.extend_from_slice(bytes);
    }
    assert_eq!(written, data);
    for c in &calls {
        r.answer(c);
    }
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_OK);
    assert_eq!(r.t.device().stats().bytes_written, 5 * 512);
}

#[test]
fn flush_and_get_id() {
    let mut r = rig();
    r.request(0, VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    let calls = r.calls();
    assert!(matches!(calls[..], [Call::Flush(_)]));
    assert_eq!(r.used(), None);
    r.answer(&calls[0]);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_OK);
    // GET_ID is the device's own answer.
    r.request(1, VIRTIO_BLK_T_GET_ID, 0, &[0xaa; 20], VIRTQ_DESC_F_WRITE);
    assert_eq!(r.used(), Some((3, 21)));
    assert_eq!(r.status_of(1), VIRTIO_BLK_S_OK);
    let mut id = [0u8; 20];
    r.mem.read(DATA + 0x10000, &mut id).unwrap();
    assert_eq!(&id[..12], b"starina-disk");
    assert_eq!(id[12..], [0; 8]);
    assert!(r.calls().is_empty());
    // A flush on a read-only disk has nothing to make durable.
    let mut ro = rig_with(true);
    ro.request(0, VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    assert_eq!(ro.used(), Some((0, 1)));
    assert!(ro.calls().is_empty());
}

#[test]
fn bad_requests_get_ioerr_or_unsupp_without_the_backend() {
    let sector = [0u8; SECTOR_SIZE];
    let cases: [(u32, u64, &[u8], u16, u8); 6] = [
        // Past the end; ending past the end.
        (
            VIRTIO_BLK_T_IN,
            CAPACITY,
            &sector,
            VIRTQ_DESC_F_WRITE,
            VIRTIO_BLK_S_IOERR,
        ),
        (
            VIRTIO_BLK_T_OUT,
            CAPACITY - 1,
            &[0; 1024],
            0,
            VIRTIO_BLK_S_IOERR,
        ),
        (
            VIRTIO_BLK_T_IN,
            u64::MAX,
            &sector,
            VIRTQ_DESC_F_WRITE,
            VIRTIO_BLK_S_IOERR,
        ),
        // Not whole sectors.
        (VIRTIO_BLK_T_OUT, 0, &[0; 100], 0, VIRTIO_BLK_S_IOERR),
        // A read whose data buffer is device-readable.
        (VIRTIO_BLK_T_IN, 0, &sector, 0, VIRTIO_BLK_S_IOERR),
        // Unknown types (DISCARD).
        (11, 0, &[0; 16], 0, VIRTIO_BLK_S_UNSUPP),
    ];
    for (i, &(kind, sector, data, flags, want)) in cases.iter().enumerate() {
        let mut r = rig();
        r.request(0, kind, sector, data, flags);
        assert_eq!(r.used(), Some((0, 1)), "case {i}");
        assert_eq!(r.status_of(0), want, "case {i}");
        assert!(r.calls().is_empty(), "case {i}");
        assert_eq!(r.t.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(r.t.device().stats().errors, 1);
    }
    // A write to a read-only disk.
    let mut r = rig_with(true);
    r.request(0, VIRTIO_BLK_T_OUT, 0, &sector, 0);
    assert_eq!(
        (r.used(), r.status_of(0)),
        (Some((0, 1)), VIRTIO_BLK_S_IOERR)
    );
    assert!(r.calls().is_empty());
}

#[test]
fn a_write_from_outside_guest_memory_is_never_sent() {
    let mut r = rig();
    r.mem.write(HDR, &header(VIRTIO_BLK_T_OUT, 0)).unwrap();
    // Its second half is past the end of guest memory: a ring error (the
    // device needs a reset), and nothing reaches the backend.
    let ram = r.mem.size();
    r.desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    r.desc(1, ram - 256, SECTOR_SIZE as u32, VIRTQ_DESC_F_NEXT, 2);
    r.desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    r.publish(0);
    assert!(r.calls().is_empty());
    assert_eq!(r.t.device().ops_in_flight(), 0);
    assert_ne!(r.t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn a_header_in_a_writable_buffer_is_an_ioerr() {
    let mut r = rig();
    r.mem.write(HDR, &header(VIRTIO_BLK_T_IN, 0)).unwrap();
    r.desc(0, HDR, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    r.desc(1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    r.publish(0);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_IOERR);
    assert!(r.calls().is_empty());
}

#[test]
fn a_chain_without_a_status_byte_or_looping_breaks_the_device() {
    let mut r = rig();
    r.mem.write(HDR, &header(VIRTIO_BLK_T_FLUSH, 0)).unwrap();
    r.desc(0, HDR, 16, 0, 0);
    r.publish(0);
    assert_ne!(r.t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(matches!(r.t.take_error(), Some(DeviceError::Protocol(_))));
    let mut r = rig();
    r.desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    r.desc(1, STATUS, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
    r.publish(0);
    assert_eq!(
        r.t.take_error(),
        Some(DeviceError::Queue {
            queue: REQUEST_QUEUE,
            error: QueueError::ChainTooLong
        })
    );
    assert!(r.calls().is_empty());
}

#[test]
fn a_failed_operation_fails_its_request_only() {
    let mut r = rig();
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        0,
        &[0u8; 6 * SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    r.request(
        1,
        VIRTIO_BLK_T_IN,
        20,
        &[0u8; SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let calls = r.calls();
    assert_eq!(calls.len(), 3);
    let Call::Read(id, ..) = calls[0] else {
        panic!()
    };
    assert_eq!(
        r.t.device_mut().complete(&mut r.mem, id, Err(())),
        Answered::Done
    );
    // A read answered with the wrong length fails too.
    let Call::Read(id, ..) = calls[1] else {
        panic!()
    };
    assert_eq!(
        r.t.device_mut().complete(&mut r.mem, id, Ok(&[0u8; 10])),
        Answered::Done
    );
    r.t.poll(&mut r.mem);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_IOERR);
    r.answer(&calls[2]);
    assert_eq!(r.used(), Some((3, 513)));
    assert_eq!(r.status_of(1), VIRTIO_BLK_S_OK);
    // The backend refusing for good fails the request at once.
    r.log.lock().unwrap().fail = true;
    r.request(0, VIRTIO_BLK_T_OUT, 0, &[1u8; SECTOR_SIZE], 0);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_IOERR);
}

#[test]
fn a_lost_backend_fails_what_is_out() {
    let mut r = rig();
    r.request(0, VIRTIO_BLK_T_OUT, 0, &[1u8; 4 * SECTOR_SIZE], 0);
    assert_eq!(r.calls().len(), 2);
    r.t.device_mut().backend_lost();
    assert_eq!(r.t.device().ops_in_flight(), 0);
    r.t.poll(&mut r.mem);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_IOERR);
}

#[test]
fn a_busy_backend_gets_the_rest_later() {
    let mut r = rig();
    r.log.lock().unwrap().busy_at = Some(2);
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        0,
        &[0u8; 9 * SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let first = r.log.lock().unwrap().calls.clone();
    assert_eq!(first.len(), 2);
    r.log.lock().unwrap().busy_at = None;
    r.calls();
    // An answer polls the device, which hands over the third operation.
    r.answer(&first[0]);
    let rest = r.calls();
    assert!(matches!(rest[..], [Call::Read(_, 6, 3)]), "{rest:?}");
    r.answer(&first[1]);
    assert_eq!(r.used(), None);
    r.answer(&rest[0]);
    assert_eq!(r.used(), Some((0, 9 * 512 + 1)));
}

#[test]
fn operations_out_are_bounded() {
    let mut r = rig();
    // 2 requests of 96 sectors (32 operations each): 56 go out at once.
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        0,
        &[0u8; 96 * SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    r.request(1, VIRTIO_BLK_T_OUT, 0, &[7u8; 96 * SECTOR_SIZE], 0);
    let mut calls = r.calls();
    assert_eq!(calls.len(), MAX_OPS_IN_FLIGHT);
    let mut answered = 0;
    while let Some(c) = calls.pop() {
        r.answer(&c);
        answered += 1;
        calls.extend(r.calls());
        assert!(r.t.device().ops_in_flight() <= MAX_OPS_IN_FLIGHT);
    }
    assert_eq!(answered, 64);
    let mut used = [r.used(), r.used()];
    used.sort();
    assert_eq!(used, [Some((0, 96 * 512 + 1)), Some((3, 1))]);
}

#[test]
fn a_reset_drops_requests_and_their_late_answers() {
    let mut r = rig();
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        0,
        &[0u8; SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let calls = r.calls();
    w32(&mut r.t, &mut r.mem, reg::STATUS, 0);
    assert_eq!(r.t.device().ops_in_flight(), 0);
    assert!(!r.answer(&calls[0]));
    // Nothing was written into the old buffer.
    let mut got = [0u8; SECTOR_SIZE];
    r.mem.read(DATA, &mut got).unwrap();
    assert_eq!(got, [0u8; SECTOR_SIZE]);
    assert_eq!(
        r.t.device_mut().complete(&mut r.mem, 12345, Ok(&[])),
        Answered::Unknown
    );
}

/// A rig whose reads carry up to 3 operations' worth of sectors.
fn rig_long_reads() -> Rig {
    let mut r = rig();
    let blk = Blk::new(
        CAPACITY,
        false,
        OP_SECTORS,
        Box::new(Recorder(r.log.clone())),
    )
    .with_long_reads(3 * OP_SECTORS);
    r.t = MmioTransport::new(blk);
    bring_up(&mut r.t, &mut r.mem);
    r
}

#[test]
fn a_long_read_is_one_operation_answered_in_parts() {
    let mut r = rig_long_reads();
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        10,
        &[0u8; 11 * SECTOR_SIZE],
        VIRTQ_DESC_F_WRITE,
    );
    let calls = r.calls();
    assert!(
        matches!(calls[..], [Call::Read(_, 10, 9), Call::Read(_, 19, 2)]),
        "{calls:?}"
    );
    let Call::Read(first, ..) = calls[0] else {
        panic!()
    };
    // The first read's parts: 3 sectors each, in order.
    let part = |s: u64| -> Vec<u8> {
        (s..s + 3)
            .flat_map(|i| pattern(SECTOR_SIZE, i as u8))
            .collect()
    };
    for (i, sector) in [10u64, 13, 16].into_iter().enumerate() {
        let answered =
            r.t.device_mut()
                .complete(&mut r.mem, first, Ok(&part(sector)));
        let expected = if i < 2 {
            Answered::Part
        } else {
            Answered::Done
        };
        assert_eq!(answered, expected);
        r.t.poll(&mut r.mem);
        assert_eq!(r.used(), None);
    }
    r.answer(&calls[1]);
    assert_eq!(r.used(), Some((0, 11 * 512 + 1)));
    let mut got = vec![0u8; 11 * SECTOR_SIZE];
    r.mem.read(DATA, &mut got).unwrap();
    let want: Vec<u8> = (10..21u64)
        .flat_map(|i| pattern(SECTOR_SIZE, i as u8))
        .collect();
    assert!(got == want);
    assert_eq!(r.t.device().ops_in_flight(), 0);
}

#[test]
fn a_long_read_with_a_bad_part_or_an_error_fails() {
    let mut r = rig_long_reads();
    for (slot, sector) in [(0u16, 0u64), (1, 50)] {
        r.request(
            slot,
            VIRTIO_BLK_T_IN,
            sector,
            &[0u8; 9 * SECTOR_SIZE],
            VIRTQ_DESC_F_WRITE,
        );
    }
    let calls = r.calls();
    let [Call::Read(a, ..), Call::Read(b, ..)] = calls[..] else {
        panic!("{calls:?}")
    };
    // A part of 2 sectors (not the last one) fails the first read; its
    // later parts are dropped.
    let dev = r.t.device_mut();
    assert_eq!(
        dev.complete(&mut r.mem, a, Ok(&[0u8; 3 * 512])),
        Answered::Part
    );
    assert_eq!(
        dev.complete(&mut r.mem, a, Ok(&[0u8; 2 * 512])),
        Answered::Done
    );
    assert_eq!(
        dev.complete(&mut r.mem, a, Ok(&[0u8; 3 * 512])),
        Answered::Unknown
    );
    // An error after a part fails the second.
    assert_eq!(
        dev.complete(&mut r.mem, b, Ok(&[0u8; 3 * 512])),
        Answered::Part
    );
    assert_eq!(dev.complete(&mut r.mem, b, Err(())), Answered::Done);
    assert_eq!(r.t.device().ops_in_flight(), 0);
    r.t.poll(&mut r.mem);
    let mut used = [r.used(), r.used()];
    used.sort();
    assert_eq!(used, [Some((0, 1)), Some((3, 1))]);
    assert_eq!(r.status_of(0), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.status_of(1), VIRTIO_BLK_S_IOERR);
}

#[test]
fn long_reads_out_are_bounded_by_their_parts() {
    let mut r = rig_long_reads();
    // 20 reads of 9 sectors (3 parts each): 18 fit in 56 answers.
    for i in 0..20u16 {
        r.request(
            0,
            VIRTIO_BLK_T_IN,
            u64::from(i) * 9,
            &[0u8; 9 * SECTOR_SIZE],
            VIRTQ_DESC_F_WRITE,
        );
    }
    let calls = r.calls();
    assert_eq!(calls.len(), MAX_OPS_IN_FLIGHT / 3);
}

#[test]
fn random_chains_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut r = rig();
        for i in 0..8u16 {
            let v = next();
            let flags = (v & 3) as u16;
            let len = [0, 1, 16, 17, 512, 528, 4096, 0xffff_ffff][(v >> 8) as usize % 8];
            let addr = [HDR, DATA, STATUS, 0xffff0, u64::MAX - 4][(v >> 16) as usize % 5];
            r.desc(i, addr, len, flags, (v >> 24) as u16 % 9);
        }
        r.mem
            .write(HDR, &header((next() % 10) as u32, next() % 80))
            .unwrap();
        for _ in 0..4 {
            r.publish((next() % 9) as u16);
            for c in r.calls() {
                r.answer(&c);
            }
        }
    }
}
