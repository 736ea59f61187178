//! Threads and the scheduler: a round-robin run queue that every CPU
//! takes from (`runqueue`), with a 1 ms time slice driven by each CPU's
//! LAPIC one-shot timer. A device interrupt that
//! wakes a thread switches at once (`interrupt::handle`): the interrupted
//! thread goes to the back of the queue, as at the end of its slice.
//! Short slices keep a busy thread (a vCPU running Linux) from holding a
//! chain of woken ones back: each hop of a network frame through the
//! driver, tcpip and the linux server waited up to a whole slice behind
//! it (10 ms slices held a download from the host to 64 KiB per ~10 ms).
//!
//! A switch happens only inside the interrupt path (timer, or the yield
//! vector a thread raises when it blocks): the interrupted thread's
//! registers are in the [`TrapFrame`]; [`switch`] stores them in the thread
//! and loads the next thread's into the frame, and the `iretq` resumes it.
//!
//! With several CPUs a thread that gives up the CPU on one may be woken
//! on a second and picked by a third before the first has saved its
//! registers: `Thread::on_cpu` stays set until the first CPU has (the
//! switch clears it right after saving), and the third waits for it to
//! clear before it resumes the thread.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;
#[cfg(test)]
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicU32;
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
pub const TIME_SLICE_NS: u64 = 1_000_000;

/// When the slice of a thread that got the CPU at `start` and ran alone
/// until `now` ends: at the next whole slice since `start`, as if a tick had
/// come at the end of every slice meanwhile (one that wakes another thread
/// waits less than a slice, as it did when ticks came).
pub fn slice_end_after(start: u64, now: u64) -> u64 {
    let slices = now.saturating_sub(start) / TIME_SLICE_NS + 1;
    start.saturating_add(slices.saturating_mul(TIME_SLICE_NS))
}

/// The deadline to program when one is `armed` (ns since boot; `u64::MAX`
/// for none) and a caller wants a tick by `want`: `None` keeps the armed
/// one. Arming only ever moves the deadline earlier, so a thread that arms
/// often (`vcpu_run` before every guest entry) cannot push back the tick
/// that ends its slice or fires a kernel timer. A deadline already past
/// means now (an armed one already past is pending and fires at once).
pub fn earlier_deadline(armed: u64, now: u64, want: u64) -> Option<u64> {
    let want = want.max(now);
    (want < armed).then_some(want)
}

/// When the next tick must come (`u64::MAX`: none): the earliest kernel
/// timer (`next_timer`), or, while another thread waits for the CPU
/// (`contended`), the end of the running thread's slice, begun at
/// `slice_start` and charged across everything the thread does until it
/// gives up the CPU (a vCPU thread entering the guest again does not start
/// a new one). A thread alone on the CPU has no slice to end: no tick
/// interrupts it (nor the guest a vCPU thread runs) unless a timer is due.
pub fn tick_deadline(next_timer: Option<u64>, slice_start: u64, contended: bool) -> u64 {
    let slice_end = match contended {
        true => slice_start.saturating_add(TIME_SLICE_NS),
        false => u64::MAX,
    };
    next_timer.map_or(slice_end, |t| t.min(slice_end))
}

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

impl FxArea {
    /// A fresh x87/SSE state: the control word and MXCSR as after reset
    /// (FNINIT), everything else zero.
    pub fn initial() -> Box<FxArea> {
        let mut fx = Box::new(FxArea([0; 512]));
        fx.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fx
    }
}

pub struct Thread {
    pub id: u64,
    pub process: Arc<Process>,
    state: AtomicU8,
    /// How it resumes: from `frame` (it was interrupted, or is new) or from
    /// `saved_rsp` (it gave up the CPU itself). Scheduler lock held. (This
    /// and the next three are the switch's, `machine`, absent from host
    /// unit tests.)
    #[cfg_attr(test, allow(dead_code))]
    resume: AtomicU8,
    /// Saved registers while not running after an interrupt. Only the
    /// scheduler touches it: the CPU switching away from the thread
    /// writes it (lock held, `on_cpu` still set), the CPU taking it reads
    /// it once `on_cpu` cleared.
    #[cfg_attr(test, allow(dead_code))]
    frame: UnsafeCell<TrapFrame>,
    /// Its stack pointer while not running after a voluntary switch: the
    /// callee-saved registers and RFLAGS are pushed there.
    #[cfg_attr(test, allow(dead_code))]
    saved_rsp: UnsafeCell<usize>,
    #[cfg_attr(test, allow(dead_code))]
    fx: Box<FxArea>,
    pub stack: Option<Stack>,
    /// Its stack, charged to its process's memory account.
    #[cfg(not(test))]
    _stack_charge: Option<crate::account::Charge>,
    /// Its process is gone: end at the first point where it holds nothing
    /// of the kernel's (see [`terminate_thread`]).
    kill_requested: AtomicBool,
    /// How many system calls it is inside (a call may call another, e.g.
    /// `log` while the kernel works on its behalf). Only the thread itself
    /// changes it, through [`InKernel`].
    syscall_depth: AtomicU32,
    /// A CPU runs it or has not finished saving it (see the module doc).
    #[cfg_attr(test, allow(dead_code))]
    on_cpu: AtomicBool,
    /// The CPU it runs on only ([`pin_current`]), or [`UNPINNED`].
    pinned: AtomicU8,
    /// What a switch to it loads (`user::entry::switch_to`), fixed at its
    /// creation: its process's page-table root (0: the kernel's; a user
    /// process's threads are made once its address space exists) and the
    /// top of its kernel stack (0: none).
    page_tables: u64,
    kernel_stack_top: u64,
}

/// [`Thread::page_tables`] for a thread of `process`.
#[cfg(not(test))]
fn page_tables_of(process: &Process) -> u64 {
    process.aspace.get().map_or(0, |a| a.cr3())
}

#[cfg(test)]
fn page_tables_of(_: &Process) -> u64 {
    0
}

/// [`Thread::kernel_stack_top`] for a thread on `stack`.
#[cfg(not(test))]
fn stack_top_of(stack: Option<&Stack>) -> u64 {
    stack.map_or(0, |s| s.top() as u64)
}

#[cfg(test)]
fn stack_top_of(_: Option<&Stack>) -> u64 {
    0
}

/// [`Thread::pinned`] of a thread any CPU may run.
const UNPINNED: u8 = u8::MAX;

// SAFETY: `frame` and `saved_rsp` are accessed by one CPU at a time: the
// one that switches the thread away, then (after `on_cpu` clears, with
// Release/Acquire) the one that resumes it (see `switch`, `switch_away`);
// everything else is atomic or immutable.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

#[cfg_attr(test, allow(dead_code))]
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

    /// Whether it is inside a system call (the kernel working on its
    /// behalf) rather than running its component's code.
    pub fn in_system_call(&self) -> bool {
        self.syscall_depth.load(Ordering::Relaxed) > 0
    }

    /// The CPU it is pinned to, if any.
    pub fn pinned_cpu(&self) -> Option<usize> {
        match self.pinned.load(Ordering::Relaxed) {
            UNPINNED => None,
            cpu => Some(usize::from(cpu)),
        }
    }

    /// Whether `cpu` may run it.
    pub fn may_run_on(&self, cpu: usize) -> bool {
        self.pinned_cpu().is_none_or(|p| p == cpu)
    }

    /// Pins it to `cpu` (`None`: any CPU). Takes effect at its next
    /// scheduling decision; a thread queued now stays counted as it was
    /// queued, so only the thread itself (or its creator, before it is
    /// queued) may change it.
    fn set_pinned(&self, cpu: Option<usize>) {
        let v = cpu.map_or(UNPINNED, |c| c as u8);
        self.pinned.store(v, Ordering::Relaxed);
    }

    /// Whether its process has asked it to end (a blocking call returns
    /// early when this is set, so the thread can unwind and end).
    pub fn kill_requested(&self) -> bool {
        self.kill_requested.load(Ordering::Acquire)
    }

    fn new(
        id: u64,
        process: Arc<Process>,
        state: ThreadState,
        frame: TrapFrame,
        stack: Option<Stack>,
    ) -> Thread {
        Thread {
            id,
            page_tables: page_tables_of(&process),
            kernel_stack_top: stack_top_of(stack.as_ref()),
            process,
            state: AtomicU8::new(state as u8),
            resume: AtomicU8::new(RESUME_FRAME),
            frame: UnsafeCell::new(frame),
            saved_rsp: UnsafeCell::new(0),
            fx: FxArea::initial(),
            stack,
            #[cfg(not(test))]
            _stack_charge: None,
            kill_requested: AtomicBool::new(false),
            syscall_depth: AtomicU32::new(0),
            on_cpu: AtomicBool::new(state == ThreadState::Running),
            pinned: AtomicU8::new(UNPINNED),
        }
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

#[cfg(test)]
impl Thread {
    /// A running thread of a throwaway process, for unit tests.
    pub fn for_test(id: u64) -> Arc<Thread> {
        let process = Process::new("test", None, 0);
        Arc::new(Thread::new(id, process, ThreadState::Running, TrapFrame, None))
    }
}

/// `Thread::resume` values.
const RESUME_FRAME: u8 = 0;
#[cfg_attr(test, allow(dead_code))]
const RESUME_STACK: u8 = 1;

mod haltpoll;
mod load;
mod runqueue;

use runqueue::Scheduler;

static SCHED: SpinLock<Scheduler> = SpinLock::new(Scheduler::new());

/// The pointer to the thread running on this CPU (kept alive by the
/// scheduler's `current` for this CPU while it runs): this CPU's
/// `percpu::Local::current`, one `gs:`-relative load.
#[cfg(not(test))]
#[inline(always)]
fn current_ptr() -> *mut Thread {
    crate::percpu::this().local.current.load(Ordering::Relaxed)
}

/// Host unit tests run no threads.
#[cfg(test)]
static CURRENT: AtomicPtr<Thread> = AtomicPtr::new(core::ptr::null_mut());

#[cfg(test)]
fn current_ptr() -> *mut Thread {
    CURRENT.load(Ordering::Relaxed)
}

/// The thread running on this CPU.
pub fn current() -> &'static Thread {
    let ptr = current_ptr();
    assert!(!ptr.is_null(), "no current thread");
    // SAFETY: this CPU's current pointer always points at the thread in
    // the scheduler's `current` for this CPU, whose Arc keeps it alive at
    // least until it switches away; a reference obtained by the running
    // thread cannot outlive that switch, because the thread itself is not
    // running afterwards (wherever it runs next, it is still alive then).
    // (Only the thread itself and the interrupt handler running on its
    // behalf call this.)
    unsafe { &*ptr }
}

pub fn current_arc() -> Arc<Thread> {
    let ptr = current_ptr();
    assert!(!ptr.is_null(), "no current thread");
    // SAFETY: the pointer was made with `Arc::as_ptr` from the Arc that
    // the scheduler holds while the thread runs, so the allocation is
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
        enqueue(thread);
    }
}

#[cfg(test)]
fn enqueue(thread: Arc<Thread>) {
    let _ = SCHED.lock().push(thread, 0);
}

/// Runs a system call's body `f` as inside the kernel (see [`InKernel`]).
/// Every `KernelApi` method is one: the body's locals and temporaries are
/// all gone when `f` returns, so a thread ending at the guard's drop leaves
/// nothing of the kernel's behind. (A guard as the method's first local
/// would not do: temporaries of a method's tail expression outlive its
/// locals.)
#[inline(always)]
pub fn in_kernel<R>(f: impl FnOnce() -> R) -> R {
    let _in_kernel = InKernel::enter();
    f()
}

/// Marks the current thread as inside a system call until dropped; the
/// outermost drop ends the thread if its process was terminated meanwhile.
/// (On every system call: a couple of loads and stores, no atomic
/// read-modify-write, since only the thread itself changes its depth.)
pub struct InKernel(Option<&'static Thread>);

impl InKernel {
    #[inline(always)]
    pub fn enter() -> InKernel {
        let thread = try_current();
        if let Some(t) = thread {
            // Wrapping: a depth is a handful of nested calls, never near
            // the limit (and no overflow check on every system call).
            let depth = t.syscall_depth.load(Ordering::Relaxed);
            t.syscall_depth.store(depth.wrapping_add(1), Ordering::Relaxed);
        }
        InKernel(thread)
    }
}

impl Drop for InKernel {
    #[inline(always)]
    fn drop(&mut self) {
        let Some(t) = self.0 else { return };
        // At least 1: `enter` counted this call.
        let depth = t.syscall_depth.load(Ordering::Relaxed).wrapping_sub(1);
        t.syscall_depth.store(depth, Ordering::Relaxed);
        if depth == 0 && t.kill_requested() {
            // Every local of the call has dropped (see `in_kernel`):
            // nothing of the kernel's is left on this stack, only the
            // component's own frames.
            #[cfg(not(test))]
            exit_current_thread();
        }
    }
}


#[cfg(not(test))]
mod machine {
    use starina::abi::Error;
    use super::runqueue::Kicks;
    use super::*;
    use crate::arch::trap::KERNEL_CS;
    use crate::arch::trap::KERNEL_DS;
    use crate::percpu;

    /// Where every new thread starts: `entry(arg)`, then the thread exits.
    extern "C" fn thread_start(entry: usize, arg: usize) -> ! {
        // SAFETY: `entry` was produced from a `fn(usize)` in `spawn`.
        let entry: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(entry) };
        entry(arg);
        exit_current_thread()
    }

    /// This CPU's index; the caller has interrupts off (it holds the
    /// scheduler lock), so it stays on this CPU.
    fn this_cpu() -> usize {
        percpu::index()
    }

    /// Makes `next` this CPU's running thread for the entry path and
    /// `current()`.
    fn set_running(next: &Arc<Thread>, is_idle: bool) {
        let local = &percpu::this().local;
        local.current.store(Arc::as_ptr(next) as *mut Thread, Ordering::Relaxed);
        // What `trap::set_current_fx` does, on the slot already at hand.
        local.fx.store(&*next.fx as *const FxArea as u64, Ordering::Relaxed);
        crate::user::entry::switch_to(next.page_tables, next.kernel_stack_top);
        if !is_idle {
            local.runs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells every CPU in `kicks`: by its doorbell if it polls (see
    /// `haltpoll`), else by the reschedule IPI.
    fn send_kicks(mut kicks: Kicks) {
        // Usually none: a loop over the set bits only.
        while kicks != 0 {
            let cpu = kicks.trailing_zeros() as usize;
            kicks &= kicks - 1;
            if haltpoll::ring(cpu) {
                continue;
            }
            if let Some(c) = percpu::cpu(cpu) {
                crate::arch::apic::send_vector(c.apic_id(), crate::arch::trap::VECTOR_RESCHEDULE);
            }
        }
    }

    /// Queues a runnable thread and tells the CPU that should take it.
    /// A thread woken while still some CPU's current (between
    /// `prepare_block` and the switch that would block it) is not queued:
    /// it is running again, and that CPU's switch keeps it (another CPU
    /// taking it from the queue would run it twice).
    pub(super) fn enqueue(thread: Arc<Thread>) {
        let mut s = SCHED.lock();
        if s.running_on(&thread).is_some() {
            let _ = thread.state.compare_exchange(
                ThreadState::Runnable as u8,
                ThreadState::Running as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return;
        }
        let cpu = this_cpu();
        let (kicks, starts_slice) = s.push(thread, cpu);
        if starts_slice && !s.is_idle(cpu) {
            // The running thread was alone, with no tick armed to end its
            // slice: its slice starts now.
            start_slice(&mut s, cpu);
        }
        drop(s);
        send_kicks(kicks);
    }

    /// Spins until no CPU holds `next` any more (the CPU that ran it has
    /// saved it), then takes it for this CPU.
    fn take_off_other_cpu(next: &Thread) {
        while next.on_cpu.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        next.on_cpu.store(true, Ordering::Relaxed);
    }

    /// Creates a thread in `process` that runs `entry(arg)`, and queues it.
    /// `OverBudget` if its stack does not fit the process's memory budget,
    /// `OutOfMemory` if memory ran out, `PeerClosed` if the process is being
    /// torn down.
    pub fn spawn(process: &Arc<Process>, entry: fn(usize), arg: usize) -> Result<Arc<Thread>, Error> {
        spawn_on(process, entry, arg, None)
    }

    /// Whether `cpu` takes threads, or will once the boot CPU releases
    /// the others (it is online: startup pins components before that).
    pub fn cpu_takes_threads(cpu: usize) -> bool {
        percpu::cpu(cpu).is_some_and(|c| c.is_online())
    }

    /// [`spawn`], the thread pinned to `cpu` if that CPU takes threads
    /// (free to run on any CPU otherwise, or with `None`).
    pub fn spawn_on(
        process: &Arc<Process>,
        entry: fn(usize),
        arg: usize,
        cpu: Option<usize>,
    ) -> Result<Arc<Thread>, Error> {
        spawn_with(process, cpu, |stack| TrapFrame {
            rip: thread_start as *const () as u64,
            cs: KERNEL_CS as u64,
            rflags: 0x202,
            // As if `thread_start` had been called: rsp + 8 is 16-aligned.
            rsp: stack.top() as u64 - 8,
            ss: KERNEL_DS as u64,
            rdi: entry as *const () as u64,
            rsi: arg as u64,
            ..Default::default()
        })
    }

    /// Creates a thread of a user process that starts in ring 3 at `rip`
    /// with `rsp` and `rdi` = `arg` (the kernel stack it gets is for its
    /// system calls), and queues it. Errors as [`spawn`].
    pub fn spawn_user(process: &Arc<Process>, rip: u64, rsp: u64, arg: u64) -> Result<Arc<Thread>, Error> {
        // On its spec's CPU, as an in-kernel component's threads are.
        let cpu = crate::startup::thread_cpu(process);
        spawn_with(process, cpu, |_| TrapFrame {
            rip,
            cs: crate::user::entry::USER_CS,
            rflags: 0x202,
            rsp,
            ss: crate::user::entry::USER_DS,
            rdi: arg,
            ..Default::default()
        })
    }

    fn spawn_with(
        process: &Arc<Process>,
        cpu: Option<usize>,
        frame: impl FnOnce(&Stack) -> TrapFrame,
    ) -> Result<Arc<Thread>, Error> {
        let charge = crate::account::Charge::try_new(process.account, crate::mm::stack::STACK_SIZE)?;
        let stack = Stack::new().ok_or(Error::OutOfMemory)?;
        let frame = frame(&stack);
        let id = NEXT_TID.fetch_add(1, Ordering::Relaxed);
        let mut thread = Thread::new(id, process.clone(), ThreadState::Runnable, frame, Some(stack));
        thread._stack_charge = Some(charge);
        // Before it is queued (see `set_pinned`).
        thread.set_pinned(cpu.filter(|&c| cpu_takes_threads(c)));
        let thread = Arc::new(thread);
        // A process being torn down takes no new threads (a spawn racing
        // its terminate would otherwise outlive it).
        if !process.add_thread(&thread) {
            return Err(Error::PeerClosed);
        }
        enqueue(thread.clone());
        Ok(thread)
    }

    /// The kernel's process, for the idle threads of the CPUs that start
    /// after the boot CPU.
    static KERNEL: spin::Once<Arc<Process>> = spin::Once::new();
    /// Set once the boot CPU's scheduler runs: the other CPUs may join.
    static APS_RELEASED: AtomicBool = AtomicBool::new(false);

    /// Turns the boot context into this CPU's idle thread and makes it
    /// current (the boot CPU first, with the kernel's process).
    pub fn init(kernel: &Arc<Process>) {
        KERNEL.call_once(|| kernel.clone());
        init_this_cpu(kernel);
    }

    fn init_this_cpu(kernel: &Arc<Process>) {
        let idle = Arc::new(Thread::new(
            0,
            kernel.clone(),
            ThreadState::Running,
            TrapFrame::default(),
            None,
        ));
        let mut s = SCHED.lock();
        let cpu = this_cpu();
        set_running(&idle, true);
        let now = crate::arch::time::now_ns();
        s.start_cpu(cpu, idle, now);
        load::start(cpu, now);
    }

    /// Lets the other CPUs, waiting in [`run_application_cpu`], take
    /// threads. The boot CPU calls it once its own idle loop is next.
    pub fn release_application_cpus() {
        APS_RELEASED.store(true, Ordering::Release);
        for (i, cpu) in percpu::all().enumerate() {
            if i != 0 && cpu.is_online() {
                crate::arch::apic::send_vector(cpu.apic_id(), crate::arch::trap::VECTOR_RESCHEDULE);
            }
        }
    }

    /// An application CPU, online, interrupts off: waits for the boot
    /// CPU's release, then its context becomes its idle thread.
    pub fn run_application_cpu() -> ! {
        while !APS_RELEASED.load(Ordering::Acquire) {
            // The release's IPI ends the halt (`sti; hlt` takes it even
            // if it came just before).
            crate::arch::cpu::enable_interrupts_and_halt();
            crate::arch::cpu::disable_interrupts();
        }
        let kernel = KERNEL.get().expect("the boot CPU initialized the scheduler");
        init_this_cpu(kernel);
        log::debug!("sched: CPU {} takes threads", this_cpu());
        idle_loop()
    }

    /// A CPU's idle thread: gives the CPU to anything runnable it may run
    /// and halts otherwise. Wakes from interrupts (and the reschedule IPI
    /// another CPU sends when it queues work) switch away from it in the
    /// interrupt path. With other CPUs to queue work for it, it first
    /// polls its doorbell for an adaptive while (`haltpoll`).
    pub fn idle_loop() -> ! {
        let cpu = this_cpu();
        let mut window = haltpoll::Window::default();
        loop {
            let (runnable, alone) = {
                let s = SCHED.lock();
                (s.runnable_for(cpu), s.active() < 2)
            };
            if runnable {
                yield_current();
                continue;
            }
            // What this CPU last switched away from is not kept while
            // it sleeps (its memory would look leaked meanwhile).
            let zombie = SCHED.lock().cpus[cpu].zombie.take();
            drop(zombie);
            window.begin();
            if !alone && window.ns() > 0 {
                let until = crate::arch::time::now_ns().saturating_add(window.ns());
                match haltpoll::poll(cpu, until, crate::arch::time::now_ns) {
                    haltpoll::Polled::Rung => {
                        window.caught();
                        // The ring stood for the reschedule IPI: served.
                        SCHED.lock().served(cpu);
                        continue;
                    }
                    haltpoll::Polled::Interrupted => continue,
                    haltpoll::Polled::TimedOut => {}
                }
            }
            let start = crate::arch::time::now_ns();
            crate::arch::cpu::enable_interrupts_and_halt();
            if !alone {
                let now = crate::arch::time::now_ns();
                window.missed(haltpoll::halted_ns(cpu, start, now));
            }
        }
    }

    /// Whether a thread this CPU may run waits in the run queue.
    pub fn others_runnable() -> bool {
        let s = SCHED.lock();
        s.runnable_for(this_cpu())
    }

    /// Moves the current thread to the boot CPU for good (the hypervisor's
    /// state, VMXON and the SVM host save area, is there only). Called
    /// before every hypervisor call; once pinned it is a load.
    pub fn pin_to_boot_cpu() {
        if current().pinned_cpu() != Some(0) {
            pin_current(Some(0)).expect("the boot CPU runs the scheduler");
        }
    }

    /// Runs the current thread on `cpu` only from now on, or on any CPU
    /// (`None`). A CPU that is not online is [`Error::InvalidArgument`].
    /// Returns once the thread runs where it may.
    pub fn pin_current(cpu: Option<usize>) -> Result<(), Error> {
        let me = current();
        if let Some(cpu) = cpu {
            // An online CPU not yet released (early in boot) takes it
            // once it is.
            if !cpu_takes_threads(cpu) {
                return Err(Error::InvalidArgument);
            }
        }
        me.set_pinned(cpu);
        if !me.may_run_on(this_cpu()) {
            // Requeued as pinned: only its CPU takes it.
            switch_voluntary();
        }
        Ok(())
    }

    /// Blocks the current thread (already `prepare_block`ed and registered
    /// as a waiter) until it is woken.
    pub fn block_current() {
        switch_voluntary();
    }

    pub fn yield_current() {
        switch_voluntary();
    }

    /// Ends the current thread; it never runs again.
    pub fn exit_current_thread() -> ! {
        current().kill();
        switch_voluntary();
        unreachable!("a dead thread was scheduled");
    }

    /// Ends a thread of a process being torn down, without leaking what it
    /// holds. A thread running its component's code (preempted, or not yet
    /// started) holds only the component's own memory: it is dead at once. A
    /// thread inside a system call holds kernel objects on its stack (the
    /// guest RAM in `vcpu_run`, the poll and its channels in `poll_wait`): it
    /// is woken if it waits, the call returns early, its locals drop, and the
    /// thread ends as the call returns ([`InKernel`]).
    ///
    /// Called for threads other than the current one. One that runs on
    /// another CPU now may enter or leave a system call meanwhile: its
    /// CPU is told, and ends it at its next switch if it is in its
    /// component's code then (`choose`), or it ends as its call returns.
    /// One that does not run cannot change its depth until a CPU takes it,
    /// which needs the lock held here.
    pub fn terminate_thread(thread: Arc<Thread>) {
        thread.kill_requested.store(true, Ordering::SeqCst);
        let mut s = SCHED.lock();
        if let Some(cpu) = s.running_on(&thread) {
            let kicks = s.kick(cpu);
            drop(s);
            send_kicks(kicks);
        } else if thread.syscall_depth.load(Ordering::Acquire) == 0 {
            thread.kill();
        } else {
            drop(s);
            wake(thread);
        }
    }

    core::arch::global_asm!(
        r#"
.section .text.switch, "ax"
.global switch_away
.global resume_stack
// switch_away(save: *mut usize (rdi), prev_on_cpu: *mut bool (rsi),
//             next: *const Thread (rdx))
// Saves the callee-saved registers and RFLAGS on this stack and its
// pointer in `save`, marks the outgoing thread saved (another CPU may
// resume it from then on: nothing here touches this stack again), waits
// until no other CPU holds the next thread, takes it, and resumes it from
// its stack or its interrupted frame. Interrupts are off.
switch_away:
    pushfq
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov byte ptr [rsi], 0
2:
    cmp byte ptr [rdx + {on_cpu}], 0
    je 3f
    pause
    jmp 2b
3:
    mov byte ptr [rdx + {on_cpu}], 1
    cmp byte ptr [rdx + {resume}], 1    // RESUME_STACK
    jne 4f
    mov rsp, [rdx + {saved_rsp}]
// Also entered by iretq from the interrupt path, with rsp = a saved_rsp.
resume_stack:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    popfq
    ret
4:
    mov rax, [rdx + {fx}]       // the FPU area (a Box)
    fxrstor64 [rax]
    lea rsp, [rdx + {frame}]
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    test byte ptr [rsp + 8], 3      // back to ring 3: its GS base (user::entry)
    jz 5f
    swapgs
5:
    iretq
"#,
        on_cpu = const core::mem::offset_of!(Thread, on_cpu),
        resume = const core::mem::offset_of!(Thread, resume),
        saved_rsp = const core::mem::offset_of!(Thread, saved_rsp),
        frame = const core::mem::offset_of!(Thread, frame),
        fx = const core::mem::offset_of!(Thread, fx),
    );

    const _: () = assert!(RESUME_STACK == 1);

    extern "C" {
        /// `next` is a `Thread`, whose fields the code finds at their
        /// offsets (the `const`s above).
        fn switch_away(save: *mut usize, prev_on_cpu: *const AtomicBool, next: *const u8);
        static resume_stack: u8;
    }

    enum Outcome {
        /// The current thread goes on.
        Stay,
        Switch {
            prev: Arc<Thread>,
            next: Arc<Thread>,
        },
    }

    /// Ends the current thread of `cpu` if its process asked it to and it
    /// holds nothing of the kernel's (in its component's code); keeps a
    /// thread so asked from blocking (its call then returns). Its state
    /// after.
    fn honour_kill(prev: &Thread, state: ThreadState) -> ThreadState {
        if !prev.kill_requested.load(Ordering::SeqCst) {
            return state;
        }
        match state {
            ThreadState::Blocked => {
                prev.cancel_block();
                prev.state()
            }
            ThreadState::Running if prev.syscall_depth.load(Ordering::Relaxed) == 0 => {
                prev.kill();
                ThreadState::Dead
            }
            other => other,
        }
    }

    /// The scheduling decision both switch paths share, for this CPU
    /// (`cpu`). On `Switch`, `next` is already the current thread (this
    /// CPU's `current`, its FPU area, the scheduler's `current`); the
    /// caller saves `prev` and resumes `next`. Also returns the CPUs to
    /// tell about `prev` if it went back to the queue.
    fn choose(s: &mut Scheduler, cpu: usize, force: bool, now: u64) -> (Outcome, Kicks) {
        s.served(cpu);
        let c = &mut s.cpus[cpu];
        let prev = c.current.take().expect("no current thread");
        let idle = c.idle.clone().expect("scheduler not initialized");
        let prev_is_idle = Arc::ptr_eq(&prev, &idle);
        let mut prev_state = prev.state();
        if !prev_is_idle {
            prev_state = honour_kill(&prev, prev_state);
        }
        let misplaced = !prev.may_run_on(cpu);
        if prev_state == ThreadState::Running
            && !prev_is_idle
            && !misplaced
            && (!force || !s.runnable_for(cpu))
        {
            // Keep running: nothing forces a switch, or nobody else wants
            // the CPU (a new slice then).
            if force {
                s.cpus[cpu].slice_start = now;
            }
            s.cpus[cpu].current = Some(prev);
            return (Outcome::Stay, 0);
        }
        let mut kicks = 0;
        if prev_state == ThreadState::Running {
            prev.state
                .store(ThreadState::Runnable as u8, Ordering::Release);
            if !prev_is_idle {
                kicks = s.push(prev.clone(), cpu).0;
            }
        }
        // The next runnable thread; dead ones are dropped here.
        let next = s.pop_for(cpu).unwrap_or(idle);
        next.state
            .store(ThreadState::Running as u8, Ordering::Release);
        s.cpus[cpu].current = Some(next.clone());
        if Arc::ptr_eq(&next, &prev) {
            return (Outcome::Stay, kicks);
        }
        let next_is_idle = s.is_idle(cpu);
        set_running(&next, next_is_idle);
        load::switched(cpu, now, prev_is_idle, next_is_idle);
        if prev_is_idle {
            haltpoll::busy(cpu, now);
        }
        s.cpus[cpu].slice_start = now;
        (Outcome::Switch { prev, next }, kicks)
    }

    /// The interrupt path (timer, faults, IPIs): saves the interrupted
    /// thread's registers from `frame` and rewrites `frame` to resume the
    /// next one. `force` switches even if the current thread could go on
    /// (its slice ended).
    ///
    /// `preempted` says the thread did not ask to give up the CPU (a timer
    /// interrupt). A thread preempted between `prepare_block` and its yield
    /// has not blocked yet: it goes on running (and re-checks), else a wake
    /// that came before it registered would be lost.
    pub fn switch(frame: &mut TrapFrame, force: bool, preempted: bool) {
        let now = crate::arch::time::now_ns();
        let mut s = SCHED.lock();
        let cpu = this_cpu();
        if preempted {
            if let Some(cur) = s.cpus[cpu].current.as_ref() {
                cur.cancel_block();
            }
        }
        let zombie = s.cpus[cpu].zombie.take();
        let (outcome, mut kicks) = choose(&mut s, cpu, force, now);
        if force && preempted {
            // A slice ended here: other CPUs with work waiting must end
            // theirs too (see `kick_stale`).
            kicks |= s.kick_stale(cpu, now, 2 * TIME_SLICE_NS);
        }
        if let Outcome::Switch { prev, next } = outcome {
            // Back in the queue (not blocked, not ended): taken from it.
            let requeued = prev.state() == ThreadState::Runnable;
            if requeued && !s.cpus[cpu].idle.as_ref().is_some_and(|i| Arc::ptr_eq(i, &prev)) {
                load::preempted(cpu);
            }
            // SAFETY: scheduler lock held; `prev` was this CPU's and is
            // in no other CPU's hands until `on_cpu` clears below.
            unsafe { *prev.frame.get() = *frame };
            prev.resume.store(RESUME_FRAME, Ordering::Relaxed);
            prev.on_cpu.store(false, Ordering::Release);
            drop(s);
            take_off_other_cpu(&next);
            load_frame(frame, &next);
            // A dead thread's last reference may go here (freeing its
            // stack): safe, we run on the interrupt stack.
            drop(prev);
        } else {
            drop(s);
        }
        drop(zombie);
        send_kicks(kicks);
    }

    /// Rewrites `frame` to resume `next`, this CPU's now.
    fn load_frame(frame: &mut TrapFrame, next: &Thread) {
        if next.resume.load(Ordering::Relaxed) == RESUME_FRAME {
            // SAFETY: `next` is this CPU's alone (`take_off_other_cpu`).
            unsafe { *frame = *next.frame.get() };
        } else {
            // It gave up the CPU itself: iretq into `resume_stack` on its
            // stack, interrupts off until it restores its own flags.
            *frame = TrapFrame {
                rip: (&raw const resume_stack) as u64,
                cs: KERNEL_CS as u64,
                rflags: 0x2,
                // SAFETY: as above.
                rsp: unsafe { *next.saved_rsp.get() } as u64,
                ss: KERNEL_DS as u64,
                ..Default::default()
            };
        }
    }

    /// Blocks the current thread (already `prepare_block`ed and registered
    /// as a waiter) and runs `next` at once: a thread the current one just
    /// took off a wait by handing it a message, not woken yet (so in no
    /// run queue). The direct switch of a send followed by a wait: no trip
    /// through the run queue, and `next` runs on the rest of the current
    /// slice, so two threads passing the CPU back and forth are preempted
    /// as one thread would be, and the others still get their turn. If the
    /// current thread was woken meanwhile, or `next` was (its process is
    /// being torn down), or the current one is asked to end, or `next`
    /// must run on another CPU, it is an ordinary wake and block.
    #[inline(always)]
    pub fn block_current_handoff(next: Arc<Thread>) {
        let mut s = SCHED.lock();
        // Off until `next` runs, whichever way.
        let was = s.keep_interrupts_off();
        let cpu = this_cpu();
        let blocking = s.cpus[cpu].current.as_ref().is_some_and(|c| {
            c.state() == ThreadState::Blocked && !c.kill_requested.load(Ordering::SeqCst)
        });
        // Not for another CPU: one pinned elsewhere, or one still some
        // CPU's current (it blocked there and that CPU has not switched
        // away yet: it decides, when it does, that `next` goes on).
        let fits = next.may_run_on(cpu) && s.running_on(&next).is_none();
        let taken = blocking
            && fits
            && next
                .state
                .compare_exchange(
                    ThreadState::Blocked as u8,
                    ThreadState::Running as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        if !taken {
            drop(s);
            crate::arch::irq::restore(was);
            wake(next);
            switch_voluntary();
            return;
        }
        let zombie = s.cpus[cpu].zombie.take();
        set_running(&next, false);
        let prev = s.cpus[cpu].current.replace(next).expect("no current thread");
        resume_next(s, cpu, zombie, prev, was, 0);
    }

    /// The voluntary path (blocking, yielding, exiting): switches stacks
    /// directly, saving only what a function call must preserve.
    fn switch_voluntary() {
        let was = crate::arch::irq::save_and_disable();
        let now = crate::arch::time::now_ns();
        let mut s = SCHED.lock();
        let cpu = this_cpu();
        let zombie = s.cpus[cpu].zombie.take();
        let (outcome, kicks) = choose(&mut s, cpu, true, now);
        let Outcome::Switch { prev, next } = outcome else {
            drop(s);
            drop(zombie);
            send_kicks(kicks);
            crate::arch::irq::restore(was);
            return;
        };
        // The scheduler's `current` holds it.
        drop(next);
        resume_next(s, cpu, zombie, prev, was, kicks);
    }

    /// Gives this CPU (`cpu`) from `prev` to the thread already made
    /// current (`set_running`, the scheduler's `current`), with the
    /// scheduler lock `s` held and interrupts off (`was`: their state
    /// before); drops `zombie` and tells `kicks` once the lock is gone;
    /// returns once `prev` runs again (on whichever CPU).
    #[inline(always)]
    fn resume_next(
        mut s: crate::sync::SpinLockGuard<'_, Scheduler>,
        cpu: usize,
        zombie: Option<Arc<Thread>>,
        prev: Arc<Thread>,
        was: bool,
        kicks: Kicks,
    ) {
        prev.resume.store(RESUME_STACK, Ordering::Relaxed);
        let save = prev.saved_rsp.get();
        let prev_on_cpu = &prev.on_cpu as *const AtomicBool;
        // The scheduler's `current` (`next`) keeps it alive after the
        // lock goes; `switch_away` reads its state only once it is this
        // CPU's alone.
        let next: *const Thread = s.cpus[cpu].current.as_deref().expect("no current thread");
        // Keep `prev` alive while this CPU is still on its stack: this
        // CPU's next switch drops it (freeing it if it is dead), from
        // another stack.
        s.cpus[cpu].zombie = Some(prev);
        // Interrupts stay off: the lock restores the state it found (off).
        drop(s);
        drop(zombie);
        send_kicks(kicks);
        // SAFETY: `save` and `prev_on_cpu` are the outgoing thread's (kept
        // alive by this CPU's zombie slot); `next`'s pointers are into the
        // incoming thread, alive in the scheduler's `current`, which
        // `switch_away` reads only after it waited for `on_cpu` to clear.
        // Interrupts are off until the incoming thread restores its own
        // flags.
        unsafe { switch_away(save, prev_on_cpu, next.cast()) };
        // Running again.
        crate::arch::irq::restore(was);
    }

    /// Whether the current thread has used up its slice.
    pub fn slice_expired(now: u64) -> bool {
        let s = SCHED.lock();
        now.saturating_sub(s.cpus[this_cpu()].slice_start) >= TIME_SLICE_NS
    }

    /// When this CPU's next tick must come, given the earliest kernel
    /// timer (see [`tick_deadline`]).
    pub fn next_tick(next_timer: Option<u64>) -> u64 {
        let s = SCHED.lock();
        let cpu = this_cpu();
        tick_deadline(next_timer, s.cpus[cpu].slice_start, s.runnable_for(cpu))
    }

    /// Another thread now waits for this CPU (`cpu`): the tick that ends
    /// the running one's slice is armed.
    fn start_slice(s: &mut Scheduler, cpu: usize) {
        let c = &mut s.cpus[cpu];
        let end = slice_end_after(c.slice_start, crate::arch::time::now_ns());
        c.slice_start = end - TIME_SLICE_NS;
        crate::arch::apic::arm_timer_by(end);
    }

    /// The reschedule IPI came: it is served, and if this CPU runs a
    /// thread while others wait for it, that thread's slice starts.
    pub fn reschedule_ipi() {
        let mut s = SCHED.lock();
        let cpu = this_cpu();
        s.served(cpu);
        if s.runnable_for(cpu) && !s.is_idle(cpu) {
            start_slice(&mut s, cpu);
        }
    }

    /// The load figures of the CPU at `index`, if it is online (all zero
    /// until it takes threads: early in boot, before the boot CPU
    /// releases the others).
    pub fn cpu_stats(index: usize) -> Option<starina::abi::CpuStats> {
        let cpu = percpu::cpu(index).filter(|c| c.is_online())?;
        let switches = cpu.local.runs.load(Ordering::Relaxed);
        // Under the lock: the CPU's switches write its figures with it.
        let _s = SCHED.lock();
        let stats = load::stats(index, crate::arch::time::now_ns(), switches);
        Some(stats.unwrap_or(starina::abi::CpuStats {
            cpu: index as u32,
            ..Default::default()
        }))
    }

        pub fn current_is_idle() -> bool {
        let s = SCHED.lock();
        s.is_idle(this_cpu())
    }
}

#[cfg(not(test))]
pub use machine::*;

/// Host unit tests: a thread is never running elsewhere.
#[cfg(test)]
pub fn terminate_thread(thread: Arc<Thread>) {
    thread.kill_requested.store(true, Ordering::Release);
    if thread.syscall_depth.load(Ordering::Acquire) == 0 {
        thread.kill();
    } else {
        wake(thread);
    }
}

/// The current process's name, if a thread is running (for log tags).
pub fn try_current_process_name() -> Option<&'static str> {
    let ptr = current_ptr();
    if ptr.is_null() {
        return None;
    }
    Some(current().process.name)
}

/// The current thread, if the scheduler is up.
#[inline(always)]
pub fn try_current() -> Option<&'static Thread> {
    let ptr = current_ptr();
    // SAFETY: as in `current`: a non-null CURRENT is the running thread,
    // alive while it runs.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: u64 = u64::MAX;

    #[test]
    fn arming_only_moves_the_deadline_earlier() {
        assert_eq!(earlier_deadline(NONE, 100, 1_100), Some(1_100));
        assert_eq!(earlier_deadline(5_000, 100, 1_100), Some(1_100));
        // A later deadline (a vCPU entering the guest again) keeps the
        // armed one.
        assert_eq!(earlier_deadline(1_100, 200, 1_200), None);
        assert_eq!(earlier_deadline(1_100, 100, 1_100), None);
        // The past means now.
        assert_eq!(earlier_deadline(NONE, 500, 100), Some(500));
        // One armed in the past is pending: it stays.
        assert_eq!(earlier_deadline(400, 500, 600), None);
    }

    /// A vCPU thread whose guest exits every `exit_every_ns`, arming a
    /// 1 ms run deadline before each entry, from a slice begun at 0: when
    /// the tick that ends its slice comes (`None`: not within a second).
    fn slice_end_tick(exit_every_ns: u64) -> Option<u64> {
        let vcpu_max_run_ns = 1_000_000;
        let mut armed = tick_deadline(None, 0, true);
        let mut now = 0;
        while now < 1_000_000_000 {
            if now >= armed {
                // The timer interrupt: the handler's part.
                if now >= TIME_SLICE_NS {
                    return Some(now);
                }
                armed = tick_deadline(None, 0, true);
            }
            if let Some(d) = earlier_deadline(armed, now, now + vcpu_max_run_ns) {
                armed = d;
            }
            now += exit_every_ns;
        }
        None
    }

    #[test]
    fn a_vcpu_thread_exiting_often_is_still_preempted() {
        for exit_every_ns in [1_000, 99_999, 999_999, 1_000_000, 3_000_000] {
            let tick = slice_end_tick(exit_every_ns).expect("the slice never ended");
            assert!(
                tick < TIME_SLICE_NS + exit_every_ns,
                "{exit_every_ns}: {tick}"
            );
        }
    }

    #[test]
    fn the_tick_is_the_earlier_of_the_slice_end_and_the_next_timer() {
        assert_eq!(tick_deadline(None, 0, true), TIME_SLICE_NS);
        assert_eq!(tick_deadline(Some(3), 0, true), 3);
        assert_eq!(tick_deadline(Some(TIME_SLICE_NS + 5), 0, true), TIME_SLICE_NS);
        assert_eq!(tick_deadline(None, u64::MAX - 1, true), u64::MAX);
    }

    #[test]
    fn a_slice_ends_on_the_grid_of_whole_slices_since_the_thread_got_the_cpu() {
        assert_eq!(slice_end_after(1_000, 1_000), 1_000 + TIME_SLICE_NS);
        assert_eq!(slice_end_after(1_000, 1_500), 1_000 + TIME_SLICE_NS);
        // Alone for 10.5 slices: the 11th ends it.
        let now = 1_000 + TIME_SLICE_NS * 21 / 2;
        assert_eq!(slice_end_after(1_000, now), 1_000 + TIME_SLICE_NS * 11);
        // Exactly on a slice's end: the next.
        assert_eq!(slice_end_after(0, TIME_SLICE_NS), TIME_SLICE_NS * 2);
        assert!(slice_end_after(0, u64::MAX) >= u64::MAX - TIME_SLICE_NS);
    }

    #[test]
    fn a_thread_alone_on_the_cpu_gets_no_tick_but_its_timers() {
        assert_eq!(tick_deadline(None, 0, false), u64::MAX);
        assert_eq!(tick_deadline(Some(TIME_SLICE_NS * 50), 0, false), TIME_SLICE_NS * 50);
        assert_eq!(tick_deadline(Some(3), 0, false), 3);
    }
}
