//! One-shot timers, readable through poll when they expire.

use crate::abi::Error;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

#[derive(Debug)]
pub struct Timer(OwnedHandle);

impl Timer {
    pub fn create() -> Result<Timer, Error> {
        kernel()
            .timer_create()
            .map(|h| Timer(OwnedHandle::from_raw(h)))
    }

    /// Fires once, `after_ns` from now (replacing an earlier deadline).
    pub fn set(&self, after_ns: u64) -> Result<(), Error> {
        kernel().timer_set(self.0.id(), after_ns)
    }

    pub fn set_ms(&self, after_ms: u64) -> Result<(), Error> {
        self.set(after_ms.saturating_mul(1_000_000))
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }
}

/// Arms the timer with handle `timer` (e.g. one a main loop holds) to
/// fire once, `after_ns` from now. `WrongObjectType` if `timer` is not a
/// timer.
pub fn set_by_id(timer: HandleId, after_ns: u64) -> Result<(), Error> {
    kernel().timer_set(timer, after_ns)
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    kernel().time_now()
}

/// The wall clock: seconds since 1970-01-01 UTC.
pub fn unix_seconds() -> u64 {
    kernel().time_unix() / 1_000_000_000
}

/// Blocks the calling thread for `ms` milliseconds (other threads run
/// meanwhile). For sequential code; a main loop arms a timer instead.
pub fn sleep_ms(ms: u64) -> Result<(), Error> {
    let poll = crate::poll::Poll::create()?;
    let timer = Timer::create()?;
    poll.add(timer.id(), crate::abi::Readiness::READABLE)?;
    timer.set_ms(ms)?;
    poll.wait().map(drop)
}
