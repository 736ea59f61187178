//! PCI through the legacy configuration ports (0xCF8/0xCFC): enumeration,
//! BAR sizing, and the INTx routing of QEMU's q35 (ICH9).

use alloc::vec::Vec;

use super::Region;
use crate::arch::cpu::inl;
use crate::arch::cpu::outl;
use crate::sync::SpinLock;

/// The command register's offset and its bits the kernel keeps: I/O and
/// memory decoding (memory on from enumeration for a function with memory
/// BARs, I/O as the firmware left it); bus mastering is the driver's.
pub const COMMAND: u16 = 0x04;
pub const DECODE: u32 = 0x3;
const MEMORY_DECODE: u32 = 1 << 1;
pub const BUS_MASTER: u32 = 1 << 2;

/// Serializes the address/data port pair.
static PORTS: SpinLock<()> = SpinLock::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

fn address(bdf: Bdf, offset: u16) -> u32 {
    0x8000_0000
        | (bdf.bus as u32) << 16
        | (bdf.device as u32) << 11
        | (bdf.function as u32) << 8
        | (offset as u32 & 0xfc)
}

pub fn read32(bdf: Bdf, offset: u16) -> u32 {
    let _guard = PORTS.lock();
    read32_unlocked(bdf, offset)
}

/// [`read32`] without the port lock: only for a machine that is stopping
/// with interrupts off (power off), where the code that panicked may hold
/// the lock.
pub fn read32_unlocked(bdf: Bdf, offset: u16) -> u32 {
    outl(0xcf8, address(bdf, offset));
    inl(0xcfc)
}

pub fn write32(bdf: Bdf, offset: u16, value: u32) {
    let _guard = PORTS.lock();
    outl(0xcf8, address(bdf, offset));
    outl(0xcfc, value);
}

/// One PCI function as enumeration found it.
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Memory BARs: (BAR index, region).
    pub bars: Vec<(u8, Region)>,
    /// Size masks a BAR register reads back after all ones are written
    /// (index = BAR register 0-5), so drivers can size BARs without the
    /// kernel letting them move one.
    pub bar_masks: [u32; 6],
    pub gsi: Option<u32>,
}

/// Sizes the BARs of a type-0 function (decoding off meanwhile), then
/// turns memory decoding on for good if it has memory BARs.
fn size_bars(bdf: Bdf) -> (Vec<(u8, Region)>, [u32; 6]) {
    let mut bars = Vec::new();
    let mut masks = [0u32; 6];
    let command = read32(bdf, COMMAND);
    write32(bdf, COMMAND, command & !DECODE);
    let mut i = 0u8;
    while i < 6 {
        let off = 0x10 + 4 * i as u16;
        let original = read32(bdf, off);
        write32(bdf, off, u32::MAX);
        let mask = read32(bdf, off);
        write32(bdf, off, original);
        masks[i as usize] = mask;
        if original & 1 == 1 || mask == 0 {
            // I/O BAR or none.
            i += 1;
            continue;
        }
        let is64 = (original >> 1) & 0x3 == 2;
        let mut base = (original & !0xf) as u64;
        let mut size_mask = (mask & !0xf) as u64 | 0xffff_ffff_0000_0000;
        if is64 && i < 5 {
            let off_hi = off + 4;
            let original_hi = read32(bdf, off_hi);
            write32(bdf, off_hi, u32::MAX);
            let mask_hi = read32(bdf, off_hi);
            write32(bdf, off_hi, original_hi);
            masks[i as usize + 1] = mask_hi;
            base |= (original_hi as u64) << 32;
            size_mask = (size_mask & 0xffff_ffff) | ((mask_hi as u64) << 32);
        }
        let size = (!size_mask).wrapping_add(1);
        if base != 0 && size != 0 {
            bars.push((i, Region { base, size }));
        }
        i += if is64 { 2 } else { 1 };
    }
    // Decoding stays as set here: drivers cannot change it
    // (`DeviceObject::config_write`), so the machine's memory map never
    // changes once the other CPUs run (see there).
    let memory = if bars.is_empty() { 0 } else { MEMORY_DECODE };
    write32(bdf, COMMAND, command | memory);
    (bars, masks)
}

/// The GSI that INTx `pin` (1 = INTA) of a device in `slot` of bus 0
/// reaches on q35: ICH9 wires slots 0-24 to PIRQ E-H, rotated by slot
/// (`(slot + pin - 1) % 4 + 4`), the chipset's own slots 25-31 to PIRQ A-D
/// by pin, and PIRQ n is GSI 16 + n (QEMU `hw/isa/lpc_ich9.c`).
pub fn q35_gsi(slot: u8, pin: u8) -> Option<u32> {
    if !(1..=4).contains(&pin) {
        return None;
    }
    let intx = (pin - 1) as u32;
    let pirq = if slot < 25 {
        (slot as u32 + intx) % 4 + 4
    } else {
        intx
    };
    Some(16 + pirq)
}

/// Every function on every bus reachable from bus 0.
pub fn enumerate() -> Vec<Function> {
    let mut found = Vec::new();
    // (bus, slot on bus 0 the bus hangs off, accumulated swizzle)
    let mut buses: Vec<(u8, Option<(u8, u8)>)> = alloc::vec![(0, None)];
    let mut seen = [false; 256];
    while let Some((bus, root)) = buses.pop() {
        if seen[bus as usize] {
            continue;
        }
        seen[bus as usize] = true;
        for device in 0..32u8 {
            let f0 = Bdf {
                bus,
                device,
                function: 0,
            };
            if read32(f0, 0) & 0xffff == 0xffff {
                continue;
            }
            let multi = (read32(f0, 0x0c) >> 16) & 0x80 != 0;
            for function in 0..if multi { 8 } else { 1 } {
                let bdf = Bdf {
                    bus,
                    device,
                    function,
                };
                let id = read32(bdf, 0);
                if id & 0xffff == 0xffff {
                    continue;
                }
                let header = (read32(bdf, 0x0c) >> 16) & 0x7f;
                if header == 1 {
                    // A PCI-to-PCI bridge: walk its secondary bus. INTx
                    // behind it is swizzled by device number on the way up.
                    let secondary = (read32(bdf, 0x18) >> 8) as u8;
                    let (root_slot, swizzle) = root.unwrap_or((device, 0));
                    let swizzle = if root.is_some() { swizzle + device } else { 0 };
                    if secondary != 0 {
                        buses.push((secondary, Some((root_slot, swizzle))));
                    }
                    continue;
                }
                if header != 0 {
                    continue;
                }
                let pin = (read32(bdf, 0x3c) >> 8) as u8;
                let gsi = match root {
                    None => q35_gsi(device, pin),
                    Some((slot, swizzle)) if (1..=4).contains(&pin) => {
                        let swizzled = (pin - 1 + device + swizzle) % 4 + 1;
                        q35_gsi(slot, swizzled)
                    }
                    Some(_) => None,
                };
                let (bars, bar_masks) = size_bars(bdf);
                found.push(Function {
                    bdf,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                    bars,
                    bar_masks,
                    gsi,
                });
            }
        }
    }
    found
}
