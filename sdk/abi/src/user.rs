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

/// A [`crate::DeviceInfo`] in registers (`DeviceInfo`'s answer: `rdx`,
/// `r8`, `r9`, `r10`): word 0 = address kind | has GSI << 8 | GSI << 32;
/// then the address's fields (PCI: bus | device << 8 | function << 16 |
/// vendor << 24 | device ID << 40; virtio-mmio: base, size, device ID;
/// UART: I/O base).
pub mod device_info {
    use crate::DeviceAddress;
    use crate::DeviceInfo;

    const PCI: u64 = 0;
    const VIRTIO_MMIO: u64 = 1;
    const UART: u64 = 2;

    pub fn encode(info: &DeviceInfo) -> [u64; 4] {
        let gsi = info.gsi.map_or(0, |g| 1 << 8 | u64::from(g) << 32);
        match info.address {
            DeviceAddress::Pci {
                bus,
                device,
                function,
                vendor_id,
                device_id,
            } => [
                PCI | gsi,
                u64::from(bus)
                    | u64::from(device) << 8
                    | u64::from(function) << 16
                    | u64::from(vendor_id) << 24
                    | u64::from(device_id) << 40,
                0,
                0,
            ],
            DeviceAddress::VirtioMmio {
                base,
                size,
                device_id,
            } => [VIRTIO_MMIO | gsi, base, size, u64::from(device_id)],
            DeviceAddress::Uart { io_base } => [UART | gsi, u64::from(io_base), 0, 0],
        }
    }

    /// `None` for words no kernel writes.
    pub fn decode(w: [u64; 4]) -> Option<DeviceInfo> {
        let gsi = (w[0] & 1 << 8 != 0).then_some((w[0] >> 32) as u32);
        let address = match w[0] & 0xff {
            PCI => DeviceAddress::Pci {
                bus: w[1] as u8,
                device: (w[1] >> 8) as u8,
                function: (w[1] >> 16) as u8,
                vendor_id: (w[1] >> 24) as u16,
                device_id: (w[1] >> 40) as u16,
            },
            VIRTIO_MMIO => DeviceAddress::VirtioMmio {
                base: w[1],
                size: w[2],
                device_id: w[3] as u32,
            },
            UART => DeviceAddress::Uart {
                io_base: w[1] as u16,
            },
            _ => return None,
        };
        Some(DeviceInfo { address, gsi })
    }
}

/// The system calls whose results do not fit the registers as they are
/// (strings, structs): how user mode passes them.
///
/// - `SystemComponentStatus(monitor, index, buf, buf_len)`: the name and
///   the kind are written to `buf` (name first, no separator); `rdx` =
///   state ([`component_state`]) | name length << 16 | kind length << 32,
///   `r8` = instance | restarts << 32, `r9` = max_restarts, `r10` =
///   memory_used, `rsi` = memory_limit. A buffer shorter than both is
///   [`crate::Error::BufferTooSmall`].
/// - `SystemLogRead(monitor, from, buf, buf_len)`: `rdx` = where the bytes
///   start, `r8` = how many (at most [`LOG_READ_MAX`] a call).
/// - `SystemMemoryStats(monitor)`: `rdx`..`rsi` = heap_in_use, pages_free,
///   pages_total, dma_pages, pages_kept.
/// - `SystemCpuStats(monitor, index)`: `rdx`..`rsi` = cpu, busy_ns,
///   idle_ns, switches, preemptions.
/// - `CommandSpawn(spawner, request, request_len, stdin, stdout, stderr)`:
///   `rdx` = the job (a request longer than [`COMMAND_REQUEST_MAX`] is
///   [`crate::Error::MessageTooLarge`]).
/// - `JobStatus(job)`: `rdx` = 1 if it ended (then `r8` = its status as an
///   `i32`), 0 if it runs.
/// - `ComponentControl(control, name, name_len, action)`: action 0 = stop,
///   1 = restart.
/// - `CommandName(spawner, index, buf, buf_len)`: the name in `buf`, its
///   length in `rdx`.
/// - `ConsoleRead(console, buf, buf_len)`: typed bytes into `buf`, how
///   many in `rdx` (at most [`CONSOLE_READ_MAX`] a call).
/// - `ConsoleWrite(console, data, len)`: how many were written in `rdx`
///   (at most [`crate::CONSOLE_WRITE_MAX`] a call).
pub mod system {
    /// Typed bytes one `ConsoleRead` takes at most.
    pub const CONSOLE_READ_MAX: u64 = 1024;
    /// Bytes one `SystemLogRead` copies at most.
    pub const LOG_READ_MAX: u64 = 64 * 1024;
    /// The longest command request user mode may pass.
    pub const COMMAND_REQUEST_MAX: u64 = 64 * 1024;

    /// `ComponentState` as a number.
    pub mod component_state {
        pub const RUNNING: u64 = 0;
        pub const STOPPED: u64 = 1;
        pub const NOT_STARTED: u64 = 2;
    }
}
