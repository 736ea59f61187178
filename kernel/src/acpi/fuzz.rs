//! Fuzz targets for the ACPI table readers, which read what firmware
//! left in memory: raw bytes as an RSDP, a root table and a MADT, and
//! MADTs with a valid header and checksum around arbitrary entries (so
//! the entry walk is reached). Reading never panics, never loops, and a
//! MADT read keeps at most `max_cpus` CPUs, each once. Budget and replay:
//! `tests/fuzz_driver.rs` at the top.

#[path = "../../../tests/fuzz_driver.rs"]
mod driver;

use driver::Bytes;
use driver::Seq;

use super::madt;
use super::rsdp;
use super::sdt;

fn check_madt(bytes: &[u8], max_cpus: usize) {
    let Ok(m) = madt::parse(bytes, max_cpus) else {
        return;
    };
    assert!(m.cpus.len() <= max_cpus, "{m:?}");
    let mut ids = m.cpus.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), m.cpus.len(), "a CPU twice: {m:?}");
    // Every CPU kept, ignored or disabled came from an entry of 8+ bytes.
    let counted = m.cpus.len() + m.cpus_ignored + m.cpus_disabled;
    assert!(counted * 8 <= bytes.len(), "{m:?}");
}

#[test]
fn fuzz_acpi_raw_bytes() {
    driver::run("acpi::raw_bytes", 5000, |(max, bytes): (u8, Bytes)| {
        let _ = rsdp::parse(&bytes);
        let _ = rsdp::scan(&bytes);
        for signature in [sdt::RSDT, sdt::XSDT] {
            if let Ok(table) = sdt::check(&bytes, signature) {
                let wide = signature == sdt::XSDT;
                assert!(sdt::root_entries(table, wide).count() <= table.len() / 4);
            }
        }
        check_madt(&bytes, max as usize % 16);
    });
}

#[test]
fn fuzz_acpi_madt_entries() {
    // (type, length byte, body): the length byte is the entry's own, so it
    // may disagree with the body's size (0, short, past the end).
    driver::run(
        "acpi::madt_entries",
        5000,
        |(max, entries): (u8, Seq<(u8, u8, Bytes)>)| {
            let mut body = alloc::vec![0u8; 8];
            for (kind, len, rest) in entries.iter() {
                body.extend_from_slice(&[*kind % 12, *len]);
                body.extend_from_slice(rest);
            }
            check_madt(&sdt::table(madt::SIGNATURE, &body), max as usize % 16);
        },
    );
}
