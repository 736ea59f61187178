//! The client protocol: `Open { call_id, uri }` requests, answered by
//! `OpenReply` (from the handler that serves the request) or by one
//! `Error` (sent here). Requests that need the network wait for it.

use alloc::format;
use alloc::string::String;

use smoltcp::wire::IpAddress;
use smoltcp::wire::IpEndpoint;
use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::timer::now_ns;
use starina::HandleId;
use starina::Message;

use crate::dns::Query;
use crate::server::Ctx;
use crate::server::Server;
use crate::uri;
use crate::uri::Host;
use crate::uri::Request;

/// How long a request waits for the link and DHCP before failing.
const WAIT_FOR_NETWORK_NS: u64 = 20_000_000_000;

/// Why an open request was refused: the code and text of its `Error` reply.
pub struct Refusal {
    pub code: u16,
    pub text: String,
}

impl Refusal {
    pub fn new(code: u16, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
    }

    pub fn unavailable(text: impl Into<String>) -> Refusal {
        Refusal::new(codes::UNAVAILABLE, text)
    }

    /// The refusal of a URI that does not parse.
    fn bad_uri(uri: &str, e: uri::UriError) -> Refusal {
        let code = if e == uri::UriError::UnknownScheme {
            codes::NOT_FOUND
        } else {
            codes::INVALID
        };
        Refusal::new(code, format!("{uri}: {}", e.text()))
    }
}

/// Sends the `Error` reply for a refused request (the one place requests
/// are refused from).
pub fn answer(cx: &mut Cx<Ctx>, client: HandleId, call_id: u32, result: Result<(), Refusal>) {
    if let Err(r) = result {
        send_error(cx, client, call_id, r.code, &r.text);
    }
}

/// Sends an `Error` reply (a client that went away gets none).
pub fn send_error(cx: &mut Cx<Ctx>, client: HandleId, call_id: u32, code: u16, text: &str) {
    let error = Message::Error {
        call_id,
        code,
        text,
    };
    if let Err(e) = cx.send(client, error) {
        log::debug!("cannot answer a request: {e}");
    }
}

/// Sends an `OpenReply` carrying `ch` (a client that went away gets none,
/// and the channel closes).
pub fn send_reply(cx: &mut Cx<Ctx>, client: HandleId, call_id: u32, ch: Channel) {
    let reply = Message::OpenReply {
        call_id,
        handle: ch.into_handle(),
    };
    if let Err(e) = cx.send(client, reply) {
        log::debug!("cannot answer a request: {e}");
    }
}

/// A request not answered yet.
pub enum Pending {
    /// Link or DHCP not ready yet.
    Waiting {
        client: HandleId,
        call_id: u32,
        uri: String,
        deadline: u64,
    },
    /// A DNS query for a `tcp:` or `udp:` request by name.
    Resolving(Query),
}

impl Server {
    /// Serves an `Open` request from a client.
    pub fn open(&mut self, cx: &mut Cx<Ctx>, client: HandleId, call_id: u32, uri: String) {
        let request = match uri::parse(&uri) {
            Ok(r) => r,
            Err(e) => {
                answer(cx, client, call_id, Err(Refusal::bad_uri(&uri, e)));
                return;
            }
        };
        let ready = request == Request::Stats
            || (self.iface.is_some()
                && (self.configured
                    || matches!(request, Request::Listen { .. } | Request::UdpListen { .. })));
        if !ready {
            self.pending.push(Pending::Waiting {
                client,
                call_id,
                uri,
                deadline: now_ns() + WAIT_FOR_NETWORK_NS,
            });
            return;
        }
        let to = |ip, port| IpEndpoint::new(IpAddress::Ipv4(ip), port);
        let result = match request {
            Request::Stats => self.send_stats(cx, client, call_id),
            Request::Listen { port } => self.listen(cx, client, call_id, port),
            Request::UdpListen { port } => self.udp_listen(cx, client, call_id, port),
            Request::Tcp {
                host: Host::Ip(ip),
                port,
            } if self.is_local(ip) => self.connect_loopback(cx, client, call_id, port),
            Request::Tcp {
                host: Host::Name(name),
                port,
            } if crate::loopback::LOCAL_NAMES.contains(&name) => {
                self.connect_loopback(cx, client, call_id, port)
            }
            Request::Tcp {
                host: Host::Ip(ip),
                port,
            } => self.connect(cx, client, call_id, to(ip, port)),
            Request::Udp {
                host: Host::Ip(ip),
                port,
            } if self.is_local(ip) => self.udp_loopback(cx, client, call_id, port),
            Request::Udp {
                host: Host::Name(name),
                port,
            } if crate::loopback::LOCAL_NAMES.contains(&name) => {
                self.udp_loopback(cx, client, call_id, port)
            }
            Request::Udp {
                host: Host::Ip(ip),
                port,
            } => self.udp(cx, client, call_id, to(ip, port)),
            Request::UdpDns => match self.dns_servers.first() {
                Some(&server) => self.udp(cx, client, call_id, to(server, 53)),
                None => Err(Refusal::unavailable(String::from(
                    "udp-dns: DHCP gave no DNS server",
                ))),
            },
            Request::Tcp {
                host: Host::Name(name),
                port,
            } => self.resolve(client, call_id, name, port, false),
            Request::Udp {
                host: Host::Name(name),
                port,
            } => self.resolve(client, call_id, name, port, true),
        };
        answer(cx, client, call_id, result);
    }

    /// Serves waiting requests the network is ready for, fails those past
    /// their deadline, and answers DNS queries that finished.
    pub fn retry_pending(&mut self, cx: &mut Cx<Ctx>) {
        if self.pending.is_empty() {
            return;
        }
        let now = now_ns();
        let pending = core::mem::take(&mut self.pending);
        for p in pending {
            let still = match p {
                Pending::Waiting {
                    client,
                    call_id,
                    uri,
                    deadline,
                } => self.retry_waiting(cx, now, client, call_id, uri, deadline),
                Pending::Resolving(query) => self.check_query(cx, now, query),
            };
            if let Some(p) = still {
                self.pending.push(p);
            }
        }
    }

    /// A request waiting for the network: served, failed, or still
    /// waiting (returned).
    fn retry_waiting(
        &mut self,
        cx: &mut Cx<Ctx>,
        now: u64,
        client: HandleId,
        call_id: u32,
        uri: String,
        deadline: u64,
    ) -> Option<Pending> {
        if self.iface.is_some() && self.configured {
            self.open(cx, client, call_id, uri);
        } else if now >= deadline {
            send_error(
                cx,
                client,
                call_id,
                codes::UNAVAILABLE,
                &format!("{uri}: the network is not configured (no link or no DHCP answer)"),
            );
        } else {
            return Some(Pending::Waiting {
                client,
                call_id,
                uri,
                deadline,
            });
        }
        None
    }
}
