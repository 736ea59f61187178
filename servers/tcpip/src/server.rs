//! The server's state, and the service round: poll smoltcp, then move
//! what it made possible (DHCP, waiting requests, new connections, data),
//! until nothing is left to do now. A round runs after an event when one
//! is due (or something cannot wait), and on the poll timer.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::Interface;
use smoltcp::iface::PollIngressSingleResult;
use smoltcp::iface::PollResult;
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Address;
use starina::channel::MessageBuffer;
use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina::Channel;
use starina::HandleId;

use crate::conn::Conn;
use crate::link;
use crate::link::Link;
use crate::listener::Listener;
use crate::requests::Pending;
use crate::requests::Refusal;
use crate::timeouts::timeout_ns;
use crate::timeouts::STALL_TIMEOUT_MS;
use crate::timeouts::SYN_TIMEOUT_MS;
use crate::udp_listener::UdpListener;
use crate::udp_loopback::UdpLoopbacks;
use crate::Config;

/// Longest wait between two smoltcp polls (timeouts are checked then).
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Events handled between two service rounds at most this far apart:
/// a round polls every socket, so under load (hundreds of connections,
/// each sending several messages) one round per event would cost far more
/// than the events themselves.
const SERVICE_INTERVAL_NS: u64 = 2_000_000;

/// Passes of poll-and-move in one service round at most. Each pass costs
/// time in proportion to the sockets open, and no event (a new request, a
/// client's data) is taken while a round runs: with a hundred busy
/// connections, rounds of many passes kept the loop from everything else
/// for seconds. The next round comes at once anyway when frames wait.
const SERVICE_PASSES: usize = 4;

/// What each object in the main loop is to the server.
pub enum Ctx {
    /// The network driver's channel.
    Net,
    /// A client's channel (its `Open` requests).
    Client,
    /// A listener channel handed to a client (key in `Server::listeners`).
    Listener(u32),
    /// A UDP listener channel (key in `Server::udp_listeners`).
    UdpListener(u32),
    /// A connection channel handed to a client (key in `Server::conns`).
    Conn(u32),
    /// A loopback UDP flow's channel (key in `Server::udp_loopbacks`).
    UdpLoopback(u32),
    /// The poll timer.
    Timer,
}

/// smoltcp's clock.
pub fn now() -> Instant {
    Instant::from_micros((now_ns() / 1000) as i64)
}

/// Local ports for outgoing connections and UDP, handed out in turn.
pub struct Ports {
    next: u16,
}

impl Ports {
    const FIRST: u16 = 49152;

    pub fn new() -> Ports {
        Ports { next: Ports::FIRST }
    }

    pub fn next(&mut self) -> u16 {
        let port = self.next;
        self.next = if self.next == u16::MAX {
            Ports::FIRST
        } else {
            self.next + 1
        };
        port
    }
}

pub struct Server {
    /// Listening sockets kept ready per listener.
    pub backlog: usize,
    /// Bytes of each TCP socket's receive buffer.
    pub buffer: usize,
    /// Bytes of the receive buffer of connections clients open (`tcp:`).
    pub connect_buffer: usize,
    /// Bytes of each TCP socket's send buffer.
    pub send_buffer: usize,
    /// How long a half-open connection may hold a listening socket.
    pub syn_timeout_ns: u64,
    /// How long a connection may have bytes waiting for a peer that
    /// acknowledges none before it is reset.
    pub stall_timeout_ns: u64,
    /// Half-open connections reset by the SYN timeout, so far.
    pub syn_expired: u64,
    /// Connections reset by the stall timeout, so far.
    pub stalled: u64,
    pub iface: Option<Interface>,
    pub link: Link,
    pub sockets: SocketSet<'static>,
    pub dhcp: Option<SocketHandle>,
    pub dns: Option<SocketHandle>,
    /// The DNS servers DHCP gave (for `udp-dns:`).
    pub dns_servers: Vec<Ipv4Address>,
    /// The last peer "port" a loopback connection was given.
    pub loopback_peer: u16,
    /// Loopback connections made, for `stats:`.
    pub loopback_connections: u64,
    pub configured: bool,
    pub listeners: BTreeMap<u32, Listener>,
    pub udp_listeners: BTreeMap<u32, UdpListener>,
    pub udp_loopbacks: UdpLoopbacks,
    pub conns: BTreeMap<u32, Conn>,
    pub pending: Vec<Pending>,
    /// Sockets closing or aborted, removed once done.
    pub zombies: Vec<SocketHandle>,
    next_id: u32,
    pub ports: Ports,
    pub net: Option<HandleId>,
    /// The driver's channel, while it is out of the main loop (not read
    /// from) because `link.rx` is full: frames then wait in the channel,
    /// the driver and the NIC instead of being dropped.
    pub net_paused: bool,
    /// Receive buffer for draining the driver's channel.
    pub net_buf: MessageBuffer,
    /// The poll timer.
    timer: HandleId,
    /// When the next service round is due (`now_ns`).
    next_service: u64,
    /// Something cannot wait for the next round (a queue hit its limit).
    pub urgent: bool,
    /// The last round stopped with work left.
    unfinished: bool,
    /// The connection `move_data` serves first next time.
    pub conn_cursor: u32,
}

impl Server {
    pub fn new(config: &Config, net: HandleId, timer: HandleId) -> Server {
        Server {
            backlog: (config.backlog.clamp(1, 512)) as usize,
            buffer: (config.socket_buffer.clamp(2048, 1 << 20)) as usize,
            connect_buffer: (config.connect_buffer.clamp(2048, 1 << 20)) as usize,
            send_buffer: (config.send_buffer.clamp(2048, 1 << 20)) as usize,
            syn_timeout_ns: timeout_ns(config.syn_timeout_ms, SYN_TIMEOUT_MS),
            stall_timeout_ns: timeout_ns(config.stall_timeout_ms, STALL_TIMEOUT_MS),
            syn_expired: 0,
            stalled: 0,
            iface: None,
            link: Link::new(),
            sockets: SocketSet::new(vec![]),
            dhcp: None,
            dns: None,
            dns_servers: Vec::new(),
            loopback_peer: 0,
            loopback_connections: 0,
            configured: false,
            listeners: BTreeMap::new(),
            udp_listeners: BTreeMap::new(),
            udp_loopbacks: UdpLoopbacks::new(),
            conns: BTreeMap::new(),
            pending: Vec::new(),
            zombies: Vec::new(),
            next_id: 1,
            ports: Ports::new(),
            net: Some(net),
            net_paused: false,
            net_buf: MessageBuffer::new(),
            timer,
            next_service: 0,
            urgent: false,
            unfinished: false,
            conn_cursor: 0,
        }
    }

    /// A fresh key for `listeners` or `conns` (never 0).
    pub fn alloc_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// A channel for a request being served: our end joins the main loop
    /// as `ctx(key)` under a fresh key; the other end is for the reply.
    /// Returns the key, our end's handle and the client's end.
    pub fn open_channel(
        &mut self,
        cx: &mut Cx<Ctx>,
        ctx: impl FnOnce(u32) -> Ctx,
    ) -> Result<(u32, HandleId, Channel), Refusal> {
        let (ours, theirs) = Channel::create().map_err(|e| Refusal::unavailable(format!("{e}")))?;
        let id = self.alloc_id();
        let ch = cx
            .add_channel(ours, ctx(id))
            .map_err(|e| Refusal::unavailable(format!("{e}")))?;
        Ok((id, ch, theirs))
    }

    /// Runs after every event: the service round if it is due (or
    /// something cannot wait), then the poll timer armed for the next one.
    pub fn after_event(&mut self, cx: &mut Cx<Ctx>) {
        let now = now_ns();
        let delay = if now >= self.next_service || self.urgent {
            self.urgent = false;
            self.service(cx);
            self.next_service = now_ns() + SERVICE_INTERVAL_NS;
            self.poll_delay()
        } else {
            // Take the events that queue up until the round is due.
            Duration::from_micros((self.next_service - now).div_ceil(1000))
        };
        let ns = delay.total_micros().saturating_mul(1000);
        if let Err(e) = cx.set_timer(self.timer, ns) {
            log::error!("cannot arm the poll timer: {e}");
        }
    }

    /// How long the main loop may wait for events before the next round.
    fn poll_delay(&mut self) -> Duration {
        let Some(iface) = self.iface.as_mut() else {
            return MAX_POLL_INTERVAL;
        };
        if !self.link.rx.is_empty() || self.unfinished {
            return Duration::ZERO;
        }
        match iface.poll_delay(now(), &self.sockets) {
            Some(d) if d < MAX_POLL_INTERVAL => d,
            _ => MAX_POLL_INTERVAL,
        }
    }

    /// Polls smoltcp and moves data until nothing is left to do now (or
    /// `SERVICE_PASSES` ran: then the next round comes as soon as the
    /// events waiting meanwhile are taken).
    fn service(&mut self, cx: &mut Cx<Ctx>) {
        self.unfinished = true;
        for _ in 0..SERVICE_PASSES {
            if self.iface.is_none() {
                break;
            }
            self.link.rx_budget = link::RX_BUDGET;
            self.ready_listeners(link::RX_BUDGET);
            self.budget_syns();
            self.poll_ingress();
            self.dhcp_events();
            self.retry_pending(cx);
            let mut progress = self.accept(cx);
            progress |= self.move_data(cx);
            progress |= self.move_udp_listeners(cx);
            // After the clients took what arrived: the ACKs then offer the
            // window their reads freed, not what was left before them.
            self.poll_egress();
            self.reap();
            self.flush_tx(cx);
            if !progress && self.link.rx.is_empty() {
                self.unfinished = false;
                break;
            }
        }
        self.throttle_rx(cx);
    }

    /// smoltcp takes the frames that arrived (within the link's budget).
    fn poll_ingress(&mut self) {
        let Some(iface) = self.iface.as_mut() else {
            return;
        };
        let now = now();
        iface.poll_maintenance(now);
        while iface.poll_ingress_single(now, &mut self.link, &mut self.sockets)
            != PollIngressSingleResult::None
        {}
    }

    /// smoltcp sends what its sockets have for the wire (ACKs, data).
    fn poll_egress(&mut self) {
        let Some(iface) = self.iface.as_mut() else {
            return;
        };
        let now = now();
        while iface.poll_egress(now, &mut self.link, &mut self.sockets) != PollResult::None {}
    }

    /// New connections a listener can take now: SYNs beyond that are
    /// dropped (the peer retries) rather than refused with a reset.
    fn budget_syns(&mut self) {
        self.link.syn_budget.clear();
        let mut next = self.link.rx.iter().take(self.link.rx_budget);
        if !next.any(|f| link::syn_port(f).is_some()) {
            // No SYN this poll: no listener to count sockets for.
            return;
        }
        for l in self.listeners.values() {
            let free = l
                .sockets
                .iter()
                .filter(|s| self.sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Listen)
                .count();
            self.link.syn_budget.push((l.port, free));
        }
    }

    /// Stops reading the driver's channel while `link.rx` is full, and
    /// reads it again once half of that is processed.
    fn throttle_rx(&mut self, cx: &mut Cx<Ctx>) {
        let Some(net) = self.net else { return };
        let full = self.link.rx.len() >= link::RX_QUEUE_MAX;
        let result = if full && !self.net_paused {
            self.net_paused = true;
            cx.pause_receiving(net)
        } else if self.net_paused && self.link.rx.len() < link::RX_QUEUE_MAX / 2 {
            self.net_paused = false;
            cx.resume_receiving(net)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            log::error!("cannot pause or resume reading the network driver: {e}");
        }
    }

    /// Removes sockets that finished closing (TIME-WAIT is not kept: the
    /// peer already acknowledged everything).
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.zombies.retain(|&s| {
            let remove = match sockets.iter().find(|(h, _)| *h == s) {
                Some((_, smoltcp::socket::Socket::Tcp(t))) => {
                    matches!(t.state(), tcp::State::Closed | tcp::State::TimeWait)
                }
                Some(_) => true,
                None => return false,
            };
            if remove {
                sockets.remove(s);
            }
            !remove
        });
    }

    /// Hands queued frames to the driver, packed into as few messages as
    /// they fit in, while its channel has no backlog (the rest waits in
    /// `link.tx`, which holds smoltcp back when full; `drained` brings the
    /// next round).
    fn flush_tx(&mut self, cx: &mut Cx<Ctx>) {
        let Some(net) = self.net else {
            self.link.tx.clear();
            return;
        };
        while cx.backlog_bytes(net) == 0 {
            let Some(batch) = self.link.tx.front() else {
                break;
            };
            if let Err(e) = cx.send_data(net, batch) {
                log::warn!("cannot hand frames to the driver: {e}");
                self.link.tx.clear();
                return;
            }
            self.link.tx.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_wrap_to_the_ephemeral_range() {
        let mut ports = Ports { next: u16::MAX - 1 };
        assert_eq!(ports.next(), u16::MAX - 1);
        assert_eq!(ports.next(), u16::MAX);
        assert_eq!(ports.next(), 49152);
        assert_eq!(ports.next(), 49153);
    }
}
