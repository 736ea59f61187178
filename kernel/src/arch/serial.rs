//! The 16550 UART at COM1: the kernel's console. Output is polled; input
//! comes by the receive interrupt (`object::console`), on IRQ 4.

use super::cpu::inb;
use super::cpu::outb;

const COM1: u16 = 0x3f8;
/// COM1's interrupt line (ISA IRQ 4, the same GSI on q35 and microvm).
pub const GSI: u32 = 4;

pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // FIFO on, cleared
                          // DTR | RTS | OUT2 (OUT2 gates the interrupt line on PC hardware).
    outb(COM1 + 4, 0x0b);
}

/// Interrupts when bytes arrive (received data and FIFO timeout only).
pub fn enable_receive_interrupt() {
    outb(COM1 + 1, 0x01);
}

/// The next received byte, if any (draining the FIFO lowers the line).
pub fn read_byte() -> Option<u8> {
    let lsr = inb(COM1 + 5);
    // A missing UART reads 0xff: nothing there.
    if lsr == 0xff || lsr & 0x01 == 0 {
        return None;
    }
    Some(inb(COM1))
}

pub fn write_byte(b: u8) {
    // Wait for room in the transmitter (bounded: a missing UART reads 0xff).
    for _ in 0..100_000 {
        if inb(COM1 + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1, b);
}

/// Waits (bounded) until the transmitter has sent every byte: before the
/// machine powers off, so the last line is not cut short.
pub fn drain() {
    for _ in 0..100_000 {
        if inb(COM1 + 5) & 0x40 != 0 {
            break;
        }
    }
}

/// Bytes as they are (a component's raw console output).
pub fn write_raw(bytes: &[u8]) {
    for &b in bytes {
        write_byte(b);
    }
}

pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
}
