//! The serial console's input end to end (issue 13): `scripts/starina run`
//! on a real pseudo-terminal boots profile `console_echo`, keys typed on
//! the host terminal reach the component holding the `console` privilege
//! (through the UART's receive interrupt), its raw output comes back, a
//! log line after a half-written prompt starts on its own line, Ctrl-C
//! reaches the guest as the byte 0x03 instead of stopping QEMU, and
//! Ctrl-] x quits QEMU with status 130 and the terminal restored. On both
//! machines, and with the component in user mode. Run by `make test`.

use starina_tests::instance::Tool;
use starina_tests::pty::drive;
use starina_tests::pty::Step::*;

/// The console without the log lines (what the component wrote raw).
fn raw_output(transcript: &str) -> String {
    transcript
        .split('\n')
        .filter(|l| !l.contains("] INFO  ") && !l.contains("] WARN  "))
        .map(|l| l.trim_end_matches('\r'))
        .collect()
}

fn typed_keys_reach_the_guest(machine: &str, profile: &str) {
    starina_tests::kernel();
    let runtime = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{profile}-{machine}-{}", std::process::id()));
    let tool = Tool::new(runtime);
    let s = drive(
        &tool,
        &[
            "run",
            "--no-build",
            "--profile",
            profile,
            "--machine",
            machine,
            "--timeout",
            "300",
        ],
        &[
            // The raw prompt, then the log line on a line of its own.
            // (The pty turns each \n into \r\n again.)
            Expect(
                r"console_echo> \r+\n\[ *[0-9]+\.[0-9]+\] INFO  console_echo: ready",
                120,
            ),
            Raw("raw"),
            Send("hello world\r"),
            Expect(r"INFO  console_echo: line: hello world\r*\n", 30),
            // Ctrl-C is a key for the guest; QEMU keeps running.
            Send("\x03"),
            Expect(r"INFO  console_echo: got 1 bytes: \\x03\r*\n", 30),
            Send("still here\r"),
            Expect(r"INFO  console_echo: line: still here\r*\n", 30),
            Send("\x1dx"),
        ],
    );
    assert_eq!(s.error, None, "{}", s.transcript);
    assert_eq!(
        s.record["raw"], "True",
        "QEMU's terminal is raw while it runs"
    );
    // The component's own echo, raw, between the log lines.
    assert!(
        raw_output(&s.transcript).contains("hello world"),
        "{}",
        s.transcript
    );
    assert!(
        s.transcript
            .contains("Ctrl-] x to stop; Ctrl-C goes to the guest"),
        "{}",
        s.transcript
    );
    assert!(
        s.transcript.contains("stopped with Ctrl-] x"),
        "{}",
        s.transcript
    );
    assert_eq!(s.status, 130, "{}", s.transcript);
    assert!(
        s.restored,
        "terminal settings not restored\n{}",
        s.transcript
    );
    let _ = std::fs::remove_dir_all(&tool.runtime);
}

#[test]
#[ignore = "boots the kernel under QEMU on a pseudo-terminal: run by make test"]
fn typed_keys_reach_the_guest_q35() {
    typed_keys_reach_the_guest("q35", "console_echo");
}

#[test]
#[ignore = "boots the kernel under QEMU on a pseudo-terminal: run by make test"]
fn typed_keys_reach_the_guest_microvm() {
    typed_keys_reach_the_guest("microvm", "console_echo");
}

/// The same component in ring 3 (profile `console_echo_user`): the console
/// calls go through the user-mode system calls.
#[test]
#[ignore = "boots the kernel under QEMU on a pseudo-terminal: run by make test"]
fn typed_keys_reach_the_guest_in_user_mode() {
    typed_keys_reach_the_guest("q35", "console_echo_user");
}
