//! A hostile guest program, for the reliability tests: `starina-guest-agent
//! --flood SECONDS [SEED]` hammers the VMM from guest user space for SECONDS,
//! so the host side can check that native components keep answering
//! meanwhile (`tests/tests/guest_flood.rs`).
//!
//! Each step is one of, chosen by a xorshift generator seeded by SEED (the
//! same seed makes the same sequence of steps):
//! - CPUID with a random leaf (always intercepted: one exit each);
//! - port I/O of width 1, 2 or 4 with a random value, on the device models'
//!   ports and anywhere in the port space (`ports.rs`, which also says which
//!   accesses a survivable flood leaves out: resets, the guest's PIC, PIT
//!   and console UART); needs `iopl(3)`;
//! - MMIO reads and writes of width 1, 2, 4 or 8, by MOV, MOVZX and MOVSX,
//!   at random offsets in unclaimed guest-physical pages and reads in the
//!   virtio-mmio windows (`mmio.rs`); needs /dev/mem;
//! - a random LDT entry (modify_ldt), and in a wild flood also a random
//!   selector loaded into DS, ES or GS around a CPUID exit (`ldt.rs`;
//!   faults are survived). Those loads are not in the survivable flood:
//!   within seconds they corrupt the guest kernel's memory (a triple fault
//!   with the kernel stack over its page tables under Starina; "Guest moved
//!   used index" and a hang under plain QEMU, `linux-guest/run-direct.sh
//!   --run 'env STARINA_FLOOD_KINDS=ldt,seg /init --flood 8'`), so it is
//!   the guest (Linux 6.12 or QEMU's TCG), not the VMM, that breaks;
//! - and once a second a line of random printable bytes on the serial
//!   console, which the guest's 8250 driver writes with port I/O.
//!
//! A kind the guest kernel does not offer (no iopl, /dev/mem or
//! modify_ldt) is left out and the program says so. With the environment
//! variable `STARINA_FLOOD_WILD=1` nothing is left out on purpose: the
//! guest may crash or reset itself, and the host must cope; it may also
//! wedge (a PIC given a new vector base delivers the timer as #DE, which
//! kills this program with SIGFPE, and then nothing answers): the linux
//! server restarts a guest that stops answering its pings. With
//! `STARINA_FLOOD_END=reset` the flood ends (after its report) by resetting
//! the guest through the i8042, and with `STARINA_FLOOD_END=wedge` by
//! masking every line of both PICs and every I/O APIC pin and taking every
//! CPU with a real-time spinner (the guest hangs without crashing), so that
//! the host sees both ways back.
//!
//! It prints `guest-flood: started` after the first batch, and at the end
//! `guest-flood: exits=N ... per_second=R` and a line of counts per kind.
//!
//! Available in every initramfs, run only when asked: it needs root in the
//! guest, where anyone can already run a program of their own that does
//! the same (the guest is untrusted by design); the guest kernel options it
//! uses are in `linux-guest/config/microvm.config`.

mod hw;
mod ldt;
mod mmio;
mod ports;

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::time::Duration;
use std::time::Instant;

use crate::sys;

const I8042_COMMAND: u16 = 0x64;
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_DATA: u16 = 0xa1;
/// Steps between clock reads.
const BATCH: u64 = 1024;
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

/// What the flood did, per kind.
#[derive(Default)]
struct Counts {
    cpuid: u64,
    port_read: u64,
    port_write: u64,
    port_left_out: u64,
    mmio_read: u64,
    mmio_write: u64,
    ldt_write: u64,
    ldt_refused: u64,
    segment_load: u64,
    segment_fault: u64,
    console_bytes: u64,
}

impl Counts {
    /// Steps that exited to the VMM (a faulting segment load still made
    /// its CPUID exit; LDT writes do not exit).
    fn exits(&self) -> u64 {
        self.cpuid
            + self.port_read
            + self.port_write
            + self.port_left_out
            + self.mmio_read
            + self.mmio_write
            + self.segment_load
    }

    fn per_kind(&self, secs: f64) -> String {
        let kinds = [
            ("cpuid", self.cpuid),
            ("port_read", self.port_read),
            ("port_write", self.port_write),
            ("port_left_out", self.port_left_out),
            ("mmio_read", self.mmio_read),
            ("mmio_write", self.mmio_write),
            ("ldt_write", self.ldt_write),
            ("ldt_refused", self.ldt_refused),
            ("segment_load", self.segment_load),
            ("segment_fault", self.segment_fault),
            ("console_bytes", self.console_bytes),
        ];
        kinds
            .iter()
            .map(|(name, n)| format!("{name}={n} ({:.0}/s)", *n as f64 / secs))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the guest lets this program do, and how far it goes.
struct Setup {
    port_io: bool,
    mmio: Option<mmio::Targets>,
    ldt: bool,
    /// Segment loads too (else LDT writes only).
    segments: bool,
    wild: bool,
}

/// Finds out what is available, saying what is not.
fn setup(r: &mut Random, out: &mut impl Write) -> io::Result<Setup> {
    let wild = std::env::var("STARINA_FLOOD_WILD").is_ok_and(|v| v == "1");
    // Skips faulting segment loads; reports any other fault before dying.
    hw::survive_segment_faults()?;
    // To narrow a failure down: STARINA_FLOOD_KINDS=port,mmio,ldt,seg
    // (CPUID exits and console lines are always on; seg shares its steps
    // with ldt, so needs it too). Segment loads only in a wild flood by
    // default: they wreck the guest kernel by themselves (see the module
    // comment).
    let default = if wild {
        "port,mmio,ldt,seg"
    } else {
        "port,mmio,ldt"
    };
    let kinds = std::env::var("STARINA_FLOOD_KINDS").unwrap_or_else(|_| default.into());
    let wanted = |kind: &str| kinds.split(',').any(|k| k == kind);
    let port_io = wanted("port")
        && match sys::allow_port_io() {
            Ok(()) => true,
            Err(e) => {
                writeln!(out, "guest-flood: no port I/O (iopl: {e})")?;
                false
            }
        };
    let targets = wanted("mmio").then(|| mmio::map_targets(|| r.next()));
    let mmio = match targets.transpose() {
        Ok(None) => None,
        Ok(Some(t)) => {
            writeln!(
                out,
                "guest-flood: MMIO into {} virtio window pages and {} unclaimed pages ({:#x}..{:#x})",
                t.windows.len(),
                t.holes.len(),
                t.holes.first().map_or(0, |p| p.phys),
                t.holes.last().map_or(0, |p| p.phys)
            )?;
            Some(t)
        }
        Err(e) => {
            writeln!(out, "guest-flood: no MMIO (/dev/mem: {e})")?;
            None
        }
    };
    let ldt = wanted("ldt")
        && match hw::read_ldt(&mut [0u8; 64]) {
            Ok(_) => true,
            Err(e) => {
                writeln!(out, "guest-flood: no LDT (modify_ldt: {e})")?;
                false
            }
        };
    let mode = if wild {
        "wild: nothing left out"
    } else {
        "survivable: leaving out resets, segment loads and the guest's PIC, PIT and console UART"
    };
    writeln!(out, "guest-flood: {mode}")?;
    Ok(Setup {
        port_io,
        mmio,
        ldt,
        segments: wanted("seg"),
        wild,
    })
}

/// CPUID with a leaf from `x`: one exit.
fn cpuid_exit(x: u64) {
    std::hint::black_box(std::arch::x86_64::__cpuid_count((x >> 32) as u32 % 0x20, 0));
}

fn cpuid(x: u64, counts: &mut Counts) {
    cpuid_exit(x);
    counts.cpuid += 1;
}

fn port_step(x: u64, wild: bool, counts: &mut Counts) {
    let a = ports::pick(x);
    if !wild && ports::left_out(a).is_some() {
        // Still an exit, to keep the rate comparable.
        cpuid_exit(x);
        counts.port_left_out += 1;
        return;
    }
    std::hint::black_box(sys::port_io(a.port, a.width, a.write));
    match a.write {
        Some(_) => counts.port_write += 1,
        None => counts.port_read += 1,
    }
}

fn mmio_step(x: u64, y: u64, targets: &mmio::Targets, wild: bool, counts: &mut Counts) {
    let width = [1u8, 2, 4, 8][(x % 4) as usize];
    let offset = ((x >> 2) % hw::PAGE as u64) as usize;
    let in_window = (x >> 16).is_multiple_of(4) && !targets.windows.is_empty();
    let pages = if in_window {
        &targets.windows
    } else {
        &targets.holes
    };
    let Some(page) = pages.get(((x >> 20) % pages.len().max(1) as u64) as usize) else {
        return cpuid(x, counts);
    };
    let write = (x >> 40) & 1 == 1 && (wild || !in_window);
    if write {
        page.write(offset, width, y);
        counts.mmio_write += 1;
    } else {
        std::hint::black_box(page.read(offset, width, (x >> 41) as u8));
        counts.mmio_read += 1;
    }
}

fn ldt_step(x: u64, y: u64, segments: bool, counts: &mut Counts) {
    if x & 1 == 0 || !segments {
        match hw::write_ldt_entry(&ldt::random_entry(x >> 1, y)) {
            Ok(()) => counts.ldt_write += 1,
            Err(_) => counts.ldt_refused += 1,
        }
        return;
    }
    let faulted = ldt::with_selector(
        ldt::random_register(x >> 1),
        ldt::random_selector(y),
        || cpuid_exit(y),
    );
    counts.segment_load += 1;
    counts.segment_fault += u64::from(faulted);
}

/// One step chosen by `r`, among the kinds `s` offers.
fn step(r: &mut Random, s: &Setup, counts: &mut Counts) {
    let x = r.next();
    match x % 8 {
        0..=2 if s.port_io => port_step(x >> 3, s.wild, counts),
        3..=5 if s.mmio.is_some() => {
            let y = r.next();
            if let Some(t) = &s.mmio {
                mmio_step(x >> 3, y, t, s.wild, counts);
            }
        }
        6 if s.ldt => ldt_step(x >> 3, r.next(), s.segments, counts),
        _ => cpuid(x, counts),
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
    let mut r = Random(seed | 1);
    // Console lines come by the clock: their bytes from a generator of their
    // own, so that the steps are the same for the same seed.
    let mut line_random = Random((seed ^ 0x9e37_79b9_7f4a_7c15) | 1);
    let setup = setup(&mut r, &mut out)?;
    let mut console = open_console()?;
    let mut counts = Counts::default();
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut batches = 0u64;
    let mut last_line = start;
    while batches == 0 || start.elapsed() < limit {
        for _ in 0..BATCH {
            step(&mut r, &setup, &mut counts);
        }
        if last_line.elapsed() >= CONSOLE_EVERY {
            console_line(&mut line_random, &mut console, &mut counts)?;
            last_line = Instant::now();
        }
        batches += 1;
        if batches == 1 {
            writeln!(out, "guest-flood: started (seed {seed})")?;
            out.flush()?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let exits = counts.exits();
    writeln!(
        out,
        "guest-flood: exits={exits} seconds={secs:.1} per_second={:.0}",
        exits as f64 / secs
    )?;
    writeln!(out, "guest-flood: {}", counts.per_kind(secs))?;
    out.flush()?;
    match std::env::var("STARINA_FLOOD_END").as_deref() {
        Ok("reset") => reset_guest(&mut out)?,
        Ok("wedge") => wedge_guest(&mut out)?,
        _ => {}
    }
    Ok(())
}

/// Hangs the guest without crashing it: masks every interrupt line of both
/// 8259s and every pin of the I/O APIC (through /dev/mem), then takes every
/// CPU with a real-time spinner (the throttling that would leave normal
/// threads 5% turned off): no device is heard and no normal thread runs,
/// so the agent answers nothing until the linux server restarts the guest.
fn wedge_guest(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "guest-flood: masking every PIC line and I/O APIC pin, spinning at real-time \
         priority on every CPU (the guest hangs)"
    )?;
    out.flush()?;
    sys::allow_port_io()?;
    sys::port_io(PIC_MASTER_DATA, 1, Some(0xff));
    sys::port_io(PIC_SLAVE_DATA, 1, Some(0xff));
    if let Err(e) = mask_ioapic() {
        writeln!(out, "guest-flood: the I/O APIC stays as it is: {e}")?;
    }
    out.flush()?;
    let _ = std::fs::write("/proc/sys/kernel/sched_rt_runtime_us", "-1");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 1..cpus {
        std::thread::spawn(spin_at_realtime);
    }
    spin_at_realtime()
}

/// Spins for good at the highest real-time priority.
fn spin_at_realtime() -> ! {
    let _ = sys::set_realtime(99);
    loop {
        std::hint::spin_loop();
    }
}

/// The I/O APIC's registers (IOREGSEL at 0, IOWIN at 0x10) and its pins.
const IOAPIC_BASE: u64 = 0xfec0_0000;
const IOAPIC_PINS: u64 = 24;

/// Sets the mask bit of every redirection entry.
fn mask_ioapic() -> io::Result<()> {
    let devmem: File = OpenOptions::new().read(true).write(true).open("/dev/mem")?;
    let page = hw::PhysPage::map(&devmem, IOAPIC_BASE)?;
    for pin in 0..IOAPIC_PINS {
        page.write(0, 4, 0x10 + 2 * pin);
        let low = page.read(0x10, 4, 0);
        page.write(0x10, 4, low | 1 << 16);
    }
    Ok(())
}

/// The i8042's reset command. A second of yielding first lets the agent
/// pass the report on; by the clock, not by sleeping, as the flood may have
/// stopped the guest's timer.
fn reset_guest(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "guest-flood: resetting the guest (i8042 command 0xfe)")?;
    out.flush()?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        std::thread::yield_now();
    }
    sys::allow_port_io()?;
    sys::port_io(I8042_COMMAND, 1, Some(0xfe));
    Ok(())
}
