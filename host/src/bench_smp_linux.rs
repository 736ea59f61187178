//! `smp_linux_speedup`: the same CPU-bound work inside Linux on one vCPU
//! and on two, Starina on two CPUs (`--smp 2`) both times. The work is two
//! `sha256sum` of the same 64 MiB file in memory at once; the guest times
//! it with its own clock (kvm-clock over Starina's), from the start of both
//! to the end of the second. Profile `linux` has one vCPU, `linux_smp`
//! two: the figure is the first's time over the second's (medians of
//! interleaved runs).

use std::time::Instant;

use crate::bench_linux::median;
use crate::cli::BenchOptions;
use crate::exec::exec;
use crate::exec::ExecOptions;
use crate::host::Host;
use crate::stats::spread;
use crate::Streams;

/// Writes 64 MiB to a file in memory (tmpfs `/dev/shm`, else `/tmp`),
/// then starts two hashes of it, waits for both, prints `elapsed_ns N`.
/// Nothing but the hashing is timed: no pipes between the vCPUs. The clock
/// is `/proc/uptime` (10 ms steps, against seconds of work): busybox's
/// `date`, the guest's without a Debian root, has no `%N`.
const SCRIPT: &str = "d=/dev/shm; [ -d $d ] || d=/tmp\n\
    head -c 67108864 /dev/zero > $d/smp_bench\n\
    cat $d/smp_bench > /dev/null\n\
    t0=$(awk '{printf \"%d\", $1 * 100}' /proc/uptime)\n\
    sha256sum $d/smp_bench >/dev/null &\n\
    sha256sum $d/smp_bench >/dev/null &\n\
    wait\n\
    t1=$(awk '{printf \"%d\", $1 * 100}' /proc/uptime)\n\
    rm -f $d/smp_bench\n\
    echo elapsed_ns $(((t1 - t0) * 10000000))\n";

/// Seconds per run, boot included.
const TIMEOUT_S: f64 = 600.0;

/// The guest's time for the work on `profile`'s guest, in ns.
fn timed_run(host: &Host, opts: &BenchOptions, profile: &str) -> Result<u64, String> {
    let mut exec_opts = ExecOptions::new(&["sh", "-c", SCRIPT]);
    exec_opts.profile = profile.into();
    exec_opts.cpus = 2;
    exec_opts.machine = opts.machine;
    exec_opts.build = false;
    exec_opts.kernel = opts.kernel.clone();
    exec_opts.timeout = Some(TIMEOUT_S);
    exec_opts.disk = crate::bench::bench_disk();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut out,
        err: &mut err,
    };
    let start = Instant::now();
    let status = exec(host, &exec_opts, Box::new(std::io::empty()), &mut io);
    let out = String::from_utf8_lossy(&out);
    let ns = out
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ns "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|&n| n > 0);
    eprintln!(
        "bench-smp-linux: {profile}: exit {} after {:.0} s, work {:?} ms",
        status.code(),
        start.elapsed().as_secs_f64(),
        ns.map(|n| n / 1_000_000)
    );
    ns.ok_or_else(|| {
        format!(
            "{profile}: no 'elapsed_ns' line (exit {}): {}",
            status.code(),
            String::from_utf8_lossy(&err)
        )
    })
}

/// Runs of each profile, interleaved (the machine is shared: medians of
/// at least five, with the spread).
const RUNS: usize = 5;

/// Prints `smp_linux_speedup` (and both times, medians of [`RUNS`]).
pub fn bench(host: &Host, opts: &BenchOptions) -> Result<(), String> {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        one.push(timed_run(host, opts, "linux")? as f64);
        two.push(timed_run(host, opts, "linux_smp")? as f64);
    }
    eprintln!("bench-smp-linux: runs: 1 vCPU {one:.0?} ns, 2 vCPUs {two:.0?} ns");
    let ((lo1, hi1), (lo2, hi2)) = (spread(&one), spread(&two));
    println!(
        "bench-smp-linux: spread: 1 vCPU {:.0}..{:.0} ms, 2 vCPUs {:.0}..{:.0} ms",
        lo1 / 1e6,
        hi1 / 1e6,
        lo2 / 1e6,
        hi2 / 1e6
    );
    let (one, two) = (median(&mut one), median(&mut two));
    println!("bench: smp_linux_ms_1vcpu {:.0} ms", one / 1e6);
    println!("bench: smp_linux_ms_2vcpu {:.0} ms", two / 1e6);
    println!("bench: smp_linux_speedup {:.2}", one / two);
    Ok(())
}
