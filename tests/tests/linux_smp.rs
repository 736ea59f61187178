//! A Linux guest with two vCPUs on a two-CPU Starina (profile `linux_smp`,
//! `--smp 2`), in one boot: the guest counts the spec's vCPUs, and two busy
//! processes that `taskset` puts on different vCPUs both run, at the same
//! time (their user time together outgrows the wall time).

use std::time::Instant;

use starina_host::exec::ExecOptions;
use starina_host::Streams;
use starina_tests::*;

/// Boot included, seconds.
const TIMEOUT: f64 = 300.0;
/// Linux's clock ticks in /proc on x86 (`USER_HZ`, whatever its `HZ`).
const USER_HZ: f64 = 100.0;
/// How long the busy processes are watched, seconds.
const WATCH_S: u32 = 4;

/// Reports `nproc`, then each busy process's CPU field (39) and user time
/// (14, in ticks of [`USER_HZ`]) before and after `WATCH_S` seconds, with
/// the uptime at each.
fn script() -> String {
    format!(
        "echo nproc $(nproc)\n\
         taskset -c 0 sh -c 'while :; do :; done' & A=$!\n\
         taskset -c 1 sh -c 'while :; do :; done' & B=$!\n\
         sleep 1\n\
         stat() {{ cut -d' ' -f14,39 /proc/$1/stat; }}\n\
         echo before $(cut -d' ' -f1 /proc/uptime) $(stat $A) $(stat $B)\n\
         sleep {WATCH_S}\n\
         echo after $(cut -d' ' -f1 /proc/uptime) $(stat $A) $(stat $B)\n\
         kill $A $B\n"
    )
}

/// The numbers after `key` on its line of `out`.
fn numbers(out: &str, key: &str) -> Vec<f64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no '{key}' line in:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap_or_else(|_| panic!("'{w}' in '{line}'")))
        .collect()
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn two_vcpus_run_two_busy_processes_at_once() {
    let image = kernel();
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    let script = script();
    let mut opts = ExecOptions::new(&["sh", "-c", &script]);
    opts.profile = "linux_smp".into();
    opts.cpus = 2;
    opts.build = false;
    opts.kernel = Some(image);
    opts.timeout = Some(TIMEOUT);
    opts.verbose = true;
    opts.disk.path = Some(disk.path());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut stdout,
        err: &mut stderr,
    };
    let start = Instant::now();
    let input = Box::new(std::io::empty());
    let status = starina_host::exec::exec(&host_with_env(&[]), &opts, input, &mut io);
    let out = String::from_utf8_lossy(&stdout).into_owned();
    println!(
        "exec --profile linux_smp --smp 2 ({:.1} s), exit {}\n{out}\n{}",
        start.elapsed().as_secs_f64(),
        status.code(),
        String::from_utf8_lossy(&stderr)
    );
    assert_eq!(numbers(&out, "nproc"), [2.0], "the spec's vcpus = 2");
    let before = numbers(&out, "before");
    let after = numbers(&out, "after");
    let hz = USER_HZ;
    // uptime, A's utime and CPU, B's utime and CPU.
    assert_eq!(
        (after[2], after[4]),
        (0.0, 1.0),
        "taskset's CPUs: {after:?}"
    );
    let wall = after[0] - before[0];
    let a = (after[1] - before[1]) / hz;
    let b = (after[3] - before[3]) / hz;
    println!("over {wall:.2} s of guest time: A ran {a:.2} s on CPU 0, B {b:.2} s on CPU 1");
    assert!(
        a > 0.2 * wall && b > 0.2 * wall,
        "both progress: {a:.2} s, {b:.2} s of {wall:.2} s"
    );
    assert!(
        a + b > 1.2 * wall,
        "at the same time: {a:.2} s + {b:.2} s of user time in {wall:.2} s of wall time"
    );
}
