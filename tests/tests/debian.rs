//! The Debian root (issue 12), end to end through the real
//! `scripts/starina`: a disk made with `--linux-root debian` boots Linux
//! from its partition 2, unmodified Debian programs run in it, and what a
//! user changes in it outlives `down` and `up`. One instance serves every
//! check; a second `up` on the same disk checks persistence. Slow (the
//! first run builds the Debian image, minutes): run by `make test`.

use std::thread;

use starina_tests::instance::text;
use starina_tests::instance::DebianInstance;
use starina_tests::instance::Tool;
use starina_tests::*;

/// Runs `script` with `sh -c` in the instance; its stdout, after checking
/// that it succeeded.
fn sh(tool: &Tool, disk: &str, script: &str) -> String {
    let out = tool.exec(disk, &["sh", "-c", script]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{script}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
#[ignore = "builds the Debian image and boots Starina and Linux under QEMU; run by make test"]
fn debian_programs_run_and_changes_persist() {
    let instance = DebianInstance::up();
    let (tool, disk) = (&instance.tool, &instance.disk);

    // Linux runs from the disk's partition 2, a Debian 12 root.
    let root = sh(
        tool,
        disk,
        "findmnt -no SOURCE,FSTYPE /; cut -d. -f1 /etc/debian_version",
    );
    assert_eq!(root, "/dev/vda ext4\n12\n");
    // Unmodified dynamically linked programs from the image.
    let python = tool.exec(
        disk,
        &[
            "python3",
            "-c",
            "import sqlite3, sys; print(sys.version_info[:2])",
        ],
    );
    assert_eq!(
        text(&python.stdout),
        "(3, 11)\n",
        "{}",
        text(&python.stderr)
    );
    assert!(sh(tool, disk, "git --version").starts_with("git version 2."));
    assert!(sh(tool, disk, "bash -c 'echo $BASH_VERSION'").starts_with("5."));
    // SQLite in WAL mode on the native file system.
    let wal = sh(
        tool,
        disk,
        "cd /mnt/starina && sqlite3 wal.db 'PRAGMA journal_mode=WAL; \
         CREATE TABLE t(x); INSERT INTO t VALUES (42); SELECT x FROM t;'",
    );
    assert_eq!(wal, "wal\n42\n");
    // The image's non-root user, with its home.
    let user = tool.run(&[
        "exec",
        "--disk",
        disk,
        "--user",
        "starina",
        "--cwd",
        "/home/starina",
        "--",
        "sh",
        "-c",
        "id -un; echo $HOME; pwd",
    ]);
    assert_eq!(
        text(&user.stdout),
        "starina\n/home/starina\n/home/starina\n"
    );
    // Debian's PATH.
    let path = sh(tool, disk, "echo $PATH");
    assert!(path.contains("/usr/sbin:/usr/bin:/sbin:/bin"), "{path}");

    // A full root: ENOSPC inside Linux, and nothing else breaks. fallocate
    // takes every block a user may have at once (root keeps ext4's
    // reserve), without writing gigabytes.
    sh(
        tool,
        disk,
        "fallocate -l $(df --output=avail -B1 / | tail -1) /root/fill",
    );
    let more = tool.run(&[
        "exec",
        "--disk",
        disk,
        "--user",
        "starina",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/home/starina/more bs=1M count=64",
    ]);
    assert_ne!(more.status.code(), Some(0));
    assert!(
        text(&more.stderr).contains("No space left on device"),
        "{}",
        text(&more.stderr)
    );
    let after = sh(
        tool,
        disk,
        "rm -f /root/fill /home/starina/more; echo fine > /root/after; cat /root/after",
    );
    assert_eq!(after, "fine\n");
    // git on the native file system (/mnt/starina): a 500-file tree
    // committed, the work tree clean, and the same files on the native side.
    let git = sh(tool, disk, GIT_SCRIPT);
    let (status, linux_hash) = git.split_once('\n').expect("two lines");
    assert_eq!(status, "clean");
    // A change to the root survives down and up.
    sh(tool, disk, "echo kept across restarts > /root/kept");
    assert_eq!(tool.run(&["down"]).status.code(), Some(0));
    assert_eq!(
        native_tree_hash(std::path::Path::new(disk)),
        linux_hash.trim()
    );
    let kernel = kernel();
    let again = tool.up(kernel.to_str().unwrap(), disk, "debian");
    assert_eq!(again.status.code(), Some(0), "the second up failed");
    assert_eq!(sh(tool, disk, "cat /root/kept"), "kept across restarts\n");
    // Several sessions at once in the same root.
    let sessions: Vec<_> = (1..=4)
        .map(|n| {
            let tool = Tool::clone(tool);
            let disk = disk.to_string();
            thread::spawn(move || tool.exec(&disk, &["python3", "-c", &format!("print({n} * 7)")]))
        })
        .collect();
    for (n, s) in (1..=4).zip(sessions) {
        assert_eq!(text(&s.join().unwrap().stdout), format!("{}\n", n * 7));
    }
    assert_eq!(tool.run(&["down"]).status.code(), Some(0));
}

/// Commits a 500-file tree with git in /mnt/starina/repo; prints `clean`
/// if `git status` shows nothing afterwards, then the tree's hash (see
/// [`native_tree_hash`]).
const GIT_SCRIPT: &str = "set -e; rm -rf /mnt/starina/repo; mkdir -p /mnt/starina/repo/sub; \
     cd /mnt/starina/repo; git init -q; \
     for i in $(seq 1 500); do echo \"file $i\" > sub/f$i.txt; done; \
     git add -A; git -c user.name=t -c user.email=t@example.com commit -qm tree; \
     [ -z \"$(git status --porcelain)\" ] && echo clean || echo dirty; \
     cd sub; ls | sort | xargs sha256sum | sha256sum | cut -d' ' -f1";

/// The same hash of the tree's files, from the disk's native file system
/// (copied out with `starina cp` while Starina is down).
fn native_tree_hash(disk: &std::path::Path) -> String {
    let out = disk.with_file_name("repo-out");
    let copy = starina_host::cp::Copy::parse("starina:/repo/sub", out.to_str().unwrap()).unwrap();
    starina_host::cp::copy(disk, &copy).expect("starina cp of the repository");
    let hash = std::process::Command::new("sh")
        .arg("-c")
        .arg("ls | sort | xargs sha256sum | sha256sum | cut -d' ' -f1")
        .current_dir(&out)
        .output()
        .expect("sh runs");
    text(&hash.stdout).trim().to_string()
}
