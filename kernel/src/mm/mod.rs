//! Memory: the physical page allocator, the kernel heap, and thread stacks
//! with guard pages.
//!
//! All of the first 4 GiB of physical memory is mapped at
//! [`DIRECT_MAP_BASE`] by the boot page tables, so the kernel reaches any
//! page it allocated through `phys_to_virt`.

pub mod heap;
pub mod page;
pub mod stack;

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
