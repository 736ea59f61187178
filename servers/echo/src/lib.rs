//! The echo server: every `Data` message a client sends comes back
//! unchanged. Clients arrive on the supervisor channel as
//! `Open { uri: "connect:echo", handle }`.
//!
//! A reply that finds the client's queue full waits in a per-client backlog
//! until the client drains (`Writable`), so no byte is lost.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use starina::channel::Channel;
use starina::mainloop::Event;
use starina::mainloop::Mainloop;
use starina::Error;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

enum Ctx {
    Supervisor,
    Client { backlog: VecDeque<Vec<u8>> },
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.add_channel(env.supervisor, Ctx::Supervisor)?;
    loop {
        let mut new_client: Option<Channel> = None;
        let mut want_writable = None;
        match ml.next() {
            Event::Message {
                ctx: Ctx::Supervisor,
                msg:
                    Message::Open {
                        uri,
                        handle: Some(handle),
                        ..
                    },
                ..
            } if uri.starts_with("connect:") => {
                new_client = Some(Channel::from_handle(handle));
            }
            Event::Message {
                ctx: Ctx::Client { backlog },
                ch,
                msg: Message::Data(data),
            } => {
                if !backlog.is_empty() {
                    backlog.push_back(data.to_vec());
                } else {
                    match ch.send_data(data) {
                        Ok(()) => {}
                        Err(Error::QueueFull) => {
                            backlog.push_back(data.to_vec());
                            want_writable = Some((ch.id(), true));
                        }
                        Err(Error::PeerClosed) => {}
                        Err(e) => log::warn!("reply failed: {e}"),
                    }
                }
            }
            Event::Writable {
                ctx: Ctx::Client { backlog },
                ch,
            } => {
                while let Some(front) = backlog.front() {
                    match ch.send_data(front) {
                        Ok(()) => {
                            backlog.pop_front();
                        }
                        Err(Error::QueueFull) => break,
                        Err(_) => {
                            backlog.clear();
                        }
                    }
                }
                if backlog.is_empty() {
                    want_writable = Some((ch.id(), false));
                }
            }
            Event::Message { msg, .. } => {
                log::warn!("ignoring unexpected {:?} message", msg.kind());
            }
            Event::PeerClosed {
                ctx: Ctx::Supervisor,
                ..
            } => {
                log::warn!("supervisor channel closed");
            }
            Event::PeerClosed { .. } => {}
            Event::Error { error, .. } => log::warn!("dropped a bad message: {error}"),
            Event::Timer { .. } | Event::Writable { .. } => {}
        }
        if let Some(ch) = new_client {
            if let Err(e) = ml.add_channel(
                ch,
                Ctx::Client {
                    backlog: VecDeque::new(),
                },
            ) {
                log::warn!("cannot accept a client: {e}");
            }
        }
        if let Some((id, on)) = want_writable {
            let _ = ml.watch_writable(id, on);
        }
    }
}
