//! A Linux service's output, cut into log lines.

use alloc::string::String;
use alloc::vec::Vec;

/// The longest line logged whole; longer output is logged in pieces of
/// this size (a program that never writes a newline still shows up).
pub const MAX_LINE: usize = 1024;

/// Bytes of one stream (stdout or stderr) not yet logged.
#[derive(Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Adds `bytes`; calls `emit` with every complete line (without its
    /// `\n` or `\r\n`), and with pieces of `MAX_LINE` bytes of a longer one.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                self.flush(&mut emit);
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    self.flush(&mut emit);
                }
            }
        }
    }

    /// Emits what is left (the stream ended without a final newline).
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            self.flush(&mut emit);
        }
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        if self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        let line = String::from_utf8_lossy(&self.pending);
        emit(&line);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut l = Lines::default();
        for c in chunks {
            l.push(c, |s| out.push(s.to_string()));
        }
        l.finish(|s| out.push(s.to_string()));
        out
    }

    #[test]
    fn splits_at_newlines_across_chunks() {
        assert_eq!(lines(&[b"a\nb", b"c\r\n", b"d"]), ["a", "bc", "d"]);
    }

    #[test]
    fn keeps_empty_lines_and_cuts_long_ones() {
        assert_eq!(lines(&[b"\n\n"]), ["", ""]);
        let long = [b'x'; MAX_LINE + 10];
        let out = lines(&[&long]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), 10);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(lines(&[b"ok \xff\n"]), ["ok \u{fffd}"]);
    }
}
