//! Finds ACPI's MADT in physical memory: from the RSDP the loader named
//! (or the BIOS areas, scanned), through the RSDT or XSDT. The parsing is
//! `crate::acpi`'s; this file only turns physical addresses into bytes.
//! Every failure is one log line and `None`: the kernel then runs on the
//! boot CPU alone.

use alloc::string::String;
use core::fmt::Write;

use crate::acpi;
use crate::acpi::madt::Madt;
use crate::acpi::rsdp::Root;
use crate::acpi::sdt;
use crate::acpi::Error;
use crate::mm::phys_to_virt;
use crate::mm::DIRECT_MAP_SIZE;

/// The BIOS data area's pointer to the EBDA (a real-mode segment).
const EBDA_SEGMENT_PTR: u64 = 0x40e;
/// The BIOS read-only area that may hold the RSDP.
const BIOS_AREA: (u64, usize) = (0xe_0000, 0x2_0000);

/// `len` bytes of physical memory at `phys`, if the direct map covers them.
fn phys_bytes(phys: u64, len: usize) -> Option<&'static [u8]> {
    let end = phys.checked_add(len as u64)?;
    if phys == 0 || end > DIRECT_MAP_SIZE {
        return None;
    }
    // SAFETY: the direct map covers all of the first 4 GiB (checked
    // above), so the read cannot fault; firmware tables are not written
    // while the kernel reads them, and these bytes are only read.
    Some(unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, len) })
}

/// The RSDP at physical `phys` (PVH's `rsdp_paddr`).
pub fn rsdp_at(phys: u64) -> Result<Root, Error> {
    let bytes = phys_bytes(phys, acpi::rsdp::V2_LEN).ok_or(Error::Unreachable { phys })?;
    acpi::rsdp::parse(bytes)
}

/// The RSDP in the EBDA's first KiB or the BIOS area, as a loader that
/// does not name one leaves it.
fn scan_bios_areas() -> Option<Root> {
    let segment = phys_bytes(EBDA_SEGMENT_PTR, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
    let ebda = (u64::from(segment) << 4, 1024);
    [ebda, BIOS_AREA].into_iter().find_map(|(base, len)| {
        let area = phys_bytes(base, len)?;
        let at = acpi::rsdp::scan(area)?;
        acpi::rsdp::parse(&area[at..]).ok()
    })
}

/// The whole table at `phys`, checked (length and checksum) as `signature`.
fn table_at(phys: u64, signature: [u8; 4]) -> Result<&'static [u8], Error> {
    let unreachable = Error::Unreachable { phys };
    let header = phys_bytes(phys, sdt::HEADER_LEN).ok_or(unreachable)?;
    let (_, len) = sdt::header(header)?;
    let table = phys_bytes(phys, len as usize).ok_or(unreachable)?;
    sdt::check(table, signature)
}

/// The MADT the root table lists, read and checked.
fn find_madt(root: Root, max_cpus: usize) -> Result<Madt, Error> {
    let (table, wide) = match root {
        Root::Rsdt(phys) => (table_at(phys.into(), sdt::RSDT)?, false),
        Root::Xsdt(phys) => (table_at(phys, sdt::XSDT)?, true),
    };
    let signature = acpi::madt::SIGNATURE;
    let madt_phys = sdt::root_entries(table, wide)
        .find(|&phys| phys_bytes(phys, 4) == Some(&signature[..]))
        .ok_or(Error::NotListed { signature })?;
    acpi::madt::parse(table_at(madt_phys, signature)?, max_cpus)
}

/// The MADT, from the loader's RSDP or else the BIOS areas'; `None`
/// (logged) when there is none or it does not add up.
pub fn madt(loader_rsdp: Option<Root>, max_cpus: usize) -> Option<Madt> {
    let Some(root) = loader_rsdp.or_else(scan_bios_areas) else {
        log::warn!("acpi: no RSDP from the loader or in the BIOS areas: no MADT");
        return None;
    };
    match find_madt(root, max_cpus) {
        Ok(madt) => Some(madt),
        Err(e) => {
            log::warn!("acpi: cannot read the MADT ({root:x?}): {e}");
            None
        }
    }
}

/// Logs what a MADT lists, in one line: the CPUs, the I/O APICs and the
/// ISA interrupt overrides.
pub fn log_madt(madt: &Madt) {
    let mut line = String::new();
    let cpus = madt.cpus.len() + madt.cpus_ignored;
    let plural = if cpus == 1 { "" } else { "s" };
    let _ = write!(line, "acpi: MADT: {cpus} CPU{plural}");
    if madt.cpus_disabled > 0 {
        let _ = write!(line, " (and {} disabled)", madt.cpus_disabled);
    }
    for io in &madt.io_apics {
        let _ = write!(
            line,
            ", I/O APIC {} at {:#x} from GSI {}",
            io.id, io.address, io.gsi_base
        );
    }
    for (i, o) in madt.overrides.iter().enumerate() {
        let lead = if i == 0 { ", ISA IRQ overrides" } else { "," };
        let _ = write!(line, "{lead} {}->{} ({:#x})", o.source, o.gsi, o.flags);
    }
    log::info!("{line}");
}
