//! The kernel heap: power-of-two size classes from 16 to 2048 bytes, each a
//! free list carved out of whole pages, and whole pages for anything larger.
//! The small-object path (every channel message) is a few instructions:
//! pop a free-list head under a lock.

use core::alloc::GlobalAlloc;
use core::alloc::Layout;
use core::ptr::null_mut;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use super::page;
use super::phys_to_virt;
use super::virt_to_phys;
use super::PAGE_SIZE;
use crate::sync::SpinLock;

const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];

struct FreeLists {
    heads: [usize; CLASSES.len()],
}

pub struct Heap {
    lists: SpinLock<FreeLists>,
}

/// Bytes handed out and not yet returned (small and large), for the
/// heap-usage figures tests and benchmarks report.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align());
    CLASSES.iter().position(|&c| size <= c)
}

impl Heap {
    pub const fn new() -> Heap {
        Heap {
            lists: SpinLock::new(FreeLists {
                heads: [0; CLASSES.len()],
            }),
        }
    }

    fn refill(lists: &mut FreeLists, class: usize) -> bool {
        let base = match page::alloc_pages(1) {
            Some(phys) => {
                super::note_kept_pages(1);
                phys_to_virt(phys)
            }
            None => match early_page() {
                Some(p) => p,
                None => return false,
            },
        };
        let size = CLASSES[class];
        // Thread every block of the new page onto the free list.
        for off in (0..PAGE_SIZE).step_by(size).rev() {
            let block = base + off;
            // SAFETY: `block` lies inside the page we own, is aligned to
            // `size` >= 8, and nothing else references it yet.
            unsafe { (block as *mut usize).write(lists.heads[class]) };
            lists.heads[class] = block;
        }
        true
    }
}

/// Pages for the first allocations, before the page allocator has been
/// told where RAM is (parsing the boot information needs a few).
const EARLY_PAGES: usize = 16;

#[repr(C, align(4096))]
struct EarlyArena([[u8; PAGE_SIZE]; EARLY_PAGES]);

static mut EARLY_ARENA: EarlyArena = EarlyArena([[0; PAGE_SIZE]; EARLY_PAGES]);
static EARLY_NEXT: AtomicUsize = AtomicUsize::new(0);

fn early_page() -> Option<usize> {
    let i = EARLY_NEXT.fetch_add(1, Ordering::Relaxed);
    if i >= EARLY_PAGES {
        return None;
    }
    // SAFETY: each index is handed out once (atomic counter), so the page
    // is ours alone from now on.
    Some(unsafe { &raw mut EARLY_ARENA.0[i] } as usize)
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

pub fn bytes_in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

// SAFETY: blocks come from pages owned by the allocator, each handed out at
// most once until freed; size classes are powers of two carved from
// page-aligned memory, so every block is aligned to its class size, which
// covers the layout's alignment (`class_of` takes max(size, align)).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(&layout) {
            Some(class) => {
                let mut lists = self.lists.lock();
                if lists.heads[class] == 0 && !Self::refill(&mut lists, class) {
                    return null_mut();
                }
                let block = lists.heads[class];
                // SAFETY: `block` is the head of a free list: a free block
                // whose first word holds the next free block.
                lists.heads[class] = unsafe { (block as *const usize).read() };
                IN_USE.fetch_add(CLASSES[class], Ordering::Relaxed);
                block as *mut u8
            }
            None => {
                if layout.align() > PAGE_SIZE {
                    return null_mut();
                }
                let pages = layout.size().div_ceil(PAGE_SIZE);
                match page::alloc_pages(pages) {
                    Some(phys) => {
                        IN_USE.fetch_add(pages * PAGE_SIZE, Ordering::Relaxed);
                        phys_to_virt(phys) as *mut u8
                    }
                    None => null_mut(),
                }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(&layout) {
            Some(class) => {
                let mut lists = self.lists.lock();
                // SAFETY: `ptr` was allocated from this class (same layout)
                // and is no longer used by its owner.
                unsafe { (ptr as *mut usize).write(lists.heads[class]) };
                lists.heads[class] = ptr as usize;
                IN_USE.fetch_sub(CLASSES[class], Ordering::Relaxed);
            }
            None => {
                let pages = layout.size().div_ceil(PAGE_SIZE);
                page::free_pages(virt_to_phys(ptr as usize), pages);
                IN_USE.fetch_sub(pages * PAGE_SIZE, Ordering::Relaxed);
            }
        }
    }
}
