//! Threads and the scheduler: a round-robin run queue with a 10 ms time
//! slice, driven by the LAPIC one-shot timer.
//!
//! A switch happens only inside the interrupt path (timer, or the yield
//! vector a thread raises when it blocks): the interrupted thread's
//! registers are in the [`TrapFrame`]; [`switch`] stores them in the thread
//! and loads the next thread's into the frame, and the `iretq` resumes it.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::AtomicU8;
use core::sync::atomic::Ordering;

use crate::process::Process;
use crate::sync::SpinLock;

#[cfg(not(test))]
use crate::arch::trap::TrapFrame;
#[cfg(test)]
#[derive(Clone, Copy, Default)]
pub struct TrapFrame;

#[cfg(not(test))]
use crate::mm::stack::Stack;
#[cfg(test)]
pub struct Stack;

/// A thread's time slice before another runnable thread gets the CPU.
pub const TIME_SLICE_NS: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    Runnable = 0,
    Running = 1,
    Blocked = 2,
    Dead = 3,
}

/// The 512-byte FXSAVE area.
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

pub struct Thread {
    pub id: u64,
    pub process: Arc<Process>,
    state: AtomicU8,
    /// Saved registers while not running. Only the scheduler touches it,
    /// with the scheduler lock held.
    frame: UnsafeCell<TrapFrame>,
    fx: Box<FxArea>,
    pub stack: Option<Stack>,
}

// SAFETY: `frame` is only accessed under the scheduler lock (see `switch`);
// everything else is atomic or immutable.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

static NEXT_TID: AtomicU64 = AtomicU64::new(1);

impl Thread {
    fn state(&self) -> ThreadState {
        match self.state.load(Ordering::Acquire) {
            0 => ThreadState::Runnable,
            1 => ThreadState::Running,
            2 => ThreadState::Blocked,
            _ => ThreadState::Dead,
        }
    }

    /// Marks the thread dead: it never runs again (if it is running now, it
    /// stops at its next switch).
    pub fn kill(&self) {
        self.state.store(ThreadState::Dead as u8, Ordering::Release);
    }

    pub fn is_dead(&self) -> bool {
        self.state() == ThreadState::Dead
    }

    /// Current -> Blocked, before it yields. A wake in between turns it
    /// back to Runnable and the yield then simply goes round.
    pub fn prepare_block(&self) {
        let _ = self.state.compare_exchange(
            ThreadState::Running as u8,
            ThreadState::Blocked as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Undoes `prepare_block` when the thread found work after all.
    pub fn cancel_block(&self) {
        let _ = self.state.compare_exchange(
            ThreadState::Blocked as u8,
            ThreadState::Running as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

struct Scheduler {
    runqueue: VecDeque<Arc<Thread>>,
    current: Option<Arc<Thread>>,
    idle: Option<Arc<Thread>>,
    slice_start: u64,
}

static SCHED: SpinLock<Scheduler> = SpinLock::new(Scheduler {
    runqueue: VecDeque::new(),
    current: None,
    idle: None,
    slice_start: 0,
});

/// The running thread (kept alive by `SCHED.current` while it runs).
static CURRENT: AtomicPtr<Thread> = AtomicPtr::new(core::ptr::null_mut());

/// The thread running on this CPU.
pub fn current() -> &'static Thread {
    let ptr = CURRENT.load(Ordering::Relaxed);
    assert!(!ptr.is_null(), "no current thread");
    // SAFETY: CURRENT always points at the thread in `SCHED.current`,
    // whose Arc keeps it alive at least until the next switch; a reference
    // obtained by the running thread cannot outlive that switch, because the
    // thread itself is not running afterwards. (Only the thread itself and
    // the interrupt handler running on its behalf call this.)
    unsafe { &*ptr }
}

pub fn current_arc() -> Arc<Thread> {
    let ptr = CURRENT.load(Ordering::Relaxed);
    assert!(!ptr.is_null(), "no current thread");
    // SAFETY: CURRENT was made with `Arc::as_ptr` from the Arc that
    // `SCHED.current` holds while the thread runs, so the allocation is
    // alive; we add one strong count for the Arc we return.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

pub fn current_process() -> &'static Arc<Process> {
    &current().process
}

/// Makes a blocked (or new) thread runnable.
pub fn wake(thread: Arc<Thread>) {
    if thread
        .state
        .compare_exchange(
            ThreadState::Blocked as u8,
            ThreadState::Runnable as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        SCHED.lock().runqueue.push_back(thread);
    }
}

/// Whether some thread other than the current one is waiting to run.
pub fn others_runnable() -> bool {
    !SCHED.lock().runqueue.is_empty()
}

#[cfg(not(test))]
mod machine {
    use super::*;
    use crate::arch::trap::yield_to_scheduler;
    use crate::arch::trap::KERNEL_CS;
    use crate::arch::trap::KERNEL_DS;
    use crate::arch::trap::CURRENT_FX;

    fn new_fx() -> Box<FxArea> {
        let mut fx = Box::new(FxArea([0; 512]));
        // Default x87 control word and MXCSR, as after FNINIT/reset.
        fx.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fx
    }

    /// Where every new thread starts: `entry(arg)`, then the thread exits.
    extern "C" fn thread_start(entry: usize, arg: usize) -> ! {
        // SAFETY: `entry` was produced from a `fn(usize)` in `spawn`.
        let entry: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(entry) };
        entry(arg);
        exit_current_thread()
    }

    /// Creates a thread in `process` that runs `entry(arg)`, and queues it.
    pub fn spawn(process: &Arc<Process>, entry: fn(usize), arg: usize) -> Option<Arc<Thread>> {
        let stack = Stack::new()?;
        let frame = TrapFrame {
            rip: thread_start as *const () as u64,
            cs: KERNEL_CS as u64,
            rflags: 0x202,
            // As if `thread_start` had been called: rsp + 8 is 16-aligned.
            rsp: stack.top() as u64 - 8,
            ss: KERNEL_DS as u64,
            rdi: entry as *const () as u64,
            rsi: arg as u64,
            ..Default::default()
        };
        let thread = Arc::new(Thread {
            id: NEXT_TID.fetch_add(1, Ordering::Relaxed),
            process: process.clone(),
            state: AtomicU8::new(ThreadState::Runnable as u8),
            frame: UnsafeCell::new(frame),
            fx: new_fx(),
            stack: Some(stack),
        });
        process.add_thread(&thread);
        SCHED.lock().runqueue.push_back(thread.clone());
        Some(thread)
    }

    /// Turns the boot context into the idle thread and makes it current.
    pub fn init(kernel: &Arc<Process>) {
        let idle = Arc::new(Thread {
            id: 0,
            process: kernel.clone(),
            state: AtomicU8::new(ThreadState::Running as u8),
            frame: UnsafeCell::new(TrapFrame::default()),
            fx: new_fx(),
            stack: None,
        });
        let mut s = SCHED.lock();
        CURRENT.store(Arc::as_ptr(&idle) as *mut Thread, Ordering::Relaxed);
        // SAFETY: interrupts are off (we hold the lock); the entry path
        // reads CURRENT_FX only in interrupt context.
        unsafe { CURRENT_FX = &*idle.fx as *const FxArea as u64 };
        s.idle = Some(idle.clone());
        s.current = Some(idle);
        s.slice_start = crate::arch::time::now_ns();
    }

    /// Blocks the current thread (already `prepare_block`ed and registered
    /// as a waiter) until it is woken.
    pub fn block_current() {
        yield_to_scheduler();
    }

    pub fn yield_current() {
        yield_to_scheduler();
    }

    /// Ends the current thread; it never runs again.
    pub fn exit_current_thread() -> ! {
        current().kill();
        yield_to_scheduler();
        unreachable!("a dead thread was scheduled");
    }

    /// Picks the next thread and rewrites `frame` to resume it. `force`
    /// switches even if the current thread could go on (its slice ended).
    ///
    /// `preempted` says the thread did not ask to give up the CPU (a timer
    /// interrupt). A thread preempted between `prepare_block` and its yield
    /// has not blocked yet: it goes on running (and re-checks), else a wake
    /// that came before it registered would be lost.
    pub fn switch(frame: &mut TrapFrame, force: bool, preempted: bool) {
        let now = crate::arch::time::now_ns();
        let mut s = SCHED.lock();
        let prev = s.current.take().expect("no current thread");
        let idle = s.idle.clone().expect("scheduler not initialized");
        let prev_is_idle = Arc::ptr_eq(&prev, &idle);
        if preempted {
            prev.cancel_block();
        }
        let prev_state = prev.state();

        if prev_state == ThreadState::Running && !force && !prev_is_idle {
            // Nothing to do: keep running.
            s.current = Some(prev);
            return;
        }
        if prev_state == ThreadState::Running && !prev_is_idle && s.runqueue.is_empty() {
            // Slice over but nobody else wants the CPU.
            s.slice_start = now;
            s.current = Some(prev);
            return;
        }

        // Save the outgoing thread.
        // SAFETY: we hold the scheduler lock; `prev` is not running.
        unsafe { *prev.frame.get() = *frame };
        if prev_state == ThreadState::Running {
            if prev_is_idle {
                prev.state.store(ThreadState::Runnable as u8, Ordering::Release);
            } else {
                prev.state.store(ThreadState::Runnable as u8, Ordering::Release);
                s.runqueue.push_back(prev.clone());
            }
        }

        // Pick the next runnable thread; dead ones are dropped here.
        let next = loop {
            match s.runqueue.pop_front() {
                Some(t) if t.state() == ThreadState::Runnable => break t,
                Some(_) => continue,
                None => break idle.clone(),
            }
        };
        next.state.store(ThreadState::Running as u8, Ordering::Release);
        // SAFETY: scheduler lock held; `next` is not running anywhere.
        unsafe { *frame = *next.frame.get() };
        CURRENT.store(Arc::as_ptr(&next) as *mut Thread, Ordering::Relaxed);
        // SAFETY: interrupt context; the exit path restores FPU state from
        // the area CURRENT_FX names, which `next` owns and keeps alive.
        unsafe { CURRENT_FX = &*next.fx as *const FxArea as u64 };
        if !Arc::ptr_eq(&next, &prev) {
            s.slice_start = now;
        }
        s.current = Some(next);
        drop(s);
        // A dead thread's last reference may go here (freeing its stack):
        // safe, we run on the interrupt stack.
        drop(prev);
    }

    /// Whether the current thread has used up its slice.
    pub fn slice_expired(now: u64) -> bool {
        let s = SCHED.lock();
        now.saturating_sub(s.slice_start) >= TIME_SLICE_NS
    }

    pub fn current_is_idle() -> bool {
        let s = SCHED.lock();
        match (&s.current, &s.idle) {
            (Some(c), Some(i)) => Arc::ptr_eq(c, i),
            _ => true,
        }
    }
}

#[cfg(not(test))]
pub use machine::*;

/// The current process's name, if a thread is running (for log tags).
pub fn try_current_process_name() -> Option<&'static str> {
    let ptr = CURRENT.load(Ordering::Relaxed);
    if ptr.is_null() {
        return None;
    }
    Some(current().process.name)
}

/// The current thread, if the scheduler is up.
pub fn try_current() -> Option<&'static Thread> {
    if CURRENT.load(Ordering::Relaxed).is_null() {
        None
    } else {
        Some(current())
    }
}
