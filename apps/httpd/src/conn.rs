//! One HTTP connection: the bytes received and not parsed yet, the
//! response going out, and the requests served in turn (keep-alive).
//! A response goes out while the connection's channel has no backlog;
//! `drained` resumes it.

use alloc::vec::Vec;

use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina::HandleId;
use starina::Message;

use crate::pages::Site;
use crate::response::Body;
use crate::response::CHUNK;
use crate::routes::respond;
use crate::routes::route;
use crate::server::Ctx;
use crate::server::Server;

pub struct Conn {
    /// Received bytes not yet parsed.
    input: Vec<u8>,
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
        Conn {
            input: Vec::new(),
            body: None,
            close_after: false,
            closing: false,
            last_activity: now_ns(),
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
            let site = Site {
                monitor: &self.monitor,
                stats: &self.stats,
                open: self.open,
                tcpip_stats: &self.tcpip_stats,
            };
            let serve =
                |path: &str, head_only, keep_alive| route(&site, path, head_only, keep_alive);
            let Some(reply) = respond(&c.input, self.max_header, serve) else {
                return;
            };
            self.stats.requests += 1;
            c.input.drain(..reply.consumed);
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

    /// Closes connections idle for too long.
    pub fn sweep(&mut self, cx: &mut Cx<Ctx>) {
        let now = now_ns();
        let idle: Vec<HandleId> = cx
            .states_mut()
            .filter_map(|(id, state)| match state {
                Ctx::Conn(c) if now.saturating_sub(c.last_activity) > self.idle_ns => Some(id),
                _ => None,
            })
            .collect();
        for id in idle {
            let _ = cx.send(id, Message::Close);
            self.drop_conn(cx, id);
        }
    }
}

/// Sends the response while the channel has no backlog; true once all of
/// it is handed over (or the peer is gone).
fn send_body(cx: &mut Cx<Ctx>, id: HandleId, c: &mut Conn) -> bool {
    let Some(body) = c.body.as_mut() else {
        return true;
    };
    loop {
        let Some(piece) = body.next_piece() else {
            return true;
        };
        if cx.backlog_bytes(id) > 0 {
            return false;
        }
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
        let mut c = Conn {
            input: Vec::new(),
            body: None,
            close_after: false,
            closing: false,
            last_activity: 0,
        };
        c.take_input(b"GET / HTTP/1.1\r\n", 100);
        assert_eq!(c.input, b"GET / HTTP/1.1\r\n");
        c.take_input(&[b'a'; CHUNK + 100], 100);
        assert_eq!(c.input.len(), 101);
        assert!(c.input.iter().all(|&b| b == b'a'));
    }
}
