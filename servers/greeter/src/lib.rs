#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use starina::mainloop::{Cx, Handler, Mainloop};
use starina::{Channel, Error, HandleId, Message};

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

struct Greeter {
    greeting: &'static str,
}

impl Handler for Greeter {
    type State = (); // what each client is to us: nothing to remember

    // Startup offers each client of our `exports` here.
    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ())?;
        Ok(())
    }

    fn message(&mut self, cx: &mut Cx<()>, client: HandleId, _: &mut (), msg: Message<'_>) -> Result<(), Error> {
        let Message::Data(name) = msg else {
            return Err(Error::NotSupported); // logged as `greeter: handler failed: not supported`
        };
        let name = core::str::from_utf8(name).unwrap_or("stranger");
        let reply = format!("{}, {}!", self.greeting, name);
        cx.send_data(client, reply.as_bytes()) // queued by the SDK if the client is slow
    }
}

// `main` returns `()` or `Result<(), E>`: an `Err` is logged and ends the
// component as a failure (its restart policy applies), so setup can use `?`.
pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(env.supervisor)?;
    ml.run(&mut Greeter { greeting: env.config.greeting })
}
