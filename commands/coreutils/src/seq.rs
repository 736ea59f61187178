//! `seq [FIRST [STEP]] LAST`: the whole numbers from FIRST (1) to LAST,
//! STEP (1) apart, one a line.

use alloc::format;
use alloc::string::String;

use starina::command::Buffered;
use starina::command::CommandError;

use crate::ctx::Ctx;
use crate::ctx::Outcome;

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "seq [FIRST [STEP]] LAST",
            "Writes the whole numbers from FIRST (1) to LAST, STEP (1) apart, one a line.",
        );
    }
    let (first, step, last) = bounds(&ctx.args).map_err(CommandError::usage)?;
    let mut out = Buffered::new(&mut ctx.stdout);
    let mut n = first;
    while (step > 0 && n <= last) || (step < 0 && n >= last) {
        out.print(&format!("{n}\n"))?;
        match n.checked_add(step) {
            Some(next) => n = next,
            None => break,
        }
    }
    out.flush()?;
    Ok(0)
}

/// (first, step, last) from the arguments.
pub fn bounds(args: &[String]) -> Result<(i64, i64, i64), String> {
    let numbers = args
        .iter()
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| format!("invalid number: '{a}'"))
        })
        .collect::<Result<alloc::vec::Vec<i64>, String>>()?;
    let (first, step, last) = match numbers[..] {
        [last] => (1, 1, last),
        [first, last] => (first, 1, last),
        [first, step, last] => (first, step, last),
        _ => {
            return Err(String::from(
                "needs 1 to 3 numbers: seq [FIRST [STEP]] LAST",
            ))
        }
    };
    if step == 0 {
        return Err(String::from("the step must not be 0"));
    }
    Ok((first, step, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn b(args: &[&str]) -> Result<(i64, i64, i64), String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        bounds(&args)
    }

    #[test]
    fn one_two_or_three_numbers() {
        assert_eq!(b(&["5"]), Ok((1, 1, 5)));
        assert_eq!(b(&["-2", "3"]), Ok((-2, 1, 3)));
        assert_eq!(b(&["10", "-2", "1"]), Ok((10, -2, 1)));
        assert!(b(&[]).is_err());
        assert!(b(&["1", "2", "3", "4"]).is_err());
        assert!(b(&["x"]).is_err());
        assert!(b(&["1.5"]).is_err());
        assert!(b(&["1", "0", "5"]).is_err());
    }
}
