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
//! | [`lapic`], [`lapic_timer`], [`ipi`] | x2APIC local APICs (MSR exits), their timer, interrupt messages |
//! | [`ioapic`] | the I/O APIC at 0xfec00000 (legacy GSIs to the local APICs) |
//! | [`mptable`] | the MP table: the guest's CPUs, I/O APIC and ISA routes |
//! | [`smp`] | the vCPUs' APICs together: IPI routing, INIT/SIPI start of APs |
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
pub mod ioapic;
pub mod ipi;
pub mod kvmclock;
pub mod lapic;
pub mod lapic_timer;
pub mod legacy;
pub mod memory;
pub mod msr;
pub mod mptable;
pub mod pic;
pub mod pit;
pub mod repeats;
pub mod serial;
pub mod smp;
pub mod virtio;
pub mod vm;
