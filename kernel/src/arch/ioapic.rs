//! I/O APICs: route device interrupt lines (global system interrupts,
//! GSIs) to CPU vectors, and mask or unmask them one by one.
//!
//! Every machine we boot on has one at 0xFEC00000 (GSIs 0-23); QEMU's
//! microvm with ACPI adds a second at 0xFEC10000 (GSIs 24-47) for its
//! virtio-mmio transports. Devices' lines are level-triggered: the kernel
//! masks a line when it fires and the driver's `interrupt_ack` unmasks it.

use core::sync::atomic::AtomicU32;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use crate::mm::phys_to_virt;
use crate::sync::SpinLock;

/// Vector of GSI `n` is `VECTOR_IRQ_BASE + n`.
pub const VECTOR_IRQ_BASE: u8 = 0x40;
/// The most GSIs we route (two I/O APICs of 24 pins).
pub const MAX_GSI: u32 = 48;

const IOAPIC_BASES: [u64; 2] = [0xfec0_0000, 0xfec1_0000];

struct IoApic {
    base: usize,
    gsi_base: u32,
    pins: u32,
}

static IOAPICS: SpinLock<[Option<IoApic>; 2]> = SpinLock::new([None, None]);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static BSP_APIC_ID: AtomicU32 = AtomicU32::new(0);

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `base` is the direct-mapped register window of an I/O
        // APIC found by `init`; IOREGSEL then IOWIN is its access protocol,
        // serialized by the IOAPICS lock.
        unsafe {
            ((self.base) as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *const u32).read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as for `read`.
        unsafe {
            ((self.base) as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *mut u32).write_volatile(value);
        }
    }
}

/// Finds the I/O APICs and masks every line.
pub fn init() {
    BSP_APIC_ID.store(super::apic::id(), Ordering::Relaxed);
    let mut ioapics = IOAPICS.lock();
    let mut gsi_base = 0;
    for (i, &phys) in IOAPIC_BASES.iter().enumerate() {
        let ioapic = IoApic {
            base: phys_to_virt(phys),
            gsi_base,
            pins: 0,
        };
        let version = ioapic.read(1);
        // Nothing decodes an absent I/O APIC's window: reads are 0 or all
        // ones. A real one reports version 0x1x or 0x20.
        let v = version & 0xff;
        if version == u32::MAX || !(0x10..=0x20).contains(&v) {
            break;
        }
        let pins = ((version >> 16) & 0xff) + 1;
        let ioapic = IoApic { pins, ..ioapic };
        for pin in 0..pins {
            ioapic.write(0x10 + 2 * pin, 1 << 16);
            ioapic.write(0x11 + 2 * pin, 0);
        }
        log::info!(
            "ioapic: {:#x}, GSIs {}-{}",
            phys,
            gsi_base,
            gsi_base + pins - 1
        );
        gsi_base += pins;
        ioapics[i] = Some(ioapic);
        COUNT.store(i + 1, Ordering::Relaxed);
    }
}

/// How many I/O APICs there are.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

fn with_pin<R>(gsi: u32, f: impl FnOnce(&IoApic, u32) -> R) -> Option<R> {
    let ioapics = IOAPICS.lock();
    ioapics
        .iter()
        .flatten()
        .find(|a| (a.gsi_base..a.gsi_base + a.pins).contains(&gsi))
        .map(|a| f(a, gsi - a.gsi_base))
}

/// Routes `gsi` to its vector on the boot CPU, level-triggered, masked.
/// Returns false if no I/O APIC has that line.
pub fn route(gsi: u32, active_low: bool) -> bool {
    if gsi >= MAX_GSI {
        return false;
    }
    let vector = VECTOR_IRQ_BASE as u32 + gsi;
    let apic_id = BSP_APIC_ID.load(Ordering::Relaxed);
    with_pin(gsi, |a, pin| {
        let low = vector | (1 << 15) | (1 << 16) | if active_low { 1 << 13 } else { 0 };
        a.write(0x10 + 2 * pin, low);
        a.write(0x11 + 2 * pin, apic_id << 24);
    })
    .is_some()
}

pub fn mask(gsi: u32) {
    with_pin(gsi, |a, pin| {
        let low = a.read(0x10 + 2 * pin);
        a.write(0x10 + 2 * pin, low | (1 << 16));
    });
}

pub fn unmask(gsi: u32) {
    with_pin(gsi, |a, pin| {
        let low = a.read(0x10 + 2 * pin);
        a.write(0x10 + 2 * pin, low & !(1 << 16));
    });
}
