//! DMA memory objects: physically contiguous, zeroed pages a driver shares
//! with its device, owned by one handle. The pages are freed when the
//! object drops: when the handle is freed (`dma_free`; `handle_close`
//! refuses DMA handles, so only the SDK's `DmaBuffer` frees them) or when
//! the process ends, after its devices were quiesced (see
//! `Process::terminate`).
//!
//! A user-mode driver reaches the pages through a mapping in its own
//! address space ([`DmaMemory::map_into`]): when the object drops, the
//! mapping goes first, and the pages wait until every CPU has flushed its
//! TLB (`mm::tlb`) before they are freed, so no thread of the process can
//! still touch them once another owner has them.
//!
//! What the kernel cannot know (no IOMMU): whether a live device still uses
//! the pages when the driver frees them. That is the driver's job.

use alloc::sync::Arc;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use starina::abi::Error;

use crate::account::Charge;
use crate::mm::page;
use crate::mm::tlb;
use crate::mm::DMA_PAGES;
use crate::process::Process;
use crate::sync::SpinLock;

/// The most pages one DMA allocation takes (4 MiB).
pub const DMA_ALLOC_MAX_PAGES: usize = 1024;

pub struct DmaMemory {
    paddr: u64,
    pages: usize,
    /// The pages, charged to the allocating driver's memory account.
    _charge: Charge,
    /// Where a user-mode driver maps them: its process and the address.
    user: SpinLock<Option<(Weak<Process>, u64)>>,
}

impl DmaMemory {
    pub fn new(pages: usize, account: u8) -> Result<Arc<DmaMemory>, Error> {
        if pages == 0 || pages > DMA_ALLOC_MAX_PAGES {
            return Err(Error::InvalidArgument);
        }
        let charge = Charge::try_new(account, pages * crate::mm::PAGE_SIZE)?;
        let paddr = page::alloc_zeroed_pages(pages).ok_or(Error::OutOfMemory)?;
        DMA_PAGES.fetch_add(pages, Ordering::Relaxed);
        // Built before the Arc so a failed allocation below frees the pages.
        let dma = DmaMemory {
            paddr,
            pages,
            _charge: charge,
            user: SpinLock::new(None),
        };
        Ok(Arc::new(dma))
    }

    pub fn paddr(&self) -> u64 {
        self.paddr
    }

    pub fn vaddr(&self) -> usize {
        crate::mm::phys_to_virt(self.paddr)
    }

    /// Maps the pages into user process `process`'s address space (once);
    /// their user address.
    pub fn map_into(&self, process: &Arc<Process>) -> Result<u64, Error> {
        let aspace = process.aspace.get().ok_or(Error::NotSupported)?;
        let mut user = self.user.lock();
        if user.is_some() {
            return Err(Error::AlreadyExists);
        }
        let at = aspace.map_dma(self.paddr, self.pages as u64)?;
        *user = Some((Arc::downgrade(process), at));
        Ok(at)
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        let Some((process, at)) = self.user.lock().take() else {
            free(self.paddr, self.pages);
            return;
        };
        if let Some(aspace) = process.upgrade().as_ref().and_then(|p| p.aspace.get()) {
            aspace.unmap_dma(at, self.pages as u64);
        }
        // Mapped once: some CPU may still translate the addresses (even
        // with the address space gone, until it next loads CR3).
        let epoch = tlb::request();
        let mut retired = RETIRED.lock();
        if retired.try_reserve(1).is_err() {
            // Cannot wait for the flush without a record: keep the pages
            // (a leak, not a use after free).
            log::warn!("dma: {} pages kept: no memory to retire them", self.pages);
            return;
        }
        retired.push(Retired {
            paddr: self.paddr,
            pages: self.pages,
            epoch,
        });
        reclaim(&mut retired);
    }
}

fn free(paddr: u64, pages: usize) {
    page::free_pages(paddr, pages);
    DMA_PAGES.fetch_sub(pages, Ordering::Relaxed);
}

/// DMA pages unmapped from a user process, waiting for every CPU to flush
/// its TLB (request `epoch`) before they are freed.
struct Retired {
    paddr: u64,
    pages: usize,
    epoch: u64,
}

static RETIRED: SpinLock<Vec<Retired>> = SpinLock::new(Vec::new());

fn reclaim(retired: &mut Vec<Retired>) {
    let mut i = 0;
    while i < retired.len() {
        if tlb::flushed_everywhere(retired[i].epoch) {
            let r = retired.swap_remove(i);
            free(r.paddr, r.pages);
        } else {
            i += 1;
        }
    }
    if retired.is_empty() {
        *retired = Vec::new();
    }
}

/// Frees the retired DMA pages every CPU has stopped translating: called
/// when a CPU has flushed its TLB (the flush IPI).
pub fn reclaim_retired() {
    reclaim(&mut RETIRED.lock());
}
