//! Guest-triggered warnings are bounded: a guest that hammers a virtio
//! window with accesses the transport refuses (wrong widths, offsets that
//! are no register), keeps breaking its device (QueueReady on a queue with
//! garbage addresses) or touches every unknown port and unclaimed MMIO page
//! costs the log a few dozen lines, not one per access (or per address). (The hostile-guest flood, `tests/tests/guest_flood.rs`, does
//! both from guest user space.)
//!
//! Its own test binary: it installs the process's logger.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::memory::VecMemory;
use starina_vmm::virtio::console::Console;
use starina_vmm::virtio::mmio::reg;
use starina_vmm::vm::Vm;
use starina_vmm::vm::VIRTIO_MMIO_BASE;

/// Counts the VMM's log lines.
struct Counter;

static LINES: AtomicUsize = AtomicUsize::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());
/// The tests share the logger's count: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

impl log::Log for Counter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("starina_vmm") && record.level() <= log::Level::Info {
            LINES.fetch_add(1, Ordering::Relaxed);
            *LAST.lock().unwrap_or_else(|e| e.into_inner()) = record.args().to_string();
        }
    }

    fn flush(&self) {}
}

static COUNTER: Counter = Counter;

/// Lines logged while `f` runs.
fn lines_during(f: impl FnOnce()) -> usize {
    let _ = log::set_logger(&COUNTER);
    log::set_max_level(log::LevelFilter::Trace);
    let before = LINES.load(Ordering::Relaxed);
    f();
    LINES.load(Ordering::Relaxed) - before
}

fn host_cpuid(_: u32, _: u32) -> CpuidResult {
    CpuidResult::default()
}

fn vm_with_console() -> Vm {
    let mut vm = Vm::new(CpuidPolicy::default(), host_cpuid, 0, 0);
    vm.add_virtio(Console::new()).unwrap();
    vm
}

const ACCESSES: u64 = 100_000;
/// Enough for the first of each kind and a few reminders with counts.
const MAX_LINES: usize = 40;

#[test]
fn refused_virtio_accesses_log_a_bounded_number_of_lines() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = vm_with_console();
    let mut mem = VecMemory::new(1 << 20);
    let lines = lines_during(|| {
        for i in 0..ACCESSES {
            let offset = (i * 7) % reg::CONFIG;
            let mut byte = [0u8; 1];
            vm.mmio_read(VIRTIO_MMIO_BASE + offset, &mut byte);
            // 0xfc is no register; a 2-byte write is the wrong width.
            vm.mmio_write(VIRTIO_MMIO_BASE + 0xfc, &[1, 2, 3, 4], &mut mem);
            vm.mmio_write(VIRTIO_MMIO_BASE + offset, &[1, 2], &mut mem);
        }
    });
    assert!(
        lines <= MAX_LINES,
        "{} refused accesses logged {lines} lines (last: {})",
        3 * ACCESSES,
        LAST.lock().unwrap()
    );
    assert!(lines > 0, "the first refused access is not logged");
}

#[test]
fn a_device_broken_again_and_again_logs_a_bounded_number_of_lines() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = vm_with_console();
    let mut mem = VecMemory::new(1 << 20);
    let write = |vm: &mut Vm, mem: &mut VecMemory, offset: u64, v: u32| {
        vm.mmio_write(VIRTIO_MMIO_BASE + offset, &v.to_le_bytes(), mem)
    };
    let lines = lines_during(|| {
        // Queue 0 with a descriptor table far outside guest memory.
        write(&mut vm, &mut mem, reg::QUEUE_SEL, 0);
        write(&mut vm, &mut mem, reg::QUEUE_NUM, 16);
        write(&mut vm, &mut mem, reg::QUEUE_DESC_HIGH, 0xffff_ffff);
        for i in 0..ACCESSES {
            // QueueReady fails the device each time; now and then a reset.
            write(&mut vm, &mut mem, reg::QUEUE_READY, 1);
            if i % 16 == 0 {
                write(&mut vm, &mut mem, reg::STATUS, 0);
                write(&mut vm, &mut mem, reg::QUEUE_SEL, 0);
                write(&mut vm, &mut mem, reg::QUEUE_NUM, 16);
                write(&mut vm, &mut mem, reg::QUEUE_DESC_HIGH, 0xffff_ffff);
            }
        }
    });
    assert!(
        lines <= MAX_LINES,
        "{ACCESSES} device failures logged {lines} lines (last: {})",
        LAST.lock().unwrap()
    );
    assert!(lines > 0, "the first device failure is not logged");
}

#[test]
fn unknown_ports_and_unclaimed_mmio_log_a_bounded_number_of_lines() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = vm_with_console();
    let mut mem = VecMemory::new(1 << 20);
    let lines = lines_during(|| {
        for port in 0x1000..=0xffffu16 {
            vm.io_in(port, 1, 0);
            vm.io_out(port, 4, 0x5a5a_5a5a, 0);
        }
        for page in 0..10_000u64 {
            let gpa = 0x1_0000_0000 + page * 4096;
            vm.mmio_read(gpa, &mut [0u8; 4]);
            vm.mmio_write(gpa, &[0u8; 8], &mut mem);
        }
    });
    assert!(
        lines <= 2 * MAX_LINES,
        "every unknown port and 10,000 unclaimed pages logged {lines} lines (last: {})",
        LAST.lock().unwrap_or_else(|e| e.into_inner())
    );
    assert!(lines > 0, "the first unknown port is not logged");
}
