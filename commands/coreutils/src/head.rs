//! `head [-n N] [FILE]...`: the first N lines (10) of each input, read
//! only as far as needed.

use alloc::format;

use starina::command::CommandError;

use crate::args;
use crate::args::Spec;
use crate::ctx::each_input;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::lines::after_lines;

pub const SPEC: Spec = Spec {
    flags: "",
    valued: "n",
    digits: Some('n'),
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "head [-n N] [FILE]...",
            "Writes the first N lines (10) of each FILE (stdin for none or -) to stdout.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let n = line_count(parsed.value('n'))?;
    let many = parsed.operands.len() > 1;
    let mut first = true;
    each_input(ctx, &parsed.operands, |source, out, name| {
        if many {
            out.print(&header(name, &mut first))?;
        }
        let mut left = n;
        while left > 0 {
            let Some(chunk) = source.chunk()? else { break };
            let end = after_lines(chunk, &mut left);
            out.write(&chunk[..end])?;
        }
        Ok(())
    })
}

/// `-n`'s value (10 without one); a bad one is a usage error.
pub fn line_count(value: Option<&str>) -> Result<u64, CommandError> {
    value.map_or(Ok(10), |v| {
        args::count(v, "number of lines").map_err(CommandError::usage)
    })
}

/// `==> name <==` before each input when there are several.
pub fn header(name: &str, first: &mut bool) -> alloc::string::String {
    let gap = if *first { "" } else { "\n" };
    *first = false;
    let name = if name == "-" { "standard input" } else { name };
    format!("{gap}==> {name} <==\n")
}
