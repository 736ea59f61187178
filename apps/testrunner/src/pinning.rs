//! Threads pinned to CPUs (`starina::thread::pin_to_cpu`, a spec's
//! `cpu = N`): a pinned thread's work shows up on its CPU, a CPU that
//! does not exist is refused, and a CPU where a component spins forever
//! (the spinner, `cpu = 1` in its spec) still runs the threads pinned
//! to it (preemption on each CPU), while the other CPUs keep serving;
//! and with more CPU-bound threads than CPUs every CPU preempts.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::CpuStats;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::timer::now_ns;
use starina::Error;

use super::expect_err;
use super::request;
use super::wait_message;
use super::Ctx;
use super::Received;
use super::TestResult;

/// About 20 ms of a CPU here (TCG).
const WORK_ROUNDS: u64 = 8_000_000;

fn work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..WORK_ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    core::hint::black_box(x)
}

fn cpus(cx: &Ctx) -> Result<Vec<CpuStats>, String> {
    cx.monitor.cpus().map_err(|e| e.to_string())
}

/// Runs `work` on a new thread pinned to `cpu`; its time from start to
/// end, or why it failed (within `timeout_ms`).
fn pinned_work(cpu: usize, timeout_ms: u64) -> Result<u64, String> {
    let (tx, rx) = Channel::create().map_err(|e| e.to_string())?;
    let start = now_ns();
    starina::thread::spawn(move || {
        let reply = match starina::thread::pin_to_cpu(cpu) {
            Ok(()) => work(cpu as u64).to_le_bytes().to_vec(),
            Err(e) => format!("pin: {e}").into_bytes(),
        };
        let _ = tx.send_data(&reply);
    })
    .map_err(|e| e.to_string())?;
    let mut buf = MessageBuffer::new();
    match wait_message(&rx, &mut buf, timeout_ms) {
        Ok(Received::Data(d)) if d.len() == 8 => Ok(now_ns() - start),
        Ok(Received::Data(d)) => Err(String::from_utf8_lossy(&d).into_owned()),
        Ok(_) => Err("the pinned thread sent something else".into()),
        Err(Error::WouldBlock) => Err(format!(
            "a thread pinned to CPU {cpu} did not finish within {timeout_ms} ms"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A thread pinned to each CPU in turn: its work is busy time of that
/// CPU. Pinning to a CPU past the last is refused, and a thread can
/// let go of its CPU again.
pub fn threads_pin_to_each_cpu(cx: &mut Ctx) -> TestResult {
    let n = cpus(cx)?.len();
    for cpu in 0..n {
        let before = cpus(cx)?;
        let took = pinned_work(cpu, 30_000)?;
        let after = cpus(cx)?;
        let busy = after[cpu].busy_ns - before[cpu].busy_ns;
        check!(
            busy >= took / 2,
            "CPU {cpu} was busy {busy} ns while a thread pinned to it worked {took} ns"
        );
    }
    expect_err(starina::thread::pin_to_cpu(n), Error::InvalidArgument)?;
    expect_err(
        starina::thread::pin_to_cpu(usize::MAX),
        Error::InvalidArgument,
    )?;
    starina::thread::pin_to_cpu(n - 1).map_err(|e| e.to_string())?;
    starina::thread::unpin().map_err(|e| e.to_string())
}

/// Starts a thread running [`super::parallel::spin`] that reports on
/// `done` when it is through.
fn start_spinner(done: &Channel, seed: u64) -> Result<(), String> {
    let tx = done
        .handle()
        .duplicate(starina::abi::Rights::DEFAULT)
        .map(Channel::from_handle)
        .map_err(|e| e.to_string())?;
    starina::thread::spawn(move || {
        let x = super::parallel::spin(seed);
        let _ = tx.send_data(&x.to_le_bytes());
    })
    .map_err(|e| e.to_string())
}

/// One CPU-bound thread per CPU, each alone on its CPU (so no tick ends
/// its slice), then one more: now every CPU has work waiting, and every
/// CPU's slices end (its preemption count grows), not only those of the
/// CPU that queued the extra thread.
pub fn every_busy_cpu_preempts(cx: &mut Ctx) -> TestResult {
    let before = cpus(cx)?;
    let n = before.len();
    let (done_tx, done_rx) = Channel::create().map_err(|e| e.to_string())?;
    for i in 0..n {
        start_spinner(&done_tx, i as u64 + 1)?;
    }
    // Let each settle on a CPU of its own.
    starina::timer::sleep_ms(20).map_err(|e| e.to_string())?;
    start_spinner(&done_tx, 99)?;
    let mut buf = MessageBuffer::new();
    for _ in 0..=n {
        match wait_message(&done_rx, &mut buf, 60_000) {
            Ok(Received::Data(_)) => {}
            other => {
                return Err(format!(
                    "a spinning thread did not finish: {:?}",
                    other.err()
                ))
            }
        }
    }
    let after = cpus(cx)?;
    let grew: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.preemptions - b.preemptions)
        .collect();
    log::info!(
        "preemptions per CPU with {} spinning threads on {n}: {grew:?}",
        n + 1
    );
    check!(
        grew.iter().all(|&g| g > 0),
        "a CPU never preempted its thread: {grew:?}"
    );
    Ok(())
}

/// After `preemption` (the spinner spins forever, on CPU 1 by its spec
/// when there is one): a thread pinned to the spinner's CPU still gets
/// to run and finish, and CPU 1 preempted meanwhile; the other CPUs go
/// on serving (echo answers). On one CPU the spec's CPU does not exist
/// (startup logs it): the spinner shares CPU 0, which must preempt it.
pub fn pinned_thread_runs_beside_a_spinner(cx: &mut Ctx) -> TestResult {
    let before = cpus(cx)?;
    let cpu = before.len().min(2) - 1;
    let took = pinned_work(cpu, 60_000)?;
    for i in 0..10u8 {
        let reply = request(&cx.echo, &mut cx.buf, &[i; 8])?;
        check!(reply == [i; 8], "echo reply {i} wrong beside the spinner");
    }
    let after = cpus(cx)?;
    let (b, a) = (&before[cpu], &after[cpu]);
    check!(
        a.preemptions > b.preemptions,
        "CPU {cpu} never preempted: {b:?} -> {a:?}"
    );
    let load = a.busy_permille_since(b);
    check!(
        load >= 900,
        "CPU {cpu} with a spinner was only {load} permille busy"
    );
    log::info!(
        "pinned beside the spinner on CPU {cpu}: {} ms of work took {} ms",
        20,
        took / 1_000_000
    );
    Ok(())
}
