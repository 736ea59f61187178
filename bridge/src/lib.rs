//! What crosses between native Starina and the Linux microVM.
//!
//! The process protocol ([`process`]): the native linux server
//! asks the guest agent (PID 1 in the guest) to run processes, and the agent
//! streams their output and exit status back, all over one byte stream (a
//! virtio-console port, `/dev/hvc0` in the guest).
//!
//! The crate is `no_std` + `alloc` because the native side runs in the kernel;
//! the agent uses it from std.
//!
//! The native process API ([`exec`]): how Starina components ask the linux
//! server to run programs, over channels.
//!
//! Native files in Linux ([`fuse`]): the FUSE server behind the VMM's
//! virtio-fs device, over a file system addressed by inode.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod exec;
pub mod fuse;
pub mod process;
