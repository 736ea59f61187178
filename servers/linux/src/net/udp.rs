//! UDP flows: one tcpip `udp:` channel per (guest endpoint, peer), each
//! `Data` one datagram; dropped after a quiet spell, or, when the table is
//! full, the quietest makes room for a new one. DNS queries to the
//! gateway are answered here for the NAT's own names and otherwise go to
//! tcpip's DNS server (`udp-dns:`), the reply coming back from the
//! gateway's address as the guest expects.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::MESSAGE_DATA_MAX;
use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::Message;
use starina::timer::now_ns;
use starina::HandleId;

use super::dns;
use super::frame;
use super::frame::Endpoint;
use super::rate_limited;
use super::Call;
use super::Nat;
use super::GATEWAY;
use super::GATEWAY_MAC;
use super::GUEST_MAC;
use crate::Ctx;

/// A flow with no datagram either way for this long is dropped.
const IDLE_NS: u64 = 60_000_000_000;
/// DNS flows are one query and its answer.
const DNS_IDLE_NS: u64 = 10_000_000_000;
/// How often idle flows are looked for.
pub const SWEEP_NS: u64 = 1_000_000_000;
/// Datagrams held while tcpip opens the flow's channel.
const HELD_MAX: usize = 8;

struct Flow {
    guest: Endpoint,
    peer: Endpoint,
    /// `None` while tcpip opens it; datagrams wait in `held`.
    channel: Option<HandleId>,
    held: Vec<Vec<u8>>,
    last_active: u64,
}

#[derive(Default)]
pub struct Flows {
    flows: BTreeMap<u32, Flow>,
    by_key: BTreeMap<(Endpoint, Endpoint), u32>,
    next_id: u32,
}

impl Flows {
    /// The flows' tcpip channels.
    pub fn channels(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.flows.values().filter_map(|f| f.channel)
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

fn is_dns(peer: Endpoint) -> bool {
    peer.addr == GATEWAY && peer.port == 53
}

impl Nat {
    /// A datagram from the guest.
    pub(super) fn on_udp(
        &mut self,
        cx: &mut Cx<Ctx>,
        from: Endpoint,
        to: Endpoint,
        payload: &[u8],
    ) {
        if is_dns(to) {
            if let Some(reply) = dns::local_answer(payload, GATEWAY) {
                self.udp_to_guest(to, from, &reply);
                return;
            }
        } else if to.addr.is_broadcast() || to.addr.is_multicast() {
            return; // Nothing of ours listens there.
        } else if to.addr == GATEWAY {
            // This machine: only an answer from a forwarded port to a
            // native client of it (tcpip's loopback) goes anywhere.
            self.udp_forward_out(cx, from, to, payload);
            return;
        }
        if self.udp_forward_out(cx, from, to, payload) {
            return; // From a forwarded port: out through its listener.
        }
        if payload.len() > MESSAGE_DATA_MAX {
            return; // Larger than a message: dropped, as a too-big datagram may be.
        }
        if let Some(&id) = self.udp.by_key.get(&(from, to)) {
            let Some(flow) = self.udp.flows.get_mut(&id) else {
                return;
            };
            flow.last_active = now_ns();
            match flow.channel {
                Some(ch) => {
                    let _ = cx.send_data(ch, payload);
                }
                None if flow.held.len() < HELD_MAX => flow.held.push(payload.to_vec()),
                None => {}
            }
            return;
        }
        if self.udp.flows.len() >= self.config.max_udp_flows {
            // The table is full: the flow quiet the longest makes room, so
            // that a guest program opening flows without end cannot shut
            // the others (DNS) out for a minute.
            if !rate_limited(&mut self.quiet_until, 1) {
                log::warn!(
                    "net: {} UDP flows already: the quietest goes for the guest's new flow to {to}",
                    self.config.max_udp_flows
                );
            }
            if let Some(oldest) = self.quietest_udp() {
                self.remove_udp(cx, oldest);
            }
        }
        self.udp.next_id = self.udp.next_id.wrapping_add(1);
        let id = self.udp.next_id;
        let uri = if is_dns(to) {
            String::from("udp-dns:")
        } else {
            format!("udp:{}:{}", to.addr, to.port)
        };
        if self.open(cx, &uri, Call::Udp(id)).is_err() {
            return;
        }
        self.udp.by_key.insert((from, to), id);
        self.udp.flows.insert(
            id,
            Flow {
                guest: from,
                peer: to,
                channel: None,
                held: alloc::vec![payload.to_vec()],
                last_active: now_ns(),
            },
        );
    }

    /// tcpip opened (or refused) flow `id`'s channel.
    pub(super) fn on_udp_opened(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: u32,
        result: Result<Channel, String>,
    ) {
        let Some(flow) = self.udp.flows.get_mut(&id) else {
            return;
        };
        let channel = match result.map(|ch| cx.add_channel(ch, Ctx::UdpFlow(id))) {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                log::warn!("net: UDP flow to {}: {e}", flow.peer);
                self.remove_udp(cx, id);
                return;
            }
            Err(why) => {
                log::debug!("net: UDP flow to {}: {why}", flow.peer);
                self.remove_udp(cx, id);
                return;
            }
        };
        flow.channel = Some(channel);
        for datagram in core::mem::take(&mut flow.held) {
            let _ = cx.send_data(channel, &datagram);
        }
    }

    /// A datagram (or the end) on flow `id`'s channel.
    pub fn on_udp_message(&mut self, cx: &mut Cx<Ctx>, id: u32, msg: Message<'_>) {
        let Some(flow) = self.udp.flows.get_mut(&id) else {
            return;
        };
        match msg {
            Message::Data(datagram) => {
                flow.last_active = now_ns();
                let (peer, guest) = (flow.peer, flow.guest);
                self.udp_to_guest(peer, guest, datagram);
            }
            _ => self.remove_udp(cx, id),
        }
    }

    /// Flow `id`'s channel closed: the loop dropped it already, and its
    /// handle number may name another channel soon, so it is not closed
    /// again.
    pub fn on_udp_closed(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(flow) = self.udp.flows.get_mut(&id) {
            flow.channel = None;
        }
        self.remove_udp(cx, id);
    }

    pub(super) fn udp_to_guest(&mut self, from: Endpoint, to: Endpoint, payload: &[u8]) {
        if self.to_guest.len() < super::TO_GUEST_MAX {
            self.to_guest
                .push_back(frame::udp_frame(GATEWAY_MAC, GUEST_MAC, from, to, payload));
        }
    }

    fn remove_udp(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(flow) = self.udp.flows.remove(&id) {
            self.udp.by_key.remove(&(flow.guest, flow.peer));
            if let Some(ch) = flow.channel {
                cx.remove(ch);
            }
        }
    }

    /// The flow with no datagram for the longest.
    fn quietest_udp(&self) -> Option<u32> {
        self.udp
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_active)
            .map(|(&id, _)| id)
    }

    /// Drops flows that have been quiet too long.
    pub(super) fn expire_udp(&mut self, cx: &mut Cx<Ctx>) {
        let now = now_ns();
        let idle: Vec<u32> = self
            .udp
            .flows
            .iter()
            .filter(|(_, f)| {
                let limit = if is_dns(f.peer) { DNS_IDLE_NS } else { IDLE_NS };
                now.saturating_sub(f.last_active) > limit
            })
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.remove_udp(cx, id);
        }
    }
}
