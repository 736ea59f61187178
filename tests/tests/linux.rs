//! The Linux microVM, end to end: `scripts/starina exec` runs commands in
//! Starina's Linux from the host (through the hostlink driver and the linux
//! server), and the `linux_test` profile's `linux_check` component runs
//! them from a native component. Each test boots Starina and Linux under
//! QEMU: slow, run by `make test`.

use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use starina_host::exec::ExecOptions;
use starina_host::Streams;
use starina_tests::frames::panic_frame;
use starina_tests::*;

/// Per-run limit (boot included), seconds. Generous: QEMU emulates the CPU
/// in software, nested virtualization included, on two shared cores.
const TIMEOUT: f64 = 300.0;

/// What one exec did.
struct Exec {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// When each piece of stdout arrived: (host time, its offset).
    arrivals: Vec<(SystemTime, usize)>,
}

/// Stdout that notes when each piece arrives.
#[derive(Default)]
struct Stamped {
    bytes: Vec<u8>,
    arrivals: Vec<(SystemTime, usize)>,
}

impl Write for Stamped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.arrivals.push((SystemTime::now(), self.bytes.len()));
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Exec {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// When the stdout byte at `offset` reached the host.
    fn arrival(&self, offset: usize) -> SystemTime {
        self.arrivals
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .expect("stdout arrived")
            .0
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
    exec_with_log(argv, stdin, false)
}

/// [`exec`]; with `log`, the OS's console log goes to the `stderr` of the
/// result too (`--verbose`).
fn exec_with_log(argv: &[&str], stdin: &[u8], log: bool) -> Exec {
    exec_as(None, argv, stdin, log)
}

/// [`exec_with_log`], run as `user` in the guest (`--user`) when given.
fn exec_as(user: Option<&str>, argv: &[&str], stdin: &[u8], log: bool) -> Exec {
    let image = kernel(); // Build once per test binary; exec then boots it as is.
    let start = Instant::now();
    let mut opts = ExecOptions::new(argv);
    opts.user = user.map(String::from);
    opts.build = false;
    opts.kernel = Some(image);
    opts.timeout = Some(TIMEOUT);
    opts.verbose = log;
    // A disk of its own, made now so that exec says nothing about it on
    // stderr (removed when `disk` drops, after the boot).
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    opts.disk.path = Some(disk.path());
    let (mut stdout, mut stderr) = (Stamped::default(), Vec::new());
    let mut io = Streams {
        out: &mut stdout,
        err: &mut stderr,
    };
    let input = Box::new(std::io::Cursor::new(stdin.to_vec()));
    let status = starina_host::exec::exec(&host_with_env(&[]), &opts, input, &mut io);
    let e = Exec {
        code: Some(status.code()),
        stdout: stdout.bytes,
        stderr,
        arrivals: stdout.arrivals,
    };
    let user = user.map_or(String::new(), |u| format!("--user {u} "));
    println!(
        "$ scripts/starina exec {user}-- {} ({:.1} s)\n{}",
        argv.join(" "),
        start.elapsed().as_secs_f64(),
        e.describe()
    );
    e
}

/// Also the guest's clock, in the same boot: kvm-clock over Starina's
/// clock, which reads the host's RTC at boot, so `date` matches the host's
/// within 2 s and uptime advances at the host's rate.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_uname_reports_linux_6_12_and_the_hosts_time() {
    let clock = "cat /sys/devices/system/clocksource/clocksource0/current_clocksource; \
        echo up $(cut -d' ' -f1 /proc/uptime) $(date +%s); sleep 4; \
        echo up $(cut -d' ' -f1 /proc/uptime) $(date +%s)";
    let e = exec(&["sh", "-c", &format!("uname -a; {clock}")], b"");
    assert_eq!(e.code, Some(0), "{}", e.describe());
    let out = e.stdout();
    assert!(
        out.starts_with("Linux ") && out.contains(" 6.12"),
        "{}",
        e.describe()
    );
    assert_eq!(out.lines().nth(1), Some("kvm-clock"), "{}", e.describe());
    // (guest uptime, guest date, host time when the line arrived), in s.
    let samples: Vec<(f64, f64, f64)> = out
        .match_indices("up ")
        .map(|(at, _)| {
            let line = out[at..].lines().next().unwrap();
            let v: Vec<f64> = line[3..]
                .split(' ')
                .map(|x| x.parse().expect("a number"))
                .collect();
            let host = e.arrival(at).duration_since(UNIX_EPOCH).unwrap();
            (v[0], v[1], host.as_secs_f64())
        })
        .collect();
    assert_eq!(samples.len(), 2, "{}", e.describe());
    for &(_, date, host) in &samples {
        // `date` rounds down and the line takes a moment to arrive.
        assert!(
            date + 1.0 > host - 2.0 - 1.0 && date < host + 2.0,
            "guest date {date} vs host {host:.3}\n{}",
            e.describe()
        );
    }
    let guest = samples[1].0 - samples[0].0;
    let host = samples[1].2 - samples[0].2;
    assert!(
        guest > 3.9 && (guest - host).abs() < 1.0,
        "uptime advanced {guest:.2} s while the host's clock advanced {host:.2} s"
    );
}

/// The host link reads the port when its virtio-console interrupts, not on
/// a timer (drivers/hostlink, module docs): its log says how it was woken
/// before the process's last frame goes out. Before the driver created its
/// interrupt ahead of setting up the device, the count was 0 (the line was
/// high before the pin was routed, so QEMU's IOAPIC never saw it rise) and
/// a 1 ms timer did the work.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn host_link_is_woken_by_its_interrupt_not_a_timer() {
    let e = exec_with_log(
        &["sh", "-c", "sleep 1; cat"],
        b"stdin after a second\n",
        true,
    );
    assert_eq!(e.code, Some(0), "{}", e.describe());
    assert_eq!(e.stdout(), "stdin after a second\n", "{}", e.describe());
    let log = e.stderr();
    let wakeups = log
        .lines()
        .find_map(|l| {
            l.split_once("hostlink: process 1 ended; woken by ")
                .map(|(_, r)| r)
        })
        .unwrap_or_else(|| panic!("no wake-up line from hostlink:\n{log}"));
    let numbers: Vec<u64> = wakeups
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{wakeups}");
    assert!(
        numbers[0] >= 1,
        "no interrupt reached the host link: {wakeups}"
    );
    assert_eq!(numbers[1], 0, "the host link polled on a timer: {wakeups}");
}

/// `--user nobody`: the initramfs's /etc/passwd names it (65534:65534,
/// home /nonexistent); the process has no supplementary groups.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_user_nobody_runs_as_65534() {
    let script = "id -u; id -G; echo $HOME";
    let e = exec_as(Some("nobody"), &["sh", "-c", script], b"", false);
    assert_eq!(e.code, Some(0), "{}", e.describe());
    assert_eq!(
        e.stdout(),
        "65534\n65534\n/nonexistent\n",
        "{}",
        e.describe()
    );
}

/// An unknown user is refused with a message that names it: the command
/// never runs, as root or anyone else.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn exec_unknown_user_fails_with_a_message() {
    let e = exec_as(Some("nosuchuser"), &["echo", "ran"], b"", false);
    assert!(!matches!(e.code, Some(0) | None), "{}", e.describe());
    assert!(e.stdout.is_empty(), "{}", e.describe());
    assert!(
        e.stderr().contains("unknown user 'nosuchuser'"),
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

/// XCR0 is the guest's own (issue 8: XSETBV used to set the host's):
/// the guest agent's `--xsetbv-probe` reads XCR0 (it must be what CPUID
/// leaf 0xD offers), executes XSETBV with a garbage value at CPL 3 (it must
/// get SIGSEGV, #GP, and XCR0 must not change) and keeps a YMM register
/// across 20,000 VM exits. The host kernel runs on with x87|SSE.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn guest_xsetbv_stays_in_the_guest() {
    let e = exec_with_log(&["/init", "--xsetbv-probe"], b"", true);
    assert_eq!(e.code, Some(0), "{}", e.describe());
    let out = e.stdout();
    assert!(out.contains("signal=SIGSEGV "), "{}", e.describe());
    assert!(out.ends_with("xsetbv-probe: ok\n"), "{}", e.describe());
    // The kernel's boot line: what the host itself runs with.
    assert!(e.stderr().contains("host XCR0 0x3;"), "{}", e.describe());
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
        "silent_channels_time_out",
        "shared_files",
        "guest_panic_restarts",
    ] {
        run.assert_console(&format!("linux_check: test {test} ... ok"));
    }
    run.assert_console("linux: [guest] Kernel panic");
    run.assert_console("restarting linux");
    run.assert_console("linux_check: 9 passed, 0 failed");
}

/// Item 9 of issue 8: only test profiles let anyone crash the guest. The
/// `linux` profile (what `scripts/starina exec` boots) keeps linux's own
/// config, `allow_test_panic = false`: the host's Panic frame (which
/// hostlink turns into `Open { uri: "test:panic" }`) is refused, the guest
/// does not restart, and commands keep running in the same VM.
#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn default_linux_refuses_test_panic() {
    let timeout = Duration::from_secs_f64(TIMEOUT);
    let mut m = LinkedGuest::boot("linux", false, timeout);
    let boot_id = ["cat", "/proc/sys/kernel/random/boot_id"];
    let result = (|| -> Result<(), String> {
        let before = m.run(&boot_id, timeout)?;
        if before.exited != Some(0) {
            return Err(format!("first command: {}", before.status()));
        }
        m.send(&panic_frame())?;
        // Behind the panic request on the same link and the same channel
        // to the linux server, so served after it.
        let after = m.run(&boot_id, timeout)?;
        if after.exited != Some(0) || after.stdout != before.stdout {
            return Err(format!(
                "after the panic request: {} with boot id {:?} (before: {:?})",
                after.status(),
                String::from_utf8_lossy(&after.stdout),
                String::from_utf8_lossy(&before.stdout)
            ));
        }
        // Time for a restart to show, had there been one.
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })();
    let console = m.console();
    drop(m);
    println!("--- serial console:\n{console}");
    result.unwrap();
    assert!(
        console.contains("test:panic is off (spec config allow_test_panic)"),
        "no refusal in the console"
    );
    assert!(!console.contains("Kernel panic"), "the guest panicked");
    assert!(!console.contains("restarting linux"), "linux restarted");
}
