#![no_std]
#![forbid(unsafe_code)]
include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));
pub fn main(env: Env) {
    let _ = env;
}
