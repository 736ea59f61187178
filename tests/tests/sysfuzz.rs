//! Boots profile `fuzz`: the in-OS system-call fuzzer (`apps/sysfuzz`)
//! under its watch (`apps/sysfuzz_watch`). Checks from the console that the
//! kernel did not panic, the fuzzer ran its count and printed its summary,
//! the leak check passed (heap bytes, and free + kept pages, back to the
//! baseline once the fuzzer was torn down), and echo still answered after
//! it; the watch powers off with 0 only then. The count and seed are the
//! spec's (`specs/sysfuzz.toml`); `make fuzz` runs the same for longer.
//! Slow: run by `make test`.

use starina_tests::*;

/// Emulated time is cheap here (about 150,000 calls/s under TCG); this is
/// for a loaded machine.
const TIMEOUT: u32 = 300;

/// What the kernel prints when it panics (`starina_abi::KERNEL_PANIC`,
/// which the host tool does not re-export).
const KERNEL_PANIC: &str = "[kernel panic]";

/// A `[config]` integer of `specs/sysfuzz.toml` (no profile overrides it).
fn spec_value(key: &str) -> u64 {
    let spec = std::fs::read_to_string(repo_root().join("specs/sysfuzz.toml"))
        .expect("specs/sysfuzz.toml is readable");
    spec.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_prefix('=')?
                .trim()
                .parse()
                .ok()
        })
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
    let (calls, seed) = (spec_value("calls"), spec_value("seed"));
    let again = format!(
        "seed {seed:#x}, {calls} calls: reproduce with `make fuzz ONLY=sysfuzz SYSCALLS={calls} SEED={seed:#x}`"
    );
    eprintln!("sysfuzz: {again}");
    let run = boot("fuzz", "q35", TIMEOUT, &[]);
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
    eprintln!("sysfuzz: {made} calls, {rate} calls/s; {}", leak_line(&run));
}

fn leak_line(run: &Run) -> String {
    run.lines()
        .find(|l| l.contains("leak check"))
        .map(|l| l[l.find("leak check").unwrap_or(0)..].to_string())
        .unwrap_or_default()
}
