//! The memory intrinsics a freestanding Starina image provides itself:
//! `compiler_builtins` does not export them on the target the kernel and
//! the user-mode components are built for (`x86_64-unknown-linux-gnu`,
//! linked without a C library).
//!
//! A crate is linked only where it is named, so only the images name it:
//! the kernel (`kernel/src/lib.rs`, not in its host tests) and the SDK's
//! user-mode runtime (`sdk/src/user`). A host binary never does, and keeps
//! its C library's functions.
//!
//! Copies and fills go eight bytes at a time, then the tail: string
//! instructions are counted (and, under emulation, executed) one iteration
//! at a time.
#![no_std]

use core::arch::asm;

/// # Safety
/// `dst` and `src` valid for `n` bytes, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: upheld by the caller (the C contract of memcpy).
    unsafe {
        asm!("rep movsq", "mov rcx, {tail}", "rep movsb",
             tail = in(reg) n & 7,
             inout("rcx") n / 8 => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize + n) {
        // SAFETY: a forward copy is correct when dst is below src or the
        // ranges do not overlap.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: copy backwards (direction flag set, then cleared again as
        // the ABI requires) so overlapping bytes are read before written.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
        dst
    }
}

/// # Safety
/// `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    let byte = value as u8 as u64;
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
             tail = in(reg) n & 7,
             inout("rcx") n / 8 => _, inout("rdi") dst => _, in("rax") byte * 0x0101_0101_0101_0101,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, within both buffers (volatile: the loop is not
        // turned back into a call to memcmp).
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// As for `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
