//! UDP between two clients of tcpip on this machine: `udp:127.0.0.1:<port>`,
//! `udp:localhost:<port>` or `udp:linux:<port>` to a UDP listener here
//! (`udp-listen:`, as the linux server holds a Linux UDP port it
//! forwards). No UDP at all: each datagram goes from one client's channel
//! to the other's. The listener's client sees the datagrams come from
//! `127.0.0.1:<n>`, a number this flow alone has, and what it sends to
//! that address comes back on the flow's channel, one `Data` per datagram.
//!
//! As on a network, a datagram is dropped (counted, logged at most once a
//! second) when nobody listens on the port any more, or when the
//! receiving channel already holds [`BACKLOG_MAX`] bytes; nothing blocks
//! and nothing grows without bound. At most [`FLOWS_MAX`] flows are open
//! at once.

use alloc::format;
use core::fmt;

use starina::datagram;
use starina::datagram::Peer;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::HandleId;
use starina::Message;

use crate::requests::send_reply;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;
use crate::udp_listener::log_due;

/// Loopback UDP flows open at once at most.
pub const FLOWS_MAX: usize = 64;
/// Bytes a receiving channel may hold before datagrams to it are dropped.
const BACKLOG_MAX: usize = 64 * 1024;
/// The loopback peer numbers flows get, in turn.
const FIRST_PEER_PORT: u16 = 49152;
/// This machine, as the listener's client sees a flow's datagrams come.
const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

pub struct UdpLoopback {
    /// The listener's port the flow sends to.
    pub port: u16,
    /// The flow's own number, its "port" as the listener sees it.
    pub peer_port: u16,
    pub ch: HandleId,
}

/// Flows, their peer numbers, and what was dropped.
pub struct UdpLoopbacks {
    pub flows: alloc::collections::BTreeMap<u32, UdpLoopback>,
    last_peer_port: u16,
    /// Datagrams dropped so far (no listener, or a full channel).
    pub dropped: u64,
    quiet_until: u64,
}

impl UdpLoopbacks {
    pub fn new() -> UdpLoopbacks {
        UdpLoopbacks {
            flows: alloc::collections::BTreeMap::new(),
            last_peer_port: 0,
            dropped: 0,
            quiet_until: 0,
        }
    }

    /// The next peer number no open flow has.
    fn next_peer_port(&mut self) -> u16 {
        loop {
            self.last_peer_port = self.last_peer_port.wrapping_add(1).max(FIRST_PEER_PORT);
            let taken = self
                .flows
                .values()
                .any(|f| f.peer_port == self.last_peer_port);
            if !taken {
                return self.last_peer_port;
            }
        }
    }

    /// Counts a dropped datagram; logs why at most once a second.
    fn drop_datagram(&mut self, why: fmt::Arguments<'_>) {
        self.dropped += 1;
        if log_due(&mut self.quiet_until) {
            log::warn!(
                "loopback UDP: dropped a datagram: {why} ({} dropped so far)",
                self.dropped
            );
        }
    }
}

/// Sends `body` to `ch` unless its queue is over the bound: true if sent.
fn hand_over(cx: &mut Cx<Ctx>, ch: HandleId, body: &[u8]) -> bool {
    cx.backlog_bytes(ch) <= BACKLOG_MAX && cx.send_data(ch, body).is_ok()
}

impl Server {
    /// Serves `udp:` to this machine's `port`: a flow to its UDP listener.
    pub fn udp_loopback(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        port: u16,
    ) -> Result<(), Refusal> {
        if !self.udp_listeners.values().any(|l| l.port == port) {
            return Err(Refusal::new(
                codes::REFUSED,
                format!("nothing listens on UDP port {port} here"),
            ));
        }
        if self.udp_loopbacks.flows.len() >= FLOWS_MAX {
            return Err(Refusal::unavailable(format!(
                "too many loopback UDP flows ({FLOWS_MAX})"
            )));
        }
        let (id, ch, theirs) = self.open_channel(cx, Ctx::UdpLoopback)?;
        let peer_port = self.udp_loopbacks.next_peer_port();
        self.udp_loopbacks.flows.insert(
            id,
            UdpLoopback {
                port,
                peer_port,
                ch,
            },
        );
        send_reply(cx, client, call_id, theirs);
        Ok(())
    }

    /// A message from the client of loopback flow `id`: a datagram for
    /// the listener, or `Close`.
    pub fn on_udp_loopback_message(&mut self, cx: &mut Cx<Ctx>, id: u32, msg: Message<'_>) {
        let payload = match msg {
            Message::Data(payload) => payload,
            Message::Close => return self.udp_loopback_closed(cx, id),
            other => {
                log::warn!("loopback UDP flow {id}: ignoring {:?}", other.kind());
                return;
            }
        };
        let Some(flow) = self.udp_loopbacks.flows.get(&id) else {
            return;
        };
        let port = flow.port;
        let from = Peer {
            addr: LOCALHOST,
            port: flow.peer_port,
        };
        let Some(listener) = self.udp_listeners.values().find(|l| l.port == port) else {
            return self
                .udp_loopbacks
                .drop_datagram(format_args!("nothing listens on UDP port {port} any more"));
        };
        let sent =
            datagram::encode(from, payload).is_some_and(|body| hand_over(cx, listener.ch, &body));
        if !sent {
            self.udp_loopbacks
                .drop_datagram(format_args!("UDP port {port}'s client is not keeping up"));
        }
    }

    /// Loopback flow `id` ended (its client closed it, or went away).
    pub fn udp_loopback_closed(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(flow) = self.udp_loopbacks.flows.remove(&id) {
            if flow.ch != HandleId(0) {
                cx.remove(flow.ch);
            }
        }
    }

    /// A datagram the client of the UDP listener on `port` sends to
    /// `peer`: if `peer` is on this machine, it goes to the loopback flow
    /// with that number (or is dropped, as a datagram to a closed port
    /// is), and the answer is true; false if it is for the network.
    pub fn send_to_udp_loopback(
        &mut self,
        cx: &mut Cx<Ctx>,
        port: u16,
        peer: Peer,
        payload: &[u8],
    ) -> bool {
        if peer.addr[0] != 127 {
            return false;
        }
        let flow = (self.udp_loopbacks.flows.values())
            .find(|f| f.port == port && f.peer_port == peer.port)
            .map(|f| f.ch);
        let p = peer.port;
        match flow {
            Some(ch) if hand_over(cx, ch, payload) => {}
            Some(_) => (self.udp_loopbacks)
                .drop_datagram(format_args!("the flow 127.0.0.1:{p} is not keeping up")),
            None => (self.udp_loopbacks)
                .drop_datagram(format_args!("no loopback flow is 127.0.0.1:{p}")),
        }
        true
    }
}
