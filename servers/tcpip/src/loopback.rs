//! Connections from one client of tcpip to another's listener on this
//! machine (`tcp:127.0.0.1:<port>`, `tcp:localhost:<port>`, or `linux` for
//! a port the linux server forwards into its guest): no TCP at all, the
//! two get the two ends of one channel, speaking the connection protocol
//! (`Data`, `Close`, `Abort`) directly. The listener's client sees
//! `Open { uri: "tcp-conn:127.0.0.1:<n>" }` as for any connection.

use alloc::format;

use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::HandleId;
use starina::Message;

use crate::requests::send_reply;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;

/// The names that mean this machine.
pub const LOCAL_NAMES: &[&str] = &["localhost", "linux"];

/// The first "port" loopback peers are numbered from.
const FIRST_PEER_PORT: u16 = 49152;

impl Server {
    /// Connects `client` to the listener on `port`, or refuses as a port
    /// nobody listens on is refused.
    pub fn connect_loopback(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        port: u16,
    ) -> Result<(), Refusal> {
        let Some(listener) = self.listeners.values().find(|l| l.port == port) else {
            return Err(Refusal::new(
                codes::REFUSED,
                format!("connection refused: nothing listens on port {port} here"),
            ));
        };
        let listener = listener.ch;
        let (server_end, client_end) =
            Channel::create().map_err(|e| Refusal::unavailable(format!("{e}")))?;
        self.loopback_peer = self.loopback_peer.wrapping_add(1).max(FIRST_PEER_PORT);
        let uri = format!("tcp-conn:127.0.0.1:{}", self.loopback_peer);
        let offer = Message::Open {
            call_id: 0,
            uri: &uri,
            handle: Some(server_end.into_handle()),
        };
        cx.send(listener, offer)
            .map_err(|e| Refusal::unavailable(format!("port {port}: {e}")))?;
        self.loopback_connections += 1;
        send_reply(cx, client, call_id, client_end);
        Ok(())
    }
}

impl Server {
    /// Whether `ip` is this machine: 127.0.0.0/8 or our own address.
    pub fn is_local(&self, ip: smoltcp::wire::Ipv4Address) -> bool {
        ip.octets()[0] == 127
            || self.iface.as_ref().is_some_and(|iface| {
                iface
                    .ip_addrs()
                    .iter()
                    .any(|a| a.address() == smoltcp::wire::IpAddress::Ipv4(ip))
            })
    }
}
