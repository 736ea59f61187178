//! Logging: components use the `log` crate's macros; lines go to the kernel,
//! which tags each with the calling component's name.

use crate::abi::LogLevel;
use crate::syscall::kernel;

struct KernelLogger;

impl log::Log for KernelLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        kernel().log(level, *record.args());
    }

    fn flush(&self) {}
}

static LOGGER: KernelLogger = KernelLogger;

/// Routes the `log` facade to the kernel. The kernel calls this at boot;
/// components just use `log::info!` and friends.
pub fn init(max: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max);
}
