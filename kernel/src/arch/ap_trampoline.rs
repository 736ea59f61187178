//! The code an application processor (AP) runs first: the startup IPI
//! starts it in real mode at the start of a page below 1 MiB, where
//! [`install`] copies this trampoline. It goes 16-bit -> 32-bit protected
//! mode -> long mode on the kernel's page tables (the boot PML4, whose
//! identity map covers the trampoline), takes the stack the boot CPU made
//! for it and calls the entry function with the CPU's index.
//!
//! The code is position-independent: in real mode CS is the page's
//! segment, and the 16-bit part keeps the page's physical address in EBX
//! for the rest. The two far jumps' targets and the GDT's base are
//! patched in by [`install`] for the page; the parameters are written in
//! the data at the end.

use core::sync::atomic::Ordering;

use crate::mm::phys_to_virt;

core::arch::global_asm!(
    r#"
.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline_start
ap_trampoline_start:
.code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    movzwl %ax, %ebx
    shll $4, %ebx                   /* EBX: the page's physical address */
    lgdtl (ap_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax                    /* PE */
    movl %eax, %cr0
    .byte 0x66, 0xea                /* jmp far 0x18:ap_protected (32-bit offset) */
.global ap_far_protected
ap_far_protected:
    .long 0
    .word 0x18

.code32
.global ap_protected
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* CR4: PAE | OSFXSR | OSXMMEXCPT (SSE, as on the boot CPU). */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl (ap_param_cr3 - ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    /* EFER: LME | NXE (the kernel's stacks are no-execute). */
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    /* CR0: PE | MP | NE | WP | PG; caching on (CD, NW off), EM off. */
    movl %cr0, %eax
    andl $~((1 << 2) | (1 << 29) | (1 << 30)), %eax
    orl $((1 << 0) | (1 << 1) | (1 << 5) | (1 << 16) | (1 << 31)), %eax
    movl %eax, %cr0
    .byte 0xea                      /* jmp far 0x08:ap_long (32-bit offset) */
.global ap_far_long
ap_far_long:
    .long 0
    .word 0x08

.code64
.global ap_long
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl %ebx, %ebx                 /* the upper half is undefined after the switch */
    movq (ap_param_stack_top - ap_trampoline_start)(%rbx), %rsp
    movq (ap_param_cpu_index - ap_trampoline_start)(%rbx), %rdi
    movq (ap_param_entry - ap_trampoline_start)(%rbx), %rax
    xorl %ebp, %ebp
    call *%rax
1:
    cli
    hlt
    jmp 1b

.balign 8
.global ap_gdt
ap_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00cf9a000000ffff        /* 0x18: 32-bit code */
ap_gdt_end:
ap_gdtr:
    .word ap_gdt_end - ap_gdt - 1
.global ap_gdt_base
ap_gdt_base:
    .long 0
.balign 8
.global ap_param_cr3
ap_param_cr3:
    .quad 0
.global ap_param_stack_top
ap_param_stack_top:
    .quad 0
.global ap_param_cpu_index
ap_param_cpu_index:
    .quad 0
.global ap_param_entry
ap_param_entry:
    .quad 0
.global ap_trampoline_end
ap_trampoline_end:
.text
"#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_far_protected: u8;
    static ap_far_long: u8;
    static ap_protected: u8;
    static ap_long: u8;
    static ap_gdt: u8;
    static ap_gdt_base: u8;
    static ap_param_cr3: u8;
    static ap_param_stack_top: u8;
    static ap_param_cpu_index: u8;
    static ap_param_entry: u8;
}

/// What one AP gets from the trampoline.
pub struct ApStart {
    /// The page tables (physical, below 4 GiB).
    pub cr3: u64,
    /// Its kernel stack's top.
    pub stack_top: u64,
    /// Its CPU index, the entry function's argument.
    pub cpu_index: u64,
    /// Called on the stack in long mode; never returns.
    pub entry: extern "C" fn(u64) -> !,
}

/// The offset of trampoline symbol `at` from the trampoline's start.
fn offset_of(at: *const u8) -> usize {
    at as usize - (&raw const ap_trampoline_start) as usize
}

/// The trampoline's length in bytes.
fn len() -> usize {
    offset_of(&raw const ap_trampoline_end)
}

/// Copies the trampoline to the page at physical `page` (below 1 MiB,
/// RAM the kernel uses for nothing else) and writes `start` into it.
pub fn install(page: u64, start: &ApStart) {
    assert!(len() <= 4096 && page.is_multiple_of(4096) && page < 0x10_0000);
    let base = phys_to_virt(page) as *mut u8;
    let put32 = |at: *const u8, value: u32| {
        // SAFETY: `at` is a symbol inside the trampoline, whose copy at
        // `base` (below) lies within the page; unaligned writes are fine.
        unsafe { base.add(offset_of(at)).cast::<u32>().write_unaligned(value) }
    };
    let put64 = |at: *const u8, value: u64| {
        // SAFETY: as for `put32`.
        unsafe { base.add(offset_of(at)).cast::<u64>().write_unaligned(value) }
    };
    // SAFETY: the page is the caller's (RAM below 1 MiB, which the page
    // allocator never hands out), direct-mapped, and no CPU runs in it
    // now (the previous AP, if any, came up and left it, or was sent
    // INIT again); the trampoline is `len()` <= 4096 bytes.
    unsafe { core::ptr::copy_nonoverlapping(&raw const ap_trampoline_start, base, len()) };
    let page32 = page as u32;
    let at_page = |at: *const u8| page32 + offset_of(at) as u32;
    put32(
        &raw const ap_far_protected,
        at_page(&raw const ap_protected),
    );
    put32(&raw const ap_far_long, at_page(&raw const ap_long));
    put32(&raw const ap_gdt_base, at_page(&raw const ap_gdt));
    put64(&raw const ap_param_cr3, start.cr3);
    put64(&raw const ap_param_stack_top, start.stack_top);
    put64(&raw const ap_param_cpu_index, start.cpu_index);
    put64(&raw const ap_param_entry, start.entry as usize as u64);
    core::sync::atomic::fence(Ordering::SeqCst);
}
