//! Processes: a handle table, threads, and the component they run.

use alloc::sync::Arc;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use crate::handle::Handle;
use crate::handle::HandleTable;
use crate::sched::Thread;
use crate::sync::SpinLock;

/// Why a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// `main` returned or the component called exit(0).
    Exited(i32),
    /// The component panicked.
    Panicked,
    /// A CPU exception (e.g. stack overflow) in the component's code.
    Faulted,
    /// Ended from outside: a command's job was killed or closed, or the
    /// component was stopped (`component_control`).
    Killed,
}

impl ExitReason {
    pub fn is_failure(self) -> bool {
        !matches!(self, ExitReason::Exited(0))
    }

    /// A command's exit status for it, as a Unix shell reports a process's
    /// (134 for an abort, 139 for SIGSEGV, 137 for SIGKILL).
    pub fn command_status(self) -> i32 {
        use starina::command as c;
        match self {
            ExitReason::Exited(code) => code,
            ExitReason::Panicked => c::STATUS_PANICKED,
            ExitReason::Faulted => c::STATUS_FAULTED,
            ExitReason::Killed => c::STATUS_KILLED,
        }
    }
}

/// What a command's process has that a profile's component has not.
#[cfg(not(test))]
pub struct CommandLink {
    /// Its job: told the status when the process ends.
    pub job: Weak<crate::object::job::Job>,
    /// Its stderr (the kernel's view of the end in its handle table): where
    /// a panic message goes.
    pub stderr: Weak<crate::object::channel::Channel>,
    /// Its index in the wiring's `COMMANDS`.
    pub index: usize,
}

pub struct Process {
    pub id: u64,
    pub name: &'static str,
    /// Index into the wiring's component table; `None` for the kernel.
    pub component: Option<usize>,
    pub instance: u32,
    /// Its memory account (`crate::account`): one per component, shared
    /// by its successive instances; the kernel's for the kernel.
    pub account: u8,
    pub handles: SpinLock<HandleTable>,
    threads: SpinLock<Vec<Weak<Thread>>>,
    exited: AtomicBool,
    /// Set for a command's process (`startup::spawn_command`).
    #[cfg(not(test))]
    pub command: Option<CommandLink>,
    /// Its own page tables, if it runs in user mode (`crate::user`).
    #[cfg(not(test))]
    pub aspace: spin::Once<crate::user::aspace::AddressSpace>,
}

static NEXT_PID: AtomicU64 = AtomicU64::new(1);

impl Process {
    pub fn new(name: &'static str, component: Option<usize>, instance: u32) -> Arc<Process> {
        let account = component.map_or(crate::account::KERNEL, crate::account::for_component);
        Arc::new(Process::with(name, component, instance, account))
    }

    fn with(name: &'static str, component: Option<usize>, instance: u32, account: u8) -> Process {
        Process {
            id: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name,
            component,
            instance,
            account,
            handles: SpinLock::new(HandleTable::new()),
            threads: SpinLock::new(Vec::new()),
            exited: AtomicBool::new(false),
            #[cfg(not(test))]
            command: None,
            #[cfg(not(test))]
            aspace: spin::Once::new(),
        }
    }

    /// A command's process: no component slot, its own memory account.
    #[cfg(not(test))]
    pub fn new_command(name: &'static str, account: u8, link: CommandLink) -> Arc<Process> {
        let mut process = Process::with(name, None, 1, account);
        process.command = Some(link);
        Arc::new(process)
    }

    /// Records a new thread; false if the process has exited (checked
    /// under the same lock `terminate` takes the list with, after it sets
    /// `exited`: a thread is either in the list it kills or refused here).
    pub fn add_thread(&self, thread: &Arc<Thread>) -> bool {
        let mut threads = self.threads.lock();
        if self.has_exited() {
            return false;
        }
        threads.retain(|t| t.strong_count() > 0);
        if threads.try_reserve(1).is_err() {
            return false;
        }
        threads.push(Arc::downgrade(thread));
        true
    }

    /// Whether it runs a component or a command (not the kernel itself):
    /// its panic or fault ends it alone.
    pub fn is_component(&self) -> bool {
        #[cfg(not(test))]
        if self.command.is_some() {
            return true;
        }
        self.component.is_some()
    }

    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Marks the process gone, kills its threads and closes its handles (so
    /// peers see peer-closed). Returns false if it had already exited.
    /// Must run without spin locks held.
    ///
    /// The calling thread, if it belongs to the process, is spared: it is
    /// still doing the teardown (and the restart), and a preemption must not
    /// find it dead half-way. It ends itself afterwards (`exit_current_thread`,
    /// or `kill` + switch on the fault path).
    pub fn terminate(&self) -> bool {
        if self.exited.swap(true, Ordering::AcqRel) {
            return false;
        }
        let threads = core::mem::take(&mut *self.threads.lock());
        let me = crate::sched::try_current().map(|t| t as *const Thread);
        for t in threads.iter().filter_map(|t| t.upgrade()) {
            if Some(Arc::as_ptr(&t)) != me {
                crate::sched::terminate_thread(t);
            }
        }
        // Drop the handles outside the table lock: dropping a channel end
        // notifies its peer. DMA memory goes last: first the devices (and
        // the interrupts and polls that keep them) drop, which quiesces them
        // (bus mastering off, or a virtio-mmio reset), so no device writes
        // into pages being freed. A DMA handle cannot be transferred or
        // duplicated, so this process held the only one.
        let (dma, others): (Vec<Handle>, Vec<Handle>) = self
            .handles
            .lock()
            .take_all()
            .into_iter()
            .partition(|h| h.object.is_dma());
        drop(others);
        drop(dma);
        true
    }
}
