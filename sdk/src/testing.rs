//! Fault injection and raw system calls for the tests of user-mode
//! isolation (feature `testing`): a component running in ring 3 can
//! write through a wild pointer, jump into data, or pass the kernel
//! arbitrary registers, and the kernel must end it alone (or answer with
//! an error). In a component linked into the kernel there is no such
//! thing as a wild write in safe Rust: the calls there panic instead
//! (which ends the component alone) or answer `NotSupported`.
#![allow(unsafe_code)]

use crate::abi::Error;

/// Writes a byte at address `addr`.
pub fn wild_write(addr: usize) {
    #[cfg(feature = "user")]
    // SAFETY: none: this is the point. In ring 3 the kernel's page tables
    // decide; a write the process may not do faults and ends the process
    // alone (the test's subject).
    unsafe {
        core::ptr::write_volatile(addr as *mut u8, 0x5a)
    };
    #[cfg(not(feature = "user"))]
    panic!("wild write to {addr:#x} refused: in-kernel components are isolated by safe Rust");
}

/// Jumps to address `addr` as if it were code.
pub fn jump_to(addr: usize) {
    #[cfg(feature = "user")]
    // SAFETY: none, as for `wild_write`: in ring 3 a jump into memory that
    // is not executable faults and ends the process alone.
    unsafe {
        let f: extern "C" fn() = core::mem::transmute::<usize, extern "C" fn()>(addr);
        f()
    };
    #[cfg(not(feature = "user"))]
    panic!("jump to {addr:#x} refused: in-kernel components are isolated by safe Rust");
}

/// System call `no` with raw registers (`starina::abi::user`): its
/// results (`rdx`, `r8`, `r9`, `r10`, `rsi`) or its error. Only in user
/// mode (`NotSupported` in the kernel, where there are no registers to
/// pass).
pub fn raw_syscall(no: u16, args: [u64; 6]) -> Result<[u64; 5], Error> {
    #[cfg(feature = "user")]
    {
        crate::user::raw_call(no, args)
    }
    #[cfg(not(feature = "user"))]
    {
        let _ = (no, args);
        Err(Error::NotSupported)
    }
}
