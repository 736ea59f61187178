//! `scripts/starina profile` end to end: the IPC benchmark sampled through
//! QEMU's gdbstub names the kernel functions a channel round trip runs
//! through. Slow (boots QEMU): run by `make test`.

use starina_tests::*;

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn profile_names_the_functions_ipc_runs_through() {
    let image = kernel();
    let image = image.to_str().expect("a UTF-8 path");
    let run = starina_with_env(
        &[
            "profile",
            "--kernel",
            image,
            "--no-build",
            "--icount",
            "--skip",
            "0.3",
            "--seconds",
            "2",
            "--top",
            "40",
        ],
        &[],
    );
    run.assert_code(0);
    let samples: u64 = run
        .lines()
        .find_map(|l| l.strip_suffix(" samples")?.parse().ok())
        .unwrap_or_else(|| panic!("no sample count\n{}", run.transcript()));
    assert!(
        samples >= 20,
        "only {samples} samples\n{}",
        run.transcript()
    );
    for function in ["poll_wait", "channel_send", "channel_recv"] {
        assert!(
            run.lines().any(|l| l.contains(function)),
            "{function} is not in the profile\n{}",
            run.transcript()
        );
    }
}
