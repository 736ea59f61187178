//! Several network frames in one `Data` message: the link protocol between
//! a NIC driver and the TCP/IP server. Each frame is its length (2 bytes,
//! little-endian) and its bytes; a message holds as many whole frames as
//! fit in [`MESSAGE_DATA_MAX`], so a burst of frames costs one message
//! instead of one per frame.

use alloc::vec::Vec;

use crate::abi::MESSAGE_DATA_MAX;

/// Bytes in front of each frame.
const LEN_BYTES: usize = 2;

/// Frames being packed into one message.
pub struct FrameBatch {
    buf: Vec<u8>,
}

impl Default for FrameBatch {
    fn default() -> Self {
        FrameBatch::new()
    }
}

impl FrameBatch {
    pub fn new() -> FrameBatch {
        FrameBatch { buf: Vec::new() }
    }

    /// Whether `frame` fits in what is packed so far.
    pub fn fits(&self, frame: &[u8]) -> bool {
        self.fits_len(frame.len())
    }

    /// Whether a frame of `len` bytes fits in what is packed so far.
    pub fn fits_len(&self, len: usize) -> bool {
        self.buf.len() + LEN_BYTES + len <= MESSAGE_DATA_MAX
    }

    /// Adds `frame`; false (nothing added) if it does not fit (send what
    /// is packed first) or could never fit in a message.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if !self.fits(frame) {
            return false;
        }
        self.reserve_message();
        self.buf
            .extend_from_slice(&(frame.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(frame);
        true
    }

    /// Adds a frame of `len` zero bytes and returns them, for the caller to
    /// write the frame in place (no copy from a buffer of its own); `None`
    /// (nothing added) if it does not fit, as for [`FrameBatch::push`].
    pub fn push_zeroed(&mut self, len: usize) -> Option<&mut [u8]> {
        if !self.fits_len(len) {
            return None;
        }
        self.reserve_message();
        self.buf.extend_from_slice(&(len as u16).to_le_bytes());
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        Some(&mut self.buf[start..])
    }

    /// A whole message's room at once: growing by doubling copied every
    /// packed byte about twice more.
    fn reserve_message(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(MESSAGE_DATA_MAX);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The message body packed so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the batch (keeping its memory) once it was sent.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// A message body that does not parse as frames: what came before the
/// bad spot was still delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Where the bad length (or the cut-off frame) begins.
    pub at: usize,
}

/// Calls `f` with each frame of a message body in turn.
pub fn for_each_frame(body: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), Malformed> {
    let mut at = 0;
    while at < body.len() {
        let Some(len) = body.get(at..at + LEN_BYTES) else {
            return Err(Malformed { at });
        };
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let Some(frame) = body.get(at + LEN_BYTES..at + LEN_BYTES + len) else {
            return Err(Malformed { at });
        };
        f(frame);
        at += LEN_BYTES + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn frames_of(body: &[u8]) -> (Vec<Vec<u8>>, Result<(), Malformed>) {
        let mut got = Vec::new();
        let result = for_each_frame(body, |f| got.push(f.to_vec()));
        (got, result)
    }

    #[test]
    fn frames_round_trip() {
        let mut batch = FrameBatch::new();
        assert!(batch.is_empty());
        assert!(batch.push(&[1, 2, 3]));
        assert!(batch.push(&[]));
        assert!(batch.push(&[9; 1514]));
        let (got, result) = frames_of(batch.bytes());
        assert_eq!(result, Ok(()));
        assert_eq!(got, vec![vec![1, 2, 3], vec![], vec![9; 1514]]);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(frames_of(batch.bytes()).0.len(), 0);
    }

    #[test]
    fn a_batch_stops_at_the_message_size() {
        let mut batch = FrameBatch::new();
        let mut n = 0;
        while batch.push(&[7; 1514]) {
            n += 1;
        }
        assert_eq!(n, MESSAGE_DATA_MAX / (1514 + LEN_BYTES));
        assert!(batch.bytes().len() <= MESSAGE_DATA_MAX);
        assert!(batch.push(&[7; 60]), "a small frame still fits");
        assert!(!FrameBatch::new().push(&vec![0; MESSAGE_DATA_MAX]));
    }

    #[test]
    fn frames_are_written_in_place() {
        let mut batch = FrameBatch::new();
        let room = batch.push_zeroed(3).expect("fits");
        assert_eq!(room, [0, 0, 0]);
        room.copy_from_slice(&[4, 5, 6]);
        assert!(batch.push(&[7]));
        assert_eq!(frames_of(batch.bytes()).0, vec![vec![4, 5, 6], vec![7]]);
        assert!(batch.push_zeroed(MESSAGE_DATA_MAX).is_none());
        assert_eq!(frames_of(batch.bytes()).0.len(), 2, "nothing added");
    }

    #[test]
    fn malformed_bodies_deliver_what_came_before() {
        let (got, result) = frames_of(&[2, 0, 5, 6, 9]);
        assert_eq!(got, vec![vec![5, 6]]);
        assert_eq!(result, Err(Malformed { at: 4 }));
        let (got, result) = frames_of(&[10, 0, 1, 2]);
        assert!(got.is_empty());
        assert_eq!(result, Err(Malformed { at: 0 }));
    }
}
