//! `mv [-f] SOURCE... DEST`: renames SOURCE to DEST, or moves each SOURCE
//! into the directory DEST (an existing file DEST is replaced in one step).

use starina::command::CommandError;

use crate::args::Spec;
use crate::cp::Targets;
use crate::ctx::fs_error;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::paths;

const SPEC: Spec = Spec {
    flags: "f",
    valued: "",
    digits: None,
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "mv [-f] SOURCE... DEST",
            "Renames SOURCE to DEST, or moves each SOURCE into the directory DEST.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let targets = Targets::new(ctx, &parsed.operands)?;
    let mut status = 0;
    for (operand, dest) in targets.pairs {
        let source = ctx.fs.path(&operand);
        if let Err(e) = rename(ctx, &source, &dest) {
            status = ctx.fail(&operand, e)?;
        }
    }
    Ok(status)
}

fn rename(ctx: &mut Ctx, source: &str, dest: &str) -> Result<(), CommandError> {
    if source == dest {
        return Err(CommandError::new("source and destination are the same"));
    }
    if source == "/" || paths::is_within(dest, source) {
        return Err(CommandError::new(alloc::format!(
            "cannot move a directory into itself ({dest})"
        )));
    }
    ctx.fs.files()?.rename(source, dest).map_err(fs_error)
}
