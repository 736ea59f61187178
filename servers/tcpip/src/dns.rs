//! Names: `tcp:<name>:<port>` and `udp:<name>:<port>` requests start a DNS
//! query (A records, on the servers DHCP gave) and are served once it
//! answers.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;

use smoltcp::socket::dns;
use smoltcp::wire::IpAddress;
use smoltcp::wire::IpEndpoint;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::timer::now_ns;
use starina::HandleId;

use crate::requests::answer;
use crate::requests::send_error;
use crate::requests::Pending;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;

/// How long a DNS query may take.
const DNS_TIMEOUT_NS: u64 = 15_000_000_000;

/// A DNS query running for a request.
pub struct Query {
    query: dns::QueryHandle,
    client: HandleId,
    call_id: u32,
    port: u16,
    /// A `udp:` request (else `tcp:`).
    udp: bool,
    name: String,
    deadline: u64,
}

impl Server {
    /// Starts resolving `name` for a `tcp:` or `udp:` request.
    pub fn resolve(
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
                self.pending.push(Pending::Resolving(Query {
                    query,
                    client,
                    call_id,
                    port,
                    udp,
                    name: name.to_string(),
                    deadline: now_ns() + DNS_TIMEOUT_NS,
                }));
                Ok(())
            }
            Err(e) => Err(Refusal::unavailable(format!("cannot resolve {name}: {e}"))),
        }
    }

    /// Serves or fails the request of a finished query; returns it if it
    /// is still running.
    pub fn check_query(&mut self, cx: &mut Cx<Ctx>, now: u64, q: Query) -> Option<Pending> {
        let dns = self.dns?;
        let result = self
            .sockets
            .get_mut::<dns::Socket>(dns)
            .get_query_result(q.query);
        let (client, call_id) = (q.client, q.call_id);
        match result {
            Ok(addrs) => match addrs.iter().find(|a| matches!(a, IpAddress::Ipv4(_))) {
                Some(addr) => {
                    log::info!("resolved {} to {addr}", q.name);
                    let remote = IpEndpoint::new(*addr, q.port);
                    let result = if q.udp {
                        self.udp(cx, client, call_id, remote)
                    } else {
                        self.connect(cx, client, call_id, remote)
                    };
                    answer(cx, client, call_id, result);
                }
                None => send_error(
                    cx,
                    client,
                    call_id,
                    codes::NOT_FOUND,
                    &format!("{}: no IPv4 address", q.name),
                ),
            },
            Err(dns::GetQueryResultError::Pending) if now < q.deadline => {
                return Some(Pending::Resolving(q));
            }
            Err(dns::GetQueryResultError::Pending) => {
                self.sockets
                    .get_mut::<dns::Socket>(dns)
                    .cancel_query(q.query);
                send_error(
                    cx,
                    client,
                    call_id,
                    codes::TIMED_OUT,
                    &format!("{}: DNS query timed out", q.name),
                );
            }
            Err(dns::GetQueryResultError::Failed) => send_error(
                cx,
                client,
                call_id,
                codes::NOT_FOUND,
                &format!("{}: name not found", q.name),
            ),
        }
        None
    }
}
