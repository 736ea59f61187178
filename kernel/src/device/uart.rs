//! The legacy UART a driver may take: COM2 (I/O ports 0x2f8-0x2ff, ISA
//! IRQ 3), the one PC serial port the kernel does not keep for itself
//! (COM1 is its console, `arch::serial`). Bochs, which has no virtio
//! devices, connects it to the host for the host link
//! (`scripts/starina exec --emulator bochs`).

use crate::arch::cpu::inb;
use crate::arch::cpu::outb;

/// COM2's first I/O port.
pub const COM2: u16 = 0x2f8;
/// COM2's interrupt line: ISA IRQ 3, the same GSI on every machine we
/// boot on (no interrupt source override moves it).
pub const COM2_GSI: u32 = 3;

/// The scratch register: any 16550 keeps what is written to it.
const SCRATCH: u16 = 7;
/// The line status register: all ones when nothing decodes the port.
const LSR: u16 = 5;

/// Whether a UART answers at `base`.
pub fn present(base: u16) -> bool {
    if inb(base + LSR) == 0xff {
        return false;
    }
    [0x5a, 0xa5].iter().all(|&v| {
        outb(base + SCRATCH, v);
        inb(base + SCRATCH) == v
    })
}
