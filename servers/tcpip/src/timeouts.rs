//! Timeout bookkeeping, kept apart from the sockets so it can be tested on
//! the host: how long a listening socket has been half-open (SYN received,
//! handshake not finished), and how long a connection has had bytes
//! waiting for a peer that acknowledges none of them.

/// How long a half-open connection may hold a listening socket (a backlog
/// slot) when the spec does not say: a handshake takes a round trip, and
/// smoltcp retransmits the SYN-ACK about three times in this span.
pub const SYN_TIMEOUT_MS: i64 = 10_000;
/// How long a connection may have bytes waiting for the peer without the
/// peer acknowledging any, when the spec does not say (zero-window probes
/// answered by a peer that never reads do not count).
pub const STALL_TIMEOUT_MS: i64 = 20_000;

/// Milliseconds from a spec's config to nanoseconds, clamped to 100 ms ..
/// 1 hour (a zero or negative value takes `default`).
pub fn timeout_ns(ms: i64, default: i64) -> u64 {
    let ms = if ms <= 0 { default } else { ms };
    ms.clamp(100, 3_600_000) as u64 * 1_000_000
}

/// When a listening socket left `Listen` for `SynReceived`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HalfOpen {
    since_ns: Option<u64>,
}

impl HalfOpen {
    /// Notes the socket's state at `now`; true if it has been half-open
    /// for `limit_ns` or longer (then it should be reset and replaced).
    pub fn expired(&mut self, half_open: bool, now: u64, limit_ns: u64) -> bool {
        if !half_open {
            self.since_ns = None;
            return false;
        }
        let since = *self.since_ns.get_or_insert(now);
        now.saturating_sub(since) >= limit_ns
    }
}

/// Whether a connection's outgoing bytes move: the peer acknowledged some
/// since the last look, or none wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Bytes in the socket's send buffer after our last writes.
    queued: usize,
    /// The last time bytes moved (or none waited).
    moved_ns: u64,
}

impl Stall {
    pub fn new(now: u64) -> Stall {
        Stall {
            queued: 0,
            moved_ns: now,
        }
    }

    /// Before writing: `queued` bytes sit in the send buffer now (fewer
    /// than after our last writes means the peer acknowledged some), and
    /// `waiting` says whether any byte waits for the peer at all (in the
    /// send buffer or still to be written to it). True once nothing has
    /// moved for `limit_ns` while bytes waited.
    pub fn expired(&mut self, queued: usize, waiting: bool, now: u64, limit_ns: u64) -> bool {
        if !waiting {
            self.moved_ns = now;
        }
        self.look(queued, now);
        waiting && now.saturating_sub(self.moved_ns) >= limit_ns
    }

    /// Before writing between two rounds: `queued` bytes sit in the send
    /// buffer at `now` (fewer than after our last writes: the peer
    /// acknowledged some), so that the write does not hide them.
    pub fn look(&mut self, queued: usize, now: u64) {
        if queued < self.queued {
            self.moved_ns = now;
        }
        self.queued = queued;
    }

    /// After writing: `queued` bytes sit in the send buffer.
    pub fn wrote(&mut self, queued: usize) {
        self.queued = queued;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn config_values() {
        assert_eq!(timeout_ns(5000, SYN_TIMEOUT_MS), 5 * S);
        assert_eq!(timeout_ns(0, SYN_TIMEOUT_MS), 10 * S);
        assert_eq!(timeout_ns(-1, STALL_TIMEOUT_MS), 20 * S);
        assert_eq!(timeout_ns(1, 1), 100_000_000);
        assert_eq!(timeout_ns(i64::MAX, 1), 3600 * S);
    }

    #[test]
    fn half_open_expires_after_the_limit() {
        let mut h = HalfOpen::default();
        assert!(!h.expired(false, 0, 10 * S));
        assert!(!h.expired(true, 5 * S, 10 * S));
        assert!(!h.expired(true, 14 * S, 10 * S));
        assert!(h.expired(true, 15 * S, 10 * S));
    }

    #[test]
    fn half_open_clock_restarts_in_listen() {
        let mut h = HalfOpen::default();
        assert!(!h.expired(true, 0, 10 * S));
        // Back to listening (the peer reset): a new handshake starts anew.
        assert!(!h.expired(false, 9 * S, 10 * S));
        assert!(!h.expired(true, 9 * S, 10 * S));
        assert!(!h.expired(true, 18 * S, 10 * S));
        assert!(h.expired(true, 19 * S, 10 * S));
    }

    #[test]
    fn stall_without_acknowledgements_expires() {
        let mut s = Stall::new(0);
        // 16 KiB written, none acknowledged (a zero window) from then on.
        assert!(!s.expired(0, true, 0, 20 * S));
        s.wrote(16384);
        assert!(!s.expired(16384, true, 10 * S, 20 * S));
        assert!(!s.expired(16384, true, 19 * S, 20 * S));
        assert!(s.expired(16384, true, 20 * S, 20 * S));
    }

    #[test]
    fn acknowledged_bytes_restart_the_clock() {
        let mut s = Stall::new(0);
        s.wrote(16384);
        assert!(!s.expired(16384, true, 15 * S, 20 * S));
        // The peer took 100 bytes: progress, however slow.
        assert!(!s.expired(16284, true, 16 * S, 20 * S));
        s.wrote(16384);
        assert!(!s.expired(16384, true, 35 * S, 20 * S));
        assert!(s.expired(16384, true, 36 * S, 20 * S));
    }

    #[test]
    fn acknowledgements_seen_before_a_write_count() {
        let mut st = Stall::new(0);
        st.wrote(1000);
        // The peer acknowledged 600 bytes, then 5000 more were written
        // before the next round looked.
        st.look(400, 15 * S);
        st.wrote(5400);
        assert!(!st.expired(5400, true, 30 * S, 20 * S));
        assert!(st.expired(5400, true, 35 * S, 20 * S));
    }

    #[test]
    fn nothing_waiting_is_no_stall() {
        let mut s = Stall::new(0);
        // An idle connection (nothing to send) never expires here: that
        // is the client's business.
        assert!(!s.expired(0, false, 100 * S, 20 * S));
        assert!(!s.expired(0, false, 1000 * S, 20 * S));
        // Bytes start waiting: the clock starts then.
        assert!(!s.expired(0, true, 1000 * S, 20 * S));
        s.wrote(10);
        assert!(!s.expired(10, true, 1019 * S, 20 * S));
        assert!(s.expired(10, true, 1021 * S, 20 * S));
    }
}
