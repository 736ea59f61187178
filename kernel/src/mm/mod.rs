//! Memory: the physical page allocator, the kernel heap, and thread stacks
//! with guard pages.
//!
//! All of the first 4 GiB of physical memory is mapped at
//! [`DIRECT_MAP_BASE`] by the boot page tables, so the kernel reaches any
//! page it allocated through `phys_to_virt`.

pub mod heap;
pub mod page;
pub mod stack;
pub mod tlb;

pub const PAGE_SIZE: usize = 4096;
pub const DIRECT_MAP_BASE: usize = 0xffff_8000_0000_0000;
/// How much physical memory the direct map covers.
pub const DIRECT_MAP_SIZE: u64 = 4 << 30;
/// Where the kernel image is linked (code-model=kernel).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

pub fn phys_to_virt(phys: u64) -> usize {
    DIRECT_MAP_BASE + phys as usize
}

pub fn virt_to_phys(virt: usize) -> u64 {
    if virt as u64 >= KERNEL_VMA {
        virt as u64 - KERNEL_VMA
    } else {
        (virt - DIRECT_MAP_BASE) as u64
    }
}

/// A usable RAM region from the firmware's memory map.
#[derive(Clone, Copy, Debug)]
pub struct RamRegion {
    pub base: u64,
    pub len: u64,
}

/// Pages handed out as DMA memory (for monitoring).
pub static DMA_PAGES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Pages the kernel took for structures it keeps for good once made: the
/// heap's pages for small blocks, page tables of the stack region and of
/// device mappings, the SVM host save areas. They never return to the free
/// pages, so a leak check counts them with the free ones (for monitoring).
pub static KEPT_PAGES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Counts `pages` just taken for good (see [`KEPT_PAGES`]).
pub fn note_kept_pages(pages: usize) {
    KEPT_PAGES.fetch_add(pages, core::sync::atomic::Ordering::Relaxed);
}

/// The physical address behind `len` bytes at kernel address `virt`, if
/// they are physically contiguous: the direct map and the kernel image
/// are; thread stacks (their own region, page by page) are not.
pub fn contiguous_phys(virt: usize, len: usize) -> Option<u64> {
    let end = virt.checked_add(len)?;
    if virt as u64 >= KERNEL_VMA {
        // The image's mapping covers the first 1 GiB.
        let phys = virt as u64 - KERNEL_VMA;
        return (end as u64 - KERNEL_VMA <= 1 << 30).then_some(phys);
    }
    let direct_end = DIRECT_MAP_BASE + DIRECT_MAP_SIZE as usize;
    if virt >= DIRECT_MAP_BASE && end <= direct_end {
        return Some((virt - DIRECT_MAP_BASE) as u64);
    }
    None
}

/// Makes `len` bytes of device memory at physical `phys` reachable and
/// returns their virtual address. Below 4 GiB that is the direct map;
/// above, the direct map is extended with 2 MiB pages, uncached, up to
/// 512 GiB (where 64-bit BARs may be placed).
pub fn map_device_memory(phys: u64, len: u64) -> Option<usize> {
    let end = phys.checked_add(len)?;
    if end <= DIRECT_MAP_SIZE {
        return Some(phys_to_virt(phys));
    }
    if end > 512 << 30 {
        return None;
    }
    const PRESENT: u64 = 1;
    const WRITABLE: u64 = 1 << 1;
    const WRITE_THROUGH: u64 = 1 << 3;
    const CACHE_DISABLE: u64 = 1 << 4;
    const HUGE: u64 = 1 << 7;
    const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    static LOCK: crate::sync::SpinLock<()> = crate::sync::SpinLock::new(());
    let _guard = LOCK.lock();
    let pml4 = phys_to_virt(crate::arch::boot_pml4_phys()) as *mut u64;
    // SAFETY: the boot PML4 is the kernel's page table, direct-mapped;
    // entry 256 is the direct map's PDPT (set up at boot). Page tables are
    // only changed here (under LOCK) and by the stack allocator, which
    // works in another PML4 slot.
    let pdpt_phys = unsafe { pml4.add(256).read() } & ADDR_MASK;
    let pdpt = phys_to_virt(pdpt_phys) as *mut u64;
    let mut gib = phys >> 30;
    while gib << 30 < end {
        // SAFETY: `gib` < 512: an index into the PDPT page.
        let entry = unsafe { pdpt.add(gib as usize).read() };
        if entry & PRESENT == 0 {
            let pd_phys = page::alloc_zeroed_pages(1)?;
            note_kept_pages(1);
            let pd = phys_to_virt(pd_phys) as *mut u64;
            for i in 0..512u64 {
                let addr = (gib << 30) + (i << 21);
                // SAFETY: `pd` is the page we just allocated.
                unsafe {
                    pd.add(i as usize).write(
                        addr | PRESENT | WRITABLE | WRITE_THROUGH | CACHE_DISABLE | HUGE | (1 << 63),
                    )
                };
            }
            // SAFETY: as above; the entry was not present, so no stale
            // translation can exist.
            unsafe { pdpt.add(gib as usize).write(pd_phys | PRESENT | WRITABLE) };
        }
        gib += 1;
    }
    Some(phys_to_virt(phys))
}
