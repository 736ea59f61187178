//! kvm-clock: the paravirtual clock Linux uses when CPUID says KVM with
//! `KVM_FEATURE_CLOCKSOURCE2` (`Paravirt::Kvm`).
//!
//! The guest gives two guest-physical addresses through MSRs:
//! `MSR_KVM_SYSTEM_TIME_NEW` (bit 0 enables) for a `pvclock_vcpu_time_info`
//! and `MSR_KVM_WALL_CLOCK_NEW` for a `pvclock_wall_clock`. The VMM writes
//! there the host's clock ([`HostClock`], from the kernel): at guest TSC
//! `tsc_timestamp` the clock read `system_time` ns, and each TSC tick adds
//! `mul * 2^shift / 2^32` ns. The guest then reads its clock with RDTSC and
//! a multiply, no exit; the wall clock is the UNIX time at system time zero.
//!
//! The structures follow the version protocol: odd while the VMM writes,
//! even (and larger) once done; the guest retries a read that saw an odd
//! or changed version. When the kernel re-scales its clock (a new
//! [`HostClock::generation`]) the structure is rewritten from the guest's
//! "now" on, never going back: the guest's monotonic clock does not jump.
//!
//! A bad address (outside RAM, unaligned, crossing a page) is ignored with
//! a bounded log, as KVM leaves such a clock unwritten.

use core::fmt;

use crate::exit::HostClock;
use crate::memory::GuestMemory;
use crate::memory::MemError;
use crate::repeats::Repeats;

/// `flags`: the TSC is stable, the guest need not keep its clock
/// monotonic across vCPUs by hand.
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// Size of `pvclock_vcpu_time_info`.
pub const TIME_INFO_LEN: usize = 32;
/// Size of `pvclock_wall_clock`.
pub const WALL_CLOCK_LEN: usize = 12;
const PAGE: u64 = 4096;
/// Both structures start with a 32-bit version the guest reads atomically.
const ALIGN: u64 = 4;

/// The guest's conversion from TSC ticks to ns: shift, then multiply by a
/// 32-bit fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub mul: u32,
    pub shift: i8,
}

impl Scale {
    /// The scale for `fp` ns per tick (32.32 fixed point). Below 1 ns per
    /// tick (a TSC faster than 1 GHz) the multiplier is `fp` itself, so
    /// the guest computes exactly what the kernel does; slower TSCs shift
    /// left first. `None` for a zero rate.
    pub fn from_ns_per_tsc_fp(fp: u64) -> Option<Scale> {
        if fp == 0 {
            return None;
        }
        let shift = (64 - fp.leading_zeros()).saturating_sub(32);
        Some(Scale {
            mul: (fp >> shift) as u32,
            shift: shift as i8,
        })
    }

    /// ns for `ticks`, as the guest computes it (`pvclock_scale_delta`).
    pub fn ns(&self, ticks: u64) -> u64 {
        let shifted = if self.shift < 0 {
            ticks >> self.shift.unsigned_abs()
        } else {
            ticks << self.shift
        };
        ((shifted as u128 * self.mul as u128) >> 32) as u64
    }
}

/// What a `pvclock_vcpu_time_info` holds besides its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInfo {
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub scale: Scale,
    pub flags: u8,
}

impl TimeInfo {
    /// The guest's clock at guest TSC `tsc`.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        self.system_time
            .wrapping_add(self.scale.ns(tsc.wrapping_sub(self.tsc_timestamp)))
    }

    /// The structure's bytes: version, pad, tsc_timestamp, system_time,
    /// tsc_to_system_mul, tsc_shift, flags, pad.
    pub fn bytes(&self, version: u32) -> [u8; TIME_INFO_LEN] {
        let mut b = [0u8; TIME_INFO_LEN];
        b[0..4].copy_from_slice(&version.to_le_bytes());
        b[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        b[16..24].copy_from_slice(&self.system_time.to_le_bytes());
        b[24..28].copy_from_slice(&self.scale.mul.to_le_bytes());
        b[28] = self.scale.shift as u8;
        b[29] = self.flags;
        b
    }
}

/// A `pvclock_wall_clock`: version, seconds, nanoseconds.
pub fn wall_clock_bytes(version: u32, unix_ns: u64) -> [u8; WALL_CLOCK_LEN] {
    let mut b = [0u8; WALL_CLOCK_LEN];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    let secs = (unix_ns / 1_000_000_000).min(u64::from(u32::MAX)) as u32;
    b[4..8].copy_from_slice(&secs.to_le_bytes());
    b[8..12].copy_from_slice(&((unix_ns % 1_000_000_000) as u32).to_le_bytes());
    b
}

/// Why a structure was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockError {
    Unaligned(u64),
    CrossesPage(u64),
    OutsideRam(u64),
    Memory(MemError),
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::Unaligned(a) => write!(f, "{a:#x} is not 4-byte aligned"),
            ClockError::CrossesPage(a) => write!(f, "{a:#x} crosses a page"),
            ClockError::OutsideRam(a) => write!(f, "{a:#x} is outside guest RAM"),
            ClockError::Memory(e) => write!(f, "{e:?}"),
        }
    }
}

/// Checks that `len` bytes at `gpa` are aligned, in one page, in RAM.
pub fn check_gpa(gpa: u64, len: usize, ram_size: u64) -> Result<(), ClockError> {
    if !gpa.is_multiple_of(ALIGN) {
        return Err(ClockError::Unaligned(gpa));
    }
    if gpa % PAGE + len as u64 > PAGE {
        return Err(ClockError::CrossesPage(gpa));
    }
    match gpa.checked_add(len as u64) {
        Some(end) if end <= ram_size => Ok(()),
        _ => Err(ClockError::OutsideRam(gpa)),
    }
}

/// Writes `body` at `gpa` under the version protocol: `version` (odd)
/// first, then the body, then `version + 1`.
fn write_versioned(
    mem: &mut dyn GuestMemory,
    gpa: u64,
    version: u32,
    body: &[u8],
) -> Result<(), ClockError> {
    check_gpa(gpa, body.len(), mem.size())?;
    let mem_err = ClockError::Memory;
    mem.write(gpa, &version.to_le_bytes()).map_err(mem_err)?;
    mem.write(gpa + 4, &body[4..]).map_err(mem_err)?;
    mem.write(gpa, &version.wrapping_add(1).to_le_bytes())
        .map_err(mem_err)
}

/// One vCPU's kvm-clock.
#[derive(Debug, Default)]
pub struct KvmClock {
    host: Option<HostClock>,
    /// Each vCPU's time info address (Linux gives one per CPU), by vCPU
    /// index; all hold the same clock.
    system_time_gpas: [Option<u64>; crate::smp::MAX_VCPUS],
    /// What the guest reads there now.
    current: Option<TimeInfo>,
    version: u32,
    wall_version: u32,
    bad_address: Repeats,
}

impl KvmClock {
    pub fn new() -> KvmClock {
        KvmClock::default()
    }

    /// What the guest reads in its time info now (`None` before it enabled
    /// the clock, or while its address is bad).
    pub fn time_info(&self) -> Option<TimeInfo> {
        self.current
    }

    /// The host's clock changed (or is given for the first time): rewrite
    /// the guest's time info if it is enabled and the generation is new.
    pub fn set_host(&mut self, host: HostClock, mem: &mut dyn GuestMemory, tsc_offset: i64) {
        let changed = self.host.is_none_or(|h| h.generation != host.generation);
        self.host = Some(host);
        if changed {
            self.update(mem, tsc_offset);
        }
    }

    /// WRMSR `MSR_KVM_SYSTEM_TIME_NEW`: bit 0 enables, the rest is the
    /// address.
    /// On vCPU `vcpu`; the first vCPU to enable it starts the clock over
    /// from the host's, the others join the clock as it runs.
    pub fn system_time_msr(
        &mut self,
        vcpu: usize,
        value: u64,
        mem: &mut dyn GuestMemory,
        tsc_offset: i64,
    ) {
        let Some(slot) = self.system_time_gpas.get_mut(vcpu) else {
            return;
        };
        *slot = (value & 1 != 0).then_some(value & !1);
        let others = self
            .system_time_gpas
            .iter()
            .enumerate()
            .any(|(i, g)| i != vcpu && g.is_some());
        if !others {
            self.current = None;
        }
        self.update(mem, tsc_offset);
    }

    /// The guest wrote its TSC: its time info starts over from the host
    /// clock at the new offset.
    pub fn tsc_offset_changed(&mut self, mem: &mut dyn GuestMemory, tsc_offset: i64) {
        self.current = None;
        self.update(mem, tsc_offset);
    }

    /// WRMSR `MSR_KVM_WALL_CLOCK_NEW`: write the wall clock at `gpa` now.
    pub fn wall_clock_msr(&mut self, gpa: u64, mem: &mut dyn GuestMemory) {
        let Some(host) = self.host else {
            log::warn!("vmm: kvm-clock: no host clock; the wall clock stays unwritten");
            return;
        };
        self.wall_version = self.wall_version.wrapping_add(1) | 1;
        let body = wall_clock_bytes(self.wall_version, host.unix_ns_at_zero);
        match write_versioned(mem, gpa, self.wall_version, &body) {
            Ok(()) => self.wall_version = self.wall_version.wrapping_add(1),
            Err(e) => self.bad(e, "wall clock"),
        }
    }

    /// (Re)writes the time info from the host clock, continuing from what
    /// the guest read so far if it had a clock already.
    fn update(&mut self, mem: &mut dyn GuestMemory, tsc_offset: i64) {
        let gpas = self.system_time_gpas;
        if gpas.iter().all(Option::is_none) {
            return;
        }
        let Some(host) = self.host else {
            log::warn!("vmm: kvm-clock: no host clock; the system time stays unwritten");
            return;
        };
        let Some(scale) = Scale::from_ns_per_tsc_fp(host.ns_per_tsc_fp) else {
            log::warn!("vmm: kvm-clock: the host clock has no rate");
            return;
        };
        let guest_tsc = host.tsc.wrapping_add(tsc_offset as u64);
        let continued = self.current.map_or(0, |t| t.ns_at(guest_tsc));
        let info = TimeInfo {
            tsc_timestamp: guest_tsc,
            system_time: host.ns.max(continued),
            scale,
            flags: PVCLOCK_TSC_STABLE_BIT,
        };
        self.version = self.version.wrapping_add(1) | 1;
        let mut written = false;
        for gpa in gpas.into_iter().flatten() {
            match write_versioned(mem, gpa, self.version, &info.bytes(self.version)) {
                Ok(()) => written = true,
                Err(e) => self.bad(e, "system time"),
            }
        }
        self.version = self.version.wrapping_add(1);
        self.current = written.then_some(info);
    }

    fn bad(&mut self, e: ClockError, what: &str) {
        if let Some(n) = self.bad_address.note() {
            log::warn!("vmm: kvm-clock: {what} not written: {e} ({n} so far)");
        }
    }
}

#[cfg(test)]
mod tests;
