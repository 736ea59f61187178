//! Kernel logging: the `log` facade, written to the serial console as
//! `[   1.234567] INFO  <component>: message`. Lines from component crates
//! are tagged with the component's name; the kernel's own with `kernel`.

use core::fmt::Write;

use crate::arch::serial;
use crate::sync::SpinLock;

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: SpinLock<Console> = SpinLock::new(Console);

struct KernelLogger;

fn tag_for(target: &str) -> &str {
    let root = target.split("::").next().unwrap_or(target);
    match root {
        "starina_kernel" => "kernel",
        // The SDK logs on behalf of whichever component called it.
        "starina" => crate::sched::try_current_process_name().unwrap_or("kernel"),
        other => other,
    }
}

pub fn write_line(level: log::Level, tag: &str, args: core::fmt::Arguments<'_>) {
    let now = crate::arch::time::now_ns();
    let mut console = CONSOLE.lock();
    let _ = write!(
        console,
        "[{:>4}.{:06}] {:<5} {}: {}\n",
        now / 1_000_000_000,
        (now % 1_000_000_000) / 1000,
        level,
        tag,
        args
    );
}

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
