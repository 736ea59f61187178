//! `stats:`: the server's figures as one JSON object, on a channel of its
//! own (one `Data`, then `Close`).

use alloc::format;
use alloc::string::String;

use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::HandleId;
use starina::Message;

use crate::requests::send_reply;
use crate::requests::Refusal;
use crate::server::Ctx;
use crate::server::Server;

/// What the server holds in memory (socket buffers, queued bytes), what
/// it serves, and what it dropped.
#[derive(Debug, Default)]
pub struct Figures {
    pub socket_buffer_bytes: usize,
    pub queued_bytes: usize,
    pub tcp_sockets: usize,
    pub udp_sockets: usize,
    pub other_sockets: usize,
    pub listening_sockets: usize,
    pub connections: usize,
    pub closing_sockets: usize,
    pub pending_requests: usize,
    pub rx_dropped: u64,
    pub syn_dropped: u64,
    /// Half-open connections reset by the SYN timeout.
    pub syn_expired: u64,
    /// Connections reset by the stall timeout.
    pub stalled: u64,
    /// Connections made between two clients on this machine (`loopback`).
    pub loopback_connections: u64,
    /// TCP segments from the network dropped for a wrong checksum.
    pub rx_bad_checksum: u64,
}

impl Figures {
    /// The JSON object (`memory_bytes` is buffers plus queued bytes).
    pub fn json(&self) -> String {
        format!(
            "{{\"memory_bytes\":{},\"socket_buffer_bytes\":{},\"queued_bytes\":{},\"tcp_sockets\":{},\"udp_sockets\":{},\"other_sockets\":{},\"listening_sockets\":{},\"connections\":{},\"closing_sockets\":{},\"pending_requests\":{},\"rx_dropped\":{},\"syn_dropped\":{},\"syn_expired\":{},\"stalled\":{},\"loopback_connections\":{},\"rx_bad_checksum\":{}}}",
            self.socket_buffer_bytes + self.queued_bytes,
            self.socket_buffer_bytes,
            self.queued_bytes,
            self.tcp_sockets,
            self.udp_sockets,
            self.other_sockets,
            self.listening_sockets,
            self.connections,
            self.closing_sockets,
            self.pending_requests,
            self.rx_dropped,
            self.syn_dropped,
            self.syn_expired,
            self.stalled,
            self.loopback_connections,
            self.rx_bad_checksum,
        )
    }
}

impl Server {
    /// The figures now (`cx` knows what waits in the clients' outboxes).
    pub fn figures(&self, cx: &Cx<Ctx>) -> Figures {
        let mut f = Figures::default();
        for (_, socket) in self.sockets.iter() {
            match socket {
                smoltcp::socket::Socket::Tcp(t) => {
                    f.tcp_sockets += 1;
                    f.socket_buffer_bytes += t.recv_capacity() + t.send_capacity();
                }
                smoltcp::socket::Socket::Udp(u) => {
                    f.udp_sockets += 1;
                    f.socket_buffer_bytes += u.payload_recv_capacity() + u.payload_send_capacity();
                }
                _ => f.other_sockets += 1,
            }
        }
        f.listening_sockets = self.listeners.values().map(|l| l.sockets.len()).sum();
        let conn_bytes: usize = self
            .conns
            .values()
            .map(|c| c.to_socket.len() + cx.backlog_bytes(c.ch))
            .chain(self.udp_listeners.values().map(|l| cx.backlog_bytes(l.ch)))
            .sum();
        let link = &self.link;
        let frame_bytes = link.rx.iter().map(|f| f.len()).sum::<usize>() + link.tx.bytes();
        f.queued_bytes = conn_bytes + frame_bytes;
        f.connections = self.conns.len();
        f.closing_sockets = self.zombies.len();
        f.pending_requests = self.pending.len();
        f.rx_dropped = link.rx_dropped;
        f.syn_dropped = link.syn_dropped;
        f.rx_bad_checksum = link.rx_bad_checksum;
        f.syn_expired = self.syn_expired;
        f.stalled = self.stalled;
        f.loopback_connections = self.loopback_connections;
        f
    }

    /// Answers `stats:` with a channel that holds the figures (one `Data`
    /// with a JSON object) followed by `Close`.
    pub fn send_stats(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
    ) -> Result<(), Refusal> {
        let (ours, theirs) = Channel::create().map_err(|e| Refusal::unavailable(format!("{e}")))?;
        let json = self.figures(cx).json();
        if ours.send_data(json.as_bytes()).is_err() || ours.send(Message::Close).is_err() {
            return Err(Refusal::unavailable("cannot queue the figures"));
        }
        send_reply(cx, client, call_id, theirs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_as_json() {
        let f = Figures {
            socket_buffer_bytes: 1000,
            queued_bytes: 24,
            tcp_sockets: 3,
            udp_sockets: 1,
            other_sockets: 2,
            listening_sockets: 2,
            connections: 1,
            closing_sockets: 0,
            pending_requests: 4,
            rx_dropped: 5,
            syn_dropped: 6,
            syn_expired: 7,
            stalled: 8,
            loopback_connections: 9,
            rx_bad_checksum: 10,
        };
        assert_eq!(
            f.json(),
            "{\"memory_bytes\":1024,\"socket_buffer_bytes\":1000,\"queued_bytes\":24,\
             \"tcp_sockets\":3,\"udp_sockets\":1,\"other_sockets\":2,\"listening_sockets\":2,\
             \"connections\":1,\"closing_sockets\":0,\"pending_requests\":4,\"rx_dropped\":5,\
             \"syn_dropped\":6,\"syn_expired\":7,\"stalled\":8,\"loopback_connections\":9,\"rx_bad_checksum\":10}"
        );
    }
}
