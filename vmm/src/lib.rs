//! Starina's VMM as a portable library.
//!
//! The VMM is a set of state machines driven by a hypervisor backend: the
//! backend runs the vCPU, turns each hardware exit into a [`exit::VmExit`] and
//! hands it here; device models answer port and MMIO accesses over the
//! [`memory::GuestMemory`] trait. Nothing in this crate touches hardware, so
//! everything is unit-tested on the host (`cargo test -p starina-vmm`) and the
//! same code links into the kernel-side linux server (`no_std` + `alloc`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod decode;
pub mod exit;
pub mod memory;
pub mod pic;
pub mod serial;
pub mod virtio;
