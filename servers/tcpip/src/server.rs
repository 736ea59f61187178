//! The server's state, and the service round: poll smoltcp, then move
//! what it made possible (DHCP, waiting requests, new connections, data),
//! until nothing is left to do now.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::Interface;
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::time::Instant;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::mainloop::legacy::Mainloop;
use starina::timer::now_ns;
use starina::Error;
use starina::HandleId;

use crate::conn::Conn;
use crate::link;
use crate::link::Link;
use crate::listener::Listener;
use crate::requests::Pending;
use crate::Config;
use crate::Ctx;

/// Longest wait between two smoltcp polls (timeouts are checked then).
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);

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

/// Main-loop changes collected while the loop is borrowed (by an event),
/// made by [`Server::apply`].
#[derive(Default)]
pub struct LoopChanges {
    /// (channel, on): `watch_writable` calls to make.
    pub watch: Vec<(HandleId, bool)>,
    /// Channels to put back into the main loop.
    pub resume: Vec<(u32, Channel)>,
    /// Channels of new connections to add to the main loop.
    pub added: Vec<(Channel, Ctx)>,
}

pub struct Server {
    /// Listening sockets kept ready per listener.
    pub backlog: usize,
    /// Bytes of each TCP socket buffer (each way).
    pub buffer: usize,
    pub iface: Option<Interface>,
    pub link: Link,
    pub sockets: SocketSet<'static>,
    pub dhcp: Option<SocketHandle>,
    pub dns: Option<SocketHandle>,
    pub configured: bool,
    pub listeners: BTreeMap<u32, Listener>,
    pub conns: BTreeMap<u32, Conn>,
    pub pending: Vec<Pending>,
    /// Sockets closing or aborted, removed once done.
    pub zombies: Vec<SocketHandle>,
    next_id: u32,
    pub ports: Ports,
    pub net: Option<HandleId>,
    pub net_watching: bool,
    /// The driver's channel, while it is out of the main loop (not read
    /// from) because `link.rx` is full: frames then wait in the channel,
    /// the driver and the NIC instead of being dropped.
    pub net_paused: Option<Channel>,
    pub changes: LoopChanges,
    /// Receive buffer for draining the driver's channel.
    pub net_buf: MessageBuffer,
    /// When the next service round is due (`now_ns`).
    pub next_service: u64,
    /// Something cannot wait for the next round (a queue hit its limit).
    pub urgent: bool,
}

impl Server {
    pub fn new(config: &Config, net: HandleId) -> Server {
        Server {
            backlog: (config.backlog.clamp(1, 512)) as usize,
            buffer: (config.socket_buffer.clamp(2048, 1 << 20)) as usize,
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
            ports: Ports::new(),
            net: Some(net),
            net_watching: false,
            net_paused: None,
            changes: LoopChanges::default(),
            net_buf: MessageBuffer::new(),
            next_service: 0,
            urgent: false,
        }
    }

    /// A fresh key for `listeners` or `conns` (never 0).
    pub fn alloc_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// How long the main loop may wait for events before the next round.
    pub fn poll_delay(&mut self) -> Duration {
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

    /// Polls smoltcp and moves data until nothing is left to do now.
    pub fn service(&mut self, ml: &mut Mainloop<Ctx>) {
        for _ in 0..64 {
            if self.iface.is_none() {
                break;
            }
            self.link.rx_budget = link::RX_BUDGET;
            self.budget_syns();
            if let Some(iface) = self.iface.as_mut() {
                iface.poll(now(), &mut self.link, &mut self.sockets);
            }
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

    /// New connections a listener can take now: SYNs beyond that are
    /// dropped (the peer retries) rather than refused with a reset.
    fn budget_syns(&mut self) {
        self.link.syn_budget.clear();
        for l in self.listeners.values() {
            let free = l
                .sockets
                .iter()
                .filter(|&&s| self.sockets.get::<tcp::Socket>(s).state() == tcp::State::Listen)
                .count();
            self.link.syn_budget.push((l.port, free));
        }
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
    pub fn apply(&mut self, ml: &mut Mainloop<Ctx>) {
        for (ch, ctx) in self.changes.added.drain(..) {
            if let Err(e) = ml.add_channel(ch, ctx) {
                log::warn!("cannot watch a new connection: {e}");
            }
        }
        for (id, ch) in self.changes.resume.drain(..) {
            if let Err(e) = ml.add_channel(ch, Ctx::Conn(id)) {
                log::warn!("cannot resume connection {id}: {e}");
            }
        }
        for (id, on) in self.changes.watch.drain(..) {
            if id != HandleId(0) {
                let _ = ml.watch_writable(id, on);
            }
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
                        self.changes.watch.push((net, true));
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
