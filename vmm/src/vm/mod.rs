//! The VM: every device of a Linux microVM, and the exit handler that drives
//! them.
//!
//! The backend's run loop is:
//!
//! ```text
//! loop {
//!     if let Some(v) = vm.pending_interrupt() { inject when IF=1, else request a window }
//!     let exit = vcpu.run(&mut state);            // SVM VMRUN / VMX VMLAUNCH
//!     match vm.handle_exit(&exit, &mut state, mem, ctx)? {
//!         ExitAction::Resume => {}
//!         ExitAction::Halt => wait until vm.next_deadline_ns() or input, then vm.update_irqs(now)
//!         ExitAction::InjectException { .. } => queue the event
//!         ExitAction::ApplyMsr(effect) => copy into the VMCB
//!         ExitAction::Reset | ExitAction::Shutdown => stop
//!     }
//! }
//! ```
//!
//! Platform: without [`Vm::enable_apic`] option A of the platform notes
//! (one vCPU, 8259 PIC + 8254 PIT, no LAPIC in CPUID); with it option B
//! (1 to 8 vCPUs, x2APIC local APICs through MSR exits, an I/O APIC, an MP
//! table; the PIT on pin 2). Both: COM1, CMOS, i8042 reset, no PCI, and
//! virtio-mmio windows from [`VIRTIO_MMIO_BASE`] with IRQs from
//! [`VIRTIO_FIRST_IRQ`]. The exiting vCPU is [`ExitContext::vcpu`].
//!
//! The devices are private: the backend reaches them through typed
//! accessors ([`Vm::serial_mut`], [`Vm::set_efer`]) and reaches a virtio
//! device through the [`DeviceSlot`] that [`Vm::add_virtio`] returned
//! ([`Vm::virtio_device_mut`], [`Vm::poll_virtio`]).
//!
//! | module | what |
//! |---|---|
//! | `action` | [`ExitAction`], [`VmError`], [`ExitContext`] |
//! | `apic` | the APIC platform: [`Vm::enable_apic`], APIC MSRs, the I/O APIC window, kicks |
//! | `dispatch` | [`Vm::handle_exit`]: exits to device accesses |
//! | `ports` | the port map, [`Vm::io_in`], [`Vm::io_out`] |
//! | `virtio_bus` | virtio-mmio windows, [`DeviceSlot`] |

mod action;
mod apic;
mod dispatch;
mod ports;
mod virtio_bus;

use alloc::vec::Vec;
use core::any::Any;

pub use action::ExitAction;
pub use action::ExitContext;
pub use action::VmError;
pub use dispatch::GP_VECTOR;
pub use dispatch::HYPERCALL_ENOSYS;
pub use virtio_bus::DeviceSlot;
pub use virtio_bus::SlotError;
pub use virtio_bus::VIRTIO_FIRST_IRQ;
pub use virtio_bus::VIRTIO_IRQS;
pub use virtio_bus::VIRTIO_MMIO_BASE;

use crate::boot::VirtioMmioDevice;
use crate::cpuid::CpuidPolicy;
use crate::cpuid::CpuidResult;
use crate::cpuid::Paravirt;
use crate::cpuid::KVM_FEATURE_CLOCKSOURCE2;
use crate::cpuid::KVM_FEATURE_CLOCKSOURCE_STABLE_BIT;
use crate::exit::HostClock;
use crate::iobus::IoBus;
use crate::kvmclock::KvmClock;
use crate::legacy::Cmos;
use crate::legacy::I8042;
use crate::memory::GuestMemory;
use crate::msr::MsrState;
use crate::pic::DualPic;
use crate::pit;
use crate::pit::Pit;
use crate::serial;
use crate::serial::Serial;
use crate::virtio::VirtioDevice;
use ports::PortDevice;
use virtio_bus::VirtioBus;

/// A Linux microVM's devices and exit handling.
pub struct Vm {
    serial: Serial,
    pic: DualPic,
    pit: Pit,
    cmos: Cmos,
    i8042: I8042,
    virtio: VirtioBus,
    cpuid: CpuidPolicy,
    msrs: MsrState,
    kvmclock: KvmClock,
    /// Executes CPUID on the host.
    host_cpuid: fn(u32, u32) -> CpuidResult,
    ports: IoBus<PortDevice>,
    /// Local APICs and the I/O APIC, once [`Vm::enable_apic`] ran.
    apic: Option<apic::ApicPlatform>,
}

impl Vm {
    /// A VM whose RTC reads `unix_secs` at monotonic time `now_ns`.
    pub fn new(
        cpuid: CpuidPolicy,
        host_cpuid: fn(u32, u32) -> CpuidResult,
        unix_secs: u64,
        now_ns: u64,
    ) -> Self {
        let msrs = MsrState {
            kvm_clock: matches!(cpuid.paravirt, Paravirt::Kvm { .. }),
            ..Default::default()
        };
        Self {
            serial: Serial::new(),
            pic: DualPic::new(),
            pit: Pit::new(),
            cmos: Cmos::new(unix_secs, now_ns),
            i8042: I8042::new(),
            virtio: VirtioBus::new(),
            cpuid,
            msrs,
            kvmclock: KvmClock::new(),
            host_cpuid,
            ports: ports::port_bus(),
            apic: None,
        }
    }

    // -- devices -------------------------------------------------------------

    /// The COM1 UART (the guest's console log).
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    pub fn serial_mut(&mut self) -> &mut Serial {
        &mut self.serial
    }

    /// The XCR0 bits this VM's CPUID offers: give them to the kernel
    /// (`VcpuControl::Xcr0Allowed`) before the first run, so its XSETBV
    /// checks agree with CPUID leaf 0xD.
    pub fn xcr0_mask(&self) -> u64 {
        self.cpuid.xcr0_mask(&self.host_cpuid)
    }

    /// The MSRs as the guest sees them.
    pub fn msrs(&self) -> &MsrState {
        &self.msrs
    }

    /// Sets the EFER the guest reads back, e.g. long mode for a guest that
    /// starts in it (`boot::load_linux`): otherwise its first
    /// read-modify-write of EFER drops LME/LMA.
    pub fn set_efer(&mut self, efer: u64) {
        self.msrs.efer = efer;
    }

    /// What CPUID shows the guest.
    pub fn cpuid_policy(&self) -> &CpuidPolicy {
        &self.cpuid
    }

    // -- kvm-clock -----------------------------------------------------------

    /// Offers kvm-clock (KVM signature and clock features in CPUID, its
    /// MSRs) over the host clock `host`. Call before the first run.
    pub fn enable_kvm_clock(&mut self, host: HostClock, mem: &mut dyn GuestMemory) {
        self.cpuid.paravirt = Paravirt::Kvm {
            features: KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT,
        };
        self.msrs.kvm_clock = true;
        self.kvmclock.set_host(host, mem, self.msrs.tsc_offset);
    }

    /// The host clock as the kernel reports it now: when it was re-scaled
    /// (a new generation), the guest's kvm-clock follows from now on.
    pub fn set_host_clock(&mut self, host: HostClock, mem: &mut dyn GuestMemory) {
        if self.msrs.kvm_clock {
            self.kvmclock.set_host(host, mem, self.msrs.tsc_offset);
        }
    }

    /// The guest's kvm-clock.
    pub fn kvm_clock(&self) -> &KvmClock {
        &self.kvmclock
    }

    // -- virtio --------------------------------------------------------------

    /// Adds a virtio device in the next window. The slot names it from now
    /// on; [`Vm::virtio_devices`] lists the windows for the kernel command
    /// line.
    pub fn add_virtio<D: VirtioDevice + Any + Send>(
        &mut self,
        device: D,
    ) -> Result<DeviceSlot<D>, SlotError> {
        self.virtio.add(device)
    }

    /// The windows to announce with `virtio_mmio.device=`.
    pub fn virtio_devices(&self) -> Vec<VirtioMmioDevice> {
        self.virtio.announcements()
    }

    /// Where the device in `slot` sits and which IRQ it raises.
    pub fn virtio_window<D>(&self, slot: DeviceSlot<D>) -> Result<VirtioMmioDevice, SlotError> {
        self.virtio.announcement(slot)
    }

    /// The device status register of the device in `slot`.
    pub fn virtio_status<D>(&self, slot: DeviceSlot<D>) -> Result<u32, SlotError> {
        self.virtio.status(slot)
    }

    /// The device model in `slot`.
    pub fn virtio_device<D: Any>(&self, slot: DeviceSlot<D>) -> Result<&D, SlotError> {
        self.virtio.device(slot)
    }

    /// The device model in `slot`, e.g. to feed it host input. Call
    /// [`Vm::poll_virtio`] after, so it moves the input into its queues.
    pub fn virtio_device_mut<D: Any>(&mut self, slot: DeviceSlot<D>) -> Result<&mut D, SlotError> {
        self.virtio.device_mut(slot)
    }

    /// Lets the device in `slot` act on host-side input or room (e.g.
    /// console bytes pushed or taken), then samples the interrupt lines.
    pub fn poll_virtio<D>(
        &mut self,
        slot: DeviceSlot<D>,
        mem: &mut dyn GuestMemory,
        now_ns: u64,
    ) -> Result<(), SlotError> {
        self.virtio.poll(slot, mem)?;
        self.update_irqs(now_ns);
        Ok(())
    }

    /// Lets every virtio device act on host-side input.
    pub fn poll_devices(&mut self, mem: &mut dyn GuestMemory, now_ns: u64) {
        self.virtio.poll_all(mem);
        self.update_irqs(now_ns);
    }

    /// MMIO read of `data.len()` bytes at `gpa` (outside RAM). Unclaimed
    /// addresses read all-ones; bad accesses to a device read zero.
    pub fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        match self.apic.is_some() && apic::is_ioapic(gpa) {
            true => self.ioapic_read(gpa, data),
            false => self.virtio.mmio_read(gpa, data),
        }
    }

    /// MMIO write at `gpa` (outside RAM). Unclaimed or bad writes are
    /// dropped (and logged).
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8], mem: &mut dyn GuestMemory) {
        match self.apic.is_some() && apic::is_ioapic(gpa) {
            true => self.ioapic_write(gpa, data),
            false => self.virtio.mmio_write(gpa, data, mem),
        }
    }

    // -- interrupts and time -------------------------------------------------

    /// Samples device interrupt lines into the PIC and fires due PIT ticks.
    /// Call before every entry (handle_exit does it) and after waking up.
    pub fn update_irqs(&mut self, now_ns: u64) {
        self.update_pit_irq(now_ns);
        let serial = self.serial.irq_level();
        self.pic.set_irq(serial::COM1_IRQ, serial);
        self.ioapic_line(serial::COM1_IRQ, serial);
        let mut lines = [(0u8, false); VIRTIO_IRQS.len()];
        let mut n = 0;
        for (irq, level) in self.virtio.irq_levels().take(lines.len()) {
            lines[n] = (irq, level);
            n += 1;
        }
        for &(irq, level) in &lines[..n] {
            self.pic.set_irq(irq, level);
            self.ioapic_line(irq, level);
        }
    }

    /// The timers' part of [`Vm::update_irqs`]: the PIT's tick (on I/O
    /// APIC pin 2, the MP table's override) and the local APIC timers,
    /// which depend on time alone.
    pub fn update_pit_irq(&mut self, now_ns: u64) {
        if self.pit.poll_irq0(now_ns) {
            self.pic.pulse_irq(pit::PIT_IRQ);
            self.ioapic_line(2, true);
            self.ioapic_line(2, false);
        }
        self.poll_apic_timers(now_ns);
    }

    /// The vector the bootstrap processor would take now.
    #[inline]
    pub fn pending_interrupt(&self) -> Option<u8> {
        self.pending_interrupt_on(0)
    }

    /// The vector vCPU `cpu` would take now.
    pub fn pending_interrupt_on(&self, cpu: usize) -> Option<u8> {
        match &self.apic {
            Some(apic) => self.apic_pending(apic, cpu),
            None => self.pic.pending_vector(),
        }
    }

    /// INTA: call when actually injecting; returns the vector to inject.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.acknowledge_interrupt_on(0)
    }

    /// INTA on vCPU `cpu`.
    pub fn acknowledge_interrupt_on(&mut self, cpu: usize) -> Option<u8> {
        match self.apic.is_some() {
            true => self.apic_acknowledge(cpu),
            false => self.pic.acknowledge(),
        }
    }

    /// Takes an NMI sent to vCPU `cpu`.
    pub fn take_nmi(&mut self, cpu: usize) -> bool {
        self.apic
            .as_mut()
            .is_some_and(|a| a.cpus.apic_mut(cpu).take_nmi())
    }

    /// When the VMM must next run even if the guest stays halted.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.next_deadline_ns_on(0)
    }

    /// When vCPU `cpu`'s thread must next run even if its vCPU stays
    /// halted: its local APIC timer, and on the BSP the PIT's tick.
    pub fn next_deadline_ns_on(&self, cpu: usize) -> Option<u64> {
        let pit = match cpu {
            0 => self.pit.next_irq0_ns(),
            _ => None,
        };
        let lapic = self
            .apic
            .as_ref()
            .and_then(|a| a.cpus.apic(cpu).next_deadline_ns());
        match (pit, lapic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod apic_tests;
