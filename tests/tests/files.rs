//! The native file system on a real disk image, across boots: a power cut
//! in the middle of writing loses nothing that was fsynced, the next boot
//! mounts without a manual step (the fs server repairs what the cut left
//! half done), and the host's `e2fsck -fn` then finds nothing wrong; a
//! disk that is not ext2 is refused with the reason while the rest of
//! Starina keeps running. Profile `fs_crash` (apps/fs_crashtest).
//!
//! Booting needs QEMU: `cargo test -p starina-tests -- --ignored`.

use std::process::Command;
use std::thread;
use std::time::Duration;

use starina_tests::*;

/// `e2fsck -fn` on the image: its exit status and report.
fn fsck(disk: &std::path::Path) -> (i32, String) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(starina_host::disk::ext2_target(disk).expect("a disk"))
        .output()
        .expect("e2fsck runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), report)
}

#[test]
#[ignore]
fn fsynced_files_survive_a_power_cut() {
    let disk = TempDisk::new().expect("a temporary directory");
    let path = disk.path();
    starina_host::disk::create(&path, TEST_DISK_SIZE, None).expect("mke2fs");
    let image = path.to_str().unwrap();

    // Boot 1: 100 files written and fsynced, then QEMU is killed while
    // fs_crashtest creates, renames and removes files (fsyncing some).
    let guest = LiveGuest::boot_on(&path, "fs_crash", "q35", http::free_port(), &[]);
    guest.wait_console("fsynced 100 files", Duration::from_secs(120));
    thread::sleep(Duration::from_millis(1500));
    drop(guest);

    // Boot 2: mounts with a repair, reads back every fsynced file, writes
    // a new round, syncs and powers off with the result.
    let run = boot("fs_crash", "q35", 180, &["--disk", image]);
    run.assert_console("was not cleanly unmounted: repairing");
    run.assert_console("verified 100 files");
    run.assert_code(0);
    let (code, report) = fsck(&path);
    assert_eq!(
        code, 0,
        "e2fsck -fn after the power cut and a clean boot:\n{report}"
    );
}

#[test]
#[ignore]
fn a_disk_that_is_not_ext2_is_refused_with_the_reason() {
    let disk = TempDisk::new().expect("a temporary directory");
    let path = disk.path();
    starina_host::disk::create(&path, TEST_DISK_SIZE, None).expect("mke2fs");
    // Zero the superblock (bytes 1024..2048 of partition 1): no ext2
    // magic any more.
    let sb = starina_host::disk::ext2_offset(&path).unwrap() as usize + 1024;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[sb..sb + 1024].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let run = boot(
        "fs_crash",
        "microvm",
        120,
        &["--disk", path.to_str().unwrap()],
    );
    run.assert_console("cannot be mounted");
    run.assert_console("magic");
    // The rest goes on: fs_crashtest gets the reason as an error and
    // powers off with a failure (no restart loop, no panic).
    run.assert_console("FAILED");
    run.assert_code(1);
    assert!(
        !run.stdout.contains("panicked"),
        "a component panicked:\n{}",
        run.stdout
    );
}
