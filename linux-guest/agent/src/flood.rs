//! A hostile guest program, for the reliability tests: `starina-guest-agent
//! --flood SECONDS [SEED]` makes the vCPU exit to the VMM as fast as it can
//! for SECONDS, so the host side can check that native components keep
//! answering meanwhile (`tests/tests/guest_flood.rs`).
//!
//! Each round is one VM exit chosen at random (a small xorshift generator,
//! seeded by SEED): a port read or write of a random width (1, 2 or 4
//! bytes) and value, on a port no device decodes or on COM1 (reads of any
//! of its registers, random writes to its scratch register, a printable
//! byte to its transmit register now and then: console output), or a CPUID
//! with a random leaf. MMIO is not hammered: the guest kernel is built
//! without /dev/mem (`CONFIG_DEVMEM` is off), so user space cannot reach
//! the virtio-mmio windows.
//!
//! It prints `guest-flood: started` when the first exits are done, and at
//! the end `guest-flood: exits=N seconds=S per_second=R`. Root only (iopl).
//! In every initramfs: it runs only when asked, and anything it does a guest
//! root process could do with its own program.

use std::io;
use std::io::Write;
use std::time::Duration;
use std::time::Instant;

use crate::sys;

/// Ports no device of the microVM decodes (the VMM ignores or rejects them).
const UNUSED_PORTS: [u16; 4] = [0x2f0, 0x510, 0x1234, 0xe000];
const COM1: u16 = 0x3f8;
const COM1_SCRATCH: u16 = COM1 + 7;
/// One exit in this many writes a byte to COM1's transmit register.
const CONSOLE_EVERY: u64 = 256;
/// Exits between clock reads.
const BATCH: u64 = 1024;

/// xorshift64: enough to vary ports, widths and values.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One VM exit chosen by `r`; `n` counts exits so far.
fn one_exit(r: &mut Random, n: u64) {
    let x = r.next();
    let width = [1u8, 2, 4][(x % 3) as usize];
    let value = (x >> 32) as u32;
    match (x >> 8) % 8 {
        0..=2 => {
            let port = UNUSED_PORTS[((x >> 16) % UNUSED_PORTS.len() as u64) as usize];
            let write = ((x >> 20) & 1 == 1).then_some(value);
            sys::port_io(port, width, write);
        }
        3..=4 => {
            sys::port_io(COM1 + ((x >> 16) % 8) as u16, 1, None);
        }
        5 if n.is_multiple_of(CONSOLE_EVERY) => {
            sys::port_io(COM1, 1, Some(b'!' as u32 + value % 94));
        }
        5 => {
            sys::port_io(COM1_SCRATCH, 1, Some(value));
        }
        _ => {
            // CPUID is always intercepted by the VMM.
            std::hint::black_box(std::arch::x86_64::__cpuid_count(value % 0x20, 0));
        }
    }
}

/// `--flood SECONDS [SEED]`.
pub fn run(seconds: u64, seed: u64) -> io::Result<()> {
    sys::allow_port_io()?;
    let mut r = Random(seed | 1);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut exits = 0u64;
    let mut out = io::stdout();
    loop {
        for _ in 0..BATCH {
            one_exit(&mut r, exits);
            exits += 1;
        }
        if exits == BATCH {
            writeln!(out, "guest-flood: started")?;
            out.flush()?;
        }
        if start.elapsed() >= limit {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "guest-flood: exits={exits} seconds={secs:.1} per_second={:.0}",
        exits as f64 / secs
    )?;
    out.flush()
}
