//! `restart NAME` and `stop NAME`: component control.

use alloc::format;

use starina::abi::ComponentAction;
use starina::command::CommandError;
use starina::Error;

use crate::Env;
use crate::Outcome;

pub fn run(env: &mut Env, verb: &str) -> Outcome {
    let action = match verb {
        "stop" => ComponentAction::Stop,
        _ => ComponentAction::Restart,
    };
    let name = match env.args.rest() {
        [name] => name.clone(),
        [] => return Err(CommandError::usage("which component? (usage: NAME)")),
        [_, extra, ..] => {
            return Err(CommandError::usage(format!(
                "one component at a time (unexpected '{extra}')"
            )))
        }
    };
    match env.control.act(&name, action) {
        Ok(()) => Ok(0),
        Err(Error::NotFound) => Err(CommandError::new(format!("no component '{name}'"))),
        Err(Error::InvalidArgument) => Err(CommandError::new(format!(
            "'{name}' is the component asking"
        ))),
        Err(e) => Err(CommandError::new(format!("{name}: {e}"))),
    }
}
