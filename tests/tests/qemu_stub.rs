//! The host tool (`scripts/starina run`) against the real QEMU, with a tiny PVH stub kernel
//! (`tests/fixtures/pvh-stub.S`) instead of Starina: checks the isa-debug-exit
//! status mapping, crash detection and timeouts on both machine types without
//! depending on the kernel. Needs QEMU, `cc` and `ld`: run by `make test`.

use starina_tests::*;

fn stub_run(profile: &str, machine: &str, timeout: &str) -> Run {
    let stub = pvh_stub(env!("CARGO_TARGET_TMPDIR"));
    starina(&[
        "run",
        "--kernel",
        stub.to_str().unwrap(),
        "--profile",
        profile,
        "--machine",
        machine,
        "--timeout",
        timeout,
    ])
}

const MACHINES: [&str; 2] = ["q35", "microvm"];

#[test]
#[ignore = "boots QEMU: run by make test"]
fn exit_codes_round_trip_through_isa_debug_exit() {
    for machine in MACHINES {
        for code in ["0", "1", "3", "9"] {
            let run = stub_run(&format!("x{code}"), machine, "60");
            run.assert_console(&format!("stub: exit {code}"));
            run.assert_code(code.parse().unwrap());
        }
    }
}

#[test]
#[ignore = "boots QEMU: run by make test"]
fn triple_fault_is_reported_as_a_crash() {
    for machine in MACHINES {
        let run = stub_run("crash", machine, "60");
        run.assert_code(EXIT_NO_STATUS);
        assert!(
            run.stderr.contains("without the OS reporting a status"),
            "{}",
            run.transcript()
        );
    }
}

#[test]
#[ignore = "boots QEMU: run by make test"]
fn a_hung_guest_times_out() {
    for machine in MACHINES {
        let run = stub_run("hang", machine, "2");
        run.assert_console("starina: ready");
        run.assert_code(EXIT_TIMEOUT);
        assert!(
            run.stderr.contains("starina: timed out after 2 s"),
            "{}",
            run.transcript()
        );
    }
}

#[test]
#[ignore = "boots QEMU: run by make test"]
fn until_stops_a_running_guest() {
    let stub = pvh_stub(env!("CARGO_TARGET_TMPDIR"));
    let run = starina(&[
        "run",
        "--kernel",
        stub.to_str().unwrap(),
        "--profile",
        "hang",
        "--timeout",
        "60",
        "--until",
        "starina: ready",
    ]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("matched 'starina: ready' after"),
        "{}",
        run.transcript()
    );
}
