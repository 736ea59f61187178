//! Garbage descriptor tables: random LDT entries (modify_ldt(2), the one
//! descriptor table user space can write), and random selectors loaded into
//! DS, ES and GS around a VM exit, so that the VMM and the kernel's vCPU
//! code see whatever segment state that leaves (a selector the CPU refuses
//! raises #GP or #NP, which the handler in `hw` survives and counts).

use super::hw;
use super::hw::SegReg;
use super::hw::UserDesc;

/// LDT entries written (of 8192): few, so that random selectors often name
/// one of them.
pub const ENTRIES: u32 = 16;

/// A random LDT entry from two random words: any base, limit and flags.
pub fn random_entry(x: u64, y: u64) -> UserDesc {
    UserDesc {
        entry_number: (x % u64::from(ENTRIES)) as u32,
        base_addr: (x >> 32) as u32,
        limit: (y as u32) & 0xf_ffff,
        flags: (y >> 32) as u32 & 0xff,
    }
}

/// A selector from a random word: mostly LDT entries we wrote (TI = 1, any
/// RPL), else any 16-bit value (GDT entries, null, beyond the tables).
pub fn random_selector(x: u64) -> u16 {
    if x.is_multiple_of(4) {
        (x >> 16) as u16
    } else {
        let index = ((x >> 8) % u64::from(ENTRIES)) as u16;
        (index << 3) | 0b100 | ((x >> 4) & 3) as u16
    }
}

pub fn random_register(x: u64) -> SegReg {
    [SegReg::Ds, SegReg::Es, SegReg::Gs][(x % 3) as usize]
}

/// Loads `selector` into `reg`, runs `exit` (a VM exit) with it loaded, and
/// puts the flat null selector back. Returns whether the load faulted.
pub fn with_selector(reg: SegReg, selector: u16, exit: impl FnOnce()) -> bool {
    let before = hw::segment_faults();
    hw::load_segment(reg, selector);
    exit();
    hw::load_segment(reg, 0);
    hw::segment_faults() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_mostly_name_written_entries() {
        let ldt = (0..1000u64)
            .map(|i| random_selector(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .filter(|s| s & 0b100 != 0 && (s >> 3) < ENTRIES as u16)
            .count();
        assert!(ldt > 700, "{ldt}");
        let e = random_entry(u64::MAX, u64::MAX);
        assert_eq!((e.entry_number, e.limit, e.flags), (15, 0xf_ffff, 0xff));
    }
}
