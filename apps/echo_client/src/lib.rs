//! Sends `config.rounds` echo requests of varying sizes, one at a time,
//! and checks that every reply is exactly the request.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Request `i`: a length that cycles through 0..=300 bytes, each byte
/// derived from `i`, so a reply from another request would not match.
fn request(i: u64, buf: &mut Vec<u8>) {
    buf.clear();
    let len = (i * 7 % 301) as usize;
    buf.extend((0..len).map(|k| (i as usize * 31 + k) as u8));
}

struct Client {
    rounds: u64,
    expected: Vec<u8>,
    done: u64,
    wrong: u64,
}

impl Handler for Client {
    type State = ();

    fn message(
        &mut self,
        cx: &mut Cx<()>,
        echo: HandleId,
        _: &mut (),
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let Message::Data(reply) = msg else {
            return Err(Error::NotSupported);
        };
        if reply != self.expected.as_slice() {
            self.wrong += 1;
            log::error!("reply {} does not match its request", self.done);
        }
        self.done += 1;
        if self.done == self.rounds {
            cx.stop();
            return Ok(());
        }
        request(self.done, &mut self.expected);
        cx.send_data(echo, &self.expected)
    }

    fn peer_closed(&mut self, cx: &mut Cx<()>, _: HandleId, _: ()) -> Result<(), Error> {
        log::error!("echo server went away after {} round trips", self.done);
        cx.stop();
        Err(Error::PeerClosed)
    }
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut client = Client {
        rounds: env.config.rounds as u64,
        expected: Vec::new(),
        done: 0,
        wrong: 0,
    };
    let mut ml = Mainloop::new()?;
    let echo = ml.cx().add_channel(env.echo, ())?;
    request(0, &mut client.expected);
    ml.cx().send_data(echo, &client.expected)?;
    ml.run(&mut client)?;
    if client.done < client.rounds {
        return Err(Error::PeerClosed);
    }
    if client.wrong == 0 {
        log::info!("{} round trips, all replies correct", client.rounds);
    } else {
        log::error!(
            "{} round trips, {} replies WRONG",
            client.rounds,
            client.wrong
        );
    }
    Ok(())
}
