//! The VM entry and exit stub: guest general-purpose registers in and out
//! (VMX switches only RSP, RIP and RFLAGS), VMLAUNCH or VMRESUME, and the
//! host's callee-saved registers around it.

use core::arch::global_asm;

/// Guest registers the VMCS does not hold, in the order `vmx_run` reads
/// them.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct GuestGprs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(GuestGprs, rdi) == 40);
    assert!(core::mem::offset_of!(GuestGprs, rbp) == 48);
    assert!(core::mem::offset_of!(GuestGprs, r15) == 112);
};

global_asm!(
    r#"
.section .text.vmx_run, "ax"
.global vmx_run
// vmx_run(gprs: *mut GuestGprs (rdi), launched: u64 (rsi)) -> u64
// 0: the guest ran and exited (to vmx_exit); 1: VMLAUNCH/VMRESUME failed
// (the flags are lost; the caller reads the VM-instruction error).
// Runs with interrupts off and the vCPU's VMCS current.
vmx_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi                    // the register block, found again at the exit

    mov rax, 0x6c14             // HOST_RSP: this stack, as it is now
    vmwrite rax, rsp
    lea rdx, [rip + vmx_exit]
    mov rax, 0x6c16             // HOST_RIP
    vmwrite rax, rdx

    test rsi, rsi               // the MOVs below keep these flags
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rcx, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rsi, [rdi + 32]
    mov rbp, [rdi + 48]
    mov r8,  [rdi + 56]
    mov r9,  [rdi + 64]
    mov r10, [rdi + 72]
    mov r11, [rdi + 80]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov rdi, [rdi + 40]
    jnz 1f
    vmlaunch
    jmp 2f
1:
    vmresume
2:
    // Neither entered: the stack is as pushed.
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    mov eax, 1
    ret

vmx_exit:
    // The CPU loaded HOST_RSP and HOST_RIP; every other register is the
    // guest's.
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0], rax
    mov [rdi + 8], rbx
    mov [rdi + 16], rcx
    mov [rdi + 24], rdx
    mov [rdi + 32], rsi
    mov [rdi + 48], rbp
    mov [rdi + 56], r8
    mov [rdi + 64], r9
    mov [rdi + 72], r10
    mov [rdi + 80], r11
    mov [rdi + 88], r12
    mov [rdi + 96], r13
    mov [rdi + 104], r14
    mov [rdi + 112], r15
    pop rax
    mov [rdi + 40], rax
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret
"#
);

extern "C" {
    /// See the stub above.
    pub fn vmx_run(gprs: *mut GuestGprs, launched: u64) -> u64;
}
