//! Boots profile `fuzz`: the in-OS system-call fuzzer (`apps/sysfuzz`)
//! under its watch (`apps/sysfuzz_watch`). Checks from the console that the
//! kernel did not panic, the fuzzer ran its count and printed its summary,
//! the leak check passed (heap bytes, and free + kept pages, back to the
//! baseline once the fuzzer was torn down), and echo still answered after
//! it; the watch powers off with 0 only then. The count and seed are the
//! spec's (`specs/sysfuzz.toml`); `make fuzz` runs the same for longer.
//!
//! The same under Bochs with the Intel CPU model (profile `fuzz_vmx`,
//! fewer calls, no NIC): the random vCPU states and injections go to the
//! VMX backend (`kernel/src/arch/vmx/`), which QEMU's CPU lacks.
//! Slow: run by `make test`.

use starina_tests::*;

/// Emulated time is cheap here (about 150,000 calls/s under TCG); this is
/// for a loaded machine.
const TIMEOUT: u32 = 300;

/// The Bochs run takes about a minute and a half here; this is for a
/// loaded machine.
const BOCHS_TIMEOUT: u32 = 400;

/// What the kernel prints when it panics (`starina_abi::KERNEL_PANIC`,
/// which the host tool does not re-export).
const KERNEL_PANIC: &str = "[kernel panic]";

/// `key = <integer>` among `lines`.
fn integer(mut lines: impl Iterator<Item = String>, key: &str) -> Option<u64> {
    lines.find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .strip_prefix('=')?
            .trim()
            .parse()
            .ok()
    })
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo_root().join(file))
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"))
}

/// A sysfuzz `[config]` integer as `profile` gives it: its
/// `[config.sysfuzz]` value, or else `specs/sysfuzz.toml`'s.
fn spec_value(profile: &str, key: &str) -> u64 {
    let profile = read(&format!("specs/profiles/{profile}.toml"));
    let section = profile
        .lines()
        .skip_while(|l| l.trim() != "[config.sysfuzz]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(String::from);
    integer(section, key)
        .or_else(|| integer(read("specs/sysfuzz.toml").lines().map(String::from), key))
        .unwrap_or_else(|| panic!("specs/sysfuzz.toml has no integer '{key}'"))
}

/// The number after `word` in `line`.
fn number_after(line: &str, word: &str) -> Option<u64> {
    let rest = &line[line.find(word)? + word.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn syscall_fuzzer_leaves_no_panic_no_leak_and_a_working_system() {
    let (calls, seed) = (spec_value("fuzz", "calls"), spec_value("fuzz", "seed"));
    let again = format!(
        "seed {seed:#x}, {calls} calls: reproduce with `make fuzz ONLY=sysfuzz SYSCALLS={calls} SEED={seed:#x}`"
    );
    eprintln!("sysfuzz: {again}");
    // One CPU, as `make fuzz`: the exact leak check counts frees still in
    // flight on another CPU (a few bytes) as a leak.
    let run = boot("fuzz", "q35", TIMEOUT, &["--smp", "1"]);
    let (made, rate) = check_verdict(&run, calls, seed, &again);
    eprintln!("sysfuzz: {made} calls, {rate} calls/s; {}", leak_line(&run));
}

/// What a failed VM entry logs (`kernel/src/arch/vmx/`): `vmx: VM entry
/// failed (...)` or `vmx: VMLAUNCH failed: ...` (`VMRESUME` likewise).
fn is_vmx_entry_failure(line: &str) -> bool {
    line.contains("vmx: VM entry failed")
        || line.contains("vmx: VMLAUNCH failed")
        || line.contains("vmx: VMRESUME failed")
}

#[test]
#[ignore = "boots the kernel under Bochs: run by make test"]
fn syscall_fuzzer_under_vmx_leaves_no_panic_no_leak_and_a_working_system() {
    let profile = "fuzz_vmx";
    let (calls, seed) = (spec_value(profile, "calls"), spec_value(profile, "seed"));
    let again = format!(
        "seed {seed:#x}, {calls} calls: reproduce with `scripts/starina run --emulator bochs --cpu intel --profile {profile}` (seed and count: [config.sysfuzz] of specs/profiles/{profile}.toml)"
    );
    eprintln!("sysfuzz: {again}");
    let run = boot(
        profile,
        "q35",
        BOCHS_TIMEOUT,
        &["--emulator", "bochs", "--cpu", "intel"],
    );
    let fail = |what: &str| -> String { format!("{what} ({again})\n{}", run.transcript()) };
    // The fuzzer reached the VMX backend: it created a VM on the Intel
    // model and ran its vCPU.
    assert!(
        run.stdout.contains("hypervisor: Intel VMX enabled"),
        "{}",
        fail("no 'hypervisor: Intel VMX enabled' line: the VMX backend did not run")
    );
    let (made, rate) = check_verdict(&run, calls, seed, &again);
    let vcpu_runs = run
        .lines()
        .filter(|l| l.contains("sysfuzz: vcpu_run:"))
        .last()
        .unwrap_or_else(|| panic!("{}", fail("no 'sysfuzz: vcpu_run:' line")))
        .to_string();
    let entered = number_after(&vcpu_runs, "vcpu_run:").unwrap_or(0);
    assert!(
        entered > 0 && vcpu_runs.contains("exits: ") && !vcpu_runs.contains("exits: ;"),
        "{}",
        fail("no vcpu_run call returned an exit")
    );
    let failed_entries = run.lines().filter(|l| is_vmx_entry_failure(l)).count();
    eprintln!(
        "sysfuzz under VMX: {made} calls, {rate} calls/s in {:.0} s; {}; {failed_entries} failed-entry lines; {}",
        run.elapsed.as_secs_f64(),
        &vcpu_runs[vcpu_runs.find("vcpu_run:").unwrap_or(0)..],
        leak_line(&run)
    );
}

/// Checks the watch's verdict; the calls made and their rate.
fn check_verdict(run: &Run, calls: u64, seed: u64, again: &str) -> (u64, u64) {
    let fail = |what: &str| -> String { format!("{what} ({again})\n{}", run.transcript()) };
    assert!(
        !run.stdout.contains(KERNEL_PANIC),
        "{}",
        fail("the kernel panicked")
    );
    let summary = run
        .lines()
        .filter(|l| l.contains("sysfuzz: done:"))
        .last()
        .unwrap_or_else(|| {
            panic!(
                "{}",
                fail("no 'sysfuzz: done:' summary: the fuzzer hung or died")
            )
        });
    let made = number_after(summary, "done:").unwrap_or(0);
    assert!(
        made >= calls,
        "{}",
        fail(&format!("the run made {made} calls, not {calls}"))
    );
    assert!(
        summary.contains(&format!("seed {seed:#x}")),
        "{}",
        fail("the summary names another seed")
    );
    assert!(
        run.stdout.contains("sysfuzz_watch: leak check passed"),
        "{}",
        fail("the leak check did not pass")
    );
    assert!(
        run.stdout
            .contains("sysfuzz_watch: echo answers after the fuzzer"),
        "{}",
        fail("echo did not answer after the fuzzer")
    );
    assert_eq!(
        run.code,
        Some(0),
        "{}",
        fail("the watch did not power off with 0")
    );
    let rate = number_after(summary, "ms,").unwrap_or(0);
    (made, rate)
}

fn leak_line(run: &Run) -> String {
    run.lines()
        .find(|l| l.contains("leak check"))
        .map(|l| l[l.find("leak check").unwrap_or(0)..].to_string())
        .unwrap_or_default()
}
