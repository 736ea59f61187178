//! Misbehaves on purpose: asked to spin, it says so and then loops forever
//! without ever waiting, so the tests can check that preemption keeps the
//! rest of the system running.
#![no_std]
#![forbid(unsafe_code)]

use starina::channel::Channel;
use starina::mainloop::Event;
use starina::mainloop::Mainloop;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) {
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
                msg: Message::Data(b"spin"),
                ..
            } => {
                let _ = ch.send_data(b"spinning");
                log::info!("spinning forever now");
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => {}
        }
        if let Some(ch) = accepted {
            let _ = ml.add_channel(ch, ());
        }
    }
}
