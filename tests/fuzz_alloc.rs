//! The counting global allocator for host fuzz targets: integration tests
//! include it next to the driver (`mod driver; mod fuzz_alloc;`), so that
//! the driver can bound what one case allocates. Crates that forbid unsafe
//! code use the driver alone.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;

use crate::driver::note_alloc;

/// Forwards to the system allocator and counts bytes per thread.
struct CountingAlloc;

// SAFETY: every method forwards to the system allocator with the caller's
// layout and pointer unchanged; the counting touches only `const`
// thread-locals, which neither allocate nor run destructors.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size() as isize);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size() as isize);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_alloc(-(layout.size() as isize));
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;
