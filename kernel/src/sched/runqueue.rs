//! The run queue all CPUs share and what the scheduler keeps per CPU,
//! under the scheduler's one lock. Any CPU takes any queued thread but
//! those pinned to another CPU (`sched::pin_current`). Queuing work picks
//! which CPUs to tell (a reschedule IPI): an idle CPU that may run it, or
//! the CPU a pinned thread is pinned to.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::Thread;
use super::ThreadState;

#[cfg(not(test))]
pub use crate::percpu::MAX_CPUS;
#[cfg(test)]
pub const MAX_CPUS: usize = 8;

/// CPUs to send a reschedule IPI to: bit `i` for CPU `i`.
pub type Kicks = u8;

const _: () = assert!(MAX_CPUS <= Kicks::BITS as usize);

/// What the scheduler keeps for one CPU.
pub struct CpuSched {
    /// The thread it runs (kept alive here while it runs).
    pub current: Option<Arc<Thread>>,
    /// Its idle thread; `None` until the CPU runs the scheduler.
    pub idle: Option<Arc<Thread>>,
    /// The thread it last switched away from by switching stacks: kept
    /// alive until its next switch, so a thread never frees the stack it
    /// still runs on (a dead one is freed then, from another stack).
    pub zombie: Option<Arc<Thread>>,
    pub slice_start: u64,
    /// A reschedule IPI is on its way to it.
    kicked: bool,
}

pub struct Scheduler {
    runqueue: VecDeque<Arc<Thread>>,
    /// How many queued threads are pinned to each CPU, and in all.
    pinned_queued: [usize; MAX_CPUS],
    pinned_total: usize,
    pub cpus: [CpuSched; MAX_CPUS],
    /// One past the highest CPU that runs the scheduler: the searches
    /// on the IPC path look at these only (one slot on one CPU).
    active: usize,
}

impl Scheduler {
    pub const fn new() -> Scheduler {
        Scheduler {
            runqueue: VecDeque::new(),
            pinned_queued: [0; MAX_CPUS],
            pinned_total: 0,
            cpus: [const {
                CpuSched {
                    current: None,
                    idle: None,
                    zombie: None,
                    slice_start: 0,
                    kicked: false,
                }
            }; MAX_CPUS],
            active: 0,
        }
    }

    /// `cpu` runs the scheduler from now on, on its idle thread `idle`.
    pub fn start_cpu(&mut self, cpu: usize, idle: Arc<Thread>, now: u64) {
        let c = &mut self.cpus[cpu];
        c.idle = Some(idle.clone());
        c.current = Some(idle);
        c.slice_start = now;
        self.active = self.active.max(cpu + 1);
    }

    /// How many CPUs may take threads (one past the highest that does).
    pub fn active(&self) -> usize {
        self.active
    }

    /// Whether a queued thread may run on `cpu`.
    pub fn runnable_for(&self, cpu: usize) -> bool {
        let elsewhere = self.pinned_total - self.pinned_queued[cpu];
        self.runqueue.len() > elsewhere
    }

    /// Whether `cpu` runs its idle thread (or no scheduler yet).
    pub fn is_idle(&self, cpu: usize) -> bool {
        let c = &self.cpus[cpu];
        match (&c.current, &c.idle) {
            (Some(cur), Some(idle)) => Arc::ptr_eq(cur, idle),
            _ => true,
        }
    }

    /// Whether `cpu` runs the scheduler (a thread may be pinned to it).
    pub fn runs_scheduler(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.cpus[cpu].idle.is_some()
    }

    /// The CPU whose current thread is `thread`, if any.
    pub fn running_on(&self, thread: &Arc<Thread>) -> Option<usize> {
        self.cpus[..self.active]
            .iter()
            .position(|c| c.current.as_ref().is_some_and(|t| Arc::ptr_eq(t, thread)))
    }

    /// Queues `thread` (runnable) from `cpu`. Returns the CPUs to tell,
    /// and whether `cpu` had no queued work it could run before and has
    /// now (the slice of the thread it runs starts: `sched::start_slice`).
    pub fn push(&mut self, thread: Arc<Thread>, cpu: usize) -> (Kicks, bool) {
        let before = self.runnable_for(cpu);
        let pinned = thread.pinned_cpu();
        if let Some(p) = pinned {
            self.pinned_queued[p] += 1;
            self.pinned_total += 1;
        }
        self.runqueue.push_back(thread);
        let starts_slice = !before && self.runnable_for(cpu);
        let kicks = match pinned {
            Some(p) if p == cpu => 0,
            Some(p) => self.kick(p),
            None => self.kick_an_idle_cpu(cpu),
        };
        (kicks, starts_slice)
    }

    /// Marks `cpu` as told (unless it was, or runs no scheduler yet).
    pub fn kick(&mut self, cpu: usize) -> Kicks {
        if self.cpus[cpu].kicked || !self.runs_scheduler(cpu) {
            return 0;
        }
        self.cpus[cpu].kicked = true;
        1 << cpu
    }

    fn kick_an_idle_cpu(&mut self, from: usize) -> Kicks {
        let idle = (0..self.active).find(|&i| {
            i != from && self.runs_scheduler(i) && self.is_idle(i) && !self.cpus[i].kicked
        });
        idle.map_or(0, |i| self.kick(i))
    }

    /// The busy CPUs other than `from` that may run a queued thread but
    /// whose running thread has had the CPU for `stale_ns` or more
    /// without a tick ending its slice: it was alone when it got the CPU,
    /// so no tick was armed, and a push from another CPU tells only idle
    /// CPUs. Each is told (its reschedule IPI starts its slice), so that
    /// every CPU with work waiting preempts, not only the one that queued
    /// it. Called at a slice's end: nothing on the IPC path.
    pub fn kick_stale(&mut self, from: usize, now: u64, stale_ns: u64) -> Kicks {
        let mut kicks = 0;
        for i in 0..self.active {
            let c = &self.cpus[i];
            let stale = now.saturating_sub(c.slice_start) >= stale_ns;
            if i != from && stale && !self.is_idle(i) && self.runnable_for(i) {
                kicks |= self.kick(i);
            }
        }
        kicks
    }

    /// `cpu` is making a scheduling decision: a reschedule IPI sent
    /// before is served (a later push tells it again).
    pub fn served(&mut self, cpu: usize) {
        self.cpus[cpu].kicked = false;
    }

    /// The first queued thread `cpu` may run. Threads found dead on the
    /// way are dropped.
    pub fn pop_for(&mut self, cpu: usize) -> Option<Arc<Thread>> {
        let mut i = 0;
        while i < self.runqueue.len() {
            let t = &self.runqueue[i];
            let pinned = t.pinned_cpu();
            let runnable = t.state() == ThreadState::Runnable;
            if runnable && !t.may_run_on(cpu) {
                i += 1;
                continue;
            }
            let t = self.runqueue.remove(i).expect("index checked");
            if let Some(p) = pinned {
                self.pinned_queued[p] -= 1;
                self.pinned_total -= 1;
            }
            if runnable {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::Ordering;

    use super::*;

    fn queued(id: u64, pinned: Option<usize>) -> Arc<Thread> {
        let t = Thread::for_test(id);
        t.state
            .store(ThreadState::Runnable as u8, Ordering::Relaxed);
        t.set_pinned(pinned);
        t
    }

    fn with_cpus(n: usize) -> Scheduler {
        let mut s = Scheduler::new();
        for i in 0..n {
            s.start_cpu(i, Thread::for_test(1000 + i as u64), 0);
        }
        s
    }

    fn busy(s: &mut Scheduler, cpu: usize) {
        s.cpus[cpu].current = Some(Thread::for_test(2000 + cpu as u64));
    }

    #[test]
    fn only_the_boot_cpu_takes_a_pinned_thread() {
        let mut s = with_cpus(2);
        s.push(queued(1, Some(0)), 0);
        s.push(queued(2, None), 0);
        assert!(s.runnable_for(1) && s.runnable_for(0));
        assert_eq!(s.pop_for(1).map(|t| t.id), Some(2));
        assert!(!s.runnable_for(1));
        assert_eq!(s.pop_for(1).map(|t| t.id), None);
        assert_eq!(s.pop_for(0).map(|t| t.id), Some(1));
        assert!(!s.runnable_for(0));
    }

    #[test]
    fn a_thread_pinned_to_another_cpu_waits_for_it() {
        let mut s = with_cpus(3);
        busy(&mut s, 0);
        busy(&mut s, 2);
        // Pushed from CPU 0: CPU 2 is told though busy, idle CPU 1 is not.
        assert_eq!(s.push(queued(1, Some(2)), 0).0, 0b100);
        assert!(!s.runnable_for(0) && !s.runnable_for(1) && s.runnable_for(2));
        assert_eq!(s.pop_for(0).map(|t| t.id), None);
        assert_eq!(s.pop_for(1).map(|t| t.id), None);
        assert_eq!(s.pop_for(2).map(|t| t.id), Some(1));
        assert!(!s.runnable_for(2));
    }

    #[test]
    fn a_wake_tells_one_idle_cpu_once() {
        let mut s = with_cpus(3);
        busy(&mut s, 0);
        let (kicks, starts) = s.push(queued(1, None), 0);
        assert_eq!(kicks, 0b010);
        assert!(starts);
        // CPU 1 is told already: the next goes to CPU 2.
        assert_eq!(s.push(queued(2, None), 0).0, 0b100);
        assert_eq!(s.push(queued(3, None), 0).0, 0);
        s.served(1);
        assert_eq!(s.push(queued(4, None), 0).0, 0b010);
    }

    #[test]
    fn a_pinned_wake_tells_the_boot_cpu_even_if_busy() {
        let mut s = with_cpus(2);
        busy(&mut s, 0);
        busy(&mut s, 1);
        assert_eq!(s.push(queued(1, Some(0)), 1), (0b001, false));
        // No other CPU idle: an unpinned one tells nobody, the waker's
        // slice starts.
        assert_eq!(s.push(queued(2, None), 1), (0, true));
    }

    #[test]
    fn a_busy_cpu_with_work_waiting_and_no_tick_is_told_at_a_slice_end() {
        let mut s = with_cpus(3);
        for cpu in 0..3 {
            busy(&mut s, cpu);
        }
        s.cpus[1].slice_start = 0;
        s.cpus[2].slice_start = 9_000;
        // Nothing queued: nobody to tell.
        assert_eq!(s.kick_stale(0, 10_000, 2_000), 0);
        s.push(queued(1, None), 0);
        // CPU 1 has run its thread for 10,000 ns; CPU 2 just switched.
        assert_eq!(s.kick_stale(0, 10_000, 2_000), 0b010);
        // Told once until it is served.
        assert_eq!(s.kick_stale(0, 10_000, 2_000), 0);
        s.served(1);
        assert_eq!(s.kick_stale(2, 10_000, 2_000), 0b011);
        // A thread pinned elsewhere is no work for them.
        let mut s = with_cpus(2);
        busy(&mut s, 0);
        busy(&mut s, 1);
        s.push(queued(2, Some(0)), 0);
        assert_eq!(s.kick_stale(0, 10_000, 2_000), 0);
    }

    #[test]
    fn cpus_without_a_scheduler_are_never_told() {
        let mut s = with_cpus(1);
        busy(&mut s, 0);
        assert_eq!(s.push(queued(1, None), 0).0, 0);
    }

    #[test]
    fn dead_threads_are_dropped_from_the_queue() {
        let mut s = with_cpus(2);
        let dead = queued(1, Some(0));
        s.push(dead.clone(), 0);
        dead.kill();
        s.push(queued(2, None), 0);
        assert_eq!(s.pop_for(0).map(|t| t.id), Some(2));
        assert!(!s.runnable_for(0) && !s.runnable_for(1));
    }
}
