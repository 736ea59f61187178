//! The monitor's per-CPU load figures: busy and idle time add up to the
//! time that passed, and a CPU-bound thread shows as busy time.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;

use starina::abi::CpuStats;
use starina::timer::now_ns;

use super::parallel::spin_threads;
use super::Ctx;
use super::TestResult;

fn cpus(cx: &Ctx) -> Result<alloc::vec::Vec<CpuStats>, String> {
    cx.monitor.cpus().map_err(|e| e.to_string())
}

/// One CPU-bound thread, then a 50 ms sleep: on every CPU busy plus idle
/// time grew by the time that passed, and the busy time of all CPUs
/// together by at least half the thread's run.
pub fn cpu_load_counts_busy_and_idle_time(cx: &mut Ctx) -> TestResult {
    // Each reading of a CPU's figures falls between the clock readings
    // on either side of the `cpus` call that made it.
    let t0 = now_ns();
    let before = cpus(cx)?;
    let t1 = now_ns();
    check!(!before.is_empty(), "no CPU figures");
    for (i, c) in before.iter().enumerate() {
        check!(c.cpu as usize == i, "CPU figures out of order: {before:?}");
    }
    let spun = spin_threads(1)?;
    starina::timer::sleep_ms(50).map_err(|e| e.to_string())?;
    let t2 = now_ns();
    let after = cpus(cx)?;
    let t3 = now_ns();
    let wall = t3 - t0;
    check!(
        after.len() == before.len(),
        "CPUs came or went: {before:?} {after:?}"
    );
    let mut busy = 0;
    for (b, a) in before.iter().zip(&after) {
        let passed = (a.busy_ns + a.idle_ns) - (b.busy_ns + b.idle_ns);
        check!(
            (t2 - t1..=t3 - t0).contains(&passed),
            "CPU {}: busy + idle grew by {passed} ns, between {} and {} ns passed",
            a.cpu,
            t2 - t1,
            t3 - t0
        );
        busy += a.busy_ns - b.busy_ns;
    }
    check!(
        busy >= spun / 2,
        "{busy} ns busy while a thread spun for {spun} ns"
    );
    let load: alloc::vec::Vec<u32> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.busy_permille_since(b))
        .collect();
    log::info!(
        "cpu_load: busy per CPU over {} ms (permille): {load:?}",
        wall / 1_000_000
    );
    Ok(())
}
