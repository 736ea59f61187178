//! Backend-neutral VM exits, vCPU register state, and what the VMM asks the
//! kernel to inject or change between runs (`vcpu_run`, `vcpu_control`).
//!
//! The hypervisor backend (SVM today, VMX next) translates its hardware exit
//! codes into [`VmExit`] and its register save area into [`VcpuState`]; the
//! VMM never sees a VMCB or VMCS. Fields are what the exit handlers need, not
//! everything the hardware reports.

/// General-purpose registers, numbered as the x86 instruction encoding numbers
/// them (ModRM.reg/rm + REX.R/B), so a decoded register index indexes
/// [`VcpuState::gprs`] directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsp = 4,
    Rbp = 5,
    Rsi = 6,
    Rdi = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
}

/// A segment register as the hardware caches it.
///
/// `attrib` uses the packed SVM VMCB layout because it is the denser one:
/// bits 0..=7 are the descriptor access byte (type, S, DPL, P) and bits
/// 8..=11 are AVL, L, D/B, G. [`Segment::vmx_access_rights`] converts it.
/// Laid out as in the VMCB's save area (selector, attributes, limit,
/// base: 16 bytes), so the kernel moves one with a single copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Segment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

impl Segment {
    /// The same attributes in the VMX "access rights" layout (bits 12..=15
    /// hold AVL/L/DB/G; bit 16 "unusable" is set for a null selector that is
    /// not present).
    pub fn vmx_access_rights(&self) -> u32 {
        let a = self.attrib as u32;
        let mut ar = (a & 0xff) | ((a & 0xf00) << 4);
        if a & 0x80 == 0 {
            ar |= 1 << 16;
        }
        ar
    }

    /// Whether this is a 64-bit code segment (L bit).
    pub fn is_long_mode_code(&self) -> bool {
        self.attrib & (1 << 9) != 0
    }
}

/// GDTR/IDTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Control-register bits the VMM looks at.
pub mod cr {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_LA57: u64 = 1 << 12;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    pub const CR4_PKE: u64 = 1 << 22;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
    pub const EFER_SVME: u64 = 1 << 12;
    pub const RFLAGS_RESERVED1: u64 = 1 << 1;
    pub const RFLAGS_IF: u64 = 1 << 9;
}

/// The architectural vCPU state the VMM reads and writes while handling
/// exits: enough to boot Linux, decode and complete MMIO instructions, and
/// walk guest page tables. Backends copy it in and out of their save area.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcpuState {
    /// Indexed by [`Gpr`].
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    /// The guest's XCR0 (which state components XSAVE manages and which
    /// instruction sets are on). Reported by the kernel on every exit;
    /// only the guest changes it, through XSETBV, which the kernel checks
    /// against [`VcpuControl::Xcr0Allowed`]. What the VMM writes here is
    /// not loaded.
    pub xcr0: u64,
}

impl VcpuState {
    pub fn gpr(&self, r: Gpr) -> u64 {
        self.gprs[r as usize]
    }

    pub fn set_gpr(&mut self, r: Gpr, v: u64) {
        self.gprs[r as usize] = v;
    }

    /// Whether the guest runs with paging in long mode (4- or 5-level).
    pub fn long_mode_paging(&self) -> bool {
        self.cr0 & cr::CR0_PG != 0 && self.efer & cr::EFER_LMA != 0
    }

    /// Whether the guest currently accepts maskable interrupts (RFLAGS.IF).
    pub fn interrupts_enabled(&self) -> bool {
        self.rflags & cr::RFLAGS_IF != 0
    }
}

/// Direction of an access, from the guest's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why the guest stopped running, in terms the VMM understands.
///
/// `next_rip` is present where the hardware reports it (SVM IOIO's EXITINFO2,
/// NRIP save, VMX instruction length); otherwise the handler advances RIP by
/// the known instruction length (CPUID/RDMSR/WRMSR 2, HLT 1, VMMCALL 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// IN/OUT (and INS/OUTS, marked by `string`). For writes, `value` holds
    /// the low `size` bytes of RAX.
    Io {
        port: u16,
        /// 1, 2 or 4 bytes.
        size: u8,
        access: Access,
        value: u32,
        /// INS/OUTS: not emulated by the device models.
        string: bool,
        rep: bool,
        next_rip: u64,
    },
    /// A guest-physical access that hit no RAM mapping (an MMIO region) or a
    /// permission fault in the nested page tables. Without decode assists the
    /// VMM fetches and decodes the instruction itself (see `decode`).
    NestedPageFault {
        gpa: u64,
        /// Raw fault bits as the backend saw them (write, fetch, present…),
        /// for diagnostics.
        access: Access,
        fetch: bool,
        /// Instruction bytes if the hardware captured them (SVM decode
        /// assists: up to 15 bytes); `len == 0` when absent.
        insn_bytes: [u8; 15],
        insn_len: u8,
    },
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    /// RDMSR (`access == Read`, index in ECX) or WRMSR (value from EDX:EAX).
    Msr {
        access: Access,
        index: u32,
        value: u64,
    },
    Hlt,
    /// The guest triple-faulted (SVM SHUTDOWN, VMX triple fault).
    Shutdown,
    Vmmcall,
    /// The guest can now take an interrupt (after V_IRQ/VINTR or the VMX
    /// interrupt-window exit).
    InterruptWindow,
    /// A host interrupt arrived while the guest ran; nothing for the VMM to do
    /// beyond checking its own timers.
    HostInterrupt,
    /// The guest executed XSETBV. The kernel handled it (XCR0 is
    /// architectural state it switches): it either took the value (now in
    /// [`VcpuState::xcr0`], RIP advanced) or queued the fault the CPU
    /// would raise (#UD, #GP) for the next entry. Nothing for the VMM to do.
    Xsetbv {
        value: u64,
        accepted: bool,
    },
    /// An intercepted guest exception.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// The backend rejected the guest state (SVM VMEXIT_INVALID, VMX entry
    /// failure): a VMM bug, never guest-triggerable with a sane state.
    Invalid,
    /// Any other hardware exit code, carried raw for the log.
    Unknown {
        code: u64,
    },
}

/// What to deliver to the guest on the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    None,
    /// An external interrupt with this vector, already acknowledged at the
    /// VMM's interrupt controller: the kernel delivers it exactly once, in
    /// order, as soon as the guest can take it (RFLAGS.IF=1, no interrupt
    /// shadow). Pass it once; the kernel holds it meanwhile.
    ///
    /// The usual loop: if the controller has an interrupt pending and
    /// `state.interrupts_enabled()`, acknowledge it and pass `Interrupt(v)`;
    /// if it has one but the guest has IF=0, pass [`Injection::Window`]
    /// (and acknowledge nothing).
    Interrupt(u8),
    /// Nothing to deliver yet, but exit with [`VmExit::InterruptWindow`] as
    /// soon as the guest can take an interrupt.
    Window,
    /// A hardware exception (e.g. #GP for a refused MSR).
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// A non-maskable interrupt (vector 2; an x2APIC IPI with delivery
    /// mode NMI): the kernel holds it until the guest can take one (not
    /// while it still handles the last one, nor in an interrupt shadow)
    /// and delivers it once, before any held interrupt. A second NMI
    /// passed meanwhile merges with it, as on hardware.
    Nmi,
}

/// Extra vCPU registers the VMM may change between runs that are not part
/// of [`VcpuState`] (from the VMM's MSR policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuControl {
    /// Guest TSC = host TSC + offset.
    TscOffset(i64),
    /// The guest's PAT MSR: eight memory types, each 0, 1, 4, 5, 6 or 7
    /// ([`valid_pat`]), else `InvalidArgument` (the CPU would refuse to
    /// enter the guest with it).
    Pat(u64),
    /// The XCR0 bits the guest may set with XSETBV: what the VMM's CPUID
    /// leaf 0xD offers. Must include [`xcr0::X87`], be consistent
    /// ([`xcr0::consistent`]) and lie within what the kernel can switch
    /// ([`xcr0::SWITCHABLE`] on this CPU), else `InvalidArgument`. Until
    /// set, everything the kernel can switch on this CPU is allowed.
    Xcr0Allowed(u64),
    /// The VMM needs control back by this time (the kernel's monotonic
    /// clock, `time_now`, in ns) at the latest: its next timer. Each run
    /// then lasts until the guest exits on its own or this time comes
    /// (or at most [`LONGEST_RUN_NS`] ahead); `u64::MAX` for no timer of
    /// the VMM's own. Until set, a run lasts at most
    /// [`DEFAULT_RUN_NS`]. A run interrupted by the host (a device, another
    /// thread's timer) returns early whatever this says.
    ExitBy(u64),
    /// Gets the vCPU out of guest mode: at once if it runs there now, else
    /// its next run exits right after entry (delivering what it injects).
    /// Any thread may send it, while another runs the vCPU (no `Busy`):
    /// the VMM kicks a vCPU that another vCPU sent an interrupt.
    Kick,
}

/// Whether `pat` is a PAT MSR value the CPU accepts: every byte a memory
/// type (UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7).
pub fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4..=7))
}

/// Whether an exception the VMM asks to inject can be one: a vector below
/// 32 (the architecture's exceptions; 2 is the NMI).
pub fn valid_exception_vector(vector: u8) -> bool {
    vector < 32
}

/// How long a run lasts at most when the VMM has not said
/// ([`VcpuControl::ExitBy`]).
pub const DEFAULT_RUN_NS: u64 = 1_000_000;

/// How long a run lasts at most whatever the VMM has said.
pub const LONGEST_RUN_NS: u64 = 100_000_000;

/// When a run starting at `now` ends at the latest, given the VMM's last
/// [`VcpuControl::ExitBy`] (`None`: it never said).
pub fn run_deadline(exit_by: Option<u64>, now: u64) -> u64 {
    match exit_by {
        None => now.saturating_add(DEFAULT_RUN_NS),
        Some(by) => by.min(now.saturating_add(LONGEST_RUN_NS)),
    }
}

/// The host's monotonic and wall clocks as a guest's paravirtual clock
/// (kvm-clock) needs them: at host TSC `tsc` (when the kernel was asked)
/// the monotonic clock read `ns`, and it advances by `ns_per_tsc_fp`
/// nanoseconds (32.32 fixed point) per TSC tick until the kernel re-scales
/// it (disciplining it against a better oscillator), which changes
/// `generation`. The wall clock is `unix_ns_at_zero` plus the monotonic
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostClock {
    pub tsc: u64,
    pub ns: u64,
    pub ns_per_tsc_fp: u64,
    pub unix_ns_at_zero: u64,
    pub generation: u64,
}

impl HostClock {
    /// The monotonic clock at host TSC `tsc` (at or after [`HostClock::tsc`]).
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let ticks = tsc.wrapping_sub(self.tsc) as u128;
        self.ns
            .wrapping_add(((ticks * self.ns_per_tsc_fp as u128) >> 32) as u64)
    }
}

/// XCR0 state-component bits (Intel SDM vol. 1 13.1, AMD APM vol. 2
/// 11.5.2) and the rules the kernel and the VMM's CPUID policy share.
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const MPX_BNDREGS: u64 = 1 << 3;
    pub const MPX_BNDCSR: u64 = 1 << 4;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const PKRU: u64 = 1 << 9;
    /// The three AVX-512 components: enabled all together or not at all.
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
    /// The components whose guest state the kernel saves and restores
    /// around VM entries (x87/SSE with FXSAVE, the rest with XSAVE in a
    /// 4 KiB area). MPX, PKRU and AMX are not offered to guests.
    pub const SWITCHABLE: u64 = X87 | SSE | AVX | AVX512;
    /// Size of the kernel's per-vCPU XSAVE area (standard format): every
    /// offered component must end within it.
    pub const AREA_BYTES: usize = 4096;

    /// The largest subset of `mask` that a valid XCR0 can be built from:
    /// x87 always, AVX only with SSE, AVX-512 only complete and with AVX.
    pub const fn consistent(mask: u64) -> u64 {
        let mut m = mask | X87;
        if m & SSE == 0 {
            m &= !AVX;
        }
        if m & AVX == 0 || m & AVX512 != AVX512 {
            m &= !AVX512;
        }
        if m & (MPX_BNDREGS | MPX_BNDCSR) != MPX_BNDREGS | MPX_BNDCSR {
            m &= !(MPX_BNDREGS | MPX_BNDCSR);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_values_are_memory_types() {
        // The reset value, and Linux's.
        assert!(valid_pat(0x0007_0406_0007_0406));
        assert!(valid_pat(0x0007_0106_0007_0406));
        assert!(valid_pat(0));
        // 2 and 3 are reserved, as is anything above 7.
        assert!(!valid_pat(0x0007_0406_0007_0402));
        assert!(!valid_pat(0x0300_0000_0000_0000));
        assert!(!valid_pat(0x0000_0000_0008_0000));
        assert!(!valid_pat(u64::MAX));
    }

    #[test]
    fn exception_vectors_are_below_32() {
        assert!(
            valid_exception_vector(0) && valid_exception_vector(13) && valid_exception_vector(31)
        );
        assert!(!valid_exception_vector(32) && !valid_exception_vector(255));
    }

    #[test]
    fn a_run_ends_by_the_vmms_deadline_within_bounds() {
        let now = 5_000_000_000;
        // Never said: the default.
        assert_eq!(run_deadline(None, now), now + DEFAULT_RUN_NS);
        // Its next timer, sooner or later than the default.
        assert_eq!(run_deadline(Some(now + 10_000), now), now + 10_000);
        assert_eq!(run_deadline(Some(now + 9_000_000), now), now + 9_000_000);
        // Already due: at once.
        assert_eq!(run_deadline(Some(now - 1), now), now - 1);
        // No timer of its own, or one far away: the longest run.
        assert_eq!(run_deadline(Some(u64::MAX), now), now + LONGEST_RUN_NS);
        assert_eq!(run_deadline(Some(u64::MAX), u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn vmx_access_rights_conversion() {
        // 64-bit code: P, S, type 0xb, L, G.
        let cs = Segment {
            selector: 0x10,
            attrib: 0xa9b,
            limit: 0xffff_ffff,
            base: 0,
        };
        assert_eq!(cs.vmx_access_rights(), 0xa09b);
        assert!(cs.is_long_mode_code());
        let null = Segment::default();
        assert_eq!(null.vmx_access_rights(), 1 << 16);
    }

    #[test]
    fn xcr0_consistent_masks() {
        use xcr0::*;
        assert_eq!(consistent(0), X87);
        assert_eq!(consistent(SWITCHABLE), SWITCHABLE);
        assert_eq!(consistent(X87 | AVX), X87, "AVX without SSE");
        assert_eq!(consistent(X87 | SSE | AVX | OPMASK), X87 | SSE | AVX);
        assert_eq!(
            consistent(X87 | SSE | AVX512),
            X87 | SSE,
            "AVX-512 without AVX"
        );
        assert_eq!(consistent(X87 | MPX_BNDREGS), X87);
        assert_eq!(consistent(X87 | SSE | PKRU), X87 | SSE | PKRU);
    }

    #[test]
    fn gpr_access() {
        let mut s = VcpuState::default();
        s.set_gpr(Gpr::R13, 7);
        assert_eq!(s.gprs[13], 7);
        assert_eq!(s.gpr(Gpr::R13), 7);
    }
}
