//! The host link: lets the host run commands in Starina's Linux
//! (`scripts/starina exec -- CMD ARGS...`).
//!
//! QEMU connects a virtio-console port to a Unix socket of the host. Over it
//! the host speaks the process protocol of `starina_bridge::process`, the
//! same one the linux server speaks with the guest agent: `Spawn`, `Stdin`,
//! `StdinClose`, `Kill`, `Ping` and (test only) `Panic` from the host;
//! `Started`, `Stdout`, `Stderr`, `Exited`, `Signaled`, `SpawnFailed` and
//! `Pong` back. Each `Spawn` becomes a process of the linux server's native
//! API (`starina_bridge::exec`), so this driver is just a relay:
//!
//! | host frame | to the linux server |
//! |---|---|
//! | `Spawn { id, .. }` | `Open { call_id: id, uri: "exec" }`, then the request as the first `Data` on the process channel |
//! | `Stdin` / `StdinClose` / `Kill` | `Data` / `Close` / `Abort { code: signal }` on the process channel |
//! | `Panic` | `Open { uri: "test:panic" }` |
//!
//! and the process channel's events come back as the matching frames; an
//! `Error` (or the channel closing early) becomes `SpawnFailed` with the
//! message-kind error code as `errno`.
//!
//! Backpressure: while a process channel is full, the driver stops reading
//! the port, so QEMU stops reading the socket.
//!
//! Besides its interrupt, the driver also polls the port on a timer (every
//! millisecond while a command runs, every 20 ms otherwise): on q35 the
//! virtio-console's INTx was seen not to arrive, and a relay must not hang
//! on a lost interrupt.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::driver::virtio::transport;
use starina::driver::virtio::StarinaHal;
use starina::driver::Interrupt;
use starina::message::codes;
use starina::poll::Poll;
use starina::timer::Timer;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;
use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::SomeTransport;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

type Port = VirtIOConsole<StarinaHal, SomeTransport<'static>>;

/// Bytes read from the port per batch before frames are handled.
const READ_BATCH: usize = 64 * 1024;
/// How often the port is polled while a command runs, and while idle.
const POLL_ACTIVE_NS: u64 = 1_000_000;
const POLL_IDLE_NS: u64 = 20_000_000;
/// `errno` of a `SpawnFailed` when the linux server went away.
const LINUX_GONE: i32 = codes::UNAVAILABLE as i32;

/// What waits to go to a process channel.
enum Outgoing {
    Data(Vec<u8>),
    Close,
    Kill(i32),
}

struct HostProc {
    /// `None` until the linux server's `OpenReply`.
    ch: Option<Channel>,
    pending: VecDeque<Outgoing>,
}

struct Link {
    port: Port,
    irq: Interrupt,
    poll: Poll,
    /// The polling fallback (see the module docs).
    tick: Timer,
    supervisor: Channel,
    linux: Channel,
    decoder: FrameDecoder,
    procs: BTreeMap<u32, HostProc>,
    /// Process channel id -> host process id.
    by_channel: BTreeMap<HandleId, u32>,
    buf: MessageBuffer,
    out: Vec<u8>,
}

pub fn main(env: Env) -> Result<(), String> {
    let device = env.port;
    let where_ = device.describe();
    let port = transport(&device)
        .map_err(|e| format!("{e}"))
        .and_then(|t| Port::new(t).map_err(|e| format!("{e:?}")))
        .map_err(|e| format!("{where_}: cannot set up the virtio-console: {e}"))?;
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let poll = Poll::create().map_err(|e| format!("cannot create a poll: {e}"))?;
    let tick = Timer::create().map_err(|e| format!("cannot create a timer: {e}"))?;
    let mut link = Link {
        port,
        irq,
        poll,
        tick,
        supervisor: env.supervisor,
        linux: env.linux,
        decoder: FrameDecoder::new(),
        procs: BTreeMap::new(),
        by_channel: BTreeMap::new(),
        buf: MessageBuffer::new(),
        out: Vec::new(),
    };
    log::info!("{where_}: host link up");
    let result = link.run();
    // `device` drops last: the kernel quiesces it before its DMA memory is
    // freed.
    drop(link);
    drop(device);
    result.map_err(|e| format!("{where_}: {e}"))
}

impl Link {
    fn run(&mut self) -> Result<(), Error> {
        let interests = Readiness::READABLE | Readiness::PEER_CLOSED;
        self.poll.add(self.irq.id(), Readiness::READABLE)?;
        self.poll.add(self.supervisor.id(), interests)?;
        self.poll.add(self.linux.id(), interests)?;
        self.poll.add(self.tick.id(), Readiness::READABLE)?;
        // Bytes may have arrived before we listened.
        self.read_host();
        loop {
            let period = if self.procs.is_empty() {
                POLL_IDLE_NS
            } else {
                POLL_ACTIVE_NS
            };
            self.tick.set(period)?;
            let (id, ready) = self.poll.wait()?;
            if id == self.tick.id() {
                self.read_host();
            } else if id == self.irq.id() {
                if let Err(e) = self.port.ack_interrupt() {
                    log::warn!("virtio-console: {e:?}");
                }
                self.read_host();
                if let Err(e) = self.irq.ack() {
                    log::error!("interrupt ack failed: {e}");
                }
            } else if id == self.supervisor.id() {
                self.on_supervisor(ready);
                self.read_host();
            } else if id == self.linux.id() {
                self.on_linux(ready);
                // A spawn that was waiting for its reply may let reading go on.
                self.read_host();
            } else if let Some(&host_id) = self.by_channel.get(&id) {
                if ready.contains(Readiness::WRITABLE) {
                    self.flush(host_id);
                }
                if ready.intersects(Readiness::READABLE | Readiness::PEER_CLOSED) {
                    self.on_process(host_id, ready);
                }
                // Room again: frames waiting in the decoder may go on.
                self.read_host();
            }
        }
    }

    /// Whether a process channel is full: then nothing more is read from
    /// the host until it drains.
    fn stalled(&self) -> bool {
        self.procs.values().any(|p| !p.pending.is_empty())
    }

    /// Handles whole frames already received, then reads more from the
    /// port, until it is empty or a process channel is full.
    fn read_host(&mut self) {
        loop {
            while !self.stalled() {
                match self.decoder.next() {
                    Some(Ok(frame)) => self.on_host_frame(frame),
                    Some(Err(e)) => {
                        log::warn!("bad frame from the host: {e}");
                        if e.is_fatal() {
                            // Out of sync: start over with the next bytes.
                            self.decoder.reset();
                        }
                    }
                    None => break,
                }
            }
            if self.stalled() {
                return;
            }
            let mut chunk = Vec::new();
            while chunk.len() < READ_BATCH {
                match self.port.recv(true) {
                    Ok(Some(b)) => chunk.push(b),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("virtio-console receive: {e:?}");
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                return;
            }
            self.decoder.push(&chunk);
        }
    }

    fn send_host(&mut self, frame: &Frame) {
        self.out.clear();
        if let Err(e) = frame.encode_into(&mut self.out) {
            log::warn!("cannot encode a frame for the host: {e}");
            return;
        }
        if let Err(e) = self.port.send_bytes(&self.out) {
            log::warn!("virtio-console send: {e:?}");
        }
    }

    fn on_host_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Spawn(spawn) => {
                let id = spawn.id;
                if self.procs.contains_key(&id) {
                    self.send_host(&Frame::SpawnFailed {
                        id,
                        errno: codes::INVALID as i32,
                        msg: format!("process id {id} is in use"),
                    });
                    return;
                }
                let req = ExecRequest {
                    argv: spawn.argv,
                    env: spawn.env,
                    cwd: spawn.cwd,
                };
                let body = match req.check().and_then(|()| req.encode()) {
                    Ok(body) => body,
                    Err(e) => {
                        self.send_host(&Frame::SpawnFailed {
                            id,
                            errno: codes::INVALID as i32,
                            msg: format!("{e}"),
                        });
                        return;
                    }
                };
                let open = Message::Open {
                    call_id: id,
                    uri: exec::URI,
                    handle: None,
                };
                if let Err(e) = self.linux.send(open) {
                    self.send_host(&Frame::SpawnFailed {
                        id,
                        errno: LINUX_GONE,
                        msg: format!("cannot reach the linux server: {}", e.error),
                    });
                    return;
                }
                let mut pending = VecDeque::new();
                pending.push_back(Outgoing::Data(body));
                self.procs.insert(id, HostProc { ch: None, pending });
            }
            Frame::Stdin { id, data } => self.queue_for_process(id, Outgoing::Data(data)),
            Frame::StdinClose { id } => self.queue_for_process(id, Outgoing::Close),
            Frame::Kill { id, signal } => self.queue_for_process(id, Outgoing::Kill(signal)),
            Frame::Ping { nonce } => self.send_host(&Frame::Pong { nonce }),
            Frame::Panic => {
                log::warn!("the host asked for a guest kernel panic (test)");
                let _ = self.linux.send(Message::Open {
                    call_id: 0,
                    uri: "test:panic",
                    handle: None,
                });
            }
            other => log::warn!("ignoring an unexpected frame from the host: {other:?}"),
        }
    }

    fn queue_for_process(&mut self, id: u32, out: Outgoing) {
        let Some(p) = self.procs.get_mut(&id) else {
            return; // Already ended: like writing to a closed pipe.
        };
        if let Outgoing::Data(d) = &out {
            // Stdin chunks of the host protocol (32 KiB) are larger than a
            // channel message.
            if d.len() > exec::MESSAGE_MAX {
                for chunk in d.chunks(exec::MESSAGE_MAX) {
                    p.pending.push_back(Outgoing::Data(chunk.to_vec()));
                }
                self.flush(id);
                return;
            }
        }
        p.pending.push_back(out);
        self.flush(id);
    }

    /// Sends what waits for process `id` as far as its channel takes it.
    fn flush(&mut self, id: u32) {
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        let Some(ch) = &p.ch else {
            return;
        };
        while let Some(out) = p.pending.front() {
            let result = match out {
                Outgoing::Data(d) => ch.send_data(d),
                Outgoing::Close => ch.send(Message::Close).map_err(|e| e.error),
                Outgoing::Kill(signal) => ch
                    .send(Message::Abort {
                        code: (*signal).clamp(0, u16::MAX as i32) as u16,
                        reason: "killed from the host",
                    })
                    .map_err(|e| e.error),
            };
            match result {
                Ok(()) => {
                    p.pending.pop_front();
                }
                Err(Error::QueueFull) => break,
                Err(_) => {
                    // The process channel is gone; its end is reported
                    // when we read its PeerClosed.
                    p.pending.clear();
                }
            }
        }
        let mut interests = Readiness::READABLE | Readiness::PEER_CLOSED;
        if !p.pending.is_empty() {
            interests |= Readiness::WRITABLE;
        }
        let ch_id = ch.id();
        let _ = self.poll.remove(ch_id);
        let _ = self.poll.add(ch_id, interests);
    }

    fn on_supervisor(&mut self, ready: Readiness) {
        loop {
            match self.supervisor.try_recv(&mut self.buf) {
                Ok(Message::Open {
                    uri,
                    handle: Some(handle),
                    ..
                }) if uri.starts_with("reconnect:") => {
                    log::info!("the linux server restarted: reconnecting");
                    let _ = self.poll.remove(self.linux.id());
                    self.linux = Channel::from_handle(handle);
                    let _ = self.poll.add(
                        self.linux.id(),
                        Readiness::READABLE | Readiness::PEER_CLOSED,
                    );
                    self.fail_opening("the linux server restarted");
                }
                Ok(other) => log::warn!("ignoring {:?} on the supervisor channel", other.kind()),
                Err(Error::WouldBlock) => {
                    if ready.contains(Readiness::PEER_CLOSED)
                        && !ready.contains(Readiness::READABLE)
                    {
                        let _ = self.poll.remove(self.supervisor.id());
                    }
                    return;
                }
                Err(Error::PeerClosed) => {
                    let _ = self.poll.remove(self.supervisor.id());
                    return;
                }
                Err(e) => log::warn!("bad message on the supervisor channel: {e}"),
            }
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
            self.send_host(&Frame::SpawnFailed {
                id,
                errno: LINUX_GONE,
                msg: String::from(why),
            });
        }
    }

    fn on_linux(&mut self, ready: Readiness) {
        loop {
            match self.linux.try_recv(&mut self.buf) {
                Ok(Message::OpenReply { call_id, handle }) => {
                    let ch = Channel::from_handle(handle);
                    let Some(p) = self.procs.get_mut(&call_id) else {
                        continue; // Dropping `ch` closes it.
                    };
                    self.by_channel.insert(ch.id(), call_id);
                    p.ch = Some(ch);
                    self.flush(call_id);
                }
                Ok(Message::Error {
                    call_id,
                    code,
                    text,
                }) => {
                    let msg = String::from(text);
                    if self.procs.remove(&call_id).is_some() {
                        self.send_host(&Frame::SpawnFailed {
                            id: call_id,
                            errno: code as i32,
                            msg,
                        });
                    } else {
                        log::warn!("the linux server: {msg}");
                    }
                }
                Ok(other) => log::warn!("ignoring {:?} from the linux server", other.kind()),
                Err(Error::WouldBlock) => {
                    if ready.contains(Readiness::PEER_CLOSED)
                        && !ready.contains(Readiness::READABLE)
                    {
                        self.linux_gone();
                    }
                    return;
                }
                Err(Error::PeerClosed) => {
                    self.linux_gone();
                    return;
                }
                Err(e) => log::warn!("bad message from the linux server: {e}"),
            }
        }
    }

    fn linux_gone(&mut self) {
        // Startup sends `reconnect:linux` when it restarts the server.
        let _ = self.poll.remove(self.linux.id());
        self.fail_opening("the linux server is gone");
    }

    fn on_process(&mut self, id: u32, ready: Readiness) {
        loop {
            let Some(ch) = self.procs.get(&id).and_then(|p| p.ch.as_ref()) else {
                return;
            };
            let frame = match ch.try_recv(&mut self.buf) {
                Ok(Message::Data(data)) => match exec::Event::decode(data) {
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
                    Err(e) => {
                        log::warn!("process {id}: bad event from the linux server: {e}");
                        continue;
                    }
                },
                Ok(Message::Error { code, text, .. }) => Frame::SpawnFailed {
                    id,
                    errno: code as i32,
                    msg: String::from(text),
                },
                Ok(other) => {
                    log::warn!("process {id}: ignoring {:?}", other.kind());
                    continue;
                }
                Err(Error::WouldBlock) => {
                    if ready.contains(Readiness::PEER_CLOSED)
                        && !ready.contains(Readiness::READABLE)
                    {
                        self.process_gone(id);
                    }
                    return;
                }
                Err(Error::PeerClosed) => {
                    self.process_gone(id);
                    return;
                }
                Err(e) => {
                    log::warn!("process {id}: bad message: {e}");
                    continue;
                }
            };
            let last = matches!(
                frame,
                Frame::Exited { .. } | Frame::Signaled { .. } | Frame::SpawnFailed { .. }
            );
            self.send_host(&frame);
            if last {
                self.remove(id);
                return;
            }
        }
    }

    /// The process channel closed without a final event.
    fn process_gone(&mut self, id: u32) {
        if self.procs.contains_key(&id) {
            self.remove(id);
            self.send_host(&Frame::SpawnFailed {
                id,
                errno: LINUX_GONE,
                msg: String::from("the linux server closed the process channel"),
            });
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(p) = self.procs.remove(&id) {
            if let Some(ch) = p.ch {
                let _ = self.poll.remove(ch.id());
                self.by_channel.remove(&ch.id());
            }
        }
    }
}
