//! The outbound network check: through the TCP/IP server, connect to an
//! HTTP server on the host, upload `upload_bytes` bytes (`POST /echo`),
//! close our side (FIN), read the whole reply until the server closes, and
//! check that the server saw exactly what we sent (length and FNV-1a hash,
//! which the server reports in an `X-Upload: len=<n> fnv=<hex>` header)
//! and that the reply's body is our upload echoed back, byte for byte.
//! Logs one line, `netcheck: ok ...` or `netcheck: FAILED: ...`, for the
//! end-to-end test.
//!
//! Then, if `dns_name` is set, it resolves that name through the DNS server
//! DHCP gave tcpip (`udp:<name>:9`: tcpip resolves the name, then opens a
//! UDP socket, which sends nothing) and logs `netcheck: dns <name>:
//! resolved`, `... not found` (the resolver answered that the name does
//! not exist) or `... FAILED: <why>` (no answer).
//!
//! Then, if `http_get_url` is set, it runs the `http-get` command on it
//! (privilege `spawn`; see `http_get.rs`) and logs `netcheck: http-get
//! ok: ...` or `netcheck: http-get FAILED: ...`.
//!
//! Last, if `udp_loopback_port` is set, it checks UDP inside the machine
//! with the `udp` command (see `udp_loopback.rs`) and logs `netcheck: udp
//! ok: ...` or `netcheck: udp FAILED: ...`.
//!
//! The steps run in the main loop; the upload goes out while the
//! connection has no backlog (`drained` resumes it), and every step fails
//! if nothing happens for `TIMEOUT_MS`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod http_get;
mod udp_loopback;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::MESSAGE_DATA_MAX;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::timer::Timer;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const TIMEOUT_MS: u64 = 30_000;
const OPEN_CALL: u32 = 7;

fn upload_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

/// What each object in the loop is to the check.
enum Ctx {
    Tcpip,
    /// The connection to the host's server.
    Conn,
    /// Fails the step that waits longer than `TIMEOUT_MS`.
    Timer,
}

/// Where the check is.
enum Step {
    /// Waiting for tcpip to connect us.
    Connecting,
    /// Sending the request; `sent` bytes of head and body are out.
    Uploading { conn: HandleId, sent: usize },
    /// Reading the reply until the server's `Close`.
    Reading { conn: HandleId },
    /// Waiting for tcpip to resolve `dns_name`.
    Resolving,
}

struct Check {
    config: Config,
    tcpip: HandleId,
    timer: HandleId,
    step: Step,
    /// The request's head and body (the upload), and the body's hash.
    head: Vec<u8>,
    body: Vec<u8>,
    hash: u64,
    reply: Vec<u8>,
}

impl Check {
    fn new(config: Config, tcpip: HandleId, timer: HandleId) -> Check {
        let n = config.upload_bytes.clamp(0, 16 << 20) as usize;
        let body: Vec<u8> = (0..n).map(upload_byte).collect();
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        fnv1a(&mut hash, &body);
        let head = format!(
            "POST /echo HTTP/1.0\r\nHost: {}\r\nContent-Length: {n}\r\n\r\n",
            config.host_header
        );
        Check {
            config,
            tcpip,
            timer,
            step: Step::Connecting,
            head: head.into_bytes(),
            body,
            hash,
            reply: Vec::new(),
        }
    }

    /// The URI the current step opened.
    fn uri(&self) -> String {
        match self.step {
            Step::Resolving => format!("udp:{}:9", self.config.dns_name),
            _ => String::from(self.config.target),
        }
    }

    fn open(&mut self, cx: &mut Cx<Ctx>) -> Result<(), String> {
        let uri = self.uri();
        let open = Message::Open {
            call_id: OPEN_CALL,
            uri: &uri,
            handle: None,
        };
        cx.send(self.tcpip, open)
            .map_err(|e| format!("open {uri}: {e}"))
    }

    /// tcpip's answer to our `Open`.
    fn on_reply(&mut self, cx: &mut Cx<Ctx>, msg: Message<'_>) -> Result<(), String> {
        let uri = self.uri();
        match msg {
            Message::OpenReply { handle, .. } => {
                let ch = Channel::from_handle(handle);
                if let Step::Resolving = self.step {
                    log::info!("netcheck: dns {}: resolved", self.config.dns_name);
                    cx.stop();
                    return Ok(());
                }
                let conn = cx
                    .add_channel(ch, Ctx::Conn)
                    .map_err(|e| format!("open {uri}: {e}"))?;
                self.step = Step::Uploading { conn, sent: 0 };
                self.upload(cx)
            }
            Message::Error { code, text, .. } => Err(format!("open {uri}: error {code}: {text}")),
            other => Err(format!("open {uri}: unexpected {:?}", other.kind())),
        }
    }

    /// Sends the request while the connection has no backlog, then `Close`.
    fn upload(&mut self, cx: &mut Cx<Ctx>) -> Result<(), String> {
        let Step::Uploading { conn, mut sent } = self.step else {
            return Ok(());
        };
        let total = self.head.len() + self.body.len();
        while sent < total && cx.backlog_bytes(conn) == 0 {
            let (part, offset) = if sent < self.head.len() {
                (&self.head, sent)
            } else {
                (&self.body, sent - self.head.len())
            };
            let end = (offset + MESSAGE_DATA_MAX).min(part.len());
            cx.send_data(conn, &part[offset..end])
                .map_err(|e| format!("send: {e}"))?;
            sent += end - offset;
        }
        if sent < total {
            self.step = Step::Uploading { conn, sent };
            return Ok(());
        }
        cx.send(conn, Message::Close)
            .map_err(|e| format!("close: {e}"))?;
        self.step = Step::Reading { conn };
        Ok(())
    }

    /// The reply, up to the server's `Close`.
    fn on_conn(&mut self, cx: &mut Cx<Ctx>, msg: Message<'_>) -> Result<(), String> {
        match msg {
            Message::Data(d) => self.reply.extend_from_slice(d),
            Message::Close => {
                let summary = verify(&self.reply, &self.body, self.hash, self.config.target)?;
                log::info!("netcheck: ok: {summary}");
                self.resolve(cx);
            }
            Message::Abort { code, reason } => {
                return Err(format!("connection aborted ({code}: {reason})"))
            }
            other => return Err(format!("unexpected {:?}", other.kind())),
        }
        Ok(())
    }

    /// Logs why the current step failed and goes on to the next.
    fn fail(&mut self, cx: &mut Cx<Ctx>, why: String) {
        if let Step::Resolving = self.step {
            let name = self.config.dns_name;
            if why.contains("name not found") {
                log::info!("netcheck: dns {name}: not found ({why})");
            } else {
                log::error!("netcheck: dns {name}: FAILED: {why}");
            }
            cx.stop();
            return;
        }
        log::error!("netcheck: FAILED: {why}");
        self.resolve(cx);
    }

    /// Done with the connection: resolve `dns_name`, if set, or stop.
    fn resolve(&mut self, cx: &mut Cx<Ctx>) {
        if let Step::Uploading { conn, .. } | Step::Reading { conn } = self.step {
            cx.remove(conn);
        }
        if self.config.dns_name.is_empty() {
            cx.stop();
            return;
        }
        self.step = Step::Resolving;
        if let Err(why) = self.open(cx) {
            self.fail(cx, why);
        }
    }

    /// Goes on with `result` of a step: its failure is logged, and a step
    /// that moved gets `TIMEOUT_MS` more.
    fn settle(&mut self, cx: &mut Cx<Ctx>, result: Result<(), String>) {
        if let Err(why) = result {
            self.fail(cx, why);
        }
        let _ = cx.set_timer(self.timer, TIMEOUT_MS * 1_000_000);
    }
}

impl Handler for Check {
    type State = Ctx;

    fn message(
        &mut self,
        cx: &mut Cx<Ctx>,
        _id: HandleId,
        state: &mut Ctx,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let result = match state {
            Ctx::Tcpip => self.on_reply(cx, msg),
            Ctx::Conn => self.on_conn(cx, msg),
            Ctx::Timer => Ok(()),
        };
        self.settle(cx, result);
        Ok(())
    }

    fn drained(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, _: &mut Ctx) -> Result<(), Error> {
        let result = self.upload(cx);
        self.settle(cx, result);
        Ok(())
    }

    fn peer_closed(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, state: Ctx) -> Result<(), Error> {
        let why = match state {
            Ctx::Conn => "closed without Close",
            _ => "the TCP/IP server went away",
        };
        self.settle(cx, Err(String::from(why)));
        Ok(())
    }

    fn timer(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, _: &mut Ctx) -> Result<(), Error> {
        self.settle(cx, Err(format!("timed out after {TIMEOUT_MS} ms")));
        Ok(())
    }
}

/// Checks the server's reply to our upload of `body` (FNV-1a `hash`).
fn verify(reply: &[u8], body: &[u8], hash: u64, target: &str) -> Result<String, String> {
    let n = body.len();
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("reply has no HTTP head ({} bytes)", reply.len()))?;
    let head = String::from_utf8_lossy(&reply[..split]);
    let echoed = &reply[split + 4..];
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!(
            "status line: {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    let want = format!("len={n} fnv={hash:016x}");
    let saw = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Upload: "))
        .unwrap_or("(no X-Upload header)");
    if saw != want {
        return Err(format!("server saw '{saw}', we sent '{want}'"));
    }
    let mut echo_hash = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut echo_hash, echoed);
    if echoed.len() != n || echo_hash != hash {
        return Err(format!(
            "the echoed body differs: {} bytes, fnv {echo_hash:016x}",
            echoed.len()
        ));
    }
    Ok(format!(
        "uploaded {n} bytes to {target}, server confirmed {want}, downloaded the {} bytes echoed back intact",
        echoed.len()
    ))
}

pub fn main(env: Env) -> Result<(), String> {
    let mut ml = Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let cx = ml.cx();
    let setup = cx
        .add_channel(env.tcpip, Ctx::Tcpip)
        .and_then(|tcpip| Ok((tcpip, cx.add_timer(timer, Ctx::Timer)?)));
    let (tcpip, timer) = setup.map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let (url, want_bytes) = (env.config.http_get_url, env.config.http_get_bytes);
    let mut check = Check::new(env.config, tcpip, timer);
    let started = check.open(cx);
    check.settle(cx, started);
    ml.run(&mut check)
        .map_err(|e| format!("the main loop failed: {e}"))?;
    if !url.is_empty() {
        http_get::check_and_log(&env.spawn, url, want_bytes.clamp(0, 1 << 20) as usize);
    }
    let udp_port = env.config.udp_loopback_port;
    if let (Ok(port @ 1..), Some(tcpip)) = (u16::try_from(udp_port), ml.cx().channel(tcpip)) {
        udp_loopback::check_and_log(&env.spawn, tcpip, port);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(head: &str, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::from(head.as_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn verifies_the_echo() {
        let body: Vec<u8> = (0..1000).map(upload_byte).collect();
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        fnv1a(&mut hash, &body);
        let head = format!("HTTP/1.0 200 OK\r\nX-Upload: len=1000 fnv={hash:016x}\r\n\r\n");
        assert!(verify(&reply(&head, &body), &body, hash, "t").is_ok());
        let mut bad = body.clone();
        bad[10] ^= 1;
        let why = verify(&reply(&head, &bad), &body, hash, "t").unwrap_err();
        assert!(why.starts_with("the echoed body differs"), "{why}");
        let why = verify(&reply("HTTP/1.0 500 No\r\n\r\n", &body), &body, hash, "t").unwrap_err();
        assert!(why.starts_with("status line"), "{why}");
        let why = verify(b"garbage", &body, hash, "t").unwrap_err();
        assert!(why.starts_with("reply has no HTTP head"), "{why}");
        let head = "HTTP/1.0 200 OK\r\nX-Upload: len=3 fnv=0\r\n\r\n";
        let why = verify(&reply(head, &body), &body, hash, "t").unwrap_err();
        assert!(why.starts_with("server saw 'len=3 fnv=0'"), "{why}");
    }
}
