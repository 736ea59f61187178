//! The linux server: runs a Linux microVM and lets native components run
//! Linux programs in it.
//!
//! Two threads:
//! - the **vCPU thread** ([`vcpu`]) builds the VM from the boot file system's
//!   kernel and initramfs and runs it through the VMM (`starina-vmm`); the
//!   guest's serial console goes to the log as `linux: [guest] ...`;
//! - the **main thread** (here) serves clients over channels and speaks the
//!   process protocol (`starina_bridge::process`) with the guest agent over
//!   the VM's virtio-console.
//!
//! Clients use the native process API of `starina_bridge::exec` (described
//! in `servers/linux/README.md`): `Open { uri: "exec" }`, then the request
//! and stdin on the process channel, output and the exit status back.
//!
//! When the guest dies (kernel panic, power-off, triple fault) the server
//! logs why, fails every process with an `Error`, and exits with code 1: the
//! spec's restart policy boots a fresh VM, and clients get
//! `reconnect:<field>` from startup.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod shared;
mod vcpu;

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use starina::channel::Channel;
use starina::mainloop::legacy::Event;
use starina::mainloop::legacy::Mainloop;
use starina::message::codes;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;
use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::MAX_DATA_CHUNK;

use crate::shared::Shared;
use crate::shared::Status;
use crate::shared::INPUT_HIGH_WATER;
use crate::shared::OUTPUT_HIGH_WATER;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// The `Open` URI that crashes the guest kernel (test only, see the spec's
/// `allow_test_panic`).
pub const TEST_PANIC_URI: &str = "test:panic";

enum Ctx {
    Supervisor,
    /// A client's connection to the `linux` service.
    Client,
    /// A process channel; the number is the process id in the agent
    /// protocol.
    Process(u32),
    /// Wake-ups from the vCPU thread.
    Wake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The process channel exists; its first `Data` (the request) has not
    /// arrived yet.
    AwaitRequest,
    /// Spawn sent (or held until the agent is ready).
    Running,
    /// The final event is queued; the channel closes once it is delivered.
    Finished,
}

/// A message for a client that did not fit in its queue yet.
enum Out {
    Data(Vec<u8>),
    Error { code: u16, text: String },
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Data(d) => d.len(),
            Out::Error { text, .. } => text.len(),
        }
    }
}

struct Proc {
    /// The process channel in the main loop; `None` once the client closed
    /// it (then output is dropped and the entry goes when the process ends).
    ch: Option<HandleId>,
    phase: Phase,
    backlog: VecDeque<Out>,
    /// The channel is out of the main loop while the guest's input is full.
    paused: bool,
}

struct Server {
    ml: Mainloop<Ctx>,
    shared: Arc<Shared>,
    /// Our end of the wake channel (also in `ml`, as `Ctx::Wake`).
    wake: HandleId,
    procs: BTreeMap<u32, Proc>,
    next_id: u32,
    decoder: FrameDecoder,
    /// The guest's kernel release, once the agent said `Ready`.
    ready: Option<String>,
    /// Frames for the agent, held until it is ready.
    held: Vec<u8>,
    /// Process channels taken out of the loop while the guest's input is
    /// full.
    paused: Vec<(Channel, u32)>,
    backlog_bytes: usize,
    /// Why there is no VM, when there is none for good.
    unavailable: Option<String>,
    max_processes: usize,
    allow_test_panic: bool,
}

pub fn main(env: Env) {
    let mut ml = match Mainloop::new() {
        Ok(ml) => ml,
        Err(e) => {
            log::error!("cannot create the main loop: {e}");
            starina::thread::exit(1);
        }
    };
    let (ours, theirs) = match Channel::create() {
        Ok(pair) => pair,
        Err(e) => {
            log::error!("cannot create the wake channel: {e}");
            starina::thread::exit(1);
        }
    };
    let shared = Arc::new(Shared::new());
    let memory_mib = env.config.memory_mib.clamp(16, 1 << 20) as u64 & !1;
    let mut cmdline = String::from(env.config.cmdline);
    if !env.config.cmdline_extra.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(env.config.cmdline_extra);
    }
    *vcpu::JOB.lock() = Some(vcpu::Job {
        hypervisor: env.hypervisor,
        wake: theirs,
        shared: shared.clone(),
        config: vcpu::VmConfig {
            memory_bytes: memory_mib << 20,
            kernel_file: env.config.kernel_file,
            initramfs_file: env.config.initramfs_file,
            cmdline,
        },
    });
    let wake = match ml.add_channel(ours, Ctx::Wake) {
        Ok(id) => id,
        Err(e) => {
            log::error!("cannot watch the wake channel: {e}");
            starina::thread::exit(1);
        }
    };
    if let Err(e) = ml.add_channel(env.supervisor, Ctx::Supervisor) {
        log::error!("cannot watch the supervisor channel: {e}");
        starina::thread::exit(1);
    }
    let mut server = Server {
        ml,
        shared,
        wake,
        procs: BTreeMap::new(),
        next_id: 1,
        decoder: FrameDecoder::new(),
        ready: None,
        held: Vec::new(),
        paused: Vec::new(),
        backlog_bytes: 0,
        unavailable: None,
        max_processes: env.config.max_processes.clamp(1, 4096) as usize,
        allow_test_panic: env.config.allow_test_panic,
    };
    if let Err(e) = starina::thread::spawn(vcpu::thread_main, 0) {
        let why = format!("cannot start the vCPU thread: {e}");
        log::error!("{why}");
        server.shared.stop(Status::Unavailable(why));
        server.check_status();
    }
    server.run();
}

impl Server {
    fn run(&mut self) -> ! {
        loop {
            let mut accept: Option<Channel> = None;
            let mut open: Option<(HandleId, u32, String)> = None;
            let mut from_process: Option<(u32, ProcessInput)> = None;
            let mut closed_process: Option<u32> = None;
            let mut writable: Option<u32> = None;
            let mut pump = false;
            match self.ml.next() {
                Event::Message {
                    ctx: Ctx::Supervisor,
                    msg:
                        Message::Open {
                            uri,
                            handle: Some(handle),
                            ..
                        },
                    ..
                } if uri.starts_with("connect:") => accept = Some(Channel::from_handle(handle)),
                Event::Message {
                    ctx: Ctx::Client,
                    ch,
                    msg:
                        Message::Open {
                            call_id,
                            uri,
                            handle: None,
                        },
                } => open = Some((ch.id(), call_id, String::from(uri))),
                Event::Message {
                    ctx: Ctx::Process(id),
                    msg,
                    ..
                } => {
                    let input = match msg {
                        Message::Data(data) => ProcessInput::Data(data.to_vec()),
                        Message::Close => ProcessInput::Close,
                        Message::Abort { code, .. } => ProcessInput::Kill(exec::abort_signal(code)),
                        other => ProcessInput::Unexpected(other.kind()),
                    };
                    from_process = Some((*id, input));
                }
                Event::Message { ctx: Ctx::Wake, .. } => pump = true,
                Event::Message { ctx, msg, .. } => {
                    let from = match ctx {
                        Ctx::Supervisor => "the supervisor",
                        _ => "a client",
                    };
                    log::warn!("ignoring a {:?} message from {from}", msg.kind());
                }
                Event::PeerClosed {
                    ctx: Ctx::Process(id),
                    ..
                } => closed_process = Some(id),
                Event::PeerClosed {
                    ctx: Ctx::Supervisor,
                    ..
                } => log::warn!("supervisor channel closed"),
                Event::PeerClosed { ctx: Ctx::Wake, .. } => pump = true,
                Event::PeerClosed { .. } => {}
                Event::Writable {
                    ctx: Ctx::Process(id),
                    ..
                } => writable = Some(*id),
                Event::Writable { .. } | Event::Timer { .. } => {}
                Event::Error { error, .. } => log::warn!("dropped a bad message: {error}"),
            }
            if let Some(ch) = accept {
                if let Err(e) = self.ml.add_channel(ch, Ctx::Client) {
                    log::warn!("cannot accept a client: {e}");
                }
            }
            if let Some((client, call_id, uri)) = open {
                self.on_open(client, call_id, &uri);
            }
            if let Some((id, input)) = from_process {
                self.on_process_input(id, input);
            }
            if let Some(id) = closed_process {
                self.on_process_closed(id);
            }
            if let Some(id) = writable {
                self.flush(id);
            }
            if pump {
                self.pump();
            }
        }
    }

    // -- clients -----------------------------------------------------------

    fn on_open(&mut self, client: HandleId, call_id: u32, uri: &str) {
        let Some(ch) = self.ml.channel(client) else {
            return;
        };
        let refuse = |ch: &Channel, code: u16, text: &str| {
            let _ = ch.send(Message::Error {
                call_id,
                code,
                text,
            });
        };
        if uri == TEST_PANIC_URI {
            if !self.allow_test_panic {
                refuse(
                    ch,
                    codes::REFUSED,
                    "test:panic is off (spec config allow_test_panic)",
                );
                return;
            }
            log::warn!("a client asked for a guest kernel panic (test)");
            // No reply: the guest crashes, this server restarts, and the
            // client gets `reconnect:` from startup.
            self.send_to_guest(&Frame::Panic);
            return;
        }
        if uri != exec::URI {
            let text = format!(
                "unknown URI '{uri}': the linux server serves '{}'",
                exec::URI
            );
            refuse(ch, codes::NOT_FOUND, &text);
            return;
        }
        if let Some(why) = &self.unavailable {
            refuse(ch, codes::UNAVAILABLE, why);
            return;
        }
        if self.procs.len() >= self.max_processes {
            let text = format!(
                "{} processes already run (spec config max_processes)",
                self.procs.len()
            );
            refuse(ch, codes::UNAVAILABLE, &text);
            return;
        }
        let (ours, theirs) = match Channel::create() {
            Ok(pair) => pair,
            Err(e) => {
                refuse(
                    ch,
                    codes::UNAVAILABLE,
                    &format!("cannot create a channel: {e}"),
                );
                return;
            }
        };
        let reply = Message::OpenReply {
            call_id,
            handle: theirs.into_handle(),
        };
        if ch.send(reply).is_err() {
            return; // The client is gone or flooding us; nothing to answer.
        }
        let id = self.new_id();
        match self.ml.add_channel(ours, Ctx::Process(id)) {
            Ok(ch_id) => {
                self.procs.insert(
                    id,
                    Proc {
                        ch: Some(ch_id),
                        phase: Phase::AwaitRequest,
                        backlog: VecDeque::new(),
                        paused: false,
                    },
                );
            }
            Err(e) => log::warn!("cannot watch a process channel: {e}"),
        }
    }

    fn new_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.procs.contains_key(&id) {
                return id;
            }
        }
    }

    fn on_process_input(&mut self, id: u32, input: ProcessInput) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        match (proc_.phase, input) {
            (Phase::AwaitRequest, ProcessInput::Data(data)) => match ExecRequest::decode(&data) {
                Ok(req) => {
                    proc_.phase = Phase::Running;
                    self.send_to_guest(&Frame::Spawn(req.to_spawn(id)));
                }
                Err(e) => self.fail(id, codes::INVALID, &format!("{e}")),
            },
            (Phase::AwaitRequest, _) => self.fail(
                id,
                codes::INVALID,
                "the first message on a process channel must be the exec request (Data)",
            ),
            (Phase::Running, ProcessInput::Data(data)) => {
                for chunk in data.chunks(MAX_DATA_CHUNK) {
                    self.send_to_guest(&Frame::Stdin {
                        id,
                        data: chunk.to_vec(),
                    });
                }
                self.maybe_pause_input(id);
            }
            (Phase::Running, ProcessInput::Close) => self.send_to_guest(&Frame::StdinClose { id }),
            (Phase::Running, ProcessInput::Kill(signal)) => {
                self.send_to_guest(&Frame::Kill { id, signal })
            }
            (_, ProcessInput::Unexpected(kind)) => {
                log::warn!("process {id}: ignoring an unexpected {kind:?} message")
            }
            // The process already ended: stdin has nowhere to go.
            (Phase::Finished, _) => {}
        }
    }

    fn on_process_closed(&mut self, id: u32) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        proc_.ch = None;
        self.drop_backlog(id);
        match self.procs.get(&id).map(|p| p.phase) {
            Some(Phase::Running) => {
                // The client is gone: stop the process; the entry goes when
                // the agent reports its end.
                self.send_to_guest(&Frame::Kill {
                    id,
                    signal: exec::SIGKILL,
                });
            }
            _ => {
                self.procs.remove(&id);
            }
        }
    }

    // -- to the guest --------------------------------------------------------

    fn send_to_guest(&mut self, frame: &Frame) {
        let bytes = match frame.encode() {
            Ok(b) => b,
            Err(e) => {
                log::warn!("cannot encode a frame for the agent: {e}");
                return;
            }
        };
        if self.ready.is_none() {
            // Bytes pushed before the guest's virtio-console driver is up
            // would be lost when it resets the device.
            self.held.extend_from_slice(&bytes);
            return;
        }
        self.shared.inner.lock().to_guest.extend_from_slice(&bytes);
        self.kick_vcpu();
    }

    fn kick_vcpu(&self) {
        if let Some(ch) = self.ml.channel(self.wake) {
            Shared::kick(&self.shared.vcpu_kick, ch);
        }
    }

    /// Bytes on their way to the agent.
    fn input_queued(&self) -> usize {
        self.shared.inner.lock().to_guest.len() + self.held.len()
    }

    /// Stops reading stdin from `id` while the guest's input is full.
    fn maybe_pause_input(&mut self, id: u32) {
        if self.input_queued() <= INPUT_HIGH_WATER {
            return;
        }
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        let Some(ch_id) = proc_.ch else {
            return;
        };
        if let Some((ch, _)) = self.ml.remove_channel(ch_id) {
            proc_.ch = None;
            proc_.paused = true;
            self.paused.push((ch, id));
            self.shared.input_paused.store(true, Ordering::Release);
        }
    }

    fn resume_input(&mut self) {
        if self.paused.is_empty() || self.input_queued() > INPUT_HIGH_WATER / 2 {
            return;
        }
        self.shared.input_paused.store(false, Ordering::Release);
        for (ch, id) in core::mem::take(&mut self.paused) {
            match self.ml.add_channel(ch, Ctx::Process(id)) {
                Ok(ch_id) => {
                    if let Some(p) = self.procs.get_mut(&id) {
                        p.ch = Some(ch_id);
                        p.paused = false;
                        self.flush(id);
                    }
                }
                Err(e) => {
                    log::warn!("process {id}: cannot watch its channel again: {e}");
                    if let Some(p) = self.procs.get_mut(&id) {
                        p.paused = false;
                    }
                    self.on_process_closed(id);
                }
            }
        }
    }

    // -- from the guest ------------------------------------------------------

    /// Takes what the vCPU thread left: guest output and its status.
    fn pump(&mut self) {
        self.shared.main_kick.store(false, Ordering::Release);
        let bytes = core::mem::take(&mut self.shared.inner.lock().from_guest);
        self.decoder.push(&bytes);
        while let Some(result) = self.decoder.next() {
            match result {
                Ok(frame) => self.on_frame(frame),
                Err(e) if e.is_fatal() => {
                    self.shared
                        .stop(Status::Crashed(format!("the agent's stream broke: {e}")));
                    break;
                }
                Err(e) => log::warn!("dropped a bad frame from the agent: {e}"),
            }
        }
        self.resume_input();
        self.maybe_resume_output();
        self.check_status();
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Ready { kernel_release } => {
                log::info!("guest ready: Linux {kernel_release}");
                self.ready = Some(kernel_release);
                let held = core::mem::take(&mut self.held);
                if !held.is_empty() {
                    self.shared.inner.lock().to_guest.extend_from_slice(&held);
                    self.kick_vcpu();
                }
            }
            Frame::Started { id, pid } => self.emit(id, exec::Event::Started { pid }),
            Frame::Stdout { id, data } => {
                for chunk in exec::output_chunks(&data) {
                    self.emit(id, exec::Event::Stdout(chunk));
                }
            }
            Frame::Stderr { id, data } => {
                for chunk in exec::output_chunks(&data) {
                    self.emit(id, exec::Event::Stderr(chunk));
                }
            }
            Frame::Exited { id, code } => self.emit(id, exec::Event::Exited(code)),
            Frame::Signaled { id, signal } => self.emit(id, exec::Event::Signaled(signal)),
            Frame::SpawnFailed { id, errno, msg } => {
                self.fail(id, codes::REFUSED, &format!("{msg} (errno {errno})"))
            }
            Frame::Pong { .. } => {}
            other => log::warn!("ignoring an unexpected frame from the agent: {other:?}"),
        }
    }

    /// Delivers an event to process `id`'s client.
    fn emit(&mut self, id: u32, event: exec::Event<'_>) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        let last = event.is_final();
        if last {
            proc_.phase = Phase::Finished;
        }
        if proc_.ch.is_none() && !proc_.paused {
            if last {
                self.procs.remove(&id);
            }
            return;
        }
        self.deliver(id, Out::Data(event.encode()));
    }

    /// Ends process `id` with an `Error`.
    fn fail(&mut self, id: u32, code: u16, text: &str) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        proc_.phase = Phase::Finished;
        if proc_.ch.is_none() && !proc_.paused {
            self.procs.remove(&id);
            return;
        }
        self.deliver(
            id,
            Out::Error {
                code,
                text: String::from(text),
            },
        );
    }

    fn deliver(&mut self, id: u32, out: Out) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        self.backlog_bytes += out.len();
        proc_.backlog.push_back(out);
        self.flush(id);
    }

    /// Sends what waits for `id`, as far as its queue takes it; closes the
    /// channel after the final event.
    fn flush(&mut self, id: u32) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        let Some(ch_id) = proc_.ch else {
            return; // Paused (re-added later) or closed.
        };
        let Some(ch) = self.ml.channel(ch_id) else {
            return;
        };
        let mut gone = false;
        while let Some(out) = proc_.backlog.front() {
            let result = match out {
                Out::Data(d) => ch.send_data(d),
                Out::Error { code, text } => ch
                    .send(Message::Error {
                        call_id: 0,
                        code: *code,
                        text,
                    })
                    .map_err(|e| e.error),
            };
            match result {
                Ok(()) => {
                    self.backlog_bytes -= out.len();
                    proc_.backlog.pop_front();
                }
                Err(Error::QueueFull) => break,
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        let empty = proc_.backlog.is_empty();
        let finished = proc_.phase == Phase::Finished;
        let _ = self.ml.watch_writable(ch_id, !empty && !gone);
        if gone {
            self.on_process_closed(id);
        } else if empty && finished {
            // Everything delivered: dropping our end closes the channel.
            self.ml.remove_channel(ch_id);
            self.procs.remove(&id);
        }
        self.shared
            .client_backlog
            .store(self.backlog_bytes, Ordering::Release);
        self.maybe_resume_output();
    }

    fn drop_backlog(&mut self, id: u32) {
        if let Some(proc_) = self.procs.get_mut(&id) {
            for out in proc_.backlog.drain(..) {
                self.backlog_bytes -= out.len();
            }
        }
        self.shared
            .client_backlog
            .store(self.backlog_bytes, Ordering::Release);
    }

    fn maybe_resume_output(&self) {
        if self.shared.output_paused.load(Ordering::Acquire)
            && self.backlog_bytes < OUTPUT_HIGH_WATER / 2
            && self.shared.inner.lock().from_guest.is_empty()
        {
            self.shared.output_paused.store(false, Ordering::Release);
            self.kick_vcpu();
        }
    }

    // -- the VM's life -------------------------------------------------------

    /// Acts on the vCPU thread's verdict: serve errors when there is no VM,
    /// or fail everything and exit when the guest died.
    fn check_status(&mut self) {
        let status = self.shared.inner.lock().status.clone();
        match status {
            Status::Running => {}
            Status::Unavailable(why) => {
                if self.unavailable.is_none() {
                    let ids: Vec<u32> = self.procs.keys().copied().collect();
                    for id in ids {
                        self.fail(id, codes::UNAVAILABLE, &why);
                    }
                    self.unavailable = Some(why);
                }
            }
            Status::Crashed(why) => {
                let text = format!("the Linux guest stopped: {why}; it is being restarted");
                let ids: Vec<u32> = self.procs.keys().copied().collect();
                for id in ids {
                    self.fail(id, codes::UNAVAILABLE, &text);
                }
                log::error!("{text}");
                starina::thread::exit(1);
            }
        }
    }
}

enum ProcessInput {
    Data(Vec<u8>),
    Close,
    Kill(i32),
    Unexpected(starina::message::MessageKind),
}
