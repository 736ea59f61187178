//! The guest agent's frames, routed to the processes' clients; output flow
//! control; and what the vCPU thread says about the VM's life.
//!
//! Output flow control: decoding stops while one client has more than
//! `CHANNEL_OUTPUT_MARK` queued, and goes on when it has drained; the
//! vCPU thread leaves further guest output in the virtio-console (the guest
//! blocks) while more than `OUTPUT_HIGH_WATER` bytes wait here.

use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use starina::mainloop::Cx;
use starina::message::codes;
use starina_bridge::exec;
use starina_bridge::process::Frame;

use crate::process::Link;
use crate::shared::Status;
use crate::shared::INPUT_HIGH_WATER;
use crate::shared::OUTPUT_HIGH_WATER;
use crate::Ctx;
use crate::Server;

/// Bytes for the guest above which its own frames are not decoded (see
/// `guest_input_full`). Far above what a guest that reads its console
/// leaves: stdin stops at `INPUT_HIGH_WATER`, native output at its windows
/// (`max_native_commands` x 64 KiB), so only a guest that stops reading
/// meets it.
const TO_GUEST_MAX: usize = 16 * INPUT_HIGH_WATER;

impl Server {
    /// Takes what the vCPU thread left: guest output and its status.
    pub(crate) fn pump(&mut self, cx: &mut Cx<Ctx>) {
        self.shared.main_kick.store(false, Ordering::Release);
        self.decode_output(cx);
        self.resume_input(cx);
        let backlog = self.client_backlog(cx);
        self.shared.client_backlog.store(backlog, Ordering::Release);
        self.maybe_resume_output(cx, backlog);
        self.net_from_vcpu(cx);
        self.check_status(cx);
    }

    /// Whether guest output waits unread: for a client to drain, or in the
    /// virtio-console because the server is behind.
    pub(crate) fn output_is_held_back(&self, cx: &Cx<Ctx>) -> bool {
        self.output_blocked(cx) || self.shared.output_paused.load(Ordering::Acquire)
    }

    fn output_blocked(&self, cx: &Cx<Ctx>) -> bool {
        self.output_blocked_on
            .is_some_and(|ch| cx.backlog_bytes(ch) > 0)
    }

    fn decode_output(&mut self, cx: &mut Cx<Ctx>) {
        if self.output_blocked(cx) || self.guest_input_full() {
            return; // The rest waits in `from_guest` and in the decoder.
        }
        self.output_blocked_on = None;
        let bytes = core::mem::take(&mut self.shared.inner.lock().from_guest);
        self.decoder.push(&bytes);
        while !self.output_blocked(cx) && !self.guest_input_full() {
            let Some(result) = self.decoder.next() else {
                break;
            };
            match result {
                Ok(frame) => self.on_frame(cx, frame),
                Err(e) if e.is_fatal() => {
                    self.shared
                        .stop(Status::Crashed(format!("the agent's stream broke: {e}")));
                    break;
                }
                Err(e) => log::warn!("dropped a bad frame from the agent: {e}"),
            }
        }
    }

    fn on_frame(&mut self, cx: &mut Cx<Ctx>, frame: Frame) {
        match frame {
            Frame::Ready { kernel_release } => {
                log::info!(
                    "{}: Linux {kernel_release}",
                    starina::abi::markers::LINUX_GUEST_READY
                );
                self.ready = Some(kernel_release);
                self.release_held(cx);
                self.start_liveness(cx);
            }
            Frame::Started { id, pid } => self.emit(cx, id, exec::Event::Started { pid }),
            Frame::Stdout { id, data } => {
                for chunk in exec::output_chunks(&data) {
                    self.emit(cx, id, exec::Event::Stdout(chunk));
                }
            }
            Frame::Stderr { id, data } => {
                for chunk in exec::output_chunks(&data) {
                    self.emit(cx, id, exec::Event::Stderr(chunk));
                }
            }
            Frame::Exited { id, code } => {
                self.request_exit_report(cx);
                self.emit(cx, id, exec::Event::Exited(code))
            }
            Frame::Signaled { id, signal } => {
                self.request_exit_report(cx);
                self.emit(cx, id, exec::Event::Signaled(signal))
            }
            Frame::SpawnFailed { id, errno, msg } => {
                self.fail(cx, id, codes::REFUSED, &format!("{msg} (errno {errno})"))
            }
            Frame::StdinAck { id, bytes } => self.on_stdin_ack(cx, id, bytes),
            Frame::Pong { nonce } => self.liveness.pong(nonce),
            Frame::Listening {
                proto,
                port,
                open,
                process,
            } => {
                if let Some(nat) = self.net.as_mut() {
                    nat.on_listening(cx, proto, port, open, process);
                    self.net_service(cx);
                }
            }
            frame @ (Frame::NativeSpawn(_)
            | Frame::NativeStdin { .. }
            | Frame::NativeStdinClose { .. }
            | Frame::NativeKill { .. }
            | Frame::NativeOutputAck { .. }) => self.on_native_frame(cx, frame),
            other => log::warn!("ignoring an unexpected frame from the agent: {other:?}"),
        }
    }

    /// Whether the guest has left so much unread input (frames the server
    /// sent it) that its frames are not decoded until it reads some: its
    /// native requests make replies, so a guest that sends them and never
    /// reads would otherwise grow `to_guest` without bound. The vCPU
    /// thread wakes the main thread once the guest has taken input.
    fn guest_input_full(&self) -> bool {
        let full = self.shared.inner.lock().to_guest.len() > TO_GUEST_MAX;
        if full {
            self.shared.input_paused.store(true, Ordering::Release);
        }
        full
    }

    /// Asks the vCPU thread to log the VM exits since its last report.
    fn request_exit_report(&self, cx: &Cx<Ctx>) {
        self.shared.exit_report.store(true, Ordering::Release);
        self.kick_vcpu(cx);
    }

    /// Guest output queued for clients that have no room for it yet.
    fn client_backlog(&self, cx: &Cx<Ctx>) -> usize {
        self.procs
            .values()
            .map(|p| match p.link {
                Link::Open(ch) => cx.backlog_bytes(ch),
                Link::Closed => 0,
            })
            .sum()
    }

    /// Lets the vCPU thread take guest output again once clients caught up.
    fn maybe_resume_output(&self, cx: &Cx<Ctx>, backlog: usize) {
        if self.shared.output_paused.load(Ordering::Acquire)
            && backlog < OUTPUT_HIGH_WATER / 2
            && self.shared.inner.lock().from_guest.is_empty()
        {
            self.shared.output_paused.store(false, Ordering::Release);
            self.kick_vcpu(cx);
        }
    }

    /// Acts on the vCPU thread's verdict: serve errors when there is no VM,
    /// or fail everything and exit when the guest died.
    pub(crate) fn check_status(&mut self, cx: &mut Cx<Ctx>) {
        let status = self.shared.inner.lock().status.clone();
        match status {
            Status::Running => {}
            Status::Unavailable(why) => {
                if self.unavailable.is_none() {
                    self.fail_all(cx, &why);
                    self.unavailable = Some(why);
                }
            }
            Status::Crashed(why) => {
                let text = format!("the Linux guest stopped: {why}; it is being restarted");
                self.fail_all(cx, &text);
                log::error!("{text}");
                starina::thread::exit(1);
            }
        }
    }

    fn fail_all(&mut self, cx: &mut Cx<Ctx>, text: &str) {
        let ids: Vec<u32> = self.procs.keys().copied().collect();
        for id in ids {
            self.fail(cx, id, codes::UNAVAILABLE, text);
        }
    }
}
