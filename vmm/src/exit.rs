//! Backend-neutral VM exits and vCPU register state: the ABI's own types
//! (`starina_abi::vcpu`), shared with the kernel's hypervisor backend, so the
//! VMM depends on the ABI and not the other way round.

pub use starina_abi::vcpu::*;
