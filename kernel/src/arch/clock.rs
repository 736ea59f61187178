//! The monotonic clock: the TSC scaled to nanoseconds from an epoch.
//!
//! The PIT gives the first rate at boot (`apic::init`, a 2 ms measurement:
//! under emulation it is off by up to 2%); `discipline` then measures the
//! TSC against a better reference and re-scales the clock with
//! [`set_rate`] from "now": the clock never jumps, it only changes rate
//! ([`slewed_rate`]). Each re-scale starts a new epoch; VMMs learn of it
//! through [`host_clock`]'s generation and pass it on to their guests'
//! kvm-clock.
//!
//! Readers take the epoch under a sequence counter; [`set_epoch`] runs
//! with interrupts off on the boot CPU only (the discipline samples from
//! its timer and the RTC's interrupt, both the boot CPU's), so a reader
//! it interrupted, or one on another CPU meanwhile, retries.

use core::sync::atomic::fence;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::vcpu::HostClock;

/// At TSC `tsc` the clock read `ns`; it advances `fp` ns per TSC tick
/// (32.32 fixed point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    pub tsc: u64,
    pub ns: u64,
    pub fp: u64,
}

impl Epoch {
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let ticks = tsc.wrapping_sub(self.tsc) as u128;
        self.ns
            .wrapping_add(((ticks * self.fp as u128) >> 32) as u64)
    }
}

/// Odd while the epoch changes; also the epoch's generation.
static SEQ: AtomicU64 = AtomicU64::new(0);
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicU64 = AtomicU64::new(0);
static NS_PER_TSC_FP: AtomicU64 = AtomicU64::new(1 << 32);

/// The current epoch and its generation, with `tsc()` read inside it (so
/// the TSC is never before the epoch's start).
fn read(tsc: impl Fn() -> u64) -> (Epoch, u64, u64) {
    loop {
        let seq = SEQ.load(Ordering::Acquire);
        if seq & 1 == 0 {
            let epoch = Epoch {
                tsc: BASE_TSC.load(Ordering::Relaxed),
                ns: BASE_NS.load(Ordering::Relaxed),
                fp: NS_PER_TSC_FP.load(Ordering::Relaxed),
            };
            let now = tsc();
            fence(Ordering::Acquire);
            if SEQ.load(Ordering::Relaxed) == seq {
                return (epoch, seq, now);
            }
        }
        core::hint::spin_loop();
    }
}

/// Starts a new epoch. Interrupts must be off (the one writer).
fn set_epoch(epoch: Epoch) {
    SEQ.fetch_add(1, Ordering::Relaxed);
    fence(Ordering::Release);
    BASE_TSC.store(epoch.tsc, Ordering::Relaxed);
    BASE_NS.store(epoch.ns, Ordering::Relaxed);
    NS_PER_TSC_FP.store(epoch.fp, Ordering::Relaxed);
    SEQ.fetch_add(1, Ordering::Release);
}

/// The rate that, from now on, runs at the reference's rate and slews
/// away the clock's offset from it over `interval_ns` (at most 1%).
///
/// `start` and `now` are (TSC, reference ns, clock ns) samples; the
/// reference's rate is measured between them.
pub fn slewed_rate(start: (u64, u64, u64), now: (u64, u64, u64), interval_ns: u64) -> Option<u64> {
    let ticks = now.0.checked_sub(start.0).filter(|&t| t > 0)?;
    let reference = now.1.checked_sub(start.1)?;
    let clock = now.2.checked_sub(start.2)?;
    let true_fp = ((reference as u128) << 32) / ticks as u128;
    let offset = clock as i128 - reference as i128;
    let limit = interval_ns as i128 / 100;
    let slew = offset.clamp(-limit, limit);
    let fp = true_fp as i128 * (interval_ns as i128 - slew) / interval_ns.max(1) as i128;
    u64::try_from(fp).ok().filter(|&fp| fp > 0)
}

/// The clock's parameters for a VMM's kvm-clock, as of now (the TSC now
/// and the time it reads), so that a VMM passing on a new scale continues
/// its guest's clock from now.
pub fn host_clock() -> HostClock {
    let (epoch, generation, tsc) = read(tsc_now);
    HostClock {
        tsc,
        ns: epoch.ns_at(tsc),
        ns_per_tsc_fp: epoch.fp,
        unix_ns_at_zero: super::rtc::boot_unix_ns(),
        generation,
    }
}

#[cfg(not(test))]
pub use hw::*;

#[cfg(not(test))]
fn tsc_now() -> u64 {
    crate::arch::cpu::rdtsc()
}

/// Host tests have no TSC.
#[cfg(test)]
fn tsc_now() -> u64 {
    12
}

#[cfg(not(test))]
mod hw {
    use super::*;
    use crate::arch::cpu::rdtsc;

    /// Starts the clock at zero (the first thing the kernel does).
    pub fn start() {
        set_epoch(Epoch {
            tsc: rdtsc(),
            ns: 0,
            fp: 1 << 32,
        });
    }

    /// Nanoseconds since the kernel started.
    pub fn now_ns() -> u64 {
        let (epoch, _, tsc) = read(rdtsc);
        epoch.ns_at(tsc)
    }

    /// Continues the clock from now at `fp` ns per TSC tick (32.32).
    pub fn set_rate(fp: u64) {
        let was = crate::arch::irq::save_and_disable();
        let tsc = rdtsc();
        let (epoch, _, _) = read(|| 0);
        set_epoch(Epoch {
            tsc,
            ns: epoch.ns_at(tsc),
            fp,
        });
        crate::arch::irq::restore(was);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_scales_from_its_start() {
        let e = Epoch {
            tsc: 1000,
            ns: 5,
            fp: 3 << 31,
        };
        assert_eq!(e.ns_at(1000), 5);
        assert_eq!(e.ns_at(3000), 5 + 3000);
    }

    #[test]
    fn slew_follows_the_reference_and_absorbs_the_offset() {
        // A 2.6 GHz TSC; the clock believed 2.64 GHz (1.5% slow) for 1 s.
        let tsc_hz = 2_600_000_000u64;
        let start = (0, 0, 0);
        let clock_ns = 1_000_000_000 * 2_600 / 2_640;
        let now = (tsc_hz, 1_000_000_000, clock_ns);
        let fp = slewed_rate(start, now, 1_000_000_000).unwrap();
        let true_fp = (1_000_000_000u128 << 32) / tsc_hz as u128;
        // Behind by 15 ms: 1% faster (the limit) for the next second.
        let expect = true_fp * 101 / 100;
        assert!((fp as i128 - expect as i128).abs() < 10, "{fp} vs {expect}");
        // A small offset is absorbed exactly over the interval.
        let now = (tsc_hz, 1_000_000_000, 999_000_000);
        let fp = slewed_rate(start, now, 2_000_000_000).unwrap();
        let after = Epoch {
            tsc: 0,
            ns: 999_000_000,
            fp,
        }
        .ns_at(tsc_hz * 2);
        assert!((after as i64 - 3_000_000_000).abs() < 2, "{after}");
    }

    #[test]
    fn a_new_epoch_is_read_whole_with_a_new_generation() {
        let (_, before, _) = read(|| 0);
        let epoch = Epoch {
            tsc: 10,
            ns: 20,
            fp: 30,
        };
        set_epoch(epoch);
        let (read_back, generation, tsc) = read(|| 11);
        assert_eq!((read_back, tsc), (epoch, 11));
        assert_eq!(generation, before + 2, "even, and new");
        let host = host_clock();
        assert_eq!((host.ns_per_tsc_fp, host.generation), (30, generation));
        assert_eq!((host.tsc, host.ns), (12, epoch.ns_at(12)));
    }

    #[test]
    fn slew_refuses_nonsense() {
        assert_eq!(slewed_rate((5, 0, 0), (5, 10, 10), 1), None);
        assert_eq!(slewed_rate((0, 10, 0), (5, 5, 10), 1), None);
    }
}
