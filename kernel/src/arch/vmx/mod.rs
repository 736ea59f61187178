//! Intel VMX: the hardware side of the hypervisor objects on Intel CPUs.
//!
//! One VMCS per vCPU; guest RAM mapped through EPT (2 MiB pages, built by
//! `object::vm` with [`EPT_TABLE`] and [`EPT_LEAF_2M`]); every port and
//! most MSRs exit to the VMM as the same [`VmExit`]s the SVM backend
//! reports. What VMX needs beyond SVM stays here: control registers with
//! host-owned bits (CR0.NE, CR4.VMXE) shadowed for the guest, CR2 and the
//! syscall MSRs switched by software and MSR lists, and a TPR shadow so
//! the guest's CR8 never reaches the host's local APIC.
//!
//! [`VmExit`]: starina::abi::vcpu::VmExit

pub mod decode;
#[cfg(not(test))]
mod entry;
pub mod fields;
#[cfg(not(test))]
mod vcpu;
#[cfg(not(test))]
mod vmcs;

#[cfg(not(test))]
pub use enable::init;
#[cfg(not(test))]
pub use enable::present;
#[cfg(not(test))]
pub use enable::VmxInfo;
#[cfg(not(test))]
pub use vcpu::free_retired;
#[cfg(not(test))]
pub use vcpu::VmxVcpu;

#[cfg(not(test))]
mod enable;

/// EPT entries: read | write | execute for a table ...
pub const EPT_TABLE: u64 = 0x7;
/// ... and for a 2 MiB page (bit 7), write-back memory (type 6, bits 5:3).
pub const EPT_LEAF_2M: u64 = 0x7 | (6 << 3) | (1 << 7);
/// The EPT pointer's low bits: write-back paging structures, a 4-level walk.
pub const EPTP_FLAGS: u64 = 6 | (3 << 3);
