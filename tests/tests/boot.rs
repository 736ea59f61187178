//! Boots the real Starina kernel under QEMU (through the host tool's `run`,
//! as `scripts/starina run --no-build` does) and checks the contract in
//! docs/CONTRACTS.md: serial markers, profiles and exit statuses. Builds the
//! kernel first (as `scripts/build-kernel` does, once per test binary).
//! Slow: run by `make test`.

use starina_tests::*;

/// Printed by the kernel when every component of the profile has started.
const READY: &str = markers::READY;
/// Printed by the kernel for each component it starts. CONTRACTS.md writes it
/// `[kernel] started <name>`; the kernel logs `[ts] INFO  kernel: started
/// <name>`. Both contain this.
const STARTED_HELLO: &str = "started hello";
/// Printed by the `hello` app in the default profile.
const HELLO: &str = "Hello from a Starina component!";
/// Printed by the echo client in the default profile once it has checked every reply.
const ECHO_OK: &str = "echo_client: 1000 round trips, all replies correct";

/// Boot time limit for one run. Generous: QEMU emulates the CPU in software
/// and the machine's two cores are shared.
const BOOT_TIMEOUT: u32 = 300;

/// The kernel's line once every CPU it started is up.
fn smp_line(cpus: u32) -> String {
    let ids: Vec<String> = (0..cpus).map(|id| id.to_string()).collect();
    let plural = if cpus == 1 { "" } else { "s" };
    format!(
        "smp: {cpus} CPU{plural} online (APIC ids {})",
        ids.join(",")
    )
}

/// Boots the default profile on `cpus` CPUs: they all come online (and
/// park: only the boot CPU runs threads so far), and the profile works.
fn default_profile_works(machine: &str, cpus: u32) {
    // The default profile never powers off: stop once everything was printed.
    let smp = cpus.to_string();
    let run = boot(
        "default",
        machine,
        BOOT_TIMEOUT,
        &[
            "--smp",
            &smp,
            "--until",
            READY,
            "--until",
            &regex_escape(HELLO),
            "--until",
            &regex_escape(ECHO_OK),
        ],
    );
    run.assert_code(0);
    run.assert_console(READY);
    run.assert_console(&smp_line(cpus));
    run.assert_console(markers::IST_GUARDED);
    run.assert_console(STARTED_HELLO);
    run.assert_console(HELLO);
    run.assert_console(ECHO_OK);
    let ready = run.lines().find(|l| l.contains(READY)).unwrap();
    assert!(
        parse_tsc(ready).is_some(),
        "the ready line lacks ' (tsc=<n>)': {ready:?}\n{}",
        run.transcript()
    );
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn default_profile_on_q35_with_4_cpus() {
    default_profile_works("q35", 4);
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn default_profile_on_microvm() {
    default_profile_works("microvm", 1);
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn test_profile_passes_and_powers_off_with_0() {
    let run = boot("test", "q35", BOOT_TIMEOUT, &[]);
    run.assert_code(0);
    let summary = run
        .lines()
        .find_map(parse_testrunner_summary)
        .unwrap_or_else(|| {
            panic!(
                "no 'testrunner: N passed, M failed' line\n{}",
                run.transcript()
            )
        });
    assert_eq!(summary.1, 0, "in-OS tests failed\n{}", run.transcript());
    assert!(
        summary.0 >= 10,
        "only {} in-OS tests ran\n{}",
        summary.0,
        run.transcript()
    );
    let failed: Vec<&str> = run.lines().filter(|l| l.contains(" ... FAILED")).collect();
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\n{}",
        run.transcript()
    );
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn unknown_profile_is_an_error_with_code_3() {
    let run = boot("nope", "q35", BOOT_TIMEOUT, &[]);
    run.assert_console("unknown profile 'nope' (known: ");
    let line = run
        .lines()
        .find(|l| l.contains("unknown profile 'nope'"))
        .unwrap();
    for known in ["default", "test", "bench"] {
        assert!(line.contains(known), "{line:?} does not name {known}");
    }
    run.assert_code(3);
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn timeout_gives_124() {
    // The default profile never powers off by itself.
    let run = boot("default", "q35", 1, &[]);
    run.assert_code(EXIT_TIMEOUT);
    assert!(
        run.stderr.contains("starina: timed out after 1 s"),
        "{}",
        run.transcript()
    );
}

/// `testrunner: N passed, M failed` -> (N, M) (the host tool's parser).
fn parse_testrunner_summary(line: &str) -> Option<(u32, u32)> {
    markers::testrunner_summary(line)
}

/// `... starina: ready (tsc=<n>)` -> n (the host tool's parser).
fn parse_tsc(line: &str) -> Option<u64> {
    markers::ready_tsc(line)
}

/// Escapes a literal for a regular expression (`--until`).
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != ' ' && c != '_' && c != ':' && c != ',' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[test]
fn smp_lines() {
    assert_eq!(smp_line(1), "smp: 1 CPU online (APIC ids 0)");
    assert_eq!(smp_line(4), "smp: 4 CPUs online (APIC ids 0,1,2,3)");
}

#[test]
fn parsers() {
    assert_eq!(
        parse_testrunner_summary("[   1.0] INFO  testrunner: testrunner: 12 passed, 0 failed"),
        Some((12, 0))
    );
    assert_eq!(
        parse_testrunner_summary("testrunner: 3 passed, 2 failed"),
        Some((3, 2))
    );
    assert_eq!(parse_testrunner_summary("testrunner: started"), None);
    assert_eq!(
        parse_tsc("[   0.5] INFO  kernel: starina: ready (tsc=123456)"),
        Some(123456)
    );
    assert_eq!(
        regex_escape("Hello from a Starina component!"),
        "Hello from a Starina component\\!"
    );
}
