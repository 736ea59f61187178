//! Guest physical memory as the VMM reaches it: the [`GuestMemory`] trait
//! that the VMM's device models and boot loader use, implemented by the
//! SDK's guest RAM handle (in the OS) and by plain buffers (in host tests).
//!
//! Guest-physical addresses come from the guest and are untrusted: every
//! access is bounds-checked with overflow-safe arithmetic and fails with a
//! [`MemError`] instead of panicking.

use core::fmt;

use crate::Error;

/// A guest-physical address.
pub type Gpa = u64;

/// Why a guest memory access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// `[gpa, gpa + len)` is not entirely inside guest RAM (or overflows).
    OutOfBounds { gpa: Gpa, len: u64 },
    /// The kernel refused the access for another reason (e.g. the guest
    /// RAM handle is invalid or lacks the right).
    Kernel(Error),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfBounds { gpa, len } => write!(
                f,
                "guest memory access [{gpa:#x}, +{len:#x}) is outside guest RAM"
            ),
            MemError::Kernel(e) => write!(f, "guest memory access refused: {e}"),
        }
    }
}

/// Checks that `[gpa, gpa + len)` lies inside `[0, size)` and returns it as a
/// host index range. Never overflows.
pub fn checked_range(gpa: Gpa, len: usize, size: u64) -> Result<core::ops::Range<usize>, MemError> {
    let err = MemError::OutOfBounds {
        gpa,
        len: len as u64,
    };
    let end = gpa.checked_add(len as u64).ok_or(err)?;
    if end > size {
        return Err(err);
    }
    let start = usize::try_from(gpa).map_err(|_| err)?;
    let end = usize::try_from(end).map_err(|_| err)?;
    Ok(start..end)
}

/// Guest RAM, mapped contiguously from guest-physical address 0.
///
/// Only `size`, `read` and `write` are required; the typed little-endian
/// helpers are provided on top. The trait is object safe: device models take
/// `&mut dyn GuestMemory`.
pub trait GuestMemory {
    /// Size of guest RAM in bytes; valid addresses are `[0, size)`.
    fn size(&self) -> u64;

    /// Copies `buf.len()` bytes at `gpa` into `buf`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copies `data` into guest memory at `gpa`.
    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), MemError>;

    /// Whether `[gpa, gpa + len)` is entirely inside guest RAM.
    fn contains(&self, gpa: Gpa, len: u64) -> bool {
        gpa.checked_add(len).is_some_and(|end| end <= self.size())
    }

    fn read_u8(&self, gpa: Gpa) -> Result<u8, MemError> {
        let mut b = [0u8; 1];
        self.read(gpa, &mut b)?;
        Ok(b[0])
    }

    fn read_u16(&self, gpa: Gpa) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn read_u32(&self, gpa: Gpa) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_u64(&self, gpa: Gpa) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u8(&mut self, gpa: Gpa, v: u8) -> Result<(), MemError> {
        self.write(gpa, &[v])
    }

    fn write_u16(&mut self, gpa: Gpa, v: u16) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    fn write_u32(&mut self, gpa: Gpa, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    fn write_u64(&mut self, gpa: Gpa, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Fills `[gpa, gpa + len)` with zeros (in chunks, without a big buffer).
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), MemError> {
        if !self.contains(gpa, len) {
            return Err(MemError::OutOfBounds { gpa, len });
        }
        let zeros = [0u8; 512];
        let mut done = 0u64;
        while done < len {
            let n = core::cmp::min(len - done, zeros.len() as u64) as usize;
            self.write(gpa + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}
