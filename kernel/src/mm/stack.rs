//! Thread stacks in their own virtual region, each below an unmapped guard
//! page, so a stack overflow is a page fault the kernel can pin on the
//! thread (and tear its component down) instead of silent corruption.
//!
//! A dropped stack's pages and slot are reused only once every CPU has
//! flushed the old translations (`tlb`): until then they wait in
//! `Slots::retired`.

use alloc::vec::Vec;

use super::page;
use super::phys_to_virt;
use super::tlb;
use super::PAGE_SIZE;
use crate::sync::SpinLock;

/// PML4 slot 384: 0xffff_c000_0000_0000.
const STACK_REGION_BASE: usize = 0xffff_c000_0000_0000;
pub const STACK_SIZE: usize = 128 * 1024;
/// Each slot is a guard page followed by the stack.
const SLOT_SIZE: usize = STACK_SIZE + PAGE_SIZE;
const MAX_SLOTS: usize = 4096;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

struct Slots {
    next: usize,
    free: Vec<usize>,
    /// Unmapped stacks whose pages and slot wait for a TLB flush on
    /// every CPU.
    retired: Vec<Retired>,
}

struct Retired {
    slot: usize,
    pages: Vec<u64>,
    /// The flush request that covers them.
    epoch: u64,
}

static SLOTS: SpinLock<Slots> = SpinLock::new(Slots {
    next: 0,
    free: Vec::new(),
    retired: Vec::new(),
});

impl Slots {
    /// Frees what every CPU has stopped translating.
    fn reclaim(&mut self) {
        let mut i = 0;
        while i < self.retired.len() {
            if !tlb::flushed_everywhere(self.retired[i].epoch) {
                i += 1;
                continue;
            }
            let r = self.retired.swap_remove(i);
            for phys in r.pages {
                page::free_pages(phys, 1);
            }
            self.free.push(r.slot);
        }
        if self.retired.is_empty() {
            // Nothing waits: no heap kept for the list either.
            self.retired = Vec::new();
        }
    }
}

/// Frees the retired stacks every CPU has stopped translating: called
/// when a CPU has flushed its TLB (the flush IPI), so the last CPU to
/// flush frees them without waiting for the next stack to come or go.
pub fn reclaim_retired() {
    SLOTS.lock().reclaim();
}

/// A mapped stack; unmapped and freed on drop.
pub struct Stack {
    slot: usize,
}

fn table_at(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: `phys` is a page-table page (the boot PML4 or one we
    // allocated), direct-mapped; page tables are only modified with the
    // SLOTS lock held, so there is no concurrent mutable access.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

/// The PTE for `vaddr`. Missing intermediate tables are created if
/// `create`, else there is no PTE (`None`: nothing is mapped there).
fn pte_for(vaddr: usize, create: bool) -> Option<&'static mut u64> {
    let mut table = table_at(crate::arch::boot_pml4_phys());
    for level in (1..4).rev() {
        let index = (vaddr >> (12 + 9 * level)) & 0x1ff;
        if table[index] & PRESENT == 0 {
            if !create {
                return None;
            }
            let phys = page::alloc_zeroed_pages(1)?;
            super::note_kept_pages(1);
            table[index] = phys | PRESENT | WRITABLE;
        }
        table = table_at(table[index] & ADDR_MASK);
    }
    Some(&mut table[(vaddr >> 12) & 0x1ff])
}

impl Stack {
    pub fn new() -> Option<Stack> {
        let mut slots = SLOTS.lock();
        slots.reclaim();
        let slot = match slots.free.pop() {
            Some(s) => s,
            None if slots.next < MAX_SLOTS => {
                slots.next += 1;
                slots.next - 1
            }
            None => return None,
        };
        let base = STACK_REGION_BASE + slot * SLOT_SIZE + PAGE_SIZE;
        for i in 0..STACK_SIZE / PAGE_SIZE {
            let vaddr = base + i * PAGE_SIZE;
            let Some(phys) = page::alloc_pages(1) else {
                // Undo what we mapped so far.
                drop(slots);
                drop(Stack { slot }); // unmaps what is mapped so far
                return None;
            };
            let Some(pte) = pte_for(vaddr, true) else {
                page::free_pages(phys, 1);
                drop(slots);
                drop(Stack { slot }); // unmaps what is mapped so far
                return None;
            };
            *pte = phys | PRESENT | WRITABLE | NO_EXECUTE;
        }
        Some(Stack { slot })
    }

    fn base(&self) -> usize {
        STACK_REGION_BASE + self.slot * SLOT_SIZE + PAGE_SIZE
    }

    /// The initial stack pointer (16-byte aligned).
    pub fn top(&self) -> usize {
        self.base() + STACK_SIZE
    }

    /// Whether `addr` falls in this stack's guard page.
    pub fn guard_contains(&self, addr: usize) -> bool {
        let guard = self.base() - PAGE_SIZE;
        (guard..self.base()).contains(&addr)
    }

    /// Whether its guard page is really unmapped (a page-table walk that
    /// creates nothing; for the boot-time check of the interrupt stacks).
    pub fn guard_is_unmapped(&self) -> bool {
        let _slots = SLOTS.lock();
        pte_for(self.base() - PAGE_SIZE, false).is_none_or(|pte| *pte & PRESENT == 0)
    }

    /// Unmaps the stack's pages (those mapped: a failed `new` mapped only
    /// some) and retires them with the slot.
    fn retire(&self) {
        let mut slots = SLOTS.lock();
        let mut freed = Vec::new();
        for i in 0..STACK_SIZE / PAGE_SIZE {
            let vaddr = self.base() + i * PAGE_SIZE;
            if let Some(pte) = pte_for(vaddr, false) {
                if *pte & PRESENT != 0 {
                    freed.push(*pte & ADDR_MASK);
                    *pte = 0;
                }
            }
        }
        let epoch = tlb::request();
        slots.retired.push(Retired {
            slot: self.slot,
            pages: freed,
            epoch,
        });
        slots.reclaim();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.retire();
    }
}
