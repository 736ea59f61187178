//! The native commands for files and text, one component answering to
//! several names (its spec's `names`), like busybox: `args.name()` says
//! which one runs.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use starina::command::CommandError;
use starina::fs::Files;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

type Outcome = Result<i32, CommandError>;

pub fn main(mut env: Env) -> Outcome {
    let name = String::from(env.args.name());
    match name.as_str() {
        "true" => Ok(0),
        "false" => Ok(1),
        "echo" => echo(&mut env),
        "cat" => cat(&mut env),
        other => Err(CommandError::new(format!("not a command of coreutils: {other}"))),
    }
}

fn echo(env: &mut Env) -> Outcome {
    let mut args = env.args.rest();
    let newline = args.first().map(String::as_str) != Some("-n");
    if !newline {
        args = &args[1..];
    }
    let mut text = args.join(" ");
    if newline {
        text.push('\n');
    }
    env.stdout.print(&text)?;
    Ok(0)
}

/// `cat [FILE]...`: each file (or stdin for none or `-`) to stdout.
fn cat(env: &mut Env) -> Outcome {
    if env.args.wants_help() {
        env.stdout
            .print("usage: cat [FILE]...\nCopies each FILE (stdin for none or -) to stdout.\n")?;
        return Ok(0);
    }
    let paths: alloc::vec::Vec<String> = env.args.rest().to_vec();
    if paths.is_empty() {
        return cat_stdin(env);
    }
    let mut files = match env.fs.take() {
        Some(channel) => Some(Files::new(channel)?),
        None => None,
    };
    let mut status = 0;
    for path in &paths {
        if path == "-" {
            cat_stdin(env)?;
            continue;
        }
        if let Err(e) = cat_file(env, files.as_mut(), path) {
            env.stderr.print(&format!("cat: {path}: {}\n", e.message.unwrap_or_default()))?;
            status = 1;
        }
    }
    Ok(status)
}

fn cat_stdin(env: &mut Env) -> Outcome {
    while let Some(chunk) = env.stdin.read_chunk()? {
        env.stdout.write(chunk)?;
    }
    Ok(0)
}

fn cat_file(env: &mut Env, files: Option<&mut Files>, path: &str) -> Result<(), CommandError> {
    let files = files.ok_or_else(|| CommandError::new("no file system in this profile"))?;
    let mut file = files.open(path, &starina::fs::OpenOptions::read())?;
    let mut offset = 0u64;
    let mut buf = alloc::vec![0u8; 64 * 1024];
    loop {
        let n = file.read_at(offset, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        env.stdout.write(&buf[..n])?;
        offset += n as u64;
    }
}
