//! 8250/16550A UART at COM1 (ports 0x3f8..=0x3ff, IRQ 4).
//!
//! Transmission is instantaneous: THR is always empty (LSR.THRE|TEMT), and
//! each byte the guest writes is appended to the current output line. Whole
//! lines are queued for the VMM to tag into Starina's log ([`Serial::take_lines`]).
//! Input pushed by the VMM ([`Serial::push_input`]) sits in a receive FIFO
//! and raises the "received data available" interrupt when enabled.
//!
//! The model follows the 16550A closely enough for Linux's 8250 driver to
//! autodetect a 16550A: scratch register, FIFO bits in IIR, and loopback
//! (MCR.LOOP routes MCR outputs to MSR inputs and TX to RX).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// COM1 base port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1 ISA IRQ.
pub const COM1_IRQ: u8 = 4;

/// Longest line kept before it is flushed anyway (guards against a guest
/// that never writes a newline).
pub const MAX_LINE: usize = 1024;
/// Receive FIFO bound: input beyond this is dropped and counted as overrun.
pub const RX_CAPACITY: usize = 4096;
/// Completed lines kept before the oldest is dropped (the VMM is expected to
/// drain them after every exit batch).
pub const MAX_QUEUED_LINES: usize = 256;

// Register offsets.
const RBR_THR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
// Offset 7 is the scratch register (SCR).

const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MS: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_MS: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_FIFO_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
const MSR_DELTAS: u8 = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD;

/// A 16550A UART.
pub struct Serial {
    ier: u8,
    lcr: u8,
    mcr: u8,
    lsr_errors: u8,
    msr: u8,
    scr: u8,
    fcr: u8,
    dll: u8,
    dlm: u8,
    /// A THRE interrupt is owed (set when THR becomes empty, cleared by
    /// reading IIR while it is the reported source, or by writing THR).
    thre_pending: bool,
    rx: VecDeque<u8>,
    line: Vec<u8>,
    lines: VecDeque<String>,
    /// Lines dropped because nobody drained them.
    pub dropped_lines: u64,
    /// Input bytes dropped because the receive FIFO was full.
    pub rx_overruns: u64,
}

impl Default for Serial {
    fn default() -> Self {
        Self::new()
    }
}

impl Serial {
    pub fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0x03, // 8N1
            mcr: MCR_OUT2,
            lsr_errors: 0,
            // Carrier detect and data set ready, as if a terminal is attached.
            msr: MSR_DCD | MSR_DSR | MSR_CTS,
            scr: 0,
            fcr: 0,
            dll: 0x0c, // 9600 baud
            dlm: 0,
            thre_pending: false,
            rx: VecDeque::new(),
            line: Vec::new(),
            lines: VecDeque::new(),
            dropped_lines: 0,
            rx_overruns: 0,
        }
    }

    /// Guest reads register `offset` (0..=7).
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset & 7 {
            RBR_THR_DLL if self.lcr & LCR_DLAB != 0 => self.dll,
            RBR_THR_DLL => {
                let b = self.rx.pop_front().unwrap_or(0);
                if self.rx.is_empty() {
                    self.lsr_errors &= !LSR_OE;
                }
                b
            }
            IER_DLM if self.lcr & LCR_DLAB != 0 => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let iir = self.iir();
                // Reading IIR acknowledges a THRE interrupt it reports.
                if iir & 0x0f == IIR_THRE {
                    self.thre_pending = false;
                }
                let fifo = if self.fcr & FCR_ENABLE != 0 {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                iir | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let mut lsr = LSR_THRE | LSR_TEMT | self.lsr_errors;
                if !self.rx.is_empty() {
                    lsr |= LSR_DR;
                }
                // Reading LSR clears the error bits.
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let v = self.modem_status();
                self.msr &= !MSR_DELTAS;
                v
            }
            _ => self.scr, // SCR
        }
    }

    /// Guest writes `value` to register `offset` (0..=7).
    pub fn write(&mut self, offset: u16, value: u8) {
        match offset & 7 {
            RBR_THR_DLL if self.lcr & LCR_DLAB != 0 => self.dll = value,
            RBR_THR_DLL => {
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(value);
                } else {
                    self.output(value);
                }
                // The byte "left" at once: THR is empty again.
                self.thre_pending = true;
            }
            IER_DLM if self.lcr & LCR_DLAB != 0 => self.dlm = value,
            IER_DLM => {
                let old = self.ier;
                self.ier = value & 0x0f;
                // Enabling THRE while THR is empty raises it immediately:
                // Linux's 8250 driver probes for exactly this.
                if self.ier & IER_THRE != 0 && old & IER_THRE == 0 {
                    self.thre_pending = true;
                }
            }
            IIR_FCR => {
                if value & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                self.fcr = value & !(FCR_CLEAR_RX | 0x04);
            }
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1f,
            LSR | MSR => {} // read-only (factory test writes ignored)
            _ => self.scr = value,
        }
    }

    /// Interrupt identification, highest priority first.
    fn iir(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            IIR_RDA
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.modem_status() & MSR_DELTAS != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    fn modem_status(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback: outputs feed inputs (DTR->DSR, RTS->CTS, OUT1->RI,
            // OUT2->DCD).
            let mut v = self.msr & MSR_DELTAS;
            if self.mcr & MCR_RTS != 0 {
                v |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                v |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                v |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                v |= MSR_DCD;
            }
            v
        } else {
            self.msr
        }
    }

    /// The interrupt line level. OUT2 is not required: QEMU does not gate on
    /// it either, and early consoles may poll.
    pub fn irq_level(&self) -> bool {
        self.iir() != IIR_NONE
    }

    fn receive(&mut self, b: u8) {
        if self.rx.len() >= RX_CAPACITY {
            self.rx_overruns += 1;
            self.lsr_errors |= LSR_OE;
        } else {
            self.rx.push_back(b);
        }
    }

    fn output(&mut self, b: u8) {
        match b {
            b'\n' => self.flush_line(),
            b'\r' => {}
            _ => {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.flush_line();
                }
            }
        }
    }

    fn flush_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if self.lines.len() >= MAX_QUEUED_LINES {
            self.lines.pop_front();
            self.dropped_lines += 1;
        }
        self.lines.push_back(line);
    }

    /// Queues bytes for the guest to read (console input). Returns how many
    /// were accepted; the rest did not fit in the receive FIFO.
    pub fn push_input(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(RX_CAPACITY - self.rx.len());
        self.rx.extend(&data[..n]);
        n
    }

    /// Takes the complete output lines (without the newline).
    pub fn take_lines(&mut self) -> impl Iterator<Item = String> + '_ {
        self.lines.drain(..)
    }

    /// Output written since the last newline, for flushing at shutdown.
    pub fn partial_line(&self) -> &[u8] {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn write_str(s: &mut Serial, text: &str) {
        for b in text.bytes() {
            s.write(0, b);
        }
    }

    #[test]
    fn output_lines() {
        let mut s = Serial::new();
        write_str(&mut s, "hello\r\nworld\npart");
        let lines: Vec<String> = s.take_lines().collect();
        assert_eq!(lines, vec!["hello", "world"]);
        assert_eq!(s.partial_line(), b"part");
        assert_eq!(s.take_lines().count(), 0);
    }

    #[test]
    fn long_line_and_queue_bounds() {
        let mut s = Serial::new();
        for _ in 0..MAX_LINE + 5 {
            s.write(0, b'x');
        }
        assert_eq!(s.take_lines().next().unwrap().len(), MAX_LINE);
        for _ in 0..MAX_QUEUED_LINES + 3 {
            s.write(0, b'\n');
        }
        assert_eq!(s.dropped_lines, 3);
        assert_eq!(s.take_lines().count(), MAX_QUEUED_LINES);
        // Invalid UTF-8 does not panic.
        write_str(&mut s, "");
        s.write(0, 0xff);
        s.write(0, b'\n');
        assert_eq!(s.take_lines().next().unwrap(), "\u{fffd}");
    }

    #[test]
    fn lsr_always_ready_and_dlab() {
        let mut s = Serial::new();
        assert_eq!(s.read(5) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        s.write(3, 0x83); // DLAB
        s.write(0, 0x01);
        s.write(1, 0x00);
        assert_eq!(s.read(0), 0x01);
        s.write(3, 0x03);
        assert_eq!(s.take_lines().count(), 0);
        assert_eq!(s.partial_line(), b"", "divisor write is not output");
        s.write(7, 0x5a);
        assert_eq!(s.read(7), 0x5a);
    }

    #[test]
    fn rx_interrupts() {
        let mut s = Serial::new();
        assert!(!s.irq_level());
        assert_eq!(s.push_input(b"ab"), 2);
        assert!(!s.irq_level(), "RDA not enabled");
        assert_eq!(s.read(5) & LSR_DR, LSR_DR);
        s.write(1, IER_RDA);
        assert!(s.irq_level());
        assert_eq!(s.read(2) & 0x0f, IIR_RDA);
        assert_eq!(s.read(0), b'a');
        assert_eq!(s.read(0), b'b');
        assert!(!s.irq_level());
        assert_eq!(s.read(2) & 0x0f, IIR_NONE);
        assert_eq!(s.read(5) & LSR_DR, 0);
        // Overfill.
        let big = vec![0u8; RX_CAPACITY + 10];
        assert_eq!(s.push_input(&big), RX_CAPACITY);
    }

    #[test]
    fn thre_interrupt() {
        let mut s = Serial::new();
        s.write(1, IER_THRE);
        assert!(s.irq_level(), "enabling THRE with empty THR interrupts");
        assert_eq!(s.read(2) & 0x0f, IIR_THRE);
        assert!(!s.irq_level(), "reading IIR acknowledged it");
        s.write(0, b'x');
        assert!(s.irq_level(), "transmitted at once: THR empty again");
        s.write(1, 0);
        assert!(!s.irq_level());
    }

    #[test]
    fn fifo_and_loopback_like_linux_probes() {
        let mut s = Serial::new();
        s.write(2, FCR_ENABLE);
        assert_eq!(s.read(2) & 0xc0, 0xc0, "16550A FIFO bits");
        // Linux's loopback test: MCR = LOOP | RTS | OUT2 -> MSR high nibble 0x90.
        s.write(4, MCR_LOOP | 0x0a);
        assert_eq!(s.read(6) & 0xf0, 0x90);
        // In loopback, TX comes back as RX.
        s.write(0, b'q');
        assert_eq!(s.partial_line(), b"");
        assert_eq!(s.read(0), b'q');
        s.write(4, 0);
        assert_eq!(s.read(6) & 0xf0, MSR_DCD | MSR_DSR | MSR_CTS);
    }
}
