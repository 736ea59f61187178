//! A guest that stops answering is restarted: once the agent is ready, the
//! main thread pings it every [`PING_EVERY_NS`]; an agent that leaves a
//! ping unanswered for [`SILENT_LIMIT_NS`] is taken for hung (a guest that
//! masked its interrupt controller, or whose kernel locked up without
//! panicking, never exits to say so), and the server stops the VM as if it
//! had crashed: the spec's restart policy boots a fresh one.
//!
//! Time the server itself is not listening does not count: while guest
//! output is held back for slow clients, a Pong may sit behind it.

use alloc::format;

use starina::mainloop::Cx;
use starina::timer::now_ns;
use starina_bridge::process::Frame;

use crate::shared::Status;
use crate::Ctx;
use crate::Server;

pub(crate) const PING_EVERY_NS: u64 = 5_000_000_000;
pub(crate) const SILENT_LIMIT_NS: u64 = 30_000_000_000;

/// What to do when the timer fires.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Send `Ping { nonce }`.
    Ping(u32),
    /// The last ping is still out, within the limit.
    Wait,
    /// The guest is hung: it left a ping unanswered for longer than the
    /// limit, in ns.
    Hung(u64),
}

/// The ping state (no I/O: the server acts on the [`Tick`]).
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    nonce: u32,
    /// When the unanswered ping went out (or the clock was last restarted).
    waiting_since: Option<u64>,
}

impl Liveness {
    /// The timer fired at `now`; `held_back` says the server is not
    /// reading the guest's output (so a Pong may be waiting unread).
    pub(crate) fn tick(&mut self, now: u64, held_back: bool) -> Tick {
        match self.waiting_since {
            None => {
                self.nonce = self.nonce.wrapping_add(1);
                self.waiting_since = Some(now);
                Tick::Ping(self.nonce)
            }
            Some(_) if held_back => {
                self.waiting_since = Some(now);
                Tick::Wait
            }
            Some(since) if now.saturating_sub(since) >= SILENT_LIMIT_NS => Tick::Hung(now - since),
            Some(_) => Tick::Wait,
        }
    }

    /// A Pong came: the agent is alive if it answers the latest ping.
    pub(crate) fn pong(&mut self, nonce: u32) {
        if nonce == self.nonce {
            self.waiting_since = None;
        }
    }
}

impl Server {
    /// The agent is ready: start pinging it.
    pub(crate) fn start_liveness(&mut self, cx: &mut Cx<Ctx>) {
        self.arm_liveness(cx);
    }

    pub(crate) fn on_liveness_timer(&mut self, cx: &mut Cx<Ctx>) {
        let held_back = self.output_is_held_back(cx);
        match self.liveness.tick(now_ns(), held_back) {
            Tick::Ping(nonce) => self.send_to_guest(cx, &Frame::Ping { nonce }),
            Tick::Wait => {}
            Tick::Hung(ns) => {
                self.shared.stop(Status::Crashed(format!(
                    "the guest agent answered no ping for {} s: the guest is hung",
                    ns / 1_000_000_000
                )));
                self.check_status(cx);
                return;
            }
        }
        self.arm_liveness(cx);
    }

    fn arm_liveness(&mut self, cx: &mut Cx<Ctx>) {
        let Some(timer) = self.liveness_timer else {
            return;
        };
        if let Err(e) = cx.set_timer(timer, PING_EVERY_NS) {
            log::warn!("cannot arm the liveness timer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_answered_ping_keeps_the_guest_alive() {
        let mut l = Liveness::default();
        let Tick::Ping(n) = l.tick(0, false) else {
            panic!("no first ping")
        };
        assert_eq!(l.tick(5 * S, false), Tick::Wait);
        l.pong(n);
        assert_eq!(l.tick(10 * S, false), Tick::Ping(n + 1));
        l.pong(n); // A stale answer does not count.
        assert_eq!(l.tick(15 * S, false), Tick::Wait);
        assert_eq!(l.tick(40 * S, false), Tick::Hung(30 * S));
    }

    #[test]
    fn time_the_server_is_not_listening_does_not_count() {
        let mut l = Liveness::default();
        assert!(matches!(l.tick(0, false), Tick::Ping(_)));
        assert_eq!(l.tick(29 * S, true), Tick::Wait);
        assert_eq!(l.tick(58 * S, false), Tick::Wait);
        assert_eq!(l.tick(59 * S, false), Tick::Hung(30 * S));
    }
}
