//! TCP flows: each a smoltcp socket on the guest's side and a tcpip
//! connection channel on the other, with the bytes pumped between them.
//!
//! Outbound, the guest's SYN waits while tcpip connects (`PendingConnect`);
//! inbound, a forwarded connection's socket connects into the guest from
//! the client's address. Either way a flow ends when both directions have
//! closed (FIN each way, passed on as `Close`), or at once on a reset from
//! either side (passed on as `Abort` / RST).

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::socket::tcp::State;
use smoltcp::time::Duration;
use starina::abi::MESSAGE_DATA_MAX;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::message::Message;
use starina::timer::now_ns;
use starina::HandleId;

use super::frame::Endpoint;
use super::rate_limited;
use super::seen_by_guest;
use super::seen_by_tcpip;
use super::Call;
use super::Nat;
use crate::Ctx;

/// Socket buffers per flow, each way.
const BUFFER: usize = 128 * 1024;
/// A guest that stops acknowledging for this long loses the connection.
const GUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// An outbound connect tcpip has not answered within this long is given
/// up (the guest gets a reset).
const CONNECT_TIMEOUT_NS: u64 = 30_000_000_000;
/// How often held SYNs are checked against `CONNECT_TIMEOUT_NS`.
pub const SWEEP_NS: u64 = 1_000_000_000;
/// Bytes for the guest a flow gathers before writing them to its socket
/// while the guest has not acknowledged what went before: each segment
/// costs the guest an interrupt, a 64 KiB receive buffer and a round of
/// VM exits however short it is, and tcpip hands a download over in
/// pieces of a few frames. A guest that acknowledged everything gets what
/// there is at once.
const GATHER_BYTES: usize = 64 * 1024;
/// The longest bytes are held back while gathering.
const GATHER_NS: u64 = 1_000_000;
/// Bytes waiting in `Flow::pending` above which the channel is not read.
const PENDING_MAX: usize = GATHER_BYTES + MESSAGE_DATA_MAX;

/// A flow's addresses: the guest's end, the other end.
pub type Key = (Endpoint, Endpoint);

struct PendingConnect {
    syn: Vec<u8>,
    since: u64,
}

struct Flow {
    socket: SocketHandle,
    /// Its tcpip connection; `None` once tcpip closed it (the handle
    /// number may name another channel then: never used again).
    channel: Option<HandleId>,
    key: Key,
    /// Bytes from the channel not yet in the socket (no room, or being
    /// gathered: see `GATHER_BYTES`); the channel is paused while there
    /// are `PENDING_MAX` or more.
    pending: VecDeque<u8>,
    /// Since when `pending` was held back to gather more.
    held_since: Option<u64>,
    paused: bool,
    /// The channel sent `Close`: the socket closes once `pending` is out.
    channel_done: bool,
    socket_closed: bool,
    /// The guest's FIN was passed on as `Close`.
    guest_done: bool,
    /// The channel reset (or vanished): the socket was aborted, nothing is
    /// sent back.
    aborted: bool,
    /// The guest's reset was passed on.
    reset_sent: bool,
}

#[derive(Default)]
pub struct Flows {
    flows: BTreeMap<u32, Flow>,
    by_key: BTreeMap<Key, u32>,
    pending: BTreeMap<Key, PendingConnect>,
    next_id: u32,
    /// Where `Nat::take_queued` receives (kept: 16 KiB).
    recv_buf: Option<MessageBuffer>,
}

impl Flows {
    /// The flows' tcpip channels still in the loop.
    pub fn channels(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.flows.values().filter_map(|f| f.channel)
    }

    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the first flow's gathered bytes must go to the guest.
    pub fn gather_deadline(&self) -> Option<u64> {
        (self.flows.values())
            .filter_map(|f| f.held_since)
            .min()
            .map(|t| t + GATHER_NS)
    }

    fn len(&self) -> usize {
        self.flows.len() + self.pending.len()
    }

    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn insert(&mut self, id: u32, flow: Flow) {
        self.by_key.insert(flow.key, id);
        self.flows.insert(id, flow);
    }
}

fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    );
    socket.set_timeout(Some(GUEST_TIMEOUT));
    // The link is local: no reason to hold back small writes or ACKs.
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(None);
    socket
}

impl Nat {
    /// The guest's SYN `from` -> `to`. Returns the frame if smoltcp should
    /// see it now (a retransmission for a flow that exists, or a refusal).
    pub(super) fn on_syn(
        &mut self,
        cx: &mut Cx<Ctx>,
        from: Endpoint,
        to: Endpoint,
        syn: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let key = (from, to);
        if self.tcp.by_key.contains_key(&key) {
            return Some(syn);
        }
        if self.tcp.pending.contains_key(&key) {
            return None; // A retransmission: the first one is held.
        }
        if self.tcp.len() >= self.config.max_tcp_flows {
            if !rate_limited(&mut self.quiet_until, 0) {
                log::warn!(
                    "net: {} TCP flows already: refusing the guest's connection to {to}",
                    self.config.max_tcp_flows
                );
            }
            return Some(syn);
        }
        // `starina.internal` (the gateway): the native side's listeners.
        let uri = alloc::format!("tcp:{}:{}", seen_by_tcpip(to.addr), to.port);
        if self.open(cx, &uri, Call::Connect(key)).is_err() {
            return Some(syn);
        }
        self.tcp.pending.insert(
            key,
            PendingConnect {
                syn,
                since: now_ns(),
            },
        );
        None
    }

    /// tcpip connected (or failed to) for the held SYN of `key`.
    pub(super) fn on_connected(
        &mut self,
        cx: &mut Cx<Ctx>,
        key: Key,
        result: Result<Channel, alloc::string::String>,
    ) {
        let Some(held) = self.tcp.pending.remove(&key) else {
            return; // Given up meanwhile: the channel (if any) drops.
        };
        let channel = match result {
            Ok(channel) => channel,
            Err(why) => {
                log::debug!("net: guest connection to {} failed: {why}", key.1);
                // No socket listens there: smoltcp answers with a reset.
                self.link.rx.push_back(held.syn);
                return;
            }
        };
        let mut socket = new_socket();
        if socket.listen(key.1).is_err() {
            self.link.rx.push_back(held.syn);
            return;
        }
        let id = self.tcp.next_id();
        let Ok(channel) = cx.add_channel(channel, Ctx::TcpFlow(id)) else {
            self.link.rx.push_back(held.syn);
            return;
        };
        let handle = self.sockets.add(socket);
        self.tcp.insert(id, Flow::new(handle, channel, key));
        // Only this SYN goes in now, so the socket takes this one.
        self.link.rx.push_back(held.syn);
        self.iface
            .poll(super::now(), &mut self.link, &mut self.sockets);
    }

    /// A forwarded connection from `client` to the guest's `port`. A
    /// client on this machine (tcpip's loopback: a native component, or
    /// the guest itself through `starina.internal`) comes from the
    /// gateway's address, which the guest routes back to us.
    pub(super) fn connect_inbound(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: Endpoint,
        port: u16,
        channel: Channel,
    ) -> bool {
        let client = Endpoint {
            addr: seen_by_guest(client.addr),
            port: client.port,
        };
        let key = (
            Endpoint {
                addr: super::GUEST,
                port,
            },
            client,
        );
        if self.tcp.by_key.contains_key(&key) || self.tcp.len() >= self.config.max_tcp_flows {
            if !rate_limited(&mut self.quiet_until, 0) {
                log::warn!("net: cannot forward the connection from {client} to port {port}: too many flows, or a clash");
            }
            let _ = channel.send(Message::Abort {
                code: codes::UNAVAILABLE,
                reason: "the NAT has no room for another flow",
            });
            return false;
        }
        let mut socket = new_socket();
        if socket.connect(self.iface.context(), key.0, client).is_err() {
            return false;
        }
        let id = self.tcp.next_id();
        let Ok(channel) = cx.add_channel(channel, Ctx::TcpFlow(id)) else {
            return false;
        };
        let handle = self.sockets.add(socket);
        self.tcp.insert(id, Flow::new(handle, channel, key));
        true
    }

    /// A message on flow `id`'s channel.
    pub fn on_tcp_message(&mut self, cx: &mut Cx<Ctx>, id: u32, msg: Message<'_>) {
        let Some(flow) = self.tcp.flows.get_mut(&id) else {
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(flow.socket);
        match msg {
            Message::Data(data) if !flow.channel_done => {
                let now = now_ns();
                let direct = flow.pending.is_empty()
                    && socket.may_send()
                    && !flow.gathering(socket, data.len(), now);
                let n = if direct {
                    socket.send_slice(data).unwrap_or(0)
                } else {
                    0
                };
                if n < data.len() {
                    flow.pending.extend(&data[n..]);
                    flow.write_pending(socket, now);
                }
                if flow.pending.len() >= PENDING_MAX && !flow.paused {
                    let paused = flow.channel.map(|ch| cx.pause_receiving(ch));
                    flow.paused = paused == Some(Ok(()));
                }
            }
            Message::Close => flow.channel_done = true,
            Message::Abort { .. } => {
                socket.abort();
                flow.aborted = true;
            }
            other => log::warn!("net: ignoring a {:?} message on a TCP flow", other.kind()),
        }
    }

    /// Takes the messages already queued on flow `id`'s channel (after the
    /// one the loop delivered), while its socket takes their bytes: one
    /// service round then sends them to the guest as one segment, not one
    /// segment per message (each segment costs the guest an interrupt and
    /// a receive buffer). Stops once the flow pauses (what did not fit
    /// waits in `pending`, at most one message), ends or its channel is
    /// empty.
    pub fn take_queued(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let mut buf = self.tcp.recv_buf.take().unwrap_or_default();
        while let Some(flow) = self.tcp.flows.get(&id) {
            if flow.paused || flow.channel_done || flow.aborted {
                break;
            }
            let Some(ch) = flow.channel.and_then(|h| cx.channel(h)) else {
                break;
            };
            match ch.try_recv(&mut buf) {
                Ok(msg) => self.on_tcp_message(cx, id, msg),
                // Nothing more (or the peer left: the loop reports it).
                Err(_) => break,
            }
        }
        self.tcp.recv_buf = Some(buf);
    }

    /// Flow `id`'s channel closed. After both directions ended (tcpip
    /// drops a finished connection) that is the end; before, a reset.
    pub fn on_tcp_closed(&mut self, id: u32) {
        if let Some(flow) = self.tcp.flows.get_mut(&id) {
            flow.channel = None;
            if !(flow.channel_done && flow.guest_done) {
                self.sockets.get_mut::<tcp::Socket>(flow.socket).abort();
                flow.aborted = true;
            }
        }
    }

    /// Moves bytes both ways on every flow, passes closes and resets on,
    /// and ends finished flows. Whether any socket was written to.
    pub(super) fn pump_tcp(&mut self, cx: &mut Cx<Ctx>) -> bool {
        let mut wrote = false;
        let mut ended = Vec::new();
        for (&id, flow) in self.tcp.flows.iter_mut() {
            let socket = self.sockets.get_mut::<tcp::Socket>(flow.socket);
            wrote |= flow.pump_to_guest(cx, socket);
            flow.pump_from_guest(cx, socket);
            if flow.is_over(cx, socket) {
                ended.push(id);
            }
        }
        for id in ended {
            if let Some(flow) = self.tcp.flows.remove(&id) {
                self.tcp.by_key.remove(&flow.key);
                self.sockets.remove(flow.socket);
                if let Some(ch) = flow.channel {
                    cx.remove(ch);
                }
            }
        }
        self.expire_connects();
        wrote
    }

    /// Gives up SYNs tcpip has not connected in time (the guest is reset).
    fn expire_connects(&mut self) {
        let now = now_ns();
        let late: Vec<Key> = self
            .tcp
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.since) > CONNECT_TIMEOUT_NS)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(held) = self.tcp.pending.remove(&key) {
                self.link.rx.push_back(held.syn);
            }
        }
    }
}

impl Flow {
    fn new(socket: SocketHandle, channel: HandleId, key: Key) -> Flow {
        Flow {
            socket,
            channel: Some(channel),
            key,
            pending: VecDeque::new(),
            held_since: None,
            paused: false,
            channel_done: false,
            socket_closed: false,
            guest_done: false,
            aborted: false,
            reset_sent: false,
        }
    }

    /// The channel's bytes into the socket, and its close once they are
    /// out. Whether the socket was written to.
    fn pump_to_guest(&mut self, cx: &mut Cx<Ctx>, socket: &mut tcp::Socket) -> bool {
        let mut wrote = self.write_pending(socket, now_ns());
        if self.pending.len() < GATHER_BYTES && self.paused {
            if let Some(ch) = self.channel {
                let _ = cx.resume_receiving(ch);
            }
            self.paused = false;
        }
        if self.channel_done && self.pending.is_empty() && !self.socket_closed {
            socket.close();
            self.socket_closed = true;
            wrote = true;
        }
        wrote
    }

    /// Whether `len` more bytes for the guest are held back to gather
    /// more (see `GATHER_BYTES`): the guest has not acknowledged what went
    /// before them, not enough gathered, they have not waited for
    /// `GATHER_NS`, and the stream goes on.
    fn gathering(&self, socket: &tcp::Socket, len: usize, now: u64) -> bool {
        socket.send_queue() > 0
            && self.pending.len() + len < GATHER_BYTES
            && !self.channel_done
            && self.held_since.is_none_or(|t| now < t + GATHER_NS)
    }

    /// Writes what `pending` holds to the socket as far as it has room,
    /// unless it is gathering (then held from now, if it was not before).
    /// Whether the socket was written to.
    fn write_pending(&mut self, socket: &mut tcp::Socket, now: u64) -> bool {
        if self.pending.is_empty() || !socket.may_send() {
            // Nothing to hold; or the socket's own progress (a frame from
            // the guest) brings the next round.
            self.held_since = None;
            return false;
        }
        if self.gathering(socket, 0, now) {
            self.held_since.get_or_insert(now);
            return false;
        }
        self.held_since = None;
        // Both parts of the ring, the older first; taking them from the
        // front moves no bytes (a `Vec` moved the rest down each time).
        let (older, newer) = self.pending.as_slices();
        let mut n = socket.send_slice(older).unwrap_or(0);
        if n == older.len() && !newer.is_empty() {
            n += socket.send_slice(newer).unwrap_or(0);
        }
        self.pending.drain(..n);
        n > 0
    }

    /// The socket's bytes to the channel while it has no backlog, and the
    /// guest's FIN as `Close`.
    fn pump_from_guest(&mut self, cx: &mut Cx<Ctx>, socket: &mut tcp::Socket) {
        let Some(channel) = self.channel.filter(|_| !self.aborted) else {
            return;
        };
        while socket.can_recv() && cx.backlog_bytes(channel) == 0 {
            let sent = socket.recv(|buf| {
                let n = buf.len().min(MESSAGE_DATA_MAX);
                match cx.send_data(channel, &buf[..n]) {
                    Ok(()) => (n, true),
                    Err(_) => (0, false),
                }
            });
            if sent != Ok(true) {
                break;
            }
        }
        let fin = matches!(
            socket.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        );
        if fin && socket.recv_queue() == 0 && !self.guest_done {
            let _ = cx.send(channel, Message::Close);
            self.guest_done = true;
        }
    }

    /// Whether the flow is over (and all it sent has left); a reset from
    /// the guest (or its timeout) is passed on as `Abort`.
    fn is_over(&mut self, cx: &mut Cx<Ctx>, socket: &mut tcp::Socket) -> bool {
        let state = socket.state();
        if self.aborted {
            // The reset went to the guest in the poll before this.
            return state == State::Closed;
        }
        let Some(channel) = self.channel else {
            // tcpip is done with it: the socket finishes on its own.
            return matches!(state, State::Closed | State::TimeWait);
        };
        if state == State::Closed && !(self.guest_done && self.socket_closed) && !self.reset_sent {
            let _ = cx.send(
                channel,
                Message::Abort {
                    code: codes::RESET,
                    reason: "the guest reset the connection",
                },
            );
            self.reset_sent = true;
        }
        if cx.backlog_bytes(channel) > 0 {
            // What the guest sent last (and its FIN) is still on its way.
            return false;
        }
        match state {
            State::Closed => true,
            State::TimeWait => self.guest_done && self.socket_closed,
            _ => false,
        }
    }
}
