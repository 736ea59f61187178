//! `echo [-n] [ARG]...`: the arguments, separated by spaces, then a newline.

use alloc::string::String;

use crate::ctx::Ctx;
use crate::ctx::Outcome;

/// As GNU echo, `--help` only alone: among other words it is text.
pub fn run(ctx: &mut Ctx) -> Outcome {
    if ctx.args.len() == 1 && ctx.args[0] == "--help" {
        return ctx.help(
            "echo [-n] [ARG]...",
            "Writes the ARGs, separated by spaces, and a newline (none with -n) to stdout.",
        );
    }
    let mut args = &ctx.args[..];
    let mut newline = true;
    while args.first().map(String::as_str) == Some("-n") {
        newline = false;
        args = &args[1..];
    }
    let mut text = args.join(" ");
    if newline {
        text.push('\n');
    }
    ctx.stdout.print(&text)?;
    Ok(0)
}
