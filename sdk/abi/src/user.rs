//! The user-mode system-call ABI: how a component running in ring 3 reaches
//! the same calls as an in-kernel one ([`crate::syscall::SyscallNo`]), plus
//! the few calls only a user process needs ([`UserCall`]), and where things
//! live in a user address space.
//!
//! Registers: `rax` = the call's number, arguments in `rdi`, `rsi`, `rdx`,
//! `r10`, `r8`, `r9` (`rcx` and `r11` are the `syscall` instruction's).
//! A call with more arguments passes one pointer (`rdi`) to its `#[repr(C)]`
//! argument block below. On return `rax` is 0 or an [`crate::Error`]'s
//! number, and the results are in `rdx`, `r8`, `r9` and `r10` as each call
//! says. Every pointer and length is checked by the kernel: outside the
//! caller's memory or unmapped is [`crate::Error::BadAddress`].

/// The lowest user address (PML4 slot 2: the first 512 GiB stay the
/// kernel's, mapped supervisor-only in every address space).
pub const USER_BASE: u64 = 0x0000_0100_0000_0000;
/// One past the highest user address. Below the last page of the lower
/// half, so the address after a `syscall` instruction is always canonical.
pub const USER_END: u64 = 0x0000_7f80_0000_0000;
/// Where a user ELF is linked (its first loadable segment).
pub const USER_IMAGE_BASE: u64 = USER_BASE + 0x40_0000;
/// Where memory from [`UserCall::MemoryMap`] (heap, thread stacks) starts.
pub const USER_MEMORY_BASE: u64 = 0x0000_2000_0000_0000;
/// The main thread's stack: its top, and its size (an unmapped guard page
/// lies below it).
pub const USER_STACK_TOP: u64 = 0x0000_7000_0000_0000;
pub const USER_STACK_SIZE: u64 = 256 * 1024;
/// Where the kernel puts the start block ([`StartBlock`]) of a new process.
pub const USER_START_BLOCK: u64 = 0x0000_6000_0000_0000;

/// Calls only a user process makes (numbers past [`crate::syscall::SyscallNo`]'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum UserCall {
    /// `rdi` pages of zeroed, writable, non-executable memory, owned by the
    /// process (freed when it ends), each mapping below an unmapped guard
    /// page. Returns the address in `rdx`.
    MemoryMap = 256,
    /// Starts a thread in the calling process at `rdi` (the runtime's
    /// trampoline) with `rdi` = `rsi`, on a stack the kernel gives it
    /// (below an unmapped guard page; `rsp + 8` 16-byte aligned, as at a
    /// function's entry). When the thread ends its stack goes to the
    /// process's next thread.
    ThreadStart = 257,
    /// Ends the calling thread (the process goes on).
    ThreadExit = 258,
}

impl UserCall {
    pub fn from_raw(raw: u16) -> Option<UserCall> {
        match raw {
            256 => Some(UserCall::MemoryMap),
            257 => Some(UserCall::ThreadStart),
            258 => Some(UserCall::ThreadExit),
            _ => None,
        }
    }
}

/// What a new user process finds at [`USER_START_BLOCK`] (its `rdi` at the
/// entry point points here): the component's name, its instance number and
/// its environment's named handles, as `RawEnv` carries them in the kernel.
/// Layout: this header, then `count` [`StartEntry`]s, then the name bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StartBlock {
    pub magic: u64,
    pub instance: u32,
    pub count: u32,
    /// Offset and length (from the block's start) of the component's name.
    pub name_offset: u32,
    pub name_len: u32,
}

/// One named handle of the start block.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StartEntry {
    pub name_offset: u32,
    pub name_len: u32,
    pub handle: u32,
    pub _pad: u32,
}

pub const START_MAGIC: u64 = 0x5452_4154_5352_4153; // "SARSTATR"

/// A slice from user mode: pointer and length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UserSlice {
    pub ptr: u64,
    pub len: u64,
}

/// `ChannelSendPollWaitRecv`'s argument block (`rdi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendWaitArgs {
    pub ch: u32,
    pub kind: u8,
    pub poll: u32,
    pub data: UserSlice,
    pub handles: UserSlice,
    pub buf: UserSlice,
    pub handle_buf: UserSlice,
}

/// `ChannelSendReceivedPollWaitRecv`'s argument block (`rdi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendReceivedWaitArgs {
    pub ch: u32,
    pub kind: u8,
    pub poll: u32,
    pub start: u64,
    pub end: u64,
    pub buf: UserSlice,
    pub handle_buf: UserSlice,
}

/// A poll event in registers: `rdx` = handle | readiness << 32, `r8` = the
/// receive word below, `r9` = the received body's length.
pub mod event {
    /// No receive was attempted.
    pub const RECV_NONE: u64 = 0;
    pub const RECV_OK: u64 = 1;
    pub const RECV_ERR: u64 = 2;

    /// The receive word: tag | kind << 8 | handles << 16 | error << 32.
    pub fn recv_word(tag: u64, kind: u8, handles: usize, error: u8) -> u64 {
        tag | (kind as u64) << 8 | ((handles as u64) & 0xffff) << 16 | (error as u64) << 32
    }
}
