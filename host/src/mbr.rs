//! The disk's partition table (docs/CONTRACTS.md, "Disk layout"): a classic
//! MBR in sector 0 with up to four primary entries, read back by the
//! virtio_blk driver. Partition 1 (type 0xDA) holds the native ext2 file
//! system, partition 2 (type 0x83) the Linux root; both start on 1 MiB
//! boundaries. A disk whose sector 0 lacks the 0x55AA signature is an
//! old-style whole-disk ext2.

use std::fs::File;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;

/// Bytes per sector, the unit of the table's fields.
pub const SECTOR: u64 = 512;
/// Where partitions start and end: 1 MiB boundaries.
pub const ALIGN: u64 = 1 << 20;
/// Partition type of the native ext2 file system ("non-FS data" in the
/// common lists: no other system mounts it by accident).
pub const TYPE_NATIVE: u8 = 0xda;
/// Partition type of the Linux root (Linux native).
pub const TYPE_LINUX: u8 = 0x83;

const TABLE_AT: usize = 446;
const ENTRY_LEN: usize = 16;
const SIGNATURE: [u8; 2] = [0x55, 0xaa];

/// One primary partition, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub kind: u8,
    pub start: u64,
    pub size: u64,
}

impl Partition {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// Sector 0 with `parts` as entries 1.. (at most four, each a whole number
/// of sectors below 2 TiB). CHS fields hold the "use LBA" values.
pub fn encode(parts: &[Partition]) -> Result<[u8; SECTOR as usize], String> {
    if parts.len() > 4 {
        return Err(format!("{} partitions: an MBR holds 4", parts.len()));
    }
    let mut sector = [0u8; SECTOR as usize];
    for (i, p) in parts.iter().enumerate() {
        let lba = |bytes: u64, what: &str| {
            if !bytes.is_multiple_of(SECTOR) {
                return Err(format!("partition {}: {what} is not whole sectors", i + 1));
            }
            u32::try_from(bytes / SECTOR)
                .map_err(|_| format!("partition {}: {what} is past 2 TiB", i + 1))
        };
        let (start, count) = (lba(p.start, "start")?, lba(p.size, "size")?);
        if start == 0 || count == 0 {
            return Err(format!("partition {}: empty or over the table", i + 1));
        }
        let e = &mut sector[TABLE_AT + i * ENTRY_LEN..][..ENTRY_LEN];
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[4] = p.kind;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&count.to_le_bytes());
    }
    sector[510..].copy_from_slice(&SIGNATURE);
    Ok(sector)
}

/// The used entries of sector 0 in table order (an unused entry has type
/// 0), or `None` without the signature (a whole-disk file system).
pub fn decode(sector: &[u8]) -> Option<Vec<Option<Partition>>> {
    if sector.len() < SECTOR as usize || sector[510..512] != SIGNATURE {
        return None;
    }
    let entries = (0..4).map(|i| {
        let e = &sector[TABLE_AT + i * ENTRY_LEN..][..ENTRY_LEN];
        let word = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().expect("4 bytes"));
        (e[4] != 0).then(|| Partition {
            kind: e[4],
            start: u64::from(word(8)) * SECTOR,
            size: u64::from(word(12)) * SECTOR,
        })
    });
    Some(entries.collect())
}

/// The table of the image at `path` (see [`decode`]).
pub fn read(path: &Path) -> Result<Option<Vec<Option<Partition>>>, String> {
    let mut sector = [0u8; SECTOR as usize];
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match file.read_exact(&mut sector) {
        Ok(()) => Ok(decode(&sector)),
        // Shorter than a sector: no table (and no file system either).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes `parts` as the table of the open image.
pub fn write(file: &mut File, parts: &[Partition]) -> Result<(), String> {
    let sector = encode(parts)?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&sector))
        .map_err(|e| format!("cannot write the partition table: {e}"))
}

/// `bytes` rounded up to the next 1 MiB boundary.
pub fn align_up(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGN) * ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reads_back_as_written() {
        let parts = [
            Partition {
                kind: TYPE_NATIVE,
                start: ALIGN,
                size: 64 << 20,
            },
            Partition {
                kind: TYPE_LINUX,
                start: 65 << 20,
                size: 4 << 30,
            },
        ];
        let sector = encode(&parts).unwrap();
        assert_eq!(&sector[510..], &[0x55, 0xaa]);
        // Entry 1: type at 446 + 4, start LBA 2048 at 446 + 8.
        assert_eq!(sector[450], 0xda);
        assert_eq!(&sector[454..458], &2048u32.to_le_bytes());
        assert_eq!(sector[466], 0x83);
        let table = decode(&sector).unwrap();
        assert_eq!(table, [Some(parts[0]), Some(parts[1]), None, None]);
        assert_eq!(parts[1].end(), (65 << 20) + (4 << 30));
    }

    #[test]
    fn no_signature_is_no_table() {
        let mut sector = encode(&[]).unwrap();
        assert_eq!(decode(&sector).unwrap(), [None, None, None, None]);
        sector[511] = 0;
        assert_eq!(decode(&sector), None);
        assert_eq!(decode(&[0u8; 100]), None);
    }

    #[test]
    fn bad_tables_are_refused() {
        let p = |start, size| Partition {
            kind: TYPE_LINUX,
            start,
            size,
        };
        assert!(encode(&[p(ALIGN, 1000)]).is_err());
        assert!(encode(&[p(0, ALIGN)]).is_err());
        assert!(encode(&[p(ALIGN, 4 << 40)]).is_err());
        assert!(encode(&[p(ALIGN, ALIGN); 5]).is_err());
        assert_eq!(align_up(1), ALIGN);
        assert_eq!(align_up(ALIGN), ALIGN);
        assert_eq!(align_up(0), 0);
    }
}
