//! The NAT in the main loop: its events routed to [`crate::net`], and its
//! frames to and from the vCPU thread (bounded by `NET_QUEUE_MAX`).

use core::sync::atomic::Ordering;

use alloc::string::String;
use alloc::vec::Vec;

use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::Message;
use starina_bridge::process::Proto;

use crate::net::Nat;
use crate::shared::NET_QUEUE_MAX;
use crate::Ctx;
use crate::Server;

impl Server {
    /// A NAT event: `Ctx::Tcpip`, a flow or a forward.
    pub(crate) fn on_net_message(&mut self, cx: &mut Cx<Ctx>, state: &Ctx, msg: Message<'_>) {
        let Some(nat) = self.net.as_mut() else {
            return;
        };
        match *state {
            Ctx::Tcpip => nat.on_tcpip_reply(cx, msg),
            Ctx::TcpFlow(id) => {
                nat.on_tcp_message(cx, id, msg);
                nat.take_queued(cx, id);
            }
            Ctx::UdpFlow(id) => nat.on_udp_message(cx, id, msg),
            Ctx::Forward(port) => nat.on_forward_message(cx, port, msg),
            Ctx::UdpForward(port) => nat.on_udp_forward_message(port, msg),
            _ => return,
        }
        self.net_service(cx);
    }

    /// A NAT channel's peer closed.
    pub(crate) fn on_net_closed(&mut self, cx: &mut Cx<Ctx>, state: &Ctx) {
        let Some(nat) = self.net.as_mut() else {
            return;
        };
        match *state {
            Ctx::Tcpip => {
                // Startup restarts it and hands us a new channel
                // (`net_reconnect`); until then new flows fail.
                log::warn!(
                    "net: tcpip went away: the guest's new connections fail until it is back"
                );
                return;
            }
            Ctx::TcpFlow(id) => nat.on_tcp_closed(id),
            Ctx::UdpFlow(id) => nat.on_udp_closed(cx, id),
            Ctx::Forward(port) => nat.on_forward_closed(port),
            Ctx::UdpForward(port) => nat.on_udp_forward_closed(port),
            _ => return,
        }
        self.net_service(cx);
    }

    /// tcpip restarted: a new NAT on the new channel. The old one's flows
    /// went with the old tcpip (the guest's connections are reset); the
    /// ports Linux listens on (TCP) or has sockets on (UDP) are forwarded
    /// again.
    pub(crate) fn net_reconnect(&mut self, cx: &mut Cx<Ctx>, tcpip: Channel) {
        let Some(old) = self.net.take() else {
            log::warn!("net: tcpip is back, but the guest has no NIC (it booted without tcpip)");
            return;
        };
        let config = old.config().clone();
        let listening: Vec<(Proto, u16, String)> = old
            .listening()
            .map(|(proto, port, process)| (proto, port, String::from(process)))
            .collect();
        old.shut_down(cx);
        let mut nat = match Nat::new(cx, tcpip, config) {
            Ok(nat) => nat,
            Err(e) => {
                log::error!(
                    "net: tcpip is back, but a new NAT failed: {e}; the guest has no network"
                );
                return;
            }
        };
        for (proto, port, process) in listening {
            nat.on_listening(cx, proto, port, true, process);
        }
        log::info!("net: tcpip is back: a new NAT (the guest's connections were reset)");
        self.net = Some(nat);
        self.net_service(cx);
    }

    /// Frames the vCPU thread left, then a service round.
    pub(crate) fn net_from_vcpu(&mut self, cx: &mut Cx<Ctx>) {
        let Some(nat) = self.net.as_mut() else {
            return;
        };
        let frames = core::mem::take(&mut self.shared.inner.lock().net_from_guest);
        nat.on_guest_frames(cx, frames);
        self.net_service(cx);
    }

    /// Runs the NAT and hands the vCPU thread what it has for the guest;
    /// what does not fit waits (smoltcp holds back meanwhile).
    pub(crate) fn net_service(&mut self, cx: &mut Cx<Ctx>) {
        let Some(nat) = self.net.as_mut() else {
            return;
        };
        let offload = self.shared.net_checksum_offload.load(Ordering::Relaxed);
        nat.set_checksum_offload(offload);
        nat.service(cx);
        let mut sent = false;
        {
            let mut inner = self.shared.inner.lock();
            while inner.net_to_guest.len() < NET_QUEUE_MAX {
                let Some(frame) = nat.next_to_guest() else {
                    break;
                };
                inner.net_to_guest.push_back(frame);
                sent = true;
            }
            if nat.has_to_guest() {
                self.shared.net_paused.store(true, Ordering::Release);
            }
        }
        if sent {
            self.kick_vcpu(cx);
        }
    }
}
