//! Per-CPU data: one [`Cpu`] slot per CPU the kernel runs on, by CPU
//! index (0 is the boot CPU, the others in the MADT's order), at most
//! [`MAX_CPUS`]. A slot holds the CPU's APIC id, whether it is online, and
//! what the boot CPU made for it before starting it: its kernel stack, its
//! interrupt stacks, its GDT and TSS. (The boot CPU keeps the boot stack
//! and the statics of `arch::trap`.)
//!
//! Each CPU finds its own slot through its GS base, set once when it
//! starts ([`install`]) and never changed: the kernel has no user mode
//! and never runs `swapgs`, and the world switches keep the host's GS
//! base (SVM's `svm_run` saves and reloads it with VMSAVE/VMLOAD around
//! every VMRUN; a VMX exit loads `HOST_GS_BASE`, read on the CPU that
//! runs the vCPU, the boot CPU). One `gs:`-relative load reads a field,
//! cheaper than RDTSCP/RDPID and the table lookup they would need, and
//! the interrupt entry reaches the FPU save area with one instruction.
//!
//! What lives here per CPU ([`Local`]): the running thread and its FPU
//! save area (`arch::trap`'s entry path reads it at offset 0), interrupt
//! nesting (`interrupt::in_interrupt`), the LAPIC timer's armed deadline,
//! the TLB flushes seen (`mm::tlb`) and how many threads the CPU switched
//! to. The scheduler's own per-CPU state (idle thread, zombie, slice) is
//! in `sched`, under its lock. Still one for the machine: the vCPU loaded
//! (`arch::vmx::vcpu::CURRENT`), VMXON and the SVM host save area, so
//! threads that run vCPUs stay on the boot CPU (`sched::pin_to_boot_cpu`).

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicU32;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use crate::arch::trap::CpuTables;
use crate::arch::trap::IST_COUNT;
use crate::mm::stack::Stack;

/// The most CPUs the kernel runs on; more in the MADT are logged and left
/// alone.
pub const MAX_CPUS: usize = 8;

/// The stacks the boot CPU made for another CPU.
pub struct CpuStacks {
    /// Where the CPU's own code runs (the trampoline's `rsp`).
    pub kernel: Stack,
    /// IST1.. as in `arch::trap`.
    pub interrupt: [Stack; IST_COUNT],
}

/// The fields a CPU reads through its GS base, first in its slot.
#[repr(C)]
pub struct Local {
    /// The running thread's FPU/SSE save area (offset 0: the interrupt
    /// entry's `gs:0`).
    pub fx: AtomicU64,
    /// The running thread (`sched::current`), null before the scheduler.
    pub current: AtomicPtr<crate::sched::Thread>,
    /// This slot's own address, so `gs:16` finds the slot.
    this: AtomicPtr<Cpu>,
    pub index: AtomicU32,
    /// Set while the interrupt path runs.
    pub in_interrupt: AtomicBool,
    /// When this CPU's LAPIC one-shot timer fires (`arch::apic`).
    pub armed_deadline: AtomicU64,
    /// The last TLB flush request this CPU has carried out (`mm::tlb`).
    pub tlb_epoch: AtomicU64,
    /// How many times a thread (other than idle) was switched in here.
    pub runs: AtomicU64,
    /// The running thread's kernel stack top: where a `syscall` from user
    /// mode switches to (`user::entry`).
    pub kernel_rsp: AtomicU64,
    /// The user stack pointer while `user::entry` switches stacks.
    pub user_rsp: AtomicU64,
    /// The page-table root `user::entry::switch_to` last loaded here (0:
    /// none yet, the boot PML4 is loaded).
    pub loaded_cr3: AtomicU64,
}

/// Where `Local::fx` and `Local::this` are from the GS base.
pub const GS_FX: usize = 0;
const GS_THIS: usize = 16;
const _: () = assert!(core::mem::offset_of!(Local, fx) == GS_FX);
/// Where `Local::kernel_rsp` and `Local::user_rsp` are from the GS base.
pub const GS_KERNEL_RSP: usize = core::mem::offset_of!(Local, kernel_rsp);
pub const GS_USER_RSP: usize = core::mem::offset_of!(Local, user_rsp);
const _: () = assert!(core::mem::offset_of!(Local, this) == GS_THIS);
const _: () = assert!(core::mem::offset_of!(Cpu, local) == 0);

#[repr(C)]
pub struct Cpu {
    pub local: Local,
    apic_id: AtomicU32,
    online: AtomicBool,
    stacks: spin::Once<CpuStacks>,
    tables: UnsafeCell<CpuTables>,
}

// SAFETY: `tables` is written by the boot CPU only before it starts this
// CPU (`prepare`), and from then on used by this CPU alone (`tables`'s
// contract); the rest are atomics and a `Once`.
unsafe impl Sync for Cpu {}

static CPUS: [Cpu; MAX_CPUS] = [const {
    Cpu {
        local: Local {
            fx: AtomicU64::new(0),
            current: AtomicPtr::new(core::ptr::null_mut()),
            this: AtomicPtr::new(core::ptr::null_mut()),
            index: AtomicU32::new(0),
            in_interrupt: AtomicBool::new(false),
            armed_deadline: AtomicU64::new(u64::MAX),
            tlb_epoch: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            kernel_rsp: AtomicU64::new(0),
            loaded_cr3: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
        },
        apic_id: AtomicU32::new(u32::MAX),
        online: AtomicBool::new(false),
        stacks: spin::Once::new(),
        tables: UnsafeCell::new(CpuTables::new()),
    }
}; MAX_CPUS];

/// The CPU at `index`, if `index` < [`MAX_CPUS`].
pub fn cpu(index: usize) -> Option<&'static Cpu> {
    CPUS.get(index)
}

const IA32_GS_BASE: u32 = 0xc000_0101;

/// Points this CPU's GS base at slot `index` (the CPU's own), first thing
/// on every CPU, before anything reads [`this`].
pub fn install(index: usize) {
    let cpu = &CPUS[index];
    cpu.local.index.store(index as u32, Ordering::Relaxed);
    cpu.local
        .this
        .store(cpu as *const Cpu as *mut Cpu, Ordering::Relaxed);
    // SAFETY: GS is used for nothing else in the kernel (see the module
    // doc); the base is a static slot's address, valid forever.
    unsafe { crate::arch::cpu::wrmsr(IA32_GS_BASE, cpu as *const Cpu as u64) };
}

/// The slot of the CPU this runs on. A thread that may be preempted and
/// moved to another CPU must not keep it: only with interrupts off, or
/// for its fields that stay valid anywhere (`current`).
#[inline(always)]
pub fn this() -> &'static Cpu {
    let ptr: *const Cpu;
    // SAFETY: the GS base points at this CPU's slot from `install` on
    // (before any code that calls this), whose `this` field holds its own
    // address.
    unsafe {
        core::arch::asm!("mov {}, gs:[{}]", out(reg) ptr, const GS_THIS, options(nostack, readonly, preserves_flags));
        &*ptr
    }
}

/// The index of the CPU this runs on (see [`this`] for when it holds).
#[inline(always)]
pub fn index() -> usize {
    this().local.index.load(Ordering::Relaxed) as usize
}

/// Every slot, online or not.
pub fn all() -> impl Iterator<Item = &'static Cpu> {
    CPUS.iter()
}

/// Logs how many times each online CPU switched to a thread (not idle):
/// `sched: threads switched in per CPU: 0:N 1:M ...`.
pub fn log_runs() {
    let mut line = alloc::string::String::new();
    for (i, cpu) in CPUS.iter().enumerate().filter(|(_, c)| c.is_online()) {
        let runs = cpu.local.runs.load(Ordering::Relaxed);
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {i}:{runs}"));
    }
    log::info!("sched: threads switched in per CPU:{line}");
}

/// Records the boot CPU (index 0) as online.
pub fn init_boot_cpu(apic_id: u32) {
    CPUS[0].apic_id.store(apic_id, Ordering::Relaxed);
    CPUS[0].online.store(true, Ordering::Release);
}

/// The CPUs online now, by index.
pub fn online() -> impl Iterator<Item = &'static Cpu> {
    CPUS.iter().filter(|cpu| cpu.is_online())
}

impl Cpu {
    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Called by the CPU itself once it runs the kernel's code on its own
    /// tables.
    pub fn set_online(&self) {
        self.online.store(true, Ordering::Release);
    }

    /// Makes (once) this CPU's stacks and fills its tables, for the CPU
    /// with `apic_id`; returns its kernel stack's top. `None`: no memory.
    /// Only the boot CPU calls it, before starting this CPU.
    pub fn prepare(&self, apic_id: u32) -> Option<u64> {
        let stacks = self.stacks.try_call_once(|| -> Result<CpuStacks, ()> {
            let kernel = Stack::new().ok_or(())?;
            let interrupt: [Option<Stack>; IST_COUNT] = core::array::from_fn(|_| Stack::new());
            if interrupt.iter().any(Option::is_none) {
                return Err(()); // those made are freed as they drop
            }
            Ok(CpuStacks {
                kernel,
                interrupt: interrupt.map(|s| s.expect("checked above")),
            })
        });
        let stacks = stacks.ok()?;
        self.apic_id.store(apic_id, Ordering::Relaxed);
        let tops = core::array::from_fn(|i| stacks.interrupt[i].top() as u64);
        // SAFETY: this CPU is not running (the boot CPU prepares it before
        // it sends the startup IPI), so nothing else reads or writes its
        // tables now.
        unsafe { (*self.tables.get()).set_ist_stacks(tops) };
        Some(stacks.kernel.top() as u64)
    }

    /// The interrupt stacks made for this CPU, if any (not the boot
    /// CPU's: `arch::trap` keeps those).
    pub fn interrupt_stacks(&self) -> Option<&[Stack]> {
        self.stacks.get().map(|s| &s.interrupt[..])
    }

    /// This CPU's GDT and TSS, for the CPU itself to load
    /// ([`CpuTables::load`]).
    pub fn tables(&self) -> *mut CpuTables {
        self.tables.get()
    }
}
