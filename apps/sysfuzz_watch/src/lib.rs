//! Watches the system-call fuzzer (`sysfuzz`) and checks that the kernel
//! gives back everything the fuzzer took.
//!
//! The leak check compares two moments that differ only by the fuzzing:
//!
//! 0. the first sysfuzz instance is a short warm-up run (`go`, `done`):
//!    it grows what the kernel grows once and keeps at its largest (the
//!    scheduler's run queue and the stack allocator's free list: measured,
//!    96 bytes, the same after 300,000 calls as after 3,000,000, so not a
//!    leak; the heap's pages are counted as kept pages anyway);
//! 1. the second instance has started and reports `ready`: the watch
//!    records the kernel's memory (baseline) and answers `go`;
//! 2. that instance fuzzes, reports `done` and returns; startup tears it
//!    down (its handles, threads and everything they held) and, as its spec
//!    says, starts it once more; the new instance reports `ready` and waits
//!    exactly as the second one did: the watch records the memory again.
//!
//! Both moments have one sysfuzz process waiting in the same place, so a
//! difference is what the run and its teardown did not give back. Heap
//! bytes must match exactly. Free pages are compared together with the
//! pages the kernel keeps as caches that never shrink (the heap's pages for
//! small blocks, and page tables for thread stacks and device mappings):
//! `pages_free + pages_kept` must match exactly.
//!
//! Then it checks that the rest of the system still answers (a round trip
//! to echo) and powers off with 0 if both hold, 1 otherwise.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

use alloc::format;
use alloc::string::String;

use starina::abi::MemoryStats;
use starina::channel::MessageBuffer;
use starina::system::Monitor;
use starina::timer::now_ns;
use starina::Channel;
use starina::Error;
use starina::Message;

/// The verdict line the host test looks for (after the component's name).
const VERDICT: &str = "leak check";

/// What one wait ended with.
enum Got {
    /// A data message (its first bytes).
    Data([u8; 16], usize),
    /// A new connection (`Open` with a channel).
    Connection(Channel),
    PeerClosed,
    TimedOut,
}

/// Waits up to `timeout_ms` for a message on `ch`.
fn wait(ch: &Channel, buf: &mut MessageBuffer, timeout_ms: u64) -> Result<Got, Error> {
    let deadline = now_ns().saturating_add(timeout_ms.saturating_mul(1_000_000));
    loop {
        let left_ms = deadline.saturating_sub(now_ns()) / 1_000_000;
        match ch.recv_within(buf, left_ms) {
            Ok(None) => return Ok(Got::TimedOut),
            Ok(Some(Message::Data(d))) => {
                let mut head = [0u8; 16];
                let n = d.len().min(head.len());
                head[..n].copy_from_slice(&d[..n]);
                return Ok(Got::Data(head, n));
            }
            Ok(Some(Message::Open {
                handle: Some(h), ..
            })) => return Ok(Got::Connection(Channel::from_handle(h))),
            // Only the protocol's words count (the fuzzer never copies its
            // end of this channel, but the watch does not rely on it).
            Ok(Some(_)) | Err(Error::MalformedMessage) => {}
            Err(Error::PeerClosed) => return Ok(Got::PeerClosed),
            Err(e) => return Err(e),
        }
    }
}

/// Waits for the next sysfuzz instance to connect and say `ready`.
fn next_instance(env: &Env, buf: &mut MessageBuffer) -> Result<Channel, String> {
    let conn = match wait(&env.supervisor, buf, 60_000) {
        Ok(Got::Connection(c)) => c,
        Ok(_) => return Err("no sysfuzz connection within 60 s".into()),
        Err(e) => return Err(format!("waiting for sysfuzz to connect: {e}")),
    };
    match wait(&conn, buf, 60_000) {
        Ok(Got::Data(head, n)) if &head[..n] == b"ready" => Ok(conn),
        Ok(_) => Err("sysfuzz connected but did not say ready within 60 s".into()),
        Err(e) => Err(format!("waiting for sysfuzz to be ready: {e}")),
    }
}

/// Lets the first instance run and waits until it reports `done`.
fn run_fuzzer(env: &Env, conn: &Channel, buf: &mut MessageBuffer) -> Result<(), String> {
    conn.send_data(b"go")
        .map_err(|e| format!("cannot start sysfuzz: {e}"))?;
    let timeout_ms = (env.config.run_timeout_s.max(1) as u64) * 1000;
    let deadline = now_ns() + timeout_ms * 1_000_000;
    loop {
        let left_ms = deadline.saturating_sub(now_ns()) / 1_000_000;
        match wait(conn, buf, left_ms.max(1)) {
            Ok(Got::Data(head, n)) if &head[..n] == b"done" => return Ok(()),
            // Not the protocol: ignored, as in `wait`.
            Ok(Got::Data(..)) | Ok(Got::Connection(_)) => {}
            Ok(Got::TimedOut) => {
                return Err(format!(
                    "sysfuzz did not finish within {} s: hung",
                    env.config.run_timeout_s
                ))
            }
            Ok(Got::PeerClosed) => return Err("sysfuzz ended without reporting done".into()),
            Err(e) => return Err(format!("waiting for sysfuzz: {e}")),
        }
    }
}

fn pages_accounted(m: &MemoryStats) -> usize {
    m.pages_free + m.pages_kept
}

/// Compares the two idle moments; logs the verdict line.
fn compare(before: &MemoryStats, after: &MemoryStats) -> bool {
    let heap_ok = before.heap_in_use == after.heap_in_use;
    let pages_ok = pages_accounted(before) == pages_accounted(after);
    let verdict = if heap_ok && pages_ok {
        "passed"
    } else {
        "FAILED"
    };
    let line = format!(
        "{VERDICT} {verdict}: heap {} -> {} bytes, free pages {} -> {}, kept pages {} -> {} (free + kept {} -> {})",
        before.heap_in_use,
        after.heap_in_use,
        before.pages_free,
        after.pages_free,
        before.pages_kept,
        after.pages_kept,
        pages_accounted(before),
        pages_accounted(after),
    );
    if heap_ok && pages_ok {
        log::info!("{line}");
    } else {
        log::error!("{line}");
    }
    heap_ok && pages_ok
}

/// One echo round trip: the rest of the system still answers.
fn echo_answers(env: &Env, buf: &mut MessageBuffer) -> bool {
    if let Err(e) = env.echo.send_data(b"after the fuzzer") {
        log::error!("echo check: send failed: {e}");
        return false;
    }
    match wait(&env.echo, buf, 10_000) {
        Ok(Got::Data(head, n)) if &head[..n] == b"after the fuzzer" => {
            log::info!("echo answers after the fuzzer");
            true
        }
        _ => {
            log::error!("echo check: no correct reply within 10 s");
            false
        }
    }
}

/// The leak check's verdict, and the second instance's channel (kept open:
/// closing it would end that instance, and startup would restart it).
fn check(env: &Env, monitor: &Monitor, buf: &mut MessageBuffer) -> Result<(bool, Channel), String> {
    let warm_up = next_instance(env, buf)?;
    run_fuzzer(env, &warm_up, buf)?;
    drop(warm_up);
    let first = next_instance(env, buf)?;
    let before = monitor.memory().map_err(|e| format!("memory stats: {e}"))?;
    run_fuzzer(env, &first, buf)?;
    drop(first);
    let twin = next_instance(env, buf)?;
    let after = monitor.memory().map_err(|e| format!("memory stats: {e}"))?;
    Ok((compare(&before, &after), twin))
}

pub fn main(env: Env) {
    let mut buf = MessageBuffer::new();
    let (passed, _twin) = match check(&env, &env.monitor, &mut buf) {
        Ok((no_leak, twin)) => (echo_answers(&env, &mut buf) && no_leak, Some(twin)),
        Err(why) => {
            log::error!("{VERDICT} FAILED: {why}");
            (false, None)
        }
    };
    log::info!("powering off with {}", if passed { 0 } else { 1 });
    env.shutdown.power_off(if passed { 0 } else { 1 });
}
