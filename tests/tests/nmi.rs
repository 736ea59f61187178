//! NMIs are nobody's fault: while QEMU's monitor injects NMIs every few
//! milliseconds, the `test` profile still passes every test and powers off
//! with 0 (an NMI used to kill the component it interrupted, or panic the
//! kernel when it hit the idle thread). With 4 CPUs: QEMU's `nmi` reaches
//! every CPU at once, the parked ones too, and each takes it on its own
//! NMI stack. Slow: run by `make test`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_tests::*;

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn nmis_do_not_kill_components_or_the_kernel() {
    let socket = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nmi-monitor-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let monitor = format!("unix:{},server,nowait", socket.display());
    let port = starina_host::host::free_port().expect("a free port");
    // `run --smp 4`'s QEMU arguments (this boot takes QEMU's directly).
    let qemu_args = [
        "-monitor",
        &monitor,
        "-smp",
        "4",
        "-accel",
        "tcg,thread=multi",
    ];
    let guest = LiveGuest::boot("test", "q35", port, &qemu_args);
    // NMIs from the moment the kernel runs its components (before that the
    // firmware has no NMI handler, as on real machines).
    guest.wait_console(markers::READY, Duration::from_secs(120));
    let console = guest.console();
    assert!(
        console.contains("smp: 4 CPUs online"),
        "not every CPU came online\n{console}"
    );
    let mut monitor = UnixStream::connect(&socket).expect("QEMU's monitor socket");
    let start = Instant::now();
    let mut sent = 0;
    while !guest.has_ended() && start.elapsed() < Duration::from_secs(120) {
        if monitor.write_all(b"nmi\n").is_err() {
            break; // QEMU is gone
        }
        sent += 1;
        thread::sleep(Duration::from_millis(5));
    }
    let console = guest.console();
    let status = guest.wait_exit();
    let _ = std::fs::remove_file(&socket);
    assert_eq!(
        status.code(),
        0,
        "the test profile failed under NMIs\n{console}"
    );
    let summary = console.lines().find_map(markers::testrunner_summary);
    assert_eq!(
        summary.map(|s| s.1),
        Some(0),
        "tests failed under NMIs\n{console}"
    );
    assert!(sent > 10, "only {sent} NMIs were sent\n{console}");
    let taken: u64 = console
        .lines()
        .find_map(|l| {
            l.split("; ")
                .nth(1)?
                .strip_suffix(" NMIs taken)")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no NMI count at power off\n{console}"));
    assert!(taken > 0, "no NMI reached the guest\n{console}");
}
