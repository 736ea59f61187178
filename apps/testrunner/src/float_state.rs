//! SSE registers survive interrupts and thread switches. Every `f64`
//! operation lives in XMM registers, which the kernel's interrupt entry
//! saves to the running thread's area and restores on the way out (and a
//! switch swaps areas). Two threads sum the same series for several time
//! slices each, so timer interrupts strike inside the loops and switch
//! between them; each must get exactly the value computed at compile time.
//! Under the NMI test this also covers an NMI striking inside another
//! interrupt's handler: before NMIs had a save area of their own, the
//! handler's registers could come back in the thread's place.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;

use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::timer::now_ns;

use super::Ctx;
use super::TestResult;

/// Terms per pass, and how long the passes go on (several slices).
const TERMS: u32 = 20_000;
const RUN_NS: u64 = 100_000_000;

/// The sum of 1/k² + k/3 for k in 1..=terms, in a fixed order: IEEE
/// arithmetic gives the same bits at compile time and at run time.
const fn series(terms: u32) -> f64 {
    let mut sum = 0.0;
    let mut k = 1;
    while k <= terms {
        let x = k as f64;
        sum += 1.0 / (x * x) + x / 3.0;
        k += 1;
    }
    sum
}

const EXPECTED: f64 = series(TERMS);

/// Passes until `RUN_NS` is over: how many, or the first wrong sum.
fn passes() -> Result<u32, f64> {
    let start = now_ns();
    let mut n = 0;
    while now_ns() - start < RUN_NS {
        let sum = series(core::hint::black_box(TERMS));
        if sum.to_bits() != EXPECTED.to_bits() {
            return Err(sum);
        }
        n += 1;
    }
    Ok(n)
}

pub fn sse_state_survives_interrupts_and_switches(_cx: &mut Ctx) -> TestResult {
    let (done_tx, done_rx) = Channel::create().map_err(|e| e.to_string())?;
    starina::thread::spawn(move || {
        let report = match passes() {
            Ok(n) => format!("ok {n}"),
            Err(sum) => format!("the other thread's sum came out {sum:e}"),
        };
        let _ = done_tx.send_data(report.as_bytes());
    })
    .map_err(|e| format!("spawn: {e}"))?;
    let mine = passes().map_err(|sum| format!("a sum came out {sum:e}, not {EXPECTED:e}"))?;
    let mut buf = MessageBuffer::new();
    let theirs = match super::wait_message(&done_rx, &mut buf, 30_000) {
        Ok(super::Received::Data(d)) => String::from_utf8_lossy(&d).into_owned(),
        Ok(_) => return Err("the other thread sent something else".to_string()),
        Err(e) => return Err(format!("the other thread did not report: {e}")),
    };
    let theirs: u32 = theirs
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| theirs.to_string())?;
    check!(
        mine > 0 && theirs > 0,
        "a thread made no pass: {mine} and {theirs}"
    );
    log::info!("sse state: {mine} and {theirs} passes of {TERMS} terms, every sum exact");
    Ok(())
}
