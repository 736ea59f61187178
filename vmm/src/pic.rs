//! A pair of cascaded 8259A programmable interrupt controllers.
//!
//! With `nolapic` and no IOAPIC (platform notes, option A) these are the
//! guest's only interrupt controllers: master at 0x20/0x21 (IRQ 0-7), slave
//! at 0xa0/0xa1 (IRQ 8-15) cascaded on master IRQ 2, plus the ELCR at
//! 0x4d0/0x4d1 selecting edge or level triggering per line.
//!
//! Devices drive lines with [`DualPic::set_irq`]; the VMM asks
//! [`DualPic::pending_vector`] whether to open an interrupt window and, when
//! the guest can take it, [`DualPic::acknowledge`] performs the INTA cycle and
//! returns the vector to inject. The priority logic (rotation, special mask,
//! special fully nested mode) follows the 8259A data sheet.

/// Master command/data ports.
pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xa0;
pub const SLAVE_DATA: u16 = 0xa1;
pub const ELCR_MASTER: u16 = 0x4d0;
pub const ELCR_SLAVE: u16 = 0x4d1;

/// The master's input the slave is wired to.
const CASCADE_IRQ: u8 = 2;

#[derive(Debug, Clone, Default)]
struct Pic {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register.
    imr: u8,
    /// Line levels last seen, for edge detection.
    last_level: u8,
    /// Level-triggered lines (ELCR).
    elcr: u8,
    /// Which ELCR bits exist (IRQ 0, 1, 2, 8, 13 are always edge).
    elcr_mask: u8,
    /// Lowest-priority rotation: the IRQ with priority 0 is `priority_add`.
    priority_add: u8,
    vector_base: u8,
    /// OCW3: read ISR (true) or IRR (false) from the command port.
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    /// 0: ready; 1..=3: expecting ICW2..ICW4.
    init_state: u8,
    init4: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
}

impl Pic {
    fn new(elcr_mask: u8) -> Self {
        Self {
            elcr_mask,
            ..Default::default()
        }
    }

    /// ICW1 resets everything except the ELCR.
    fn init_reset(&mut self) {
        *self = Self {
            elcr: self.elcr,
            elcr_mask: self.elcr_mask,
            ..Default::default()
        };
    }

    fn set_irq(&mut self, irq: u8, level: bool) {
        let mask = 1u8 << irq;
        if self.elcr & mask != 0 {
            // Level triggered: IRR follows the line.
            if level {
                self.irr |= mask;
                self.last_level |= mask;
            } else {
                self.irr &= !mask;
                self.last_level &= !mask;
            }
        } else if level {
            // Edge triggered: latch on the rising edge.
            if self.last_level & mask == 0 {
                self.irr |= mask;
            }
            self.last_level |= mask;
        } else {
            self.last_level &= !mask;
        }
    }

    /// Priority (0 highest) of the highest-priority bit in `mask`, 8 if none.
    fn priority(&self, mask: u8) -> u8 {
        if mask == 0 {
            return 8;
        }
        let mut p = 0;
        while mask & (1 << ((p + self.priority_add) & 7)) == 0 {
            p += 1;
        }
        p
    }

    /// The IRQ this chip would signal now, if any.
    fn output(&self, is_master: bool) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        // In special fully nested mode the cascade input may interrupt
        // itself: more slave interrupts get through while one is in service.
        if is_master && self.special_fully_nested {
            in_service &= !(1 << CASCADE_IRQ);
        }
        if self.special_mask {
            in_service &= !self.imr;
        }
        if p < self.priority(in_service) {
            Some((p + self.priority_add) & 7)
        } else {
            None
        }
    }

    /// INTA for `irq` on this chip.
    fn ack(&mut self, irq: u8) {
        let mask = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= mask;
        }
        // A level-triggered line stays requested while it is high.
        if self.elcr & mask == 0 {
            self.irr &= !mask;
        }
    }

    fn write_cmd(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1.
            self.init_reset();
            self.init_state = 1;
            self.init4 = v & 1 != 0;
            self.single = v & 2 != 0;
        } else if v & 0x08 != 0 {
            // OCW3.
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 1 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2.
            let irq = v & 7;
            match v >> 5 {
                0 => self.rotate_on_auto_eoi = false,
                4 => self.rotate_on_auto_eoi = true,
                1 | 5 => {
                    // Non-specific EOI (5: and rotate).
                    let p = self.priority(self.isr);
                    if p != 8 {
                        let done = (p + self.priority_add) & 7;
                        self.isr &= !(1 << done);
                        if v >> 5 == 5 {
                            self.priority_add = (done + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << irq),
                6 => self.priority_add = (irq + 1) & 7,
                7 => {
                    self.isr &= !(1 << irq);
                    self.priority_add = (irq + 1) & 7;
                }
                _ => {} // 2: no operation
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init_state {
            0 => self.imr = v, // OCW1
            1 => {
                self.vector_base = v & 0xf8;
                self.init_state = match (self.single, self.init4) {
                    (false, _) => 2,
                    (true, true) => 3,
                    (true, false) => 0,
                };
            }
            2 => self.init_state = if self.init4 { 3 } else { 0 }, // ICW3
            _ => {
                // ICW4.
                self.special_fully_nested = v & 0x10 != 0;
                self.auto_eoi = v & 0x02 != 0;
                self.init_state = 0;
            }
        }
    }
}

/// Master and slave 8259A.
#[derive(Debug, Clone)]
pub struct DualPic {
    master: Pic,
    slave: Pic,
}

impl Default for DualPic {
    fn default() -> Self {
        Self::new()
    }
}

impl DualPic {
    pub fn new() -> Self {
        Self {
            master: Pic::new(0xf8),
            slave: Pic::new(0xde),
        }
    }

    /// Drives ISA line `irq` (0..=15) to `level`. Lines above 15 are
    /// ignored.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            // The slave is unchanged, and so is the cascade line (every
            // change of the slave updates it). The VMM samples each line
            // on every exit: this is on the hot path.
            0..=7 => self.master.set_irq(irq, level),
            8..=15 => {
                self.slave.set_irq(irq - 8, level);
                self.update_cascade();
            }
            _ => {}
        }
    }

    /// A rising then falling edge: how a PIT tick is delivered.
    pub fn pulse_irq(&mut self, irq: u8) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    fn update_cascade(&mut self) {
        let slave_out = self.slave.output(false).is_some();
        self.master.set_irq(CASCADE_IRQ, slave_out);
    }

    /// Whether the PIC is asserting INTR (an interrupt is deliverable).
    pub fn has_pending(&self) -> bool {
        self.master.output(true).is_some()
    }

    /// The vector `acknowledge` would return now, without acknowledging.
    #[inline]
    pub fn pending_vector(&self) -> Option<u8> {
        // Nothing requested and unmasked: the usual answer, asked after
        // every VM exit.
        if self.master.irr & !self.master.imr == 0 {
            return None;
        }
        let irq = self.master.output(true)?;
        if irq == CASCADE_IRQ {
            let s = self.slave.output(false).unwrap_or(7);
            Some(self.slave.vector_base + s)
        } else {
            Some(self.master.vector_base + irq)
        }
    }

    /// The INTA cycle: marks the highest-priority request in service and
    /// returns its vector. `None` if nothing is pending (the caller should
    /// not have asked; real hardware would deliver the spurious IRQ 7).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let irq = self.master.output(true)?;
        self.master.ack(irq);
        let vector = if irq == CASCADE_IRQ {
            match self.slave.output(false) {
                Some(s) => {
                    self.slave.ack(s);
                    self.slave.vector_base + s
                }
                // The request went away between INTR and INTA: spurious.
                None => self.slave.vector_base + 7,
            }
        } else {
            self.master.vector_base + irq
        };
        self.update_cascade();
        Some(vector)
    }

    fn poll_read(&mut self, slave: bool) -> u8 {
        let pic = if slave {
            &mut self.slave
        } else {
            &mut self.master
        };
        pic.poll = false;
        match pic.output(!slave) {
            Some(irq) => {
                pic.ack(irq);
                self.update_cascade();
                0x80 | irq
            }
            None => 0,
        }
    }

    /// Port read (one byte).
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            MASTER_CMD | SLAVE_CMD => {
                let slave = port == SLAVE_CMD;
                let pic = if slave { &self.slave } else { &self.master };
                if pic.poll {
                    self.poll_read(slave)
                } else if pic.read_isr {
                    pic.isr
                } else {
                    pic.irr
                }
            }
            MASTER_DATA => self.master.imr,
            SLAVE_DATA => self.slave.imr,
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => 0xff,
        }
    }

    /// Port write (one byte).
    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            MASTER_CMD => self.master.write_cmd(v),
            MASTER_DATA => self.master.write_data(v),
            SLAVE_CMD => self.slave.write_cmd(v),
            SLAVE_DATA => self.slave.write_data(v),
            ELCR_MASTER => self.master.elcr = v & self.master.elcr_mask,
            ELCR_SLAVE => self.slave.elcr = v & self.slave.elcr_mask,
            _ => {}
        }
        self.update_cascade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's init_8259A(): ICW1..4 on both chips, vectors 0x30/0x38,
    /// all masked, then unmask what is used.
    fn linux_init() -> DualPic {
        let mut p = DualPic::new();
        p.write(MASTER_DATA, 0xff);
        p.write(SLAVE_DATA, 0xff);
        p.write(MASTER_CMD, 0x11);
        p.write(MASTER_DATA, 0x30);
        p.write(MASTER_DATA, 0x04);
        p.write(MASTER_DATA, 0x01);
        p.write(SLAVE_CMD, 0x11);
        p.write(SLAVE_DATA, 0x38);
        p.write(SLAVE_DATA, 0x02);
        p.write(SLAVE_DATA, 0x01);
        p.write(MASTER_DATA, 0xff);
        p.write(SLAVE_DATA, 0xff);
        p
    }

    #[test]
    fn probe_reads_back_mask() {
        let mut p = DualPic::new();
        p.write(MASTER_DATA, 0xff);
        assert_eq!(p.read(MASTER_DATA), 0xff);
        p.write(MASTER_DATA, 0xa5);
        assert_eq!(p.read(MASTER_DATA), 0xa5);
    }

    #[test]
    fn edge_irq_and_eoi() {
        let mut p = linux_init();
        p.write(MASTER_DATA, 0xfe); // unmask IRQ 0
        assert_eq!(p.pending_vector(), None);
        p.pulse_irq(0);
        assert_eq!(p.pending_vector(), Some(0x30));
        assert_eq!(p.acknowledge(), Some(0x30));
        assert_eq!(p.pending_vector(), None);
        // A second tick while in service waits for EOI.
        p.pulse_irq(0);
        assert_eq!(p.pending_vector(), None);
        p.write(MASTER_CMD, 0x20); // non-specific EOI
        assert_eq!(p.acknowledge(), Some(0x30));
        p.write(MASTER_CMD, 0x60); // specific EOI for IRQ 0
        assert!(!p.has_pending());
        // Holding the line high gives exactly one interrupt (edge).
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), Some(0x30));
        p.write(MASTER_CMD, 0x20);
        p.set_irq(0, true);
        assert!(!p.has_pending());
    }

    #[test]
    fn masked_irq_stays_pending() {
        let mut p = linux_init();
        p.pulse_irq(4);
        assert!(!p.has_pending());
        p.write(MASTER_DATA, 0xef);
        assert_eq!(p.acknowledge(), Some(0x34));
    }

    #[test]
    fn priorities() {
        let mut p = linux_init();
        p.write(MASTER_DATA, 0x00);
        p.pulse_irq(4);
        p.pulse_irq(1);
        assert_eq!(p.acknowledge(), Some(0x31));
        // IRQ 4 has lower priority than in-service IRQ 1.
        assert_eq!(p.pending_vector(), None);
        // IRQ 0 preempts IRQ 1.
        p.pulse_irq(0);
        assert_eq!(p.acknowledge(), Some(0x30));
        p.write(MASTER_CMD, 0x20); // EOI 0
        p.write(MASTER_CMD, 0x20); // EOI 1
        assert_eq!(p.acknowledge(), Some(0x34));
        // Rotate on specific EOI: IRQ 4 becomes lowest priority.
        p.write(MASTER_CMD, 0xe4);
        p.pulse_irq(4);
        p.pulse_irq(5);
        assert_eq!(p.acknowledge(), Some(0x35));
    }

    #[test]
    fn cascade() {
        let mut p = linux_init();
        p.write(MASTER_DATA, 0xfb); // unmask cascade
        p.write(SLAVE_DATA, 0xef); // unmask IRQ 12
        p.pulse_irq(12);
        assert_eq!(p.pending_vector(), Some(0x3c));
        assert_eq!(p.acknowledge(), Some(0x3c));
        assert!(!p.has_pending());
        p.write(SLAVE_CMD, 0x20);
        p.write(MASTER_CMD, 0x20);
        p.pulse_irq(12);
        assert!(p.has_pending());
    }

    #[test]
    fn level_triggered_via_elcr() {
        let mut p = linux_init();
        p.write(ELCR_MASTER, 0x20); // IRQ 5 level
        assert_eq!(p.read(ELCR_MASTER), 0x20);
        p.write(ELCR_MASTER, 0xff);
        assert_eq!(p.read(ELCR_MASTER), 0xf8, "IRQ 0-2 are edge only");
        p.write(ELCR_MASTER, 0x20);
        p.write(MASTER_DATA, 0x00);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), Some(0x35));
        p.write(MASTER_CMD, 0x20);
        // Still high: requests again.
        assert_eq!(p.acknowledge(), Some(0x35));
        p.write(MASTER_CMD, 0x20);
        p.set_irq(5, false);
        assert!(!p.has_pending());
    }

    #[test]
    fn read_irr_isr_and_poll() {
        let mut p = linux_init();
        p.pulse_irq(3);
        p.write(MASTER_CMD, 0x0a); // read IRR
        assert_eq!(p.read(MASTER_CMD), 0x08);
        p.write(MASTER_DATA, 0x00);
        p.write(MASTER_CMD, 0x0c); // poll
        assert_eq!(p.read(MASTER_CMD), 0x83);
        p.write(MASTER_CMD, 0x0b); // read ISR
        assert_eq!(p.read(MASTER_CMD), 0x08);
    }

    #[test]
    fn auto_eoi() {
        let mut p = DualPic::new();
        p.write(MASTER_CMD, 0x13); // single, ICW4
        p.write(MASTER_DATA, 0x20);
        p.write(MASTER_DATA, 0x03); // auto EOI
        p.write(MASTER_DATA, 0x00);
        p.pulse_irq(1);
        assert_eq!(p.acknowledge(), Some(0x21));
        p.pulse_irq(1);
        assert_eq!(p.acknowledge(), Some(0x21), "no EOI needed");
    }

    #[test]
    fn out_of_range_inputs() {
        let mut p = DualPic::new();
        p.set_irq(200, true);
        assert_eq!(p.read(0x1234), 0xff);
        p.write(0x1234, 1);
        assert_eq!(p.acknowledge(), None);
    }
}
