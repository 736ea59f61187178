//! The one typed system-call table.
//!
//! [`KernelApi`] lists every call a component can make; each returns a typed
//! [`Error`]. The kernel registers its implementation once at boot with
//! [`register`]; in-kernel components then reach the kernel through a single
//! indirect call, with no privilege switch. A user-mode runtime will
//! implement the same trait with the `syscall` instruction and
//! [`crate::abi::SyscallNo`], so components are the same source either way.

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::LogLevel;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::abi::Rights;

/// The entry point of a thread started with [`KernelApi::thread_spawn`].
pub type ThreadEntry = fn(usize);

pub trait KernelApi: Sync {
    /// Writes one log line, tagged by the kernel with the calling
    /// component's name.
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>);
    /// Monotonic time since boot, in nanoseconds.
    fn time_now(&self) -> u64;

    fn handle_close(&self, handle: HandleId) -> Result<(), Error>;
    /// A new handle to the same object with `rights` (a subset of the
    /// original's). Needs [`Rights::DUPLICATE`].
    fn handle_duplicate(&self, handle: HandleId, rights: Rights) -> Result<HandleId, Error>;

    /// A connected pair of channel ends.
    fn channel_create(&self) -> Result<(HandleId, HandleId), Error>;
    /// Queues a message on the peer. Never blocks: a full peer queue is
    /// [`Error::QueueFull`]. On success the moved handles leave the caller's
    /// table; on error nothing moved.
    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error>;
    /// Takes the next message, if any. Never blocks: an empty queue is
    /// [`Error::WouldBlock`] (or [`Error::PeerClosed`] once the peer is gone).
    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error>;

    fn poll_create(&self) -> Result<HandleId, Error>;
    fn poll_add(&self, poll: HandleId, target: HandleId, interests: Readiness)
        -> Result<(), Error>;
    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error>;
    /// Blocks until one watched object is ready, and says which and how.
    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error>;

    fn timer_create(&self) -> Result<HandleId, Error>;
    /// Arms the timer to become readable `after_ns` from now (replacing any
    /// earlier deadline); reading readiness through poll disarms it.
    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error>;

    /// Starts another thread in the calling process.
    fn thread_spawn(&self, entry: ThreadEntry, arg: usize) -> Result<(), Error>;
    /// Gives the CPU to another runnable thread.
    fn thread_yield(&self);
    /// Ends the calling process: its handles close, its peers see
    /// peer-closed, and its spec's restart policy applies.
    fn process_exit(&self, code: i32) -> !;
    /// Powers the machine off with `code` as the exit status. Needs a
    /// handle to the system object (spec privilege `shutdown`).
    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error>;
}

static KERNEL: spin::Once<&'static dyn KernelApi> = spin::Once::new();

/// Installs the kernel's implementation. The kernel calls this once at boot,
/// before any component starts.
pub fn register(api: &'static dyn KernelApi) {
    KERNEL.call_once(|| api);
}

/// The registered kernel. Components reach it through the SDK's types
/// (`Channel`, `Poll`, ...) rather than directly.
#[inline(always)]
pub fn kernel() -> &'static dyn KernelApi {
    match KERNEL.get() {
        Some(k) => *k,
        None => panic!("starina: no kernel registered (syscall::register was not called)"),
    }
}
