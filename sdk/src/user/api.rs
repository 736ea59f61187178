//! [`KernelApi`] over the `syscall` instruction: what a user-mode
//! component's SDK calls, the same trait an in-kernel one reaches by a
//! function call. Slices travel as pointer and length; the kernel checks
//! and copies them (`starina::abi::user`). A driver's device registers and
//! DMA memory are mapped into the process itself; the monitoring, command
//! and control calls are in [`super::api_system`], the hypervisor's in
//! `api_vm`. Calls the kernel does not
//! offer to user mode yet answer `NotSupported`.

use super::api_system;
use super::api_vm;
use super::raw::syscall;
use super::raw::Ret;
use crate::abi::syscall::SyscallNo;
use crate::abi::user::event;
use crate::abi::user::SendReceivedWaitArgs;
use crate::abi::user::SendWaitArgs;
use crate::abi::user::UserCall;
use crate::abi::user::UserSlice;
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
use crate::syscall::DmaAllocation;
use crate::syscall::KernelApi;
use crate::syscall::ThreadMain;

/// The user-mode kernel table.
pub struct UserKernel;

/// One system call; its outputs, or the error its status names.
pub(super) fn call(no: SyscallNo, a: [u64; 6]) -> Result<[u64; 5], Error> {
    result(syscall(no.as_raw(), a))
}

fn result(r: Ret) -> Result<[u64; 5], Error> {
    match r.status {
        0 => Ok(r.out),
        raw => Err(u8::try_from(raw)
            .ok()
            .and_then(Error::from_raw)
            .unwrap_or(Error::NotSupported)),
    }
}

fn slice(s: &[u8]) -> UserSlice {
    UserSlice {
        ptr: s.as_ptr() as u64,
        len: s.len() as u64,
    }
}

fn handles(s: &[HandleId]) -> UserSlice {
    UserSlice {
        ptr: s.as_ptr() as u64,
        len: s.len() as u64,
    }
}

fn unit(r: Result<[u64; 5], Error>) -> Result<(), Error> {
    r.map(drop)
}

fn id(raw: u64) -> HandleId {
    HandleId(raw as u32)
}

/// A poll event from registers (`starina::abi::user::event`).
fn poll_event(out: [u64; 5]) -> PollEvent {
    let word = out[1];
    let received = match word & 0xff {
        event::RECV_OK => Some(Ok(RecvInfo {
            kind: (word >> 8) as u8,
            num_handles: ((word >> 16) & 0xffff) as usize,
            data_len: out[2] as usize,
        })),
        event::RECV_ERR => Some(Err(
            Error::from_raw((word >> 32) as u8).unwrap_or(Error::NotSupported)
        )),
        _ => None,
    };
    PollEvent {
        id: id(out[0] & 0xffff_ffff),
        ready: Readiness::from_bits_truncate((out[0] >> 32) as u32),
        received,
    }
}

/// The combined send-and-wait calls: the wait's own error is in `r10`.
fn send_wait_result(r: Result<[u64; 5], Error>) -> Result<Result<PollEvent, Error>, Error> {
    let out = r?;
    match out[3] {
        0 => Ok(Ok(poll_event(out))),
        raw => Ok(Err(
            Error::from_raw(raw as u8).unwrap_or(Error::NotSupported)
        )),
    }
}

fn not_supported<T>(no: SyscallNo) -> Result<T, Error> {
    call(no, [0; 6]).and(Err(Error::NotSupported))
}

impl KernelApi for UserKernel {
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>) {
        let text = alloc::format!("{args}");
        let _ = call(
            SyscallNo::Log,
            [
                level as u64,
                text.as_ptr() as u64,
                text.len() as u64,
                0,
                0,
                0,
            ],
        );
    }

    fn time_now(&self) -> u64 {
        call(SyscallNo::TimeNow, [0; 6]).map_or(0, |o| o[0])
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        unit(call(
            SyscallNo::HandleClose,
            [handle.0 as u64, 0, 0, 0, 0, 0],
        ))
    }

    fn handle_duplicate(&self, handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
        call(
            SyscallNo::HandleDuplicate,
            [handle.0 as u64, rights.bits() as u64, 0, 0, 0, 0],
        )
        .map(|o| id(o[0]))
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        call(SyscallNo::ChannelCreate, [0; 6]).map(|o| (id(o[0]), id(o[1])))
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        hs: &[HandleId],
    ) -> Result<(), Error> {
        let (d, h) = (slice(data), handles(hs));
        unit(call(
            SyscallNo::ChannelSend,
            [ch.0 as u64, kind as u64, d.ptr, d.len, h.ptr, h.len],
        ))
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        hs: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        let (d, h) = (slice(data), handles(hs));
        call(
            SyscallNo::ChannelRecv,
            [ch.0 as u64, d.ptr, d.len, h.ptr, h.len, 0],
        )
        .map(|o| RecvInfo {
            kind: o[1] as u8,
            num_handles: (o[1] >> 8) as usize,
            data_len: o[0] as usize,
        })
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        call(SyscallNo::PollCreate, [0; 6]).map(|o| id(o[0]))
    }

    fn poll_add(
        &self,
        poll: HandleId,
        target: HandleId,
        interests: Readiness,
    ) -> Result<(), Error> {
        unit(call(
            SyscallNo::PollAdd,
            [
                poll.0 as u64,
                target.0 as u64,
                interests.bits() as u64,
                0,
                0,
                0,
            ],
        ))
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        unit(call(
            SyscallNo::PollRemove,
            [poll.0 as u64, target.0 as u64, 0, 0, 0, 0],
        ))
    }

    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        call(SyscallNo::PollWait, [poll.0 as u64, 0, 0, 0, 0, 0]).map(|o| {
            (
                id(o[0] & 0xffff_ffff),
                Readiness::from_bits_truncate((o[0] >> 32) as u32),
            )
        })
    }

    fn poll_wait_recv(
        &self,
        poll: HandleId,
        data: &mut [u8],
        hs: &mut [HandleId],
    ) -> Result<PollEvent, Error> {
        let (d, h) = (slice(data), handles(hs));
        call(
            SyscallNo::PollWaitRecv,
            [poll.0 as u64, d.ptr, d.len, h.ptr, h.len, 0],
        )
        .map(poll_event)
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        call(SyscallNo::TimerCreate, [0; 6]).map(|o| id(o[0]))
    }

    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error> {
        unit(call(
            SyscallNo::TimerSet,
            [timer.0 as u64, after_ns, 0, 0, 0, 0],
        ))
    }

    fn thread_spawn(&self, main: ThreadMain) -> Result<(), Error> {
        super::thread::spawn(main)
    }

    fn thread_yield(&self) {
        let _ = call(SyscallNo::ThreadYield, [0; 6]);
    }

    fn process_exit(&self, code: i32) -> ! {
        let _ = call(SyscallNo::ProcessExit, [code as u64, 0, 0, 0, 0, 0]);
        // Not reached: the kernel ends the process. Should it return, this
        // thread at least ends.
        loop {
            let _ = syscall(UserCall::ThreadExit as u16, [0; 6]);
        }
    }

    fn process_id(&self) -> u64 {
        call(SyscallNo::ProcessId, [0; 6]).map_or(0, |o| o[0])
    }

    fn vm_create(&self, h: HandleId, ram_bytes: u64) -> Result<(HandleId, HandleId), Error> {
        api_vm::vm_create(h, ram_bytes)
    }

    fn guest_ram_read(&self, ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        api_vm::guest_ram_read(ram, gpa, buf)
    }

    fn guest_ram_write(&self, ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error> {
        api_vm::guest_ram_write(ram, gpa, data)
    }

    fn vcpu_run(&self, v: HandleId, state: &mut VcpuState, i: Injection) -> Result<VmExit, Error> {
        api_vm::vcpu_run(v, state, i)
    }

    fn vcpu_control(&self, v: HandleId, control: VcpuControl) -> Result<(), Error> {
        api_vm::vcpu_control(v, control)
    }

    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        // CPUID runs in ring 3 as well.
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    fn bootfs_file(&self, _: &str) -> Result<&'static [u8], Error> {
        not_supported(SyscallNo::BootfsFile)
    }

    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error> {
        unit(call(SyscallNo::SystemShutdown, [system.0 as u64, code as u64, 0, 0, 0, 0]))
    }

    fn device_info(&self, device: HandleId) -> Result<DeviceInfo, Error> {
        let o = call(SyscallNo::DeviceInfo, [device.0 as u64, 0, 0, 0, 0, 0])?;
        crate::abi::user::device_info::decode([o[0], o[1], o[2], o[3]]).ok_or(Error::NotSupported)
    }

    fn device_pci_config_read(&self, device: HandleId, offset: u16) -> Result<u32, Error> {
        call(
            SyscallNo::DevicePciConfigRead,
            [device.0 as u64, offset as u64, 0, 0, 0, 0],
        )
        .map(|o| o[0] as u32)
    }

    fn device_pci_config_write(&self, device: HandleId, offset: u16, value: u32) -> Result<(), Error> {
        unit(call(
            SyscallNo::DevicePciConfigWrite,
            [device.0 as u64, offset as u64, value as u64, 0, 0, 0],
        ))
    }

    /// The registers are mapped into this process (uncached), at the
    /// address returned.
    fn device_mmio_map(&self, device: HandleId, paddr: u64, len: usize) -> Result<usize, Error> {
        call(
            SyscallNo::DeviceMmioMap,
            [device.0 as u64, paddr, len as u64, 0, 0, 0],
        )
        .map(|o| o[0] as usize)
    }

    fn interrupt_create(&self, device: HandleId) -> Result<HandleId, Error> {
        call(SyscallNo::InterruptCreate, [device.0 as u64, 0, 0, 0, 0, 0]).map(|o| id(o[0]))
    }

    fn interrupt_ack(&self, interrupt: HandleId) -> Result<(), Error> {
        unit(call(SyscallNo::InterruptAck, [interrupt.0 as u64, 0, 0, 0, 0, 0]))
    }

    /// The pages are mapped into this process until the handle is freed.
    fn dma_alloc(&self, device: HandleId, pages: usize) -> Result<DmaAllocation, Error> {
        call(SyscallNo::DmaAlloc, [device.0 as u64, pages as u64, 0, 0, 0, 0]).map(|o| {
            DmaAllocation {
                handle: id(o[0]),
                paddr: o[1],
                vaddr: o[2] as usize,
            }
        })
    }

    fn dma_free(&self, dma: HandleId) -> Result<(), Error> {
        unit(call(SyscallNo::DmaFree, [dma.0 as u64, 0, 0, 0, 0, 0]))
    }

    fn dma_translate(&self, device: HandleId, vaddr: usize, len: usize) -> Result<u64, Error> {
        call(
            SyscallNo::DmaTranslate,
            [device.0 as u64, vaddr as u64, len as u64, 0, 0, 0],
        )
        .map(|o| o[0])
    }

    fn system_component_status(&self, m: HandleId, i: usize) -> Result<ComponentStatus, Error> {
        api_system::component_status(m, i)
    }

    fn system_log_read(&self, m: HandleId, from: u64, out: &mut [u8]) -> Result<(u64, usize), Error> {
        api_system::log_read(m, from, out)
    }

    fn system_memory_stats(&self, m: HandleId) -> Result<MemoryStats, Error> {
        api_system::memory_stats(m)
    }

    fn time_unix(&self) -> u64 {
        call(SyscallNo::TimeUnix, [0; 6]).map_or(0, |o| o[0])
    }

    fn host_clock(&self) -> HostClock {
        call(SyscallNo::HostClock, [0; 6]).map_or(HostClock::default(), |o| HostClock {
            tsc: o[0],
            ns: o[1],
            ns_per_tsc_fp: o[2],
            unix_ns_at_zero: o[3],
            generation: o[4],
        })
    }

    fn command_spawn(&self, s: HandleId, req: &[u8], io: [HandleId; 3]) -> Result<HandleId, Error> {
        api_system::command_spawn(s, req, io)
    }

    fn job_status(&self, job: HandleId) -> Result<Option<i32>, Error> {
        api_system::job_status(job)
    }

    fn job_kill(&self, job: HandleId) -> Result<(), Error> {
        api_system::job_kill(job)
    }

    fn component_control(&self, c: HandleId, name: &str, a: ComponentAction) -> Result<(), Error> {
        api_system::component_control(c, name, a)
    }

    fn console_read(&self, console: HandleId, out: &mut [u8]) -> Result<usize, Error> {
        api_system::console_read(console, out)
    }

    fn console_write(&self, console: HandleId, data: &[u8]) -> Result<usize, Error> {
        api_system::console_write(console, data)
    }

    fn command_name(&self, s: HandleId, index: usize) -> Result<&'static str, Error> {
        api_system::command_name(s, index)
    }

    #[allow(clippy::too_many_arguments)]
    fn channel_send_poll_wait_recv(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        hs: &[HandleId],
        poll: HandleId,
        buf: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<Result<PollEvent, Error>, Error> {
        let args = SendWaitArgs {
            ch: ch.0,
            kind,
            poll: poll.0,
            data: slice(data),
            handles: handles(hs),
            buf: slice(buf),
            handle_buf: handles(handle_buf),
        };
        let at = &args as *const SendWaitArgs as u64;
        send_wait_result(call(
            SyscallNo::ChannelSendPollWaitRecv,
            [at, 0, 0, 0, 0, 0],
        ))
    }

    fn channel_send_received_poll_wait_recv(
        &self,
        ch: HandleId,
        kind: u8,
        range: core::ops::Range<usize>,
        poll: HandleId,
        buf: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<Result<PollEvent, Error>, Error> {
        let args = SendReceivedWaitArgs {
            ch: ch.0,
            kind,
            poll: poll.0,
            start: range.start as u64,
            end: range.end as u64,
            buf: slice(buf),
            handle_buf: handles(handle_buf),
        };
        let at = &args as *const SendReceivedWaitArgs as u64;
        send_wait_result(call(
            SyscallNo::ChannelSendReceivedPollWaitRecv,
            [at, 0, 0, 0, 0, 0],
        ))
    }

    fn device_io_read(&self, device: HandleId, offset: u16, width: u8) -> Result<u32, Error> {
        call(
            SyscallNo::DeviceIoRead,
            [device.0 as u64, offset as u64, width as u64, 0, 0, 0],
        )
        .map(|o| o[0] as u32)
    }

    fn device_io_write(&self, device: HandleId, offset: u16, width: u8, value: u32) -> Result<(), Error> {
        unit(call(
            SyscallNo::DeviceIoWrite,
            [device.0 as u64, offset as u64, width as u64, value as u64, 0, 0],
        ))
    }

    fn system_cpu_stats(&self, m: HandleId, index: usize) -> Result<CpuStats, Error> {
        api_system::cpu_stats(m, index)
    }

    fn thread_pin(&self, cpu: Option<usize>) -> Result<(), Error> {
        // `rdi` = 1 and `rsi` = the CPU to pin, `rdi` = 0 to unpin (every
        // CPU number, `usize::MAX` too, must reach the kernel's check).
        let (pin, at) = cpu.map_or((0, 0), |c| (1, c as u64));
        unit(call(SyscallNo::ThreadPin, [pin, at, 0, 0, 0, 0]))
    }

    fn vcpu_create(&self, ram: HandleId) -> Result<HandleId, Error> {
        api_vm::vcpu_create(ram)
    }
}
