//! What a component implements: one method per kind of event.

use super::Cx;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::channel::Channel;
use crate::command::Job;
use crate::message::Message;

/// A component's event handlers. Each gets the loop's [`Cx`], through which
/// it adds and removes objects, sends (backpressure included) and stops the
/// loop. An `Err` returned by a handler is logged and the loop goes on, so
/// handlers can use `?`.
pub trait Handler {
    /// What each watched object (channel, timer, interrupt) is to this
    /// component: which client, which connection... It is handed back with
    /// the object's events.
    type State;

    /// A message arrived on channel `id`.
    fn message(
        &mut self,
        cx: &mut Cx<Self::State>,
        id: HandleId,
        state: &mut Self::State,
        msg: Message<'_>,
    ) -> Result<(), Error>;

    /// Startup offers a client of `service` (one of the spec's `exports`),
    /// on the supervisor channel. The default refuses it: a component that
    /// exports services overrides this, usually with `cx.add_channel`.
    fn connect(
        &mut self,
        _cx: &mut Cx<Self::State>,
        service: &str,
        _ch: Channel,
    ) -> Result<(), Error> {
        log::warn!("refusing a client of '{service}': this component serves nothing");
        Ok(())
    }

    /// The provider behind the spec's `[needs]` entry `field` restarted;
    /// `ch` is a fresh channel to it. The default drops it with a warning.
    fn reconnect(
        &mut self,
        _cx: &mut Cx<Self::State>,
        field: &str,
        _ch: Channel,
    ) -> Result<(), Error> {
        log::warn!("'{field}' restarted, but this component does not reconnect");
        Ok(())
    }

    /// The peer of channel `id` closed, after every message it sent was
    /// delivered. The channel is out of the loop; its state comes back.
    fn peer_closed(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: Self::State,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// The command of job `id` (added with `cx.add_job`) ended: the job is
    /// out of the loop, with its state; `job.status()` has its exit status.
    fn job_ended(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: Self::State,
        _job: Job,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Timer `id` fired. Timers are one-shot: `cx.set_timer` re-arms.
    fn timer(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: &mut Self::State,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Interrupt `id` is pending: service the device, then
    /// `cx.ack_interrupt(id)` to unmask the line.
    fn interrupt(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: &mut Self::State,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Every message `cx.send` had to queue for channel `id` has gone out:
    /// a producer that paused on `cx.backlog_bytes(id) > 0` can go on.
    fn drained(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: &mut Self::State,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// A message on channel `id` did not decode and was dropped (its
    /// handles closed).
    fn bad_message(
        &mut self,
        _cx: &mut Cx<Self::State>,
        _id: HandleId,
        _state: &mut Self::State,
        error: Error,
    ) -> Result<(), Error> {
        log::warn!("dropped a bad message: {error}");
        Ok(())
    }
}
