//! Starina's VMM as a portable library.
//!
//! The VMM is a set of state machines driven by a hypervisor backend: the
//! backend runs the vCPU, turns each hardware exit into a [`exit::VmExit`] and
//! hands it here; device models answer port and MMIO accesses over the
//! [`memory::GuestMemory`] trait. Nothing in this crate touches hardware, so
//! everything is unit-tested on the host (`cargo test -p starina-vmm`) and the
//! same code links into the kernel-side linux server (`no_std` + `alloc`).
//!
//! | module | what |
//! |---|---|
//! | [`memory`] | `GuestMemory` trait, bounds-checked; `VecMemory`, `SliceMemory` |
//! | [`exit`] | backend-neutral `VmExit` and `VcpuState` |
//! | [`boot`] | bzImage parsing and the Linux 64-bit boot protocol |
//! | [`decode`] | guest page walk, instruction fetch, MOV decoder for MMIO |
//! | [`serial`] | 16550A UART (COM1) |
//! | [`pic`], [`pit`], [`legacy`], [`iobus`] | 8259A pair, 8254 + port 0x61, CMOS/i8042, port routing |
//! | [`virtio`] | virtio-mmio v2 transport, split virtqueues; virtio-console, -fs, -net, -blk |
//! | [`cpuid`], [`msr`] | what the guest sees of the CPU |
//! | [`kvmclock`] | the paravirtual clock (kvm-clock) the guest reads without exits |
//! | [`vm`] | all devices together and `Vm::handle_exit` |
//! | [`repeats`] | bounded logging of what a guest can repeat at will |
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod cpuid;
pub mod decode;
pub mod exit;
pub mod iobus;
pub mod kvmclock;
pub mod legacy;
pub mod memory;
pub mod msr;
pub mod pic;
pub mod pit;
pub mod repeats;
pub mod serial;
pub mod virtio;
pub mod vm;
