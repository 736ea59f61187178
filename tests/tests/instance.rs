//! A running instance, end to end, through the real `scripts/starina`:
//! `up` boots Starina in the background and returns once Linux is ready;
//! ten `exec` sessions run in it at once, each with its own output and
//! exit status; `status` shows it; a second `up` on the same disk is
//! refused; an `exec` cut off by `down` fails clearly; after `down` what
//! Linux wrote is on the disk and `status` says nothing is up. Each test
//! boots Starina and Linux under QEMU: slow, run by `make test`.

use std::path::Path;
use std::process::Command;
use std::process::Output;
use std::thread;

use starina_tests::instance::text;
use starina_tests::instance::DownOnPanic;
use starina_tests::instance::Tool;
use starina_tests::*;

fn up(tool: &Tool, kernel: &str, disk: &str) -> Output {
    tool.up(kernel, disk, "none")
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn an_instance_runs_many_execs_and_goes_down_cleanly() {
    let kernel = kernel();
    let kernel = kernel.to_str().expect("a UTF-8 path");
    let disk = TempDisk::new().expect("a temporary directory");
    let tool = Tool::new(disk.path().with_file_name("run"));
    let image = disk.path();
    let image_arg = image.to_str().unwrap().to_string();

    let _guard = DownOnPanic(tool.clone());
    let started = up(&tool, kernel, &image_arg);
    assert_eq!(started.status.code(), Some(0), "up failed");
    assert!(text(&started.stderr).contains("Linux is ready"));

    // Ten sessions at once, each its own output and status.
    let sessions: Vec<_> = (1..=10)
        .map(|n| {
            let tool = tool.clone();
            let image = image_arg.clone();
            thread::spawn(move || {
                let script = format!("echo out-{n}; echo err-{n} >&2; sleep 1; exit {n}");
                tool.run(&["exec", "--disk", &image, "--", "sh", "-c", &script])
            })
        })
        .collect();
    for (n, session) in (1..=10).zip(sessions) {
        let out = session.join().unwrap();
        assert_eq!(out.status.code(), Some(n), "session {n}");
        assert_eq!(text(&out.stdout), format!("out-{n}\n"), "session {n}");
        assert!(
            text(&out.stderr).contains(&format!("err-{n}")),
            "session {n}"
        );
    }
    let wrote = tool.run(&[
        "exec",
        "--disk",
        &image_arg,
        "--",
        "sh",
        "-c",
        "echo kept > /mnt/starina/kept.txt",
    ]);
    assert_eq!(wrote.status.code(), Some(0));

    let status = tool.run(&["status"]);
    assert_eq!(status.status.code(), Some(0));
    let shown = text(&status.stdout);
    for needle in [
        "profile:    linux on q35",
        "Linux:      ready (initramfs)",
        "hostlink",
        "uptime:",
    ] {
        assert!(shown.contains(needle), "status lacks {needle:?}:\n{shown}");
    }
    assert!(shown.contains(&image_arg), "{shown}");

    // One instance per disk.
    let again = up(&tool, kernel, &image_arg);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("an instance is already up on disk"),
        "{}",
        text(&again.stderr)
    );

    // A command still running when the instance goes down fails clearly.
    let cut = {
        let tool = tool.clone();
        let image = image_arg.clone();
        thread::spawn(move || tool.run(&["exec", "--disk", &image, "--", "sleep", "60"]))
    };
    wait_for_sessions(&tool, 1);
    let down = tool.run(&["down"]);
    assert_eq!(down.status.code(), Some(0));
    assert!(
        text(&down.stderr).contains("is down"),
        "{}",
        text(&down.stderr)
    );
    let cut = cut.join().unwrap();
    assert_eq!(cut.status.code(), Some(EXIT_NO_STATUS));
    assert!(
        text(&cut.stderr).contains("the Starina instance went down before the command finished"),
        "{}",
        text(&cut.stderr)
    );

    let none = tool.run(&["status"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("no Starina instance is up"));
    assert_eq!(tool.run(&["down"]).status.code(), Some(1));
    // What Linux wrote reached the disk before QEMU stopped.
    assert_eq!(debugfs_cat(&image, "/kept.txt"), "kept\n");
}

/// Waits until `status` shows `n` sessions running.
fn wait_for_sessions(tool: &Tool, n: usize) {
    let want = format!("sessions:   {n} running");
    for _ in 0..100 {
        if text(&tool.run(&["status"]).stdout).contains(&want) {
            return;
        }
        thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("status never showed {want:?}");
}

/// A file of the native file system on the disk, through debugfs.
fn debugfs_cat(disk: &Path, path: &str) -> String {
    let target = starina_host::disk::ext2_target(disk).expect("a disk");
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(target)
        .output()
        .expect("debugfs runs");
    text(&out.stdout)
}
