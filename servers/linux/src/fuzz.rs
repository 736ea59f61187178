//! Fuzz target for a process's stdin flow (`StdinFlow`): any sequence of
//! client messages (taken only while the flow says so, as the server does),
//! closes, agent acknowledgements (right or bogus) and queue-full changes.
//! The server never holds more than one message, never overruns the agent's
//! window, and the data arrives whole and in order with the close last.
//! Budget and replay: `tests/fuzz_driver.rs` at the top.

#[path = "../../../tests/fuzz_driver.rs"]
mod driver;

use alloc::vec;
use alloc::vec::Vec;

use starina::abi::MESSAGE_DATA_MAX;
use starina_bridge::process::Frame;
use starina_bridge::process::STDIN_WINDOW;

use crate::stdin::StdinFlow;

/// What the model expects of the flow.
#[derive(Default)]
struct Model {
    pushed: Vec<u8>,
    sent: Vec<u8>,
    unacked: usize,
    closed: bool,
    close_sent: bool,
}

fn drain(flow: &mut StdinFlow, m: &mut Model) {
    while let Some(frame) = flow.next_frame(3) {
        assert!(!m.close_sent, "{frame:?} after the close");
        match frame {
            Frame::Stdin { id: 3, data } => {
                m.unacked += data.len();
                m.sent.extend_from_slice(&data);
            }
            Frame::StdinClose { id: 3 } => {
                assert!(m.closed, "a close the client did not send");
                m.close_sent = true;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(m.unacked <= STDIN_WINDOW, "window overrun: {}", m.unacked);
    }
}

/// One step: (opcode, number). A message is `number % (MESSAGE_DATA_MAX +
/// 1)` bytes.
fn step(flow: &mut StdinFlow, m: &mut Model, (op, n): (u8, u32)) {
    match op % 6 {
        0 | 1 if flow.may_receive() && !m.closed => {
            let len = n as usize % (MESSAGE_DATA_MAX + 1);
            let at = m.pushed.len();
            // The first byte counts up, the rest repeat it: fast to make,
            // and data out of order shows.
            let mut msg = vec![(at / 7 % 251) as u8; len];
            if let Some(first) = msg.first_mut() {
                *first = (at % 253) as u8;
            }
            flow.push(&msg);
            m.pushed.extend_from_slice(&msg);
        }
        0 | 1 => {}
        2 => {
            flow.close();
            m.closed = true;
        }
        3 => {
            // The agent acknowledges part of what it has, or a bogus count.
            let bytes = if n & 1 == 0 {
                (n as usize >> 1).min(m.unacked)
            } else {
                n as usize
            };
            flow.acked(bytes as u32);
            m.unacked = m.unacked.saturating_sub(bytes);
        }
        4 => flow.set_queue_full(n & 1 == 1),
        _ => drain(flow, m),
    }
}

fn check_flow(steps: driver::Seq<(u8, u32)>) {
    let mut flow = StdinFlow::new();
    let mut m = Model::default();
    for s in steps.0 {
        step(&mut flow, &mut m, s);
        assert!(
            flow.pending() <= MESSAGE_DATA_MAX,
            "holds {} bytes",
            flow.pending()
        );
        assert_eq!(m.sent.len() + flow.pending(), m.pushed.len());
        assert_eq!(
            flow.may_receive(),
            flow.pending() == 0 && !flow.is_queue_full()
        );
    }
    assert!(
        m.sent == m.pushed[..m.sent.len()],
        "stdin changed on the way"
    );
    if m.close_sent {
        assert_eq!(
            m.sent.len(),
            m.pushed.len(),
            "the close went before the data"
        );
    }
}

#[test]
fn fuzz_stdin_flow() {
    driver::run("linux::stdin_flow", 1000, check_flow);
}
