//! The user process's global allocator: power-of-two size classes with a
//! free list each, refilled from pages the kernel maps
//! ([`super::thread::map_pages`]; they go with the process). A block is
//! aligned to its size up to a page, so alignments up to 4096 hold.

use core::alloc::GlobalAlloc;
use core::alloc::Layout;

/// 16 bytes (class 0) to 1 GiB (class 26).
const CLASSES: usize = 27;
const MIN_SHIFT: u32 = 4;
/// Small classes are carved out of chunks of this many bytes.
const CHUNK: usize = 64 * 1024;

pub struct Heap {
    free: spin::Mutex<[usize; CLASSES]>,
}

impl Heap {
    pub const fn new() -> Heap {
        Heap {
            free: spin::Mutex::new([0; CLASSES]),
        }
    }
}

impl Default for Heap {
    fn default() -> Heap {
        Heap::new()
    }
}

fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > 4096 {
        return None;
    }
    let size = layout
        .size()
        .max(layout.align())
        .max(1 << MIN_SHIFT)
        .checked_next_power_of_two()?;
    let class = (size.trailing_zeros() - MIN_SHIFT) as usize;
    (class < CLASSES).then_some(class)
}

#[allow(unsafe_code)]
// SAFETY: blocks come from pages mapped for this process only, each handed
// out once until it is freed (the free lists are under one lock), sized and
// aligned as `class_of` says for the layout.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return core::ptr::null_mut();
        };
        let size = 1usize << (class as u32 + MIN_SHIFT);
        let mut free = self.free.lock();
        if free[class] == 0 {
            let bytes = size.max(CHUNK);
            let Ok(at) = super::thread::map_pages(bytes.div_ceil(4096) as u64) else {
                return core::ptr::null_mut();
            };
            // Thread the new blocks onto the list, last first.
            let mut next = 0;
            for i in (0..bytes / size).rev() {
                let block = at as usize + i * size;
                // SAFETY: `block` is inside the pages just mapped, aligned
                // for a usize.
                unsafe { (block as *mut usize).write(next) };
                next = block;
            }
            free[class] = next;
        }
        let block = free[class];
        // SAFETY: a free block holds the address of the next one.
        free[class] = unsafe { (block as *const usize).read() };
        block as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return;
        };
        let mut free = self.free.lock();
        // SAFETY: `ptr` is a block of this class (the caller's contract),
        // no longer in use: it holds the list's link now.
        unsafe { (ptr as *mut usize).write(free[class]) };
        free[class] = ptr as usize;
    }
}
