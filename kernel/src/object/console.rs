//! The console object: what the `console` privilege hands a component (a
//! shell). The serial port's receive interrupt moves typed bytes into one
//! bounded input queue, kept from boot on; a console handle is readable
//! through poll while the queue holds bytes, and `console_read` takes them.
//! Past [`CONSOLE_INPUT_MAX`] bytes, new ones are dropped and counted.
//!
//! There is one queue: every console handle reads from it (a byte goes to
//! whichever holder reads first) and every holder's poll is woken.
//! Output (`console_write`) goes through `klog::write_raw`, serialized with
//! the log.

use alloc::sync::Arc;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::Readiness;
use starina::abi::CONSOLE_INPUT_MAX;

use super::Listeners;
use super::Pollable;
use crate::sync::SpinLock;

/// The typed bytes not yet read, oldest first, in a ring.
pub struct InputQueue {
    buf: [u8; CONSOLE_INPUT_MAX],
    head: usize,
    len: usize,
}

impl InputQueue {
    pub const fn new() -> InputQueue {
        InputQueue {
            buf: [0; CONSOLE_INPUT_MAX],
            head: 0,
            len: 0,
        }
    }

    /// Queues `b`; false (nothing queued) when full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.len == CONSOLE_INPUT_MAX {
            return false;
        }
        self.buf[(self.head + self.len) % CONSOLE_INPUT_MAX] = b;
        self.len += 1;
        true
    }

    /// Moves the oldest bytes into `out`; how many.
    pub fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for slot in &mut out[..n] {
            *slot = self.buf[self.head];
            self.head = (self.head + 1) % CONSOLE_INPUT_MAX;
        }
        self.len -= n;
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for InputQueue {
    fn default() -> Self {
        Self::new()
    }
}

static INPUT: SpinLock<InputQueue> = SpinLock::new(InputQueue::new());
/// Polls watching any console handle.
static LISTENERS: Listeners = Listeners::new();
/// Bytes dropped because the queue was full, since boot.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// How many of those a reader was already told about (logged).
static DROPPED_REPORTED: AtomicU64 = AtomicU64::new(0);

/// One holder's handle to the console (all of them share the queue).
pub struct Console {
    _private: (),
}

impl Console {
    pub fn new() -> Arc<Console> {
        Arc::new(Console { _private: () })
    }

    /// Takes typed bytes into `out` (not empty): `WouldBlock` if none.
    pub fn read(&self, out: &mut [u8]) -> Result<usize, Error> {
        if out.is_empty() {
            return Err(Error::InvalidArgument);
        }
        let n = INPUT.lock().pop_into(out);
        report_dropped();
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        Ok(n)
    }
}

/// Logs (once per loss) how many typed bytes the full queue dropped.
fn report_dropped() {
    let dropped = DROPPED.load(Ordering::Relaxed);
    let reported = DROPPED_REPORTED.swap(dropped, Ordering::Relaxed);
    if dropped > reported {
        log::warn!(
            "console: {} typed bytes dropped (input queue full: {} bytes)",
            dropped - reported,
            CONSOLE_INPUT_MAX
        );
    }
}

/// Queues bytes that arrived (the receive interrupt's work, apart from the
/// port itself) and wakes the readers. Returns how many were queued.
pub fn received(bytes: impl Iterator<Item = u8>) -> usize {
    let (mut queued, mut dropped) = (0, 0);
    {
        let mut input = INPUT.lock();
        for b in bytes {
            if input.push(b) {
                queued += 1;
            } else {
                dropped += 1;
            }
        }
    }
    if dropped > 0 {
        DROPPED.fetch_add(dropped, Ordering::Relaxed);
    }
    if queued > 0 {
        LISTENERS.notify();
    }
    queued
}

/// The serial port's interrupt: drain its receive FIFO into the queue.
#[cfg(not(test))]
pub fn interrupt() {
    // Bounded: under a flood the line stays up and the interrupt comes back.
    received(core::iter::from_fn(crate::arch::serial::read_byte).take(1024));
}

/// Routes the serial port's interrupt and turns on its receive interrupt
/// (after the I/O APICs are set up). Without it, the console has no input.
#[cfg(not(test))]
pub fn start() {
    use crate::arch::ioapic;
    use crate::arch::serial;
    if !ioapic::route(serial::GSI, false) {
        log::warn!(
            "console: no I/O APIC line for the serial port (GSI {}): no console input",
            serial::GSI
        );
        return;
    }
    serial::enable_receive_interrupt();
    ioapic::unmask(serial::GSI);
}

impl Pollable for Console {
    fn readiness(&self) -> Readiness {
        if INPUT.lock().is_empty() {
            Readiness::empty()
        } else {
            Readiness::READABLE
        }
    }

    fn listeners(&self) -> &Listeners {
        &LISTENERS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_across_the_wrap_and_refuses_when_full() {
        let mut q = InputQueue::new();
        let mut out = [0u8; CONSOLE_INPUT_MAX];
        for i in 0..CONSOLE_INPUT_MAX - 3 {
            assert!(q.push(i as u8));
        }
        assert_eq!(
            q.pop_into(&mut out[..CONSOLE_INPUT_MAX - 5]),
            CONSOLE_INPUT_MAX - 5
        );
        // Wraps around the end.
        for b in [1, 2, 3, 4, 5, 6] {
            assert!(q.push(b));
        }
        assert_eq!(q.pop_into(&mut out), 8);
        assert_eq!(
            out[..8],
            [
                (CONSOLE_INPUT_MAX - 5) as u8,
                (CONSOLE_INPUT_MAX - 4) as u8,
                1,
                2,
                3,
                4,
                5,
                6
            ]
        );
        assert!(q.is_empty());
        for _ in 0..CONSOLE_INPUT_MAX {
            assert!(q.push(b'x'));
        }
        assert!(!q.push(b'y'));
        assert_eq!(q.pop_into(&mut out), CONSOLE_INPUT_MAX);
        assert!(out.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn typed_bytes_reach_every_handle_once_and_overflow_is_counted() {
        let (a, b) = (Console::new(), Console::new());
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut []), Err(Error::InvalidArgument));
        // Drain what other tests left (the queue is global).
        while a.read(&mut buf).is_ok() {}
        assert_eq!(a.read(&mut buf), Err(Error::WouldBlock));
        assert!(a.readiness().is_empty());
        assert_eq!(received(b"hi\r".iter().copied()), 3);
        assert_eq!(a.readiness(), Readiness::READABLE);
        assert_eq!(b.readiness(), Readiness::READABLE);
        assert_eq!(b.read(&mut buf[..2]), Ok(2));
        assert_eq!(a.read(&mut buf), Ok(1));
        assert_eq!(buf[0], b'\r');
        assert_eq!(b.read(&mut buf), Err(Error::WouldBlock));

        let before = DROPPED.load(Ordering::Relaxed);
        let flood = core::iter::repeat(b'z').take(CONSOLE_INPUT_MAX + 10);
        assert_eq!(received(flood), CONSOLE_INPUT_MAX);
        assert_eq!(DROPPED.load(Ordering::Relaxed) - before, 10);
        let mut all = [0u8; CONSOLE_INPUT_MAX];
        assert_eq!(a.read(&mut all), Ok(CONSOLE_INPUT_MAX));
    }
}
