//! Kernel logging: the `log` facade, written to the serial console as
//! `[   1.234567] INFO  <component>: message`. Lines from component crates
//! are tagged with the component's name; the kernel's own with `kernel`.

use core::fmt::Write;

use crate::arch::serial;
use crate::log_limit::RateLimit;
use crate::log_limit::Verdict;
use crate::log_line::LineBuf;
use crate::sync::SpinLock;

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// How much log text the kernel keeps for monitoring (`system_log_read`).
pub const LOG_RING_SIZE: usize = 64 * 1024;

/// The tail of the log: byte `seq` (counted from boot) sits at
/// `buf[seq % LOG_RING_SIZE]` while `seq >= written - LOG_RING_SIZE`.
struct LogRing {
    buf: [u8; LOG_RING_SIZE],
    written: u64,
    /// Raw console output (`write_raw`) stopped mid-line: the next log
    /// line starts on a line of its own.
    raw_mid_line: bool,
}

impl LogRing {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.written % LOG_RING_SIZE as u64) as usize] = b;
            self.written += 1;
        }
    }

    fn oldest(&self) -> u64 {
        self.written.saturating_sub(LOG_RING_SIZE as u64)
    }

    fn at(&self, seq: u64) -> u8 {
        self.buf[(seq % LOG_RING_SIZE as u64) as usize]
    }

    /// Copies whole lines starting at or after `from` into `out`.
    fn read(&self, from: u64, out: &mut [u8]) -> (u64, usize) {
        let mut start = from.min(self.written);
        if start < self.oldest() {
            // The first kept line may be cut: start after its end.
            start = self.oldest();
            while start < self.written && self.at(start) != b'\n' {
                start += 1;
            }
            start = (start + 1).min(self.written);
        }
        let avail = (self.written - start).min(out.len() as u64) as usize;
        let mut len = 0;
        for (i, slot) in out.iter_mut().enumerate().take(avail) {
            let b = self.at(start + i as u64);
            *slot = b;
            if b == b'\n' {
                len = i + 1;
            }
        }
        (start, len)
    }
}

/// Writes to the serial console and into the ring at once.
struct Tee<'a>(&'a mut LogRing);

impl Write for Tee<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        serial::write_bytes(s.as_bytes());
        self.0.push(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: SpinLock<LogRing> = SpinLock::new(LogRing {
    buf: [0; LOG_RING_SIZE],
    written: 0,
    raw_mid_line: false,
});

/// Copies log text from byte sequence number `from` on (whole lines) into
/// `out`; returns (sequence number of the first byte, bytes copied).
pub fn read_ring(from: u64, out: &mut [u8]) -> (u64, usize) {
    CONSOLE.lock().read(from, out)
}

struct KernelLogger;

fn tag_for(target: &str) -> &str {
    let root = target.split("::").next().unwrap_or(target);
    match root {
        "starina_kernel" => "kernel",
        // The SDK logs on behalf of whichever component called it.
        "starina" => crate::sched::try_current_process_name().unwrap_or("kernel"),
        // Libraries components link log as the component that called them.
        "virtio_drivers" | "smoltcp" | "starina_vmm" | "starina_bridge" => {
            crate::sched::try_current_process_name().unwrap_or(root)
        }
        other => other,
    }
}

/// Writes one line: `[time] LEVEL tag: text`. The text is formatted first,
/// outside the console lock and with interrupts on, into a bounded buffer
/// (a slow or panicking `Display` costs only its caller); then the tag's
/// rate limit decides, and only the copy to the console and the ring
/// happens under the lock.
pub fn write_line(level: log::Level, tag: &str, args: core::fmt::Arguments<'_>) {
    let mut text = LineBuf::new();
    let _ = text.write_fmt(args);
    let now = crate::arch::time::now_ns();
    let suppressed = match LIMITS.lock().check(tag, now) {
        Verdict::Write { suppressed } => suppressed,
        Verdict::Drop => return,
    };
    let mut ring = CONSOLE.lock();
    if ring.raw_mid_line {
        serial::write_bytes(b"\n");
        ring.raw_mid_line = false;
    }
    let mut console = Tee(&mut ring);
    let stamp = |console: &mut Tee<'_>, level: &dyn core::fmt::Display| {
        write!(
            console,
            "[{:>4}.{:06}] {:<5} {}: ",
            now / 1_000_000_000,
            (now % 1_000_000_000) / 1000,
            level,
            tag
        )
    };
    if suppressed > 0 {
        let _ = stamp(&mut console, &log::Level::Warn);
        let _ = writeln!(console, "({suppressed} lines suppressed: logging too fast)");
    }
    let _ = stamp(&mut console, &level);
    let _ = console.write_str(text.text());
    if text.cut() > 0 {
        let _ = write!(console, "... ({} bytes cut)", text.cut());
    }
    let _ = console.write_str("\n");
}

/// A component's raw console output (`console_write`): the bytes as they
/// are, to the serial console only (not the log ring), under the log's lock
/// so that they never land inside a log line.
pub fn write_raw(bytes: &[u8]) {
    let mut ring = CONSOLE.lock();
    serial::write_raw(bytes);
    if let Some(&last) = bytes.last() {
        ring.raw_mid_line = last != b'\n';
    }
}

static LIMITS: SpinLock<RateLimit> = SpinLock::new(RateLimit::new());

/// Writes to the console without taking the lock (for kernel panics, when
/// the lock may be held by the code that panicked).
pub fn write_unlocked(args: core::fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

impl log::Log for KernelLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        write_line(record.level(), tag_for(record.target()), *record.args());
    }

    fn flush(&self) {}
}

static LOGGER: KernelLogger = KernelLogger;

pub fn init() {
    serial::init();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
