//! `rm [-r] [-f] PATH...`: removes files; `-r` directories with all they
//! hold (walked with a list, not recursion); `-f` ignores missing paths.

use alloc::vec;

use starina::command::CommandError;
use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::Files;

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
            "rm [-r] [-f] PATH...",
            "Removes each file PATH; -r: directories and what they hold; -f: no error for a missing PATH.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let (recursive, force) = (parsed.has('r') || parsed.has('R'), parsed.has('f'));
    if parsed.operands.is_empty() && !force {
        return Err(CommandError::usage("missing operand"));
    }
    let mut status = 0;
    for operand in &parsed.operands {
        if let Err(e) = remove(ctx, operand, recursive, force) {
            status = ctx.fail(operand, e)?;
        }
    }
    Ok(status)
}

fn remove(ctx: &mut Ctx, operand: &str, recursive: bool, force: bool) -> Result<(), CommandError> {
    if matches!(paths::base_name(operand), "." | "..") {
        return Err(CommandError::new("refusing to remove '.' or '..'"));
    }
    let path = ctx.fs.path(operand);
    if path == "/" {
        return Err(CommandError::new("refusing to remove the root"));
    }
    let files = ctx.fs.files()?;
    let kind = match files.lstat(&path) {
        Ok(s) => s.kind,
        Err(e) if force && e.kind == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fs_error(e)),
    };
    match (kind, recursive) {
        (FileType::Directory, false) => Err(CommandError::new("is a directory (use -r)")),
        (FileType::Directory, true) => remove_tree(files, &path),
        _ => files.remove_file(&path).map_err(fs_error),
    }
}

/// Removes directory `root` and everything in it, deepest first.
fn remove_tree(files: &mut Files, root: &str) -> Result<(), CommandError> {
    // (path, its entries are gone already)
    let mut work = vec![(alloc::string::String::from(root), false)];
    while let Some((dir, emptied)) = work.pop() {
        if emptied {
            files.remove_dir(&dir).map_err(|e| at(&dir, e))?;
            continue;
        }
        work.push((dir.clone(), true));
        for entry in files.read_dir(&dir).map_err(|e| at(&dir, e))? {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let child = paths::join(&dir, &alloc::string::String::from_utf8_lossy(&entry.name));
            if entry.kind == FileType::Directory {
                work.push((child, false));
            } else {
                files.remove_file(&child).map_err(|e| at(&child, e))?;
            }
        }
    }
    Ok(())
}

/// An error about a path inside the tree being walked.
fn at(path: &str, e: starina::fs::FsError) -> CommandError {
    CommandError::new(alloc::format!("{path}: {}", crate::ctx::why(&e)))
}
