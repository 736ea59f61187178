//! `uptime`: the time since boot, and the wall clock.

use alloc::format;

use starina::timer::now_ns;
use starina::timer::unix_seconds;

use crate::text;
use crate::Env;
use crate::Outcome;

/// A wall clock before this (2001-09-09) is taken as unset.
const CLOCK_SET_AFTER: u64 = 1_000_000_000;

pub fn run(env: &mut Env) -> Outcome {
    crate::no_args(env)?;
    let up_ns = now_ns();
    let mut out = format!(
        "up {} ({}.{:03} s)\n",
        text::duration(up_ns / 1_000_000_000),
        up_ns / 1_000_000_000,
        up_ns / 1_000_000 % 1000
    );
    let unix = unix_seconds();
    if unix >= CLOCK_SET_AFTER {
        out.push_str(&format!("clock {} UTC\n", text::date_time(unix)));
    } else {
        out.push_str("clock not set\n");
    }
    env.stdout.print(&out)?;
    Ok(0)
}
