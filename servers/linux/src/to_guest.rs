//! Frames for the guest agent, and stdin flow control. Each process's stdin
//! goes through its `StdinFlow`, within the window the agent grants with
//! `StdinAck`; its channel is not read (`Cx::pause_receiving`: further
//! stdin waits in the kernel's queue, and its sender blocks) while data
//! waits for that window, or while more than `INPUT_HIGH_WATER` bytes wait
//! for the guest in all (until the guest has taken half of them).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use starina::mainloop::Cx;
use starina_bridge::process::Frame;

use crate::process::Link;
use crate::process::Phase;
use crate::shared::Shared;
use crate::shared::INPUT_HIGH_WATER;
use crate::Ctx;
use crate::Server;

impl Server {
    pub(crate) fn send_to_guest(&mut self, cx: &Cx<Ctx>, frame: &Frame) {
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
        self.kick_vcpu(cx);
    }

    /// The agent said `Ready`: what waited for it goes now.
    pub(crate) fn release_held(&mut self, cx: &Cx<Ctx>) {
        let held = core::mem::take(&mut self.held);
        if !held.is_empty() {
            self.shared.inner.lock().to_guest.extend_from_slice(&held);
            self.kick_vcpu(cx);
        }
    }

    pub(crate) fn kick_vcpu(&self, cx: &Cx<Ctx>) {
        if let Some(ch) = cx.channel(self.wake) {
            Shared::kick(&self.shared.vcpu_kick, ch);
        }
    }

    /// Bytes on their way to the agent.
    fn input_queued(&self) -> usize {
        self.shared.inner.lock().to_guest.len() + self.held.len()
    }

    /// Sends process `id`'s stdin as far as its window allows, and reads
    /// its channel only while nothing is left waiting.
    pub(crate) fn send_stdin(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        while let Some(frame) = self.procs.get_mut(&id).and_then(|p| p.stdin.next_frame(id)) {
            self.send_to_guest(cx, &frame);
        }
        self.update_receiving(cx, id);
    }

    /// The agent's `StdinAck`: process `id` took `bytes` of its stdin.
    pub(crate) fn on_stdin_ack(&mut self, cx: &mut Cx<Ctx>, id: u32, bytes: u32) {
        match self.procs.get_mut(&id) {
            Some(proc_) if proc_.phase == Phase::Running => proc_.stdin.acked(bytes),
            // Its end crossed the ack; nothing waits for it.
            _ => return,
        }
        self.send_stdin(cx, id);
    }

    /// Pauses or resumes reading process `id`'s channel, as its stdin
    /// says (see `StdinFlow::may_receive`).
    pub(crate) fn update_receiving(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let Some(proc_) = self.procs.get(&id) else {
            return;
        };
        let Link::Open(ch) = proc_.link else {
            return;
        };
        let result = if proc_.stdin.may_receive() {
            cx.resume_receiving(ch)
        } else {
            cx.pause_receiving(ch)
        };
        if let Err(e) = result {
            log::warn!("process {id}: cannot pause or resume its channel: {e}");
        }
    }

    /// Stops reading stdin from process `id` while the guest's input is
    /// full.
    pub(crate) fn maybe_pause_input(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        if self.input_queued() <= INPUT_HIGH_WATER {
            return;
        }
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        proc_.stdin.set_queue_full(true);
        self.shared.input_paused.store(true, Ordering::Release);
        self.update_receiving(cx, id);
    }

    /// Reads the process channels paused by a full queue again once the
    /// guest has taken half of its input.
    pub(crate) fn resume_input(&mut self, cx: &mut Cx<Ctx>) {
        if !self.shared.input_paused.load(Ordering::Acquire)
            || self.input_queued() > INPUT_HIGH_WATER / 2
        {
            return;
        }
        self.shared.input_paused.store(false, Ordering::Release);
        let paused: Vec<u32> = self
            .procs
            .iter_mut()
            .filter(|(_, p)| p.stdin.is_queue_full())
            .map(|(id, p)| {
                p.stdin.set_queue_full(false);
                *id
            })
            .collect();
        for id in paused {
            self.update_receiving(cx, id);
        }
    }
}
