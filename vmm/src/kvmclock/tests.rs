use alloc::vec::Vec;

use super::*;
use crate::memory::VecMemory;

const GHZ_2_6: u64 = 2_596_122_000;

/// ns per tick (32.32) for a TSC of `hz`, as the kernel computes it.
fn fp_for(hz: u64) -> u64 {
    ((1_000_000_000u128 << 32) / hz as u128) as u64
}

fn host(hz: u64, generation: u64) -> HostClock {
    HostClock {
        tsc: 1_000_000,
        ns: 5_000_000_000,
        ns_per_tsc_fp: fp_for(hz),
        unix_ns_at_zero: 1_796_179_294_250_000_000,
        generation,
    }
}

/// Reads the time info at `gpa` as Linux does: version, fields, version
/// again; `None` for an odd or changed version.
fn guest_read(mem: &VecMemory, gpa: u64) -> Option<(u32, TimeInfo)> {
    let mut b = [0u8; TIME_INFO_LEN];
    mem.read(gpa, &mut b).unwrap();
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let version = u32_at(0);
    version.is_multiple_of(2).then_some((
        version,
        TimeInfo {
            tsc_timestamp: u64_at(8),
            system_time: u64_at(16),
            scale: Scale {
                mul: u32_at(24),
                shift: b[28] as i8,
            },
            flags: b[29],
        },
    ))
}

#[test]
fn scale_matches_a_straightforward_conversion() {
    for hz in [
        100_000_000,
        999_999_999,
        1_000_000_000,
        1_000_000_001,
        GHZ_2_6,
        2_611_000_000,
        5_000_000_000,
    ] {
        let fp = fp_for(hz);
        let scale = Scale::from_ns_per_tsc_fp(fp).unwrap();
        for ticks in [0, 1, 1000, hz, hz * 600, hz * 86_400 * 30] {
            let reference = (ticks as u128 * 1_000_000_000 / hz as u128) as u64;
            let got = scale.ns(ticks);
            // fp itself is rounded down to 2^-32 ns: at most that per tick,
            // plus one ns of truncation.
            let slack = (ticks >> 32) * 2 + 2;
            assert!(
                got.abs_diff(reference) <= slack,
                "{hz} Hz, {ticks} ticks: {got} vs {reference}"
            );
            if fp <= u64::from(u32::MAX) {
                assert_eq!(scale.shift, 0);
                assert_eq!(got, ((ticks as u128 * fp as u128) >> 32) as u64);
            }
        }
    }
    assert_eq!(Scale::from_ns_per_tsc_fp(0), None);
    let slow = Scale::from_ns_per_tsc_fp(10 << 32).unwrap();
    assert_eq!((slow.mul, slow.shift), (10 << 28, 4));
}

#[test]
fn guest_reads_the_host_clock() {
    let mut mem = VecMemory::new(1 << 20);
    let mut clock = KvmClock::new();
    let h = host(GHZ_2_6, 2);
    clock.set_host(h, &mut mem, 0);
    assert_eq!(clock.time_info(), None, "not enabled yet");
    clock.system_time_msr(0, 0x5000 | 1, &mut mem, 0);
    let (version, info) = guest_read(&mem, 0x5000).unwrap();
    assert_eq!(version, 2);
    assert_eq!(info.flags, PVCLOCK_TSC_STABLE_BIT);
    for tsc in [h.tsc, h.tsc + 1, h.tsc + GHZ_2_6 * 600] {
        assert_eq!(info.ns_at(tsc), h.ns_at(tsc));
    }
    // A TSC offset: the guest's TSC is the host's plus it.
    clock.system_time_msr(0, 0x5000 | 1, &mut mem, -400_000);
    let (version, info) = guest_read(&mem, 0x5000).unwrap();
    assert_eq!(version, 4, "versions only grow");
    assert_eq!(info.ns_at(h.tsc + 1000 - 400_000), h.ns_at(h.tsc + 1000));
}

#[test]
fn wall_clock_is_unix_time_at_system_time_zero() {
    let mut mem = VecMemory::new(1 << 20);
    let mut clock = KvmClock::new();
    clock.set_host(host(GHZ_2_6, 0), &mut mem, 0);
    clock.wall_clock_msr(0x6004, &mut mem);
    let mut b = [0u8; WALL_CLOCK_LEN];
    mem.read(0x6004, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_le_bytes(b[4..8].try_into().unwrap()),
        1_796_179_294
    );
    assert_eq!(
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
        250_000_000
    );
}

/// Guest memory that records every write.
struct Recording {
    inner: VecMemory,
    writes: Vec<(u64, Vec<u8>)>,
}

impl GuestMemory for Recording {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.writes.push((gpa, data.to_vec()));
        self.inner.write(gpa, data)
    }
}

#[test]
fn version_is_odd_while_writing() {
    let mut mem = Recording {
        inner: VecMemory::new(1 << 20),
        writes: Vec::new(),
    };
    let mut clock = KvmClock::new();
    clock.set_host(host(GHZ_2_6, 0), &mut mem, 0);
    clock.system_time_msr(0, 0x7040 | 1, &mut mem, 0);
    clock.set_host(host(2_600_000_000, 1), &mut mem, 0);
    let version = |data: &[u8]| u32::from_le_bytes(data[..4].try_into().unwrap());
    let w = &mem.writes;
    assert_eq!(w.len(), 6, "{w:?}");
    for (i, update) in w.chunks(3).enumerate() {
        let odd = version(&update[0].1);
        assert_eq!((update[0].0, odd % 2), (0x7040, 1));
        assert_eq!(
            (update[1].0, update[1].1.len()),
            (0x7044, TIME_INFO_LEN - 4)
        );
        assert_eq!((update[2].0, version(&update[2].1)), (0x7040, odd + 1));
        assert_eq!(odd, 2 * i as u32 + 1);
    }
}

#[test]
fn a_new_generation_never_goes_back() {
    let mut mem = VecMemory::new(1 << 20);
    let mut clock = KvmClock::new();
    let old = host(2_640_000_000, 0);
    clock.set_host(old, &mut mem, 0);
    clock.system_time_msr(0, 0x1000 | 1, &mut mem, 0);
    let before = guest_read(&mem, 0x1000).unwrap().1;
    // The kernel re-scaled 1 s later to a slower clock (faster TSC would
    // be the other way); the VMM hears of it 10 ms after.
    let rescale_tsc = old.tsc + 2_640_000_000;
    let heard_tsc = rescale_tsc + 26_400_000;
    let rescaled = HostClock {
        tsc: heard_tsc,
        ns: old.ns_at(rescale_tsc) + 9_000_000,
        ns_per_tsc_fp: fp_for(2_596_122_000),
        generation: 1,
        ..old
    };
    clock.set_host(rescaled, &mut mem, 0);
    let after = guest_read(&mem, 0x1000).unwrap().1;
    assert!(after.ns_at(heard_tsc) >= before.ns_at(heard_tsc));
    assert_eq!(
        after.ns_at(heard_tsc),
        before.ns_at(heard_tsc).max(rescaled.ns)
    );
    // And at the new rate from there.
    assert_eq!(
        after.ns_at(heard_tsc + 2_596_122_000) - after.ns_at(heard_tsc),
        rescaled.ns_at(heard_tsc + 2_596_122_000) - rescaled.ns
    );
    // The same generation again changes nothing.
    clock.set_host(rescaled, &mut mem, 0);
    assert_eq!(guest_read(&mem, 0x1000).unwrap(), (4, after));
}

#[test]
fn bad_addresses_are_ignored() {
    let mut mem = VecMemory::new(1 << 20);
    let mut clock = KvmClock::new();
    clock.set_host(host(GHZ_2_6, 0), &mut mem, 0);
    for value in [
        0x5002 | 1,
        0x5ff0 | 1,
        (1 << 20) | 1,
        ((1 << 20) - 16) | 1,
        u64::MAX,
        u64::MAX - 4094,
    ] {
        clock.system_time_msr(0, value, &mut mem, 0);
        assert_eq!(clock.time_info(), None, "{value:#x}");
    }
    for gpa in [0x5002, 0x5ffc, 1 << 20, (1 << 20) - 8, u64::MAX - 3] {
        clock.wall_clock_msr(gpa, &mut mem);
    }
    assert!(untouched(&mem), "nothing written");
    assert_eq!(
        check_gpa(0x5ff0, TIME_INFO_LEN, 1 << 20),
        Err(ClockError::CrossesPage(0x5ff0))
    );
    assert_eq!(check_gpa(0x5fe0, TIME_INFO_LEN, 1 << 20), Ok(()));
    assert_eq!(
        check_gpa(0x5002, 12, 1 << 20),
        Err(ClockError::Unaligned(0x5002))
    );
    // Disabling stops the writes.
    clock.system_time_msr(0, 0x5000, &mut mem, 0);
    assert_eq!(clock.time_info(), None);
    assert!(untouched(&mem));
}

fn untouched(mem: &VecMemory) -> bool {
    let mut all = alloc::vec![0u8; mem.size() as usize];
    mem.read(0, &mut all).unwrap();
    all.iter().all(|&b| b == 0)
}

#[test]
fn every_vcpu_area_holds_the_same_clock() {
    let mut mem = VecMemory::new(0x10000);
    let mut clock = KvmClock::new();
    clock.set_host(host(1_000_000_000, 1), &mut mem, 0);
    clock.system_time_msr(0, 0x5000 | 1, &mut mem, 0);
    clock.system_time_msr(1, 0x6000 | 1, &mut mem, 0);
    let (_, a) = guest_read(&mem, 0x5000).unwrap();
    let (_, b) = guest_read(&mem, 0x6000).unwrap();
    assert_eq!(a, b);
    // A new host generation rewrites both.
    clock.set_host(host(2_000_000_000, 2), &mut mem, 0);
    let (_, a) = guest_read(&mem, 0x5000).unwrap();
    let (_, b) = guest_read(&mem, 0x6000).unwrap();
    assert_eq!(a, b);
    assert_eq!(clock.time_info(), Some(a));
    // Past the last vCPU: ignored.
    clock.system_time_msr(99, 0x7000 | 1, &mut mem, 0);
    assert_eq!(guest_read(&mem, 0x7000).map(|(v, _)| v), Some(0), "untouched");
}
