//! One HTTP connection: the bytes received and not parsed yet, the
//! response going out, and the requests served in turn (keep-alive).
//! A response goes out while the connection's channel has no backlog;
//! `drained` resumes it.

use alloc::vec::Vec;

use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina::HandleId;
use starina::Message;

use crate::http::HeadScan;
use crate::pages::Site;
use crate::response::error_response;
use crate::response::Body;
use crate::response::CHUNK;
use crate::routes::respond;
use crate::routes::route;
use crate::routes::Get;
use crate::server::Ctx;
use crate::server::Server;

pub struct Conn {
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// Where `input`'s head ends, found one byte at a time.
    scan: HeadScan,
    /// When the head now awaited began to arrive (its first byte, or the
    /// end of the previous response if bytes were already waiting).
    head_since: Option<u64>,
    /// The response being sent.
    body: Option<Body>,
    /// Close once the response is out (the request or the client said so).
    close_after: bool,
    /// We sent `Close` (or the peer is gone): nothing more goes out.
    pub closing: bool,
    pub last_activity: u64,
}

impl Conn {
    pub fn new() -> Conn {
        Conn::opened_at(now_ns())
    }

    /// A connection opened at `now`.
    fn opened_at(now: u64) -> Conn {
        Conn {
            input: Vec::new(),
            scan: HeadScan::default(),
            head_since: None,
            body: None,
            close_after: false,
            closing: false,
            last_activity: now,
        }
    }

    /// Whether the connection is past a deadline at `now`: a request head
    /// that has been arriving for `request_ns` (however slowly it
    /// trickles: each byte moves `last_activity` but not this), or no
    /// traffic at all for `idle_ns`.
    pub fn expired(&self, now: u64, idle_ns: u64, request_ns: u64) -> Option<Expiry> {
        match self.head_since {
            Some(since) if now.saturating_sub(since) > request_ns => Some(Expiry::SlowHead),
            _ if now.saturating_sub(self.last_activity) > idle_ns => Some(Expiry::Idle),
            _ => None,
        }
    }

    /// Starts the head clock if a head is awaited and bytes of it are here.
    fn await_head(&mut self, now: u64) {
        if self.body.is_none() && !self.input.is_empty() && self.head_since.is_none() {
            self.head_since = Some(now);
        }
    }

    /// Buffers received bytes; far past any head we accept (`max_header`),
    /// keeps just enough to refuse it as too large.
    fn take_input(&mut self, data: &[u8], max_header: usize) {
        if self.input.len() + data.len() > max_header + CHUNK {
            self.input.truncate(0);
            self.input
                .extend_from_slice(&data[..data.len().min(max_header + 1)]);
            self.input.resize(max_header + 1, b'x');
            self.scan.reset();
        } else {
            self.input.extend_from_slice(data);
        }
    }
}

impl Server {
    /// A message on connection `id`.
    pub fn on_conn_message(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: HandleId,
        c: &mut Conn,
        msg: Message<'_>,
    ) {
        c.last_activity = now_ns();
        match msg {
            Message::Data(data) => {
                if c.closing {
                    return;
                }
                c.take_input(data, self.max_header);
                self.pump(cx, id, c);
            }
            Message::Close => {
                // The client is done sending. Finish what we are sending,
                // then close; nothing more to parse.
                c.close_after = true;
                if c.body.is_none() {
                    self.finish(cx, id, c);
                }
            }
            Message::Abort { .. } => self.drop_conn(cx, id),
            other => log::warn!("connection {id:?}: ignoring {:?}", other.kind()),
        }
    }

    /// Connection `id`'s backlog went out: go on with the response, or
    /// let the connection go if it was waiting for that to close.
    pub fn on_conn_drained(&mut self, cx: &mut Cx<Ctx>, id: HandleId, c: &mut Conn) {
        if !c.closing {
            self.pump(cx, id, c);
        } else if cx.backlog_bytes(id) == 0 {
            self.drop_conn(cx, id);
        }
    }

    /// Sends what can be sent and serves the next request when the
    /// previous response is out.
    fn pump(&mut self, cx: &mut Cx<Ctx>, id: HandleId, c: &mut Conn) {
        loop {
            if c.closing {
                return;
            }
            if c.body.is_some() {
                // A response still going out is activity: only a peer
                // that stops reading for the idle timeout is dropped.
                c.last_activity = now_ns();
                if !send_body(cx, id, c) {
                    return;
                }
                c.body = None;
                if c.close_after {
                    self.finish(cx, id, c);
                    return;
                }
            }
            // The next request, if a whole head is there.
            c.await_head(now_ns());
            if !c.scan.ready(&c.input, self.max_header) {
                return;
            }
            let site = Site {
                monitor: &self.monitor,
                stats: &self.stats,
                open: self.open,
                tcpip_stats: &self.tcpip_stats,
                forwards: &self.forwards,
                cpu_load: &self.cpu_load,
            };
            let files = self.files.as_mut();
            let serve = |get: &Get<'_>| route(&site, files, get);
            let Some(reply) = respond(&c.input, self.max_header, serve) else {
                return;
            };
            self.stats.requests += 1;
            c.input.drain(..reply.consumed);
            c.scan.reset();
            c.head_since = None;
            if reply.close {
                c.input.clear();
            }
            c.close_after |= reply.close;
            c.body = Some(reply.body);
        }
    }

    /// Ends our side of the connection: `Close` behind what is queued, and
    /// the channel goes once all of it is out.
    fn finish(&mut self, cx: &mut Cx<Ctx>, id: HandleId, c: &mut Conn) {
        c.closing = true;
        let _ = cx.send(id, Message::Close);
        if cx.backlog_bytes(id) == 0 {
            self.drop_conn(cx, id);
        }
    }

    /// Closes connection `id` and forgets it.
    pub fn drop_conn(&mut self, cx: &mut Cx<Ctx>, id: HandleId) {
        cx.remove(id);
        self.open -= 1;
    }

    /// Closes connections idle for too long, and those whose request head
    /// takes too long to arrive (with a 408 first).
    pub fn sweep(&mut self, cx: &mut Cx<Ctx>) {
        let now = now_ns();
        let (idle_ns, request_ns) = (self.idle_ns, self.request_ns);
        let expired: Vec<(HandleId, Expiry)> = cx
            .states_mut()
            .filter_map(|(id, state)| match state {
                Ctx::Conn(c) if !c.closing => Some((id, c.expired(now, idle_ns, request_ns)?)),
                _ => None,
            })
            .collect();
        for (id, why) in expired {
            if why == Expiry::SlowHead {
                self.stats.request_timeouts += 1;
                let body = error_response(408, "Request Timeout");
                if let Some(piece) = body.next_piece() {
                    let _ = cx.send_data(id, &piece);
                }
            }
            let _ = cx.send(id, Message::Close);
            self.drop_conn(cx, id);
        }
    }
}

/// Why [`Conn::expired`] says a connection must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    SlowHead,
}

/// Sends the response while the channel has no backlog (no piece is even
/// made while there is one); true once all of it is handed over (or the
/// peer is gone).
fn send_body(cx: &mut Cx<Ctx>, id: HandleId, c: &mut Conn) -> bool {
    let Some(body) = c.body.as_mut() else {
        return true;
    };
    loop {
        if cx.backlog_bytes(id) > 0 {
            return false;
        }
        let Some(piece) = body.next_piece() else {
            return true;
        };
        let n = piece.len();
        if cx.send_data(id, &piece).is_err() {
            c.closing = true;
            return true;
        }
        body.advance(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_bounded() {
        let mut c = Conn::opened_at(0);
        c.take_input(b"GET / HTTP/1.1\r\n", 100);
        assert_eq!(c.input, b"GET / HTTP/1.1\r\n");
        c.take_input(&[b'a'; CHUNK + 100], 100);
        assert_eq!(c.input.len(), 101);
        assert!(c.input.iter().all(|&b| b == b'a'));
    }

    const S: u64 = 1_000_000_000;

    /// A byte arrives at `now`, as `on_conn_message` and `pump` see it.
    fn byte(c: &mut Conn, b: u8, now: u64) {
        c.last_activity = now;
        c.take_input(&[b], 1024);
        c.await_head(now);
    }

    #[test]
    fn a_trickling_head_expires_though_never_idle() {
        let mut c = Conn::opened_at(0);
        assert_eq!(c.expired(5 * S, 10 * S, 10 * S), None);
        // One byte every 500 ms: the idle timer never fires...
        for (i, &b) in b"GET / HTTP/1.1\r\nX-Slow: ".iter().enumerate() {
            byte(&mut c, b, i as u64 * S / 2);
        }
        let now = 12 * S;
        byte(&mut c, b'a', now);
        assert!(!c.scan.ready(&c.input, 1024));
        assert_eq!(c.expired(now, 10 * S, 10 * S), Some(Expiry::SlowHead));
        // ...but the head clock started with the first byte.
        assert_eq!(c.head_since, Some(0));
        assert_eq!(c.expired(9 * S, 10 * S, 10 * S), None);
    }

    #[test]
    fn an_idle_connection_expires_after_the_idle_timeout() {
        let c = Conn::opened_at(S);
        assert_eq!(c.expired(11 * S, 10 * S, 5 * S), None);
        assert_eq!(c.expired(12 * S, 10 * S, 5 * S), Some(Expiry::Idle));
    }

    #[test]
    fn the_head_clock_waits_for_the_response() {
        let mut c = Conn::opened_at(0);
        c.body = Some(error_response(400, "Bad Request"));
        // A pipelined head behind a response going out is not late.
        c.take_input(b"GET", 1024);
        c.await_head(0);
        assert_eq!(c.head_since, None);
        c.body = None;
        c.await_head(20 * S);
        assert_eq!(c.head_since, Some(20 * S));
        assert_eq!(c.expired(25 * S, 100 * S, 10 * S), None);
        assert_eq!(c.expired(31 * S, 100 * S, 10 * S), Some(Expiry::SlowHead));
    }
}
