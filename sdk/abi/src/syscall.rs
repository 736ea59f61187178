//! System-call numbers: one per method of the SDK's `KernelApi`, in the
//! trait's order. User-mode components will reach the kernel through the
//! `syscall` instruction with these; in-kernel components call the same
//! implementation directly. The SDK's unit tests check this list against
//! the trait (same calls, same order), so it cannot go stale.

/// A system call's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum SyscallNo {
    Log = 1,
    TimeNow = 2,
    HandleClose = 3,
    HandleDuplicate = 4,
    ChannelCreate = 5,
    ChannelSend = 6,
    ChannelRecv = 7,
    PollCreate = 8,
    PollAdd = 9,
    PollRemove = 10,
    PollWait = 11,
    PollWaitRecv = 12,
    TimerCreate = 13,
    TimerSet = 14,
    ThreadSpawn = 15,
    ThreadYield = 16,
    ProcessExit = 17,
    ProcessId = 18,
    VmCreate = 19,
    GuestRamRead = 20,
    GuestRamWrite = 21,
    VcpuRun = 22,
    VcpuControl = 23,
    HostCpuid = 24,
    BootfsFile = 25,
    SystemShutdown = 26,
    DeviceInfo = 27,
    DevicePciConfigRead = 28,
    DevicePciConfigWrite = 29,
    DeviceMmioMap = 30,
    InterruptCreate = 31,
    InterruptAck = 32,
    DmaAlloc = 33,
    DmaFree = 34,
    DmaTranslate = 35,
    SystemComponentStatus = 36,
    SystemLogRead = 37,
    SystemMemoryStats = 38,
    TimeUnix = 39,
    HostClock = 40,
    CommandSpawn = 41,
    JobStatus = 42,
    JobKill = 43,
    ComponentControl = 44,
    ConsoleRead = 45,
    ConsoleWrite = 46,
    CommandName = 47,
    ChannelSendPollWaitRecv = 48,
    ChannelSendReceivedPollWaitRecv = 49,
    DeviceIoRead = 50,
    DeviceIoWrite = 51,
    SystemCpuStats = 52,
    ThreadPin = 53,
    VcpuCreate = 54,
}

impl SyscallNo {
    /// Every call, in number order.
    pub const ALL: [SyscallNo; 54] = [
        SyscallNo::Log,
        SyscallNo::TimeNow,
        SyscallNo::HandleClose,
        SyscallNo::HandleDuplicate,
        SyscallNo::ChannelCreate,
        SyscallNo::ChannelSend,
        SyscallNo::ChannelRecv,
        SyscallNo::PollCreate,
        SyscallNo::PollAdd,
        SyscallNo::PollRemove,
        SyscallNo::PollWait,
        SyscallNo::PollWaitRecv,
        SyscallNo::TimerCreate,
        SyscallNo::TimerSet,
        SyscallNo::ThreadSpawn,
        SyscallNo::ThreadYield,
        SyscallNo::ProcessExit,
        SyscallNo::ProcessId,
        SyscallNo::VmCreate,
        SyscallNo::GuestRamRead,
        SyscallNo::GuestRamWrite,
        SyscallNo::VcpuRun,
        SyscallNo::VcpuControl,
        SyscallNo::HostCpuid,
        SyscallNo::BootfsFile,
        SyscallNo::SystemShutdown,
        SyscallNo::DeviceInfo,
        SyscallNo::DevicePciConfigRead,
        SyscallNo::DevicePciConfigWrite,
        SyscallNo::DeviceMmioMap,
        SyscallNo::InterruptCreate,
        SyscallNo::InterruptAck,
        SyscallNo::DmaAlloc,
        SyscallNo::DmaFree,
        SyscallNo::DmaTranslate,
        SyscallNo::SystemComponentStatus,
        SyscallNo::SystemLogRead,
        SyscallNo::SystemMemoryStats,
        SyscallNo::TimeUnix,
        SyscallNo::HostClock,
        SyscallNo::CommandSpawn,
        SyscallNo::JobStatus,
        SyscallNo::JobKill,
        SyscallNo::ComponentControl,
        SyscallNo::ConsoleRead,
        SyscallNo::ConsoleWrite,
        SyscallNo::CommandName,
        SyscallNo::ChannelSendPollWaitRecv,
        SyscallNo::ChannelSendReceivedPollWaitRecv,
        SyscallNo::DeviceIoRead,
        SyscallNo::DeviceIoWrite,
        SyscallNo::SystemCpuStats,
        SyscallNo::ThreadPin,
        SyscallNo::VcpuCreate,
    ];

    pub fn as_raw(self) -> u16 {
        self as u16
    }

    pub fn from_raw(raw: u16) -> Option<SyscallNo> {
        let index = usize::from(raw).checked_sub(1)?;
        SyscallNo::ALL.get(index).copied()
    }

    /// The `KernelApi` method's name.
    pub fn name(self) -> &'static str {
        match self {
            SyscallNo::Log => "log",
            SyscallNo::TimeNow => "time_now",
            SyscallNo::HandleClose => "handle_close",
            SyscallNo::HandleDuplicate => "handle_duplicate",
            SyscallNo::ChannelCreate => "channel_create",
            SyscallNo::ChannelSend => "channel_send",
            SyscallNo::ChannelRecv => "channel_recv",
            SyscallNo::PollCreate => "poll_create",
            SyscallNo::PollAdd => "poll_add",
            SyscallNo::PollRemove => "poll_remove",
            SyscallNo::PollWait => "poll_wait",
            SyscallNo::PollWaitRecv => "poll_wait_recv",
            SyscallNo::TimerCreate => "timer_create",
            SyscallNo::TimerSet => "timer_set",
            SyscallNo::ThreadSpawn => "thread_spawn",
            SyscallNo::ThreadYield => "thread_yield",
            SyscallNo::ProcessExit => "process_exit",
            SyscallNo::ProcessId => "process_id",
            SyscallNo::VmCreate => "vm_create",
            SyscallNo::GuestRamRead => "guest_ram_read",
            SyscallNo::GuestRamWrite => "guest_ram_write",
            SyscallNo::VcpuRun => "vcpu_run",
            SyscallNo::VcpuControl => "vcpu_control",
            SyscallNo::HostCpuid => "host_cpuid",
            SyscallNo::BootfsFile => "bootfs_file",
            SyscallNo::SystemShutdown => "system_shutdown",
            SyscallNo::DeviceInfo => "device_info",
            SyscallNo::DevicePciConfigRead => "device_pci_config_read",
            SyscallNo::DevicePciConfigWrite => "device_pci_config_write",
            SyscallNo::DeviceMmioMap => "device_mmio_map",
            SyscallNo::InterruptCreate => "interrupt_create",
            SyscallNo::InterruptAck => "interrupt_ack",
            SyscallNo::DmaAlloc => "dma_alloc",
            SyscallNo::DmaFree => "dma_free",
            SyscallNo::DmaTranslate => "dma_translate",
            SyscallNo::SystemComponentStatus => "system_component_status",
            SyscallNo::SystemLogRead => "system_log_read",
            SyscallNo::SystemMemoryStats => "system_memory_stats",
            SyscallNo::TimeUnix => "time_unix",
            SyscallNo::HostClock => "host_clock",
            SyscallNo::CommandSpawn => "command_spawn",
            SyscallNo::JobStatus => "job_status",
            SyscallNo::JobKill => "job_kill",
            SyscallNo::ComponentControl => "component_control",
            SyscallNo::ConsoleRead => "console_read",
            SyscallNo::ConsoleWrite => "console_write",
            SyscallNo::CommandName => "command_name",
            SyscallNo::ChannelSendPollWaitRecv => "channel_send_poll_wait_recv",
            SyscallNo::ChannelSendReceivedPollWaitRecv => "channel_send_received_poll_wait_recv",
            SyscallNo::DeviceIoRead => "device_io_read",
            SyscallNo::DeviceIoWrite => "device_io_write",
            SyscallNo::SystemCpuStats => "system_cpu_stats",
            SyscallNo::ThreadPin => "thread_pin",
            SyscallNo::VcpuCreate => "vcpu_create",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_positions() {
        for (i, &no) in SyscallNo::ALL.iter().enumerate() {
            assert_eq!(no.as_raw() as usize, i + 1, "{no:?}");
            assert_eq!(SyscallNo::from_raw(no.as_raw()), Some(no));
        }
        assert_eq!(SyscallNo::from_raw(0), None);
        assert_eq!(SyscallNo::from_raw(SyscallNo::ALL.len() as u16 + 1), None);
    }
}
