//! A 16550 UART (a PC COM port) as a byte stream, interrupt-driven both
//! ways: for a driver that talks over a serial line (the host link under
//! Bochs, which has no virtio devices).
//!
//! Receiving: the interrupt moves bytes from the UART's FIFO into a
//! bounded buffer ([`RX_BUFFER`]); [`Uart::take`] hands them out. While the
//! buffer is full, the receive interrupt is off, so bytes wait in the
//! UART (and the sender behind it waits too) instead of being lost or
//! interrupting in a loop; taking bytes turns it back on.
//!
//! Sending: [`Uart::send`] queues bytes and fills the transmit FIFO when it
//! is empty; the "transmitter empty" interrupt, on only while bytes wait,
//! refills it. The queue is not bounded here: the caller watches
//! [`Uart::backlog`] and waits with [`Uart::flush_to`] where it must.
//!
//! The UART's registers are reached through [`Registers`]: a device's I/O
//! ports, or a model of a 16550 in the unit tests.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::Device;
use crate::abi::Error;

/// Received bytes held before the receive interrupt is turned off.
pub const RX_BUFFER: usize = 64 * 1024;
/// Interrupt causes handled per [`Uart::service`] before it gives up on a
/// UART that never says it is done (a broken device).
const MAX_CAUSES: usize = 64;

/// Register offsets (DLAB clear unless noted).
const RBR_THR: u16 = 0; // receive buffer / transmit holding; DLAB: divisor low
const IER: u16 = 1; // interrupt enable; DLAB: divisor high
const IIR_FCR: u16 = 2; // interrupt identification / FIFO control
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;

const IER_RX: u8 = 0x01;
const IER_TX_EMPTY: u8 = 0x02;
const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
/// FIFOs on and cleared, receive trigger at 14 bytes.
const FCR_FIFO_ON: u8 = 0xc7;
/// DTR, RTS and OUT2 (OUT2 gates the interrupt line on PC hardware).
const MCR_ON: u8 = 0x0b;
const LSR_DATA: u8 = 0x01;
const LSR_TX_EMPTY: u8 = 0x20;
const IIR_NONE: u8 = 0x01;
/// IIR bits 7:6 both set: a 16550A with working FIFOs.
const IIR_FIFOS: u8 = 0xc0;
/// The transmit FIFO's depth on a 16550A.
const TX_FIFO: usize = 16;

/// A UART's eight registers, one byte at a time.
pub trait Registers {
    fn read(&mut self, reg: u16) -> Result<u8, Error>;
    fn write(&mut self, reg: u16, value: u8) -> Result<(), Error>;
}

impl Registers for Device {
    fn read(&mut self, reg: u16) -> Result<u8, Error> {
        self.io_read(reg, 1).map(|v| v as u8)
    }

    fn write(&mut self, reg: u16, value: u8) -> Result<(), Error> {
        self.io_write(reg, 1, u32::from(value))
    }
}

pub struct Uart<R: Registers = Device> {
    regs: R,
    rx: VecDeque<u8>,
    tx: VecDeque<u8>,
    /// What the interrupt enable register holds.
    ier: u8,
    /// Bytes the transmitter takes at once: its FIFO, or 1 without one.
    tx_chunk: usize,
}

impl<R: Registers> Uart<R> {
    /// Sets the UART up at 115200 baud, 8N1, FIFOs on, and turns on the
    /// receive interrupt.
    pub fn new(mut regs: R) -> Result<Uart<R>, Error> {
        regs.write(IER, 0)?;
        regs.write(LCR, LCR_DLAB)?;
        regs.write(RBR_THR, 1)?; // divisor 1: 115200 baud
        regs.write(IER, 0)?;
        regs.write(LCR, LCR_8N1)?;
        regs.write(IIR_FCR, FCR_FIFO_ON)?;
        regs.write(MCR, MCR_ON)?;
        let fifos = regs.read(IIR_FCR)? & IIR_FIFOS == IIR_FIFOS;
        // Clear what is pending from before.
        regs.read(LSR)?;
        regs.read(MSR)?;
        let mut uart = Uart {
            regs,
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            ier: 0,
            tx_chunk: if fifos { TX_FIFO } else { 1 },
        };
        uart.set_ier(IER_RX)?;
        Ok(uart)
    }

    /// Handles every pending interrupt cause: call it when the line fires,
    /// before acking the interrupt. `Busy` if the UART still reports
    /// causes after [`MAX_CAUSES`] of them (a broken device).
    pub fn service(&mut self) -> Result<(), Error> {
        for _ in 0..MAX_CAUSES {
            let iir = self.regs.read(IIR_FCR)?;
            if iir & IIR_NONE != 0 {
                return Ok(());
            }
            match (iir >> 1) & 0x7 {
                // Modem status changed: reading it clears the cause.
                0 => _ = self.regs.read(MSR)?,
                1 => self.fill_tx()?,
                // Data, or a FIFO timeout (bytes below the trigger level).
                2 | 6 => self.drain_rx()?,
                // A line error (overrun, framing): reading it clears it.
                _ => _ = self.regs.read(LSR)?,
            }
        }
        Err(Error::Busy)
    }

    /// Up to `max` received bytes, oldest first (empty when none came).
    pub fn take(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        self.drain_rx()?;
        let n = max.min(self.rx.len());
        let bytes: Vec<u8> = self.rx.drain(..n).collect();
        if self.ier & IER_RX == 0 && self.rx.len() < RX_BUFFER {
            self.set_ier(self.ier | IER_RX)?;
        }
        Ok(bytes)
    }

    /// Queues `bytes` and starts sending them.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.tx.extend(bytes);
        self.fill_tx()
    }

    /// Bytes queued and not yet handed to the transmitter.
    pub fn backlog(&self) -> usize {
        self.tx.len()
    }

    /// Waits (yielding the CPU) until at most `limit` bytes are queued.
    pub fn flush_to(&mut self, limit: usize) -> Result<(), Error> {
        while self.tx.len() > limit {
            self.fill_tx()?;
            if self.tx.len() > limit {
                crate::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Moves bytes from the receive FIFO into the buffer while it has
    /// room; with the buffer full, turns the receive interrupt off.
    fn drain_rx(&mut self) -> Result<(), Error> {
        while self.rx.len() < RX_BUFFER {
            if self.regs.read(LSR)? & LSR_DATA == 0 {
                return Ok(());
            }
            self.rx.push_back(self.regs.read(RBR_THR)?);
        }
        if self.ier & IER_RX != 0 {
            self.set_ier(self.ier & !IER_RX)?;
        }
        Ok(())
    }

    /// Refills the transmitter if it is empty; the "transmitter empty"
    /// interrupt is on exactly while bytes wait.
    fn fill_tx(&mut self) -> Result<(), Error> {
        if !self.tx.is_empty() && self.regs.read(LSR)? & LSR_TX_EMPTY != 0 {
            let n = self.tx_chunk.min(self.tx.len());
            for b in self.tx.drain(..n) {
                self.regs.write(RBR_THR, b)?;
            }
        }
        let want = if self.tx.is_empty() {
            self.ier & !IER_TX_EMPTY
        } else {
            self.ier | IER_TX_EMPTY
        };
        if want != self.ier {
            self.set_ier(want)?;
        }
        Ok(())
    }

    fn set_ier(&mut self, ier: u8) -> Result<(), Error> {
        self.regs.write(IER, ier)?;
        self.ier = ier;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
