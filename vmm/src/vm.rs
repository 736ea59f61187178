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
//! Platform (option A of the platform notes): one vCPU, 8259 PIC + 8254 PIT,
//! no LAPIC (hidden in CPUID), COM1, CMOS, i8042 reset, no PCI, and
//! virtio-mmio windows from [`VIRTIO_MMIO_BASE`] with IRQs from
//! [`VIRTIO_FIRST_IRQ`].

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::fmt;

use crate::boot::VirtioMmioDevice;
use crate::cpuid::CpuidPolicy;
use crate::cpuid::CpuidResult;
use crate::cpuid::Paravirt;
use crate::decode;
use crate::decode::DecodeError;
use crate::decode::WalkError;
use crate::exit::Access;
use crate::exit::Gpr;
use crate::exit::VcpuState;
use crate::exit::VmExit;
use crate::iobus::all_ones;
use crate::iobus::IoBus;
use crate::legacy;
use crate::legacy::Cmos;
use crate::legacy::I8042;
use crate::memory::GuestMemory;
use crate::msr::MsrEffect;
use crate::msr::MsrState;
use crate::pic;
use crate::pic::DualPic;
use crate::pit;
use crate::pit::Pit;
use crate::serial;
use crate::serial::Serial;
use crate::virtio::mmio::MmioTransport;
use crate::virtio::mmio::WINDOW_SIZE;
use crate::virtio::VirtioDevice;

/// First virtio-mmio window: above RAM, below the 4 GiB boundary, where the
/// boot identity map reaches.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// ISA IRQs for virtio devices: 5, 6, 7, 9, 10, 11, 12, 14, 15 are free
/// (0 PIT, 1 keyboard, 2 cascade, 3/4 serial, 8 RTC, 13 FPU).
pub const VIRTIO_IRQS: [u8; 9] = [5, 6, 7, 9, 10, 11, 12, 14, 15];
pub const VIRTIO_FIRST_IRQ: u8 = VIRTIO_IRQS[0];

/// #GP, injected for refused MSR accesses.
pub const GP_VECTOR: u8 = 13;
/// What a hypercall returns in RAX: -KVM_ENOSYS.
pub const HYPERCALL_ENOSYS: u64 = (-1000i64) as u64;

/// What the backend does after an exit was handled. RIP and registers in
/// the [`VcpuState`] are already updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    Resume,
    /// The guest halted with nothing to deliver: sleep until
    /// [`Vm::next_deadline_ns`] or host input, then [`Vm::update_irqs`].
    Halt,
    /// Inject this exception (RIP not advanced: it faults on the
    /// instruction).
    InjectException {
        vector: u8,
        error_code: Option<u32>,
    },
    /// An MSR write that the backend must mirror (TSC offset, EFER, PAT,
    /// kvm-clock), then resume.
    ApplyMsr(MsrEffect),
    /// The guest asked for a reset (i8042 0xfe).
    Reset,
    /// The guest triple-faulted.
    Shutdown,
}

/// Exits the VMM cannot handle: the VM stops with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmError {
    /// INS/OUTS: not emulated (Linux does not use them on our devices).
    StringIo {
        port: u16,
    },
    /// Could not fetch the instruction at RIP.
    Fetch {
        rip: u64,
        error: WalkError,
    },
    /// The MMIO instruction is not one we emulate.
    Decode {
        rip: u64,
        gpa: u64,
        error: DecodeError,
    },
    /// A nested page fault inside guest RAM: the backend's mapping is wrong.
    FaultInRam {
        gpa: u64,
    },
    /// The backend rejected the vCPU state.
    InvalidState,
    UnknownExit {
        code: u64,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::StringIo { port } => write!(f, "string I/O on port {port:#x} is not emulated"),
            VmError::Fetch { rip, error } => {
                write!(f, "cannot fetch instruction at {rip:#x}: {error:?}")
            }
            VmError::Decode { rip, gpa, error } => {
                write!(f, "MMIO at {gpa:#x} from instruction at {rip:#x}: {error}")
            }
            VmError::FaultInRam { gpa } => write!(f, "nested page fault in RAM at {gpa:#x}"),
            VmError::InvalidState => write!(f, "backend rejected the vCPU state"),
            VmError::UnknownExit { code } => write!(f, "unhandled exit code {code:#x}"),
        }
    }
}

/// Per-exit inputs from the host.
#[derive(Debug, Clone, Copy)]
pub struct ExitContext {
    /// Monotonic host time.
    pub now_ns: u64,
    /// Host TSC, for TSC MSR reads.
    pub host_tsc: u64,
}

/// One virtio-mmio window.
pub struct VirtioSlot {
    pub base: u64,
    pub irq: u8,
    pub transport: MmioTransport<Box<dyn VirtioDevice>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortDevice {
    Serial,
    Pic,
    Elcr,
    Pit,
    PortB,
    Cmos,
    I8042,
    Pci,
    Post,
}

/// A Linux microVM's devices and exit handling.
pub struct Vm {
    pub serial: Serial,
    pub pic: DualPic,
    pub pit: Pit,
    pub cmos: Cmos,
    pub i8042: I8042,
    pub virtio: Vec<VirtioSlot>,
    pub cpuid: CpuidPolicy,
    pub msrs: MsrState,
    /// Executes CPUID on the host.
    host_cpuid: fn(u32, u32) -> CpuidResult,
    bus: IoBus<PortDevice>,
    logged_mmio: BTreeSet<u64>,
}

impl Vm {
    /// A VM whose RTC reads `unix_secs` at monotonic time `now_ns`.
    pub fn new(
        cpuid: CpuidPolicy,
        host_cpuid: fn(u32, u32) -> CpuidResult,
        unix_secs: u64,
        now_ns: u64,
    ) -> Self {
        let mut bus = IoBus::new();
        let routes = [
            (serial::COM1_BASE, 8, PortDevice::Serial),
            (pic::MASTER_CMD, 2, PortDevice::Pic),
            (pic::SLAVE_CMD, 2, PortDevice::Pic),
            (pic::ELCR_MASTER, 2, PortDevice::Elcr),
            (pit::CHANNEL0, 4, PortDevice::Pit),
            (pit::PORT_B, 1, PortDevice::PortB),
            (legacy::CMOS_INDEX, 2, PortDevice::Cmos),
            (legacy::I8042_DATA, 1, PortDevice::I8042),
            (legacy::I8042_CMD, 1, PortDevice::I8042),
            (
                legacy::PCI_CONFIG_BASE,
                legacy::PCI_CONFIG_LEN,
                PortDevice::Pci,
            ),
            (legacy::POST_PORT, 1, PortDevice::Post),
        ];
        for (base, len, dev) in routes {
            // The table above has no overlaps; a failure is a bug caught by tests.
            let _ = bus.insert(base, len, dev);
        }
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
            virtio: Vec::new(),
            cpuid,
            msrs,
            host_cpuid,
            bus,
            logged_mmio: BTreeSet::new(),
        }
    }

    /// Adds a virtio device in the next window; returns where, for the
    /// kernel command line. `None` when all IRQs are taken.
    pub fn add_virtio(&mut self, device: Box<dyn VirtioDevice>) -> Option<VirtioMmioDevice> {
        let i = self.virtio.len();
        let irq = *VIRTIO_IRQS.get(i)?;
        let base = VIRTIO_MMIO_BASE + i as u64 * WINDOW_SIZE;
        self.virtio.push(VirtioSlot {
            base,
            irq,
            transport: MmioTransport::new(device),
        });
        Some(VirtioMmioDevice {
            base,
            size: WINDOW_SIZE,
            irq: irq as u32,
        })
    }

    /// The windows to announce with `virtio_mmio.device=`.
    pub fn virtio_devices(&self) -> Vec<VirtioMmioDevice> {
        self.virtio
            .iter()
            .map(|s| VirtioMmioDevice {
                base: s.base,
                size: WINDOW_SIZE,
                irq: s.irq as u32,
            })
            .collect()
    }

    /// Samples device interrupt lines into the PIC and fires due PIT ticks.
    /// Call before every entry (handle_exit does it) and after waking up.
    pub fn update_irqs(&mut self, now_ns: u64) {
        if self.pit.poll_irq0(now_ns) {
            self.pic.pulse_irq(pit::PIT_IRQ);
        }
        self.pic.set_irq(serial::COM1_IRQ, self.serial.irq_level());
        for s in &self.virtio {
            self.pic.set_irq(s.irq, s.transport.irq_level());
        }
    }

    /// The vector the PIC would deliver now.
    pub fn pending_interrupt(&self) -> Option<u8> {
        self.pic.pending_vector()
    }

    /// INTA: call when actually injecting; returns the vector to inject.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.pic.acknowledge()
    }

    /// When the VMM must next run even if the guest stays halted.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.pit.next_irq0_ns()
    }

    /// Port read of `size` bytes.
    pub fn io_in(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        let Some((dev, offset)) = self.bus.lookup(port) else {
            self.bus.note_unknown(port, false, 0);
            return all_ones(size);
        };
        // Byte-wide ISA devices: wider accesses read consecutive ports.
        let byte = match dev {
            PortDevice::Serial => self.serial.read(offset),
            PortDevice::Pic | PortDevice::Elcr => self.pic.read(port),
            PortDevice::Pit | PortDevice::PortB => self.pit.read(port, now_ns),
            PortDevice::Cmos => self.cmos.read(port, now_ns),
            PortDevice::I8042 => self.i8042.read(port),
            // No PCI bus (mechanism #1 absent), no POST card.
            PortDevice::Pci | PortDevice::Post => return all_ones(size),
        };
        byte as u32 | (all_ones(size) & !0xff)
    }

    /// Port write of `size` bytes. Returns `true` if the guest requested a
    /// reset.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32, now_ns: u64) -> bool {
        let Some((dev, offset)) = self.bus.lookup(port) else {
            self.bus.note_unknown(port, true, value);
            return false;
        };
        let _ = size; // byte-wide devices take the low byte
        let v = value as u8;
        match dev {
            PortDevice::Serial => self.serial.write(offset, v),
            PortDevice::Pic | PortDevice::Elcr => self.pic.write(port, v),
            PortDevice::Pit | PortDevice::PortB => self.pit.write(port, v, now_ns),
            PortDevice::Cmos => self.cmos.write(port, v),
            PortDevice::I8042 => self.i8042.write(port, v),
            PortDevice::Pci | PortDevice::Post => {}
        }
        self.i8042.take_reset_request()
    }

    fn virtio_at(&mut self, gpa: u64) -> Option<(&mut VirtioSlot, u64)> {
        self.virtio
            .iter_mut()
            .find(|s| gpa >= s.base && gpa - s.base < WINDOW_SIZE)
            .map(|s| {
                let off = gpa - s.base;
                (s, off)
            })
    }

    /// MMIO read of `data.len()` bytes at `gpa` (outside RAM). Unclaimed
    /// addresses read all-ones; bad accesses to a device read zero.
    pub fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        match self.virtio_at(gpa) {
            Some((slot, off)) => {
                if let Err(e) = slot.transport.read(off, data) {
                    log::warn!("vmm: virtio at {:#x}: {e}", slot.base);
                    data.fill(0);
                }
            }
            None => {
                self.note_unknown_mmio(gpa);
                data.fill(0xff);
            }
        }
    }

    /// MMIO write at `gpa` (outside RAM). Unclaimed or bad writes are
    /// dropped (and logged).
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8], mem: &mut dyn GuestMemory) {
        match self.virtio_at(gpa) {
            Some((slot, off)) => {
                if let Err(e) = slot.transport.write(off, data, mem) {
                    log::warn!("vmm: virtio at {:#x}: {e}", slot.base);
                }
            }
            None => self.note_unknown_mmio(gpa),
        }
    }

    fn note_unknown_mmio(&mut self, gpa: u64) {
        let page = gpa & !0xfff;
        if self.logged_mmio.len() < 64 && self.logged_mmio.insert(page) {
            log::info!("vmm: access to unclaimed MMIO {gpa:#x}");
        }
    }

    /// Lets virtio devices act on host-side input (e.g. console bytes pushed).
    pub fn poll_devices(&mut self, mem: &mut dyn GuestMemory, now_ns: u64) {
        for s in &mut self.virtio {
            s.transport.poll(mem);
        }
        self.update_irqs(now_ns);
    }

    /// Handles one exit: emulates the access, updates registers and RIP.
    pub fn handle_exit(
        &mut self,
        exit: &VmExit,
        state: &mut VcpuState,
        mem: &mut dyn GuestMemory,
        ctx: ExitContext,
    ) -> Result<ExitAction, VmError> {
        let action = self.dispatch(exit, state, mem, ctx)?;
        self.update_irqs(ctx.now_ns);
        Ok(action)
    }

    fn dispatch(
        &mut self,
        exit: &VmExit,
        state: &mut VcpuState,
        mem: &mut dyn GuestMemory,
        ctx: ExitContext,
    ) -> Result<ExitAction, VmError> {
        match *exit {
            VmExit::Io {
                port,
                size,
                access,
                value,
                string,
                rep: _,
                next_rip,
            } => {
                if string {
                    return Err(VmError::StringIo { port });
                }
                let reset = match access {
                    Access::Read => {
                        let v = self.io_in(port, size, ctx.now_ns) as u64;
                        let rax = state.gpr(Gpr::Rax);
                        state.set_gpr(
                            Gpr::Rax,
                            match size {
                                1 => (rax & !0xff) | (v & 0xff),
                                2 => (rax & !0xffff) | (v & 0xffff),
                                _ => v & 0xffff_ffff,
                            },
                        );
                        false
                    }
                    Access::Write => self.io_out(port, size, value, ctx.now_ns),
                };
                state.rip = next_rip;
                Ok(if reset {
                    ExitAction::Reset
                } else {
                    ExitAction::Resume
                })
            }
            VmExit::NestedPageFault {
                gpa,
                insn_bytes,
                insn_len,
                ..
            } => {
                if gpa < mem.size() {
                    return Err(VmError::FaultInRam { gpa });
                }
                self.emulate_mmio(gpa, &insn_bytes[..insn_len.min(15) as usize], state, mem)
            }
            VmExit::Cpuid { leaf, subleaf } => {
                let r = self.cpuid.cpuid(leaf, subleaf, state.cr4, &self.host_cpuid);
                state.set_gpr(Gpr::Rax, r.eax as u64);
                state.set_gpr(Gpr::Rbx, r.ebx as u64);
                state.set_gpr(Gpr::Rcx, r.ecx as u64);
                state.set_gpr(Gpr::Rdx, r.edx as u64);
                state.rip = state.rip.wrapping_add(2);
                Ok(ExitAction::Resume)
            }
            VmExit::Msr {
                access: Access::Read,
                index,
                ..
            } => match self.msrs.read(index, ctx.host_tsc) {
                Ok(v) => {
                    state.set_gpr(Gpr::Rax, v & 0xffff_ffff);
                    state.set_gpr(Gpr::Rdx, v >> 32);
                    state.rip = state.rip.wrapping_add(2);
                    Ok(ExitAction::Resume)
                }
                Err(e) => {
                    log::debug!("vmm: rdmsr: {e}: #GP");
                    Ok(gp())
                }
            },
            VmExit::Msr {
                access: Access::Write,
                index,
                value,
            } => match self.msrs.write(index, value, ctx.host_tsc) {
                Ok(effect) => {
                    state.rip = state.rip.wrapping_add(2);
                    if let MsrEffect::Efer(efer) = effect {
                        state.efer = efer;
                    }
                    Ok(match effect {
                        MsrEffect::None => ExitAction::Resume,
                        e => ExitAction::ApplyMsr(e),
                    })
                }
                Err(e) => {
                    log::debug!("vmm: wrmsr: {e}: #GP");
                    Ok(gp())
                }
            },
            VmExit::Hlt => {
                state.rip = state.rip.wrapping_add(1);
                self.update_irqs(ctx.now_ns);
                if state.interrupts_enabled() && self.pic.has_pending() {
                    Ok(ExitAction::Resume)
                } else {
                    Ok(ExitAction::Halt)
                }
            }
            VmExit::Vmmcall => {
                state.set_gpr(Gpr::Rax, HYPERCALL_ENOSYS);
                state.rip = state.rip.wrapping_add(3);
                Ok(ExitAction::Resume)
            }
            VmExit::Shutdown => Ok(ExitAction::Shutdown),
            VmExit::InterruptWindow | VmExit::HostInterrupt => Ok(ExitAction::Resume),
            VmExit::Exception { vector, error_code } => {
                Ok(ExitAction::InjectException { vector, error_code })
            }
            VmExit::Invalid => Err(VmError::InvalidState),
            VmExit::Unknown { code } => Err(VmError::UnknownExit { code }),
        }
    }

    fn emulate_mmio(
        &mut self,
        gpa: u64,
        captured: &[u8],
        state: &mut VcpuState,
        mem: &mut dyn GuestMemory,
    ) -> Result<ExitAction, VmError> {
        let mut buf = [0u8; decode::MAX_INSN_LEN];
        let bytes: &[u8] = if captured.is_empty() {
            let n = decode::fetch_instruction(mem, state, &mut buf).map_err(|error| {
                VmError::Fetch {
                    rip: state.rip,
                    error,
                }
            })?;
            &buf[..n]
        } else {
            captured
        };
        let insn = decode::decode(bytes).map_err(|error| VmError::Decode {
            rip: state.rip,
            gpa,
            error,
        })?;
        let size = insn.size as usize;
        match insn.store_value(state) {
            Some(v) => {
                let data = v.to_le_bytes();
                self.mmio_write(gpa, &data[..size], mem);
            }
            None => {
                let mut data = [0u8; 8];
                self.mmio_read(gpa, &mut data[..size]);
                insn.complete_load(state, u64::from_le_bytes(data));
            }
        }
        state.rip = state.rip.wrapping_add(insn.len as u64);
        Ok(ExitAction::Resume)
    }
}

fn gp() -> ExitAction {
    ExitAction::InjectException {
        vector: GP_VECTOR,
        error_code: Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot;
    use crate::exit::cr;
    use crate::memory::VecMemory;
    use crate::virtio::console::Console;
    use crate::virtio::mmio::reg;
    use crate::virtio::mmio::MAGIC;

    fn host_cpuid(leaf: u32, _: u32) -> CpuidResult {
        match leaf {
            0 => CpuidResult {
                eax: 0xd,
                ..Default::default()
            },
            0x8000_0000 => CpuidResult {
                eax: 0x8000_0008,
                ..Default::default()
            },
            _ => CpuidResult {
                eax: 1,
                ebx: 2,
                ecx: u32::MAX,
                edx: u32::MAX,
            },
        }
    }

    const CTX: ExitContext = ExitContext {
        now_ns: 0,
        host_tsc: 0,
    };

    fn vm() -> Vm {
        Vm::new(CpuidPolicy::default(), host_cpuid, 0, 0)
    }

    fn out(vm: &mut Vm, st: &mut VcpuState, mem: &mut VecMemory, port: u16, v: u8) -> ExitAction {
        vm.handle_exit(
            &VmExit::Io {
                port,
                size: 1,
                access: Access::Write,
                value: v as u32,
                string: false,
                rep: false,
                next_rip: st.rip + 1,
            },
            st,
            mem,
            CTX,
        )
        .unwrap()
    }

    #[test]
    fn serial_output_through_io_exits() {
        let mut vm = vm();
        let mut st = VcpuState::default();
        let mut mem = VecMemory::new(1 << 20);
        for b in b"Linux version 6.12\n" {
            assert_eq!(
                out(&mut vm, &mut st, &mut mem, 0x3f8, *b),
                ExitAction::Resume
            );
        }
        assert_eq!(st.rip, 19);
        assert_eq!(vm.serial.take_lines().next().unwrap(), "Linux version 6.12");
        // IN merges into AL only.
        st.set_gpr(Gpr::Rax, 0x1234_5678_9abc_def0);
        vm.handle_exit(
            &VmExit::Io {
                port: 0x3fd,
                size: 1,
                access: Access::Read,
                value: 0,
                string: false,
                rep: false,
                next_rip: 100,
            },
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(st.gpr(Gpr::Rax), 0x1234_5678_9abc_de60);
    }

    #[test]
    fn unknown_ports_and_pci_read_all_ones() {
        let mut vm = vm();
        assert_eq!(vm.io_in(0x2f8, 1, 0), 0xff);
        assert_eq!(vm.io_in(0xcfc, 4, 0), 0xffff_ffff);
        assert_eq!(vm.io_in(0xcf8, 4, 0), 0xffff_ffff);
        assert!(!vm.io_out(0x80, 1, 0x42, 0));
        assert!(!vm.io_out(0x1234, 4, 7, 0));
    }

    #[test]
    fn i8042_reset_request() {
        let mut vm = vm();
        let mut st = VcpuState::default();
        let mut mem = VecMemory::new(1 << 20);
        assert_eq!(
            out(&mut vm, &mut st, &mut mem, 0x64, 0xfe),
            ExitAction::Reset
        );
    }

    #[test]
    fn cpuid_msr_hlt_vmmcall() {
        let mut vm = vm();
        let mut st = VcpuState::default();
        let mut mem = VecMemory::new(1 << 20);
        vm.handle_exit(
            &VmExit::Cpuid {
                leaf: 1,
                subleaf: 0,
            },
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(st.rip, 2);
        assert_ne!(st.gpr(Gpr::Rcx) & (1 << 31), 0);
        // Unknown MSR: #GP, RIP unchanged.
        let a = vm
            .handle_exit(
                &VmExit::Msr {
                    access: Access::Read,
                    index: 0xdead,
                    value: 0,
                },
                &mut st,
                &mut mem,
                CTX,
            )
            .unwrap();
        assert_eq!(
            a,
            ExitAction::InjectException {
                vector: 13,
                error_code: Some(0)
            }
        );
        assert_eq!(st.rip, 2);
        // PAT read splits into EDX:EAX.
        vm.handle_exit(
            &VmExit::Msr {
                access: Access::Read,
                index: crate::msr::MSR_IA32_PAT,
                value: 0,
            },
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(st.gpr(Gpr::Rax), 0x0007_0406);
        assert_eq!(st.gpr(Gpr::Rdx), 0x0007_0406);
        assert_eq!(st.rip, 4);
        // HLT with nothing pending halts.
        assert_eq!(
            vm.handle_exit(&VmExit::Hlt, &mut st, &mut mem, CTX)
                .unwrap(),
            ExitAction::Halt
        );
        assert_eq!(st.rip, 5);
        vm.handle_exit(&VmExit::Vmmcall, &mut st, &mut mem, CTX)
            .unwrap();
        assert_eq!(st.gpr(Gpr::Rax), HYPERCALL_ENOSYS);
        assert_eq!(
            vm.handle_exit(&VmExit::Shutdown, &mut st, &mut mem, CTX)
                .unwrap(),
            ExitAction::Shutdown
        );
        assert!(vm
            .handle_exit(&VmExit::Invalid, &mut st, &mut mem, CTX)
            .is_err());
    }

    #[test]
    fn pit_tick_reaches_pic() {
        let mut vm = vm();
        // Linux-style PIC init: vectors 0x30.., unmask IRQ 0.
        for (p, v) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0x21, 0xfe),
        ] {
            vm.io_out(p, 1, v, 0);
        }
        vm.io_out(0x43, 1, 0x34, 0);
        vm.io_out(0x40, 1, 0xa9, 0);
        vm.io_out(0x40, 1, 0x04, 0); // 1193 ticks = 1 ms
        vm.update_irqs(500_000);
        assert_eq!(vm.pending_interrupt(), None);
        let t = vm.next_deadline_ns().unwrap();
        vm.update_irqs(t);
        assert_eq!(vm.pending_interrupt(), Some(0x30));
        assert_eq!(vm.acknowledge_interrupt(), Some(0x30));
        // HLT with IF=1 and a pending interrupt resumes.
        vm.io_out(0x20, 1, 0x20, 0);
        vm.update_irqs(t + 1_000_000);
        let mut st = VcpuState {
            rflags: cr::RFLAGS_IF | 2,
            ..Default::default()
        };
        let mut mem = VecMemory::new(1 << 20);
        assert_eq!(
            vm.handle_exit(
                &VmExit::Hlt,
                &mut st,
                &mut mem,
                ExitContext {
                    now_ns: t + 1_000_000,
                    host_tsc: 0
                }
            )
            .unwrap(),
            ExitAction::Resume
        );
    }

    /// The guest reads the virtio magic with `mov 0x0(%rbx),%eax` through a
    /// nested page fault; the VMM fetches the instruction via the boot page
    /// tables.
    #[test]
    fn mmio_through_nested_page_fault() {
        let mut vm = vm();
        let dev = vm.add_virtio(Box::new(Console::new())).unwrap();
        assert_eq!(dev.base, VIRTIO_MMIO_BASE);
        assert_eq!(dev.irq, 5);
        let img = boot::tests::fake_bzimage(&[0u8; 64]);
        let k = boot::BzImage::parse(&img).unwrap();
        let mut mem = VecMemory::new(32 << 20);
        let info = boot::load_linux(
            &mut mem,
            &k,
            &boot::BootConfig {
                virtio_devices: &vm.virtio_devices(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(info.cmdline.contains("virtio_mmio.device=4K@0xd0000000:5"));
        let mut st = info.vcpu.clone();
        // mov 0x0(%rbx),%eax at the kernel entry.
        mem.write(st.rip, &[0x8b, 0x43, 0x00]).unwrap();
        st.set_gpr(Gpr::Rbx, VIRTIO_MMIO_BASE);
        let rip = st.rip;
        let fault = |gpa| VmExit::NestedPageFault {
            gpa,
            access: Access::Read,
            fetch: false,
            insn_bytes: [0; 15],
            insn_len: 0,
        };
        vm.handle_exit(
            &fault(VIRTIO_MMIO_BASE + reg::MAGIC),
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(st.gpr(Gpr::Rax), MAGIC as u64);
        assert_eq!(st.rip, rip + 3);
        // Device id via captured bytes (decode assists path).
        let mut bytes = [0u8; 15];
        bytes[..3].copy_from_slice(&[0x8b, 0x4b, 0x08]); // mov 0x8(%rbx),%ecx
        vm.handle_exit(
            &VmExit::NestedPageFault {
                gpa: VIRTIO_MMIO_BASE + reg::DEVICE_ID,
                access: Access::Read,
                fetch: false,
                insn_bytes: bytes,
                insn_len: 3,
            },
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(st.gpr(Gpr::Rcx), 3);
        // A store: movl $1,0x70(%rbx) -> status ACKNOWLEDGE.
        let rip = st.rip;
        mem.write(rip, &[0xc7, 0x43, 0x70, 1, 0, 0, 0]).unwrap();
        vm.handle_exit(
            &fault(VIRTIO_MMIO_BASE + reg::STATUS),
            &mut st,
            &mut mem,
            CTX,
        )
        .unwrap();
        assert_eq!(vm.virtio[0].transport.status(), 1);
        assert_eq!(st.rip, rip + 7);
        // Unclaimed MMIO reads all-ones.
        let rip = st.rip;
        mem.write(rip, &[0x8b, 0x03]).unwrap();
        vm.handle_exit(&fault(0xfed0_0000), &mut st, &mut mem, CTX)
            .unwrap();
        assert_eq!(st.gpr(Gpr::Rax), 0xffff_ffff);
        // Garbage instruction: a typed error, no panic.
        mem.write(st.rip, &[0x0f, 0x0b]).unwrap();
        assert!(matches!(
            vm.handle_exit(&fault(VIRTIO_MMIO_BASE), &mut st, &mut mem, CTX),
            Err(VmError::Decode { .. })
        ));
        // A fault inside RAM is a backend bug.
        assert_eq!(
            vm.handle_exit(&fault(0x1000), &mut st, &mut mem, CTX),
            Err(VmError::FaultInRam { gpa: 0x1000 })
        );
    }

    #[test]
    fn virtio_irqs_are_distinct_and_bounded() {
        let mut vm = vm();
        let mut irqs = Vec::new();
        while let Some(d) = vm.add_virtio(Box::new(Console::new())) {
            irqs.push(d.irq);
        }
        assert_eq!(irqs.len(), VIRTIO_IRQS.len());
        assert!(!irqs.contains(&4) && !irqs.contains(&0) && !irqs.contains(&2));
    }
}
