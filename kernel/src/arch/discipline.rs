//! Keeps the TSC clock (`clock`) true: measures the TSC against a better
//! reference over ever longer spans (1 s, 2 s, ... 64 s, then every 64 s)
//! and re-scales the clock from "now", slewing away the time it gained or
//! lost (at most 1% faster or slower), never stepping it.
//!
//! The reference is the HPET's counter when the machine has one (q35),
//! sampled from the timer interrupt; otherwise (microvm) the CMOS RTC's
//! seconds, sampled from its update interrupt, which comes as each second
//! begins. Either way the RTC's first update interrupt also sets the wall
//! clock to the second exactly (the boot read only knew which second it
//! was in): a step of at most half a second, within a second of boot.

use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use super::clock;
use super::cpu::rdtsc;
use super::hpet;
use super::rtc;
use crate::sync::SpinLock;

/// The longest span between two re-scales.
const MAX_INTERVAL_NS: u64 = 64_000_000_000;
const FIRST_INTERVAL_NS: u64 = 1_000_000_000;

struct Discipline {
    /// (TSC, reference ns, clock ns) when disciplining began.
    start: (u64, u64, u64),
    next_ns: u64,
    interval_ns: u64,
}

static DISCIPLINE: SpinLock<Option<Discipline>> = SpinLock::new(None);
/// When the timer interrupt next samples the HPET (ns); `u64::MAX` when
/// the HPET is not the reference.
static NEXT_HPET_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether the RTC's update interrupt is the reference.
static RTC_REFERENCE: AtomicBool = AtomicBool::new(false);
/// Whether the wall clock was set from a second's start.
static WALL_SET: AtomicBool = AtomicBool::new(false);

/// Chooses the reference and takes the first sample (the RTC's comes with
/// its first interrupt). After the I/O APICs are set up.
pub fn start() {
    let rtc = rtc::start_update_interrupts();
    if hpet::init() {
        let was = super::irq::save_and_disable();
        let now = clock::now_ns();
        begin((rdtsc(), hpet::now_ns(), now));
        NEXT_HPET_NS.store(now + FIRST_INTERVAL_NS, Ordering::Relaxed);
        super::irq::restore(was);
    } else if rtc {
        RTC_REFERENCE.store(true, Ordering::Relaxed);
        log::info!("clock: no HPET; disciplining the TSC against the RTC's seconds");
    } else {
        log::info!("clock: no HPET and no RTC interrupt; the TSC keeps its PIT calibration");
    }
}

fn begin(start: (u64, u64, u64)) {
    *DISCIPLINE.lock() = Some(Discipline {
        start,
        next_ns: start.2 + FIRST_INTERVAL_NS,
        interval_ns: FIRST_INTERVAL_NS,
    });
}

/// When the timer interrupt must next come to sample the HPET, if it is
/// the reference.
pub fn next_sample_ns() -> Option<u64> {
    let next = NEXT_HPET_NS.load(Ordering::Relaxed);
    (next != u64::MAX).then_some(next)
}

/// From the timer interrupt: samples the HPET when a re-scale is due.
pub fn timer_tick(now: u64) {
    if now < NEXT_HPET_NS.load(Ordering::Relaxed) {
        return;
    }
    let sample = (rdtsc(), hpet::now_ns(), clock::now_ns());
    if let Some(next) = rescale_if_due(sample) {
        NEXT_HPET_NS.store(next, Ordering::Relaxed);
    }
}

/// From the RTC's update interrupt: a second has just begun.
pub fn rtc_second() {
    let tsc = rdtsc();
    let clock_ns = clock::now_ns();
    let Some(seconds) = rtc::seconds_now() else {
        return;
    };
    if !WALL_SET.swap(true, Ordering::Relaxed) {
        rtc::set_second_start(seconds, clock_ns);
    }
    if !RTC_REFERENCE.load(Ordering::Relaxed) {
        rtc::stop_update_interrupts();
        return;
    }
    let sample = (tsc, seconds.saturating_mul(1_000_000_000), clock_ns);
    if DISCIPLINE.lock().is_none() {
        begin(sample);
        return;
    }
    rescale_if_due(sample);
}

/// Re-scales the clock if `sample` is at or past the next re-scale;
/// returns when the one after is due.
fn rescale_if_due(sample: (u64, u64, u64)) -> Option<u64> {
    let mut guard = DISCIPLINE.lock();
    let d = guard.as_mut()?;
    if sample.2 < d.next_ns {
        return Some(d.next_ns);
    }
    let offset = (sample.2 - d.start.2) as i64 - sample.1.wrapping_sub(d.start.1) as i64;
    let next_interval = (d.interval_ns * 2).min(MAX_INTERVAL_NS);
    match clock::slewed_rate(d.start, sample, next_interval) {
        Some(fp) => {
            if d.interval_ns < MAX_INTERVAL_NS || offset.unsigned_abs() > 1_000_000 {
                log::info!(
                    "clock: TSC at {} kHz against the {} ({} µs off); slewing",
                    (1_000_000u128 << 32) / fp.max(1) as u128,
                    if RTC_REFERENCE.load(Ordering::Relaxed) {
                        "RTC"
                    } else {
                        "HPET"
                    },
                    offset / 1000
                );
            }
            clock::set_rate(fp);
        }
        None => log::warn!("clock: the reference went backwards; not re-scaling"),
    }
    d.interval_ns = next_interval;
    d.next_ns = sample.2 + next_interval;
    Some(d.next_ns)
}
