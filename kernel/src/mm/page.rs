//! The physical page allocator: one bit per 4 KiB page of the direct-mapped
//! range, first fit from a moving hint. Simple, O(pages) worst case, and
//! only on slow paths (heap refills, stacks, big buffers).

use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use super::RamRegion;
use super::DIRECT_MAP_SIZE;
use super::PAGE_SIZE;
use crate::sync::SpinLock;

const MAX_PAGES: usize = (DIRECT_MAP_SIZE as usize) / PAGE_SIZE;
const WORDS: usize = MAX_PAGES / 64;

struct Bitmap {
    /// 1 = used (or not RAM).
    bits: [u64; WORDS],
    /// 1 = may hold data: allocated since boot (whatever was written then
    /// stays when it is freed), or not known to be zero at boot.
    dirty: [u64; WORDS],
    hint: usize,
    total: usize,
}

/// Free pages. Changed only with the `PAGES` lock held (so a check and the
/// change that follows it agree), read without it (a budget check on every
/// send reads it).
static FREE: AtomicUsize = AtomicUsize::new(0);

/// Free pages now (a snapshot, without the allocator's lock).
pub fn free_count() -> usize {
    FREE.load(Ordering::Relaxed)
}

static PAGES: SpinLock<Bitmap> = SpinLock::new(Bitmap {
    bits: [u64::MAX; WORDS],
    dirty: [u64::MAX; WORDS],
    hint: 0,
    total: 0,
});

impl Bitmap {
    fn is_used(&self, page: usize) -> bool {
        self.bits[page / 64] & (1 << (page % 64)) != 0
    }

    fn set(&mut self, page: usize, used: bool) {
        if used {
            self.bits[page / 64] |= 1 << (page % 64);
            // Its owner may write to it from now on.
            self.dirty[page / 64] |= 1 << (page % 64);
        } else {
            self.bits[page / 64] &= !(1 << (page % 64));
        }
    }

    fn find_run(&self, count: usize, from: usize, to: usize) -> Option<usize> {
        let mut start = from;
        while start + count <= to {
            // Skip whole used words quickly.
            if start.is_multiple_of(64) && self.bits[start / 64] == u64::MAX {
                start += 64;
                continue;
            }
            match (start..start + count).find(|&p| self.is_used(p)) {
                None => return Some(start),
                Some(used) => start = used + 1,
            }
        }
        None
    }
}

/// The allocator never hands out pages below this physical address: low
/// memory stays the firmware's, and the kernel's own (the APs' startup
/// trampoline, `arch::smp`).
pub const FIRST_ALLOCATABLE: u64 = 0x10_0000;

/// Hands the allocator the usable RAM, minus `reserved` ranges (the kernel
/// image, boot data). Pages below [`FIRST_ALLOCATABLE`] are never used. `zero_filled`: the
/// hypervisor handed the machine its RAM zeroed (see
/// [`alloc_guest_pages`]).
pub fn init(ram: &[RamRegion], reserved: &[(u64, u64)], zero_filled: bool) {
    let mut bm = PAGES.lock();
    for r in ram {
        let start = r.base.max(FIRST_ALLOCATABLE).div_ceil(PAGE_SIZE as u64) as usize;
        let end = (((r.base + r.len) / PAGE_SIZE as u64).min(MAX_PAGES as u64)) as usize;
        // Free the usable range a word at a time where it can.
        let mut p = start;
        while p < end {
            if p.is_multiple_of(64) && p + 64 <= end {
                bm.bits[p / 64] = 0;
                p += 64;
            } else {
                bm.set(p, false);
                p += 1;
            }
        }
    }
    // Then take the reserved ranges back.
    for &(b, e) in reserved {
        let first = (b / PAGE_SIZE as u64) as usize;
        let last = (e.div_ceil(PAGE_SIZE as u64) as usize).min(MAX_PAGES);
        for p in first..last {
            bm.set(p, true);
        }
    }
    if zero_filled {
        // Free now means untouched since the machine started.
        bm.dirty = bm.bits;
    }
    let free = bm.bits.iter().map(|w| w.count_zeros() as usize).sum();
    bm.total = free;
    FREE.store(free, Ordering::Relaxed);
}

/// Allocates `count` physically contiguous pages; returns the physical
/// address of the first, or `None` when memory is exhausted.
pub fn alloc_pages(count: usize) -> Option<u64> {
    if count == 0 {
        return None;
    }
    let mut bm = PAGES.lock();
    if free_count() < count {
        return None;
    }
    let hint = bm.hint;
    let start = bm
        .find_run(count, hint, MAX_PAGES)
        .or_else(|| bm.find_run(count, 0, MAX_PAGES))?;
    for p in start..start + count {
        bm.set(p, true);
    }
    FREE.fetch_sub(count, Ordering::Relaxed);
    bm.hint = start + count;
    Some((start * PAGE_SIZE) as u64)
}

/// Allocates `count` contiguous pages starting at a multiple of `align`
/// pages (a power of two), e.g. 2 MiB chunks for guest RAM.
pub fn alloc_pages_aligned(count: usize, align: usize) -> Option<u64> {
    let phys = alloc_pages_aligned_clean(count, align)?;
    let mut bm = PAGES.lock();
    let first = phys as usize / PAGE_SIZE;
    for p in first..first + count {
        bm.dirty[p / 64] |= 1 << (p % 64);
    }
    Some(phys)
}

/// [`alloc_pages_aligned`], leaving the pages' dirty bits as they were (the
/// caller marks them).
fn alloc_pages_aligned_clean(count: usize, align: usize) -> Option<u64> {
    if count == 0 || !align.is_power_of_two() {
        return None;
    }
    let mut bm = PAGES.lock();
    if free_count() < count {
        return None;
    }
    let mut start = 0;
    while start + count <= MAX_PAGES {
        match bm.find_run(count, start, (start + count).min(MAX_PAGES)) {
            Some(s) if s == start => {
                for p in start..start + count {
                    bm.bits[p / 64] |= 1 << (p % 64);
                }
                FREE.fetch_sub(count, Ordering::Relaxed);
                return Some((start * PAGE_SIZE) as u64);
            }
            _ => start += align,
        }
    }
    None
}

/// Allocates `count` contiguous pages aligned to `align` pages for a
/// guest's RAM, all zero to the guest: pages that may hold data are zeroed,
/// pages untouched since the hypervisor handed over the machine's RAM
/// zero-filled are not (a Linux guest's 256 MiB cost 33.6 million
/// instructions of zeroing, about 1.5 s under TCG). Only for guest RAM: a
/// page "untouched" may still hold what the firmware left in RAM it then
/// gave back (nothing of any component's), harmless to a guest, not to a
/// page table.
pub fn alloc_guest_pages(count: usize, align: usize) -> Option<u64> {
    let phys = alloc_pages_aligned_clean(count, align)?;
    let first = phys as usize / PAGE_SIZE;
    let mut page = first;
    while page < first + count {
        let n = (64 - page % 64).min(first + count - page);
        let mask = (u64::MAX >> (64 - n)) << (page % 64);
        let dirty = {
            let mut bm = PAGES.lock();
            let dirty = bm.dirty[page / 64] & mask;
            bm.dirty[page / 64] |= mask;
            dirty
        };
        for p in (page..page + n).filter(|p| dirty & (1 << (p % 64)) != 0) {
            let ptr = super::phys_to_virt((p * PAGE_SIZE) as u64) as *mut u8;
            // SAFETY: page `p` was just allocated to us and is direct-mapped.
            unsafe { core::ptr::write_bytes(ptr, 0, PAGE_SIZE) };
        }
        page += n;
    }
    Some(phys)
}

/// Allocates zeroed pages.
pub fn alloc_zeroed_pages(count: usize) -> Option<u64> {
    let phys = alloc_pages(count)?;
    let ptr = super::phys_to_virt(phys) as *mut u8;
    // SAFETY: the pages were just allocated to us and are direct-mapped.
    unsafe { core::ptr::write_bytes(ptr, 0, count * PAGE_SIZE) };
    Some(phys)
}

pub fn free_pages(phys: u64, count: usize) {
    let mut bm = PAGES.lock();
    let first = phys as usize / PAGE_SIZE;
    for p in first..first + count {
        debug_assert!(bm.is_used(p), "double free of page {p:#x}");
        if bm.is_used(p) {
            bm.set(p, false);
            FREE.fetch_add(1, Ordering::Relaxed);
        }
    }
    if first < bm.hint {
        bm.hint = first;
    }
}

/// (free pages, total pages)
pub fn stats() -> (usize, usize) {
    let bm = PAGES.lock();
    (free_count(), bm.total)
}
