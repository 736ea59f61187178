//! The UART driver against a model of a 16550A: what it programs, and
//! how bytes and interrupts flow both ways.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;

/// A 16550A as far as the driver sees it. The transmitter holds what was
/// written until the test calls `transmit`.
#[derive(Default)]
struct Model {
    fifos: bool,
    /// A broken device: the IIR always reports a line error.
    stuck: bool,
    ier: u8,
    lcr: u8,
    mcr: u8,
    divisor: u16,
    /// Bytes the line delivered, not yet read.
    incoming: VecDeque<u8>,
    /// Bytes written to the transmitter and not yet sent.
    in_transmitter: usize,
    /// Every byte written to the transmitter, in order.
    sent: Vec<u8>,
    /// The "transmitter empty" cause, cleared by reading it from the IIR
    /// or by writing the transmitter.
    tx_empty_pending: bool,
}

impl Model {
    fn rx_cause(&self) -> bool {
        self.ier & IER_RX != 0 && !self.incoming.is_empty()
    }

    fn tx_cause(&self) -> bool {
        self.ier & IER_TX_EMPTY != 0 && self.tx_empty_pending
    }

    /// The interrupt line.
    fn line_high(&self) -> bool {
        self.stuck || self.rx_cause() || self.tx_cause()
    }

    /// The transmitter sent everything it held.
    fn transmit(&mut self) {
        self.in_transmitter = 0;
        self.tx_empty_pending = true;
    }

    fn iir(&mut self) -> u8 {
        let fifo_bits = if self.fifos { IIR_FIFOS } else { 0 };
        if self.stuck {
            return fifo_bits | 0x06;
        }
        if self.rx_cause() {
            return fifo_bits | 0x04;
        }
        if self.tx_cause() {
            self.tx_empty_pending = false;
            return fifo_bits | 0x02;
        }
        fifo_bits | IIR_NONE
    }
}

#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Model>>);

impl Registers for Shared {
    fn read(&mut self, reg: u16) -> Result<u8, Error> {
        let mut m = self.0.borrow_mut();
        Ok(match reg {
            RBR_THR => m.incoming.pop_front().unwrap_or(0),
            IER => m.ier,
            IIR_FCR => m.iir(),
            LCR => m.lcr,
            MCR => m.mcr,
            LSR => {
                let data = if m.incoming.is_empty() { 0 } else { LSR_DATA };
                let empty = if m.in_transmitter == 0 {
                    LSR_TX_EMPTY
                } else {
                    0
                };
                data | empty
            }
            _ => 0,
        })
    }

    fn write(&mut self, reg: u16, value: u8) -> Result<(), Error> {
        let mut m = self.0.borrow_mut();
        let dlab = m.lcr & LCR_DLAB != 0;
        match reg {
            RBR_THR if dlab => m.divisor = (m.divisor & 0xff00) | u16::from(value),
            IER if dlab => m.divisor = (m.divisor & 0xff) | (u16::from(value) << 8),
            RBR_THR => {
                let room = if m.fifos { TX_FIFO } else { 1 };
                assert!(m.in_transmitter < room, "transmitter overrun");
                m.in_transmitter += 1;
                m.sent.push(value);
                m.tx_empty_pending = false;
            }
            IER => {
                // Turning the cause on with the transmitter empty raises
                // it at once, as on a real 16550.
                if value & IER_TX_EMPTY != 0 && m.ier & IER_TX_EMPTY == 0 && m.in_transmitter == 0 {
                    m.tx_empty_pending = true;
                }
                m.ier = value;
            }
            LCR => m.lcr = value,
            MCR => m.mcr = value,
            _ => {}
        }
        Ok(())
    }
}

fn uart(fifos: bool) -> (Uart<Shared>, Shared) {
    let regs = Shared::default();
    regs.0.borrow_mut().fifos = fifos;
    (Uart::new(regs.clone()).unwrap(), regs)
}

#[test]
fn set_up_at_115200_8n1_with_the_receive_interrupt_on() {
    let (_uart, regs) = uart(true);
    let m = regs.0.borrow();
    assert_eq!(m.divisor, 1);
    assert_eq!(m.lcr, LCR_8N1);
    assert_eq!(m.mcr & 0x08, 0x08, "OUT2 gates the line");
    assert_eq!(m.ier, IER_RX);
}

#[test]
fn received_bytes_are_taken_in_order_and_the_line_drops() {
    let (mut uart, regs) = uart(true);
    regs.0.borrow_mut().incoming.extend(b"hello");
    assert!(regs.0.borrow().line_high());
    uart.service().unwrap();
    assert!(!regs.0.borrow().line_high());
    assert_eq!(uart.take(3).unwrap(), b"hel");
    assert_eq!(uart.take(100).unwrap(), b"lo");
    assert_eq!(uart.take(100).unwrap(), b"");
}

#[test]
fn a_full_buffer_holds_bytes_in_the_uart_with_the_line_low() {
    let (mut uart, regs) = uart(true);
    let all: Vec<u8> = (0..RX_BUFFER + 100).map(|i| i as u8).collect();
    regs.0.borrow_mut().incoming.extend(&all);
    uart.service().unwrap();
    // The rest waits in the UART, and does not interrupt in a loop.
    assert_eq!(regs.0.borrow().incoming.len(), 100);
    assert!(!regs.0.borrow().line_high());
    let mut got = uart.take(1000).unwrap();
    // Room again: the receive interrupt is back, and fires.
    assert!(regs.0.borrow().line_high());
    uart.service().unwrap();
    while got.len() < all.len() {
        let more = uart.take(4096).unwrap();
        assert!(!more.is_empty(), "bytes lost after {}", got.len());
        got.extend(more);
    }
    assert_eq!(got, all);
}

#[test]
fn sending_refills_the_fifo_on_each_interrupt_then_stops_asking() {
    let (mut uart, regs) = uart(true);
    let data: Vec<u8> = (0..40).collect();
    uart.send(&data).unwrap();
    assert_eq!(regs.0.borrow().sent.len(), TX_FIFO);
    assert_eq!(uart.backlog(), 40 - TX_FIFO);
    let mut rounds = 0;
    while uart.backlog() > 0 {
        regs.0.borrow_mut().transmit();
        assert!(regs.0.borrow().line_high(), "no interrupt while bytes wait");
        uart.service().unwrap();
        rounds += 1;
        assert!(rounds < 10);
    }
    assert_eq!(regs.0.borrow().sent, data);
    regs.0.borrow_mut().transmit();
    assert!(
        !regs.0.borrow().line_high(),
        "asks for more with nothing to send"
    );
    assert_eq!(regs.0.borrow().ier & IER_TX_EMPTY, 0);
}

#[test]
fn without_fifos_one_byte_goes_at_a_time() {
    let (mut uart, regs) = uart(false);
    uart.send(b"abc").unwrap();
    assert_eq!(regs.0.borrow().sent, b"a");
    for _ in 0..2 {
        regs.0.borrow_mut().transmit();
        uart.service().unwrap();
    }
    assert_eq!(regs.0.borrow().sent, b"abc");
}

#[test]
fn a_uart_that_never_settles_is_an_error_not_a_hang() {
    let (mut uart, regs) = uart(true);
    regs.0.borrow_mut().stuck = true;
    assert_eq!(uart.service(), Err(Error::Busy));
}
