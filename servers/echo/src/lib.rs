//! The echo server: every `Data` message a client sends comes back
//! unchanged. Clients arrive from startup (`connect`); a reply the client
//! has no room for waits in the SDK's outbox, so no byte is lost.
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

struct Echo;

impl Handler for Echo {
    type State = ();

    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ()).map(drop)
    }

    fn message(&mut self, cx: &mut Cx<()>, id: HandleId, _: &mut (), msg: Message<'_>) -> Result<(), Error> {
        match msg {
            Message::Data(data) => cx.reply_data(id, data),
            other => {
                log::warn!("ignoring unexpected {:?} message", other.kind());
                Ok(())
            }
        }
    }
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(env.supervisor)?;
    ml.run(&mut Echo)
}
