//! Listeners: `tcp-listen:` requests keep sockets listening on the port
//! and hand each established connection to the client as
//! `Open { uri: "tcp-conn:<peer>", handle }` on the listener channel.
//!
//! A smoltcp socket takes one connection, so a listener needs one
//! listening socket per SYN it takes at once, up to `backlog`. Idle
//! listening sockets are not free (smoltcp visits every socket on every
//! poll, and each holds its buffers), so a listener keeps [`READY`] of
//! them, plus one for each SYN to its port among the frames the next poll
//! takes in ([`Server::ready_listeners`], before every poll); what a burst
//! left beyond that is closed again.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina::HandleId;
use starina::Message;

use crate::conn::tcp_socket;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;
use crate::timeouts::HalfOpen;

/// An accepted connection with no traffic this long is dropped (a
/// half-open one much sooner: `Server::syn_timeout_ns`).
const ACCEPTED_TIMEOUT: Duration = Duration::from_secs(120);
/// Listening sockets a listener keeps when no SYN waits.
const READY: usize = 2;

pub struct Listener {
    pub port: u16,
    pub ch: HandleId,
    /// Sockets listening right now (each takes one connection).
    pub sockets: Vec<Listening>,
}

/// A listening socket, and how long it has been half-open.
pub struct Listening {
    pub handle: SocketHandle,
    pub half_open: HalfOpen,
}

impl Server {
    /// Serves `tcp-listen:0.0.0.0:<port>`.
    pub fn listen(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        port: u16,
    ) -> Result<(), Refusal> {
        if self.listeners.values().any(|l| l.port == port) {
            return Err(Refusal::unavailable(format!(
                "port {port} already has a listener"
            )));
        }
        let (id, ch, theirs) = self.open_channel(cx, Ctx::Listener)?;
        let reply = Message::OpenReply {
            call_id,
            handle: theirs.into_handle(),
        };
        if cx.send(client, reply).is_err() {
            // The client is gone: nobody to answer.
            cx.remove(ch);
            return Ok(());
        }
        self.listeners.insert(
            id,
            Listener {
                port,
                ch,
                sockets: Vec::new(),
            },
        );
        self.refill_listener(id, 0);
        log::info!("listening on port {port}");
        Ok(())
    }

    /// Stops listener `id`: aborts its listening sockets, closes its
    /// channel.
    pub fn unlisten(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(l) = self.listeners.remove(&id) {
            for s in l.sockets {
                self.sockets.get_mut::<tcp::Socket>(s.handle).abort();
                self.zombies.push(s.handle);
            }
            if l.ch != HandleId(0) {
                cx.remove(l.ch);
            }
            log::info!("stopped listening on port {}", l.port);
        }
    }

    /// Gives every listener a listening socket for each SYN to its port
    /// in the next `frames` received frames (and [`READY`] more), within
    /// `backlog`.
    pub fn ready_listeners(&mut self, frames: usize) {
        let mut next = self.link.rx.iter().take(frames);
        if !next.any(|f| crate::link::syn_port(f).is_some()) {
            // `accept` keeps every listener at READY.
            return;
        }
        let ids: Vec<(u32, u16)> = self.listeners.iter().map(|(&id, l)| (id, l.port)).collect();
        for (id, port) in ids {
            let syns = self.link.syns_waiting(port, frames);
            self.refill_listener(id, syns);
        }
    }

    /// Gives listener `id` [`READY`] + `syns` sockets in the listening
    /// state (within `backlog` sockets in all), closing listening ones
    /// beyond that.
    fn refill_listener(&mut self, id: u32, syns: usize) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let sockets = &mut self.sockets;
        let listening =
            |s: &Listening| sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Listen;
        let idle = l.sockets.iter().filter(|s| listening(s)).count();
        let target = READY + syns;
        if idle > target {
            let mut extra = idle - target;
            let mut closed = Vec::new();
            l.sockets.retain(|s| {
                let close = extra > 0 && listening(s);
                if close {
                    extra -= 1;
                    closed.push(s.handle);
                }
                !close
            });
            for handle in closed {
                self.sockets.remove(handle);
            }
            return;
        }
        let want = (l.sockets.len() + target - idle).min(self.backlog);
        let (port, have) = (l.port, l.sockets.len());
        let mut new = Vec::new();
        for _ in have..want {
            let mut s = tcp_socket(self.buffer, self.send_buffer, ACCEPTED_TIMEOUT);
            if s.listen(port).is_err() {
                break;
            }
            new.push(Listening {
                handle: self.sockets.add(s),
                half_open: HalfOpen::default(),
            });
        }
        if let Some(l) = self.listeners.get_mut(&id) {
            l.sockets.extend(new);
        }
    }

    /// Hands established connections of every listener to its client, and
    /// resets half-open ones older than the SYN timeout (their slots go to
    /// new connections).
    pub fn accept(&mut self, cx: &mut Cx<Ctx>) -> bool {
        let mut progress = false;
        let ids: Vec<u32> = self.listeners.keys().copied().collect();
        let (at, limit) = (now_ns(), self.syn_timeout_ns);
        for id in ids {
            let Some(l) = self.listeners.get_mut(&id) else {
                continue;
            };
            let mut taken = Vec::new();
            let mut expired = Vec::new();
            l.sockets.retain_mut(|s| {
                let socket = self.sockets.get::<tcp::Socket>(s.handle);
                let state = socket.state();
                let half_open = state == tcp::State::SynReceived;
                if s.half_open.expired(half_open, at, limit) {
                    expired.push(s.handle);
                    return false;
                }
                match state {
                    tcp::State::Listen | tcp::State::SynReceived => true,
                    _ => {
                        taken.push(s.handle);
                        false
                    }
                }
            });
            for s in expired {
                self.sockets.get_mut::<tcp::Socket>(s).abort();
                self.zombies.push(s);
                self.syn_expired += 1;
                progress = true;
            }
            for s in taken {
                progress = true;
                self.take_connection(cx, id, s);
            }
            self.refill_listener(id, 0);
        }
        progress
    }

    /// Makes a connection of socket `s`, which listener `id` accepted, and
    /// hands it to the listener's client.
    fn take_connection(&mut self, cx: &mut Cx<Ctx>, id: u32, s: SocketHandle) {
        let peer = self.sockets.get::<tcp::Socket>(s).remote_endpoint();
        let theirs = match self.new_conn(cx, s, None) {
            Ok((_, theirs)) => theirs,
            Err(e) => {
                log::warn!("cannot accept a connection: {e}");
                self.sockets.get_mut::<tcp::Socket>(s).abort();
                self.zombies.push(s);
                return;
            }
        };
        let uri = match peer {
            Some(p) => format!("tcp-conn:{p}"),
            None => "tcp-conn:unknown".to_string(),
        };
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        let offer = Message::Open {
            call_id: 0,
            uri: &uri,
            handle: Some(theirs.into_handle()),
        };
        if let Err(e) = cx.send(l.ch, offer) {
            log::warn!("cannot hand over a connection: {e}");
        }
    }
}
