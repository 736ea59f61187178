//! The fs server: the native file system. It mounts the ext2 file system
//! on its disk (the virtio-blk driver's `disk` service, through
//! `starina::block`) and serves the `fs` service: the protocol of
//! `starina::fs` (paths and metadata on the service channel, a channel per
//! open file).
//!
//! Requests are served one at a time, in arrival order; the block cache
//! of `starina-ext2` keeps recently used blocks, and dirty ones go to the
//! disk on `sync`/`fsync` and at least every `sync_interval_ms`. A disk
//! that cannot be mounted (not ext2, corrupt, unsupported features) is
//! logged with the reason, and every request is then answered with that
//! reason, so clients see why instead of a server restarting in a loop.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod device;
mod errors;
mod files;
mod held;
mod paths;
mod requests;
mod server;

use alloc::format;
use alloc::string::String;

use starina::block::Disk;
use starina::mainloop::Mainloop;
use starina::timer::Timer;

use server::Server;
use server::Watched;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) -> Result<(), String> {
    let disk = Disk::connect(env.disk).map_err(|e| format!("cannot reach the disk: {e}"))?;
    let mut server = Server::mount(disk);
    let interval_ms = u64::try_from(env.config.sync_interval_ms)
        .unwrap_or(5000)
        .max(100);
    let mut ml = Mainloop::new().map_err(|e| format!("main loop: {e}"))?;
    let cx = ml.cx();
    cx.add_supervisor(env.supervisor)
        .map_err(|e| format!("supervisor: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("timer: {e}"))?;
    let timer = cx
        .add_timer(timer, Watched::SyncTimer)
        .map_err(|e| format!("timer: {e}"))?;
    cx.set_timer(timer, interval_ms * 1_000_000)
        .map_err(|e| format!("timer: {e}"))?;
    server.sync_interval_ns = interval_ms * 1_000_000;
    ml.run(&mut server).map_err(|e| format!("{e}"))
}
