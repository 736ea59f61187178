//! The native commands for files and text, one component answering to
//! several names (its spec's `names`), like busybox: `args.name()` says
//! which one runs. Each command is a module; `ctx` holds what they share
//! (streams, the file system, error reporting), `args` the option parser
//! and `paths` how operands become absolute paths (relative to `PWD`).
//!
//! | command | options |
//! |---|---|
//! | `ls [PATH]...` | `-l` type, mode, size; `-a` dot files; `-1` (always one a line) |
//! | `cat [FILE]...`, `wc [FILE]...` | wc: `-l`, `-w`, `-c` (all three without) |
//! | `grep PATTERN [FILE]...` | `-v -c -i -n -q -F -E`, `-e PATTERN` |
//! | `head`, `tail [FILE]...` | `-n N` or `-N` (10); tail: `-n +N` from line N |
//! | `cp`, `mv SOURCE... DEST` | cp: `-r`/`-R`, `-f`; mv: `-f` |
//! | `rm PATH...`, `mkdir DIR...` | rm: `-r`/`-R`, `-f`; mkdir: `-p` |
//! | `stat PATH...` | `-L` follow a symlink |
//! | `echo [ARG]...`, `seq [FIRST [STEP]] LAST`, `true`, `false` | echo: `-n` |
//!
//! Every command takes `--help` (usage and a description on stdout, status
//! 0). Errors go to stderr as `<name>: <what>: <why>`, status 1 (2 for bad
//! usage, and for grep's errors as GNU grep); a reader that goes away ends
//! a command quietly with 141. A missing FILE operand, or `-`, is stdin.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod args;
mod cat;
mod cp;
mod ctx;
mod dfa;
mod echo;
mod grep;
mod head;
mod lines;
mod ls;
mod mkdir;
mod mv;
mod paths;
mod regex;
mod rm;
mod seq;
mod stat;
mod tail;
mod wc;

use alloc::format;
use alloc::string::String;

use starina::command::CommandError;

use ctx::Ctx;
use ctx::Fs;
use ctx::Outcome;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) -> Outcome {
    let fs = Fs::new(env.fs, env.args.var("PWD"));
    let mut ctx = Ctx {
        name: String::from(env.args.name()),
        args: env.args.rest().to_vec(),
        stdin: env.stdin,
        stdout: env.stdout,
        stderr: env.stderr,
        fs,
    };
    let help = env.args.wants_help();
    let name = ctx.name.clone();
    match name.as_str() {
        "true" if help => ctx.help("true", "Does nothing, successfully (status 0)."),
        "false" if help => ctx.help("false", "Does nothing, unsuccessfully (status 1)."),
        "true" => Ok(0),
        "false" => Ok(1),
        "echo" => echo::run(&mut ctx),
        "cat" => cat::run(&mut ctx, help),
        "ls" => ls::run(&mut ctx, help),
        "wc" => wc::run(&mut ctx, help),
        "grep" => grep::run(&mut ctx, help),
        "head" => head::run(&mut ctx, help),
        "tail" => tail::run(&mut ctx, help),
        "cp" => cp::run(&mut ctx, help),
        "mv" => mv::run(&mut ctx, help),
        "rm" => rm::run(&mut ctx, help),
        "mkdir" => mkdir::run(&mut ctx, help),
        "stat" => stat::run(&mut ctx, help),
        "seq" => seq::run(&mut ctx, help),
        other => Err(CommandError::new(format!(
            "not a command of coreutils: {other}"
        ))),
    }
}

/// Parses the arguments as `spec` says; a bad one is a usage error.
fn parse(ctx: &Ctx, spec: &args::Spec) -> Result<args::Parsed, CommandError> {
    args::parse(&ctx.args, spec).map_err(CommandError::usage)
}
