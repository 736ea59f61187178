//! Interrupts that strike inside a backward copy. An overlapping
//! `copy_within` towards higher addresses is the kernel's `memmove` going
//! backwards: `std; rep movsb; cld`. A timer interrupt in the middle finds
//! the direction flag set; the kernel's handler must clear it before its
//! own copies (a thread switch copies register frames), or they run
//! backwards and write below their destination. Before the entry path did
//! (`cld` in `interrupt_common`), that corrupted a thread's kernel object
//! about once in 130 Linux boots and panicked the kernel.
//!
//! Another thread stays runnable meanwhile, so the interrupts switch
//! threads; the copies must come out right and the system go on.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;

use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::timer::now_ns;
use starina::Error;

use super::Ctx;
use super::TestResult;

/// Bytes moved by each copy, and how long the copies go on (several
/// time slices, so the timer switches threads inside them).
const LEN: usize = 1 << 20;
const RUN_NS: u64 = 100_000_000;

pub fn interrupts_during_a_backward_copy(_cx: &mut Ctx) -> TestResult {
    let (stop, stopped) = Channel::create().map_err(|e| e.to_string())?;
    // Runnable all along: yields until told to stop (or the channel goes).
    starina::thread::spawn(move || {
        let mut buf = MessageBuffer::new();
        while let Err(Error::WouldBlock) = stopped.try_recv(&mut buf) {
            starina::thread::yield_now();
        }
    })
    .map_err(|e| format!("spawn: {e}"))?;
    let mut buf = vec![0u8; LEN + 1];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let start = now_ns();
    let mut shifts = 0usize;
    while now_ns() - start < RUN_NS {
        // Each byte moves one place up: the pattern shifts by one.
        buf.copy_within(0..LEN, 1);
        shifts += 1;
    }
    drop(stop);
    // Byte i now holds what byte i - shifts held (the bytes below `shifts`
    // repeat byte 0, which each copy leaves in place).
    for (i, &b) in buf.iter().enumerate() {
        let want = (i.saturating_sub(shifts) % 251) as u8;
        if b != want {
            return Err(format!(
                "after {shifts} backward copies byte {i} is {b}, not {want}"
            ));
        }
    }
    log::info!("backward copies: {shifts} of {LEN} bytes with a thread switching meanwhile");
    Ok(())
}
