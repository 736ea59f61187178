//! One VMX vCPU: its VMCS, set up once, and the run loop that loads the
//! VMM's state, injects events, enters the guest and translates the exit.
//! Exits only the kernel can handle (a control register with host-owned
//! bits, INVD) are handled here and the guest entered again.

use core::arch::asm;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::vcpu::cr;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;
use starina::hypervisor::Injection;

use super::decode;
use super::decode::reason;
use super::enable;
use super::enable::VmxInfo;
use super::entry::vmx_run;
use super::entry::GuestGprs;
use super::fields as f;
use super::vmcs;
use super::vmcs::read;
use super::vmcs::read32;
use super::vmcs::VmxError;
use super::EPTP_FLAGS;
use crate::arch::asid::Asid;
use crate::arch::cpu::rdmsr;
use crate::arch::hypervisor::PendingIrqs;
use crate::arch::hypervisor::Unavailable;
use crate::arch::xstate::GuestXstate;
use crate::mm::page;
use crate::mm::phys_to_virt;
use crate::percpu::MAX_CPUS;

/// The VMCS each CPU has current (0: none of ours).
static CURRENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// This CPU's slot in [`CURRENT`]; called with interrupts off.
fn current_slot() -> &'static AtomicU64 {
    &CURRENT[crate::percpu::index() % MAX_CPUS]
}

/// Failed VM entries are logged at most once a second, with how many were
/// not: a VMM that keeps handing over a bad state (or the system-call
/// fuzzer's random ones) must not flood the log.
struct Throttle {
    last_ns: AtomicU64,
    skipped: AtomicU64,
}

static ENTRY_FAILURES: Throttle = Throttle {
    last_ns: AtomicU64::new(0),
    skipped: AtomicU64::new(0),
};

impl Throttle {
    /// `Some(lines skipped since the last one)` if this one may be logged.
    fn admit(&self) -> Option<u64> {
        let now = crate::arch::time::now_ns();
        let last = self.last_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 1_000_000_000 {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last_ns.store(now.max(1), Ordering::Relaxed);
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

/// MSRs the guest reads and writes directly: those the VMCS switches
/// (SYSENTER, FS/GS base) and those the MSR lists switch.
const PASSTHROUGH_MSRS: [u32; 5] = [0x174, 0x175, 0x176, 0xc000_0100, 0xc000_0101];
/// STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE: VMX leaves them alone, so
/// each entry loads the guest's and each exit stores them and loads the
/// host's (the VM-entry/exit MSR lists).
const SWITCHED_MSRS: [u32; 5] = [
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    0xc000_0102,
];
/// Where the host's list starts in the MSR list page (the guest's is at 0).
const HOST_LIST: usize = 2048;

const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;

/// Interruption information (entry, exit, IDT vectoring): valid, an
/// error code delivered, and the type in bits 10:8.
const VALID: u32 = 1 << 31;
const DELIVER_ERROR_CODE: u32 = 1 << 11;
const TYPE_NMI: u32 = 2 << 8;
const TYPE_HARDWARE_EXCEPTION: u32 = 3 << 8;
/// Types 4-6 (software interrupt, privileged and software exception)
/// need the instruction length on injection.
fn is_software(info: u32) -> bool {
    matches!((info >> 8) & 7, 4..=6)
}

/// Guest interruptibility: blocking by STI and by MOV SS; by NMI (with
/// virtual NMIs: the guest has not yet IRETed from its last NMI).
const BLOCKING_STI_MOV_SS: u64 = 3;
const BLOCKING_NMI: u64 = 1 << 3;
const CR4_VMXE: u64 = 1 << 13;

/// An event to deliver on the next entry.
#[derive(Clone, Copy, Debug)]
struct Event {
    info: u32,
    error_code: u32,
    instruction_len: u32,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Exits the kernel handles itself in one run at most (a guest writing
/// CR0 in a loop): then the run returns.
const MAX_ROUNDS: usize = 256;

/// What an exit became: an exit for the VMM, or handled here (enter again).
enum Step {
    Exit(VmExit),
    Again,
}

pub struct VmxVcpu {
    info: VmxInfo,
    /// The CPU whose VMX operation holds the VMCS (where `new` ran): the
    /// vCPU's thread is pinned there, and the host state fields are that
    /// CPU's (GDT, TSS, GS base). Used anywhere else, the VMCS is refused.
    cpu: usize,
    /// The next entry exits at once (`run`'s `kick`).
    kick: bool,
    vmcs_phys: u64,
    /// Which MSR accesses exit (one bit per MSR, read and write halves).
    msr_bitmap_phys: u64,
    /// The guest's switched MSRs (loaded on entry, stored on exit) and,
    /// at [`HOST_LIST`], the host's (loaded on exit).
    msr_lists_phys: u64,
    /// The TPR shadow: the guest's CR8 lives here, never in the host's
    /// local APIC.
    virtual_apic_phys: u64,
    launched: bool,
    gprs: GuestGprs,
    /// CR2 is not in the VMCS: software switches it.
    cr2: u64,
    /// The guest's x87/SSE/AVX state and XCR0, swapped with the host's
    /// around each entry.
    xstate: GuestXstate,
    /// A fault the kernel raises in the guest on the next entry (an
    /// XSETBV or control-register write it refused).
    fault: Option<Event>,
    /// An event whose delivery an exit cut short: it goes in again first.
    reinject: Option<Event>,
    /// Interrupts the VMM handed over that the guest could not take yet.
    pending_irqs: PendingIrqs,
    /// An NMI the VMM handed over that the guest could not take yet.
    pending_nmi: bool,
    /// The primary controls as last written (the interrupt-window bit
    /// changes).
    primary: u32,
    /// The entry controls as last written (the IA-32e bit follows EFER.LMA).
    entry: u32,
    flush_tlb: bool,
    vpid: Option<Asid>,
    /// The host's CR3 as last written to the VMCS.
    host_cr3: u64,
    /// The host's descriptor tables: a VM exit sets both limits to 0xFFFF.
    host_gdtr: DescriptorPointer,
    host_idtr: DescriptorPointer,
}

// SAFETY (for the helpers below): a VMCS of this vCPU is current
// (`make_current`, interrupts off since: no other vCPU's thread on this
// CPU can load its own meanwhile), and the fields written are guest, control or exit
// fields whose values the entry checks validate, or host fields set to the
// running kernel's own state.
fn w(field: u32, value: u64) {
    // SAFETY: see above.
    unsafe { vmcs::write(field, value) }
}

impl VmxVcpu {
    /// A vCPU whose guest-physical memory is translated by the EPT rooted
    /// at `ept_root`, run on this CPU from now on (the caller is pinned
    /// here).
    pub fn new(ept_root: u64) -> Result<VmxVcpu, Unavailable> {
        let info = enable::init()?;
        let oom = Unavailable::OutOfMemory;
        let mut vcpu = VmxVcpu {
            kick: false,
            info,
            cpu: crate::percpu::index(),
            vmcs_phys: 0,
            msr_bitmap_phys: 0,
            msr_lists_phys: 0,
            virtual_apic_phys: 0,
            launched: false,
            gprs: GuestGprs::default(),
            cr2: 0,
            xstate: GuestXstate::new(),
            fault: None,
            reinject: None,
            pending_irqs: PendingIrqs::default(),
            pending_nmi: false,
            primary: info.primary,
            entry: info.entry,
            flush_tlb: true,
            vpid: info.vpid.then(|| Asid::alloc(u16::MAX as u32)),
            host_cr3: 0,
            host_gdtr: DescriptorPointer::default(),
            host_idtr: DescriptorPointer::default(),
        };
        // Dropping `vcpu` on error frees what was allocated so far.
        vcpu.vmcs_phys = page::alloc_zeroed_pages(1).ok_or(oom)?;
        vcpu.msr_bitmap_phys = page::alloc_pages(1).ok_or(oom)?;
        vcpu.msr_lists_phys = page::alloc_zeroed_pages(1).ok_or(oom)?;
        vcpu.virtual_apic_phys = page::alloc_zeroed_pages(1).ok_or(oom)?;
        vcpu.fill_msr_pages();
        // SAFETY: the VMCS page is ours; its first word is the revision id.
        unsafe { (phys_to_virt(vcpu.vmcs_phys) as *mut u32).write(info.revision) };
        // SAFETY: a fresh VMCS of ours: clear it (launch state "clear").
        let cleared = unsafe { vmcs::vmclear(vcpu.vmcs_phys) };
        let loaded = cleared.map_err(Unloaded::Vmx).and_then(|()| {
            vcpu.with_vmcs(|v| {
                v.setup_controls(ept_root);
                v.setup_host();
                v.setup_guest();
            })
        });
        if let Err(e) = loaded {
            log::error!("hypervisor: cannot load a new VMCS: {e}");
            return Err(Unavailable::VmxonFailed);
        }
        Ok(vcpu)
    }

    fn fill_msr_pages(&mut self) {
        let bitmap = phys_to_virt(self.msr_bitmap_phys) as *mut u8;
        // SAFETY: the bitmap page is ours: intercept everything first.
        unsafe { core::ptr::write_bytes(bitmap, 0xff, 4096) };
        for msr in PASSTHROUGH_MSRS.into_iter().chain(SWITCHED_MSRS) {
            let (base, index) = match msr {
                0..=0x1fff => (0, msr as usize),
                _ => (1024, (msr - 0xc000_0000) as usize),
            };
            // Read bitmap at `base`, write bitmap 2048 bytes further.
            for half in [base, base + 2048] {
                let byte = half + index / 8;
                // SAFETY: `byte` < 4096 lies inside the bitmap page.
                unsafe {
                    let p = bitmap.add(byte);
                    p.write(p.read() & !(1 << (index % 8)));
                }
            }
        }
        let lists = phys_to_virt(self.msr_lists_phys) as *mut u64;
        for (i, msr) in SWITCHED_MSRS.into_iter().enumerate() {
            // SAFETY: 16-byte entries {index, reserved, value} inside the
            // list page; the guest's start at 0 (value 0, as after reset),
            // the host's at HOST_LIST with the values the kernel runs with.
            unsafe {
                lists.add(2 * i).write(msr as u64);
                lists.add(2 * i + 1).write(0);
                lists.add(HOST_LIST / 8 + 2 * i).write(msr as u64);
                lists.add(HOST_LIST / 8 + 2 * i + 1).write(rdmsr(msr));
            }
        }
    }

    /// Runs `f` with interrupts off and this vCPU's VMCS current on its
    /// own CPU; refused on any other CPU (the VMCS is active there only).
    fn with_vmcs<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> Result<R, Unloaded> {
        let was = crate::arch::irq::save_and_disable();
        let result = self.make_current().map(|()| f(self));
        crate::arch::irq::restore(was);
        result
    }

    /// Makes the VMCS current; with interrupts off, which must stay off
    /// while the caller uses it.
    fn make_current(&self) -> Result<(), Unloaded> {
        let here = crate::percpu::index();
        if here != self.cpu {
            return Err(Unloaded::WrongCpu {
                here,
                home: self.cpu,
            });
        }
        let slot = current_slot();
        if slot.load(Ordering::Relaxed) != self.vmcs_phys {
            // SAFETY: our VMCS page, revision id written in `new`, and
            // active on no other CPU (only ever loaded on `self.cpu`).
            unsafe { vmcs::vmptrld(self.vmcs_phys).map_err(Unloaded::Vmx)? };
            slot.store(self.vmcs_phys, Ordering::Relaxed);
        }
        Ok(())
    }

    fn setup_controls(&mut self, ept_root: u64) {
        let info = self.info;
        w(f::PIN_CONTROLS, info.pin as u64);
        w(f::PRIMARY_CONTROLS, info.primary as u64);
        w(f::SECONDARY_CONTROLS, info.secondary as u64);
        w(f::EXIT_CONTROLS, info.exit as u64);
        w(f::ENTRY_CONTROLS, info.entry as u64);
        w(f::EXCEPTION_BITMAP, 0);
        w(f::CR3_TARGET_COUNT, 0);
        w(f::MSR_BITMAP, self.msr_bitmap_phys);
        let count = SWITCHED_MSRS.len() as u64;
        w(f::ENTRY_MSR_LOAD_ADDR, self.msr_lists_phys);
        w(f::ENTRY_MSR_LOAD_COUNT, count);
        w(f::EXIT_MSR_STORE_ADDR, self.msr_lists_phys);
        w(f::EXIT_MSR_STORE_COUNT, count);
        w(
            f::EXIT_MSR_LOAD_ADDR,
            self.msr_lists_phys + HOST_LIST as u64,
        );
        w(f::EXIT_MSR_LOAD_COUNT, count);
        w(f::VIRTUAL_APIC_ADDR, self.virtual_apic_phys);
        w(f::TPR_THRESHOLD, 0);
        w(f::EPT_POINTER, ept_root | EPTP_FLAGS);
        if let Some(vpid) = &self.vpid {
            w(f::VPID, vpid.id() as u64);
        }
        w(f::TSC_OFFSET, 0);
        w(f::CR0_GUEST_HOST_MASK, self.cr0(0).mask);
        w(f::CR4_GUEST_HOST_MASK, self.cr4(0).mask);
    }

    /// The host state every exit restores: the kernel as it runs now.
    fn setup_host(&mut self) {
        let (cr0, cr3, cr4): (u64, u64, u64);
        let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
        // SAFETY: reading control registers, selectors and descriptor
        // table registers has no side effects.
        unsafe {
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
            asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags));
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, ss", out(reg) ss, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, ds", out(reg) ds, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, es", out(reg) es, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, fs", out(reg) fs, options(nomem, nostack, preserves_flags));
            asm!("mov {:x}, gs", out(reg) gs, options(nomem, nostack, preserves_flags));
            asm!("str {:x}", out(reg) tr, options(nomem, nostack, preserves_flags));
            asm!("sgdt [{}]", in(reg) &raw mut self.host_gdtr, options(nostack, preserves_flags));
            asm!("sidt [{}]", in(reg) &raw mut self.host_idtr, options(nostack, preserves_flags));
        }
        w(f::HOST_CR0, cr0);
        w(f::HOST_CR3, cr3);
        self.host_cr3 = cr3;
        w(f::HOST_CR4, cr4);
        for (field, selector) in [
            (f::HOST_CS_SELECTOR, cs),
            (f::HOST_SS_SELECTOR, ss),
            (f::HOST_DS_SELECTOR, ds),
            (f::HOST_ES_SELECTOR, es),
            (f::HOST_FS_SELECTOR, fs),
            (f::HOST_GS_SELECTOR, gs),
            (f::HOST_TR_SELECTOR, tr),
        ] {
            // RPL and TI must be 0 (they are: kernel selectors in the GDT).
            w(field, (selector & !7) as u64);
        }
        let gdt_base = self.host_gdtr.base;
        w(f::HOST_GDTR_BASE, gdt_base);
        w(f::HOST_IDTR_BASE, self.host_idtr.base);
        w(f::HOST_TR_BASE, tss_base(gdt_base, tr));
        w(f::HOST_FS_BASE, rdmsr(MSR_FS_BASE));
        w(f::HOST_GS_BASE, rdmsr(MSR_GS_BASE));
        w(f::HOST_SYSENTER_CS, rdmsr(MSR_SYSENTER_CS));
        w(f::HOST_SYSENTER_ESP, rdmsr(MSR_SYSENTER_ESP));
        w(f::HOST_SYSENTER_EIP, rdmsr(MSR_SYSENTER_EIP));
        w(f::HOST_EFER, rdmsr(MSR_EFER));
        w(f::HOST_PAT, rdmsr(MSR_PAT));
    }

    fn setup_guest(&mut self) {
        w(f::VMCS_LINK_POINTER, u64::MAX);
        w(f::GUEST_DEBUGCTL, 0);
        w(f::GUEST_DR7, 0x400);
        w(f::GUEST_ACTIVITY_STATE, 0);
        w(f::GUEST_INTERRUPTIBILITY, 0);
        w(f::GUEST_PENDING_DEBUG, 0);
        w(f::GUEST_PAT, 0x0007_0406_0007_0406);
        w(f::GUEST_SYSENTER_CS, 0);
        w(f::GUEST_SYSENTER_ESP, 0);
        w(f::GUEST_SYSENTER_EIP, 0);
    }

    /// CR0 as the guest wants it: PE and PG are the guest's own
    /// (unrestricted guest), the other fixed bits the host's.
    fn cr0(&self, wanted: u64) -> decode::Shadowed {
        let free = cr::CR0_PE | cr::CR0_PG;
        decode::shadowed(wanted, self.info.cr0_fixed0, self.info.cr0_fixed1, free)
    }

    /// CR4 as the guest wants it: VMXE on, hidden.
    fn cr4(&self, wanted: u64) -> decode::Shadowed {
        decode::shadowed(
            wanted,
            self.info.cr4_fixed0 | CR4_VMXE,
            self.info.cr4_fixed1,
            0,
        )
    }

    pub fn set_tsc_offset(&mut self, offset: i64) {
        if let Err(e) = self.with_vmcs(|_| w(f::TSC_OFFSET, offset as u64)) {
            log::warn!("vmx: TSC offset not set: {e}");
        }
    }

    pub fn set_pat(&mut self, pat: u64) {
        if let Err(e) = self.with_vmcs(|_| w(f::GUEST_PAT, pat)) {
            log::warn!("vmx: PAT not set: {e}");
        }
    }

    /// Sets what the guest's XSETBV may enable (the VMM's CPUID leaf 0xD);
    /// `None` if the kernel cannot switch that on this CPU.
    pub fn set_xcr0_allowed(&mut self, mask: u64) -> Option<()> {
        self.xstate.set_allowed(mask)
    }

    /// Enters the guest until an exit the VMM must see; with `kick` the
    /// first entry exits at once, after delivering `inject`.
    pub fn run(
        &mut self,
        state: &mut VcpuState,
        inject: Injection,
        kick: bool,
        deadline: impl FnOnce(u64) -> u64,
    ) -> VmExit {
        self.kick = kick;
        // Interrupts off for the whole run, the arming of its timer and
        // the exits handled here included: a vCPU thread preempted with the
        // VMCS loaded would find another vCPU's current. And a host
        // interrupt (the timer too) that comes before an entry stays
        // pending, so the entry exits at once and the run ends. Taken here
        // instead, it would consume the timer armed for this run, and a
        // guest that then never exits on its own (a loop with IF=0) would
        // hold the CPU for good: the Bochs fuzzer hang.
        let run = |v: &mut Self| {
            crate::arch::apic::arm_timer_from_now(deadline);
            v.run_rounds(state, inject)
        };
        match self.with_vmcs(run) {
            Ok(exit) => exit,
            Err(e) => {
                if let Some(skipped) = ENTRY_FAILURES.admit() {
                    log::error!(
                        "vmx: cannot load the vCPU's VMCS: {e} ({skipped} failed entries not logged before it)"
                    );
                }
                VmExit::Invalid
            }
        }
    }

    /// Entries until an exit for the VMM; after [`MAX_ROUNDS`] exits the
    /// kernel handled itself, the run ends anyway (`HostInterrupt`: the
    /// VMM runs the vCPU again) so that the thread leaves the kernel.
    fn run_rounds(&mut self, state: &mut VcpuState, inject: Injection) -> VmExit {
        let mut inject = inject;
        for _ in 0..MAX_ROUNDS {
            match self.run_once(state, inject) {
                Step::Exit(exit) => return exit,
                Step::Again => inject = Injection::None,
            }
        }
        VmExit::HostInterrupt
    }

    /// One entry and exit; the VMCS is current, interrupts off.
    fn run_once(&mut self, state: &mut VcpuState, inject: Injection) -> Step {
        self.load_state(state);
        self.inject(inject, state);
        self.flush();
        let failed = self.enter();
        if failed {
            // Our VMCS is still current: it holds the error number.
            let e = VmxError::FailValid(read32(f::INSTRUCTION_ERROR));
            let what = if self.launched {
                "VMRESUME"
            } else {
                "VMLAUNCH"
            };
            if let Some(skipped) = ENTRY_FAILURES.admit() {
                log::error!(
                    "vmx: {what} failed: {e} ({skipped} failed entries not logged before it)"
                );
            }
            return Step::Exit(VmExit::Invalid);
        }
        let exit_reason = read32(f::EXIT_REASON);
        if exit_reason & (1 << 31) != 0 {
            self.log_entry_failure(exit_reason, state);
            return Step::Exit(VmExit::Invalid);
        }
        self.launched = true;
        self.save_state(state);
        let vectoring = read32(f::IDT_VECTORING_INFO);
        if vectoring & VALID != 0 {
            // Delivery of this event was cut short by the exit (an EPT
            // violation while pushing the interrupt frame, ...).
            self.reinject = Some(Event {
                info: vectoring & (VALID | 0xfff),
                error_code: read32(f::IDT_VECTORING_ERROR_CODE),
                instruction_len: read32(f::EXIT_INSTRUCTION_LEN),
            });
        }
        self.translate_exit(exit_reason as u16, state)
    }

    /// One VM entry and exit, with interrupts off, the guest's FPU state
    /// and CR2 in place; the host's descriptor table limits restored
    /// after. Returns whether the entry instruction failed.
    fn enter(&mut self) -> bool {
        let enabled = crate::arch::irq::save_and_disable();
        if core::mem::take(&mut self.kick) {
            // Pending while interrupts are off: the entry exits at once.
            crate::arch::hypervisor::interrupt_this_cpu();
        }
        self.refresh_host_cr3();
        let gprs: *mut GuestGprs = &mut self.gprs;
        let failed;
        // SAFETY: interrupts are off from here until `restore`: nothing
        // can run and touch the FPU or see XCR0 while they hold the
        // guest's state. The VMCS is current and its host state is the
        // kernel's; `vmx_run` restores every callee-saved register. CR2 is
        // not used by the kernel outside its page-fault handler, which
        // cannot run here.
        unsafe {
            self.xstate.enter();
            asm!("mov cr2, {}", in(reg) self.cr2, options(nostack, preserves_flags));
            failed = vmx_run(gprs, self.launched as u64) != 0;
            asm!("mov {}, cr2", out(reg) self.cr2, options(nostack, preserves_flags));
            asm!("lgdt [{}]", in(reg) &raw const self.host_gdtr, options(nostack, preserves_flags));
            asm!("lidt [{}]", in(reg) &raw const self.host_idtr, options(nostack, preserves_flags));
            self.xstate.leave();
        }
        crate::arch::irq::restore(enabled);
        failed
    }

    /// The page table the exit returns to: the one this thread runs on now
    /// (one for the whole kernel today; read each entry so that per-process
    /// tables cannot make an exit land in the wrong one).
    fn refresh_host_cr3(&mut self) {
        let cr3: u64;
        // SAFETY: reading CR3 has no side effects.
        unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
        if cr3 != self.host_cr3 {
            w(f::HOST_CR3, cr3);
            self.host_cr3 = cr3;
        }
    }

    /// Drops stale translations: every entry of a vCPU sharing its VPID,
    /// and the first entry of a new EPT (its root page may have served
    /// another VM before).
    fn flush(&mut self) {
        if self.flush_tlb {
            let eptp = read(f::EPT_POINTER);
            // SAFETY: VMX is on; `init` checked INVEPT and its types.
            if let Err(e) = unsafe { vmcs::invept(self.info.invept_single, eptp) } {
                log::warn!("vmx: INVEPT failed: {e}");
            }
            self.flush_tlb = false;
        }
        if let Some(vpid) = self.vpid.as_ref().filter(|v| v.is_shared()) {
            let id = vpid.id() as u16;
            // SAFETY: as above, INVVPID and its types checked by `init`.
            if let Err(e) = unsafe { vmcs::invvpid(self.info.invvpid_single, id) } {
                log::warn!("vmx: INVVPID failed: {e}");
            }
        }
    }

    fn log_entry_failure(&self, exit_reason: u32, state: &VcpuState) {
        let Some(skipped) = ENTRY_FAILURES.admit() else {
            return;
        };
        let why = match exit_reason as u16 {
            reason::INVALID_GUEST_STATE => "invalid guest state",
            reason::MSR_LOADING => "MSR loading",
            reason::MACHINE_CHECK => "machine check",
            _ => "unknown",
        };
        log::error!(
            "vmx: VM entry failed ({why}, reason {}, qualification {:#x}): cr0={:#x} cr4={:#x} efer={:#x} \
             rflags={:#x} cs={:#x}/{:#x} ss={:#x}/{:#x} tr={:#x}/{:#x} ({} failed entries not logged before it)",
            exit_reason & 0xffff,
            read(f::EXIT_QUALIFICATION),
            state.cr0,
            state.cr4,
            state.efer,
            state.rflags,
            state.cs.selector,
            state.cs.attrib,
            state.ss.selector,
            state.ss.attrib,
            state.tr.selector,
            state.tr.attrib,
            skipped
        );
    }
}

/// The base of the 64-bit TSS whose descriptor `tr` selects in the GDT
/// at `gdt_base` (a 16-byte system descriptor).
fn tss_base(gdt_base: u64, tr: u16) -> u64 {
    let at = gdt_base + (tr & !7) as u64;
    // SAFETY: the kernel's GDT, which holds the TSS descriptor TR selects
    // (loaded at boot, never freed).
    let (low, high) = unsafe { ((at as *const u64).read(), ((at + 8) as *const u64).read()) };
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        let pages = VmxPages {
            vmcs: self.vmcs_phys,
            others: [
                self.msr_bitmap_phys,
                self.msr_lists_phys,
                self.virtual_apic_phys,
            ],
        };
        // VMCLEAR must run where the VMCS is active, its CPU: elsewhere
        // that CPU does it, told by a reschedule IPI.
        let was = crate::arch::irq::save_and_disable();
        if crate::percpu::index() == self.cpu {
            pages.free();
        } else {
            if let Some(retired) = RETIRED.get(self.cpu) {
                retired.lock().push(pages);
            }
            if let Some(home) = crate::percpu::cpu(self.cpu) {
                crate::arch::apic::send_vector(home.apic_id(), crate::arch::trap::VECTOR_RESCHEDULE);
            }
        }
        crate::arch::irq::restore(was);
    }
}

/// Why a vCPU's VMCS could not be made current.
#[derive(Clone, Copy, Debug)]
enum Unloaded {
    /// The thread runs on another CPU than the vCPU's (not pinned?).
    WrongCpu { here: usize, home: usize },
    Vmx(VmxError),
}

impl core::fmt::Display for Unloaded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unloaded::WrongCpu { here, home } => {
                write!(f, "used on CPU {here}, but its VMCS lives on CPU {home}")
            }
            Unloaded::Vmx(e) => write!(f, "VMPTRLD failed: {e}"),
        }
    }
}

/// A dropped vCPU's pages, freed on its CPU.
struct VmxPages {
    vmcs: u64,
    others: [u64; 3],
}

/// Per CPU, the vCPUs of that CPU dropped on another one, for it to free.
static RETIRED: [crate::sync::SpinLock<alloc::vec::Vec<VmxPages>>; MAX_CPUS] =
    [const { crate::sync::SpinLock::new(alloc::vec::Vec::new()) }; MAX_CPUS];

impl VmxPages {
    /// Frees them; on the vCPU's CPU, interrupts off.
    fn free(self) {
        if self.vmcs != 0 {
            // SAFETY: our VMCS: write it back and make it inactive before
            // its page is freed (on the CPU that used it).
            if let Err(e) = unsafe { vmcs::vmclear(self.vmcs) } {
                log::warn!("vmx: VMCLEAR on teardown failed: {e}");
            }
            let slot = current_slot();
            if slot.load(Ordering::Relaxed) == self.vmcs {
                slot.store(0, Ordering::Relaxed);
            }
            page::free_pages(self.vmcs, 1);
        }
        for phys in self.others {
            if phys != 0 {
                page::free_pages(phys, 1);
            }
        }
    }
}

/// Frees this CPU's vCPUs dropped on other CPUs. Each CPU calls it from
/// its reschedule interrupt (interrupts off).
pub fn free_retired() {
    let Some(retired) = RETIRED.get(crate::percpu::index()) else {
        return;
    };
    let retired = core::mem::take(&mut *retired.lock());
    for pages in retired {
        pages.free();
    }
}

mod exits;
mod state;
