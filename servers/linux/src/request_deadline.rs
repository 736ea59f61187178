//! Process channels that never send their request: each must send it
//! within the spec's `request_timeout_ms` of being opened, or it is closed
//! with an `Error { code: TIMED_OUT }`, so that silent clients cannot hold
//! every process slot (`max_processes`) for ever.
//!
//! One timer serves every channel: it is armed for the oldest channel still
//! waiting, and on firing fails the expired ones and re-arms for the next,
//! at least [`BATCH_NS`] later, so that channels opened close together are
//! closed (and logged) together.

use alloc::format;
use alloc::vec::Vec;

use starina::mainloop::Cx;
use starina::message::codes;
use starina::timer::now_ns;
use starina::HandleId;

use crate::process::Phase;
use crate::Ctx;
use crate::Server;

/// The least time between two firings of the timer: a channel may be
/// closed up to this much after its deadline.
pub(crate) const BATCH_NS: u64 = 250_000_000;

/// The timer and when it is armed for.
pub(crate) struct RequestDeadline {
    /// In the main loop as `Ctx::RequestTimer`; `None` if it could not be
    /// created (then channels wait for ever, as before).
    timer: Option<HandleId>,
    timeout_ns: u64,
    /// When the timer fires, if it is armed.
    armed_for: Option<u64>,
}

impl RequestDeadline {
    pub(crate) fn new(timer: Option<HandleId>, timeout_ms: u64) -> RequestDeadline {
        RequestDeadline {
            timer,
            timeout_ns: timeout_ms.saturating_mul(1_000_000),
            armed_for: None,
        }
    }

    /// When a channel opened at `opened_ns` must have sent its request.
    pub(crate) fn deadline(&self, opened_ns: u64) -> u64 {
        opened_ns.saturating_add(self.timeout_ns)
    }
}

impl Server {
    /// A process channel was opened now: make sure the timer will look at it.
    pub(crate) fn watch_request(&mut self, cx: &mut Cx<Ctx>, opened_ns: u64) {
        if self.request_deadline.armed_for.is_none() {
            let at = self.request_deadline.deadline(opened_ns);
            self.arm_request_timer(cx, at);
        }
    }

    /// The timer fired: fail every channel whose request is overdue, and
    /// re-arm for the next one still waiting.
    pub(crate) fn on_request_timer(&mut self, cx: &mut Cx<Ctx>) {
        self.request_deadline.armed_for = None;
        let now = now_ns();
        let waiting: Vec<(u32, u64)> = self
            .procs
            .iter()
            .filter(|(_, p)| p.phase == Phase::AwaitRequest)
            .map(|(id, p)| (*id, self.request_deadline.deadline(p.opened_ns)))
            .collect();
        let timeout_ms = self.request_deadline.timeout_ns / 1_000_000;
        let mut expired = 0usize;
        let mut next: Option<u64> = None;
        for (id, deadline) in waiting {
            if deadline <= now {
                expired += 1;
                let text = format!("no exec request within {timeout_ms} ms of opening the process channel (spec config request_timeout_ms)");
                self.fail(cx, id, codes::TIMED_OUT, &text);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        if expired > 0 {
            log::warn!(
                "closed {expired} process channel(s) that sent no request within {timeout_ms} ms"
            );
        }
        if let Some(at) = next {
            self.arm_request_timer(cx, at.max(now.saturating_add(BATCH_NS)));
        }
    }

    fn arm_request_timer(&mut self, cx: &mut Cx<Ctx>, at: u64) {
        let Some(timer) = self.request_deadline.timer else {
            return;
        };
        let after = at.saturating_sub(now_ns()).max(1);
        match cx.set_timer(timer, after) {
            Ok(()) => self.request_deadline.armed_for = Some(at),
            Err(e) => log::warn!("cannot arm the request timer: {e}"),
        }
    }
}
