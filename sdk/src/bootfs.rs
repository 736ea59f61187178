//! The boot file system: files the boot loader handed the kernel (for
//! example the Linux guest's kernel and initramfs, passed by
//! `scripts/starina` as the PVH module). Read-only, alive for the life of
//! the system, and given to in-kernel components without a copy.

use crate::abi::Error;
use crate::syscall::kernel;

/// The contents of boot file `name` (`NotFound` if absent).
pub fn file(name: &str) -> Result<&'static [u8], Error> {
    kernel().bootfs_file(name)
}
