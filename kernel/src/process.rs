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
}

impl ExitReason {
    pub fn is_failure(self) -> bool {
        !matches!(self, ExitReason::Exited(0))
    }
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
}

static NEXT_PID: AtomicU64 = AtomicU64::new(1);

impl Process {
    pub fn new(name: &'static str, component: Option<usize>, instance: u32) -> Arc<Process> {
        Arc::new(Process {
            id: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name,
            component,
            instance,
            account: component.map_or(crate::account::KERNEL, crate::account::for_component),
            handles: SpinLock::new(HandleTable::new()),
            threads: SpinLock::new(Vec::new()),
            exited: AtomicBool::new(false),
        })
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
