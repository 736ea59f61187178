//! The hypervisor backend, chosen once from CPUID: AMD SVM or Intel VMX.
//! Both sit behind the same kernel objects (`object::vm`) and report the
//! same typed exits to the VMM (`starina::abi::vcpu`), so the VMM and the
//! linux server never know which one runs.

use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;
use starina::hypervisor::Injection;

use super::svm;
use super::svm::SvmVcpu;
use super::vmx;
use super::vmx::VmxVcpu;

/// Why there is no hypervisor, in words a user can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    NoHardware,
    SvmDisabledByFirmware,
    VmxDisabledByFirmware,
    NoNestedPaging,
    /// A VMX feature Starina's backend needs, by name.
    VmxLacks(&'static str),
    /// VMXON failed (another hypervisor holds VMX on this CPU?).
    VmxonFailed,
    OutOfMemory,
}

impl Unavailable {
    pub fn explain(self) -> &'static str {
        match self {
            Unavailable::NoHardware => {
                "this CPU has neither AMD SVM nor Intel VMX: under QEMU use -cpu max (scripts/starina does); \
                 on a KVM host enable nested virtualization (kvm_amd nested=1 or kvm_intel nested=1) and run \
                 with --kvm (-enable-kvm -cpu host)"
            }
            Unavailable::SvmDisabledByFirmware => {
                "SVM is disabled by the firmware (VM_CR.SVMDIS): enable virtualization (SVM) in the \
                 host's firmware settings, or nested virtualization on the KVM host"
            }
            Unavailable::VmxDisabledByFirmware => {
                "VMX is locked off by the firmware (IA32_FEATURE_CONTROL): enable virtualization (VT-x) \
                 in the host's firmware settings, or nested virtualization on the KVM host"
            }
            Unavailable::NoNestedPaging => {
                "this CPU's SVM has no nested paging (NPT), which Starina's VMM needs: use QEMU's -cpu \
                 max, or a host CPU with NPT"
            }
            Unavailable::VmxLacks(_) => {
                "this CPU's VMX lacks a feature Starina needs (EPT with 2 MiB pages and INVEPT, unrestricted \
                 guest, TPR shadow, MSR bitmaps, 64-bit host, EFER and PAT switching): the log line before \
                 this one names it"
            }
            Unavailable::VmxonFailed => "VMXON failed: is another hypervisor using VMX on this CPU?",
            Unavailable::OutOfMemory => "out of memory setting up the hypervisor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Svm,
    Vmx,
}

static BACKEND: spin::Once<Result<Backend, Unavailable>> = spin::Once::new();

/// Turns the backend on at first use; the error says how to get one.
pub fn backend() -> Result<Backend, Unavailable> {
    *BACKEND.call_once(|| {
        let result = if svm::present() {
            svm::init().map(|_| Backend::Svm)
        } else if vmx::present() {
            vmx::init().map(|_| Backend::Vmx)
        } else {
            Err(Unavailable::NoHardware)
        };
        if let Err(Unavailable::VmxLacks(what)) = result {
            log::error!("hypervisor: this CPU's VMX has no {what}");
        }
        result
    })
}

/// Flags of a nested page table's table entries and its 2 MiB leaves, in
/// the format of the backend (NPT entries are ordinary x86-64 entries
/// with the user bit; EPT has its own).
pub fn nested_paging_flags() -> (u64, u64) {
    match backend() {
        Ok(Backend::Vmx) => (vmx::EPT_TABLE, vmx::EPT_LEAF_2M),
        _ => (svm::NPT_TABLE, svm::NPT_LEAF_2M),
    }
}

/// More undeliverable interrupts than this means the guest has kept
/// interrupts off for very long; the oldest are dropped (and logged).
const MAX_PENDING_IRQS: usize = 16;

/// External interrupts the VMM handed over that the guest could not take
/// yet (IF=0, an interrupt shadow, or another event first): held in order
/// until it can, on either backend; never dropped silently.
#[derive(Default)]
pub struct PendingIrqs(alloc::collections::VecDeque<u8>);

impl PendingIrqs {
    pub fn push(&mut self, vector: u8) {
        if self.0.len() >= MAX_PENDING_IRQS {
            let dropped = self.0.pop_front();
            log::warn!(
                "hypervisor: guest kept interrupts off too long; dropped vector {dropped:?}"
            );
        }
        self.0.push_back(vector);
    }

    pub fn next(&self) -> Option<u8> {
        self.0.front().copied()
    }

    pub fn pop(&mut self) -> Option<u8> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sends this CPU a reschedule interrupt, to be taken once interrupts
/// are on again: called with them off just before a guest entry, it
/// makes the guest exit at once (a kicked vCPU).
pub fn interrupt_this_cpu() {
    let apic_id = crate::percpu::this().apic_id();
    crate::arch::apic::send_vector(apic_id, crate::arch::trap::VECTOR_RESCHEDULE);
}

/// One vCPU's hardware state, for whichever backend runs.
pub enum HwVcpu {
    Svm(SvmVcpu),
    Vmx(VmxVcpu),
}

impl HwVcpu {
    /// A vCPU whose guest-physical memory is translated by the nested
    /// page table rooted at `root` (built with [`nested_paging_flags`]).
    pub fn new(root: u64) -> Result<HwVcpu, Unavailable> {
        Ok(match backend()? {
            Backend::Svm => HwVcpu::Svm(SvmVcpu::new(root)?),
            Backend::Vmx => HwVcpu::Vmx(VmxVcpu::new(root)?),
        })
    }

    /// Enters the guest and returns the next exit the VMM must see; with
    /// `kick` (another thread wants it out) the entry exits at once, after
    /// delivering `inject`. The timer is armed by `deadline(now)` (ns
    /// since boot) once host interrupts are held for the entry: one that
    /// fired between arming and entry would be taken by the host, and a
    /// guest that never exits on its own would then keep the CPU.
    pub fn run(
        &mut self,
        state: &mut VcpuState,
        inject: Injection,
        kick: bool,
        deadline: impl FnOnce(u64) -> u64,
    ) -> VmExit {
        match self {
            HwVcpu::Svm(v) => v.run(state, inject, kick, deadline),
            HwVcpu::Vmx(v) => v.run(state, inject, kick, deadline),
        }
    }

    pub fn set_tsc_offset(&mut self, offset: i64) {
        match self {
            HwVcpu::Svm(v) => v.set_tsc_offset(offset),
            HwVcpu::Vmx(v) => v.set_tsc_offset(offset),
        }
    }

    pub fn set_pat(&mut self, pat: u64) {
        match self {
            HwVcpu::Svm(v) => v.set_pat(pat),
            HwVcpu::Vmx(v) => v.set_pat(pat),
        }
    }

    /// Sets what the guest's XSETBV may enable; `None` if the kernel
    /// cannot switch that on this CPU.
    pub fn set_xcr0_allowed(&mut self, mask: u64) -> Option<()> {
        match self {
            HwVcpu::Svm(v) => v.set_xcr0_allowed(mask),
            HwVcpu::Vmx(v) => v.set_xcr0_allowed(mask),
        }
    }
}
