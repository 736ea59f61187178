//! Jobs: a starter's handle to a command it started (`command_spawn`).
//!
//! A job is READABLE once its command has ended; `job_status` then gives the
//! exit status. `job_kill` ends the command at once, and so does closing
//! the last handle to a job whose command still runs: a starter that goes
//! (a shell that crashes, a linux server whose guest went away) leaves no
//! command behind.

use alloc::sync::Arc;
use core::sync::atomic::AtomicI64;
use core::sync::atomic::Ordering;

use starina::abi::Readiness;

use super::Listeners;
use super::Pollable;
use crate::process::ExitReason;
use crate::process::Process;
use crate::sync::SpinLock;

/// `status` before the command has ended.
const RUNNING: i64 = i64::MIN;

pub struct Job {
    /// The command's process while it runs.
    process: SpinLock<Option<Arc<Process>>>,
    status: AtomicI64,
    listeners: Listeners,
}

impl Job {
    pub fn new() -> Arc<Job> {
        Arc::new(Job {
            process: SpinLock::new(None),
            status: AtomicI64::new(RUNNING),
            listeners: Listeners::new(),
        })
    }

    /// Binds the job to the command's process (once, before it runs).
    pub fn attach(&self, process: Arc<Process>) {
        *self.process.lock() = Some(process);
    }

    /// The command ended with `status`: the job becomes readable.
    pub fn finish(&self, status: i32) {
        self.process.lock().take();
        self.status.store(i64::from(status), Ordering::Release);
        self.listeners.notify();
    }

    pub fn status(&self) -> Option<i32> {
        match self.status.load(Ordering::Acquire) {
            RUNNING => None,
            s => Some(s as i32),
        }
    }

    /// Ends the command if it still runs. Must run without spin locks held
    /// (it tears the command's process down).
    pub fn kill(&self) {
        let process = self.process.lock().take();
        if let Some(process) = process {
            crate::startup::component_ended(&process, ExitReason::Killed);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Pollable for Job {
    fn readiness(&self) -> Readiness {
        if self.status().is_some() {
            Readiness::READABLE
        } else {
            Readiness::empty()
        }
    }

    fn listeners(&self) -> &Listeners {
        &self.listeners
    }
}
