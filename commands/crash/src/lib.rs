//! A command that fails on purpose, for the tests of commands: how a
//! command's panic, a command that never ends and an exit status reach the
//! one that started it.
#![no_std]
#![forbid(unsafe_code)]

use starina::command::CommandError;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(mut env: Env) -> Result<i32, CommandError> {
    let rest = env.args.rest();
    match rest.first().map(|s| s.as_str()) {
        Some("panic") => panic!("crash: asked to panic"),
        Some("spin") => loop {
            core::hint::spin_loop();
        },
        Some("status") => rest
            .get(1)
            .and_then(|n| n.parse::<i32>().ok())
            .ok_or_else(|| CommandError::usage("status needs a number")),
        Some("--help") | None => {
            env.stdout
                .print("usage: crash panic | spin | status N\n")?;
            Ok(0)
        }
        Some(_) => Err(CommandError::usage("unknown mode (panic, spin or status N)")),
    }
}
