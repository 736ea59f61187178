//! The Starina microkernel.
//!
//! Boot (PVH or Multiboot2), memory, threads and scheduling, handles and rights,
//! channels, poll and timers, and startup, which runs the components of a
//! profile as their specs say. Components are crates linked into this image
//! (`#![forbid(unsafe_code)]`), calling the kernel through
//! [`starina::syscall::KernelApi`].
//!
//! On the host (`cargo test`) the portable parts — handle tables, channels,
//! poll, timers — build with `std` and are unit-tested.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod account;
pub mod acpi;
pub mod arch;
pub mod handle;
pub mod object;
pub mod process;
pub mod restart_limit;
pub mod sched;
pub mod sync;

#[cfg(not(test))]
pub mod boot;
#[cfg(not(test))]
pub mod bootfs;
#[cfg(not(test))]
pub mod device;
#[cfg(not(test))]
pub mod interrupt;
#[cfg(not(test))]
pub mod klog;
pub mod log_limit;
pub mod log_line;
#[cfg(not(test))]
pub mod mm;
pub mod multiboot2;
#[cfg(not(test))]
pub mod panic;
#[cfg(not(test))]
pub mod percpu;
#[cfg(not(test))]
mod rt;
#[cfg(not(test))]
pub mod startup;
#[cfg(not(test))]
pub mod syscall;
#[cfg(not(test))]
mod syscall_command;
#[cfg(not(test))]
pub mod user;
// User mode's thread-stack bookkeeping (pure), tested on the host.
#[cfg(test)]
#[path = "user/stacks.rs"]
mod user_stacks;
