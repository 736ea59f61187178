//! The kernel heap: power-of-two size classes from 16 to 2048 bytes, each a
//! free list carved out of whole pages, and whole pages for anything larger.
//! The small-object path (every channel message) is a few instructions:
//! pop a free-list head under a lock.
//!
//! Each memory account (`crate::account`: the kernel, and one per
//! component) has free lists of its own, on pages of its own, and a table
//! says which account owns each page: a block freed by anyone goes back to
//! the account that allocated it, and is uncharged there. A component's
//! own allocation past its budget, or one that would dip into the pages
//! kept for the kernel ([`RESERVE_PAGES`]), returns null: the component
//! panics and ends alone. Allocations inside system calls and the kernel's
//! own are charged but never refused for a budget.
//!
//! Every free small block carries a tag in its second word (a per-boot
//! secret mixed with its address): freeing a block that has it is a double
//! free, and allocating one that lost it means something wrote to it after
//! it was freed. Either stops the kernel at once, at the culprit, instead
//! of letting two owners share the block.

use core::alloc::GlobalAlloc;
use core::alloc::Layout;
use core::ptr::null_mut;
use core::sync::atomic::AtomicU8;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use super::page;
use super::phys_to_virt;
use super::virt_to_phys;
use super::DIRECT_MAP_SIZE;
use super::PAGE_SIZE;
use crate::account;
use crate::account::MAX_ACCOUNTS;
use crate::sync::SpinLock;

const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];

struct FreeLists {
    heads: [usize; CLASSES.len()],
}

pub struct Heap {
    lists: [SpinLock<FreeLists>; MAX_ACCOUNTS],
}

/// Free pages a component's allocation never takes: what the kernel's own
/// work (teardown, restarts, queues) can still count on when components
/// have taken everything else.
pub const RESERVE_PAGES: usize = 2048;

const MAX_PAGES: usize = DIRECT_MAP_SIZE as usize / PAGE_SIZE;

/// The account owning each heap page (the first page of a large block).
static OWNER: [AtomicU8; MAX_PAGES] = [const { AtomicU8::new(account::KERNEL) }; MAX_PAGES];

fn owner_slot(addr: usize) -> &'static AtomicU8 {
    &OWNER[virt_to_phys(addr) as usize / PAGE_SIZE % MAX_PAGES]
}

/// Who an allocation is for: the caller's account, and whether it is the
/// component's own (refused past its budget) rather than the kernel's work.
fn caller() -> (u8, bool) {
    match crate::sched::try_current() {
        Some(t) if !crate::interrupt::in_interrupt() => {
            let account = t.process.account;
            (account, account != account::KERNEL && !t.in_system_call())
        }
        _ => (account::KERNEL, false),
    }
}

/// Whether a component's allocation may take `pages` more pages.
fn may_take_pages(pages: usize) -> bool {
    page::free_count() >= RESERVE_PAGES + pages
}

/// Bytes handed out and not yet returned (small and large), for the
/// heap-usage figures tests and benchmarks report.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The per-boot secret of [`free_tag`] (so nothing outside can forge a tag).
static TAG_SECRET: spin::Once<usize> = spin::Once::new();

/// What the second word of a free block at `block` holds.
fn free_tag(block: usize) -> usize {
    let secret = *TAG_SECRET.call_once(|| crate::arch::cpu::rdtsc() as usize | 1);
    block.rotate_left(29) ^ secret
}

/// Puts `block` at the head of a free list whose head is `next`.
///
/// # Safety
/// `block` is a free block of at least 16 bytes that nothing references.
unsafe fn push_free(block: usize, next: usize) {
    // SAFETY: per the contract; blocks are 16-byte aligned at least.
    unsafe {
        (block as *mut usize).write(next);
        (block as *mut usize).add(1).write(free_tag(block));
    }
}

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align());
    CLASSES.iter().position(|&c| size <= c)
}

impl Heap {
    pub const fn new() -> Heap {
        Heap {
            lists: [const {
                SpinLock::new(FreeLists {
                    heads: [0; CLASSES.len()],
                })
            }; MAX_ACCOUNTS],
        }
    }

    /// A new page of `class` blocks for `account`'s lists.
    fn refill(lists: &mut FreeLists, class: usize, account: u8, strict: bool) -> bool {
        if strict && !may_take_pages(1) {
            return false;
        }
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
        owner_slot(base).store(account, Ordering::Relaxed);
        let size = CLASSES[class];
        // Thread every block of the new page onto the free list.
        for off in (0..PAGE_SIZE).step_by(size).rev() {
            let block = base + off;
            // SAFETY: `block` lies inside the page we own, is aligned to
            // `size` >= 16, and nothing else references it yet.
            unsafe { push_free(block, lists.heads[class]) };
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
        let (who, strict) = caller();
        let account = account::get(who);
        match class_of(&layout) {
            Some(class) => {
                let size = CLASSES[class];
                if strict && !account.fits(size) {
                    return null_mut();
                }
                let mut lists = self.lists[who as usize].lock();
                if lists.heads[class] == 0 && !Self::refill(&mut lists, class, who, strict) {
                    return null_mut();
                }
                let block = lists.heads[class];
                // SAFETY: `block` is the head of a free list: a free block
                // whose first word holds the next free block, its second
                // the tag (cleared: a live block never holds it).
                let (next, tag) = unsafe {
                    let words = block as *mut usize;
                    let tag = words.add(1).read();
                    words.add(1).write(0);
                    (words.read(), tag)
                };
                if tag != free_tag(block) {
                    drop(lists);
                    panic!("heap: a free {size}-byte block at {block:#x} was written after it was freed");
                }
                lists.heads[class] = next;
                drop(lists);
                IN_USE.fetch_add(size, Ordering::Relaxed);
                account.charge(size);
                block as *mut u8
            }
            None => {
                if layout.align() > PAGE_SIZE {
                    return null_mut();
                }
                let pages = layout.size().div_ceil(PAGE_SIZE);
                let bytes = pages * PAGE_SIZE;
                if strict && (!account.fits(bytes) || !may_take_pages(pages)) {
                    return null_mut();
                }
                match page::alloc_pages(pages) {
                    Some(phys) => {
                        let block = phys_to_virt(phys);
                        owner_slot(block).store(who, Ordering::Relaxed);
                        IN_USE.fetch_add(bytes, Ordering::Relaxed);
                        account.charge(bytes);
                        block as *mut u8
                    }
                    None => null_mut(),
                }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let owner = owner_slot(ptr as usize).load(Ordering::Relaxed);
        match class_of(&layout) {
            Some(class) => {
                if !(ptr as usize).is_multiple_of(CLASSES[class]) {
                    panic!(
                        "heap: freeing {:#x} as a {}-byte block, which it is not (a layout that is not the allocation's)",
                        ptr as usize, CLASSES[class]
                    );
                }
                let mut lists = self.lists[owner as usize].lock();
                // SAFETY: `ptr` was allocated from this class (same layout),
                // at least 16 bytes, on a page of `owner`'s.
                if unsafe { (ptr as *const usize).add(1).read() } == free_tag(ptr as usize) {
                    drop(lists);
                    panic!(
                        "heap: double free of a {}-byte block at {:#x}",
                        CLASSES[class], ptr as usize
                    );
                }
                // SAFETY: as above, and no longer used by anyone.
                unsafe { push_free(ptr as usize, lists.heads[class]) };
                lists.heads[class] = ptr as usize;
                drop(lists);
                IN_USE.fetch_sub(CLASSES[class], Ordering::Relaxed);
                account::get(owner).uncharge(CLASSES[class]);
            }
            None => {
                let pages = layout.size().div_ceil(PAGE_SIZE);
                page::free_pages(virt_to_phys(ptr as usize), pages);
                IN_USE.fetch_sub(pages * PAGE_SIZE, Ordering::Relaxed);
                account::get(owner).uncharge(pages * PAGE_SIZE);
            }
        }
    }
}
