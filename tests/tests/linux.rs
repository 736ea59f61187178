//! The Linux microVM, end to end: `scripts/starina exec` runs commands in
//! Starina's Linux from the host (through the hostlink driver and the linux
//! server), and the `linux_test` profile's `linux_check` component runs
//! them from a native component. Each test boots Starina and Linux under
//! QEMU: slow, run by `make test`.

use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Instant;

use starina_host::exec::ExecOptions;
use starina_host::Streams;
use starina_tests::*;

/// Per-run limit (boot included), seconds. Generous: QEMU emulates the CPU
/// in software, nested virtualization included, on two shared cores.
const TIMEOUT: f64 = 300.0;

/// What one exec did.
struct Exec {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Exec {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "--- exit status {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            self.stdout(),
            self.stderr()
        )
    }
}

/// `scripts/starina exec --no-build --timeout .. -- argv`, with `stdin`,
/// through the host tool's library.
fn exec(argv: &[&str], stdin: &[u8]) -> Exec {
    let image = kernel(); // Build once per test binary; exec then boots it as is.
    let start = Instant::now();
    let mut opts = ExecOptions::new(argv);
    opts.build = false;
    opts.kernel = Some(image);
    opts.timeout = Some(TIMEOUT);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut stdout,
        err: &mut stderr,
    };
    let input = Box::new(std::io::Cursor::new(stdin.to_vec()));
    let status = starina_host::exec::exec(&host_with_env(&[]), &opts, input, &mut io);
    let e = Exec {
        code: Some(status.code()),
        stdout,
        stderr,
    };
    println!(
        "$ scripts/starina exec -- {} ({:.1} s)\n{}",
        argv.join(" "),
        start.elapsed().as_secs_f64(),
        e.describe()
    );
    e
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_uname_reports_linux_6_12() {
    let e = exec(&["uname", "-a"], b"");
    assert_eq!(e.code, Some(0), "{}", e.describe());
    let out = e.stdout();
    assert!(
        out.starts_with("Linux ") && out.contains(" 6.12"),
        "{}",
        e.describe()
    );
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_streams_stdout_and_stderr_apart_and_returns_the_status() {
    let e = exec(&["sh", "-c", "echo out; echo err >&2; exit 3"], b"");
    assert_eq!(e.code, Some(3), "{}", e.describe());
    assert_eq!(e.stdout(), "out\n", "{}", e.describe());
    assert_eq!(e.stderr(), "err\n", "{}", e.describe());
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_pipes_one_mebibyte_through_sha256sum() {
    // Deterministic, incompressible-looking bytes.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut host = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("host sha256sum");
    host.stdin.take().unwrap().write_all(&data).unwrap();
    let want = String::from_utf8(host.wait_with_output().unwrap().stdout).unwrap();
    let e = exec(&["sha256sum"], &data);
    assert_eq!(e.code, Some(0), "{}", e.describe());
    assert_eq!(e.stdout(), want, "{}", e.describe());
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_missing_command_gives_127_and_a_message() {
    let e = exec(&["/no/such/program"], b"");
    assert_eq!(e.code, Some(127), "{}", e.describe());
    assert!(e.stderr().contains("not found"), "{}", e.describe());
    assert!(e.stdout.is_empty(), "{}", e.describe());
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_reports_a_signal_as_128_plus_its_number() {
    let e = exec(&["sh", "-c", "kill -TERM $$"], b"");
    assert_eq!(e.code, Some(128 + 15), "{}", e.describe());
}

/// 20 commands at once from a native component, stdin, statuses, signals,
/// and a guest kernel panic after which the VM restarts and the next
/// command works (apps/linux_check).
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn native_clients_and_guest_restart() {
    let run = boot("linux_test", "q35", 300, &[]);
    run.assert_code(0);
    run.assert_console("linux: guest ready: Linux 6.12");
    for test in [
        "uname",
        "concurrent",
        "streams_and_status",
        "stdin",
        "missing_program",
        "signals",
        "guest_panic_restarts",
    ] {
        run.assert_console(&format!("linux_check: test {test} ... ok"));
    }
    run.assert_console("linux: [guest] Kernel panic");
    run.assert_console("restarting linux");
    run.assert_console("linux_check: 7 passed, 0 failed");
}
