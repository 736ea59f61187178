//! Lines out of a stream that comes in chunks: [`Lines`] hands out whole
//! lines (a line inside one chunk without copying it), [`after_lines`]
//! finds where the n-th line ends without keeping any.

use alloc::format;
use alloc::vec::Vec;

use starina::command::CommandError;

/// The longest line [`Lines`] keeps whole (grep and tail need whole lines).
pub const LINE_CAP: usize = 8 << 20;

/// Splits chunks into lines, each with its `\n` (the last may lack it).
pub struct Lines {
    partial: Vec<u8>,
    cap: usize,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::with_cap(LINE_CAP)
    }

    pub fn with_cap(cap: usize) -> Lines {
        Lines {
            partial: Vec::new(),
            cap,
        }
    }

    /// Calls `each` on every line `chunk` completes.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        each: &mut impl FnMut(&[u8]) -> Result<(), CommandError>,
    ) -> Result<(), CommandError> {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = chunk.split_at(i + 1);
            if self.partial.is_empty() {
                each(line)?;
            } else {
                self.keep(line)?;
                let whole = core::mem::take(&mut self.partial);
                each(&whole)?;
            }
            chunk = rest;
        }
        self.keep(chunk)
    }

    /// Calls `each` on the last line if it had no `\n`.
    pub fn finish(
        &mut self,
        each: &mut impl FnMut(&[u8]) -> Result<(), CommandError>,
    ) -> Result<(), CommandError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let last = core::mem::take(&mut self.partial);
        each(&last)
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<(), CommandError> {
        if self.partial.len() + bytes.len() > self.cap {
            return Err(CommandError::new(format!(
                "a line is longer than {} bytes",
                self.cap
            )));
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }
}

/// How many bytes of `chunk` make up the next `*left` lines (all of it if
/// it ends first); `*left` goes down by the lines found.
pub fn after_lines(chunk: &[u8], left: &mut u64) -> usize {
    let mut end = 0;
    while *left > 0 {
        match chunk[end..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                end += i + 1;
                *left -= 1;
            }
            None => return chunk.len(),
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn split(chunks: &[&[u8]], cap: usize) -> Result<Vec<Vec<u8>>, CommandError> {
        let mut lines = Lines::with_cap(cap);
        let mut out = Vec::new();
        let mut each = |l: &[u8]| {
            out.push(l.to_vec());
            Ok(())
        };
        for c in chunks {
            lines.feed(c, &mut each)?;
        }
        lines.finish(&mut each)?;
        Ok(out)
    }

    #[test]
    fn lines_span_chunks_and_the_last_may_lack_its_newline() {
        let got = split(&[b"one\ntw", b"o\n", b"", b"thr", b"ee"], 100).unwrap();
        assert_eq!(
            got,
            vec![b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
        );
        assert!(split(&[b""], 100).unwrap().is_empty());
        assert_eq!(split(&[b"\n\n"], 100).unwrap().len(), 2);
    }

    #[test]
    fn a_line_past_the_cap_is_an_error_not_a_huge_buffer() {
        assert!(split(&[b"abcd", b"ef\n"], 5).is_err());
        assert!(split(&[b"abcd\n"], 5).is_ok());
    }

    #[test]
    fn a_million_byte_line_is_one_line() {
        let big = vec![b'x'; 16 * 1024];
        let chunks: Vec<&[u8]> = (0..64).map(|_| &big[..]).chain([&b"\nz"[..]]).collect();
        let got = split(&chunks, LINE_CAP).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 64 * 16 * 1024 + 1);
    }

    #[test]
    fn after_lines_counts_newlines() {
        let mut left = 2;
        assert_eq!(after_lines(b"a\nb\nc\n", &mut left), 4);
        assert_eq!(left, 0);
        let mut left = 3;
        assert_eq!(after_lines(b"a\nb", &mut left), 3);
        assert_eq!(left, 2);
        let mut left = 0;
        assert_eq!(after_lines(b"abc", &mut left), 0);
    }
}
