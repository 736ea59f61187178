//! The stacks of a user process's extra threads (`ThreadStart`): the
//! kernel maps each one (below an unmapped guard page) and, when its
//! thread ends (`ThreadExit`), keeps it for the process's next thread
//! instead of unmapping it. A process that starts and ends threads all
//! its life so holds as many stacks as it ever ran threads at once, and
//! no page is unmapped while another CPU may still cache it: a stack only
//! ever passes between threads of the same process.

use alloc::vec::Vec;

/// Pages of one thread stack (its guard page comes with the mapping).
pub const STACK_PAGES: usize = 32;

/// The bytes of a stack the thread starts with `rsp` below: as if the
/// trampoline were called, `rsp + 8` is 16-byte aligned at its entry.
const ENTRY_OFFSET: u64 = (STACK_PAGES * 4096) as u64 - 8;

#[derive(Default)]
pub struct Stacks {
    /// Stacks threads run on: (thread id, lowest address).
    in_use: Vec<(u64, u64)>,
    /// Stacks whose thread ended, for the next one.
    free: Vec<u64>,
}

impl Stacks {
    /// A stack an ended thread left, if any: its lowest address. Give it
    /// to [`Stacks::started`], or back with [`Stacks::unused`].
    pub fn take(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// The `rsp` a thread on the stack at `base` starts with.
    pub fn entry_rsp(base: u64) -> u64 {
        base + ENTRY_OFFSET
    }

    /// Thread `tid` runs on the stack at `base` now. The thread has
    /// started, so this cannot fail: with no room to note it, the stack
    /// stays the process's (freed with it) but is not reused.
    pub fn started(&mut self, tid: u64, base: u64) {
        if self.in_use.try_reserve(1).is_ok() {
            self.in_use.push((tid, base));
        }
    }

    /// A stack no thread runs on (its thread did not start).
    pub fn unused(&mut self, base: u64) {
        // With no room, the stack stays mapped and owned by the process,
        // just not reused.
        if self.free.try_reserve(1).is_ok() {
            self.free.push(base);
        }
    }

    /// Thread `tid` ends (in the kernel, off its user stack for good):
    /// its stack is free for the next thread. Threads the kernel started
    /// (the main one) have none here.
    pub fn ended(&mut self, tid: u64) {
        if let Some(i) = self.in_use.iter().position(|&(t, _)| t == tid) {
            let (_, base) = self.in_use.swap_remove(i);
            self.unused(base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_threads_stack_goes_to_the_next_thread() {
        let mut s = Stacks::default();
        assert_eq!(s.take(), None);
        s.started(7, 0x1000_0000);
        s.started(8, 0x2000_0000);
        s.ended(7);
        s.ended(99); // not a thread with a stack here: nothing changes
        assert_eq!(s.take(), Some(0x1000_0000));
        assert_eq!(s.take(), None);
        s.unused(0x1000_0000);
        assert_eq!(s.take(), Some(0x1000_0000));
        assert_eq!(Stacks::entry_rsp(0x1000_0000) % 16, 8);
    }
}
