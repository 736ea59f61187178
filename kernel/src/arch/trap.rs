//! GDT, TSS (with IST stacks), IDT, and the interrupt entry path.
//!
//! Every vector enters through a 16-byte stub that pushes the vector number
//! (and a zero error code where the CPU pushes none), then `interrupt_common`
//! saves the general-purpose registers into a [`TrapFrame`] on the IST stack,
//! saves the interrupted thread's FPU/SSE state into its own save area
//! (where this CPU's `percpu::Local::fx`, `gs:0`, points), and calls
//! [`interrupt_handler`]. A context switch is just the handler rewriting
//! the frame with another thread's registers and pointing `gs:0` at that
//! thread's save area: the `iretq` at the end resumes whichever thread
//! the frame now describes. (A thread that gives
//! up the CPU itself does not come through here: `sched` switches stacks
//! directly.)
//!
//! All interrupts run on IST stacks: the prebuilt `core` uses the red zone,
//! and an interrupt must never push into it.

use crate::mm::stack::Stack;
use core::mem::size_of;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x28;

/// Vector numbers the kernel uses.
pub const VECTOR_TIMER: u8 = 0x20;
pub const VECTOR_SPURIOUS: u8 = 0xff;
/// An IPI: a thread this CPU may run became runnable, or one it runs
/// must end (`sched`).
pub const VECTOR_RESCHEDULE: u8 = 0xf0;
/// An IPI: flush this CPU's TLB (`mm::tlb`).
pub const VECTOR_TLB_FLUSH: u8 = 0xf1;
/// The legacy 8259 PICs are remapped here and masked.
pub const VECTOR_PIC_BASE: u8 = 0x30;

/// What the entry path saved, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);
// `interrupt_common` finds the vector at this offset from the frame's start.
const _: () = assert!(core::mem::offset_of!(TrapFrame, vector) == 120);

/// Points this CPU's entry path at `fx`, the save area of the thread
/// it runs now: the entry saves into and restores from wherever this
/// CPU's `percpu::Local::fx` (`gs:0`) points.
#[inline(always)]
pub fn set_current_fx(fx: *const crate::sched::FxArea) {
    crate::percpu::this()
        .local
        .fx
        .store(fx as u64, core::sync::atomic::Ordering::Relaxed);
}

core::arch::global_asm!(
    r#"
.section .text.interrupts, "ax"
.balign 16
.global interrupt_stubs
interrupt_stubs:
.set vec, 0
.rept 256
.balign 16
.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
.else
    pushq $0
.endif
    pushq $vec
    jmp interrupt_common
.set vec, vec + 1
.endr

interrupt_common:
    // The direction flag may be set where the interrupt struck (a backward
    // memmove is `std; rep movsb; cld`); the handler's Rust code, which
    // copies frames with `rep movs`, needs it clear (the ABI says so). The
    // interrupted RFLAGS, DF included, come back with iretq.
    cld
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    // GS base (see `user::entry`): an entry from ring 3 swaps in the
    // kernel's, and clears AC (ring 3 may set it; SMAP would then let
    // the handler touch user pages). An NMI or machine check may come
    // between an exit's swapgs and its iretq: those look at the base
    // itself, and %r12 (preserved by the call) remembers whether they
    // swapped.
    xorl %r12d, %r12d
    movq 120(%rsp), %rax
    cmpq $2, %rax
    je 5f
    cmpq $18, %rax
    je 5f
    testb $3, 144(%rsp)
    jz 6f
    swapgs
    pushfq
    andq $~0x40000, (%rsp)
    popfq
    jmp 6f
5:
    movl $0xc0000101, %ecx
    rdmsr
    testl %edx, %edx
    js 6f
    swapgs
    movl $1, %r12d
6:
    // Where the interrupted SSE state goes: the running thread's save
    // area, except for an NMI. An NMI can strike inside another
    // interrupt's handler, after that handler saved the thread's state
    // there and while it uses the registers itself; saving into the same
    // area would overwrite the thread's state with the handler's, and the
    // handler's exit would then restore the handler's registers into the
    // thread. An NMI never switches threads and NMIs do not nest, so an
    // area of its own serves: 512 bytes below the frame, on this CPU's
    // NMI stack (IST3, each CPU's own; the frame is 16-byte aligned, and
    // so is the area). %rbx (preserved by the call) remembers the choice:
    // zero for the thread's area, re-read after the handler since a
    // switch changes it.
    movq %rsp, %rdi
    xorl %ebx, %ebx
    cmpq $2, 120(%rsp)
    jne 1f
    subq $512, %rsp
    movq %rsp, %rbx
1:
    movq %gs:0, %rax
    testq %rbx, %rbx
    cmovnzq %rbx, %rax
    fxsave64 (%rax)
    // Kernel code runs with the kernel's SSE and x87 control words, not a
    // user thread's (`user::entry::KERNEL_FP`); fxrstor restores the
    // thread's.
    ldmxcsr KERNEL_FP(%rip)
    fldcw KERNEL_FP+4(%rip)
    call interrupt_handler
    movq %gs:0, %rax
    testq %rbx, %rbx
    cmovnzq %rbx, %rax
    fxrstor64 (%rax)
    testq %rbx, %rbx
    jz 2f
    addq $512, %rsp
2:
    // Back to ring 3 (the frame may now be another thread's): its GS.
    testq %r12, %r12
    jnz 7f
    cmpq $2, 120(%rsp)
    je 8f
    cmpq $18, 120(%rsp)
    je 8f
    testb $3, 144(%rsp)
    jz 8f
7:
    swapgs
8:
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

"#,
    options(att_syntax)
);

extern "C" {
    static interrupt_stubs: u8;
}

#[repr(C, packed)]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct IdtEntry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

/// The boot-time IST stacks, used only until [`guard_ist_stacks`] moves
/// every IST onto a guarded stack (the page allocator is not up when the
/// IDT is first loaded).
const IST_STACK_SIZE: usize = 16 * 1024;
/// IST1: IRQs and the yield vector; IST2: exceptions; IST3: NMI and
/// machine check; IST4: double fault. Separate stacks so that a fault in an
/// IRQ handler does not overwrite the frame it interrupted.
pub const IST_COUNT: usize = 4;

/// The IST stacks in use after boot: each below an unmapped guard page
/// (`mm::stack`), so an overflow is a page fault reported as such instead
/// of silently overwriting whatever lies below.
static GUARDED_IST: spin::Once<[Stack; IST_COUNT]> = spin::Once::new();

/// Moves every IST onto a guarded stack. Called once at boot, after the
/// page allocator is up, interrupts still off. Out of memory this early is
/// a kernel panic (the machine could not run anything anyway).
pub fn guard_ist_stacks() {
    let stacks = GUARDED_IST.call_once(|| {
        core::array::from_fn(|i| {
            Stack::new().unwrap_or_else(|| panic!("no memory for IST stack {}", i + 1))
        })
    });
    assert!(
        stacks.iter().all(Stack::guard_is_unmapped),
        "an interrupt stack's guard page is mapped"
    );
    log::info!(
        "{}: {} of {} KiB, each below an unmapped guard page",
        starina::abi::markers::IST_GUARDED,
        IST_COUNT,
        crate::mm::stack::STACK_SIZE / 1024
    );
    let tss = &raw mut TSS;
    for (i, stack) in stacks.iter().enumerate() {
        // SAFETY: interrupts are off and this is the only CPU, so no
        // interrupt is being delivered through the TSS while we write it;
        // the CPU reads an IST slot only when delivering an interrupt.
        unsafe { (*tss).ist[i] = stack.top() as u64 };
    }
}

/// Which IST stack's guard page `addr` falls in (1-based, as in the IDT),
/// of any CPU's: the boot CPU's ([`guard_ist_stacks`]) or another's
/// (`percpu`, guarded the same way).
pub fn ist_guard_hit(addr: usize) -> Option<usize> {
    let hit = |stacks: &[Stack]| stacks.iter().position(|s| s.guard_contains(addr));
    GUARDED_IST
        .get()
        .and_then(|stacks| hit(stacks))
        .or_else(|| crate::percpu::all().find_map(|cpu| hit(cpu.interrupt_stacks()?)))
        .map(|i| i + 1)
}

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; IST_COUNT]);

static mut IST_STACKS: IstStacks = IstStacks([[0; IST_STACK_SIZE]; IST_COUNT]);
const TSS_TEMPLATE: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
};
/// Every CPU's GDT: the same segments, its own TSS descriptor.
const GDT_TEMPLATE: [u64; 7] = [
    0,
    0x00af9a000000ffff, // 0x08 kernel code (64-bit)
    0x00cf92000000ffff, // 0x10 kernel data
    0x00cff2000000ffff, // 0x18 user data (`user::entry::USER_DS`)
    0x00affa000000ffff, // 0x20 user code (`user::entry::USER_CS`)
    0,                  // 0x28 TSS (low)
    0,                  // 0x30 TSS (high)
];
/// The boot CPU's TSS and GDT (the other CPUs' are [`CpuTables`]).
static mut TSS: Tss = TSS_TEMPLATE;
static mut GDT: [u64; 7] = GDT_TEMPLATE;
static mut IDT: [IdtEntry; 256] = [IdtEntry {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    _reserved: 0,
}; 256];

fn ist_for_vector(vector: usize) -> u8 {
    match vector {
        8 => 4,
        2 | 18 => 3,
        0..=31 => 2,
        _ => 1,
    }
}

/// Loads the GDT, TSS and IDT. Called once at boot, interrupts off.
pub fn init() {
    // SAFETY: boot runs single-threaded with interrupts off; these statics
    // are written only here, before the descriptors that point at them are
    // loaded, and never moved.
    unsafe {
        let tss = &raw mut TSS;
        for i in 0..IST_COUNT {
            let stack = &raw mut IST_STACKS.0[i];
            let top = (stack as u64 + IST_STACK_SIZE as u64) & !0xf;
            (*tss).ist[i] = top;
        }
        let gdt = &raw mut GDT;
        [(*gdt)[5], (*gdt)[6]] = tss_descriptor(tss);
        load_gdt_and_tss(gdt);

        let stubs = &raw const interrupt_stubs as u64;
        let idt = &raw mut IDT;
        for vector in 0..256 {
            let handler = stubs + (vector as u64) * 16;
            (*idt)[vector] = IdtEntry {
                offset_low: handler as u16,
                selector: KERNEL_CS,
                ist: ist_for_vector(vector),
                type_attr: 0x8e, // present, DPL0, interrupt gate
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                _reserved: 0,
            };
        }
    }
    load_idt();
}

/// The two GDT slots of a 64-bit TSS descriptor for the TSS at `tss`.
fn tss_descriptor(tss: *const Tss) -> [u64; 2] {
    let base = tss as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit TSS (available)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Loads `gdt` on this CPU, reloads the segment registers from it and
/// loads its TSS (slot 5).
///
/// # Safety
/// `gdt` is a GDT laid out as [`GDT_TEMPLATE`] with a TSS descriptor for
/// a TSS that, like the GDT itself, stays in place (and is not loaded on
/// another CPU) for as long as this CPU runs.
unsafe fn load_gdt_and_tss(gdt: *const [u64; 7]) {
    let gdtr = DescriptorPointer {
        limit: (size_of::<[u64; 7]>() - 1) as u16,
        base: gdt as u64,
    };
    // SAFETY: upheld by the caller: the new GDT has the same code and data
    // selectors as the one in use, so reloading them changes nothing else.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            gdtr = in(reg) &gdtr,
            cs = in(reg) KERNEL_CS as u64,
            ds = in(reg) KERNEL_DS as u64,
            tss = in(reg) TSS_SEL as u64,
            tmp = out(reg) _,
        );
    }
}

/// Loads the IDT (one, shared by every CPU) on this CPU.
fn load_idt() {
    let idtr = DescriptorPointer {
        limit: (size_of::<[IdtEntry; 256]>() - 1) as u16,
        base: &raw const IDT as u64,
    };
    // SAFETY: the IDT is a static filled by `init` on the boot CPU before
    // any other CPU starts, and never changed after.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &idtr) };
}

/// A CPU's own GDT and TSS, for every CPU but the boot CPU (which uses
/// the statics above): each CPU needs its own TSS (the IST stacks it
/// switches to) and so its own GDT (`ltr` marks the TSS descriptor busy).
pub struct CpuTables {
    gdt: [u64; 7],
    tss: Tss,
}

impl Default for CpuTables {
    fn default() -> CpuTables {
        CpuTables::new()
    }
}

impl CpuTables {
    pub const fn new() -> CpuTables {
        CpuTables {
            gdt: GDT_TEMPLATE,
            tss: TSS_TEMPLATE,
        }
    }

    /// Sets the IST stacks' tops (IST1 first), as the boot CPU's are set.
    pub fn set_ist_stacks(&mut self, tops: [u64; IST_COUNT]) {
        for (i, top) in tops.into_iter().enumerate() {
            self.tss.ist[i] = top;
        }
    }

    /// Loads these tables and the shared IDT on this CPU.
    ///
    /// # Safety
    /// `this` stays in place, is loaded on this CPU only and is not
    /// written by anyone else for as long as this CPU runs.
    pub unsafe fn load(this: *mut CpuTables) {
        // SAFETY: upheld by the caller; we write the TSS descriptor before
        // the GDT is loaded.
        unsafe {
            let tss = &raw const (*this).tss;
            [(*this).gdt[5], (*this).gdt[6]] = tss_descriptor(tss);
            load_gdt_and_tss(&raw const (*this).gdt);
        }
        load_idt();
    }
}

/// The Rust side of every interrupt and exception.
#[no_mangle]
extern "C" fn interrupt_handler(frame: &mut TrapFrame) {
    crate::interrupt::handle(frame);
}

/// Return addresses along the frame-pointer chain from `rbp` (the kernel
/// is built with frame pointers), for a kernel panic's report. Stops at the
/// first frame pointer that is not an aligned higher-half address.
pub fn backtrace(mut rbp: u64) -> [u64; 12] {
    let mut out = [0u64; 12];
    for slot in out.iter_mut() {
        if rbp < 0xffff_8000_0000_0000 || !rbp.is_multiple_of(8) || rbp > u64::MAX - 16 {
            break;
        }
        // SAFETY: only for a report on the way to stopping the machine: the
        // address is an aligned kernel address taken from a frame-pointer
        // chain, which the kernel's own frames keep mapped; a bad chain at
        // worst faults again, which stops the machine as "panicked while
        // panicking".
        let (next, ret) = unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) };
        *slot = ret;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    out
}
