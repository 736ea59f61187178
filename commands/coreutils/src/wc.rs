//! `wc [-l] [-w] [-c] [FILE]...`: lines, words and bytes of each input,
//! counted as it streams past, printed as GNU wc does.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::args::Spec;
use crate::ctx::each_input;
use crate::ctx::Ctx;
use crate::ctx::Outcome;

const SPEC: Spec = Spec {
    flags: "lwc",
    valued: "",
    digits: None,
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "wc [-l] [-w] [-c] [FILE]...",
            "Counts the lines, words and bytes of each FILE (stdin for none or -); -l, -w, -c pick counts.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let mut show = [parsed.has('l'), parsed.has('w'), parsed.has('c')];
    if show == [false; 3] {
        show = [true; 3];
    }
    let mut results: Vec<(String, Counts)> = Vec::new();
    let status = each_input(ctx, &parsed.operands, |source, _, name| {
        let mut counts = Counts::default();
        while let Some(chunk) = source.chunk()? {
            counts.feed(chunk);
        }
        // Stdin without a `-` operand goes unnamed.
        let name = if parsed.operands.is_empty() { "" } else { name };
        results.push((String::from(name), counts));
        Ok(())
    })?;
    let text = report(&results, show);
    ctx.stdout.print(&text)?;
    Ok(status)
}

/// Lines (newlines), words (runs of non-space) and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub words: u64,
    pub bytes: u64,
    in_word: bool,
}

impl Counts {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        for &b in chunk {
            let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
            if b == b'\n' {
                self.lines += 1;
            }
            if !space && !self.in_word {
                self.words += 1;
            }
            self.in_word = !space;
        }
    }

    fn values(&self) -> [u64; 3] {
        [self.lines, self.words, self.bytes]
    }
}

/// The output: a line per input (with its name unless that is empty), a
/// total for several. Like GNU: one count of one input unpadded; else
/// columns as wide as the byte total, or 7 when stdin (`-` or unnamed) is
/// among them.
pub fn report(results: &[(String, Counts)], show: [bool; 3]) -> String {
    let stdin = results.iter().any(|(n, _)| n.is_empty() || n == "-");
    let mut total = Counts::default();
    for (_, c) in results {
        total.lines += c.lines;
        total.words += c.words;
        total.bytes += c.bytes;
    }
    let columns = show.iter().filter(|s| **s).count();
    let width = if columns == 1 && results.len() == 1 {
        1
    } else if stdin {
        7
    } else {
        format!("{}", total.bytes).len()
    };
    let mut out = String::new();
    for (name, counts) in results {
        line(
            &mut out,
            counts,
            show,
            width,
            (!name.is_empty()).then_some(name.as_str()),
        );
    }
    if results.len() > 1 {
        line(&mut out, &total, show, width, Some("total"));
    }
    out
}

fn line(out: &mut String, counts: &Counts, show: [bool; 3], width: usize, name: Option<&str>) {
    let fields: Vec<String> = counts
        .values()
        .iter()
        .zip(show)
        .filter(|(_, s)| *s)
        .map(|(v, _)| format!("{v:>width$}"))
        .collect();
    out.push_str(&fields.join(" "));
    if let Some(name) = name {
        out.push(' ');
        out.push_str(name);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> Counts {
        let mut c = Counts::default();
        for chunk in chunks {
            c.feed(chunk);
        }
        c
    }

    #[test]
    fn counts_like_gnu_even_across_chunks() {
        let c = count(&[b"hello wor", b"ld\n  two\tthree\n", b"last"]);
        assert_eq!((c.lines, c.words, c.bytes), (2, 5, 28));
        assert_eq!(count(&[b""]).values(), [0, 0, 0]);
        assert_eq!(count(&[b"hello\n"]).values(), [1, 1, 6]);
    }

    #[test]
    fn a_thousand_lines() {
        let mut text = String::new();
        for i in 1..=1000 {
            text.push_str(&format!("{i}\n"));
        }
        let c = count(&[text.as_bytes()]);
        let results = [(String::new(), c)];
        assert_eq!(report(&results, [true, false, false]), "1000\n");
    }

    #[test]
    fn the_report_pads_like_gnu() {
        let stdin = [(String::new(), count(&[b"hello\n"]))];
        assert_eq!(report(&stdin, [false, false, true]), "6\n");
        assert_eq!(report(&stdin, [true; 3]), "      1       1       6\n");
        let files = [
            (String::from("a"), count(&[b"one two\n"])),
            (String::from("b"), count(&[b"three\nfour\n"])),
        ];
        assert_eq!(
            report(&files, [true; 3]),
            " 1  2  8 a\n 2  2 11 b\n 3  4 19 total\n"
        );
        assert_eq!(report(&files[..1], [true, false, false]), "1 a\n");
    }
}
