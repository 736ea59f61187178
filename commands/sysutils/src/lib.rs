//! The native system commands, one component answering to several names
//! (its spec's `names`): `ps`, `log`, `restart`, `stop`, `uptime` and
//! `free`, reading the system through the `monitor` privilege and acting
//! on components through `control`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod control;
mod free;
mod klog;
mod ps;
mod text;
mod uptime;

use alloc::format;
use alloc::string::String;

use starina::command::CommandError;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

type Outcome = Result<i32, CommandError>;

pub fn main(mut env: Env) -> Outcome {
    let name = String::from(env.args.name());
    if env.args.wants_help() {
        env.stdout.print(help(&name))?;
        return Ok(0);
    }
    match name.as_str() {
        "ps" => ps::run(&mut env),
        "log" => klog::run(&mut env),
        "restart" | "stop" => control::run(&mut env, &name),
        "uptime" => uptime::run(&mut env),
        "free" => free::run(&mut env),
        other => Err(CommandError::new(format!(
            "not a command of sysutils: {other}"
        ))),
    }
}

fn help(name: &str) -> &'static str {
    match name {
        "ps" => {
            "usage: ps\nLists the running profile's components: name, kind, state, instance \
             (1 = first start), restarts/max_restarts, and memory used / limit.\n"
        }
        "log" => {
            "usage: log [-n N] [-f]\nPrints the kernel log the kernel keeps (its last 64 KiB).\n  \
             -n N  only the last N lines\n  -f    then follow: print new lines as they come, \
             until killed or stdout's reader goes away\n"
        }
        "restart" => {
            "usage: restart NAME\nEnds component NAME of the running profile if it runs and \
             starts a new instance at once (its clients get fresh connections).\n"
        }
        "stop" => {
            "usage: stop NAME\nEnds component NAME of the running profile and keeps it down, \
             whatever its restart policy, until `restart NAME`.\n"
        }
        "uptime" => "usage: uptime\nPrints the time since boot and the wall-clock time (UTC).\n",
        "free" => {
            "usage: free\nPrints the machine's memory: total, used and free (pages and bytes), \
             the kernel heap in use, DMA pages and pages the kernel keeps.\n"
        }
        _ => "sysutils: ps, log, restart, stop, uptime, free\n",
    }
}

/// Fails with a usage error (status 2) if any argument is left.
fn no_args(env: &Env) -> Result<(), CommandError> {
    match env.args.rest().first() {
        Some(arg) => Err(CommandError::usage(format!(
            "unexpected argument '{arg}' (see --help)"
        ))),
        None => Ok(()),
    }
}

/// For `map_err`: a failed system call while doing `what`, status 1.
fn sys(what: &'static str) -> impl Fn(starina::Error) -> CommandError {
    move |e| CommandError::new(format!("{what}: {e}"))
}
