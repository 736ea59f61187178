//! What a guest's XSETBV may do: the architectural checks (AMD APM vol. 3
//! "XSETBV", Intel SDM vol. 2 "XSETBV" and vol. 1 13.3) applied to the value
//! and the vCPU's state when the instruction was intercepted, plus the
//! mask of components a VMM may offer. Pure functions: the hardware side is
//! in `xstate` and `svm`.

use starina::abi::vcpu::xcr0::consistent;
use starina::abi::vcpu::xcr0::X87;

/// The fault the CPU would raise for an XSETBV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// #UD: CR4.OSXSAVE is clear.
    InvalidOpcode,
    /// #GP(0): CPL > 0, an XCR other than XCR0, or a value breaking a rule.
    GeneralProtection,
}

impl Fault {
    pub fn vector(self) -> u8 {
        match self {
            Fault::InvalidOpcode => 6,
            Fault::GeneralProtection => 13,
        }
    }

    pub fn error_code(self) -> Option<u32> {
        match self {
            Fault::InvalidOpcode => None,
            Fault::GeneralProtection => Some(0),
        }
    }
}

/// The guest's state at the intercepted XSETBV.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    pub cpl: u8,
    pub cr4_osxsave: bool,
    /// The XCR0 bits this vCPU may enable (see [`may_offer`]).
    pub allowed: u64,
}

/// The XCR0 an `XSETBV` with ECX from `rcx` and EDX:EAX = `value` sets, or
/// the fault it raises instead. The SVM intercept comes before the CPL
/// check (QEMU's TCG and AMD hardware agree), so CPL is checked here.
pub fn xsetbv(guest: &Guest, rcx: u64, value: u64) -> Result<u64, Fault> {
    if !guest.cr4_osxsave {
        return Err(Fault::InvalidOpcode);
    }
    if guest.cpl != 0 {
        return Err(Fault::GeneralProtection);
    }
    // Only ECX counts (the upper half of RCX is ignored); only XCR0 exists.
    if rcx as u32 != 0 || !valid(value, guest.allowed) {
        return Err(Fault::GeneralProtection);
    }
    Ok(value)
}

/// Whether `value` is an XCR0 the architecture accepts with only the
/// `allowed` components present: x87 set, AVX only with SSE, the AVX-512
/// components all or none and only with AVX, both MPX components or none.
pub fn valid(value: u64, allowed: u64) -> bool {
    value & X87 != 0 && value & !allowed == 0 && consistent(value) == value
}

/// Whether a VMM may offer `requested` given `switchable`, what the kernel
/// can switch on this CPU: a consistent subset that includes x87.
pub fn may_offer(requested: u64, switchable: u64) -> bool {
    requested & X87 != 0 && requested & !switchable == 0 && consistent(requested) == requested
}

/// The XCR0 to keep for a guest that changed XCR0 without the intercept
/// firing (a CPU that does not honor it): `seen` if the rules allow it,
/// else the largest valid value inside it.
pub fn adopt(seen: u64, allowed: u64) -> u64 {
    if valid(seen, allowed) {
        seen
    } else {
        consistent(seen & allowed)
    }
}

#[cfg(test)]
mod tests {
    use starina::abi::vcpu::xcr0::*;

    use super::*;

    const ALL: u64 = X87 | SSE | AVX | AVX512;

    fn ring0(allowed: u64) -> Guest {
        Guest {
            cpl: 0,
            cr4_osxsave: true,
            allowed,
        }
    }

    #[test]
    fn accepts_what_linux_sets() {
        assert_eq!(xsetbv(&ring0(ALL), 0, X87 | SSE | AVX), Ok(X87 | SSE | AVX));
        assert_eq!(xsetbv(&ring0(ALL), 0, ALL), Ok(ALL));
        assert_eq!(xsetbv(&ring0(ALL), 0, X87), Ok(X87));
        assert_eq!(xsetbv(&ring0(X87 | SSE), 0, X87 | SSE), Ok(X87 | SSE));
    }

    #[test]
    fn ud_without_osxsave_comes_first() {
        let g = Guest {
            cpl: 3,
            cr4_osxsave: false,
            allowed: ALL,
        };
        assert_eq!(xsetbv(&g, 5, 0), Err(Fault::InvalidOpcode));
        assert_eq!(Fault::InvalidOpcode.vector(), 6);
        assert_eq!(Fault::InvalidOpcode.error_code(), None);
    }

    #[test]
    fn gp_outside_ring0_even_for_a_good_value() {
        for cpl in 1..=3 {
            let g = Guest {
                cpl,
                cr4_osxsave: true,
                allowed: ALL,
            };
            assert_eq!(xsetbv(&g, 0, X87 | SSE), Err(Fault::GeneralProtection));
        }
        assert_eq!(Fault::GeneralProtection.vector(), 13);
        assert_eq!(Fault::GeneralProtection.error_code(), Some(0));
    }

    #[test]
    fn only_xcr0_exists_and_rcx_high_half_is_ignored() {
        let g = ring0(ALL);
        assert_eq!(xsetbv(&g, 1, X87 | SSE), Err(Fault::GeneralProtection));
        assert_eq!(
            xsetbv(&g, 0xffff_ffff, X87 | SSE),
            Err(Fault::GeneralProtection)
        );
        assert_eq!(xsetbv(&g, 0xdead_0000_0000, X87 | SSE), Ok(X87 | SSE));
    }

    #[test]
    fn architectural_rules() {
        let g = ring0(ALL);
        let gp = Err(Fault::GeneralProtection);
        assert_eq!(xsetbv(&g, 0, 0), gp, "x87 cannot be disabled");
        assert_eq!(xsetbv(&g, 0, SSE | AVX), gp, "x87 cannot be disabled");
        assert_eq!(xsetbv(&g, 0, X87 | AVX), gp, "AVX needs SSE");
        assert_eq!(
            xsetbv(&g, 0, X87 | SSE | OPMASK | AVX),
            gp,
            "AVX-512 all or none"
        );
        assert_eq!(xsetbv(&g, 0, X87 | SSE | AVX | ZMM_HI256 | HI16_ZMM), gp);
        assert_eq!(xsetbv(&g, 0, X87 | SSE | AVX512), gp, "AVX-512 needs AVX");
        assert_eq!(xsetbv(&g, 0, X87 | AVX | AVX512), gp, "AVX needs SSE");
    }

    #[test]
    fn nothing_outside_the_allowed_mask() {
        let gp = Err(Fault::GeneralProtection);
        let g = ring0(X87 | SSE | AVX);
        assert_eq!(xsetbv(&g, 0, ALL), gp, "AVX-512 hidden by CPUID");
        assert_eq!(xsetbv(&g, 0, X87 | SSE | PKRU), gp);
        assert_eq!(xsetbv(&g, 0, X87 | MPX_BNDREGS | MPX_BNDCSR), gp);
        assert_eq!(xsetbv(&g, 0, u64::MAX), gp);
        assert_eq!(xsetbv(&g, 0, 1 << 63 | X87), gp);
        assert_eq!(xsetbv(&g, 0, 0xdead_beef), gp, "garbage");
        assert_eq!(xsetbv(&ring0(X87), 0, X87 | SSE), gp);
    }

    #[test]
    fn exhaustive_low_byte_matches_the_rules() {
        // Every value over the low 10 bits: accepted exactly when each rule
        // holds, written out independently of `consistent`.
        for v in 0u64..1024 {
            let bit = |b: u64| v & b != 0;
            let avx512 = v & AVX512;
            let ok = bit(X87)
                && (!bit(AVX) || bit(SSE))
                && (avx512 == 0 || (avx512 == AVX512 && bit(AVX)))
                && v & !ALL == 0;
            assert_eq!(xsetbv(&ring0(ALL), 0, v).is_ok(), ok, "xcr0 {v:#x}");
        }
    }

    #[test]
    fn allowed_masks_a_vmm_may_set() {
        assert!(may_offer(X87 | SSE | AVX, ALL));
        assert!(may_offer(X87, ALL));
        assert!(!may_offer(SSE | AVX, ALL), "no x87");
        assert!(!may_offer(ALL, X87 | SSE | AVX), "more than switchable");
        assert!(!may_offer(X87 | SSE | OPMASK, ALL), "inconsistent");
        assert!(!may_offer(X87 | SSE | PKRU, ALL));
    }

    #[test]
    fn adopting_an_unintercepted_value_stays_valid() {
        let allowed = X87 | SSE | AVX;
        assert_eq!(adopt(X87 | SSE | AVX, allowed), X87 | SSE | AVX);
        assert_eq!(adopt(X87 | SSE | AVX | PKRU, allowed), X87 | SSE | AVX);
        assert_eq!(adopt(ALL, allowed), X87 | SSE | AVX);
        assert_eq!(adopt(X87 | SSE | AVX, X87 | SSE), X87 | SSE);
        for seen in 0u64..1024 {
            assert!(valid(adopt(seen | X87, allowed), allowed), "{seen:#x}");
        }
    }
}
