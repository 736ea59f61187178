//! Benchmarks (profile `bench`): channel round trips to the echo server,
//! for a 0-byte and a 1 KiB message. Logs `bench-raw: <name> <value>` with
//! guest nanoseconds per round trip (under `-icount shift=0`, guest
//! instructions), then powers off.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::Error;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// `rounds` round trips of `size` bytes; returns ns per round trip.
fn round_trips(echo: &Channel, poll: &Poll, size: usize, rounds: u64) -> Result<u64, Error> {
    let msg = vec![0x5a; size];
    let mut buf = MessageBuffer::new();
    let start = now_ns();
    for _ in 0..rounds {
        // Send and wait in one call; the waits after it (nothing for us
        // yet) are plain ones.
        let mut event = Some(poll.send_data_wait_recv(echo, &msg, &mut buf)?);
        loop {
            let event = match event.take() {
                Some(waited) => waited?,
                None => poll.wait_recv(&mut buf)?,
            };
            match event.received {
                Some(Ok(info)) if info.data_len == size => break,
                Some(Ok(_)) => return Err(Error::MalformedMessage),
                Some(Err(Error::WouldBlock)) => continue,
                Some(Err(e)) => return Err(e),
                None if event.ready.contains(Readiness::PEER_CLOSED) => {
                    return Err(Error::PeerClosed)
                }
                None => continue,
            }
        }
    }
    Ok((now_ns() - start) / rounds)
}

pub fn main(env: Env) {
    let rounds = env.config.rounds as u64;
    let poll = Poll::create().expect("poll");
    poll.add(env.echo.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        .expect("poll add");
    let mut ok = true;
    for (name, size) in [("ipc_roundtrip_0b", 0), ("ipc_roundtrip_1k", 1024)] {
        // Warm up caches and allocator free lists first.
        let _ = round_trips(&env.echo, &poll, size, rounds / 10);
        match round_trips(&env.echo, &poll, size, rounds) {
            Ok(ns) => log::info!("{} {name} {ns}", starina::abi::markers::BENCH_RAW),
            Err(e) => {
                ok = false;
                log::error!("{name} failed: {e}");
            }
        }
    }
    let err = env.shutdown.power_off(if ok { 0 } else { 1 });
    log::error!("power off failed: {err}");
}
