//! Misbehaves on purpose: asked to spin, it says so and then loops forever
//! without ever waiting, so the tests can check that preemption keeps the
//! rest of the system running.
#![no_std]
#![forbid(unsafe_code)]

use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

struct Spinner;

impl Handler for Spinner {
    type State = ();

    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ()).map(drop)
    }

    fn message(&mut self, cx: &mut Cx<()>, id: HandleId, _: &mut (), msg: Message<'_>) -> Result<(), Error> {
        if !matches!(msg, Message::Data(b"spin")) {
            return Err(Error::NotSupported);
        }
        cx.send_data(id, b"spinning")?;
        log::info!("spinning forever now");
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(env.supervisor)?;
    ml.run(&mut Spinner)
}
