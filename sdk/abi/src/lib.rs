//! The Starina ABI: the types the kernel, the SDK and the VMM agree on.
//! Everything here is plain data, in-kernel today and across the user-mode
//! system-call boundary later.
//!
//! - handles, rights, readiness, limits and [`Error`] (this module);
//! - [`syscall`]: the system-call numbers, one per `KernelApi` method;
//! - [`vcpu`]: vCPU register state, VM exits and what the VMM injects;
//! - [`guest_memory`]: guest RAM as the VMM's device models reach it;
//! - [`markers`]: the console lines host tools wait for.
#![no_std]
#![forbid(unsafe_code)]

pub mod calendar;
pub mod guest_memory;
pub mod markers;
pub mod syscall;
pub mod user;
pub mod user_vcpu;
pub mod vcpu;

#[cfg(test)]
mod tests;

use core::fmt;

/// A process-local handle number. Handles are indices into the calling
/// process's handle table; they mean nothing in another process.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandleId(pub u32);

impl HandleId {
    pub const fn as_raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

bitflags::bitflags! {
    /// What a handle allows its holder to do with the object.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Rights: u32 {
        /// Receive messages, wait on readiness.
        const READ = 1 << 0;
        /// Send messages, arm timers.
        const WRITE = 1 << 1;
        /// Move the handle to another process in a message.
        const TRANSFER = 1 << 2;
        /// Make a copy of the handle (possibly with fewer rights).
        const DUPLICATE = 1 << 3;
        /// Add to a poll, wait on it.
        const POLL = 1 << 4;
    }
}

impl Rights {
    /// Rights a freshly created object's handle carries.
    pub const DEFAULT: Rights = Rights::all();
}

bitflags::bitflags! {
    /// Readiness of an object, as reported by poll.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Readiness: u32 {
        /// A message is waiting (channel) or the timer expired.
        const READABLE = 1 << 0;
        /// The peer's queue has room for a message.
        const WRITABLE = 1 << 1;
        /// The other end is gone; nothing more will arrive after the queue drains.
        const PEER_CLOSED = 1 << 2;
    }
}

/// The largest message body a channel carries, in bytes.
pub const MESSAGE_DATA_MAX: usize = 16 * 1024;
/// The most handles one message moves.
pub const MESSAGE_HANDLES_MAX: usize = 4;
/// How many messages wait in one channel end before senders get
/// [`Error::QueueFull`] (backpressure).
pub const CHANNEL_QUEUE_MAX: usize = 64;
/// The most handles one process holds.
pub const HANDLE_TABLE_MAX: usize = 1024;
/// The most objects one poll watches.
pub const POLL_ENTRIES_MAX: usize = 256;
/// The most bytes one `console_write` puts out (it returns how many it
/// took; the SDK's `Console::write` loops).
pub const CONSOLE_WRITE_MAX: usize = 1024;
/// How many typed bytes the kernel keeps for `console_read`; bytes beyond
/// are dropped (and counted) until a reader catches up.
pub const CONSOLE_INPUT_MAX: usize = 4096;

/// Every error a system call returns. The numbers are ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Error {
    /// The handle number names nothing in this process's table.
    InvalidHandle = 1,
    /// The handle names an object of another type than the call needs.
    WrongObjectType = 2,
    /// The handle lacks a right the call needs.
    MissingRight = 3,
    /// The message body exceeds [`MESSAGE_DATA_MAX`].
    MessageTooLarge = 4,
    /// The message carries more than [`MESSAGE_HANDLES_MAX`] handles.
    TooManyHandles = 5,
    /// The peer's queue holds [`CHANNEL_QUEUE_MAX`] messages: wait for
    /// `WRITABLE` and try again.
    QueueFull = 6,
    /// The other end of the channel is closed.
    PeerClosed = 7,
    /// Nothing to receive now: wait for `READABLE`.
    WouldBlock = 8,
    /// The receive buffer is smaller than the message; the message stays queued.
    BufferTooSmall = 9,
    /// The kernel could not allocate memory for the request.
    OutOfMemory = 10,
    /// An argument is out of range or malformed.
    InvalidArgument = 11,
    /// The process's handle table is full.
    HandleTableFull = 12,
    /// The object is already in this poll.
    AlreadyExists = 13,
    /// No such entry (e.g. the handle is not in this poll).
    NotFound = 14,
    /// The operation is not supported on this machine or in this build.
    NotSupported = 15,
    /// A handle cannot be sent over the channel it names itself.
    InvalidTransfer = 16,
    /// A decoded message does not follow the message-kind encoding.
    MalformedMessage = 17,
    /// A poll has nothing to wait for (no entries, or all removed).
    PollEmpty = 18,
    /// A sender's backlog (messages queued by the SDK while the peer's
    /// queue is full) reached its bound: the peer is not reading.
    BacklogFull = 19,
    /// The object is in use by another thread (e.g. a vCPU already running).
    Busy = 20,
    /// A guest-physical range is not (entirely) inside guest RAM.
    OutsideGuestRam = 21,
    /// The component's memory budget (its spec's `memory_limit_mib`) is
    /// spent: free something, or give it a larger budget.
    OverBudget = 22,
    /// A pointer or length passed from user mode is outside the caller's
    /// memory (a kernel address, non-canonical, wrapping past the end),
    /// unmapped (a guard page), or lacks the access the call needs.
    BadAddress = 23,
}

impl Error {
    pub fn from_raw(raw: u8) -> Option<Error> {
        use Error::*;
        Some(match raw {
            1 => InvalidHandle,
            2 => WrongObjectType,
            3 => MissingRight,
            4 => MessageTooLarge,
            5 => TooManyHandles,
            6 => QueueFull,
            7 => PeerClosed,
            8 => WouldBlock,
            9 => BufferTooSmall,
            10 => OutOfMemory,
            11 => InvalidArgument,
            12 => HandleTableFull,
            13 => AlreadyExists,
            14 => NotFound,
            15 => NotSupported,
            16 => InvalidTransfer,
            17 => MalformedMessage,
            18 => PollEmpty,
            19 => BacklogFull,
            20 => Busy,
            21 => OutsideGuestRam,
            22 => OverBudget,
            23 => BadAddress,
            _ => return None,
        })
    }

    pub fn as_raw(self) -> u8 {
        self as u8
    }

    /// Every error, in number order.
    pub const ALL: [Error; 23] = {
        use Error::*;
        [
            InvalidHandle,
            WrongObjectType,
            MissingRight,
            MessageTooLarge,
            TooManyHandles,
            QueueFull,
            PeerClosed,
            WouldBlock,
            BufferTooSmall,
            OutOfMemory,
            InvalidArgument,
            HandleTableFull,
            AlreadyExists,
            NotFound,
            NotSupported,
            InvalidTransfer,
            MalformedMessage,
            PollEmpty,
            BacklogFull,
            Busy,
            OutsideGuestRam,
            OverBudget,
            BadAddress,
        ]
    };
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::InvalidHandle => "invalid handle",
            Error::WrongObjectType => "handle names an object of the wrong type",
            Error::MissingRight => "handle lacks the right for this operation",
            Error::MessageTooLarge => "message body too large",
            Error::TooManyHandles => "too many handles in one message",
            Error::QueueFull => "peer's queue is full",
            Error::PeerClosed => "peer closed",
            Error::WouldBlock => "would block",
            Error::BufferTooSmall => "buffer too small for the message",
            Error::OutOfMemory => "out of memory",
            Error::InvalidArgument => "invalid argument",
            Error::HandleTableFull => "handle table full",
            Error::AlreadyExists => "already exists",
            Error::NotFound => "not found",
            Error::NotSupported => "not supported",
            Error::InvalidTransfer => "a channel handle cannot be sent over itself",
            Error::MalformedMessage => "malformed message",
            Error::PollEmpty => "poll has no entries",
            Error::BacklogFull => "send backlog is full: the peer is not reading",
            Error::Busy => "object is busy (in use by another thread)",
            Error::OutsideGuestRam => "address range is outside guest RAM",
            Error::OverBudget => "memory budget spent (spec memory_limit_mib)",
            Error::BadAddress => "bad address: outside the caller's memory or unmapped",
        };
        f.write_str(s)
    }
}

/// What `channel_recv` reports about a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvInfo {
    /// The message kind byte (see `starina::message::MessageKind`).
    pub kind: u8,
    /// Body length in bytes, written to the front of the receive buffer.
    pub data_len: usize,
    /// Number of handles written to the front of the handle buffer.
    pub num_handles: usize,
}

/// What `poll_wait_recv` reports: the ready object, how it is ready, and,
/// for a readable channel the caller may read, the outcome of receiving its
/// next message (as `channel_recv` would report it: the message, or why
/// not, e.g. `BufferTooSmall` with the message left queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollEvent {
    pub id: HandleId,
    pub ready: Readiness,
    pub received: Option<Result<RecvInfo, Error>>,
}

/// Log levels as carried by the `Log` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Where a device sits, as the kernel found it at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAddress {
    /// A PCI function (legacy configuration ports on q35).
    Pci {
        bus: u8,
        device: u8,
        function: u8,
        vendor_id: u16,
        device_id: u16,
    },
    /// A virtio-mmio transport (QEMU microvm): `size` bytes of registers at
    /// physical `base`, virtio device type `device_id`.
    VirtioMmio {
        base: u64,
        size: u64,
        device_id: u32,
    },
    /// A 16550-compatible UART (a PC COM port): [`UART_PORTS`] I/O ports
    /// from `io_base`, reached with `device_io_read` and `device_io_write`.
    Uart { io_base: u16 },
}

/// How many I/O ports a [`DeviceAddress::Uart`] has.
pub const UART_PORTS: u16 = 8;

/// The port of a `width`-byte access at `offset` into a device's `ports`
/// I/O ports from `io_base` (`device_io_read`, `device_io_write`):
/// `InvalidArgument` for a width other than 1, 2 or 4, a misaligned
/// offset, or one that reaches past them.
pub fn io_port(io_base: u16, ports: u16, offset: u16, width: u8) -> Result<u16, Error> {
    let width = u16::from(width);
    let inside = offset.checked_add(width).is_some_and(|end| end <= ports);
    if !matches!(width, 1 | 2 | 4) || !offset.is_multiple_of(width) || !inside {
        return Err(Error::InvalidArgument);
    }
    io_base.checked_add(offset).ok_or(Error::InvalidArgument)
}

/// What a device handle tells its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub address: DeviceAddress,
    /// The global system interrupt its interrupt line is routed to, if it
    /// has one.
    pub gsi: Option<u32>,
}

/// The run state of one component of the running profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentState {
    /// Its main thread runs (or waits in its main loop).
    Running,
    /// It ended and will not be started again.
    Stopped,
    /// Startup did not start it (e.g. a device its spec names is missing).
    NotStarted,
}

/// One component of the running profile, as startup sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentStatus {
    pub name: &'static str,
    pub kind: &'static str,
    pub state: ComponentState,
    /// 1 on first start, 2 after the first restart, ... (0: never started).
    pub instance: u32,
    pub restarts: u32,
    pub max_restarts: u32,
    /// Bytes its memory account holds now (its heap and what the kernel
    /// holds on its behalf), and its budget (`memory_limit_mib`).
    pub memory_used: usize,
    pub memory_limit: usize,
}

/// What `component_control` does to a component of the running profile
/// (spec privilege `control`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentAction {
    /// End it (its handles close; its clients see peer-closed) and keep it
    /// down whatever its restart policy, until a `Restart`.
    Stop,
    /// End it if it runs, then start a new instance at once (its clients
    /// get fresh connections, as after a crash).
    Restart,
}

/// Memory figures for monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Kernel heap bytes handed out and not yet returned.
    pub heap_in_use: usize,
    pub pages_free: usize,
    pub pages_total: usize,
    /// Pages handed out as DMA memory to drivers.
    pub dma_pages: usize,
    /// Pages the kernel took for good for structures it keeps once made
    /// (the heap's pages for small blocks, page tables): caches that never
    /// return to `pages_free`. A leak check compares `pages_free +
    /// pages_kept`.
    pub pages_kept: usize,
}

/// One CPU's load, for monitoring: running totals since it began taking
/// threads. Two samples give the load over the time between them
/// ([`CpuStats::busy_permille_since`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuStats {
    /// The CPU's index (0: the boot CPU).
    pub cpu: u32,
    /// Nanoseconds it ran threads other than its idle thread.
    pub busy_ns: u64,
    /// Nanoseconds it ran its idle thread (halted, or handling an
    /// interrupt that woke nothing).
    pub idle_ns: u64,
    /// How many times it switched to a thread other than its idle one.
    pub switches: u64,
    /// How many times its timer or a device's interrupt took it from a
    /// thread that could have gone on (the thread went back to the run
    /// queue).
    pub preemptions: u64,
}

impl CpuStats {
    /// The share of the time between `earlier` and `self` (two samples of
    /// the same CPU) that the CPU was busy, in thousandths; 0 when no time
    /// passed.
    pub fn busy_permille_since(&self, earlier: &CpuStats) -> u32 {
        let busy = u128::from(self.busy_ns.saturating_sub(earlier.busy_ns));
        let idle = u128::from(self.idle_ns.saturating_sub(earlier.idle_ns));
        if busy + idle == 0 {
            return 0;
        }
        // busy <= busy + idle: at most 1000.
        (busy * 1000 / (busy + idle)) as u32
    }
}
