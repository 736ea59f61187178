//! `starina test` (`make test`): every test stage, each under a `==>`
//! header, all run even when an earlier one fails, then one summary line
//! `N passed, M failed` counting individual tests. Exits 0 only if nothing failed.
//!
//! Stages: the Linux guest build, host tests (`cargo test --workspace`),
//! the kernel build, the in-OS tests (profile `test` on each machine, on
//! q35 again on 2 and 4 CPUs, and profile `test_user`, its components in
//! user mode, on 2 CPUs), the
//! Bochs boots (GRUB, Multiboot2: the OS on the Intel CPU model, then Linux
//! through the VMX backend on it and through SVM on the AMD model), and
//! the end-to-end tests (`cargo test -p starina-tests -- --ignored`).
//! A stage that breaks without reporting its own counts (a build error, a
//! crash, a timeout) counts as one failure.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use crate::bochs::Cpu;
use crate::cli::TestOptions;
use crate::disk::TempDisk;
use crate::host::Host;
use crate::host::Streams;
use crate::kernel;
use crate::kernel::Progress;
use crate::markers;
use crate::process::run_lines;
use crate::process::Line;
use crate::run::run;
use crate::run::Emulator;
use crate::run::RunOptions;
use crate::status::ExitStatus;

/// The in-OS tests' time limit, seconds.
pub const IN_OS_TIMEOUT: f64 = 300.0;

/// The Bochs boot's profile: no virtio device (Bochs has none), and it
/// powers off by itself (status 0) a second of guest time after ready.
pub const BOCHS_PROFILE: &str = "bench";
/// The Bochs boot's time limit, seconds (it takes about 15 here).
pub const BOCHS_TIMEOUT: f64 = 180.0;
/// The Linux boots under Bochs: the smallest guest (no disk, no network);
/// on the Intel model with two vCPUs on two CPUs (VMX on each), on the
/// AMD one with one (SVM's SMP runs under QEMU).
pub fn bochs_linux_machine(cpu: Cpu) -> (&'static str, u8) {
    match cpu {
        Cpu::Intel => ("linux_smoke_smp", 2),
        Cpu::Amd => ("linux_smoke", 1),
    }
}
/// Their time limit, seconds (each takes about 15 here, 40 with two CPUs).
pub const BOCHS_LINUX_TIMEOUT: f64 = 300.0;

/// One stage's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub passed: u32,
    pub failed: u32,
    pub note: String,
    pub seconds: f64,
}

/// The stages so far.
#[derive(Debug, Default)]
pub struct Tally {
    pub stages: Vec<Stage>,
}

impl Tally {
    pub fn add(&mut self, name: &str, passed: u32, failed: u32, note: String, start: Instant) {
        self.stages.push(Stage {
            name: name.to_string(),
            passed,
            failed,
            note,
            seconds: start.elapsed().as_secs_f64(),
        });
    }

    pub fn passed(&self) -> u32 {
        self.stages.iter().map(|s| s.passed).sum()
    }

    pub fn failed(&self) -> u32 {
        self.stages.iter().map(|s| s.failed).sum()
    }

    /// The closing line: `N passed, M failed`.
    pub fn summary_line(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    pub fn status(&self) -> ExitStatus {
        if self.failed() == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::Failed
        }
    }
}

fn header(text: &str) {
    println!("==> {text}");
    let _ = std::io::stdout().flush();
}

fn show(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Runs every stage that `opts` does not skip; the summary is the last line.
pub fn test(host: &Host, opts: &TestOptions) -> ExitStatus {
    let host = host.batch();
    let skip = |stage: &str| opts.skip.iter().any(|s| s == stage);
    let mut tally = Tally::default();
    let start = Instant::now();
    if !skip("linux") {
        linux_stage(&host, &mut tally);
    }
    if !skip("host") {
        let cmd = ["cargo", "test", "--workspace", "--no-fail-fast"];
        cargo_stage(&host, &mut tally, "host tests", &cmd);
    }
    let mut kernel_ok = true;
    if !skip("kernel") {
        header("kernel: scripts/build-kernel");
        let t0 = Instant::now();
        let result = kernel::build(&host, &[], Progress::Show, &mut |l| show(l));
        kernel_ok = result.is_ok();
        let note = result.err().unwrap_or_else(|| "exit status 0".into());
        tally.add("kernel build", 0, u32::from(!kernel_ok), note, t0);
    }
    if !skip("in-os") {
        for &machine in &opts.machines {
            in_os_stage(&host, &mut tally, machine, 1, kernel_ok);
        }
        // Again on several CPUs (one boot each, q35 only: the time
        // budget; about 25 s each).
        if opts.machines.contains(&crate::qemu::Machine::Q35) {
            for cpus in IN_OS_SMP_CPUS {
                in_os_stage(
                    &host,
                    &mut tally,
                    crate::qemu::Machine::Q35,
                    cpus,
                    kernel_ok,
                );
            }
            // Once more with every component but the drivers in user
            // mode (the same suite, the same crates; issue 15).
            in_os_stage_of(
                &host,
                &mut tally,
                (IN_OS_USER_PROFILE, crate::qemu::Machine::Q35),
                2,
                kernel_ok,
            );
        }
    }
    if !skip("bochs") {
        bochs_stage(&host, &mut tally, kernel_ok);
        for cpu in [Cpu::Intel, Cpu::Amd] {
            bochs_linux_stage(&host, &mut tally, kernel_ok, cpu);
        }
    }
    if !skip("e2e") {
        let cmd = [
            "cargo",
            "test",
            "-p",
            "starina-tests",
            "--no-fail-fast",
            "--",
            "--ignored",
            "--test-threads=1",
        ];
        cargo_stage(&host, &mut tally, "end-to-end tests", &cmd);
    }
    header(&format!("summary ({:.0} s)", start.elapsed().as_secs_f64()));
    for s in &tally.stages {
        let counts = format!("{:4} passed, {} failed", s.passed, s.failed);
        show(&format!(
            "  {:<40} {counts}  ({}, {:.0} s)",
            s.name, s.note, s.seconds
        ));
    }
    show(&tally.summary_line());
    tally.status()
}

/// The Linux guest (kernel, initramfs, and the Debian root image the tests
/// of the Debian root put on their disks) that the default and linux
/// profiles boot: built once, cached outside the checkout by input hash,
/// here rather than inside the first test that needs it (its time limits).
fn linux_stage(host: &Host, tally: &mut Tally) {
    header("linux guest: linux-guest/build-kernel.sh, build-initramfs.sh, build-rootfs.sh");
    let t0 = Instant::now();
    let mut code = 0;
    for script in ["build-kernel.sh", "build-initramfs.sh", "build-rootfs.sh"] {
        let mut cmd = Command::new(host.root.join("linux-guest").join(script));
        code = streamed(cmd.current_dir(&host.root), |_| {});
        if code != 0 {
            break;
        }
    }
    tally.add(
        "linux guest build",
        0,
        u32::from(code != 0),
        format!("exit status {code}"),
        t0,
    );
}

/// Runs `cmd` with stdout and stderr copied to our stdout; its exit code.
fn streamed(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> i32 {
    let result = run_lines(cmd, |line| {
        let (Line::Out(text) | Line::Err(text)) = line;
        show(&text);
        on_line(&text);
    });
    result.unwrap_or_else(|e| {
        show(&format!("test: cannot run {:?}: {e}", cmd.get_program()));
        127
    })
}

/// `test result: ok. N passed; M failed; ...` -> (N, M).
pub fn cargo_result(line: &str) -> Option<(u32, u32)> {
    let rest = &line[line.find("test result: ")? + "test result: ".len()..];
    let (_, rest) = rest.split_once(". ")?;
    let (passed, rest) = rest.split_once(" passed; ")?;
    let (failed, _) = rest.split_once(" failed")?;
    Some((passed.trim().parse().ok()?, failed.trim().parse().ok()?))
}

fn cargo_stage(host: &Host, tally: &mut Tally, name: &str, cmd: &[&str]) {
    header(&format!("{name}: {}", cmd.join(" ")));
    let (mut passed, mut failed) = (0, 0);
    let t0 = Instant::now();
    let mut command = Command::new(cmd[0]);
    command.args(&cmd[1..]).current_dir(&host.root);
    let code = streamed(&mut command, |line| {
        if let Some((p, f)) = cargo_result(line) {
            passed += p;
            failed += f;
        }
    });
    let mut note = format!("exit status {code}");
    if code != 0 && failed == 0 {
        // Did not build, or the harness died: count the stage as one failure.
        failed = 1;
        note += " (failed without a failing test: build error?)";
    }
    tally.add(name, passed, failed, note, t0);
}

/// Copies to stdout and keeps the last `testrunner: N passed, M failed`,
/// and whether `starina: ready` came.
#[derive(Default)]
struct SummaryScan {
    pending: Vec<u8>,
    summary: Option<(u32, u32)>,
    ready: bool,
    /// How many CPUs switched to a thread (the kernel's `sched: threads
    /// switched in per CPU:` line at power-off).
    cpus_used: Option<usize>,
    /// The testrunner's `parallel_ratio` figure.
    parallel_ratio: Option<String>,
}

/// The CPUs with a non-zero count in `sched: threads switched in per CPU:
/// 0:N 1:M ...`.
fn cpus_used(line: &str) -> Option<usize> {
    let (_, counts) = line.split_once("threads switched in per CPU:")?;
    let used = counts
        .split_whitespace()
        .filter_map(|c| c.split_once(':')?.1.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .count();
    Some(used)
}

impl Write for SummaryScan {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write_all(data)?;
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(s) = markers::testrunner_summary(&line) {
                self.summary = Some(s);
            }
            self.ready |= line.contains(markers::READY);
            if let Some(used) = cpus_used(&line) {
                self.cpus_used = Some(used);
            }
            if let Some((_, rest)) = line.split_once("parallel_ratio ") {
                self.parallel_ratio = rest.split_whitespace().next().map(str::to_string);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// The CPUs of the in-OS suite's extra runs on q35 (issue 14: on 1, 2
/// and 4 CPUs; the message stress test wants four).
const IN_OS_SMP_CPUS: [u8; 2] = [2, 4];

/// The in-OS tests' disk: small (sparse anyway), formatted per run.
const TEST_DISK_SIZE: u64 = 64 << 20;

/// The profile of the in-OS suite with its components in user mode.
const IN_OS_USER_PROFILE: &str = "test_user";

/// The in-OS suite on `cpus` CPUs: with more than one, threads must have
/// run on at least two of them (the kernel's count per CPU says).
fn in_os_stage(
    host: &Host,
    tally: &mut Tally,
    machine: crate::qemu::Machine,
    cpus: u8,
    kernel_ok: bool,
) {
    in_os_stage_of(host, tally, ("test", machine), cpus, kernel_ok)
}

/// [`in_os_stage`] of profile `profile` (`test` or [`IN_OS_USER_PROFILE`]).
fn in_os_stage_of(
    host: &Host,
    tally: &mut Tally,
    (profile, machine): (&str, crate::qemu::Machine),
    cpus: u8,
    kernel_ok: bool,
) {
    let (name, smp) = match cpus {
        1 => (
            format!("in-OS tests (profile {profile}, {})", machine.name()),
            String::new(),
        ),
        n => (
            format!(
                "in-OS tests (profile {profile}, {}, {n} CPUs)",
                machine.name()
            ),
            format!(" --smp {n}"),
        ),
    };
    let timeout = crate::host::fmt_seconds(IN_OS_TIMEOUT);
    header(&format!(
        "{name}: scripts/starina run --no-build --profile {profile} --machine {}{smp} --timeout {timeout}",
        machine.name()
    ));
    let t0 = Instant::now();
    if !kernel_ok {
        show("test: skipped: the kernel did not build");
        tally.add(&name, 0, 1, "skipped: no kernel".into(), t0);
        return;
    }
    // A fresh disk for this run (never the user's), removed afterwards.
    let disk = match TempDisk::new() {
        Ok(disk) => disk,
        Err(e) => {
            show(&format!("test: cannot make a temporary disk: {e}"));
            tally.add(&name, 0, 1, "no temporary disk".into(), t0);
            return;
        }
    };
    let mut opts = RunOptions::new(profile);
    opts.machine = machine;
    opts.cpus = cpus;
    opts.build = false;
    opts.timeout = Some(IN_OS_TIMEOUT);
    opts.disk = disk.options(TEST_DISK_SIZE);
    let mut scan = SummaryScan::default();
    let mut err = std::io::stdout();
    let status = run(
        &host.with_free_http_port(),
        &opts,
        &mut Streams {
            out: &mut scan,
            err: &mut err,
        },
    )
    .status;
    let mut note = format!("exit status {}", status.code());
    let (passed, mut failed) = match scan.summary {
        Some(s) => s,
        None => {
            note += " (no 'testrunner: N passed, M failed' line)";
            (0, 1)
        }
    };
    if scan.summary.is_some() && !status.is_success() && failed == 0 {
        failed = 1;
        note += " (non-zero although no test failed)";
    }
    if cpus > 1 {
        let used = scan.cpus_used.unwrap_or(0);
        note += &format!("; threads ran on {used} of {cpus} CPUs");
        if let Some(ratio) = &scan.parallel_ratio {
            note += &format!(", parallel_ratio {ratio}");
        }
        if used < 2 {
            failed += 1;
        }
    }
    tally.add(&name, passed, failed, note, t0);
}

/// The options of a stage's Bochs boot (never building: the kernel stage
/// did).
fn bochs_options(profile: &str, cpu: Cpu, timeout: f64, until: Vec<String>) -> RunOptions {
    let mut opts = RunOptions::new(profile);
    opts.emulator = Emulator::Bochs(cpu);
    // One CPU: Bochs emulates them in turn, so a second only slows it.
    opts.cpus = 1;
    opts.build = false;
    opts.timeout = Some(timeout);
    opts.until = until;
    opts
}

/// Prints a Bochs stage's header, the command that does the same by hand;
/// `None` (and one failure) when there is no kernel to boot.
fn bochs_header(
    tally: &mut Tally,
    name: &str,
    opts: &RunOptions,
    kernel_ok: bool,
) -> Option<Instant> {
    let cpu = match opts.emulator {
        Emulator::Bochs(Cpu::Amd) => "amd",
        _ => "intel",
    };
    let until: String = opts
        .until
        .iter()
        .map(|p| format!(" --until '{p}'"))
        .collect();
    header(&format!(
        "{name}: scripts/starina run --no-build --emulator bochs --cpu {cpu} --profile {} --timeout {}{until}",
        opts.profile,
        crate::host::fmt_seconds(opts.timeout.unwrap_or_default())
    ));
    let t0 = Instant::now();
    if !kernel_ok {
        show("test: skipped: the kernel did not build");
        tally.add(name, 0, 1, "skipped: no kernel".into(), t0);
        return None;
    }
    Some(t0)
}

/// One boot under Bochs with the Intel CPU (the VMX backend's machine):
/// through GRUB to `starina: ready`, then the profile's own power off
/// (ACPI) with status 0.
fn bochs_stage(host: &Host, tally: &mut Tally, kernel_ok: bool) {
    let name = format!("Bochs boot (profile {BOCHS_PROFILE}, cpu intel)");
    let opts = bochs_options(BOCHS_PROFILE, Cpu::Intel, BOCHS_TIMEOUT, Vec::new());
    let Some(t0) = bochs_header(tally, &name, &opts, kernel_ok) else {
        return;
    };
    let mut scan = SummaryScan::default();
    let mut err = std::io::stdout();
    let mut io = Streams {
        out: &mut scan,
        err: &mut err,
    };
    let status = run(host, &opts, &mut io).status;
    let ok = scan.ready && status.is_success();
    let mut note = format!("exit status {}", status.code());
    if !scan.ready {
        note += &format!(" (no '{}' line)", markers::READY);
    }
    tally.add(&name, u32::from(ok), u32::from(!ok), note, t0);
}

/// The command the Bochs stages run in Linux, its input, and what it
/// must print: stdin reaches it, stdout and the exit status come back.
const BOCHS_EXEC_SCRIPT: &str = r#"read line; echo "got $line"; uname -r; nproc; exit 3"#;
const BOCHS_EXEC_STDIN: &[u8] = b"ping\n";
/// Then the guest's CPUs (`nproc`: every vCPU came up).
const BOCHS_EXEC_STDOUT: &str = r"^got ping\n6\.12\.\d+\n";
const BOCHS_EXEC_STATUS: i32 = 3;

/// Which backend ran Linux, from the console (with NRIP save on the AMD
/// model, which QEMU's SVM lacks).
fn bochs_backend_pattern(cpu: Cpu) -> &'static str {
    match cpu {
        Cpu::Intel => r"hypervisor: Intel VMX enabled \(EPT",
        Cpu::Amd => r"hypervisor: AMD SVM enabled .*NRIP save yes",
    }
}

/// What is wrong with a Bochs exec's outcome, if anything.
fn bochs_exec_problems(cpu: Cpu, status: ExitStatus, stdout: &str, console: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if status.code() != BOCHS_EXEC_STATUS {
        problems.push(format!(
            "exit status {} (want {BOCHS_EXEC_STATUS})",
            status.code()
        ));
    }
    let want = format!("{BOCHS_EXEC_STDOUT}{}\n$", bochs_linux_machine(cpu).1);
    if !regex::Regex::new(&want).is_ok_and(|r| r.is_match(stdout)) {
        problems.push(format!("stdout {stdout:?} (want {want})"));
    }
    let backend = bochs_backend_pattern(cpu);
    if !regex::Regex::new(backend).is_ok_and(|r| r.is_match(console)) {
        problems.push(format!("no '{backend}' on the console"));
    }
    problems
}

/// Linux booted under Bochs through one backend (VMX on the Intel model,
/// SVM on the AMD one), and a command run in it over the COM2 host link
/// (`exec --emulator bochs`): its input, output and status.
fn bochs_linux_stage(host: &Host, tally: &mut Tally, kernel_ok: bool, cpu: Cpu) {
    let (backend, cpu_name) = match cpu {
        Cpu::Intel => ("VMX", "intel"),
        Cpu::Amd => ("SVM", "amd"),
    };
    // Fits the summary's column: "Bochs: exec via VMX, COM2 (intel)".
    let name = format!("Bochs: exec via {backend}, COM2 ({cpu_name})");
    let (profile, cpus) = bochs_linux_machine(cpu);
    header(&format!(
        "{name}: printf 'ping\\n' | scripts/starina exec --no-build --emulator bochs --cpu {cpu_name} \
         --profile {profile} --smp {cpus} --timeout {} -v -- sh -c '{BOCHS_EXEC_SCRIPT}'",
        crate::host::fmt_seconds(BOCHS_LINUX_TIMEOUT)
    ));
    let t0 = Instant::now();
    if !kernel_ok {
        show("test: skipped: the kernel did not build");
        tally.add(&name, 0, 1, "skipped: no kernel".into(), t0);
        return;
    }
    let mut opts = crate::exec::ExecOptions::new(&["sh", "-c", BOCHS_EXEC_SCRIPT]);
    opts.bochs = Some(cpu);
    opts.profile = profile.into();
    opts.cpus = cpus;
    opts.build = false;
    opts.verbose = true;
    opts.timeout = Some(BOCHS_LINUX_TIMEOUT);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = {
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let stdin = Box::new(std::io::Cursor::new(BOCHS_EXEC_STDIN));
        crate::exec::exec(host, &opts, stdin, &mut io)
    };
    let stdout = String::from_utf8_lossy(&out);
    let console = String::from_utf8_lossy(&err);
    let problems = bochs_exec_problems(cpu, status, &stdout, &console);
    if !problems.is_empty() {
        show(&console);
    }
    show(&format!(
        "stdout: {stdout:?}, exit status {}",
        status.code()
    ));
    let ok = problems.is_empty();
    let note = match ok {
        true => format!("exit status {}", status.code()),
        false => problems.join("; "),
    };
    tally.add(&name, u32::from(ok), u32::from(!ok), note, t0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_used_counts_cpus_that_ran_threads() {
        let line = "[ 4.5] INFO  kernel: sched: threads switched in per CPU: 0:28429 1:20339 2:0";
        assert_eq!(cpus_used(line), Some(2));
        assert_eq!(
            cpus_used("sched: threads switched in per CPU: 0:5"),
            Some(1)
        );
        assert_eq!(cpus_used("testrunner: 75 passed, 0 failed"), None);
    }

    #[test]
    fn bochs_exec_outcomes() {
        let vmx = "INFO  kernel: hypervisor: Intel VMX enabled (EPT, unrestricted guest, VPID yes, INVEPT single-context)";
        let svm =
            "INFO  kernel: hypervisor: AMD SVM enabled (nested paging, 16 ASIDs, NRIP save yes)";
        let qemu_svm =
            "INFO  kernel: hypervisor: AMD SVM enabled (nested paging, 16 ASIDs, NRIP save no)";
        let good = "got ping\n6.12.118\n1\n";
        let good_smp = "got ping\n6.12.118\n2\n";
        let three = ExitStatus::from_exit(3);
        assert!(bochs_exec_problems(Cpu::Intel, three, good_smp, vmx).is_empty());
        assert!(bochs_exec_problems(Cpu::Amd, three, good, svm).is_empty());
        assert_eq!(
            bochs_exec_problems(Cpu::Intel, three, good_smp, svm).len(),
            1
        );
        // One vCPU where two were asked for.
        assert_eq!(bochs_exec_problems(Cpu::Intel, three, good, vmx).len(), 1);
        assert_eq!(
            bochs_exec_problems(Cpu::Amd, three, good, qemu_svm).len(),
            1
        );
        assert_eq!(
            bochs_exec_problems(Cpu::Amd, ExitStatus::from_exit(0), good, svm).len(),
            1
        );
        for bad in [
            "got \n6.12.118\n2\n",
            "got ping\n6.1.0\n2\n",
            "got ping\n6.12.118\n",
            "got ping\n6.12.118\n2\nmore\n",
            "",
        ] {
            assert_eq!(
                bochs_exec_problems(Cpu::Intel, three, bad, vmx).len(),
                1,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cargo_lines() {
        let line = "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(cargo_result(line), Some((12, 0)));
        assert_eq!(
            cargo_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(cargo_result("running 3 tests"), None);
    }

    #[test]
    fn summary_and_status() {
        let mut tally = Tally::default();
        tally.add("a", 10, 0, String::new(), Instant::now());
        assert_eq!(
            (tally.summary_line().as_str(), tally.status()),
            ("10 passed, 0 failed", ExitStatus::Success)
        );
        tally.add("b", 2, 1, String::new(), Instant::now());
        assert_eq!(
            (tally.summary_line().as_str(), tally.status().code()),
            ("12 passed, 1 failed", 1)
        );
    }
}
