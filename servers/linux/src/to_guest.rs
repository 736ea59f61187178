//! Frames for the guest agent, and stdin flow control: while more than
//! `INPUT_HIGH_WATER` bytes wait for the guest, process channels that send
//! stdin are taken out of the loop (their further stdin waits in the
//! channel) until the guest has taken half of it.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use starina::mainloop::Cx;
use starina_bridge::process::Frame;

use crate::process::Link;
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

    /// Stops reading stdin from process `id` while the guest's input is
    /// full. A channel with output still queued stays until it has drained
    /// (taking it out of the loop would drop that output).
    pub(crate) fn maybe_pause_input(&mut self, cx: &mut Cx<Ctx>, id: u32) {
        let full = self.input_queued() > INPUT_HIGH_WATER;
        let Some(proc_) = self.procs.get_mut(&id) else {
            return;
        };
        proc_.pause_when_drained = false;
        let Link::Open(ch) = proc_.link else {
            return;
        };
        if !full {
            return;
        }
        if cx.backlog_bytes(ch) > 0 {
            proc_.pause_when_drained = true;
            return;
        }
        if let Some(channel) = cx.take_channel(ch) {
            proc_.link = Link::Paused(channel);
            self.shared.input_paused.store(true, Ordering::Release);
        }
    }

    /// Watches the paused process channels again once the guest has taken
    /// half of its input.
    pub(crate) fn resume_input(&mut self, cx: &mut Cx<Ctx>) {
        if !self.shared.input_paused.load(Ordering::Acquire)
            || self.input_queued() > INPUT_HIGH_WATER / 2
        {
            return;
        }
        self.shared.input_paused.store(false, Ordering::Release);
        let paused: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| matches!(p.link, Link::Paused(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in paused {
            self.watched_channel(cx, id);
        }
    }
}
