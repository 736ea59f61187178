//! The main loop's events: one method per kind, each handing the event to
//! the module that does that job.

use starina::channel::Channel;
use starina::command::Job;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;

use crate::process::ProcessInput;
use crate::Ctx;
use crate::Server;

impl Handler for Server {
    type State = Ctx;

    /// A client of `linux`, offered by startup.
    fn connect(&mut self, cx: &mut Cx<Ctx>, _service: &str, ch: Channel) -> Result<(), Error> {
        cx.add_channel(ch, Ctx::Client).map(drop)
    }

    /// A provider restarted: tcpip gets a new NAT; the fs server's and the
    /// disk driver's channels belong to the vCPU thread's virtio-fs and
    /// virtio-blk, which do not reconnect (the guest's disk requests fail
    /// until the next VM).
    fn reconnect(&mut self, cx: &mut Cx<Ctx>, field: &str, ch: Channel) -> Result<(), Error> {
        match field {
            "tcpip" => self.net_reconnect(cx, ch),
            other => log::warn!("'{other}' restarted; its channel is not taken up again"),
        }
        Ok(())
    }

    fn message(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: HandleId,
        state: &mut Ctx,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        match (state, msg) {
            (
                Ctx::Client,
                Message::Open {
                    call_id,
                    uri,
                    handle: None,
                },
            ) => self.on_open(cx, id, call_id, uri),
            (Ctx::Process(pid), msg) => {
                let input = match msg {
                    Message::Data(data) => ProcessInput::Data(data),
                    Message::Close => ProcessInput::Close,
                    Message::Abort { code, .. } => ProcessInput::Kill(exec::abort_signal(code)),
                    Message::Open { uri, .. } if exec::parse_resize_uri(uri).is_some() => {
                        ProcessInput::Resize(exec::parse_resize_uri(uri).flatten())
                    }
                    other => ProcessInput::Unexpected(other.kind()),
                };
                self.on_process_input(cx, *pid, input);
                Ok(())
            }
            (Ctx::Wake, _) => {
                self.pump(cx);
                Ok(())
            }
            (Ctx::NativeStdout(n), msg) => {
                self.on_native_output(cx, *n, id, false, msg);
                Ok(())
            }
            (Ctx::NativeStderr(n), msg) => {
                self.on_native_output(cx, *n, id, true, msg);
                Ok(())
            }
            (Ctx::NativeStdin(n), other) => {
                log::debug!("native {n}: ignoring a {:?} on its stdin", other.kind());
                Ok(())
            }
            (Ctx::RequestTimer | Ctx::LivenessTimer | Ctx::NetTimer | Ctx::NativeJob(_), _) => {
                Ok(())
            }
            (
                state @ (Ctx::Tcpip
                | Ctx::TcpFlow(_)
                | Ctx::UdpFlow(_)
                | Ctx::Forward(_)
                | Ctx::UdpForward(_)),
                msg,
            ) => {
                let state = *state;
                self.on_net_message(cx, &state, msg);
                Ok(())
            }
            (Ctx::Client, other) => {
                log::warn!("ignoring a {:?} message from a client", other.kind());
                Ok(())
            }
        }
    }

    fn peer_closed(&mut self, cx: &mut Cx<Ctx>, id: HandleId, state: Ctx) -> Result<(), Error> {
        match state {
            Ctx::Process(pid) => {
                self.on_process_closed(cx, pid);
                // Its backlog may have held up the guest's output.
                self.pump(cx);
            }
            // The vCPU thread ended: its status says why.
            Ctx::Wake => self.pump(cx),
            Ctx::Tcpip
            | Ctx::TcpFlow(_)
            | Ctx::UdpFlow(_)
            | Ctx::Forward(_)
            | Ctx::UdpForward(_) => self.on_net_closed(cx, &state),
            Ctx::NativeStdin(n) | Ctx::NativeStdout(n) | Ctx::NativeStderr(n) => {
                self.native_stream_closed(cx, n, id)
            }
            Ctx::Client
            | Ctx::RequestTimer
            | Ctx::LivenessTimer
            | Ctx::NetTimer
            | Ctx::NativeJob(_) => {}
        }
        Ok(())
    }

    /// A native command ended.
    fn job_ended(
        &mut self,
        cx: &mut Cx<Ctx>,
        _id: HandleId,
        state: Ctx,
        job: Job,
    ) -> Result<(), Error> {
        if let Ctx::NativeJob(n) = state {
            self.on_native_job_ended(cx, n, job);
        }
        Ok(())
    }

    /// A process channel's request may be overdue, or the agent a ping.
    fn timer(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, state: &mut Ctx) -> Result<(), Error> {
        match state {
            Ctx::RequestTimer => self.on_request_timer(cx),
            Ctx::LivenessTimer => self.on_liveness_timer(cx),
            Ctx::NetTimer => self.net_service(cx),
            _ => {}
        }
        Ok(())
    }

    /// Everything queued for a process channel went out.
    fn drained(&mut self, cx: &mut Cx<Ctx>, _id: HandleId, state: &mut Ctx) -> Result<(), Error> {
        match *state {
            Ctx::Process(pid) => {
                self.on_process_drained(cx, pid);
                self.pump(cx);
            }
            // A flow's channel took what waited: the flow reads its socket
            // again.
            Ctx::TcpFlow(_) | Ctx::UdpFlow(_) => self.net_service(cx),
            Ctx::NativeStdin(n) => self.on_native_stdin_drained(cx, n),
            _ => {}
        }
        Ok(())
    }
}
