//! The host tool's `run` command line (what `scripts/starina` runs), in this
//! process, against a fake QEMU (`tests/fixtures/fake-qemu`):
//! argument handling, the QEMU command line, serial streaming and the mapping
//! of QEMU's exit status. Fast, and needs neither QEMU nor the kernel.

use starina_tests::*;

/// Any existing file will do as the "kernel": the fake QEMU does not read it.
fn fake_kernel() -> String {
    fixture("fake-qemu").to_string_lossy().into_owned()
}

fn fake_run(extra: &[&str], env: &[(&str, &str)]) -> Run {
    let kernel = fake_kernel();
    let mut args = vec!["run", "--kernel", &kernel];
    args.extend_from_slice(extra);
    let qemu = fixture("fake-qemu");
    let mut env = env.to_vec();
    env.push(("STARINA_QEMU", qemu.to_str().unwrap()));
    starina_with_env(&args, &env)
}

/// Runs with the fake QEMU and returns the arguments it was given.
fn qemu_argv(extra: &[&str]) -> (Run, Vec<String>) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("fake-qemu-argv-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let run = fake_run(
        extra,
        &[
            ("FAKE_QEMU_ARGV", file.to_str().unwrap()),
            ("FAKE_QEMU_SERIAL", "x\n"),
        ],
    );
    let argv = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("fake QEMU did not run ({e})\n{}", run.transcript()));
    let _ = std::fs::remove_file(&file);
    (run, argv.lines().map(str::to_string).collect())
}

/// True if `argv` has `window` as consecutive arguments.
fn has(argv: &[String], window: &[&str]) -> bool {
    argv.windows(window.len())
        .any(|w| w.iter().zip(window).all(|(a, b)| a == b))
}

#[test]
fn os_exit_code_is_mapped_back() {
    for (qemu_status, expected) in [("1", 0), ("7", 3), ("15", 7), ("5", 2)] {
        let run = fake_run(
            &[],
            &[
                ("FAKE_QEMU_SERIAL", "bye\n"),
                ("FAKE_QEMU_STATUS", qemu_status),
            ],
        );
        run.assert_code(expected);
    }
}

#[test]
fn qemu_status_zero_means_crash() {
    let run = fake_run(
        &[],
        &[("FAKE_QEMU_SERIAL", "oops\n"), ("FAKE_QEMU_STATUS", "0")],
    );
    run.assert_code(EXIT_NO_STATUS);
    assert!(
        run.stderr
            .contains("QEMU exited without the OS reporting a status: the kernel crashed or reset"),
        "{}",
        run.transcript()
    );
}

#[test]
fn even_qemu_status_means_crash() {
    let run = fake_run(
        &[],
        &[("FAKE_QEMU_SERIAL", "oops\n"), ("FAKE_QEMU_STATUS", "2")],
    );
    run.assert_code(EXIT_NO_STATUS);
}

#[test]
fn qemu_killed_by_signal_means_no_status() {
    let run = fake_run(
        &[],
        &[("FAKE_QEMU_SERIAL", "oops\n"), ("FAKE_QEMU_SIGNAL", "9")],
    );
    run.assert_code(EXIT_NO_STATUS);
    assert!(
        run.stderr.contains("killed by signal 9"),
        "{}",
        run.transcript()
    );
}

#[test]
fn qemu_failing_to_start_is_not_an_os_exit() {
    // QEMU's own errors also exit 1, which would read as "the OS wrote 0".
    let run = fake_run(&[], &[("FAKE_QEMU_STATUS", "1")]);
    run.assert_code(EXIT_NOT_BOOTED);
    let run = fake_run(
        &[],
        &[
            ("FAKE_QEMU_STATUS", "1"),
            ("FAKE_QEMU_SERIAL", "x\n"),
            (
                "FAKE_QEMU_STDERR",
                "qemu-system-x86_64: -foo: invalid option\n",
            ),
        ],
    );
    run.assert_code(EXIT_NOT_BOOTED);
    assert!(
        run.stderr.contains("invalid option"),
        "{}",
        run.transcript()
    );
}

#[test]
fn qemu_warnings_do_not_hide_a_clean_exit() {
    let run = fake_run(
        &[],
        &[
            ("FAKE_QEMU_STATUS", "1"),
            ("FAKE_QEMU_SERIAL", "done\n"),
            (
                "FAKE_QEMU_STDERR",
                "qemu-system-x86_64: warning: host doesn't support requested feature\n",
            ),
        ],
    );
    run.assert_code(0);
}

#[test]
fn timeout_kills_qemu_and_exits_124() {
    let run = fake_run(
        &["--timeout", "1"],
        &[
            ("FAKE_QEMU_SERIAL", "booting\n"),
            ("FAKE_QEMU_SLEEP", "forever"),
        ],
    );
    run.assert_code(EXIT_TIMEOUT);
    assert!(
        run.stderr.contains("starina: timed out after 1 s"),
        "{}",
        run.transcript()
    );
    assert_eq!(run.stdout, "booting\n");
    assert!(run.elapsed.as_secs() < 10, "{}", run.transcript());
}

#[test]
fn serial_console_is_streamed_verbatim() {
    let text = "[   0.000001] INFO  kernel: hi\r\nline two\nno newline at the end";
    let run = fake_run(
        &[],
        &[("FAKE_QEMU_SERIAL", text), ("FAKE_QEMU_STATUS", "1")],
    );
    run.assert_code(0);
    assert_eq!(run.stdout, text);
}

#[test]
fn prints_a_hint_line() {
    let run = fake_run(
        &["--profile", "test", "--machine", "microvm"],
        &[("FAKE_QEMU_SERIAL", "x\n")],
    );
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("starina: booting profile test on microvm (Ctrl-C to stop)\n"),
        "{}",
        run.transcript()
    );
}

#[test]
fn until_stops_qemu_once_every_pattern_was_seen() {
    let run = fake_run(
        &[
            "--timeout",
            "30",
            "--until",
            "starina: ready",
            "--until",
            r"round trips, \w+",
        ],
        &[
            (
                "FAKE_QEMU_SERIAL",
                "a\nstarina: ready (tsc=5)\r\nx: 1000 round trips, ok\nnever reached",
            ),
            ("FAKE_QEMU_SLEEP", "forever"),
        ],
    );
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("starina: matched 'starina: ready' after "),
        "{}",
        run.transcript()
    );
    assert!(run.elapsed.as_secs() < 10, "{}", run.transcript());
}

#[test]
fn until_reports_a_pattern_never_seen() {
    let run = fake_run(
        &["--until", "starina: ready"],
        &[("FAKE_QEMU_SERIAL", "no\n"), ("FAKE_QEMU_STATUS", "1")],
    );
    run.assert_code(EXIT_UNTIL_MISSED);
    assert!(
        run.stderr.contains("'starina: ready'"),
        "{}",
        run.transcript()
    );
}

#[test]
fn default_qemu_command_line() {
    let (run, argv) = qemu_argv(&[]);
    run.assert_code(0);
    for window in [
        &["-M", "q35"][..],
        &["-cpu", "max"],
        // The default profile runs the Linux microVM: 1 GiB, and the boot
        // file system (the guest kernel and initramfs) as the PVH module.
        &["-m", "1G"],
        &["-display", "none"],
        &["-monitor", "none"],
        &["-no-reboot"],
        &["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        &["-kernel", &fake_kernel()],
        &["-append", "profile=default"],
        &["-nic", "none"],
    ] {
        assert!(has(&argv, window), "QEMU args lack {window:?}: {argv:?}");
    }
    assert!(argv.iter().any(|a| a == "-initrd"), "no bootfs: {argv:?}");
    // stdin is not a terminal: the serial port goes to a pipe, not stdio.
    assert!(!has(&argv, &["-serial", "stdio"]), "{argv:?}");
    assert!(
        !argv.iter().any(|a| a == "-icount" || a == "-enable-kvm"),
        "{argv:?}"
    );
}

#[test]
fn options_reach_the_qemu_command_line() {
    let (run, argv) = qemu_argv(&[
        "--profile",
        "bench",
        "--machine",
        "microvm",
        "--icount",
        "--kvm",
        "--",
        "-s",
        "-d",
        "int",
    ]);
    run.assert_code(0);
    for window in [
        &["-M", "microvm"][..],
        &["-enable-kvm", "-cpu", "host"],
        &["-icount", "shift=0"],
        &["-append", "profile=bench"],
    ] {
        assert!(has(&argv, window), "QEMU args lack {window:?}: {argv:?}");
    }
    assert!(!has(&argv, &["-cpu", "max"]), "{argv:?}");
    assert!(
        argv.ends_with(&["-s".into(), "-d".into(), "int".into()]),
        "{argv:?}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["run", "--machine", "pc"][..],
        &["run", "--timeout", "soon"],
        &["run", "--timeout", "0"],
        &["run", "--profile", "a b"],
        &["run", "--until", "("],
        &["frobnicate"],
        &[],
    ] {
        let run = starina(args);
        run.assert_code(2);
    }
}

#[test]
fn missing_kernel_image_is_reported() {
    let run = starina_with_env(
        &["run", "--kernel", "/nonexistent/starina-kernel"],
        &[("STARINA_QEMU", fixture("fake-qemu").to_str().unwrap())],
    );
    run.assert_code(EXIT_NOT_BOOTED);
    assert!(
        run.stderr
            .contains("/nonexistent/starina-kernel does not exist"),
        "{}",
        run.transcript()
    );
}

#[test]
fn missing_qemu_is_reported() {
    let kernel = fake_kernel();
    let run = starina_with_env(
        &["run", "--kernel", &kernel],
        &[("STARINA_QEMU", "/nonexistent/qemu")],
    );
    run.assert_code(EXIT_NO_QEMU);
    assert!(run.stderr.contains("scripts/setup"), "{}", run.transcript());
}
