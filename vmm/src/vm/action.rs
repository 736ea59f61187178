//! What an exit leads to: the backend's next step ([`ExitAction`]), the
//! exits the VMM cannot handle ([`VmError`]), and the host's per-exit inputs
//! ([`ExitContext`]).

use core::fmt;

use crate::decode::DecodeError;
use crate::decode::WalkError;
use crate::msr::MsrEffect;

/// What the backend does after an exit was handled. RIP and registers in
/// the [`VcpuState`](crate::exit::VcpuState) are already updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    Resume,
    /// The guest halted with nothing to deliver: sleep until
    /// [`Vm::next_deadline_ns`](super::Vm::next_deadline_ns) or host input,
    /// then [`Vm::update_irqs`](super::Vm::update_irqs).
    Halt,
    /// Inject this exception (RIP not advanced: it faults on the
    /// instruction).
    InjectException {
        vector: u8,
        error_code: Option<u32>,
    },
    /// An MSR write that the backend must mirror (TSC offset, EFER, PAT),
    /// then resume. The kvm-clock MSRs never come here: the VMM writes the
    /// guest's clock structures itself.
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
    /// The vCPU that exited (its local APIC answers APIC MSRs); 0 is the
    /// bootstrap processor.
    pub vcpu: usize,
}
