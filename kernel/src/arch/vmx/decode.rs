//! Pure decoding for the VMX backend: exit qualifications, segment access
//! rights, and the capability MSRs' allowed settings. No hardware access,
//! so all of it is unit-tested on the host.

use starina::abi::vcpu::Access;

/// Basic exit reasons (SDM vol. 3, appendix C) the backend tells apart.
pub mod reason {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const SIPI: u16 = 4;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const NMI_WINDOW: u16 = 8;
    pub const CPUID: u16 = 10;
    pub const GETSEC: u16 = 11;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const VMCALL: u16 = 18;
    /// VMCLEAR .. VMXON: 19..=27.
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MSR_LOADING: u16 = 34;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const MACHINE_CHECK: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const XSETBV: u16 = 55;
    pub const VMFUNC: u16 = 59;
}

/// An I/O instruction's exit qualification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoQualification {
    pub port: u16,
    pub size: u8,
    pub access: Access,
    pub string: bool,
    pub rep: bool,
}

pub fn io(qualification: u64) -> IoQualification {
    IoQualification {
        port: (qualification >> 16) as u16,
        // Bits 2:0 hold size - 1 (0, 1 or 3).
        size: (qualification & 7) as u8 + 1,
        access: if qualification & (1 << 3) != 0 {
            Access::Read
        } else {
            Access::Write
        },
        string: qualification & (1 << 4) != 0,
        rep: qualification & (1 << 5) != 0,
    }
}

/// What an EPT violation's qualification says about the access.
pub fn ept_violation(qualification: u64) -> (Access, bool) {
    let access = if qualification & 2 != 0 {
        Access::Write
    } else {
        Access::Read
    };
    (access, qualification & 4 != 0)
}

/// A control-register access (exit reason 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR`cr` from the general-purpose register `gpr` (the
    /// `VcpuState::gprs` index: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..).
    MovTo {
        cr: u8,
        gpr: u8,
    },
    MovFrom {
        cr: u8,
        gpr: u8,
    },
    Clts,
    /// LMSW with this 16-bit source.
    Lmsw {
        source: u16,
    },
}

pub fn cr_access(qualification: u64) -> CrAccess {
    let cr = (qualification & 0xf) as u8;
    let gpr = ((qualification >> 8) & 0xf) as u8;
    match (qualification >> 4) & 3 {
        0 => CrAccess::MovTo { cr, gpr },
        1 => CrAccess::MovFrom { cr, gpr },
        2 => CrAccess::Clts,
        _ => CrAccess::Lmsw {
            source: (qualification >> 16) as u16,
        },
    }
}

/// Access rights: the segment is unusable (bit 16).
pub const AR_UNUSABLE: u32 = 1 << 16;
/// Descriptor attributes: present (bit 7 of both layouts).
const PRESENT: u16 = 1 << 7;

/// VMX access rights for a segment in the packed 12-bit attribute layout
/// of [`starina::abi::vcpu::Segment`] (descriptor bits 40..47 and
/// 52..55). A segment that is not present is unusable; its other bits
/// stay, since VMX keeps SS.DPL (the CPL) even in an unusable SS.
pub fn access_rights(attrib: u16) -> u32 {
    let ar = (attrib as u32 & 0xff) | ((attrib as u32 & 0xf00) << 4);
    if attrib & PRESENT == 0 {
        ar | AR_UNUSABLE
    } else {
        ar
    }
}

/// The packed attributes for VMX access rights (the inverse of
/// [`access_rights`]): an unusable segment reads as not present.
pub fn attributes(ar: u32) -> u16 {
    let attrib = ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16;
    if ar & AR_UNUSABLE != 0 {
        attrib & !PRESENT
    } else {
        attrib
    }
}

/// A control field's value from the bits wanted, the bits wanted if the
/// CPU allows them, and the capability MSR (low half: bits that must be
/// 1, high half: bits that may be 1). `None` if a required bit is not
/// allowed.
pub fn controls(required: u32, optional: u32, capability: u64) -> Option<u32> {
    let must = capability as u32;
    let may = (capability >> 32) as u32;
    if required & !may != 0 {
        return None;
    }
    Some(must | required | (optional & may))
}

/// A guest control register's real value, the read shadow and the mask
/// of host-owned bits, from what the guest wants and the CPU's fixed
/// bits (IA32_VMX_CR*_FIXED0: must be 1; FIXED1: may be 1). `free` are
/// bits exempt from FIXED0 (PE and PG with unrestricted guests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadowed {
    pub real: u64,
    pub shadow: u64,
    pub mask: u64,
}

pub fn shadowed(wanted: u64, fixed0: u64, fixed1: u64, free: u64) -> Shadowed {
    let must = fixed0 & !free;
    Shadowed {
        real: (wanted | must) & fixed1,
        shadow: wanted,
        mask: must | !fixed1,
    }
}

/// What the guest reads: its shadow in host-owned bits, the real value
/// elsewhere.
pub fn guest_view(real: u64, shadow: u64, mask: u64) -> u64 {
    (real & !mask) | (shadow & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_qualification() {
        // `out 0x3f8, al`: port 0x3f8, 1 byte, out, immediate operand.
        let q = io((0x3f8 << 16) | (1 << 6));
        assert_eq!(
            q,
            IoQualification {
                port: 0x3f8,
                size: 1,
                access: Access::Write,
                string: false,
                rep: false
            }
        );
        // `rep insw` from port 0x1f0.
        let q = io((0x1f0 << 16) | (1 << 5) | (1 << 4) | (1 << 3) | 1);
        assert_eq!(
            (q.port, q.size, q.access, q.string, q.rep),
            (0x1f0, 2, Access::Read, true, true)
        );
        // `in eax, dx`.
        assert_eq!(io(3 | (1 << 3)).size, 4);
    }

    #[test]
    fn ept_violation_qualification() {
        assert_eq!(ept_violation(1), (Access::Read, false));
        assert_eq!(ept_violation(2 | (1 << 7)), (Access::Write, false));
        assert_eq!(ept_violation(4), (Access::Read, true));
    }

    #[test]
    fn cr_access_qualification() {
        // mov cr4, rax
        assert_eq!(cr_access(4), CrAccess::MovTo { cr: 4, gpr: 0 });
        // mov rbx, cr3
        assert_eq!(
            cr_access(3 | (1 << 4) | (3 << 8)),
            CrAccess::MovFrom { cr: 3, gpr: 3 }
        );
        // mov cr0, r15
        assert_eq!(cr_access(15 << 8), CrAccess::MovTo { cr: 0, gpr: 15 });
        assert_eq!(cr_access(2 << 4), CrAccess::Clts);
        assert_eq!(
            cr_access((3 << 4) | (0x0011 << 16)),
            CrAccess::Lmsw { source: 0x11 }
        );
    }

    #[test]
    fn access_rights_round_trip() {
        // 64-bit code (G, L, P, S, type 0xb), flat data, busy TSS.
        for attrib in [0xa9bu16, 0xc93, 0x08b, 0x0f3] {
            assert_eq!(attributes(access_rights(attrib)), attrib);
        }
        assert_eq!(access_rights(0xa9b), 0xa09b);
        assert_eq!(access_rights(0xc93), 0xc093);
        // A null segment is unusable and stays not present.
        assert_eq!(access_rights(0), AR_UNUSABLE);
        assert_eq!(attributes(AR_UNUSABLE), 0);
        // An unusable SS keeps its DPL (the guest's CPL).
        let ss = access_rights(0x60);
        assert_eq!(ss & AR_UNUSABLE, AR_UNUSABLE);
        assert_eq!((attributes(ss) >> 5) & 3, 3);
        assert_eq!(attributes(0x1_00f3) & PRESENT, 0);
    }

    #[test]
    fn controls_respect_the_capability() {
        // Must-be-one 0x16, may-be-one 0xff16 (bits 1, 2, 4, 8-15).
        let cap = (0xff16u64 << 32) | 0x16;
        assert_eq!(controls(0x100, 0, cap), Some(0x116));
        // An optional bit the CPU lacks is left out; a required one fails.
        assert_eq!(controls(0, 0x8001, cap), Some(0x8016));
        assert_eq!(controls(0x20, 0, cap), None);
        assert_eq!(controls(0, 0x8000_0100, cap), Some(0x116));
    }

    #[test]
    fn control_registers_keep_the_guest_view() {
        const PE: u64 = 1;
        const NE: u64 = 1 << 5;
        const PG: u64 = 1 << 31;
        // Fixed0 PE|NE|PG, unrestricted guest: only NE is forced.
        let fixed1 = 0xffff_ffff;
        let s = shadowed(PE | PG, PE | NE | PG, fixed1, PE | PG);
        assert_eq!(s.real, PE | NE | PG);
        assert_eq!(s.mask & NE, NE);
        assert_eq!(guest_view(s.real, s.shadow, s.mask), PE | PG);
        // Real mode stays real mode.
        let s = shadowed(0, PE | NE | PG, fixed1, PE | PG);
        assert_eq!(s.real, NE);
        assert_eq!(guest_view(s.real, s.shadow, s.mask), 0);
        // CR4: VMXE forced and hidden; bits above FIXED1 owned by the host.
        const VMXE: u64 = 1 << 13;
        let s = shadowed(0x6f0, VMXE, 0x37_67ff, 0);
        assert_eq!(s.real, 0x6f0 | VMXE);
        assert_eq!(guest_view(s.real, s.shadow, s.mask), 0x6f0);
        assert_ne!(s.mask & (1 << 12), 0);
    }
}
