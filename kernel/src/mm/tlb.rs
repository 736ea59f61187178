//! TLB shootdown without waiting. Unmapping a page the kernel may reuse
//! (a freed thread stack: `stack`) must reach every CPU, since any of
//! them may hold a stale translation for it (a thread's stack is touched
//! wherever the thread ran). Rather than stop until every CPU answers (a
//! CPU spinning on a lock the unmapper holds, interrupts off, never
//! would), the unmapper asks for a flush ([`request`]), gets its number,
//! and keeps the pages until every online CPU has flushed since
//! ([`flushed_everywhere`]). Each CPU flushes on the flush IPI and
//! records the last request it served.
//!
//! Mappings only ever added (`map_device_memory` filling a PDPT entry
//! that was not present) need no shootdown: a CPU caches no translation,
//! and no paging-structure entry, for a page that was not present.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use crate::arch::trap::VECTOR_TLB_FLUSH;
use crate::percpu;

/// The number of the last flush request.
static REQUESTED: AtomicU64 = AtomicU64::new(0);

/// Flushes this CPU's TLB (the kernel's mappings are not global: a CR3
/// reload drops them all) and records the requests it covers. Interrupts
/// off (the flush IPI, or a caller holding a lock).
pub fn flush_here() {
    let covers = REQUESTED.load(Ordering::Acquire);
    let cr3 = crate::arch::cpu::read_cr3();
    // SAFETY: reloading the same page tables only drops cached
    // translations.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) };
    percpu::this()
        .local
        .tlb_epoch
        .fetch_max(covers, Ordering::Release);
}

/// Asks every CPU to flush its TLB, after the caller cleared page table
/// entries; flushes this one at once. Returns the request's number for
/// [`flushed_everywhere`].
pub fn request() -> u64 {
    let epoch = REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    let was = crate::arch::irq::save_and_disable();
    flush_here();
    let me = percpu::index();
    for (i, cpu) in percpu::all().enumerate() {
        if i != me && cpu.is_online() {
            crate::arch::apic::send_vector(cpu.apic_id(), VECTOR_TLB_FLUSH);
        }
    }
    crate::arch::irq::restore(was);
    epoch
}

/// Whether every online CPU has flushed since request `epoch`.
pub fn flushed_everywhere(epoch: u64) -> bool {
    percpu::online().all(|cpu| cpu.local.tlb_epoch.load(Ordering::Acquire) >= epoch)
}
