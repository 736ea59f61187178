//! UDP listeners: `udp-listen:0.0.0.0:<port>` binds a UDP socket to the
//! port, and its channel carries datagrams from any peer and answers to
//! each, both ways one `Data` per datagram with the peer in front
//! (`starina::datagram`: 4 bytes IPv4 address, 2 bytes port, big-endian,
//! then the payload).
//!
//! Bounded like the rest: the socket has fixed buffers
//! (`LISTEN_PACKETS` datagrams, `LISTEN_BUFFER` bytes each way); datagrams
//! for the client are read from the socket only while its channel has no
//! backlog, so a slow client loses the datagrams past the socket's
//! buffer, as a slow host does. A client's datagram that does not fit in
//! the send buffer, or whose header is malformed, is dropped with a log
//! line (at most one a second per listener).

use alloc::format;
use alloc::vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;
use smoltcp::wire::IpEndpoint;
use smoltcp::wire::Ipv4Address;
use starina::datagram;
use starina::datagram::Peer;
use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina::HandleId;
use starina::Message;

use crate::requests::send_reply;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;

/// Datagrams each way a listener's socket holds at most.
const LISTEN_PACKETS: usize = 64;
/// Payload bytes each way a listener's socket holds at most.
const LISTEN_BUFFER: usize = 64 * 1024;
/// The DHCP client's port: smoltcp's DHCP socket takes its datagrams.
const DHCP_CLIENT_PORT: u16 = 68;
/// Tries at most to find an ephemeral port no listener holds.
const PORT_TRIES: usize = 64;

pub struct UdpListener {
    pub port: u16,
    pub socket: SocketHandle,
    pub ch: HandleId,
    /// Datagrams from the client dropped (malformed or no room), so far.
    pub dropped: u64,
    /// No drop is logged before this (`now_ns`).
    quiet_until: u64,
}

impl Server {
    /// Whether a UDP socket of ours is bound to `port` (a listener's, or a
    /// `udp:` channel's ephemeral port), or tcpip itself uses it.
    pub fn udp_port_taken(&self, port: u16) -> bool {
        port == DHCP_CLIENT_PORT
            || self.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Udp(u) => u.endpoint().port == port,
                _ => false,
            })
    }

    /// The next ephemeral port for a `udp:` channel that no UDP socket
    /// holds (a listener may have taken one of the range).
    pub fn free_udp_port(&mut self) -> u16 {
        let mut port = self.ports.next();
        for _ in 0..PORT_TRIES {
            if !self.udp_port_taken(port) {
                break;
            }
            port = self.ports.next();
        }
        port
    }

    /// Serves `udp-listen:0.0.0.0:<port>`.
    pub fn udp_listen(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        port: u16,
    ) -> Result<(), Refusal> {
        if self.udp_port_taken(port) {
            return Err(Refusal::unavailable(format!("UDP port {port} is in use")));
        }
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; LISTEN_PACKETS],
                vec![0; LISTEN_BUFFER],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket
            .bind(port)
            .map_err(|e| Refusal::unavailable(format!("bind UDP port {port}: {e}")))?;
        let (id, ch, theirs) = self.open_channel(cx, Ctx::UdpListener)?;
        let socket = self.sockets.add(socket);
        self.udp_listeners.insert(
            id,
            UdpListener {
                port,
                socket,
                ch,
                dropped: 0,
                quiet_until: 0,
            },
        );
        send_reply(cx, client, call_id, theirs);
        log::info!("listening on UDP port {port}");
        Ok(())
    }

    /// Closes UDP listener `id`: its socket goes, and its channel (unless
    /// `peer_closed` already took it out of the loop: `ch` is then 0).
    pub fn udp_unlisten(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(l) = self.udp_listeners.remove(&id) {
            self.sockets.remove(l.socket);
            if l.ch != HandleId(0) {
                cx.remove(l.ch);
            }
            log::info!(
                "stopped listening on UDP port {} ({} datagrams from the client dropped)",
                l.port,
                l.dropped
            );
        }
    }

    /// A message from the client of UDP listener `id`: a datagram to send,
    /// or `Close`.
    pub fn on_udp_listener_message(&mut self, cx: &mut Cx<Ctx>, id: u32, msg: Message<'_>) {
        let body = match msg {
            Message::Data(body) => body,
            Message::Close => return self.udp_unlisten(cx, id),
            other => {
                log::warn!("UDP listener {id}: ignoring {:?}", other.kind());
                return;
            }
        };
        let Some(port) = self.udp_listeners.get(&id).map(|l| l.port) else {
            return;
        };
        let decoded = datagram::decode(body);
        if let Ok((peer, payload)) = decoded {
            // To a client of ours (`udp:127.0.0.1:<port>`): no network.
            if self.send_to_udp_loopback(cx, port, peer, payload) {
                return;
            }
        }
        let Some(l) = self.udp_listeners.get_mut(&id) else {
            return;
        };
        let socket = self.sockets.get_mut::<udp::Socket>(l.socket);
        let why = match decoded {
            Err(e) => format!("a malformed datagram from the client ({e})"),
            Ok((peer, payload)) => match socket.send_slice(payload, endpoint(peer)) {
                Ok(()) => {
                    self.urgent = true;
                    return;
                }
                Err(e) => format!(
                    "a datagram of {} bytes to {} ({e})",
                    payload.len(),
                    endpoint(peer)
                ),
            },
        };
        l.dropped += 1;
        if log_due(&mut l.quiet_until) {
            log::warn!("UDP port {}: dropped {why}", l.port);
        }
    }

    /// Hands the datagrams each UDP listener received to its client while
    /// its channel has no backlog; true if any moved.
    pub fn move_udp_listeners(&mut self, cx: &mut Cx<Ctx>) -> bool {
        let mut progress = false;
        for l in self.udp_listeners.values() {
            let socket = self.sockets.get_mut::<udp::Socket>(l.socket);
            while cx.backlog_bytes(l.ch) == 0 {
                let Ok((payload, meta)) = socket.recv() else {
                    break;
                };
                progress = true;
                // IPv4 only (smoltcp is built without IPv6).
                let IpAddress::Ipv4(addr) = meta.endpoint.addr;
                let peer = Peer {
                    addr: addr.octets(),
                    port: meta.endpoint.port,
                };
                let Some(body) = datagram::encode(peer, payload) else {
                    log::debug!(
                        "UDP port {}: dropped a datagram of {} bytes (more than a message holds)",
                        l.port,
                        payload.len()
                    );
                    continue;
                };
                if let Err(e) = cx.send_data(l.ch, &body) {
                    log::debug!("UDP port {}: cannot hand a datagram over: {e}", l.port);
                    break;
                }
            }
        }
        progress
    }
}

/// Whether a rate-limited log line may go now (at most one a second per
/// `quiet_until`, which this moves on when it says yes).
pub fn log_due(quiet_until: &mut u64) -> bool {
    let now = now_ns();
    if now < *quiet_until {
        return false;
    }
    *quiet_until = now + 1_000_000_000;
    true
}

fn endpoint(peer: Peer) -> IpEndpoint {
    let [a, b, c, d] = peer.addr;
    IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(a, b, c, d)), peer.port)
}
