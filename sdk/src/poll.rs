//! Poll: wait for any of a set of objects to become ready.

use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

#[derive(Debug)]
pub struct Poll(OwnedHandle);

impl Poll {
    pub fn create() -> Result<Poll, Error> {
        kernel()
            .poll_create()
            .map(|h| Poll(OwnedHandle::from_raw(h)))
    }

    /// A poll on a handle this component owns (e.g. one it received).
    pub fn from_handle(handle: OwnedHandle) -> Poll {
        Poll(handle)
    }

    pub fn add(&self, target: HandleId, interests: Readiness) -> Result<(), Error> {
        kernel().poll_add(self.0.id(), target, interests)
    }

    pub fn remove(&self, target: HandleId) -> Result<(), Error> {
        kernel().poll_remove(self.0.id(), target)
    }

    /// Blocks until a watched object is ready.
    pub fn wait(&self) -> Result<(HandleId, Readiness), Error> {
        kernel().poll_wait(self.0.id())
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }
}
