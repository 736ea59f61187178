//! `grep [-vcinqFE] [-e PATTERN | PATTERN] [FILE]...`: the lines that match
//! (see [`crate::regex`] for the patterns). Status 0 if a line was
//! selected, 1 if none, 2 on an error (as GNU grep).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::command::Buffered;
use starina::command::CommandError;
use starina::command::Output;

use crate::args::Parsed;
use crate::args::Spec;
use crate::ctx::each_input;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::ctx::Source;
use crate::dfa::Matcher;
use crate::lines::Lines;
use crate::regex::Options;
use crate::regex::Regex;

const SPEC: Spec = Spec {
    flags: "vcinqFE",
    valued: "e",
    digits: None,
};

/// What to print of the lines read.
struct Mode {
    invert: bool,
    count: bool,
    numbers: bool,
    quiet: bool,
    /// `name:` before each line (several files).
    prefix: bool,
}

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "grep [-v] [-c] [-i] [-n] [-q] [-F] [-e PATTERN | PATTERN] [FILE]...",
            "Writes the lines of each FILE (stdin for none or -) that match PATTERN: \
             . * + ? ^ $ [a-z] [^...] and \\ escapes; -F fixed string, -i any case, \
             -v non-matching lines, -c counts, -n line numbers, -q status only.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let (pattern, files) = pattern_and_files(&parsed)?;
    let options = Options {
        fixed: parsed.has('F'),
        ignore_case: parsed.has('i'),
    };
    let regex = Regex::new(pattern.as_bytes(), options)
        .map_err(|why| CommandError::usage(format!("{pattern}: {why}")))?;
    let mode = Mode {
        invert: parsed.has('v'),
        count: parsed.has('c'),
        numbers: parsed.has('n'),
        quiet: parsed.has('q'),
        prefix: files.len() > 1,
    };
    let mut matcher = Matcher::new(&regex);
    let mut selected = false;
    let status = each_input(ctx, &files, |source, out, name| {
        if selected && mode.quiet {
            return Ok(());
        }
        selected |= grep(source, out, name, &mut matcher, &mode)?;
        Ok(())
    })?;
    Ok(match (status, selected) {
        (0, true) => 0,
        (0, false) => 1,
        _ if selected && mode.quiet => 0,
        _ => 2,
    })
}

/// The pattern (`-e`'s or the first operand) and the files after it.
fn pattern_and_files(parsed: &Parsed) -> Result<(String, Vec<String>), CommandError> {
    if let Some(p) = parsed.value('e') {
        return Ok((String::from(p), parsed.operands.clone()));
    }
    match parsed.operands.split_first() {
        Some((p, files)) => Ok((p.clone(), files.to_vec())),
        None => Err(CommandError::usage(
            "no pattern (usage: grep [OPTION]... PATTERN [FILE]...)",
        )),
    }
}

/// Greps one input; whether a line was selected.
fn grep(
    source: &mut Source<'_>,
    out: &mut Output,
    name: &str,
    matcher: &mut Matcher<'_>,
    mode: &Mode,
) -> Result<bool, CommandError> {
    let mut out = Buffered::new(out);
    let (mut number, count) = (0u64, core::cell::Cell::new(0u64));
    let mut lines = Lines::new();
    let mut each = |line: &[u8]| {
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if matcher.is_match(text) == mode.invert {
            return Ok(());
        }
        count.set(count.get() + 1);
        if mode.count || mode.quiet {
            return Ok(());
        }
        out.print(&prefix(name, number, mode))?;
        out.write(text)?;
        Ok(out.write(b"\n")?)
    };
    while let Some(chunk) = source.chunk()? {
        lines.feed(chunk, &mut each)?;
        if mode.quiet && count.get() > 0 {
            return Ok(true);
        }
    }
    lines.finish(&mut each)?;
    if mode.count && !mode.quiet {
        out.print(&format!("{}{}\n", prefix(name, 0, mode), count.get()))?;
    }
    out.flush()?;
    Ok(count.get() > 0)
}

/// `name:` (several files) and `number:` (`-n`, when a line is printed).
fn prefix(name: &str, number: u64, mode: &Mode) -> String {
    let mut p = String::new();
    if mode.prefix {
        let name = if name == "-" {
            "(standard input)"
        } else {
            name
        };
        p.push_str(name);
        p.push(':');
    }
    if mode.numbers && number > 0 {
        p.push_str(&format!("{number}:"));
    }
    p
}
