//! virtio-mmio transports of QEMU's microvm: 512-byte register windows at
//! 0xFEB00000 + n * 0x200, found by probing for the magic value "virt".

use alloc::vec::Vec;

use crate::mm::phys_to_virt;

pub const BASE: u64 = 0xfeb0_0000;
pub const WINDOW: u64 = 0x200;
/// microvm has 8 transports with one I/O APIC and 24 with two.
pub const MAX_TRANSPORTS: u64 = 24;
const MAGIC: u32 = 0x7472_6976;

pub struct Transport {
    pub base: u64,
    pub index: u32,
    pub device_id: u32,
}

fn read32(phys: u64) -> u32 {
    // SAFETY: `phys` is inside the virtio-mmio window below 4 GiB, which
    // is direct-mapped; a read of an unpopulated transport returns 0.
    unsafe { (phys_to_virt(phys) as *const u32).read_volatile() }
}

/// Transports with a device behind them (device ID != 0).
pub fn probe() -> Vec<Transport> {
    let mut found = Vec::new();
    for index in 0..MAX_TRANSPORTS {
        let base = BASE + index * WINDOW;
        if read32(base) != MAGIC {
            continue;
        }
        let device_id = read32(base + 0x8);
        if device_id == 0 {
            continue;
        }
        found.push(Transport {
            base,
            index: index as u32,
            device_id,
        });
    }
    found
}

/// The GSI of transport `index`. QEMU's microvm wires transport n to GSI
/// `irq_base + n`, with `irq_base` 24 when it has a second I/O APIC, 16
/// with ACPI and one I/O APIC, and 5 otherwise; without ACPI it also
/// announces each transport on the kernel command line as
/// `virtio_mmio.device=512@0x<base>:<irq>`, which wins when present.
pub fn gsi(cmdline: &str, base: u64, index: u32, ioapics: usize) -> u32 {
    for word in cmdline.split_whitespace() {
        let Some(spec) = word.strip_prefix("virtio_mmio.device=") else {
            continue;
        };
        let Some((_, rest)) = spec.split_once('@') else {
            continue;
        };
        let Some((addr, irq)) = rest.split_once(':') else {
            continue;
        };
        let addr = addr.trim_start_matches("0x");
        if u64::from_str_radix(addr, 16) == Ok(base) {
            if let Ok(irq) = irq.parse() {
                return irq;
            }
        }
    }
    let irq_base = if ioapics > 1 { 24 } else { 16 };
    irq_base + index
}
