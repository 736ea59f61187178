//! Fails on request, so the tests can check that a failing component is
//! torn down alone and restarted by its spec's policy.
//!
//! - `ping` -> `pong <instance>` (which start of the component answered)
//! - `panic` -> panics
//! - `overflow` -> overflows its stack (a CPU fault, not a panic)
//! - `log-flood` -> logs one 1 MiB line full of newlines and a forged
//!   console marker, then answers `logged` (the kernel must bound it)
//! - `log-panic` -> logs a value whose `Display` panics
//! - `hog` -> allocates 1 MiB blocks until an allocation fails (its
//!   memory budget, spec `memory_limit_mib`): that ends it alone
//! - `wait-panic` -> sends the client one end of a new channel (an `Open`
//!   for `held`), parks a thread in `poll_wait_recv` on the other end (its buffer lent), then
//!   panics: teardown must end that thread without leaking what its call
//!   holds, so the client's end sees peer-closed
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use starina::abi::Readiness;
use starina::channel::MessageBuffer;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::poll::Poll;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Recurses until the stack's guard page stops it.
fn recurse(depth: u64) -> u64 {
    if depth == core::hint::black_box(u64::MAX) {
        return 0;
    }
    let frame = core::hint::black_box([depth; 64]);
    frame[(depth % 64) as usize] + recurse(core::hint::black_box(depth + 1))
}

/// Formatting it panics, like a buggy `Display` impl would.
struct PanicsOnDisplay;

impl core::fmt::Display for PanicsOnDisplay {
    fn fmt(&self, _: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        panic!("Display panicked while logging")
    }
}

/// One line of 1 MiB that tries to forge console lines.
fn flood_text() -> String {
    let mut text = String::with_capacity(1 << 20);
    while text.len() < (1 << 20) {
        text.push_str("\n[   0.000000] INFO  kernel: starina: ready \x1b[2J");
    }
    text
}

/// Allocates (and touches) 1 MiB blocks without bound. The allocation
/// past the component's budget fails, which panics it: it never returns.
fn hog() -> usize {
    let mut blocks = Vec::new();
    loop {
        blocks.push(core::hint::black_box(vec![0xa5u8; 1 << 20]));
        log::debug!("holding {} MiB", blocks.len());
    }
}

/// Hands the client one end of a new channel, parks a thread waiting on
/// the other end, and panics once that thread is blocked in the kernel.
fn panic_while_a_thread_waits(cx: &mut Cx<()>, id: HandleId) -> Result<(), Error> {
    let (kept, given) = Channel::create()?;
    cx.send(
        id,
        Message::Open {
            call_id: 0,
            uri: "held",
            handle: Some(given.into_handle()),
        },
    )?;
    let waiting = Arc::new(AtomicBool::new(false));
    let flag = waiting.clone();
    starina::thread::spawn(move || {
        let Ok(poll) = Poll::create() else { return };
        if poll.add(kept.id(), Readiness::READABLE).is_ok() {
            flag.store(true, Ordering::Release);
            // Lending its buffer: a message may be handed into it.
            let mut buf = MessageBuffer::new();
            let _ = poll.wait_recv(&mut buf);
        }
    })?;
    while !waiting.load(Ordering::Acquire) {
        starina::thread::yield_now();
    }
    // Once more: the waiter goes from setting the flag into its wait.
    starina::thread::yield_now();
    panic!("asked to panic while a thread waits")
}

struct Crasher {
    instance: u32,
}

impl Handler for Crasher {
    type State = ();

    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ()).map(drop)
    }

    fn message(
        &mut self,
        cx: &mut Cx<()>,
        id: HandleId,
        _: &mut (),
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let Message::Data(cmd) = msg else {
            return Err(Error::NotSupported);
        };
        let instance = self.instance;
        match cmd {
            b"ping" => cx.send_data(id, format!("pong {instance}").as_bytes()),
            b"panic" => panic!("asked to panic (instance {instance})"),
            b"overflow" => {
                let n = recurse(0);
                cx.send_data(id, format!("{n}").as_bytes())
            }
            b"log-flood" => {
                log::info!("{}", flood_text());
                cx.send_data(id, b"logged")
            }
            b"hog" => {
                let held = hog();
                cx.send_data(id, format!("held {held} MiB and survived").as_bytes())
            }
            b"wait-panic" => panic_while_a_thread_waits(cx, id),
            b"log-panic" => {
                log::info!("about to fail: {}", PanicsOnDisplay);
                cx.send_data(id, b"not reached")
            }
            _ => cx.send_data(id, b"unknown command"),
        }
    }
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(env.supervisor)?;
    ml.run(&mut Crasher {
        instance: env.instance,
    })
}
