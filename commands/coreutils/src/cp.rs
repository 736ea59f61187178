//! `cp [-r] [-f] SOURCE... DEST`: copies files (streamed, keeping the
//! mode); into DEST when it is a directory; `-r` copies directories and
//! what they hold (symlinks as symlinks); `-f` replaces a destination
//! that cannot be opened.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use starina::command::CommandError;
use starina::fs::FileType;
use starina::fs::Files;
use starina::fs::OpenOptions;

use crate::args::Spec;
use crate::ctx::fs_error;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::paths;

const SPEC: Spec = Spec {
    flags: "rRf",
    valued: "",
    digits: None,
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "cp [-r] [-f] SOURCE... DEST",
            "Copies SOURCE to DEST, or each SOURCE into the directory DEST; -r: directories too.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let recursive = parsed.has('r') || parsed.has('R');
    let force = parsed.has('f');
    let targets = Targets::new(ctx, &parsed.operands)?;
    let mut status = 0;
    for (operand, dest) in targets.pairs {
        let source = ctx.fs.path(&operand);
        if let Err(e) = copy(ctx.fs.files()?, &source, &dest, recursive, force) {
            status = ctx.fail(&operand, e)?;
        }
    }
    Ok(status)
}

/// Each source operand with the path it goes to (for cp and mv).
pub struct Targets {
    pub pairs: Vec<(String, String)>,
}

impl Targets {
    /// `SOURCE DEST`, or `SOURCE... DIR`.
    pub fn new(ctx: &mut Ctx, operands: &[String]) -> Result<Targets, CommandError> {
        let Some((last, sources)) = operands.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(CommandError::usage("needs a source and a destination"));
        };
        let dest = ctx.fs.path(last);
        let into = ctx
            .fs
            .files()?
            .stat(&dest)
            .is_ok_and(|s| s.kind == FileType::Directory);
        if sources.len() > 1 && !into {
            return Err(CommandError::new(alloc::format!("{last}: not a directory")));
        }
        let pairs = sources
            .iter()
            .map(|s| {
                let to = match into {
                    true => paths::join(&dest, paths::base_name(&ctx.fs.path(s))),
                    false => dest.clone(),
                };
                (s.clone(), to)
            })
            .collect();
        Ok(Targets { pairs })
    }
}

fn copy(
    files: &mut Files,
    from: &str,
    to: &str,
    recursive: bool,
    force: bool,
) -> Result<(), CommandError> {
    let stat = files.stat(from).map_err(fs_error)?;
    if let Ok(there) = files.stat(to) {
        if there.ino == stat.ino {
            return Err(CommandError::new(alloc::format!("{to} is the same file")));
        }
    }
    if stat.kind != FileType::Directory {
        return copy_file(files, from, to, stat.mode, force);
    }
    if !recursive {
        return Err(CommandError::new("is a directory (use -r)"));
    }
    if paths::is_within(to, from) {
        return Err(CommandError::new(alloc::format!(
            "cannot copy a directory into itself ({to})"
        )));
    }
    copy_tree(files, from, to)
}

/// Copies a regular file's bytes, a message's worth at a time.
fn copy_file(
    files: &mut Files,
    from: &str,
    to: &str,
    mode: u16,
    force: bool,
) -> Result<(), CommandError> {
    let mut src = files.open(from, &OpenOptions::read()).map_err(fs_error)?;
    let options = OpenOptions::write().create().truncate().mode(mode).clone();
    let mut dst = match files.open(to, &options) {
        Err(e) if force => {
            files.remove_file(to).map_err(|_| fs_error(e))?;
            files.open(to, &options).map_err(fs_error)?
        }
        other => other.map_err(|e| at(to, e))?,
    };
    let mut buf = vec![0u8; starina::fs::wire::READ_MAX];
    let mut offset = 0u64;
    loop {
        let n = src.read_at(offset, &mut buf).map_err(fs_error)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all_at(offset, &buf[..n]).map_err(|e| at(to, e))?;
        offset += n as u64;
    }
}

/// Copies directory `from` as `to`, walking with a list of directories.
fn copy_tree(files: &mut Files, from: &str, to: &str) -> Result<(), CommandError> {
    let mut work = vec![(String::from(from), String::from(to))];
    while let Some((src, dst)) = work.pop() {
        let mode = files.stat(&src).map_err(|e| at(&src, e))?.mode;
        match files.create_dir(&dst, mode) {
            Err(e) if e.kind != starina::fs::ErrorKind::Exists => return Err(at(&dst, e)),
            _ => {}
        }
        for entry in files.read_dir(&src).map_err(|e| at(&src, e))? {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.name);
            let (s, d) = (paths::join(&src, &name), paths::join(&dst, &name));
            match entry.kind {
                FileType::Directory => work.push((s, d)),
                FileType::Symlink => {
                    let target = files.read_link(&s).map_err(|e| at(&s, e))?;
                    files.symlink(&target, &d).map_err(|e| at(&d, e))?;
                }
                _ => {
                    let mode = files.lstat(&s).map_err(|e| at(&s, e))?.mode;
                    copy_file(files, &s, &d, mode, false)?;
                }
            }
        }
    }
    Ok(())
}

/// An error about a path other than the operand.
fn at(path: &str, e: starina::fs::FsError) -> CommandError {
    CommandError::new(alloc::format!("{path}: {}", crate::ctx::why(&e)))
}
