//! `cat [FILE]...`: each file (stdin for none or `-`) to stdout, as it
//! comes, a chunk at a time.

use crate::args::Spec;
use crate::ctx::each_input;
use crate::ctx::Ctx;
use crate::ctx::Outcome;

const SPEC: Spec = Spec {
    flags: "",
    valued: "",
    digits: None,
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "cat [FILE]...",
            "Copies each FILE (stdin for none or -) to stdout.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    each_input(ctx, &parsed.operands, |source, out, _| {
        while let Some(chunk) = source.chunk()? {
            out.write(chunk)?;
        }
        Ok(())
    })
}
