//! What each interrupt vector does.

use core::sync::atomic::Ordering;

use crate::arch::apic;
use crate::arch::trap::TrapFrame;
use crate::arch::trap::VECTOR_PIC_BASE;
use crate::arch::trap::VECTOR_RESCHEDULE;
use crate::arch::trap::VECTOR_SPURIOUS;
use crate::arch::trap::VECTOR_TIMER;
use crate::arch::trap::VECTOR_TLB_FLUSH;
use crate::object::timer;
use crate::process::ExitReason;
use crate::sched;

/// Whether this CPU is in the interrupt path (a panic there is always the
/// kernel's). A thread asking is not in it, wherever it runs: only this
/// CPU's interrupt path sets its flag.
pub fn in_interrupt() -> bool {
    // Interrupts off: a thread must not move to another CPU between
    // finding its CPU's slot and reading it (and find that CPU's flag).
    let was = crate::arch::irq::save_and_disable();
    let on = crate::percpu::this().local.in_interrupt.load(Ordering::Relaxed);
    crate::arch::irq::restore(was);
    on
}

fn set_in_interrupt(on: bool) {
    crate::percpu::this()
        .local
        .in_interrupt
        .store(on, Ordering::Relaxed);
}

/// Makes the next timer interrupt come by the earliest timer deadline or
/// the end of the time slice, whichever comes first (an earlier one armed
/// stays).
pub fn rearm_timer() {
    // On one CPU throughout: its timer, for its slice.
    let was = crate::arch::irq::save_and_disable();
    let now = crate::arch::time::now_ns();
    apic::arm_timer_by(sched::next_tick(next_deadline(now)));
    crate::arch::irq::restore(was);
}

/// Fires the kernel timers due by `now`; the next deadline the timer
/// interrupt must come by: a kernel timer's or, on the boot CPU (the one
/// that samples), the clock discipline's next sample (no periodic tick
/// comes to do either). Every CPU's timer fires the kernel timers due.
fn next_deadline(now: u64) -> Option<u64> {
    let sample = match crate::percpu::index() {
        0 => crate::arch::discipline::next_sample_ns(),
        _ => None,
    };
    [timer::fire_expired(now), sample].into_iter().flatten().min()
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
];

fn exception(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES[vector & 31];
    let cr2 = if vector == 14 { crate::arch::cpu::read_cr2() } else { 0 };
    let thread = sched::current();
    let is_component = thread.process.is_component();
    // The interrupted code had interrupts off: it held a kernel lock, so
    // the fault is the kernel's (see `sync`).
    let held_lock = frame.rflags & (1 << 9) == 0;
    if is_component && !held_lock && vector != 8 && vector != 18 {
        let overflow = vector == 14
            && thread
                .stack
                .as_ref()
                .is_some_and(|s| s.guard_contains(cr2 as usize));
        if overflow {
            log::error!(
                "{}: stack overflow (rip {:#x}, address {:#x})",
                thread.process.name,
                frame.rip,
                cr2
            );
        } else {
            log::error!(
                "{}: {}: {} (vector {}, error {:#x}) at rip {:#x}, address {:#x}",
                thread.process.name,
                if frame.cs & 3 == 3 { "user-mode fault" } else { "CPU exception" },
                name,
                vector,
                frame.error,
                frame.rip,
                cr2
            );
        }
        let process = thread.process.clone();
        crate::startup::component_ended(&process, ExitReason::Faulted);
        // Its other threads are dead now; this one ends here.
        thread.kill();
        sched::switch(frame, true, false);
        return;
    }
    if let Some(ist) = crate::arch::trap::ist_guard_hit(cr2 as usize).filter(|_| vector == 14) {
        panic!("kernel stack overflow on interrupt stack IST{ist} (rip {:#x}, address {cr2:#x})", frame.rip);
    }
    let trace = crate::arch::trap::backtrace(frame.rbp);
    panic!(
        "CPU exception in the kernel: {} (vector {}, error {:#x}) at rip {:#x}, rsp {:#x}, address {:#x}; called from {:x?}",
        name, vector, frame.error, frame.rip, frame.rsp, cr2, trace
    );
}

const VECTOR_NMI: u8 = 2;

/// NMIs taken since boot.
static NMIS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many NMIs arrived since boot.
pub fn nmi_count() -> u64 {
    NMIS.load(Ordering::Relaxed)
}

pub fn handle(frame: &mut TrapFrame) {
    if frame.vector as u8 == VECTOR_NMI {
        // An NMI (a watchdog, the host's `nmi` monitor command) is no
        // fault of the code it interrupts: counted, and that code goes on.
        // Nothing else here: an NMI arrives even while a lock is held (the
        // scheduler's, the log's), so it takes none and switches nothing.
        NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if frame.vector >= 32 && sched::try_current().is_none() {
        // An application CPU waiting for the scheduler (`arch::smp`):
        // the IPI that releases it, or a TLB flush.
        if frame.vector as u8 == VECTOR_TLB_FLUSH {
            crate::mm::tlb::flush_here();
        }
        apic::eoi();
        return;
    }
    set_in_interrupt(true);
    // The earliest kernel timer, when the timer interrupt came (otherwise
    // the armed deadline already covers it).
    let mut next_timer = None;
    // A device's line fired: the driver it woke runs now, not at the end
    // of the slice of whatever it interrupted.
    let mut device = false;
    match frame.vector as u8 {
        VECTOR_TIMER => {
            apic::eoi();
            apic::timer_fired();
            let now = crate::arch::time::now_ns();
            if crate::percpu::index() == 0 {
                crate::arch::discipline::timer_tick(now);
            }
            next_timer = next_deadline(now);
            let expired = sched::slice_expired(now);
            sched::switch(frame, expired, true);
        }
        VECTOR_SPURIOUS => {}
        VECTOR_RESCHEDULE => {
            apic::eoi();
            // Another CPU queued work this one may take, or wants the
            // thread running here to end: `switch` ends a killed one, and
            // the tail below takes work if idle; a busy CPU's slice
            // starts (the tick armed below ends it).
            sched::reschedule_ipi();
            crate::arch::vmx::free_retired();
            sched::switch(frame, false, true);
        }
        VECTOR_TLB_FLUSH => {
            apic::eoi();
            crate::mm::tlb::flush_here();
            crate::mm::stack::reclaim_retired();
            crate::object::dma::reclaim_retired();
        }
        v if (VECTOR_PIC_BASE..VECTOR_PIC_BASE + 16).contains(&v) => {
            // A spurious interrupt from the masked legacy PIC.
        }
        0..=31 => exception(frame),
        v if (crate::arch::ioapic::VECTOR_IRQ_BASE
            ..crate::arch::ioapic::VECTOR_IRQ_BASE + crate::arch::ioapic::MAX_GSI as u8)
            .contains(&v) =>
        {
            let gsi = (v - crate::arch::ioapic::VECTOR_IRQ_BASE) as u32;
            if gsi == crate::arch::rtc::GSI {
                // The kernel's own: the clock's reference (`discipline`).
                crate::arch::rtc::interrupt();
            } else if gsi == crate::arch::serial::GSI {
                // The kernel's own too: typed bytes for the console's
                // readers, whose wake-up runs now (as a driver's would).
                crate::object::console::interrupt();
                device = true;
            } else {
                if !crate::object::interrupt::fire(gsi) {
                    log::warn!("interrupt on GSI {gsi} with no driver; line masked");
                }
                device = true;
            }
            apic::eoi();
        }
        v => {
            apic::eoi();
            log::warn!("unexpected interrupt vector {v:#x}");
        }
    }
    // Idle never keeps the CPU when something is runnable (a wake from an
    // interrupt or from the thread we interrupted); after a device's
    // interrupt, no thread does.
    let idle = sched::current_is_idle();
    if (device || idle) && sched::others_runnable() {
        // A preempted thread (not idle) may be between preparing to block
        // and blocking: `switch` keeps that wake-up.
        sched::switch(frame, true, !idle);
    }
    // The tick that ends the slice of whichever thread runs now (it may
    // have just been switched to), or fires the next kernel timer.
    apic::arm_timer_by(sched::next_tick(next_timer));
    set_in_interrupt(false);
}
