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

/// Runs the calling thread on CPU `cpu` only from now on (0 is the boot
/// CPU); returns once it runs there. [`Error::InvalidArgument`] if that
/// CPU does not take threads on this machine. A thread of a component
/// whose spec says `cpu = N` starts pinned to CPU N.
pub fn pin_to_cpu(cpu: usize) -> Result<(), Error> {
    kernel().thread_pin(Some(cpu))
}

/// Lets the calling thread run on any CPU again (after [`pin_to_cpu`], or
/// its spec's `cpu`).
pub fn unpin() -> Result<(), Error> {
    kernel().thread_pin(None)
}

pub fn yield_now() {
    kernel().thread_yield()
}

/// Ends this component (all its threads). Its spec's restart policy
/// decides what happens next.
pub fn exit(code: i32) -> ! {
    kernel().process_exit(code)
}
