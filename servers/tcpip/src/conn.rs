//! Connections: a TCP or UDP socket and the channel its client holds, and
//! the bytes moving between them, with backpressure both ways: bytes for
//! the client are read from the socket only while the client's channel
//! has no backlog (`drained` brings the next round); a client whose bytes
//! pile up for the socket is not read from until the socket takes them.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::socket::udp;
use smoltcp::time::Duration;
use smoltcp::wire::IpEndpoint;
use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::timer::now_ns;
use starina::Error;
use starina::HandleId;
use starina::Message;

use crate::requests::send_error;
use crate::requests::send_reply;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;
use crate::timeouts::Stall;

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections that move bytes served in one `move_data` call (each moves
/// at most a socket buffer each way).
const BUSY_CONNS_PER_PASS: usize = 8;
/// Bytes read from the socket into one `Data` message.
const CHUNK: usize = 16 * 1024;
/// Bytes from a client waiting for the socket before we stop reading it.
const CLIENT_BACKLOG_MAX: usize = 64 * 1024;
const UDP_PACKETS: usize = 32;
const UDP_BUFFER: usize = 16 * 1024;

pub struct Conn {
    pub socket: SocketHandle,
    /// UDP: the peer; TCP: `None`.
    pub udp: Option<IpEndpoint>,
    pub ch: HandleId,
    /// The channel, while it is out of the main loop (not read from)
    /// because the socket does not take the client's bytes fast enough.
    /// Not reading the client (its bytes pile up for the socket).
    pub paused: bool,
    pub to_socket: VecDeque<u8>,
    /// The client sent `Close` (or went away): FIN once `to_socket` drains.
    pub client_closed: bool,
    pub client_gone: bool,
    pub fin_sent: bool,
    /// We told the client the stream ended (`Close` or `Abort`).
    pub told_end: bool,
    /// TCP connect: the request to answer once established.
    pub connecting: Option<(HandleId, u32, Channel)>,
    pub connect_deadline: u64,
    /// Whether the peer acknowledges what waits for it.
    pub stall: Stall,
}

/// What one service round did for one connection.
#[derive(Default)]
struct Moved {
    /// Bytes or news moved.
    progress: bool,
    /// The connection is over: forget it.
    done: bool,
    /// Reset: the peer acknowledged nothing for the stall timeout.
    stalled: bool,
}

/// A TCP socket with buffers of `rx` and `tx` bytes, Nagle off.
pub fn tcp_socket(rx: usize, tx: usize, timeout: Duration) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; rx]);
    let tx = tcp::SocketBuffer::new(vec![0; tx]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(false);
    socket.set_timeout(Some(timeout));
    socket
}

impl Server {
    /// Adds a connection for `socket`; returns its key and the client's end
    /// of its channel.
    pub fn new_conn(
        &mut self,
        cx: &mut Cx<Ctx>,
        socket: SocketHandle,
        udp: Option<IpEndpoint>,
    ) -> Result<(u32, Channel), Error> {
        let (ours, theirs) = Channel::create()?;
        let id = self.alloc_id();
        let ch = cx.add_channel(ours, Ctx::Conn(id))?;
        self.conns.insert(
            id,
            Conn {
                socket,
                udp,
                ch,
                paused: false,
                to_socket: VecDeque::new(),
                client_closed: false,
                client_gone: false,
                fin_sent: false,
                told_end: false,
                connecting: None,
                connect_deadline: 0,
                stall: Stall::new(now_ns()),
            },
        );
        Ok((id, theirs))
    }

    /// Starts a TCP connect; the reply goes out once it is established.
    pub fn connect(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        remote: IpEndpoint,
    ) -> Result<(), Refusal> {
        if self.iface.is_none() {
            return Ok(());
        }
        let mut socket = tcp_socket(self.connect_buffer, self.send_buffer, CONNECT_TIMEOUT);
        let local = self.ports.next();
        if let Some(iface) = self.iface.as_mut() {
            socket
                .connect(iface.context(), remote, local)
                .map_err(|e| Refusal::new(codes::INVALID, format!("connect to {remote}: {e}")))?;
        }
        let handle = self.sockets.add(socket);
        match self.new_conn(cx, handle, None) {
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

    /// Opens a UDP socket for datagrams to and from `remote`.
    pub fn udp(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        remote: IpEndpoint,
    ) -> Result<(), Refusal> {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        let port = self.free_udp_port();
        socket
            .bind(port)
            .map_err(|e| Refusal::unavailable(format!("bind: {e}")))?;
        let handle = self.sockets.add(socket);
        match self.new_conn(cx, handle, Some(remote)) {
            Ok((_, theirs)) => {
                send_reply(cx, client, call_id, theirs);
                Ok(())
            }
            Err(e) => {
                self.sockets.remove(handle);
                Err(Refusal::unavailable(format!("{e}")))
            }
        }
    }

    /// A message from the client of connection `id`.
    pub fn on_conn_message(&mut self, id: u32, msg: Message<'_>) {
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
                let s = self.sockets.get_mut::<tcp::Socket>(c.socket);
                // Straight into the socket when nothing waits before it:
                // the bytes can go out now, so the round comes now (a
                // response's first bytes must not wait for the timer).
                let taken = if c.to_socket.is_empty() && s.can_send() {
                    c.stall.look(s.send_queue(), now_ns());
                    let n = s.send_slice(data).unwrap_or(0);
                    c.stall.wrote(s.send_queue());
                    n
                } else {
                    0
                };
                c.to_socket.extend(&data[taken..]);
                if taken > 0 || c.to_socket.len() >= CLIENT_BACKLOG_MAX {
                    self.urgent = true;
                }
            }
            Message::Close => {
                c.client_closed = true;
                // The FIN can go at once if nothing waits before it.
                self.urgent |= c.to_socket.is_empty();
            }
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

    /// Moves bytes between sockets and client channels; true if anything
    /// moved. At most `BUSY_CONNS_PER_PASS` connections that move bytes
    /// are served per call, in turn from where the last call stopped: a
    /// pass over a hundred busy connections would otherwise copy megabytes
    /// before the loop takes its next event.
    pub fn move_data(&mut self, cx: &mut Cx<Ctx>) -> bool {
        let mut progress = false;
        let mut busy = 0;
        let mut done = Vec::new();
        let stall_limit = (now_ns(), self.stall_timeout_ns);
        let cursor = self.conn_cursor;
        let later = self.conns.range(cursor..);
        let ids: Vec<u32> = later
            .chain(self.conns.range(..cursor))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if busy == BUSY_CONNS_PER_PASS {
                self.conn_cursor = id;
                break;
            }
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let moved = match c.udp {
                Some(peer) => {
                    let s = self.sockets.get_mut::<udp::Socket>(c.socket);
                    move_udp(c, peer, s, cx)
                }
                None => {
                    let s = self.sockets.get_mut::<tcp::Socket>(c.socket);
                    move_tcp(id, c, s, cx, stall_limit)
                }
            };
            progress |= moved.progress;
            busy += usize::from(moved.progress);
            self.stalled += u64::from(moved.stalled);
            if moved.done {
                done.push(id);
            }
        }
        for id in done {
            if let Some(c) = self.conns.remove(&id) {
                if c.ch != HandleId(0) {
                    cx.remove(c.ch);
                }
                self.zombies.push(c.socket);
            }
        }
        progress
    }
}

/// Datagrams from the peer to the client. A datagram past the client's
/// backlog bound is dropped, as the network does.
fn move_udp(c: &mut Conn, peer: IpEndpoint, s: &mut udp::Socket, cx: &mut Cx<Ctx>) -> Moved {
    let mut moved = Moved::default();
    while let Ok((data, meta)) = s.recv() {
        if meta.endpoint != peer {
            continue;
        }
        if c.ch != HandleId(0) {
            let _ = cx.send_data(c.ch, data);
        }
        moved.progress = true;
    }
    moved.done = c.client_gone;
    moved
}

/// One round for a TCP connection: finish a connect, reset it if the peer
/// stalled, move bytes both ways, tell the client the stream ended, and
/// say whether it is over. `stall_limit`: now and the stall timeout.
fn move_tcp(
    id: u32,
    c: &mut Conn,
    s: &mut tcp::Socket,
    cx: &mut Cx<Ctx>,
    stall_limit: (u64, u64),
) -> Moved {
    let mut moved = Moved::default();
    if c.connecting.is_some() {
        match finish_connect(c, s, cx) {
            Connect::Established => moved.progress = true,
            Connect::InProgress => return moved,
            Connect::Failed => {
                moved.done = true;
                return moved;
            }
        }
    }
    if reset_if_stalled(c, s, cx, stall_limit) {
        moved.stalled = true;
        moved.progress = true;
    }
    moved.progress |= client_to_socket(c, s);
    c.stall.wrote(s.send_queue());
    pause_or_resume(id, c, cx);
    moved.progress |= socket_to_client(c, s, cx);
    match tell_end(c, s, cx) {
        End::NotYet => {}
        End::Told => moved.progress = true,
        // The client's queue is full: try again on the next round.
        End::Retry => return moved,
    }
    moved.done = is_over(c, s, cx);
    moved
}

enum Connect {
    Established,
    InProgress,
    Failed,
}

/// Answers the connect request once the socket is established (or failed,
/// or timed out).
fn finish_connect(c: &mut Conn, s: &mut tcp::Socket, cx: &mut Cx<Ctx>) -> Connect {
    let Some((client, call_id, _)) = &c.connecting else {
        return Connect::Established;
    };
    let (client, call_id) = (*client, *call_id);
    let error = match s.state() {
        tcp::State::Established | tcp::State::CloseWait => {
            if let Some((_, _, theirs)) = c.connecting.take() {
                send_reply(cx, client, call_id, theirs);
            }
            return Connect::Established;
        }
        tcp::State::SynSent if now_ns() < c.connect_deadline => return Connect::InProgress,
        tcp::State::SynSent => (codes::TIMED_OUT, "connect timed out".to_string()),
        _ => {
            let text = match s.remote_endpoint() {
                Some(p) => format!("connection to {p} refused"),
                None => "connection refused".to_string(),
            };
            (codes::REFUSED, text)
        }
    };
    s.abort();
    send_error(cx, client, call_id, error.0, &error.1);
    c.connecting = None;
    c.told_end = true;
    c.client_gone = true;
    Connect::Failed
}

/// Resets the connection if bytes have waited for the peer for the stall
/// timeout and it acknowledged none (a peer that keeps its window shut,
/// answering probes but never reading, would hold the socket, its buffers
/// and the client's queue forever): the client is told with `Abort`.
/// True if it did.
fn reset_if_stalled(
    c: &mut Conn,
    s: &mut tcp::Socket,
    cx: &mut Cx<Ctx>,
    (now, limit): (u64, u64),
) -> bool {
    if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
        return false;
    }
    let waiting = s.send_queue() > 0 || !c.to_socket.is_empty();
    if !c.stall.expired(s.send_queue(), waiting, now, limit) {
        return false;
    }
    s.abort();
    c.to_socket.clear();
    c.client_closed = true;
    if !c.told_end && c.ch != HandleId(0) {
        let abort = Message::Abort {
            code: codes::TIMED_OUT,
            reason: "the peer acknowledged nothing for too long",
        };
        let _ = cx.send(c.ch, abort);
    }
    c.told_end = true;
    true
}

/// Writes what the client sent into the socket, and the FIN once the
/// client closed and all is written.
fn client_to_socket(c: &mut Conn, s: &mut tcp::Socket) -> bool {
    let mut progress = false;
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
    progress
}

/// Stops reading the client while its bytes pile up for the socket, and
/// reads it again once half of that is written.
fn pause_or_resume(id: u32, c: &mut Conn, cx: &mut Cx<Ctx>) {
    let piled_up = c.to_socket.len() >= CLIENT_BACKLOG_MAX;
    let result = if piled_up && !c.paused && !c.client_gone {
        c.paused = true;
        cx.pause_receiving(c.ch)
    } else if c.paused && c.to_socket.len() < CLIENT_BACKLOG_MAX / 2 {
        c.paused = false;
        cx.resume_receiving(c.ch)
    } else {
        Ok(())
    };
    if let Err(e) = result {
        log::warn!("connection {id}: cannot pause or resume reading the client: {e}");
    }
}

/// Sends what the socket received to the client while its channel has no
/// backlog (the rest waits in the socket).
fn socket_to_client(c: &mut Conn, s: &mut tcp::Socket, cx: &mut Cx<Ctx>) -> bool {
    if c.client_gone {
        // Nobody to deliver to: discard what arrives.
        while s.can_recv() {
            let _ = s.recv(|b| (b.len(), ()));
        }
        return false;
    }
    let mut progress = false;
    while s.can_recv() && cx.backlog_bytes(c.ch) == 0 {
        let sent = s.recv(|b| {
            let chunk = &b[..b.len().min(CHUNK)];
            match cx.send_data(c.ch, chunk) {
                Ok(()) => (chunk.len(), Ok(())),
                Err(e) => (0, Err(e)),
            }
        });
        match sent {
            Ok(Ok(())) => progress = true,
            Err(_) => break,
            Ok(Err(_)) => {
                c.client_gone = true;
                break;
            }
        }
    }
    progress
}

enum End {
    NotYet,
    Told,
    Retry,
}

/// Tells the client the stream ended (`Abort` on a reset, `Close` on the
/// peer's FIN) once everything before was handed over.
fn tell_end(c: &mut Conn, s: &mut tcp::Socket, cx: &mut Cx<Ctx>) -> End {
    if c.told_end || s.can_recv() {
        return End::NotYet;
    }
    let state = s.state();
    let end = if state == tcp::State::Closed && !c.fin_sent {
        Message::Abort {
            code: codes::RESET,
            reason: "connection reset",
        }
    } else if !s.may_recv() && state != tcp::State::Listen {
        Message::Close
    } else {
        return End::NotYet;
    };
    let is_close = matches!(end, Message::Close);
    let sent = if c.ch == HandleId(0) {
        Ok(())
    } else {
        cx.send(c.ch, end)
    };
    if is_close && sent.is_err() && !c.client_gone {
        return End::Retry;
    }
    c.told_end = true;
    End::Told
}

/// Whether the connection is over: the socket finished, and the client is
/// gone or was told the end (all of it delivered) after our FIN went out
/// (or after a reset by the peer, with nothing left for the socket).
fn is_over(c: &Conn, s: &tcp::Socket, cx: &Cx<Ctx>) -> bool {
    let finished = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
    let told = c.told_end && cx.backlog_bytes(c.ch) == 0;
    finished && (c.client_gone || (told && (c.fin_sent || c.to_socket.is_empty())))
}
