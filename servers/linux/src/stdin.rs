//! One process's stdin on the server's side: the data waiting for the
//! agent's stdin window (`starina_bridge::process::StdinOutbox`), and
//! whether the process channel may be read now.
//!
//! The channel is read only while nothing waits for the window and the
//! shared queue to the guest has room. A client's message is at most
//! `MESSAGE_DATA_MAX` bytes and the channel is paused as soon as one of them
//! does not fit, so per process the server holds at most one message here
//! and one window on its way to the agent.

use starina_bridge::process::Frame;
use starina_bridge::process::StdinOutbox;

#[derive(Debug, Default)]
pub(crate) struct StdinFlow {
    outbox: StdinOutbox,
    /// Not read because the shared queue to the guest is full.
    queue_full: bool,
}

impl StdinFlow {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Stdin data from the client (dropped after [`StdinFlow::close`]).
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.outbox.push(data);
    }

    /// The client ended stdin: `StdinClose` goes after the data.
    pub(crate) fn close(&mut self) {
        self.outbox.close();
    }

    /// The agent's `StdinAck`: the process took `bytes` more.
    pub(crate) fn acked(&mut self, bytes: u32) {
        self.outbox.acked(bytes);
    }

    /// The next frame that may go to the agent for process `id` now.
    pub(crate) fn next_frame(&mut self, id: u32) -> Option<Frame> {
        self.outbox.next_frame(id)
    }

    /// Records whether the shared queue to the guest is too full to read
    /// this channel.
    pub(crate) fn set_queue_full(&mut self, full: bool) {
        self.queue_full = full;
    }

    pub(crate) fn is_queue_full(&self) -> bool {
        self.queue_full
    }

    /// Bytes from the client waiting for the window.
    pub(crate) fn pending(&self) -> usize {
        self.outbox.pending()
    }

    /// Whether the process channel may be read: nothing waits for the
    /// window and the queue to the guest has room.
    pub(crate) fn may_receive(&self) -> bool {
        self.pending() == 0 && !self.queue_full
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use starina::abi::MESSAGE_DATA_MAX;
    use starina_bridge::process::STDIN_WINDOW;

    use super::*;

    /// What the server does after each client message: send every frame
    /// the window allows. Returns the data bytes sent and whether a close
    /// went.
    fn send_allowed(flow: &mut StdinFlow, got: &mut Vec<u8>) -> (usize, bool) {
        let mut sent = 0;
        let mut closed = false;
        while let Some(frame) = flow.next_frame(9) {
            match frame {
                Frame::Stdin { id: 9, data } => {
                    sent += data.len();
                    got.extend_from_slice(&data);
                }
                Frame::StdinClose { id: 9 } => closed = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        (sent, closed)
    }

    /// A client that writes as fast as it is read, and an agent that takes
    /// `ack` bytes whenever the channel is paused: the server never holds
    /// more than one message, never overruns the window, and the data
    /// arrives whole, in order, with the close last.
    fn flood(total: usize, ack: usize) {
        let input: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut flow = StdinFlow::new();
        let mut got = Vec::new();
        let mut unacked = 0usize;
        let mut messages = input.chunks(MESSAGE_DATA_MAX);
        let mut closed = false;
        let mut rounds = 0;
        while !closed {
            rounds += 1;
            assert!(rounds < 100_000, "no progress");
            if flow.may_receive() {
                match messages.next() {
                    Some(msg) => flow.push(msg),
                    None => flow.close(),
                }
            } else {
                let bytes = ack.min(unacked);
                assert!(bytes > 0, "paused with nothing to acknowledge");
                unacked -= bytes;
                flow.acked(bytes as u32);
            }
            let (sent, close) = send_allowed(&mut flow, &mut got);
            unacked += sent;
            closed = close;
            assert!(unacked <= STDIN_WINDOW, "window overrun: {unacked}");
            assert!(flow.pending() <= MESSAGE_DATA_MAX, "{}", flow.pending());
        }
        assert_eq!(got.len(), input.len());
        assert!(got == input, "data changed on the way");
        assert_eq!(flow.pending(), 0);
    }

    #[test]
    fn a_flood_keeps_to_one_window_and_one_message() {
        flood(5_000_000, 64 * 1024);
        flood(STDIN_WINDOW * 3 + 17, 1000);
        flood(STDIN_WINDOW, STDIN_WINDOW);
    }

    #[test]
    fn small_input_needs_no_ack() {
        let mut flow = StdinFlow::new();
        let mut got = Vec::new();
        flow.push(b"hello\n");
        assert_eq!(send_allowed(&mut flow, &mut got), (6, false));
        assert!(flow.may_receive());
        flow.close();
        assert_eq!(send_allowed(&mut flow, &mut got), (0, true));
        assert_eq!(got, b"hello\n");
        flow.push(b"after the close");
        assert_eq!(send_allowed(&mut flow, &mut got), (0, false));
        assert!(flow.may_receive());
    }

    #[test]
    fn the_close_waits_for_held_data() {
        let mut flow = StdinFlow::new();
        let mut got = Vec::new();
        flow.push(&vec![1; STDIN_WINDOW]);
        assert_eq!(send_allowed(&mut flow, &mut got), (STDIN_WINDOW, false));
        assert!(flow.may_receive(), "a full window alone does not pause");
        flow.push(b"late");
        assert_eq!(send_allowed(&mut flow, &mut got), (0, false));
        assert!(!flow.may_receive());
        flow.close();
        assert_eq!(send_allowed(&mut flow, &mut got), (0, false));
        flow.acked(4);
        assert_eq!(send_allowed(&mut flow, &mut got), (4, true));
        assert!(flow.may_receive());
        assert_eq!(&got[STDIN_WINDOW..], b"late");
    }

    #[test]
    fn a_full_queue_pauses_until_cleared() {
        let mut flow = StdinFlow::new();
        flow.set_queue_full(true);
        assert!(!flow.may_receive());
        assert!(flow.is_queue_full());
        flow.set_queue_full(false);
        assert!(flow.may_receive());
        // Held data keeps it paused after the queue clears.
        flow.push(&vec![0; STDIN_WINDOW + 1]);
        send_allowed(&mut flow, &mut Vec::new());
        flow.set_queue_full(true);
        flow.set_queue_full(false);
        assert!(!flow.may_receive());
        flow.acked(1);
        send_allowed(&mut flow, &mut Vec::new());
        assert!(flow.may_receive());
    }
}
