//! CPUID policy: what the guest learns about its CPU.
//!
//! The guest sees the host's CPUID (passed in as a function, since only the
//! kernel can execute CPUID on the host) filtered so that Linux uses only
//! what the VMM really provides: no nested virtualization (SVM/VMX), no
//! performance counters, no machine check, no MTRRs, no speculation-control
//! MSRs (each would be an MSR the VMM must emulate), one CPU, and the
//! hypervisor bit set. The hypervisor leaves at 0x4000_0000 say "StarinaVMM"
//! unless the VMM implements kvm-clock, in which case they say "KVMKVMKVM"
//! so Linux enables it (and the invariant-TSC bit is hidden, so Linux
//! keeps kvm-clock rather than preferring the raw TSC).
//!
//! XSAVE (leaf 0xD, and the AVX/AVX-512 feature bits) offers exactly
//! [`CpuidPolicy::xcr0_mask`]: the VMM hands the same mask to the kernel
//! (`VcpuControl::Xcr0Allowed`), whose XSETBV handler enforces it, and the
//! sizes follow the guest's current XCR0 (`VcpuState::xcr0`).

use crate::exit::cr;
use crate::exit::xcr0;

/// One CPUID answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// "StarinaVMM\0\0" in EBX, ECX, EDX order.
pub const STARINA_SIGNATURE: [u8; 12] = *b"StarinaVMM\0\0";
/// "KVMKVMKVM\0\0\0".
pub const KVM_SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";

/// KVM paravirt feature bits (leaf 0x4000_0001 EAX).
pub const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
pub const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;

/// Which paravirtual interface the VMM offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paravirt {
    /// Only a signature: Linux treats us as an unknown hypervisor.
    None,
    /// KVM signature with these leaf 0x4000_0001 EAX features (the VMM must
    /// then emulate the matching MSRs, e.g. kvm-clock).
    Kvm { features: u32 },
}

/// CPUID filtering policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidPolicy {
    /// Whether the VMM emulates a local APIC (xAPIC). Option A of the
    /// platform notes (8259 PIC + PIT) has none: the APIC bit is cleared, so
    /// Linux does not even need `nolapic`.
    pub lapic: bool,
    /// Whether x2APIC is emulated (MSR-based APIC access).
    pub x2apic: bool,
    pub paravirt: Paravirt,
    /// Reported TSC frequency in kHz for leaf 0x4000_0010, if known
    /// (VMware-style timing leaf, read by Linux on some hypervisors).
    pub tsc_khz: Option<u32>,
}

impl Default for CpuidPolicy {
    fn default() -> Self {
        Self {
            lapic: false,
            x2apic: false,
            paravirt: Paravirt::None,
            tsc_khz: None,
        }
    }
}

const fn bit(n: u32) -> u32 {
    1 << n
}

// Leaf 1 ECX.
const L1_ECX_MONITOR: u32 = bit(3);
const L1_ECX_VMX: u32 = bit(5);
const L1_ECX_SMX: u32 = bit(6);
const L1_ECX_EST: u32 = bit(7);
const L1_ECX_TM2: u32 = bit(8);
const L1_ECX_FMA: u32 = bit(12);
const L1_ECX_PDCM: u32 = bit(15);
const L1_ECX_X2APIC: u32 = bit(21);
const L1_ECX_TSC_DEADLINE: u32 = bit(24);
const L1_ECX_XSAVE: u32 = bit(26);
const L1_ECX_OSXSAVE: u32 = bit(27);
const L1_ECX_AVX: u32 = bit(28);
const L1_ECX_F16C: u32 = bit(29);
const L1_ECX_HYPERVISOR: u32 = bit(31);
// Leaf 1 EDX.
const L1_EDX_MCE: u32 = bit(7);
const L1_EDX_APIC: u32 = bit(9);
const L1_EDX_MTRR: u32 = bit(12);
const L1_EDX_MCA: u32 = bit(14);
const L1_EDX_ACPI: u32 = bit(22);
const L1_EDX_HTT: u32 = bit(28);
const L1_EDX_TM: u32 = bit(29);
const L1_EDX_PBE: u32 = bit(31);
// Leaf 7.0 EBX: AVX2, and AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL.
const L7_EBX_AVX2: u32 = bit(5);
const L7_EBX_AVX512: u32 =
    bit(16) | bit(17) | bit(21) | bit(26) | bit(27) | bit(28) | bit(30) | bit(31);
// Leaf 7.0 ECX: VEX-encoded VAES/VPCLMULQDQ; AVX512 VBMI, VBMI2, VNNI,
// BITALG, VPOPCNTDQ. EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, FP16.
const L7_ECX_VEX: u32 = bit(9) | bit(10);
const L7_ECX_AVX512: u32 = bit(1) | bit(6) | bit(11) | bit(12) | bit(14);
const L7_EDX_AVX512: u32 = bit(2) | bit(3) | bit(8) | bit(23);
// Leaf 0xD.1 EAX.
const D1_EAX_XSAVEOPT: u32 = bit(0);
const D1_EAX_XSAVEC: u32 = bit(1);
const D1_EAX_XGETBV1: u32 = bit(2);
/// The legacy region and the XSAVE header.
const XSAVE_LEGACY_BYTES: u32 = 576;
// Leaf 7.0 ECX / EDX.
const L7_ECX_WAITPKG: u32 = bit(5);
const L7_ECX_PKU: u32 = bit(3);
const L7_ECX_OSPKE: u32 = bit(4);
const L7_ECX_LA57: u32 = bit(16);
const L7_EDX_HYBRID: u32 = bit(15);
const L7_EDX_SPEC_CTRL: u32 = bit(26);
const L7_EDX_STIBP: u32 = bit(27);
const L7_EDX_FLUSH_L1D: u32 = bit(28);
const L7_EDX_ARCH_CAPABILITIES: u32 = bit(29);
const L7_EDX_CORE_CAPABILITIES: u32 = bit(30);
const L7_EDX_SSBD: u32 = bit(31);
// Leaf 0x8000_0001 ECX.
const E1_ECX_CMP_LEGACY: u32 = bit(1);
const E1_ECX_SVM: u32 = bit(2);
const E1_ECX_EXTAPIC: u32 = bit(3);
const E1_ECX_IBS: u32 = bit(10);
const E1_ECX_SKINIT: u32 = bit(12);
const E1_ECX_WDT: u32 = bit(13);
const E1_ECX_LWP: u32 = bit(15);
const E1_ECX_TOPOEXT: u32 = bit(22);
const E1_ECX_PERFCTR_CORE: u32 = bit(23);
const E1_ECX_PERFCTR_NB: u32 = bit(24);
const E1_ECX_PERFCTR_LLC: u32 = bit(28);
/// MONITORX/MWAITX: intercepted with MONITOR/MWAIT (a #UD), so not
/// offered (Linux's delay loop would use them on AMD).
const E1_ECX_MWAITX: u32 = bit(29);
// Leaf 0x8000_0007 EDX.
const E7_EDX_INVARIANT_TSC: u32 = bit(8);
// Leaf 0x8000_0008 EBX: IBPB, IBRS, STIBP, SSBD and friends (12..=26).
const E8_EBX_SPEC_MASK: u32 = 0x07ff_f000;

impl CpuidPolicy {
    /// The guest's answer for `(leaf, subleaf)`. `host` executes CPUID on the
    /// host; `guest_cr4` is the guest's CR4 (OSXSAVE/OSPKE mirror it) and
    /// `guest_xcr0` its XCR0 (leaf 0xD sizes follow it).
    pub fn cpuid(
        &self,
        leaf: u32,
        subleaf: u32,
        guest_cr4: u64,
        guest_xcr0: u64,
        host: &dyn Fn(u32, u32) -> CpuidResult,
    ) -> CpuidResult {
        if (0x4000_0000..0x5000_0000).contains(&leaf) {
            return self.hypervisor_leaf(leaf);
        }
        // Leaves beyond the maximum read as zero (the AMD behavior; Intel
        // repeats the last basic leaf, which only confuses).
        let max_basic = host(0, 0).eax;
        let max_ext = host(0x8000_0000, 0).eax;
        let in_range = if leaf >= 0x8000_0000 {
            leaf <= max_ext
        } else {
            leaf <= max_basic
        };
        if !in_range {
            return CpuidResult::default();
        }
        let mut r = host(leaf, subleaf);
        match leaf {
            1 => {
                r.ecx &= !(L1_ECX_MONITOR
                    | L1_ECX_VMX
                    | L1_ECX_SMX
                    | L1_ECX_EST
                    | L1_ECX_TM2
                    | L1_ECX_PDCM
                    | L1_ECX_TSC_DEADLINE
                    | L1_ECX_OSXSAVE);
                if self.x2apic {
                    // Emulated through MSR exits, whatever the host has;
                    // its timer offers the TSC-deadline mode.
                    r.ecx |= L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE;
                } else {
                    r.ecx &= !L1_ECX_X2APIC;
                }
                if guest_cr4 & cr::CR4_OSXSAVE != 0 {
                    r.ecx |= L1_ECX_OSXSAVE;
                }
                if self.xcr0_mask(host) & xcr0::AVX == 0 {
                    r.ecx &= !(L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C);
                }
                r.ecx |= L1_ECX_HYPERVISOR;
                r.edx &= !(L1_EDX_MCE
                    | L1_EDX_MCA
                    | L1_EDX_MTRR
                    | L1_EDX_ACPI
                    | L1_EDX_HTT
                    | L1_EDX_TM
                    | L1_EDX_PBE);
                if !self.lapic {
                    r.edx &= !L1_EDX_APIC;
                }
                // APIC ID 0, one logical processor, keep CLFLUSH size and
                // brand index.
                r.ebx = (r.ebx & 0xffff) | (1 << 16);
            }
            // Cache/topology leaves describing several cores or threads: one
            // CPU here.
            4 => {
                r.eax &= 0x3ff; // cache type/level fields; no cores/threads sharing
            }
            // Thermal/power, PMU, topology, platform QoS, SGX, Intel PT,
            // hybrid: not offered.
            5 | 6 | 0xa | 0xb | 0xf | 0x10 | 0x12 | 0x14 | 0x1a | 0x1f => {
                r = CpuidResult::default();
            }
            7 if subleaf == 0 => {
                r.ecx &= !(L7_ECX_WAITPKG | L7_ECX_PKU | L7_ECX_OSPKE | L7_ECX_LA57);
                r.edx &= !(L7_EDX_HYBRID
                    | L7_EDX_SPEC_CTRL
                    | L7_EDX_STIBP
                    | L7_EDX_FLUSH_L1D
                    | L7_EDX_ARCH_CAPABILITIES
                    | L7_EDX_CORE_CAPABILITIES
                    | L7_EDX_SSBD);
                let mask = self.xcr0_mask(host);
                if mask & xcr0::AVX == 0 {
                    r.ebx &= !L7_EBX_AVX2;
                    r.ecx &= !L7_ECX_VEX;
                }
                if mask & xcr0::AVX512 == 0 {
                    r.ebx &= !L7_EBX_AVX512;
                    r.ecx &= !L7_ECX_AVX512;
                    r.edx &= !L7_EDX_AVX512;
                }
            }
            0xd => r = self.xsave_leaf(subleaf, guest_xcr0, host),
            0x8000_0001 => {
                r.ecx &= !(E1_ECX_CMP_LEGACY
                    | E1_ECX_SVM
                    | E1_ECX_EXTAPIC
                    | E1_ECX_IBS
                    | E1_ECX_SKINIT
                    | E1_ECX_WDT
                    | E1_ECX_LWP
                    | E1_ECX_TOPOEXT
                    | E1_ECX_PERFCTR_CORE
                    | E1_ECX_PERFCTR_NB
                    | E1_ECX_PERFCTR_LLC
                    | E1_ECX_MWAITX);
            }
            0x8000_0007 => {
                // Keep only the invariant TSC bit: power management is ours.
                // With kvm-clock it goes too: Linux would then prefer the
                // raw TSC, which cannot follow the host clock's
                // discipline (as QEMU/KVM hide it unless asked).
                let keep = match self.paravirt {
                    Paravirt::None => E7_EDX_INVARIANT_TSC,
                    Paravirt::Kvm { .. } => 0,
                };
                r = CpuidResult {
                    edx: r.edx & keep,
                    ..Default::default()
                };
            }
            0x8000_0008 => {
                r.ebx &= !E8_EBX_SPEC_MASK;
                r.ecx = 0; // one core
            }
            // SVM features, and AMD topology/extended APIC IDs.
            0x8000_000a | 0x8000_001e => r = CpuidResult::default(),
            _ => {}
        }
        r
    }

    /// The XCR0 bits the guest may enable: what the host supports (leaf
    /// 0xD) that the kernel can switch, made consistent. The VMM gives the
    /// kernel this mask (`VcpuControl::Xcr0Allowed`).
    pub fn xcr0_mask(&self, host: &dyn Fn(u32, u32) -> CpuidResult) -> u64 {
        if host(0, 0).eax < 0xd || host(1, 0).ecx & L1_ECX_XSAVE == 0 {
            return xcr0::X87;
        }
        let r = host(0xd, 0);
        let supported = (r.edx as u64) << 32 | r.eax as u64;
        xcr0::consistent(supported & xcr0::SWITCHABLE)
    }

    /// Leaf 0xD: the offered components, their sizes and offsets as the
    /// host reports them, and the area sizes for the guest's XCR0. No
    /// XSAVES/XFD: no IA32_XSS or XFD MSRs are emulated.
    fn xsave_leaf(
        &self,
        subleaf: u32,
        guest_xcr0: u64,
        host: &dyn Fn(u32, u32) -> CpuidResult,
    ) -> CpuidResult {
        let mask = self.xcr0_mask(host);
        let enabled = guest_xcr0 & mask;
        match subleaf {
            0 => CpuidResult {
                eax: mask as u32,
                ebx: standard_size(enabled, host),
                ecx: standard_size(mask, host),
                edx: (mask >> 32) as u32,
            },
            1 => {
                let eax = host(0xd, 1).eax & (D1_EAX_XSAVEOPT | D1_EAX_XSAVEC | D1_EAX_XGETBV1);
                CpuidResult {
                    eax,
                    ebx: if eax & D1_EAX_XSAVEC != 0 {
                        compacted_size(enabled, host)
                    } else {
                        0
                    },
                    ..Default::default()
                }
            }
            i @ 2..=63 if mask & (1 << i) != 0 => host(0xd, i),
            _ => CpuidResult::default(),
        }
    }

    fn hypervisor_leaf(&self, leaf: u32) -> CpuidResult {
        let (sig, max) = match self.paravirt {
            Paravirt::None => (STARINA_SIGNATURE, 0x4000_0000),
            Paravirt::Kvm { .. } => (KVM_SIGNATURE, 0x4000_0001),
        };
        let max = if self.tsc_khz.is_some() {
            0x4000_0010
        } else {
            max
        };
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        match leaf {
            0x4000_0000 => CpuidResult {
                eax: max,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            },
            0x4000_0001 => match self.paravirt {
                Paravirt::Kvm { features } => CpuidResult {
                    eax: features,
                    ..Default::default()
                },
                Paravirt::None => CpuidResult::default(),
            },
            0x4000_0010 => CpuidResult {
                eax: self.tsc_khz.unwrap_or(0),
                ..Default::default()
            },
            _ => CpuidResult::default(),
        }
    }
}

/// Extended components in `mask` (bits 2..=63), as CPUID 0xD subleaves.
fn extended_components(mask: u64) -> impl Iterator<Item = u32> {
    (2..64).filter(move |i| mask & (1 << i) != 0)
}

/// XSAVE standard-format size for `mask`: past the last component's end.
fn standard_size(mask: u64, host: &dyn Fn(u32, u32) -> CpuidResult) -> u32 {
    extended_components(mask)
        .map(|i| {
            let c = host(0xd, i);
            c.ebx.saturating_add(c.eax)
        })
        .fold(XSAVE_LEGACY_BYTES, u32::max)
}

/// XSAVEC compacted size for `mask`: components packed in order, each
/// aligned to 64 bytes where subleaf i ECX bit 1 asks.
fn compacted_size(mask: u64, host: &dyn Fn(u32, u32) -> CpuidResult) -> u32 {
    extended_components(mask).fold(XSAVE_LEGACY_BYTES, |end, i| {
        let c = host(0xd, i);
        let start = if c.ecx & 2 != 0 {
            end.saturating_add(63) & !63
        } else {
            end
        };
        start.saturating_add(c.eax)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that sets every bit, with generous maximum leaves.
    fn host(leaf: u32, _sub: u32) -> CpuidResult {
        match leaf {
            0 => CpuidResult {
                eax: 0x10,
                ebx: u32::from_le_bytes(*b"Auth"),
                ecx: u32::from_le_bytes(*b"cAMD"),
                edx: u32::from_le_bytes(*b"enti"),
            },
            0x8000_0000 => CpuidResult {
                eax: 0x8000_0021,
                ..Default::default()
            },
            _ => CpuidResult {
                eax: !0,
                ebx: !0,
                ecx: !0,
                edx: !0,
            },
        }
    }

    #[test]
    fn hides_virtualization_and_sets_hypervisor_bit() {
        let p = CpuidPolicy::default();
        let l1 = p.cpuid(1, 0, 0, xcr0::X87, &host);
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.ecx & (L1_ECX_VMX | L1_ECX_X2APIC | L1_ECX_OSXSAVE), 0);
        assert_eq!(l1.edx & (L1_EDX_APIC | L1_EDX_MTRR | L1_EDX_MCE), 0);
        assert_eq!(l1.ebx >> 16, 1, "one logical CPU, APIC ID 0");
        let e1 = p.cpuid(0x8000_0001, 0, 0, xcr0::X87, &host);
        assert_eq!(e1.ecx & (E1_ECX_SVM | E1_ECX_MWAITX), 0);
        assert_eq!(
            p.cpuid(0x8000_000a, 0, 0, xcr0::X87, &host),
            CpuidResult::default()
        );
        assert_eq!(
            p.cpuid(0xa, 0, 0, xcr0::X87, &host),
            CpuidResult::default(),
            "no PMU"
        );
        let l7 = p.cpuid(7, 0, 0, xcr0::X87, &host);
        assert_eq!(l7.ecx & L7_ECX_LA57, 0);
        assert_eq!(l7.edx & L7_EDX_SPEC_CTRL, 0);
        // Vendor passes through.
        assert_eq!(p.cpuid(0, 0, 0, xcr0::X87, &host), host(0, 0));
    }

    #[test]
    fn osxsave_mirrors_guest_cr4_and_apic_follows_policy() {
        let p = CpuidPolicy {
            lapic: true,
            x2apic: true,
            ..Default::default()
        };
        let l1 = p.cpuid(1, 0, cr::CR4_OSXSAVE, xcr0::X87, &host);
        assert_ne!(l1.ecx & L1_ECX_OSXSAVE, 0);
        assert_ne!(l1.edx & L1_EDX_APIC, 0);
        assert_ne!(l1.ecx & L1_ECX_X2APIC, 0);
        assert_ne!(l1.ecx & L1_ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn out_of_range_leaves_are_zero() {
        let p = CpuidPolicy::default();
        assert_eq!(
            p.cpuid(0x11, 0, 0, xcr0::X87, &host),
            CpuidResult::default()
        );
        assert_eq!(
            p.cpuid(0x8000_0022, 0, 0, xcr0::X87, &host),
            CpuidResult::default()
        );
        assert_eq!(
            p.cpuid(0xffff_ffff, 0, 0, xcr0::X87, &host),
            CpuidResult::default()
        );
    }

    #[test]
    fn signatures() {
        let p = CpuidPolicy::default();
        let r = p.cpuid(0x4000_0000, 0, 0, xcr0::X87, &host);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"StarinaVMM\0\0");
        assert_eq!(r.eax, 0x4000_0000);

        let kvm = CpuidPolicy {
            paravirt: Paravirt::Kvm {
                features: KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
            },
            ..Default::default()
        };
        let r = kvm.cpuid(0x4000_0000, 0, 0, xcr0::X87, &host);
        assert_eq!(r.ebx.to_le_bytes(), *b"KVMK");
        assert_eq!(r.eax, 0x4000_0001);
        let f = kvm.cpuid(0x4000_0001, 0, 0, xcr0::X87, &host);
        assert_eq!(
            f.eax,
            KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
        );
        // Invariant TSC: shown without kvm-clock, hidden with it.
        let e7 = |p: &CpuidPolicy| p.cpuid(0x8000_0007, 0, 0, xcr0::X87, &host).edx;
        assert_eq!(e7(&CpuidPolicy::default()), E7_EDX_INVARIANT_TSC);
        assert_eq!(e7(&kvm), 0);
    }

    /// A Zen 4-like host: x87, SSE, AVX, AVX-512 and PKRU; XSAVEOPT,
    /// XSAVEC, XGETBV1, XSAVES.
    fn zen4(leaf: u32, sub: u32) -> CpuidResult {
        let c = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        match (leaf, sub) {
            (0, _) => c(0x10, 0, 0, 0),
            (1, _) => c(0, 0, L1_ECX_XSAVE | L1_ECX_AVX | L1_ECX_FMA, 0),
            (7, 0) => c(0, L7_EBX_AVX2 | bit(16), bit(1), 0),
            (0xd, 0) => c(0x2e7, 2696, 2696, 0),
            (0xd, 1) => c(0xf, 2696, 0x1800, 0),
            (0xd, 2) => c(256, 576, 0, 0),
            (0xd, 5) => c(64, 1088, 0, 0),
            (0xd, 6) => c(512, 1152, 0, 0),
            (0xd, 7) => c(1024, 1664, 0, 0),
            (0xd, 9) => c(8, 2688, 0, 0),
            _ => CpuidResult::default(),
        }
    }

    #[test]
    fn xsave_leaf_offers_what_the_kernel_switches() {
        let p = CpuidPolicy::default();
        let all = xcr0::X87 | xcr0::SSE | xcr0::AVX | xcr0::AVX512;
        assert_eq!(p.xcr0_mask(&zen4), all, "no PKRU (PKU is hidden)");
        let avx = xcr0::X87 | xcr0::SSE | xcr0::AVX;
        let d0 = p.cpuid(0xd, 0, cr::CR4_OSXSAVE, avx, &zen4);
        assert_eq!((d0.eax, d0.edx), (all as u32, 0));
        assert_eq!(d0.ebx, 832, "legacy + header + YMM_Hi128 for XCR0 = 7");
        assert_eq!(d0.ecx, 2688, "up to Hi16_ZMM, not PKRU");
        assert_eq!(p.cpuid(0xd, 0, 0, xcr0::X87, &zen4).ebx, 576);
        assert_eq!(p.cpuid(0xd, 0, 0, all, &zen4).ebx, 2688);
        let d1 = p.cpuid(0xd, 1, 0, avx, &zen4);
        assert_eq!(d1.eax, 0x7, "XSAVEOPT, XSAVEC, XGETBV1; no XSAVES");
        assert_eq!((d1.ebx, d1.ecx, d1.edx), (832, 0, 0));
        assert_eq!(p.cpuid(0xd, 2, 0, avx, &zen4), zen4(0xd, 2));
        assert_eq!(p.cpuid(0xd, 9, 0, avx, &zen4), CpuidResult::default());
        assert_eq!(p.cpuid(0xd, 64, 0, avx, &zen4), CpuidResult::default());
        // A guest XCR0 beyond the mask cannot inflate the size.
        assert_eq!(p.cpuid(0xd, 0, 0, u64::MAX, &zen4).ebx, 2688);
    }

    #[test]
    fn vector_features_follow_the_mask() {
        let p = CpuidPolicy::default();
        let l1 = p.cpuid(1, 0, 0, xcr0::X87, &zen4);
        assert_ne!(l1.ecx & L1_ECX_AVX, 0);
        let l7 = p.cpuid(7, 0, 0, xcr0::X87, &zen4);
        assert_ne!(l7.ebx & bit(16), 0, "AVX-512F kept with its state");
        // Without AVX-512 state: the AVX-512 bits go, AVX2 stays.
        let no512 = |leaf, sub| match (leaf, sub) {
            (0xd, 0) => CpuidResult {
                eax: 0x7,
                ..zen4(0xd, 0)
            },
            _ => zen4(leaf, sub),
        };
        assert_eq!(p.xcr0_mask(&no512), 0x7);
        let l7 = p.cpuid(7, 0, 0, xcr0::X87, &no512);
        assert_eq!((l7.ebx & bit(16), l7.ecx & bit(1)), (0, 0));
        assert_ne!(l7.ebx & L7_EBX_AVX2, 0);
        // No XSAVE at all: x87 only, and no AVX.
        let old = |leaf, sub| match leaf {
            1 => CpuidResult {
                ecx: L1_ECX_AVX,
                ..Default::default()
            },
            _ => zen4(leaf, sub),
        };
        assert_eq!(p.xcr0_mask(&old), xcr0::X87);
        assert_eq!(p.cpuid(1, 0, 0, xcr0::X87, &old).ecx & L1_ECX_AVX, 0);
        assert_eq!(p.cpuid(7, 0, 0, xcr0::X87, &old).ebx & L7_EBX_AVX2, 0);
    }
}
