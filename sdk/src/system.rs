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
