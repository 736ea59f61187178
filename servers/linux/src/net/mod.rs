//! The guest's network: a user-mode NAT between the guest's virtio-net and
//! Starina's `tcpip`, on the main thread.
//!
//! The guest and the NAT share a private Ethernet link (`10.0.3.0/24`, MTU
//! 64 KiB): the guest is `GUEST`, the NAT `GATEWAY` (its default route and
//! its DNS server). smoltcp terminates the guest's TCP on the NAT's side
//! with `any_ip` (it answers for every address the guest routes to it), and
//! each flow becomes a `tcpip` channel:
//!
//! - **out** ([`tcp`]): the guest's SYN to `a.b.c.d:p` is held while the
//!   NAT opens `tcp:a.b.c.d:p` on tcpip; once connected, a smoltcp socket
//!   listening on exactly that address takes the SYN, so the guest's
//!   connect succeeds only when the outside one did (and is reset when it
//!   failed);
//!   the gateway's own address (`starina.internal`) is the native side:
//!   `tcp:127.0.0.1:p`, which tcpip connects to its native listener on `p`;
//! - **UDP** ([`udp`]): one `udp:a.b.c.d:p` channel per (guest port, peer),
//!   dropped when idle; DNS to the gateway goes to tcpip's DNS server
//!   (`udp-dns:`), except the names the NAT owns ([`dns`]);
//! - **in** ([`forwards`]): when the guest agent reports a listener, the NAT
//!   listens on the same port on tcpip; each connection there becomes a
//!   smoltcp connection into the guest from the client's own address, so
//!   the Linux server sees the real peer;
//! - **UDP in** ([`udp_forwards`]): when the agent reports a bound UDP
//!   socket, the NAT opens `udp-listen:` on the same port; each datagram
//!   there goes into the guest from the peer's own address, and what the
//!   guest sends from that port goes out through it.
//!
//! Bytes never pile up: a flow reads its socket only while its channel has
//! no backlog, and reads its channel only while less than about 64 KiB
//! waits for its socket (else the channel is paused and the sender meets
//! backpressure); while the guest has bytes of a flow unacknowledged, the
//! flow gathers up to that much (for a millisecond at most) so the guest
//! gets few large segments rather than one per message. Flows are bounded
//! in number (config), each with fixed socket buffers.

mod dns;
mod forwards;
pub mod frame;
mod link;
mod tcp;
mod udp;
mod udp_forwards;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::iface::Config;
use smoltcp::iface::Interface;
use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use smoltcp::wire::HardwareAddress;
use smoltcp::wire::IpCidr;
use smoltcp::wire::Ipv4Address;
use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::Message;
use starina::timer::now_ns;
use starina::HandleId;

use crate::Ctx;
use frame::Endpoint;
use frame::Kind;

/// The NAT's address on the guest's link: the guest's gateway and DNS
/// server, and `starina.internal`.
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 3, 2);
/// A peer on this machine as the guest sees it: tcpip's loopback (a
/// native component, or the guest itself through `starina.internal`)
/// names it 127.0.0.1 (or 0.0.0.0), which the guest would drop as a
/// martian; it comes from the gateway instead, which the guest routes back
/// to us.
pub fn seen_by_guest(addr: Ipv4Address) -> Ipv4Address {
    if addr.is_loopback() || addr.is_unspecified() {
        GATEWAY
    } else {
        addr
    }
}

/// The other way: the gateway, as the guest names this machine, is
/// 127.0.0.1 to tcpip.
pub fn seen_by_tcpip(addr: Ipv4Address) -> Ipv4Address {
    if addr == GATEWAY {
        Ipv4Address::new(127, 0, 0, 1)
    } else {
        addr
    }
}

/// The guest's address.
pub const GUEST: Ipv4Address = Ipv4Address::new(10, 0, 3, 15);
pub const PREFIX_LEN: u8 = 24;
/// Locally administered MACs on the private link.
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x53, 0x54, 0x00, 0x03, 0x02];
pub const GUEST_MAC: [u8; 6] = [0x02, 0x53, 0x54, 0x00, 0x03, 0x0f];

/// UDP frames waiting for the guest at most.
const TO_GUEST_MAX: usize = 256;

/// What the guest agent reads to configure the guest's side
/// (`starina.net=<guest>/<prefix>,<gateway>`).
pub fn cmdline() -> String {
    format!("starina.net={GUEST}/{PREFIX_LEN},{GATEWAY}")
}

/// Limits and policy, from the spec's config.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub mtu: usize,
    pub max_tcp_flows: usize,
    pub max_udp_flows: usize,
    /// Guest listeners on ports from here up are forwarded ...
    pub forward_min_port: u16,
    /// ... and these too.
    pub forward_ports: Vec<u16>,
}

/// What an `Open` the NAT sent to tcpip was for.
enum Call {
    Connect(tcp::Key),
    Udp(u32),
    Listen(u16),
    UdpListen(u16),
}

pub struct Nat {
    iface: Interface,
    sockets: SocketSet<'static>,
    link: link::Link,
    /// The tcpip channel (`Ctx::Tcpip`): `Open`s go out, replies come back.
    tcpip: HandleId,
    next_call: u32,
    calls: BTreeMap<u32, Call>,
    tcp: tcp::Flows,
    udp: udp::Flows,
    forwards: forwards::Forwards,
    udp_forwards: udp_forwards::UdpForwards,
    /// `Ctx::NetTimer`: smoltcp's next deadline and flow timeouts.
    timer: Option<HandleId>,
    /// Frames for the guest that did not come from smoltcp (UDP), at most
    /// `TO_GUEST_MAX`: datagrams past that are dropped, as a full link
    /// drops them.
    to_guest: VecDeque<Vec<u8>>,
    config: NetConfig,
    /// Log-line rate limit (one line a second at most per kind).
    quiet_until: [u64; 3],
}

/// One line a second at most per `which` (0 TCP flows, 1 UDP flows, 2
/// forwards).
fn rate_limited(quiet_until: &mut [u64; 3], which: usize) -> bool {
    let now = now_ns();
    if now < quiet_until[which] {
        return true;
    }
    quiet_until[which] = now + 1_000_000_000;
    false
}

fn now() -> Instant {
    Instant::from_micros((now_ns() / 1000) as i64)
}

impl Nat {
    /// The NAT on the `tcpip` channel `tcpip`, added to `cx`.
    pub fn new(cx: &mut Cx<Ctx>, tcpip: Channel, config: NetConfig) -> Result<Nat, starina::Error> {
        let tcpip = cx.add_channel(tcpip, Ctx::Tcpip)?;
        let timer = match starina::timer::Timer::create() {
            Ok(t) => cx.add_timer(t, Ctx::NetTimer).ok(),
            Err(e) => {
                log::warn!("net: no timer ({e}): idle UDP flows linger until the next packet");
                None
            }
        };
        let mut link = link::Link::new(config.mtu);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        iface_config.random_seed = now_ns();
        let mut iface = Interface::new(iface_config, &mut link, now());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(GATEWAY.into(), PREFIX_LEN));
        });
        // Everything the guest routes to us is ours to answer: a default
        // route through our own address makes smoltcp accept it.
        iface.set_any_ip(true);
        if iface.routes_mut().add_default_ipv4_route(GATEWAY).is_err() {
            log::warn!("net: no default route: outbound TCP will fail");
        }
        Ok(Nat {
            iface,
            sockets: SocketSet::new(Vec::new()),
            link,
            tcpip,
            next_call: 1,
            calls: BTreeMap::new(),
            tcp: tcp::Flows::default(),
            udp: udp::Flows::default(),
            forwards: forwards::Forwards::default(),
            udp_forwards: udp_forwards::UdpForwards::default(),
            timer,
            to_guest: VecDeque::new(),
            config,
            quiet_until: [0; 3],
        })
    }

    /// Its limits and policy (a NAT that replaces it takes them).
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Takes the NAT's channels and timer out of the loop (closing them):
    /// its flows end, and the guest's connections through it are reset by
    /// the next NAT, which knows none of them.
    pub fn shut_down(self, cx: &mut Cx<Ctx>) {
        let mut ids: Vec<HandleId> = alloc::vec![self.tcpip];
        ids.extend(self.timer);
        ids.extend(self.tcp.channels());
        ids.extend(self.udp.channels());
        ids.extend(self.forwards.channels());
        ids.extend(self.udp_forwards.channels());
        for id in ids {
            cx.remove(id);
        }
    }

    /// Sends `Open { uri }` to tcpip for `call`.
    fn open(&mut self, cx: &mut Cx<Ctx>, uri: &str, call: Call) -> Result<(), starina::Error> {
        let call_id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1).max(1);
        cx.send(
            self.tcpip,
            Message::Open {
                call_id,
                uri,
                handle: None,
            },
        )?;
        self.calls.insert(call_id, call);
        Ok(())
    }

    /// Frames the guest sent.
    pub fn on_guest_frames(&mut self, cx: &mut Cx<Ctx>, frames: Vec<Vec<u8>>) {
        for frame in frames {
            let syn = match frame::classify(&frame) {
                Kind::Syn { from, to } if from.addr == GUEST => Some((from, to)),
                Kind::Udp { from, to, payload } if from.addr == GUEST => {
                    self.on_udp(cx, from, to, payload);
                    continue;
                }
                _ => None,
            };
            let for_smoltcp = match syn {
                Some((from, to)) => self.on_syn(cx, from, to, frame),
                None => Some(frame),
            };
            self.link.rx.extend(for_smoltcp);
        }
    }

    /// A reply to one of our `Open`s.
    pub fn on_tcpip_reply(&mut self, cx: &mut Cx<Ctx>, msg: Message<'_>) {
        let (call_id, result) = match msg {
            Message::OpenReply { call_id, handle } => (call_id, Ok(Channel::from_handle(handle))),
            Message::Error { call_id, text, .. } => (call_id, Err(String::from(text))),
            other => {
                log::warn!("net: ignoring a {:?} message from tcpip", other.kind());
                return;
            }
        };
        match self.calls.remove(&call_id) {
            Some(Call::Connect(key)) => self.on_connected(cx, key, result),
            Some(Call::Udp(id)) => self.on_udp_opened(cx, id, result),
            Some(Call::Listen(port)) => self.on_listen_reply(cx, port, result),
            Some(Call::UdpListen(port)) => self.on_udp_listen_reply(cx, port, result),
            None => log::warn!("net: tcpip answered unknown call {call_id}"),
        }
    }

    /// Runs smoltcp and the flows, and re-arms the timer. Call after every
    /// event the NAT handled; then take [`Nat::next_to_guest`].
    pub fn service(&mut self, cx: &mut Cx<Ctx>) {
        self.iface.poll(now(), &mut self.link, &mut self.sockets);
        let moved = self.pump_tcp(cx);
        if moved {
            // What the flows wrote goes out now, not at the next event.
            self.iface.poll(now(), &mut self.link, &mut self.sockets);
        }
        self.expire_udp(cx);
        self.arm_timer(cx);
    }

    fn arm_timer(&mut self, cx: &mut Cx<Ctx>) {
        let Some(timer) = self.timer else {
            return;
        };
        let smoltcp = self
            .iface
            .poll_delay(now(), &self.sockets)
            .map(|d| d.total_micros() * 1000);
        let udp = (!self.udp.is_empty()).then_some(udp::SWEEP_NS);
        let pending = (!self.tcp.pending_is_empty()).then_some(tcp::SWEEP_NS);
        let gather = (self.tcp.gather_deadline()).map(|t| t.saturating_sub(now_ns()));
        let next = [smoltcp, udp, pending, gather].into_iter().flatten().min();
        if let Some(ns) = next {
            let _ = cx.set_timer(timer, ns.max(100_000));
        }
    }

    /// Whether the guest's driver takes frames without checksums.
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.link.checksum_offload = on;
    }

    /// The next frame for the guest, if any.
    pub fn next_to_guest(&mut self) -> Option<Vec<u8>> {
        self.link
            .tx
            .pop_front()
            .or_else(|| self.to_guest.pop_front())
    }

    pub fn has_to_guest(&self) -> bool {
        !self.link.tx.is_empty() || !self.to_guest.is_empty()
    }
}

/// A short summary for the log when the NAT starts.
pub fn describe(config: &NetConfig) -> String {
    let extra: Vec<String> = config
        .forward_ports
        .iter()
        .map(|p| format!("{p}"))
        .collect();
    format!(
        "guest {GUEST}/{PREFIX_LEN} via {GATEWAY} (DNS, {}), MTU {}, at most {} TCP and {} UDP flows, forwarding listeners on ports {}+{}{}",
        dns::INTERNAL_NAME,
        config.mtu,
        config.max_tcp_flows,
        config.max_udp_flows,
        config.forward_min_port,
        if extra.is_empty() { "" } else { " and " },
        extra.join(",")
    )
}

/// The endpoint of a `tcp-conn:<ip>:<port>` URI.
fn parse_conn_uri(uri: &str) -> Option<Endpoint> {
    let rest = uri.strip_prefix("tcp-conn:")?;
    let (ip, port) = rest.rsplit_once(':')?;
    let addr: core::net::Ipv4Addr = ip.parse().ok()?;
    Some(Endpoint {
        addr,
        port: port.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_uris() {
        assert_eq!(
            parse_conn_uri("tcp-conn:10.0.2.2:5555"),
            Some(Endpoint {
                addr: Ipv4Address::new(10, 0, 2, 2),
                port: 5555
            })
        );
        assert_eq!(parse_conn_uri("tcp-conn:10.0.2.2"), None);
        assert_eq!(parse_conn_uri("tcp:10.0.2.2:1"), None);
        assert_eq!(parse_conn_uri("tcp-conn:x:1"), None);
        assert_eq!(parse_conn_uri("tcp-conn:1.2.3.4:70000"), None);
    }

    #[test]
    fn cmdline_names_both_addresses() {
        assert_eq!(cmdline(), "starina.net=10.0.3.15/24,10.0.3.2");
    }
}
