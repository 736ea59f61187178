//! A kernel stand-in for the SDK's host tests: a handle table of devices
//! and DMA allocations that follows the kernel's ownership rules (DMA
//! memory needs a device handle; `handle_close` refuses DMA handles; only
//! `dma_free` frees them), and channels, polls and timers ([`ipc`]) for
//! the mainloop's tests, and consoles with scripted input and captured
//! output. Every other call is `NotSupported`.
//!
//! Components' host tests use it through the SDK's feature `fake-kernel`
//! (a dev-dependency `starina = { workspace = true, features =
//! ["fake-kernel"] }`): `FakeKernel::install()`, then the SDK's types as
//! usual. One fake serves every test thread; give each test objects of its
//! own (each console has its own input and output).

mod ipc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::abi::vcpu::HostClock;
use crate::abi::vcpu::Injection;
use crate::abi::vcpu::VcpuControl;
use crate::abi::vcpu::VcpuState;
use crate::abi::vcpu::VmExit;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Device,
    Dma { paddr: u64 },
}

#[derive(Default)]
struct State {
    next_id: u32,
    handles: BTreeMap<u32, Object>,
    /// DMA handles freed, in order.
    freed: Vec<HandleId>,
    ipc: ipc::Ipc,
}

pub struct FakeKernel {
    state: spin::Mutex<State>,
}

pub static FAKE: FakeKernel = FakeKernel {
    state: spin::Mutex::new(State {
        next_id: 1,
        handles: BTreeMap::new(),
        freed: Vec::new(),
        ipc: ipc::Ipc::new(),
    }),
};

impl FakeKernel {
    /// Registers the fake (once) and returns it.
    pub fn install() -> &'static FakeKernel {
        crate::syscall::register(&FAKE);
        &FAKE
    }

    pub fn add_device(&self) -> HandleId {
        self.insert(Object::Device)
    }

    fn next_id(&self) -> u32 {
        let mut state = self.state.lock();
        state.next_id += 1;
        state.next_id - 1
    }

    fn insert(&self, object: Object) -> HandleId {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.handles.insert(id, object);
        HandleId(id)
    }

    pub fn object(&self, id: HandleId) -> Option<Object> {
        self.state.lock().handles.get(&id.0).copied()
    }

    /// A new console handle (what the `console` privilege gives), with
    /// nothing typed yet.
    pub fn add_console(&self) -> HandleId {
        let id = self.next_id();
        self.state.lock().ipc.console(id);
        HandleId(id)
    }

    /// Queues `bytes` as typed on console `id` (panics if `id` is not one).
    pub fn console_type(&self, id: HandleId, bytes: &[u8]) {
        let r = self.state.lock().ipc.console_type(id, bytes);
        r.expect("console_type: not a console handle");
    }

    /// Takes what the component wrote to console `id` since the last call.
    pub fn console_output(&self, id: HandleId) -> Vec<u8> {
        let r = self.state.lock().ipc.console_output(id);
        r.expect("console_output: not a console handle")
    }

    /// How many times `id` was freed as DMA memory.
    pub fn times_freed(&self, id: HandleId) -> usize {
        self.state.lock().freed.iter().filter(|&&f| f == id).count()
    }
}

impl KernelApi for FakeKernel {
    fn log(&self, _level: LogLevel, _args: core::fmt::Arguments<'_>) {}

    fn time_now(&self) -> u64 {
        0
    }

    fn time_unix(&self) -> u64 {
        0
    }

    fn host_clock(&self) -> HostClock {
        HostClock::default()
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        let mut state = self.state.lock();
        if state.ipc.close(handle) {
            return Ok(());
        }
        match state.handles.get(&handle.0) {
            None => Err(Error::InvalidHandle),
            Some(Object::Dma { .. }) => Err(Error::WrongObjectType),
            Some(_) => {
                state.handles.remove(&handle.0);
                Ok(())
            }
        }
    }

    fn handle_duplicate(&self, _: HandleId, _: Rights) -> Result<HandleId, Error> {
        Err(Error::NotSupported)
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        let (a, b) = (self.next_id(), self.next_id());
        self.state.lock().ipc.channel_pair(a, b);
        Ok((HandleId(a), HandleId(b)))
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        self.state.lock().ipc.send(ch, kind, data, handles)
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        self.state.lock().ipc.recv(ch, data, handles)
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        let id = self.next_id();
        self.state.lock().ipc.poll(id);
        Ok(HandleId(id))
    }

    fn poll_add(
        &self,
        poll: HandleId,
        target: HandleId,
        interests: Readiness,
    ) -> Result<(), Error> {
        self.state.lock().ipc.poll_add(poll, target, interests)
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        self.state.lock().ipc.poll_remove(poll, target)
    }

    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        self.state.lock().ipc.poll_wait(poll)
    }

    fn poll_wait_recv(
        &self,
        poll: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<PollEvent, Error> {
        let mut state = self.state.lock();
        let (id, ready) = state.ipc.poll_wait(poll)?;
        let received = (ready.contains(Readiness::READABLE) && state.ipc.is_channel(id))
            .then(|| state.ipc.recv(id, data, handles));
        Ok(PollEvent {
            id,
            ready,
            received,
        })
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        let id = self.next_id();
        self.state.lock().ipc.timer(id);
        Ok(HandleId(id))
    }

    fn timer_set(&self, timer: HandleId, _after_ns: u64) -> Result<(), Error> {
        self.state.lock().ipc.timer_set(timer)
    }

    fn thread_spawn(&self, _: ThreadMain) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn thread_yield(&self) {}

    fn process_exit(&self, code: i32) -> ! {
        panic!("process_exit({code}) in a host test")
    }

    fn process_id(&self) -> u64 {
        1
    }

    fn vm_create(&self, _: HandleId, _: u64) -> Result<(HandleId, HandleId), Error> {
        Err(Error::NotSupported)
    }

    fn vcpu_create(&self, _: HandleId) -> Result<HandleId, Error> {
        Err(Error::NotSupported)
    }

    fn guest_ram_read(&self, _: HandleId, _: u64, _: &mut [u8]) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn guest_ram_write(&self, _: HandleId, _: u64, _: &[u8]) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn vcpu_run(&self, _: HandleId, _: &mut VcpuState, _: Injection) -> Result<VmExit, Error> {
        Err(Error::NotSupported)
    }

    fn vcpu_control(&self, _: HandleId, _: VcpuControl) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn host_cpuid(&self, _: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }

    fn bootfs_file(&self, _: &str) -> Result<&'static [u8], Error> {
        Err(Error::NotFound)
    }

    fn system_shutdown(&self, _: HandleId, _: u8) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn device_info(&self, _: HandleId) -> Result<DeviceInfo, Error> {
        Err(Error::NotSupported)
    }

    fn device_pci_config_read(&self, _: HandleId, _: u16) -> Result<u32, Error> {
        Err(Error::NotSupported)
    }

    fn device_pci_config_write(&self, _: HandleId, _: u16, _: u32) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn device_mmio_map(&self, _: HandleId, _: u64, _: usize) -> Result<usize, Error> {
        Err(Error::NotSupported)
    }

    fn device_io_read(&self, _: HandleId, _: u16, _: u8) -> Result<u32, Error> {
        Err(Error::NotSupported)
    }

    fn device_io_write(&self, _: HandleId, _: u16, _: u8, _: u32) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn interrupt_create(&self, _: HandleId) -> Result<HandleId, Error> {
        Err(Error::NotSupported)
    }

    fn interrupt_ack(&self, _: HandleId) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn dma_alloc(&self, device: HandleId, pages: usize) -> Result<DmaAllocation, Error> {
        match self.object(device) {
            None => return Err(Error::InvalidHandle),
            Some(Object::Device) => {}
            Some(_) => return Err(Error::WrongObjectType),
        }
        // Leaked: host tests are short, and the memory must outlive the
        // handle's misuse attempts.
        let memory = alloc::vec![0u8; pages * crate::driver::PAGE_SIZE].leak();
        let vaddr = memory.as_mut_ptr() as usize;
        let paddr = vaddr as u64;
        let handle = self.insert(Object::Dma { paddr });
        Ok(DmaAllocation {
            handle,
            paddr,
            vaddr,
        })
    }

    fn dma_free(&self, dma: HandleId) -> Result<(), Error> {
        let mut state = self.state.lock();
        match state.handles.get(&dma.0) {
            None => Err(Error::InvalidHandle),
            Some(Object::Dma { .. }) => {
                state.handles.remove(&dma.0);
                state.freed.push(dma);
                Ok(())
            }
            Some(_) => Err(Error::WrongObjectType),
        }
    }

    fn dma_translate(&self, _: HandleId, _: usize, _: usize) -> Result<u64, Error> {
        Err(Error::NotSupported)
    }

    fn system_component_status(&self, _: HandleId, _: usize) -> Result<ComponentStatus, Error> {
        Err(Error::NotSupported)
    }

    fn system_log_read(&self, _: HandleId, _: u64, _: &mut [u8]) -> Result<(u64, usize), Error> {
        Err(Error::NotSupported)
    }

    fn system_memory_stats(&self, _: HandleId) -> Result<MemoryStats, Error> {
        Err(Error::NotSupported)
    }

    fn system_cpu_stats(&self, _: HandleId, _: usize) -> Result<CpuStats, Error> {
        Err(Error::NotSupported)
    }

    fn thread_pin(&self, _: Option<usize>) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn command_spawn(&self, _: HandleId, _: &[u8], _: [HandleId; 3]) -> Result<HandleId, Error> {
        Err(Error::NotSupported)
    }

    fn job_status(&self, _: HandleId) -> Result<Option<i32>, Error> {
        Err(Error::NotSupported)
    }

    fn job_kill(&self, _: HandleId) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn command_name(&self, _: HandleId, _: usize) -> Result<&'static str, Error> {
        Err(Error::NotFound)
    }

    fn component_control(
        &self,
        _: HandleId,
        _: &str,
        _: crate::abi::ComponentAction,
    ) -> Result<(), Error> {
        Err(Error::NotSupported)
    }

    fn console_read(&self, console: HandleId, buf: &mut [u8]) -> Result<usize, Error> {
        self.state.lock().ipc.console_read(console, buf)
    }

    fn console_write(&self, console: HandleId, data: &[u8]) -> Result<usize, Error> {
        self.state.lock().ipc.console_write(console, data)
    }
}
