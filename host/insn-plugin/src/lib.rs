//! A QEMU TCG plugin for `starina profile` (QEMU 7.2's plugin API, loaded
//! with `-plugin file=libstarina_insn_plugin.so,out=PATH,ctl=SOCKET`).
//!
//! It counts every guest instruction that runs, by the block it ran in and
//! the call stack it ran under ([`shadow`]), and writes the counts to `out`:
//! when told `dump` on the Unix socket `ctl` (which also stops counting),
//! or when QEMU exits. `reset` on the socket zeroes the counts, so the host
//! chooses the window. The host names the addresses (`starina profile`).
//!
//! Unsafe code is confined to [`ffi`], the C interface QEMU calls.
#![deny(unsafe_code)]

pub mod classify;
mod control;
#[allow(unsafe_code)]
mod ffi;
pub mod shadow;
