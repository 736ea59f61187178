//! MSR policy: which model-specific registers the guest may touch.
//!
//! Only intercepted MSRs reach the VMM (the backend lets the guest access
//! those kept in the VMCB/VMSAVE area directly: FS/GS base, STAR/LSTAR, …).
//! Everything not listed here is unknown: [`MsrError`] tells the caller to
//! inject #GP, which Linux's `rdmsr_safe`/`wrmsr_safe` probes expect. The
//! CPUID policy hides the features whose MSRs are not emulated (MTRR, MCE,
//! PMU, speculation control), so Linux does not touch them outside probes.

use core::fmt;

use crate::exit::cr;

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_IA32_PLATFORM_ID: u32 = 0x17;
pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
pub const MSR_IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const MSR_IA32_BIOS_SIGN_ID: u32 = 0x8b;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_IA32_PAT: u32 = 0x277;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
pub const MSR_AMD64_HWCR: u32 = 0xc001_0015;
pub const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

/// Power-on PAT: WB, WT, UC-, UC, repeated.
pub const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// xAPIC at its architectural address, enabled, bootstrap processor.
pub const APIC_BASE_DEFAULT: u64 = 0xfee0_0000 | (1 << 11) | (1 << 8);
/// MISC_ENABLE: fast strings.
pub const MISC_ENABLE_DEFAULT: u64 = 1;

/// EFER bits the guest may set (SVME stays the backend's, hidden from the
/// guest which sees no SVM).
const EFER_GUEST_MASK: u64 = cr::EFER_SCE | cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE | (1 << 14);

/// Why an MSR access must raise #GP in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrError {
    /// Not an MSR this VM has.
    Unknown(u32),
    /// A known MSR written with a reserved or invalid value.
    InvalidValue { index: u32, value: u64 },
    /// A read-only MSR was written.
    ReadOnly(u32),
}

impl fmt::Display for MsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsrError::Unknown(i) => write!(f, "unknown MSR {i:#x}"),
            MsrError::InvalidValue { index, value } => {
                write!(f, "invalid value {value:#x} for MSR {index:#x}")
            }
            MsrError::ReadOnly(i) => write!(f, "MSR {i:#x} is read-only"),
        }
    }
}

/// What a successful write means for the backend beyond the stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrEffect {
    None,
    /// The guest wrote the TSC: program this offset (guest = host + offset).
    TscOffset(i64),
    /// EFER changed: copy into the VMCB/VMCS (the backend adds SVME).
    Efer(u64),
    /// PAT changed: copy into the guest PAT field.
    Pat(u64),
    /// kvm-clock: the guest registered its system-time structure at this
    /// GPA (bit 0 = enable), or its wall-clock structure. The VM writes
    /// them (`kvmclock`); the backend has nothing to do.
    KvmSystemTime(u64),
    KvmWallClock(u64),
}

/// Emulated MSR state for one vCPU.
#[derive(Debug, Clone)]
pub struct MsrState {
    pub tsc_offset: i64,
    pub apic_base: u64,
    pub misc_enable: u64,
    pub pat: u64,
    pub efer: u64,
    pub tsc_aux: u64,
    pub hwcr: u64,
    /// Whether kvm-clock MSRs exist (matches `Paravirt::Kvm` in CPUID).
    pub kvm_clock: bool,
    pub kvm_system_time: u64,
}

impl Default for MsrState {
    fn default() -> Self {
        Self {
            tsc_offset: 0,
            apic_base: APIC_BASE_DEFAULT,
            misc_enable: MISC_ENABLE_DEFAULT,
            pat: PAT_DEFAULT,
            efer: 0,
            tsc_aux: 0,
            hwcr: 0,
            kvm_clock: false,
            kvm_system_time: 0,
        }
    }
}

impl MsrState {
    /// RDMSR. `host_tsc` is the host's TSC now.
    pub fn read(&self, index: u32, host_tsc: u64) -> Result<u64, MsrError> {
        Ok(match index {
            MSR_IA32_TSC => host_tsc.wrapping_add(self.tsc_offset as u64),
            MSR_IA32_PLATFORM_ID | MSR_IA32_BIOS_SIGN_ID => 0,
            MSR_IA32_APIC_BASE => self.apic_base,
            // Locked, VMX disabled.
            MSR_IA32_FEATURE_CONTROL => 1,
            MSR_IA32_MISC_ENABLE => self.misc_enable,
            MSR_IA32_PAT => self.pat,
            MSR_EFER => self.efer,
            MSR_TSC_AUX => self.tsc_aux,
            MSR_AMD64_HWCR => self.hwcr,
            MSR_KVM_SYSTEM_TIME_NEW if self.kvm_clock => self.kvm_system_time,
            MSR_KVM_WALL_CLOCK_NEW if self.kvm_clock => 0,
            _ => return Err(MsrError::Unknown(index)),
        })
    }

    /// WRMSR.
    pub fn write(&mut self, index: u32, value: u64, host_tsc: u64) -> Result<MsrEffect, MsrError> {
        let invalid = MsrError::InvalidValue { index, value };
        match index {
            MSR_IA32_TSC => {
                self.tsc_offset = value.wrapping_sub(host_tsc) as i64;
                return Ok(MsrEffect::TscOffset(self.tsc_offset));
            }
            // Linux writes 0 here before reading the microcode revision.
            MSR_IA32_BIOS_SIGN_ID => {}
            MSR_IA32_APIC_BASE => {
                // Keep the BSP bit; accept enable and base changes.
                if value & 0xfff0_0000_0000_06ff != 0 {
                    return Err(invalid);
                }
                self.apic_base = value | (1 << 8);
            }
            MSR_IA32_PLATFORM_ID | MSR_IA32_FEATURE_CONTROL => {
                return Err(MsrError::ReadOnly(index))
            }
            MSR_IA32_MISC_ENABLE => self.misc_enable = value,
            MSR_IA32_PAT => {
                if !starina_abi::vcpu::valid_pat(value) {
                    return Err(invalid);
                }
                self.pat = value;
                return Ok(MsrEffect::Pat(value));
            }
            MSR_EFER => {
                if value & !EFER_GUEST_MASK != 0 {
                    return Err(invalid);
                }
                // LMA is read-only: the CPU sets it when paging turns on.
                self.efer = (value & !cr::EFER_LMA) | (self.efer & cr::EFER_LMA);
                return Ok(MsrEffect::Efer(self.efer));
            }
            MSR_TSC_AUX => {
                if value >> 32 != 0 {
                    return Err(invalid);
                }
                self.tsc_aux = value;
            }
            MSR_AMD64_HWCR => self.hwcr = value,
            MSR_KVM_SYSTEM_TIME_NEW if self.kvm_clock => {
                self.kvm_system_time = value;
                return Ok(MsrEffect::KvmSystemTime(value));
            }
            MSR_KVM_WALL_CLOCK_NEW if self.kvm_clock => return Ok(MsrEffect::KvmWallClock(value)),
            _ => return Err(MsrError::Unknown(index)),
        }
        Ok(MsrEffect::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_msrs_fault() {
        let mut m = MsrState::default();
        assert_eq!(m.read(0xc001_0114, 0), Err(MsrError::Unknown(0xc001_0114)));
        assert_eq!(m.read(0x48, 0), Err(MsrError::Unknown(0x48)));
        assert_eq!(m.write(0x186, 1, 0), Err(MsrError::Unknown(0x186)));
        assert!(m.read(MSR_KVM_SYSTEM_TIME_NEW, 0).is_err());
    }

    #[test]
    fn tsc_offset() {
        let mut m = MsrState::default();
        assert_eq!(m.read(MSR_IA32_TSC, 1000), Ok(1000));
        assert_eq!(
            m.write(MSR_IA32_TSC, 10, 1000),
            Ok(MsrEffect::TscOffset(-990))
        );
        assert_eq!(m.read(MSR_IA32_TSC, 2000), Ok(1010));
    }

    #[test]
    fn pat_and_efer_validation() {
        let mut m = MsrState::default();
        assert_eq!(m.read(MSR_IA32_PAT, 0), Ok(PAT_DEFAULT));
        assert!(m.write(MSR_IA32_PAT, 0x0207_0406_0007_0406, 0).is_err());
        assert_eq!(
            m.write(MSR_IA32_PAT, 0x0007_0106_0007_0406, 0),
            Ok(MsrEffect::Pat(0x0007_0106_0007_0406))
        );
        assert!(m.write(MSR_EFER, cr::EFER_SVME, 0).is_err());
        assert_eq!(
            m.write(MSR_EFER, cr::EFER_LME | cr::EFER_NXE | cr::EFER_SCE, 0),
            Ok(MsrEffect::Efer(cr::EFER_LME | cr::EFER_NXE | cr::EFER_SCE))
        );
        assert!(m.write(MSR_IA32_FEATURE_CONTROL, 5, 0).is_err());
        assert_eq!(m.write(MSR_IA32_BIOS_SIGN_ID, 0, 0), Ok(MsrEffect::None));
        assert!(m.write(MSR_IA32_APIC_BASE, 1 << 60, 0).is_err());
    }

    #[test]
    fn kvm_clock_when_enabled() {
        let mut m = MsrState {
            kvm_clock: true,
            ..Default::default()
        };
        assert_eq!(
            m.write(MSR_KVM_SYSTEM_TIME_NEW, 0x5001, 0),
            Ok(MsrEffect::KvmSystemTime(0x5001))
        );
        assert_eq!(m.read(MSR_KVM_SYSTEM_TIME_NEW, 0), Ok(0x5001));
    }
}
