//! Owned handles: closed when dropped, so a component cannot leak one by
//! accident.

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Rights;
use crate::syscall::kernel;

/// A handle this component owns. Dropping it closes it.
#[derive(Debug, PartialEq, Eq)]
pub struct OwnedHandle(HandleId);

impl OwnedHandle {
    /// Takes ownership of a raw handle number (as received from the kernel).
    pub fn from_raw(id: HandleId) -> OwnedHandle {
        OwnedHandle(id)
    }

    pub fn id(&self) -> HandleId {
        self.0
    }

    /// Gives up ownership without closing (the handle was moved elsewhere).
    pub fn into_raw(self) -> HandleId {
        let id = self.0;
        core::mem::forget(self);
        id
    }

    /// Closes the handle now, reporting what the kernel said (dropping it
    /// closes it too, silently).
    pub fn close(self) -> Result<(), Error> {
        kernel().handle_close(self.into_raw())
    }

    /// A second handle to the same object, with `rights` (no more than
    /// this one has).
    pub fn duplicate(&self, rights: Rights) -> Result<OwnedHandle, Error> {
        kernel().handle_duplicate(self.0, rights).map(OwnedHandle)
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // Closing can only fail if the handle is already gone, which
        // ownership rules out; nothing useful to do with the error.
        let _ = kernel().handle_close(self.0);
    }
}
