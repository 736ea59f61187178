//! The VMX instructions, each checked: VMfailInvalid (CF) and
//! VMfailValid (ZF, with the VM-instruction error number in the current
//! VMCS) become a [`VmxError`] the caller logs, never a silent hang.

use core::arch::asm;

use super::fields;

/// A VMX instruction that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxError {
    /// No current VMCS (or a bad VMXON/VMCS pointer).
    FailInvalid,
    /// With the VM-instruction error number (SDM vol. 3, 31.4).
    FailValid(u32),
}

impl core::fmt::Display for VmxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmxError::FailInvalid => write!(f, "VMfailInvalid"),
            VmxError::FailValid(n) => write!(
                f,
                "VMfailValid, VM-instruction error {n} ({})",
                error_name(*n)
            ),
        }
    }
}

/// The SDM's names of the VM-instruction errors a VMM can cause.
pub fn error_name(n: u32) -> &'static str {
    match n {
        2 => "VMCLEAR with invalid physical address",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        7 => "VM entry with invalid control fields",
        8 => "VM entry with invalid host-state fields",
        9 => "VMPTRLD with invalid physical address",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE of an unsupported VMCS component",
        13 => "VMWRITE to a read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "see the SDM, VM-instruction error numbers",
    }
}

/// The outcome flags of a VMX instruction: `ok` is CF=0 and ZF=0.
fn check(ok: u8, zf: u8) -> Result<(), VmxError> {
    if ok != 0 {
        Ok(())
    } else if zf != 0 {
        Err(VmxError::FailValid(read32(fields::INSTRUCTION_ERROR)))
    } else {
        Err(VmxError::FailInvalid)
    }
}

/// Enters VMX root operation with the VMXON region at `region`.
///
/// # Safety
/// CR4.VMXE is set, CR0/CR4 satisfy the fixed-bit MSRs, and `region` is a
/// page owned for as long as VMX is on, its first word the revision id.
pub unsafe fn vmxon(region: u64) -> Result<(), VmxError> {
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller; the operand is a local holding the
    // physical address.
    unsafe {
        asm!("vmxon [{}]", "seta {}", "setz {}", in(reg) &region, out(reg_byte) ok, out(reg_byte) zf,
             options(nostack));
    }
    check(ok, zf)
}

/// Makes the VMCS at `vmcs` this CPU's current one.
///
/// # Safety
/// `vmcs` is a VMCS page (revision id set) owned by the caller.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmxError> {
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("vmptrld [{}]", "seta {}", "setz {}", in(reg) &vmcs, out(reg_byte) ok, out(reg_byte) zf,
             options(nostack));
    }
    check(ok, zf)
}

/// Writes the VMCS at `vmcs` back to memory and makes it inactive.
///
/// # Safety
/// As for [`vmptrld`].
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmxError> {
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("vmclear [{}]", "seta {}", "setz {}", in(reg) &vmcs, out(reg_byte) ok, out(reg_byte) zf,
             options(nostack));
    }
    check(ok, zf)
}

/// Reads a field of the current VMCS (0 if there is none or the field
/// does not exist: the callers read only fields they wrote or the CPU
/// fills).
pub fn read(field: u32) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS into a register; a bad
    // field or no current VMCS sets the flags, which we ignore (the value
    // is then 0).
    unsafe {
        asm!("xor {v:e}, {v:e}", "vmread {v}, {f}", f = in(reg) field as u64, v = out(reg) value,
             options(nostack, nomem));
    }
    value
}

pub fn read32(field: u32) -> u32 {
    read(field) as u32
}

/// Writes a field of the current VMCS.
///
/// # Safety
/// A VMCS the caller owns is current, and the value keeps the host state
/// fields true to the running kernel (entry checks catch the rest).
pub unsafe fn write(field: u32, value: u64) {
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("vmwrite {f}, {v}", "seta {ok}", "setz {zf}", f = in(reg) field as u64, v = in(reg) value,
             ok = out(reg_byte) ok, zf = out(reg_byte) zf, options(nostack, nomem));
    }
    if let Err(e) = check(ok, zf) {
        log::error!("vmx: VMWRITE of field {field:#06x} failed: {e}");
    }
}

/// INVEPT: drop the CPU's cached translations of one EPT (`single`) or
/// of all.
///
/// # Safety
/// VMX is on; the caller checked the CPU supports this INVEPT type.
pub unsafe fn invept(single: bool, eptp: u64) -> Result<(), VmxError> {
    let descriptor: [u64; 2] = [eptp, 0];
    let kind: u64 = if single { 1 } else { 2 };
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller; the descriptor is a local.
    unsafe {
        asm!("invept {}, [{}]", "seta {}", "setz {}", in(reg) kind, in(reg) &descriptor,
             out(reg_byte) ok, out(reg_byte) zf, options(nostack));
    }
    check(ok, zf)
}

/// INVVPID: drop the CPU's cached translations tagged with `vpid`
/// (`single`) or with any VPID but the host's.
///
/// # Safety
/// As for [`invept`].
pub unsafe fn invvpid(single: bool, vpid: u16) -> Result<(), VmxError> {
    let descriptor: [u64; 2] = [vpid as u64, 0];
    let kind: u64 = if single { 1 } else { 2 };
    let (ok, zf): (u8, u8);
    // SAFETY: upheld by the caller; the descriptor is a local.
    unsafe {
        asm!("invvpid {}, [{}]", "seta {}", "setz {}", in(reg) kind, in(reg) &descriptor,
             out(reg_byte) ok, out(reg_byte) zf, options(nostack));
    }
    check(ok, zf)
}
