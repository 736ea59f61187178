//! The serial console, for a component with the spec privilege `console`
//! (a shell): the bytes typed on it, and raw output to it.
//!
//! Input is a byte stream exactly as the terminal sends it (a key is one
//! byte or an escape sequence; Enter is `\r`, Ctrl-C is `0x03`), kept by
//! the kernel in a bounded queue from boot on ([`crate::abi::CONSOLE_INPUT_MAX`]
//! bytes; more are dropped until someone reads). Poll the console for
//! [`Readiness::READABLE`](crate::abi::Readiness) and [`Console::read`]
//! until `WouldBlock`.
//!
//! Output goes to the terminal as is: no newline translation (write
//! `\r\n`), never inside a kernel log line. A log line that comes while
//! the console's output stopped mid-line starts on a line of its own.
//!
//! Every holder reads the same queue: a byte goes to whichever holder reads
//! it first, and every holder's poll is woken. Give the privilege to one
//! reader.

use crate::abi::Error;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

#[derive(Debug)]
pub struct Console(OwnedHandle);

impl Console {
    pub fn from_handle(h: OwnedHandle) -> Console {
        Console(h)
    }

    /// The handle, to watch with a [`crate::poll::Poll`] (READABLE).
    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    /// A second handle to the console (for a thread that writes to it).
    pub fn duplicate(&self) -> Result<Console, Error> {
        self.0
            .duplicate(crate::abi::Rights::DEFAULT)
            .map(Console::from_handle)
    }

    /// Takes the bytes typed so far, up to `buf.len()`. Never blocks:
    /// [`Error::WouldBlock`] when there are none.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        kernel().console_read(self.0.id(), buf)
    }

    /// Writes all of `bytes` to the terminal, as is.
    pub fn write(&self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let n = kernel().console_write(self.0.id(), bytes)?;
            if n == 0 {
                return Err(Error::NotSupported);
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Console::write(self, s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Readiness;
    use crate::fake_kernel::FakeKernel;
    use crate::poll::Poll;

    fn console(fake: &FakeKernel) -> Console {
        Console::from_handle(OwnedHandle::from_raw(fake.add_console()))
    }

    #[test]
    fn reads_what_was_typed_then_would_block() {
        let fake = FakeKernel::install();
        let c = console(fake);
        let mut buf = [0u8; 4];
        assert_eq!(c.read(&mut buf), Err(Error::WouldBlock));
        fake.console_type(c.id(), b"ls -l\r");
        assert_eq!(c.read(&mut buf), Ok(4));
        assert_eq!(&buf, b"ls -");
        assert_eq!(c.read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"l\r");
        assert_eq!(c.read(&mut buf), Err(Error::WouldBlock));
        assert_eq!(c.read(&mut []), Err(Error::InvalidArgument));
    }

    #[test]
    fn writes_everything_in_pieces() {
        let fake = FakeKernel::install();
        let mut c = console(fake);
        let long = alloc::vec![b'x'; crate::abi::CONSOLE_WRITE_MAX * 2 + 5];
        c.write(&long).unwrap();
        core::fmt::Write::write_fmt(&mut c, format_args!("{}> ", 42)).unwrap();
        let out = fake.console_output(c.id());
        assert_eq!(out.len(), long.len() + 4);
        assert!(out.ends_with(b"x42> "));
        // Taken: the next call sees only what came since.
        assert!(fake.console_output(c.id()).is_empty());
    }

    #[test]
    fn poll_reports_typed_input() {
        let fake = FakeKernel::install();
        let c = console(fake);
        let poll = Poll::create().unwrap();
        poll.add(c.id(), Readiness::READABLE).unwrap();
        assert_eq!(poll.wait().err(), Some(Error::PollEmpty));
        fake.console_type(c.id(), b"\x03");
        assert_eq!(poll.wait(), Ok((c.id(), Readiness::READABLE)));
    }
}
