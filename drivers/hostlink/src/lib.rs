//! The host link: lets the host run commands in Starina's Linux
//! (`scripts/starina exec -- CMD ARGS...`).
//!
//! QEMU connects a virtio-console port to a Unix socket of the host; Bochs,
//! which has no virtio devices, connects the COM2 UART to a TCP socket
//! (`port.rs` hides which). Over it
//! the host speaks the process protocol of `starina_bridge::process`, the
//! same one the linux server speaks with the guest agent: `Spawn`, `Stdin`,
//! `StdinClose`, `Kill`, `Resize`, `Ping` and (test only) `Panic` from the host;
//! `Started`, `Stdout`, `Stderr`, `Exited`, `Signaled`, `SpawnFailed` and
//! `Pong` back. Each `Spawn` becomes a process of the linux server's native
//! API (`starina_bridge::exec`), so this driver is just a relay:
//!
//! | host frame | to the linux server |
//! |---|---|
//! | `Spawn { id, .. }` | `Open { call_id: id, uri: "exec" }`, then the request as the first `Data` on the process channel |
//! | `Stdin` / `StdinClose` / `Kill` | `Data` / `Close` / `Abort { code: signal }` on the process channel |
//! | `Resize` | `Open { call_id: 0, uri: "resize:ROWSxCOLS" }` on the process channel |
//! | `Panic` | `Open { uri: "test:panic" }` |
//!
//! and the process channel's events come back as the matching frames; an
//! `Error` (or the channel closing early) becomes `SpawnFailed` with the
//! message-kind error code as `errno`.
//!
//! Backpressure: while anything waits for a process channel (its queue is
//! full, or its `OpenReply` has not come yet), the driver stops reading the
//! port, so QEMU stops reading the socket.
//!
//! A framing error from the host (a frame length out of range: e.g. an
//! argv over 1 MiB from a sender that does not check) closes the link for
//! good: the bytes after it may be the inside of an oversized frame, which
//! can look like any frame (`Spawn`, `Kill`, `Panic`), and nothing in a
//! plain byte stream marks where a frame could start again. So
//! every host process fails with `SpawnFailed` (its channel closes, and the
//! linux server kills it), and from then on everything the port delivers is
//! read and dropped, never decoded. A fresh link is a fresh boot, which is
//! what `scripts/starina exec` does for every command.
//!
//! Interrupts: the driver reads the port only when the device interrupts
//! (or when a process channel makes room). For the virtio-console, the
//! interrupt object is created
//! before the device is set up, and the device's interrupt status is read
//! (which lowers its INTx line) once the driver listens. Both matter: the
//! host may have sent its first frame already, and QEMU fills the receive
//! buffer as soon as the driver posts it, raising INTx at once. If that
//! happens while the IOAPIC pin is still masked and edge-triggered (its
//! reset state), QEMU's IOAPIC ignores the edge, and once the pin is
//! routed level-triggered it only sees changes of the line: a line that is
//! already high, and stays high because nobody reads the status register,
//! never interrupts. (That was why an earlier version polled every
//! millisecond.) Each finished process logs how the driver was woken
//! (`hostlink: process N ended; woken by N interrupts, N timers`), so a
//! test can tell that no timer polls the port.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

mod port;

use starina::driver::uart::Uart;
use starina::driver::virtio::transport;
use starina::driver::Device;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::message::codes;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;
use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::ProtoError;

use crate::port::HostPort;
use crate::port::VirtioPort;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Bytes read from the port per batch before frames are handled.
const READ_BATCH: usize = 64 * 1024;
/// `errno` of a `SpawnFailed` when the linux server went away.
const LINUX_GONE: i32 = codes::UNAVAILABLE as i32;
/// `errno` of a `SpawnFailed` when the host broke the framing.
const LINK_BROKEN: i32 = codes::RESET as i32;

/// What a watched object is to the relay.
enum Watched {
    Interrupt,
    Linux,
    /// The channel of host process `id`.
    Process(u32),
}

/// What waits to go to a process channel before its `OpenReply`.
enum Outgoing {
    Data(Vec<u8>),
    Close,
    Kill(i32),
    /// The `Open` URI that resizes the process's terminal.
    Resize(String),
}

impl Outgoing {
    fn message(&self) -> Message<'_> {
        match self {
            Outgoing::Data(d) => Message::Data(d),
            Outgoing::Close => Message::Close,
            Outgoing::Kill(signal) => Message::Abort {
                code: (*signal).clamp(0, u16::MAX as i32) as u16,
                reason: "killed from the host",
            },
            Outgoing::Resize(uri) => Message::Open {
                call_id: 0,
                uri: uri.as_str(),
                handle: None,
            },
        }
    }
}

struct HostProc {
    /// `None` until the linux server's `OpenReply`.
    ch: Option<HandleId>,
    /// What the host sent before that.
    early: VecDeque<Outgoing>,
}

struct Link {
    port: HostPort,
    linux: HandleId,
    decoder: FrameDecoder,
    procs: BTreeMap<u32, HostProc>,
    out: Vec<u8>,
    wakeups: Wakeups,
}

/// How the driver was woken, for the log (see the module docs).
#[derive(Default)]
struct Wakeups {
    interrupts: u64,
    /// Timer events: none while nothing polls.
    timers: u64,
}

pub fn main(env: Env) -> Result<(), String> {
    // With both, the UART is left alone (and quiesced when it drops).
    match (env.port, env.uart) {
        (Some(device), _) => over_virtio(device, env.supervisor, env.linux),
        (None, Some(device)) => over_uart(device, env.supervisor, env.linux),
        (None, None) => {
            log::info!(
                "no host link device (a virtio-console port or the COM2 UART): nothing to relay"
            );
            Ok(())
        }
    }
}

fn over_virtio(device: Device, supervisor: Channel, linux: Channel) -> Result<(), String> {
    let where_ = device.describe();
    // Before the device can raise its line (see the module docs).
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let port = transport(&device)
        .map_err(|e| format!("{e}"))
        .and_then(|t| VirtioPort::new(t).map_err(|e| format!("{e:?}")))
        .map_err(|e| format!("{where_}: cannot set up the virtio-console: {e}"))?;
    let result = run(
        HostPort::Virtio(alloc::boxed::Box::new(port)),
        irq,
        supervisor,
        linux,
    );
    // `device` drops last: the kernel quiesces it before its DMA memory is
    // freed.
    drop(device);
    result.map_err(|e| format!("{where_}: {e}"))
}

fn over_uart(device: Device, supervisor: Channel, linux: Channel) -> Result<(), String> {
    let where_ = device.describe();
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let uart = Uart::new(device).map_err(|e| format!("{where_}: cannot set up the UART: {e}"))?;
    run(HostPort::Uart(uart), irq, supervisor, linux).map_err(|e| format!("{where_}: {e}"))
}

fn run(
    port: HostPort,
    irq: starina::driver::Interrupt,
    supervisor: Channel,
    linux: Channel,
) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    let cx = ml.cx();
    cx.add_supervisor(supervisor)?;
    cx.add_interrupt(irq, Watched::Interrupt)?;
    let linux = cx.add_channel(linux, Watched::Linux)?;
    let mut link = Link {
        port,
        linux,
        decoder: FrameDecoder::new(),
        procs: BTreeMap::new(),
        out: Vec::new(),
        wakeups: Wakeups::default(),
    };
    log::info!("host link up");
    // Bytes may have arrived before we listened, and the line may be high
    // already: reading the status lowers it, so the next buffer the device
    // fills raises it again (see the module docs).
    if let Err(e) = link.port.on_interrupt() {
        log::warn!("host link device: {e}");
    }
    link.read_host(ml.cx());
    ml.run(&mut link)
}

impl Handler for Link {
    type State = Watched;

    fn reconnect(&mut self, cx: &mut Cx<Watched>, _field: &str, ch: Channel) -> Result<(), Error> {
        log::info!("the linux server restarted: reconnecting");
        cx.remove(self.linux);
        self.linux = cx.add_channel(ch, Watched::Linux)?;
        self.fail_opening("the linux server restarted");
        self.read_host(cx);
        Ok(())
    }

    fn message(
        &mut self,
        cx: &mut Cx<Watched>,
        _: HandleId,
        what: &mut Watched,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        match *what {
            Watched::Linux => self.on_linux_message(cx, msg),
            Watched::Process(id) => self.on_process_message(cx, id, msg),
            _ => {}
        }
        // A reply or an ended process may let reading go on.
        self.read_host(cx);
        Ok(())
    }

    fn peer_closed(
        &mut self,
        cx: &mut Cx<Watched>,
        _: HandleId,
        what: Watched,
    ) -> Result<(), Error> {
        match what {
            // Startup sends `reconnect:linux` when it restarts the server.
            Watched::Linux => self.fail_opening("the linux server is gone"),
            Watched::Process(id) => self.process_gone(cx, id),
            _ => {}
        }
        self.read_host(cx);
        Ok(())
    }

    fn timer(&mut self, cx: &mut Cx<Watched>, _: HandleId, _: &mut Watched) -> Result<(), Error> {
        // The driver sets no timer; counted so the log would show one.
        self.wakeups.timers += 1;
        self.read_host(cx);
        Ok(())
    }

    fn interrupt(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        _: &mut Watched,
    ) -> Result<(), Error> {
        self.wakeups.interrupts += 1;
        if let Err(e) = self.port.on_interrupt() {
            log::warn!("host link device: {e}");
        }
        self.read_host(cx);
        cx.ack_interrupt(id)
    }

    fn drained(&mut self, cx: &mut Cx<Watched>, _: HandleId, _: &mut Watched) -> Result<(), Error> {
        // Room again: frames waiting in the decoder may go on.
        self.read_host(cx);
        Ok(())
    }
}

impl Link {
    /// Whether something waits for a process channel: then nothing more is
    /// read from the host until it goes out.
    fn stalled(&self, cx: &Cx<Watched>) -> bool {
        self.procs.values().any(|p| match p.ch {
            Some(ch) => cx.backlog_bytes(ch) > 0,
            None => !p.early.is_empty(),
        })
    }

    /// Handles whole frames already received, then reads more from the
    /// port, until it is empty or a process channel is behind.
    fn read_host(&mut self, cx: &mut Cx<Watched>) {
        loop {
            while !self.stalled(cx) {
                match self.decoder.next() {
                    Some(Ok(frame)) => self.on_host_frame(cx, frame),
                    Some(Err(e)) if e.is_fatal() => self.close_link(cx, &e),
                    Some(Err(e)) => log::warn!("bad frame from the host: {e}"),
                    None => break,
                }
            }
            if self.stalled(cx) {
                return;
            }
            let chunk = self.read_port();
            if chunk.is_empty() {
                return;
            }
            self.decoder.push(&chunk);
        }
    }

    /// The host broke the framing: fails every process and leaves the
    /// decoder broken, so the rest of the stream is drained and dropped
    /// (see the module docs).
    fn close_link(&mut self, cx: &mut Cx<Watched>, error: &ProtoError) {
        log::error!(
            "the host link is out of sync ({error}): closing it; no further frames are read"
        );
        debug_assert!(self.decoder.is_broken());
        let why = format!("the host link closed: {error}");
        for (id, p) in core::mem::take(&mut self.procs) {
            if let Some(ch) = p.ch {
                cx.remove(ch);
            }
            self.spawn_failed(id, LINK_BROKEN, why.clone());
        }
    }

    fn read_port(&mut self) -> Vec<u8> {
        self.port.recv(READ_BATCH).unwrap_or_else(|e| {
            log::warn!("host link receive: {e}");
            Vec::new()
        })
    }

    fn send_host(&mut self, frame: &Frame) {
        self.out.clear();
        if let Err(e) = frame.encode_into(&mut self.out) {
            log::warn!("cannot encode a frame for the host: {e}");
            return;
        }
        if let Err(e) = self.port.send(&self.out) {
            log::warn!("host link send: {e}");
        }
    }

    fn spawn_failed(&mut self, id: u32, errno: i32, msg: String) {
        self.send_host(&Frame::SpawnFailed { id, errno, msg });
    }

    fn on_host_frame(&mut self, cx: &mut Cx<Watched>, frame: Frame) {
        match frame {
            Frame::Spawn(spawn) => {
                let req = ExecRequest {
                    argv: spawn.argv,
                    env: spawn.env,
                    cwd: spawn.cwd,
                    user: spawn.user,
                    terminal: spawn.terminal,
                };
                self.spawn(cx, spawn.id, req);
            }
            Frame::Stdin { id, data } => self.stdin_for_process(cx, id, Outgoing::Data(data)),
            Frame::StdinClose { id } => self.stdin_for_process(cx, id, Outgoing::Close),
            Frame::Kill { id, signal } => self.stdin_for_process(cx, id, Outgoing::Kill(signal)),
            Frame::Resize { id, size } => {
                self.stdin_for_process(cx, id, Outgoing::Resize(exec::resize_uri(size)))
            }
            Frame::Ping { nonce } => self.send_host(&Frame::Pong { nonce }),
            Frame::Panic => {
                log::warn!("the host asked for a guest kernel panic (test)");
                let open = Message::Open {
                    call_id: 0,
                    uri: "test:panic",
                    handle: None,
                };
                let _ = cx.send(self.linux, open);
            }
            other => log::warn!("ignoring an unexpected frame from the host: {other:?}"),
        }
    }

    /// Asks the linux server for a process; the request goes as its first
    /// `Data` once the `OpenReply` brings the channel.
    fn spawn(&mut self, cx: &mut Cx<Watched>, id: u32, req: ExecRequest) {
        if self.procs.contains_key(&id) {
            return self.spawn_failed(
                id,
                codes::INVALID as i32,
                format!("process id {id} is in use"),
            );
        }
        let body = match req.check().and_then(|()| req.encode()) {
            Ok(body) => body,
            Err(e) => return self.spawn_failed(id, codes::INVALID as i32, format!("{e}")),
        };
        let open = Message::Open {
            call_id: id,
            uri: exec::URI,
            handle: None,
        };
        if let Err(e) = cx.send(self.linux, open) {
            return self.spawn_failed(
                id,
                LINUX_GONE,
                format!("cannot reach the linux server: {e}"),
            );
        }
        let early = VecDeque::from([Outgoing::Data(body)]);
        self.procs.insert(id, HostProc { ch: None, early });
    }

    fn stdin_for_process(&mut self, cx: &mut Cx<Watched>, id: u32, out: Outgoing) {
        let Some(p) = self.procs.get_mut(&id) else {
            return; // Already ended: like writing to a closed pipe.
        };
        // Stdin chunks of the host protocol (32 KiB) are larger than a
        // channel message.
        let parts: Vec<Outgoing> = match out {
            Outgoing::Data(d) if d.len() > exec::MESSAGE_MAX => d
                .chunks(exec::MESSAGE_MAX)
                .map(|c| Outgoing::Data(c.to_vec()))
                .collect(),
            other => alloc::vec![other],
        };
        match p.ch {
            None => p.early.extend(parts),
            Some(ch) => {
                for part in &parts {
                    if let Err(e) = cx.send(ch, part.message()) {
                        // Its end is reported when we read its PeerClosed.
                        log::debug!("process {id}: {e}");
                    }
                }
            }
        }
    }

    fn on_linux_message(&mut self, cx: &mut Cx<Watched>, msg: Message<'_>) {
        match msg {
            Message::OpenReply { call_id, handle } => {
                let ch = Channel::from_handle(handle);
                let Some(p) = self.procs.get_mut(&call_id) else {
                    return; // Dropping `ch` closes it.
                };
                let ch = match cx.add_channel(ch, Watched::Process(call_id)) {
                    Ok(ch) => ch,
                    Err(e) => {
                        self.procs.remove(&call_id);
                        return self.spawn_failed(
                            call_id,
                            LINUX_GONE,
                            format!("cannot watch the process: {e}"),
                        );
                    }
                };
                p.ch = Some(ch);
                for out in core::mem::take(&mut p.early) {
                    if let Err(e) = cx.send(ch, out.message()) {
                        log::debug!("process {call_id}: {e}");
                    }
                }
            }
            Message::Error {
                call_id,
                code,
                text,
            } => {
                let msg = String::from(text);
                if self.procs.remove(&call_id).is_some() {
                    self.spawn_failed(call_id, code as i32, msg);
                } else {
                    log::warn!("the linux server: {msg}");
                }
            }
            other => log::warn!("ignoring {:?} from the linux server", other.kind()),
        }
    }

    /// Fails the spawns still waiting for an `OpenReply`.
    fn fail_opening(&mut self, why: &str) {
        let waiting: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.ch.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.procs.remove(&id);
            self.spawn_failed(id, LINUX_GONE, String::from(why));
        }
    }

    fn on_process_message(&mut self, cx: &mut Cx<Watched>, id: u32, msg: Message<'_>) {
        let frame = match msg {
            Message::Data(data) => match exec::Event::decode(data) {
                Ok(exec::Event::Started { pid }) => Frame::Started { id, pid },
                Ok(exec::Event::Stdout(d)) => Frame::Stdout {
                    id,
                    data: d.to_vec(),
                },
                Ok(exec::Event::Stderr(d)) => Frame::Stderr {
                    id,
                    data: d.to_vec(),
                },
                Ok(exec::Event::Exited(code)) => Frame::Exited { id, code },
                Ok(exec::Event::Signaled(signal)) => Frame::Signaled { id, signal },
                Err(e) => return log::warn!("process {id}: bad event from the linux server: {e}"),
            },
            Message::Error { code, text, .. } => Frame::SpawnFailed {
                id,
                errno: code as i32,
                msg: String::from(text),
            },
            other => return log::warn!("process {id}: ignoring {:?}", other.kind()),
        };
        let last = matches!(
            frame,
            Frame::Exited { .. } | Frame::Signaled { .. } | Frame::SpawnFailed { .. }
        );
        if last {
            self.log_wakeups(id);
        }
        self.send_host(&frame);
        if last {
            self.end(cx, id);
        }
    }

    /// The process channel closed without a final event.
    fn process_gone(&mut self, cx: &mut Cx<Watched>, id: u32) {
        if self.procs.contains_key(&id) {
            self.end(cx, id);
            self.log_wakeups(id);
            self.spawn_failed(
                id,
                LINUX_GONE,
                String::from("the linux server closed the process channel"),
            );
        }
    }

    fn end(&mut self, cx: &mut Cx<Watched>, id: u32) {
        if let Some(HostProc { ch: Some(ch), .. }) = self.procs.remove(&id) {
            cx.remove(ch);
        }
    }

    /// Logged before a process's last frame goes to the host (which may
    /// stop the VM as soon as it has it).
    fn log_wakeups(&self, id: u32) {
        log::info!(
            "process {id} ended; woken by {} interrupts, {} timers",
            self.wakeups.interrupts,
            self.wakeups.timers
        );
    }
}
