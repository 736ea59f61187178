//! A user process's address space: its own PML4, whose kernel entries
//! (slot 0, the boot identity map kept for MMIO such as the LAPIC, and
//! slots 256..512) are the boot PML4's, none with the user bit, and whose
//! user half (`USER_BASE..USER_END`) maps only pages the process owns.
//!
//! Mappings are only ever added while the process lives; every page
//! (leaves and the tables under the user half) is freed when the address
//! space drops, after the process's last thread is gone (a thread holds
//! its process). The kernel reads and writes user memory through the
//! direct map of the physical pages this finds ([`AddressSpace::translate`]),
//! never through a user address.

use alloc::vec::Vec;

use starina::abi::user::USER_BASE;
use starina::abi::user::USER_END;
use starina::abi::Error;

use super::stacks::Stacks;
use super::stacks::STACK_PAGES;
use crate::mm::page;
use crate::mm::phys_to_virt;
use crate::mm::PAGE_SIZE;
use crate::sync::SpinLock;

pub const PRESENT: u64 = 1;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// What a user page may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

pub struct AddressSpace {
    pml4: u64,
    account: u8,
    inner: SpinLock<Inner>,
    /// Kernel buffers a receive from this process takes a message into
    /// before it is copied out (`dispatch`): made once (zeroed) and
    /// reused, at most one per thread receiving at a time. They hold only
    /// this process's own messages.
    receive_buffers: SpinLock<Vec<alloc::boxed::Box<[u8]>>>,
    /// One of them, kept out of the list: a thread receiving alone takes
    /// and gives it back with one atomic swap each (a leaked `Box` of
    /// `MESSAGE_DATA_MAX` bytes, or null).
    spare: core::sync::atomic::AtomicPtr<u8>,
    /// User ranges found mapped writable (so readable too), most recent
    /// first: a mapping is never removed nor made read-only while the
    /// space lives, so a range once checked stays good, and a loop that
    /// receives into the same buffer checks its pages once.
    writable: SpinLock<[(u64, u64); 4]>,
    /// The stacks of the threads `ThreadStart` made (taken alone).
    stacks: SpinLock<Stacks>,
}

struct Inner {
    /// Every page this owns: page tables under the user half and leaves.
    pages: Vec<u64>,
    /// Bytes charged to the process's account for them.
    charged: usize,
    /// Where the next `MemoryMap` allocation goes.
    next_map: u64,
}

/// Writes a page-table entry whole (`translate` reads them without the
/// lock).
///
/// # Safety
/// `entry` points at an entry of a page table of a live address space.
unsafe fn store(entry: *mut u64, value: u64) {
    // SAFETY: upheld by the caller; the entry is 8-byte aligned.
    unsafe {
        (*(entry as *const core::sync::atomic::AtomicU64))
            .store(value, core::sync::atomic::Ordering::Release)
    };
}

fn table(phys: u64) -> *mut u64 {
    phys_to_virt(phys) as *mut u64
}

impl AddressSpace {
    /// A new address space sharing the kernel's mappings; pages charged to
    /// `account`. `OutOfMemory` if no page for the PML4.
    pub fn new(account: u8) -> Result<AddressSpace, Error> {
        let pml4 = page::alloc_zeroed_pages(1).ok_or(Error::OutOfMemory)?;
        let boot = table(crate::arch::boot_pml4_phys());
        let own = table(pml4);
        for i in core::iter::once(0).chain(256..512) {
            // SAFETY: both are page-table pages in the direct map; `i` <
            // 512. The boot PML4's kernel entries are set at boot (the
            // stack region's by the first stack, before any user process)
            // and never change after, so copying them now is for good.
            unsafe { own.add(i).write(boot.add(i).read()) };
        }
        Ok(AddressSpace {
            pml4,
            account,
            inner: SpinLock::new(Inner {
                pages: Vec::new(),
                charged: 0,
                next_map: starina::abi::user::USER_MEMORY_BASE,
            }),
            receive_buffers: SpinLock::new(Vec::new()),
            spare: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            writable: SpinLock::new([(0, 0); 4]),
            stacks: SpinLock::new(Stacks::default()),
        })
    }

    /// The physical address to load into CR3.
    pub fn cr3(&self) -> u64 {
        self.pml4
    }

    /// Maps `pages` new zeroed pages at `vaddr` (page-aligned, inside the
    /// user half) with `flags` (`WRITABLE`, `NO_EXECUTE`), charged to the
    /// process. `OverBudget`/`OutOfMemory` if they do not fit;
    /// `InvalidArgument` if the range is outside the user half or already
    /// mapped. Returns the physical pages, first to last.
    pub fn map_new(&self, vaddr: u64, pages: usize, flags: u64) -> Result<Vec<u64>, Error> {
        let len = (pages as u64)
            .checked_mul(PAGE_SIZE as u64)
            .ok_or(Error::InvalidArgument)?;
        let end = vaddr.checked_add(len).ok_or(Error::InvalidArgument)?;
        if !vaddr.is_multiple_of(PAGE_SIZE as u64) || vaddr < USER_BASE || end > USER_END {
            return Err(Error::InvalidArgument);
        }
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        out.try_reserve(pages).map_err(|_| Error::OutOfMemory)?;
        for i in 0..pages as u64 {
            let phys = inner.charge_page(self.account)?;
            let Some(pte) = inner.pte(self.pml4, vaddr + i * PAGE_SIZE as u64, self.account) else {
                return Err(Error::OutOfMemory);
            };
            // SAFETY: `pte` points into a page table this owns, under its lock.
            if unsafe { pte.read() } & PRESENT != 0 {
                return Err(Error::InvalidArgument);
            }
            // SAFETY: as above.
            unsafe { store(pte, phys | PRESENT | USER | flags) };
            out.push(phys);
        }
        Ok(out)
    }

    /// Maps `pages` zeroed read-write pages at the next free place of the
    /// memory region, an unmapped guard page below them; their address.
    pub fn map_anonymous(&self, pages: usize) -> Result<u64, Error> {
        if pages == 0 {
            return Err(Error::InvalidArgument);
        }
        let len = (pages as u64)
            .checked_mul(PAGE_SIZE as u64)
            .ok_or(Error::InvalidArgument)?;
        let at = {
            let mut inner = self.inner.lock();
            let at = inner
                .next_map
                .checked_add(PAGE_SIZE as u64)
                .ok_or(Error::OutOfMemory)?;
            let next = at.checked_add(len).ok_or(Error::OutOfMemory)?;
            if next > starina::abi::user::USER_START_BLOCK {
                return Err(Error::OutOfMemory);
            }
            inner.next_map = next;
            at
        };
        self.map_new(at, pages, WRITABLE | NO_EXECUTE)?;
        Ok(at)
    }

    /// Starts a thread with `start(rsp)` on a stack of its own: one an
    /// ended thread of this process left, else a new mapping. `start`
    /// returns the thread's id; if it fails, the stack waits for the next.
    pub fn start_thread(&self, start: impl FnOnce(u64) -> Result<u64, Error>) -> Result<(), Error> {
        let reused = self.stacks.lock().take();
        let base = match reused {
            Some(base) => base,
            None => self.map_anonymous(STACK_PAGES)?,
        };
        match start(Stacks::entry_rsp(base)) {
            Ok(tid) => {
                self.stacks.lock().started(tid, base);
                Ok(())
            }
            Err(e) => {
                self.stacks.lock().unused(base);
                Err(e)
            }
        }
    }

    /// Thread `tid` of this process ends: its stack (if `start_thread`
    /// made it) is free for the next.
    pub fn thread_ended(&self, tid: u64) {
        self.stacks.lock().ended(tid);
    }

    /// A receive buffer of `MESSAGE_DATA_MAX` bytes (see
    /// `receive_buffers`); give it back with [`AddressSpace::give_back`].
    pub fn take_buffer(&self) -> Result<alloc::boxed::Box<[u8]>, Error> {
        let spare = self
            .spare
            .swap(core::ptr::null_mut(), core::sync::atomic::Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: `spare` holds only a pointer leaked by `give_back`
            // from a boxed slice of MESSAGE_DATA_MAX bytes, taken out once
            // by this swap.
            return Ok(unsafe {
                alloc::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                    spare,
                    starina::abi::MESSAGE_DATA_MAX,
                ))
            });
        }
        if let Some(b) = self.receive_buffers.lock().pop() {
            return Ok(b);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(starina::abi::MESSAGE_DATA_MAX)
            .map_err(|_| Error::OutOfMemory)?;
        v.resize(starina::abi::MESSAGE_DATA_MAX, 0);
        Ok(v.into_boxed_slice())
    }

    pub fn give_back(&self, buffer: alloc::boxed::Box<[u8]>) {
        if buffer.len() == starina::abi::MESSAGE_DATA_MAX {
            let raw = alloc::boxed::Box::into_raw(buffer) as *mut u8;
            let kept = self.spare.compare_exchange(
                core::ptr::null_mut(),
                raw,
                core::sync::atomic::Ordering::Release,
                core::sync::atomic::Ordering::Relaxed,
            );
            if kept.is_ok() {
                return;
            }
            // SAFETY: `raw` came from `Box::into_raw` just above and was
            // not stored: it is still ours alone.
            let buffer = unsafe {
                alloc::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                    raw,
                    starina::abi::MESSAGE_DATA_MAX,
                ))
            };
            let mut buffers = self.receive_buffers.lock();
            if buffers.try_reserve(1).is_ok() {
                buffers.push(buffer);
            }
            return;
        }
        let mut buffers = self.receive_buffers.lock();
        if buffers.try_reserve(1).is_ok() {
            buffers.push(buffer);
        }
    }

    /// Whether each of `ranges` (start, end) is empty or lies in a range
    /// already found writable.
    pub fn known_writable(&self, ranges: &[(u64, u64)]) -> bool {
        let known = self.writable.lock();
        ranges
            .iter()
            .all(|&(start, end)| start == end || known.iter().any(|&(s, e)| s <= start && end <= e))
    }

    /// Remembers `start..end` as found writable.
    pub fn note_writable(&self, start: u64, end: u64) {
        let mut ranges = self.writable.lock();
        ranges.rotate_right(1);
        ranges[0] = (start, end);
    }

    /// The physical address behind user address `vaddr` if it is mapped
    /// for user mode with `access`.
    pub fn translate(&self, vaddr: u64, access: Access) -> Option<u64> {
        if !(USER_BASE..USER_END).contains(&vaddr) {
            return None;
        }
        // No lock: entries only ever go from absent to present (each one
        // written whole), and tables stay until the space drops, which
        // the caller's hold on it rules out; a walk racing an addition
        // sees the page or not, as if it came a moment earlier or later.
        let mut t = self.pml4;
        for level in (0..4).rev() {
            let index = ((vaddr >> (12 + 9 * level)) & 0x1ff) as usize;
            // SAFETY: `t` is a page table of this space (the walk starts at
            // its PML4 and follows present entries); an aligned 8-byte
            // atomic load, as the writer's stores are whole entries.
            let entry = unsafe {
                (*(table(t).add(index) as *const core::sync::atomic::AtomicU64))
                    .load(core::sync::atomic::Ordering::Acquire)
            };
            if entry & PRESENT == 0 || entry & USER == 0 {
                return None;
            }
            if level == 0 && access == Access::Write && entry & WRITABLE == 0 {
                return None;
            }
            t = entry & ADDR_MASK;
        }
        Some(t + (vaddr & (PAGE_SIZE as u64 - 1)))
    }
}

impl Inner {
    /// A zeroed page charged to `account`, recorded as this space's.
    fn charge_page(&mut self, account: u8) -> Result<u64, Error> {
        let a = crate::account::get(account);
        if !a.fits(PAGE_SIZE) {
            return Err(Error::OverBudget);
        }
        self.pages.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        let phys = page::alloc_zeroed_pages(1).ok_or(Error::OutOfMemory)?;
        a.charge(PAGE_SIZE);
        self.charged += PAGE_SIZE;
        self.pages.push(phys);
        Ok(phys)
    }

    /// The PTE for user address `vaddr`, making the tables above it.
    fn pte(&mut self, pml4: u64, vaddr: u64, account: u8) -> Option<*mut u64> {
        let mut t = pml4;
        for level in (1..4).rev() {
            let index = ((vaddr >> (12 + 9 * level)) & 0x1ff) as usize;
            // SAFETY: a page table of this space, under its lock (`&mut self`).
            let slot = unsafe { table(t).add(index) };
            // SAFETY: as above.
            let mut entry = unsafe { slot.read() };
            if entry & PRESENT == 0 {
                let phys = self.charge_page(account).ok()?;
                entry = phys | PRESENT | WRITABLE | USER;
                // SAFETY: as above.
                unsafe { store(slot, entry) };
            }
            t = entry & ADDR_MASK;
        }
        // SAFETY: `t` is the page table of the last level; index < 512.
        Some(unsafe { table(t).add(((vaddr >> 12) & 0x1ff) as usize) })
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        let inner = self.inner.lock();
        for &phys in &inner.pages {
            page::free_pages(phys, 1);
        }
        crate::account::get(self.account).uncharge(inner.charged);
        page::free_pages(self.pml4, 1);
        // The spare receive buffer (the list's go with it).
        let spare = self
            .spare
            .swap(core::ptr::null_mut(), core::sync::atomic::Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: as in `take_buffer`: a leaked boxed slice of
            // MESSAGE_DATA_MAX bytes, taken out once by this swap.
            drop(unsafe {
                alloc::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                    spare,
                    starina::abi::MESSAGE_DATA_MAX,
                ))
            });
        }
    }
}
