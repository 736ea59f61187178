//! The MADT (signature "APIC"): the local APIC of every CPU, the I/O
//! APICs and how ISA interrupts map onto their inputs.
//!
//! Entries are walked by their own length, each checked against its type's
//! size and the table's end, so a zero-length entry is an error instead of
//! a loop that never ends.

use alloc::vec::Vec;

use super::sdt;
use super::u16_at;
use super::u32_at;
use super::Error;

pub const SIGNATURE: [u8; 4] = *b"APIC";
/// The header, the local APIC's address and the flags.
const FIXED_LEN: usize = sdt::HEADER_LEN + 8;

const ENTRY_LOCAL_APIC: u8 = 0;
const ENTRY_IO_APIC: u8 = 1;
const ENTRY_SOURCE_OVERRIDE: u8 = 2;
const ENTRY_LOCAL_X2APIC: u8 = 9;

/// A CPU entry's flags: the CPU is on, or firmware may turn it on.
const ENABLED: u32 = 1 << 0;
const ONLINE_CAPABLE: u32 = 1 << 1;

/// An I/O APIC: its id, MMIO address and first global system interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// ISA IRQ `source` arrives at `gsi` (polarity and trigger in `flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    pub source: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// What the kernel takes from the MADT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    pub local_apic_address: u32,
    /// The APIC ids of the CPUs that are enabled or online-capable, in
    /// table order, each once, at most `max_cpus` of them.
    pub cpus: Vec<u32>,
    /// Usable CPUs past `max_cpus`, left out of `cpus`.
    pub cpus_ignored: usize,
    /// CPU entries neither enabled nor online-capable.
    pub cpus_disabled: usize,
    pub io_apics: Vec<IoApic>,
    pub overrides: Vec<SourceOverride>,
}

impl Madt {
    fn add_cpu(&mut self, apic_id: u32, flags: u32, max_cpus: usize) {
        if flags & (ENABLED | ONLINE_CAPABLE) == 0 {
            self.cpus_disabled += 1;
        } else if self.cpus.contains(&apic_id) {
            // Firmware may list a CPU as both a local APIC and an x2APIC.
        } else if self.cpus.len() < max_cpus {
            self.cpus.push(apic_id);
        } else {
            self.cpus_ignored += 1;
        }
    }
}

/// The minimum length of an entry of type `kind`.
fn entry_min_len(kind: u8) -> usize {
    match kind {
        ENTRY_LOCAL_APIC => 8,
        ENTRY_IO_APIC => 12,
        ENTRY_SOURCE_OVERRIDE => 10,
        ENTRY_LOCAL_X2APIC => 16,
        _ => 2,
    }
}

/// Reads a whole MADT (checked as a table: length and checksum), keeping
/// at most `max_cpus` CPUs.
pub fn parse(bytes: &[u8], max_cpus: usize) -> Result<Madt, Error> {
    let table = sdt::check(bytes, SIGNATURE)?;
    if table.len() < FIXED_LEN {
        return Err(Error::Short {
            signature: SIGNATURE,
            len: table.len(),
        });
    }
    let mut madt = Madt {
        local_apic_address: u32_at(table, sdt::HEADER_LEN).unwrap_or(0),
        ..Madt::default()
    };
    let mut offset = FIXED_LEN;
    while offset < table.len() {
        let kind = table[offset];
        let len = table.get(offset + 1).copied().unwrap_or(0);
        let entry = table
            .get(offset..offset + len as usize)
            .filter(|e| e.len() >= entry_min_len(kind))
            .ok_or(Error::BadEntry { offset, kind, len })?;
        read_entry(&mut madt, kind, entry, max_cpus);
        offset += len as usize;
    }
    Ok(madt)
}

/// One entry, at least [`entry_min_len`] long.
fn read_entry(madt: &mut Madt, kind: u8, entry: &[u8], max_cpus: usize) {
    let u32_at = |at| u32_at(entry, at).unwrap_or(0);
    match kind {
        ENTRY_LOCAL_APIC => madt.add_cpu(entry[3].into(), u32_at(4), max_cpus),
        ENTRY_LOCAL_X2APIC => madt.add_cpu(u32_at(4), u32_at(8), max_cpus),
        ENTRY_IO_APIC => madt.io_apics.push(IoApic {
            id: entry[2],
            address: u32_at(4),
            gsi_base: u32_at(8),
        }),
        ENTRY_SOURCE_OVERRIDE => madt.overrides.push(SourceOverride {
            source: entry[3],
            gsi: u32_at(4),
            flags: u16_at(entry, 8).unwrap_or(0),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::fix_checksum;

    fn local_apic(acpi_id: u8, apic_id: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![ENTRY_LOCAL_APIC, 8, acpi_id, apic_id];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    fn x2apic(apic_id: u32, flags: u32) -> Vec<u8> {
        let mut e = vec![ENTRY_LOCAL_X2APIC, 16, 0, 0];
        e.extend_from_slice(&apic_id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&7u32.to_le_bytes());
        e
    }

    fn io_apic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
        let mut e = vec![ENTRY_IO_APIC, 12, id, 0];
        e.extend_from_slice(&address.to_le_bytes());
        e.extend_from_slice(&gsi_base.to_le_bytes());
        e
    }

    fn source_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
        let mut e = vec![ENTRY_SOURCE_OVERRIDE, 10, 0, source];
        e.extend_from_slice(&gsi.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    /// A MADT with these entries (LAPIC at 0xfee00000, PC-AT compatible).
    fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        sdt::table(SIGNATURE, &body)
    }

    /// What QEMU's q35 with `-smp 4` gives, roughly.
    fn qemu_like() -> Vec<u8> {
        madt(&[
            local_apic(0, 0, ENABLED),
            local_apic(1, 1, ENABLED),
            local_apic(2, 2, ENABLED),
            local_apic(3, 3, ENABLED),
            io_apic(0, 0xfec0_0000, 0),
            source_override(0, 2, 0),
            source_override(9, 9, 0xd),
            vec![4, 6, 0xff, 0, 0, 1], // local APIC NMI: skipped
        ])
    }

    #[test]
    fn reads_cpus_io_apics_and_overrides() {
        let m = parse(&qemu_like(), 8).unwrap();
        assert_eq!(m.local_apic_address, 0xfee0_0000);
        assert_eq!(m.cpus, [0, 1, 2, 3]);
        assert_eq!((m.cpus_ignored, m.cpus_disabled), (0, 0));
        assert_eq!(
            m.io_apics,
            [IoApic {
                id: 0,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(m.overrides.len(), 2);
        assert_eq!(
            m.overrides[1],
            SourceOverride {
                source: 9,
                gsi: 9,
                flags: 0xd
            }
        );
    }

    #[test]
    fn online_capable_and_x2apic_cpus_count_disabled_ones_do_not() {
        let m = parse(
            &madt(&[
                local_apic(0, 0, ENABLED),
                local_apic(1, 2, 0),
                local_apic(2, 4, ONLINE_CAPABLE),
                x2apic(0, ENABLED), // the BSP again, as an x2APIC entry
                x2apic(300, ENABLED),
            ]),
            8,
        )
        .unwrap();
        assert_eq!(m.cpus, [0, 4, 300]);
        assert_eq!(m.cpus_disabled, 1);
    }

    #[test]
    fn keeps_at_most_max_cpus() {
        let entries: Vec<Vec<u8>> = (0..12).map(|i| local_apic(i, i, ENABLED)).collect();
        let m = parse(&madt(&entries), 8).unwrap();
        assert_eq!(m.cpus, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(m.cpus_ignored, 4);
    }

    #[test]
    fn refuses_a_short_table() {
        let good = qemu_like();
        // Cut inside the fixed part, with the length saying so.
        let mut short = good[..FIXED_LEN - 4].to_vec();
        short[4..8].copy_from_slice(&((FIXED_LEN - 4) as u32).to_le_bytes());
        fix_checksum(&mut short, 9);
        assert_eq!(
            parse(&short, 8),
            Err(Error::Short {
                signature: SIGNATURE,
                len: FIXED_LEN - 4
            })
        );
        // Fewer bytes than the header's length says.
        assert!(matches!(
            parse(&good[..good.len() - 1], 8),
            Err(Error::Short { .. })
        ));
        assert!(matches!(
            parse(&good[..6], 8),
            Err(Error::Short { len: 6, .. })
        ));
    }

    #[test]
    fn refuses_a_bad_checksum() {
        let mut bad = qemu_like();
        bad[FIXED_LEN + 3] ^= 1; // the first CPU's APIC id
        assert_eq!(
            parse(&bad, 8),
            Err(Error::BadChecksum {
                signature: SIGNATURE
            })
        );
        let mut wrong = qemu_like();
        wrong[..4].copy_from_slice(b"FACP");
        fix_checksum(&mut wrong, 9);
        assert!(matches!(parse(&wrong, 8), Err(Error::BadSignature { .. })));
    }

    #[test]
    fn refuses_entries_that_would_not_advance_or_overrun() {
        for bad_len in [0u8, 1] {
            let t = madt(&[local_apic(0, 0, ENABLED), vec![4, bad_len, 0, 0, 0, 0]]);
            assert_eq!(
                parse(&t, 8),
                Err(Error::BadEntry {
                    offset: FIXED_LEN + 8,
                    kind: 4,
                    len: bad_len
                })
            );
        }
        // A local APIC entry shorter than its type, and one past the end.
        let t = madt(&[vec![ENTRY_LOCAL_APIC, 4, 0, 0]]);
        assert!(matches!(
            parse(&t, 8),
            Err(Error::BadEntry {
                kind: 0,
                len: 4,
                ..
            })
        ));
        let t = madt(&[vec![ENTRY_IO_APIC, 12, 0, 0]]);
        assert!(matches!(
            parse(&t, 8),
            Err(Error::BadEntry {
                kind: 1,
                len: 12,
                ..
            })
        ));
        // A lone type byte at the very end.
        let t = madt(&[vec![ENTRY_LOCAL_APIC]]);
        assert!(matches!(parse(&t, 8), Err(Error::BadEntry { len: 0, .. })));
    }
}
