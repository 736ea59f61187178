//! VMCS field encodings (Intel SDM vol. 3, appendix B).
//!
//! An encoding packs the field's width (bits 14:13), its kind (bits
//! 11:10), an index (bits 9:1) and, for 64-bit fields, which half an
//! access means (bit 0, always the full field here). [`encode`] builds
//! them; the unit tests check each against the SDM's table.

#[derive(Clone, Copy)]
pub enum Width {
    Bits16 = 0,
    Bits64 = 1,
    Bits32 = 2,
    Natural = 3,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Control = 0,
    ExitInfo = 1,
    Guest = 2,
    Host = 3,
}

pub const fn encode(width: Width, kind: Kind, index: u32) -> u32 {
    ((width as u32) << 13) | ((kind as u32) << 10) | (index << 1)
}

use Kind::*;
use Width::*;

// 16-bit.
pub const VPID: u32 = encode(Bits16, Control, 0);
/// Guest selectors ES, CS, SS, DS, FS, GS, LDTR, TR: indices 0..8.
pub const GUEST_ES_SELECTOR: u32 = encode(Bits16, Guest, 0);
pub const HOST_ES_SELECTOR: u32 = encode(Bits16, Host, 0);
pub const HOST_CS_SELECTOR: u32 = encode(Bits16, Host, 1);
pub const HOST_SS_SELECTOR: u32 = encode(Bits16, Host, 2);
pub const HOST_DS_SELECTOR: u32 = encode(Bits16, Host, 3);
pub const HOST_FS_SELECTOR: u32 = encode(Bits16, Host, 4);
pub const HOST_GS_SELECTOR: u32 = encode(Bits16, Host, 5);
pub const HOST_TR_SELECTOR: u32 = encode(Bits16, Host, 6);

// 64-bit.
pub const MSR_BITMAP: u32 = encode(Bits64, Control, 2);
pub const EXIT_MSR_STORE_ADDR: u32 = encode(Bits64, Control, 3);
pub const EXIT_MSR_LOAD_ADDR: u32 = encode(Bits64, Control, 4);
pub const ENTRY_MSR_LOAD_ADDR: u32 = encode(Bits64, Control, 5);
pub const TSC_OFFSET: u32 = encode(Bits64, Control, 8);
pub const VIRTUAL_APIC_ADDR: u32 = encode(Bits64, Control, 9);
pub const EPT_POINTER: u32 = encode(Bits64, Control, 13);
pub const GUEST_PHYSICAL_ADDR: u32 = encode(Bits64, ExitInfo, 0);
pub const VMCS_LINK_POINTER: u32 = encode(Bits64, Guest, 0);
pub const GUEST_DEBUGCTL: u32 = encode(Bits64, Guest, 1);
pub const GUEST_PAT: u32 = encode(Bits64, Guest, 2);
pub const GUEST_EFER: u32 = encode(Bits64, Guest, 3);
pub const HOST_PAT: u32 = encode(Bits64, Host, 0);
pub const HOST_EFER: u32 = encode(Bits64, Host, 1);

// 32-bit.
pub const PIN_CONTROLS: u32 = encode(Bits32, Control, 0);
pub const PRIMARY_CONTROLS: u32 = encode(Bits32, Control, 1);
pub const EXCEPTION_BITMAP: u32 = encode(Bits32, Control, 2);
pub const CR3_TARGET_COUNT: u32 = encode(Bits32, Control, 5);
pub const EXIT_CONTROLS: u32 = encode(Bits32, Control, 6);
pub const EXIT_MSR_STORE_COUNT: u32 = encode(Bits32, Control, 7);
pub const EXIT_MSR_LOAD_COUNT: u32 = encode(Bits32, Control, 8);
pub const ENTRY_CONTROLS: u32 = encode(Bits32, Control, 9);
pub const ENTRY_MSR_LOAD_COUNT: u32 = encode(Bits32, Control, 10);
pub const ENTRY_INTERRUPTION_INFO: u32 = encode(Bits32, Control, 11);
pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = encode(Bits32, Control, 12);
pub const ENTRY_INSTRUCTION_LEN: u32 = encode(Bits32, Control, 13);
pub const TPR_THRESHOLD: u32 = encode(Bits32, Control, 14);
pub const SECONDARY_CONTROLS: u32 = encode(Bits32, Control, 15);
pub const INSTRUCTION_ERROR: u32 = encode(Bits32, ExitInfo, 0);
pub const EXIT_REASON: u32 = encode(Bits32, ExitInfo, 1);
pub const EXIT_INTERRUPTION_INFO: u32 = encode(Bits32, ExitInfo, 2);
pub const EXIT_INTERRUPTION_ERROR_CODE: u32 = encode(Bits32, ExitInfo, 3);
pub const IDT_VECTORING_INFO: u32 = encode(Bits32, ExitInfo, 4);
pub const IDT_VECTORING_ERROR_CODE: u32 = encode(Bits32, ExitInfo, 5);
pub const EXIT_INSTRUCTION_LEN: u32 = encode(Bits32, ExitInfo, 6);
/// Guest limits ES..TR: indices 0..8; GDTR, IDTR: 8, 9.
pub const GUEST_ES_LIMIT: u32 = encode(Bits32, Guest, 0);
pub const GUEST_GDTR_LIMIT: u32 = encode(Bits32, Guest, 8);
pub const GUEST_IDTR_LIMIT: u32 = encode(Bits32, Guest, 9);
/// Guest access rights ES..TR: indices 10..18.
pub const GUEST_ES_ACCESS_RIGHTS: u32 = encode(Bits32, Guest, 10);
pub const GUEST_INTERRUPTIBILITY: u32 = encode(Bits32, Guest, 18);
pub const GUEST_ACTIVITY_STATE: u32 = encode(Bits32, Guest, 19);
pub const GUEST_SYSENTER_CS: u32 = encode(Bits32, Guest, 21);
pub const HOST_SYSENTER_CS: u32 = encode(Bits32, Host, 0);

// Natural width.
pub const CR0_GUEST_HOST_MASK: u32 = encode(Natural, Control, 0);
pub const CR4_GUEST_HOST_MASK: u32 = encode(Natural, Control, 1);
pub const CR0_READ_SHADOW: u32 = encode(Natural, Control, 2);
pub const CR4_READ_SHADOW: u32 = encode(Natural, Control, 3);
pub const EXIT_QUALIFICATION: u32 = encode(Natural, ExitInfo, 0);
pub const GUEST_CR0: u32 = encode(Natural, Guest, 0);
pub const GUEST_CR3: u32 = encode(Natural, Guest, 1);
pub const GUEST_CR4: u32 = encode(Natural, Guest, 2);
/// Guest bases ES..TR: indices 3..11; GDTR, IDTR: 11, 12.
pub const GUEST_ES_BASE: u32 = encode(Natural, Guest, 3);
pub const GUEST_GDTR_BASE: u32 = encode(Natural, Guest, 11);
pub const GUEST_IDTR_BASE: u32 = encode(Natural, Guest, 12);
pub const GUEST_DR7: u32 = encode(Natural, Guest, 13);
pub const GUEST_RSP: u32 = encode(Natural, Guest, 14);
pub const GUEST_RIP: u32 = encode(Natural, Guest, 15);
pub const GUEST_RFLAGS: u32 = encode(Natural, Guest, 16);
pub const GUEST_PENDING_DEBUG: u32 = encode(Natural, Guest, 17);
pub const GUEST_SYSENTER_ESP: u32 = encode(Natural, Guest, 18);
pub const GUEST_SYSENTER_EIP: u32 = encode(Natural, Guest, 19);
pub const HOST_CR0: u32 = encode(Natural, Host, 0);
pub const HOST_CR3: u32 = encode(Natural, Host, 1);
pub const HOST_CR4: u32 = encode(Natural, Host, 2);
pub const HOST_FS_BASE: u32 = encode(Natural, Host, 3);
pub const HOST_GS_BASE: u32 = encode(Natural, Host, 4);
pub const HOST_TR_BASE: u32 = encode(Natural, Host, 5);
pub const HOST_GDTR_BASE: u32 = encode(Natural, Host, 6);
pub const HOST_IDTR_BASE: u32 = encode(Natural, Host, 7);
pub const HOST_SYSENTER_ESP: u32 = encode(Natural, Host, 8);
pub const HOST_SYSENTER_EIP: u32 = encode(Natural, Host, 9);
pub const HOST_RSP: u32 = encode(Natural, Host, 10);
pub const HOST_RIP: u32 = encode(Natural, Host, 11);

/// The guest segment registers in the VMCS's order (the field index of
/// each kind of segment field grows by one from ES to TR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
    Ldtr = 6,
    Tr = 7,
}

impl Seg {
    pub const ALL: [Seg; 8] = [
        Seg::Es,
        Seg::Cs,
        Seg::Ss,
        Seg::Ds,
        Seg::Fs,
        Seg::Gs,
        Seg::Ldtr,
        Seg::Tr,
    ];

    // Consecutive indices are 2 apart in the encoding (bit 0 is the
    // access-type bit).
    pub const fn selector(self) -> u32 {
        GUEST_ES_SELECTOR + 2 * self as u32
    }
    pub const fn limit(self) -> u32 {
        GUEST_ES_LIMIT + 2 * self as u32
    }
    pub const fn access_rights(self) -> u32 {
        GUEST_ES_ACCESS_RIGHTS + 2 * self as u32
    }
    pub const fn base(self) -> u32 {
        GUEST_ES_BASE + 2 * self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every encoding against the number in the SDM's appendix B.
    #[test]
    fn encodings_match_the_sdm() {
        let table: &[(u32, u32)] = &[
            (VPID, 0x0000),
            (GUEST_ES_SELECTOR, 0x0800),
            (HOST_ES_SELECTOR, 0x0c00),
            (HOST_CS_SELECTOR, 0x0c02),
            (HOST_SS_SELECTOR, 0x0c04),
            (HOST_DS_SELECTOR, 0x0c06),
            (HOST_FS_SELECTOR, 0x0c08),
            (HOST_GS_SELECTOR, 0x0c0a),
            (HOST_TR_SELECTOR, 0x0c0c),
            (MSR_BITMAP, 0x2004),
            (EXIT_MSR_STORE_ADDR, 0x2006),
            (EXIT_MSR_LOAD_ADDR, 0x2008),
            (ENTRY_MSR_LOAD_ADDR, 0x200a),
            (TSC_OFFSET, 0x2010),
            (VIRTUAL_APIC_ADDR, 0x2012),
            (EPT_POINTER, 0x201a),
            (GUEST_PHYSICAL_ADDR, 0x2400),
            (VMCS_LINK_POINTER, 0x2800),
            (GUEST_DEBUGCTL, 0x2802),
            (GUEST_PAT, 0x2804),
            (GUEST_EFER, 0x2806),
            (HOST_PAT, 0x2c00),
            (HOST_EFER, 0x2c02),
            (PIN_CONTROLS, 0x4000),
            (PRIMARY_CONTROLS, 0x4002),
            (EXCEPTION_BITMAP, 0x4004),
            (CR3_TARGET_COUNT, 0x400a),
            (EXIT_CONTROLS, 0x400c),
            (EXIT_MSR_STORE_COUNT, 0x400e),
            (EXIT_MSR_LOAD_COUNT, 0x4010),
            (ENTRY_CONTROLS, 0x4012),
            (ENTRY_MSR_LOAD_COUNT, 0x4014),
            (ENTRY_INTERRUPTION_INFO, 0x4016),
            (ENTRY_EXCEPTION_ERROR_CODE, 0x4018),
            (ENTRY_INSTRUCTION_LEN, 0x401a),
            (TPR_THRESHOLD, 0x401c),
            (SECONDARY_CONTROLS, 0x401e),
            (INSTRUCTION_ERROR, 0x4400),
            (EXIT_REASON, 0x4402),
            (EXIT_INTERRUPTION_INFO, 0x4404),
            (EXIT_INTERRUPTION_ERROR_CODE, 0x4406),
            (IDT_VECTORING_INFO, 0x4408),
            (IDT_VECTORING_ERROR_CODE, 0x440a),
            (EXIT_INSTRUCTION_LEN, 0x440c),
            (GUEST_ES_LIMIT, 0x4800),
            (GUEST_GDTR_LIMIT, 0x4810),
            (GUEST_IDTR_LIMIT, 0x4812),
            (GUEST_ES_ACCESS_RIGHTS, 0x4814),
            (GUEST_INTERRUPTIBILITY, 0x4824),
            (GUEST_ACTIVITY_STATE, 0x4826),
            (GUEST_SYSENTER_CS, 0x482a),
            (HOST_SYSENTER_CS, 0x4c00),
            (CR0_GUEST_HOST_MASK, 0x6000),
            (CR4_GUEST_HOST_MASK, 0x6002),
            (CR0_READ_SHADOW, 0x6004),
            (CR4_READ_SHADOW, 0x6006),
            (EXIT_QUALIFICATION, 0x6400),
            (GUEST_CR0, 0x6800),
            (GUEST_CR3, 0x6802),
            (GUEST_CR4, 0x6804),
            (GUEST_ES_BASE, 0x6806),
            (GUEST_GDTR_BASE, 0x6816),
            (GUEST_IDTR_BASE, 0x6818),
            (GUEST_DR7, 0x681a),
            (GUEST_RSP, 0x681c),
            (GUEST_RIP, 0x681e),
            (GUEST_RFLAGS, 0x6820),
            (GUEST_PENDING_DEBUG, 0x6822),
            (GUEST_SYSENTER_ESP, 0x6824),
            (GUEST_SYSENTER_EIP, 0x6826),
            (HOST_CR0, 0x6c00),
            (HOST_CR3, 0x6c02),
            (HOST_CR4, 0x6c04),
            (HOST_FS_BASE, 0x6c06),
            (HOST_GS_BASE, 0x6c08),
            (HOST_TR_BASE, 0x6c0a),
            (HOST_GDTR_BASE, 0x6c0c),
            (HOST_IDTR_BASE, 0x6c0e),
            (HOST_SYSENTER_ESP, 0x6c10),
            (HOST_SYSENTER_EIP, 0x6c12),
            (HOST_RSP, 0x6c14),
            (HOST_RIP, 0x6c16),
        ];
        for &(field, sdm) in table {
            assert_eq!(field, sdm, "encoding {field:#06x}, SDM says {sdm:#06x}");
        }
    }

    #[test]
    fn segment_fields_follow_the_sdm() {
        assert_eq!(Seg::Cs.selector(), 0x0802);
        assert_eq!(Seg::Tr.selector(), 0x080e);
        assert_eq!(Seg::Ss.limit(), 0x4804);
        assert_eq!(Seg::Tr.limit(), 0x480e);
        assert_eq!(Seg::Ldtr.access_rights(), 0x4820);
        assert_eq!(Seg::Tr.access_rights(), 0x4822);
        assert_eq!(Seg::Fs.base(), 0x680e);
        assert_eq!(Seg::Tr.base(), 0x6814);
    }
}
