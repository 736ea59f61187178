//! An I/O APIC (82093AA-style, version 0x11) at [`IOAPIC_BASE`]: 24 pins,
//! each with a redirection entry that turns its line into an interrupt
//! message for the local APICs.
//!
//! The guest reaches it through two MMIO registers: IOREGSEL (offset 0)
//! selects a register, IOWIN (offset 0x10) reads or writes it. Edge pins
//! send on a rising edge; level pins send while high and then wait for the
//! local APIC's EOI (remote IRR) before they send again.

use alloc::vec::Vec;

use crate::ipi::DeliveryMode;
use crate::ipi::Destination;
use crate::ipi::Ipi;

pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The MMIO window the VMM routes here.
pub const IOAPIC_SIZE: u64 = 0x1000;
pub const PINS: usize = 24;
/// Version 0x11, 24 entries.
pub const VERSION: u32 = 0x0017_0011;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LOGICAL: u64 = 1 << 11;
/// The bits a guest may write (vector, delivery mode, destination mode,
/// polarity, trigger, mask, destination).
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

/// The I/O APIC's state.
#[derive(Debug, Clone)]
pub struct IoApic {
    id: u32,
    select: u32,
    redirection: [u64; PINS],
    /// The level of each line.
    lines: u32,
}

impl IoApic {
    /// An I/O APIC with ID `id` (it must differ from every local APIC ID in
    /// the MP table), every pin masked.
    pub fn new(id: u8) -> IoApic {
        IoApic {
            id: u32::from(id),
            select: 0,
            redirection: [RTE_MASKED; PINS],
            lines: 0,
        }
    }

    pub fn id(&self) -> u8 {
        self.id as u8
    }

    /// The redirection entry of `pin`.
    pub fn entry(&self, pin: usize) -> u64 {
        self.redirection[pin]
    }

    /// MMIO read at `offset` within the window (32-bit accesses; others
    /// read zero).
    pub fn mmio_read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => self.select,
            IOWIN => self.register(self.select),
            _ => 0,
        }
    }

    /// MMIO write; returns the messages an unmasked level pin sends.
    pub fn mmio_write(&mut self, offset: u64, value: u32) -> Vec<Ipi> {
        match offset {
            IOREGSEL => self.select = value & 0xff,
            IOWIN => return self.set_register(self.select, value),
            _ => {}
        }
        Vec::new()
    }

    fn register(&self, index: u32) -> u32 {
        match index {
            0 => self.id << 24,
            1 => VERSION,
            2 => self.id << 24,
            0x10..=0x3f => {
                let entry = self.redirection[((index - 0x10) / 2) as usize];
                if index.is_multiple_of(2) {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn set_register(&mut self, index: u32, value: u32) -> Vec<Ipi> {
        match index {
            0 => self.id = (value >> 24) & 0xf,
            0x10..=0x3f => {
                let pin = ((index - 0x10) / 2) as usize;
                let old = self.redirection[pin];
                let new = if index.is_multiple_of(2) {
                    (old & !0xffff_ffff) | u64::from(value)
                } else {
                    (old & 0xffff_ffff) | (u64::from(value) << 32)
                };
                let kept = old & RTE_REMOTE_IRR;
                self.redirection[pin] = (new & RTE_WRITABLE) | kept;
                return self.send_if_level(pin).into_iter().collect();
            }
            _ => {}
        }
        Vec::new()
    }

    /// Sets the line of `pin` (pins past the last are ignored); returns
    /// the message the pin sends, if it sends one.
    pub fn set_irq(&mut self, pin: usize, level: bool) -> Option<Ipi> {
        if pin >= PINS {
            return None;
        }
        let was = self.lines & (1 << pin) != 0;
        if level {
            self.lines |= 1 << pin;
        } else {
            self.lines &= !(1 << pin);
        }
        let entry = self.redirection[pin];
        if entry & RTE_LEVEL != 0 {
            self.send_if_level(pin)
        } else if level && !was && entry & RTE_MASKED == 0 {
            Some(message(entry))
        } else {
            None
        }
    }

    /// A level pin that is high, unmasked and not waiting for its EOI
    /// sends (and then waits).
    fn send_if_level(&mut self, pin: usize) -> Option<Ipi> {
        let entry = self.redirection[pin];
        let high = self.lines & (1 << pin) != 0;
        let ready = entry & (RTE_LEVEL | RTE_MASKED | RTE_REMOTE_IRR) == RTE_LEVEL;
        if !(high && ready) {
            return None;
        }
        self.redirection[pin] |= RTE_REMOTE_IRR;
        Some(message(entry))
    }

    /// A local APIC's EOI of level-triggered `vector`: the pins that sent
    /// it may send again (and do, if their line is still high).
    pub fn eoi(&mut self, vector: u8) -> Vec<Ipi> {
        let mut sent = Vec::new();
        for pin in 0..PINS {
            let entry = self.redirection[pin];
            if entry & RTE_REMOTE_IRR != 0 && entry as u8 == vector {
                self.redirection[pin] &= !RTE_REMOTE_IRR;
                sent.extend(self.send_if_level(pin));
            }
        }
        sent
    }
}

/// The message a redirection entry describes.
fn message(entry: u64) -> Ipi {
    let mode = match (entry >> 8) & 7 {
        0 | 1 => DeliveryMode::Fixed,
        4 => DeliveryMode::Nmi,
        m => DeliveryMode::Unsupported(m as u8),
    };
    let dest = (entry >> 56) as u32;
    Ipi {
        vector: entry as u8,
        mode,
        dest: if entry & RTE_LOGICAL != 0 {
            // xAPIC flat logical destinations map onto cluster 0.
            Destination::Logical(dest)
        } else if dest == 0xff {
            Destination::Physical(crate::ipi::BROADCAST_ID)
        } else {
            Destination::Physical(dest)
        },
        level: entry & RTE_LEVEL != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: u32, low: u32, dest: u32) -> Vec<Ipi> {
        io.mmio_write(IOREGSEL, 0x11 + 2 * pin);
        io.mmio_write(IOWIN, dest << 24);
        io.mmio_write(IOREGSEL, 0x10 + 2 * pin);
        io.mmio_write(IOWIN, low)
    }

    #[test]
    fn identification_registers() {
        let mut io = IoApic::new(2);
        io.mmio_write(IOREGSEL, 1);
        assert_eq!(io.mmio_read(IOWIN), VERSION);
        io.mmio_write(IOREGSEL, 0);
        assert_eq!(io.mmio_read(IOWIN), 2 << 24);
        assert_eq!(io.mmio_read(IOREGSEL), 0);
        io.mmio_write(IOREGSEL, 0x10);
        assert_eq!(io.mmio_read(IOWIN), RTE_MASKED as u32, "masked at reset");
    }

    #[test]
    fn edge_pins_send_on_rising_edges_only() {
        let mut io = IoApic::new(2);
        program(&mut io, 4, 0x24, 1);
        let ipi = io.set_irq(4, true).unwrap();
        assert_eq!(ipi.vector, 0x24);
        assert_eq!(ipi.dest, Destination::Physical(1));
        assert!(!ipi.level);
        assert_eq!(io.set_irq(4, true), None, "still high");
        io.set_irq(4, false);
        assert!(io.set_irq(4, true).is_some());
        assert_eq!(io.set_irq(PINS + 3, true), None);
    }

    #[test]
    fn masked_pins_send_nothing() {
        let mut io = IoApic::new(2);
        program(&mut io, 2, RTE_MASKED as u32 | 0x30, 0);
        assert_eq!(io.set_irq(2, true), None);
    }

    #[test]
    fn level_pins_wait_for_eoi() {
        let mut io = IoApic::new(2);
        let low = RTE_LEVEL as u32 | RTE_MASKED as u32 | 0x41;
        program(&mut io, 9, low, 0);
        assert_eq!(io.set_irq(9, true), None);
        // Unmasking a high level pin sends.
        let sent = program(&mut io, 9, RTE_LEVEL as u32 | 0x41, 0);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].level);
        assert_ne!(io.entry(9) & RTE_REMOTE_IRR, 0);
        assert_eq!(io.set_irq(9, true), None, "waits for EOI");
        assert_eq!(io.eoi(0x41).len(), 1, "still high: sends again");
        io.set_irq(9, false);
        assert!(io.eoi(0x41).is_empty());
        assert_eq!(io.entry(9) & RTE_REMOTE_IRR, 0);
    }

    #[test]
    fn remote_irr_and_reserved_bits_are_not_writable() {
        let mut io = IoApic::new(2);
        program(&mut io, 0, 0xffff_ffff, 0xff);
        assert_eq!(io.entry(0) & RTE_REMOTE_IRR, 0);
        assert_eq!(io.entry(0) & (1 << 12), 0, "delivery status");
        assert_eq!(io.mmio_read(0x20), 0, "not a register");
        io.mmio_write(IOREGSEL, 0x55);
        assert_eq!(io.mmio_read(IOWIN), 0);
    }
}
