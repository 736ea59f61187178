//! What a freestanding Rust binary must provide itself: the global
//! allocator, the panic handler and an unused unwinding personality
//! routine referenced by the prebuilt `core`. The memory intrinsics come
//! from `starina-mem`, shared with the user-mode images.

// Linked for its `memcpy` and friends, which nothing names.
extern crate starina_mem;

use crate::mm::heap::Heap;

#[global_allocator]
static HEAP: Heap = Heap::new();

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::panic::handle(info)
}

/// Referenced by the prebuilt `alloc` (compiled with unwinding); with
/// `panic = "abort"` nothing ever unwinds, so it is never reached.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::power_off(crate::panic::KERNEL_PANIC_EXIT_CODE)
}
