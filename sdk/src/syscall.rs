//! The one typed system-call table.
//!
//! [`KernelApi`] lists every call a component can make; each returns a typed
//! [`Error`]. The kernel registers its implementation once at boot with
//! [`register`]; in-kernel components then reach the kernel through a single
//! indirect call, with no privilege switch. A user-mode runtime will
//! implement the same trait with the `syscall` instruction and
//! [`crate::abi::syscall::SyscallNo`] (checked against this trait by a unit
//! test), so components are the same source either way.
//!
//! Components do not call the table directly ([`kernel`] is crate-private):
//! they use the SDK's types (`Channel`, `Poll`, `DmaBuffer`, ...), which is
//! where ownership of handles and memory is enforced. The one exception is
//! the system-call fuzzer, through [`raw`] (feature `raw-syscalls`).

use alloc::boxed::Box;

use crate::abi::vcpu::HostClock;
use crate::abi::vcpu::Injection;
use crate::abi::vcpu::VcpuControl;
use crate::abi::vcpu::VcpuState;
use crate::abi::vcpu::VmExit;
use crate::abi::ComponentAction;
use crate::abi::ComponentStatus;
use crate::abi::CpuStats;
use crate::abi::DeviceInfo;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::LogLevel;
use crate::abi::MemoryStats;
use crate::abi::PollEvent;
use crate::abi::Readiness;
use crate::abi::RecvInfo;
use crate::abi::Rights;

/// What a thread started with [`KernelApi::thread_spawn`] runs.
pub type ThreadMain = Box<dyn FnOnce() + Send + 'static>;

/// A DMA allocation: the handle that owns it (closing it frees the pages)
/// and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaAllocation {
    pub handle: HandleId,
    /// The address the device uses.
    pub paddr: u64,
    /// Where the calling process reaches it.
    pub vaddr: usize,
}

pub trait KernelApi: Sync {
    /// Writes one log line, tagged by the kernel with the calling
    /// component's name.
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>);
    /// Monotonic time since boot, in nanoseconds.
    fn time_now(&self) -> u64;

    /// Closes a handle. DMA handles are closed with [`KernelApi::dma_free`].
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
    /// [`KernelApi::poll_wait`], and if the ready object is a channel that
    /// is readable (and the handle may receive), [`KernelApi::channel_recv`]
    /// from it into `data` and `handles` in the same call: a main loop
    /// makes one call per message.
    fn poll_wait_recv(
        &self,
        poll: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<PollEvent, Error>;

    fn timer_create(&self) -> Result<HandleId, Error>;
    /// Arms the timer to become readable `after_ns` from now (replacing any
    /// earlier deadline); reading readiness through poll disarms it.
    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error>;

    /// Starts another thread in the calling process, running `main`.
    fn thread_spawn(&self, main: ThreadMain) -> Result<(), Error>;
    /// Gives the CPU to another runnable thread.
    fn thread_yield(&self);
    /// Ends the calling process: its handles close, its peers see
    /// peer-closed, and its spec's restart policy applies.
    fn process_exit(&self, code: i32) -> !;
    /// The calling process's id: unique for the life of the system (a
    /// restarted component is a new process).
    fn process_id(&self) -> u64;

    // Hypervisor calls (see `crate::hypervisor`), for holders of the
    // `hypervisor` privilege.

    /// Creates a guest: RAM of `ram_bytes` and one vCPU. Returns (guest RAM,
    /// vCPU) handles.
    fn vm_create(
        &self,
        hypervisor: HandleId,
        ram_bytes: u64,
    ) -> Result<(HandleId, HandleId), Error>;
    /// Copies guest RAM at `gpa` into `buf`.
    fn guest_ram_read(&self, ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Copies `data` into guest RAM at `gpa`.
    fn guest_ram_write(&self, ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error>;
    /// Runs the vCPU from `state` until an exit the VMM must handle.
    fn vcpu_run(
        &self,
        vcpu: HandleId,
        state: &mut VcpuState,
        inject: Injection,
    ) -> Result<VmExit, Error>;
    /// Sets a vCPU register that is not part of `VcpuState`.
    fn vcpu_control(&self, vcpu: HandleId, control: VcpuControl) -> Result<(), Error>;
    /// The host CPU's CPUID leaf (EAX, EBX, ECX, EDX).
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// A file the boot loader passed in (the boot file system), read-only
    /// for the life of the system. `NotFound` if there is no such file.
    fn bootfs_file(&self, name: &str) -> Result<&'static [u8], Error>;
    /// Powers the machine off with `code` as the exit status. Needs a
    /// handle to the system object (spec privilege `shutdown`).
    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error>;

    // Driver calls (see `crate::driver`). A device handle comes from the
    // spec's `[devices]`; DMA memory, address translation and MMIO mappings
    // all need one.

    /// Where the device sits and which interrupt it raises.
    fn device_info(&self, device: HandleId) -> Result<DeviceInfo, Error>;
    /// Reads a 32-bit register of the device's PCI configuration space
    /// (`offset` 4-byte aligned, below 256). Only for PCI devices.
    fn device_pci_config_read(&self, device: HandleId, offset: u16) -> Result<u32, Error>;
    /// Writes a 32-bit register of the device's PCI configuration space.
    /// BAR registers are read-only here (the kernel owns address assignment).
    fn device_pci_config_write(
        &self,
        device: HandleId,
        offset: u16,
        value: u32,
    ) -> Result<(), Error>;
    /// Maps `len` bytes of device memory at physical `paddr` and returns
    /// its virtual address. The range must lie inside one memory region
    /// (BAR, MMIO window) of `device`.
    fn device_mmio_map(&self, device: HandleId, paddr: u64, len: usize) -> Result<usize, Error>;
    /// An interrupt object for the device's interrupt line: readable through
    /// poll when the device interrupts. The line stays masked from then on
    /// until [`KernelApi::interrupt_ack`].
    fn interrupt_create(&self, device: HandleId) -> Result<HandleId, Error>;
    /// Clears the pending state and unmasks the line (after the driver made
    /// the device lower it).
    fn interrupt_ack(&self, interrupt: HandleId) -> Result<(), Error>;
    /// Allocates `pages` physically contiguous, zeroed 4 KiB pages for
    /// `device`, owned by a new DMA handle (neither transferable nor
    /// duplicable). [`KernelApi::dma_free`] frees them; so does the end of
    /// the process, after its devices were quiesced.
    fn dma_alloc(&self, device: HandleId, pages: usize) -> Result<DmaAllocation, Error>;
    /// Closes a DMA handle, freeing its pages. The only way to close one
    /// ([`KernelApi::handle_close`] refuses DMA handles), so a forged
    /// `OwnedHandle` cannot free memory a `DmaBuffer` still hands out.
    fn dma_free(&self, dma: HandleId) -> Result<(), Error>;
    /// The physical address of `len` bytes at `vaddr`, for `device`, if they
    /// are physically contiguous (heap memory is; thread stacks are not:
    /// [`Error::NotSupported`]).
    fn dma_translate(&self, device: HandleId, vaddr: usize, len: usize) -> Result<u64, Error>;

    // Monitoring calls (spec privilege `monitor`).

    /// The `index`-th component of the running profile ([`Error::NotFound`]
    /// past the last).
    fn system_component_status(
        &self,
        monitor: HandleId,
        index: usize,
    ) -> Result<ComponentStatus, Error>;
    /// Copies log text from the kernel's log ring, starting at byte
    /// sequence number `from` (0 = the oldest still kept), into `out`.
    /// Returns (sequence number of the first byte copied, bytes copied);
    /// whole lines only.
    fn system_log_read(
        &self,
        monitor: HandleId,
        from: u64,
        out: &mut [u8],
    ) -> Result<(u64, usize), Error>;
    fn system_memory_stats(&self, monitor: HandleId) -> Result<MemoryStats, Error>;

    /// The wall clock: nanoseconds since 1970-01-01 UTC (the machine's
    /// RTC at boot plus the monotonic clock since).
    fn time_unix(&self) -> u64;
    /// The clock's parameters (TSC rate and epoch, wall-clock offset), for
    /// a VMM's paravirtual guest clock.
    fn host_clock(&self) -> HostClock;

    // Commands (spec privilege `spawn`) and component control (`control`).

    /// Starts a fresh instance of the command `request` names
    /// ([`crate::command::Request`], encoded), with `stdio` (stdin, stdout,
    /// stderr: channel handles of the caller, moved to the command). Returns
    /// a job handle: READABLE once the command has ended.
    fn command_spawn(
        &self,
        spawner: HandleId,
        request: &[u8],
        stdio: [HandleId; 3],
    ) -> Result<HandleId, Error>;
    /// The job's exit status once its command has ended (`None` before).
    fn job_status(&self, job: HandleId) -> Result<Option<i32>, Error>;
    /// Ends the job's command now (its status becomes 137, as SIGKILL's);
    /// nothing happens if it has already ended.
    fn job_kill(&self, job: HandleId) -> Result<(), Error>;
    /// Stops or restarts the component of the running profile named `name`.
    fn component_control(
        &self,
        control: HandleId,
        name: &str,
        action: ComponentAction,
    ) -> Result<(), Error>;

    // Console calls (spec privilege `console`; see `crate::console`).

    /// Takes up to `buf.len()` bytes typed on the serial console. Never
    /// blocks: [`Error::WouldBlock`] when none are waiting (poll the
    /// console for READABLE). An empty `buf` is [`Error::InvalidArgument`].
    fn console_read(&self, console: HandleId, buf: &mut [u8]) -> Result<usize, Error>;
    /// Writes raw bytes (no newline translation) to the serial console,
    /// never inside a kernel log line; returns how many it took (at most
    /// [`crate::abi::CONSOLE_WRITE_MAX`]).
    fn console_write(&self, console: HandleId, data: &[u8]) -> Result<usize, Error>;
    /// The `index`-th name a command answers to, in name order
    /// ([`Error::NotFound`] past the last).
    fn command_name(&self, spawner: HandleId, index: usize) -> Result<&'static str, Error>;

    /// [`KernelApi::channel_send`] on `ch`, then [`KernelApi::poll_wait_recv`]
    /// on `poll`, in one call: a client sending a request and waiting for
    /// the answer, a main loop replying and waiting for the next message.
    /// If the message went straight into the buffer of a thread waiting for
    /// it, that thread runs at once, on the rest of the caller's time slice.
    /// The outer error is the send's (nothing was sent, nothing waited);
    /// the inner result is the wait's (the message was sent).
    #[allow(clippy::too_many_arguments)]
    fn channel_send_poll_wait_recv(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
        poll: HandleId,
        buf: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<Result<PollEvent, Error>, Error> {
        self.channel_send(ch, kind, data, handles)?;
        Ok(self.poll_wait_recv(poll, buf, handle_buf))
    }

    /// [`KernelApi::channel_send_poll_wait_recv`] sending bytes `range` of
    /// `buf`, with no handles: a loop answering with (part of) the message
    /// it just received into `buf`, with no copy of the answer of its own.
    /// The send has read them before the wait receives into `buf`.
    /// [`Error::InvalidArgument`] if `range` is not inside `buf`.
    fn channel_send_received_poll_wait_recv(
        &self,
        ch: HandleId,
        kind: u8,
        range: core::ops::Range<usize>,
        poll: HandleId,
        buf: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<Result<PollEvent, Error>, Error> {
        let data = buf.get(range).ok_or(Error::InvalidArgument)?;
        self.channel_send(ch, kind, data, &[])?;
        Ok(self.poll_wait_recv(poll, buf, handle_buf))
    }

    /// Reads `width` bytes (1, 2 or 4) from the device's I/O port at
    /// `offset` from its first one. Only for devices with I/O ports (a
    /// UART); `InvalidArgument` for a width or range outside them.
    fn device_io_read(&self, device: HandleId, offset: u16, width: u8) -> Result<u32, Error>;
    /// Writes the low `width` bytes of `value` to the device's I/O port at
    /// `offset`, as [`KernelApi::device_io_read`] reads.
    fn device_io_write(
        &self,
        device: HandleId,
        offset: u16,
        width: u8,
        value: u32,
    ) -> Result<(), Error>;
    /// The load of the CPU at `index` (spec privilege `monitor`;
    /// [`Error::NotFound`] past the last online CPU): its busy and idle
    /// time and its switches since it began taking threads (all zero
    /// before). Does not block.
    fn system_cpu_stats(&self, monitor: HandleId, index: usize) -> Result<CpuStats, Error>;
    /// Runs the calling thread on CPU `cpu` only from now on, or on any
    /// CPU (`None`); returns once it runs where it may. A CPU that does
    /// not take threads on this machine is [`Error::InvalidArgument`] (the
    /// thread stays as it was). Threads a component starts run where its
    /// spec's `cpu` says, or anywhere.
    fn thread_pin(&self, cpu: Option<usize>) -> Result<(), Error>;
    /// Adds a vCPU to the guest whose RAM is `ram` (needs its write
    /// right): the guest's next CPU, on the host CPU the kernel picks for
    /// it. The calling thread is pinned to that CPU: the one that runs
    /// the new vCPU calls it.
    fn vcpu_create(&self, ram: HandleId) -> Result<HandleId, Error>;
}

static KERNEL: spin::Once<&'static dyn KernelApi> = spin::Once::new();

/// Installs the kernel's implementation. The kernel calls this once at boot,
/// before any component starts.
pub fn register(api: &'static dyn KernelApi) {
    KERNEL.call_once(|| api);
}

/// The raw table, for the in-OS system-call fuzzer (`apps/sysfuzz`) only:
/// it calls every method with arbitrary handle numbers, sizes and offsets.
///
/// Behind the `raw-syscalls` feature because it bypasses what the SDK's
/// types enforce. Within the calling process it can free memory a safe type
/// still hands out (`dma_free` on a `DmaBuffer`'s handle), so a component
/// that uses it must hold no `DmaBuffer` and no MMIO mapping of the SDK's.
/// Other processes are out of its reach: handle numbers are per process.
#[cfg(feature = "raw-syscalls")]
pub fn raw() -> &'static dyn KernelApi {
    kernel()
}

/// The registered kernel. Only the SDK's types reach it: components use
/// those (`Channel`, `Poll`, `DmaBuffer`, ...).
#[inline(always)]
pub(crate) fn kernel() -> &'static dyn KernelApi {
    match KERNEL.get() {
        Some(k) => *k,
        None => panic!("starina: no kernel registered (syscall::register was not called)"),
    }
}

#[cfg(test)]
mod tests {
    use crate::abi::syscall::SyscallNo;

    /// The method names of `KernelApi`, in order, read from this file.
    fn trait_methods() -> alloc::vec::Vec<&'static str> {
        let source = include_str!("syscall.rs");
        let start = source.find("pub trait KernelApi").expect("trait not found");
        let body = &source[start..];
        let end = body.find("\n}\n").expect("trait end not found");
        body[..end]
            .lines()
            .filter_map(|l| l.strip_prefix("    fn "))
            .map(|l| &l[..l.find(['(', '<']).expect("method without arguments")])
            .collect()
    }

    #[test]
    fn call_numbers_match_the_trait() {
        let methods = trait_methods();
        let numbered: alloc::vec::Vec<&str> = SyscallNo::ALL.iter().map(|n| n.name()).collect();
        assert_eq!(methods, numbered, "KernelApi and SyscallNo disagree");
    }
}
