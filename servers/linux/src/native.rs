//! Native commands for Linux programs: the guest's `NativeSpawn` (a Linux
//! program ran `starina CMD ARGS...`) starts command CMD with the spec's
//! privilege `spawn`; its stdout and stderr go back to the guest as
//! `NativeStdout`/`NativeStderr` frames, the guest's `NativeStdin` to its
//! stdin, and its status as `NativeExited`.
//!
//! The guest is untrusted: at most `max_native_commands` run at once (more
//! get `NativeSpawnFailed`), each direction keeps to the protocol's
//! [`NATIVE_WINDOW`] (a command's stdout and stderr are not read while that
//! much waits for the guest's `NativeOutputAck`; a guest that sends more
//! stdin than the window allows gets its command killed), and a command
//! whose guest side goes away (`NativeKill`, or the VM ends with this
//! server) is killed: dropping its `Job` ends it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use starina::abi::MESSAGE_DATA_MAX;
use starina::command::Job;
use starina::command::Spawner;
use starina::command::Stdio;
use starina::mainloop::Cx;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::process::Frame;
use starina_bridge::process::NativeSpawn;
use starina_bridge::process::NATIVE_WINDOW;

use crate::Ctx;
use crate::Server;

/// The status for a name no command answers to, as a shell's.
const STATUS_NOT_FOUND: i32 = 127;
/// The status for a command that exists but could not be started.
const STATUS_CANNOT_RUN: i32 = 126;

/// One native command a guest program runs.
#[derive(Default)]
struct Running {
    /// The job while the command runs (in the loop as `Ctx::NativeJob`).
    job: Option<HandleId>,
    /// Its exit status, once it ended.
    status: Option<i32>,
    /// Our ends of its streams, while open.
    stdin: Option<HandleId>,
    stdout: Option<HandleId>,
    stderr: Option<HandleId>,
    /// Stdin bytes from the guest not yet acknowledged.
    stdin_unacked: usize,
    /// Output bytes sent to the guest and not yet acknowledged.
    output_unacked: usize,
    /// The guest killed it: its output is dropped.
    killed: bool,
}

/// The native commands of the guest's programs, by the guest's id.
pub(crate) struct Native {
    spawner: Spawner,
    max: usize,
    /// Names Linux may not run (config `native_refused`).
    refused: &'static str,
    running: BTreeMap<u32, Running>,
}

impl Native {
    pub(crate) fn new(spawner: Spawner, max: usize, refused: &'static str) -> Native {
        Native {
            spawner,
            max,
            refused,
            running: BTreeMap::new(),
        }
    }
}

impl Server {
    /// A native-command frame from the agent.
    pub(crate) fn on_native_frame(&mut self, cx: &mut Cx<Ctx>, frame: Frame) {
        match frame {
            Frame::NativeSpawn(req) => self.native_spawn(cx, req),
            Frame::NativeStdin { id, data } => self.native_stdin(cx, id, &data),
            Frame::NativeStdinClose { id } => {
                if let Some(ch) = self.native_mut(id).and_then(|r| r.stdin) {
                    if let Err(e) = cx.send(ch, Message::Close) {
                        log::debug!("native {id}: stdin close: {e}");
                    }
                }
            }
            Frame::NativeKill { id } => self.native_kill(cx, id),
            Frame::NativeOutputAck { id, bytes } => self.native_output_acked(cx, id, bytes),
            other => log::warn!("ignoring an unexpected frame from the agent: {other:?}"),
        }
    }

    fn native_mut(&mut self, id: u32) -> Option<&mut Running> {
        self.native.as_mut()?.running.get_mut(&id)
    }

    fn native_spawn(&mut self, cx: &mut Cx<Ctx>, req: NativeSpawn) {
        let id = req.id;
        match self.native_start(cx, &req) {
            Ok(running) => {
                if let Some(native) = self.native.as_mut() {
                    native.running.insert(id, running);
                }
            }
            Err((status, reason)) => {
                log::debug!("native {id}: {reason}");
                let frame = Frame::NativeSpawnFailed { id, status, reason };
                self.send_to_guest(cx, &frame);
            }
        }
    }

    /// Starts the command and puts its job and streams in the loop; the
    /// status and reason for the guest if it cannot be.
    fn native_start(
        &mut self,
        cx: &mut Cx<Ctx>,
        req: &NativeSpawn,
    ) -> Result<Running, (i32, String)> {
        let id = req.id;
        let Some(native) = self.native.as_ref() else {
            return Err((
                STATUS_CANNOT_RUN,
                "this system runs no native commands".into(),
            ));
        };
        if native.running.contains_key(&id) {
            return Err((
                STATUS_CANNOT_RUN,
                format!("native command id {id} is in use"),
            ));
        }
        if native.running.len() >= native.max {
            let max = native.max;
            return Err((
                STATUS_CANNOT_RUN,
                format!("too many native commands at once (at most {max})"),
            ));
        }
        let Some((name, args)) = req.argv.split_first() else {
            return Err((2, "no command given".into()));
        };
        if native.refused.split_whitespace().any(|r| r == name) {
            return Err((
                STATUS_CANNOT_RUN,
                format!("'{name}' is not available to Linux (the linux spec's native_refused)"),
            ));
        }
        let cannot = |e: Error| (STATUS_CANNOT_RUN, format!("cannot start '{name}': {e}"));
        let (stdio, peer) = Stdio::pipes().map_err(cannot)?;
        let job = match native.spawner.spawn(name, args, &req.vars, stdio) {
            Ok(job) => job,
            Err(Error::NotFound) => {
                return Err((STATUS_NOT_FOUND, format!("no native command '{name}'")))
            }
            Err(e) => return Err(cannot(e)),
        };
        log::debug!("native {id}: started {name}");
        let job = add_job(cx, job, id).map_err(cannot)?;
        let mut running = Running {
            job: Some(job),
            ..Running::default()
        };
        // A stream that cannot be watched is dropped: the command sees it
        // closed, and its status still comes.
        running.stdin = cx.add_channel(peer.stdin, Ctx::NativeStdin(id)).ok();
        running.stdout = cx.add_channel(peer.stdout, Ctx::NativeStdout(id)).ok();
        running.stderr = cx.add_channel(peer.stderr, Ctx::NativeStderr(id)).ok();
        Ok(running)
    }

    fn native_stdin(&mut self, cx: &mut Cx<Ctx>, id: u32, data: &[u8]) {
        let Some(running) = self.native_mut(id) else {
            return; // Ended: like writing to a closed pipe.
        };
        if running.stdin_unacked + data.len() > NATIVE_WINDOW {
            log::warn!(
                "native {id}: the guest overran the stdin window ({} + {} bytes); command killed",
                running.stdin_unacked,
                data.len()
            );
            return self.native_kill(cx, id);
        }
        running.stdin_unacked += data.len();
        if let Some(ch) = running.stdin {
            for chunk in data.chunks(MESSAGE_DATA_MAX) {
                if let Err(e) = cx.send(ch, Message::Data(chunk)) {
                    // Gone (it closed its stdin) or full: the rest is dropped.
                    log::debug!("native {id}: stdin dropped: {e}");
                    break;
                }
            }
        }
        self.native_ack_stdin(cx, id);
    }

    /// Acknowledges the stdin the command has taken (or that was dropped).
    fn native_ack_stdin(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        let held = running.stdin.map_or(0, |ch| cx.backlog_bytes(ch));
        let taken = running.stdin_unacked.saturating_sub(held);
        if taken == 0 {
            return;
        }
        running.stdin_unacked -= taken;
        let frame = Frame::NativeStdinAck {
            id,
            bytes: taken as u32,
        };
        self.send_to_guest(cx, &frame);
    }

    fn native_kill(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        running.killed = true;
        let streams = [
            running.stdin.take(),
            running.stdout.take(),
            running.stderr.take(),
        ];
        if let Some(job) = running.job.and_then(|job| cx.job(job)) {
            if let Err(e) = job.kill() {
                log::warn!("native {id}: kill: {e}");
            }
        }
        for ch in streams.into_iter().flatten() {
            cx.remove(ch);
        }
        self.native_maybe_finish(cx, id);
    }

    fn native_output_acked(&mut self, cx: &mut Cx<Ctx>, id: u32, bytes: u32) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        let was_full = running.output_unacked >= NATIVE_WINDOW;
        running.output_unacked = running.output_unacked.saturating_sub(bytes as usize);
        if was_full && running.output_unacked < NATIVE_WINDOW {
            for ch in [running.stdout, running.stderr].into_iter().flatten() {
                let _ = cx.resume_receiving(ch);
            }
        }
    }

    /// A message from a command's stdout or stderr (`ch`).
    pub(crate) fn on_native_output(
        &mut self,
        cx: &mut Cx<Ctx>,
        id: u32,
        ch: HandleId,
        stderr: bool,
        msg: Message<'_>,
    ) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        let data = match msg {
            Message::Data(data) => data,
            // The end of the stream (an Abort ends it too).
            Message::Close | Message::Abort { .. } => {
                cx.remove(ch);
                return self.native_stream_closed(cx, id, ch);
            }
            other => {
                log::debug!("native {id}: ignoring a {:?} on its output", other.kind());
                return;
            }
        };
        if data.is_empty() || running.killed {
            return;
        }
        running.output_unacked += data.len();
        if running.output_unacked >= NATIVE_WINDOW {
            for ch in [running.stdout, running.stderr].into_iter().flatten() {
                let _ = cx.pause_receiving(ch);
            }
        }
        let data = data.to_vec();
        let frame = if stderr {
            Frame::NativeStderr { id, data }
        } else {
            Frame::NativeStdout { id, data }
        };
        self.send_to_guest(cx, &frame);
    }

    /// Stream `ch` of command `id` ended (its channel is out of the loop).
    pub(crate) fn native_stream_closed(&mut self, cx: &mut Cx<Ctx>, id: u32, ch: HandleId) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        if running.stdin == Some(ch) {
            // Its stdin is gone: what the guest sends is dropped (and acked).
            running.stdin = None;
            return self.native_ack_stdin(cx, id);
        }
        for stream in [&mut running.stdout, &mut running.stderr] {
            if *stream == Some(ch) {
                *stream = None;
            }
        }
        self.native_maybe_finish(cx, id);
    }

    /// Room on command `id`'s stdin: acknowledge what went out.
    pub(crate) fn on_native_stdin_drained(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        self.native_ack_stdin(cx, id);
    }

    /// Command `id` ended.
    pub(crate) fn on_native_job_ended(&mut self, cx: &mut Cx<Ctx>, id: u32, job: Job) {
        let status = match job.status() {
            Ok(Some(status)) => status,
            other => {
                log::warn!("native {id}: ended without a status ({other:?})");
                starina::command::STATUS_KILLED
            }
        };
        if let Some(running) = self.native_mut(id) {
            running.job = None;
            running.status = Some(status);
        }
        self.native_maybe_finish(cx, id);
    }

    /// Once the command ended and its output has all gone to the guest:
    /// the final frame, and the entry goes.
    fn native_maybe_finish(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(running) = self.native_mut(id) else {
            return;
        };
        let Some(status) = running.status else {
            return;
        };
        if running.stdout.is_some() || running.stderr.is_some() {
            return;
        }
        if let Some(ch) = running.stdin.take() {
            cx.remove(ch);
        }
        if running.killed {
            log::info!("native {id}: killed for the guest; ended with status {status}");
        } else {
            log::debug!("native {id}: ended with status {status}");
        }
        if let Some(native) = self.native.as_mut() {
            native.running.remove(&id);
        }
        self.send_to_guest(cx, &Frame::NativeExited { id, status });
    }
}

fn add_job(cx: &mut Cx<Ctx>, job: Job, id: u32) -> Result<HandleId, Error> {
    // On failure the job is dropped, which ends the command.
    cx.add_job(job, Ctx::NativeJob(id))
}
