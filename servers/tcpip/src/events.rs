//! What each main-loop event does. An event borrows the loop, so what
//! needs the loop itself (adding a client, answering a request, closing a
//! listener) comes back as an [`After`] and is done once the event is
//! handled.

use alloc::string::String;
use alloc::string::ToString;

use starina::channel::Channel;
use starina::mainloop::legacy::Event;
use starina::mainloop::legacy::Mainloop;
use starina::message::codes;
use starina::HandleId;
use starina::Message;

use crate::link;
use crate::link::parse_mac;
use crate::requests::send_error;
use crate::server::Server;
use crate::Ctx;

/// What an event leaves to do with the main loop free.
enum After {
    Nothing,
    /// A new client connected: watch its channel.
    AddClient(Channel),
    /// The driver announced the link with this MAC address.
    LinkUp([u8; 6]),
    /// A client asked to open `uri`.
    Open {
        client: HandleId,
        call_id: u32,
        uri: String,
    },
    /// Listener `id` is closed (by its client or because it went away).
    Unlisten(u32),
}

impl Server {
    /// Waits for the next event and handles it.
    pub fn handle_event(&mut self, ml: &mut Mainloop<Ctx>) {
        let after = match ml.next() {
            Event::Message { ctx, ch, msg } => self.on_message(ctx, ch, msg),
            Event::PeerClosed { ctx, .. } => self.on_peer_closed(ctx),
            Event::Writable { ctx, ch } => {
                self.on_writable(ctx, ch);
                After::Nothing
            }
            Event::Timer { .. } => After::Nothing,
            Event::Error { error, .. } => {
                log::warn!("dropped a malformed message: {error}");
                After::Nothing
            }
        };
        match after {
            After::Nothing => {}
            After::AddClient(ch) => {
                if let Err(e) = ml.add_channel(ch, Ctx::Client) {
                    log::warn!("cannot accept a client: {e}");
                }
            }
            After::LinkUp(mac) => self.link_up(mac),
            After::Open {
                client,
                call_id,
                uri,
            } => self.open(ml, client, call_id, uri),
            After::Unlisten(id) => self.unlisten(ml, id),
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx, ch: &Channel, msg: Message<'_>) -> After {
        match (ctx, msg) {
            (
                Ctx::Supervisor,
                Message::Open {
                    uri,
                    handle: Some(handle),
                    ..
                },
            ) if uri.starts_with("connect:") => After::AddClient(Channel::from_handle(handle)),
            (Ctx::Net, Message::Data(frame)) => {
                self.on_frame(ch, frame);
                After::Nothing
            }
            (Ctx::Net, Message::Open { uri, .. }) => {
                match uri.strip_prefix("ethernet:").and_then(parse_mac) {
                    Some(mac) => After::LinkUp(mac),
                    None => {
                        log::warn!("unexpected link announcement '{uri}'");
                        After::Nothing
                    }
                }
            }
            (
                Ctx::Client,
                Message::Open {
                    call_id,
                    uri,
                    handle: None,
                },
            ) => After::Open {
                client: ch.id(),
                call_id,
                uri: uri.to_string(),
            },
            (Ctx::Client, msg) => {
                log::warn!("unexpected {:?} from a client", msg.kind());
                if let Message::Open { call_id, .. } = msg {
                    send_error(
                        Some(ch),
                        call_id,
                        codes::INVALID,
                        "Open must carry no handle",
                    );
                }
                After::Nothing
            }
            (Ctx::Conn(id), msg) => {
                let id = *id;
                self.on_conn_message(id, msg);
                After::Nothing
            }
            (Ctx::Listener(id), Message::Close) => After::Unlisten(*id),
            (_, msg) => {
                log::warn!("ignoring an unexpected {:?}", msg.kind());
                After::Nothing
            }
        }
    }

    /// A frame from the driver.
    fn on_frame(&mut self, ch: &Channel, frame: &[u8]) {
        self.link.push_rx(frame);
        // Frames in move the protocol on (ACKs open windows): no waiting
        // for the next round.
        self.urgent = true;
        // Take the frames already queued before the (costly) service
        // round, so bursts do not back up in the driver; but only as many
        // as our queue holds: the rest wait in the channel, the driver and
        // the NIC (backpressure).
        while self.link.rx.len() < link::RX_QUEUE_MAX {
            match ch.try_recv(&mut self.net_buf) {
                Ok(Message::Data(frame)) => self.link.push_rx(frame),
                Ok(other) => log::warn!("unexpected {:?} from the driver", other.kind()),
                Err(_) => break,
            }
        }
    }

    /// A channel's peer closed; the main loop already dropped the channel.
    fn on_peer_closed(&mut self, ctx: Ctx) -> After {
        match ctx {
            Ctx::Conn(id) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.client_gone = true;
                    c.client_closed = true;
                    c.to_client = None;
                    // Its handle number may name a new channel soon.
                    // Never use it again.
                    c.ch = HandleId(0);
                }
                After::Nothing
            }
            Ctx::Listener(id) => {
                // Already out of the main loop; forget its handle number.
                if let Some(l) = self.listeners.get_mut(&id) {
                    l.ch = HandleId(0);
                }
                After::Unlisten(id)
            }
            Ctx::Net => {
                log::error!("the network driver went away; waiting for it to come back");
                self.net = None;
                After::Nothing
            }
            Ctx::Supervisor => {
                log::warn!("supervisor channel closed");
                After::Nothing
            }
            Ctx::Client | Ctx::Timer => After::Nothing,
        }
    }

    /// A channel's queue has room again (we asked after `QueueFull`):
    /// stop watching; the next service round sends.
    fn on_writable(&mut self, ctx: &mut Ctx, ch: &Channel) {
        match ctx {
            Ctx::Conn(id) => {
                let id = *id;
                if let Some(c) = self.conns.get_mut(&id) {
                    c.watching_writable = false;
                }
                let conn_ch = self.conns.get(&id).map_or(HandleId(0), |c| c.ch);
                self.changes.watch.push((conn_ch, false));
            }
            Ctx::Listener(_) => self.changes.watch.push((ch.id(), false)),
            Ctx::Net => {
                self.net_watching = false;
                self.changes.watch.push((ch.id(), false));
            }
            _ => {}
        }
    }
}
