//! The native side of `make bench`'s file figures: the metadata loop the
//! Linux side runs on /mnt/starina (create, stat and remove N files),
//! here straight from a component to the fs server through `starina::fs`.
//! Logs `bench-raw: fs_native_ops_per_s <ops per second of guest time>`
//! and powers off (1 if an operation failed).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use starina::fs::Files;
use starina::fs::OpenOptions;
use starina::timer::now_ns;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) {
    let files = env.config.files.clamp(1, 100_000) as u64;
    let code = match run(env.fs, files) {
        Ok(ns) => {
            let ops_per_s = 3 * files * 1_000_000_000 / ns.max(1);
            log::info!(
                "{} fs_native_ops_per_s {ops_per_s}",
                starina::abi::markers::BENCH_RAW
            );
            0
        }
        Err(why) => {
            log::error!("fs_bench failed: {why}");
            1
        }
    };
    let err = env.shutdown.power_off(code);
    log::error!("power off failed: {err}");
}

/// Nanoseconds for creating, stat'ing and removing `n` files.
fn run(fs: starina::Channel, n: u64) -> Result<u64, String> {
    let mut fs = Files::new(fs).map_err(|e| format!("fs client: {e}"))?;
    let dir = "/fs_bench";
    let _ = fs.create_dir(dir, 0o755);
    let start = now_ns();
    for i in 0..n {
        let path = format!("{dir}/f{i}");
        let created = fs.open(&path, OpenOptions::write().create().exclusive());
        created.map_err(|e| format!("create {path}: {e}"))?;
    }
    for i in 0..n {
        fs.stat(&format!("{dir}/f{i}"))
            .map_err(|e| format!("stat f{i}: {e}"))?;
    }
    for i in 0..n {
        fs.remove_file(&format!("{dir}/f{i}"))
            .map_err(|e| format!("unlink f{i}: {e}"))?;
    }
    Ok(now_ns() - start)
}
