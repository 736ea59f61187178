//! The TCP/IP server: smoltcp on the virtio-net driver's frames, serving
//! TCP, UDP and DNS to other components over channels.
//!
//! A client (a component that needs `tcpip`) sends `Open { call_id, uri }`:
//! - `tcp-listen:0.0.0.0:<port>`: `OpenReply` with a listener channel, on
//!   which each accepted connection arrives as
//!   `Open { uri: "tcp-conn:<peer ip>:<port>", handle }`;
//! - `tcp:<host>:<port>` (host: IPv4 address or DNS name): `OpenReply`
//!   with a connection channel once connected; to this machine (127.0.0.1,
//!   our own address, `localhost`, or `linux`: a Linux listener the linux
//!   server forwards) the channel goes straight to the listener's client
//!   (`loopback`);
//! - `udp:<host>:<port>`: `OpenReply` with a channel on which each `Data`
//!   is one datagram to or from that peer; to this machine (as for `tcp:`)
//!   the peer is the client holding `udp-listen:` on that port
//!   (`udp_loopback`), which sees the datagrams come from `127.0.0.1:<n>`;
//!   with nobody holding the port the open is refused (`REFUSED`).
//! - `udp-dns:`: the same, to the DNS server DHCP gave (port 53), for a
//!   NAT that forwards its clients' queries.
//! - `udp-listen:0.0.0.0:<port>`: `OpenReply` with a channel for UDP
//!   port `<port>` of this machine, from and to any peer (a NAT forwards a
//!   Linux UDP port this way). Each `Data`, both ways, is one datagram
//!   with a 6-byte header in front: the peer's IPv4 address (4 bytes,
//!   network order) and port (2 bytes, big-endian), then the payload
//!   (`starina::datagram` encodes and decodes it). From tcpip the peer is
//!   the sender; to tcpip, where the datagram goes, sent from `<port>`. A
//!   malformed header (short, or port 0) is logged and dropped. A port
//!   another UDP socket of tcpip holds (another `udp-listen:`, a `udp:`
//!   channel's local port, DHCP's 68) is refused with `Error`
//!   (`UNAVAILABLE`). `Close` (or closing the channel) frees the port.
//!   The socket holds at most 64 datagrams (64 KiB) each way; datagrams
//!   for a client whose channel has a backlog wait there, and past that
//!   are dropped, as the network drops them.
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
//! Timeouts and bounds, so that hostile peers cost a bounded amount for a
//! bounded time (config values in `specs/tcpip.toml`):
//! - a half-open connection (SYN received, handshake unfinished) holds a
//!   listening socket at most `syn_timeout_ms` (10 s: a round trip and
//!   three SYN-ACK retransmissions), then is reset and replaced, so a SYN
//!   flood cannot hold the `backlog` slots;
//! - a connection whose peer acknowledges none of the bytes waiting for
//!   it for `stall_timeout_ms` (20 s) is reset and its client told with
//!   `Abort` (`TIMED_OUT`): a peer that keeps its window shut and answers
//!   zero-window probes would otherwise hold it forever. Slow progress,
//!   however slow, restarts the clock;
//! - per connection tcpip holds at most its two socket buffers
//!   (`socket_buffer` to receive, `connect_buffer` for connections a client
//!   opened, `send_buffer` to send), 64 KiB + one message from its client waiting
//!   for the socket (then it stops reading the client, whose further bytes
//!   wait in the channel's bounded queue), and one message for the client
//!   (it reads the socket only while the client's channel has no backlog);
//! - a service round makes at most 4 passes, each serving at most 8
//!   connections that move bytes (in turn), so that a hundred busy
//!   connections cannot keep the loop from a new request for long.
//!
//! `stats:` counts `syn_expired` and `stalled` resets.
//!
//! The network is configured by DHCP (QEMU user networking: 10.0.2.15,
//! gateway 10.0.2.2, DNS 10.0.2.3). Requests that arrive before that wait
//! (up to `WAIT_FOR_NETWORK_NS`).
//!
//! Modules by job: `events` (one handler per main-loop event), `server`
//! (the state and the service round that polls smoltcp), `requests` (the
//! client protocol: `Open` requests and their replies), `uri` (parsing
//! them), `listener`, `udp_listener` and `conn` (the socket table: TCP and
//! UDP listeners, connections), `loopback` and `udp_loopback` (clients of
//! ours reaching each other), `dhcp` and `dns` (network configuration and names),
//! `stats` (the `stats:` figures) and `link` (the Ethernet device under
//! smoltcp).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod checksum;
mod conn;
mod dhcp;
mod dns;
mod events;
#[cfg(test)]
mod fuzz;
mod link;
mod listener;
mod loopback;
mod requests;
mod server;
mod stats;
mod timeouts;
mod tx_queue;
mod udp_listener;
mod udp_loopback;
mod uri;

use alloc::format;
use alloc::string::String;

use starina::mainloop::Mainloop;
use starina::timer::Timer;

use server::Ctx;
use server::Server;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) -> Result<(), String> {
    let mut ml = Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let cx = ml.cx();
    let setup = cx
        .add_supervisor(env.supervisor)
        .and_then(|_| cx.add_channel(env.net, Ctx::Net))
        .and_then(|net| Ok((net, cx.add_timer(timer, Ctx::Timer)?)));
    let (net, timer) = setup.map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let mut server = Server::new(&env.config, net, timer);
    ml.run(&mut server)
        .map_err(|e| format!("the main loop failed: {e}"))
}
