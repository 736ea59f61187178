//! The kernel image. Everything lives in the `starina_kernel` library (so
//! its logic can be unit-tested on the host); this binary only links it.
#![no_std]
#![no_main]

// The PVH and Multiboot2 entry points are in the library's boot assembly;
// referencing the Rust entry keeps the library linked in.
#[used]
static KEEP: extern "C" fn(u64, u64) -> ! = starina_kernel::boot::kernel_entry;
