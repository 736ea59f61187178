//! The loop: what each object is to the server, and one handler per
//! event: the TCP/IP server's replies, new connections on the listener,
//! connection traffic, and the timer that closes idle connections,
//! samples the CPU load and fetches tcpip's figures.

use alloc::string::String;

use starina::channel::MessageBuffer;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::system::Monitor;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

use crate::conn::Conn;
use crate::cpu_load::CpuLoad;
use crate::pages::Stats;
use crate::static_files::StaticFiles;
use crate::Config;

pub const SWEEP_MS: u64 = 1000;
pub const LISTEN_CALL: u32 = 1;
const STATS_CALL: u32 = 2;
const FORWARDS_CALL: u32 = 3;

/// What each object in the main loop is to the server.
pub enum Ctx {
    /// The channel to the TCP/IP server.
    Tcpip,
    /// Our listening socket's channel: connections arrive on it.
    Listener,
    Conn(Conn),
    /// Sweeps idle connections and fetches tcpip's figures.
    Timer,
    /// The linux server (optional): the ports it forwards into Linux.
    Linux,
}

pub struct Server {
    pub monitor: Monitor,
    pub stats: Stats,
    /// Connections open now.
    pub open: usize,
    pub max_header: usize,
    pub idle_ns: u64,
    /// How long a request head may take to arrive, from its first byte.
    pub request_ns: u64,
    max_conns: usize,
    port: i64,
    /// `tcp-listen:0.0.0.0:<port>`.
    listen_uri: String,
    tcpip: HandleId,
    /// The TCP/IP server's last figures (a JSON object), `{}` until known.
    pub tcpip_stats: String,
    /// The linux server's channel, when the profile has it.
    pub linux: Option<HandleId>,
    /// Its forwards (a JSON array), `[]` until known.
    pub forwards: String,
    /// Static files from the native file system.
    pub files: Option<StaticFiles>,
    /// Each CPU's load, sampled every second.
    pub cpu_load: CpuLoad,
    buf: MessageBuffer,
}

impl Server {
    pub fn new(
        monitor: Monitor,
        config: &Config,
        tcpip: HandleId,
        listen_uri: String,
        files: Option<StaticFiles>,
    ) -> Server {
        Server {
            monitor,
            stats: Stats {
                requests: 0,
                connections: 0,
                request_timeouts: 0,
            },
            open: 0,
            max_header: config.max_header_bytes.clamp(256, 1 << 20) as usize,
            idle_ns: config.idle_timeout_ms.clamp(100, 3_600_000) as u64 * 1_000_000,
            request_ns: config.request_timeout_ms.clamp(100, 3_600_000) as u64 * 1_000_000,
            max_conns: config.max_connections.clamp(1, 4096) as usize,
            port: config.port,
            listen_uri,
            tcpip,
            tcpip_stats: String::from("{}"),
            linux: None,
            forwards: String::from("[]"),
            files,
            cpu_load: CpuLoad::default(),
            buf: MessageBuffer::new(),
        }
    }

    /// Asks tcpip (again) for our listening socket.
    fn listen(&mut self, cx: &mut Cx<Ctx>) {
        let _ = cx.send(
            self.tcpip,
            Message::Open {
                call_id: LISTEN_CALL,
                uri: &self.listen_uri,
                handle: None,
            },
        );
    }

    fn on_tcpip_message(&mut self, cx: &mut Cx<Ctx>, msg: Message<'_>) {
        match msg {
            Message::OpenReply {
                call_id: LISTEN_CALL,
                handle,
            } => match cx.add_channel(Channel::from_handle(handle), Ctx::Listener) {
                Ok(_) => log::info!("{} {}", starina::abi::markers::HTTPD_SERVING, self.port),
                Err(e) => log::error!("cannot watch the listener: {e}"),
            },
            Message::OpenReply {
                call_id: STATS_CALL,
                handle,
            } => {
                // tcpip queued the figures before replying.
                let ch = Channel::from_handle(handle);
                if let Ok(Message::Data(json)) = ch.try_recv(&mut self.buf) {
                    self.tcpip_stats = String::from_utf8_lossy(json).into_owned();
                }
            }
            Message::Error {
                call_id: STATS_CALL,
                ..
            } => {}
            Message::Error { code, text, .. } => {
                log::warn!(
                    "cannot listen on port {} ({code}: {text}); retrying",
                    self.port
                );
                self.listen(cx);
            }
            other => log::warn!("ignoring an unexpected {:?}", other.kind()),
        }
    }

    /// The linux server's answer to `forwards:`: a channel with the JSON.
    fn on_linux_message(&mut self, msg: Message<'_>) {
        if let Message::OpenReply {
            call_id: FORWARDS_CALL,
            handle,
        } = msg
        {
            let ch = Channel::from_handle(handle);
            if let Ok(Message::Data(json)) = ch.try_recv(&mut self.buf) {
                self.forwards = String::from_utf8_lossy(json).into_owned();
            }
        }
    }

    /// A new connection on the listener.
    fn accept(&mut self, cx: &mut Cx<Ctx>, ch: Channel) {
        if self.open >= self.max_conns {
            // Dropping the channel closes the connection.
            log::warn!("too many connections; closing a new one");
            return;
        }
        match cx.add_channel(ch, Ctx::Conn(Conn::new())) {
            Ok(_) => {
                self.stats.connections += 1;
                self.open += 1;
            }
            Err(e) => log::warn!("cannot serve a connection: {e}"),
        }
    }
}

impl Handler for Server {
    type State = Ctx;

    fn message(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: HandleId,
        state: &mut Ctx,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        match (state, msg) {
            (Ctx::Tcpip, msg) => self.on_tcpip_message(cx, msg),
            (Ctx::Linux, msg) => self.on_linux_message(msg),
            (
                Ctx::Listener,
                Message::Open {
                    uri,
                    handle: Some(h),
                    ..
                },
            ) if uri.starts_with("tcp-conn:") => self.accept(cx, Channel::from_handle(h)),
            (Ctx::Conn(c), msg) => self.on_conn_message(cx, id, c, msg),
            (_, msg) => log::warn!("ignoring an unexpected {:?}", msg.kind()),
        }
        Ok(())
    }

    fn peer_closed(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, state: Ctx) -> Result<(), Error> {
        match state {
            Ctx::Conn(_) => self.open -= 1,
            Ctx::Listener => {
                log::warn!("the listener closed (tcpip restarted?); listening again");
                self.listen(cx);
            }
            Ctx::Tcpip => log::error!("the TCP/IP server went away"),
            Ctx::Linux => {
                self.linux = None;
                self.forwards = String::from("[]");
            }
            Ctx::Timer => {}
        }
        Ok(())
    }

    fn timer(&mut self, cx: &mut Cx<Ctx>, id: HandleId, _: &mut Ctx) -> Result<(), Error> {
        let _ = cx.set_timer(id, SWEEP_MS * 1_000_000);
        self.cpu_load
            .sample(&self.monitor, starina::timer::now_ns());
        self.sweep(cx);
        let _ = cx.send(
            self.tcpip,
            Message::Open {
                call_id: STATS_CALL,
                uri: "stats:",
                handle: None,
            },
        );
        if let Some(linux) = self.linux {
            let forwards = Message::Open {
                call_id: FORWARDS_CALL,
                uri: "forwards:",
                handle: None,
            };
            let _ = cx.send(linux, forwards);
        }
        Ok(())
    }

    fn drained(&mut self, cx: &mut Cx<Ctx>, id: HandleId, state: &mut Ctx) -> Result<(), Error> {
        if let Ctx::Conn(c) = state {
            self.on_conn_drained(cx, id, c);
        }
        Ok(())
    }
}
