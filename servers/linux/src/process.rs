//! The process table: each process channel's request, stdin, events and
//! end. Output goes out through the loop's `cx.send` (its outbox holds what
//! a slow client has no room for); the channel closes once the final event
//! has gone out.

use alloc::format;

use starina::mainloop::Cx;
use starina::message::codes;
use starina::message::MessageKind;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;
use starina_bridge::process::Frame;
use starina_bridge::process::WinSize;

use crate::stdin::StdinFlow;
use crate::Ctx;
use crate::Server;

/// Guest output queued for one client above which the decoding of guest
/// output stops until that client has drained (it stays below the SDK's
/// per-channel bound: one agent frame is at most `MAX_DATA_CHUNK`).
pub(crate) const CHANNEL_OUTPUT_MARK: usize = starina::outbox::BACKLOG_MAX_BYTES / 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The process channel exists; its first `Data` (the request) has not
    /// arrived yet.
    AwaitRequest,
    /// Spawn sent (or held until the agent is ready).
    Running,
    /// The final event is sent; the channel closes once it is delivered.
    Finished,
}

/// Where a process's channel is.
pub(crate) enum Link {
    /// In the main loop (paused while its stdin waits, see [`StdinFlow`]).
    Open(HandleId),
    /// The client closed it: output is dropped, and the entry goes when
    /// the process ends.
    Closed,
}

pub(crate) struct Proc {
    pub(crate) link: Link,
    pub(crate) phase: Phase,
    /// Stdin waiting for the agent's window, and whether to read more.
    pub(crate) stdin: StdinFlow,
    /// When the channel was opened (ns since boot): its request is due
    /// `request_timeout_ms` later.
    pub(crate) opened_ns: u64,
    /// Whether the request asked for a terminal (so resizes apply).
    pub(crate) terminal: bool,
}

impl Proc {
    pub(crate) fn new(ch: HandleId, opened_ns: u64) -> Proc {
        Proc {
            link: Link::Open(ch),
            phase: Phase::AwaitRequest,
            stdin: StdinFlow::new(),
            opened_ns,
            terminal: false,
        }
    }
}

/// What a client sent on a process channel.
pub(crate) enum ProcessInput<'a> {
    Data(&'a [u8]),
    Close,
    Kill(i32),
    /// `Open { uri: "resize:ROWSxCOLS" }`; `None` for a size out of range.
    Resize(Option<WinSize>),
    Unexpected(MessageKind),
}

impl Server {
    pub(crate) fn on_process_input(&mut self, cx: &mut Cx<Ctx>, id: u32, input: ProcessInput<'_>) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        match (proc_.phase, input) {
            (Phase::AwaitRequest, ProcessInput::Data(data)) => match ExecRequest::decode(data) {
                Ok(req) => {
                    proc_.phase = Phase::Running;
                    proc_.terminal = req.terminal.is_some();
                    self.send_to_guest(cx, &Frame::Spawn(req.to_spawn(id)));
                }
                Err(e) => self.fail(cx, id, codes::INVALID, &format!("{e}")),
            },
            (Phase::AwaitRequest, _) => self.fail(
                cx,
                id,
                codes::INVALID,
                "the first message on a process channel must be the exec request (Data)",
            ),
            (Phase::Running, ProcessInput::Data(data)) => {
                proc_.stdin.push(data);
                self.send_stdin(cx, id);
                self.maybe_pause_input(cx, id);
            }
            (Phase::Running, ProcessInput::Close) => {
                proc_.stdin.close();
                self.send_stdin(cx, id);
            }
            (Phase::Running, ProcessInput::Kill(signal)) => {
                self.send_to_guest(cx, &Frame::Kill { id, signal })
            }
            (Phase::Running, ProcessInput::Resize(size)) => match (proc_.terminal, size) {
                (true, Some(size)) => self.send_to_guest(cx, &Frame::Resize { id, size }),
                (false, _) => log::warn!("process {id}: resize ignored: it has no terminal"),
                (true, None) => log::warn!("process {id}: resize ignored: size out of range"),
            },
            (_, ProcessInput::Unexpected(kind)) => {
                log::warn!("process {id}: ignoring an unexpected {kind:?} message")
            }
            // The process already ended: stdin has nowhere to go.
            (Phase::Finished, _) => {}
        }
    }

    /// The client closed process `id`'s channel (the loop already dropped
    /// it, with any output still queued).
    pub(crate) fn on_process_closed(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        proc_.link = Link::Closed;
        // Stdin has nobody to come from, and nobody waits for it.
        proc_.stdin = StdinFlow::new();
        if proc_.phase == Phase::Running {
            // Stop the process; the entry goes when the agent reports its end.
            let frame = Frame::Kill {
                id,
                signal: exec::SIGKILL,
            };
            self.send_to_guest(cx, &frame);
        } else {
            self.procs.remove(&id);
        }
    }

    /// Everything queued for process `id`'s client went out.
    pub(crate) fn on_process_drained(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(proc_) = self.procs.get(&id) else {
            return;
        };
        if let (Link::Open(ch), Phase::Finished) = (&proc_.link, proc_.phase) {
            self.close_if_delivered(cx, id, *ch);
        }
    }

    /// Delivers an event to process `id`'s client.
    pub(crate) fn emit(&mut self, cx: &mut Cx<Ctx>, id: u32, event: exec::Event<'_>) {
        let last = event.is_final();
        self.deliver(cx, id, Message::Data(&event.encode()), last);
    }

    /// Ends process `id` with an `Error`.
    pub(crate) fn fail(&mut self, cx: &mut Cx<Ctx>, id: u32, code: u16, text: &str) {
        let msg = Message::Error {
            call_id: 0,
            code,
            text,
        };
        self.deliver(cx, id, msg, true);
    }

    fn deliver(&mut self, cx: &mut Cx<Ctx>, id: u32, msg: Message<'_>, last: bool) {
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        let Link::Open(ch) = proc_.link else {
            if last {
                self.procs.remove(&id); // The client is gone: nobody to tell.
            }
            return;
        };
        if last {
            self.finish(cx, id);
        }
        match cx.send(ch, msg) {
            // A closed peer arrives as `peer_closed` next.
            Ok(()) | Err(Error::PeerClosed) => {}
            Err(e) => log::warn!("process {id}: output dropped: {e}"),
        }
        if cx.backlog_bytes(ch) > CHANNEL_OUTPUT_MARK {
            self.output_blocked_on = Some(ch);
        }
        if last {
            self.close_if_delivered(cx, id, ch);
        }
    }

    /// Process `id` ended: its held stdin goes, and its channel is read
    /// again (so that the client's close is seen while output drains).
    fn finish(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if let Some(proc_) = self.procs.get_mut(&id) {
            proc_.phase = Phase::Finished;
            proc_.stdin = StdinFlow::new();
        }
        self.update_receiving(cx, id);
    }

    /// Closes process `id`'s channel (dropping our end closes it) and forgets
    /// the process once its final event has gone out.
    fn close_if_delivered(&mut self, cx: &mut Cx<Ctx>, id: u32, ch: HandleId) {
        if cx.backlog_bytes(ch) == 0 {
            cx.remove(ch);
            self.procs.remove(&id);
        }
    }
}
