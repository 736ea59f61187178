//! Echoes what is typed on the serial console (privilege `console`): each
//! read is logged as `got N bytes: <escaped>`, each line (ended by Enter,
//! `\r`; Ctrl-C discards the line) as `line: <text>`, and the bytes go back to the terminal raw
//! (Enter as `\r\n`, so the cursor moves to the next line).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use starina::abi::Readiness;
use starina::console::Console;
use starina::poll::Poll;
use starina::Error;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// The longest line kept; longer lines are logged in pieces.
const LINE_MAX: usize = 200;

pub fn main(env: Env) -> Result<(), Error> {
    let console = env.console;
    let poll = Poll::create()?;
    poll.add(console.id(), Readiness::READABLE)?;
    console.write(b"console_echo> ")?;
    log::info!("ready: type a line");
    let mut line = alloc::vec::Vec::with_capacity(LINE_MAX);
    let mut buf = [0u8; 64];
    loop {
        poll.wait()?;
        loop {
            let n = match console.read(&mut buf) {
                Ok(n) => n,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(e),
            };
            let got = &buf[..n];
            log::info!("got {} bytes: {}", n, got.escape_ascii());
            echo(&console, got)?;
            for &b in got {
                match b {
                    b'\r' => {
                        log::info!("line: {}", line.escape_ascii());
                        line.clear();
                    }
                    // Ctrl-C discards the line, as a shell's would.
                    0x03 => line.clear(),
                    _ if line.len() == LINE_MAX => {
                        log::info!("line: {}", line.escape_ascii());
                        line.clear();
                        line.push(b);
                    }
                    _ => line.push(b),
                }
            }
        }
    }
}

/// The bytes back to the terminal, Enter as a new line.
fn echo(console: &Console, bytes: &[u8]) -> Result<(), Error> {
    for chunk in bytes.split_inclusive(|&b| b == b'\r') {
        console.write(chunk)?;
        if chunk.ends_with(b"\r") {
            console.write(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use starina::fake_kernel::FakeKernel;
    use starina::handle::OwnedHandle;

    use super::*;

    #[test]
    fn echo_turns_enter_into_a_new_line() {
        let fake = FakeKernel::install();
        let console = Console::from_handle(OwnedHandle::from_raw(fake.add_console()));
        echo(&console, b"ls\r\x03pwd\r").unwrap();
        assert_eq!(fake.console_output(console.id()), b"ls\r\n\x03pwd\r\n");
        echo(&console, b"no enter").unwrap();
        assert_eq!(fake.console_output(console.id()), b"no enter");
    }
}
