//! The 32-bit entries, and the long-mode setup they share.
//!
//! - PVH (`pvh_start32`): QEMU, Firecracker and Cloud Hypervisor jump here
//!   in 32-bit protected mode with paging off and EBX pointing at
//!   `hvm_start_info`.
//! - Multiboot2 (`mb2_start32`, named by the header's entry-address tag):
//!   GRUB jumps here in the same mode with EAX = the Multiboot2 magic and
//!   EBX pointing at the boot information structure.
//!
//! Each entry records which protocol booted us; both then build boot page
//! tables, enable SSE (the prebuilt `core` uses it), enter long mode and
//! call `kernel_entry(info physical address, protocol)` in the higher half.
//!
//! Boot page tables (2 MiB pages, all of the first 4 GiB):
//! - PML4[0]   -> identity map (needed until we run in the higher half; kept
//!   for MMIO such as the LAPIC at 0xFEE00000),
//! - PML4[256] -> the same, as the direct map at 0xffff_8000_0000_0000,
//! - PML4[511] -> PDPT_HIGH[510] -> first 1 GiB at 0xffff_ffff_8000_0000
//!   (the kernel image, code-model=kernel).

/// What `kernel_entry`'s second argument says booted us.
pub const BOOT_PVH: u64 = 0;
pub const BOOT_MULTIBOOT2: u64 = 1;
/// We came in at the Multiboot2 entry without the Multiboot2 magic in EAX.
pub const BOOT_MULTIBOOT2_BAD_MAGIC: u64 = 2;

core::arch::global_asm!(
    r#"
/* The Multiboot2 header: within the file's first 32 KiB, 8-byte aligned
 * (the linker script puts it first). Tags: entry address, page-aligned
 * modules, end. */
.section .multiboot2, "a"
.balign 8
mb2_header:
    .long 0xe85250d6                /* magic */
    .long 0                         /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xe85250d6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 3, 0                     /* entry address tag */
    .long 12
    .long mb2_start32
    .balign 8
    .short 6, 0                     /* module alignment tag: page-aligned */
    .long 8
    .short 0, 0                     /* end tag */
    .long 8
mb2_header_end:

.section .note.Xen, "a"
.balign 4
    .long 4            /* namesz */
    .long 4            /* descsz */
    .long 18           /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32

.section .boot.text, "ax"
.code32
.global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                    /* hvm_start_info (physical) */
    mov ebx, {pvh}                  /* the protocol, kept in EBX until the call */
    jmp boot_common32

.global mb2_start32
mb2_start32:
    cli
    cld
    mov esi, ebx                    /* the Multiboot2 information (physical) */
    mov ebx, {mb2}
    cmp eax, 0x36d76289             /* the bootloader's magic */
    je boot_common32
    mov ebx, {mb2_bad}

boot_common32:
    /* A stack of our own: neither protocol defines ESP (the far return
     * below pushes onto it). */
    mov esp, offset boot_stack32_top

    /* Fill the four page directories: 2048 x 2 MiB = 4 GiB. */
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                    /* present | writable | huge */
    mov [boot_pd + ecx * 8], eax
    mov dword ptr [boot_pd + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, 2048
    jne 1b

    /* PDPT_LOW[0..4] -> the four PDs. */
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt_low + ecx * 8], eax
    mov dword ptr [boot_pdpt_low + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, 4
    jne 2b

    /* PDPT_HIGH[510] -> first PD (phys 0..1 GiB at -2 GiB). */
    mov eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt_high + 510 * 8], eax

    mov eax, offset boot_pdpt_low
    or eax, 0x3
    mov [boot_pml4], eax
    mov [boot_pml4 + 256 * 8], eax
    mov eax, offset boot_pdpt_high
    or eax, 0x3
    mov [boot_pml4 + 511 * 8], eax

    /* CR4: PAE | OSFXSR | OSXMMEXCPT. */
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax

    mov eax, offset boot_pml4
    mov cr3, eax

    /* EFER: LME | NXE. */
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr

    /* CR0: PE | MP | WP | PG, clear EM (SSE on). */
    mov eax, cr0
    and eax, ~(1 << 2)
    or eax, (1 << 0) | (1 << 1) | (1 << 16) | (1 << 31)
    mov cr0, eax

    lgdt [boot_gdtr]
    /* far jump to 64-bit code segment */
    mov eax, offset boot_long_mode
    push 0x08
    push eax
    retf

.code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ax, ax
    mov fs, ax
    mov gs, ax

    /* Zero .bss (the boot stack lives there too; it is not in use yet). */
    movabs rdi, offset __bss_start
    movabs rcx, offset __bss_end
    sub rcx, rdi
    xor eax, eax
    rep stosb

    movabs rsp, offset BOOT_STACK + 65536 - 16
    xor ebp, ebp
    mov edi, esi                    /* arg0: the boot information (physical) */
    mov esi, ebx                    /* arg1: the protocol */
    movabs rax, offset kernel_entry
    call rax
3:
    hlt
    jmp 3b

.section .boot.data, "aw"
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .boot.bss, "aw", @nobits
.balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4
.balign 16
                .skip 64
boot_stack32_top:
"#,
    pvh = const BOOT_PVH,
    mb2 = const BOOT_MULTIBOOT2,
    mb2_bad = const BOOT_MULTIBOOT2_BAD_MAGIC,
);

/// The boot stack. `kernel_entry` runs on it; it becomes the idle thread's
/// stack.
#[repr(C, align(16))]
pub struct BootStack(pub [u8; BOOT_STACK_SIZE]);
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

#[no_mangle]
pub static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

extern "C" {
    static boot_pml4: u8;
}

/// Physical address of the boot PML4, which stays the kernel's page table.
pub fn boot_pml4_phys() -> u64 {
    // SAFETY: taking the address of a linker-provided symbol; the boot
    // section is linked at its physical address.
    (&raw const boot_pml4) as u64
}
