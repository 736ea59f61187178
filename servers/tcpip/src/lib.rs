//! The TCP/IP server: smoltcp on the virtio-net driver's frames, serving
//! TCP, UDP and DNS to other components over channels.
//!
//! A client (a component that needs `tcpip`) sends `Open { call_id, uri }`:
//! - `tcp-listen:0.0.0.0:<port>`: `OpenReply` with a listener channel, on
//!   which each accepted connection arrives as
//!   `Open { uri: "tcp-conn:<peer ip>:<port>", handle }`;
//! - `tcp:<host>:<port>` (host: IPv4 address or DNS name): `OpenReply`
//!   with a connection channel once connected;
//! - `udp:<host>:<port>`: `OpenReply` with a channel on which each `Data`
//!   is one datagram to or from that peer.
//!
//! - `stats:`: `OpenReply` with a channel holding one `Data`, the
//!   server's figures as a JSON object (`memory_bytes`: socket buffers and
//!   queued bytes; socket and connection counts; dropped frames), then
//!   `Close`.
//!
//! Failures are `Error { call_id, code, text }`. On a connection channel,
//! `Data` carries the stream both ways, `Close` is an orderly end (FIN) of
//! the sender's direction, `Abort` a reset. Backpressure both ways: bytes
//! from the socket wait in the socket until the client's queue takes them,
//! and a client that sends faster than the peer reads is not read from
//! until the socket drains. No byte is dropped or reordered.
//!
//! The network is configured by DHCP (QEMU user networking: 10.0.2.15,
//! gateway 10.0.2.2, DNS 10.0.2.3). Requests that arrive before that wait
//! (up to `WAIT_FOR_NETWORK_NS`).
//!
//! Modules by job: `events` (what each main-loop event does), `server`
//! (the state and the service round that polls smoltcp), `requests` (the
//! client protocol: `Open` requests and their replies), `uri` (parsing
//! them), `listener` and `conn` (the socket table: listening sockets and
//! connections), `dhcp` and `dns` (network configuration and names),
//! `stats` (the `stats:` figures) and `link` (the Ethernet device under
//! smoltcp).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod conn;
mod dhcp;
mod dns;
mod events;
mod link;
mod listener;
mod requests;
mod server;
mod stats;
mod uri;

use alloc::format;
use alloc::string::String;

use smoltcp::time::Duration;
use starina::mainloop::legacy::Mainloop;
use starina::timer::now_ns;
use starina::timer::Timer;

use server::Server;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// What each object in the main loop is to the server.
pub(crate) enum Ctx {
    Supervisor,
    /// The network driver's channel.
    Net,
    /// A client's channel (its `Open` requests).
    Client,
    /// A listener channel handed to a client (key in `Server::listeners`).
    Listener(u32),
    /// A connection channel handed to a client (key in `Server::conns`).
    Conn(u32),
    /// The poll timer.
    Timer,
}

/// Events handled between two service rounds at most this far apart:
/// a round polls every socket, so under load (hundreds of connections,
/// each sending several messages) one round per event would cost far more
/// than the events themselves.
const SERVICE_INTERVAL_NS: u64 = 2_000_000;

pub fn main(env: Env) -> Result<(), String> {
    let mut ml: Mainloop<Ctx> =
        Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let net_id = env.net.id();
    let setup = ml
        .add_channel(env.supervisor, Ctx::Supervisor)
        .and_then(|_| ml.add_channel(env.net, Ctx::Net))
        .and_then(|_| ml.add_timer(timer, Ctx::Timer));
    let timer_id = setup.map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let mut server = Server::new(&env.config, net_id);
    loop {
        server.handle_event(&mut ml);
        let now = now_ns();
        let delay = if now >= server.next_service || server.urgent {
            server.urgent = false;
            server.service(&mut ml);
            server.next_service = now_ns() + SERVICE_INTERVAL_NS;
            server.poll_delay()
        } else {
            // Take the events that queue up until the round is due.
            Duration::from_micros((server.next_service - now).div_ceil(1000))
        };
        // The timer lives in the main loop; arm it by its handle.
        let ns = delay.total_micros().saturating_mul(1000);
        if let Err(e) = starina::syscall::kernel().timer_set(timer_id, ns) {
            log::error!("cannot arm the poll timer: {e}");
        }
    }
}
