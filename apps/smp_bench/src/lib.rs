//! The SMP benchmarks (profiles `bench_smp`, `bench_smp_icount`; `make
//! bench` boots them on one CPU and on two). Logs `bench-raw: NAME VALUE`
//! lines, then powers off:
//!
//! - `ipc_roundtrip_0b_same_cpu` and, with two CPUs or more,
//!   `ipc_roundtrip_0b_cross_cpu`: guest ns (under `-icount`, guest
//!   instructions) per 0-byte round trip between two threads of this
//!   component pinned to one CPU, and to CPUs 0 and 1;
//! - `ipc_throughput_msgs_per_s`: a stream of 64-byte messages from one
//!   thread to another (pipelined: the sender goes on while the queue has
//!   room), on CPUs 0 and 1 when there are two;
//! - `smp_hash_ns` (unless `hash_mib` is 0): the wall time (guest ns) of
//!   two `cpuhash hash_mib` commands started together: two components
//!   doing CPU-bound work, side by side when there are two CPUs.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::markers::BENCH_RAW;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::command::Input;
use starina::command::Stdio;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::Error;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const STREAM_MESSAGE: usize = 64;

/// Waits for the next message on `poll` (its one channel) into `buf`.
fn next_message(poll: &Poll, buf: &mut MessageBuffer) -> Result<RecvInfo, Error> {
    loop {
        let event = poll.wait_recv(buf)?;
        match event.received {
            Some(Ok(info)) => return Ok(info),
            Some(Err(Error::WouldBlock)) | None
                if !event.ready.contains(Readiness::PEER_CLOSED) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(Error::PeerClosed),
        }
    }
}

fn watch(ch: &Channel) -> Result<Poll, Error> {
    let poll = Poll::create()?;
    poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
    Ok(poll)
}

/// A thread on `cpu` that answers every message on `ch` with the same
/// bytes until the peer closes.
fn spawn_echo(ch: Channel, cpu: usize) -> Result<(), Error> {
    starina::thread::spawn(move || {
        let run = || -> Result<(), Error> {
            starina::thread::pin_to_cpu(cpu)?;
            let poll = watch(&ch)?;
            let mut buf = MessageBuffer::new();
            let mut len = next_message(&poll, &mut buf)?.data_len;
            loop {
                let event = poll.send_received_wait_recv(&ch, 0..len, &mut buf)??;
                len = match event.received {
                    Some(Ok(info)) => info.data_len,
                    _ => next_message(&poll, &mut buf)?.data_len,
                };
            }
        };
        if let Err(e) = run() {
            if e != Error::PeerClosed {
                log::error!("echo thread on CPU {cpu}: {e}");
            }
        }
    })
}

/// Guest ns per 0-byte round trip, this thread on `here`, the echo
/// thread on `there`.
fn round_trips(here: usize, there: usize, rounds: u64) -> Result<u64, Error> {
    starina::thread::pin_to_cpu(here)?;
    let (ch, theirs) = Channel::create()?;
    spawn_echo(theirs, there)?;
    let poll = watch(&ch)?;
    let mut buf = MessageBuffer::new();
    let mut start = 0;
    // The first tenth warms up.
    for i in 0..rounds + rounds / 10 {
        if i == rounds / 10 {
            start = now_ns();
        }
        let event = poll.send_data_wait_recv(&ch, &[], &mut buf)??;
        if !matches!(event.received, Some(Ok(_))) {
            next_message(&poll, &mut buf)?;
        }
    }
    let ns = (now_ns() - start) / rounds.max(1);
    starina::thread::unpin()?;
    Ok(ns)
}

/// Messages per second of a stream of `count` messages from a thread on
/// CPU 0 to one on `there`.
fn stream(count: u64, there: usize) -> Result<u64, Error> {
    let (tx, rx) = Channel::create()?;
    let (done_tx, done_rx) = Channel::create()?;
    starina::thread::spawn(move || {
        let run = || -> Result<u64, Error> {
            starina::thread::pin_to_cpu(there)?;
            let poll = watch(&rx)?;
            let mut buf = MessageBuffer::new();
            for seq in 0..count {
                let info = next_message(&poll, &mut buf)?;
                let data = buf.data(&info);
                if data.len() != STREAM_MESSAGE || data[..8] != seq.to_le_bytes() {
                    return Err(Error::MalformedMessage);
                }
            }
            Ok(count)
        };
        let report = match run() {
            Ok(n) => n.to_le_bytes().to_vec(),
            Err(e) => format!("{e}").into_bytes(),
        };
        let _ = done_tx.send_data(&report);
    })?;
    starina::thread::pin_to_cpu(0)?;
    let writable = Poll::create()?;
    writable.add(tx.id(), Readiness::WRITABLE | Readiness::PEER_CLOSED)?;
    let mut msg = [0u8; STREAM_MESSAGE];
    let start = now_ns();
    for seq in 0..count {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        while let Err(e) = tx.send_data(&msg) {
            match e {
                Error::QueueFull => drop(writable.wait()?),
                e => return Err(e),
            }
        }
    }
    let mut buf = MessageBuffer::new();
    let info = next_message(&watch(&done_rx)?, &mut buf)?;
    let elapsed = now_ns() - start;
    starina::thread::unpin()?;
    if info.data_len != 8 {
        log::error!("stream: {}", String::from_utf8_lossy(buf.data(&info)));
        return Err(Error::MalformedMessage);
    }
    Ok(count * 1_000_000_000 / elapsed.max(1))
}

/// Guest ns for two `cpuhash mib` commands started together.
fn two_hashes(env: &Env, mib: u64) -> Result<u64, String> {
    let start = now_ns();
    let mut running = Vec::new();
    for _ in 0..2 {
        let (stdio, peer) = Stdio::pipes().map_err(|e| e.to_string())?;
        let job = env
            .spawn
            .spawn("cpuhash", &[mib.to_string()], &[], stdio)
            .map_err(|e| format!("spawn cpuhash: {e}"))?;
        drop(peer.stdin);
        running.push((job, peer.stdout));
    }
    let mut hashes = Vec::new();
    for (job, stdout) in running {
        let out = Input::new(stdout)
            .read_to_end(4096)
            .map_err(|e| e.to_string())?;
        let status = job.wait().map_err(|e| e.to_string())?;
        if status != 0 {
            return Err(format!("cpuhash ended with {status}"));
        }
        hashes.push(String::from_utf8_lossy(&out).into_owned());
    }
    let elapsed = now_ns() - start;
    if hashes[0] != hashes[1] || !hashes[0].starts_with("cpuhash: ") {
        return Err(format!("the two hashes differ: {hashes:?}"));
    }
    Ok(elapsed)
}

fn report(name: &str, value: Result<u64, String>) -> bool {
    match value {
        Ok(v) => {
            log::info!("{BENCH_RAW} {name} {v}");
            true
        }
        Err(e) => {
            log::error!("{name} failed: {e}");
            false
        }
    }
}

pub fn main(env: Env) {
    let cpus = env.monitor.cpus().map(|c| c.len()).unwrap_or(1);
    let rounds = env.config.rounds.max(1) as u64;
    let messages = env.config.stream_messages.max(1) as u64;
    let other = if cpus > 1 { 1 } else { 0 };
    let text = |r: Result<u64, Error>| r.map_err(|e| e.to_string());
    let mut ok = report("ipc_roundtrip_0b_same_cpu", text(round_trips(0, 0, rounds)));
    if cpus > 1 {
        ok &= report(
            "ipc_roundtrip_0b_cross_cpu",
            text(round_trips(0, 1, rounds)),
        );
    }
    ok &= report("ipc_throughput_msgs_per_s", text(stream(messages, other)));
    if env.config.hash_mib > 0 {
        ok &= report("smp_hash_ns", two_hashes(&env, env.config.hash_mib as u64));
    }
    log::info!("smp_bench: {cpus} CPUs");
    let err = env.shutdown.power_off(if ok { 0 } else { 1 });
    log::error!("power off failed: {err}");
}
