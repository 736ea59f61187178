//! The hypervisor calls from user mode: how a vCPU's state, what to
//! inject, controls and exits cross the `syscall` boundary.
//!
//! - `VmCreate(hypervisor, ram_bytes)`: `rdx` = the VM, `r8` = its RAM.
//! - `GuestRamRead(ram, gpa, buf, len)` / `GuestRamWrite(ram, gpa, data,
//!   len)`: at most [`GUEST_RAM_COPY_MAX`] bytes a call.
//! - `VcpuCreate(ram)`: `rdx` = the vCPU.
//! - `VcpuRun(vcpu, state, exit, inject_kind, inject_arg)`: `state` points
//!   at a [`UserVcpuState`] (read, then written back), `exit` at a
//!   [`UserVmExit`] the kernel fills; the injection as
//!   [`encode_injection`] makes it.
//! - `VcpuControl(vcpu, kind, value)`: as [`encode_control`] makes it.
//!
//! Every block is `#[repr(C)]` of `u64`s only (no padding), so the kernel
//! copies it as bytes.

use crate::vcpu::Access;
use crate::vcpu::DescriptorTable;
use crate::vcpu::Injection;
use crate::vcpu::Segment;
use crate::vcpu::VcpuControl;
use crate::vcpu::VcpuState;
use crate::vcpu::VmExit;

/// Bytes one guest RAM read or write from user mode moves at most.
pub const GUEST_RAM_COPY_MAX: u64 = 1 << 20;

/// [`VcpuState`] as plain data: segments as (selector | attrib << 16 |
/// limit << 32, base), tables as (base, limit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserVcpuState {
    pub gprs: [u64; 16],
    /// rip, rflags, cr0, cr2, cr3, cr4, efer, xcr0.
    pub regs: [u64; 8],
    /// cs, ds, es, fs, gs, ss, tr, ldtr.
    pub segments: [[u64; 2]; 8],
    /// gdtr, idtr.
    pub tables: [[u64; 2]; 2],
}

fn segment_in(s: &Segment) -> [u64; 2] {
    [
        s.selector as u64 | (s.attrib as u64) << 16 | (s.limit as u64) << 32,
        s.base,
    ]
}

fn segment_out(w: [u64; 2]) -> Segment {
    Segment {
        selector: w[0] as u16,
        attrib: (w[0] >> 16) as u16,
        limit: (w[0] >> 32) as u32,
        base: w[1],
    }
}

fn table_in(t: &DescriptorTable) -> [u64; 2] {
    [t.base, t.limit as u64]
}

fn table_out(w: [u64; 2]) -> DescriptorTable {
    DescriptorTable {
        base: w[0],
        limit: w[1] as u16,
    }
}

impl UserVcpuState {
    pub fn from_state(s: &VcpuState) -> UserVcpuState {
        let segs = [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldtr];
        UserVcpuState {
            gprs: s.gprs,
            regs: [s.rip, s.rflags, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.xcr0],
            segments: segs.map(segment_in),
            tables: [table_in(&s.gdtr), table_in(&s.idtr)],
        }
    }

    pub fn to_state(&self) -> VcpuState {
        let [rip, rflags, cr0, cr2, cr3, cr4, efer, xcr0] = self.regs;
        let [cs, ds, es, fs, gs, ss, tr, ldtr] = self.segments.map(segment_out);
        VcpuState {
            gprs: self.gprs,
            rip,
            rflags,
            cr0,
            cr2,
            cr3,
            cr4,
            efer,
            cs,
            ds,
            es,
            fs,
            gs,
            ss,
            tr,
            ldtr,
            gdtr: table_out(self.tables[0]),
            idtr: table_out(self.tables[1]),
            xcr0,
        }
    }
}

/// [`VmExit`] as plain data: `kind` (the constants below), its fields in
/// `a` as each kind says, and a nested page fault's instruction bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserVmExit {
    pub kind: u64,
    pub a: [u64; 4],
    pub insn: [u64; 2],
}

pub mod exit_kind {
    pub const IO: u64 = 1;
    pub const NESTED_PAGE_FAULT: u64 = 2;
    pub const CPUID: u64 = 3;
    pub const MSR: u64 = 4;
    pub const HLT: u64 = 5;
    pub const SHUTDOWN: u64 = 6;
    pub const VMMCALL: u64 = 7;
    pub const INTERRUPT_WINDOW: u64 = 8;
    pub const HOST_INTERRUPT: u64 = 9;
    pub const XSETBV: u64 = 10;
    pub const EXCEPTION: u64 = 11;
    pub const INVALID: u64 = 12;
    pub const UNKNOWN: u64 = 13;
}

fn access_in(a: Access) -> u64 {
    match a {
        Access::Read => 0,
        Access::Write => 1,
    }
}

fn access_out(w: u64) -> Access {
    if w & 1 == 0 {
        Access::Read
    } else {
        Access::Write
    }
}

/// An optional error code as (present, code).
fn code_in(code: Option<u32>) -> [u64; 2] {
    match code {
        Some(c) => [1, c as u64],
        None => [0, 0],
    }
}

fn code_out(present: u64, code: u64) -> Option<u32> {
    (present != 0).then_some(code as u32)
}

impl UserVmExit {
    pub fn from_exit(e: &VmExit) -> UserVmExit {
        use exit_kind::*;
        let mut out = UserVmExit::default();
        let (kind, a) = match *e {
            VmExit::Io {
                port,
                size,
                access,
                value,
                string,
                rep,
                next_rip,
            } => (
                IO,
                [
                    port as u64 | (size as u64) << 16 | access_in(access) << 24,
                    value as u64,
                    string as u64 | (rep as u64) << 1,
                    next_rip,
                ],
            ),
            VmExit::NestedPageFault {
                gpa,
                access,
                fetch,
                insn_bytes,
                insn_len,
            } => {
                let mut bytes = [0u8; 16];
                bytes[..15].copy_from_slice(&insn_bytes);
                let (lo, hi) = bytes.split_at(8);
                out.insn = [
                    u64::from_le_bytes(lo.try_into().unwrap_or([0; 8])),
                    u64::from_le_bytes(hi.try_into().unwrap_or([0; 8])),
                ];
                (
                    NESTED_PAGE_FAULT,
                    [gpa, access_in(access), fetch as u64, insn_len as u64],
                )
            }
            VmExit::Cpuid { leaf, subleaf } => (CPUID, [leaf as u64, subleaf as u64, 0, 0]),
            VmExit::Msr {
                access,
                index,
                value,
            } => (MSR, [access_in(access), index as u64, value, 0]),
            VmExit::Hlt => (HLT, [0; 4]),
            VmExit::Shutdown => (SHUTDOWN, [0; 4]),
            VmExit::Vmmcall => (VMMCALL, [0; 4]),
            VmExit::InterruptWindow => (INTERRUPT_WINDOW, [0; 4]),
            VmExit::HostInterrupt => (HOST_INTERRUPT, [0; 4]),
            VmExit::Xsetbv { value, accepted } => (XSETBV, [value, accepted as u64, 0, 0]),
            VmExit::Exception { vector, error_code } => {
                let [present, code] = code_in(error_code);
                (EXCEPTION, [vector as u64, present, code, 0])
            }
            VmExit::Invalid => (INVALID, [0; 4]),
            VmExit::Unknown { code } => (UNKNOWN, [code, 0, 0, 0]),
        };
        out.kind = kind;
        out.a = a;
        out
    }

    /// The exit, or `None` for a kind this ABI does not know.
    pub fn to_exit(&self) -> Option<VmExit> {
        use exit_kind::*;
        let a = self.a;
        Some(match self.kind {
            IO => VmExit::Io {
                port: a[0] as u16,
                size: (a[0] >> 16) as u8,
                access: access_out(a[0] >> 24),
                value: a[1] as u32,
                string: a[2] & 1 != 0,
                rep: a[2] & 2 != 0,
                next_rip: a[3],
            },
            NESTED_PAGE_FAULT => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&self.insn[0].to_le_bytes());
                bytes[8..].copy_from_slice(&self.insn[1].to_le_bytes());
                let mut insn_bytes = [0u8; 15];
                insn_bytes.copy_from_slice(&bytes[..15]);
                VmExit::NestedPageFault {
                    gpa: a[0],
                    access: access_out(a[1]),
                    fetch: a[2] != 0,
                    insn_bytes,
                    insn_len: a[3] as u8,
                }
            }
            CPUID => VmExit::Cpuid {
                leaf: a[0] as u32,
                subleaf: a[1] as u32,
            },
            MSR => VmExit::Msr {
                access: access_out(a[0]),
                index: a[1] as u32,
                value: a[2],
            },
            HLT => VmExit::Hlt,
            SHUTDOWN => VmExit::Shutdown,
            VMMCALL => VmExit::Vmmcall,
            INTERRUPT_WINDOW => VmExit::InterruptWindow,
            HOST_INTERRUPT => VmExit::HostInterrupt,
            XSETBV => VmExit::Xsetbv {
                value: a[0],
                accepted: a[1] != 0,
            },
            EXCEPTION => VmExit::Exception {
                vector: a[0] as u8,
                error_code: code_out(a[1], a[2]),
            },
            INVALID => VmExit::Invalid,
            UNKNOWN => VmExit::Unknown { code: a[0] },
            _ => return None,
        })
    }
}

/// An injection as (kind, argument): 0 none, 1 interrupt (the vector), 2
/// window, 3 exception (vector | present << 8 | code << 32), 4 NMI.
pub fn encode_injection(i: Injection) -> (u64, u64) {
    match i {
        Injection::None => (0, 0),
        Injection::Interrupt(v) => (1, v as u64),
        Injection::Window => (2, 0),
        Injection::Exception { vector, error_code } => {
            let [present, code] = code_in(error_code);
            (3, vector as u64 | present << 8 | code << 32)
        }
        Injection::Nmi => (4, 0),
    }
}

/// [`encode_injection`] undone; `None` for an unknown kind.
pub fn decode_injection(kind: u64, arg: u64) -> Option<Injection> {
    Some(match kind {
        0 => Injection::None,
        1 => Injection::Interrupt(u8::try_from(arg).ok()?),
        2 => Injection::Window,
        3 => Injection::Exception {
            vector: arg as u8,
            error_code: code_out((arg >> 8) & 1, arg >> 32),
        },
        4 => Injection::Nmi,
        _ => return None,
    })
}

/// A control as (kind, value): 0 TSC offset, 1 PAT, 2 XCR0 allowed, 3
/// exit by, 4 kick.
pub fn encode_control(c: VcpuControl) -> (u64, u64) {
    match c {
        VcpuControl::TscOffset(off) => (0, off as u64),
        VcpuControl::Pat(pat) => (1, pat),
        VcpuControl::Xcr0Allowed(x) => (2, x),
        VcpuControl::ExitBy(t) => (3, t),
        VcpuControl::Kick => (4, 0),
    }
}

/// [`encode_control`] undone; `None` for an unknown kind.
pub fn decode_control(kind: u64, value: u64) -> Option<VcpuControl> {
    Some(match kind {
        0 => VcpuControl::TscOffset(value as i64),
        1 => VcpuControl::Pat(value),
        2 => VcpuControl::Xcr0Allowed(value),
        3 => VcpuControl::ExitBy(value),
        4 => VcpuControl::Kick,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        let mut s = VcpuState::default();
        s.gprs[3] = 0x1234;
        s.rip = 0xfff0;
        s.xcr0 = 7;
        s.cs = Segment {
            selector: 0xf000,
            attrib: 0x9b,
            limit: 0xffff,
            base: 0xffff0000,
        };
        s.ldtr = Segment {
            selector: 0,
            attrib: 0x82,
            limit: 0xffff,
            base: 0,
        };
        s.idtr = DescriptorTable {
            base: 0x1000,
            limit: 0x3ff,
        };
        assert_eq!(UserVcpuState::from_state(&s).to_state(), s);
    }

    #[test]
    fn exits_round_trip() {
        let mut insn_bytes = [0u8; 15];
        insn_bytes[14] = 0xaa;
        for e in [
            VmExit::Io {
                port: 0x3f8,
                size: 1,
                access: Access::Write,
                value: 0x41,
                string: false,
                rep: true,
                next_rip: 9,
            },
            VmExit::NestedPageFault {
                gpa: 0xd000_0000,
                access: Access::Write,
                fetch: false,
                insn_bytes,
                insn_len: 7,
            },
            VmExit::Cpuid {
                leaf: 1,
                subleaf: 2,
            },
            VmExit::Msr {
                access: Access::Read,
                index: 0x1b,
                value: 5,
            },
            VmExit::Hlt,
            VmExit::Xsetbv {
                value: 7,
                accepted: true,
            },
            VmExit::Exception {
                vector: 13,
                error_code: Some(0),
            },
            VmExit::Exception {
                vector: 6,
                error_code: None,
            },
            VmExit::Unknown { code: 99 },
        ] {
            assert_eq!(UserVmExit::from_exit(&e).to_exit(), Some(e));
        }
        let bad = UserVmExit {
            kind: 77,
            ..UserVmExit::default()
        };
        assert_eq!(bad.to_exit(), None);
    }

    #[test]
    fn injections_and_controls_round_trip() {
        for i in [
            Injection::None,
            Injection::Interrupt(0x20),
            Injection::Window,
            Injection::Exception {
                vector: 13,
                error_code: Some(0xffff_ffff),
            },
            Injection::Exception {
                vector: 6,
                error_code: None,
            },
            Injection::Nmi,
        ] {
            let (k, a) = encode_injection(i);
            assert_eq!(decode_injection(k, a), Some(i));
        }
        assert_eq!(decode_injection(1, 256), None);
        assert_eq!(decode_injection(9, 0), None);
        for c in [
            VcpuControl::TscOffset(-5),
            VcpuControl::Pat(0x0007_0406),
            VcpuControl::ExitBy(1),
            VcpuControl::Kick,
        ] {
            let (k, v) = encode_control(c);
            assert_eq!(decode_control(k, v), Some(c));
        }
        assert_eq!(decode_control(5, 0), None);
    }
}
