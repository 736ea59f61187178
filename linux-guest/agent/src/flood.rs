//! A hostile guest program, for the reliability tests: `starina-guest-agent
//! --flood SECONDS [SEED]` makes the vCPU exit to the VMM as fast as it can
//! for SECONDS, so the host side can check that native components keep
//! answering meanwhile (`tests/tests/guest_flood.rs`).
//!
//! The exits, chosen at random (a small xorshift generator seeded by SEED):
//! - CPUID with a random leaf (always intercepted: one exit each);
//! - port reads and writes of random widths (1, 2, 4 bytes) and values, on
//!   ports no device decodes and on COM1, if user space may do port I/O
//!   (`iopl(3)`): the microVM's kernel is built without
//!   `CONFIG_X86_IOPL_IOPERM` and `CONFIG_DEVPORT`, so there this is skipped
//!   and the program says so;
//! - console output: a line of random printable bytes on the guest's serial
//!   console every second, which its 8250 driver writes with port I/O (a
//!   transmit-register write and status reads per byte).
//!
//! MMIO is not hammered: the kernel has no /dev/mem (`CONFIG_DEVMEM` off),
//! so user space cannot reach the virtio-mmio windows.
//!
//! It prints `guest-flood: started` after the first batch, and at the end
//! `guest-flood: exits=N ... seconds=S per_second=R`. In every initramfs:
//! it runs only when asked, and does nothing a guest root process could not
//! do with a program of its own.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::time::Duration;
use std::time::Instant;

use crate::sys;

/// Ports no device of the microVM decodes (the VMM ignores or rejects them).
const UNUSED_PORTS: [u16; 4] = [0x2f0, 0x510, 0x1234, 0xe000];
const COM1: u16 = 0x3f8;
const COM1_SCRATCH: u16 = COM1 + 7;
/// Exits between clock reads.
const BATCH: u64 = 4096;
/// How often a console line goes out. Not more often: the guest's serial
/// driver spends a while per byte and the VMM logs each line, and those
/// pauses between exits are not what this program is for.
const CONSOLE_EVERY: Duration = Duration::from_secs(1);
/// Random printable bytes per console line.
const LINE_BYTES: usize = 48;

/// xorshift64: enough to vary leaves, ports, widths and values.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What the flood did.
#[derive(Default)]
struct Counts {
    cpuid: u64,
    port_io: u64,
    console_bytes: u64,
}

/// One port access at random: a port no device decodes (any width, read
/// or write), a COM1 register read, or a COM1 scratch-register write.
fn port_exit(x: u64) {
    let width = [1u8, 2, 4][(x % 3) as usize];
    let value = (x >> 32) as u32;
    match (x >> 8) % 4 {
        0 | 1 => {
            let port = UNUSED_PORTS[((x >> 16) % UNUSED_PORTS.len() as u64) as usize];
            let write = ((x >> 20) & 1 == 1).then_some(value);
            sys::port_io(port, width, write);
        }
        2 => {
            sys::port_io(COM1 + ((x >> 16) % 8) as u16, 1, None);
        }
        _ => {
            sys::port_io(COM1_SCRATCH, 1, Some(value));
        }
    }
}

/// One VM exit chosen by `r`.
fn one_exit(r: &mut Random, port_io: bool, counts: &mut Counts) {
    let x = r.next();
    if port_io && x & 1 == 1 {
        port_exit(x >> 1);
        counts.port_io += 1;
    } else {
        std::hint::black_box(std::arch::x86_64::__cpuid_count((x >> 32) as u32 % 0x20, 0));
        counts.cpuid += 1;
    }
}

/// A line of random printable bytes on the serial console.
fn console_line(r: &mut Random, console: &mut File, counts: &mut Counts) -> io::Result<()> {
    let mut line: Vec<u8> = (0..LINE_BYTES)
        .map(|_| b' ' + (r.next() % 95) as u8)
        .collect();
    line.push(b'\n');
    console.write_all(&line)?;
    counts.console_bytes += line.len() as u64;
    Ok(())
}

/// The serial console: ttyS0, or /dev/console (the same port, as PID 1
/// set it up).
fn open_console() -> io::Result<File> {
    let open = |path| OpenOptions::new().write(true).open(path);
    open("/dev/ttyS0").or_else(|_| open("/dev/console"))
}

/// `--flood SECONDS [SEED]`.
pub fn run(seconds: u64, seed: u64) -> io::Result<()> {
    let mut out = io::stdout();
    let port_io = match sys::allow_port_io() {
        Ok(()) => true,
        Err(e) => {
            writeln!(out, "guest-flood: no port I/O from user space (iopl: {e}); CPUID and console output only")?;
            false
        }
    };
    let mut console = open_console()?;
    let mut r = Random(seed | 1);
    let mut counts = Counts::default();
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut batches = 0u64;
    let mut last_line = start;
    while batches == 0 || start.elapsed() < limit {
        for _ in 0..BATCH {
            one_exit(&mut r, port_io, &mut counts);
        }
        if last_line.elapsed() >= CONSOLE_EVERY {
            console_line(&mut r, &mut console, &mut counts)?;
            last_line = Instant::now();
        }
        batches += 1;
        if batches == 1 {
            writeln!(out, "guest-flood: started")?;
            out.flush()?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let exits = counts.cpuid + counts.port_io;
    writeln!(
        out,
        "guest-flood: exits={exits} (cpuid {}, port I/O {}) console_bytes={} seconds={secs:.1} per_second={:.0}",
        counts.cpuid,
        counts.port_io,
        counts.console_bytes,
        exits as f64 / secs
    )?;
    out.flush()
}
