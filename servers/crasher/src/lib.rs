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

use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
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

struct Crasher {
    instance: u32,
}

impl Handler for Crasher {
    type State = ();

    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ()).map(drop)
    }

    fn message(&mut self, cx: &mut Cx<()>, id: HandleId, _: &mut (), msg: Message<'_>) -> Result<(), Error> {
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
