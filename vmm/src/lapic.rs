//! A local APIC in x2APIC mode, reached through MSR exits (0x800-0x8ff,
//! IA32_APIC_BASE, IA32_TSC_DEADLINE): no MMIO page to decode.
//!
//! It holds the interrupt state of one vCPU (IRR, ISR, TMR, TPR and the
//! processor priority), its LVT entries and timer ([`crate::lapic_timer`]),
//! and decodes ICR writes into [`Ipi`]s for the VMM to route
//! ([`crate::smp`]). Vectors below 16 are illegal and refused with the
//! ESR bit hardware sets, never stored.

use crate::ipi::logical_id;
use crate::ipi::Ipi;
use crate::lapic_timer::ApicTimer;
use crate::lapic_timer::TimerMode;

/// IA32_APIC_BASE and its bits.
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const APIC_DEFAULT_ADDR: u64 = 0xfee0_0000;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC register MSRs.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;

const REG_ID: u32 = 0x802;
const REG_VERSION: u32 = 0x803;
const REG_TPR: u32 = 0x808;
const REG_PPR: u32 = 0x80a;
const REG_EOI: u32 = 0x80b;
const REG_LDR: u32 = 0x80d;
const REG_SVR: u32 = 0x80f;
const REG_ISR: u32 = 0x810;
const REG_TMR: u32 = 0x818;
const REG_IRR: u32 = 0x820;
const REG_ESR: u32 = 0x828;
const REG_ICR: u32 = 0x830;
const REG_LVT_TIMER: u32 = 0x832;
const REG_LVT_ERROR: u32 = 0x837;
const REG_TIMER_INITIAL: u32 = 0x838;
const REG_TIMER_CURRENT: u32 = 0x839;
const REG_TIMER_DIVIDE: u32 = 0x83e;
const REG_SELF_IPI: u32 = 0x83f;

/// Version 0x14 (integrated APIC), six LVT entries (timer to error).
pub const VERSION: u32 = 0x0005_0014;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// ESR: a received illegal vector; a sent illegal vector.
const ESR_RECEIVE_ILLEGAL: u32 = 1 << 6;
const ESR_SEND_ILLEGAL: u32 = 1 << 5;

/// Why an APIC MSR access gets #GP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// Not a register (or not one that can be read / written that way).
    Reserved(u32),
    /// Reserved bits, or a mode change the architecture refuses (x2APIC
    /// back to xAPIC, or into xAPIC mode, which is not emulated).
    BadValue(u32, u64),
}

/// What a register write asks of the VMM besides the register itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicWrite {
    Done,
    /// ICR: route this message.
    Send(Ipi),
    /// EOI of a level-triggered vector: tell the I/O APIC.
    LevelEoi(u8),
}

/// One vCPU's local APIC.
#[derive(Debug, Clone)]
pub struct LocalApic {
    id: u32,
    base: u64,
    tpr: u32,
    svr: u32,
    esr: u32,
    icr: u64,
    irr: [u32; 8],
    isr: [u32; 8],
    tmr: [u32; 8],
    /// Timer, thermal, performance counter, LINT0, LINT1, error.
    lvt: [u32; 6],
    timer: ApicTimer,
    nmi: bool,
}

fn bit(v: &[u32; 8], vector: u8) -> bool {
    v[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
}

fn set(v: &mut [u32; 8], vector: u8, on: bool) {
    let word = &mut v[usize::from(vector >> 5)];
    if on {
        *word |= 1 << (vector & 31);
    } else {
        *word &= !(1 << (vector & 31));
    }
}

fn highest(v: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| v[i] != 0)
        .map(|i| (i * 32 + 31 - v[i].leading_zeros() as usize) as u8)
}

impl LocalApic {
    /// The APIC of the vCPU with x2APIC ID `id`, in x2APIC mode from
    /// reset (as firmware that enabled x2APIC leaves it); `bsp` for the
    /// bootstrap processor.
    pub fn new(id: u32, bsp: bool) -> LocalApic {
        let base = APIC_DEFAULT_ADDR | APIC_BASE_ENABLE | APIC_BASE_EXTD;
        LocalApic {
            id,
            base: if bsp { base | APIC_BASE_BSP } else { base },
            tpr: 0,
            svr: 0xff,
            esr: 0,
            icr: 0,
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
            lvt: [LVT_MASKED; 6],
            timer: ApicTimer::default(),
            nmi: false,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn is_bsp(&self) -> bool {
        self.base & APIC_BASE_BSP != 0
    }

    /// INIT: every register back to its reset value but the ID and the
    /// base MSR.
    pub fn init(&mut self) {
        let base = self.base;
        *self = LocalApic {
            base,
            ..LocalApic::new(self.id, false)
        };
    }

    fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::of_lvt(self.lvt[0])
    }

    /// Processor priority: the higher of TPR and the in-service class.
    pub fn ppr(&self) -> u32 {
        let isr_class = highest(&self.isr).map_or(0, |v| u32::from(v) & 0xf0);
        if self.tpr & 0xf0 >= isr_class {
            self.tpr & 0xff
        } else {
            isr_class
        }
    }

    // -- interrupts in ---------------------------------------------------

    /// A fixed interrupt arrives (from an IPI, the I/O APIC or the timer);
    /// `level` marks it for an EOI forwarded to the I/O APIC. Returns
    /// whether it was accepted (an illegal vector, or a software-disabled
    /// APIC, drops it).
    pub fn accept(&mut self, vector: u8, level: bool) -> bool {
        if vector < 16 {
            self.esr |= ESR_RECEIVE_ILLEGAL;
            return false;
        }
        if !self.software_enabled() {
            return false;
        }
        set(&mut self.irr, vector, true);
        set(&mut self.tmr, vector, level);
        true
    }

    /// An NMI arrives.
    pub fn accept_nmi(&mut self) {
        self.nmi = true;
    }

    /// Takes a pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi)
    }

    /// The vector the APIC would deliver now, if one beats the priority.
    pub fn pending_vector(&self) -> Option<u8> {
        let v = highest(&self.irr)?;
        (u32::from(v) & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// INTA: moves the deliverable vector from IRR to ISR and returns it.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        set(&mut self.irr, v, false);
        set(&mut self.isr, v, true);
        Some(v)
    }

    /// Whether anything waits in IRR (deliverable or not).
    pub fn has_requests(&self) -> bool {
        self.irr.iter().any(|&w| w != 0) || self.nmi
    }

    // -- timer -------------------------------------------------------------

    /// Fires the timer if due; call before each entry and after a sleep.
    /// Returns whether an interrupt was accepted.
    pub fn poll_timer(&mut self, now_ns: u64) -> bool {
        let mode = self.timer_mode();
        self.timer.poll(mode, now_ns)
            && self.lvt[0] & LVT_MASKED == 0
            && self.accept(self.lvt[0] as u8, false)
    }

    /// Whether LINT0 takes the 8259's interrupts (unmasked, ExtINT).
    pub fn lint0_extint(&self) -> bool {
        let lint0 = self.lvt[3];
        lint0 & LVT_MASKED == 0 && (lint0 >> 8) & 7 == 7
    }

    /// When the timer needs the VMM next.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.timer.deadline_ns()
    }

    /// Whether the timer is in TSC-deadline mode.
    pub fn tsc_deadline_mode(&self) -> bool {
        self.timer_mode() == TimerMode::TscDeadline
    }

    /// IA32_TSC_DEADLINE read.
    pub fn tsc_deadline(&self) -> u64 {
        self.timer.tsc_deadline()
    }

    /// IA32_TSC_DEADLINE write: `at_ns` is guest TSC `tsc` in host time.
    pub fn set_tsc_deadline(&mut self, tsc: u64, at_ns: Option<u64>) {
        self.timer.set_tsc_deadline(self.timer_mode(), tsc, at_ns);
    }

    // -- MSRs --------------------------------------------------------------

    /// IA32_APIC_BASE.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// WRMSR IA32_APIC_BASE: only x2APIC mode (enabled + EXTD) at the
    /// default address is accepted; the BSP bit is read-only.
    pub fn set_base(&mut self, value: u64) -> Result<(), ApicError> {
        let wanted = APIC_DEFAULT_ADDR | APIC_BASE_ENABLE | APIC_BASE_EXTD;
        if value & !APIC_BASE_BSP != wanted {
            return Err(ApicError::BadValue(MSR_APIC_BASE, value));
        }
        Ok(())
    }

    /// RDMSR of an x2APIC register.
    pub fn read(&self, index: u32, now_ns: u64) -> Result<u64, ApicError> {
        let v = match index {
            REG_ID => self.id,
            REG_VERSION => VERSION,
            REG_TPR => self.tpr,
            REG_PPR => self.ppr(),
            REG_LDR => logical_id(self.id),
            REG_SVR => self.svr,
            REG_ISR..=0x817 => self.isr[(index - REG_ISR) as usize],
            REG_TMR..=0x81f => self.tmr[(index - REG_TMR) as usize],
            REG_IRR..=0x827 => self.irr[(index - REG_IRR) as usize],
            REG_ESR => self.esr,
            REG_ICR => return Ok(self.icr),
            REG_LVT_TIMER..=REG_LVT_ERROR => self.lvt[(index - REG_LVT_TIMER) as usize],
            REG_TIMER_INITIAL => self.timer.initial(),
            REG_TIMER_CURRENT => self.timer.current(self.timer_mode(), now_ns),
            REG_TIMER_DIVIDE => self.timer.divide(),
            _ => return Err(ApicError::Reserved(index)),
        };
        Ok(u64::from(v))
    }

    /// WRMSR of an x2APIC register.
    pub fn write(&mut self, index: u32, value: u64, now_ns: u64) -> Result<ApicWrite, ApicError> {
        let bad = || ApicError::BadValue(index, value);
        if index != REG_ICR && value >> 32 != 0 {
            return Err(bad());
        }
        let v = value as u32;
        match index {
            REG_TPR => self.tpr = v & 0xff,
            REG_EOI if v != 0 => return Err(bad()),
            REG_EOI => return Ok(self.eoi()),
            REG_SVR => self.svr = v & 0x11ff,
            // Writing clears the errors recorded so far.
            REG_ESR if v != 0 => return Err(bad()),
            REG_ESR => self.esr = 0,
            REG_ICR => return Ok(self.send(value)),
            REG_LVT_TIMER => self.set_lvt_timer(v),
            0x833..=REG_LVT_ERROR => {
                let i = (index - REG_LVT_TIMER) as usize;
                self.lvt[i] = v & 0x1_07ff;
            }
            REG_TIMER_INITIAL => self.timer.set_initial(self.timer_mode(), v, now_ns),
            REG_TIMER_DIVIDE => self.timer.set_divide(v),
            REG_SELF_IPI => {
                self.accept(v as u8, false);
            }
            _ => return Err(ApicError::Reserved(index)),
        }
        // A software-disabled APIC masks every LVT entry.
        if !self.software_enabled() {
            self.lvt.iter_mut().for_each(|l| *l |= LVT_MASKED);
        }
        Ok(ApicWrite::Done)
    }

    fn set_lvt_timer(&mut self, v: u32) {
        let old = self.timer_mode();
        self.lvt[0] = v & 0x7_00ff;
        if self.timer_mode() != old {
            self.timer.mode_changed();
        }
    }

    fn eoi(&mut self) -> ApicWrite {
        let Some(v) = highest(&self.isr) else {
            return ApicWrite::Done;
        };
        set(&mut self.isr, v, false);
        if bit(&self.tmr, v) {
            set(&mut self.tmr, v, false);
            ApicWrite::LevelEoi(v)
        } else {
            ApicWrite::Done
        }
    }

    fn send(&mut self, icr: u64) -> ApicWrite {
        // Reserved bits (delivery status, remote read status) read as 0.
        self.icr = icr & !(1 << 12) & 0xffff_ffff_000c_cfff;
        let ipi = Ipi::from_icr(self.icr);
        if ipi.mode == crate::ipi::DeliveryMode::Fixed && ipi.vector < 16 {
            self.esr |= ESR_SEND_ILLEGAL;
            return ApicWrite::Done;
        }
        ApicWrite::Send(ipi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipi::DeliveryMode;
    use crate::ipi::Destination;

    fn enabled(id: u32) -> LocalApic {
        let mut a = LocalApic::new(id, id == 0);
        a.write(REG_SVR, 0x1ff, 0).unwrap();
        a
    }

    #[test]
    fn identity_registers() {
        let a = LocalApic::new(3, false);
        assert_eq!(a.read(REG_ID, 0), Ok(3));
        assert_eq!(a.read(REG_VERSION, 0), Ok(u64::from(VERSION)));
        assert_eq!(a.read(REG_LDR, 0), Ok(1 << 3));
        assert!(!a.is_bsp() && LocalApic::new(0, true).is_bsp());
        assert_eq!(a.base() & APIC_BASE_EXTD, APIC_BASE_EXTD);
        let mut a = a;
        assert_eq!(a.write(REG_ID, 5, 0), Err(ApicError::Reserved(REG_ID)));
        assert_eq!(a.read(0x8ff, 0), Err(ApicError::Reserved(0x8ff)));
    }

    #[test]
    fn only_x2apic_mode_is_accepted_in_the_base_msr() {
        let mut a = LocalApic::new(0, true);
        let x2 = APIC_DEFAULT_ADDR | APIC_BASE_ENABLE | APIC_BASE_EXTD;
        assert_eq!(a.set_base(x2 | APIC_BASE_BSP), Ok(()));
        assert!(a.set_base(APIC_DEFAULT_ADDR | APIC_BASE_ENABLE).is_err());
        assert!(a.set_base(0).is_err());
    }

    #[test]
    fn priorities_decide_delivery() {
        let mut a = enabled(0);
        assert!(a.accept(0x31, false));
        assert!(a.accept(0x52, false));
        assert_eq!(a.acknowledge(), Some(0x52));
        // 0x31's class is below the in-service 0x52's.
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.ppr(), 0x50);
        assert_eq!(a.write(REG_EOI, 0, 0), Ok(ApicWrite::Done));
        assert_eq!(a.pending_vector(), Some(0x31));
        a.write(REG_TPR, 0x40, 0).unwrap();
        assert_eq!(a.pending_vector(), None);
        a.write(REG_TPR, 0x20, 0).unwrap();
        assert_eq!(a.acknowledge(), Some(0x31));
        assert_eq!(a.read(REG_ISR + 1, 0), Ok(1 << (0x31 - 32)));
    }

    #[test]
    fn level_eoi_is_forwarded() {
        let mut a = enabled(0);
        a.accept(0x40, true);
        assert_eq!(a.read(REG_TMR + 2, 0), Ok(1));
        assert_eq!(a.acknowledge(), Some(0x40));
        assert_eq!(a.write(REG_EOI, 0, 0), Ok(ApicWrite::LevelEoi(0x40)));
        assert_eq!(
            a.write(REG_EOI, 0, 0),
            Ok(ApicWrite::Done),
            "nothing in service"
        );
        assert!(a.write(REG_EOI, 1, 0).is_err());
    }

    #[test]
    fn illegal_and_disabled_vectors_are_dropped() {
        let mut a = LocalApic::new(1, false);
        assert!(!a.accept(0x40, false), "software-disabled");
        a.write(REG_SVR, 0x1ff, 0).unwrap();
        assert!(!a.accept(3, false));
        assert_eq!(a.read(REG_ESR, 0), Ok(u64::from(ESR_RECEIVE_ILLEGAL)));
        a.write(REG_ESR, 0, 0).unwrap();
        assert_eq!(a.write(REG_ICR, 0x0005, 0), Ok(ApicWrite::Done));
        assert_eq!(a.read(REG_ESR, 0), Ok(u64::from(ESR_SEND_ILLEGAL)));
        assert_eq!(a.pending_vector(), None);
    }

    #[test]
    fn icr_writes_become_messages() {
        let mut a = enabled(0);
        let sent = a.write(REG_ICR, (1u64 << 32) | 0x4fd, 0).unwrap();
        let ApicWrite::Send(ipi) = sent else {
            panic!("{sent:?}")
        };
        assert_eq!(ipi.mode, DeliveryMode::Nmi);
        assert_eq!(ipi.dest, Destination::Physical(1));
        assert_eq!(a.read(REG_ICR, 0), Ok((1u64 << 32) | 0x4fd));
        a.write(REG_SELF_IPI, 0x77, 0).unwrap();
        assert_eq!(a.pending_vector(), Some(0x77));
        assert!(a.write(REG_TPR, 1 << 32, 0).is_err());
    }

    #[test]
    fn timer_modes_fire_their_vector() {
        let mut a = enabled(0);
        a.write(REG_TIMER_DIVIDE, 0xb, 0).unwrap();
        a.write(REG_LVT_TIMER, 0xec, 0).unwrap();
        a.write(REG_TIMER_INITIAL, 1000, 100).unwrap();
        assert_eq!(a.next_deadline_ns(), Some(1100));
        assert_eq!(a.read(REG_TIMER_CURRENT, 600), Ok(500));
        a.poll_timer(1100);
        assert_eq!(a.acknowledge(), Some(0xec));
        a.write(REG_EOI, 0, 0).unwrap();
        // TSC-deadline: a mode change disarms the count.
        a.write(REG_LVT_TIMER, (2 << 17) | 0xec, 0).unwrap();
        assert!(a.tsc_deadline_mode() && a.next_deadline_ns().is_none());
        a.set_tsc_deadline(5000, Some(2000));
        a.poll_timer(1999);
        assert_eq!(a.pending_vector(), None);
        a.poll_timer(2000);
        assert_eq!(a.pending_vector(), Some(0xec));
        // A masked timer fires nothing.
        let mut b = enabled(1);
        b.write(REG_LVT_TIMER, LVT_MASKED as u64 | 0xec, 0).unwrap();
        b.write(REG_TIMER_INITIAL, 1, 0).unwrap();
        b.poll_timer(1_000_000);
        assert_eq!(b.pending_vector(), None);
    }

    #[test]
    fn init_resets_all_but_the_identity() {
        let mut a = enabled(2);
        a.accept(0x40, false);
        a.write(REG_TPR, 0x30, 0).unwrap();
        a.init();
        assert_eq!(a.read(REG_ID, 0), Ok(2));
        assert_eq!(a.read(REG_TPR, 0), Ok(0));
        assert!(!a.has_requests());
        assert_eq!(a.read(REG_SVR, 0), Ok(0xff));
    }
}
