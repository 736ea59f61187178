//! Ring 3 on each CPU: the `syscall` entry, the MSRs that point at it,
//! SMEP/SMAP, and what a switch to a thread of a user process loads (its
//! page tables, its kernel stack for the next `syscall`).
//!
//! GS: in the kernel the GS base is always this CPU's slot (`percpu`).
//! Every entry from ring 3 (`syscall`, or an interrupt whose saved CS is
//! ring 3) runs `swapgs` first and every exit to ring 3 runs it last, so
//! user mode holds the other value (IA32_KERNEL_GS_BASE, 0 at start)
//! and cannot move the kernel's: loading a GS selector in ring 3 changes
//! only its own base. An NMI or machine check can strike between an exit's
//! `swapgs` and its `iretq`, so those two entries look at the GS base
//! itself (`trap`): a kernel base is a higher-half address.
//!
//! A system call saves a [`TrapFrame`] on the thread's kernel stack (the
//! same layout as an interrupt's, vector [`SYSCALL_VECTOR`]), runs the
//! dispatcher with interrupts on, and returns from the frame with
//! `sysretq` (RIP to RCX, RFLAGS to R11, the user's RSP). The saved RIP is
//! the address after a `syscall` instruction in the user half, which ends
//! a page below the canonical limit (`USER_END`); the exit checks that it
//! is canonical all the same, and returns with `iretq` if it is not
//! (Intel's `sysretq` faults in ring 0, on the user's stack, for a
//! non-canonical RCX).

use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use crate::arch::cpu::cpuid;
use crate::arch::cpu::rdmsr;
use crate::arch::cpu::wrmsr;
use crate::arch::trap::TrapFrame;
use crate::arch::trap::KERNEL_CS;
use crate::percpu::GS_KERNEL_RSP;
use crate::percpu::GS_USER_RSP;

/// Ring 3 selectors (the GDT's user data and code, RPL 3).
pub const USER_DS: u64 = 0x18 | 3;
pub const USER_CS: u64 = 0x20 | 3;
/// The vector a system call's frame carries (no interrupt uses it).
pub const SYSCALL_VECTOR: u64 = 0x100;

const IA32_EFER: u32 = 0xc000_0080;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const EFER_SCE: u64 = 1;
/// Cleared on `syscall`: TF, IF, DF, AC, NT.
const FMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 18) | (1 << 14);
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

static SMAP: AtomicBool = AtomicBool::new(false);

core::arch::global_asm!(
    r#"
.section .text.syscall, "ax"
.global user_syscall_entry
user_syscall_entry:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{kernel_rsp}]
    push {user_ds}
    push qword ptr gs:[{user_rsp}]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {vector}
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    // The user's SSE control/status and x87 control words (callee-saved:
    // the syscall keeps them) below the frame; the kernel's own meanwhile,
    // so a user setting (unmasked exceptions) never reaches kernel code or
    // another thread.
    sub rsp, 16
    stmxcsr [rsp]
    fnstcw [rsp + 4]
    ldmxcsr [rip + {kernel_fp}]
    fldcw [rip + {kernel_fp} + 4]
    cld
    sti
    call user_syscall
    cli
    ldmxcsr [rsp]
    fldcw [rsp + 4]
    add rsp, 16
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    // rcx and r11 are the `syscall` instruction's: the return address and
    // RFLAGS again, whichever way it returns. The frame is the one the
    // entry above made (nothing rewrites a system call's frame: a thread
    // that ends never comes back here), so its selectors are ring 3's.
    // `sysretq` unless the return address is not canonical (Intel's
    // `sysretq` would fault in ring 0, on the user's stack): then `iretq`,
    // which faults in ring 3.
    mov rcx, [rsp + 16]
    mov r11, rcx
    shr r11, 47
    jnz 2f
    mov r11, [rsp + 32]
    // From here to `sysretq` the stack is the user's: an NMI or machine
    // check runs on its own IST stack and looks at the GS base itself
    // (`trap`), as between `swapgs` and `iretq` below.
    mov rsp, [rsp + 40]
    swapgs
    sysretq
2:
    mov r11, [rsp + 32]
    add rsp, 16
    swapgs
    iretq
"#,
    user_rsp = const GS_USER_RSP,
    kernel_rsp = const GS_KERNEL_RSP,
    user_ds = const USER_DS,
    user_cs = const USER_CS,
    vector = const SYSCALL_VECTOR,
    kernel_fp = sym KERNEL_FP,
);

/// The MXCSR and x87 control word kernel code runs with (those after
/// reset: every exception masked, round to nearest); also loaded by the
/// interrupt entry (`trap`) once it saved the interrupted thread's.
#[no_mangle]
pub static KERNEL_FP: [u32; 2] = [0x1f80, 0x037f];

extern "C" {
    static user_syscall_entry: u8;
}

#[no_mangle]
extern "C" fn user_syscall(frame: &mut TrapFrame) {
    super::dispatch::dispatch(frame);
}

/// Turns on `syscall` and the SMEP/SMAP this CPU has, on this CPU. Every
/// CPU calls it once as it starts, interrupts off.
pub fn init_this_cpu() {
    let star = (KERNEL_CS as u64) << 32 | ((USER_DS & !3) - 8) << 48;
    // SAFETY: the entry point is the kernel's, the selectors the GDT's;
    // nothing runs in ring 3 before this.
    unsafe {
        wrmsr(IA32_STAR, star);
        wrmsr(IA32_LSTAR, &raw const user_syscall_entry as u64);
        wrmsr(IA32_FMASK, FMASK);
        wrmsr(IA32_KERNEL_GS_BASE, 0);
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SCE);
    }
    let ebx = cpuid(7, 0)[1];
    let mut cr4 = read_cr4();
    if ebx & (1 << 7) != 0 {
        cr4 |= CR4_SMEP;
    }
    if ebx & (1 << 20) != 0 {
        cr4 |= CR4_SMAP;
        SMAP.store(true, Ordering::Relaxed);
    }
    // SAFETY: SMEP/SMAP only forbid the kernel executing or touching user
    // pages, which it never does (user memory is reached through the
    // direct map, `uaccess`).
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags)) };
}

fn read_cr4() -> u64 {
    let cr4: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags))
    };
    cr4
}

/// Whether this machine's CPUs have SMAP on (for the boot log).
pub fn smap_on() -> bool {
    SMAP.load(Ordering::Relaxed)
}

/// What a switch to a thread loads on this CPU: the page tables of its
/// process (`cr3`; 0 for the kernel's, the boot PML4), unless already
/// loaded, and its kernel stack's top for its next `syscall`. Interrupts
/// off.
#[inline(always)]
pub fn switch_to(cr3: u64, kernel_stack_top: u64) {
    let local = &crate::percpu::this().local;
    local.kernel_rsp.store(kernel_stack_top, Ordering::Relaxed);
    if local.loaded_cr3.load(Ordering::Relaxed) != cr3 {
        local.loaded_cr3.store(cr3, Ordering::Relaxed);
        let cr3 = if cr3 == 0 { crate::arch::boot_pml4_phys() } else { cr3 };
        // SAFETY: `cr3` is the boot PML4 or a live address space's (its
        // process is the next thread's, which holds it), whose kernel half
        // is the boot PML4's: the code and stack running now stay mapped.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) };
    }
}
