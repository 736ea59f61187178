//! Per-CPU data: one [`Cpu`] slot per CPU the kernel runs on, by CPU
//! index (0 is the boot CPU, the others in the MADT's order), at most
//! [`MAX_CPUS`]. A slot holds the CPU's APIC id, whether it is online, and
//! what the boot CPU made for it before starting it: its kernel stack, its
//! interrupt stacks, its GDT and TSS. (The boot CPU keeps the boot stack
//! and the statics of `arch::trap`.)
//!
//! Today the other CPUs only come up and park (`arch::smp`). What moves
//! here next, for scheduling on every CPU, reached through each CPU's GS
//! base: the running thread (`sched::CURRENT`) and an idle thread per CPU
//! (the boot CPU's is its boot stack), the FPU save area the interrupt
//! entry uses (`arch::trap::CURRENT_FX`), interrupt nesting
//! (`interrupt::IN_INTERRUPT`), the LAPIC timer's armed deadline
//! (`arch::apic::ARMED_DEADLINE`), the vCPU loaded on this CPU
//! (`arch::vmx::vcpu::CURRENT`) and each CPU's own VMXON region or SVM
//! host save area. Each CPU must also set up what the boot CPU sets for
//! itself: XCR0 (`arch::xstate`), and the guarded interrupt stacks'
//! report on overflow (`arch::trap::ist_guard_hit` knows the boot CPU's).

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU32;
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

pub struct Cpu {
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

    /// This CPU's GDT and TSS, for the CPU itself to load
    /// ([`CpuTables::load`]).
    pub fn tables(&self) -> *mut CpuTables {
        self.tables.get()
    }
}
