//! `mkdir [-p] DIR...`: makes directories (mode 755); `-p` makes missing
//! parents too and accepts a directory that exists.

use starina::command::CommandError;
use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::Files;

use crate::args::Spec;
use crate::ctx::fs_error;
use crate::ctx::Ctx;
use crate::ctx::Outcome;

const SPEC: Spec = Spec {
    flags: "p",
    valued: "",
    digits: None,
};

const MODE: u16 = 0o755;

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "mkdir [-p] DIR...",
            "Makes each directory DIR; -p: with its missing parents, and no error if it exists.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    if parsed.operands.is_empty() {
        return Err(CommandError::usage("missing operand"));
    }
    let mut status = 0;
    for operand in &parsed.operands {
        let path = ctx.fs.path(operand);
        let files = ctx.fs.files()?;
        let made = if parsed.has('p') {
            make_parents(files, &path)
        } else {
            files.create_dir(&path, MODE).map_err(fs_error)
        };
        if let Err(e) = made {
            status = ctx.fail(operand, e)?;
        }
    }
    Ok(status)
}

/// Makes `path` and every missing directory above it.
fn make_parents(files: &mut Files, path: &str) -> Result<(), CommandError> {
    let mut end = 0;
    while end < path.len() && path != "/" {
        end = path[end + 1..]
            .find('/')
            .map_or(path.len(), |i| end + 1 + i);
        let prefix = &path[..end];
        match files.create_dir(prefix, MODE) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::Exists => {
                let kind = files.stat(prefix).map_err(fs_error)?.kind;
                if kind != FileType::Directory {
                    return Err(CommandError::new(alloc::format!(
                        "{prefix}: not a directory"
                    )));
                }
            }
            Err(e) => return Err(fs_error(e)),
        }
    }
    Ok(())
}
