//! The Starina SDK: everything a component links.
//!
//! - [`abi`]: the `starina-abi` crate, types shared with the kernel (handles,
//!   rights, errors, limits, call numbers, vCPU exits, console markers).
//! - [`syscall`]: the one typed system-call table ([`syscall::KernelApi`]).
//! - [`message`]: the fixed set of message kinds every component speaks.
//! - [`channel`], [`poll`], [`timer`], [`mainloop`]: the component API.
//! - [`console`]: the serial console's input and raw output (privilege
//!   `console`).
//! - [`driver`]: devices, interrupts, MMIO and DMA for drivers.
//! - [`block`]: the block protocol (a disk driver and its clients) and
//!   [`block::Disk`], its synchronous client.
//! - [`frames`], [`datagram`]: the bodies of the network protocols (a NIC
//!   driver's frames; tcpip's `udp-listen:` datagrams with their peer).
//! - [`env`], [`spec`]: what startup hands a component, and the spec types.
//! - [`log`](mod@crate::logger): logging through the `log` crate, tagged with
//!   the component's name.
#![no_std]
// Only the driver module (MMIO, DMA) has unsafe code; see its SAFETY comments.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod block;
pub mod bootfs;
pub mod channel;
pub mod command;
pub mod console;
pub mod datagram;
#[allow(unsafe_code)]
pub mod driver;
pub mod env;
pub mod frames;
pub mod fs;
/// A kernel stand-in for host tests (here, and in components' tests with
/// the feature `fake-kernel`).
#[cfg(any(test, feature = "fake-kernel"))]
pub mod fake_kernel;
#[cfg(test)]
mod fuzz;
pub mod handle;
pub mod hypervisor;
pub mod logger;
pub mod mainloop;
pub mod message;
pub mod outbox;
pub mod poll;
pub mod spec;
pub mod syscall;
pub mod system;
pub mod thread;
pub mod timer;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "user")]
pub mod user;

pub use starina_abi as abi;

/// Whether this build of the component runs in ring 3, in an address space
/// of its own (the SDK's feature `user`: its spec or its profile says
/// so), rather than linked into the kernel. For the few tests whose
/// subject differs between the two (e.g. what a fault does).
pub const USER_MODE: bool = cfg!(feature = "user");

pub use abi::Error;
pub use abi::HandleId;
pub use channel::Channel;
pub use message::Message;

/// Re-exported so components log through the same facade.
pub use log;
