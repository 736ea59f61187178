//! Linux's root disk, end to end: partition 2 of the Starina disk, driven
//! by the virtio_blk driver (its `linux_root` service), served to the
//! guest by the linux server as a virtio-blk `/dev/vda`.
//!
//! Each test makes its own disk the contract's way (an MBR written here;
//! partition 1 ext2 at 1 MiB, type 0xda; partition 2 type 0x83 holding a
//! small ext4 with a marker file, the rest of it raw room) and boots
//! Starina and Linux on it under QEMU: slow, run by `make test`.
//!
//! - `dev_vda_is_partition_2`: `/dev/vda` has partition 2's size, its ext4
//!   mounts and has the marker, a file written through it and a pattern
//!   `dd`ed to it land in partition 2 of the image (after `sync`), and
//!   partition 1 (the native file system, still mounted at /mnt/starina)
//!   is clean and holds what Linux wrote there.
//! - `a_guest_restart_reconnects_the_root_disk`: the `linux_test` profile
//!   crashes the guest on purpose; the VM that startup boots next gets
//!   `/dev/vda` again.
//! - `a_bad_partition_2_leaves_linux_on_its_initramfs`: a partition 2 that
//!   overlaps partition 1 is logged and left out; Linux boots without a
//!   `/dev/vda` and says why, and the native file system still works.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use starina_tests::*;

/// Per-run limit (boot included), seconds.
const TIMEOUT: f64 = 300.0;

const MIB: u64 = 1 << 20;
/// Partition 1: the native file system.
const P1_START: u64 = MIB;
const P1_LEN: u64 = 64 * MIB;
/// Partition 2: Linux's root; its first `FS2_LEN` bytes are an ext4.
const P2_START: u64 = P1_START + P1_LEN;
const P2_LEN: u64 = 48 * MIB;
const FS2_LEN: u64 = 32 * MIB;
/// Where in /dev/vda the guest writes its pattern: past the ext4.
const RAW_AT: u64 = 40 * MIB;
/// The one file of partition 2's ext4. It has no /etc/passwd or /usr/bin,
/// so the guest agent does not switch root into it (`starina.root=`) and
/// the commands run from the initramfs.
const MARKER: &str = "marker-from-partition-2";

/// The contract's two partitions: (type, start, length) in bytes.
const LAYOUT: [(u8, u64, u64); 2] = [(0xda, P1_START, P1_LEN), (0x83, P2_START, P2_LEN)];

/// An MBR: the signature and `entries` (type, start, length in bytes).
fn mbr(entries: [(u8, u64, u64); 2]) -> [u8; 512] {
    let mut s = [0u8; 512];
    for (i, (kind, start, len)) in entries.into_iter().enumerate() {
        let at = 446 + 16 * i;
        s[at + 4] = kind;
        s[at + 8..at + 12].copy_from_slice(&((start / 512) as u32).to_le_bytes());
        s[at + 12..at + 16].copy_from_slice(&((len / 512) as u32).to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

fn run_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (install e2fsprogs: scripts/setup does): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the partitioned disk at `path` (a sparse file) with the table
/// `entries`.
fn make_disk(path: &Path, entries: [(u8, u64, u64); 2]) {
    let dir = path.parent().unwrap();
    let mut disk = File::create(path).unwrap();
    disk.set_len(P2_START + P2_LEN).unwrap();
    disk.write_all(&mbr(entries)).unwrap();
    let image = path.to_str().unwrap();
    let offset = format!("offset={P1_START}");
    let size = format!("{}k", P1_LEN / 1024);
    run_tool(
        "mke2fs",
        &["-q", "-t", "ext2", "-F", "-E", &offset, image, &size],
    );
    let root = dir.join("p2-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("marker"), MARKER).unwrap();
    let fs2 = dir.join("p2.ext4");
    let fs2_size = format!("{}k", FS2_LEN / 1024);
    run_tool(
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-F",
            "-d",
            root.to_str().unwrap(),
            fs2.to_str().unwrap(),
            &fs2_size,
        ],
    );
    let fs2 = std::fs::read(&fs2).unwrap();
    assert_eq!(fs2.len() as u64, FS2_LEN);
    disk.seek(SeekFrom::Start(P2_START)).unwrap();
    disk.write_all(&fs2).unwrap();
}

/// `len` bytes of the image from `at`.
fn read_at(path: &Path, at: u64, len: u64) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut out = vec![0u8; len as usize];
    f.read_exact(&mut out).unwrap();
    out
}

/// Copies `len` bytes of the image from `at` into a file of its own (for
/// e2fsck and debugfs, which take no offset).
fn extract(disk: &Path, at: u64, len: u64, name: &str) -> PathBuf {
    let out = disk.with_file_name(name);
    std::fs::write(&out, read_at(disk, at, len)).unwrap();
    out
}

/// What `seq 1 200000 | head -c 1048576` prints.
fn pattern() -> Vec<u8> {
    let text: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    text.as_bytes()[..MIB as usize].to_vec()
}

/// Each step prints `key=value`; `set -e` stops at the first failure.
const SCRIPT: &str = r#"
set -e
echo "vda_sectors=$(cat /sys/block/vda/size)"
mkdir -p /tmp/r
mount -t ext4 /dev/vda /tmp/r
echo "marker=$(cat /tmp/r/marker)"
echo written-by-linux > /tmp/r/from-guest
umount /tmp/r
seq 1 200000 | head -c 1048576 > /tmp/pat
dd if=/tmp/pat of=/dev/vda bs=65536 seek=640 conv=fsync 2>/dev/null
sync
echo 3 > /proc/sys/vm/drop_caches
echo "pat_md5=$(md5sum < /tmp/pat)"
echo "back_md5=$(dd if=/dev/vda bs=65536 skip=640 count=16 2>/dev/null | md5sum)"
echo native | dd of=/mnt/starina/native.txt conv=fsync 2>/dev/null
echo "native=$(cat /mnt/starina/native.txt)"
echo done=yes
"#;

/// Runs `sh -c script` in Starina's Linux on `disk`; (exit code, stdout,
/// stderr with the OS's log).
fn exec_sh(script: &str, disk: &Path) -> (i32, String, String) {
    starina_tests::exec_sh::exec_on_disk(&["sh", "-c", script], disk, TIMEOUT)
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn dev_vda_is_partition_2() {
    let dir = TempDisk::new().expect("a temporary directory");
    let disk = dir.path();
    make_disk(&disk, LAYOUT);
    let (code, out, err) = exec_sh(SCRIPT, &disk);
    let values: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("no '{key}=' in the output (exit {code}):\n{out}\n{err}"))
    };
    assert!(
        err.contains("linux: root disk: 48 MiB (read-write), the guest's /dev/vda"),
        "{err}"
    );
    assert_eq!(get("vda_sectors"), (P2_LEN / 512).to_string());
    assert_eq!(get("marker"), MARKER);
    assert_eq!(get("back_md5"), get("pat_md5"), "read back from the disk");
    assert_eq!(get("native"), "native");
    assert_eq!(get("done"), "yes");
    assert_eq!(code, 0, "{err}");

    // The pattern is in partition 2 at its offset, and not where a write
    // without the partition's offset would have put it.
    let pattern = pattern();
    assert!(
        read_at(&disk, P2_START + RAW_AT, MIB) == pattern,
        "the pattern is not at partition 2 + {RAW_AT}"
    );
    assert!(read_at(&disk, RAW_AT, MIB) != pattern);
    // Partition 2's ext4 is clean and has the file Linux wrote.
    let fs2 = extract(&disk, P2_START, FS2_LEN, "p2.img");
    run_tool("e2fsck", &["-fn", fs2.to_str().unwrap()]);
    let cat = Command::new("debugfs")
        .args(["-R", "cat /from-guest"])
        .arg(&fs2)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "written-by-linux\n");
    // Partition 1, the native file system, is clean and has its file.
    let fs1 = extract(&disk, P1_START, P1_LEN, "p1.img");
    run_tool("e2fsck", &["-fn", fs1.to_str().unwrap()]);
    let cat = Command::new("debugfs")
        .args(["-R", "cat /native.txt"])
        .arg(&fs1)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "native\n");
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn a_guest_restart_reconnects_the_root_disk() {
    let dir = TempDisk::new().expect("a temporary directory");
    let disk = dir.path();
    make_disk(&disk, LAYOUT);
    let run = boot(
        "linux_test",
        "q35",
        300,
        &["--disk", disk.to_str().unwrap()],
    );
    run.assert_code(0);
    run.assert_console("linux: [guest] Kernel panic");
    run.assert_console("restarting linux");
    run.assert_console("linux_check: 9 passed, 0 failed");
    let attached = run
        .lines()
        .filter(|l| l.contains("linux: root disk: 48 MiB (read-write), the guest's /dev/vda"))
        .count();
    assert_eq!(attached, 2, "one root disk per VM:\n{}", run.transcript());
    assert!(!run.transcript().contains("no root disk"));
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn a_bad_partition_2_leaves_linux_on_its_initramfs() {
    let dir = TempDisk::new().expect("a temporary directory");
    let disk = dir.path();
    // Partition 2 starts inside partition 1.
    let overlapping = [LAYOUT[0], (0x83, P2_START - MIB, P2_LEN)];
    make_disk(&disk, overlapping);
    let script = "test -e /dev/vda && echo vda=yes || echo vda=no; \
                  grep -c starina.root= /proc/cmdline || true; \
                  echo ok > /mnt/starina/still.txt && cat /mnt/starina/still.txt";
    let (code, out, err) = exec_sh(script, &disk);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "vda=no\n0\nok\n");
    let start = (P2_START - MIB) / 512;
    let left_out = format!(
        "partition table: partition 2 (type 0x83, sectors {start}+{}): it overlaps partition 1; left out",
        P2_LEN / 512
    );
    assert!(err.contains(&left_out), "{err}");
    assert!(
        err.contains(
            "linux: no root disk: the disk has no Linux root partition (no usable partition 2); \
             Linux runs from its initramfs"
        ),
        "{err}"
    );
}
