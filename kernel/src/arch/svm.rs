//! AMD SVM: the hardware side of the hypervisor objects.
//!
//! One VMCB per vCPU; guest RAM mapped through nested page tables (NPT).
//! Every port and most MSRs are intercepted and handed to the VMM
//! (`starina::abi::vcpu`) as a [`VmExit`]; the MSRs whose state lives in the VMCB
//! (FS/GS base, syscall MSRs, SYSENTER) pass through.
//!
//! QEMU's TCG SVM has no decode assists, no NRIP save, no flush-by-ASID and
//! no VMCB clean bits: the VMM decodes MMIO instructions itself, advances
//! RIP itself, and we flush the whole TLB on the first entry.
//!
//! XSETBV is intercepted and handled here, not in the VMM: XCR0 is CPU
//! state the kernel switches around VMRUN (see `xstate`), checked by the
//! rules in `xcr0`.

use core::arch::asm;
use core::arch::global_asm;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::vcpu::Access;
use starina::abi::vcpu::DescriptorTable;
use starina::abi::vcpu::Segment;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;

use super::cpu::cpuid;
use super::cpu::rdmsr;
use super::cpu::wrmsr;
use crate::arch::asid::Asid;
use crate::arch::hypervisor::PendingIrqs;
use crate::arch::hypervisor::Unavailable;
use crate::arch::xcr0;
use crate::arch::xstate::GuestXstate;
use crate::mm::page;
use crate::mm::phys_to_virt;
use crate::percpu::MAX_CPUS;

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_SVME: u64 = 1 << 12;

/// What CPUID 0x8000000A says about the CPUs' SVM (the same on every
/// CPU).
#[derive(Clone, Copy, Debug)]
pub struct SvmInfo {
    pub nrip_save: bool,
    pub asids: u32,
}

static SVM: spin::Once<Result<SvmInfo, Unavailable>> = spin::Once::new();

/// Each CPU's host state page for VMSAVE/VMLOAD (its FS/GS/TR/syscall
/// MSRs), once SVM is on there. The host save area VMRUN uses is set in
/// that CPU's VM_HSAVE_PA; only the CPU reads it. Both are kept for the
/// life of the system.
static HOST_VMCB: [spin::Once<Result<u64, Unavailable>>; MAX_CPUS] =
    [const { spin::Once::new() }; MAX_CPUS];

/// Whether CPUID says this CPU has SVM.
pub fn present() -> bool {
    let ext = cpuid(0x8000_0000, 0)[0];
    ext >= 0x8000_0001 && cpuid(0x8000_0001, 0)[2] & (1 << 2) != 0
}

fn features() -> Result<SvmInfo, Unavailable> {
    if !present() {
        return Err(Unavailable::NoHardware);
    }
    if rdmsr(MSR_VM_CR) & (1 << 4) != 0 {
        return Err(Unavailable::SvmDisabledByFirmware);
    }
    let features = cpuid(0x8000_000a, 0);
    if features[3] & 1 == 0 {
        return Err(Unavailable::NoNestedPaging);
    }
    let info = SvmInfo {
        nrip_save: features[3] & (1 << 3) != 0,
        asids: features[1],
    };
    log::info!(
        "hypervisor: AMD SVM enabled (nested paging, {} ASIDs, NRIP save {})",
        info.asids,
        if info.nrip_save { "yes" } else { "no" }
    );
    Ok(info)
}

/// Turns SVM on on this CPU: EFER.SVME, its host save area, and its host
/// state page (returned).
fn enable_this_cpu() -> Result<u64, Unavailable> {
    if rdmsr(MSR_VM_CR) & (1 << 4) != 0 {
        return Err(Unavailable::SvmDisabledByFirmware);
    }
    let hsave_phys = page::alloc_zeroed_pages(1).ok_or(Unavailable::OutOfMemory)?;
    let Some(host_vmcb_phys) = page::alloc_zeroed_pages(1) else {
        page::free_pages(hsave_phys, 1);
        return Err(Unavailable::OutOfMemory);
    };
    crate::mm::note_kept_pages(2);
    // SAFETY: setting EFER.SVME and the host save area only enables the
    // SVM instructions; nothing else changes for the running kernel.
    unsafe {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave_phys);
    }
    if crate::percpu::index() != 0 {
        log::info!("hypervisor: SVM enabled on CPU {}", crate::percpu::index());
    }
    Ok(host_vmcb_phys)
}

/// This CPU's host state page, SVM being on here from the first call.
/// The caller stays on this CPU (a pinned vCPU thread).
fn this_cpu_host_vmcb() -> Result<u64, Unavailable> {
    *HOST_VMCB[crate::percpu::index()].call_once(enable_this_cpu)
}

/// Enables SVM on first use (on this CPU too); the error says how to get
/// it.
pub fn init() -> Result<SvmInfo, Unavailable> {
    let info = (*SVM.call_once(features))?;
    this_cpu_host_vmcb()?;
    Ok(info)
}

// VMCB control area offsets (AMD APM vol. 2, appendix B).
mod ctl {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const INT_CTL: usize = 0x060;
    pub const INT_VECTOR: usize = 0x064;
    pub const INT_STATE: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INT_INFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENT_INJ: usize = 0x0a8;
    pub const N_CR3: usize = 0x0b0;
    pub const NEXT_RIP: usize = 0x0c8;
    pub const INSN_LEN: usize = 0x0d0;
    pub const INSN_BYTES: usize = 0x0d1;
}

// VMCB state save area offsets.
mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const CR2: usize = 0x640;
    pub const G_PAT: usize = 0x668;
}

// Intercept bits.
const MISC1_INTR: u32 = 1 << 0;
const MISC1_NMI: u32 = 1 << 1;
const MISC1_VINTR: u32 = 1 << 4;
const MISC1_CPUID: u32 = 1 << 18;
const MISC1_IRET: u32 = 1 << 20;
const MISC1_HLT: u32 = 1 << 24;
const MISC1_IOIO: u32 = 1 << 27;
const MISC1_MSR: u32 = 1 << 28;
const MISC1_SHUTDOWN: u32 = 1 << 31;
const MISC2_SVM_INSNS: u32 = 0x7f; // VMRUN VMMCALL VMLOAD VMSAVE STGI CLGI SKINIT
const MISC2_MONITOR_MWAIT: u32 = (1 << 10) | (1 << 11) | (1 << 12);
const MISC2_XSETBV: u32 = 1 << 13;

/// INT_CTL bit: the guest's RFLAGS.IF masks only virtual interrupts; the
/// host's own (its timer) still end the run.
const V_INTR_MASKING: u32 = 1 << 24;

// Exit codes.
const EXIT_EXCP_BASE: u64 = 0x40;
const EXIT_INTR: u64 = 0x60;
const EXIT_NMI: u64 = 0x61;
const EXIT_VINTR: u64 = 0x64;
const EXIT_CPUID: u64 = 0x72;
const EXIT_IRET: u64 = 0x74;
const EXIT_HLT: u64 = 0x78;
const EXIT_IOIO: u64 = 0x7b;
const EXIT_MSR: u64 = 0x7c;
const EXIT_SHUTDOWN: u64 = 0x7f;
const EXIT_VMRUN: u64 = 0x80;
const EXIT_VMMCALL: u64 = 0x81;
const EXIT_MONITOR: u64 = 0x8a;
const EXIT_MWAIT_COND: u64 = 0x8c;
const EXIT_XSETBV: u64 = 0x8d;
const EXIT_NPF: u64 = 0x400;

/// Nested page table entries: present | writable | user (NPT needs U) ...
pub const NPT_TABLE: u64 = 0x7;
/// ... and a 2 MiB page.
pub const NPT_LEAF_2M: u64 = 0x87;

/// MSRs whose state is in the VMCB (loaded/saved by VMRUN/VMLOAD/VMSAVE):
/// the guest may access them directly.
const PASSTHROUGH_MSRS: [u32; 10] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];

/// Guest general-purpose registers VMRUN does not switch (RAX and RSP live
/// in the VMCB). The layout is used by `svm_run` below.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct GuestGprs {
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

global_asm!(
    r#"
.section .text.svm_run, "ax"
.global svm_run
// svm_run(gprs: *mut GuestGprs (rdi), guest_vmcb_pa (rsi), host_vmcb_pa (rdx))
// Runs with GIF=0 (the caller executed CLGI).
svm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    push rdx
    push rsi

    mov rax, rdx
    vmsave rax                  // host FS/GS/TR/LDTR/syscall MSRs
    mov rax, rsi
    vmload rax                  // guest's

    mov rbx, [rdi + 0]
    mov rcx, [rdi + 8]
    mov rdx, [rdi + 16]
    mov rsi, [rdi + 24]
    mov rbp, [rdi + 40]
    mov r8,  [rdi + 48]
    mov r9,  [rdi + 56]
    mov r10, [rdi + 64]
    mov r11, [rdi + 72]
    mov r12, [rdi + 80]
    mov r13, [rdi + 88]
    mov r14, [rdi + 96]
    mov r15, [rdi + 104]
    mov rdi, [rdi + 32]

    vmrun rax
    vmsave rax

    push rdi
    mov rdi, [rsp + 24]         // gprs pointer (above it: guest rdi, guest vmcb, host vmcb)
    mov [rdi + 0], rbx
    mov [rdi + 8], rcx
    mov [rdi + 16], rdx
    mov [rdi + 24], rsi
    mov [rdi + 40], rbp
    mov [rdi + 48], r8
    mov [rdi + 56], r9
    mov [rdi + 64], r10
    mov [rdi + 72], r11
    mov [rdi + 80], r12
    mov [rdi + 88], r13
    mov [rdi + 96], r14
    mov [rdi + 104], r15
    pop rax
    mov [rdi + 32], rax

    pop rsi
    pop rax                     // host VMCB
    vmload rax
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);

extern "C" {
    fn svm_run(gprs: *mut GuestGprs, guest_vmcb: u64, host_vmcb: u64);
}

/// One vCPU's hardware state: its VMCB, the I/O and MSR permission maps,
/// and the registers VMRUN leaves to software.
pub struct SvmVcpu {
    vmcb_phys: u64,
    iopm_phys: u64,
    msrpm_phys: u64,
    gprs: GuestGprs,
    /// The guest's x87/SSE/AVX state and XCR0, swapped with the host's
    /// around VMRUN.
    xstate: GuestXstate,
    /// What `init` found (kept: `run` needs it on every entry).
    svm: SvmInfo,
    /// A fault the kernel raises in the guest on the next entry (an XSETBV
    /// it refused), as an EVENTINJ value.
    fault: Option<u64>,
    flush_tlb: bool,
    /// This vCPU's TLB tag (see `asid`); a shared one flushes every entry.
    asid: Asid,
    /// An event whose delivery an exit interrupted (EXITINTINFO): it goes
    /// in again, first, on the next entry.
    reinject: Option<u64>,
    /// External interrupts the VMM handed over that the guest could not
    /// take yet (IF=0, interrupt shadow, or another event first): held
    /// here, in order, until it can; never dropped silently.
    pending_irqs: PendingIrqs,
    /// An NMI the VMM handed over that the guest cannot take yet.
    pending_nmi: bool,
    /// Whether the guest handles an NMI (SVM keeps its NMI blocking
    /// hidden: the kernel follows it through IRET intercepts).
    guest_nmi: GuestNmi,
}

/// The guest's NMI blocking as the kernel follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuestNmi {
    /// It may take an NMI.
    Open,
    /// An injected NMI's handler runs: IRETs exit.
    InHandler,
    /// Its IRET at `rip` was about to run: open once the guest is past it.
    Iret { rip: u64 },
}


const IOPM_PAGES: usize = 3;
const MSRPM_PAGES: usize = 2;

fn msrpm_bit(msr: u32) -> Option<usize> {
    let (base, index) = match msr {
        0..=0x1fff => (0, msr),
        0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
        _ => return None,
    };
    Some(base * 8 + index as usize * 2)
}

// A VMCB segment is selector (u16), attributes (u16), limit (u32), base
// (u64): `Segment`'s `repr(C)` layout, so one copies as a whole (on every
// VM entry and exit, eight of them each way).
const _: () = {
    assert!(core::mem::size_of::<Segment>() == 16);
    assert!(core::mem::offset_of!(Segment, selector) == 0);
    assert!(core::mem::offset_of!(Segment, attrib) == 2);
    assert!(core::mem::offset_of!(Segment, limit) == 4);
    assert!(core::mem::offset_of!(Segment, base) == 8);
};

fn seg_to_vmcb(vmcb: usize, off: usize, s: &Segment) {
    // SAFETY: `vmcb` is the direct-mapped address of a VMCB page this vCPU
    // owns and `off` a segment field inside it (16-byte aligned, 16 bytes;
    // the layouts match, checked above).
    unsafe { (vmcb.wrapping_add(off) as *mut Segment).write_volatile(*s) }
}

fn seg_from_vmcb(vmcb: usize, off: usize) -> Segment {
    // SAFETY: as in `seg_to_vmcb`.
    unsafe { (vmcb.wrapping_add(off) as *const Segment).read_volatile() }
}

macro_rules! accessors {
    ($read:ident, $write:ident, $t:ty) => {
        // `wrapping_add`: the sum cannot overflow (a direct-mapped page
        // plus less than 4096), and the kernel's overflow checks would cost
        // four instructions on each of the ~150 VMCB accesses of every VM
        // entry and exit.
        fn $read(base: usize, off: usize) -> $t {
            // SAFETY: `base` is the direct-mapped address of a VMCB page this
            // vCPU owns, `off` a field inside it (< 4096, naturally aligned).
            unsafe { (base.wrapping_add(off) as *const $t).read_volatile() }
        }
        fn $write(base: usize, off: usize, v: $t) {
            // SAFETY: as for the read.
            unsafe { (base.wrapping_add(off) as *mut $t).write_volatile(v) }
        }
    };
}
accessors!(read8, write8, u8);
accessors!(read32, write32, u32);
accessors!(read64, write64, u64);

static VCPUS_CREATED: AtomicU64 = AtomicU64::new(0);

impl SvmVcpu {
    /// A vCPU whose guest-physical memory is translated by the nested page
    /// table rooted at `npt_root`.
    pub fn new(npt_root: u64) -> Result<SvmVcpu, Unavailable> {
        let info = init()?;
        let vmcb_phys = page::alloc_zeroed_pages(1).ok_or(Unavailable::OutOfMemory)?;
        let iopm_phys = page::alloc_pages(IOPM_PAGES).ok_or(Unavailable::OutOfMemory)?;
        let msrpm_phys = page::alloc_pages(MSRPM_PAGES).ok_or(Unavailable::OutOfMemory)?;
        // SAFETY: the pages were just allocated to us; intercept everything.
        unsafe {
            core::ptr::write_bytes(phys_to_virt(iopm_phys) as *mut u8, 0xff, IOPM_PAGES * 4096);
            core::ptr::write_bytes(phys_to_virt(msrpm_phys) as *mut u8, 0xff, MSRPM_PAGES * 4096);
        }
        let msrpm = phys_to_virt(msrpm_phys);
        for msr in PASSTHROUGH_MSRS {
            if let Some(bit) = msrpm_bit(msr) {
                // Clear both the read and the write intercept.
                let byte = msrpm + bit / 8;
                // SAFETY: `bit / 8` < 0x1800 lies inside the two MSRPM pages.
                unsafe {
                    let v = (byte as *const u8).read();
                    (byte as *mut u8).write(v & !(0b11 << (bit % 8)));
                }
            }
        }

        let v = phys_to_virt(vmcb_phys);
        write32(v, ctl::INTERCEPT_CR, 0);
        write32(v, ctl::INTERCEPT_EXCEPTIONS, 0);
        write32(
            v,
            ctl::INTERCEPT_MISC1,
            MISC1_INTR | MISC1_NMI | MISC1_CPUID | MISC1_HLT | MISC1_IOIO | MISC1_MSR | MISC1_SHUTDOWN,
        );
        write32(
            v,
            ctl::INTERCEPT_MISC2,
            MISC2_SVM_INSNS | MISC2_MONITOR_MWAIT | MISC2_XSETBV,
        );
        write64(v, ctl::IOPM_BASE, iopm_phys);
        write64(v, ctl::MSRPM_BASE, msrpm_phys);
        let asid = Asid::alloc(info.asids);
        write32(v, ctl::ASID, asid.id());
        write32(v, ctl::INT_CTL, V_INTR_MASKING);
        write64(v, ctl::NP_ENABLE, 1);
        write64(v, ctl::N_CR3, npt_root);
        write64(v, save::G_PAT, 0x0007_0406_0007_0406);
        write64(v, save::DR7, 0x400);
        write64(v, save::DR6, 0xffff_0ff0);
        VCPUS_CREATED.fetch_add(1, Ordering::Relaxed);
        Ok(SvmVcpu {
            vmcb_phys,
            iopm_phys,
            msrpm_phys,
            gprs: GuestGprs::default(),
            xstate: GuestXstate::new(),
            svm: info,
            fault: None,
            flush_tlb: true,
            asid,
            reinject: None,
            pending_irqs: PendingIrqs::default(),
            pending_nmi: false,
            guest_nmi: GuestNmi::Open,
        })
    }

    fn vmcb(&self) -> usize {
        phys_to_virt(self.vmcb_phys)
    }

    pub fn set_tsc_offset(&mut self, offset: i64) {
        write64(self.vmcb(), ctl::TSC_OFFSET, offset as u64);
    }

    pub fn set_pat(&mut self, pat: u64) {
        write64(self.vmcb(), save::G_PAT, pat);
    }

    /// Sets what the guest's XSETBV may enable (the VMM's CPUID leaf 0xD);
    /// `None` if the kernel cannot switch that on this CPU.
    pub fn set_xcr0_allowed(&mut self, mask: u64) -> Option<()> {
        self.xstate.set_allowed(mask)
    }

    fn load_state(&mut self, s: &VcpuState) {
        let v = self.vmcb();
        // The VMM moved RIP past the instruction that exited (HLT after STI,
        // an emulated OUT...): the interrupt shadow that instruction was in
        // no longer applies.
        if read64(v, save::RIP) != s.rip {
            write64(v, ctl::INT_STATE, read64(v, ctl::INT_STATE) & !1);
        }
        seg_to_vmcb(v, save::ES, &s.es);
        seg_to_vmcb(v, save::CS, &s.cs);
        seg_to_vmcb(v, save::SS, &s.ss);
        seg_to_vmcb(v, save::DS, &s.ds);
        seg_to_vmcb(v, save::FS, &s.fs);
        seg_to_vmcb(v, save::GS, &s.gs);
        seg_to_vmcb(v, save::LDTR, &s.ldtr);
        seg_to_vmcb(v, save::TR, &s.tr);
        write32(v, save::GDTR + 4, s.gdtr.limit as u32);
        write64(v, save::GDTR + 8, s.gdtr.base);
        write32(v, save::IDTR + 4, s.idtr.limit as u32);
        write64(v, save::IDTR + 8, s.idtr.base);
        // CPL follows the code segment's DPL.
        write8(v, save::CPL, ((s.cs.attrib >> 5) & 3) as u8);
        write64(v, save::EFER, s.efer | EFER_SVME);
        write64(v, save::CR0, s.cr0);
        write64(v, save::CR2, s.cr2);
        write64(v, save::CR3, s.cr3);
        write64(v, save::CR4, s.cr4);
        write64(v, save::RFLAGS, s.rflags | 2);
        write64(v, save::RIP, s.rip);
        write64(v, save::RSP, s.gprs[4]);
        write64(v, save::RAX, s.gprs[0]);
        let g = &mut self.gprs;
        g.rcx = s.gprs[1];
        g.rdx = s.gprs[2];
        g.rbx = s.gprs[3];
        g.rbp = s.gprs[5];
        g.rsi = s.gprs[6];
        g.rdi = s.gprs[7];
        g.r8 = s.gprs[8];
        g.r9 = s.gprs[9];
        g.r10 = s.gprs[10];
        g.r11 = s.gprs[11];
        g.r12 = s.gprs[12];
        g.r13 = s.gprs[13];
        g.r14 = s.gprs[14];
        g.r15 = s.gprs[15];
    }

    fn save_state(&self, s: &mut VcpuState) {
        let v = self.vmcb();
        s.es = seg_from_vmcb(v, save::ES);
        s.cs = seg_from_vmcb(v, save::CS);
        s.ss = seg_from_vmcb(v, save::SS);
        s.ds = seg_from_vmcb(v, save::DS);
        s.fs = seg_from_vmcb(v, save::FS);
        s.gs = seg_from_vmcb(v, save::GS);
        s.ldtr = seg_from_vmcb(v, save::LDTR);
        s.tr = seg_from_vmcb(v, save::TR);
        s.gdtr = DescriptorTable {
            base: read64(v, save::GDTR + 8),
            limit: read32(v, save::GDTR + 4) as u16,
        };
        s.idtr = DescriptorTable {
            base: read64(v, save::IDTR + 8),
            limit: read32(v, save::IDTR + 4) as u16,
        };
        s.efer = read64(v, save::EFER) & !EFER_SVME;
        s.cr0 = read64(v, save::CR0);
        s.cr2 = read64(v, save::CR2);
        s.cr3 = read64(v, save::CR3);
        s.cr4 = read64(v, save::CR4);
        s.rflags = read64(v, save::RFLAGS);
        s.rip = read64(v, save::RIP);
        s.gprs[4] = read64(v, save::RSP);
        s.gprs[0] = read64(v, save::RAX);
        let g = &self.gprs;
        s.gprs[1] = g.rcx;
        s.gprs[2] = g.rdx;
        s.gprs[3] = g.rbx;
        s.gprs[5] = g.rbp;
        s.gprs[6] = g.rsi;
        s.gprs[7] = g.rdi;
        s.gprs[8] = g.r8;
        s.gprs[9] = g.r9;
        s.gprs[10] = g.r10;
        s.gprs[11] = g.r11;
        s.gprs[12] = g.r12;
        s.gprs[13] = g.r13;
        s.gprs[14] = g.r14;
        s.gprs[15] = g.r15;
        s.xcr0 = self.xstate.xcr0();
    }

    /// Sets up event injection for the next entry: an interrupted event
    /// first, then an exception, then the oldest pending interrupt if the
    /// guest can take it now; otherwise an interrupt window is requested and
    /// the interrupt stays pending here.
    fn inject(&mut self, inject: starina::hypervisor::Injection, state: &VcpuState) {
        use starina::hypervisor::Injection;
        let v = self.vmcb();
        let mut misc1 = read32(v, ctl::INTERCEPT_MISC1) & !(MISC1_VINTR | MISC1_IRET);
        // V_IRQ off; V_INTR_MASKING on every time, not kept from the last
        // run: after runs with random register state the field came back
        // without it (QEMU 7.2), and then a guest with IF=0 masked the
        // host's timer interrupt and ran on for good, freezing the OS
        // (found by the syscall fuzzer).
        let mut int_ctl = (read32(v, ctl::INT_CTL) & !(1 << 8)) | V_INTR_MASKING;
        let mut event = 0u64;
        let mut want_window = false;
        match inject {
            Injection::None => {}
            Injection::Window => want_window = true,
            Injection::Interrupt(vector) => {
                self.pending_irqs.push(vector);
            }
            Injection::Exception { vector, error_code } => {
                event = vector as u64 | (3 << 8) | (1 << 31);
                if let Some(code) = error_code {
                    event |= (1 << 11) | ((code as u64) << 32);
                }
            }
            Injection::Nmi => self.pending_nmi = true,
        }
        if let Some(fault) = self.fault.take() {
            // Raised by the kernel for the instruction that exited.
            event = fault;
        }
        if let Some(interrupted) = self.reinject.take() {
            // The interrupted event wins; an exception the VMM asked for
            // would be raised again by the instruction anyway.
            event = interrupted;
        }
        let shadow = read64(v, ctl::INT_STATE) & 1 != 0;
        if event == 0 && self.pending_nmi && self.guest_nmi == GuestNmi::Open && !shadow {
            event = 2 | (2 << 8) | (1 << 31);
            self.pending_nmi = false;
            self.guest_nmi = GuestNmi::InHandler;
        }
        if self.guest_nmi == GuestNmi::InHandler {
            misc1 |= MISC1_IRET;
        }
        if let Some(vector) = self.pending_irqs.next() {
            if event == 0 && state.interrupts_enabled() && !shadow {
                event = vector as u64 | (1 << 31);
                self.pending_irqs.pop();
            }
        }
        if !self.pending_irqs.is_empty() || want_window {
            // V_IRQ with priority 0xf, ignoring the TPR: exit as soon as the
            // guest could take an interrupt (then inject it for real).
            int_ctl |= (1 << 8) | (0xf << 16) | (1 << 20);
            write8(v, ctl::INT_VECTOR, self.pending_irqs.next().unwrap_or(0x20));
            misc1 |= MISC1_VINTR;
        }
        write64(v, ctl::EVENT_INJ, event);
        write32(v, ctl::INTERCEPT_MISC1, misc1);
        write32(v, ctl::INT_CTL, int_ctl);
    }

    /// Enters the guest once and translates the exit; with `kick` it
    /// exits at once, after delivering `inject`.
    pub fn run(
        &mut self,
        state: &mut VcpuState,
        inject: starina::hypervisor::Injection,
        kick: bool,
        deadline: impl FnOnce(u64) -> u64,
    ) -> VmExit {
        // A vCPU exists only once `init` succeeded (`new`); its answer
        // was kept.
        let info = self.svm;
        // The thread is pinned to the CPU where `new` enabled SVM
        // (`init`); anywhere else SVM may be off: no entry.
        let Ok(host_vmcb_phys) = this_cpu_host_vmcb() else {
            return VmExit::Invalid;
        };
        self.load_state(state);
        self.inject(inject, state);
        let v = self.vmcb();
        let flush = self.flush_tlb || self.asid.is_shared();
        write8(v, ctl::TLB_CONTROL, if flush { 1 } else { 0 });
        self.flush_tlb = false;

        let gprs: *mut GuestGprs = &mut self.gprs;
        // SAFETY: GIF=0 (clgi) from here to stgi: no interrupt can run and
        // touch the FPU or see XCR0 while they hold the guest's state. The
        // VMCBs and the register block are ours;
        // `svm_run` restores every callee-saved register and the host's
        // segment/MSR state (VMLOAD).
        unsafe {
            asm!("clgi", options(nostack));
            // Host interrupts are held from here (GIF=0; IF stays 1, so
            // that they exit the guest: V_INTR_MASKING): the timer cannot
            // go off in the host before the guest runs.
            crate::arch::apic::arm_timer_from_now(deadline);
            if kick {
                // Pending until VMRUN sets GIF: the guest exits at once.
                crate::arch::hypervisor::interrupt_this_cpu();
            }
            self.xstate.enter();
            svm_run(gprs, self.vmcb_phys, host_vmcb_phys);
            self.xstate.leave();
            asm!("stgi", options(nostack));
        }
        self.save_state(state);
        write64(v, ctl::EVENT_INJ, 0);
        let int_info = read64(v, ctl::EXIT_INT_INFO);
        if int_info & (1 << 31) != 0 {
            // Delivery of this event was cut short by the exit (e.g. a
            // nested page fault while pushing the interrupt frame).
            self.reinject = Some(int_info);
        }
        let code = read64(v, ctl::EXIT_CODE);
        if let Some(exit) = self.follow_guest_nmi(code, state) {
            return exit;
        }
        if code == EXIT_XSETBV {
            return self.xsetbv(state, info.nrip_save);
        }
        self.translate_exit(state)
    }

    /// Follows the guest's NMI handler to its end: an IRET intercept (the
    /// IRET has not run yet) is the kernel's, not an exit for the VMM (it
    /// gets a `HostInterrupt` and runs the vCPU again); the guest may take
    /// the next NMI once past that IRET.
    fn follow_guest_nmi(&mut self, code: u64, state: &VcpuState) -> Option<VmExit> {
        if let GuestNmi::Iret { rip } = self.guest_nmi {
            if state.rip != rip {
                self.guest_nmi = GuestNmi::Open;
            }
        }
        if code != EXIT_IRET {
            return None;
        }
        if self.guest_nmi == GuestNmi::InHandler {
            self.guest_nmi = GuestNmi::Iret { rip: state.rip };
        }
        Some(VmExit::HostInterrupt)
    }

    /// The guest's XSETBV: take the value into its XCR0 and step over the
    /// instruction, or raise the fault the CPU would.
    fn xsetbv(&mut self, state: &mut VcpuState, nrip_save: bool) -> VmExit {
        let v = self.vmcb();
        let guest = xcr0::Guest {
            cpl: read8(v, save::CPL),
            cr4_osxsave: state.cr4 & starina::abi::vcpu::cr::CR4_OSXSAVE != 0,
            allowed: self.xstate.allowed(),
        };
        let value = (state.gprs[2] << 32) | (state.gprs[0] & 0xffff_ffff);
        match xcr0::xsetbv(&guest, state.gprs[1], value) {
            Ok(xcr0) => {
                self.xstate.set_xcr0(xcr0);
                state.xcr0 = xcr0;
                // Without NRIP save, the encoding compilers emit: 0F 01 D1.
                state.rip = if nrip_save {
                    read64(v, ctl::NEXT_RIP)
                } else {
                    state.rip.wrapping_add(3)
                };
                VmExit::Xsetbv {
                    value,
                    accepted: true,
                }
            }
            Err(fault) => {
                let mut event = fault.vector() as u64 | (3 << 8) | (1 << 31);
                // Real mode pushes no error code.
                let protected = state.cr0 & starina::abi::vcpu::cr::CR0_PE != 0;
                if let Some(code) = fault.error_code().filter(|_| protected) {
                    event |= (1 << 11) | ((code as u64) << 32);
                }
                self.fault = Some(event);
                VmExit::Xsetbv {
                    value,
                    accepted: false,
                }
            }
        }
    }

    fn translate_exit(&self, state: &VcpuState) -> VmExit {
        let v = self.vmcb();
        let code = read64(v, ctl::EXIT_CODE);
        let info1 = read64(v, ctl::EXIT_INFO1);
        let info2 = read64(v, ctl::EXIT_INFO2);
        if code as u32 == u32::MAX {
            return VmExit::Invalid;
        }
        match code {
            EXIT_INTR | EXIT_NMI => VmExit::HostInterrupt,
            EXIT_VINTR => VmExit::InterruptWindow,
            EXIT_CPUID => VmExit::Cpuid {
                leaf: state.gprs[0] as u32,
                subleaf: state.gprs[1] as u32,
            },
            EXIT_MSR => VmExit::Msr {
                access: if info1 & 1 == 1 {
                    Access::Write
                } else {
                    Access::Read
                },
                index: state.gprs[1] as u32,
                value: (state.gprs[2] << 32) | (state.gprs[0] & 0xffff_ffff),
            },
            EXIT_HLT => VmExit::Hlt,
            EXIT_IOIO => {
                let size = if info1 & (1 << 4) != 0 {
                    1
                } else if info1 & (1 << 5) != 0 {
                    2
                } else {
                    4
                };
                let access = if info1 & 1 == 1 {
                    Access::Read
                } else {
                    Access::Write
                };
                VmExit::Io {
                    port: (info1 >> 16) as u16,
                    size,
                    access,
                    value: state.gprs[0] as u32,
                    string: info1 & (1 << 2) != 0,
                    rep: info1 & (1 << 3) != 0,
                    next_rip: info2,
                }
            }
            EXIT_NPF => {
                let mut insn_bytes = [0u8; 15];
                let insn_len = read8(v, ctl::INSN_LEN).min(15);
                for (i, b) in insn_bytes.iter_mut().enumerate().take(insn_len as usize) {
                    *b = read8(v, ctl::INSN_BYTES + i);
                }
                VmExit::NestedPageFault {
                    gpa: info2,
                    access: if info1 & 2 != 0 {
                        Access::Write
                    } else {
                        Access::Read
                    },
                    fetch: info1 & (1 << 4) != 0,
                    insn_bytes,
                    insn_len,
                }
            }
            EXIT_SHUTDOWN => VmExit::Shutdown,
            EXIT_VMMCALL => VmExit::Vmmcall,
            // SVM instructions and MONITOR/MWAIT: the guest has neither
            // (CPUID hides them): #UD.
            EXIT_VMRUN..=0x87 | EXIT_MONITOR..=EXIT_MWAIT_COND => VmExit::Exception {
                vector: 6,
                error_code: None,
            },
            c if (EXIT_EXCP_BASE..EXIT_EXCP_BASE + 32).contains(&c) => {
                let vector = (c - EXIT_EXCP_BASE) as u8;
                let has_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
                VmExit::Exception {
                    vector,
                    error_code: has_code.then_some(info1 as u32),
                }
            }
            other => VmExit::Unknown { code: other },
        }
    }

    /// The hardware's next RIP for the last exit, where the CPU reports it.
    pub fn next_rip(&self) -> Option<u64> {
        match init() {
            Ok(info) if info.nrip_save => Some(read64(self.vmcb(), ctl::NEXT_RIP)),
            _ => None,
        }
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        page::free_pages(self.vmcb_phys, 1);
        page::free_pages(self.iopm_phys, IOPM_PAGES);
        page::free_pages(self.msrpm_phys, MSRPM_PAGES);
    }
}
