//! Native files in Linux, end to end: the guest agent mounts the fs
//! server's file system at /mnt/starina (virtio-fs, the linux server's
//! FUSE bridge, `starina::fs`), and ordinary Linux commands work on it.
//! Boots Starina and Linux under QEMU (the `linux` profile, which must
//! hold the fs server and its disk): slow, run by `make test`.
//!
//! `posix_corners_of_mnt_starina` runs the guest agent's `--fs-probe`
//! there (mmap, locks, O_APPEND, O_EXCL, fallocate, copy_file_range,
//! stable inodes, owners and modes; its own boot).
//!
//! Also: a tar round trip of a tree with symlinks and hard links, `mv`
//! over a file atomic to a concurrent reader, ENOSPC on a full disk.
//! Both ways: a file put on the disk from the host (`starina cp`, as the
//! native side sees it) is read in Linux, and the 1 MiB file Linux writes
//! (`seq 1 200000`, cut at 1 MiB) is on the disk afterwards with the same
//! hash, and `e2fsck -fn` finds the disk clean.

use std::collections::BTreeMap;

use starina_host::cp::Copy;
use starina_tests::*;

/// Per-run limit (boot included), seconds.
const TIMEOUT: f64 = 300.0;

/// Each step prints `key=value`; `set -e` stops at the first failure.
const SCRIPT: &str = r#"
set -e
D=/mnt/starina/linux-e2e
grep -q ' /mnt/starina virtiofs ' /proc/mounts && echo mounted=yes
rm -rf $D
mkdir $D
cd $D
echo 'hello from linux' > f
echo "cat=$(cat f)"
echo "ls=$(ls -ln f | tr -s ' ' | cut -d' ' -f1,3,4,5)"
chmod 600 f
echo "mode=$(stat -c %a f)"
echo "ls600=$(ls -l f | cut -c1-10)"
ln -s f s
echo "readlink=$(readlink s)"
echo "via_symlink=$(cat s)"
ln f h
echo "nlink=$(stat -c %h f)"
echo replaced > n
mv n f
echo "after_mv=$(cat f)"
echo "old_via_link=$(cat h)"
echo "nlink_old=$(stat -c %h h)"
rm h s
mkdir sub
rmdir sub
echo "left=$(ls | tr '\n' ' ')"
echo "native=$(cat /mnt/starina/from-native/hello.txt)"
seq 1 200000 | head -c 1048576 > /tmp/src
dd if=/tmp/src of=big bs=65536 conv=fsync 2>/dev/null
echo "size=$(stat -c %s big)"
echo "src_sha256=$(sha256sum < /tmp/src)"
echo "big_sha256=$(sha256sum < big)"
sync
echo 3 > /proc/sys/vm/drop_caches
echo "reread_sha256=$(sha256sum < big)"
echo "src_md5=$(md5sum < /tmp/src)"
echo "big_md5=$(md5sum < big)"
mkdir -p /tmp/tree/sub/deeper
echo one > /tmp/tree/a
seq 1 5000 > /tmp/tree/sub/b
ln /tmp/tree/a /tmp/tree/sub/a-hard
ln -s ../a /tmp/tree/sub/a-soft
ln -s deeper /tmp/tree/sub/dir-soft
chmod 640 /tmp/tree/sub/b
cd /tmp/tree && tar cf /tmp/tree.tar . && cd $D
mkdir t && cd t && tar xf /tmp/tree.tar && cd $D
describe() { cd $1 && find . | sort | while read f; do echo "$(stat -c '%n %A %h' "$f") $(readlink "$f") $([ -f "$f" ] && stat -c %s "$f" && md5sum < "$f")"; done; }
echo "tar_same=$([ "$(describe /tmp/tree)" = "$(describe $D/t)" ] && echo yes || echo no)"
describe $D/t | head -3
cd $D
echo v0 > atomic
( i=0; while [ $i -lt 150 ]; do echo "version $i" > atomic.new; mv atomic.new atomic; i=$((i+1)); done ) &
writer=$!
bad=0; reads=0
while kill -0 $writer 2>/dev/null; do
  c=$(cat atomic 2>/dev/null) || { bad=$((bad+1)); continue; }
  case "$c" in "version "*|v0) ;; *) bad=$((bad+1)) ;; esac
  reads=$((reads+1))
done
echo "atomic_reads=$reads"
echo "atomic_bad=$bad"
rm -rf t atomic
dd if=/dev/zero of=fill bs=1M 2>/tmp/dd.err || true
echo "enospc=$(grep -c 'No space left' /tmp/dd.err)"
rm fill
echo after > after-full
echo "after_full=$(cat after-full)"
echo done=yes
# Last, so that the VM ends well within the fs server's sync interval: a
# plain `sync` must reach the native disk (FUSE SYNCFS).
echo 'kept by sync' > synced
sync
"#;

/// Runs `sh -c script` in Starina's Linux on `disk`; (exit code, stdout, stderr).
fn exec_sh(script: &str, disk: &std::path::Path) -> (i32, String, String) {
    exec_in_linux(&["sh", "-c", script], disk)
}

/// Runs `argv` in Starina's Linux on `disk`; (exit code, stdout, stderr).
fn exec_in_linux(argv: &[&str], disk: &std::path::Path) -> (i32, String, String) {
    starina_tests::exec_sh::exec_on_disk(argv, disk, TIMEOUT)
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn linux_uses_native_files_at_mnt_starina() {
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    let native = disk.path().with_file_name("from-native");
    std::fs::create_dir(&native).unwrap();
    std::fs::write(native.join("hello.txt"), "written natively").unwrap();
    let copy_in = Copy::parse(native.to_str().unwrap(), "starina:/").unwrap();
    starina_host::cp::copy(&disk.path(), &copy_in).expect("starina cp");
    let (code, out, err) = exec_sh(SCRIPT, &disk.path());
    let values: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("no '{key}=' in the output (exit {code}):\n{out}\n{err}"))
    };
    assert_eq!(get("mounted"), "yes");
    assert_eq!(get("cat"), "hello from linux");
    // The agent runs commands as root with umask 022.
    assert_eq!(get("ls"), "-rw-r--r-- 0 0 17");
    assert_eq!(get("mode"), "600");
    assert_eq!(get("ls600"), "-rw-------");
    assert_eq!(get("readlink"), "f");
    assert_eq!(get("via_symlink"), "hello from linux");
    assert_eq!(get("nlink"), "2");
    assert_eq!(get("after_mv"), "replaced");
    assert_eq!(get("old_via_link"), "hello from linux");
    assert_eq!(get("nlink_old"), "1");
    assert_eq!(get("left"), "f ");
    assert_eq!(get("size"), "1048576");
    let src = get("src_sha256");
    assert_eq!(src.len(), 64 + 3, "a sha256 and '  -': {src}");
    assert_eq!(get("big_sha256"), src);
    assert_eq!(get("reread_sha256"), src, "read back from the fs server");
    assert_eq!(get("big_md5"), get("src_md5"));
    assert_eq!(get("native"), "written natively");
    // tar in and out of /mnt/starina: names, modes, link counts, file
    // sizes, symlink targets and contents all the same.
    assert_eq!(get("tar_same"), "yes");
    // mv over a file is atomic to a concurrent reader: never missing,
    // never empty or half written.
    let reads: u32 = get("atomic_reads").parse().unwrap();
    assert!(reads > 0, "the reader never read");
    assert_eq!(get("atomic_bad"), "0");
    // A full disk is ENOSPC, and the file system goes on.
    assert_eq!(get("enospc"), "1");
    assert_eq!(get("after_full"), "after");
    assert_eq!(get("done"), "yes");
    assert_eq!(code, 0, "{err}");

    // What Linux wrote is in the native file system, on the disk.
    let big = disk.path().with_file_name("big");
    let copy_out = Copy::parse("starina:/linux-e2e/big", big.to_str().unwrap()).unwrap();
    starina_host::cp::copy(&disk.path(), &copy_out).expect("starina cp out");
    let sha = std::process::Command::new("sha256sum").arg(&big).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(sha.split(' ').next(), src.split(' ').next(), "the disk's copy of big");
    let synced = disk.path().with_file_name("synced");
    let copy_out = Copy::parse("starina:/linux-e2e/synced", synced.to_str().unwrap()).unwrap();
    starina_host::cp::copy(&disk.path(), &copy_out).expect("a file Linux synced is on the disk");
    assert_eq!(std::fs::read_to_string(&synced).unwrap(), "kept by sync\n");
    let ext2 = starina_host::disk::ext2_target(&disk.path()).unwrap();
    let fsck = std::process::Command::new("e2fsck").arg("-fn").arg(ext2).output().unwrap();
    assert!(fsck.status.success(), "e2fsck -fn:\n{}", String::from_utf8_lossy(&fsck.stdout));
}

/// The checks `/init --fs-probe` runs (linux-guest/agent/src/fsprobe.rs):
/// each must print `probe <name> ok`.
const PROBE_CHECKS: [&str; 17] = [
    "mmap_write",
    "mmap_read",
    "fcntl_lock",
    "flock",
    "o_append",
    "o_excl",
    "fallocate",
    "copy_file_range",
    "ino_stable",
    "chmod_chown",
    "truncate",
    "unlinked_open",
    "times",
    "rename_noreplace",
    "o_direct",
    "large_offset",
    "permissions",
];

/// The POSIX corners busybox cannot reach, by the guest agent's probe on
/// /mnt/starina: shared writable mmap both ways, fcntl and flock locks,
/// O_APPEND, O_EXCL, fallocate (allocating), copy_file_range, inode
/// numbers across rename/chmod/a dropped cache, chmod/chown, truncate,
/// times, RENAME_NOREPLACE, O_DIRECT, a 5 GiB offset, modes enforced on
/// another uid and its write clearing setuid; read backs come
/// from the server (the guest's page cache dropped first).
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn posix_corners_of_mnt_starina() {
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    let argv = ["/init", "--fs-probe", "/mnt/starina/probe"];
    let (code, out, err) = exec_in_linux(&argv, &disk.path());
    let failed: Vec<&str> = out.lines().filter(|l| l.contains(" FAILED")).collect();
    assert!(
        failed.is_empty(),
        "failed checks: {failed:#?}\n{out}\n{err}"
    );
    for name in PROBE_CHECKS {
        let ok = format!("probe {name} ok");
        let passed = out
            .lines()
            .any(|l| l == ok || l.starts_with(&format!("{ok} (")));
        assert!(
            passed,
            "no '{ok}' in the output (exit {code}):\n{out}\n{err}"
        );
    }
    let summary = format!("probe: {} passed, 0 failed", PROBE_CHECKS.len());
    assert!(
        out.lines().any(|l| l == summary),
        "no '{summary}':\n{out}\n{err}"
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let fsck = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(starina_host::disk::ext2_target(&disk.path()).unwrap())
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn:\n{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}
