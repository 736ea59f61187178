//! Frames smoltcp sends, waiting for the driver: each is written in place
//! into a batch of frames that goes to the driver as one `Data` message
//! (`starina::frames`), so a frame is not built in a buffer of its own and
//! copied into a message afterwards. Batches that went out are kept for
//! reuse (their memory is a message's).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use starina::frames::FrameBatch;

/// Sent batches kept for reuse at most.
const SPARE_MAX: usize = 4;

#[derive(Default)]
pub struct TxQueue {
    /// Full batches first, the one being filled last.
    batches: VecDeque<FrameBatch>,
    frames: usize,
    spare: Vec<FrameBatch>,
    /// Frames too large for any message, dropped.
    pub too_large: u64,
}

impl TxQueue {
    /// Frames waiting.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Bytes waiting (frames and their lengths).
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.bytes().len()).sum()
    }

    /// Queues a frame of `len` bytes that `write` fills in (it gets them
    /// zeroed: what it leaves unwritten must not be an earlier frame's
    /// bytes). A frame no message can hold is written to a scratch buffer
    /// and dropped.
    pub fn push<R>(&mut self, len: usize, write: impl FnOnce(&mut [u8]) -> R) -> R {
        let fits = self.batches.back().is_some_and(|b| b.fits_len(len));
        if !fits {
            let fresh = self.spare.pop().unwrap_or_default();
            self.batches.push_back(fresh);
        }
        let batch = self.batches.back_mut().expect("a batch was just added");
        match batch.push_zeroed(len) {
            Some(frame) => {
                self.frames += 1;
                write(frame)
            }
            None => {
                self.too_large += 1;
                log::warn!("dropping a {len}-byte frame too large for the link");
                write(&mut alloc::vec![0; len])
            }
        }
    }

    /// The oldest batch, to hand to the driver.
    pub fn front(&self) -> Option<&[u8]> {
        (self.batches.front())
            .map(|b| b.bytes())
            .filter(|b| !b.is_empty())
    }

    /// The oldest batch went to the driver.
    pub fn pop_front(&mut self) {
        let Some(mut batch) = self.batches.pop_front() else {
            return;
        };
        let mut n = 0;
        let _ = starina::frames::for_each_frame(batch.bytes(), |_| n += 1);
        self.frames -= n;
        batch.clear();
        if self.spare.len() < SPARE_MAX {
            self.spare.push(batch);
        }
    }

    /// Drops every frame waiting (no driver to take them).
    pub fn clear(&mut self) {
        while !self.batches.is_empty() {
            self.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use starina::abi::MESSAGE_DATA_MAX;

    use super::*;

    fn frames(body: &[u8]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        starina::frames::for_each_frame(body, |f| got.push(f.to_vec())).unwrap();
        got
    }

    #[test]
    fn frames_are_packed_into_message_sized_batches() {
        let mut q = TxQueue::default();
        let per_batch = MESSAGE_DATA_MAX / (1514 + 2);
        for i in 0..per_batch + 1 {
            q.push(1514, |f| f[0] = i as u8);
        }
        assert_eq!(q.frames(), per_batch + 1);
        let first = frames(q.front().unwrap());
        assert_eq!(first.len(), per_batch);
        assert_eq!(first[1][..2], [1, 0]);
        q.pop_front();
        assert_eq!(q.frames(), 1);
        assert_eq!(
            frames(q.front().unwrap()),
            vec![{
                let mut f = vec![0; 1514];
                f[0] = per_batch as u8;
                f
            }]
        );
        q.pop_front();
        assert!(q.frames() == 0 && q.front().is_none());
    }

    #[test]
    fn a_reused_batch_hands_out_zeroed_frames() {
        let mut q = TxQueue::default();
        q.push(100, |f| f.fill(0xff));
        q.pop_front();
        q.push(100, |f| assert!(f.iter().all(|&b| b == 0)));
        assert_eq!(q.bytes(), 102);
    }

    #[test]
    fn a_frame_too_large_is_dropped() {
        let mut q = TxQueue::default();
        let len = q.push(MESSAGE_DATA_MAX, |f| f.len());
        assert_eq!(len, MESSAGE_DATA_MAX);
        assert!(q.frames() == 0);
        assert_eq!(q.too_large, 1);
        q.push(60, |_| ());
        q.clear();
        assert!(q.frames() == 0 && q.front().is_none());
    }
}
