//! Threads within a component, and leaving.

use crate::abi::Error;
use crate::syscall::kernel;
use crate::syscall::ThreadEntry;

/// Starts `entry(arg)` on a new thread of this component.
pub fn spawn(entry: ThreadEntry, arg: usize) -> Result<(), Error> {
    kernel().thread_spawn(entry, arg)
}

pub fn yield_now() {
    kernel().thread_yield()
}

/// Ends this component (all its threads). Its spec's restart policy
/// decides what happens next.
pub fn exit(code: i32) -> ! {
    kernel().process_exit(code)
}
