//! The `syscall` instruction: the one place the user runtime leaves ring 3.
#![allow(unsafe_code)]

/// What a call returns: `rax` (0 or an error's number), then `rdx`, `r8`,
/// `r9`, `r10`, `rsi` (`starina::abi::user`).
pub struct Ret {
    pub status: u64,
    pub out: [u64; 5],
}

/// Makes system call `no` with up to six arguments.
#[inline(always)]
pub fn syscall(no: u16, a: [u64; 6]) -> Ret {
    let (status, rdx, r8, r9, r10, rsi);
    // SAFETY: `syscall` enters the kernel, which reads only the registers
    // named here and every pointer among them through its own checks
    // (never trusting them); it clobbers rcx and r11 (the instruction's)
    // and whatever the C ABI lets a call clobber (the kernel's Rust code
    // may use the vector registers), and returns to the next instruction.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") no as u64 => status,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => rsi,
            inlateout("rdx") a[2] => rdx,
            inlateout("r10") a[3] => r10,
            inlateout("r8") a[4] => r8,
            inlateout("r9") a[5] => r9,
            out("rcx") _,
            out("r11") _,
            clobber_abi("sysv64"),
        );
    }
    Ret {
        status,
        out: [rdx, r8, r9, r10, rsi],
    }
}
