//! Port I/O routing: which device answers which port.
//!
//! [`IoBus`] maps port ranges to a caller-chosen key (an enum naming the
//! device), so the owner keeps typed access to its devices and dispatches
//! with a `match`. Unknown ports read as all-ones, like an empty ISA bus;
//! the first few are logged once each, then only the 2^k-th access to an
//! unknown port, with the count (a guest can touch every port).

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::repeats::Repeats;

/// A range overlapping one already on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub base: u16,
    pub len: u16,
}

/// How many distinct unknown ports are logged by name.
const MAX_LOGGED: usize = 16;

pub struct IoBus<K: Copy> {
    /// (first port, last port, key), sorted by first port.
    ranges: Vec<(u16, u16, K)>,
    /// The range the last lookup found: guests use one device many times
    /// in a row (Linux's TSC calibration reads the PIT some 16,000 times),
    /// and each lookup is on the path of a VM exit.
    last_hit: Cell<Option<(u16, u16, K)>>,
    logged: BTreeSet<u16>,
    /// Accesses to unknown ports beyond the named ones.
    unnamed: Repeats,
}

impl<K: Copy> Default for IoBus<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy> IoBus<K> {
    pub fn new() -> Self {
        Self {
            ranges: Vec::new(),
            last_hit: Cell::new(None),
            logged: BTreeSet::new(),
            unnamed: Repeats::new(),
        }
    }

    /// Routes `[base, base + len)` to `key`.
    pub fn insert(&mut self, base: u16, len: u16, key: K) -> Result<(), Overlap> {
        let last = base
            .checked_add(len.saturating_sub(1))
            .filter(|_| len > 0)
            .ok_or(Overlap { base, len })?;
        if self
            .ranges
            .iter()
            .any(|&(first, end, _)| base <= end && first <= last)
        {
            return Err(Overlap { base, len });
        }
        let at = self.ranges.partition_point(|&(first, _, _)| first < base);
        self.ranges.insert(at, (base, last, key));
        self.last_hit.set(None);
        Ok(())
    }

    /// The device at `port` and the offset of `port` in its range.
    pub fn lookup(&self, port: u16) -> Option<(K, u16)> {
        if let Some((first, last, key)) = self.last_hit.get() {
            if (first..=last).contains(&port) {
                return Some((key, port - first));
            }
        }
        let i = self.ranges.partition_point(|&(first, _, _)| first <= port);
        let &(first, last, key) = self.ranges.get(i.checked_sub(1)?)?;
        if port > last {
            return None;
        }
        self.last_hit.set(Some((first, last, key)));
        Some((key, port - first))
    }

    /// Logs an access to an unrouted port: once per port for the first
    /// `MAX_LOGGED` ports, then the 2^k-th access to any other.
    pub fn note_unknown(&mut self, port: u16, write: bool, value: u32) {
        if self.logged.contains(&port) {
            return;
        }
        if self.logged.len() < MAX_LOGGED {
            self.logged.insert(port);
            if write {
                log::info!("vmm: write {value:#x} to unknown port {port:#x} ignored");
            } else {
                log::info!("vmm: read of unknown port {port:#x} returns all-ones");
            }
        } else if let Some(n) = self.unnamed.note() {
            log::info!(
                "vmm: {n} accesses to unknown ports beyond the first {MAX_LOGGED} (latest {port:#x}; only the 2^k-th is logged)"
            );
        }
    }
}

/// All-ones of `size` bytes: what reading an empty bus returns.
pub fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_rejects_overlaps() {
        let mut bus = IoBus::new();
        bus.insert(0x3f8, 8, 'S').unwrap();
        bus.insert(0x40, 4, 'T').unwrap();
        bus.insert(0x20, 2, 'P').unwrap();
        assert_eq!(bus.lookup(0x3f8), Some(('S', 0)));
        assert_eq!(bus.lookup(0x3ff), Some(('S', 7)));
        assert_eq!(bus.lookup(0x400), None);
        assert_eq!(bus.lookup(0x43), Some(('T', 3)));
        assert_eq!(bus.lookup(0x44), None);
        assert_eq!(bus.lookup(0), None);
        assert_eq!(bus.lookup(0xffff), None);
        assert!(bus.insert(0x3f0, 9, 'X').is_err());
        assert!(bus.insert(0x42, 1, 'X').is_err());
        assert!(bus.insert(0xfff0, 0x20, 'X').is_err(), "wraps");
        assert!(bus.insert(0x10, 0, 'X').is_err(), "empty");
        bus.insert(0xfff0, 0x10, 'E').unwrap();
        assert_eq!(bus.lookup(0xffff), Some(('E', 0xf)));
    }

    #[test]
    fn lookups_after_a_hit_in_another_range() {
        let mut bus = IoBus::new();
        bus.insert(0x40, 4, 'T').unwrap();
        bus.insert(0x61, 1, 'B').unwrap();
        for _ in 0..3 {
            assert_eq!(bus.lookup(0x42), Some(('T', 2)));
            assert_eq!(bus.lookup(0x42), Some(('T', 2)));
            assert_eq!(bus.lookup(0x61), Some(('B', 0)));
            assert_eq!(bus.lookup(0x60), None);
            assert_eq!(bus.lookup(0x62), None);
            assert_eq!(bus.lookup(0x40), Some(('T', 0)));
            assert_eq!(bus.lookup(0x44), None);
        }
        // A new range right where the last hit ended.
        bus.insert(0x44, 1, 'N').unwrap();
        assert_eq!(bus.lookup(0x44), Some(('N', 0)));
        assert_eq!(bus.lookup(0x43), Some(('T', 3)));
    }

    #[test]
    fn unknown_logging_is_bounded() {
        let mut bus: IoBus<u8> = IoBus::new();
        for p in 0..2000u16 {
            bus.note_unknown(p, p % 2 == 0, 0);
            bus.note_unknown(p, false, 0);
        }
        assert_eq!(bus.logged.len(), MAX_LOGGED);
        assert_eq!(bus.unnamed.count(), 2 * (2000 - MAX_LOGGED as u64));
        assert_eq!(all_ones(2), 0xffff);
    }
}
