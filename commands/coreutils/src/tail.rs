//! `tail [-n N | -n +N] [FILE]...`: the last N lines (10) of each input,
//! keeping only those N lines in memory ([`Ring`]); `+N` starts at line N
//! and streams the rest.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

use starina::command::CommandError;
use starina::command::Output;

use crate::ctx::each_input;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::ctx::Source;
use crate::head;
use crate::lines::after_lines;
use crate::lines::Lines;

/// The most bytes the last N lines may take.
const RING_CAP: usize = 32 << 20;

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "tail [-n N | -n +N] [FILE]...",
            "Writes the last N lines (10) of each FILE (stdin for none or -) to stdout; +N: from line N on.",
        );
    }
    let parsed = crate::parse(ctx, &head::SPEC)?;
    let value = parsed.value('n');
    let from = value.and_then(|v| v.strip_prefix('+'));
    let n = head::line_count(from.or(value))?;
    let many = parsed.operands.len() > 1;
    let mut first = true;
    each_input(ctx, &parsed.operands, |source, out, name| {
        if many {
            out.print(&head::header(name, &mut first))?;
        }
        match from {
            Some(_) => from_line(source, out, n),
            None => last_lines(source, out, n),
        }
    })
}

/// Everything from line `n` (counting from 1) on.
fn from_line(source: &mut Source<'_>, out: &mut Output, n: u64) -> Result<(), CommandError> {
    let mut skip = n.saturating_sub(1);
    while let Some(chunk) = source.chunk()? {
        let start = after_lines(chunk, &mut skip);
        out.write(&chunk[start..])?;
    }
    Ok(())
}

fn last_lines(source: &mut Source<'_>, out: &mut Output, n: u64) -> Result<(), CommandError> {
    let mut ring = Ring::new(n, RING_CAP);
    let mut lines = Lines::new();
    let mut keep = |line: &[u8]| ring.push(line);
    while let Some(chunk) = source.chunk()? {
        lines.feed(chunk, &mut keep)?;
    }
    lines.finish(&mut keep)?;
    for line in ring.lines() {
        out.write(line)?;
    }
    Ok(())
}

/// The last `n` lines seen, in at most `cap` bytes.
pub struct Ring {
    n: u64,
    cap: usize,
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Ring {
    pub fn new(n: u64, cap: usize) -> Ring {
        Ring {
            n,
            cap,
            lines: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn push(&mut self, line: &[u8]) -> Result<(), CommandError> {
        if self.n == 0 {
            return Ok(());
        }
        if self.lines.len() as u64 == self.n {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
        if self.bytes + line.len() > self.cap {
            return Err(CommandError::new(format!(
                "the last {} lines take more than {} bytes",
                self.n, self.cap
            )));
        }
        self.bytes += line.len();
        self.lines.push_back(line.to_vec());
        Ok(())
    }

    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn kept(ring: &Ring) -> Vec<&[u8]> {
        ring.lines().collect()
    }

    #[test]
    fn the_ring_keeps_the_last_n() {
        let mut ring = Ring::new(2, 100);
        for i in 0..5 {
            ring.push(format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(kept(&ring), vec![&b"3\n"[..], b"4\n"]);
        let mut none = Ring::new(0, 100);
        none.push(b"x\n").unwrap();
        assert!(kept(&none).is_empty());
        let mut short = Ring::new(5, 100);
        short.push(b"only").unwrap();
        assert_eq!(kept(&short), vec![&b"only"[..]]);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes() {
        let mut ring = Ring::new(2, 10);
        ring.push(b"12345\n").unwrap();
        ring.push(b"123\n").unwrap();
        // The oldest goes first, so 4 + 6 fits again.
        ring.push(b"12345\n").unwrap();
        assert!(ring.push(b"1234567890a\n").is_err());
    }
}
