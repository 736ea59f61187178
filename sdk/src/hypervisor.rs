//! Hypervisor objects: guest memory and a vCPU, for components whose spec
//! has the `hypervisor` privilege (the linux server).
//!
//! The exit and register types are the ABI's (`starina::abi::vcpu`, which
//! the VMM re-exports as `starina_vmm::exit`), so the kernel's SVM backend
//! and a later VMX backend report the same thing.
//!
//! ```ignore
//! let (ram, vcpu) = env.hypervisor.create_vm(256 << 20)?;
//! ram.write(0x10_0000, kernel_image)?;
//! let mut state = initial_state;
//! loop {
//!     let exit = vcpu.run(&mut state, Injection::None)?;
//!     // hand `exit` to starina_vmm::vm::Vm::handle_exit ...
//! }
//! ```

use crate::abi::guest_memory::GuestMemory;
use crate::abi::guest_memory::MemError;
pub use crate::abi::vcpu::HostClock;
pub use crate::abi::vcpu::Injection;
pub use crate::abi::vcpu::VcpuControl;
use crate::abi::vcpu::VcpuState;
use crate::abi::vcpu::VmExit;
pub use crate::abi::vcpu::DEFAULT_RUN_NS;

use crate::abi::Error;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

/// The privilege to create virtual machines (spec privilege `hypervisor`).
#[derive(Debug)]
pub struct Hypervisor(OwnedHandle);

/// A guest's RAM: guest-physical `[0, size)`, backed by host pages and
/// mapped for the guest through nested page tables. Addresses outside RAM
/// are MMIO: guest accesses there exit to the VMM.
#[derive(Debug)]
pub struct GuestRam {
    handle: OwnedHandle,
    size: u64,
}

/// A virtual CPU of one guest.
#[derive(Debug)]
pub struct Vcpu(OwnedHandle);

impl Hypervisor {
    pub fn from_handle(h: OwnedHandle) -> Hypervisor {
        Hypervisor(h)
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    /// Creates a guest with `ram_bytes` of RAM (a multiple of 2 MiB) and one
    /// vCPU. Fails with `NotSupported` (and a log line saying how to get
    /// it) when the CPU has no usable hardware virtualization.
    pub fn create_vm(&self, ram_bytes: u64) -> Result<(GuestRam, Vcpu), Error> {
        let (ram, vcpu) = kernel().vm_create(self.0.id(), ram_bytes)?;
        Ok((
            GuestRam {
                handle: OwnedHandle::from_raw(ram),
                size: ram_bytes,
            },
            Vcpu(OwnedHandle::from_raw(vcpu)),
        ))
    }
}

impl GuestRam {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        kernel().guest_ram_read(self.handle.id(), gpa, buf)
    }

    pub fn write_bytes(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        kernel().guest_ram_write(self.handle.id(), gpa, data)
    }

    /// Another handle to the same RAM (for another thread of the VMM).
    pub fn try_clone(&self) -> Result<GuestRam, Error> {
        let handle = self.handle.duplicate(crate::abi::Rights::DEFAULT)?;
        Ok(GuestRam {
            handle,
            size: self.size,
        })
    }

    /// Adds a vCPU to this guest (its next CPU). The calling thread is
    /// pinned to the host CPU the kernel picked for it: call it from the
    /// thread that runs the vCPU.
    pub fn create_vcpu(&self) -> Result<Vcpu, Error> {
        let vcpu = kernel().vcpu_create(self.handle.id())?;
        Ok(Vcpu(OwnedHandle::from_raw(vcpu)))
    }
}

/// The kernel's error for a guest RAM access as the VMM's [`MemError`]:
/// a range outside guest RAM is `OutOfBounds`, anything else is `Kernel`.
fn mem_error(e: Error, gpa: u64, len: usize) -> MemError {
    match e {
        Error::OutsideGuestRam => MemError::OutOfBounds {
            gpa,
            len: len as u64,
        },
        other => MemError::Kernel(other),
    }
}

impl GuestMemory for GuestRam {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_bytes(gpa, buf)
            .map_err(|e| mem_error(e, gpa, buf.len()))
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.write_bytes(gpa, data)
            .map_err(|e| mem_error(e, gpa, data.len()))
    }
}

impl Vcpu {
    /// Enters the guest with `state` and runs it until it needs the VMM;
    /// `state` then holds the guest's registers at the exit.
    pub fn run(&self, state: &mut VcpuState, inject: Injection) -> Result<VmExit, Error> {
        kernel().vcpu_run(self.0.id(), state, inject)
    }

    pub fn control(&self, control: VcpuControl) -> Result<(), Error> {
        kernel().vcpu_control(self.0.id(), control)
    }
}

/// The kernel's clock (TSC rate and epoch, wall-clock offset), as the
/// VMM's kvm-clock needs it. Call again when it may have been re-scaled
/// ([`HostClock::generation`]).
pub fn host_clock() -> HostClock {
    kernel().host_clock()
}

/// The host CPU's CPUID leaf, as the VMM's CPUID policy needs it.
pub fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    kernel().host_cpuid(leaf, subleaf)
}
