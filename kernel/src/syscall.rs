//! The kernel side of the system-call table: one small typed function per
//! call (`object_verb`), each returning `Result<_, Error>`. In-kernel
//! components reach these through [`starina::syscall::KernelApi`]; a bad
//! request is an error returned, never a panic.

use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::ComponentStatus;
use starina::abi::DeviceInfo;
use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::LogLevel;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::abi::Rights;
use starina::abi::MemoryStats;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::syscall::KernelApi;
use starina::syscall::ThreadEntry;

use crate::handle::Handle;
use crate::handle::Object;
use crate::object::channel::Channel;
use crate::object::channel::ChannelMessage;
use crate::object::poll::Poll;
use crate::object::system::SystemRight;
use crate::object::timer::Timer;
use crate::object::Pollable;
use crate::process::ExitReason;
use crate::sched;

pub fn handle_close(handle: HandleId) -> Result<(), Error> {
    let removed = sched::current_process().handles.lock().remove(handle)?;
    // Polls hold what they watch; a closed handle leaves them all.
    let pollable: Option<Arc<dyn Pollable>> = match &removed.object {
        Object::Channel(c) => Some(c.clone()),
        Object::Timer(t) => Some(t.clone()),
        _ => None,
    };
    if let Some(obj) = pollable {
        let ptr = Arc::as_ptr(&obj) as *const ();
        for poll in obj.listeners().polls() {
            poll.forget(handle, ptr);
        }
    }
    // Dropped outside the table lock: a channel end's drop notifies its peer.
    drop(removed);
    Ok(())
}

pub fn handle_duplicate(handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
    let mut table = sched::current_process().handles.lock();
    let h = table.get(handle)?;
    h.require(Rights::DUPLICATE)?;
    if !h.rights.contains(rights) {
        // A copy can only have fewer rights.
        return Err(Error::MissingRight);
    }
    let copy = Handle::new(h.object.clone(), rights);
    table.insert(copy)
}

pub fn channel_create() -> Result<(HandleId, HandleId), Error> {
    let (a, b) = Channel::new_pair();
    let mut table = sched::current_process().handles.lock();
    if table.room() < 2 {
        return Err(Error::HandleTableFull);
    }
    let ha = table.insert(Handle::new(Object::Channel(a), Rights::DEFAULT))?;
    match table.insert(Handle::new(Object::Channel(b), Rights::DEFAULT)) {
        Ok(hb) => Ok((ha, hb)),
        Err(e) => {
            let _ = table.remove(ha);
            Err(e)
        }
    }
}

pub fn channel_send(ch: HandleId, kind: u8, data: &[u8], handles: &[HandleId]) -> Result<(), Error> {
    if data.len() > MESSAGE_DATA_MAX {
        return Err(Error::MessageTooLarge);
    }
    if handles.len() > MESSAGE_HANDLES_MAX {
        return Err(Error::TooManyHandles);
    }
    let mut table = sched::current_process().handles.lock();
    let channel = table.channel(ch, Rights::WRITE)?.clone();

    // Check every handle to move before touching any.
    let mut moved = Vec::new();
    if !handles.is_empty() {
        moved.try_reserve_exact(handles.len()).map_err(|_| Error::OutOfMemory)?;
        for (i, &id) in handles.iter().enumerate() {
            if id == ch || handles[..i].contains(&id) {
                return Err(Error::InvalidTransfer);
            }
            let h = table.get(id)?;
            h.require(Rights::TRANSFER)?;
            if let Object::Channel(c) = &h.object {
                // Sending a channel's peer through it would make the pair
                // unreachable and never closed.
                if channel.is_peer_of(c) {
                    return Err(Error::InvalidTransfer);
                }
            }
            moved.push(h.clone());
        }
    }

    let msg = ChannelMessage::new(kind, data, moved)?;
    channel.send(msg).map_err(|(e, _msg)| e)?;
    // Delivered: the handles now belong to the message. The table's copies
    // share the objects, so removing them destroys nothing.
    for &id in handles {
        let _ = table.remove(id);
    }
    Ok(())
}

pub fn channel_recv(
    ch: HandleId,
    data: &mut [u8],
    handle_buf: &mut [HandleId],
) -> Result<RecvInfo, Error> {
    let mut table = sched::current_process().handles.lock();
    let channel = table.channel(ch, Rights::READ)?.clone();
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

pub fn poll_create() -> Result<HandleId, Error> {
    let poll = Poll::new();
    sched::current_process()
        .handles
        .lock()
        .insert(Handle::new(Object::Poll(poll), Rights::DEFAULT))
}

pub fn poll_add(poll: HandleId, target: HandleId, interests: Readiness) -> Result<(), Error> {
    let (poll, object) = {
        let table = sched::current_process().handles.lock();
        let poll = table.poll(poll, Rights::WRITE)?.clone();
        let h = table.get(target)?;
        let object: Arc<dyn Pollable> = match &h.object {
            Object::Channel(c) => c.clone(),
            Object::Timer(t) => t.clone(),
            Object::Interrupt(i) => i.clone(),
            _ => return Err(Error::WrongObjectType),
        };
        h.require(Rights::POLL)?;
        (poll, object)
    };
    poll.add(target, object, interests)
}

pub fn poll_remove(poll: HandleId, target: HandleId) -> Result<(), Error> {
    let poll = sched::current_process()
        .handles
        .lock()
        .poll(poll, Rights::WRITE)?
        .clone();
    poll.remove(target)
}

pub fn poll_wait(poll: HandleId) -> Result<(HandleId, Readiness), Error> {
    let poll = sched::current_process()
        .handles
        .lock()
        .poll(poll, Rights::READ)?
        .clone();
    loop {
        // Register as the waiter *before* checking, so a change between the
        // check and the block cannot be missed. (One scan per wait instead
        // of check, register, check again: a waiter usually has to block.)
        let me = sched::current_arc();
        me.prepare_block();
        poll.set_waiter(me.clone());
        match poll.check() {
            Ok(Some(ready)) => {
                poll.clear_waiter();
                me.cancel_block();
                return Ok(ready);
            }
            Ok(None) => {}
            Err(e) => {
                poll.clear_waiter();
                me.cancel_block();
                return Err(e);
            }
        }
        drop(me);
        sched::block_current();
    }
}

pub fn timer_create() -> Result<HandleId, Error> {
    sched::current_process()
        .handles
        .lock()
        .insert(Handle::new(Object::Timer(Timer::new()), Rights::DEFAULT))
}

pub fn timer_set(timer: HandleId, after_ns: u64) -> Result<(), Error> {
    let timer = sched::current_process()
        .handles
        .lock()
        .timer(timer, Rights::WRITE)?
        .clone();
    timer.set(crate::arch::time::now_ns(), after_ns)?;
    crate::interrupt::rearm_timer();
    Ok(())
}

pub fn system_shutdown(system: HandleId, code: u8) -> Result<(), Error> {
    {
        let table = sched::current_process().handles.lock();
        let h = table.get(system)?;
        match &h.object {
            Object::System(s) if s.right == SystemRight::Shutdown => {}
            Object::System(_) => return Err(Error::MissingRight),
            _ => return Err(Error::WrongObjectType),
        }
    }
    log::info!(
        "power off requested by {} (exit code {code})",
        sched::current_process().name
    );
    crate::arch::power_off(code)
}

/// The table in-kernel components call through.
pub struct Kernel;

impl KernelApi for Kernel {
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>) {
        let level = match level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Trace => log::Level::Trace,
        };
        crate::klog::write_line(level, sched::current_process().name, args);
    }

    fn time_now(&self) -> u64 {
        crate::arch::time::now_ns()
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        handle_close(handle)
    }

    fn handle_duplicate(&self, handle: HandleId, rights: Rights) -> Result<HandleId, Error> {
        handle_duplicate(handle, rights)
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        channel_create()
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        channel_send(ch, kind, data, handles)
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        channel_recv(ch, data, handles)
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        poll_create()
    }

    fn poll_add(&self, poll: HandleId, target: HandleId, interests: Readiness) -> Result<(), Error> {
        poll_add(poll, target, interests)
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        poll_remove(poll, target)
    }

    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        poll_wait(poll)
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        timer_create()
    }

    fn timer_set(&self, timer: HandleId, after_ns: u64) -> Result<(), Error> {
        timer_set(timer, after_ns)
    }

    fn thread_spawn(&self, entry: ThreadEntry, arg: usize) -> Result<(), Error> {
        sched::spawn(sched::current_process(), entry, arg)
            .map(|_| ())
            .ok_or(Error::OutOfMemory)
    }

    fn thread_yield(&self) {
        sched::yield_current();
    }

    fn vm_create(&self, hypervisor: HandleId, ram_bytes: u64) -> Result<(HandleId, HandleId), Error> {
        vm_create(hypervisor, ram_bytes)
    }

    fn guest_ram_read(&self, ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        guest_ram_read(ram, gpa, buf)
    }

    fn guest_ram_write(&self, ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error> {
        guest_ram_write(ram, gpa, data)
    }

    fn vcpu_run(
        &self,
        vcpu: HandleId,
        state: &mut starina_vmm::exit::VcpuState,
        inject: starina::hypervisor::Injection,
    ) -> Result<starina_vmm::exit::VmExit, Error> {
        vcpu_run(vcpu, state, inject)
    }

    fn vcpu_control(&self, vcpu: HandleId, control: starina::hypervisor::VcpuControl) -> Result<(), Error> {
        vcpu_control(vcpu, control)
    }

    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        crate::arch::cpu::cpuid(leaf, subleaf)
    }

    fn bootfs_file(&self, name: &str) -> Result<&'static [u8], Error> {
        crate::bootfs::file(name)
    }

    fn process_exit(&self, code: i32) -> ! {
        let process = sched::current_process().clone();
        crate::startup::component_ended(&process, ExitReason::Exited(code));
        sched::exit_current_thread()
    }

    fn system_shutdown(&self, system: HandleId, code: u8) -> Result<(), Error> {
        system_shutdown(system, code)
    }

    fn device_info(&self, device: HandleId) -> Result<DeviceInfo, Error> {
        device_info(device)
    }

    fn device_pci_config_read(&self, device: HandleId, offset: u16) -> Result<u32, Error> {
        device_pci_config_read(device, offset)
    }

    fn device_pci_config_write(
        &self,
        device: HandleId,
        offset: u16,
        value: u32,
    ) -> Result<(), Error> {
        device_pci_config_write(device, offset, value)
    }

    fn device_mmio_map(&self, paddr: u64, len: usize) -> Result<usize, Error> {
        device_mmio_map(paddr, len)
    }

    fn interrupt_create(&self, device: HandleId) -> Result<HandleId, Error> {
        interrupt_create(device)
    }

    fn interrupt_ack(&self, interrupt: HandleId) -> Result<(), Error> {
        interrupt_ack(interrupt)
    }

    fn dma_alloc(&self, pages: usize) -> Result<(u64, usize), Error> {
        dma_alloc(pages)
    }

    fn dma_free(&self, paddr: u64, pages: usize) -> Result<(), Error> {
        dma_free(paddr, pages)
    }

    fn dma_translate(&self, vaddr: usize, len: usize) -> Result<u64, Error> {
        dma_translate(vaddr, len)
    }

    fn system_component_status(
        &self,
        monitor: HandleId,
        index: usize,
    ) -> Result<ComponentStatus, Error> {
        system_component_status(monitor, index)
    }

    fn system_log_read(
        &self,
        monitor: HandleId,
        from: u64,
        out: &mut [u8],
    ) -> Result<(u64, usize), Error> {
        system_log_read(monitor, from, out)
    }

    fn system_memory_stats(&self, monitor: HandleId) -> Result<MemoryStats, Error> {
        system_memory_stats(monitor)
    }
}

pub static KERNEL: Kernel = Kernel;

// Driver calls: devices, interrupts, MMIO and DMA.

fn device_object(
    device: HandleId,
) -> Result<Arc<crate::object::device::DeviceObject>, Error> {
    let table = sched::current_process().handles.lock();
    let h = table.get(device)?;
    match &h.object {
        Object::Device(d) => Ok(d.clone()),
        _ => Err(Error::WrongObjectType),
    }
}

/// Whether the calling process holds a device handle (the right to DMA
/// memory); with `range`, one whose memory regions cover it.
fn holds_device(range: Option<(u64, u64)>) -> bool {
    let table = sched::current_process().handles.lock();
    let found = table.iter().any(|h| match &h.object {
        Object::Device(d) => range.is_none_or(|(base, len)| d.owns(base, len)),
        _ => false,
    });
    found
}

pub fn device_info(device: HandleId) -> Result<DeviceInfo, Error> {
    Ok(device_object(device)?.info)
}

pub fn device_pci_config_read(device: HandleId, offset: u16) -> Result<u32, Error> {
    device_object(device)?.config_read(offset)
}

pub fn device_pci_config_write(device: HandleId, offset: u16, value: u32) -> Result<(), Error> {
    device_object(device)?.config_write(offset, value)
}

pub fn device_mmio_map(paddr: u64, len: usize) -> Result<usize, Error> {
    if len == 0 {
        return Err(Error::InvalidArgument);
    }
    if !holds_device(Some((paddr, len as u64))) {
        return Err(Error::MissingRight);
    }
    crate::mm::map_device_memory(paddr, len as u64).ok_or(Error::OutOfMemory)
}

pub fn interrupt_create(device: HandleId) -> Result<HandleId, Error> {
    let device = device_object(device)?;
    let irq = crate::object::interrupt::Interrupt::new(&device)?;
    sched::current_process().handles.lock().insert(Handle::new(
        Object::Interrupt(irq),
        Rights::READ | Rights::WRITE | Rights::POLL,
    ))
}

pub fn interrupt_ack(interrupt: HandleId) -> Result<(), Error> {
    let irq = {
        let table = sched::current_process().handles.lock();
        let h = table.get(interrupt)?;
        match &h.object {
            Object::Interrupt(i) => {
                h.require(Rights::WRITE)?;
                i.clone()
            }
            _ => return Err(Error::WrongObjectType),
        }
    };
    irq.ack();
    Ok(())
}

/// The most pages one DMA allocation takes (4 MiB).
const DMA_ALLOC_MAX_PAGES: usize = 1024;

pub fn dma_alloc(pages: usize) -> Result<(u64, usize), Error> {
    if pages == 0 || pages > DMA_ALLOC_MAX_PAGES {
        return Err(Error::InvalidArgument);
    }
    if !holds_device(None) {
        return Err(Error::MissingRight);
    }
    let process = sched::current_process();
    let mut dma = process.dma.lock();
    dma.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
    let paddr = crate::mm::page::alloc_zeroed_pages(pages).ok_or(Error::OutOfMemory)?;
    dma.push((paddr, pages));
    crate::mm::DMA_PAGES.fetch_add(pages, core::sync::atomic::Ordering::Relaxed);
    Ok((paddr, crate::mm::phys_to_virt(paddr)))
}

pub fn dma_free(paddr: u64, pages: usize) -> Result<(), Error> {
    let process = sched::current_process();
    let mut dma = process.dma.lock();
    let index = dma
        .iter()
        .position(|&(p, n)| p == paddr && n == pages)
        .ok_or(Error::NotFound)?;
    dma.swap_remove(index);
    drop(dma);
    crate::mm::page::free_pages(paddr, pages);
    crate::mm::DMA_PAGES.fetch_sub(pages, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

pub fn dma_translate(vaddr: usize, len: usize) -> Result<u64, Error> {
    if len == 0 {
        return Err(Error::InvalidArgument);
    }
    crate::mm::contiguous_phys(vaddr, len).ok_or(Error::NotSupported)
}

// Monitoring calls.

fn require_monitor(monitor: HandleId) -> Result<(), Error> {
    let table = sched::current_process().handles.lock();
    match &table.get(monitor)?.object {
        Object::System(s) if s.right == SystemRight::Monitor => Ok(()),
        Object::System(_) => Err(Error::MissingRight),
        _ => Err(Error::WrongObjectType),
    }
}

pub fn system_component_status(monitor: HandleId, index: usize) -> Result<ComponentStatus, Error> {
    require_monitor(monitor)?;
    crate::startup::component_status(index).ok_or(Error::NotFound)
}

pub fn system_log_read(monitor: HandleId, from: u64, out: &mut [u8]) -> Result<(u64, usize), Error> {
    require_monitor(monitor)?;
    Ok(crate::klog::read_ring(from, out))
}

pub fn system_memory_stats(monitor: HandleId) -> Result<MemoryStats, Error> {
    require_monitor(monitor)?;
    let (pages_free, pages_total) = crate::mm::page::stats();
    Ok(MemoryStats {
        heap_in_use: crate::mm::heap::bytes_in_use(),
        pages_free,
        pages_total,
        dma_pages: crate::mm::DMA_PAGES.load(core::sync::atomic::Ordering::Relaxed),
    })
}

// Hypervisor calls.

fn hypervisor_right(table: &crate::handle::HandleTable, h: HandleId) -> Result<(), Error> {
    match &table.get(h)?.object {
        Object::System(s) if s.right == crate::object::system::SystemRight::Hypervisor => Ok(()),
        Object::System(_) => Err(Error::MissingRight),
        _ => Err(Error::WrongObjectType),
    }
}

pub fn vm_create(hypervisor: HandleId, ram_bytes: u64) -> Result<(HandleId, HandleId), Error> {
    hypervisor_right(&sched::current_process().handles.lock(), hypervisor)?;
    let (free_before, _) = crate::mm::page::stats();
    let ram = crate::object::vm::GuestRam::new(ram_bytes)?;
    let vcpu = crate::object::vm::Vcpu::new(ram.clone()).map_err(|why| {
        log::error!("hypervisor: cannot create a VM: {}", why.explain());
        match why {
            crate::arch::svm::Unavailable::OutOfMemory => Error::OutOfMemory,
            _ => Error::NotSupported,
        }
    })?;
    let mut table = sched::current_process().handles.lock();
    if table.room() < 2 {
        return Err(Error::HandleTableFull);
    }
    let r = table.insert(Handle::new(Object::GuestRam(ram), Rights::DEFAULT))?;
    let v = table.insert(Handle::new(Object::Vcpu(vcpu), Rights::DEFAULT))?;
    let (free_after, _) = crate::mm::page::stats();
    let used_kib = (free_before.saturating_sub(free_after) * 4) as u64;
    log::info!(
        "hypervisor: VM created: {} MiB guest RAM; VM structures {} KiB (VMCB, I/O and MSR permission maps, nested page tables)",
        ram_bytes >> 20,
        used_kib.saturating_sub(ram_bytes >> 10)
    );
    Ok((r, v))
}

fn guest_ram(h: HandleId, rights: Rights) -> Result<Arc<crate::object::vm::GuestRam>, Error> {
    let table = sched::current_process().handles.lock();
    let handle = table.get(h)?;
    match &handle.object {
        Object::GuestRam(r) => {
            handle.require(rights)?;
            Ok(r.clone())
        }
        _ => Err(Error::WrongObjectType),
    }
}

fn vcpu_object(h: HandleId) -> Result<Arc<crate::object::vm::Vcpu>, Error> {
    let table = sched::current_process().handles.lock();
    let handle = table.get(h)?;
    match &handle.object {
        Object::Vcpu(v) => {
            handle.require(Rights::WRITE)?;
            Ok(v.clone())
        }
        _ => Err(Error::WrongObjectType),
    }
}

pub fn guest_ram_read(ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
    guest_ram(ram, Rights::READ)?.read(gpa, buf)
}

pub fn guest_ram_write(ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error> {
    guest_ram(ram, Rights::WRITE)?.write(gpa, data)
}

/// The VMM regains control at least this often while the guest runs, so
/// its emulated timers tick on time.
const VCPU_MAX_RUN_NS: u64 = 1_000_000;

pub fn vcpu_run(
    vcpu: HandleId,
    state: &mut starina_vmm::exit::VcpuState,
    inject: starina::hypervisor::Injection,
) -> Result<starina_vmm::exit::VmExit, Error> {
    let vcpu = vcpu_object(vcpu)?;
    let mut guard = vcpu.acquire()?;
    crate::arch::apic::arm_timer(VCPU_MAX_RUN_NS);
    Ok(guard.hw().run(state, inject))
}

pub fn vcpu_control(vcpu: HandleId, control: starina::hypervisor::VcpuControl) -> Result<(), Error> {
    let vcpu = vcpu_object(vcpu)?;
    let mut guard = vcpu.acquire()?;
    match control {
        starina::hypervisor::VcpuControl::TscOffset(off) => guard.hw().set_tsc_offset(off),
        starina::hypervisor::VcpuControl::Pat(pat) => guard.hw().set_pat(pat),
    }
    Ok(())
}
