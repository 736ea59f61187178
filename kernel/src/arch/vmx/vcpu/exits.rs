//! VMX exits as the VMM's [`VmExit`]s, and the few the kernel handles
//! itself: control-register writes that touch host-owned bits, XSETBV
//! (XCR0 is CPU state the kernel switches) and INVD.

use starina::abi::vcpu::cr;
use starina::abi::vcpu::Access;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;

use super::super::decode;
use super::super::decode::reason;
use super::super::decode::CrAccess;
use super::super::fields as f;
use super::super::vmcs::read;
use super::super::vmcs::read32;
use super::Step;
use super::VmxVcpu;
use super::CR4_VMXE;
use super::TYPE_NMI;
use super::VALID;
use crate::arch::xcr0;

const UD: u8 = 6;
const GP: u8 = 13;
const CR0_CD: u64 = 1 << 30;
const CR0_NW: u64 = 1 << 29;
const CR0_TS: u64 = 1 << 3;

/// The RIP after the instruction that exited (the CPU gives its length).
fn next_rip(state: &VcpuState) -> u64 {
    state
        .rip
        .wrapping_add(read32(f::EXIT_INSTRUCTION_LEN) as u64)
}

impl VmxVcpu {
    pub(super) fn translate_exit(&mut self, exit_reason: u16, state: &mut VcpuState) -> Step {
        let qualification = read(f::EXIT_QUALIFICATION);
        let exit = match exit_reason {
            reason::EXTERNAL_INTERRUPT | reason::INIT | reason::SIPI => VmExit::HostInterrupt,
            reason::EXCEPTION_OR_NMI => self.exception_exit(),
            reason::INTERRUPT_WINDOW => VmExit::InterruptWindow,
            // The held NMI goes in on the next entry.
            reason::NMI_WINDOW => return Step::Again,
            reason::TRIPLE_FAULT => VmExit::Shutdown,
            reason::CPUID => VmExit::Cpuid {
                leaf: state.gprs[0] as u32,
                subleaf: state.gprs[1] as u32,
            },
            reason::HLT => VmExit::Hlt,
            reason::VMCALL => VmExit::Vmmcall,
            reason::RDMSR | reason::WRMSR => VmExit::Msr {
                access: if exit_reason == reason::WRMSR {
                    Access::Write
                } else {
                    Access::Read
                },
                index: state.gprs[1] as u32,
                value: (state.gprs[2] << 32) | (state.gprs[0] & 0xffff_ffff),
            },
            reason::IO => {
                let io = decode::io(qualification);
                VmExit::Io {
                    port: io.port,
                    size: io.size,
                    access: io.access,
                    value: state.gprs[0] as u32,
                    string: io.string,
                    rep: io.rep,
                    next_rip: next_rip(state),
                }
            }
            reason::EPT_VIOLATION => {
                let (access, fetch) = decode::ept_violation(qualification);
                VmExit::NestedPageFault {
                    gpa: read(f::GUEST_PHYSICAL_ADDR),
                    access,
                    fetch,
                    insn_bytes: [0; 15],
                    insn_len: 0,
                }
            }
            reason::XSETBV => self.xsetbv(state),
            reason::CR_ACCESS => {
                self.cr_access(decode::cr_access(qualification), state);
                return Step::Again;
            }
            reason::INVD => {
                // Nothing cached needs dropping for a guest: a no-op.
                state.rip = next_rip(state);
                return Step::Again;
            }
            // VMX instructions, GETSEC, MONITOR/MWAIT: the guest has none
            // (CPUID hides them).
            reason::GETSEC
            | reason::VMCLEAR..=reason::VMXON
            | reason::INVEPT
            | reason::INVVPID
            | reason::VMFUNC
            | reason::MWAIT
            | reason::MONITOR => VmExit::Exception {
                vector: UD,
                error_code: None,
            },
            reason::EPT_MISCONFIG => {
                log::error!(
                    "vmx: EPT misconfiguration at {:#x}",
                    read(f::GUEST_PHYSICAL_ADDR)
                );
                VmExit::Invalid
            }
            other => VmExit::Unknown { code: other as u64 },
        };
        Step::Exit(exit)
    }

    /// Exit reason 0: no exception is intercepted, so an NMI (the host's;
    /// Starina sends none) or an exception the CPU reports anyway.
    fn exception_exit(&self) -> VmExit {
        let info = read32(f::EXIT_INTERRUPTION_INFO);
        if info & VALID == 0 || info & (7 << 8) == TYPE_NMI {
            return VmExit::HostInterrupt;
        }
        VmExit::Exception {
            vector: info as u8,
            error_code: (info & (1 << 11) != 0).then(|| read32(f::EXIT_INTERRUPTION_ERROR_CODE)),
        }
    }

    /// The guest's XSETBV: take the value into its XCR0 and step over the
    /// instruction, or raise the fault the CPU would.
    fn xsetbv(&mut self, state: &mut VcpuState) -> VmExit {
        let guest = xcr0::Guest {
            // VMX keeps the CPL in SS.DPL.
            cpl: ((state.ss.attrib >> 5) & 3) as u8,
            cr4_osxsave: state.cr4 & cr::CR4_OSXSAVE != 0,
            allowed: self.xstate.allowed(),
        };
        let value = (state.gprs[2] << 32) | (state.gprs[0] & 0xffff_ffff);
        match xcr0::xsetbv(&guest, state.gprs[1], value) {
            Ok(xcr0) => {
                self.xstate.set_xcr0(xcr0);
                state.xcr0 = xcr0;
                state.rip = next_rip(state);
                VmExit::Xsetbv {
                    value,
                    accepted: true,
                }
            }
            Err(fault) => {
                self.fault = Some(Self::exception(fault.vector(), fault.error_code(), state));
                VmExit::Xsetbv {
                    value,
                    accepted: false,
                }
            }
        }
    }

    /// A control-register access that exited: a write touching a bit the
    /// host owns (CR0.NE, CR4.VMXE, reserved bits), or CR3 where the CPU
    /// forces CR3 exiting. Done as the CPU would, or the fault raised.
    fn cr_access(&mut self, access: CrAccess, state: &mut VcpuState) {
        let gpr = |n: u8| n as usize & 15;
        let result = match access {
            CrAccess::MovTo { cr: 0, gpr: g } => self.write_cr0(state.gprs[gpr(g)], state),
            CrAccess::MovTo { cr: 4, gpr: g } => self.write_cr4(state.gprs[gpr(g)], state),
            CrAccess::MovTo { cr: 3, gpr: g } => {
                state.cr3 = state.gprs[gpr(g)];
                Ok(())
            }
            CrAccess::MovFrom { cr: 3, gpr: g } => {
                state.gprs[gpr(g)] = state.cr3;
                Ok(())
            }
            CrAccess::Clts => {
                state.cr0 &= !CR0_TS;
                Ok(())
            }
            // LMSW sets PE, MP, EM, TS from its operand; it cannot clear PE.
            CrAccess::Lmsw { source } => {
                let value = (state.cr0 & !0xe) | (source as u64 & 0xf);
                self.write_cr0(value, state)
            }
            _ => Err(UD),
        };
        match result {
            Ok(()) => state.rip = next_rip(state),
            Err(vector) => {
                let code = (vector == GP).then_some(0);
                self.fault = Some(Self::exception(vector, code, state));
            }
        }
    }

    /// MOV to CR0 with the checks the CPU makes; EFER.LMA follows paging.
    fn write_cr0(&self, value: u64, state: &mut VcpuState) -> Result<(), u8> {
        let paging = value & cr::CR0_PG != 0;
        let invalid = value >> 32 != 0
            || (paging && value & cr::CR0_PE == 0)
            || (value & CR0_NW != 0 && value & CR0_CD == 0);
        if invalid {
            return Err(GP);
        }
        let long_mode = state.efer & cr::EFER_LME != 0;
        if paging && state.cr0 & cr::CR0_PG == 0 && long_mode && state.cr4 & cr::CR4_PAE == 0 {
            return Err(GP);
        }
        state.cr0 = value;
        if long_mode && paging {
            state.efer |= cr::EFER_LMA;
        } else {
            state.efer &= !cr::EFER_LMA;
        }
        Ok(())
    }

    /// MOV to CR4: only bits this CPU has, never VMXE (the guest has no
    /// VMX), and PAE stays on in long mode.
    fn write_cr4(&self, value: u64, state: &mut VcpuState) -> Result<(), u8> {
        let allowed = self.info.cr4_fixed1 & !CR4_VMXE;
        let leaves_long_mode = state.efer & cr::EFER_LMA != 0 && value & cr::CR4_PAE == 0;
        if value & !allowed != 0 || leaves_long_mode {
            return Err(GP);
        }
        state.cr4 = value;
        Ok(())
    }
}
