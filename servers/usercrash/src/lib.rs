//! A server that misbehaves on request, from user mode (its spec says
//! `isolation = "user"`), for the tests of user-mode isolation: each fault
//! must end it alone (logged with the address and RIP) and its restart
//! policy bring it back; each bad system-call argument must come back as
//! an error (`bad_arguments`); threads that start and end all the time
//! must not use up its memory (`threads`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod bad_arguments;
mod threads;

use alloc::boxed::Box;
use alloc::format;

use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Where the "write-kernel" request writes: the kernel's direct map of
/// physical memory (1 MiB in).
pub const KERNEL_ADDRESS: usize = 0xffff_8000_0010_0000;
/// Where "write-null-page" writes.
pub const LOW_ADDRESS: usize = 0x1000;

struct UserCrash {
    instance: u32,
}

impl Handler for UserCrash {
    type State = ();

    fn connect(&mut self, cx: &mut Cx<()>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, ()).map(drop)
    }

    fn message(
        &mut self,
        cx: &mut Cx<()>,
        id: HandleId,
        _: &mut (),
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let Message::Data(cmd) = msg else {
            return Err(Error::NotSupported);
        };
        match cmd {
            b"ping" => cx.send_data(id, format!("pong {}", self.instance).as_bytes()),
            b"write-null-page" => {
                starina::testing::wild_write(LOW_ADDRESS);
                cx.send_data(id, b"the write to 0x1000 went through")
            }
            b"write-kernel" => {
                starina::testing::wild_write(KERNEL_ADDRESS);
                cx.send_data(id, b"the write into the kernel went through")
            }
            b"exec-data" => {
                // `ret` instructions, on the heap (not executable).
                let code = Box::new([0xc3u8; 16]);
                log::info!("jumping to data at {:#x}", code.as_ptr() as usize);
                starina::testing::jump_to(code.as_ptr() as usize);
                cx.send_data(id, b"the jump into data came back")
            }
            b"bad-arguments" => {
                let answer = match bad_arguments::run() {
                    Ok(checked) => format!("ok: {checked} bad arguments refused"),
                    Err(why) => format!("FAILED: {why}"),
                };
                cx.send_data(id, answer.as_bytes())
            }
            b"threads" => {
                let answer = match threads::run() {
                    Ok(n) => format!("ok: {n} threads, one after another"),
                    Err(why) => format!("FAILED: {why}"),
                };
                cx.send_data(id, answer.as_bytes())
            }
            _ => cx.send_data(id, b"unknown command"),
        }
    }
}

pub fn main(env: Env) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(env.supervisor)?;
    ml.run(&mut UserCrash {
        instance: env.instance,
    })
}
