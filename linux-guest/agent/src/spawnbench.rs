//! An in-guest `fork` + `exec` + `wait` loop, for `make bench`
//! (`apps/linux_bench` runs it as `/init --spawn-bench N`): the baseline the
//! native side's `exec` round trip (`true` through the linux server and this
//! agent) is compared with.
//!
//! `starina-guest-agent --spawn-bench N [PROGRAM]` runs PROGRAM (default
//! `/bin/true`) N times the way a shell does (`sys::fork_exec_wait`), after
//! a few untimed runs, and times the N with both CLOCK_MONOTONIC (`Instant`)
//! and the TSC. It then runs a loop of a known number of instructions
//! (`sys::counted_loop`) timed with the TSC, which says whether the TSC
//! counts instructions (it does under `-icount shift=0`, also in Starina's
//! nested guest: the loop's TSC delta then equals its instruction count,
//! plus the timer interrupts that land in it). It prints one line:
//!
//!     spawn-bench: rounds=N total_ns=T per_ns=T/N total_tsc=C per_tsc=C/N
//!     loop_instructions=I loop_tsc=L

use std::io;
use std::time::Instant;

use crate::sys;

/// Untimed runs first (page cache, the allocator's first pages).
const WARM_UP: u64 = 5;
/// Iterations of the 2-instruction check loop: 20 million instructions.
const LOOP_ITERATIONS: u64 = 10_000_000;

pub fn run(rounds: u64, program: &str) -> io::Result<()> {
    let args = sys::ExecArgs::new(program, &[program])?;
    let once = || -> io::Result<()> {
        let status = sys::fork_exec_wait(&args)?;
        if !status.success() {
            return Err(io::Error::other(format!("{program} ended with {status}")));
        }
        Ok(())
    };
    for _ in 0..WARM_UP {
        once()?;
    }
    let (start, tsc0) = (Instant::now(), sys::tsc());
    for _ in 0..rounds {
        once()?;
    }
    let (total, total_tsc) = (start.elapsed().as_nanos(), sys::tsc() - tsc0);
    let loop_tsc = {
        let t0 = sys::tsc();
        sys::counted_loop(LOOP_ITERATIONS);
        sys::tsc() - t0
    };
    let n = u128::from(rounds.max(1));
    println!(
        "spawn-bench: rounds={rounds} total_ns={total} per_ns={} total_tsc={total_tsc} per_tsc={} loop_instructions={} loop_tsc={loop_tsc}",
        total / n,
        u128::from(total_tsc) / n,
        2 * LOOP_ITERATIONS,
    );
    Ok(())
}
