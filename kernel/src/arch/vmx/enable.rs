//! Turning VMX on: CPUID and IA32_FEATURE_CONTROL, the capability MSRs
//! (which controls this CPU allows), and VMXON.

use super::decode::controls;
use super::vmcs;
use crate::arch::cpu::cpuid;
use crate::arch::cpu::rdmsr;
use crate::arch::cpu::wrmsr;
use crate::arch::hypervisor::Unavailable;
use crate::mm::page;
use crate::mm::phys_to_virt;
use crate::percpu::MAX_CPUS;

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const FEATURE_LOCKED: u64 = 1 << 0;
const FEATURE_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_EXIT_CTLS: u32 = 0x483;
const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
const IA32_VMX_CR0_FIXED0: u32 = 0x486;
const IA32_VMX_CR0_FIXED1: u32 = 0x487;
const IA32_VMX_CR4_FIXED0: u32 = 0x488;
const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// The TRUE_* control MSRs follow at 0x48d..0x490 when BASIC bit 55 says so.
const TRUE_CONTROLS_OFFSET: u32 = 0x0c;
const BASIC_TRUE_CONTROLS: u64 = 1 << 55;

pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
}

pub mod primary {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const TPR_SHADOW: u32 = 1 << 21;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

pub mod secondary {
    pub const EPT: u32 = 1 << 1;
    pub const RDTSCP: u32 = 1 << 3;
    pub const VPID: u32 = 1 << 5;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const INVPCID: u32 = 1 << 12;
}

pub mod exit {
    pub const HOST_64BIT: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

pub mod entry {
    pub const IA32E_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

// IA32_VMX_EPT_VPID_CAP.
const EPT_WALK_4: u64 = 1 << 6;
const EPT_WRITE_BACK: u64 = 1 << 14;
const EPT_2M_PAGES: u64 = 1 << 16;
const INVEPT: u64 = 1 << 20;
const INVEPT_SINGLE: u64 = 1 << 25;
const INVEPT_ALL: u64 = 1 << 26;
const INVVPID: u64 = 1 << 32;
const INVVPID_SINGLE: u64 = 1 << 41;
const INVVPID_ALL: u64 = 1 << 42;

const CR4_VMXE: u64 = 1 << 13;

/// What this CPU's VMX allows, as the backend uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxInfo {
    pub revision: u32,
    pub pin: u32,
    /// Without the interrupt- and NMI-window bits, which each entry sets
    /// as needed.
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    /// Without the IA-32e bit, which follows the guest's EFER.LMA.
    pub entry: u32,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    /// VPIDs are on (the secondary control is set).
    pub vpid: bool,
    pub invvpid_single: bool,
    pub invept_single: bool,
    /// Virtual NMIs with NMI-window exiting: the guest's NMI blocking is
    /// visible (interruptibility bit 3, cleared by its IRET), so NMIs can
    /// be injected. Without them an NMI for the guest is dropped.
    pub nmis: bool,
}

/// The capabilities, read on the first CPU that turns VMX on; every other
/// CPU must report the same before it does.
static VMX: spin::Once<Result<VmxInfo, Unavailable>> = spin::Once::new();

/// Whether each CPU is in VMX operation: its VMXON region (kept for the
/// life of the system), from the first vCPU made there.
static VMXON: [spin::Once<Result<u64, Unavailable>>; MAX_CPUS] =
    [const { spin::Once::new() }; MAX_CPUS];

/// Whether CPUID says this CPU has VMX.
pub fn present() -> bool {
    cpuid(1, 0)[2] & (1 << 5) != 0
}

/// Turns VMX on on this CPU at its first use (the capabilities at the
/// first use of all); the error says how to get it. The caller stays on
/// this CPU (a pinned thread).
pub fn init() -> Result<VmxInfo, Unavailable> {
    let info = (*VMX.call_once(features))?;
    // Interrupts off: the CPU index stays this CPU's while it turns on.
    let was = crate::arch::irq::save_and_disable();
    let cpu = crate::percpu::index();
    let on = VMXON.get(cpu).map_or(Err(Unavailable::NoHardware), |once| {
        *once.call_once(|| enable_this_cpu(&info, cpu))
    });
    crate::arch::irq::restore(was);
    on.map(|_| info)
}

fn features() -> Result<VmxInfo, Unavailable> {
    if !present() {
        return Err(Unavailable::NoHardware);
    }
    let info = capabilities()?;
    log::info!(
        "hypervisor: Intel VMX enabled (EPT, unrestricted guest, VPID {}, INVEPT {})",
        if info.vpid { "yes" } else { "no" },
        if info.invept_single {
            "single-context"
        } else {
            "global"
        }
    );
    Ok(info)
}

/// IA32_FEATURE_CONTROL, the same capabilities as the first CPU, CR0 and
/// CR4 as VMX needs them, and VMXON, on this CPU; its VMXON region.
fn enable_this_cpu(info: &VmxInfo, cpu: usize) -> Result<u64, Unavailable> {
    if !present() {
        return Err(Unavailable::NoHardware);
    }
    allow_vmx()?;
    let here = capabilities()?;
    if here != *info {
        log::error!("hypervisor: CPU {cpu}'s VMX differs from the first CPU's: {here:?}");
        return Err(Unavailable::VmxLacks(
            "the same VMX capabilities on every CPU",
        ));
    }
    let region = page::alloc_zeroed_pages(1).ok_or(Unavailable::OutOfMemory)?;
    // SAFETY: the VMXON region is a page we own for the life of the
    // system; its first word must hold the revision id.
    unsafe { (phys_to_virt(region) as *mut u32).write(info.revision) };
    set_fixed_bits(info);
    // SAFETY: CR4.VMXE is on and CR0/CR4 satisfy the fixed bits (just
    // set); the region is ours for good.
    if let Err(e) = unsafe { vmcs::vmxon(region) } {
        log::error!("hypervisor: VMXON failed on CPU {cpu}: {e}");
        page::free_pages(region, 1);
        return Err(Unavailable::VmxonFailed);
    }
    crate::mm::note_kept_pages(1);
    if cpu != 0 {
        log::info!("hypervisor: VMX enabled on CPU {cpu}");
    }
    Ok(region)
}

/// IA32_FEATURE_CONTROL: VMX outside SMX allowed, and the MSR locked.
fn allow_vmx() -> Result<(), Unavailable> {
    let feature = rdmsr(IA32_FEATURE_CONTROL);
    if feature & FEATURE_LOCKED != 0 {
        if feature & FEATURE_VMX_OUTSIDE_SMX == 0 {
            return Err(Unavailable::VmxDisabledByFirmware);
        }
        return Ok(());
    }
    // SAFETY: the firmware left the MSR unlocked; enabling VMX outside
    // SMX and locking it changes nothing else.
    unsafe {
        wrmsr(
            IA32_FEATURE_CONTROL,
            feature | FEATURE_VMX_OUTSIDE_SMX | FEATURE_LOCKED,
        )
    };
    Ok(())
}

fn capabilities() -> Result<VmxInfo, Unavailable> {
    let basic = rdmsr(IA32_VMX_BASIC);
    let true_offset = if basic & BASIC_TRUE_CONTROLS != 0 {
        TRUE_CONTROLS_OFFSET
    } else {
        0
    };
    let cap = |msr: u32| rdmsr(msr + true_offset);
    let lacks = |what| Unavailable::VmxLacks(what);
    let pin = controls(
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        pin::VIRTUAL_NMIS,
        cap(IA32_VMX_PINBASED_CTLS),
    )
    .ok_or(lacks("external-interrupt and NMI exiting"))?;
    let primary_cap = cap(IA32_VMX_PROCBASED_CTLS);
    let nmi_window = controls(primary::NMI_WINDOW_EXITING, 0, primary_cap).is_some();
    // Virtual NMIs only with the window exit that makes them deliverable.
    let nmis = pin & pin::VIRTUAL_NMIS != 0 && nmi_window;
    let pin = if nmis { pin } else { pin & !pin::VIRTUAL_NMIS };
    let primary = controls(
        primary::TSC_OFFSETTING
            | primary::HLT_EXITING
            | primary::MWAIT_EXITING
            | primary::TPR_SHADOW
            | primary::UNCONDITIONAL_IO_EXITING
            | primary::MSR_BITMAPS
            | primary::MONITOR_EXITING
            | primary::SECONDARY_CONTROLS,
        0,
        primary_cap,
    )
    .ok_or(lacks("TPR shadow, MSR bitmaps or secondary controls"))?;
    controls(primary::INTERRUPT_WINDOW_EXITING, 0, primary_cap)
        .ok_or(lacks("interrupt-window exiting"))?;
    let ept_cap = rdmsr(IA32_VMX_EPT_VPID_CAP);
    let secondary_cap = rdmsr(IA32_VMX_PROCBASED_CTLS2);
    let vpid_usable = ept_cap & INVVPID != 0 && ept_cap & (INVVPID_SINGLE | INVVPID_ALL) != 0;
    let optional =
        secondary::RDTSCP | secondary::INVPCID | if vpid_usable { secondary::VPID } else { 0 };
    let secondary = controls(
        secondary::EPT | secondary::UNRESTRICTED_GUEST,
        optional,
        secondary_cap,
    )
    .ok_or(lacks("EPT or unrestricted guest"))?;
    let ept_needs = EPT_WALK_4 | EPT_WRITE_BACK | EPT_2M_PAGES | INVEPT;
    if ept_cap & ept_needs != ept_needs || ept_cap & (INVEPT_SINGLE | INVEPT_ALL) == 0 {
        return Err(lacks(
            "EPT with a 4-level walk, write-back, 2 MiB pages and INVEPT",
        ));
    }
    let exit = controls(
        exit::HOST_64BIT | exit::SAVE_PAT | exit::LOAD_PAT | exit::SAVE_EFER | exit::LOAD_EFER,
        0,
        cap(IA32_VMX_EXIT_CTLS),
    )
    .ok_or(lacks("64-bit host, PAT and EFER switching on exit"))?;
    let entry_cap = cap(IA32_VMX_ENTRY_CTLS);
    let entry = controls(entry::LOAD_PAT | entry::LOAD_EFER, 0, entry_cap)
        .ok_or(lacks("PAT and EFER loading on entry"))?;
    controls(entry::IA32E_GUEST, 0, entry_cap).ok_or(lacks("IA-32e mode guests"))?;
    Ok(VmxInfo {
        revision: (basic & 0x7fff_ffff) as u32,
        pin,
        primary,
        secondary,
        exit,
        entry,
        cr0_fixed0: rdmsr(IA32_VMX_CR0_FIXED0),
        cr0_fixed1: rdmsr(IA32_VMX_CR0_FIXED1),
        cr4_fixed0: rdmsr(IA32_VMX_CR4_FIXED0),
        cr4_fixed1: rdmsr(IA32_VMX_CR4_FIXED1),
        vpid: secondary & secondary::VPID != 0,
        invvpid_single: ept_cap & INVVPID_SINGLE != 0,
        invept_single: ept_cap & INVEPT_SINGLE != 0,
        nmis,
    })
}

/// CR0 and CR4 as VMX operation requires (CR0.NE, CR4.VMXE on).
fn set_fixed_bits(info: &VmxInfo) {
    // SAFETY: the fixed-0 bits are ones the kernel already runs with (PE,
    // PG) or that only change how x87 errors are reported (NE); VMXE
    // only enables the VMX instructions.
    unsafe {
        let cr0: u64;
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
        let cr0 = (cr0 | info.cr0_fixed0) & info.cr0_fixed1;
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack, preserves_flags));
        let cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        let cr4 = (cr4 | info.cr4_fixed0 | CR4_VMXE) & info.cr4_fixed1;
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
    }
}
