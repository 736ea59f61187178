//! Threads of a user process: the closure is boxed here, and the kernel
//! starts the thread on a stack it keeps for the process (reused once the
//! thread ends) at [`trampoline`], which runs the closure and ends the
//! thread.

use alloc::boxed::Box;

use super::raw::syscall;
use crate::abi::user::UserCall;
use crate::abi::Error;
use crate::syscall::ThreadMain;

/// Maps `pages` fresh pages; their address.
pub fn map_pages(pages: u64) -> Result<u64, Error> {
    let r = syscall(UserCall::MemoryMap as u16, [pages, 0, 0, 0, 0, 0]);
    match r.status {
        0 => Ok(r.out[0]),
        raw => Err(u8::try_from(raw)
            .ok()
            .and_then(Error::from_raw)
            .unwrap_or(Error::OutOfMemory)),
    }
}

pub fn spawn(main: ThreadMain) -> Result<(), Error> {
    let arg = Box::into_raw(Box::new(main)) as u64;
    let entry = trampoline as *const () as u64;
    let r = syscall(UserCall::ThreadStart as u16, [entry, arg, 0, 0, 0, 0]);
    if r.status != 0 {
        // The thread was not created: the box is still ours.
        drop(take(arg));
        return Err(u8::try_from(r.status)
            .ok()
            .and_then(Error::from_raw)
            .unwrap_or(Error::OutOfMemory));
    }
    Ok(())
}

/// The box `spawn` leaked as the thread's argument.
#[allow(unsafe_code)]
fn take(arg: u64) -> Box<ThreadMain> {
    // SAFETY: `arg` comes from `Box::into_raw` in `spawn`, and is taken back
    // exactly once: by the new thread, or by `spawn` if there is none.
    unsafe { Box::from_raw(arg as *mut ThreadMain) }
}

extern "C" fn trampoline(arg: u64) -> ! {
    (take(arg))();
    loop {
        let _ = syscall(UserCall::ThreadExit as u16, [0; 6]);
    }
}
