//! One process's stdin: a queue bounded by the protocol's stdin window,
//! filled by the control reader without ever blocking it, drained into the
//! child's pipe by the process's stdin thread, which acknowledges what the
//! child took (`StdinAck`) so that the host may send more.
//!
//! The host may have at most [`STDIN_WINDOW`] bytes unacknowledged, and the
//! agent counts a byte as queued until the child has taken it, before it
//! acknowledges it, so a host that keeps to the window never finds the
//! queue full. One that does
//! not (an overrun) loses that process's stdin, never the agent's memory.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;

use starina_bridge::process::Frame;
use starina_bridge::process::STDIN_WINDOW;

/// Acknowledge once this many bytes were taken. A host that keeps its
/// window full always gets one: all it sent arrives and is taken in the
/// end, and the window is larger than a batch.
const ACK_BATCH: usize = STDIN_WINDOW / 4;

/// Why [`StdinQueue::push`] refused data.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The host sent beyond the window; this process's stdin is dropped
    /// from now on. Returned once; later pushes are dropped silently.
    Overrun { queued: usize, pushed: usize },
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes received and not yet taken by the child (written into its pipe,
    /// or dropped once the pipe is closed), including the chunk being
    /// written: at most one window.
    queued: usize,
    /// Bytes taken by the child and not yet acknowledged.
    to_ack: usize,
    /// No more data will come: StdinClose, an overrun, or the process ended.
    closed: bool,
    /// The process's final frame is about to go: no frame about it may
    /// follow, so nothing more is acknowledged or reported.
    retired: bool,
    /// Frames about this process (an ack, a report) on their way to the
    /// writer; [`StdinQueue::retire`] waits for them.
    sending: usize,
}

#[derive(Default)]
pub struct StdinQueue {
    state: Mutex<State>,
    changed: Condvar,
}

impl StdinQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues data from the host. Never blocks.
    pub fn push(&self, data: Vec<u8>) -> Result<(), PushError> {
        let mut s = self.state();
        if s.closed {
            return Ok(()); // After Close, an overrun or the end: dropped.
        }
        if s.queued.saturating_add(data.len()) > STDIN_WINDOW {
            let err = PushError::Overrun {
                queued: s.queued,
                pushed: data.len(),
            };
            s.closed = true;
            s.chunks.clear();
            drop(s);
            self.changed.notify_all();
            return Err(err);
        }
        s.queued += data.len();
        s.chunks.push_back(data);
        drop(s);
        self.changed.notify_all();
        Ok(())
    }

    /// The host closed stdin: the pipe closes once the queue is written.
    pub fn close(&self) {
        self.state().closed = true;
        self.changed.notify_all();
    }

    /// Whether the process's final frame went (or is going) out.
    fn is_retired(&self) -> bool {
        self.state().retired
    }

    /// Bytes queued and not yet acknowledged.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.state().queued
    }

    /// The process's final frame goes next: drops what is queued, ends the
    /// stdin thread and waits until no frame about the process is on its
    /// way. After this nothing about the process is sent from here.
    pub fn retire(&self) {
        let mut s = self.state();
        s.closed = true;
        s.retired = true;
        s.chunks.clear();
        self.changed.notify_all();
        while s.sending > 0 {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `send` unless the process is retired, and keeps
    /// [`StdinQueue::retire`] waiting until it returns. Whether it ran.
    pub fn send_unless_retired(&self, send: impl FnOnce()) -> bool {
        {
            let mut s = self.state();
            if s.retired {
                return false;
            }
            s.sending += 1;
        }
        send();
        self.state().sending -= 1;
        self.changed.notify_all();
        true
    }

    /// The next chunk to write, waiting for one; `None` once stdin is
    /// closed and written.
    fn next_chunk(&self) -> Option<Vec<u8>> {
        let mut s = self.state();
        loop {
            if let Some(chunk) = s.chunks.pop_front() {
                return Some(chunk);
            }
            if s.closed {
                return None;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records that the child took (or the closed pipe swallowed) `n`
    /// bytes; returns how many to acknowledge now, if any.
    fn taken(&self, n: usize) -> Option<u32> {
        let mut s = self.state();
        s.queued -= n;
        s.to_ack += n;
        if s.to_ack < ACK_BATCH || s.retired {
            return None;
        }
        // At most one window: it fits in u32.
        let bytes = std::mem::take(&mut s.to_ack) as u32;
        Some(bytes)
    }
}

/// The stdin thread: writes queued data into the child's pipe and
/// acknowledges it through `send`, until stdin is closed (or the process is
/// retired); then drops the pipe, so the child reads end of file. For a
/// terminal, whose master stays open, it writes `eof` (the terminal's
/// end-of-file character) on a close from the host instead.
pub fn write_loop(
    id: u32,
    queue: &StdinQueue,
    mut pipe: impl Write,
    eof: Option<u8>,
    send: impl Fn(Frame),
) {
    let mut broken = false;
    while let Some(chunk) = queue.next_chunk() {
        // After EPIPE the data is dropped but still acknowledged, so the
        // host's writer does not wait for a reader that is gone.
        if !broken && pipe.write_all(&chunk).is_err() {
            broken = true;
        }
        if let Some(bytes) = queue.taken(chunk.len()) {
            queue.send_unless_retired(|| send(Frame::StdinAck { id, bytes }));
        }
    }
    if let Some(eof) = eof {
        if !broken && !queue.is_retired() {
            let _ = pipe.write_all(&[eof]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_the_queue() {
        let q = StdinQueue::default();
        q.push(vec![0; STDIN_WINDOW - 1]).unwrap();
        q.push(vec![0; 1]).unwrap();
        assert_eq!(q.queued(), STDIN_WINDOW);
        assert_eq!(
            q.push(vec![0; 1]),
            Err(PushError::Overrun {
                queued: STDIN_WINDOW,
                pushed: 1
            })
        );
        // Dropped from now on, and the queue is empty and closed.
        assert_eq!(q.push(vec![0; 1 << 20]), Ok(()));
        assert_eq!(q.next_chunk(), None);
    }

    #[test]
    fn taken_bytes_are_acknowledged_in_batches() {
        let q = StdinQueue::default();
        for _ in 0..8 {
            q.push(vec![0; ACK_BATCH / 4]).unwrap();
        }
        let mut acks = Vec::new();
        for _ in 0..8 {
            let chunk = q.next_chunk().unwrap();
            acks.extend(q.taken(chunk.len()));
        }
        assert_eq!(acks, [ACK_BATCH as u32, ACK_BATCH as u32]);
        assert_eq!(q.queued(), 0);
        // Less than a batch waits for more.
        q.push(vec![0; ACK_BATCH - 1]).unwrap();
        let chunk = q.next_chunk().unwrap();
        assert_eq!(q.taken(chunk.len()), None);
        q.push(b"x".to_vec()).unwrap();
        let chunk = q.next_chunk().unwrap();
        assert_eq!(q.taken(chunk.len()), Some(ACK_BATCH as u32));
        q.close();
        assert_eq!(q.next_chunk(), None);
    }

    #[test]
    fn nothing_is_acknowledged_after_retirement() {
        let q = StdinQueue::default();
        q.push(vec![1; 10]).unwrap();
        let chunk = q.next_chunk().unwrap();
        q.retire();
        assert_eq!(q.taken(chunk.len()), None);
        assert!(!q.send_unless_retired(|| panic!("sent after retirement")));
    }

    #[test]
    fn retire_waits_for_a_frame_on_its_way() {
        let q = std::sync::Arc::new(StdinQueue::default());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let sender = std::sync::Arc::clone(&q);
        let t = std::thread::spawn(move || {
            sender.send_unless_retired(|| {
                entered_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
        });
        entered_rx.recv().unwrap();
        let retirer = std::sync::Arc::clone(&q);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            retirer.retire();
            done_tx.send(()).unwrap();
        });
        let early = done_rx.recv_timeout(std::time::Duration::from_millis(100));
        assert!(
            early.is_err(),
            "retire returned while a frame was on its way"
        );
        go_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        assert!(t.join().unwrap());
    }
}
