//! The HTTP server: listens on port 80 through the TCP/IP server and
//! serves
//! - `/`: a status page (components and their state, uptime, memory, each
//!   CPU's load, the tail of the kernel log);
//! - `/api/components`, `/api/logs`, `/api/stats`: the same as JSON
//!   (`/api/stats` also carries each CPU's load, `"cpus":[...]`: its busy
//!   share over the last second and its totals, and the TCP/IP server's
//!   own figures, as `"tcpip":{...}`, refreshed every second through its
//!   `stats:` URI);
//! - `/bytes/<n>`: `n` bytes (up to 64 MiB) of the pattern `abc...zab...`,
//!   for transfer tests;
//! - any other path: a static file under `www_root` (`/www`) of the native
//!   file system (`static_files`); `/` is the status page unless
//!   `www_root` has an `index.html`.
//!
//! HTTP/1.0 and 1.1, GET and HEAD, keep-alive. Bad requests get 400, heads
//! over `max_header_bytes` 431, other methods 405, and the connection is
//! closed after each of those; connections idle for `idle_timeout_ms`
//! (10 s, including ones cut off mid-request) are closed. A request head
//! must arrive whole within `request_timeout_ms` (10 s) of its first byte,
//! however slowly it trickles (slowloris: each byte resets the idle timer,
//! not this deadline); past it the client gets 408 and the connection is
//! closed. Heads are found by scanning each received byte once
//! (`http::HeadScan`), not by reparsing from the start per segment. A
//! response body is made one 16 KiB piece at a time, only while the
//! connection's channel has no backlog, so a client that stops reading
//! holds at most the channel's queue (64 messages) and one piece here
//! until the idle timeout (or tcpip's stall timeout) ends it.
//!
//! Modules by job: `server` (the loop: one handler per event), `conn` (a
//! connection: its requests in turn and its response going out),
//! `routes` (request to handler), `pages` (the handlers), `response`
//! (response heads and bodies) and `http` (parsing request heads).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod conn;
mod cpu_load;
#[cfg(test)]
mod fuzz;
mod http;
mod httpdate;
mod pages;
mod response;
mod routes;
mod server;
mod static_files;

use alloc::format;
use alloc::string::String;

use starina::mainloop::Mainloop;
use starina::timer::Timer;
use starina::Message;

use server::Ctx;
use server::Server;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) -> Result<(), String> {
    let mut ml = Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let uri = format!("tcp-listen:0.0.0.0:{}", env.config.port);
    let listen = Message::Open {
        call_id: server::LISTEN_CALL,
        uri: &uri,
        handle: None,
    };
    env.tcpip
        .send(listen)
        .map_err(|e| format!("cannot ask tcpip to listen: {}", e.error))?;
    let cx = ml.cx();
    let setup = cx
        .add_supervisor(env.supervisor)
        .and_then(|_| cx.add_channel(env.tcpip, Ctx::Tcpip))
        .and_then(|tcpip| Ok((tcpip, cx.add_timer(timer, Ctx::Timer)?)));
    let (tcpip, timer) = setup.map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let _ = cx.set_timer(timer, server::SWEEP_MS * 1_000_000);
    let files = starina::fs::Files::new(env.fs)
        .map(|files| static_files::StaticFiles::new(files, env.config.www_root))
        .map_err(|e| log::warn!("no static files: {e}"))
        .ok();
    let mut server = Server::new(env.monitor, &env.config, tcpip, uri, files);
    // With the linux server in the profile: its forwards, for /api/forwards.
    server.linux = env.linux.and_then(|ch| cx_add_linux(&mut ml, ch));
    ml.run(&mut server)
        .map_err(|e| format!("the main loop failed: {e}"))
}

/// Adds the linux server's channel to the loop (`None`, logged, if it
/// cannot be).
fn cx_add_linux(ml: &mut Mainloop<Ctx>, ch: starina::channel::Channel) -> Option<starina::HandleId> {
    ml.cx()
        .add_channel(ch, Ctx::Linux)
        .map_err(|e| log::warn!("no forwards from the linux server: {e}"))
        .ok()
}
