//! The local APIC (xAPIC, through MMIO) drives each CPU's one-shot
//! scheduler timer and sends inter-processor interrupts; the 8254 PIT calibrates it and the TSC once at boot (the
//! clock then refines the TSC's rate: `clock`); the legacy
//! 8259 PICs are remapped and masked so they never deliver anything.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use super::cpu::inb;
use super::cpu::outb;
use super::cpu::rdmsr;
use super::cpu::rdtsc;
use super::trap::VECTOR_PIC_BASE;
use super::trap::VECTOR_SPURIOUS;
use super::trap::VECTOR_TIMER;
use crate::mm::phys_to_virt;
use crate::sched;

const IA32_APIC_BASE: u32 = 0x1b;

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

/// The interrupt command register's delivery modes, level and status.
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_SEND_PENDING: u32 = 1 << 12;
/// How long the LAPIC may take to send an IPI.
const ICR_SEND_TIMEOUT_NS: u64 = 1_000_000;
const LVT_MASKED: u32 = 1 << 16;

static APIC_BASE: AtomicU64 = AtomicU64::new(0);
/// LAPIC timer ticks per 2^32 ns (fixed point), from calibration.
static LAPIC_TICKS_PER_NS_FP: AtomicU64 = AtomicU64::new(1 << 32);
/// When this CPU's programmed one-shot timer fires (ns since boot), or
/// [`NOT_ARMED`]: `percpu::Local::armed_deadline`, changed by the CPU
/// itself with interrupts off only.
const NOT_ARMED: u64 = u64::MAX;

fn armed_deadline() -> &'static AtomicU64 {
    &crate::percpu::this().local.armed_deadline
}

fn reg(offset: usize) -> *mut u32 {
    (APIC_BASE.load(Ordering::Relaxed) as usize + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: APIC_BASE is the direct-mapped LAPIC MMIO page (set in
    // `init`), and `offset` is one of the architectural registers above.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as for `read`.
    unsafe { reg(offset).write_volatile(value) }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

pub fn id() -> u32 {
    read(REG_ID) >> 24
}

fn mask_legacy_pics() {
    // ICW1..ICW4: remap both PICs away from the exception vectors, then
    // mask every line. A spurious IRQ 7/15 then lands on a harmless vector.
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, VECTOR_PIC_BASE);
    outb(0xa1, VECTOR_PIC_BASE + 8);
    outb(0x21, 4);
    outb(0xa1, 2);
    outb(0x21, 1);
    outb(0xa1, 1);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/// Reads PIT channel 0's current count (latched).
fn pit_read() -> u16 {
    outb(0x43, 0x00);
    let lo = inb(0x40) as u16;
    let hi = inb(0x40) as u16;
    (hi << 8) | lo
}

const PIT_HZ: u64 = 1_193_182;

/// Measures the TSC and the LAPIC timer against the PIT over ~2 ms (2,386
/// PIT ticks: 0.04% resolution, and boot does not spin for long).
/// Returns `None` if the PIT does not count (no PIT on this machine).
fn calibrate_with_pit() -> Option<(u64, u64)> {
    // Channel 0, lobyte/hibyte, mode 2 (rate generator), full period.
    outb(0x43, 0x34);
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    let target_ticks: u64 = PIT_HZ / 500; // 2 ms

    write(REG_TIMER_DIVIDE, 0b1011); // divide by 1
    write(REG_LVT_TIMER, 1 << 16); // masked
    write(REG_TIMER_INIT, u32::MAX);

    let mut last = pit_read();
    let start = last;
    let tsc0 = rdtsc();
    let apic0 = read(REG_TIMER_CURRENT);
    let mut elapsed: u64 = 0;
    let mut spins: u64 = 0;
    while elapsed < target_ticks {
        let now = pit_read();
        // The counter counts down and wraps from 0 to 0xffff.
        elapsed += last.wrapping_sub(now) as u64;
        last = now;
        spins += 1;
        if spins > 50_000_000 || (spins > 100_000 && now == start && elapsed == 0) {
            return None;
        }
    }
    let tsc1 = rdtsc();
    let apic1 = read(REG_TIMER_CURRENT);
    write(REG_TIMER_INIT, 0);
    let ns = elapsed * 1_000_000_000 / PIT_HZ;
    let tsc_fp = ((tsc1 - tsc0) << 32) / ns;
    let apic_fp = (((apic0 - apic1) as u64) << 32) / ns;
    if tsc_fp == 0 || apic_fp == 0 {
        return None;
    }
    Some((tsc_fp, apic_fp))
}

/// Sets the clock's rate (ns per TSC tick as 32.32 fixed point, the
/// inverse of the calibrated rate, so reading the clock is a multiply
/// rather than a 128-bit division).
fn set_tsc_rate(tsc_per_ns_fp: u64) {
    super::clock::set_rate(((1u128 << 64) / tsc_per_ns_fp as u128) as u64);
}

pub fn init() {
    let base_phys = rdmsr(IA32_APIC_BASE) & 0xffff_f000;
    APIC_BASE.store(phys_to_virt(base_phys) as u64, Ordering::Relaxed);
    mask_legacy_pics();
    // Software-enable the LAPIC with the spurious vector.
    write(REG_SVR, (1 << 8) | VECTOR_SPURIOUS as u32);

    match calibrate_with_pit() {
        Some((tsc_fp, apic_fp)) => {
            set_tsc_rate(tsc_fp);
            LAPIC_TICKS_PER_NS_FP.store(apic_fp, Ordering::Relaxed);
            log::info!(
                "timer: TSC {} MHz, LAPIC timer {} MHz (calibrated with the PIT)",
                (tsc_fp * 1000) >> 32,
                (apic_fp * 1000) >> 32
            );
        }
        None => {
            // QEMU and KVM run the LAPIC timer at 1 GHz; use it to measure
            // the TSC instead.
            log::warn!("timer: no PIT; assuming a 1 GHz LAPIC timer");
            write(REG_TIMER_DIVIDE, 0b1011);
            write(REG_LVT_TIMER, 1 << 16);
            write(REG_TIMER_INIT, u32::MAX);
            let tsc0 = rdtsc();
            while u32::MAX - read(REG_TIMER_CURRENT) < 10_000_000 {}
            let tsc1 = rdtsc();
            let ticks = (u32::MAX - read(REG_TIMER_CURRENT)) as u64;
            write(REG_TIMER_INIT, 0);
            set_tsc_rate(((tsc1 - tsc0) << 32) / ticks);
        }
    }
    write(REG_LVT_TIMER, VECTOR_TIMER as u32); // one-shot, unmasked
}

/// Sends `command` to the LAPIC whose id is `apic_id` and waits until
/// this LAPIC has sent it: false if it did not within a millisecond.
fn send_ipi(apic_id: u32, command: u32) -> bool {
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, command);
    let start = super::clock::now_ns();
    while read(REG_ICR_LOW) & ICR_SEND_PENDING != 0 {
        if super::clock::now_ns() - start > ICR_SEND_TIMEOUT_NS {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Sends INIT to another CPU: it resets and waits for a startup IPI.
pub fn send_init(apic_id: u32) -> bool {
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT)
}

/// Sends a startup IPI: the CPU, waiting after INIT, starts in real mode
/// at `page` (page-aligned, below 1 MiB).
pub fn send_startup(apic_id: u32, page: u64) -> bool {
    debug_assert!(page.is_multiple_of(4096) && page < 0x10_0000);
    send_ipi(
        apic_id,
        ICR_STARTUP | ICR_LEVEL_ASSERT | (page >> 12) as u32,
    )
}

/// Enables this (application) CPU's LAPIC with the spurious vector, its
/// timer stopped, one-shot on the timer vector and counting as the boot
/// CPU's does (the calibration holds for every CPU's: one bus clock).
/// The registers are at the same address on every CPU, each CPU reaching
/// its own.
pub fn init_application_cpu() {
    write(REG_SVR, (1 << 8) | VECTOR_SPURIOUS as u32);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, 0);
    write(REG_TIMER_DIVIDE, 0b1011); // divide by 1
    write(REG_LVT_TIMER, VECTOR_TIMER as u32); // one-shot, unmasked
}

/// Sends interrupt `vector` to the CPU whose APIC id is `apic_id` (fixed
/// delivery, edge). Interrupts stay off meanwhile: an interrupt handler
/// sending one between the two ICR writes would change the destination.
pub fn send_vector(apic_id: u32, vector: u8) -> bool {
    let was = crate::arch::irq::save_and_disable();
    let sent = send_ipi(apic_id, vector as u32);
    crate::arch::irq::restore(was);
    sent
}

/// Fires the timer interrupt once, `ns` from now.
fn program_timer(ns: u64) {
    let ticks = ((ns as u128 * LAPIC_TICKS_PER_NS_FP.load(Ordering::Relaxed) as u128) >> 32)
        .clamp(1, u32::MAX as u128) as u32;
    write(REG_TIMER_INIT, ticks);
}

/// Makes the timer interrupt fire by `deadline` (ns since boot). Arming
/// only ever moves the programmed deadline earlier (see
/// [`sched::earlier_deadline`]): no caller can push back a tick the
/// scheduler or a kernel timer needs, however often it arms.
pub fn arm_timer_by(deadline: u64) {
    arm_timer(|_| deadline);
}

/// [`arm_timer_by`] `deadline(now)`, reading the clock once (`vcpu_run`
/// arms before every guest entry).
pub fn arm_timer_from_now(deadline: impl FnOnce(u64) -> u64) {
    arm_timer(deadline);
}

#[inline(always)]
fn arm_timer(deadline: impl FnOnce(u64) -> u64) {
    let was = crate::arch::irq::save_and_disable();
    let now = super::clock::now_ns();
    let armed = armed_deadline().load(Ordering::Relaxed);
    if let Some(deadline) = sched::earlier_deadline(armed, now, deadline(now)) {
        armed_deadline().store(deadline, Ordering::Relaxed);
        program_timer(deadline.saturating_sub(now));
    }
    crate::arch::irq::restore(was);
}

/// The timer interrupt came: nothing is armed until the handler arms again.
pub fn timer_fired() {
    armed_deadline().store(NOT_ARMED, Ordering::Relaxed);
}
