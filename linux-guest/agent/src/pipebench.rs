//! A pipe ping-pong between two processes, for `make bench`
//! (`scripts/bench-linux`, through `apps/linux_bench`).
//!
//! `starina-guest-agent --pipe-bench N` starts a copy of itself as
//! `--pipe-echo` with its stdin and stdout on pipes, then does N round trips
//! of one byte (write to the child, read the byte it writes back), timed with
//! `Instant` (CLOCK_MONOTONIC). It prints one line:
//!
//!     pipe-bench: rounds=N total_ns=T roundtrip_ns=T/N
//!
//! The guest's clock may be coarse (the jiffies clocksource: 4 ms under
//! QEMU's emulation), so N should make the total long. No `unsafe`: std's
//! pipes and process handling are enough.

use std::io;
use std::io::Read;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Instant;

/// Round trips before the timed ones (page faults, scheduler warm-up).
const WARM_UP: u64 = 100;

/// The parent side: `--pipe-bench N`.
pub fn run(rounds: u64) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--pipe-echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let (Some(mut to), Some(mut from)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("no pipes to the child"));
    };
    let mut byte = [0u8; 1];
    let mut round = |i: u64| -> io::Result<()> {
        to.write_all(&[i as u8])?;
        from.read_exact(&mut byte)?;
        if byte[0] != i as u8 {
            return Err(io::Error::other("the child echoed the wrong byte"));
        }
        Ok(())
    };
    for i in 0..WARM_UP {
        round(i)?;
    }
    let start = Instant::now();
    for i in 0..rounds {
        round(i)?;
    }
    let total = start.elapsed().as_nanos();
    drop(to);
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "the echo child ended with {status}"
        )));
    }
    let per = total / u128::from(rounds.max(1));
    println!("pipe-bench: rounds={rounds} total_ns={total} roundtrip_ns={per}");
    Ok(())
}

/// The child side: `--pipe-echo` copies stdin to stdout one byte at a
/// time until end of file.
pub fn echo() -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                output.write_all(&byte)?;
                output.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
