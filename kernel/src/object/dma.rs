//! DMA memory objects: physically contiguous, zeroed pages a driver shares
//! with its device, owned by one handle. The pages are freed when the
//! object drops: when the handle is freed (`dma_free`; `handle_close`
//! refuses DMA handles, so only the SDK's `DmaBuffer` frees them) or when
//! the process ends, after its devices were quiesced (see
//! `Process::terminate`).
//!
//! What the kernel cannot know (no IOMMU): whether a live device still uses
//! the pages when the driver frees them. That is the driver's job.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use starina::abi::Error;

use crate::account::Charge;
use crate::mm::page;
use crate::mm::DMA_PAGES;

/// The most pages one DMA allocation takes (4 MiB).
pub const DMA_ALLOC_MAX_PAGES: usize = 1024;

pub struct DmaMemory {
    paddr: u64,
    pages: usize,
    /// The pages, charged to the allocating driver's memory account.
    _charge: Charge,
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
        };
        Ok(Arc::new(dma))
    }

    pub fn paddr(&self) -> u64 {
        self.paddr
    }

    pub fn vaddr(&self) -> usize {
        crate::mm::phys_to_virt(self.paddr)
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        page::free_pages(self.paddr, self.pages);
        DMA_PAGES.fetch_sub(self.pages, Ordering::Relaxed);
    }
}
