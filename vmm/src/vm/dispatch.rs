//! Exit handling: each [`VmExit`] becomes device accesses, register and RIP
//! updates, and an [`ExitAction`] for the backend.

use super::apic;
use super::ExitAction;
use super::ExitContext;
use super::Vm;
use super::VmError;
use crate::decode;
use crate::exit::Access;
use crate::exit::Gpr;
use crate::exit::VcpuState;
use crate::exit::VmExit;
use crate::memory::GuestMemory;
use crate::msr::MsrEffect;
use crate::pit;

/// #GP, injected for refused MSR accesses.
pub const GP_VECTOR: u8 = 13;
/// What a hypercall returns in RAX: -KVM_ENOSYS.
pub const HYPERCALL_ENOSYS: u64 = (-1000i64) as u64;

impl Vm {
    /// Handles one exit: emulates the access, updates registers and RIP.
    pub fn handle_exit(
        &mut self,
        exit: &VmExit,
        state: &mut VcpuState,
        mem: &mut dyn GuestMemory,
        ctx: ExitContext,
    ) -> Result<ExitAction, VmError> {
        let action = self.dispatch(exit, state, mem, ctx)?;
        if matches!(*exit, VmExit::Io { port, .. } if pit::is_pit_port(port)) {
            // Linux's TSC calibration reads the PIT some 16,000 times in a
            // row: such an exit changes no other device's line.
            self.update_pit_irq(ctx.now_ns);
        } else {
            self.update_irqs(ctx.now_ns);
        }
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
                let reset = self.port_io(port, size, access, value, state, ctx.now_ns);
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
            VmExit::Cpuid { leaf, subleaf } => Ok(self.cpuid(leaf, subleaf, state, ctx.vcpu)),
            VmExit::Msr {
                access: Access::Read,
                index,
                ..
            } => Ok(self.rdmsr(index, state, ctx)),
            VmExit::Msr {
                access: Access::Write,
                index,
                value,
            } => Ok(self.wrmsr(index, value, state, mem, ctx)),
            VmExit::Hlt => Ok(self.hlt(state, ctx)),
            VmExit::Vmmcall => {
                state.set_gpr(Gpr::Rax, HYPERCALL_ENOSYS);
                state.rip = state.rip.wrapping_add(3);
                Ok(ExitAction::Resume)
            }
            VmExit::Shutdown => Ok(ExitAction::Shutdown),
            // The kernel handled XSETBV (XCR0 is CPU state it switches).
            VmExit::InterruptWindow | VmExit::HostInterrupt | VmExit::Xsetbv { .. } => {
                Ok(ExitAction::Resume)
            }
            VmExit::Exception { vector, error_code } => {
                Ok(ExitAction::InjectException { vector, error_code })
            }
            VmExit::Invalid => Err(VmError::InvalidState),
            VmExit::Unknown { code } => Err(VmError::UnknownExit { code }),
        }
    }

    /// `IN` into AL/AX/EAX, or `OUT`; returns whether the guest asked for a
    /// reset.
    fn port_io(
        &mut self,
        port: u16,
        size: u8,
        access: Access,
        value: u32,
        state: &mut VcpuState,
        now_ns: u64,
    ) -> bool {
        match access {
            Access::Read => {
                let v = self.io_in(port, size, now_ns) as u64;
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
            Access::Write => self.io_out(port, size, value, now_ns),
        }
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32, state: &mut VcpuState, vcpu: usize) -> ExitAction {
        let mut r = self
            .cpuid
            .cpuid(leaf, subleaf, state.cr4, state.xcr0, &self.host_cpuid);
        if leaf == 1 && self.apic.is_some() {
            // The initial APIC ID: the vCPU's index.
            r.ebx = (r.ebx & 0x00ff_ffff) | ((vcpu as u32 & 0xff) << 24);
        }
        state.set_gpr(Gpr::Rax, r.eax as u64);
        state.set_gpr(Gpr::Rbx, r.ebx as u64);
        state.set_gpr(Gpr::Rcx, r.ecx as u64);
        state.set_gpr(Gpr::Rdx, r.edx as u64);
        state.rip = state.rip.wrapping_add(2);
        ExitAction::Resume
    }

    fn rdmsr(&mut self, index: u32, state: &mut VcpuState, ctx: ExitContext) -> ExitAction {
        let value = if self.apic.is_some() && apic::is_apic_msr(index) {
            self.apic_rdmsr(ctx.vcpu, index, ctx.now_ns)
                .map_err(|e| log::debug!("vmm: rdmsr {index:#x}: {e:?}: #GP"))
        } else {
            self.msrs
                .read(index, ctx.host_tsc)
                .map_err(|e| log::debug!("vmm: rdmsr: {e}: #GP"))
        };
        match value {
            Ok(v) => {
                state.set_gpr(Gpr::Rax, v & 0xffff_ffff);
                state.set_gpr(Gpr::Rdx, v >> 32);
                state.rip = state.rip.wrapping_add(2);
                ExitAction::Resume
            }
            Err(()) => gp(),
        }
    }

    fn wrmsr(
        &mut self,
        index: u32,
        value: u64,
        state: &mut VcpuState,
        mem: &mut dyn GuestMemory,
        ctx: ExitContext,
    ) -> ExitAction {
        if self.apic.is_some() && apic::is_apic_msr(index) {
            return match self.apic_wrmsr(ctx.vcpu, index, value, ctx.now_ns) {
                Ok(()) => {
                    state.rip = state.rip.wrapping_add(2);
                    ExitAction::Resume
                }
                Err(e) => {
                    log::debug!("vmm: wrmsr {index:#x}: {e:?}: #GP");
                    gp()
                }
            };
        }
        match self.msrs.write(index, value, ctx.host_tsc) {
            Ok(effect) => {
                state.rip = state.rip.wrapping_add(2);
                let offset = self.msrs.tsc_offset;
                match effect {
                    MsrEffect::Efer(efer) => state.efer = efer,
                    MsrEffect::KvmSystemTime(v) => {
                        self.kvmclock.system_time_msr(ctx.vcpu, v, mem, offset)
                    }
                    MsrEffect::KvmWallClock(gpa) => self.kvmclock.wall_clock_msr(gpa, mem),
                    MsrEffect::TscOffset(_) => self.kvmclock.tsc_offset_changed(mem, offset),
                    MsrEffect::Pat(_) | MsrEffect::None => {}
                }
                match effect {
                    // The VMM wrote the guest's clock structures itself.
                    MsrEffect::None | MsrEffect::KvmSystemTime(_) | MsrEffect::KvmWallClock(_) => {
                        ExitAction::Resume
                    }
                    e => ExitAction::ApplyMsr(e),
                }
            }
            Err(e) => {
                log::debug!("vmm: wrmsr: {e}: #GP");
                gp()
            }
        }
    }

    fn hlt(&mut self, state: &mut VcpuState, ctx: ExitContext) -> ExitAction {
        state.rip = state.rip.wrapping_add(1);
        // An idle guest may be waiting for buffers whose interrupt waits.
        self.virtio.raise_deferred();
        self.update_irqs(ctx.now_ns);
        if state.interrupts_enabled() && self.has_pending_on(ctx.vcpu) {
            ExitAction::Resume
        } else {
            ExitAction::Halt
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

impl Vm {
    /// Whether vCPU `cpu` has an interrupt to take (a halt then resumes).
    fn has_pending_on(&self, cpu: usize) -> bool {
        match &self.apic {
            Some(_) => self.pending_interrupt_on(cpu).is_some(),
            None => self.pic.has_pending(),
        }
    }
}
