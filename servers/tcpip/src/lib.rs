//! The TCP/IP server: smoltcp on the virtio-net driver's frames, serving
//! TCP, UDP and DNS to other components over channels.
//!
//! A client (a component that needs `tcpip`) sends `Open { call_id, uri }`:
//! - `tcp-listen:0.0.0.0:<port>`: `OpenReply` with a listener channel, on
//!   which each accepted connection arrives as
//!   `Open { uri: "tcp-conn:<peer ip>:<port>", handle }`;
//! - `tcp:<host>:<port>` (host: IPv4 address or DNS name): `OpenReply`
//!   with a connection channel once connected;
//! - `udp:<host>:<port>`: `OpenReply` with a channel on which each `Data`
//!   is one datagram to or from that peer.
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
//! The network is configured by DHCP (QEMU user networking: 10.0.2.15,
//! gateway 10.0.2.2, DNS 10.0.2.3). Requests that arrive before that wait
//! (up to `WAIT_FOR_NETWORK_NS`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod link;
mod uri;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::Config as IfaceConfig;
use smoltcp::iface::Interface;
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::dhcpv4;
use smoltcp::socket::dns;
use smoltcp::socket::tcp;
use smoltcp::socket::udp;
use smoltcp::time::Duration;
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use smoltcp::wire::HardwareAddress;
use smoltcp::wire::IpAddress;
use smoltcp::wire::IpCidr;
use smoltcp::wire::IpEndpoint;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::mainloop::legacy::Event;
use starina::mainloop::legacy::Mainloop;
use starina::message::codes;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::HandleId;
use starina::Message;

use link::Link;
use uri::Host;
use uri::Request;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// How long a request waits for the link and DHCP before failing.
const WAIT_FOR_NETWORK_NS: u64 = 20_000_000_000;
/// How long a connect or a DNS query may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const DNS_TIMEOUT_NS: u64 = 15_000_000_000;
/// Bytes read from the socket into one `Data` message.
const CHUNK: usize = 16 * 1024;
/// Bytes from a client waiting for the socket before we stop reading it.
const CLIENT_BACKLOG_MAX: usize = 64 * 1024;
/// Longest wait between two smoltcp polls (timeouts are checked then).
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Events handled between two service rounds at most this far apart:
/// a round polls every socket, so under load (hundreds of connections,
/// each sending several messages) one round per event would cost far more
/// than the events themselves.
const SERVICE_INTERVAL_NS: u64 = 2_000_000;
const UDP_PACKETS: usize = 32;
const UDP_BUFFER: usize = 16 * 1024;

enum Ctx {
    Supervisor,
    Net,
    Client,
    Listener(u32),
    Conn(u32),
    Timer,
}

struct Listener {
    port: u16,
    ch: HandleId,
    /// Sockets listening right now (each takes one connection).
    sockets: Vec<SocketHandle>,
    /// Accepted connections the client's queue could not take yet.
    accepted: VecDeque<(String, Channel)>,
}

struct Conn {
    socket: SocketHandle,
    /// UDP: the peer; TCP: `None`.
    udp: Option<IpEndpoint>,
    ch: HandleId,
    /// The channel, while it is out of the main loop (not read from)
    /// because the socket does not take the client's bytes fast enough.
    paused: Option<Channel>,
    to_socket: VecDeque<u8>,
    to_client: Option<Vec<u8>>,
    /// The client sent `Close` (or went away): FIN once `to_socket` drains.
    client_closed: bool,
    client_gone: bool,
    fin_sent: bool,
    /// We told the client the stream ended (`Close` or `Abort`).
    told_end: bool,
    watching_writable: bool,
    /// TCP connect: the request to answer once established.
    connecting: Option<(HandleId, u32, Channel)>,
    connect_deadline: u64,
}

enum Pending {
    /// Link or DHCP not ready yet.
    Waiting {
        client: HandleId,
        call_id: u32,
        uri: String,
        deadline: u64,
    },
    Resolving {
        query: dns::QueryHandle,
        client: HandleId,
        call_id: u32,
        port: u16,
        udp: bool,
        name: String,
        deadline: u64,
    },
}

struct Server {
    backlog: usize,
    buffer: usize,
    iface: Option<Interface>,
    link: Link,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    dns: Option<SocketHandle>,
    configured: bool,
    listeners: BTreeMap<u32, Listener>,
    conns: BTreeMap<u32, Conn>,
    pending: Vec<Pending>,
    /// Sockets closing or aborted, removed once done.
    zombies: Vec<SocketHandle>,
    next_id: u32,
    next_port: u16,
    net: Option<HandleId>,
    net_watching: bool,
    /// The driver's channel, while it is out of the main loop (not read
    /// from) because `link.rx` is full: frames then wait in the channel,
    /// the driver and the NIC instead of being dropped.
    net_paused: Option<Channel>,
    /// (channel, on): `watch_writable` calls to make.
    watch: Vec<(HandleId, bool)>,
    /// Channels to put back into the main loop.
    resume: Vec<(u32, Channel)>,
    /// Channels of new connections to add to the main loop.
    added: Vec<(Channel, Ctx)>,
    /// Receive buffer for draining the driver's channel.
    net_buf: MessageBuffer,
    /// When the next service round is due (`now_ns`).
    next_service: u64,
    /// Something cannot wait for the next round (a queue hit its limit).
    urgent: bool,
}

fn now() -> Instant {
    Instant::from_micros((now_ns() / 1000) as i64)
}

/// Why an open request was refused: the code and text of its `Error` reply.
struct Refusal {
    code: u16,
    text: String,
}

impl Refusal {
    fn new(code: u16, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
    }

    fn unavailable(text: impl Into<String>) -> Refusal {
        Refusal::new(codes::UNAVAILABLE, text)
    }
}

/// Sends the `Error` reply for a refused request (the one place requests
/// are refused from).
fn answer(ml: &Mainloop<Ctx>, client: HandleId, call_id: u32, result: Result<(), Refusal>) {
    if let Err(r) = result {
        send_error(ml.channel(client), call_id, r.code, &r.text);
    }
}

fn send_error(ch: Option<&Channel>, call_id: u32, code: u16, text: &str) {
    if let Some(ch) = ch {
        let _ = ch.send(Message::Error {
            call_id,
            code,
            text,
        });
    }
}

pub fn main(env: Env) -> Result<(), String> {
    let mut ml: Mainloop<Ctx> =
        Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let net_id = env.net.id();
    let setup = ml
        .add_channel(env.supervisor, Ctx::Supervisor)
        .and_then(|_| ml.add_channel(env.net, Ctx::Net))
        .and_then(|_| ml.add_timer(timer, Ctx::Timer));
    let timer_id = setup.map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let mut server = Server {
        backlog: (env.config.backlog.clamp(1, 512)) as usize,
        buffer: (env.config.socket_buffer.clamp(2048, 1 << 20)) as usize,
        iface: None,
        link: Link::new(),
        sockets: SocketSet::new(vec![]),
        dhcp: None,
        dns: None,
        configured: false,
        listeners: BTreeMap::new(),
        conns: BTreeMap::new(),
        pending: Vec::new(),
        zombies: Vec::new(),
        next_id: 1,
        next_port: 49152,
        net: Some(net_id),
        net_watching: false,
        net_paused: None,
        watch: Vec::new(),
        resume: Vec::new(),
        added: Vec::new(),
        net_buf: MessageBuffer::new(),
        next_service: 0,
        urgent: false,
    };
    loop {
        server.handle_event(&mut ml);
        let now = now_ns();
        let delay = if now >= server.next_service || server.urgent {
            server.urgent = false;
            server.service(&mut ml);
            server.next_service = now_ns() + SERVICE_INTERVAL_NS;
            server.poll_delay()
        } else {
            // Take the events that queue up until the round is due.
            Duration::from_micros((server.next_service - now).div_ceil(1000))
        };
        // The timer lives in the main loop; arm it by its handle.
        let ns = delay.total_micros().saturating_mul(1000);
        if let Err(e) = starina::timer::set_by_id(timer_id, ns) {
            log::error!("cannot arm the poll timer: {e}");
        }
    }
}

impl Server {
    fn alloc_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if self.next_port == u16::MAX {
            49152
        } else {
            self.next_port + 1
        };
        port
    }

    fn tcp_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; self.buffer]);
        let tx = tcp::SocketBuffer::new(vec![0; self.buffer]);
        let mut socket = tcp::Socket::new(rx, tx);
        socket.set_nagle_enabled(false);
        socket.set_timeout(Some(Duration::from_secs(120)));
        socket
    }

    fn poll_delay(&mut self) -> Duration {
        let Some(iface) = self.iface.as_mut() else {
            return MAX_POLL_INTERVAL;
        };
        if !self.link.rx.is_empty() {
            return Duration::ZERO;
        }
        match iface.poll_delay(now(), &self.sockets) {
            Some(d) if d < MAX_POLL_INTERVAL => d,
            _ => MAX_POLL_INTERVAL,
        }
    }

    fn handle_event(&mut self, ml: &mut Mainloop<Ctx>) {
        let mut new_client = None;
        let mut open = None;
        let mut link_up = None;
        let mut unlisten = None;
        match ml.next() {
            Event::Message {
                ctx: Ctx::Supervisor,
                msg:
                    Message::Open {
                        uri,
                        handle: Some(handle),
                        ..
                    },
                ..
            } if uri.starts_with("connect:") => new_client = Some(Channel::from_handle(handle)),
            Event::Message {
                ctx: Ctx::Net,
                ch,
                msg: Message::Data(frame),
            } => {
                self.link.push_rx(frame);
                // Frames in move the protocol on (ACKs open windows): no
                // waiting for the next round.
                self.urgent = true;
                // Take the frames already queued before the (costly)
                // service round, so bursts do not back up in the driver;
                // but only as many as our queue holds: the rest wait in
                // the channel, the driver and the NIC (backpressure).
                while self.link.rx.len() < link::RX_QUEUE_MAX {
                    match ch.try_recv(&mut self.net_buf) {
                        Ok(Message::Data(frame)) => self.link.push_rx(frame),
                        Ok(other) => log::warn!("unexpected {:?} from the driver", other.kind()),
                        Err(_) => break,
                    }
                }
            }
            Event::Message {
                ctx: Ctx::Net,
                msg: Message::Open { uri, .. },
                ..
            } => match uri.strip_prefix("ethernet:").and_then(parse_mac) {
                Some(mac) => link_up = Some(mac),
                None => log::warn!("unexpected link announcement '{uri}'"),
            },
            Event::Message {
                ctx: Ctx::Client,
                ch,
                msg:
                    Message::Open {
                        call_id,
                        uri,
                        handle: None,
                    },
            } => open = Some((ch.id(), call_id, uri.to_string())),
            Event::Message {
                ctx: Ctx::Client,
                ch,
                msg,
            } => {
                log::warn!("unexpected {:?} from a client", msg.kind());
                if let Message::Open { call_id, .. } = msg {
                    send_error(
                        Some(ch),
                        call_id,
                        codes::INVALID,
                        "Open must carry no handle",
                    );
                }
            }
            Event::Message {
                ctx: Ctx::Conn(id),
                msg,
                ..
            } => {
                let id = *id;
                self.on_conn_message(id, msg);
            }
            Event::Message {
                ctx: Ctx::Listener(id),
                msg: Message::Close,
                ..
            } => unlisten = Some(*id),
            Event::Message { msg, .. } => log::warn!("ignoring an unexpected {:?}", msg.kind()),
            Event::PeerClosed {
                ctx: Ctx::Conn(id), ..
            } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.client_gone = true;
                    c.client_closed = true;
                    c.to_client = None;
                    // The main loop dropped the channel: its handle number
                    // may name a new channel soon. Never use it again.
                    c.ch = HandleId(0);
                }
            }
            Event::PeerClosed {
                ctx: Ctx::Listener(id),
                ..
            } => {
                // Already out of the main loop; forget its handle number.
                if let Some(l) = self.listeners.get_mut(&id) {
                    l.ch = HandleId(0);
                }
                unlisten = Some(id);
            }
            Event::PeerClosed { ctx: Ctx::Net, .. } => {
                log::error!("the network driver went away; waiting for it to come back");
                self.net = None;
            }
            Event::PeerClosed {
                ctx: Ctx::Supervisor,
                ..
            } => log::warn!("supervisor channel closed"),
            Event::PeerClosed { .. } => {}
            Event::Writable {
                ctx: Ctx::Conn(id), ..
            } => {
                let id = *id;
                if let Some(c) = self.conns.get_mut(&id) {
                    c.watching_writable = false;
                }
                self.watch
                    .push((self.conns.get(&id).map_or(HandleId(0), |c| c.ch), false));
            }
            Event::Writable {
                ctx: Ctx::Listener(id),
                ch,
            } => {
                let id = *id;
                self.watch.push((ch.id(), false));
                let _ = id;
            }
            Event::Writable { ctx: Ctx::Net, ch } => {
                self.net_watching = false;
                self.watch.push((ch.id(), false));
            }
            Event::Writable { .. } | Event::Timer { .. } => {}
            Event::Error { error, .. } => log::warn!("dropped a malformed message: {error}"),
        }
        if let Some(ch) = new_client {
            match ml.add_channel(ch, Ctx::Client) {
                Ok(_) => {}
                Err(e) => log::warn!("cannot accept a client: {e}"),
            }
        }
        if let Some(mac) = link_up {
            self.link_up(mac);
        }
        if let Some((client, call_id, uri)) = open {
            self.open(ml, client, call_id, uri);
        }
        if let Some(id) = unlisten {
            self.unlisten(ml, id);
        }
    }

    fn on_conn_message(&mut self, id: u32, msg: Message<'_>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match msg {
            Message::Data(data) => {
                if c.client_closed {
                    log::warn!("connection {id}: data after Close; dropped");
                    return;
                }
                if let Some(peer) = c.udp {
                    let s = self.sockets.get_mut::<udp::Socket>(c.socket);
                    if let Err(e) = s.send_slice(data, peer) {
                        log::warn!("udp send to {peer} failed: {e}");
                    }
                    return;
                }
                c.to_socket.extend(data.iter().copied());
                if c.to_socket.len() >= CLIENT_BACKLOG_MAX {
                    self.urgent = true;
                }
            }
            Message::Close => c.client_closed = true,
            Message::Abort { .. } => {
                if c.udp.is_none() {
                    self.sockets.get_mut::<tcp::Socket>(c.socket).abort();
                }
                c.client_closed = true;
                c.client_gone = true;
                c.told_end = true;
                c.to_socket.clear();
            }
            other => log::warn!("connection {id}: ignoring {:?}", other.kind()),
        }
    }

    fn link_up(&mut self, mac: [u8; 6]) {
        if self.iface.is_some() {
            log::info!("network driver reconnected");
            return;
        }
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = now_ns();
        let iface = Interface::new(config, &mut self.link, now());
        self.iface = Some(iface);
        self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
        self.dns = Some(self.sockets.add(dns::Socket::new(&[], vec![])));
        log::info!("link up; asking for an address by DHCP");
    }

    fn unlisten(&mut self, ml: &mut Mainloop<Ctx>, id: u32) {
        if let Some(l) = self.listeners.remove(&id) {
            for s in l.sockets {
                self.sockets.get_mut::<tcp::Socket>(s).abort();
                self.zombies.push(s);
            }
            if l.ch != HandleId(0) {
                ml.remove_channel(l.ch);
            }
            log::info!("stopped listening on port {}", l.port);
        }
    }

    /// Serves an `Open` request from a client.
    fn open(&mut self, ml: &mut Mainloop<Ctx>, client: HandleId, call_id: u32, uri: String) {
        let request = match uri::parse(&uri) {
            Ok(r) => r,
            Err(e) => {
                let code = if e == uri::UriError::UnknownScheme {
                    codes::NOT_FOUND
                } else {
                    codes::INVALID
                };
                send_error(
                    ml.channel(client),
                    call_id,
                    code,
                    &format!("{uri}: {}", e.text()),
                );
                return;
            }
        };
        if request == Request::Stats {
            let result = self.send_stats(ml, client, call_id);
            answer(ml, client, call_id, result);
            return;
        }
        let ready =
            self.iface.is_some() && (self.configured || matches!(request, Request::Listen { .. }));
        if !ready {
            self.pending.push(Pending::Waiting {
                client,
                call_id,
                uri,
                deadline: now_ns() + WAIT_FOR_NETWORK_NS,
            });
            return;
        }
        match request {
            Request::Listen { port } => {
                let result = self.listen(ml, client, call_id, port);
                answer(ml, client, call_id, result);
            }
            Request::Tcp {
                host: Host::Ip(ip),
                port,
            } => {
                let result =
                    self.connect(client, call_id, IpEndpoint::new(IpAddress::Ipv4(ip), port));
                answer(ml, client, call_id, result);
            }
            Request::Udp {
                host: Host::Ip(ip),
                port,
            } => {
                let result = self.udp(
                    ml,
                    client,
                    call_id,
                    IpEndpoint::new(IpAddress::Ipv4(ip), port),
                );
                answer(ml, client, call_id, result);
            }
            Request::Tcp {
                host: Host::Name(name),
                port,
            } => {
                let result = self.resolve(client, call_id, name, port, false);
                answer(ml, client, call_id, result);
            }
            Request::Udp {
                host: Host::Name(name),
                port,
            } => {
                let result = self.resolve(client, call_id, name, port, true);
                answer(ml, client, call_id, result);
            }
            Request::Stats => {}
        }
    }

    /// The server's figures as one JSON object: what it holds in memory
    /// (socket buffers, queued bytes) and what it dropped.
    fn stats_json(&self) -> String {
        let (mut tcp, mut udp, mut other, mut buffers) = (0usize, 0usize, 0usize, 0usize);
        for (_, socket) in self.sockets.iter() {
            match socket {
                smoltcp::socket::Socket::Tcp(t) => {
                    tcp += 1;
                    buffers += t.recv_capacity() + t.send_capacity();
                }
                smoltcp::socket::Socket::Udp(u) => {
                    udp += 1;
                    buffers += u.payload_recv_capacity() + u.payload_send_capacity();
                }
                _ => other += 1,
            }
        }
        let listening: usize = self.listeners.values().map(|l| l.sockets.len()).sum();
        let queued: usize = self
            .conns
            .values()
            .map(|c| c.to_socket.len() + c.to_client.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
            + self
                .link
                .rx
                .iter()
                .chain(self.link.tx.iter())
                .map(|f| f.len())
                .sum::<usize>();
        format!(
            "{{\"memory_bytes\":{},\"socket_buffer_bytes\":{buffers},\"queued_bytes\":{queued},\"tcp_sockets\":{tcp},\"udp_sockets\":{udp},\"other_sockets\":{other},\"listening_sockets\":{listening},\"connections\":{},\"closing_sockets\":{},\"pending_requests\":{},\"rx_dropped\":{},\"syn_dropped\":{}}}",
            buffers + queued,
            self.conns.len(),
            self.zombies.len(),
            self.pending.len(),
            self.link.rx_dropped,
            self.link.syn_dropped,
        )
    }

    /// Answers `stats:` with a channel that holds the figures (one `Data`
    /// with a JSON object) followed by `Close`.
    fn send_stats(
        &mut self,
        ml: &mut Mainloop<Ctx>,
        client: HandleId,
        call_id: u32,
    ) -> Result<(), Refusal> {
        let (ours, theirs) = Channel::create().map_err(|e| Refusal::unavailable(format!("{e}")))?;
        let json = self.stats_json();
        if ours.send_data(json.as_bytes()).is_err() || ours.send(Message::Close).is_err() {
            return Err(Refusal::unavailable("cannot queue the figures"));
        }
        if let Some(ch) = ml.channel(client) {
            let _ = ch.send(Message::OpenReply {
                call_id,
                handle: theirs.into_handle(),
            });
        }
        Ok(())
    }

    fn listen(
        &mut self,
        ml: &mut Mainloop<Ctx>,
        client: HandleId,
        call_id: u32,
        port: u16,
    ) -> Result<(), Refusal> {
        if self.listeners.values().any(|l| l.port == port) {
            return Err(Refusal::unavailable(format!(
                "port {port} already has a listener"
            )));
        }
        let (ours, theirs) = Channel::create().map_err(|e| Refusal::unavailable(format!("{e}")))?;
        let id = self.alloc_id();
        let ch = ours.id();
        ml.add_channel(ours, Ctx::Listener(id))
            .map_err(|e| Refusal::unavailable(format!("{e}")))?;
        let reply = Message::OpenReply {
            call_id,
            handle: theirs.into_handle(),
        };
        match ml.channel(client).map(|c| c.send(reply)) {
            Some(Ok(())) => {}
            _ => {
                // The client is gone: nobody to answer.
                ml.remove_channel(ch);
                return Ok(());
            }
        }
        self.listeners.insert(
            id,
            Listener {
                port,
                ch,
                sockets: Vec::new(),
                accepted: VecDeque::new(),
            },
        );
        self.refill_listener(id);
        log::info!("listening on port {port}");
        Ok(())
    }

    fn refill_listener(&mut self, id: u32) {
        let want = self.backlog;
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        let (port, have) = (l.port, l.sockets.len());
        let mut new = Vec::new();
        for _ in have..want {
            let mut s = self.tcp_socket();
            if s.listen(port).is_err() {
                break;
            }
            new.push(self.sockets.add(s));
        }
        if let Some(l) = self.listeners.get_mut(&id) {
            l.sockets.extend(new);
        }
    }

    fn new_conn(
        &mut self,
        socket: SocketHandle,
        udp: Option<IpEndpoint>,
    ) -> Result<(u32, Channel), Error> {
        let (ours, theirs) = Channel::create()?;
        let id = self.alloc_id();
        self.conns.insert(
            id,
            Conn {
                socket,
                udp,
                ch: ours.id(),
                paused: None,
                to_socket: VecDeque::new(),
                to_client: None,
                client_closed: false,
                client_gone: false,
                fin_sent: false,
                told_end: false,
                watching_writable: false,
                connecting: None,
                connect_deadline: 0,
            },
        );
        self.added.push((ours, Ctx::Conn(id)));
        Ok((id, theirs))
    }

    fn connect(
        &mut self,
        client: HandleId,
        call_id: u32,
        remote: IpEndpoint,
    ) -> Result<(), Refusal> {
        let Some(iface) = self.iface.as_mut() else {
            return Ok(());
        };
        let mut socket = {
            let rx = tcp::SocketBuffer::new(vec![0; self.buffer]);
            let tx = tcp::SocketBuffer::new(vec![0; self.buffer]);
            tcp::Socket::new(rx, tx)
        };
        socket.set_nagle_enabled(false);
        socket.set_timeout(Some(CONNECT_TIMEOUT));
        let local = self.next_port;
        self.next_port = if self.next_port == u16::MAX {
            49152
        } else {
            self.next_port + 1
        };
        socket
            .connect(iface.context(), remote, local)
            .map_err(|e| Refusal::new(codes::INVALID, format!("connect to {remote}: {e}")))?;
        let handle = self.sockets.add(socket);
        match self.new_conn(handle, None) {
            Ok((id, theirs)) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.connecting = Some((client, call_id, theirs));
                    c.connect_deadline = now_ns() + CONNECT_TIMEOUT.total_micros() * 1000;
                }
                Ok(())
            }
            Err(e) => {
                self.sockets.remove(handle);
                Err(Refusal::unavailable(format!("{e}")))
            }
        }
    }

    fn udp(
        &mut self,
        ml: &mut Mainloop<Ctx>,
        client: HandleId,
        call_id: u32,
        remote: IpEndpoint,
    ) -> Result<(), Refusal> {
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0; UDP_BUFFER],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0; UDP_BUFFER],
        );
        let mut socket = udp::Socket::new(rx, tx);
        let port = self.ephemeral_port();
        socket
            .bind(port)
            .map_err(|e| Refusal::unavailable(format!("bind: {e}")))?;
        let handle = self.sockets.add(socket);
        match self.new_conn(handle, Some(remote)) {
            Ok((_, theirs)) => {
                let reply = Message::OpenReply {
                    call_id,
                    handle: theirs.into_handle(),
                };
                if let Some(ch) = ml.channel(client) {
                    let _ = ch.send(reply);
                }
                Ok(())
            }
            Err(e) => {
                self.sockets.remove(handle);
                Err(Refusal::unavailable(format!("{e}")))
            }
        }
    }

    fn resolve(
        &mut self,
        client: HandleId,
        call_id: u32,
        name: &str,
        port: u16,
        udp: bool,
    ) -> Result<(), Refusal> {
        let (Some(iface), Some(dns)) = (self.iface.as_mut(), self.dns) else {
            return Ok(());
        };
        let socket = self.sockets.get_mut::<dns::Socket>(dns);
        match socket.start_query(iface.context(), name, smoltcp::wire::DnsQueryType::A) {
            Ok(query) => {
                self.pending.push(Pending::Resolving {
                    query,
                    client,
                    call_id,
                    port,
                    udp,
                    name: name.to_string(),
                    deadline: now_ns() + DNS_TIMEOUT_NS,
                });
                Ok(())
            }
            Err(e) => Err(Refusal::unavailable(format!("cannot resolve {name}: {e}"))),
        }
    }

    /// Polls smoltcp and moves data until nothing is left to do now.
    fn service(&mut self, ml: &mut Mainloop<Ctx>) {
        for _ in 0..64 {
            let Some(iface) = self.iface.as_mut() else {
                break;
            };
            self.link.rx_budget = link::RX_BUDGET;
            // New connections a listener can take now: SYNs beyond that are
            // dropped (the peer retries) rather than refused with a reset.
            self.link.syn_budget.clear();
            for l in self.listeners.values() {
                let free = l
                    .sockets
                    .iter()
                    .filter(|&&s| self.sockets.get::<tcp::Socket>(s).state() == tcp::State::Listen)
                    .count();
                self.link.syn_budget.push((l.port, free));
            }
            iface.poll(now(), &mut self.link, &mut self.sockets);
            self.dhcp_events();
            self.retry_pending(ml);
            let mut progress = self.accept(ml);
            progress |= self.move_data(ml);
            self.reap();
            self.flush_tx(ml);
            if !progress && self.link.rx.is_empty() {
                break;
            }
        }
        self.throttle_rx(ml);
        self.apply(ml);
    }

    /// Stops reading the driver's channel while `link.rx` is full, and
    /// reads it again once half of that is processed.
    fn throttle_rx(&mut self, ml: &mut Mainloop<Ctx>) {
        let Some(net) = self.net else { return };
        if self.net_paused.is_none() && self.link.rx.len() >= link::RX_QUEUE_MAX {
            if let Some((ch, _)) = ml.remove_channel(net) {
                self.net_paused = Some(ch);
                self.net_watching = false;
            }
        } else if self.link.rx.len() < link::RX_QUEUE_MAX / 2 {
            if let Some(ch) = self.net_paused.take() {
                if let Err(e) = ml.add_channel(ch, Ctx::Net) {
                    log::error!("cannot watch the network driver again: {e}");
                    self.net = None;
                }
            }
        }
    }

    /// Applies main-loop changes collected while the loop was borrowed.
    fn apply(&mut self, ml: &mut Mainloop<Ctx>) {
        for (ch, ctx) in self.added.drain(..) {
            if let Err(e) = ml.add_channel(ch, ctx) {
                log::warn!("cannot watch a new connection: {e}");
            }
        }
        for (id, ch) in self.resume.drain(..) {
            if let Err(e) = ml.add_channel(ch, Ctx::Conn(id)) {
                log::warn!("cannot resume connection {id}: {e}");
            }
        }
        for (id, on) in self.watch.drain(..) {
            if id != HandleId(0) {
                let _ = ml.watch_writable(id, on);
            }
        }
    }

    fn dhcp_events(&mut self) {
        let (Some(dhcp), Some(iface)) = (self.dhcp, self.iface.as_mut()) else {
            return;
        };
        // Copy what the event says: it borrows the socket set.
        let configured = match self.sockets.get_mut::<dhcpv4::Socket>(dhcp).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => Some((
                config.address,
                config.router,
                config
                    .dns_servers
                    .iter()
                    .map(|s| IpAddress::Ipv4(*s))
                    .collect::<Vec<IpAddress>>(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match configured {
            Some((address, router, servers)) => {
                iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(address));
                });
                if let Some(router) = router {
                    let _ = iface.routes_mut().add_default_ipv4_route(router);
                } else {
                    iface.routes_mut().remove_default_ipv4_route();
                }
                if let Some(dns) = self.dns {
                    self.sockets
                        .get_mut::<dns::Socket>(dns)
                        .update_servers(&servers);
                }
                let dns_text: Vec<String> = servers.iter().map(|s| format!("{s}")).collect();
                log::info!(
                    "configured by DHCP: address {}, gateway {}, DNS {}",
                    address,
                    router.map_or("none".to_string(), |r| format!("{r}")),
                    if dns_text.is_empty() {
                        "none".to_string()
                    } else {
                        dns_text.join(", ")
                    }
                );
                self.configured = true;
            }
            None => {
                // smoltcp reports this once at start, before any lease.
                if self.configured {
                    log::warn!("DHCP lease lost");
                }
                iface.update_ip_addrs(|addrs| addrs.clear());
                iface.routes_mut().remove_default_ipv4_route();
                self.configured = false;
            }
        }
    }

    fn retry_pending(&mut self, ml: &mut Mainloop<Ctx>) {
        if self.pending.is_empty() {
            return;
        }
        let now = now_ns();
        let pending = core::mem::take(&mut self.pending);
        for p in pending {
            match p {
                Pending::Waiting {
                    client,
                    call_id,
                    uri,
                    deadline,
                } => {
                    if self.iface.is_some() && self.configured {
                        self.open(ml, client, call_id, uri);
                    } else if now >= deadline {
                        send_error(
                            ml.channel(client),
                            call_id,
                            codes::UNAVAILABLE,
                            &format!(
                                "{uri}: the network is not configured (no link or no DHCP answer)"
                            ),
                        );
                    } else {
                        self.pending.push(Pending::Waiting {
                            client,
                            call_id,
                            uri,
                            deadline,
                        });
                    }
                }
                Pending::Resolving {
                    query,
                    client,
                    call_id,
                    port,
                    udp,
                    name,
                    deadline,
                } => {
                    let Some(dns) = self.dns else { continue };
                    let result = self
                        .sockets
                        .get_mut::<dns::Socket>(dns)
                        .get_query_result(query);
                    match result {
                        Ok(addrs) => match addrs.iter().find(|a| matches!(a, IpAddress::Ipv4(_))) {
                            Some(addr) => {
                                log::info!("resolved {name} to {addr}");
                                let remote = IpEndpoint::new(*addr, port);
                                let result = if udp {
                                    self.udp(ml, client, call_id, remote)
                                } else {
                                    self.connect(client, call_id, remote)
                                };
                                answer(ml, client, call_id, result);
                            }
                            None => send_error(
                                ml.channel(client),
                                call_id,
                                codes::NOT_FOUND,
                                &format!("{name}: no IPv4 address"),
                            ),
                        },
                        Err(dns::GetQueryResultError::Pending) if now < deadline => {
                            self.pending.push(Pending::Resolving {
                                query,
                                client,
                                call_id,
                                port,
                                udp,
                                name,
                                deadline,
                            });
                        }
                        Err(dns::GetQueryResultError::Pending) => {
                            self.sockets.get_mut::<dns::Socket>(dns).cancel_query(query);
                            send_error(
                                ml.channel(client),
                                call_id,
                                codes::TIMED_OUT,
                                &format!("{name}: DNS query timed out"),
                            );
                        }
                        Err(dns::GetQueryResultError::Failed) => send_error(
                            ml.channel(client),
                            call_id,
                            codes::NOT_FOUND,
                            &format!("{name}: name not found"),
                        ),
                    }
                }
            }
        }
    }

    /// Hands established connections of every listener to its client.
    fn accept(&mut self, ml: &mut Mainloop<Ctx>) -> bool {
        let mut progress = false;
        let ids: Vec<u32> = self.listeners.keys().copied().collect();
        for id in ids {
            let Some(l) = self.listeners.get_mut(&id) else {
                continue;
            };
            let mut taken = Vec::new();
            l.sockets.retain(|&s| {
                let socket = self.sockets.get::<tcp::Socket>(s);
                match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => true,
                    _ => {
                        taken.push(s);
                        false
                    }
                }
            });
            for s in taken {
                progress = true;
                let peer = self.sockets.get::<tcp::Socket>(s).remote_endpoint();
                match self.new_conn(s, None) {
                    Ok((_, theirs)) => {
                        let uri = match peer {
                            Some(p) => format!("tcp-conn:{p}"),
                            None => "tcp-conn:unknown".to_string(),
                        };
                        if let Some(l) = self.listeners.get_mut(&id) {
                            l.accepted.push_back((uri, theirs));
                        }
                    }
                    Err(e) => {
                        log::warn!("cannot accept a connection: {e}");
                        self.sockets.get_mut::<tcp::Socket>(s).abort();
                        self.zombies.push(s);
                    }
                }
            }
            self.refill_listener(id);
            self.flush_accepted(ml, id);
        }
        progress
    }

    fn flush_accepted(&mut self, ml: &mut Mainloop<Ctx>, id: u32) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let Some(ch) = ml.channel(l.ch) else { return };
        while let Some((uri, conn)) = l.accepted.pop_front() {
            let msg = Message::Open {
                call_id: 0,
                uri: &uri,
                handle: Some(conn.into_handle()),
            };
            match ch.send(msg) {
                Ok(()) => {}
                Err(e) if e.error == Error::QueueFull => {
                    if let Message::Open {
                        handle: Some(h), ..
                    } = e.message
                    {
                        l.accepted
                            .push_front((uri.clone(), Channel::from_handle(h)));
                    }
                    self.watch.push((l.ch, true));
                    return;
                }
                Err(e) => {
                    log::warn!("cannot hand over a connection: {}", e.error);
                }
            }
        }
    }

    /// Moves bytes between sockets and client channels; true if anything
    /// moved.
    fn move_data(&mut self, ml: &mut Mainloop<Ctx>) -> bool {
        let mut progress = false;
        let mut done = Vec::new();
        for (&id, c) in self.conns.iter_mut() {
            let ch = c.paused.as_ref().or_else(|| ml.channel(c.ch));
            if let Some(peer) = c.udp {
                let s = self.sockets.get_mut::<udp::Socket>(c.socket);
                while let Ok((data, meta)) = s.recv() {
                    if meta.endpoint != peer {
                        continue;
                    }
                    if let Some(ch) = ch {
                        // Datagrams: a full queue drops, as the network does.
                        let _ = ch.send_data(data);
                    }
                    progress = true;
                }
                if c.client_gone {
                    done.push(id);
                }
                continue;
            }
            let s = self.sockets.get_mut::<tcp::Socket>(c.socket);
            // A connect finished (or failed).
            if let Some((client, call_id, _)) = &c.connecting {
                let (client, call_id) = (*client, *call_id);
                match s.state() {
                    tcp::State::Established | tcp::State::CloseWait => {
                        let (_, _, theirs) = c.connecting.take().expect("checked above");
                        let reply = Message::OpenReply {
                            call_id,
                            handle: theirs.into_handle(),
                        };
                        if let Some(cl) = ml.channel(client) {
                            let _ = cl.send(reply);
                        }
                        progress = true;
                    }
                    tcp::State::SynSent => {
                        if now_ns() >= c.connect_deadline {
                            s.abort();
                            send_error(
                                ml.channel(client),
                                call_id,
                                codes::TIMED_OUT,
                                "connect timed out",
                            );
                            c.connecting = None;
                            c.told_end = true;
                            c.client_gone = true;
                            done.push(id);
                        }
                        continue;
                    }
                    _ => {
                        let peer = s.remote_endpoint();
                        s.abort();
                        send_error(
                            ml.channel(client),
                            call_id,
                            codes::REFUSED,
                            &match peer {
                                Some(p) => format!("connection to {p} refused"),
                                None => "connection refused".to_string(),
                            },
                        );
                        c.connecting = None;
                        c.told_end = true;
                        c.client_gone = true;
                        done.push(id);
                        continue;
                    }
                }
            }
            // Client to socket.
            while !c.to_socket.is_empty() && s.can_send() {
                let (front, _) = c.to_socket.as_slices();
                match s.send_slice(front) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        c.to_socket.drain(..n);
                        progress = true;
                    }
                }
            }
            if c.client_closed && c.to_socket.is_empty() && !c.fin_sent {
                s.close();
                c.fin_sent = true;
                progress = true;
            }
            if c.to_socket.len() >= CLIENT_BACKLOG_MAX && c.paused.is_none() && !c.client_gone {
                // Stop reading the client until the socket catches up.
                if let Some((ch, _)) = ml.remove_channel(c.ch) {
                    c.paused = Some(ch);
                }
            } else if c.to_socket.len() < CLIENT_BACKLOG_MAX / 2 {
                if let Some(ch) = c.paused.take() {
                    self.resume.push((id, ch));
                }
            }
            // Socket to client.
            let ch = c.paused.as_ref().or_else(|| ml.channel(c.ch));
            if c.client_gone {
                // Nobody to deliver to: discard what arrives.
                while s.can_recv() {
                    let _ = s.recv(|b| (b.len(), ()));
                }
            } else if let Some(ch) = ch {
                loop {
                    if c.to_client.is_none() && s.can_recv() {
                        let mut chunk = Vec::new();
                        let _ = s.recv(|b| {
                            let n = b.len().min(CHUNK);
                            chunk.extend_from_slice(&b[..n]);
                            (n, ())
                        });
                        if chunk.is_empty() {
                            break;
                        }
                        c.to_client = Some(chunk);
                    }
                    let Some(chunk) = c.to_client.as_ref() else {
                        break;
                    };
                    match ch.send_data(chunk) {
                        Ok(()) => {
                            c.to_client = None;
                            progress = true;
                        }
                        Err(Error::QueueFull) => {
                            if !c.watching_writable {
                                c.watching_writable = true;
                                self.watch.push((c.ch, true));
                            }
                            break;
                        }
                        Err(_) => {
                            c.to_client = None;
                            c.client_gone = true;
                            break;
                        }
                    }
                }
            }
            // The end of the stream.
            if !c.told_end && c.to_client.is_none() && !s.can_recv() {
                let state = s.state();
                if state == tcp::State::Closed && !c.fin_sent {
                    if let Some(ch) = ch {
                        let _ = ch.send(Message::Abort {
                            code: codes::RESET,
                            reason: "connection reset",
                        });
                    }
                    c.told_end = true;
                    progress = true;
                } else if !s.may_recv() && state != tcp::State::Listen {
                    if let Some(ch) = ch {
                        if ch.send(Message::Close).is_err() && !c.client_gone {
                            // Queue full: try again on the next round.
                            self.watch.push((c.ch, true));
                            continue;
                        }
                    }
                    c.told_end = true;
                    progress = true;
                }
            }
            let finished = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
            if finished && (c.told_end || c.client_gone) && (c.fin_sent || c.client_gone) {
                done.push(id);
            } else if finished && c.told_end && !c.fin_sent && c.to_socket.is_empty() {
                // Reset by the peer: nothing more to send.
                done.push(id);
            }
        }
        for id in done {
            if let Some(c) = self.conns.remove(&id) {
                if c.paused.is_none() && c.ch != HandleId(0) {
                    ml.remove_channel(c.ch);
                }
                self.zombies.push(c.socket);
            }
        }
        progress
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

    /// Sends queued frames to the driver.
    fn flush_tx(&mut self, ml: &mut Mainloop<Ctx>) {
        let Some(net) = self.net else {
            self.link.tx.clear();
            return;
        };
        let Some(ch) = self.net_paused.as_ref().or_else(|| ml.channel(net)) else {
            self.link.tx.clear();
            return;
        };
        while let Some(frame) = self.link.tx.front() {
            match ch.send_data(frame) {
                Ok(()) => {
                    self.link.tx.pop_front();
                }
                Err(Error::QueueFull) => {
                    // (While paused, the zero poll delay retries instead.)
                    if !self.net_watching && self.net_paused.is_none() {
                        self.net_watching = true;
                        self.watch.push((net, true));
                    }
                    return;
                }
                Err(e) => {
                    log::warn!("cannot hand a frame to the driver: {e}");
                    self.link.tx.clear();
                    return;
                }
            }
        }
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}
