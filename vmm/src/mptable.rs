//! The Intel MultiProcessor Specification 1.4 table: how a Linux without
//! ACPI (the guest kernel has none) finds its CPUs, the I/O APIC and how
//! the ISA interrupts reach it.
//!
//! The floating pointer and the configuration table go at [`MPTABLE_ADDR`],
//! in the last KiB of base memory (reserved in the e820 map), where Linux
//! scans for `_MP_`. One processor entry per vCPU (local APIC ID = vCPU
//! index, the first is the BSP), one ISA bus, the I/O APIC, ISA IRQs 1-15
//! on the pins of the same number and IRQ 0 (the PIT) on pin 2 (the usual
//! override), ExtINT on LINT0 and NMI on LINT1.

use alloc::vec::Vec;

use crate::boot::EBDA_START;
use crate::ioapic::IOAPIC_BASE;
use crate::lapic::APIC_DEFAULT_ADDR;
use crate::memory::GuestMemory;
use crate::memory::MemError;

/// Where the floating pointer goes; the configuration table follows it.
pub const MPTABLE_ADDR: u64 = EBDA_START;
/// The most the table may take (the rest of base memory).
pub const MPTABLE_MAX: usize = 0x400;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const ISA_BUS: u8 = 0;

/// Why the table cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpTableError {
    /// More CPUs than APIC IDs below the I/O APIC's, or none.
    BadCpuCount(usize),
    TooLarge(usize),
    Memory(MemError),
}

/// The floating pointer and configuration table for `cpus` vCPUs, as
/// bytes to place at [`MPTABLE_ADDR`]. The I/O APIC's ID is `cpus`.
pub fn build(cpus: usize) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > 0xfe {
        return Err(MpTableError::BadCpuCount(cpus));
    }
    let ioapic_id = cpus as u8;
    let mut entries = Vec::new();
    for id in 0..cpus {
        let flags = if id == 0 { 0b11 } else { 0b01 }; // enabled, BSP
        entries.extend_from_slice(&[0, id as u8, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x0006_00f0u32.to_le_bytes()); // signature
        entries.extend_from_slice(&0x0000_0201u32.to_le_bytes()); // FPU, APIC
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, ISA_BUS, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    let mut count = cpus + 2;
    for irq in 0u8..16 {
        let pin = if irq == 0 { 2 } else { irq };
        if irq == 2 {
            continue; // the cascade: pin 2 is the PIT's
        }
        // Type INT, polarity and trigger as the ISA bus has them.
        entries.extend_from_slice(&[3, 0, 0, 0, ISA_BUS, irq, ioapic_id, pin]);
        count += 1;
    }
    // ExtINT on LINT0, NMI on LINT1, of every local APIC (0xff).
    entries.extend_from_slice(&[4, 3, 0, 0, ISA_BUS, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, ISA_BUS, 0, 0xff, 1]);
    count += 2;

    let table_len = HEADER_LEN + entries.len();
    let total = FLOATING_LEN + table_len;
    if total > MPTABLE_MAX {
        return Err(MpTableError::TooLarge(total));
    }
    let table_addr = MPTABLE_ADDR as u32 + FLOATING_LEN as u32;
    let mut out = Vec::with_capacity(total);
    // Floating pointer: signature, table address, length in 16-byte
    // units, revision 1.4, checksum, features (0: a table, no IMCR).
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&table_addr.to_le_bytes());
    out.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    out[10] = checksum(&out);
    // Configuration table header.
    let header_at = out.len();
    out.extend_from_slice(b"PCMP");
    out.extend_from_slice(&(table_len as u16).to_le_bytes());
    out.extend_from_slice(&[4, 0]); // revision, checksum
    out.extend_from_slice(b"STARINA ");
    out.extend_from_slice(b"MICROVM     ");
    out.extend_from_slice(&[0; 6]); // OEM table pointer and size
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&(APIC_DEFAULT_ADDR as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // extended table length, checksum
    out.extend_from_slice(&entries);
    out[header_at + 7] = checksum(&out[header_at..]);
    Ok(out)
}

/// Writes the table for `cpus` vCPUs into guest memory.
pub fn write(mem: &mut dyn GuestMemory, cpus: usize) -> Result<(), MpTableError> {
    let bytes = build(cpus)?;
    mem.write(MPTABLE_ADDR, &bytes)
        .map_err(MpTableError::Memory)
}

/// The byte that makes `bytes` sum to zero (with it in place as 0).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    #[test]
    fn checksums_and_pointers_are_right() {
        let t = build(2).unwrap();
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        let table = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
        assert_eq!(table, MPTABLE_ADDR + 16);
        let header = &t[16..];
        assert_eq!(&header[0..4], b"PCMP");
        let len = u16::from_le_bytes([header[4], header[5]]) as usize;
        assert_eq!(len, header.len());
        assert_eq!(sum(header), 0);
        assert_eq!(
            u32::from_le_bytes(header[36..40].try_into().unwrap()),
            0xfee0_0000
        );
    }

    /// Entry type bytes in table order, and the processor entries' IDs.
    fn entries(cpus: usize) -> (Vec<u8>, Vec<(u8, u8)>, usize) {
        let t = build(cpus).unwrap();
        let header = &t[16..];
        let count = u16::from_le_bytes([header[34], header[35]]) as usize;
        let mut at = HEADER_LEN;
        let (mut kinds, mut procs) = (Vec::new(), Vec::new());
        while at < header.len() {
            kinds.push(header[at]);
            if header[at] == 0 {
                procs.push((header[at + 1], header[at + 3]));
                at += 20;
            } else {
                at += 8;
            }
        }
        (kinds, procs, count)
    }

    #[test]
    fn one_processor_entry_per_vcpu_and_the_isa_routes() {
        let (kinds, procs, count) = entries(4);
        assert_eq!(kinds.len(), count);
        assert_eq!(procs, [(0, 3), (1, 1), (2, 1), (3, 1)]);
        assert_eq!(kinds.iter().filter(|&&k| k == 3).count(), 15);
        assert_eq!(kinds.iter().filter(|&&k| k == 4).count(), 2);
        let t = build(4).unwrap();
        let io = 16 + HEADER_LEN + 4 * 20 + 8;
        assert_eq!(
            &t[io..io + 4],
            &[2, 4, IOAPIC_VERSION, 1],
            "I/O APIC ID after the CPUs'"
        );
        // IRQ 0 goes to pin 2.
        let first_irq = io + 8;
        assert_eq!(&t[first_irq + 5..first_irq + 8], &[0, 4, 2]);
    }

    #[test]
    fn bad_counts_and_small_memory_are_errors() {
        assert_eq!(build(0), Err(MpTableError::BadCpuCount(0)));
        assert!(build(8).is_ok());
        let mut small = crate::memory::VecMemory::new(0x1000);
        assert!(matches!(write(&mut small, 1), Err(MpTableError::Memory(_))));
        let mut mem = crate::memory::VecMemory::new(0x10_0000);
        write(&mut mem, 2).unwrap();
        assert_eq!(&mem.as_slice()[MPTABLE_ADDR as usize..][..4], b"_MP_");
    }
}
