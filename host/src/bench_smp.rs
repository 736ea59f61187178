//! What several CPUs bring (`make bench`; the guest side is
//! `apps/smp_bench`, profiles `bench_smp` and `bench_smp_icount`):
//!
//! - `smp_native_speedup`: the guest time of two `cpuhash 64` commands
//!   started together (two components, CPU-bound) on `--smp 1` over the
//!   same on `--smp 2`, the median of [`RUNS`] interleaved boots of each;
//! - `ipc_throughput_msgs_per_s_{1cpu,2cpu}`: a pipelined stream of
//!   64-byte messages between two threads (on CPUs 0 and 1 with two), the
//!   medians of the same boots;
//! - `ipc_roundtrip_0b_instructions_cross_cpu`: guest instructions per
//!   0-byte round trip between threads pinned to CPUs 0 and 1, under
//!   `--icount` on `--smp 2` (single-threaded TCG: the CPUs take turns,
//!   the guest still has two), with the same between two threads on one
//!   CPU beside it (`..._same_cpu_threads`).

use crate::bench::capture;
use crate::bench::header;
use crate::bench::Figures;
use crate::cli::BenchOptions;
use crate::host::Host;
use crate::run::RunOptions;

/// Boots of each CPU count (wall-time ratios: at least five, interleaved).
pub const RUNS: usize = 5;

/// The figures this module adds, in print order
/// (`ipc_roundtrip_0b_instructions_cross_cpu` is printed beside the
/// same-CPU round trip, by `bench`).
pub const ORDER: [&str; 4] = [
    "smp_native_speedup",
    "ipc_throughput_msgs_per_s_1cpu",
    "ipc_throughput_msgs_per_s_2cpu",
    "ipc_roundtrip_0b_instructions_same_cpu_threads",
];

fn options(opts: &BenchOptions, profile: &str, cpus: u8, icount: bool) -> RunOptions {
    let mut run = crate::bench::boot_options(opts, profile, opts.machine, icount);
    run.cpus = cpus;
    run
}

/// One boot of `profile` on `cpus` CPUs: its `bench-raw:` figures as
/// numbers (empty if it failed).
fn raw(
    host: &Host,
    opts: &BenchOptions,
    profile: &str,
    cpus: u8,
    icount: bool,
) -> Vec<(String, u64)> {
    let c = capture(host, &options(opts, profile, cpus, icount));
    let figures = c.raw_figures("  ");
    if !c.report.status.is_success() || figures.is_empty() {
        c.show_failure(&format!("{profile} on {cpus} CPU(s)"));
        return Vec::new();
    }
    figures
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.parse().ok()?)))
        .collect()
}

fn get(figures: &[(String, u64)], name: &str) -> Option<u64> {
    figures.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// The median of `values` (`None` if one run lacked it).
fn median(values: &[Option<u64>]) -> Option<u64> {
    let mut v: Vec<u64> = values.iter().copied().collect::<Option<_>>()?;
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// `min..max` of the runs that have a value, for the report.
fn spread(values: &[Option<u64>]) -> String {
    let v: Vec<u64> = values.iter().flatten().copied().collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
        _ => "none".into(),
    }
}

/// The speedup `one / two`, two decimals.
pub fn speedup(one: u64, two: u64) -> String {
    format!("{:.2}", one as f64 / two.max(1) as f64)
}

pub fn figures(host: &Host, opts: &BenchOptions) -> Figures {
    header(&format!(
        "SMP: profile bench_smp on 1 and 2 CPUs, {RUNS} interleaved boots of each; bench_smp_icount on 2 CPUs with --icount"
    ));
    let mut hash = [Vec::new(), Vec::new()];
    let mut stream = [Vec::new(), Vec::new()];
    for run in 1..=RUNS {
        for (i, cpus) in [1u8, 2].into_iter().enumerate() {
            println!("run {run}, {cpus} CPU(s):");
            let r = raw(host, opts, "bench_smp", cpus, false);
            hash[i].push(get(&r, "smp_hash_ns"));
            stream[i].push(get(&r, "ipc_throughput_msgs_per_s"));
        }
    }
    let mut figures = Figures::new();
    if let (Some(one), Some(two)) = (median(&hash[0]), median(&hash[1])) {
        println!(
            "two cpuhash 64 at once: {one} ns on 1 CPU (runs {}), {two} ns on 2 (runs {}): medians",
            spread(&hash[0]),
            spread(&hash[1])
        );
        figures.insert("smp_native_speedup".into(), speedup(one, two));
    }
    for (i, name) in [
        "ipc_throughput_msgs_per_s_1cpu",
        "ipc_throughput_msgs_per_s_2cpu",
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(v) = median(&stream[i]) {
            println!("{name}: median {v} (runs {})", spread(&stream[i]));
            figures.insert(name.into(), v.to_string());
        }
    }
    println!("with --icount, 2 CPUs:");
    let r = raw(host, opts, "bench_smp_icount", 2, true);
    for (raw_name, name) in [
        (
            "ipc_roundtrip_0b_cross_cpu",
            "ipc_roundtrip_0b_instructions_cross_cpu",
        ),
        (
            "ipc_roundtrip_0b_same_cpu",
            "ipc_roundtrip_0b_instructions_same_cpu_threads",
        ),
    ] {
        if let Some(v) = get(&r, raw_name) {
            figures.insert(name.into(), v.to_string());
        }
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_need_every_run_and_speedups_have_two_decimals() {
        assert_eq!(median(&[Some(3), Some(1), Some(2)]), Some(2));
        assert_eq!(median(&[Some(3), None, Some(2)]), None);
        assert_eq!(spread(&[Some(3), None, Some(2)]), "2..3");
        assert_eq!(spread(&[None]), "none");
        assert_eq!(speedup(1_900, 1_000), "1.90");
        assert_eq!(speedup(5, 0), "5.00");
    }
}
