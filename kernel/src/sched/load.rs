//! Per-CPU load: how long each CPU ran its idle thread and how long other
//! threads, and how often its timer or a device took the CPU from a
//! thread that could have gone on. The monitor's `system_cpu_stats` reads
//! it; two samples give the load in between.
//!
//! Each CPU writes its own entry, at its switches, with the scheduler's
//! lock held; readers take the same lock, so the fields they read belong
//! together (an idle period is either still open or already added).
//! Time spent in an interrupt handler counts towards the thread it
//! interrupted (idle for a CPU that was halted).

use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::CpuStats;

use super::runqueue::MAX_CPUS;

/// `CpuLoad::idle_since` while the CPU runs a thread.
const BUSY: u64 = u64::MAX;

struct CpuLoad {
    /// It takes threads (from `start` on).
    started: AtomicBool,
    /// When it began taking threads.
    started_at: AtomicU64,
    /// The idle time of its idle periods that ended.
    idle_ns: AtomicU64,
    /// When its current idle period began, [`BUSY`] while it runs a
    /// thread.
    idle_since: AtomicU64,
    preemptions: AtomicU64,
}

static LOAD: [CpuLoad; MAX_CPUS] = [const {
    CpuLoad {
        started: AtomicBool::new(false),
        started_at: AtomicU64::new(0),
        idle_ns: AtomicU64::new(0),
        idle_since: AtomicU64::new(BUSY),
        preemptions: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// `cpu` takes threads from `now` on, running its idle thread.
pub fn start(cpu: usize, now: u64) {
    let l = &LOAD[cpu];
    l.started_at.store(now, Ordering::Relaxed);
    l.idle_since.store(now, Ordering::Relaxed);
    l.started.store(true, Ordering::Release);
}

/// `cpu` switched at `now` from a thread to another; `from_idle` and
/// `to_idle` say which of them is its idle thread.
pub fn switched(cpu: usize, now: u64, from_idle: bool, to_idle: bool) {
    let l = &LOAD[cpu];
    match (from_idle, to_idle) {
        (true, false) => {
            let since = l.idle_since.swap(BUSY, Ordering::Relaxed);
            if since != BUSY {
                let idle = now.saturating_sub(since);
                l.idle_ns.fetch_add(idle, Ordering::Relaxed);
            }
        }
        (false, true) => l.idle_since.store(now, Ordering::Relaxed),
        _ => {}
    }
}

/// `cpu`'s timer or a device's interrupt took it from a thread that went
/// back to the run queue.
pub fn preempted(cpu: usize) {
    LOAD[cpu].preemptions.fetch_add(1, Ordering::Relaxed);
}

/// `cpu`'s figures at `now` (`None` if it takes no threads), with
/// `switches` (kept per CPU elsewhere: `percpu::Local::runs`).
pub fn stats(cpu: usize, now: u64, switches: u64) -> Option<CpuStats> {
    let l = LOAD.get(cpu)?;
    if !l.started.load(Ordering::Acquire) {
        return None;
    }
    let since = l.idle_since.load(Ordering::Relaxed);
    let open = match since {
        BUSY => 0,
        since => now.saturating_sub(since),
    };
    let idle_ns = l.idle_ns.load(Ordering::Relaxed).saturating_add(open);
    let up = now.saturating_sub(l.started_at.load(Ordering::Relaxed));
    Some(CpuStats {
        cpu: cpu as u32,
        busy_ns: up.saturating_sub(idle_ns),
        idle_ns,
        switches,
        preemptions: l.preemptions.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses CPUs of its own: the table is shared.

    #[test]
    fn busy_and_idle_time_add_up_to_the_time_since_start() {
        let cpu = 5;
        start(cpu, 1_000);
        // Idle until 1,500, busy until 2,500, idle since.
        switched(cpu, 1_500, true, false);
        switched(cpu, 2_000, false, false);
        switched(cpu, 2_500, false, true);
        let s = stats(cpu, 3_000, 7).unwrap();
        assert_eq!((s.busy_ns, s.idle_ns), (1_000, 1_000));
        assert_eq!((s.cpu, s.switches, s.preemptions), (5, 7, 0));
        // Idle from 2,500 on: the open period counts.
        assert_eq!(stats(cpu, 4_000, 7).unwrap().idle_ns, 2_000);
        switched(cpu, 4_000, true, false);
        preempted(cpu);
        let s = stats(cpu, 5_000, 8).unwrap();
        assert_eq!((s.busy_ns, s.idle_ns, s.preemptions), (2_000, 2_000, 1));
    }

    #[test]
    fn a_cpu_that_takes_no_threads_has_no_figures() {
        assert_eq!(stats(6, 100, 0), None);
        assert_eq!(stats(MAX_CPUS, 100, 0), None);
    }
}
