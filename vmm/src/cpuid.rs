//! CPUID policy: what the guest learns about its CPU.
//!
//! The guest sees the host's CPUID (passed in as a function, since only the
//! kernel can execute CPUID on the host) filtered so that Linux uses only
//! what the VMM really provides: no nested virtualization (SVM/VMX), no
//! performance counters, no machine check, no MTRRs, no speculation-control
//! MSRs (each would be an MSR the VMM must emulate), one CPU, and the
//! hypervisor bit set. The hypervisor leaves at 0x4000_0000 say "StarinaVMM"
//! unless the VMM implements kvm-clock, in which case they say "KVMKVMKVM"
//! so Linux enables it.

use crate::exit::cr;

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
const L1_ECX_PDCM: u32 = bit(15);
const L1_ECX_X2APIC: u32 = bit(21);
const L1_ECX_TSC_DEADLINE: u32 = bit(24);
const L1_ECX_OSXSAVE: u32 = bit(27);
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
// Leaf 0x8000_0007 EDX.
const E7_EDX_INVARIANT_TSC: u32 = bit(8);
// Leaf 0x8000_0008 EBX: IBPB, IBRS, STIBP, SSBD and friends (12..=26).
const E8_EBX_SPEC_MASK: u32 = 0x07ff_f000;

impl CpuidPolicy {
    /// The guest's answer for `(leaf, subleaf)`. `host` executes CPUID on the
    /// host; `state_cr4` is the guest's CR4 (OSXSAVE/OSPKE mirror it).
    pub fn cpuid(
        &self,
        leaf: u32,
        subleaf: u32,
        guest_cr4: u64,
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
                if !self.x2apic {
                    r.ecx &= !L1_ECX_X2APIC;
                }
                if guest_cr4 & cr::CR4_OSXSAVE != 0 {
                    r.ecx |= L1_ECX_OSXSAVE;
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
            }
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
                    | E1_ECX_PERFCTR_LLC);
            }
            0x8000_0007 => {
                // Keep only the invariant TSC bit: power management is ours.
                r = CpuidResult {
                    edx: r.edx & E7_EDX_INVARIANT_TSC,
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
        let l1 = p.cpuid(1, 0, 0, &host);
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.ecx & (L1_ECX_VMX | L1_ECX_X2APIC | L1_ECX_OSXSAVE), 0);
        assert_eq!(l1.edx & (L1_EDX_APIC | L1_EDX_MTRR | L1_EDX_MCE), 0);
        assert_eq!(l1.ebx >> 16, 1, "one logical CPU, APIC ID 0");
        let e1 = p.cpuid(0x8000_0001, 0, 0, &host);
        assert_eq!(e1.ecx & E1_ECX_SVM, 0);
        assert_eq!(p.cpuid(0x8000_000a, 0, 0, &host), CpuidResult::default());
        assert_eq!(p.cpuid(0xa, 0, 0, &host), CpuidResult::default(), "no PMU");
        let l7 = p.cpuid(7, 0, 0, &host);
        assert_eq!(l7.ecx & L7_ECX_LA57, 0);
        assert_eq!(l7.edx & L7_EDX_SPEC_CTRL, 0);
        // Vendor passes through.
        assert_eq!(p.cpuid(0, 0, 0, &host), host(0, 0));
    }

    #[test]
    fn osxsave_mirrors_guest_cr4_and_apic_follows_policy() {
        let p = CpuidPolicy {
            lapic: true,
            x2apic: true,
            ..Default::default()
        };
        let l1 = p.cpuid(1, 0, cr::CR4_OSXSAVE, &host);
        assert_ne!(l1.ecx & L1_ECX_OSXSAVE, 0);
        assert_ne!(l1.edx & L1_EDX_APIC, 0);
        assert_ne!(l1.ecx & L1_ECX_X2APIC, 0);
    }

    #[test]
    fn out_of_range_leaves_are_zero() {
        let p = CpuidPolicy::default();
        assert_eq!(p.cpuid(0x11, 0, 0, &host), CpuidResult::default());
        assert_eq!(p.cpuid(0x8000_0022, 0, 0, &host), CpuidResult::default());
        assert_eq!(p.cpuid(0xffff_ffff, 0, 0, &host), CpuidResult::default());
    }

    #[test]
    fn signatures() {
        let p = CpuidPolicy::default();
        let r = p.cpuid(0x4000_0000, 0, 0, &host);
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
        let r = kvm.cpuid(0x4000_0000, 0, 0, &host);
        assert_eq!(r.ebx.to_le_bytes(), *b"KVMK");
        assert_eq!(r.eax, 0x4000_0001);
        let f = kvm.cpuid(0x4000_0001, 0, 0, &host);
        assert_eq!(
            f.eax,
            KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
        );
    }
}
