//! The HTTP server: listens on port 80 through the TCP/IP server and
//! serves
//! - `/`: a status page (components and their state, uptime, memory, the
//!   tail of the kernel log);
//! - `/api/components`, `/api/logs`, `/api/stats`: the same as JSON
//!   (`/api/stats` also carries the TCP/IP server's own figures, as
//!   `"tcpip":{...}`, refreshed every second through its `stats:` URI);
//! - `/bytes/<n>`: `n` bytes (up to 64 MiB) of the pattern `abc...zab...`,
//!   for transfer tests.
//!
//! HTTP/1.0 and 1.1, GET and HEAD, keep-alive. Bad requests get 400, heads
//! over `max_header_bytes` 431, other methods 405, and the connection is
//! closed after each of those; connections idle for `idle_timeout_ms`
//! (including ones cut off mid-request) are closed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod http;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use starina::abi::ComponentState;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::mainloop::legacy::Event;
use starina::mainloop::legacy::Mainloop;
use starina::system::Monitor;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Bytes per `Data` message of a response.
const CHUNK: usize = 16 * 1024;
const BYTES_MAX: usize = 64 << 20;
const SWEEP_MS: u64 = 1000;
const LISTEN_CALL: u32 = 1;
const STATS_CALL: u32 = 2;

enum Ctx {
    Supervisor,
    Tcpip,
    Listener,
    Conn(u32),
    Timer,
}

/// What remains of a response body to send.
enum Body {
    Bytes {
        data: Vec<u8>,
        sent: usize,
    },
    /// A response head, then `len` bytes of the `/bytes` pattern,
    /// generated as they are sent.
    Pattern {
        head: Vec<u8>,
        head_sent: usize,
        offset: usize,
        len: usize,
    },
}

struct Conn {
    ch: HandleId,
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// The response being sent.
    body: Option<Body>,
    close_after: bool,
    /// We sent `Close` (or the peer is gone): nothing more goes out.
    closing: bool,
    last_activity: u64,
    watching_writable: bool,
}

struct Stats {
    requests: u64,
    connections: u64,
}

struct Server {
    monitor: Monitor,
    conns: BTreeMap<u32, Conn>,
    next_id: u32,
    stats: Stats,
    max_header: usize,
    idle_ns: u64,
    max_conns: usize,
    /// Main-loop changes to make after the current event.
    watch: Vec<(HandleId, bool)>,
    remove: Vec<u32>,
    /// The TCP/IP server's last figures (a JSON object), `{}` until known.
    tcpip_stats: String,
}

pub fn main(env: Env) -> Result<(), String> {
    let mut ml: Mainloop<Ctx> =
        Mainloop::new().map_err(|e| format!("cannot create the main loop: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let tcpip_id = env.tcpip.id();
    let timer_id = timer.id();
    let uri = format!("tcp-listen:0.0.0.0:{}", env.config.port);
    env.tcpip
        .send(Message::Open {
            call_id: LISTEN_CALL,
            uri: &uri,
            handle: None,
        })
        .map_err(|e| format!("cannot ask tcpip to listen: {}", e.error))?;
    ml.add_channel(env.supervisor, Ctx::Supervisor)
        .and_then(|_| ml.add_channel(env.tcpip, Ctx::Tcpip))
        .and_then(|_| ml.add_timer(timer, Ctx::Timer))
        .map_err(|e| format!("cannot set up the main loop: {e}"))?;
    let _ = starina::timer::set_by_id(timer_id, SWEEP_MS * 1_000_000);
    let mut server = Server {
        monitor: env.monitor,
        conns: BTreeMap::new(),
        next_id: 1,
        stats: Stats {
            requests: 0,
            connections: 0,
        },
        max_header: env.config.max_header_bytes.clamp(256, 1 << 20) as usize,
        idle_ns: env.config.idle_timeout_ms.clamp(100, 3_600_000) as u64 * 1_000_000,
        max_conns: env.config.max_connections.clamp(1, 4096) as usize,
        watch: Vec::new(),
        remove: Vec::new(),
        tcpip_stats: String::from("{}"),
    };
    let mut buf = MessageBuffer::new();
    loop {
        let mut new_conn = None;
        let mut listener = None;
        let mut retry_listen = false;
        match ml.next() {
            Event::Message {
                ctx: Ctx::Tcpip,
                msg: Message::OpenReply { call_id, handle },
                ..
            } if call_id == LISTEN_CALL => listener = Some(Channel::from_handle(handle)),
            Event::Message {
                ctx: Ctx::Tcpip,
                msg: Message::OpenReply { call_id, handle },
                ..
            } if call_id == STATS_CALL => {
                // tcpip queued the figures before replying.
                let ch = Channel::from_handle(handle);
                if let Ok(Message::Data(json)) = ch.try_recv(&mut buf) {
                    server.tcpip_stats = String::from_utf8_lossy(json).into_owned();
                }
            }
            Event::Message {
                ctx: Ctx::Tcpip,
                msg: Message::Error { call_id, .. },
                ..
            } if call_id == STATS_CALL => {}
            Event::Message {
                ctx: Ctx::Tcpip,
                msg: Message::Error { code, text, .. },
                ..
            } => {
                log::warn!(
                    "cannot listen on port {} ({code}: {text}); retrying",
                    env.config.port
                );
                retry_listen = true;
            }
            Event::Message {
                ctx: Ctx::Listener,
                msg:
                    Message::Open {
                        uri,
                        handle: Some(h),
                        ..
                    },
                ..
            } if uri.starts_with("tcp-conn:") => new_conn = Some(Channel::from_handle(h)),
            Event::Message {
                ctx: Ctx::Conn(id),
                ch,
                msg,
            } => {
                let id = *id;
                server.on_message(id, ch, msg);
            }
            Event::Message { msg, .. } => log::warn!("ignoring an unexpected {:?}", msg.kind()),
            Event::Writable {
                ctx: Ctx::Conn(id),
                ch,
            } => {
                let id = *id;
                if let Some(c) = server.conns.get_mut(&id) {
                    c.watching_writable = false;
                }
                server.watch.push((ch.id(), false));
                server.pump(id, ch);
            }
            Event::Writable { .. } => {}
            Event::PeerClosed {
                ctx: Ctx::Conn(id), ..
            } => {
                server.conns.remove(&id);
            }
            Event::PeerClosed {
                ctx: Ctx::Listener, ..
            } => {
                log::warn!("the listener closed (tcpip restarted?); listening again");
                retry_listen = true;
            }
            Event::PeerClosed {
                ctx: Ctx::Tcpip, ..
            } => {
                log::error!("the TCP/IP server went away");
            }
            Event::PeerClosed { .. } => {}
            Event::Timer { timer, .. } => {
                let _ = timer.set_ms(SWEEP_MS);
                server.sweep(&ml);
                if let Some(ch) = ml.channel(tcpip_id) {
                    let _ = ch.send(Message::Open {
                        call_id: STATS_CALL,
                        uri: "stats:",
                        handle: None,
                    });
                }
            }
            Event::Error { error, .. } => log::warn!("dropped a malformed message: {error}"),
        }
        if let Some(l) = listener {
            match ml.add_channel(l, Ctx::Listener) {
                Ok(_) => log::info!("serving HTTP on port {}", env.config.port),
                Err(e) => log::error!("cannot watch the listener: {e}"),
            }
        }
        if retry_listen {
            if let Some(ch) = ml.channel(tcpip_id) {
                let _ = ch.send(Message::Open {
                    call_id: LISTEN_CALL,
                    uri: &uri,
                    handle: None,
                });
            }
        }
        if let Some(ch) = new_conn {
            if server.conns.len() >= server.max_conns {
                // Dropping the channel closes the connection.
                log::warn!("too many connections; closing a new one");
            } else {
                let id = server.next_id;
                server.next_id = server.next_id.wrapping_add(1);
                let ch_id = ch.id();
                match ml.add_channel(ch, Ctx::Conn(id)) {
                    Ok(_) => {
                        server.stats.connections += 1;
                        server.conns.insert(
                            id,
                            Conn {
                                ch: ch_id,
                                input: Vec::new(),
                                body: None,
                                close_after: false,
                                closing: false,
                                last_activity: now_ns(),
                                watching_writable: false,
                            },
                        );
                    }
                    Err(e) => log::warn!("cannot serve a connection: {e}"),
                }
            }
        }
        for (id, on) in server.watch.drain(..) {
            let _ = ml.watch_writable(id, on);
        }
        for id in server.remove.drain(..) {
            if let Some(c) = server.conns.remove(&id) {
                ml.remove_channel(c.ch);
            }
        }
    }
}

impl Server {
    fn on_message(&mut self, id: u32, ch: &Channel, msg: Message<'_>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.last_activity = now_ns();
        match msg {
            Message::Data(data) => {
                if c.closing {
                    return;
                }
                if c.input.len() + data.len() > self.max_header + CHUNK {
                    // Far past any head we accept: do not buffer it.
                    c.input.truncate(0);
                    c.input
                        .extend_from_slice(&data[..data.len().min(self.max_header + 1)]);
                    c.input.resize(self.max_header + 1, b'x');
                } else {
                    c.input.extend_from_slice(data);
                }
                self.pump(id, ch);
            }
            Message::Close => {
                // The client is done sending. Finish what we are sending,
                // then close; nothing more to parse.
                c.close_after = true;
                if c.body.is_none() {
                    self.finish(id, ch);
                }
            }
            Message::Abort { .. } => self.remove.push(id),
            other => log::warn!("connection {id}: ignoring {:?}", other.kind()),
        }
    }

    /// Sends what can be sent and serves the next request when the
    /// previous response is out.
    fn pump(&mut self, id: u32, ch: &Channel) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.closing {
                return;
            }
            if c.body.is_some() {
                // A response still going out is activity: only a peer
                // that stops reading for the idle timeout is dropped.
                c.last_activity = now_ns();
                if !send_body(c, ch) {
                    if !c.watching_writable {
                        c.watching_writable = true;
                        self.watch.push((c.ch, true));
                    }
                    return;
                }
                c.body = None;
                if c.close_after {
                    self.finish(id, ch);
                    return;
                }
            }
            // The next request, if a whole head is there.
            let (status, response, close) = match http::parse(&c.input, self.max_header) {
                Err(http::ParseError::Incomplete) => return,
                Err(http::ParseError::TooLarge) => (
                    431,
                    error_response(431, "Request Header Fields Too Large"),
                    true,
                ),
                Err(http::ParseError::Malformed) => (400, error_response(400, "Bad Request"), true),
                Err(http::ParseError::Version) => {
                    (505, error_response(505, "HTTP Version Not Supported"), true)
                }
                Ok(req) => {
                    let head_len = req.head_len;
                    let keep_alive = req.keep_alive;
                    let (status, resp, close) = if req.content_length > 0
                        || (req.method != "GET" && req.method != "HEAD")
                    {
                        (405, error_response(405, "Method Not Allowed"), true)
                    } else {
                        let head_only = req.method == "HEAD";
                        let path = String::from(req.path);
                        let (status, resp) = route(
                            &self.monitor,
                            &self.stats,
                            self.conns.len(),
                            &self.tcpip_stats,
                            &path,
                            head_only,
                            keep_alive,
                        );
                        (status, resp, !keep_alive)
                    };
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.input.drain(..head_len);
                    }
                    (status, resp, close)
                }
            };
            self.stats.requests += 1;
            let _ = status;
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if close {
                c.input.clear();
            }
            c.close_after |= close;
            c.body = Some(response);
        }
    }

    /// Ends our side of the connection and forgets it.
    fn finish(&mut self, id: u32, ch: &Channel) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.closing = true;
            let _ = ch.send(Message::Close);
            self.remove.push(id);
        }
    }

    /// Closes connections idle for too long.
    fn sweep(&mut self, ml: &Mainloop<Ctx>) {
        let now = now_ns();
        let idle: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_activity) > self.idle_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(c) = self.conns.get(&id) {
                if let Some(ch) = ml.channel(c.ch) {
                    let _ = ch.send(Message::Close);
                }
            }
            self.remove.push(id);
        }
    }
}

/// Sends as much of the body as the channel takes; true when all is sent.
fn send_body(c: &mut Conn, ch: &Channel) -> bool {
    match c.body.as_mut() {
        None => true,
        Some(Body::Bytes { data, sent }) => {
            while *sent < data.len() {
                let end = (*sent + CHUNK).min(data.len());
                match ch.send_data(&data[*sent..end]) {
                    Ok(()) => *sent = end,
                    Err(Error::QueueFull) => return false,
                    Err(_) => {
                        c.closing = true;
                        return true;
                    }
                }
            }
            true
        }
        Some(Body::Pattern {
            head,
            head_sent,
            offset,
            len,
        }) => {
            if *head_sent < head.len() {
                match ch.send_data(&head[*head_sent..]) {
                    Ok(()) => *head_sent = head.len(),
                    Err(Error::QueueFull) => return false,
                    Err(_) => {
                        c.closing = true;
                        return true;
                    }
                }
            }
            let mut chunk = vec![0u8; CHUNK];
            while *offset < *len {
                let n = CHUNK.min(*len - *offset);
                for (i, b) in chunk[..n].iter_mut().enumerate() {
                    *b = http::pattern_byte(*offset + i);
                }
                match ch.send_data(&chunk[..n]) {
                    Ok(()) => *offset += n,
                    Err(Error::QueueFull) => return false,
                    Err(_) => {
                        c.closing = true;
                        return true;
                    }
                }
            }
            true
        }
    }
}

fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> Body {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: starina-httpd\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    Body::Bytes { data: out, sent: 0 }
}

fn error_response(status: u16, reason: &str) -> Body {
    response(
        status,
        reason,
        "text/plain",
        format!("{status} {reason}\n").as_bytes(),
        false,
        false,
    )
}

fn route(
    monitor: &Monitor,
    stats: &Stats,
    open: usize,
    tcpip_stats: &str,
    path: &str,
    head_only: bool,
    keep_alive: bool,
) -> (u16, Body) {
    let path = path.split('?').next().unwrap_or(path);
    let json = "application/json";
    match path {
        "/" | "/index.html" => {
            let body = status_page(monitor, stats, open);
            (
                200,
                response(
                    200,
                    "OK",
                    "text/html; charset=utf-8",
                    body.as_bytes(),
                    head_only,
                    keep_alive,
                ),
            )
        }
        "/api/components" => (
            200,
            response(
                200,
                "OK",
                json,
                components_json(monitor).as_bytes(),
                head_only,
                keep_alive,
            ),
        ),
        "/api/logs" => (
            200,
            response(
                200,
                "OK",
                json,
                logs_json(monitor).as_bytes(),
                head_only,
                keep_alive,
            ),
        ),
        "/api/stats" => (
            200,
            response(
                200,
                "OK",
                json,
                stats_json(monitor, stats, open, tcpip_stats).as_bytes(),
                head_only,
                keep_alive,
            ),
        ),
        p if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<usize>() {
            Ok(n) if n <= BYTES_MAX => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nServer: starina-httpd\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: {}\r\n\r\n",
                    if keep_alive { "keep-alive" } else { "close" }
                );
                // The head goes out first as its own body part.
                let mut data = head.into_bytes();
                if head_only {
                    return (200, Body::Bytes { data, sent: 0 });
                }
                // Small bodies in one piece; big ones generated as sent.
                if n <= CHUNK {
                    data.extend((0..n).map(http::pattern_byte));
                    (200, Body::Bytes { data, sent: 0 })
                } else {
                    (
                        200,
                        Body::Pattern {
                            head: data,
                            head_sent: 0,
                            offset: 0,
                            len: n,
                        },
                    )
                }
            }
            _ => (400, error_response(400, "Bad Request")),
        },
        _ => (
            404,
            response(
                404,
                "Not Found",
                "text/plain",
                b"404 Not Found\n",
                head_only,
                keep_alive,
            ),
        ),
    }
}

fn state_name(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Running => "running",
        ComponentState::Stopped => "stopped",
        ComponentState::NotStarted => "not started",
    }
}

fn components_json(monitor: &Monitor) -> String {
    let mut out = String::from("[");
    match monitor.components() {
        Ok(list) => {
            for (i, c) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"name\":\"");
                http::json_escape(&mut out, c.name);
                let _ = write!(
                    out,
                    "\",\"kind\":\"{}\",\"state\":\"{}\",\"instance\":{},\"restarts\":{},\"max_restarts\":{}}}",
                    c.kind,
                    state_name(c.state),
                    c.instance,
                    c.restarts,
                    c.max_restarts
                );
            }
        }
        Err(e) => log::warn!("cannot read component status: {e}"),
    }
    out.push(']');
    out
}

/// The last `max` lines of the kernel log.
fn log_lines(monitor: &Monitor, max: usize) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let (_, len) = monitor.read_log(0, &mut buf).unwrap_or((0, 0));
    let text = String::from_utf8_lossy(&buf[..len]);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max);
    lines[skip..].iter().map(|l| String::from(*l)).collect()
}

fn logs_json(monitor: &Monitor) -> String {
    let mut out = String::from("{\"lines\":[");
    for (i, line) in log_lines(monitor, 200).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        http::json_escape(&mut out, line);
        out.push('"');
    }
    out.push_str("]}");
    out
}

fn stats_json(monitor: &Monitor, stats: &Stats, open: usize, tcpip: &str) -> String {
    let mem = monitor.memory().unwrap_or_default();
    format!(
        "{{\"uptime_ms\":{},\"heap_in_use\":{},\"pages_free\":{},\"pages_total\":{},\"dma_pages\":{},\"requests\":{},\"connections_total\":{},\"connections_open\":{},\"tcpip\":{}}}",
        now_ns() / 1_000_000,
        mem.heap_in_use,
        mem.pages_free,
        mem.pages_total,
        mem.dma_pages,
        stats.requests,
        stats.connections,
        open,
        tcpip
    )
}

fn status_page(monitor: &Monitor, stats: &Stats, open: usize) -> String {
    let mem = monitor.memory().unwrap_or_default();
    let uptime = now_ns() / 1_000_000;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Starina</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .6em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style>\n\
         </head><body>\n<h1>Starina</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>Uptime: {}.{:03} s &middot; heap in use: {} KiB &middot; free memory: {} of {} MiB &middot; requests served: {} &middot; open connections: {}</p>",
        uptime / 1000,
        uptime % 1000,
        mem.heap_in_use / 1024,
        (mem.pages_free * 4096) >> 20,
        (mem.pages_total * 4096) >> 20,
        stats.requests,
        open
    );
    out.push_str("<h2>Components</h2>\n<table><tr><th>name</th><th>kind</th><th>state</th><th>instance</th><th>restarts</th></tr>\n");
    for c in monitor.components().unwrap_or_default() {
        out.push_str("<tr><td>");
        http::html_escape(&mut out, c.name);
        let _ = writeln!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td></tr>",
            c.kind,
            state_name(c.state),
            c.instance,
            c.restarts,
            c.max_restarts
        );
    }
    out.push_str("</table>\n<h2>Log</h2>\n<pre>");
    for line in log_lines(monitor, 50) {
        http::html_escape(&mut out, &line);
        out.push('\n');
    }
    out.push_str("</pre>\n<p>JSON: <a href=\"/api/components\">/api/components</a> \
                  <a href=\"/api/logs\">/api/logs</a> <a href=\"/api/stats\">/api/stats</a></p>\n</body></html>\n");
    out
}
