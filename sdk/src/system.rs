//! Privileged system control, granted by the spec's `privileges`.

use crate::abi::Error;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

/// The right to power the machine off (spec privilege `shutdown`).
#[derive(Debug)]
pub struct Shutdown(OwnedHandle);

impl Shutdown {
    pub fn from_handle(h: OwnedHandle) -> Shutdown {
        Shutdown(h)
    }

    /// Powers off with `code` as the machine's exit status (0 = success).
    /// Returns only on error.
    pub fn power_off(&self, code: u8) -> Error {
        match kernel().system_shutdown(self.0.id(), code) {
            Ok(()) => Error::NotSupported,
            Err(e) => e,
        }
    }
}

/// The right to read the system's status (spec privilege `monitor`): the
/// components and their state, the kernel's log, memory figures, the
/// load of each CPU.
#[derive(Debug)]
pub struct Monitor(OwnedHandle);

impl Monitor {
    pub fn from_handle(h: OwnedHandle) -> Monitor {
        Monitor(h)
    }

    /// Every component of the running profile, in start order.
    pub fn components(&self) -> Result<alloc::vec::Vec<crate::abi::ComponentStatus>, Error> {
        let mut out = alloc::vec::Vec::new();
        for index in 0.. {
            match kernel().system_component_status(self.0.id(), index) {
                Ok(status) => out.push(status),
                Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Copies kernel log text starting at byte sequence number `from` into
    /// `out`: returns (sequence number of the first byte, bytes copied).
    pub fn read_log(&self, from: u64, out: &mut [u8]) -> Result<(u64, usize), Error> {
        kernel().system_log_read(self.0.id(), from, out)
    }

    pub fn memory(&self) -> Result<crate::abi::MemoryStats, Error> {
        kernel().system_memory_stats(self.0.id())
    }

    /// Every online CPU, by index: its running load totals.
    /// Two calls a while apart give each CPU's load in between
    /// ([`crate::abi::CpuStats::busy_permille_since`]).
    pub fn cpus(&self) -> Result<alloc::vec::Vec<crate::abi::CpuStats>, Error> {
        let mut out = alloc::vec::Vec::new();
        for index in 0.. {
            match kernel().system_cpu_stats(self.0.id(), index) {
                Ok(stats) => out.push(stats),
                Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// The right to stop and restart the running profile's components (spec
/// privilege `control`).
#[derive(Debug)]
pub struct Control(OwnedHandle);

impl Control {
    pub fn from_handle(h: OwnedHandle) -> Control {
        Control(h)
    }

    /// `NotFound` if the running profile has no component `name`.
    pub fn act(&self, name: &str, action: crate::abi::ComponentAction) -> Result<(), Error> {
        kernel().component_control(self.0.id(), name, action)
    }
}
