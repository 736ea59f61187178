//! ACPI soft-off (S5) through the PIIX4's power management function, for
//! machines without QEMU's isa-debug-exit: Bochs' i440FX (and QEMU's `pc`).
//!
//! The BIOS puts the PM registers in I/O space (PMBA, config 0x40) and
//! turns them on (PMIOSE, config 0x80 bit 0); writing SLP_EN with SLP_TYP
//! 0 (soft off, as the PIIX4 and the Bochs BIOS's DSDT `_S5` say) to
//! PM1a_CNT at PMBA + 4 powers the machine off. Bochs then exits, with
//! status 1 (`BX_FATAL` after "ACPI control: soft power off").

use super::cpu::outw;
use crate::device::pci::Bdf;

/// The PIIX4's power management function: vendor and device ID.
const PIIX4_PM_ID: u32 = 0x7113_8086;
const PMBA: u16 = 0x40;
const PMREGMISC: u16 = 0x80;
const PMIOSE: u32 = 1 << 0;
const PM1A_CNT: u16 = 0x04;
const SLP_EN: u16 = 1 << 13;
/// SLP_TYP (bits 10-12) for S5, soft off: 0.
const SLP_TYP_SOFT_OFF: u16 = 0;

/// Reads a function's configuration register on bus 0 without the PCI
/// lock: the machine is stopping with interrupts off, and the lock may
/// be held by the code that panicked.
fn config_read(device: u8, function: u8, offset: u16) -> u32 {
    let bdf = Bdf {
        bus: 0,
        device,
        function,
    };
    crate::device::pci::read32_unlocked(bdf, offset)
}

/// The PM I/O base the BIOS gave a PIIX4 on bus 0, if there is one with
/// its PM registers turned on.
fn pm_base() -> Option<u16> {
    for device in 0..32 {
        for function in 0..8 {
            if config_read(device, function, 0) != PIIX4_PM_ID {
                continue;
            }
            if config_read(device, function, PMREGMISC) & PMIOSE == 0 {
                return None;
            }
            let base = (config_read(device, function, PMBA) & 0xffc0) as u16;
            return (base != 0).then_some(base);
        }
    }
    None
}

/// Powers the machine off if it has a PIIX4 with its PM registers on;
/// returns if it has none (or the write did not take).
pub fn power_off() {
    if let Some(base) = pm_base() {
        outw(base + PM1A_CNT, SLP_TYP_SOFT_OFF | SLP_EN);
    }
}
