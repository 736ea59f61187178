use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

const DISK: DiskInfo = DiskInfo {
    sectors: 100_000,
    read_only: false,
};

/// A first sector with the signature and these (type, start, sectors)
/// entries.
/// (type, start, sectors) of a table entry.
type Raw = (u8, u32, u32);

fn mbr(entries: &[Raw]) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    for (i, &(kind, start, sectors)) in entries.iter().enumerate() {
        let at = TABLE_AT + i * ENTRY_LEN;
        s[at + 4] = kind;
        s[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        s[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

fn parsed(sector0: &[u8]) -> (Table, Vec<String>) {
    let mut problems = Vec::new();
    let table = parse(sector0, DISK.sectors, &mut problems);
    (table, problems)
}

#[test]
fn the_contracts_layout() {
    let (table, problems) = parsed(&mbr(&[
        (TYPE_NATIVE, 2048, 20_000),
        (TYPE_LINUX, 22_528, 60_000),
    ]));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        part_for(SERVICE_DISK, &table, DISK),
        Ok(Part {
            start: 2048,
            info: DiskInfo {
                sectors: 20_000,
                read_only: false
            }
        })
    );
    let ro = DiskInfo {
        read_only: true,
        ..DISK
    };
    assert_eq!(
        part_for(SERVICE_LINUX_ROOT, &table, ro),
        Ok(Part {
            start: 22_528,
            info: DiskInfo {
                sectors: 60_000,
                read_only: true
            }
        })
    );
}

#[test]
fn no_signature_is_a_whole_disk_without_a_linux_root() {
    for sector0 in [vec![0u8; 512], vec![0x55; 512], vec![0u8; 10]] {
        let (table, problems) = parsed(&sector0);
        assert_eq!(table, Table::WholeDisk);
        assert!(problems.is_empty());
        assert_eq!(
            part_for(SERVICE_DISK, &table, DISK),
            Ok(Part {
                start: 0,
                info: DISK
            })
        );
        let why = part_for(SERVICE_LINUX_ROOT, &table, DISK).unwrap_err();
        assert!(
            why.starts_with("the disk has no Linux root partition"),
            "{why}"
        );
    }
}

#[test]
fn an_mbr_without_partition_2_has_no_linux_root() {
    let (table, _) = parsed(&mbr(&[(TYPE_NATIVE, 2048, 20_000)]));
    assert!(part_for(SERVICE_DISK, &table, DISK).is_ok());
    let why = part_for(SERVICE_LINUX_ROOT, &table, DISK).unwrap_err();
    assert!(why.contains("no Linux root partition"), "{why}");
}

#[test]
fn wrong_types_are_not_served() {
    let (table, problems) = parsed(&mbr(&[(0x83, 2048, 20_000), (0x07, 22_528, 60_000)]));
    assert!(problems.is_empty());
    let why = part_for(SERVICE_DISK, &table, DISK).unwrap_err();
    assert!(why.contains("type 0x83, not 0xda"), "{why}");
    let why = part_for(SERVICE_LINUX_ROOT, &table, DISK).unwrap_err();
    assert!(why.contains("type 0x07, not 0x83"), "{why}");
    assert!(part_for("other", &table, DISK).is_err());
}

#[test]
fn malformed_entries_are_left_out_and_said() {
    let cases: [(&[Raw], &str); 5] = [
        // Past the disk's end (by one sector; and by wrapping around u32).
        (
            &[(TYPE_NATIVE, 2048, 20_000), (TYPE_LINUX, 90_000, 10_001)],
            "past the disk's end",
        ),
        (
            &[
                (TYPE_NATIVE, 2048, 20_000),
                (TYPE_LINUX, u32::MAX, u32::MAX),
            ],
            "past the disk's end",
        ),
        // Overlapping partition 1.
        (
            &[(TYPE_NATIVE, 2048, 20_000), (TYPE_LINUX, 22_047, 100)],
            "overlaps partition 1",
        ),
        // No sectors; on the table's own sector.
        (
            &[(TYPE_NATIVE, 2048, 20_000), (TYPE_LINUX, 30_000, 0)],
            "no sectors",
        ),
        (
            &[(TYPE_NATIVE, 2048, 20_000), (TYPE_LINUX, 0, 100)],
            "partition table's sector",
        ),
    ];
    for (entries, expected) in cases {
        let (table, problems) = parsed(&mbr(entries));
        assert_eq!(problems.len(), 1, "{entries:?}: {problems:?}");
        assert!(problems[0].starts_with("partition 2 "), "{problems:?}");
        assert!(problems[0].contains(expected), "{problems:?}");
        // Partition 1 is still served, partition 2 is not.
        assert!(part_for(SERVICE_DISK, &table, DISK).is_ok());
        let why = part_for(SERVICE_LINUX_ROOT, &table, DISK).unwrap_err();
        assert!(why.contains("no usable partition 2"), "{why}");
    }
}

#[test]
fn a_bad_partition_1_leaves_partition_2_alone() {
    let (table, problems) = parsed(&mbr(&[
        (TYPE_NATIVE, 2048, 200_000),
        (TYPE_LINUX, 22_528, 60_000),
    ]));
    assert_eq!(problems.len(), 1);
    assert!(part_for(SERVICE_DISK, &table, DISK).is_err());
    assert_eq!(
        part_for(SERVICE_LINUX_ROOT, &table, DISK).unwrap().start,
        22_528
    );
}

#[test]
fn random_tables_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut s = mbr(&[]);
        for b in &mut s[TABLE_AT..SIGNATURE_AT] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let mut problems = Vec::new();
        let table = parse(&s, seed % 200_000, &mut problems);
        for service in [SERVICE_DISK, SERVICE_LINUX_ROOT] {
            if let Ok(part) = part_for(service, &table, DISK) {
                assert!(part.start + part.info.sectors <= seed % 200_000);
            }
        }
    }
}
