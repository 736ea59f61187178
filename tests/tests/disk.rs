//! The disk of `run` (`--disk`, `--disk-size`), against the fake QEMU
//! (`tests/fixtures/fake-qemu`): the image is created and formatted when a
//! profile with the disk driver needs it, reaches the QEMU command line, and
//! one that cannot be made stops the run with a clear message. Fast: needs
//! neither QEMU nor the kernel. The in-OS tests use the disk itself
//! (apps/testrunner/src/disk.rs).

use std::path::Path;

use starina_tests::*;

/// `scripts/starina run --kernel <any file> <extra>` under the fake QEMU;
/// returns the run and the arguments QEMU got (empty if it did not run).
fn run_with(extra: &[&str], argv_file: &Path) -> (Run, Vec<String>) {
    let kernel = fixture("fake-qemu").to_string_lossy().into_owned();
    let qemu = fixture("fake-qemu").to_string_lossy().into_owned();
    let mut args = vec!["run", "--kernel", &kernel];
    args.extend_from_slice(extra);
    let _ = std::fs::remove_file(argv_file);
    let run = starina_with_env(
        &args,
        &[
            ("STARINA_QEMU", &qemu),
            ("FAKE_QEMU_ARGV", argv_file.to_str().unwrap()),
            ("FAKE_QEMU_SERIAL", "x\n"),
        ],
    );
    let argv = std::fs::read_to_string(argv_file).unwrap_or_default();
    (run, argv.lines().map(str::to_string).collect())
}

#[test]
fn a_missing_disk_is_created_formatted_and_given_to_qemu() {
    let dir = TempDisk::new().unwrap();
    let image = dir.path();
    let argv_file = image.with_file_name("argv");
    let path = image.to_str().unwrap();
    let (run, argv) = run_with(&["--disk", path, "--disk-size", "8M"], &argv_file);
    assert!(
        run.stderr
            .contains(&format!("creating disk {path} (8M ext2, no Linux root)")),
        "{}",
        run.transcript()
    );
    // An MBR, then partition 1 (1 MiB in) of 8 MiB.
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(bytes.len(), 9 << 20);
    assert_eq!(&bytes[510..512], &[0x55, 0xaa], "no MBR");
    let sb = (1 << 20) + 1024;
    assert_eq!(&bytes[sb + 56..sb + 58], &[0x53, 0xef], "no ext2 magic");
    let drive = format!("file={path},if=none,format=raw,id=disk0,cache=writeback");
    let at = argv.iter().position(|a| *a == drive);
    assert!(at.is_some(), "no -drive {drive} in {argv:?}");
    let at = at.unwrap();
    assert_eq!(argv[at - 1], "-drive");
    assert_eq!(
        argv[at + 1..at + 3],
        ["-device", "virtio-blk-pci,drive=disk0"]
    );
    // The second run uses the image as it is.
    std::fs::write(&image, b"kept").unwrap();
    let (run, _) = run_with(&["--disk", path], &argv_file);
    assert!(
        !run.stderr.contains("creating disk"),
        "{}",
        run.transcript()
    );
    assert_eq!(std::fs::read(&image).unwrap(), b"kept");
}

#[test]
fn profiles_without_the_disk_driver_get_no_disk() {
    let dir = TempDisk::new().unwrap();
    let argv_file = dir.path().with_file_name("argv");
    let path = dir.path();
    let (run, argv) = run_with(
        &["--profile", "bench", "--disk", path.to_str().unwrap()],
        &argv_file,
    );
    assert!(!argv.is_empty(), "QEMU did not run\n{}", run.transcript());
    assert!(!argv.iter().any(|a| a == "-drive"), "{argv:?}");
    assert!(
        !path.exists(),
        "an image was made for a profile without a disk"
    );
}

#[test]
fn a_disk_that_cannot_be_made_is_a_clear_error() {
    let dir = TempDisk::new().unwrap();
    let argv_file = dir.path().with_file_name("argv");
    let (run, argv) = run_with(&["--disk", "/proc/no-such-dir/disk.img"], &argv_file);
    run.assert_code(EXIT_NOT_BOOTED);
    assert!(
        run.stderr
            .contains("cannot create disk /proc/no-such-dir/disk.img"),
        "{}",
        run.transcript()
    );
    assert!(argv.is_empty(), "QEMU ran: {argv:?}");
}

/// An I/O error of the device (QEMU's blkdebug fails reads of sector 4100
/// of the native partition, which only the in-OS test `disk_throughput`
/// reads) is an error to the
/// client that asked, and the driver goes on: the test profile reports
/// exactly that test failed, and the driver neither panicked nor restarted.
#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn a_device_io_error_is_the_clients_error() {
    let dir = TempDisk::new().unwrap();
    let image = dir.path();
    let conf = image.with_file_name("blkdebug.conf");
    // Sector 4100 of the native file system's partition, which starts
    // 1 MiB into the image.
    let sector = 4100 + starina_host::mbr::ALIGN / 512;
    std::fs::write(
        &conf,
        format!("[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{sector}\"\n"),
    )
    .unwrap();
    let (image, conf) = (image.to_str().unwrap(), conf.to_str().unwrap());
    let file = format!("drive.disk0.file=blkdebug:{conf}:{image}");
    let run = boot("test", "q35", 300, &["--disk", image, "--", "-set", &file]);
    run.assert_code(1);
    run.assert_console("test disk_throughput ... FAILED: read: I/O error");
    run.assert_console(" passed, 1 failed");
    let console = run.transcript();
    assert_eq!(
        console.matches("started virtio_blk").count(),
        1,
        "{console}"
    );
    assert!(!console.contains("virtio_blk panicked"), "{console}");
    assert!(!console.contains("virtio_blk faulted"), "{console}");
}
