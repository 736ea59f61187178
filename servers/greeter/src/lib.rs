#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use starina::channel::Channel;
use starina::mainloop::{Event, Mainloop};
use starina::{Error, Message};

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

enum Ctx {
    Supervisor,
    Client,
}

// `main` returns `()` or `Result<(), E>`: an `Err` is logged and ends the
// component as a failure (its restart policy applies), so setup can use `?`.
pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.add_channel(env.supervisor, Ctx::Supervisor)?;
    loop {
        let mut accepted = None;
        match ml.next() {
            // Startup hands each client's channel to its provider on the
            // supervisor channel: Open { uri: "connect:<service>", handle }.
            Event::Message { ctx: Ctx::Supervisor, msg: Message::Open { handle: Some(h), .. }, .. } => {
                accepted = Some(Channel::from_handle(h));
            }
            Event::Message { ctx: Ctx::Client, ch, msg: Message::Data(name) } => {
                let reply = format!("{}, {}!", env.config.greeting, core::str::from_utf8(name).unwrap_or("stranger"));
                if let Err(e) = ch.send_data(reply.as_bytes()) {
                    log::warn!("reply failed: {e}");   // logged as `greeter: reply failed: ...`
                }
            }
            Event::PeerClosed { .. } => {}              // a client left; its channel is out of the loop
            _ => {}
        }
        if let Some(ch) = accepted {
            let _ = ml.add_channel(ch, Ctx::Client);
        }
    }
}
