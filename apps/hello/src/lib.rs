//! The smallest component: logs its greeting (from its spec's config) and
//! returns, which ends it cleanly.
#![no_std]
#![forbid(unsafe_code)]

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) {
    log::info!("{}", env.config.greeting);
}
