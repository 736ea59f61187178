//! Sends `config.rounds` echo requests of varying sizes, one at a time,
//! and checks that every reply is exactly the request.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use starina::mainloop::Event;
use starina::mainloop::Mainloop;
use starina::Error;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Request `i`: a length that cycles through 0..=300 bytes, each byte
/// derived from `i`, so a reply from another request would not match.
fn request(i: u64, buf: &mut Vec<u8>) {
    buf.clear();
    let len = (i * 7 % 301) as usize;
    buf.extend((0..len).map(|k| (i as usize * 31 + k) as u8));
}

pub fn main(env: Env) -> Result<(), Error> {
    let rounds = env.config.rounds as u64;
    let mut ml = Mainloop::new()?;
    let echo = ml.add_channel(env.echo, ())?;
    let mut expected = Vec::new();
    let mut done: u64 = 0;
    let mut wrong: u64 = 0;
    request(0, &mut expected);
    if let Some(ch) = ml.channel(echo) {
        ch.send_data(&expected)?;
    }
    loop {
        match ml.next() {
            Event::Message {
                ch,
                msg: Message::Data(reply),
                ..
            } => {
                if reply != expected.as_slice() {
                    wrong += 1;
                    log::error!("reply {done} does not match its request");
                }
                done += 1;
                if done == rounds {
                    break;
                }
                request(done, &mut expected);
                ch.send_data(&expected)?;
            }
            Event::PeerClosed { .. } => {
                log::error!("echo server went away after {done} round trips");
                return Err(Error::PeerClosed);
            }
            _ => {}
        }
    }
    if wrong == 0 {
        log::info!("{rounds} round trips, all replies correct");
    } else {
        log::error!("{rounds} round trips, {wrong} replies WRONG");
    }
    Ok(())
}
