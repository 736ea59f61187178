//! A guest that sends malformed frames or posts receive buffers too small
//! for what arrives, again and again, costs the log a few lines (the
//! 2^k-th of each kind), not one per frame: the network device's share of
//! `log_bounds.rs`.
//!
//! Its own test binary: it installs the process's logger.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use starina_vmm::memory::GuestMemory;
use starina_vmm::memory::VecMemory;
use starina_vmm::virtio::net::Net;
use starina_vmm::virtio::queue::Virtqueue;
use starina_vmm::virtio::queue::VIRTQ_DESC_F_WRITE;
use starina_vmm::virtio::VirtioDevice;

/// Counts the VMM's log lines.
struct Counter;

static LINES: AtomicUsize = AtomicUsize::new(0);

impl log::Log for Counter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("starina_vmm") && record.level() <= log::Level::Info {
            LINES.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static COUNTER: Counter = Counter;

const FRAMES: u32 = 20_000;
/// The first of each kind and a few reminders with counts.
const MAX_LINES: usize = 40;
const QUEUE_SIZE: u16 = 8;

/// A ready queue of 8 whose rings sit at `base`.
fn queue(base: u64) -> Virtqueue {
    let mut q = Virtqueue::new(QUEUE_SIZE);
    (q.desc_addr, q.avail_addr, q.used_addr) = (base, base + 0x1000, base + 0x2000);
    q.ready = true;
    q
}

/// Makes the one-buffer chain `i` (`len` bytes at `addr`) available.
fn offer(mem: &mut VecMemory, q: &Virtqueue, i: u16, addr: u64, len: u32, flags: u16) {
    let at = q.desc_addr + 16 * (i % QUEUE_SIZE) as u64;
    mem.write_u64(at, addr).unwrap();
    mem.write_u32(at + 8, len).unwrap();
    mem.write_u16(at + 12, flags).unwrap();
    mem.write_u16(at + 14, 0).unwrap();
    let idx = mem.read_u16(q.avail_addr + 2).unwrap();
    mem.write_u16(
        q.avail_addr + 4 + 2 * (idx % QUEUE_SIZE) as u64,
        i % QUEUE_SIZE,
    )
    .unwrap();
    mem.write_u16(q.avail_addr + 2, idx.wrapping_add(1))
        .unwrap();
}

#[test]
fn malformed_frames_and_small_buffers_log_a_bounded_number_of_lines() {
    let _ = log::set_logger(&COUNTER);
    log::set_max_level(log::LevelFilter::Trace);
    let mut mem = VecMemory::new(1 << 20);
    let mut queues = [queue(0x1000), queue(0x4000)];
    let mut dev = Net::new([0x52, 0x54, 0, 0, 0, 1]);
    // A transmit buffer asking for a checksum offload never negotiated.
    mem.write(0x10000, &[1, 0]).unwrap();
    let before = LINES.load(Ordering::Relaxed);
    for i in 0..FRAMES {
        let i = i as u16;
        offer(&mut mem, &queues[1], i, 0x10000, 12 + 60, 0);
        // A receive buffer with no room for the frame pushed.
        offer(
            &mut mem,
            &queues[0],
            i,
            0x20000,
            12 + 10,
            VIRTQ_DESC_F_WRITE,
        );
        assert!(dev.push_rx(vec![0xff; 60]));
        dev.process(&mut queues, &mut mem, None).unwrap();
    }
    let lines = LINES.load(Ordering::Relaxed) - before;
    let stats = dev.stats();
    assert_eq!(stats.tx_malformed, FRAMES as u64);
    assert_eq!(stats.rx_dropped, FRAMES as u64);
    assert_eq!(dev.rx_backlog(), 0);
    assert!(lines > 0, "the first malformed frame is not logged");
    assert!(
        lines <= MAX_LINES,
        "{} dropped frames logged {lines} lines",
        2 * FRAMES
    );
}
