//! Inbound UDP forwards: the guest agent reports each UDP port a Linux
//! socket is bound to and not connected; when the policy allows the port
//! (as for TCP: `forward_min_port` up, or in `forward_ports`, which a
//! Linux service's `forward-port:` extends), the NAT opens
//! `udp-listen:0.0.0.0:<port>` on tcpip. Each datagram a peer sends there
//! goes into the guest from the peer's own address to `GUEST:<port>`;
//! every datagram the guest sends from `<port>` goes out through the
//! listener, so the peer sees its answer come from the port it wrote to.
//! When the Linux socket goes, so does the forward.
//!
//! Unlike TCP, a port in Linux's ephemeral range (`UDP_EPHEMERAL_FIRST`
//! up) is forwarded only when `forward_ports` names it: an unconnected
//! UDP socket there is a client's (a resolver, a program that `sendto`s),
//! not a service's, and forwarding it would hand its traffic to the
//! forward and add a host forward for nothing.
//!
//! Each forward added or removed is logged with a marker
//! (`starina_abi::markers::NET_FORWARD_UDP_*`) that the host tool follows
//! to add the matching QEMU `udp:` forward.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::markers;
use starina::channel::Channel;
use starina::datagram;
use starina::datagram::Peer;
use starina::mainloop::Cx;
use starina::message::Message;
use starina::HandleId;

use super::frame::Endpoint;
use super::rate_limited;
use super::seen_by_guest;
use super::seen_by_tcpip;
use super::Call;
use super::Nat;
use super::GUEST;
use crate::Ctx;

/// The first port of Linux's default ephemeral range
/// (`net.ipv4.ip_local_port_range`).
pub const UDP_EPHEMERAL_FIRST: u16 = 32768;

struct UdpForward {
    /// The Linux process that holds the socket (`comm (pid N)`).
    process: String,
    /// The tcpip listener; `None` while tcpip is asked.
    channel: Option<HandleId>,
    datagrams_in: u64,
    datagrams_out: u64,
}

#[derive(Default)]
pub struct UdpForwards {
    ports: BTreeMap<u16, UdpForward>,
    /// Every UDP port Linux has a bound, unconnected socket on (forwarded
    /// or not), with its process: a NAT that replaces this one forwards
    /// them again.
    bound: BTreeMap<u16, String>,
}

impl UdpForwards {
    /// The tcpip listeners in the loop.
    pub fn channels(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.ports.values().filter_map(|f| f.channel)
    }

    /// The UDP ports Linux has sockets on, with their processes.
    pub fn bound(&self) -> impl Iterator<Item = (u16, &str)> {
        self.bound.iter().map(|(&port, p)| (port, p.as_str()))
    }

    /// The active forwards as JSON objects (for `forwards:`).
    pub fn json_items(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|(_, f)| f.channel.is_some())
            .map(|(port, f)| {
                format!(
                    "{{\"port\":{port},\"protocol\":\"udp\",\"process\":\"{}\",\"datagrams_in\":{},\"datagrams_out\":{}}}",
                    super::forwards::json_escape(&f.process),
                    f.datagrams_in,
                    f.datagrams_out
                )
            })
            .collect()
    }
}

/// Whether the policy forwards UDP `port`: the TCP rule (`forwarded`),
/// and below the ephemeral range unless `forward_ports` names it.
pub fn udp_policy(forwarded: bool, named: bool, port: u16) -> bool {
    named || (forwarded && port < UDP_EPHEMERAL_FIRST)
}

impl Nat {
    fn udp_forwarded(&self, port: u16) -> bool {
        let named = self.config.forward_ports.contains(&port);
        udp_policy(self.forwarded(port), named, port)
    }

    /// The agent says a Linux socket was bound to UDP `port` (`open`), or
    /// the last one there went.
    pub(super) fn on_udp_bound(
        &mut self,
        cx: &mut Cx<Ctx>,
        port: u16,
        open: bool,
        process: String,
    ) {
        if !open {
            self.udp_forwards.bound.remove(&port);
            self.remove_udp_forward(cx, port);
            return;
        }
        self.udp_forwards.bound.insert(port, process.clone());
        if !self.udp_forwarded(port) {
            if !rate_limited(&mut self.quiet_until, 2) {
                log::info!("net: Linux has UDP port {port} ({process}); not forwarded (see forward_min_port, forward_ports; ports from {UDP_EPHEMERAL_FIRST} up only if listed)");
            }
            return;
        }
        if let Some(forward) = self.udp_forwards.ports.get_mut(&port) {
            forward.process = process;
            return;
        }
        let uri = format!("udp-listen:0.0.0.0:{port}");
        if let Err(e) = self.open(cx, &uri, Call::UdpListen(port)) {
            log::warn!("net: cannot ask tcpip for UDP port {port}: {e}");
            return;
        }
        let forward = UdpForward {
            process,
            channel: None,
            datagrams_in: 0,
            datagrams_out: 0,
        };
        self.udp_forwards.ports.insert(port, forward);
    }

    fn remove_udp_forward(&mut self, cx: &mut Cx<Ctx>, port: u16) {
        let Some(forward) = self.udp_forwards.ports.remove(&port) else {
            return;
        };
        if let Some(ch) = forward.channel {
            cx.remove(ch);
            log::info!(
                "{} {port} ({} datagrams in, {} out)",
                markers::NET_FORWARD_UDP_REMOVED,
                forward.datagrams_in,
                forward.datagrams_out
            );
        }
    }

    /// tcpip holds UDP `port` for us now (or refused to).
    pub(super) fn on_udp_listen_reply(
        &mut self,
        cx: &mut Cx<Ctx>,
        port: u16,
        result: Result<Channel, String>,
    ) {
        let Some(forward) = self.udp_forwards.ports.get_mut(&port) else {
            return; // The Linux socket went meanwhile; the channel drops.
        };
        let added = result.and_then(|ch| {
            cx.add_channel(ch, Ctx::UdpForward(port))
                .map_err(|e| format!("{e}"))
        });
        match added {
            Ok(id) => {
                forward.channel = Some(id);
                log::info!(
                    "{} {port} to Linux ({})",
                    markers::NET_FORWARD_UDP_ADDED,
                    forward.process
                );
            }
            Err(why) => {
                log::warn!(
                    "net: UDP port {port} of Linux ({}) is not forwarded: {why} (a native component may use it)",
                    forward.process
                );
                self.udp_forwards.ports.remove(&port);
            }
        }
    }

    /// A datagram from a peer on forwarded UDP `port`: into the guest, from
    /// the peer's address.
    pub fn on_udp_forward_message(&mut self, port: u16, msg: Message<'_>) {
        let Message::Data(body) = msg else {
            log::warn!(
                "net: ignoring a {:?} message on the UDP forward of port {port}",
                msg.kind()
            );
            return;
        };
        let (peer, payload) = match datagram::decode(body) {
            Ok(decoded) => decoded,
            Err(e) => {
                if !rate_limited(&mut self.quiet_until, 2) {
                    log::warn!(
                        "net: UDP port {port}: dropped a malformed datagram from tcpip ({e})"
                    );
                }
                return;
            }
        };
        if let Some(forward) = self.udp_forwards.ports.get_mut(&port) {
            forward.datagrams_in += 1;
        }
        let from = Endpoint {
            addr: seen_by_guest(peer.addr.into()),
            port: peer.port,
        };
        self.udp_to_guest(from, Endpoint { addr: GUEST, port }, payload);
    }

    /// A datagram the guest sends from `from`: out through the forward of
    /// `from.port` if there is one (true), else the caller's (false).
    pub(super) fn udp_forward_out(
        &mut self,
        cx: &mut Cx<Ctx>,
        from: Endpoint,
        to: Endpoint,
        payload: &[u8],
    ) -> bool {
        let Some(forward) = self.udp_forwards.ports.get_mut(&from.port) else {
            return false;
        };
        let Some(ch) = forward.channel else {
            return false;
        };
        let peer = Peer {
            addr: seen_by_tcpip(to.addr).octets(),
            port: to.port,
        };
        // Too large for a message, or the listener's queue is full: dropped,
        // as a full link drops it.
        if let Some(body) = datagram::encode(peer, payload) {
            if cx.send_data(ch, &body).is_ok() {
                forward.datagrams_out += 1;
            }
        }
        true
    }

    /// tcpip closed the listener of UDP `port` (it restarted, say).
    pub fn on_udp_forward_closed(&mut self, port: u16) {
        if let Some(forward) = self.udp_forwards.ports.remove(&port) {
            log::warn!(
                "net: tcpip closed the forward of UDP port {port} ({}); it is back when Linux binds it again",
                forward.process
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_only_when_named() {
        assert!(udp_policy(true, false, 5353));
        assert!(udp_policy(true, false, UDP_EPHEMERAL_FIRST - 1));
        assert!(!udp_policy(true, false, UDP_EPHEMERAL_FIRST));
        assert!(!udp_policy(true, false, 60999));
        assert!(udp_policy(true, true, 40000));
        // Below forward_min_port: only when named.
        assert!(!udp_policy(false, false, 53));
        assert!(udp_policy(false, true, 53));
    }
}
