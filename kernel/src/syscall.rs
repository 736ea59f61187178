//! The kernel side of the system-call table: [`starina::syscall::KernelApi`]
//! implemented once, each call in its method (helpers below it where a call
//! needs more than a screen). Every handle is looked up with
//! `HandleTable::get::<T>(id, RIGHTS)`, the rights each call needs are the
//! constants in [`rights`], and a bad request is an error returned, never a
//! panic.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::vcpu::HostClock;
use starina::abi::vcpu::Injection;
use starina::abi::vcpu::VcpuControl;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;
use starina::abi::ComponentAction;
use starina::abi::ComponentStatus;
use starina::abi::CpuStats;
use starina::abi::DeviceInfo;
use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::LogLevel;
use starina::abi::MemoryStats;
use starina::abi::PollEvent;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::abi::Rights;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::syscall::DmaAllocation;
use starina::syscall::KernelApi;
use starina::syscall::ThreadMain;

use crate::handle::Handle;
use crate::handle::HandleTable;
use crate::handle::Object;
use crate::object::channel::Channel;
use crate::object::channel::ChannelMessage;
use crate::object::console::Console;
use crate::object::device::DeviceObject;
use crate::object::dma::DmaMemory;
use crate::object::interrupt::Interrupt;
use crate::object::job::Job;
use crate::object::poll::Poll;
use crate::object::poll::Waited;
use crate::object::rendezvous::Handed;
use crate::object::rendezvous::Mailbox;
use crate::object::rendezvous::RecvSlot;
use crate::object::system::SystemRight;
use crate::object::timer::Timer;
use crate::object::vm::GuestRam;
use crate::object::vm::Vcpu;
use crate::process::ExitReason;
use crate::sched;
use crate::sync::SpinLockGuard;

/// The rights each call needs on the handle it names: the one table of
/// them. (System objects carry no rights; which privilege one grants is
/// checked by `HandleTable::privilege`.)
pub mod rights {
    use starina::abi::Rights;

    pub const HANDLE_DUPLICATE: Rights = Rights::DUPLICATE;
    /// On each handle a message moves.
    pub const CHANNEL_SEND_MOVED: Rights = Rights::TRANSFER;
    pub const CHANNEL_SEND: Rights = Rights::WRITE;
    pub const CHANNEL_RECV: Rights = Rights::READ;
    pub const POLL_ADD: Rights = Rights::WRITE;
    /// On the object a poll is to watch.
    pub const POLL_ADD_TARGET: Rights = Rights::POLL;
    pub const POLL_REMOVE: Rights = Rights::WRITE;
    pub const POLL_WAIT: Rights = Rights::READ;
    pub const TIMER_SET: Rights = Rights::WRITE;
    pub const GUEST_RAM_READ: Rights = Rights::READ;
    pub const GUEST_RAM_WRITE: Rights = Rights::WRITE;
    pub const VCPU_RUN: Rights = Rights::WRITE;
    pub const VCPU_CONTROL: Rights = Rights::WRITE;
    pub const DEVICE_INFO: Rights = Rights::READ;
    pub const DEVICE_PCI_CONFIG_READ: Rights = Rights::READ;
    pub const DEVICE_PCI_CONFIG_WRITE: Rights = Rights::WRITE;
    pub const DEVICE_MMIO_MAP: Rights = Rights::WRITE;
    pub const DEVICE_IO_READ: Rights = Rights::READ;
    pub const DEVICE_IO_WRITE: Rights = Rights::WRITE;
    pub const INTERRUPT_CREATE: Rights = Rights::READ;
    pub const INTERRUPT_ACK: Rights = Rights::WRITE;
    pub const DMA_ALLOC: Rights = Rights::WRITE;
    pub const DMA_FREE: Rights = Rights::WRITE;
    pub const DMA_TRANSLATE: Rights = Rights::WRITE;
    pub const CONSOLE_READ: Rights = Rights::READ;
    pub const CONSOLE_WRITE: Rights = Rights::WRITE;

    /// What a new DMA handle carries: usable, but never moved or copied,
    /// so the one `DmaBuffer` that holds it owns the memory.
    pub const DMA_HANDLE: Rights = Rights::READ.union(Rights::WRITE);
    /// What a new interrupt handle carries (not transferable: the line
    /// stays with its driver).
    pub const INTERRUPT_HANDLE: Rights = Rights::READ.union(Rights::WRITE).union(Rights::POLL);
}

/// `OverBudget` once the calling component's memory budget is spent, and
/// `OutOfMemory` once free memory is down to half the kernel's reserve
/// (budgets may add up to more than the machine has): the start of every
/// call that allocates kernel memory on its behalf. What the call then
/// allocates is charged, never refused (see `crate::account`).
pub(crate) fn within_budget() -> Result<(), Error> {
    if crate::mm::page::free_count() < crate::mm::heap::RESERVE_PAGES / 2 {
        return Err(Error::OutOfMemory);
    }
    crate::account::check(sched::current_process().account)
}

/// The calling process's handle table.
pub(crate) fn table() -> SpinLockGuard<'static, HandleTable> {
    sched::current_process().handles.lock()
}

/// The object of type `T` that `id` names in the caller's table, with `rights`.
pub(crate) fn object<T: crate::handle::KernelObject>(id: HandleId, rights: Rights) -> Result<Arc<T>, Error> {
    table().get::<T>(id, rights).cloned()
}

/// Inserts a new object's handle into the caller's table.
pub(crate) fn insert(object: Object, rights: Rights) -> Result<HandleId, Error> {
    table().insert(Handle::new(object, rights))
}

/// Inserts two handles, or neither.
fn insert_pair(a: Handle, b: Handle) -> Result<(HandleId, HandleId), Error> {
    let mut table = table();
    if table.room() < 2 {
        return Err(Error::HandleTableFull);
    }
    let ha = table.insert(a)?;
    match table.insert(b) {
        Ok(hb) => Ok((ha, hb)),
        Err(e) => {
            let _ = table.remove(ha);
            Err(e)
        }
    }
}

/// The table in-kernel components call through.
pub struct Kernel;

pub static KERNEL: Kernel = Kernel;

impl KernelApi for Kernel {
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>) {
        sched::in_kernel(|| {
            let level = match level {
                LogLevel::Error => log::Level::Error,
                LogLevel::Warn => log::Level::Warn,
                LogLevel::Info => log::Level::Info,
                LogLevel::Debug => log::Level::Debug,
                LogLevel::Trace => log::Level::Trace,
            };
            crate::klog::write_line(level, sched::current_process().name, args);
        })
    }

    fn time_now(&self) -> u64 {
        sched::in_kernel(crate::arch::time::now_ns)
    }

    fn time_unix(&self) -> u64 {
        sched::in_kernel(crate::arch::rtc::unix_ns)
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        sched::in_kernel(|| {
            close(handle, |table| {
                if table.handle(handle)?.object.is_dma() {
                    // Only `dma_free` (the owning `DmaBuffer`) frees DMA memory.
                    return Err(Error::WrongObjectType);
                }
                Ok(())
            })
        })
    }

    fn handle_duplicate(&self, handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
        sched::in_kernel(|| {
            within_budget()?;
            let mut table = table();
            let h = table.handle(handle)?;
            h.require(rights::HANDLE_DUPLICATE)?;
            if !h.rights.contains(rights) {
                // A copy can only have fewer rights.
                return Err(Error::MissingRight);
            }
            let copy = Handle::new(h.object.clone(), rights);
            table.insert(copy)
        })
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        sched::in_kernel(|| {
            within_budget()?;
            let (a, b) = Channel::new_pair();
            insert_pair(
                Handle::new(Object::Channel(a), Rights::DEFAULT),
                Handle::new(Object::Channel(b), Rights::DEFAULT),
            )
        })
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        sched::in_kernel(|| {
            if let Some(handed) = send(table(), ch, kind, data, handles)? {
                handed.wake();
            }
            Ok(())
        })
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        sched::in_kernel(|| {
            let table = table();
            let channel = table.get::<Channel>(ch, rights::CHANNEL_RECV)?.clone();
            recv_into(&channel, table, data, handle_buf)
        })
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        sched::in_kernel(|| {
            within_budget()?;
            insert(Object::Poll(Poll::new()), Rights::DEFAULT)
        })
    }

    fn poll_add(
        &self,
        poll: HandleId,
        target: HandleId,
        interests: Readiness,
    ) -> Result<(), Error> {
        sched::in_kernel(|| {
            within_budget()?;
            let (poll, object, receiver) = {
                let table = table();
                let poll = table.get::<Poll>(poll, rights::POLL_ADD)?.clone();
                let h = table.handle(target)?;
                let object = h.object.as_pollable().ok_or(Error::WrongObjectType)?;
                h.require(rights::POLL_ADD_TARGET)?;
                let receiver = match &h.object {
                    Object::Channel(c) if h.require(rights::CHANNEL_RECV).is_ok() => {
                        Some(c.clone())
                    }
                    _ => None,
                };
                (poll, object, receiver)
            };
            poll.add(sched::current_process().id, target, object, interests, receiver)
        })
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        sched::in_kernel(|| object::<Poll>(poll, rights::POLL_REMOVE)?.remove(target))
    }

    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        sched::in_kernel(
            || match wait(&object::<Poll>(poll, rights::POLL_WAIT)?, None, None)? {
                Waited::Ready(ready) => Ok((ready.id, ready.readiness)),
                // Without a slot, nothing is delivered.
                Waited::Delivered { id, .. } => Ok((id, Readiness::READABLE)),
            },
        )
    }

    fn poll_wait_recv(
        &self,
        poll: HandleId,
        data: &mut [u8],
        handle_buf: &mut [HandleId],
    ) -> Result<PollEvent, Error> {
        sched::in_kernel(|| {
            let poll = object::<Poll>(poll, rights::POLL_WAIT)?;
            wait_recv(&poll, data, handle_buf, None)
        })
    }

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
        sched::in_kernel(|| {
            // A bad poll fails the call before anything is sent; one lock
            // of the table for both.
            let table = table();
            let poll = table.get::<Poll>(poll, rights::POLL_WAIT)?.clone();
            let handed = send(table, ch, kind, data, handles)?;
            Ok(wait_recv(&poll, buf, handle_buf, handed))
        })
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
        sched::in_kernel(|| {
            let table = table();
            let poll = table.get::<Poll>(poll, rights::POLL_WAIT)?.clone();
            let data = buf.get(range).ok_or(Error::InvalidArgument)?;
            // The send copies the bytes out (into the receiver or a queued
            // message) before the wait receives into `buf`.
            let handed = send(table, ch, kind, data, &[])?;
            Ok(wait_recv(&poll, buf, handle_buf, handed))
        })
    }

    fn device_io_read(&self, device: HandleId, offset: u16, width: u8) -> Result<u32, Error> {
        sched::in_kernel(|| {
            object::<DeviceObject>(device, rights::DEVICE_IO_READ)?.io_read(offset, width)
        })
    }

    fn device_io_write(
        &self,
        device: HandleId,
        offset: u16,
        width: u8,
        value: u32,
    ) -> Result<(), Error> {
        sched::in_kernel(|| {
            object::<DeviceObject>(device, rights::DEVICE_IO_WRITE)?.io_write(offset, width, value)
        })
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        sched::in_kernel(|| {
            within_budget()?;
            insert(Object::Timer(Timer::new()), Rights::DEFAULT)
        })
    }

    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error> {
        sched::in_kernel(|| {
            let timer = object::<Timer>(timer, rights::TIMER_SET)?;
            timer.set(crate::arch::time::now_ns(), after_ns)?;
            crate::interrupt::rearm_timer();
            Ok(())
        })
    }

    fn thread_spawn(&self, main: ThreadMain) -> Result<(), Error> {
        sched::in_kernel(|| {
            // A thin pointer to the boxed closure travels as the thread's
            // argument; `run_thread_main` takes it back.
            let arg = Box::into_raw(Box::new(main)) as usize;
            let process = sched::current_process();
            // Where its component's spec pins its threads, if anywhere.
            let cpu = crate::startup::thread_cpu(process);
            match sched::spawn_on(process, run_thread_main, arg, cpu) {
                Ok(_) => Ok(()),
                Err(e) => {
                    // SAFETY: the thread was not created, so `arg` is still the
                    // unique pointer made by `Box::into_raw` above.
                    drop(unsafe { Box::from_raw(arg as *mut ThreadMain) });
                    Err(e)
                }
            }
        })
    }

    fn thread_pin(&self, cpu: Option<usize>) -> Result<(), Error> {
        sched::in_kernel(|| sched::pin_current(cpu))
    }

    fn thread_yield(&self) {
        sched::in_kernel(|| {
            sched::yield_current();
        })
    }

    fn process_exit(&self, code: i32) -> ! {
        let _in_kernel = sched::InKernel::enter();
        let process = sched::current_process().clone();
        crate::startup::component_ended(&process, ExitReason::Exited(code));
        sched::exit_current_thread()
    }

    fn process_id(&self) -> u64 {
        sched::in_kernel(|| sched::current_process().id)
    }

    fn vm_create(
        &self,
        hypervisor: HandleId,
        ram_bytes: u64,
    ) -> Result<(HandleId, HandleId), Error> {
        sched::in_kernel(|| {
            table().privilege(hypervisor, SystemRight::Hypervisor)?;
            sched::pin_to_boot_cpu();
            create_vm(ram_bytes)
        })
    }

    fn guest_ram_read(&self, ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        sched::in_kernel(|| object::<GuestRam>(ram, rights::GUEST_RAM_READ)?.read(gpa, buf))
    }

    fn guest_ram_write(&self, ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error> {
        sched::in_kernel(|| object::<GuestRam>(ram, rights::GUEST_RAM_WRITE)?.write(gpa, data))
    }

    fn vcpu_run(
        &self,
        vcpu: HandleId,
        state: &mut VcpuState,
        inject: Injection,
    ) -> Result<VmExit, Error> {
        sched::in_kernel(|| {
            let vcpu = object::<Vcpu>(vcpu, rights::VCPU_RUN)?;
            // Its hardware state is on its CPU.
            vcpu.pin_caller()?;
            if let Injection::Exception { vector, .. } = inject {
                if !starina::abi::vcpu::valid_exception_vector(vector) {
                    return Err(Error::InvalidArgument);
                }
            }
            let mut guard = vcpu.acquire()?;
            // By the VMM's deadline at the latest, never later than a tick
            // already armed: the slice and the kernel timers keep their
            // deadlines however long the guest runs. The backend arms it
            // where no host interrupt can be taken before the entry.
            let kick = vcpu.take_kick();
            Ok(guard.hw().run(state, inject, kick, |now| vcpu.run_deadline(now)))
        })
    }

    fn vcpu_control(&self, vcpu: HandleId, control: VcpuControl) -> Result<(), Error> {
        sched::in_kernel(|| {
            let vcpu = object::<Vcpu>(vcpu, rights::VCPU_CONTROL)?;
            if control == VcpuControl::Kick {
                // From any thread, running or not: nothing to acquire.
                vcpu.kick();
                return Ok(());
            }
            vcpu.pin_caller()?;
            let mut guard = vcpu.acquire()?;
            match control {
                VcpuControl::TscOffset(off) => guard.hw().set_tsc_offset(off),
                VcpuControl::Pat(pat) if !starina::abi::vcpu::valid_pat(pat) => {
                    return Err(Error::InvalidArgument);
                }
                VcpuControl::Pat(pat) => guard.hw().set_pat(pat),
                VcpuControl::Xcr0Allowed(mask) => guard
                    .hw()
                    .set_xcr0_allowed(mask)
                    .ok_or(Error::InvalidArgument)?,
                VcpuControl::ExitBy(ns) => vcpu.set_exit_by(ns),
                VcpuControl::Kick => {}
            }
            Ok(())
        })
    }

    fn vcpu_create(&self, ram: HandleId) -> Result<HandleId, Error> {
        sched::in_kernel(|| {
            let ram = object::<GuestRam>(ram, rights::GUEST_RAM_WRITE)?;
            let cpu = ram.next_vcpu_cpu()?;
            let vcpu = on_cpu(cpu, || Vcpu::new(ram, cpu))?.map_err(|why| {
                log::error!("hypervisor: cannot create a vCPU: {}", why.explain());
                match why {
                    crate::arch::hypervisor::Unavailable::OutOfMemory => Error::OutOfMemory,
                    _ => Error::NotSupported,
                }
            })?;
            insert(Object::Vcpu(vcpu), Rights::DEFAULT)
        })
    }

    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        sched::in_kernel(|| crate::arch::cpu::cpuid(leaf, subleaf))
    }

    fn host_clock(&self) -> HostClock {
        sched::in_kernel(crate::arch::clock::host_clock)
    }

    fn command_spawn(
        &self,
        spawner: HandleId,
        request: &[u8],
        stdio: [HandleId; 3],
    ) -> Result<HandleId, Error> {
        sched::in_kernel(|| crate::syscall_command::spawn(spawner, request, stdio))
    }

    fn job_status(&self, job: HandleId) -> Result<Option<i32>, Error> {
        sched::in_kernel(|| Ok(object::<Job>(job, Rights::READ)?.status()))
    }

    fn job_kill(&self, job: HandleId) -> Result<(), Error> {
        sched::in_kernel(|| {
            object::<Job>(job, Rights::WRITE)?.kill();
            Ok(())
        })
    }

    fn command_name(&self, spawner: HandleId, index: usize) -> Result<&'static str, Error> {
        sched::in_kernel(|| {
            table().privilege(spawner, SystemRight::Spawn)?;
            crate::startup::command_name(index).ok_or(Error::NotFound)
        })
    }

    fn component_control(
        &self,
        control: HandleId,
        name: &str,
        action: ComponentAction,
    ) -> Result<(), Error> {
        sched::in_kernel(|| {
            table().privilege(control, SystemRight::Control)?;
            crate::startup::control(name, action)
        })
    }

    fn bootfs_file(&self, name: &str) -> Result<&'static [u8], Error> {
        sched::in_kernel(|| crate::bootfs::file(name))
    }

    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error> {
        sched::in_kernel(|| {
            table().privilege(system, SystemRight::Shutdown)?;
            log::info!(
                "power off requested by {} (exit code {code}; {} NMIs taken)",
                sched::current_process().name,
                crate::interrupt::nmi_count()
            );
            crate::percpu::log_runs();
            crate::arch::power_off(code)
        })
    }

    fn device_info(&self, device: HandleId) -> Result<DeviceInfo, Error> {
        sched::in_kernel(|| Ok(object::<DeviceObject>(device, rights::DEVICE_INFO)?.info))
    }

    fn device_pci_config_read(&self, device: HandleId, offset: u16) -> Result<u32, Error> {
        sched::in_kernel(|| {
            object::<DeviceObject>(device, rights::DEVICE_PCI_CONFIG_READ)?.config_read(offset)
        })
    }

    fn device_pci_config_write(
        &self,
        device: HandleId,
        offset: u16,
        value: u32,
    ) -> Result<(), Error> {
        sched::in_kernel(|| {
            object::<DeviceObject>(device, rights::DEVICE_PCI_CONFIG_WRITE)?
                .config_write(offset, value)
        })
    }

    fn device_mmio_map(&self, device: HandleId, paddr: u64, len: usize) -> Result<usize, Error> {
        sched::in_kernel(|| {
            let device = object::<DeviceObject>(device, rights::DEVICE_MMIO_MAP)?;
            if len == 0 {
                return Err(Error::InvalidArgument);
            }
            if !device.owns(paddr, len as u64) {
                // Not one of this device's regions.
                return Err(Error::InvalidArgument);
            }
            crate::mm::map_device_memory(paddr, len as u64).ok_or(Error::OutOfMemory)
        })
    }

    fn interrupt_create(&self, device: HandleId) -> Result<HandleId, Error> {
        sched::in_kernel(|| {
            let device = object::<DeviceObject>(device, rights::INTERRUPT_CREATE)?;
            let irq = Interrupt::new(&device)?;
            insert(Object::Interrupt(irq), rights::INTERRUPT_HANDLE)
        })
    }

    fn interrupt_ack(&self, interrupt: HandleId) -> Result<(), Error> {
        sched::in_kernel(|| {
            object::<Interrupt>(interrupt, rights::INTERRUPT_ACK)?.ack();
            Ok(())
        })
    }

    fn dma_alloc(&self, device: HandleId, pages: usize) -> Result<DmaAllocation, Error> {
        sched::in_kernel(|| {
            // The device handle is the right to DMA memory.
            object::<DeviceObject>(device, rights::DMA_ALLOC)?;
            let dma = DmaMemory::new(pages, sched::current_process().account)?;
            let (paddr, vaddr) = (dma.paddr(), dma.vaddr());
            let handle = insert(Object::Dma(dma), rights::DMA_HANDLE)?;
            Ok(DmaAllocation {
                handle,
                paddr,
                vaddr,
            })
        })
    }

    fn dma_free(&self, dma: HandleId) -> Result<(), Error> {
        sched::in_kernel(|| {
            close(dma, |table| {
                table.get::<DmaMemory>(dma, rights::DMA_FREE).map(|_| ())
            })
        })
    }

    fn dma_translate(&self, device: HandleId, vaddr: usize, len: usize) -> Result<u64, Error> {
        sched::in_kernel(|| {
            object::<DeviceObject>(device, rights::DMA_TRANSLATE)?;
            if len == 0 {
                return Err(Error::InvalidArgument);
            }
            crate::mm::contiguous_phys(vaddr, len).ok_or(Error::NotSupported)
        })
    }

    fn system_component_status(
        &self,
        monitor: HandleId,
        index: usize,
    ) -> Result<ComponentStatus, Error> {
        sched::in_kernel(|| {
            table().privilege(monitor, SystemRight::Monitor)?;
            crate::startup::component_status(index).ok_or(Error::NotFound)
        })
    }

    fn system_log_read(
        &self,
        monitor: HandleId,
        from: u64,
        out: &mut [u8],
    ) -> Result<(u64, usize), Error> {
        sched::in_kernel(|| {
            table().privilege(monitor, SystemRight::Monitor)?;
            Ok(crate::klog::read_ring(from, out))
        })
    }

    fn system_memory_stats(&self, monitor: HandleId) -> Result<MemoryStats, Error> {
        sched::in_kernel(|| {
            table().privilege(monitor, SystemRight::Monitor)?;
            let (pages_free, pages_total) = crate::mm::page::stats();
            Ok(MemoryStats {
                heap_in_use: crate::mm::heap::bytes_in_use(),
                pages_free,
                pages_total,
                dma_pages: crate::mm::DMA_PAGES.load(core::sync::atomic::Ordering::Relaxed),
                pages_kept: crate::mm::KEPT_PAGES.load(core::sync::atomic::Ordering::Relaxed),
            })
        })
    }

    fn system_cpu_stats(&self, monitor: HandleId, index: usize) -> Result<CpuStats, Error> {
        sched::in_kernel(|| {
            table().privilege(monitor, SystemRight::Monitor)?;
            sched::cpu_stats(index).ok_or(Error::NotFound)
        })
    }

    fn console_read(&self, console: HandleId, buf: &mut [u8]) -> Result<usize, Error> {
        sched::in_kernel(|| object::<Console>(console, rights::CONSOLE_READ)?.read(buf))
    }

    fn console_write(&self, console: HandleId, data: &[u8]) -> Result<usize, Error> {
        sched::in_kernel(|| {
            object::<Console>(console, rights::CONSOLE_WRITE)?;
            let n = data.len().min(starina::abi::CONSOLE_WRITE_MAX);
            crate::klog::write_raw(&data[..n]);
            Ok(n)
        })
    }
}

/// Removes `handle` from the caller's table if `check` (run under the same
/// lock) allows it; the object goes once its last reference does.
fn close(
    handle: HandleId,
    check: impl FnOnce(&HandleTable) -> Result<(), Error>,
) -> Result<(), Error> {
    let removed = {
        let mut table = table();
        check(&table)?;
        table.remove(handle)?
    };
    // Polls hold what they watch; a closed handle leaves them all.
    leave_polls(handle, &removed.object);
    // Dropped outside the table lock: a channel end's drop notifies its peer.
    drop(removed);
    Ok(())
}

/// The handles a delivered message moved leave the caller: the message now
/// holds them. The table's copies share the objects, so removing them
/// destroys nothing. Each leaves every poll, as a closed one does: a poll
/// left watching it would report it under a number that now names
/// something else, and keep it alive (a poll moved into the queue of a
/// channel end it watches would never be freed).
fn handles_moved(mut table: SpinLockGuard<'static, HandleTable>, handles: &[HandleId]) {
    let mut left: [Option<Handle>; MESSAGE_HANDLES_MAX] = Default::default();
    for (slot, &id) in left.iter_mut().zip(handles) {
        *slot = table.remove(id).ok();
    }
    drop(table);
    for (h, &id) in left.iter().zip(handles) {
        if let Some(h) = h {
            leave_polls(id, &h.object);
        }
    }
}

/// Removes the entries for `handle` (naming `object`) from every poll that
/// watches it through the caller's table: the handle left it. Only those:
/// a message moving the handle is already queued, so its receiver may
/// watch the object under the same number before this runs. Call without
/// locks held.
fn leave_polls(handle: HandleId, object: &Object) {
    if let Some(obj) = object.as_pollable() {
        let ptr = Arc::as_ptr(&obj) as *const ();
        let owner = sched::current_process().id;
        for poll in obj.listeners().polls() {
            poll.forget(owner, handle, ptr);
        }
    }
}

/// The handles a message on `channel` (handle `ch`) is to move, checked
/// before any is touched.
fn handles_to_move(
    table: &HandleTable,
    ch: HandleId,
    channel: &Arc<Channel>,
    handles: &[HandleId],
) -> Result<Vec<Handle>, Error> {
    let mut moved = Vec::new();
    moved
        .try_reserve_exact(handles.len())
        .map_err(|_| Error::OutOfMemory)?;
    for (i, &id) in handles.iter().enumerate() {
        if id == ch || handles[..i].contains(&id) {
            return Err(Error::InvalidTransfer);
        }
        let h = table.handle(id)?;
        h.require(rights::CHANNEL_SEND_MOVED)?;
        if let Object::Channel(c) = &h.object {
            // Sending a channel's peer through it would make the pair
            // unreachable and never closed.
            if channel.is_peer_of(c) {
                return Err(Error::InvalidTransfer);
            }
        }
        moved.push(h.clone());
    }
    Ok(moved)
}

/// Blocks until one object `poll` watches is ready.
/// Receives `channel`'s next message into the caller's buffers, its
/// handles into the caller's `table` (`channel_recv`'s work once the
/// channel is found).
#[inline(always)]
fn recv_into(
    channel: &Channel,
    mut table: SpinLockGuard<'static, HandleTable>,
    data: &mut [u8],
    handle_buf: &mut [HandleId],
) -> Result<RecvInfo, Error> {
    let msg = channel.recv(data.len(), handle_buf.len(), table.room())?;
    data[..msg.data.len()].copy_from_slice(&msg.data);
    let num_handles = msg.handles.len();
    for (slot, h) in handle_buf.iter_mut().zip(msg.handles) {
        // Cannot fail: `recv` checked the table's room.
        *slot = table.insert(h)?;
    }
    Ok(RecvInfo {
        kind: msg.kind,
        data_len: msg.data.len(),
        num_handles,
    })
}

/// The body of `channel_send`: `Some` if the message was handed straight
/// to a waiting receiver (who the caller wakes, or switches to).
#[inline(always)]
/// `table` is the caller's, locked (released on return).
fn send(
    table: SpinLockGuard<'static, HandleTable>,
    ch: HandleId,
    kind: u8,
    data: &[u8],
    handles: &[HandleId],
) -> Result<Option<Handed>, Error> {
    if data.len() > MESSAGE_DATA_MAX {
        return Err(Error::MessageTooLarge);
    }
    if handles.len() > MESSAGE_HANDLES_MAX {
        return Err(Error::TooManyHandles);
    }
    let channel = table.get::<Channel>(ch, rights::CHANNEL_SEND)?;
    // Handed over, the message allocates nothing: no budget check.
    if handles.is_empty() {
        if let Some(handed) = channel.hand_over(kind, data, &table)? {
            return Ok(Some(handed));
        }
    }
    let channel = channel.clone();
    within_budget()?;
    let moved = handles_to_move(&table, ch, &channel, handles)?;
    let msg = ChannelMessage::new(kind, data, moved)?;
    channel.send(msg).map_err(|(e, _msg)| e)?;
    if !handles.is_empty() {
        handles_moved(table, handles);
    }
    Ok(None)
}

/// The body of `poll_wait_recv`; `handed`: a receiver the caller's send
/// just gave a message, run at once if the caller blocks (see `wait`).
#[inline(always)]
fn wait_recv(
    poll: &Arc<Poll>,
    data: &mut [u8],
    handle_buf: &mut [HandleId],
    handed: Option<Handed>,
) -> Result<PollEvent, Error> {
    let mailbox = Mailbox::new();
    let slot = RecvSlot::new(data, &mailbox);
    match wait(poll, Some((slot, &mailbox)), handed)? {
        Waited::Delivered { id, info } => Ok(PollEvent {
            id,
            ready: Readiness::READABLE,
            received: Some(Ok(info)),
        }),
        Waited::Ready(ready) => Ok(PollEvent {
            id: ready.id,
            ready: ready.readiness,
            received: ready
                .channel
                .map(|channel| recv_into(&channel, table(), data, handle_buf)),
        }),
    }
}

/// Blocks until `poll` has a ready entry, or (with `slot`, the caller's
/// receive buffer, and its mailbox) a message delivered into the buffer.
/// `handed` is a receiver the caller just gave a message (taken off its
/// wait, not yet woken): if the caller blocks, the CPU goes straight to it
/// ([`sched::block_current_handoff`]); on any other way out (ready at
/// once, killed, an error) dropping it wakes it as usual. It is woken only
/// after the caller armed its own wait, so its answer cannot come before
/// the caller listens for it.
#[inline(always)]
fn wait(
    poll: &Arc<Poll>,
    slot: Option<(RecvSlot, &Mailbox)>,
    mut handed: Option<Handed>,
) -> Result<Waited, Error> {
    let me = sched::current();
    loop {
        // The process is being torn down: return, so the call's locals (the
        // poll, and through it what it watches) drop before the thread ends
        // (the error never reaches the component; see `sched::InKernel`).
        if me.kill_requested() {
            return Err(Error::WouldBlock);
        }
        if let Some(ready) = poll.arm(sched::current_arc(), slot.map(|(s, _)| s))? {
            return Ok(Waited::Ready(ready));
        }
        match handed.take().and_then(Handed::into_receiver) {
            Some(receiver) => sched::block_current_handoff(receiver),
            None => sched::block_current(),
        }
        let Some((_, mailbox)) = slot else { continue };
        // A delivery took the slot away as it filled it: no lock to look.
        if let Some((id, info)) = mailbox.take() {
            return Ok(Waited::Delivered { id, info });
        }
        // Woken for something else: take the slot back, then look once
        // more (a delivery may have come in between).
        poll.disarm(mailbox);
        if let Some((id, info)) = mailbox.take() {
            return Ok(Waited::Delivered { id, info });
        }
    }
}

/// Where a thread started by `thread_spawn` begins.
fn run_thread_main(arg: usize) {
    // SAFETY: `arg` is the pointer `thread_spawn` made with `Box::into_raw`
    // for this thread alone; it is taken back exactly once, here.
    let main = unsafe { Box::from_raw(arg as *mut ThreadMain) };
    main();
}

/// Runs `f` on CPU `cpu` (a vCPU is made where it runs: a VMX VMCS is
/// current on one CPU), then lets the caller run where it ran before.
fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> Result<T, Error> {
    let before = sched::current().pinned_cpu();
    sched::pin_current(Some(cpu))?;
    let made = f();
    // Back as it was: a pin that was valid stays valid.
    let _ = sched::pin_current(before);
    Ok(made)
}

/// Creates guest RAM and its vCPU, and hands the caller both handles.
fn create_vm(ram_bytes: u64) -> Result<(HandleId, HandleId), Error> {
    let (free_before, _) = crate::mm::page::stats();
    let ram = GuestRam::new(ram_bytes, sched::current_process().account)?;
    let cpu = ram.next_vcpu_cpu()?;
    let vcpu = on_cpu(cpu, || Vcpu::new(ram.clone(), cpu))?.map_err(|why| {
        log::error!("hypervisor: cannot create a VM: {}", why.explain());
        match why {
            crate::arch::hypervisor::Unavailable::OutOfMemory => Error::OutOfMemory,
            _ => Error::NotSupported,
        }
    })?;
    let handles = insert_pair(
        Handle::new(Object::GuestRam(ram), Rights::DEFAULT),
        Handle::new(Object::Vcpu(vcpu), Rights::DEFAULT),
    )?;
    let (free_after, _) = crate::mm::page::stats();
    let used_kib = (free_before.saturating_sub(free_after) * 4) as u64;
    log::info!(
        "hypervisor: VM created: {} MiB guest RAM; {} {} KiB (control block, permission maps, nested page tables)",
        ram_bytes >> 20,
        starina::abi::markers::VM_STRUCTURES,
        used_kib.saturating_sub(ram_bytes >> 10)
    );
    Ok(handles)
}
