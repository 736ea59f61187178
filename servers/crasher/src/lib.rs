//! Fails on request, so the tests can check that a failing component is
//! torn down alone and restarted by its spec's policy.
//!
//! - `ping` -> `pong <instance>` (which start of the component answered)
//! - `panic` -> panics
//! - `overflow` -> overflows its stack (a CPU fault, not a panic)
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;

use starina::channel::Channel;
use starina::mainloop::Event;
use starina::mainloop::Mainloop;
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

pub fn main(env: Env) {
    let instance = env.instance;
    let mut ml = Mainloop::new().expect("cannot create the main loop");
    ml.add_channel(env.supervisor, ()).expect("cannot watch the supervisor");
    loop {
        let mut accepted = None;
        match ml.next() {
            Event::Message {
                msg: Message::Open {
                    handle: Some(h), ..
                },
                ..
            } => accepted = Some(Channel::from_handle(h)),
            Event::Message {
                ch,
                msg: Message::Data(cmd),
                ..
            } => match cmd {
                b"ping" => {
                    let _ = ch.send_data(format!("pong {instance}").as_bytes());
                }
                b"panic" => panic!("asked to panic (instance {instance})"),
                b"overflow" => {
                    let n = recurse(0);
                    let _ = ch.send_data(format!("{n}").as_bytes());
                }
                _ => {
                    let _ = ch.send_data(b"unknown command");
                }
            },
            _ => {}
        }
        if let Some(ch) = accepted {
            let _ = ml.add_channel(ch, ());
        }
    }
}
