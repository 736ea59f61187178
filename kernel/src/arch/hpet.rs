//! The HPET's main counter, as the reference the TSC clock is disciplined
//! against (`clock::discipline`). Only its counter is used: no timers, no
//! interrupts. QEMU's q35 has one at the conventional address; microvm
//! has none (then the clock keeps its PIT calibration).

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use crate::mm::phys_to_virt;

const BASE: u64 = 0xfed0_0000;
const REG_CAPABILITIES: usize = 0x00;
const REG_CONFIG: usize = 0x10;
const REG_COUNTER: usize = 0xf0;
/// Capabilities: the main counter is 64 bits wide.
const COUNT_SIZE_64: u64 = 1 << 13;
/// Config: the main counter runs.
const ENABLE: u64 = 1;
/// The specification's longest tick: 100 ns, in femtoseconds.
const MAX_PERIOD_FS: u64 = 100_000_000;

/// Femtoseconds per counter tick; 0 without a usable HPET.
static PERIOD_FS: AtomicU64 = AtomicU64::new(0);

fn read(offset: usize) -> u64 {
    // SAFETY: the HPET's register block is MMIO in the direct map (the
    // first 4 GiB); `offset` is one of its 64-bit registers above.
    unsafe { ((phys_to_virt(BASE) + offset) as *const u64).read_volatile() }
}

fn write(offset: usize, value: u64) {
    // SAFETY: as for `read`.
    unsafe { ((phys_to_virt(BASE) + offset) as *mut u64).write_volatile(value) }
}

/// Finds the HPET and starts its counter; false if there is none with a
/// 64-bit counter (an absent one reads all ones or zeros).
pub fn init() -> bool {
    let caps = read(REG_CAPABILITIES);
    let period = caps >> 32;
    let vendor = (caps >> 16) & 0xffff;
    if caps == u64::MAX || period == 0 || period > MAX_PERIOD_FS || vendor == 0 {
        return false;
    }
    if caps & COUNT_SIZE_64 == 0 {
        log::info!("clock: the HPET's counter is 32 bits wide; not using it");
        return false;
    }
    write(REG_CONFIG, read(REG_CONFIG) | ENABLE);
    PERIOD_FS.store(period, Ordering::Relaxed);
    log::info!("clock: HPET at {} MHz", 1_000_000_000 / period);
    true
}

/// The main counter in nanoseconds (since it started).
pub fn now_ns() -> u64 {
    let period = PERIOD_FS.load(Ordering::Relaxed);
    ((read(REG_COUNTER) as u128 * period as u128) / 1_000_000) as u64
}
