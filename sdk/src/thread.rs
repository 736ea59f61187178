//! Threads within a component, and leaving.

use alloc::boxed::Box;

use crate::abi::Error;
use crate::syscall::kernel;

/// Starts a new thread of this component running `main`. State goes to
/// the thread by move, e.g. `spawn(move || vcpu.run_loop())`; nothing has
/// to pass through a `static`.
pub fn spawn<F>(main: F) -> Result<(), Error>
where
    F: FnOnce() + Send + 'static,
{
    kernel().thread_spawn(Box::new(main))
}

pub fn yield_now() {
    kernel().thread_yield()
}

/// Ends this component (all its threads). Its spec's restart policy
/// decides what happens next.
pub fn exit(code: i32) -> ! {
    kernel().process_exit(code)
}
