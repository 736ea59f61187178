//! The symbols a freestanding user image must provide itself: the memory
//! intrinsics (from `starina-mem`, shared with the kernel) and the
//! unwinding symbols the prebuilt `core` and `alloc` name.

// `#[no_mangle]` counts as unsafe code: the two symbols below need it.
#![allow(unsafe_code)]

// Linked for its `memcpy` and friends, which nothing names.
extern crate starina_mem;

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by the prebuilt `alloc`; with `panic = "abort"` nothing
/// unwinds, so it is never reached: it ends the process if it were.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::syscall::kernel().process_exit(134)
}
