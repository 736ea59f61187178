//! The disk's MBR partition table, and which part of the disk each service
//! of the driver serves.
//!
//! The layout (docs/CONTRACTS.md, the disk): an MBR (signature 0x55AA at
//! byte 510) whose partition 1 is the native file system (type
//! [`TYPE_NATIVE`]) and partition 2 the Linux root (type [`TYPE_LINUX`]).
//! A disk without the signature is an old-style whole-disk file system:
//! `disk` is all of it and there is no Linux root.
//!
//! Everything in the table is checked: an entry that is empty of sectors,
//! starts in the MBR's own sector, reaches past the disk's end or overlaps
//! an earlier entry is logged and left out (as if it were not there);
//! nothing in the table panics the driver.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::block::DiskInfo;

/// Partition types of the contract.
pub const TYPE_NATIVE: u8 = 0xda;
pub const TYPE_LINUX: u8 = 0x83;
/// The driver's services.
pub const SERVICE_DISK: &str = "disk";
pub const SERVICE_LINUX_ROOT: &str = "linux_root";

const SIGNATURE_AT: usize = 510;
const TABLE_AT: usize = 446;
const ENTRY_LEN: usize = 16;

/// A run of sectors of the disk a client is confined to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// Its first sector on the disk: added to every client sector.
    pub start: u64,
    /// What its clients are told: its length, and the disk's mode.
    pub info: DiskInfo,
}

/// One used entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1 to 4, as Linux numbers them.
    pub number: usize,
    pub kind: u8,
    pub start: u64,
    pub sectors: u64,
}

/// What the disk's first sector says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    /// No MBR signature: the whole disk is the native file system.
    WholeDisk,
    /// An MBR: its entries that passed the checks.
    Mbr(Vec<Entry>),
}

/// Reads the table in `sector0` of a disk of `disk_sectors`; every entry
/// left out is in `problems`, with why.
pub fn parse(sector0: &[u8], disk_sectors: u64, problems: &mut Vec<String>) -> Table {
    if sector0.len() < SIGNATURE_AT + 2 || sector0[SIGNATURE_AT..SIGNATURE_AT + 2] != [0x55, 0xaa] {
        return Table::WholeDisk;
    }
    let mut entries: Vec<Entry> = Vec::new();
    for i in 0..4 {
        let raw = &sector0[TABLE_AT + i * ENTRY_LEN..TABLE_AT + (i + 1) * ENTRY_LEN];
        let kind = raw[4];
        if kind == 0 {
            continue;
        }
        let entry = Entry {
            number: i + 1,
            kind,
            start: u64::from(u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]])),
            sectors: u64::from(u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]])),
        };
        match check(&entry, disk_sectors, &entries) {
            Ok(()) => entries.push(entry),
            Err(why) => problems.push(format!(
                "partition {} (type {:#04x}, sectors {}+{}): {why}; left out",
                entry.number, entry.kind, entry.start, entry.sectors
            )),
        }
    }
    Table::Mbr(entries)
}

/// Why `entry` cannot be used, given the entries before it.
fn check(entry: &Entry, disk_sectors: u64, earlier: &[Entry]) -> Result<(), String> {
    if entry.sectors == 0 {
        return Err(String::from("it has no sectors"));
    }
    if entry.start == 0 {
        return Err(String::from("it starts on the partition table's sector"));
    }
    let end = entry.start + entry.sectors;
    if end > disk_sectors {
        return Err(format!(
            "it ends at sector {end}, past the disk's end ({disk_sectors})"
        ));
    }
    if let Some(other) = earlier
        .iter()
        .find(|o| entry.start < o.start + o.sectors && o.start < end)
    {
        return Err(format!("it overlaps partition {}", other.number));
    }
    Ok(())
}

/// The part of the disk `service` serves, or why there is none (the text
/// of the `Error` its clients get).
pub fn part_for(service: &str, table: &Table, disk: DiskInfo) -> Result<Part, String> {
    let (number, kind, what) = match service {
        SERVICE_DISK => (1, TYPE_NATIVE, "native file-system"),
        SERVICE_LINUX_ROOT => (2, TYPE_LINUX, "Linux root"),
        other => return Err(format!("the disk driver has no service '{other}'")),
    };
    let entries = match table {
        Table::WholeDisk if service == SERVICE_DISK => {
            return Ok(Part {
                start: 0,
                info: disk,
            })
        }
        Table::WholeDisk => {
            return Err(format!(
                "the disk has no {what} partition (it has no partition table)"
            ))
        }
        Table::Mbr(entries) => entries,
    };
    let Some(entry) = entries.iter().find(|e| e.number == number) else {
        return Err(format!(
            "the disk has no {what} partition (no usable partition {number})"
        ));
    };
    if entry.kind != kind {
        return Err(format!(
            "the disk has no {what} partition (partition {number} has type {:#04x}, not {kind:#04x})",
            entry.kind
        ));
    }
    Ok(Part {
        start: entry.start,
        info: DiskInfo {
            sectors: entry.sectors,
            read_only: disk.read_only,
        },
    })
}

#[cfg(test)]
mod tests;
