//! One handler per main-loop event. Each does what its event asks, then
//! [`Server::after_event`] runs the service round if it is due.

use alloc::string::ToString;

use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::message::codes;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

use crate::link;
use crate::link::parse_mac;
use crate::requests::send_error;
use crate::server::Ctx;
use crate::server::Server;

impl Handler for Server {
    type State = Ctx;

    /// A new client (a component that needs `tcpip`).
    fn connect(&mut self, cx: &mut Cx<Ctx>, _service: &str, ch: Channel) -> Result<(), Error> {
        if let Err(e) = cx.add_channel(ch, Ctx::Client) {
            log::warn!("cannot accept a client: {e}");
        }
        self.after_event(cx);
        Ok(())
    }

    fn message(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: HandleId,
        state: &mut Ctx,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        match state {
            Ctx::Net => self.on_driver_message(cx, id, msg),
            Ctx::Client => self.on_client_message(cx, id, msg),
            Ctx::Conn(conn) => self.on_conn_message(*conn, msg),
            Ctx::Listener(listener) => match msg {
                Message::Close => self.unlisten(cx, *listener),
                other => log::warn!("ignoring an unexpected {:?}", other.kind()),
            },
            Ctx::UdpListener(listener) => self.on_udp_listener_message(cx, *listener, msg),
            Ctx::UdpLoopback(flow) => self.on_udp_loopback_message(cx, *flow, msg),
            Ctx::Timer => {}
        }
        self.after_event(cx);
        Ok(())
    }

    /// A channel's peer closed; the loop already dropped the channel.
    fn peer_closed(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, state: Ctx) -> Result<(), Error> {
        match state {
            Ctx::Conn(id) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.client_gone = true;
                    c.client_closed = true;
                    // Its handle number may name a new channel soon.
                    // Never use it again.
                    c.ch = HandleId(0);
                }
            }
            Ctx::Listener(id) => {
                // Already out of the main loop; forget its handle number.
                if let Some(l) = self.listeners.get_mut(&id) {
                    l.ch = HandleId(0);
                }
                self.unlisten(cx, id);
            }
            Ctx::UdpListener(id) => {
                if let Some(l) = self.udp_listeners.get_mut(&id) {
                    l.ch = HandleId(0);
                }
                self.udp_unlisten(cx, id);
            }
            Ctx::UdpLoopback(id) => {
                if let Some(flow) = self.udp_loopbacks.flows.get_mut(&id) {
                    flow.ch = HandleId(0);
                }
                self.udp_loopback_closed(cx, id);
            }
            Ctx::Net => {
                log::error!("the network driver went away; waiting for it to come back");
                self.net = None;
            }
            Ctx::Client | Ctx::Timer => {}
        }
        self.after_event(cx);
        Ok(())
    }

    /// The poll timer: time for a service round.
    fn timer(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, _: &mut Ctx) -> Result<(), Error> {
        self.after_event(cx);
        Ok(())
    }

    /// A channel's backlog went out: the next round sends more to it.
    fn drained(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, _: &mut Ctx) -> Result<(), Error> {
        self.after_event(cx);
        Ok(())
    }

    fn bad_message(
        &mut self,
        cx: &mut Cx<Ctx>,
        _id: HandleId,
        _: &mut Ctx,
        error: Error,
    ) -> Result<(), Error> {
        log::warn!("dropped a malformed message: {error}");
        self.after_event(cx);
        Ok(())
    }
}

impl Server {
    /// The driver's link announcement or a frame.
    fn on_driver_message(&mut self, cx: &mut Cx<Ctx>, id: HandleId, msg: Message<'_>) {
        match msg {
            Message::Data(frame) => self.on_frame(cx, id, frame),
            Message::Open { uri, .. } => match uri.strip_prefix("ethernet:").and_then(parse_mac) {
                Some(mac) => self.link_up(mac),
                None => log::warn!("unexpected link announcement '{uri}'"),
            },
            other => log::warn!("ignoring an unexpected {:?}", other.kind()),
        }
    }

    /// Frames from the driver (one message packs several).
    fn on_frame(&mut self, cx: &mut Cx<Ctx>, id: HandleId, frames: &[u8]) {
        self.link.push_rx_batch(frames);
        // Frames in move the protocol on (ACKs open windows): no waiting
        // for the next round.
        self.urgent = true;
        // Take the frames already queued before the (costly) service
        // round, so bursts do not back up in the driver; but only as many
        // as our queue holds: the rest wait in the channel, the driver and
        // the NIC (backpressure).
        let Some(ch) = cx.channel(id) else { return };
        while self.link.rx.len() < link::RX_QUEUE_MAX {
            match ch.try_recv(&mut self.net_buf) {
                Ok(Message::Data(frames)) => self.link.push_rx_batch(frames),
                Ok(other) => log::warn!("unexpected {:?} from the driver", other.kind()),
                Err(_) => break,
            }
        }
    }

    /// A request from a client: `Open` without a handle.
    fn on_client_message(&mut self, cx: &mut Cx<Ctx>, id: HandleId, msg: Message<'_>) {
        match msg {
            Message::Open {
                call_id,
                uri,
                handle: None,
            } => self.open(cx, id, call_id, uri.to_string()),
            msg => {
                log::warn!("unexpected {:?} from a client", msg.kind());
                if let Message::Open { call_id, .. } = msg {
                    send_error(cx, id, call_id, codes::INVALID, "Open must carry no handle");
                }
            }
        }
    }
}
